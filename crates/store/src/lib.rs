//! berth's durable state. (Being written: see the helper's brief in this session.)

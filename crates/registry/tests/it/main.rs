//! berth-registry's test binary (one per crate: link time matters): pure parsers first, then the
//! router driven in-process, then a real server on loopback.

mod component;
mod parsers;
mod streaming;
mod support;

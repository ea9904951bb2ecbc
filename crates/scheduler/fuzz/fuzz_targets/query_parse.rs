//! Fuzzes the cluster query parser: whatever the text, `parse` answers without panicking, and
//! whatever it accepts prints to text that parses back to the same tree.
//!
//! Run with `cd crates/scheduler/fuzz && cargo fuzz run query_parse -s none`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = berth_scheduler::parse(s) {
        let printed = e.to_string();
        assert_eq!(berth_scheduler::parse(&printed).ok(), Some(e), "{printed}");
    }
});

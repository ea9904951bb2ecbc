//! Fuzzes the composite alarm rule parser: whatever the text, `parse` answers without
//! panicking or overflowing the stack, and whatever it accepts names at most
//! `MAX_CHILDREN` alarms and evaluates under any assignment of states.
//!
//! Run with `cd crates/cloudwatch/fuzz && cargo +nightly fuzz run alarm_rule -s none`.

#![no_main]

use berth_cloudwatch::evaluate::State;
use berth_cloudwatch::rule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = rule::parse(text) {
        let children = expr.children();
        assert!(children.len() <= rule::MAX_CHILDREN, "{text}");
        for state in [State::Ok, State::Alarm, State::InsufficientData] {
            let value = expr.eval(&|_| Some(state));
            // The alarms said to trigger are among those the rule names.
            if !value {
                continue;
            }
            for name in expr.triggering(&|_| Some(state)) {
                assert!(children.contains(&name), "{text}");
            }
        }
    }
});

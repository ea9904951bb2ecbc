//! Fuzzes manifest validation: whatever the body and Content-Type, `manifest::parse` answers
//! without panicking, and an accepted manifest has one of the four supported media types.
//!
//! Run with `cd crates/registry/fuzz && cargo +nightly fuzz run -s none manifest_parse`.
//!
//! The first input byte picks the Content-Type sent with the rest of the input as the body.

#![no_main]

use berth_registry::manifest::{self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_LIST),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[selector as usize % CONTENT_TYPES.len()];
    if let Ok(m) = manifest::parse(body, content_type) {
        assert!(
            [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
                .contains(&m.media_type.as_str())
        );
        let _ = m.required_blobs().count();
        let _ = m.effective_artifact_type();
    }
});

//! Fuzzes the `/v2/` path parser: whatever the path, `path::parse` answers without panicking,
//! and whatever it accepts is well-formed (a valid name; a tag that is a valid tag).
//!
//! Run with `cd crates/registry/fuzz && cargo +nightly fuzz run -s none oci_path`.

#![no_main]

use berth_registry::path::{self, Reference, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let name = match path::parse(s) {
        Ok(Route::Base | Route::Catalog) | Err(_) => return,
        Ok(Route::Manifest { name, reference }) => {
            if let Reference::Tag(t) = &reference {
                assert!(path::valid_tag(t));
            }
            name
        }
        Ok(
            Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::TagsList { name }
            | Route::Referrers { name, .. },
        ) => name,
    };
    assert!(path::valid_name(&name));
    assert!(!name.contains(".."));
});

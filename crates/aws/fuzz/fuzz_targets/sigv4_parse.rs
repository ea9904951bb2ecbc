//! Fuzzes SigV4 verification: whatever the request line, headers and body, `Verifier::verify`
//! answers (in both modes) without panicking.
//!
//! Run with `cd crates/aws/fuzz && cargo +nightly fuzz run -s none sigv4_parse`.
//!
//! The input is read as a tiny HTTP/1 message so the fuzzer reaches the interesting paths
//! quickly: a first line `METHOD URI`, then `name: value` header lines (raw bytes, so values may
//! be non-UTF-8 or huge), an empty line, and the body. Lines that do not form a valid header are
//! skipped rather than rejected, since `http` would refuse them before we ever saw them.

#![no_main]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_aws::sigv4::{Mode, Secret, SecretSource, Verifier};
use http::{HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

struct OneKey;

impl SecretSource for OneKey {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        (access_key_id == "AKIDEXAMPLE").then(|| Secret {
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            account_id: "123456789012".to_owned(),
        })
    }
}

fn split_once<'a>(data: &'a [u8], sep: &[u8]) -> (&'a [u8], &'a [u8]) {
    match data.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&data[..i], &data[i + sep.len()..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = split_once(data, b"\n\n");
    let mut lines = head.split(|b| *b == b'\n');
    let (method, uri) = split_once(lines.next().unwrap_or_default(), b" ");

    let mut request = http::Request::new(());
    *request.method_mut() = Method::from_bytes(method).unwrap_or(Method::POST);
    *request.uri_mut() = Uri::try_from(uri).unwrap_or_else(|_| Uri::from_static("/"));
    for line in lines {
        let (name, value) = split_once(line, b":");
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            request.headers_mut().append(name, value);
        }
    }
    let (parts, ()) = request.into_parts();

    // 2025-01-01T12:00:00Z, so inputs dated that day get past the clock check.
    let now = UNIX_EPOCH + Duration::from_secs(1_735_732_800);
    for mode in [Mode::Verify, Mode::Open] {
        let verifier = Verifier::new(mode, Arc::new(OneKey));
        let _ = verifier.verify(&parts, body, now);
        let _ = verifier.verify(&parts, body, SystemTime::UNIX_EPOCH);
    }
});

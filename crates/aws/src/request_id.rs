//! Request ids: the random (v4) UUIDs every answer carries as `x-amzn-RequestId`, and the
//! references of internal errors.
//!
//! `uuid::Uuid::new_v4` asks the OS for its 16 bytes on every call, a `getrandom` syscall per
//! answer (~1.5 % of a ListClusters request under load). These come from `rand`'s `ThreadRng`
//! instead: a ChaCha12 generator per thread, seeded from the OS on first use and reseeded from
//! it after every 64 KiB of output (about 4,000 ids) and after a `fork`. Its output cannot be
//! predicted from earlier ids, and 122 random bits per id keep them as unlikely to repeat as
//! the OS's.

use rand::RngCore;

/// A fresh random UUID (version 4, RFC 4122 variant).
pub fn new_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A fresh request id as AWS writes one: a lower-case hyphenated v4 UUID.
pub fn new_request_id() -> String {
    new_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_v4_uuids_in_aws_form() {
        for _ in 0..1000 {
            let id = new_request_id();
            assert_eq!(id.len(), 36, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
            let parsed = uuid::Uuid::parse_str(&id).expect("parses as a UUID");
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    /// Each thread has its own generator; they must not share a seed (or a stream), and one
    /// thread must not repeat itself across its generator's reseeds (every ~4,000 ids).
    #[test]
    fn ids_are_unique_within_and_across_threads() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 20_000;
        let per_thread: Vec<Vec<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| scope.spawn(|| (0..PER_THREAD).map(|_| new_request_id()).collect()))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .collect()
        });
        let mut seen = HashSet::with_capacity(THREADS * PER_THREAD);
        for ids in &per_thread {
            for id in ids {
                assert!(seen.insert(id.as_str()), "repeated id {id}");
            }
        }
        assert_eq!(seen.len(), THREADS * PER_THREAD);
    }
}

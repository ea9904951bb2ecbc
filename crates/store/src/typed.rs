//! Typed helpers over any [`Store`]: deserializing reads and read-modify-write with retry.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::{Op, Store, StoreError};

/// How many times [`retry_on_conflict`] runs its closure before giving up with the last conflict.
pub const MAX_ATTEMPTS: u32 = 16;

/// Reads a record and deserializes its value. Returns the value and its version (for
/// `Expect::Version`), `None` when absent, and [`StoreError::Corrupt`] when the stored JSON does
/// not have the shape of `T`.
pub async fn get_as<T, S>(
    store: &S,
    kind: &str,
    partition: &str,
    key: &str,
) -> Result<Option<(T, u64)>, StoreError>
where
    T: DeserializeOwned,
    S: Store,
{
    let Some(record) = store.get(kind, partition, key).await? else {
        return Ok(None);
    };
    let value = T::deserialize(record.value).map_err(|e| {
        StoreError::Corrupt(format!(
            "{} {} {}: {e}",
            record.kind, record.partition, record.key
        ))
    })?;
    Ok(Some((value, record.version)))
}

/// Read-modify-write with optimistic concurrency. `f` reads what it needs, decides, and returns
/// the ops to commit (each carrying the `Expect::Version`/`Expect::Absent` matching what it read)
/// together with its result. The ops are committed; on [`StoreError::Conflict`] the whole closure
/// runs again from fresh reads, up to [`MAX_ATTEMPTS`] times, after which the conflict is returned.
/// An error from `f` itself is returned at once. Returning no ops commits nothing.
///
/// ```
/// use berth_store::{AnyStore, Expect, Op, StoreError, get_as, retry_on_conflict};
///
/// async fn bump(store: &AnyStore) -> Result<u64, StoreError> {
///     retry_on_conflict(store, || async {
///         let (n, expect) = match get_as::<u64, _>(store, "counter", "p", "c").await? {
///             Some((n, version)) => (n + 1, Expect::Version(version)),
///             None => (1, Expect::Absent),
///         };
///         Ok((vec![Op::put("counter", "p", "c", n.into(), expect)], n))
///     })
///     .await
/// }
/// ```
pub async fn retry_on_conflict<S, R, E, F, Fut>(store: &S, mut f: F) -> Result<R, E>
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(Vec<Op>, R), E>>,
    E: From<StoreError>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (ops, out) = f().await?;
        if ops.is_empty() {
            return Ok(out);
        }
        match store.commit(ops).await {
            Ok(_) => return Ok(out),
            Err(e) if e.is_conflict() && attempt < MAX_ATTEMPTS => backoff(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Contention on one record is usually two or three writers; yielding lets the winner finish.
/// Past that, short growing sleeps with jitter (tokio time, so paused-time tests still run
/// instantly) stop a herd of writers from retrying in lockstep.
async fn backoff(attempt: u32) {
    if attempt < 4 {
        tokio::task::yield_now().await;
    } else {
        let base = 50u64 << attempt.min(8);
        let micros = base + jitter() % base;
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
}

/// A cheap random number without a dependency: std seeds every `RandomState` differently.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

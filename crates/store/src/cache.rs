//! The read cache of [`crate::SqliteStore`]: the rows of recent point reads and scans, as SQLite
//! returned them, per `(kind, partition)`, so a repeated read skips SQLite's read transaction
//! (its shared-memory locks, statement and page lookups).
//!
//! **Invariant:** a cached answer is exactly what SQLite would answer now. This holds because
//! every write to the database goes through this process's one writer, which calls
//! [`ReadCache::begin_write`] before its transaction and [`ReadCache::end_write`] after it (also
//! when it fails) for every `(kind, partition)` it touches. Each `(kind, partition)` has a
//! generation, odd while a write to it is in flight; `begin_write` and `end_write` each drop its
//! entries and step the generation, and a reader stores what it read only if the generation it
//! saw *before* reading is still current and even. So nothing read before or during a write
//! survives it, and no reader can be served older rows than a reader before it got from SQLite.
//! Another process writing the same file would break this; berth opens its database from one
//! process only.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// One row as the cache keeps it: key, version, the value's JSON text.
pub(crate) type Row = (String, u64, Box<str>);

/// What a read asked for, within one `(kind, partition)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Query {
    Get {
        key: String,
    },
    Scan {
        prefix: String,
        start_after: Option<String>,
        limit: usize,
    },
}

/// Bounds that keep the cache from growing with the data: one scan's rows past
/// `ENTRY_MAX_BYTES` are not kept, and once the whole cache passes `TOTAL_MAX_BYTES` it is
/// emptied (simpler than LRU, and hot reads refill it at once).
pub(crate) const ENTRY_MAX_BYTES: usize = 64 * 1024;
const TOTAL_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What one row counts against the bounds (its text and its share of bookkeeping).
pub(crate) fn row_bytes(key: &str, text: &str) -> usize {
    key.len() + text.len() + 48
}

#[derive(Default)]
pub(crate) struct ReadCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// kind → partition → its generation and entries. Nested so lookups borrow `&str`.
    kinds: HashMap<String, HashMap<String, Slot>>,
    bytes: usize,
    /// Steps like a generation, for writes to every record (reset).
    epoch: u64,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    entries: HashMap<Query, (Arc<[Row]>, usize)>,
}

/// What a reader must hand back to [`ReadCache::fill`]: the epoch and generation it saw before
/// reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    epoch: u64,
    generation: u64,
}

impl ReadCache {
    /// The cached rows for `query`, or the ticket to fill it with after reading SQLite.
    pub(crate) fn lookup(
        &self,
        kind: &str,
        partition: &str,
        query: &Query,
    ) -> Result<Arc<[Row]>, Ticket> {
        let state = self.state.lock();
        let slot = state.kinds.get(kind).and_then(|p| p.get(partition));
        if let Some((rows, _)) = slot.and_then(|slot| slot.entries.get(query)) {
            return Ok(Arc::clone(rows));
        }
        Err(Ticket {
            epoch: state.epoch,
            generation: slot.map_or(0, |slot| slot.generation),
        })
    }

    /// The cached rows of every query, or, when any of them is not cached, the ticket to fill
    /// them with after reading SQLite. All or nothing, under one lock, so an answer is never
    /// part cached rows and part a later read: the rows all held at one instant.
    pub(crate) fn lookup_all(
        &self,
        kind: &str,
        partition: &str,
        queries: &[Query],
    ) -> Result<Vec<Arc<[Row]>>, Ticket> {
        let state = self.state.lock();
        let slot = state.kinds.get(kind).and_then(|p| p.get(partition));
        let cached = slot.and_then(|slot| {
            queries
                .iter()
                .map(|query| slot.entries.get(query).map(|(rows, _)| Arc::clone(rows)))
                .collect::<Option<Vec<_>>>()
        });
        cached.ok_or(Ticket {
            epoch: state.epoch,
            generation: slot.map_or(0, |slot| slot.generation),
        })
    }

    /// Keeps what a reader read, unless a write began since its ticket was issued.
    pub(crate) fn fill(
        &self,
        kind: &str,
        partition: &str,
        query: Query,
        ticket: Ticket,
        rows: Arc<[Row]>,
    ) {
        if ticket.epoch % 2 == 1 || ticket.generation % 2 == 1 {
            return;
        }
        let size = rows
            .iter()
            .map(|(key, _, text)| row_bytes(key, text))
            .sum::<usize>()
            + 64;
        if size > ENTRY_MAX_BYTES {
            return;
        }
        let mut state = self.state.lock();
        let now = Ticket {
            epoch: state.epoch,
            generation: state
                .kinds
                .get(kind)
                .and_then(|p| p.get(partition))
                .map_or(0, |slot| slot.generation),
        };
        if now != ticket {
            return;
        }
        if state.bytes + size > TOTAL_MAX_BYTES {
            // Emptying keeps the generations: an entry may only be added against them.
            for slot in state.kinds.values_mut().flat_map(|p| p.values_mut()) {
                slot.entries.clear();
            }
            state.bytes = 0;
        }
        let slot = state
            .kinds
            .entry(kind.to_owned())
            .or_default()
            .entry(partition.to_owned())
            .or_default();
        let replaced = slot.entries.insert(query, (rows, size));
        let freed = replaced.map_or(0, |(_, size)| size);
        state.bytes = state.bytes + size - freed;
    }

    /// Called before a write to `(kind, partition)` starts.
    pub(crate) fn begin_write(&self, kind: &str, partition: &str) {
        self.step(kind, partition);
    }

    /// Called after that write committed or failed.
    pub(crate) fn end_write(&self, kind: &str, partition: &str) {
        self.step(kind, partition);
    }

    /// Called before and after a write that may touch every record (reset): like
    /// `begin_write`/`end_write` for all of them at once.
    pub(crate) fn begin_write_all(&self) {
        self.step_all();
    }

    pub(crate) fn end_write_all(&self) {
        self.step_all();
    }

    fn step_all(&self) {
        let mut state = self.state.lock();
        state.epoch += 1;
        for slot in state.kinds.values_mut().flat_map(|p| p.values_mut()) {
            slot.entries.clear();
        }
        state.bytes = 0;
    }

    fn step(&self, kind: &str, partition: &str) {
        let mut state = self.state.lock();
        let slot = state
            .kinds
            .entry(kind.to_owned())
            .or_default()
            .entry(partition.to_owned())
            .or_default();
        slot.generation += 1;
        let freed: usize = slot.entries.drain().map(|(_, (_, size))| size).sum();
        state.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Arc<[Row]> {
        Arc::from(vec![("k".to_owned(), 1, Box::from(text))])
    }

    fn get(key: &str) -> Query {
        Query::Get {
            key: key.to_owned(),
        }
    }

    #[test]
    fn a_fill_is_served_until_a_write_to_its_partition() {
        let cache = ReadCache::default();
        let ticket = cache.lookup("k", "p", &get("a")).unwrap_err();
        cache.fill("k", "p", get("a"), ticket, rows("1"));
        assert_eq!(&*cache.lookup("k", "p", &get("a")).unwrap()[0].2, "1");
        // Another partition's write leaves it alone.
        cache.begin_write("k", "q");
        cache.end_write("k", "q");
        assert!(cache.lookup("k", "p", &get("a")).is_ok());
        cache.begin_write("k", "p");
        assert!(cache.lookup("k", "p", &get("a")).is_err());
        cache.end_write("k", "p");
        assert!(cache.lookup("k", "p", &get("a")).is_err());
    }

    #[test]
    fn lookup_all_answers_only_when_every_query_is_cached() {
        let cache = ReadCache::default();
        let ticket = cache.lookup("k", "p", &get("a")).unwrap_err();
        cache.fill("k", "p", get("a"), ticket, rows("1"));
        // `b` is missing: no rows at all, and a ticket that fills both.
        let ticket = cache
            .lookup_all("k", "p", &[get("a"), get("b")])
            .unwrap_err();
        cache.fill("k", "p", get("b"), ticket, rows("2"));
        let both = cache.lookup_all("k", "p", &[get("b"), get("a")]).unwrap();
        assert_eq!((&*both[0][0].2, &*both[1][0].2), ("2", "1"));
        assert!(cache.lookup_all("k", "q", &[get("a")]).is_err());
        // A ticket from before a write fills nothing.
        let stale = cache.lookup_all("k", "p", &[get("c")]).unwrap_err();
        cache.begin_write("k", "p");
        cache.end_write("k", "p");
        cache.fill("k", "p", get("c"), stale, rows("3"));
        assert!(cache.lookup_all("k", "p", &[get("c")]).is_err());
        assert!(cache.lookup_all("k", "p", &[get("a")]).is_err());
    }

    #[test]
    fn a_read_that_overlapped_a_write_is_not_kept() {
        let cache = ReadCache::default();
        // Ticket taken before the write began: the rows may predate it.
        let early = cache.lookup("k", "p", &get("a")).unwrap_err();
        cache.begin_write("k", "p");
        // Ticket taken during the write: the rows may or may not include it.
        let during = cache.lookup("k", "p", &get("a")).unwrap_err();
        cache.fill("k", "p", get("a"), during, rows("?"));
        assert!(cache.lookup("k", "p", &get("a")).is_err());
        cache.end_write("k", "p");
        cache.fill("k", "p", get("a"), early, rows("old"));
        cache.fill("k", "p", get("a"), during, rows("?"));
        assert!(cache.lookup("k", "p", &get("a")).is_err());
        let after = cache.lookup("k", "p", &get("a")).unwrap_err();
        cache.fill("k", "p", get("a"), after, rows("new"));
        assert_eq!(&*cache.lookup("k", "p", &get("a")).unwrap()[0].2, "new");
    }

    #[test]
    fn a_reset_drops_entries_and_stale_tickets() {
        let cache = ReadCache::default();
        let ticket = cache.lookup("k", "p", &get("a")).unwrap_err();
        cache.fill("k", "p", get("a"), ticket, rows("1"));
        let stale = cache.lookup("k", "p", &get("b")).unwrap_err();
        // A partition nobody wrote to yet has no generation of its own: only the epoch
        // protects it.
        let unseen = cache.lookup("k", "fresh", &get("c")).unwrap_err();
        cache.begin_write_all();
        assert!(cache.lookup("k", "p", &get("a")).is_err());
        cache.end_write_all();
        cache.fill("k", "p", get("b"), stale, rows("2"));
        assert!(cache.lookup("k", "p", &get("b")).is_err());
        cache.fill("k", "fresh", get("c"), unseen, rows("3"));
        assert!(cache.lookup("k", "fresh", &get("c")).is_err());
    }

    #[test]
    fn large_scans_are_not_kept_and_the_total_is_bounded() {
        let cache = ReadCache::default();
        let big = "x".repeat(ENTRY_MAX_BYTES);
        let ticket = cache.lookup("k", "p", &get("big")).unwrap_err();
        cache.fill("k", "p", get("big"), ticket, rows(&big));
        assert!(cache.lookup("k", "p", &get("big")).is_err());
        let value = "y".repeat(ENTRY_MAX_BYTES / 2);
        for i in 0..(2 * TOTAL_MAX_BYTES / value.len()) {
            let q = get(&i.to_string());
            let ticket = cache.lookup("k", "p", &q).unwrap_err();
            cache.fill("k", "p", q, ticket, rows(&value));
            assert!(cache.state.lock().bytes <= TOTAL_MAX_BYTES);
        }
    }
}

//! The SQLite backend: schema and migrations, the one writer connection, the reader pool, and
//! the live change feed.
//!
//! Calls run synchronously inside the `async fn`s rather than on a blocking pool. That is a
//! deliberate trade: a read is a prepared, cached statement on an index (microseconds), and under
//! WAL with `synchronous=NORMAL` a commit appends to the WAL without an fsync, so hopping threads
//! would cost more than the call itself. `block_in_place` is avoided because it panics on the
//! current-thread runtime that tests use.
//!
//! **Architecture Invariant:** the schema is plain SQL that maps one-to-one onto PostgreSQL
//! (`records`, `changes`, `meta`); a PostgreSQL backend keeps the same tables and semantics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::broadcast;

use crate::cache::{ENTRY_MAX_BYTES, Query, ReadCache, Row, row_bytes};
use crate::{Change, ChangeKind, Op, Record, Store, StoreError, TypedRecord};

/// Schema migrations, applied in order; `PRAGMA user_version` counts how many have run. Append
/// only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the whole initial schema. `changes` is keyed by (revision, seq) because one commit writes
    // several changes under one revision. `meta.revision` is the last revision handed out; it
    // lives apart from `changes` so pruning and reset can never make a revision go back.
    "CREATE TABLE records (
        kind TEXT NOT NULL,
        partition TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, partition, key)
    ) WITHOUT ROWID;
    CREATE TABLE changes (
        revision INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        partition TEXT NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        op TEXT NOT NULL,
        PRIMARY KEY (revision, seq)
    ) WITHOUT ROWID;
    CREATE TABLE meta (
        name TEXT NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO meta (name, value) VALUES ('revision', 0);",
];

const OP_PUT: &str = "put";
const OP_DELETE: &str = "delete";

/// Tuning and durability knobs for [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `false` (default): `synchronous=NORMAL`. An acknowledged commit survives the process being
    /// killed (`kill -9`), but the last commits before a power loss or OS crash may be lost
    /// (the database itself stays consistent). `true`: `synchronous=FULL`, an fsync per commit,
    /// which survives power loss at the cost of commit latency.
    pub synchronous_full: bool,
    /// Read-only connections, so reads never wait behind a commit. Ignored in memory.
    pub readers: usize,
    /// How long a connection waits for a lock held by another process before failing.
    pub busy_timeout: Duration,
    /// How many of the most recent revisions keep their rows in `changes`.
    pub retain_revisions: u64,
    /// Pruning runs on every this-many-th commit, so its cost is spread thin.
    pub prune_every: u64,
    /// Live-feed buffer per subscriber; a subscriber further behind than this gets `Lagged`.
    pub feed_capacity: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous_full: false,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            retain_revisions: 100_000,
            prune_every: 1024,
            feed_capacity: 4096,
        }
    }
}

/// [`Store`] on SQLite: one writer connection behind a mutex, a pool of read-only connections.
/// Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for an in-memory store.
    path: Option<PathBuf>,
    writer: Mutex<Writer>,
    /// Empty for an in-memory store: reads then share the writer connection.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    feed: broadcast::Sender<Change>,
    options: SqliteOptions,
    /// Recent reads' rows; every commit and reset invalidates what it touches (see `cache.rs`).
    cache: ReadCache,
}

struct Writer {
    conn: Connection,
    commits_since_prune: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_sql_int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{n} does not fit in INTEGER")))
}

fn from_sql_int(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}: {n}")))
}

/// SQLite LIMIT takes a signed integer; anything past i64::MAX means "no limit" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating the file and its parent directories if needed) and migrates a database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Backend(format!("creating {}: {e}", parent.display())))?;
        }
        let mut conn = Connection::open(path).map_err(backend)?;
        configure(&conn, &options)?;
        set_page_size(&conn)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: journal_mode is {mode}, WAL is required",
                path.display()
            )));
        }
        let sync = if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(backend)?;
        migrate(&mut conn)?;

        // Opened after migration, so they never see a half-built schema.
        let mut readers = Vec::with_capacity(options.readers);
        for _ in 0..options.readers {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI;
            let reader = Connection::open_with_flags(path, flags).map_err(backend)?;
            configure(&reader, &options)?;
            readers.push(Mutex::new(reader));
        }
        Ok(Self::assemble(
            Some(path.to_owned()),
            conn,
            readers,
            options,
        ))
    }

    /// A private, empty in-memory database, for tests. It is one connection shared by reads and
    /// writes (behind the writer mutex): SQLite's shared-cache mode would allow several
    /// connections, but it locks whole tables and reports `SQLITE_LOCKED`, which `busy_timeout`
    /// does not retry, so readers would fail spuriously under concurrent writes. Calls are
    /// serialized instead, which is correct and fast enough for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteOptions {
            readers: 0,
            ..SqliteOptions::default()
        };
        let mut conn = Connection::open_in_memory().map_err(backend)?;
        configure(&conn, &options)?;
        set_page_size(&conn)?;
        migrate(&mut conn)?;
        Ok(Self::assemble(None, conn, Vec::new(), options))
    }

    fn assemble(
        path: Option<PathBuf>,
        conn: Connection,
        readers: Vec<Mutex<Connection>>,
        options: SqliteOptions,
    ) -> Self {
        let (feed, _) = broadcast::channel(options.feed_capacity.max(1));
        SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Writer {
                    conn,
                    commits_since_prune: 0,
                }),
                readers,
                next_reader: AtomicUsize::new(0),
                feed,
                options,
                cache: ReadCache::default(),
            }),
        }
    }

    /// The last revision handed out (0 before the first commit).
    pub fn current_revision(&self) -> Result<u64, StoreError> {
        self.read(read_revision)
    }

    /// Runs `f` on a free reader, trying each once round-robin before waiting on one, so
    /// concurrent reads spread over the pool instead of queueing behind the first connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let readers = &self.inner.readers;
        if readers.is_empty() {
            return f(&self.inner.writer.lock().conn);
        }
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        for i in 0..readers.len() {
            if let Some(conn) = readers[(start + i) % readers.len()].try_lock() {
                return f(&conn);
            }
        }
        f(&readers[start].lock())
    }

    fn partitions_sync(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT DISTINCT partition FROM records WHERE kind = ?1 ORDER BY partition",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![kind], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
    }

    fn get_sync(
        &self,
        kind: &str,
        partition: &str,
        key: &str,
    ) -> Result<Option<Record>, StoreError> {
        let query = Query::Get {
            key: key.to_owned(),
        };
        let row = match self.inner.cache.lookup(kind, partition, &query) {
            Ok(rows) => rows
                .first()
                .map(|(_, version, text)| (*version, text.clone())),
            Err(ticket) => {
                let row = self.read(|conn| {
                    let mut stmt = conn.prepare_cached(GET_SQL).map_err(backend)?;
                    point_read(&mut stmt, kind, partition, key)
                })?;
                let rows: Vec<Row> = row
                    .iter()
                    .map(|(version, text)| (key.to_owned(), *version, text.clone()))
                    .collect();
                self.inner
                    .cache
                    .fill(kind, partition, query, ticket, rows.into());
                row
            }
        };
        row.map(|(version, text)| {
            Ok(Record {
                kind: kind.to_owned(),
                partition: partition.to_owned(),
                key: key.to_owned(),
                version,
                value: parse_value(kind, partition, key, &text)?,
            })
        })
        .transpose()
    }

    /// Point reads of several keys: all from the cache when every one is cached, otherwise
    /// all from SQLite in one read transaction, so the answer is one state of the partition
    /// either way.
    fn get_many_as_sync<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        partition: &str,
        keys: &[String],
    ) -> Result<Vec<Option<TypedRecord<T>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let queries: Vec<Query> = keys
            .iter()
            .map(|key| Query::Get { key: key.clone() })
            .collect();
        let found: Vec<Arc<[Row]>> = match self.inner.cache.lookup_all(kind, partition, &queries) {
            Ok(cached) => cached,
            Err(ticket) => {
                let rows = self.read(|conn| {
                    // One transaction for every key: one snapshot, and one take of SQLite's
                    // shared-memory read lock instead of one per key.
                    let tx = conn.unchecked_transaction().map_err(backend)?;
                    let rows = {
                        let mut stmt = tx.prepare_cached(GET_SQL).map_err(backend)?;
                        keys.iter()
                            .map(|key| {
                                let row = point_read(&mut stmt, kind, partition, key)?;
                                let rows: Vec<Row> = row
                                    .into_iter()
                                    .map(|(version, text)| (key.clone(), version, text))
                                    .collect();
                                Ok(Arc::from(rows))
                            })
                            .collect::<Result<Vec<Arc<[Row]>>, StoreError>>()?
                    };
                    tx.commit().map_err(backend)?;
                    Ok(rows)
                })?;
                for (query, rows) in queries.into_iter().zip(&rows) {
                    self.inner
                        .cache
                        .fill(kind, partition, query, ticket, Arc::clone(rows));
                }
                rows
            }
        };
        found
            .iter()
            .map(|rows| {
                rows.first()
                    .map(|(key, version, text)| {
                        let value = serde_json::from_str(text).map_err(|e| {
                            StoreError::Corrupt(format!("{kind} {partition} {key}: {e}"))
                        })?;
                        Ok(TypedRecord {
                            key: key.clone(),
                            version: *version,
                            value,
                        })
                    })
                    .transpose()
            })
            .collect()
    }

    fn list_sync(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.scan_sync(
            kind,
            partition,
            prefix,
            start_after,
            limit,
            |key, version, text| {
                Ok(Record {
                    kind: kind.to_owned(),
                    partition: partition.to_owned(),
                    value: parse_value(kind, partition, &key, text)?,
                    key,
                    version,
                })
            },
        )
    }

    /// Like `list_sync`, each value decoded straight from its stored text into `T`.
    fn list_as_sync<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TypedRecord<T>>, StoreError> {
        self.scan_sync(
            kind,
            partition,
            prefix,
            start_after,
            limit,
            |key, version, text| {
                let value = serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("{kind} {partition} {key}: {e}")))?;
                Ok(TypedRecord {
                    key,
                    version,
                    value,
                })
            },
        )
    }

    /// The key-range scan both lists share; `decode` gets each row's key, version and the
    /// value's JSON text as SQLite holds it (no copy).
    fn scan_sync<R>(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        decode: impl Fn(String, u64, &str) -> Result<R, StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Both filters become one key range so the scan starts and stops on the primary key
        // instead of filtering the whole partition.
        let (lower, lower_inclusive) = match start_after {
            Some(after) if after >= prefix => (after, false),
            _ => (prefix, true),
        };
        let upper = prefix_successor(prefix);
        // `LIMIT +?4`, not `LIMIT ?4`: SQLite ties a plan to a bare bound LIMIT value, and the
        // statement cache clears bindings, so the plain form was recompiled on every call
        // (~20% of a ListClusters request under load). The unary plus keeps it an expression.
        let sql = match (lower_inclusive, upper.is_some()) {
            (true, false) => {
                "SELECT key, version, value FROM records
                 WHERE kind = ?1 AND partition = ?2 AND key >= ?3
                 ORDER BY key LIMIT +?4"
            }
            (false, false) => {
                "SELECT key, version, value FROM records
                 WHERE kind = ?1 AND partition = ?2 AND key > ?3
                 ORDER BY key LIMIT +?4"
            }
            (true, true) => {
                "SELECT key, version, value FROM records
                 WHERE kind = ?1 AND partition = ?2 AND key >= ?3 AND key < ?5
                 ORDER BY key LIMIT +?4"
            }
            (false, true) => {
                "SELECT key, version, value FROM records
                 WHERE kind = ?1 AND partition = ?2 AND key > ?3 AND key < ?5
                 ORDER BY key LIMIT +?4"
            }
        };
        let query = Query::Scan {
            prefix: prefix.to_owned(),
            start_after: start_after.map(str::to_owned),
            limit,
        };
        let ticket = match self.inner.cache.lookup(kind, partition, &query) {
            Ok(rows) => {
                return rows
                    .iter()
                    .map(|(key, version, text)| decode(key.clone(), *version, text))
                    .collect();
            }
            Err(ticket) => ticket,
        };
        // Rows are decoded straight from SQLite's buffer; a copy is kept for the cache only
        // while the scan stays small enough to be cached at all.
        let mut copy: Option<Vec<Row>> = Some(Vec::new());
        let mut copied_bytes = 0;
        let out = self.read(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
            let limit = sql_limit(limit);
            let mut rows = match &upper {
                Some(upper) => stmt.query(params![kind, partition, lower, limit, upper]),
                None => stmt.query(params![kind, partition, lower, limit]),
            }
            .map_err(backend)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                let key: String = row.get(0).map_err(backend)?;
                let version: i64 = row.get(1).map_err(backend)?;
                let text = row.get_ref(2).map_err(backend)?;
                let text = text
                    .as_str()
                    .map_err(|e| StoreError::Corrupt(format!("{kind} {partition} {key}: {e}")))?;
                let version = from_sql_int(version, "version")?;
                if let Some(rows) = &mut copy {
                    copied_bytes += row_bytes(&key, text);
                    if copied_bytes > ENTRY_MAX_BYTES {
                        copy = None;
                    } else {
                        rows.push((key.clone(), version, Box::from(text)));
                    }
                }
                out.push(decode(key, version, text)?);
            }
            Ok(out)
        })?;
        if let Some(rows) = copy {
            self.inner
                .cache
                .fill(kind, partition, query, ticket, rows.into());
        }
        Ok(out)
    }

    fn commit_sync(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        if ops.is_empty() {
            return self.current_revision();
        }
        let mut writer = self.inner.writer.lock();
        let writer = &mut *writer;
        let _writing = Writing::begin(&self.inner.cache, &ops);
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;

        // (kind, partition, key, version, change) for every op that changed something.
        let mut changed: Vec<(String, String, String, u64, ChangeKind)> =
            Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put {
                    kind,
                    partition,
                    key,
                    value,
                    expect,
                } => {
                    let found = current_version(&tx, &kind, &partition, &key)?;
                    if !expect.admits(found) {
                        return Err(conflict(kind, key, expect, found));
                    }
                    let version = found.map_or(1, |v| v + 1);
                    let sql_version = to_sql_int(version)?;
                    let text = serde_json::to_string(&value)
                        .map_err(|e| StoreError::Backend(format!("serializing value: {e}")))?;
                    tx.prepare_cached(
                        "INSERT INTO records (kind, partition, key, version, value)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (kind, partition, key)
                         DO UPDATE SET version = excluded.version, value = excluded.value",
                    )
                    .and_then(|mut s| s.execute(params![kind, partition, key, sql_version, text]))
                    .map_err(backend)?;
                    changed.push((kind, partition, key, version, ChangeKind::Put));
                }
                Op::Delete {
                    kind,
                    partition,
                    key,
                    expect,
                } => {
                    let found = current_version(&tx, &kind, &partition, &key)?;
                    if !expect.admits(found) {
                        return Err(conflict(kind, key, expect, found));
                    }
                    if let Some(version) = found {
                        tx.prepare_cached(
                            "DELETE FROM records WHERE kind = ?1 AND partition = ?2 AND key = ?3",
                        )
                        .and_then(|mut s| s.execute(params![kind, partition, key]))
                        .map_err(backend)?;
                        changed.push((kind, partition, key, version, ChangeKind::Delete));
                    }
                }
            }
        }

        if changed.is_empty() {
            // Only deletes of absent records: nothing to record, so no revision is spent.
            let revision = read_revision(&tx)?;
            tx.commit().map_err(backend)?;
            return Ok(revision);
        }

        let revision: i64 = tx
            .prepare_cached(
                "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(backend)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO changes (revision, seq, kind, partition, key, version, op)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(backend)?;
            for (seq, (kind, partition, key, version, change)) in changed.iter().enumerate() {
                let op = match change {
                    ChangeKind::Put => OP_PUT,
                    ChangeKind::Delete => OP_DELETE,
                };
                insert
                    .execute(params![
                        revision,
                        sql_limit(seq),
                        kind,
                        partition,
                        key,
                        to_sql_int(*version)?,
                        op
                    ])
                    .map_err(backend)?;
            }
        }

        writer.commits_since_prune += 1;
        let prune = writer.commits_since_prune >= self.inner.options.prune_every;
        if prune {
            let keep_from =
                revision.saturating_sub(sql_limit_u64(self.inner.options.retain_revisions));
            tx.prepare_cached("DELETE FROM changes WHERE revision <= ?1")
                .and_then(|mut s| s.execute(params![keep_from]))
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        if prune {
            writer.commits_since_prune = 0;
        }

        let revision = from_sql_int(revision, "revision")?;
        // Sent while still holding the writer lock, so subscribers see revisions in order.
        for (kind, partition, key, version, change) in changed {
            // An error only means nobody is subscribed right now.
            let _ = self.inner.feed.send(Change {
                revision,
                kind,
                partition,
                key,
                version,
                change,
            });
        }
        Ok(revision)
    }

    fn changes_since_sync(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = sql_limit_u64(after);
        self.read(|conn| {
            let mut out = Vec::new();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT revision, seq, kind, partition, key, version, op FROM changes
                     WHERE revision > ?1 ORDER BY revision, seq LIMIT +?2",
                )
                .map_err(backend)?;
            let mut last = None;
            let mut rows = stmt
                .query(params![after, sql_limit(limit)])
                .map_err(backend)?;
            while let Some(row) = rows.next().map_err(backend)? {
                let (seq, change) = change_from_row(row)?;
                last = Some((change.revision, seq));
                out.push(change);
            }
            drop(rows);
            // Finish the last commit if the limit cut it, so `after` never lands mid-commit.
            if let (true, Some((revision, seq))) = (out.len() >= limit, last) {
                let mut rest = conn
                    .prepare_cached(
                        "SELECT revision, seq, kind, partition, key, version, op FROM changes
                         WHERE revision = ?1 AND seq > ?2 ORDER BY seq",
                    )
                    .map_err(backend)?;
                let mut rows = rest
                    .query(params![to_sql_int(revision)?, seq])
                    .map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    out.push(change_from_row(row)?.1);
                }
            }
            Ok(out)
        })
    }

    fn reset_sync(&self) -> Result<(), StoreError> {
        let mut writer = self.inner.writer.lock();
        let _writing = Writing::begin_all(&self.inner.cache);
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        // `meta` stays: the revision counter must survive so revisions are never reused.
        tx.execute_batch("DELETE FROM records; DELETE FROM changes;")
            .map_err(backend)?;
        tx.commit().map_err(backend)
    }
}

impl Store for SqliteStore {
    async fn get(
        &self,
        kind: &str,
        partition: &str,
        key: &str,
    ) -> Result<Option<Record>, StoreError> {
        self.get_sync(kind, partition, key)
    }

    async fn list(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.list_sync(kind, partition, prefix, start_after, limit)
    }

    async fn list_as<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TypedRecord<T>>, StoreError> {
        self.list_as_sync(kind, partition, prefix, start_after, limit)
    }

    async fn get_many_as<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: &str,
        partition: &str,
        keys: &[String],
    ) -> Result<Vec<Option<TypedRecord<T>>>, StoreError> {
        self.get_many_as_sync(kind, partition, keys)
    }

    async fn partitions(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        self.partitions_sync(kind)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.commit_sync(ops)
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.changes_since_sync(after, limit)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.feed.subscribe()
    }

    async fn reset(&self) -> Result<(), StoreError> {
        self.reset_sync()
    }
}

/// The read cache's side of a write: `begin` before the transaction, and on drop — after it
/// committed, failed or conflicted — the matching end, for every `(kind, partition)` it touches.
struct Writing<'a> {
    cache: &'a ReadCache,
    /// `None`: every record (reset).
    touched: Option<Vec<(String, String)>>,
}

impl<'a> Writing<'a> {
    fn begin(cache: &'a ReadCache, ops: &[Op]) -> Self {
        let mut touched: Vec<(String, String)> = Vec::new();
        for op in ops {
            let (Op::Put {
                kind, partition, ..
            }
            | Op::Delete {
                kind, partition, ..
            }) = op;
            if !touched.iter().any(|(k, p)| k == kind && p == partition) {
                cache.begin_write(kind, partition);
                touched.push((kind.clone(), partition.clone()));
            }
        }
        Writing {
            cache,
            touched: Some(touched),
        }
    }

    fn begin_all(cache: &'a ReadCache) -> Self {
        cache.begin_write_all();
        Writing {
            cache,
            touched: None,
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        match &self.touched {
            Some(touched) => {
                for (kind, partition) in touched {
                    self.cache.end_write(kind, partition);
                }
            }
            None => self.cache.end_write_all(),
        }
    }
}

fn sql_limit_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn configure(conn: &Connection, options: &SqliteOptions) -> Result<(), StoreError> {
    conn.busy_timeout(options.busy_timeout).map_err(backend)?;
    // Every statement the store runs is a handful of fixed strings; keep them all prepared.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// `records` is a WITHOUT ROWID table, whose rows live in index pages: SQLite keeps at most
/// about a quarter of a page of a row there and moves the rest to overflow pages. With 4 KiB
/// pages that is ~1 KB, less than a task record (~1.4 KB), so every task read and write
/// touched a second, mostly empty page; 8 KiB pages keep records up to ~2 KB whole. Only a new
/// database takes it (an existing file keeps the page size it was created with).
fn set_page_size(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "page_size", 8192).map_err(backend)
}

/// Brings the schema up to date. Each migration runs in its own immediate transaction that
/// re-reads `user_version`, so two processes opening one file at once cannot both apply it.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let applied: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(backend)?;
        let applied = usize::try_from(applied)
            .map_err(|_| StoreError::Corrupt(format!("negative user_version {applied}")))?;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::Backend(format!(
                "database schema version {applied} is newer than this berth ({})",
                MIGRATIONS.len()
            )));
        }
        let Some(sql) = MIGRATIONS.get(applied) else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", sql_limit(applied + 1))
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(version = applied + 1, "applied store migration");
    }
}

/// A point read by primary key (`point_read` runs it).
const GET_SQL: &str = "SELECT version, value FROM records
                       WHERE kind = ?1 AND partition = ?2 AND key = ?3";

/// One record's version and value text, by [`GET_SQL`].
fn point_read(
    stmt: &mut rusqlite::CachedStatement<'_>,
    kind: &str,
    partition: &str,
    key: &str,
) -> Result<Option<(u64, Box<str>)>, StoreError> {
    let row = stmt
        .query_row(params![kind, partition, key], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(backend)?;
    row.map(|(version, text)| Ok((from_sql_int(version, "version")?, text.into_boxed_str())))
        .transpose()
}

fn read_revision(conn: &Connection) -> Result<u64, StoreError> {
    let revision: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE name = 'revision'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(backend)?;
    from_sql_int(revision, "revision")
}

fn current_version(
    conn: &Connection,
    kind: &str,
    partition: &str,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    let version: Option<i64> = conn
        .prepare_cached(
            "SELECT version FROM records WHERE kind = ?1 AND partition = ?2 AND key = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![kind, partition, key], |r| r.get(0))
                .optional()
        })
        .map_err(backend)?;
    version.map(|v| from_sql_int(v, "version")).transpose()
}

fn conflict(kind: String, key: String, expect: crate::Expect, found: Option<u64>) -> StoreError {
    StoreError::Conflict {
        kind,
        key,
        expected: expect.describe(),
        found: match found {
            Some(v) => format!("version {v}"),
            None => "absent".to_owned(),
        },
    }
}

fn parse_value(
    kind: &str,
    partition: &str,
    key: &str,
    text: &str,
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{kind} {partition} {key}: {e}")))
}

fn change_from_row(row: &rusqlite::Row<'_>) -> Result<(i64, Change), StoreError> {
    let revision: i64 = row.get(0).map_err(backend)?;
    let seq: i64 = row.get(1).map_err(backend)?;
    let op: String = row.get(6).map_err(backend)?;
    let change = match op.as_str() {
        OP_PUT => ChangeKind::Put,
        OP_DELETE => ChangeKind::Delete,
        other => return Err(StoreError::Corrupt(format!("unknown change op {other:?}"))),
    };
    Ok((
        seq,
        Change {
            revision: from_sql_int(revision, "revision")?,
            kind: row.get(2).map_err(backend)?,
            partition: row.get(3).map_err(backend)?,
            key: row.get(4).map_err(backend)?,
            version: from_sql_int(row.get(5).map_err(backend)?, "version")?,
            change,
        },
    ))
}

/// The smallest string greater than every string starting with `prefix`, or `None` when no such
/// bound exists (empty prefix, or only `char::MAX`). Code point order equals UTF-8 byte order,
/// so bumping the last bumpable character gives a bound in SQLite's BINARY collation.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            char::MAX => continue,
            // Skip the surrogate gap, which no `char` can hold.
            '\u{D7FF}' => '\u{E000}',
            c => char::from_u32(u32::from(c) + 1)?,
        };
        chars.push(next);
        return Some(chars.into_iter().collect());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_databases_use_pages_that_hold_a_task_record_whole() {
        let memory = SqliteStore::open_in_memory().unwrap();
        let size: i64 = memory
            .read(|c| {
                c.query_row("PRAGMA page_size", [], |r| r.get(0))
                    .map_err(backend)
            })
            .unwrap();
        assert_eq!(size, 8192);
        let dir = std::env::temp_dir().join(format!("berth-store-page-{}", std::process::id()));
        let path = dir.join("berth.db");
        drop(SqliteStore::open(&path).unwrap());
        // Reopening an existing database (in WAL mode) keeps working.
        drop(SqliteStore::open(&path).unwrap());
        let size: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(size, 8192);
    }

    #[test]
    fn prefix_successor_bounds_every_extension() {
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        for ext in ["", "\u{0}", "zzz", "\u{10FFFF}\u{10FFFF}", "é"] {
            let s = format!("ab{ext}");
            assert!(s.as_str() < "ac");
        }
    }

    #[test]
    fn migrations_run_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        assert_eq!(read_revision(&conn).unwrap(), 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Backend(_))));
    }
}

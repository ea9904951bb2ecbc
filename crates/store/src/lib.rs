//! berth's durable state: versioned JSON records, atomic multi-record commits with optimistic
//! concurrency, and a change feed that controllers watch.
//!
//! **API Boundary:** everything above this crate talks to the [`Store`] trait (usually through
//! [`AnyStore`]); nothing above it knows which database sits underneath.
//!
//! **Architecture Invariant:** the store does not interpret `kind` or `partition`; they are opaque
//! strings. Keys order by bytes (UTF-8 code point order), so pagination is stable across backends
//! (a PostgreSQL backend must use `COLLATE "C"` for the same order).
//!
//! **Architecture Invariant:** every committed transaction gets exactly one revision, strictly
//! greater than every revision handed out before it, including across [`Store::reset`].

mod any;
mod cache;
mod sqlite;
mod typed;

use std::future::Future;

pub use any::AnyStore;
pub use sqlite::{SqliteOptions, SqliteStore};
pub use typed::{MAX_ATTEMPTS, get_as, retry_on_conflict};

/// One stored record. `version` is 1 when the record is created and goes up by one on every update
/// of that record (a deleted and re-created record starts again at 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub kind: String,
    pub partition: String,
    pub key: String,
    pub version: u64,
    pub value: serde_json::Value,
}

/// A record of a list whose value was decoded straight into `T` ([`Store::list_as`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRecord<T> {
    pub key: String,
    pub version: u64,
    pub value: T,
}

/// The precondition a write asserts about the record it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Expect {
    /// The record must not exist.
    Absent,
    /// The record must exist with exactly this version.
    Version(u64),
    /// No precondition (last writer wins).
    Any,
}

impl Expect {
    fn describe(self) -> String {
        match self {
            Expect::Absent => "absent".to_owned(),
            Expect::Version(v) => format!("version {v}"),
            Expect::Any => "any".to_owned(),
        }
    }

    /// Whether a record currently at `found` (None: absent) satisfies this precondition.
    fn admits(self, found: Option<u64>) -> bool {
        match (self, found) {
            (Expect::Any, _) => true,
            (Expect::Absent, None) => true,
            (Expect::Version(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

/// One write inside a [`Store::commit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put {
        kind: String,
        partition: String,
        key: String,
        value: serde_json::Value,
        expect: Expect,
    },
    Delete {
        kind: String,
        partition: String,
        key: String,
        expect: Expect,
    },
}

impl Op {
    pub fn put(
        kind: impl Into<String>,
        partition: impl Into<String>,
        key: impl Into<String>,
        value: serde_json::Value,
        expect: Expect,
    ) -> Op {
        Op::Put {
            kind: kind.into(),
            partition: partition.into(),
            key: key.into(),
            value,
            expect,
        }
    }

    pub fn delete(
        kind: impl Into<String>,
        partition: impl Into<String>,
        key: impl Into<String>,
        expect: Expect,
    ) -> Op {
        Op::Delete {
            kind: kind.into(),
            partition: partition.into(),
            key: key.into(),
            expect,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One record-level change of a committed transaction. All changes of one commit share its
/// `revision`. For a delete, `version` is the version the record had when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub revision: u64,
    pub kind: String,
    pub partition: String,
    pub key: String,
    pub version: u64,
    pub change: ChangeKind,
}

#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// A write's [`Expect`] did not hold; nothing of the commit was written. Retry after re-reading.
    #[error("conflict on {kind} {key}: expected {expected}, found {found}")]
    Conflict {
        kind: String,
        key: String,
        expected: String,
        found: String,
    },
    /// The database failed. The text is for logs only: callers map this to an internal error and
    /// must not show it to clients.
    #[error("store backend error: {0}")]
    Backend(String),
    /// A stored value could not be read back (or a typed read did not match the stored shape).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// berth's durable state. Implemented by [`SqliteStore`] and, by dispatch, [`AnyStore`].
///
/// The futures are `Send` so generic callers can `tokio::spawn` work that holds a store.
pub trait Store: Send + Sync + 'static {
    fn get(
        &self,
        kind: &str,
        partition: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Records of one kind in one partition, in key order: keys `> start_after` (when given) that
    /// start with `prefix`, at most `limit` of them. To page, pass the last key returned as
    /// `start_after`.
    fn list(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Record>, StoreError>> + Send;

    /// Like [`Store::list`], each value decoded straight from its stored JSON into `T`, without
    /// an intermediate `serde_json::Value`: scans of thousands of records spend most of their
    /// time building and freeing those trees otherwise.
    fn list_as<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TypedRecord<T>>, StoreError>> + Send;

    /// Records of one kind in one partition by key, each decoded like [`Store::list_as`], in
    /// the order of `keys` (`None` for an absent one). All are read as of one moment, in one
    /// read transaction, rather than one transaction per key as separate `get`s would.
    fn get_many_as<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: &str,
        partition: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<TypedRecord<T>>>, StoreError>> + Send;

    /// The partitions holding at least one record of `kind`, in order: how a one-time upgrade
    /// of a kind's records finds them all.
    fn partitions(
        &self,
        kind: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Applies all ops or none, in order; each op's [`Expect`] is checked against the state left
    /// by the ops before it in the same commit. On any mismatch returns [`StoreError::Conflict`]
    /// and writes nothing. Returns the commit's revision. A commit that changes nothing (no ops, or
    /// only deletes of absent records) takes no revision and returns the current one.
    fn commit(&self, ops: Vec<Op>) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Changes with revision `> after`, in revision order, read from the durable change table so a
    /// watcher can resume after a restart. Returns at most `limit` changes, except that the changes
    /// of one commit are never split: the last revision returned is always complete, so resuming
    /// with `after` = the last revision seen never skips anything. Old changes are pruned (see
    /// [`SqliteOptions::retain_revisions`]); a watcher that falls further behind must re-list.
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;

    /// Live feed: every change is sent after its commit, in revision order. To watch without gaps,
    /// subscribe first, then catch up with [`Store::changes_since`], then drop live changes whose
    /// revision you have already seen. On `RecvError::Lagged`, catch up again with
    /// `changes_since(last_complete_revision)`.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change>;

    /// Deletes every record and change (test suites' `POST /_berth/reset`). Revisions keep
    /// increasing afterwards; they are never reused.
    fn reset(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

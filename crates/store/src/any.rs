//! `AnyStore`: the backend chosen at startup, as one concrete type callers can hold and clone.

use tokio::sync::broadcast;

use crate::{Change, Op, Record, SqliteStore, Store, StoreError, TypedRecord};

/// Enum dispatch over the backends (a PostgreSQL variant comes later). Cloning is cheap: every
/// backend keeps its state behind an `Arc`.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
}

impl From<SqliteStore> for AnyStore {
    fn from(store: SqliteStore) -> Self {
        AnyStore::Sqlite(store)
    }
}

impl Store for AnyStore {
    async fn get(
        &self,
        kind: &str,
        partition: &str,
        key: &str,
    ) -> Result<Option<Record>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.get(kind, partition, key).await,
        }
    }

    async fn list(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.list(kind, partition, prefix, start_after, limit).await,
        }
    }

    async fn list_as<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TypedRecord<T>>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.list_as(kind, partition, prefix, start_after, limit).await,
        }
    }

    async fn get_many_as<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: &str,
        partition: &str,
        keys: &[String],
    ) -> Result<Vec<Option<TypedRecord<T>>>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.get_many_as(kind, partition, keys).await,
        }
    }

    async fn partitions(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.partitions(kind).await,
        }
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.commit(ops).await,
        }
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.changes_since(after, limit).await,
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        match self {
            AnyStore::Sqlite(s) => s.subscribe(),
        }
    }

    async fn reset(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.reset().await,
        }
    }
}

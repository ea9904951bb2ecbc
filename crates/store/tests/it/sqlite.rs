//! SQLite-only behaviour: persistence across reopen, migrations, corruption, options.

use berth_store::{Expect, Op, SqliteOptions, SqliteStore, Store, StoreError};
use serde_json::json;

use crate::TempDir;

const K: &str = "test.thing";
const P: &str = "p";

fn user_version(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn data_and_revisions_survive_reopen() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("berth.db");
    let (rev, schema) = {
        let s = SqliteStore::open(&path).unwrap();
        s.commit(vec![Op::put(K, P, "a", json!({"x": 1}), Expect::Absent)])
            .await
            .unwrap();
        let rev = s
            .commit(vec![Op::put(
                K,
                P,
                "a",
                json!({"x": 2}),
                Expect::Version(1),
            )])
            .await
            .unwrap();
        (rev, user_version(&path))
    };
    assert!(schema >= 1);

    let s = SqliteStore::open(&path).unwrap();
    // The migration did not run again: the schema version is unchanged and the revision counter
    // (seeded by the first migration) was not reset.
    assert_eq!(user_version(&path), schema);
    assert_eq!(s.current_revision().unwrap(), rev);
    let rec = s.get(K, P, "a").await.unwrap().unwrap();
    assert_eq!((rec.version, rec.value), (2, json!({"x": 2})));
    assert_eq!(s.changes_since(0, 10).await.unwrap().len(), 2);
    let next = s
        .commit(vec![Op::put(K, P, "b", json!(null), Expect::Absent)])
        .await
        .unwrap();
    assert_eq!(next, rev + 1);

    // Revisions stay monotonic across reset followed by reopen, too.
    s.reset().await.unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    let after = s
        .commit(vec![Op::put(K, P, "c", json!(1), Expect::Absent)])
        .await
        .unwrap();
    assert_eq!(after, next + 1);
}

#[tokio::test]
async fn journal_is_wal() {
    let dir = TempDir::new("wal");
    let path = dir.path().join("berth.db");
    let _s = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn unparsable_value_is_corrupt_not_a_panic() {
    let dir = TempDir::new("corrupt");
    let path = dir.path().join("berth.db");
    let s = SqliteStore::open(&path).unwrap();
    s.commit(vec![Op::put(K, P, "a", json!(1), Expect::Absent)])
        .await
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE records SET value = '{not json' WHERE key = 'a'", [])
            .unwrap();
    }
    assert!(matches!(
        s.get(K, P, "a").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.list(K, P, "", None, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    // Writes do not read values, so the record can still be repaired.
    s.commit(vec![Op::put(K, P, "a", json!(2), Expect::Version(1))])
        .await
        .unwrap();
    assert_eq!(s.get(K, P, "a").await.unwrap().unwrap().value, json!(2));
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    let path = dir.path().join("berth.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 1000).unwrap();
    }
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn old_changes_are_pruned_but_revisions_are_not() {
    let dir = TempDir::new("prune");
    let options = SqliteOptions {
        retain_revisions: 10,
        prune_every: 5,
        synchronous_full: true,
        readers: 2,
        ..SqliteOptions::default()
    };
    let s = SqliteStore::open_with(&dir.path().join("berth.db"), options).unwrap();
    let mut last = 0;
    for i in 0..50 {
        last = s
            .commit(vec![Op::put(K, P, "k", json!(i), Expect::Any)])
            .await
            .unwrap();
    }
    let kept = s.changes_since(0, 1000).await.unwrap();
    assert!(kept.len() >= 10 && kept.len() < 15, "{}", kept.len());
    assert_eq!(kept.last().unwrap().revision, last);
    assert_eq!(s.get(K, P, "k").await.unwrap().unwrap().version, 50);
}

/// Readers on their own connections keep answering while writers hold the write lock, and never
/// see a half-applied commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_whole_commits_under_concurrent_writes() {
    let dir = TempDir::new("readers");
    let s = SqliteStore::open(&dir.path().join("berth.db")).unwrap();
    s.commit(vec![
        Op::put(K, P, "a", json!(0), Expect::Absent),
        Op::put(K, P, "b", json!(0), Expect::Absent),
    ])
    .await
    .unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 1..=300 {
                s.commit(vec![
                    Op::put(K, P, "a", json!(i), Expect::Any),
                    Op::put(K, P, "b", json!(i), Expect::Any),
                ])
                .await
                .unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..300 {
                    let both = s.list(K, P, "", None, 10).await.unwrap();
                    assert_eq!(both.len(), 2);
                    assert_eq!(both[0].value, both[1].value);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
}

/// A batched read is one state of the partition: while a writer moves two records together,
/// every `get_many_as` of both (from SQLite in one read transaction, or from the read cache
/// when both are cached) sees them equal, and never older than the last answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_many_sees_whole_commits_under_concurrent_writes() {
    let dir = TempDir::new("get-many");
    let s = SqliteStore::open(&dir.path().join("berth.db")).unwrap();
    s.commit(vec![
        Op::put(K, P, "a", json!(0), Expect::Absent),
        Op::put(K, P, "b", json!(0), Expect::Absent),
    ])
    .await
    .unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 1..=300 {
                s.commit(vec![
                    Op::put(K, P, "a", json!(i), Expect::Any),
                    Op::put(K, P, "b", json!(i), Expect::Any),
                ])
                .await
                .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let keys = ["a".to_owned(), "b".to_owned()];
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (s, keys) = (s.clone(), keys.clone());
            tokio::spawn(async move {
                let mut last = 0;
                for i in 0..1000 {
                    // Some reads have one of the two keys cached by a plain get first, so a
                    // batch may find part of itself in the cache.
                    if (i + reader) % 3 == 0 {
                        s.get(K, P, "a").await.unwrap();
                    }
                    let both = s.get_many_as::<u64>(K, P, &keys).await.unwrap();
                    let [Some(a), Some(b)] = &both[..] else {
                        panic!("a record is missing: {both:?}");
                    };
                    assert_eq!(a.value, b.value, "a batch saw half a commit");
                    assert!(a.value >= last, "a batch went back");
                    last = a.value;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    let both = s.get_many_as::<u64>(K, P, &keys).await.unwrap();
    assert_eq!(both[0].as_ref().map(|r| r.value), Some(300));
}

/// The read cache (`cache.rs`) must never answer older than SQLite would: while readers keep
/// the same get and scan cached, every acknowledged commit is visible to the next read, and no
/// reader ever sees a version go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_reads_never_lag_an_acknowledged_commit() {
    let dir = TempDir::new("cache");
    let s = SqliteStore::open(&dir.path().join("berth.db")).unwrap();
    s.commit(vec![Op::put(K, P, "a", json!(0), Expect::Absent)])
        .await
        .unwrap();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let (mut last_get, mut last_list) = (0, 0);
                for _ in 0..2000 {
                    let got = s.get(K, P, "a").await.unwrap().unwrap().version;
                    let listed = s.list(K, P, "", None, 10).await.unwrap()[0].version;
                    assert!(
                        got >= last_get && listed >= last_list,
                        "a version went back"
                    );
                    (last_get, last_list) = (got, listed);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for _ in 0..200 {
        let current = s.get(K, P, "a").await.unwrap().unwrap();
        let next = current.value.as_u64().unwrap() + 1;
        s.commit(vec![Op::put(
            K,
            P,
            "a",
            json!(next),
            Expect::Version(current.version),
        )])
        .await
        .unwrap();
        let got = s.get(K, P, "a").await.unwrap().unwrap();
        assert_eq!(got.value, json!(next));
        let listed = s.list(K, P, "", None, 10).await.unwrap();
        assert_eq!(listed[0].value, json!(next));
        let typed = s.list_as::<u64>(K, P, "", None, 10).await.unwrap();
        assert_eq!(typed[0].value, next);
        tokio::task::yield_now().await;
    }
    for r in readers {
        r.await.unwrap();
    }
    // A reset is a write too.
    s.reset().await.unwrap();
    assert!(s.get(K, P, "a").await.unwrap().is_none());
    assert!(s.list(K, P, "", None, 10).await.unwrap().is_empty());
}

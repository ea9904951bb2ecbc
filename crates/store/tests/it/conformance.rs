//! The behaviour every `Store` backend must show, run against each backend through `AnyStore`.

use std::collections::BTreeSet;

use berth_store::{
    AnyStore, Change, ChangeKind, Expect, Op, SqliteStore, Store, StoreError, get_as,
    retry_on_conflict,
};
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

const K: &str = "test.thing";
const P: &str = "000000000000/us-east-1";

/// Instantiates every listed scenario once per backend configuration.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = berth_store::AnyStore::from(
                        berth_store::SqliteStore::open_in_memory().unwrap(),
                    );
                    super::$name(store).await;
                }
            )*
        }
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = crate::TempDir::new(stringify!($name));
                    // A nested path also checks that `open` creates parent directories.
                    let path = dir.path().join("nested/dir/berth.db");
                    let store = berth_store::AnyStore::from(
                        berth_store::SqliteStore::open(&path).unwrap(),
                    );
                    super::$name(store).await;
                }
            )*
        }
    };
}

suite!(
    put_get_versions,
    expect_mismatch_conflicts,
    multi_op_commit_is_atomic,
    ops_in_one_commit_see_each_other,
    delete_semantics,
    list_order_prefix_pagination,
    list_is_scoped_to_kind_and_partition,
    partitions_are_those_holding_a_kind,
    reset_clears_and_revisions_keep_rising,
    concurrent_increments_lose_nothing,
    subscribe_sees_changes_in_order,
    changes_since_resumes_and_never_splits_a_commit,
    typed_helpers,
    get_many_answers_each_key_in_order,
    futures_are_send,
);

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

async fn put<S: Store>(s: &S, key: &str, value: serde_json::Value, expect: Expect) -> u64 {
    s.commit(vec![Op::put(K, P, key, value, expect)])
        .await
        .unwrap()
}

async fn put_get_versions<S: Store>(s: S) {
    assert_eq!(s.get(K, P, "a").await.unwrap(), None);
    let r1 = put(&s, "a", json!({"n": 1}), Expect::Absent).await;
    let rec = s.get(K, P, "a").await.unwrap().unwrap();
    assert_eq!(
        (rec.kind.as_str(), rec.partition.as_str(), rec.key.as_str()),
        (K, P, "a")
    );
    assert_eq!(rec.version, 1);
    assert_eq!(rec.value, json!({"n": 1}));

    let r2 = put(&s, "a", json!({"n": 2}), Expect::Version(1)).await;
    let r3 = put(&s, "a", json!({"n": 3}), Expect::Any).await;
    assert!(r1 < r2 && r2 < r3);
    let rec = s.get(K, P, "a").await.unwrap().unwrap();
    assert_eq!((rec.version, rec.value), (3, json!({"n": 3})));

    // Arbitrary JSON survives the round trip, key order included.
    let odd = json!({"z": [1, 2.5, null, true], "a": "é\u{0}\"", "m": {"nested": {}}});
    put(&s, "odd", odd.clone(), Expect::Absent).await;
    let back = s.get(K, P, "odd").await.unwrap().unwrap().value;
    assert_eq!(back, odd);
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        serde_json::to_string(&odd).unwrap()
    );
}

async fn expect_mismatch_conflicts<S: Store>(s: S) {
    put(&s, "a", json!(1), Expect::Absent).await;
    let before = s.changes_since(0, 100).await.unwrap();

    assert!(is_conflict(
        s.commit(vec![Op::put(K, P, "a", json!(2), Expect::Absent)])
            .await
    ));
    assert!(is_conflict(
        s.commit(vec![Op::put(K, P, "a", json!(2), Expect::Version(2))])
            .await
    ));
    assert!(is_conflict(
        s.commit(vec![Op::put(K, P, "b", json!(2), Expect::Version(1))])
            .await
    ));
    match s
        .commit(vec![Op::put(K, P, "a", json!(2), Expect::Version(7))])
        .await
    {
        Err(StoreError::Conflict {
            kind,
            key,
            expected,
            found,
        }) => {
            assert_eq!((kind.as_str(), key.as_str()), (K, "a"));
            assert!(expected.contains('7'), "{expected}");
            assert!(found.contains('1'), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    let rec = s.get(K, P, "a").await.unwrap().unwrap();
    assert_eq!((rec.version, rec.value), (1, json!(1)));
    assert_eq!(s.get(K, P, "b").await.unwrap(), None);
    assert_eq!(s.changes_since(0, 100).await.unwrap(), before);
}

async fn multi_op_commit_is_atomic<S: Store>(s: S) {
    put(&s, "x", json!("x1"), Expect::Absent).await;
    let rx_before = s.changes_since(0, 100).await.unwrap();
    let mut rx = s.subscribe();

    // The first op alone would succeed; the second conflicts, so neither may land.
    let r = s
        .commit(vec![
            Op::put(K, P, "x", json!("x2"), Expect::Version(1)),
            Op::put(K, P, "y", json!("y1"), Expect::Version(3)),
            Op::put(K, P, "z", json!("z1"), Expect::Absent),
        ])
        .await;
    assert!(is_conflict(r));
    assert_eq!(s.get(K, P, "x").await.unwrap().unwrap().value, json!("x1"));
    assert_eq!(s.get(K, P, "y").await.unwrap(), None);
    assert_eq!(s.get(K, P, "z").await.unwrap(), None);
    assert_eq!(s.changes_since(0, 100).await.unwrap(), rx_before);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // Same with a delete as the conflicting second op.
    let r = s
        .commit(vec![
            Op::put(K, P, "z", json!("z1"), Expect::Absent),
            Op::delete(K, P, "x", Expect::Version(9)),
        ])
        .await;
    assert!(is_conflict(r));
    assert_eq!(s.get(K, P, "z").await.unwrap(), None);
    assert!(s.get(K, P, "x").await.unwrap().is_some());

    // And when all hold, all land under one revision.
    let rev = s
        .commit(vec![
            Op::put(K, P, "x", json!("x2"), Expect::Version(1)),
            Op::put(K, P, "y", json!("y1"), Expect::Absent),
            Op::put("other.kind", P, "x", json!(0), Expect::Any),
        ])
        .await
        .unwrap();
    let got: Vec<Change> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
    assert!(got.iter().all(|c| c.revision == rev));
    assert_eq!(got[0].version, 2);
    assert_eq!(got[1].version, 1);
}

async fn ops_in_one_commit_see_each_other<S: Store>(s: S) {
    // Each op's Expect is checked against the state the earlier ops of the commit left.
    s.commit(vec![
        Op::put(K, P, "a", json!(1), Expect::Absent),
        Op::put(K, P, "a", json!(2), Expect::Version(1)),
    ])
    .await
    .unwrap();
    let rec = s.get(K, P, "a").await.unwrap().unwrap();
    assert_eq!((rec.version, rec.value), (2, json!(2)));

    s.commit(vec![
        Op::delete(K, P, "a", Expect::Version(2)),
        Op::put(K, P, "a", json!("new"), Expect::Absent),
    ])
    .await
    .unwrap();
    let rec = s.get(K, P, "a").await.unwrap().unwrap();
    assert_eq!((rec.version, rec.value), (1, json!("new")));
}

async fn delete_semantics<S: Store>(s: S) {
    put(&s, "a", json!(1), Expect::Absent).await;
    put(&s, "a", json!(2), Expect::Any).await;
    assert!(is_conflict(
        s.commit(vec![Op::delete(K, P, "a", Expect::Version(1))])
            .await
    ));
    assert!(is_conflict(
        s.commit(vec![Op::delete(K, P, "a", Expect::Absent)]).await
    ));
    let mut rx = s.subscribe();
    let rev = s
        .commit(vec![Op::delete(K, P, "a", Expect::Version(2))])
        .await
        .unwrap();
    assert_eq!(s.get(K, P, "a").await.unwrap(), None);
    let c = rx.try_recv().unwrap();
    assert_eq!(
        (c.revision, c.version, c.change),
        (rev, 2, ChangeKind::Delete)
    );

    // Deleting what is not there changes nothing, so no revision is spent.
    assert!(is_conflict(
        s.commit(vec![Op::delete(K, P, "a", Expect::Version(2))])
            .await
    ));
    let again = s
        .commit(vec![Op::delete(K, P, "a", Expect::Any)])
        .await
        .unwrap();
    assert_eq!(again, rev);
    assert_eq!(s.commit(vec![]).await.unwrap(), rev);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // Re-created records start over at version 1.
    put(&s, "a", json!(3), Expect::Absent).await;
    assert_eq!(s.get(K, P, "a").await.unwrap().unwrap().version, 1);
}

async fn list_order_prefix_pagination<S: Store>(s: S) {
    let keys = [
        "b",
        "a",
        "a/2",
        "a/10",
        "a/1",
        "A",
        "ab",
        "é",
        "z",
        "a\u{10FFFF}",
        "a/",
        "",
    ];
    let ops = keys
        .iter()
        .map(|k| Op::put(K, P, *k, json!({ "k": k }), Expect::Absent))
        .collect();
    s.commit(ops).await.unwrap();

    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort(); // str order is byte order
    let all = s.list(K, P, "", None, 100).await.unwrap();
    let got: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(got, sorted);
    assert!(all.iter().all(|r| r.value == json!({"k": r.key})));

    let keys_of = |v: Vec<berth_store::Record>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(
        keys_of(s.list(K, P, "a/", None, 100).await.unwrap()),
        ["a/", "a/1", "a/10", "a/2"]
    );
    assert_eq!(
        keys_of(s.list(K, P, "a", None, 100).await.unwrap()),
        ["a", "a/", "a/1", "a/10", "a/2", "ab", "a\u{10FFFF}"]
    );
    assert_eq!(
        keys_of(s.list(K, P, "a/", Some("a/1"), 100).await.unwrap()),
        ["a/10", "a/2"]
    );
    // start_after before the prefix range, and past it.
    assert_eq!(
        keys_of(s.list(K, P, "a/", Some("A"), 2).await.unwrap()),
        ["a/", "a/1"]
    );
    assert!(s.list(K, P, "a/", Some("b"), 100).await.unwrap().is_empty());
    assert!(s.list(K, P, "nope", None, 100).await.unwrap().is_empty());
    assert!(s.list(K, P, "", None, 0).await.unwrap().is_empty());
    assert_eq!(
        keys_of(s.list(K, P, "\u{10FFFF}", None, 100).await.unwrap()),
        Vec::<String>::new()
    );

    // Paging with start_after = last key visits everything once, in order.
    for page in 1..=5 {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = s.list(K, P, "", after.as_deref(), page).await.unwrap();
            assert!(batch.len() <= page);
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            seen.extend(batch.into_iter().map(|r| r.key));
        }
        assert_eq!(seen, sorted);
    }
}

async fn list_is_scoped_to_kind_and_partition<S: Store>(s: S) {
    s.commit(vec![
        Op::put(K, P, "k", json!(1), Expect::Absent),
        Op::put(K, "other", "k", json!(2), Expect::Absent),
        Op::put("test.thingy", P, "k", json!(3), Expect::Absent),
        Op::put("test", P, "k", json!(4), Expect::Absent),
    ])
    .await
    .unwrap();
    let got = s.list(K, P, "", None, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, json!(1));
    assert_eq!(
        s.get(K, "other", "k").await.unwrap().unwrap().value,
        json!(2)
    );
}

async fn reset_clears_and_revisions_keep_rising<S: Store>(s: S) {
    let r1 = put(&s, "a", json!(1), Expect::Absent).await;
    let r2 = put(&s, "b", json!(1), Expect::Absent).await;
    s.reset().await.unwrap();
    assert_eq!(s.get(K, P, "a").await.unwrap(), None);
    assert!(s.list(K, P, "", None, 10).await.unwrap().is_empty());
    assert!(s.changes_since(0, 10).await.unwrap().is_empty());

    let r3 = put(&s, "a", json!(2), Expect::Absent).await;
    assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
    assert_eq!(s.get(K, P, "a").await.unwrap().unwrap().version, 1);
    let changes = s.changes_since(0, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].revision, r3);
}

async fn concurrent_increments_lose_nothing<S: Store + Clone>(s: S) {
    const TASKS: u64 = 16;
    const EACH: u64 = 50;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..EACH {
                retry_on_conflict(&s, || async {
                    let cur = get_as::<u64, _>(&s, K, P, "counter").await?;
                    // Give other tasks a chance to interleave between read and write.
                    tokio::task::yield_now().await;
                    let (n, expect) = match cur {
                        Some((n, v)) => (n + 1, Expect::Version(v)),
                        None => (1, Expect::Absent),
                    };
                    Ok::<_, StoreError>((vec![Op::put(K, P, "counter", json!(n), expect)], n))
                })
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let (n, version) = get_as::<u64, _>(&s, K, P, "counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, TASKS * EACH);
    assert_eq!(version, TASKS * EACH);
}

async fn subscribe_sees_changes_in_order<S: Store + Clone>(s: S) {
    let mut rx = s.subscribe();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    s.commit(vec![
                        Op::put(K, P, format!("w{w}"), json!(i), Expect::Any),
                        Op::put(K, P, format!("w{w}-{i}"), json!(i), Expect::Absent),
                    ])
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut live = Vec::new();
    while let Ok(c) = rx.try_recv() {
        live.push(c);
    }
    assert_eq!(live.len(), 200);
    for pair in live.windows(2) {
        assert!(pair[0].revision <= pair[1].revision);
    }
    let revisions: BTreeSet<u64> = live.iter().map(|c| c.revision).collect();
    assert_eq!(revisions.len(), 100);
    // The durable feed says exactly what the live one said.
    assert_eq!(s.changes_since(0, 1000).await.unwrap(), live);
    let c = &live[1];
    assert_eq!((c.kind.as_str(), c.partition.as_str()), (K, P));
    assert_eq!((c.version, c.change), (1, ChangeKind::Put));
}

async fn changes_since_resumes_and_never_splits_a_commit<S: Store>(s: S) {
    let mut revs = Vec::new();
    for i in 0..5 {
        let ops = (0..3)
            .map(|j| Op::put(K, P, format!("{i}-{j}"), json!(j), Expect::Absent))
            .collect();
        revs.push(s.commit(ops).await.unwrap());
    }
    let all = s.changes_since(0, 1000).await.unwrap();
    assert_eq!(all.len(), 15);

    let tail = s.changes_since(revs[2], 1000).await.unwrap();
    assert_eq!(tail, all[9..]);
    assert!(s.changes_since(revs[4], 10).await.unwrap().is_empty());
    assert!(s.changes_since(0, 0).await.unwrap().is_empty());

    // A limit that cuts a commit is stretched to finish it, so resuming loses nothing.
    for limit in 1..=7 {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let batch = s.changes_since(after, limit).await.unwrap();
            let Some(last) = batch.last() else { break };
            assert!(batch.len() < limit + 3);
            after = last.revision;
            seen.extend(batch);
        }
        assert_eq!(seen, all, "limit {limit}");
    }
}

async fn typed_helpers<S: Store>(s: S) {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Cluster {
        name: String,
        tasks: u32,
    }
    put(
        &s,
        "c",
        json!({"name": "default", "tasks": 3}),
        Expect::Absent,
    )
    .await;
    put(&s, "bad", json!({"name": 5}), Expect::Absent).await;
    let got = get_as::<Cluster, _>(&s, K, P, "c").await.unwrap();
    assert_eq!(
        got,
        Some((
            Cluster {
                name: "default".into(),
                tasks: 3
            },
            1
        ))
    );
    assert!(
        get_as::<Cluster, _>(&s, K, P, "nope")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        get_as::<Cluster, _>(&s, K, P, "bad").await,
        Err(StoreError::Corrupt(_))
    ));

    // An error from the closure is returned at once; no ops means nothing is committed.
    #[derive(Debug)]
    enum AppError {
        NotFound,
        Store(StoreError),
    }
    impl From<StoreError> for AppError {
        fn from(e: StoreError) -> Self {
            AppError::Store(e)
        }
    }
    let mut calls = 0;
    let r: Result<(), AppError> = retry_on_conflict(&s, || {
        calls += 1;
        async { Err(AppError::NotFound) }
    })
    .await;
    assert!(matches!(r, Err(AppError::NotFound)));
    assert_eq!(calls, 1);
    let r: Result<&str, AppError> =
        retry_on_conflict(&s, || async { Ok((vec![], "nothing")) }).await;
    assert_eq!(r.unwrap(), "nothing");

    // A closure that always conflicts gives up with the conflict after MAX_ATTEMPTS tries.
    let mut calls = 0;
    let r: Result<(), AppError> = retry_on_conflict(&s, || {
        calls += 1;
        async { Ok((vec![Op::put(K, P, "c", json!(0), Expect::Absent)], ())) }
    })
    .await;
    assert!(matches!(
        r,
        Err(AppError::Store(StoreError::Conflict { .. }))
    ));
    assert_eq!(calls, berth_store::MAX_ATTEMPTS);
}

async fn get_many_answers_each_key_in_order<S: Store>(s: S) {
    let keys = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    let answer = |got: Vec<Option<berth_store::TypedRecord<u64>>>| {
        got.into_iter()
            .map(|r| r.map(|r| (r.key, r.version, r.value)))
            .collect::<Vec<_>>()
    };
    assert!(s.get_many_as::<u64>(K, P, &[]).await.unwrap().is_empty());
    s.commit(vec![
        Op::put(K, P, "a", json!(1), Expect::Absent),
        Op::put(K, P, "b", json!(2), Expect::Absent),
        Op::put(K, "other", "c", json!(3), Expect::Absent),
        Op::put("test.other", P, "c", json!(4), Expect::Absent),
    ])
    .await
    .unwrap();
    let want = vec![
        Some(("b".to_owned(), 1, 2)),
        None,
        Some(("a".to_owned(), 1, 1)),
        Some(("b".to_owned(), 1, 2)),
    ];
    // Twice: the second answer comes from the read cache.
    for _ in 0..2 {
        let got = s
            .get_many_as::<u64>(K, P, &keys(&["b", "c", "a", "b"]))
            .await
            .unwrap();
        assert_eq!(answer(got), want);
    }
    // A commit is seen by the next read, cached or not.
    s.commit(vec![
        Op::put(K, P, "a", json!(10), Expect::Version(1)),
        Op::put(K, P, "c", json!(30), Expect::Absent),
        Op::delete(K, P, "b", Expect::Version(1)),
    ])
    .await
    .unwrap();
    let got = s
        .get_many_as::<u64>(K, P, &keys(&["a", "b", "c"]))
        .await
        .unwrap();
    assert_eq!(
        answer(got),
        vec![
            Some(("a".to_owned(), 2, 10)),
            None,
            Some(("c".to_owned(), 1, 30))
        ]
    );
    // A value of the wrong shape is corrupt, not a panic.
    s.commit(vec![Op::put(K, P, "bad", json!("text"), Expect::Absent)])
        .await
        .unwrap();
    assert!(matches!(
        s.get_many_as::<u64>(K, P, &keys(&["a", "bad"])).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// Generic callers must be able to move store work onto other tasks.
async fn futures_are_send<S: Store + Clone>(s: S) {
    let h = tokio::spawn({
        let s = s.clone();
        async move {
            s.commit(vec![Op::put(K, P, "spawned", json!(true), Expect::Absent)])
                .await
                .unwrap();
            s.list(K, P, "", Some(""), 10).await.unwrap().len()
        }
    });
    assert_eq!(h.await.unwrap(), 1);
    let _: AnyStore = SqliteStore::open_in_memory().unwrap().into();
}

async fn partitions_are_those_holding_a_kind<S: Store>(s: S) {
    assert_eq!(s.partitions(K).await.unwrap(), Vec::<String>::new());
    s.commit(vec![
        Op::put(K, "b/us-east-1", "x", json!(1), Expect::Absent),
        Op::put(K, "a/eu-west-1", "x", json!(1), Expect::Absent),
        Op::put(K, "a/eu-west-1", "y", json!(1), Expect::Absent),
        Op::put("test.other", "c/us-east-1", "x", json!(1), Expect::Absent),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.partitions(K).await.unwrap(),
        vec!["a/eu-west-1".to_string(), "b/us-east-1".to_string()]
    );
    s.commit(vec![Op::delete(K, "b/us-east-1", "x", Expect::Any)])
        .await
        .unwrap();
    assert_eq!(
        s.partitions(K).await.unwrap(),
        vec!["a/eu-west-1".to_string()]
    );
}

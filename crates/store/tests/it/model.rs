//! Model-based property test: random op sequences against the store and against a plain
//! `BTreeMap` must agree on every result, on the stored state, and on the change feed.

use std::collections::BTreeMap;

use berth_store::{Change, ChangeKind, Expect, Op, SqliteStore, Store, StoreError};
use proptest::prelude::*;
use serde_json::{Value, json};

type Addr = (String, String, String);

#[derive(Default, Clone)]
struct Model {
    records: BTreeMap<Addr, (u64, Value)>,
    revision: u64,
    changes: Vec<Change>,
}

impl Model {
    /// Mirrors the documented semantics: ops apply in order, each checked against the state the
    /// earlier ones left; any mismatch discards the whole commit.
    fn commit(&mut self, ops: &[Op]) -> Result<u64, ()> {
        let mut next = self.records.clone();
        let mut changed = Vec::new();
        for op in ops {
            let (addr, expect) = match op {
                Op::Put {
                    kind,
                    partition,
                    key,
                    expect,
                    ..
                }
                | Op::Delete {
                    kind,
                    partition,
                    key,
                    expect,
                } => ((kind.clone(), partition.clone(), key.clone()), *expect),
            };
            let found = next.get(&addr).map(|(v, _)| *v);
            let ok = match (expect, found) {
                (Expect::Any, _) | (Expect::Absent, None) => true,
                (Expect::Version(w), Some(h)) => w == h,
                _ => false,
            };
            if !ok {
                return Err(());
            }
            match op {
                Op::Put { value, .. } => {
                    let version = found.map_or(1, |v| v + 1);
                    next.insert(addr.clone(), (version, value.clone()));
                    changed.push((addr, version, ChangeKind::Put));
                }
                Op::Delete { .. } => {
                    if let Some(version) = found {
                        next.remove(&addr);
                        changed.push((addr, version, ChangeKind::Delete));
                    }
                }
            }
        }
        self.records = next;
        if !changed.is_empty() {
            self.revision += 1;
            for ((kind, partition, key), version, change) in changed {
                self.changes.push(Change {
                    revision: self.revision,
                    kind,
                    partition,
                    key,
                    version,
                    change,
                });
            }
        }
        Ok(self.revision)
    }

    fn list(
        &self,
        kind: &str,
        partition: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, u64, Value)> {
        self.records
            .iter()
            .filter(|((k, p, key), _)| {
                k == kind
                    && p == partition
                    && key.starts_with(prefix)
                    && after.is_none_or(|a| key.as_str() > a)
            })
            .take(limit)
            .map(|((_, _, key), (v, val))| (key.clone(), *v, val.clone()))
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Commit(Vec<Op>),
    List {
        kind: String,
        partition: String,
        prefix: String,
        after: Option<String>,
        limit: usize,
    },
    GetMany {
        kind: String,
        partition: String,
        keys: Vec<String>,
    },
    Reset,
}

fn kind() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["k1", "k2"]).prop_map(String::from)
}

fn partition() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["p1", "p2"]).prop_map(String::from)
}

/// Few distinct characters, so keys collide, share prefixes and exercise non-ASCII ordering.
fn key() -> impl Strategy<Value = String> {
    "[ab/é\u{10FFFF}]{0,3}"
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Absent),
        Just(Expect::Any),
        (0u64..4).prop_map(Expect::Version),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (kind(), partition(), key(), any::<i32>(), expect())
            .prop_map(|(k, p, key, n, e)| Op::put(k, p, key, json!({ "n": n }), e)),
        1 => (kind(), partition(), key(), expect()).prop_map(|(k, p, key, e)| Op::delete(k, p, key, e)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => prop::collection::vec(op(), 0..4).prop_map(Step::Commit),
        3 => (kind(), partition(), key(), prop::option::of(key()), 0usize..6).prop_map(
            |(kind, partition, prefix, after, limit)| Step::List { kind, partition, prefix, after, limit }
        ),
        2 => (kind(), partition(), prop::collection::vec(key(), 0..4))
            .prop_map(|(kind, partition, keys)| Step::GetMany { kind, partition, keys }),
        1 => Just(Step::Reset),
    ]
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open_in_memory().unwrap();
        let mut model = Model::default();
        // Changes before the last reset are gone from the store; the model forgets them too.
        let mut reset_at = 0;
        for step in steps {
            match step {
                Step::Commit(ops) => {
                    let want = model.commit(&ops);
                    let got = store.commit(ops).await;
                    match (want, got) {
                        (Ok(w), Ok(g)) => prop_assert_eq!(w, g),
                        (Err(()), Err(StoreError::Conflict { .. })) => {}
                        (w, g) => prop_assert!(false, "model {:?}, store {:?}", w, g),
                    }
                }
                Step::List {
                    kind,
                    partition,
                    prefix,
                    after,
                    limit,
                } => {
                    let want = model.list(&kind, &partition, &prefix, after.as_deref(), limit);
                    let got: Vec<_> = store
                        .list(&kind, &partition, &prefix, after.as_deref(), limit)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.key, r.version, r.value))
                        .collect();
                    prop_assert_eq!(want, got);
                }
                Step::GetMany {
                    kind,
                    partition,
                    keys,
                } => {
                    let want: Vec<_> = keys
                        .iter()
                        .map(|key| {
                            model
                                .records
                                .get(&(kind.clone(), partition.clone(), key.clone()))
                                .map(|(version, value)| (key.clone(), *version, value.clone()))
                        })
                        .collect();
                    let got: Vec<_> = store
                        .get_many_as::<Value>(&kind, &partition, &keys)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|r| r.map(|r| (r.key, r.version, r.value)))
                        .collect();
                    prop_assert_eq!(want, got);
                }
                Step::Reset => {
                    store.reset().await.unwrap();
                    model.records.clear();
                    reset_at = model.changes.len();
                }
            }
            for ((k, p, key), (version, value)) in &model.records {
                let rec = store.get(k, p, key).await.unwrap();
                prop_assert_eq!(
                    rec.map(|r| (r.version, r.value)),
                    Some((*version, value.clone()))
                );
            }
        }
        for k in ["k1", "k2"] {
            for p in ["p1", "p2"] {
                let want = model.list(k, p, "", None, usize::MAX);
                let got: Vec<_> = store
                    .list(k, p, "", None, usize::MAX)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.key, r.version, r.value))
                    .collect();
                prop_assert_eq!(want, got);
            }
        }
        prop_assert_eq!(
            store.changes_since(0, usize::MAX).await.unwrap(),
            model.changes[reset_at..].to_vec()
        );
        prop_assert_eq!(store.current_revision().unwrap(), model.revision);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(steps in prop::collection::vec(step(), 1..40)) {
        run(steps)?;
    }
}

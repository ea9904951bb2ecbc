//! The lifecycle sweep the server runs ([`Ecr::apply_lifecycle_policies`]) on an in-process
//! registry with an injected clock, so `sinceImagePushed` can be driven across days: it expires
//! what the stored policy expires, only in repositories that have one, and records when it ran.

use berth_ecr::{Ecr, RegistryPlace};
use berth_registry::{Access, Registry, RegistryOptions, TagPolicy};
use berth_store::SqliteStore;
use object_store::memory::InMemory;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const DAY: i64 = 86_400_000;

fn index(note: &str) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
        "annotations": {"note": note},
    })
    .to_string()
}

#[tokio::test]
async fn the_sweep_applies_stored_policies_as_time_passes() {
    let now = Arc::new(AtomicI64::new(100 * DAY));
    let clock: berth_ecr::Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let store = SqliteStore::open_in_memory().expect("store").into();
    let registry = Registry::new(
        store,
        Arc::new(InMemory::new()),
        "000000000000/us-east-1".into(),
        Access::Open,
        RegistryOptions {
            clock: clock.clone(),
            ..RegistryOptions::default()
        },
    );
    let ecr = Ecr::new(
        registry.clone(),
        [7; 32],
        RegistryPlace {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            host: "127.0.0.1:4566".into(),
        },
        clock,
    );
    // Untagged images go 7 days after their push; tagged `dev-` images beyond the newest two.
    let policy = json!({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}, "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPatternList": ["dev-*"], "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}},
    ]})
    .to_string();
    let settings = json!({"imageTagMutability": "MUTABLE", "lifecyclePolicy": policy});
    for (name, settings) in [
        ("with", settings),
        ("without", json!({"imageTagMutability": "MUTABLE"})),
    ] {
        registry
            .create_repository_with(name, TagPolicy::default(), settings)
            .await
            .expect("create");
    }
    let put = |repo: &'static str, note: &'static str, tag: Option<&'static str>| {
        let registry = registry.clone();
        async move {
            registry
                .put_image(repo, tag, None, index(note), None)
                .await
                .expect("put")
                .digest
        }
    };
    let old_untagged = put("with", "u-old", None).await;
    now.fetch_add(DAY, Ordering::SeqCst);
    let dev1 = put("with", "dev1", Some("dev-1")).await;
    put("without", "u-other", None).await;
    now.fetch_add(DAY, Ordering::SeqCst);
    let dev2 = put("with", "dev2", Some("dev-2")).await;
    let new_untagged = put("with", "u-new", None).await;
    now.fetch_add(DAY, Ordering::SeqCst);
    let dev3 = put("with", "dev3", Some("dev-3")).await;

    let digests = |repo: &'static str| {
        let registry = registry.clone();
        async move {
            let mut d: Vec<String> = registry
                .images(repo)
                .await
                .expect("images")
                .into_iter()
                .map(|i| i.digest)
                .collect();
            d.sort();
            d
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // Day 103: dev-1 is beyond the newest two; no untagged image is 7 days old yet.
    let report = ecr.apply_lifecycle_policies().await.expect("sweep");
    assert_eq!((report.repositories, report.expired), (1, 1));
    assert_eq!(
        digests("with").await,
        sorted(vec![
            old_untagged.clone(),
            dev2.clone(),
            new_untagged.clone(),
            dev3.clone()
        ])
    );
    assert!(!digests("with").await.contains(&dev1));

    // Day 107 + 1 ms: the first untagged image is more than 7 days old.
    now.store(107 * DAY + 1, Ordering::SeqCst);
    let report = ecr.apply_lifecycle_policies().await.expect("sweep");
    assert_eq!(report.expired, 1);
    assert_eq!(
        digests("with").await,
        sorted(vec![dev2.clone(), new_untagged.clone(), dev3.clone()])
    );
    // Nothing more to do; the repository without a policy keeps everything.
    assert_eq!(
        ecr.apply_lifecycle_policies().await.expect("sweep").expired,
        0
    );
    assert_eq!(digests("without").await.len(), 1);
    let settings = registry
        .repository("with")
        .await
        .expect("read")
        .expect("repo")
        .settings;
    assert_eq!(settings["lifecycleEvaluatedAtMs"], json!(107 * DAY + 1));
}

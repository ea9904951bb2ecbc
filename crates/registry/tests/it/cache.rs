//! The manifest cache seen from outside: every write that changes what a pull gets is seen by
//! the next pull, whichever API made it, after that pull had been served (and cached) before.

use crate::support::{Harness, harness};
use berth_registry::manifest::OCI_MANIFEST;
use berth_store::Store;
use http::StatusCode;

async fn pulled_digest(h: &Harness, repo: &str, reference: &str) -> Result<String, String> {
    let r = h.get(&format!("/v2/{repo}/manifests/{reference}")).await;
    if r.status == StatusCode::OK {
        Ok(r.header("docker-content-digest").to_owned())
    } else {
        Err(r.code())
    }
}

/// Pulls twice, so the second answer is the cache's when it keeps one.
async fn pull_twice(h: &Harness, repo: &str, reference: &str) -> Result<String, String> {
    let first = pulled_digest(h, repo, reference).await;
    assert_eq!(pulled_digest(h, repo, reference).await, first);
    first
}

#[tokio::test]
async fn tag_moves_and_deletions_are_seen_by_the_next_pull() {
    let h = harness();
    let (a, _, _) = h.push_image("app", "v1", b"first layer").await;
    assert_eq!(pull_twice(&h, "app", "v1").await, Ok(a.clone()));
    assert_eq!(pull_twice(&h, "app", &a).await, Ok(a.clone()));

    // A push moves the tag.
    let (b, b_bytes, _) = h.push_image("app", "v1", b"second layer").await;
    assert_ne!(a, b);
    assert_eq!(pull_twice(&h, "app", "v1").await, Ok(b.clone()));

    // The management API's untag, then a re-tag by PutImage.
    assert_eq!(
        h.registry.untag("app", "v1", false).await.expect("untag"),
        Some(b.clone())
    );
    assert_eq!(
        pull_twice(&h, "app", "v1").await,
        Err("MANIFEST_UNKNOWN".into())
    );
    let body = String::from_utf8(b_bytes).expect("utf-8");
    h.registry
        .put_image("app", Some("v1"), None, body, Some(OCI_MANIFEST))
        .await
        .expect("put image");
    assert_eq!(pull_twice(&h, "app", "v1").await, Ok(b.clone()));

    // Deleting an image by digest takes its tags with it.
    assert!(
        h.registry
            .delete_image("app", &b)
            .await
            .expect("delete")
            .is_some()
    );
    assert_eq!(
        pulled_digest(&h, "app", &b).await,
        Err("MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        pulled_digest(&h, "app", "v1").await,
        Err("MANIFEST_UNKNOWN".into())
    );

    // A lifecycle expiry, then the whole repository.
    assert_eq!(pull_twice(&h, "app", &a).await, Ok(a.clone()));
    assert!(
        h.registry
            .expire_image("app", &a, &[])
            .await
            .expect("expire")
    );
    assert_eq!(
        pulled_digest(&h, "app", &a).await,
        Err("MANIFEST_UNKNOWN".into())
    );
    let (c, _, _) = h.push_image("app", "v2", b"third layer").await;
    assert_eq!(pull_twice(&h, "app", "v2").await, Ok(c));
    h.registry
        .delete_repository("app", true)
        .await
        .expect("delete repository");
    assert_eq!(
        pulled_digest(&h, "app", "v2").await,
        Err("NAME_UNKNOWN".into())
    );
}

#[tokio::test]
async fn a_tag_of_another_repository_is_not_touched_by_a_push() {
    let h = harness();
    let (a, _, _) = h.push_image("team/a", "v1", b"a").await;
    let (b, _, _) = h.push_image("team/a/b", "v1", b"b").await;
    assert_eq!(pull_twice(&h, "team/a", "v1").await, Ok(a.clone()));
    assert_eq!(pull_twice(&h, "team/a/b", "v1").await, Ok(b.clone()));
    let (c, _, _) = h.push_image("team/a/b", "v1", b"c").await;
    assert_eq!(pulled_digest(&h, "team/a/b", "v1").await, Ok(c));
    assert_eq!(pulled_digest(&h, "team/a", "v1").await, Ok(a));
}

#[tokio::test]
async fn a_store_reset_is_forgotten_when_the_server_says_so() {
    let h = harness();
    let (a, _, _) = h.push_image("app", "v1", b"layer").await;
    assert_eq!(pull_twice(&h, "app", "v1").await, Ok(a));
    h.store.reset().await.expect("reset");
    h.registry.forget_cached();
    assert_eq!(
        pulled_digest(&h, "app", "v1").await,
        Err("NAME_UNKNOWN".into())
    );
}

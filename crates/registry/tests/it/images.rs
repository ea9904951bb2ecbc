//! The accessors the ECR API drives, in-process: a repository's tag policy refusing to move an
//! immutable tag through `/v2/` (TAG_INVALID) and `put_image`, images listed with tags and
//! sizes, untag-then-delete, and deleting a repository with and without force.

use crate::support::{harness_with, image_manifest};
use berth_registry::manifest::OCI_MANIFEST;
use berth_registry::{Access, RegistryError, TagPolicy};
use http::StatusCode;

#[tokio::test]
async fn immutable_tags_do_not_move_and_images_are_listed_with_sizes() {
    let h = harness_with(Access::Open, |o| o.create_on_push = false);
    let policy = TagPolicy {
        immutable: true,
        exceptions: vec!["latest".into()],
    };
    let created = h
        .registry
        .create_repository_with("app", policy.clone(), serde_json::json!({"k": 1}))
        .await
        .expect("create");
    assert_eq!(created.map(|r| r.tag_policy), Some(policy));
    assert!(
        h.registry
            .create_repository_with("app", TagPolicy::default(), serde_json::Value::Null)
            .await
            .expect("exists")
            .is_none()
    );

    let config = h.push_blob("app", b"{}").await;
    let layer = h.push_blob("app", b"layer bytes").await;
    let one = image_manifest(&config, 2, &[(&layer, 11)], None, None);
    let two = image_manifest(&config, 2, &[(&layer, 11), (&layer, 11)], None, None);
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &one).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Same content again: allowed (nothing moves).
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &one).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &two).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "TAG_INVALID");
    let err = h
        .registry
        .put_image(
            "app",
            Some("v1"),
            None,
            String::from_utf8(two.clone()).expect("utf8"),
            None,
        )
        .await;
    assert!(
        matches!(err, Err(RegistryError::TagImmutable { .. })),
        "{err:?}"
    );
    // The excluded tag moves freely.
    for m in [&one, &two] {
        let r = h.put_manifest("app", "latest", OCI_MANIFEST, m).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }

    let images = h.registry.images("app").await.expect("images");
    assert_eq!(images.len(), 2);
    let v1 = images
        .iter()
        .find(|i| i.tags == vec!["v1".to_owned()])
        .expect("v1");
    assert_eq!(v1.size_bytes, 2 + 11);
    assert_eq!(v1.media_type, OCI_MANIFEST);
    assert_eq!(
        v1.artifact_type.as_deref(),
        Some("application/vnd.oci.image.config.v1+json")
    );
    let latest = images
        .iter()
        .find(|i| i.tags == vec!["latest".to_owned()])
        .expect("latest");
    assert_eq!(latest.size_bytes, 2 + 22);

    // Untagging the last tag deletes the image with it when asked to.
    let digest = h
        .registry
        .untag("app", "latest", true)
        .await
        .expect("untag");
    assert_eq!(digest.as_deref(), Some(latest.digest.as_str()));
    assert!(
        h.registry
            .manifest("app", &latest.digest)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        h.registry.untag("app", "latest", true).await.ok(),
        Some(None)
    );

    // A repository with images goes only with force, and takes its records with it.
    assert!(matches!(
        h.registry.delete_repository("app", false).await,
        Err(RegistryError::RepositoryNotEmpty(_))
    ));
    h.registry
        .delete_repository("app", true)
        .await
        .expect("forced delete");
    assert!(h.registry.repository("app").await.expect("read").is_none());
    assert!(h.registry.images("app").await.expect("images").is_empty());
    let r = h.get("/v2/app/tags/list").await;
    assert_eq!(r.code(), "NAME_UNKNOWN");
    assert!(matches!(
        h.registry.delete_repository("app", true).await,
        Err(RegistryError::NameUnknown(_))
    ));
}

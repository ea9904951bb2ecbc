//! The accessors ECR's layer APIs drive, in-process: an upload fed part by part (a part must
//! start at the session's offset), published through the same verification as `/v2/`, a
//! layer's link and use, presigned blob URLs (the one way into `/v2/` without credentials),
//! and expiring an image only while its tags are unchanged.

use crate::support::{harness_with, image_manifest, sha256};
use berth_registry::digest::Digest;
use berth_registry::{Access, RegistryError, TagPolicy};
use bytes::Bytes;
use http::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[tokio::test]
async fn parts_presigned_urls_and_expiry() {
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock = now.clone();
    let h = harness_with(
        Access::Basic(Arc::new(|_: &str, _: &str| false)),
        move |o| {
            o.create_on_push = false;
            o.clock = Arc::new(move || clock.load(Ordering::SeqCst));
        },
    );
    let r = &h.registry;
    r.create_repository_with("app", TagPolicy::default(), serde_json::Value::Null)
        .await
        .expect("create");
    assert!(matches!(
        r.start_upload("missing").await,
        Err(RegistryError::NameUnknown(_))
    ));

    let layer = b"0123456789abcdefghij".to_vec();
    let digest = Digest::parse(&sha256(&layer)).expect("digest");
    let id = r.start_upload("app").await.expect("start");
    assert_eq!(
        r.upload_part("app", &id, 0, Bytes::from_static(b"0123456789"))
            .await
            .ok(),
        Some(10)
    );
    // Out of order: refused with the session's offset, nothing appended.
    assert!(matches!(
        r.upload_part("app", &id, 5, Bytes::from_static(b"xxxxx"))
            .await,
        Err(RegistryError::RangeInvalid { offset: 10, .. })
    ));
    // Another repository's session is unknown here.
    assert!(matches!(
        r.upload_state("other", &id).await,
        Err(RegistryError::BlobUploadUnknown)
    ));
    assert_eq!(
        r.upload_part("app", &id, 10, Bytes::from_static(b"abcdefghij"))
            .await
            .ok(),
        Some(20)
    );
    let state = r.upload_state("app", &id).await.expect("state");
    assert_eq!((state.offset, state.smallest_earlier_part), (20, Some(10)));
    assert!(r.layer("app", &digest).await.expect("layer").is_none());
    assert_eq!(r.complete_upload("app", &id, &digest).await.ok(), Some(20));
    let info = r
        .layer("app", &digest)
        .await
        .expect("layer")
        .expect("linked");
    assert_eq!(
        (info.size, info.referenced, info.media_type),
        (20, false, None)
    );

    // A wrong digest leaves nothing.
    let id = r.start_upload("app").await.expect("start");
    r.upload_part("app", &id, 0, Bytes::from_static(b"zz"))
        .await
        .expect("part");
    let other = Digest::parse(&sha256(b"yy")).expect("digest");
    assert!(matches!(
        r.complete_upload("app", &id, &other).await,
        Err(RegistryError::DigestMismatch { .. })
    ));
    assert!(r.layer("app", &other).await.expect("layer").is_none());
    assert!(r.upload_state("app", &id).await.is_err());

    // Named by an image: referenced, with the image's media type for it.
    let config = b"{}".to_vec();
    let config_digest = Digest::parse(&sha256(&config)).expect("digest");
    let id = r.start_upload("app").await.expect("start");
    r.upload_part("app", &id, 0, Bytes::from(config.clone()))
        .await
        .expect("part");
    r.complete_upload("app", &id, &config_digest)
        .await
        .expect("complete");
    let manifest = image_manifest(
        &config_digest.to_string(),
        2,
        &[(&digest.to_string(), 20)],
        None,
        None,
    );
    r.put_image(
        "app",
        Some("v1"),
        None,
        String::from_utf8(manifest).expect("utf8"),
        None,
    )
    .await
    .expect("put");
    let info = r
        .layer("app", &digest)
        .await
        .expect("layer")
        .expect("linked");
    assert!(info.referenced);
    assert_eq!(
        info.media_type.as_deref(),
        Some("application/vnd.oci.image.layer.v1.tar+gzip")
    );

    // Presigned: served without credentials until it expires; nothing else is.
    let path = r.presigned_blob_path("app", &digest, 2_000_000);
    let got = h.get(&path).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body.as_ref(), layer.as_slice());
    let head = h
        .call(Method::HEAD, &path, &[], axum::body::Body::empty())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{digest}")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let elsewhere = path.replace("/v2/app/", "/v2/other/");
    assert_eq!(h.get(&elsewhere).await.status, StatusCode::UNAUTHORIZED);
    let longer = path.replace("=2000000&", "=2000001&");
    assert_eq!(h.get(&longer).await.status, StatusCode::UNAUTHORIZED);
    let manifest_path = path.replace(&format!("blobs/{digest}"), "manifests/v1");
    assert_eq!(h.get(&manifest_path).await.status, StatusCode::UNAUTHORIZED);
    let delete = h
        .call(Method::DELETE, &path, &[], axum::body::Body::empty())
        .await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
    now.store(2_000_000, Ordering::SeqCst);
    assert_eq!(h.get(&path).await.status, StatusCode::UNAUTHORIZED);

    // Expiry takes an image only while its tags are what the caller saw.
    let images = r.images("app").await.expect("images");
    let image = &images[0];
    assert!(!image.in_index);
    assert!(
        !r.expire_image("app", &image.digest, &[])
            .await
            .expect("expire")
    );
    assert!(
        r.manifest("app", &image.digest)
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        r.expire_image("app", &image.digest, &["v1".to_owned()])
            .await
            .expect("expire")
    );
    assert!(
        r.manifest("app", &image.digest)
            .await
            .expect("read")
            .is_none()
    );
    assert!(r.tag_target("app", "v1").await.expect("read").is_none());
}

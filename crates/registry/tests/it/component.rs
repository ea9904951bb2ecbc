//! The `/v2/` router in-process (`tower::ServiceExt::oneshot`), on an in-memory SQLite store and
//! an in-memory object store: every endpoint, its headers and its errors.

use crate::support::{Harness, harness, harness_with, image_manifest, sha256};
use axum::body::Body;
use berth_registry::manifest::{OCI_INDEX, OCI_MANIFEST};
use berth_registry::{Access, RegistryOptions};
use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, StatusCode};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn blob_object(digest: &str) -> Path {
    let hex = digest.trim_start_matches("sha256:");
    Path::from(format!("blobs/sha256/{}/{hex}", &hex[..2]))
}

async fn start_session(h: &Harness, repo: &str) -> String {
    let r = h
        .call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-0");
    assert!(!r.header("docker-upload-uuid").is_empty());
    r.header("location").to_owned()
}

#[tokio::test]
async fn base_answers_with_api_version() {
    let h = harness();
    let r = h.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    assert_eq!(&r.body[..], b"{}");
}

#[tokio::test]
async fn basic_auth_challenges_and_accepts() {
    let verify: berth_registry::BasicVerifier = Arc::new(|u, p| u == "AWS" && p == "secret");
    let h = harness_with(Access::Basic(verify), |_| {});
    let r = h
        .call(
            Method::GET,
            "/v2/",
            &[("host", "127.0.0.1:4566")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "UNAUTHORIZED");
    assert!(
        r.header("www-authenticate")
            .starts_with("Basic realm=\"https://127.0.0.1:4566/\"")
    );
    // base64("AWS:wrong") / base64("AWS:secret")
    let bad = h
        .call(
            Method::GET,
            "/v2/",
            &[("authorization", "Basic QVdTOndyb25n")],
            Body::empty(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let ok = h
        .call(
            Method::GET,
            "/v2/",
            &[("authorization", "Basic QVdTOnNlY3JldA==")],
            Body::empty(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn push_needs_a_repository_without_create_on_push() {
    let h = harness_with(Access::Open, |o: &mut RegistryOptions| {
        o.create_on_push = false
    });
    let r = h
        .call(Method::POST, "/v2/app/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "NAME_UNKNOWN");
    assert!(h.registry.create_repository("app").await.expect("create"));
    assert!(!h.registry.create_repository("app").await.expect("exists"));
    let r = h
        .call(Method::POST, "/v2/app/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(h.registry.create_repository("Bad/Name").await.is_err());
}

#[tokio::test]
async fn bad_names_are_name_invalid() {
    let h = harness();
    for path in [
        "/v2/Upper/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/manifests/x",
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.code(), "NAME_INVALID", "{path}");
    }
}

#[tokio::test]
async fn monolithic_push_then_pull_blob_with_range() {
    let h = harness();
    let data = b"hello, registry";
    let digest = h.push_blob("lib/app", data).await;
    let head = h
        .call(
            Method::HEAD,
            &format!("/v2/lib/app/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert_eq!(head.header("docker-content-digest"), digest);
    assert!(head.body.is_empty());

    let full = h.get(&format!("/v2/lib/app/blobs/{digest}")).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(&full.body[..], data);

    let part = h
        .call(
            Method::GET,
            &format!("/v2/lib/app/blobs/{digest}"),
            &[("range", "bytes=7-")],
            Body::empty(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 7-14/{}", data.len())
    );
    assert_eq!(&part.body[..], b"registry");

    let outside = h
        .call(
            Method::GET,
            &format!("/v2/lib/app/blobs/{digest}"),
            &[("range", "bytes=100-")],
            Body::empty(),
        )
        .await;
    assert_eq!(outside.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // Another repository has no link to the blob.
    h.push_blob("other", b"x").await;
    let r = h.get(&format!("/v2/other/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UNKNOWN");
    let r = h.get(&format!("/v2/nothing/blobs/{digest}")).await;
    assert_eq!(r.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn chunked_push_with_content_range() {
    let h = harness();
    let location = start_session(&h, "app").await;
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&data);

    let r = h
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "0-999"), ("content-length", "1000")],
            Bytes::copy_from_slice(&data[..1000]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-999");
    let location = r.header("location").to_owned();

    // Out of order: 416 with the current range, nothing appended.
    let r = h
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "1500-1999")],
            Bytes::copy_from_slice(&data[1500..2000]),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), "0-999");

    let r = h
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "1000-1999")],
            Bytes::copy_from_slice(&data[1000..2000]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-1999");

    // The final chunk rides on the closing PUT.
    let r = h
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-range", "2000-2999")],
            Bytes::copy_from_slice(&data[2000..]),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(r.header("location"), format!("/v2/app/blobs/{digest}"));
    let got = h.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(&got.body[..], &data[..]);

    // The session is gone.
    let r = h.get(&location).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn wrong_digest_is_digest_invalid_and_leaves_nothing() {
    let h = harness();
    let location = start_session(&h, "app").await;
    let wrong = sha256(b"something else");
    let r = h
        .call(
            Method::PUT,
            &format!("{location}?digest={wrong}"),
            &[],
            Bytes::from_static(b"payload"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{wrong}")).await.code(),
        "BLOB_UNKNOWN"
    );
    let right = sha256(b"payload");
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{right}")).await.code(),
        "BLOB_UNKNOWN"
    );
    assert!(h.blobs.head(&blob_object(&right)).await.is_err());
    assert!(h.blobs.head(&blob_object(&wrong)).await.is_err());

    // Monolithic with a wrong digest: same.
    let r = h
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
            &[],
            Bytes::from_static(b"payload"),
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = h
        .call(
            Method::POST,
            "/v2/app/blobs/uploads/?digest=sha256:nothex",
            &[],
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn a_blob_pushed_again_keeps_one_copy_and_drops_the_staged_one() {
    use futures_util::StreamExt;
    let h = harness();
    let data = b"the same bytes, pushed twice".repeat(1000);
    let digest = h.push_blob("app", &data).await;
    assert_eq!(h.push_blob("app", &data).await, digest);
    let r = h.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, data);
    // The second upload's staged copy is deleted after its answer, in the background.
    let staged = || async {
        h.blobs
            .list(Some(&Path::from("uploads")))
            .collect::<Vec<_>>()
            .await
            .len()
    };
    let mut waits = 0;
    while staged().await > 0 {
        waits += 1;
        assert!(
            waits < 1000,
            "the staged copy of a duplicate is never deleted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn resume_after_a_broken_patch() {
    let h = harness();
    let location = start_session(&h, "app").await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = sha256(&data);

    // The connection "breaks" after 4000 bytes: the body stream errors.
    let frames: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&data[..2500])),
        Ok(Bytes::copy_from_slice(&data[2500..4000])),
        Err(std::io::Error::other("connection reset")),
    ];
    let req = Request::builder()
        .method(Method::PATCH)
        .uri(&location)
        .body(Body::from_stream(stream::iter(frames)))
        .expect("request");
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");

    let status = h.get(&location).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-3999");

    let r = h
        .call(
            Method::PATCH,
            status.header("location"),
            &[("content-range", "4000-9999")],
            Bytes::copy_from_slice(&data[4000..]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = h
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        &h.get(&format!("/v2/app/blobs/{digest}")).await.body[..],
        &data[..]
    );
}

#[tokio::test]
async fn cancel_upload() {
    let h = harness();
    let location = start_session(&h, "app").await;
    let r = h.call(Method::DELETE, &location, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn sha512_digests_verify() {
    let h = harness();
    let data = b"five hundred and twelve";
    let digest =
        berth_registry::digest::Digest::of(berth_registry::digest::Algorithm::Sha512, data)
            .to_string();
    // Announced up front (hashed while streaming) ...
    let r = h
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &[],
            Bytes::from_static(data),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // ... and only at the end (hashed again from storage).
    let location = start_session(&h, "other").await;
    let r = h
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Bytes::from_static(data),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        &h.get(&format!("/v2/other/blobs/{digest}")).await.body[..],
        data
    );
}

#[tokio::test]
async fn cross_repository_mount() {
    let h = harness();
    let digest = h.push_blob("source", b"shared layer").await;
    let r = h
        .call(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/target/blobs/{digest}"));
    assert_eq!(
        &h.get(&format!("/v2/target/blobs/{digest}")).await.body[..],
        b"shared layer"
    );

    // Not in `from`: an ordinary session.
    let missing = sha256(b"nowhere");
    let r = h
        .call(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={missing}&from=source"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        r.header("location")
            .starts_with("/v2/target/blobs/uploads/")
    );
}

#[tokio::test]
async fn manifest_with_missing_blob_is_rejected() {
    let h = harness();
    let config = h.push_blob("app", b"{}").await;
    let absent = sha256(b"never pushed");
    let manifest = image_manifest(&config, 2, &[(&absent, 12)], None, None);
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digests"][0], absent);
    assert_eq!(
        h.get("/v2/app/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );

    // An index whose child is missing.
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": absent, "size": 10 }],
    });
    let r = h
        .put_manifest("app", "multi", OCI_INDEX, index.to_string().as_bytes())
        .await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn bad_manifests_are_rejected() {
    let h = harness();
    let r = h
        .put_manifest("app", "v1", OCI_MANIFEST, b"{not json")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let huge = vec![b' '; berth_registry::manifest::MAX_MANIFEST_BYTES + 1];
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = h
        .put_manifest(
            "app",
            "v1",
            "application/x-unknown",
            br#"{"schemaVersion":2,"mediaType":"application/x-unknown"}"#,
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    // Pushed by a digest that is not the body's.
    let wrong = sha256(b"other");
    let body = image_manifest(&sha256(b"c"), 1, &[], None, None);
    let r = h.put_manifest("app", &wrong, OCI_MANIFEST, &body).await;
    assert_eq!(r.code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn pull_by_tag_and_digest() {
    let h = harness();
    let (digest, manifest, _) = h.push_image("team/web", "v1", b"layer bytes").await;
    assert_eq!(digest, sha256(&manifest));
    for reference in ["v1", digest.as_str()] {
        let r = h.get(&format!("/v2/team/web/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), digest);
        assert_eq!(r.header("content-length"), manifest.len().to_string());
        assert_eq!(&r.body[..], &manifest[..]);
        let head = h
            .call(
                Method::HEAD,
                &format!("/v2/team/web/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), manifest.len().to_string());
        assert_eq!(head.header("docker-content-digest"), digest);
    }
    // Pushing the same manifest by digest is idempotent.
    let r = h
        .put_manifest("team/web", &digest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        h.get("/v2/team/web/manifests/v2").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(h.get("/v2/none/manifests/v1").await.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn index_with_present_children() {
    let h = harness();
    let (child, manifest, _) = h.push_image("app", "amd64", b"l").await;
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": child, "size": manifest.len(),
                        "platform": {"architecture": "amd64", "os": "linux"} }],
    });
    let r = h
        .put_manifest("app", "latest", OCI_INDEX, index.to_string().as_bytes())
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        h.get("/v2/app/manifests/latest")
            .await
            .header("content-type"),
        OCI_INDEX
    );
}

#[tokio::test]
async fn tags_list_paginates_with_link() {
    let h = harness();
    let (digest, manifest, _) = h.push_image("app", "a", b"l").await;
    for tag in ["b", "c", "d", "e"] {
        let r = h.put_manifest("app", tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("docker-content-digest"), digest);
    }
    let all = h.get("/v2/app/tags/list").await;
    assert_eq!(
        all.json(),
        serde_json::json!({"name": "app", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(all.headers.get("link").is_none());

    let page = h.get("/v2/app/tags/list?n=2").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        "</v2/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let page = h.get("/v2/app/tags/list?n=2&last=b").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["c", "d"]));
    let page = h.get("/v2/app/tags/list?n=2&last=d").await;
    assert_eq!(page.json()["tags"], serde_json::json!(["e"]));
    assert!(page.headers.get("link").is_none());
    let zero = h.get("/v2/app/tags/list?n=0").await;
    assert_eq!(zero.json()["tags"], serde_json::json!([]));
    assert!(zero.headers.get("link").is_none());
    assert_eq!(h.get("/v2/none/tags/list").await.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_lists_repositories() {
    let h = harness();
    for repo in ["b/x", "a", "c"] {
        h.push_blob(repo, b"x").await;
    }
    let r = h.get("/v2/_catalog").await;
    assert_eq!(
        r.json(),
        serde_json::json!({"repositories": ["a", "b/x", "c"]})
    );
    let r = h.get("/v2/_catalog?n=1&last=a").await;
    assert_eq!(r.json(), serde_json::json!({"repositories": ["b/x"]}));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=1&last=b%2Fx>; rel=\"next\""
    );
}

#[tokio::test]
async fn delete_tag_versus_manifest() {
    let h = harness();
    let (digest, manifest, _) = h.push_image("app", "v1", b"l").await;
    h.put_manifest("app", "v2", OCI_MANIFEST, &manifest).await;

    let r = h
        .call(Method::DELETE, "/v2/app/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.get("/v2/app/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
    // The manifest and its other tag remain.
    assert_eq!(h.get("/v2/app/manifests/v2").await.status, StatusCode::OK);
    assert_eq!(
        h.get(&format!("/v2/app/manifests/{digest}")).await.status,
        StatusCode::OK
    );

    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/app/manifests/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.get(&format!("/v2/app/manifests/{digest}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        h.get("/v2/app/manifests/v2").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        h.get("/v2/app/tags/list").await.json()["tags"],
        serde_json::json!([])
    );
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/app/manifests/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_blob_unlinks() {
    let h = harness();
    let digest = h.push_blob("app", b"bytes").await;
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/app/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{digest}")).await.code(),
        "BLOB_UNKNOWN"
    );
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/app/blobs/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn referrers_with_artifact_type_filter() {
    let h = harness();
    let (subject, subject_body, _) = h.push_image("app", "v1", b"l").await;
    let empty = h.push_blob("app", b"{}").await;
    let mut pushed = Vec::new();
    for kind in [
        "application/vnd.example.sbom+json",
        "application/vnd.example.signature",
    ] {
        let body = image_manifest(
            &empty,
            2,
            &[],
            Some((&subject, subject_body.len())),
            Some(kind),
        );
        let r = h
            .put_manifest("app", &sha256(&body), OCI_MANIFEST, &body)
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("oci-subject"), subject);
        pushed.push(sha256(&body));
    }
    // A subject that is not (yet) in the repository is accepted, per the spec.
    let ghost = sha256(b"ghost");
    let body = image_manifest(
        &empty,
        2,
        &[],
        Some((&ghost, 5)),
        Some("application/vnd.example.sbom"),
    );
    assert_eq!(
        h.put_manifest("app", "ghost-sbom", OCI_MANIFEST, &body)
            .await
            .status,
        StatusCode::CREATED
    );

    let all = h.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.header("content-type"), OCI_INDEX);
    assert!(all.headers.get("oci-filters-applied").is_none());
    let manifests = all.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(manifests.len(), 2);
    assert!(
        manifests
            .iter()
            .all(|m| m["annotations"]["org.example.kind"].is_string())
    );

    // The `+` escaped, and as some clients (the Rust oci-client) send it: unescaped.
    for query in [
        "application/vnd.example.sbom%2Bjson",
        "application/vnd.example.sbom+json",
    ] {
        let sboms = h
            .get(&format!("/v2/app/referrers/{subject}?artifactType={query}"))
            .await;
        assert_eq!(sboms.header("oci-filters-applied"), "artifactType");
        let list = sboms.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(list.len(), 1, "{query}");
        assert_eq!(list[0]["digest"], pushed[0]);
        assert_eq!(list[0]["artifactType"], "application/vnd.example.sbom+json");
    }

    // Deleting a referrer removes it from the listing; unknown subjects list nothing.
    h.call(
        Method::DELETE,
        &format!("/v2/app/manifests/{}", pushed[0]),
        &[],
        Body::empty(),
    )
    .await;
    let after = h.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(after.json()["manifests"].as_array().map(Vec::len), Some(1));
    let none = h
        .get(&format!("/v2/app/referrers/{}", sha256(b"none")))
        .await;
    assert_eq!(none.json()["manifests"], serde_json::json!([]));
    assert_eq!(
        h.get("/v2/app/referrers/sha256:bad").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn gc_keeps_referenced_blobs_and_live_uploads() {
    let h = harness_with(Access::Open, |o: &mut RegistryOptions| {
        o.gc_grace = Duration::ZERO
    });
    let (_, _, layer) = h.push_image("app", "v1", b"referenced layer").await;
    let orphan = h.push_blob("app", b"orphan blob").await;
    // An upload in progress with some bytes.
    let location = start_session(&h, "app").await;
    let r = h
        .call(
            Method::PATCH,
            &location,
            &[],
            Bytes::from_static(b"in progress"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let report = h.registry.gc().await.expect("gc");
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    assert_eq!(report.links_deleted, 1, "{report:?}");
    assert!(h.blobs.head(&blob_object(&orphan)).await.is_err());
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{orphan}")).await.code(),
        "BLOB_UNKNOWN"
    );
    assert!(h.blobs.head(&blob_object(&layer)).await.is_ok());
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{layer}")).await.status,
        StatusCode::OK
    );

    // The upload goes on and completes after the collection.
    let digest = sha256(b"in progress, done");
    let r = h
        .call(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Bytes::from_static(b", done"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        &h.get(&format!("/v2/app/blobs/{digest}")).await.body[..],
        b"in progress, done"
    );
}

#[tokio::test]
async fn gc_grace_protects_fresh_blobs() {
    let h = harness(); // default grace: one hour
    let orphan = h.push_blob("app", b"pushed a moment ago").await;
    let report = h.registry.gc().await.expect("gc");
    assert_eq!(report.blobs_deleted, 0);
    assert!(report.kept_recent >= 1);
    assert_eq!(
        h.get(&format!("/v2/app/blobs/{orphan}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let h = harness();
    assert_eq!(
        h.get("/v2/app/nothing/here").await.status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .call(Method::POST, "/v2/app/tags/list", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "UNSUPPORTED");
}

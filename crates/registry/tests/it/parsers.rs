//! The pure parsers: `/v2/` paths, digests and manifests, by example and by property.

use berth_registry::digest::{Algorithm, Digest, DigestError};
use berth_registry::manifest::{
    self, DOCKER_LIST, DOCKER_MANIFEST, Kind, MAX_MANIFEST_BYTES, ManifestError, OCI_INDEX,
    OCI_MANIFEST,
};
use berth_registry::path::{self, MAX_NAME_LEN, PathError, Reference, Route};
use proptest::prelude::*;

fn hex64(c: char) -> String {
    c.to_string().repeat(64)
}

#[test]
fn digests() {
    let d = Digest::parse(&format!("sha256:{}", hex64('a'))).expect("valid");
    assert_eq!(d.algorithm(), Algorithm::Sha256);
    assert_eq!(d.to_string(), format!("sha256:{}", hex64('a')));
    assert!(Digest::parse(&format!("sha512:{}", "b".repeat(128))).is_ok());
    assert_eq!(Digest::parse("sha256"), Err(DigestError::Syntax));
    assert_eq!(Digest::parse(":abc"), Err(DigestError::Syntax));
    assert_eq!(
        Digest::parse("md5:abcd"),
        Err(DigestError::Unsupported("md5".into()))
    );
    assert!(matches!(
        Digest::parse(&format!("sha256:{}", hex64('A'))),
        Err(DigestError::Encoding(..))
    ));
    assert!(matches!(
        Digest::parse("sha256:abc"),
        Err(DigestError::Encoding(..))
    ));
    // Known vector: sha256 of the empty string.
    assert_eq!(
        Digest::of(Algorithm::Sha256, b"").to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn paths() {
    let digest = format!("sha256:{}", hex64('c'));
    assert_eq!(
        path::parse(&format!("team/app/web/manifests/{digest}")),
        Ok(Route::Manifest {
            name: "team/app/web".into(),
            reference: Reference::Digest(Digest::parse(&digest).expect("valid")),
        })
    );
    assert_eq!(path::parse("a/../b/tags/list"), Err(PathError::Name));
    assert_eq!(path::parse("Upper/tags/list"), Err(PathError::Name));
    assert!(path::parse(&format!("{}/tags/list", "a".repeat(MAX_NAME_LEN))).is_ok());
}

fn component() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,3}")
        .expect("regex")
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(component(), 1..5).prop_map(|parts| parts.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,40}").expect("regex")
}

proptest! {
    #[test]
    fn valid_names_parse_in_every_endpoint(name in name(), tag in tag()) {
        prop_assume!(name.len() <= MAX_NAME_LEN);
        prop_assert!(path::valid_name(&name));
        prop_assert_eq!(
            path::parse(&format!("{name}/manifests/{tag}")),
            Ok(Route::Manifest { name: name.clone(), reference: Reference::Tag(tag.clone()) })
        );
        prop_assert_eq!(
            path::parse(&format!("{name}/tags/list")),
            Ok(Route::TagsList { name: name.clone() })
        );
        prop_assert_eq!(
            path::parse(&format!("{name}/blobs/uploads/")),
            Ok(Route::UploadStart { name: name.clone() })
        );
        let digest = format!("sha256:{}", "0".repeat(64));
        let blob = path::parse(&format!("{name}/blobs/{digest}"));
        let parsed_name = match blob { Ok(Route::Blob { name: n, .. }) => Some(n), _ => None };
        prop_assert_eq!(parsed_name, Some(name));
    }

    #[test]
    fn uppercase_or_dot_dot_names_are_rejected(name in name(), at in 0usize..50) {
        let mut upper = name.clone();
        let i = at % upper.len();
        if upper.as_bytes()[i].is_ascii_lowercase() {
            upper.replace_range(i..=i, &upper[i..=i].to_ascii_uppercase());
            prop_assert!(!path::valid_name(&upper));
        }
        let dotted = format!("{name}/../x");
        prop_assert!(!path::valid_name(&dotted));
        prop_assert_eq!(path::parse(&format!("{dotted}/manifests/latest")), Err(PathError::Name));
    }

    #[test]
    fn parse_never_panics(s in ".{0,300}") {
        let _ = path::parse(&s);
        let _ = Digest::parse(&s);
        let _ = manifest::parse(s.as_bytes(), Some(&s));
    }
}

fn descriptor(media_type: &str, c: char, size: u64) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": format!("sha256:{}", hex64(c)), "size": size })
}

#[test]
fn all_four_media_types() {
    for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
        let doc = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "config": descriptor("application/vnd.oci.image.config.v1+json", 'a', 2),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", 'b', 3)],
        });
        let m = manifest::parse(doc.to_string().as_bytes(), Some(mt)).expect("valid image");
        assert_eq!(m.kind, Kind::Image);
        assert_eq!(m.media_type, mt);
        assert_eq!(m.required_blobs().count(), 2);
    }
    for mt in [OCI_INDEX, DOCKER_LIST] {
        let doc = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "manifests": [descriptor(OCI_MANIFEST, 'c', 100)],
        });
        let m = manifest::parse(doc.to_string().as_bytes(), None).expect("valid index");
        assert_eq!(m.kind, Kind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.required_blobs().count(), 0);
    }
}

#[test]
fn media_type_from_content_type_or_shape() {
    let image = serde_json::json!({
        "schemaVersion": 2,
        "config": descriptor("application/vnd.oci.image.config.v1+json", 'a', 2),
        "layers": [],
    })
    .to_string();
    let m = manifest::parse(
        image.as_bytes(),
        Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
    )
    .expect("content type");
    assert_eq!(m.media_type, DOCKER_MANIFEST);
    let m = manifest::parse(image.as_bytes(), None).expect("shape");
    assert_eq!(m.media_type, OCI_MANIFEST);
}

#[test]
fn subject_and_artifact_type() {
    let doc = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": descriptor("application/vnd.oci.empty.v1+json", 'a', 2),
        "layers": [],
        "subject": descriptor(OCI_MANIFEST, 'd', 10),
    });
    let m = manifest::parse(doc.to_string().as_bytes(), None).expect("valid");
    assert!(m.subject.is_some());
    assert_eq!(
        m.effective_artifact_type().as_deref(),
        Some("application/vnd.example.sbom")
    );
}

#[test]
fn rejects_bad_manifests() {
    let err = |body: &[u8], ct: Option<&str>| manifest::parse(body, ct).expect_err("rejected");
    assert_eq!(err(b"not json", None), ManifestError::NotJson);
    assert_eq!(err(b"[1,2]", None), ManifestError::NotJson);
    assert!(matches!(
        err(br#"{"schemaVersion":3}"#, None),
        ManifestError::Invalid(_)
    ));
    assert!(matches!(
        err(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
        ManifestError::UnsupportedMediaType(_)
    ));
    assert!(matches!(
        err(br#"{"schemaVersion":1,"name":"x"}"#, None),
        ManifestError::UnsupportedMediaType(_)
    ));
    let missing_config =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []});
    assert!(matches!(
        err(missing_config.to_string().as_bytes(), None),
        ManifestError::Invalid(_)
    ));
    let bad_digest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}, "layers": [],
    });
    assert!(matches!(
        err(bad_digest.to_string().as_bytes(), None),
        ManifestError::Invalid(_)
    ));
    let mismatch = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
    assert!(matches!(
        err(mismatch.to_string().as_bytes(), Some(OCI_MANIFEST)),
        ManifestError::MediaTypeMismatch { .. }
    ));
    let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert_eq!(err(&huge, None), ManifestError::TooLarge);
}

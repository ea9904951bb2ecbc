//! `oci-client` (the Rust OCI distribution client of the ORAS project) against berth's registry:
//! it pushes a two-platform image index, pulls it back (resolving this machine's platform), and
//! pushes two artifacts whose `subject` is one of the platform images, then lists that image's
//! referrers with and without an `artifactType` filter. It authenticates the way ECR users do:
//! HTTP Basic with `AWS` and the token `aws ecr get-login-password` prints.

use crate::ecr::{ecr, unique};
use crate::harness::{Berth, Opts};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
    OciImageIndex, OciImageManifest, OciManifest, Platform,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

const SBOM: &str = "application/vnd.example.sbom.v1+json";
const SIGNATURE: &str = "application/vnd.example.signature.v1";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        // Chunked pushes (POST, PATCH, PUT), the client's default, are what this exercises.
        use_monolithic_push: false,
        ..ClientConfig::default()
    })
}

/// A platform image: one layer and a config naming the platform; returns its index entry.
async fn push_platform(
    client: &Client,
    auth: &RegistryAuth,
    host: &str,
    repo: &str,
    arch: &str,
) -> (ImageIndexEntry, Vec<u8>) {
    let layer = format!("layer bytes for linux/{arch} of {repo}\n").into_bytes();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let reference = Reference::with_tag(host.into(), repo.into(), arch.into());
    client
        .push(
            &reference,
            &[ImageLayer::oci_v1(layer.clone(), None)],
            Config::oci_v1(config.to_string().into_bytes(), None),
            auth,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("push linux/{arch}: {e}"));
    let (manifest, digest) = client
        .pull_manifest(&reference, auth)
        .await
        .unwrap_or_else(|e| panic!("pull linux/{arch}: {e}"));
    let OciManifest::Image(manifest) = manifest else {
        panic!("linux/{arch} came back as an index");
    };
    assert_eq!(manifest.layers.len(), 1);
    // The registry's digest is of the bytes it stored; the client computed the same on push.
    let (raw, raw_digest) = client
        .pull_manifest_raw(&reference, auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("raw manifest");
    assert_eq!(raw_digest, digest);
    let entry = ImageIndexEntry {
        media_type: OCI_IMAGE_MEDIA_TYPE.into(),
        digest,
        size: raw.len() as i64,
        platform: Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            os_version: None,
            os_features: None,
            variant: None,
            features: None,
        }),
        annotations: None,
    };
    (entry, layer)
}

/// An artifact manifest: the empty config, one blob, `subject` pointing at `subject`.
async fn push_artifact(
    client: &Client,
    auth: &RegistryAuth,
    host: &str,
    repo: &str,
    tag: &str,
    artifact_type: &str,
    subject: OciDescriptor,
) -> String {
    let reference = Reference::with_tag(host.into(), repo.into(), tag.into());
    client.store_auth_if_needed(host, auth).await;
    let empty = b"{}".to_vec();
    let empty_layer = ImageLayer::new(empty.clone(), EMPTY_CONFIG.into(), None);
    let body = format!("{artifact_type} about {}\n", subject.digest).into_bytes();
    let blob = ImageLayer::new(body.clone(), artifact_type.into(), None);
    client
        .push_blob(&reference, &empty, &empty_layer.sha256_digest())
        .await
        .expect("push the empty config");
    client
        .push_blob(&reference, &body, &blob.sha256_digest())
        .await
        .expect("push the artifact's blob");
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        artifact_type: Some(artifact_type.into()),
        config: OciDescriptor {
            media_type: EMPTY_CONFIG.into(),
            digest: empty_layer.sha256_digest(),
            size: empty.len() as i64,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: artifact_type.into(),
            digest: blob.sha256_digest(),
            size: body.len() as i64,
            ..OciDescriptor::default()
        }],
        subject: Some(subject),
        annotations: None,
    };
    client
        .push_manifest(&reference, &OciManifest::Image(manifest))
        .await
        .unwrap_or_else(|e| panic!("push artifact {tag}: {e}"));
    client
        .fetch_manifest_digest(&reference, auth)
        .await
        .expect("artifact digest")
}

#[test]
fn oci_client_pushes_an_index_and_artifacts_with_a_subject_then_lists_referrers() {
    let berth = Berth::start(Opts::default());
    let repo = unique("oci/client");
    ecr(&berth, &["create-repository", "--repository-name", &repo]);
    let password = berth
        .aws_profile(&["ecr", "get-login-password"])
        .stdout
        .trim()
        .to_owned();
    let host = berth.addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = client();
        let auth = RegistryAuth::Basic("AWS".into(), password);

        // Without credentials, nothing is pushed (another client: one keeps the first
        // credentials it is given per registry).
        let refused = self::client()
            .push(
                &Reference::with_tag(host.clone(), repo.clone(), "anonymous".into()),
                &[ImageLayer::oci_v1(b"x".to_vec(), None)],
                Config::oci_v1(b"{}".to_vec(), None),
                &RegistryAuth::Anonymous,
                None,
            )
            .await;
        assert!(refused.is_err(), "an anonymous push succeeded");

        // Two platform images and the index that names both.
        let (amd64, amd64_layer) = push_platform(&client, &auth, &host, &repo, "amd64").await;
        let (arm64, _) = push_platform(&client, &auth, &host, &repo, "arm64").await;
        let index = OciImageIndex {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.into()),
            manifests: vec![amd64.clone(), arm64.clone()],
            artifact_type: None,
            annotations: None,
        };
        let multi = Reference::with_tag(host.clone(), repo.clone(), "multi".into());
        client
            .push_manifest_list(&multi, &auth, index)
            .await
            .expect("push the index");
        let (back, _) = client
            .pull_manifest(&multi, &auth)
            .await
            .expect("pull index");
        let OciManifest::ImageIndex(back) = back else {
            panic!("the index came back as an image");
        };
        let digests: Vec<&str> = back.manifests.iter().map(|m| m.digest.as_str()).collect();
        assert_eq!(digests, [amd64.digest.as_str(), arm64.digest.as_str()]);
        let arches: Vec<&str> = back
            .manifests
            .iter()
            .map(|m| m.platform.as_ref().expect("platform").architecture.as_str())
            .collect();
        assert_eq!(arches, ["amd64", "arm64"]);

        // Pulling the index resolves this machine's platform (the tests run on linux/amd64) and
        // brings that image's layer back byte for byte.
        let image = client
            .pull(
                &multi,
                &auth,
                vec![
                    oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE,
                    oci_client::manifest::IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE,
                ],
            )
            .await
            .expect("pull through the index");
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].data, amd64_layer);

        // Two artifacts about the amd64 image, of two types.
        let subject = OciDescriptor {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest: amd64.digest.clone(),
            size: amd64.size,
            ..OciDescriptor::default()
        };
        let sbom = push_artifact(&client, &auth, &host, &repo, "sbom", SBOM, subject.clone()).await;
        let signature =
            push_artifact(&client, &auth, &host, &repo, "sig", SIGNATURE, subject).await;

        let by_digest = Reference::with_digest(host.clone(), repo.clone(), amd64.digest.clone());
        let all = client
            .pull_referrers(&by_digest, None)
            .await
            .expect("referrers");
        // (The client's index entries have no `artifactType` field; the filter below is what
        // shows the registry keeps it.)
        let mut found: Vec<&str> = all.manifests.iter().map(|m| m.digest.as_str()).collect();
        found.sort_unstable();
        let mut expected = vec![sbom.as_str(), signature.as_str()];
        expected.sort_unstable();
        assert_eq!(found, expected);

        let filtered = client
            .pull_referrers(&by_digest, Some(SBOM))
            .await
            .expect("filtered referrers");
        let found: Vec<&str> = filtered
            .manifests
            .iter()
            .map(|m| m.digest.as_str())
            .collect();
        assert_eq!(found, [sbom.as_str()]);

        // The arm64 image has no referrers: an empty index, not an error.
        let arm = Reference::with_digest(host.clone(), repo.clone(), arm64.digest.clone());
        let none = client
            .pull_referrers(&arm, None)
            .await
            .expect("no referrers");
        assert!(none.manifests.is_empty(), "{:?}", none.manifests);
    });

    // ECR sees what the client pushed: two platform images, the index and two artifacts.
    let images = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    let details = images["imageDetails"].as_array().expect("imageDetails");
    assert_eq!(details.len(), 5, "{images}");
}

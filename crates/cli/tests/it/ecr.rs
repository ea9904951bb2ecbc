//! The ECR API end to end: repository lifecycle and images through the real `aws ecr` CLI, the
//! registry auth tokens through `/v2/`, tag immutability through PutImage, the OCI API and
//! `docker push`, and a docker login → push → pull → run round trip. Docker is required: these
//! tests fail, never skip, when it is missing.

use crate::harness::{Berth, Opts, Output, http};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// `aws ecr ARGS` through the profile berth wrote; the JSON of a run that must succeed.
pub(crate) fn ecr(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["ecr"];
    all.extend_from_slice(args);
    berth.aws_profile(&all).json()
}

/// `aws ecr ARGS` for an action with an empty answer (the CLI prints nothing): it must succeed.
#[track_caller]
pub(crate) fn ecr_quiet(berth: &Berth, args: &[&str]) {
    let mut all = vec!["ecr"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_eq!(out.code, 0, "{args:?} failed: {}", out.stderr);
}

/// `aws ecr ARGS` that must fail with the error `code`.
#[track_caller]
pub(crate) fn ecr_fails(berth: &Berth, args: &[&str], code: &str) -> String {
    let mut all = vec!["ecr"];
    all.extend_from_slice(args);
    let out = berth.aws_profile(&all);
    assert_ne!(out.code, 0, "{args:?} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{args:?}: expected {code}, got: {}",
        out.stderr
    );
    out.stderr
}

/// A unique name for this process and call, for repositories and local images.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An OCI image index with no children: a valid manifest that needs no blobs, so PutImage and
/// the OCI API can be driven without uploading layers. `note` changes its digest.
pub(crate) fn empty_index(note: &str) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
        "annotations": {"note": note},
    })
    .to_string()
}

/// The `Authorization` header value `docker login` derives from GetAuthorizationToken.
fn basic_auth(berth: &Berth) -> String {
    let data = ecr(berth, &["get-authorization-token"]);
    let token = data["authorizationData"][0]["authorizationToken"]
        .as_str()
        .expect("authorizationToken");
    format!("Basic {token}")
}

#[test]
fn repository_lifecycle_through_the_aws_cli() {
    let berth = Berth::start(Opts::default());
    let account = berth.keys.account_id.clone();
    let name = unique("team/app");
    let created = ecr(
        &berth,
        &[
            "create-repository",
            "--repository-name",
            &name,
            "--image-scanning-configuration",
            "scanOnPush=true",
            "--tags",
            "Key=team,Value=shop",
        ],
    )["repository"]
        .clone();
    assert_eq!(created["repositoryName"], name.as_str());
    assert_eq!(
        created["repositoryArn"],
        format!("arn:aws:ecr:us-east-1:{account}:repository/{name}").as_str()
    );
    assert_eq!(created["registryId"], account.as_str());
    assert_eq!(
        created["repositoryUri"],
        format!("{}/{name}", berth.addr).as_str()
    );
    assert_eq!(created["imageTagMutability"], "MUTABLE");
    assert_eq!(created["imageScanningConfiguration"]["scanOnPush"], true);
    assert_eq!(
        created["encryptionConfiguration"]["encryptionType"],
        "AES256"
    );
    assert!(created["createdAt"].as_f64().is_some_and(|t| t > 1.6e9));

    ecr_fails(
        &berth,
        &["create-repository", "--repository-name", &name],
        "RepositoryAlreadyExistsException",
    );
    ecr_fails(
        &berth,
        &["create-repository", "--repository-name", "Upper/Case"],
        "InvalidParameterException",
    );
    ecr_fails(
        &berth,
        &[
            "create-repository",
            "--repository-name",
            &unique("plain"),
            "--image-tag-mutability",
            "IMMUTABLE",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=latest",
        ],
        "InvalidParameterException",
    );

    // Describe by name, and all of them page by page.
    let others: Vec<String> = (0..3).map(|_| unique("page")).collect();
    for o in &others {
        ecr(&berth, &["create-repository", "--repository-name", o]);
    }
    let described = ecr(
        &berth,
        &["describe-repositories", "--repository-names", &name],
    );
    assert_eq!(described["repositories"][0], created);
    ecr_fails(
        &berth,
        &["describe-repositories", "--repository-names", "missing"],
        "RepositoryNotFoundException",
    );
    // One repository per page: the CLI follows berth's nextTokens to the end.
    let paged = ecr(&berth, &["describe-repositories", "--page-size", "1"]);
    let mut seen: Vec<String> = paged["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["repositoryName"].as_str().map(str::to_owned))
        .collect();
    seen.sort();
    let mut all = others.clone();
    all.push(name.clone());
    all.sort();
    assert_eq!(seen, all);
    let first = ecr(&berth, &["describe-repositories", "--max-items", "2"]);
    assert_eq!(first["repositories"].as_array().map(Vec::len), Some(2));
    assert!(first["NextToken"].is_string(), "{first}");

    // Tags on the repository.
    let arn = created["repositoryArn"].as_str().expect("arn");
    ecr_quiet(
        &berth,
        &[
            "tag-resource",
            "--resource-arn",
            arn,
            "--tags",
            "Key=env,Value=prod",
        ],
    );
    ecr_quiet(
        &berth,
        &[
            "untag-resource",
            "--resource-arn",
            arn,
            "--tag-keys",
            "team",
        ],
    );
    let tags = ecr(&berth, &["list-tags-for-resource", "--resource-arn", arn]);
    assert_eq!(tags["tags"], json!([{"Key": "env", "Value": "prod"}]));

    // A repository with an image is deleted only with force.
    ecr(
        &berth,
        &[
            "put-image",
            "--repository-name",
            &name,
            "--image-tag",
            "v1",
            "--image-manifest",
            &empty_index("one"),
        ],
    );
    ecr_fails(
        &berth,
        &["delete-repository", "--repository-name", &name],
        "RepositoryNotEmptyException",
    );
    let deleted = ecr(
        &berth,
        &["delete-repository", "--repository-name", &name, "--force"],
    );
    assert_eq!(deleted["repository"]["repositoryName"], name.as_str());
    ecr_fails(
        &berth,
        &["delete-repository", "--repository-name", &name],
        "RepositoryNotFoundException",
    );
    ecr(
        &berth,
        &["delete-repository", "--repository-name", &others[0]],
    );

    let registry = ecr(&berth, &["describe-registry"]);
    assert_eq!(registry["registryId"], account.as_str());
    assert_eq!(registry["replicationConfiguration"]["rules"], json!([]));
}

#[test]
fn registry_auth_uses_ecr_tokens_and_repositories_must_exist() {
    let berth = Berth::start(Opts::default());
    let data = ecr(&berth, &["get-authorization-token"]);
    let auth = &data["authorizationData"][0];
    assert_eq!(
        auth["proxyEndpoint"],
        format!("http://{}", berth.addr).as_str()
    );
    // expiresAt is 12 hours out: the aws CLI prints it as an ISO date; check it is there.
    assert!(auth["expiresAt"].is_string() || auth["expiresAt"].is_number());
    let password = berth
        .aws_profile(&["ecr", "get-login-password"])
        .stdout
        .trim()
        .to_owned();
    assert!(!password.is_empty());

    let anonymous = http(berth.addr, "GET", "/v2/", &[], b"");
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic ")),
        "{:?}",
        anonymous.headers
    );
    let wrong = http(
        berth.addr,
        "GET",
        "/v2/",
        &[("authorization", "Basic QVdTOm5vdC1hLXRva2Vu")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let header = basic_auth(&berth);
    let ok = http(
        berth.addr,
        "GET",
        "/v2/",
        &[("authorization", header.as_str())],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());

    // No create-on-push: a push to a repository CreateRepository did not make is NAME_UNKNOWN.
    let missing = unique("nowhere");
    let r = http(
        berth.addr,
        "PUT",
        &format!("/v2/{missing}/manifests/v1"),
        &[
            ("authorization", header.as_str()),
            ("content-type", "application/vnd.oci.image.index.v1+json"),
        ],
        empty_index("x").as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("NAME_UNKNOWN"), "{}", r.text());
}

#[test]
fn immutable_tags_reject_an_overwrite_through_put_image_and_the_oci_api() {
    let berth = Berth::start(Opts::default());
    let name = unique("frozen");
    ecr(
        &berth,
        &[
            "create-repository",
            "--repository-name",
            &name,
            "--image-tag-mutability",
            "IMMUTABLE_WITH_EXCLUSION",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=latest",
        ],
    );
    let put = |tag: &str, manifest: &str| -> Output {
        berth.aws_profile(&[
            "ecr",
            "put-image",
            "--repository-name",
            &name,
            "--image-tag",
            tag,
            "--image-manifest",
            manifest,
        ])
    };
    let (a, b) = (empty_index("a"), empty_index("b"));
    let first = put("v1", &a).json();
    let digest_a = first["image"]["imageId"]["imageDigest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let again = put("v1", &a);
    assert!(
        again.stderr.contains("(ImageAlreadyExistsException)"),
        "{}",
        again.stderr
    );
    let moved = put("v1", &b);
    assert!(
        moved.stderr.contains("(ImageTagAlreadyExistsException)"),
        "{}",
        moved.stderr
    );
    // `latest` is excluded from immutability: it moves.
    put("latest", &a).json();
    put("latest", &b).json();

    // The same overwrite through the OCI API is TAG_INVALID, as ECR answers docker.
    let header = basic_auth(&berth);
    let r = http(
        berth.addr,
        "PUT",
        &format!("/v2/{name}/manifests/v1"),
        &[
            ("authorization", header.as_str()),
            ("content-type", "application/vnd.oci.image.index.v1+json"),
        ],
        b.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("TAG_INVALID"), "{}", r.text());

    // v1 still names the first image.
    let got = ecr(
        &berth,
        &[
            "batch-get-image",
            "--repository-name",
            &name,
            "--image-ids",
            "imageTag=v1",
            "imageTag=nope",
        ],
    );
    assert_eq!(
        got["images"][0]["imageId"]["imageDigest"],
        digest_a.as_str()
    );
    assert_eq!(got["images"][0]["imageManifest"], a.as_str());
    assert_eq!(
        got["images"][0]["imageManifestMediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(got["failures"][0]["failureCode"], "ImageNotFound");
    let untagged = ecr(
        &berth,
        &[
            "list-images",
            "--repository-name",
            &name,
            "--filter",
            "tagStatus=TAGGED",
        ],
    );
    assert_eq!(untagged["imageIds"].as_array().map(Vec::len), Some(2));
}

/// Local images a test made, removed when it ends (also when it fails).
pub(crate) struct LocalImages(pub(crate) Vec<String>);

impl Drop for LocalImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "-f", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `docker ARGS` with its own client config (so `docker login` does not touch the user's), and
/// `stdin` piped in when given. Panics when docker cannot be run at all.
pub(crate) fn docker(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_CONFIG", config)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run docker {args:?} (Docker is required): {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .expect("write docker stdin");
    }
    let out = child.wait_with_output().expect("wait for docker");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
pub(crate) fn docker_ok(config: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = docker(config, args, stdin);
    assert_eq!(
        out.code, 0,
        "docker {args:?} failed\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// Builds `<tag>` locally with no registry: a base imported from a busybox root filesystem,
/// then a `docker build` layer adding `/file` with `content`.
pub(crate) fn build_image(config: &Path, work: &Path, base: &str, tag: &str, content: &str) {
    let root = work.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    for applet in ["sh", "cat"] {
        let _ = std::fs::remove_file(bin.join(applet));
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
    }
    let tar = work.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed");
    docker_ok(config, &["import", &tar.to_string_lossy(), base], None);
    let ctx = work.join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir ctx");
    std::fs::write(ctx.join("file"), content).expect("write file");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY file /file\n"),
    )
    .expect("write Dockerfile");
    docker_ok(
        config,
        &["build", "-q", "-t", tag, &ctx.to_string_lossy()],
        None,
    );
}

#[test]
fn docker_login_push_pull_run_and_describe_images() {
    let berth = Berth::start(Opts::default());
    let config = berth.dir.path().join("docker");
    let work = berth.dir.path().join("image");
    std::fs::create_dir_all(&config).expect("mkdir docker config");
    let repo = unique("shop/web");
    let host = berth.addr.to_string();
    let base = format!("local/{}:1", unique("berth-ecr-base"));
    let v1 = format!("{host}/{repo}:v1");
    let v2 = format!("{host}/{repo}:v2");
    let _cleanup = LocalImages(vec![v1.clone(), v2.clone(), base.clone()]);

    ecr(
        &berth,
        &[
            "create-repository",
            "--repository-name",
            &repo,
            "--image-tag-mutability",
            "IMMUTABLE",
        ],
    );
    let password = berth.aws_profile(&["ecr", "get-login-password"]);
    assert_eq!(password.code, 0, "{}", password.stderr);
    docker_ok(
        &config,
        &["login", "--username", "AWS", "--password-stdin", &host],
        Some(password.stdout.trim()),
    );

    let content = format!("hello from {repo}\n");
    build_image(&config, &work, &base, &v1, &content);
    docker_ok(&config, &["push", &v1], None);

    // The image as the ECR API sees it.
    let images = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    let detail = &images["imageDetails"][0];
    assert_eq!(images["imageDetails"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail["imageTags"], json!(["v1"]));
    assert_eq!(
        detail["imageManifestMediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        detail["artifactMediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    // Two compressed layers (busybox ~1 MB) and a config.
    assert!(
        detail["imageSizeInBytes"]
            .as_u64()
            .is_some_and(|s| s > 100_000),
        "{detail}"
    );
    let digest = detail["imageDigest"].as_str().expect("digest").to_owned();
    let listed = ecr(&berth, &["list-images", "--repository-name", &repo]);
    assert_eq!(
        listed["imageIds"],
        json!([{"imageDigest": digest, "imageTag": "v1"}])
    );

    // Remove it locally, pull it back, run it.
    docker_ok(&config, &["rmi", "-f", &v1], None);
    docker_ok(&config, &["pull", &v1], None);
    let ran = docker_ok(
        &config,
        &["run", "--rm", &v1, "/bin/busybox", "cat", "/file"],
        None,
    );
    assert_eq!(ran, content);

    // An immutable tag cannot be pushed again with other content.
    build_image(&config, &work, &base, &v1, "other content\n");
    let refused = docker(&config, &["push", &v1], None);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("tag invalid"),
        "{refused:?}"
    );
    // The same content under a new tag is fine.
    docker_ok(&config, &["tag", &v1, &v2], None);
    docker_ok(&config, &["push", &v2], None);
    let listed = ecr(
        &berth,
        &[
            "list-images",
            "--repository-name",
            &repo,
            "--filter",
            "tagStatus=TAGGED",
        ],
    );
    assert_eq!(listed["imageIds"].as_array().map(Vec::len), Some(2));

    // BatchDeleteImage: by tag (the last tag takes the image with it) and a missing one.
    let deleted = ecr(
        &berth,
        &[
            "batch-delete-image",
            "--repository-name",
            &repo,
            "--image-ids",
            "imageTag=v1",
            "imageTag=gone",
        ],
    );
    assert_eq!(
        deleted["imageIds"],
        json!([{"imageDigest": digest, "imageTag": "v1"}])
    );
    assert_eq!(deleted["failures"][0]["failureCode"], "ImageNotFound");
    let left = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    assert_eq!(left["imageDetails"].as_array().map(Vec::len), Some(1));
    assert_eq!(left["imageDetails"][0]["imageTags"], json!(["v2"]));
    let gone = docker(&config, &["pull", &v1], None);
    assert_ne!(gone.code, 0, "v1 was deleted: {}", gone.stdout);
    docker(&config, &["logout", &host], None);
}

/// boto3 pushes an image through the layer APIs (a gzipped tar layer larger than one part, and
/// its config), checking each API's errors on the way, then PutImage names them; prints the
/// layer's digest.
const BOTO3_LAYER_PUSH: &str = r#"
import base64, botocore, boto3, gzip, hashlib, io, json, os, tarfile, urllib.error, urllib.request
ecr = boto3.client("ecr", endpoint_url=os.environ["BERTH_ENDPOINT"], region_name="us-east-1")
repo = os.environ["REPO"]

def fails(code, f, **kw):
    try:
        f(repositoryName=repo, **kw)
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, (code, got, e.response["Error"]["Message"])
        return e.response["Error"]["Message"]
    raise AssertionError(f"{f.__name__} {kw} succeeded, expected {code}")

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    for name, data in [("hello.txt", os.environ["CONTENT"].encode()), ("pad.bin", os.urandom(700 * 1024))]:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        t.addfile(info, io.BytesIO(data))
tar = buf.getvalue()
layer = gzip.compress(tar, mtime=0)
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()

def push(blob):
    up = ecr.initiate_layer_upload(repositoryName=repo)
    uid, size = up["uploadId"], up["partSize"]
    for start in range(0, len(blob), size):
        part = blob[start:start + size]
        r = ecr.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=start,
                                  partLastByte=start + len(part) - 1, layerPartBlob=part)
        assert r["lastByteReceived"] == start + len(part) - 1, r
        assert r["uploadId"] == uid and r["repositoryName"] == repo, r
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[sha(blob)])
    assert done["layerDigest"] == sha(blob), done
    return uid, size

check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(layer), "nope", ""])
assert check["layers"] == [], check
assert [f["failureCode"] for f in check["failures"]] == ["MissingLayerDigest", "InvalidLayerDigest", "MissingLayerDigest"], check

# A part must continue the upload exactly; a bad one changes nothing.
up = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
ecr.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=0, partLastByte=9, layerPartBlob=b"0123456789")
msg = fails("InvalidLayerPartException", ecr.upload_layer_part, uploadId=up, partFirstByte=20, partLastByte=29, layerPartBlob=b"x" * 10)
assert "lastValidByteReceived: 9" in msg, msg
fails("InvalidLayerPartException", ecr.upload_layer_part, uploadId=up, partFirstByte=10, partLastByte=30, layerPartBlob=b"x" * 10)
r = ecr.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=10, partLastByte=19, layerPartBlob=b"abcdefghij")
assert r["lastByteReceived"] == 19, r
# Parts of 10 bytes before the last are too small; a wrong digest is an invalid layer.
fails("LayerPartTooSmallException", ecr.complete_layer_upload, uploadId=up, layerDigests=[sha(b"0123456789abcdefghij")])
up = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
fails("EmptyUploadException", ecr.complete_layer_upload, uploadId=up, layerDigests=[sha(b"")])
ecr.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=0, partLastByte=4, layerPartBlob=b"hello")
fails("InvalidLayerException", ecr.complete_layer_upload, uploadId=up, layerDigests=[sha(b"other")])
fails("UploadNotFoundException", ecr.complete_layer_upload, uploadId=up, layerDigests=[sha(b"hello")])
fails("UploadNotFoundException", ecr.upload_layer_part, uploadId="00000000-0000-4000-8000-000000000000", partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
assert ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(b"other"), sha(b"hello")])["layers"] == []

uid, size = push(layer)
assert size < len(layer), "the layer spans several parts"
push(config)
check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(layer), sha(config)])
assert [(l["layerDigest"], l["layerAvailability"], l["layerSize"]) for l in check["layers"]] == \
    [(sha(layer), "AVAILABLE", len(layer)), (sha(config), "AVAILABLE", len(config))], check
up = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
ecr.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=0, partLastByte=len(config) - 1, layerPartBlob=config)
fails("LayerAlreadyExistsException", ecr.complete_layer_upload, uploadId=up, layerDigests=[sha(config)])

# Not yet part of an image: not downloadable.
fails("LayerInaccessibleException", ecr.get_download_url_for_layer, layerDigest=sha(layer))
fails("LayersNotFoundException", ecr.get_download_url_for_layer, layerDigest=sha(b"never"))

manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": sha(config)},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer), "digest": sha(layer)}],
})
ecr.put_image(repositoryName=repo, imageTag="v1", imageManifest=manifest)
check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha(layer)])
assert check["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip", check

url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha(layer))
assert url["layerDigest"] == sha(layer), url
# The URL serves the layer with no credentials; tampering with it does not.
assert urllib.request.urlopen(url["downloadUrl"]).read() == layer
try:
    urllib.request.urlopen(url["downloadUrl"].replace("Signature=", "Signature=00"))
    raise AssertionError("a tampered URL served the layer")
except urllib.error.HTTPError as e:
    assert e.code == 401, e.code
print(sha(layer))
"#;

#[test]
fn layer_apis_push_an_image_that_docker_pulls() {
    let berth = Berth::start(Opts::default());
    let repo = unique("layers/app");
    ecr(&berth, &["create-repository", "--repository-name", &repo]);
    let content = format!("pushed through the layer APIs into {repo}\n");
    let out = berth.python(BOTO3_LAYER_PUSH, &[("REPO", &repo), ("CONTENT", &content)]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let layer_digest = out.stdout.trim().to_owned();

    // The blob over /v2/ with the registry's credentials.
    let header = basic_auth(&berth);
    let blob = http(
        berth.addr,
        "GET",
        &format!("/v2/{repo}/blobs/{layer_digest}"),
        &[("authorization", header.as_str())],
        b"",
    );
    assert_eq!(blob.status, 200);
    assert_eq!(
        blob.header("docker-content-digest"),
        Some(layer_digest.as_str())
    );

    // docker pulls what the layer APIs pushed, and the file is in it.
    let config = berth.dir.path().join("docker");
    std::fs::create_dir_all(&config).expect("mkdir docker config");
    let host = berth.addr.to_string();
    let image = format!("{host}/{repo}:v1");
    let _cleanup = LocalImages(vec![image.clone()]);
    let password = berth.aws_profile(&["ecr", "get-login-password"]);
    docker_ok(
        &config,
        &["login", "--username", "AWS", "--password-stdin", &host],
        Some(password.stdout.trim()),
    );
    docker_ok(&config, &["pull", &image], None);
    let container = docker_ok(&config, &["create", &image, "/none"], None)
        .trim()
        .to_owned();
    let out_dir = berth.dir.path().join("copied");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let copied = docker(
        &config,
        &[
            "cp",
            &format!("{container}:/hello.txt"),
            &out_dir.to_string_lossy(),
        ],
        None,
    );
    docker(&config, &["rm", "-f", &container], None);
    assert_eq!(copied.code, 0, "{}", copied.stderr);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("hello.txt")).expect("copied file"),
        content
    );
    docker(&config, &["logout", &host], None);
}

#[test]
fn put_image_tag_mutability_changes_what_put_image_may_overwrite() {
    let berth = Berth::start(Opts::default());
    let name = unique("mutability");
    ecr(&berth, &["create-repository", "--repository-name", &name]);
    let put = |tag: &str, note: &str| -> Output {
        berth.aws_profile(&[
            "ecr",
            "put-image",
            "--repository-name",
            &name,
            "--image-tag",
            tag,
            "--image-manifest",
            &empty_index(note),
        ])
    };
    let set = |args: &[&str]| -> Value {
        let mut all = vec!["put-image-tag-mutability", "--repository-name", &name];
        all.extend_from_slice(args);
        ecr(&berth, &all)
    };
    let described = |berth: &Berth| -> Value {
        ecr(
            berth,
            &["describe-repositories", "--repository-names", &name],
        )["repositories"][0]
            .clone()
    };
    put("v1", "a").json();
    put("v1", "b").json();

    let answer = set(&["--image-tag-mutability", "IMMUTABLE"]);
    assert_eq!(answer["repositoryName"], name.as_str());
    assert_eq!(answer["registryId"], berth.keys.account_id.as_str());
    assert_eq!(answer["imageTagMutability"], "IMMUTABLE");
    assert_eq!(described(&berth)["imageTagMutability"], "IMMUTABLE");
    let refused = put("v1", "c");
    assert!(
        refused.stderr.contains("(ImageTagAlreadyExistsException)"),
        "{}",
        refused.stderr
    );
    put("v2", "c").json();
    // docker pushes through /v2/, where the same policy holds: TAG_INVALID.
    let header = basic_auth(&berth);
    let r = http(
        berth.addr,
        "PUT",
        &format!("/v2/{name}/manifests/v1"),
        &[
            ("authorization", header.as_str()),
            ("content-type", "application/vnd.oci.image.index.v1+json"),
        ],
        empty_index("c2").as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("TAG_INVALID"), "{}", r.text());

    // Mutable except release tags.
    let answer = set(&[
        "--image-tag-mutability",
        "MUTABLE_WITH_EXCLUSION",
        "--image-tag-mutability-exclusion-filters",
        "filterType=WILDCARD,filter=release-*",
    ]);
    assert_eq!(
        answer["imageTagMutabilityExclusionFilters"],
        json!([{"filterType": "WILDCARD", "filter": "release-*"}])
    );
    put("v1", "d").json();
    put("release-1", "e").json();
    let refused = put("release-1", "f");
    assert!(
        refused.stderr.contains("(ImageTagAlreadyExistsException)"),
        "{}",
        refused.stderr
    );

    // Immutable except `latest`.
    set(&[
        "--image-tag-mutability",
        "IMMUTABLE_WITH_EXCLUSION",
        "--image-tag-mutability-exclusion-filters",
        "filterType=WILDCARD,filter=latest",
    ]);
    put("latest", "g").json();
    put("latest", "h").json();
    let refused = put("v1", "i");
    assert!(
        refused.stderr.contains("(ImageTagAlreadyExistsException)"),
        "{}",
        refused.stderr
    );

    // Bad combinations and unknown repositories change nothing.
    let before = described(&berth);
    ecr_fails(
        &berth,
        &[
            "put-image-tag-mutability",
            "--repository-name",
            &name,
            "--image-tag-mutability",
            "MUTABLE_WITH_EXCLUSION",
        ],
        "InvalidParameterException",
    );
    ecr_fails(
        &berth,
        &[
            "put-image-tag-mutability",
            "--repository-name",
            &name,
            "--image-tag-mutability",
            "MUTABLE",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=latest",
        ],
        "InvalidParameterException",
    );
    ecr_fails(
        &berth,
        &[
            "put-image-tag-mutability",
            "--repository-name",
            "missing",
            "--image-tag-mutability",
            "MUTABLE",
        ],
        "RepositoryNotFoundException",
    );
    assert_eq!(described(&berth), before);

    // Back to mutable: every tag moves again.
    let answer = set(&["--image-tag-mutability", "MUTABLE"]);
    assert!(
        answer.get("imageTagMutabilityExclusionFilters").is_none(),
        "{answer}"
    );
    put("v1", "j").json();
    put("release-1", "k").json();
}

#[test]
fn repository_policies_are_validated_stored_and_deleted() {
    let berth = Berth::start(Opts::default());
    let name = unique("policy");
    ecr(&berth, &["create-repository", "--repository-name", &name]);
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowPull",
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::123456789012:root"]},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        }]
    })
    .to_string();
    ecr_fails(
        &berth,
        &["get-repository-policy", "--repository-name", &name],
        "RepositoryPolicyNotFoundException",
    );
    let set = ecr(
        &berth,
        &[
            "set-repository-policy",
            "--repository-name",
            &name,
            "--policy-text",
            &policy,
        ],
    );
    assert_eq!(set["policyText"], policy.as_str());
    assert_eq!(set["repositoryName"], name.as_str());
    assert_eq!(set["registryId"], berth.keys.account_id.as_str());

    // Not an IAM policy: refused with ECR's message, and the stored one stays.
    for bad in [
        "{}".to_owned(),
        "not json".to_owned(),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]})
            .to_string(),
        json!({"Statement": {"Effect": "Perhaps", "Principal": "*", "Action": "ecr:*"}})
            .to_string(),
    ] {
        let stderr = ecr_fails(
            &berth,
            &[
                "set-repository-policy",
                "--repository-name",
                &name,
                "--policy-text",
                &bad,
            ],
            "InvalidParameterException",
        );
        assert!(
            stderr.contains("Invalid repository policy provided"),
            "{stderr}"
        );
    }
    ecr_fails(
        &berth,
        &[
            "set-repository-policy",
            "--repository-name",
            "missing",
            "--policy-text",
            &policy,
        ],
        "RepositoryNotFoundException",
    );
    let got = ecr(
        &berth,
        &["get-repository-policy", "--repository-name", &name],
    );
    assert_eq!(got["policyText"], policy.as_str());

    let deleted = ecr(
        &berth,
        &["delete-repository-policy", "--repository-name", &name],
    );
    assert_eq!(deleted["policyText"], policy.as_str());
    ecr_fails(
        &berth,
        &["get-repository-policy", "--repository-name", &name],
        "RepositoryPolicyNotFoundException",
    );
    ecr_fails(
        &berth,
        &["delete-repository-policy", "--repository-name", &name],
        "RepositoryPolicyNotFoundException",
    );
    ecr_fails(
        &berth,
        &["get-repository-policy", "--repository-name", "missing"],
        "RepositoryNotFoundException",
    );
}

//! OCI clients against berth's registry: skopeo (Debian's) pushes a locally built OCI layout,
//! copies it between two berth repositories and inspects the copy; podman (Debian's) logs in
//! with an ECR token, pushes, pulls back and runs an image; and a crash test, berth SIGKILLed
//! in the middle of a large chunked upload, after which the upload resumes or restarts cleanly
//! and no partial blob is ever served. skopeo and podman are required: these tests fail, never
//! skip, when they are missing (scripts/test installs them).

use crate::ecr::{ecr, unique};
use crate::harness::{Berth, Opts, Response, TempDir, http, request_head};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// `sha256:<hex>` of a file, by coreutils' sha256sum (the tests' crates have no hasher).
pub(crate) fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().expect("hash"))
}

/// Writes `bytes` as a blob of an OCI layout; returns its descriptor's digest and size.
fn add_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, bytes).expect("write blob");
    let digest = sha256_file(&tmp);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(hex)).expect("rename blob");
    (digest, bytes.len())
}

/// An OCI image layout at `layout` holding one linux/amd64 image tagged `tag`: a gzip layer of a
/// busybox root filesystem plus `/hello.txt` with `content`, built with tar and gzip, nothing
/// pulled. Returns the manifest's digest, the layer's digest and the manifest bytes.
pub(crate) fn build_oci_layout(
    work: &Path,
    layout: &Path,
    tag: &str,
    content: &str,
) -> (String, String, Vec<u8>) {
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
    std::fs::write(rootfs.join("hello.txt"), content).expect("write hello.txt");
    let tar = work.join("layer.tar");
    let status = Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed");
    let diff_id = sha256_file(&tar);
    let status = Command::new("gzip")
        .args(["-n", "-f"])
        .arg(&tar)
        .status()
        .expect("run gzip");
    assert!(status.success(), "gzip failed");
    let layer = std::fs::read(work.join("layer.tar.gz")).expect("read layer");

    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir layout");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let (layer_digest, layer_size) = add_blob(layout, &layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let (config_digest, config_size) = add_blob(layout, config.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_size,
        }],
    })
    .to_string()
    .into_bytes();
    let (manifest_digest, manifest_size) = add_blob(layout, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    (manifest_digest, layer_digest, manifest)
}

/// `skopeo ARGS` with no policy or registries configuration of the machine in the way.
fn skopeo(work: &Path, args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .arg("--tmpdir")
        .arg(work)
        .args(args)
        .env("HOME", work)
        .env("XDG_RUNTIME_DIR", work)
        .env("REGISTRY_AUTH_FILE", work.join("auth.json"))
        .output()
        .expect("run skopeo (Debian's skopeo: scripts/test installs it)")
}

#[track_caller]
pub(crate) fn skopeo_ok(work: &Path, args: &[&str]) -> String {
    let out = skopeo(work, args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn skopeo_copies_between_two_berth_repositories_and_inspects_the_copy() {
    let berth = Berth::start(Opts::default());
    let work = TempDir::new("skopeo");
    let work = work.path();
    let src = unique("skopeo/src");
    let dst = unique("skopeo/dst");
    ecr(&berth, &["create-repository", "--repository-name", &src]);
    ecr(&berth, &["create-repository", "--repository-name", &dst]);
    let password = berth
        .aws_profile(&["ecr", "get-login-password"])
        .stdout
        .trim()
        .to_owned();
    let creds = format!("AWS:{password}");
    let host = berth.addr.to_string();

    let layout = work.join("layout");
    let content = format!("copied by skopeo through {src} and {dst}\n");
    let (manifest_digest, layer_digest, manifest) = build_oci_layout(work, &layout, "v1", &content);

    // Push: the local layout into the first repository.
    let layout_ref = format!("oci:{}:v1", layout.display());
    let src_ref = format!("docker://{host}/{src}:v1");
    let dst_ref = format!("docker://{host}/{dst}:copied");
    skopeo_ok(
        work,
        &[
            "copy",
            "--dest-creds",
            &creds,
            "--dest-tls-verify=false",
            &layout_ref,
            &src_ref,
        ],
    );
    // Without credentials the registry refuses (and skopeo says so).
    let anonymous = skopeo(work, &["inspect", "--tls-verify=false", &src_ref]);
    assert!(!anonymous.status.success(), "anonymous inspect succeeded");

    // Copy between the two berth repositories.
    skopeo_ok(
        work,
        &[
            "copy",
            "--src-creds",
            &creds,
            "--dest-creds",
            &creds,
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &src_ref,
            &dst_ref,
        ],
    );

    // Inspect the copy: same manifest digest (nothing was converted), its layer, its platform.
    let inspected: Value = serde_json::from_str(&skopeo_ok(
        work,
        &["inspect", "--creds", &creds, "--tls-verify=false", &dst_ref],
    ))
    .expect("skopeo inspect prints JSON");
    assert_eq!(inspected["Digest"], manifest_digest.as_str(), "{inspected}");
    assert_eq!(inspected["Layers"], json!([layer_digest]), "{inspected}");
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(
        inspected["Name"],
        format!("{host}/{dst}").as_str(),
        "{inspected}"
    );
    let raw = skopeo_ok(
        work,
        &[
            "inspect",
            "--raw",
            "--creds",
            &creds,
            "--tls-verify=false",
            &dst_ref,
        ],
    );
    assert_eq!(
        raw.as_bytes(),
        manifest.as_slice(),
        "the manifest bytes are kept"
    );
    let tags: Value = serde_json::from_str(&skopeo_ok(
        work,
        &[
            "list-tags",
            "--creds",
            &creds,
            "--tls-verify=false",
            &format!("docker://{host}/{dst}"),
        ],
    ))
    .expect("list-tags prints JSON");
    assert_eq!(tags["Tags"], json!(["copied"]), "{tags}");

    // ECR sees the copied image, and the copy pulls back into a layout with the same layer.
    let images = ecr(&berth, &["describe-images", "--repository-name", &dst]);
    assert_eq!(
        images["imageDetails"][0]["imageDigest"],
        manifest_digest.as_str(),
        "{images}"
    );
    assert_eq!(images["imageDetails"][0]["imageTags"], json!(["copied"]));
    let back = work.join("back");
    skopeo_ok(
        work,
        &[
            "copy",
            "--src-creds",
            &creds,
            "--src-tls-verify=false",
            &dst_ref,
            &format!("oci:{}:back", back.display()),
        ],
    );
    let hex = layer_digest.trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(back.join("blobs/sha256").join(hex)).expect("pulled layer"),
        std::fs::read(layout.join("blobs/sha256").join(hex)).expect("pushed layer"),
    );
}

// ---- many idle chunked uploads --------------------------------------------------------------

/// Between requests an upload session holds no descriptor: 300 chunked uploads left open after
/// their first part do not use up a berth allowed 256 open files (before, each held two), and
/// each then completes with exactly its bytes.
#[test]
fn hundreds_of_idle_chunked_uploads_hold_no_descriptors() {
    const SESSIONS: usize = 300;
    let berth = Berth::start(Opts::open().server_only().open_file_limit(256, 256));
    let repo = unique("idle/uploads");
    create_repository_open(&berth, &repo);
    let work = TempDir::new("idle-uploads");
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        // First parts of 4 KiB and more, so each session has whole blocks written and a few
        // bytes kept; then parts of 3000.
        let data = pseudo_random(4097 + i + 3000, i as u64 + 1);
        let location = start_upload(berth.addr, &repo);
        let r = patch(berth.addr, &location, 0, &data[..4097 + i]);
        assert_eq!(r.status, 202, "first part of upload {i}: {}", r.text());
        let file = work.path().join(format!("blob{i}"));
        std::fs::write(&file, &data).expect("write blob");
        sessions.push((location, data, file));
    }
    let descriptors = std::fs::read_dir(format!("/proc/{}/fd", berth.pid))
        .expect("berth's descriptors")
        .count();
    assert!(
        descriptors < 100,
        "{SESSIONS} idle uploads hold {descriptors} descriptors"
    );
    for (i, (location, data, file)) in sessions.iter().enumerate() {
        let digest = sha256_file(file);
        let range = format!("{}-{}", 4097 + i, data.len() - 1);
        let r = http(
            berth.addr,
            "PUT",
            &with_digest(location, &digest),
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", range.as_str()),
            ],
            &data[4097 + i..],
        );
        assert_eq!(r.status, 201, "upload {i}: {}", r.text());
        let got = http(
            berth.addr,
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            b"",
        );
        assert_eq!(got.status, 200, "blob {i}");
        assert!(got.body == *data, "blob {i} has other bytes");
    }
}

// ---- garbage collection ----------------------------------------------------------------------

/// The server collects garbage on its own (`--registry-gc-secs`): a blob no manifest references
/// and an upload session left idle are gone within a few periods, while an image's blobs and
/// manifest stay.
#[test]
fn garbage_collection_runs_on_its_own() {
    let berth = Berth::start(
        Opts::open()
            .server_only()
            .arg("--registry-gc-secs")
            .arg("2"),
    );
    let repo = unique("gc/app");
    create_repository_open(&berth, &repo);
    let work = TempDir::new("gc");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = pseudo_random(5000, 0x9c);
    let config_digest = push_blob(berth.addr, &repo, &work, config);
    let layer_digest = push_blob(berth.addr, &repo, &work, &layer);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let r = http(
        berth.addr,
        "PUT",
        &format!("/v2/{repo}/manifests/v1"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    );
    assert_eq!(r.status, 201, "manifest: {}", r.text());
    let orphan = push_blob(berth.addr, &repo, &work, &pseudo_random(3000, 0x0f));
    let idle = start_upload(berth.addr, &repo);
    assert_eq!(patch(berth.addr, &idle, 0, &layer[..100]).status, 202);

    let orphan_path = format!("/v2/{repo}/blobs/{orphan}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while berth.get(&orphan_path).status != 404 || upload_offset(berth.addr, &idle).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan blob or the idle upload outlived 15 collection periods"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let staged = std::fs::read_dir(berth.data_dir().join("registry/uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(staged, 0, "the idle upload's staged file is left");
    for d in [&config_digest, &layer_digest] {
        let r = berth.get(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 200, "a blob of the image was collected: {d}");
    }
    assert_eq!(
        berth.get(&format!("/v2/{repo}/manifests/v1")).text(),
        manifest
    );
}

// ---- crash during a chunked upload ----------------------------------------------------------

/// Deterministic incompressible bytes (xorshift), so a wrong offset shows as a wrong digest.
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn create_repository_open(berth: &Berth, name: &str) {
    let r = http(
        berth.addr,
        "POST",
        "/",
        &[
            (
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
            ),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        json!({ "repositoryName": name }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "CreateRepository: {}", r.text());
}

pub(crate) fn start_upload(addr: SocketAddr, repo: &str) -> String {
    let r = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.header("location").expect("location").to_owned()
}

/// `sha256:<hex>` of `bytes` (through a file in `work`, for sha256sum).
pub(crate) fn digest_of(work: &TempDir, bytes: &[u8]) -> String {
    let file = work.path().join("digest.tmp");
    std::fs::write(&file, bytes).expect("write");
    sha256_file(&file)
}

/// A monolithic upload (`POST ?digest=`) of `bytes` into `repo`; returns the digest.
pub(crate) fn push_blob(addr: SocketAddr, repo: &str, work: &TempDir, bytes: &[u8]) -> String {
    let digest = digest_of(work, bytes);
    let r = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[("content-type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(r.status, 201, "upload of {digest}: {}", r.text());
    digest
}

/// The upload URL `location` with `?digest=` (or `&digest=`) added: the closing PUT's target.
pub(crate) fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

pub(crate) fn patch(addr: SocketAddr, location: &str, offset: usize, chunk: &[u8]) -> Response {
    let range = format!("{}-{}", offset, offset + chunk.len() - 1);
    http(
        addr,
        "PATCH",
        location,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", range.as_str()),
        ],
        chunk,
    )
}

/// The offset an upload status `GET` reports (`Range: 0-<last>`), or `None` when the server
/// does not know the upload (404 `BLOB_UPLOAD_UNKNOWN`).
fn upload_offset(addr: SocketAddr, location: &str) -> Option<usize> {
    let r = http(addr, "GET", location, &[], b"");
    if r.status == 404 {
        assert!(r.text().contains("BLOB_UPLOAD_UNKNOWN"), "{}", r.text());
        return None;
    }
    assert_eq!(r.status, 204, "{}", r.text());
    let range = r.header("range").expect("range header");
    let last: usize = range
        .split('-')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("range 0-<last>");
    Some(if r.header("range") == Some("0-0") {
        0
    } else {
        last + 1
    })
}

/// A `HEAD`: status and headers only (a HEAD answer announces a length it never sends).
fn head_request(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream
        .write_all(request_head(addr, "HEAD", path, &[], 0, false).as_bytes())
        .expect("write HEAD");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).expect("header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    (status, headers)
}

/// The blob is not served: HEAD and GET by digest answer 404 `BLOB_UNKNOWN`.
#[track_caller]
fn assert_not_served(addr: SocketAddr, repo: &str, digest: &str) {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let (status, _) = head_request(addr, &path);
    assert_eq!(status, 404, "HEAD of an incomplete blob");
    let get = http(addr, "GET", &path, &[], b"");
    assert_eq!(
        get.status,
        404,
        "GET of an incomplete blob: {} bytes",
        get.body.len()
    );
    assert!(get.text().contains("BLOB_UNKNOWN"), "{}", get.text());
}

/// Files under `<data>/registry/blobs`: the only blob of the test must not be there early.
fn blob_files(berth: &Berth) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&berth.data_dir().join("registry/blobs"), &mut out);
    out
}

const CHUNK: usize = 8 * 1024 * 1024;

#[test]
fn sigkill_mid_chunked_upload_then_the_upload_resumes_or_restarts_and_no_partial_blob_is_served() {
    let berth = Berth::start(Opts::open());
    let repo = unique("crash/upload");
    create_repository_open(&berth, &repo);
    let data = pseudo_random(6 * CHUNK + 12345, 0x5eed);
    let work = TempDir::new("crash-upload");
    let file = work.path().join("blob");
    std::fs::write(&file, &data).expect("write blob");
    let digest = sha256_file(&file);
    let watcher = Watcher::start(berth.addr, &repo, &digest);

    // Three chunks acknowledged, each checked through the status GET.
    let location = start_upload(berth.addr, &repo);
    for i in 0..3 {
        let r = patch(
            berth.addr,
            &location,
            i * CHUNK,
            &data[i * CHUNK..(i + 1) * CHUNK],
        );
        assert_eq!(r.status, 202, "chunk {i}: {}", r.text());
        assert_eq!(upload_offset(berth.addr, &location), Some((i + 1) * CHUNK));
        assert_not_served(berth.addr, &repo, &digest);
    }
    assert!(blob_files(&berth).is_empty(), "{:?}", blob_files(&berth));

    // A fourth chunk is streaming when berth is SIGKILLed: half of it sent, the rest never.
    let mut stream = TcpStream::connect(berth.addr).expect("connect");
    let fourth = &data[3 * CHUNK..4 * CHUNK];
    let range = format!("{}-{}", 3 * CHUNK, 4 * CHUNK - 1);
    let head = request_head(
        berth.addr,
        "PATCH",
        &location,
        &[
            ("content-type", "application/octet-stream"),
            ("content-range", range.as_str()),
        ],
        fourth.len(),
        false,
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream
        .write_all(&fourth[..CHUNK / 2])
        .expect("write half a chunk");
    stream.flush().expect("flush");
    // Let the server take in what was sent. (No status GET here: the session is busy with the
    // PATCH, and the status waits for it.)
    std::thread::sleep(Duration::from_millis(300));
    assert_not_served(berth.addr, &repo, &digest);
    let berth = berth.restart(Opts::open());
    watcher.retarget(berth.addr);
    drop(stream);

    // After the restart: nothing under blobs/, the digest unknown, and the upload either known
    // at an offset it really kept, or unknown (then it starts again from zero).
    assert!(blob_files(&berth).is_empty(), "{:?}", blob_files(&berth));
    assert_not_served(berth.addr, &repo, &digest);
    let (location, mut offset) = match upload_offset(berth.addr, &location) {
        Some(o) => {
            assert!(
                o <= 3 * CHUNK + CHUNK / 2,
                "offset {o} beyond what was sent"
            );
            (location, o)
        }
        None => {
            // Restarted cleanly: the staged bytes of the dead session are gone too.
            let staged = berth.data_dir().join("registry/uploads");
            let left: Vec<_> = std::fs::read_dir(&staged)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "staged leftovers after restart: {left:?}");
            (start_upload(berth.addr, &repo), 0)
        }
    };

    // A chunk that does not start at the offset is refused and changes nothing.
    if offset + 10 < data.len() {
        let wrong = patch(
            berth.addr,
            &location,
            offset + 1,
            &data[offset + 1..offset + 10],
        );
        assert_eq!(wrong.status, 416, "{}", wrong.text());
        assert_eq!(upload_offset(berth.addr, &location), Some(offset));
    }
    while offset < data.len() {
        let end = (offset + CHUNK).min(data.len());
        let r = patch(berth.addr, &location, offset, &data[offset..end]);
        assert_eq!(r.status, 202, "chunk at {offset}: {}", r.text());
        offset = end;
        assert_eq!(upload_offset(berth.addr, &location), Some(offset));
        assert_not_served(berth.addr, &repo, &digest);
    }
    watcher.completing();
    let done = http(
        berth.addr,
        "PUT",
        &with_digest(&location, &digest),
        &[("content-type", "application/octet-stream")],
        b"",
    );
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(done.header("docker-content-digest"), Some(digest.as_str()));

    let path = format!("/v2/{repo}/blobs/{digest}");
    let (status, headers) = head_request(berth.addr, &path);
    assert_eq!(status, 200);
    let len = data.len().to_string();
    assert!(
        headers.contains(&("content-length".to_owned(), len)),
        "{headers:?}"
    );
    let got = http(berth.addr, "GET", &path, &[], b"");
    assert_eq!(got.status, 200);
    assert!(
        got.body == data,
        "the served blob differs from the uploaded bytes"
    );
    assert_eq!(blob_files(&berth).len(), 1, "{:?}", blob_files(&berth));
    let (looks, answers) = watcher.stop();
    assert!(
        answers > 0,
        "the watcher never got an answer ({looks} looks)"
    );
}

/// A reader that, for the whole test, asks for the blob by digest (HEAD, and GET of its first
/// byte) on fresh connections, and fails the test if the blob is ever served before the
/// completing `PUT` was sent. Connection errors (berth killed, restarting) are expected.
struct Watcher {
    state: std::sync::Arc<WatchState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchState {
    addr: std::sync::Mutex<SocketAddr>,
    completing: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    looks: std::sync::atomic::AtomicUsize,
    answers: std::sync::atomic::AtomicUsize,
    served_early: std::sync::Mutex<Option<String>>,
}

impl Watcher {
    fn start(addr: SocketAddr, repo: &str, digest: &str) -> Watcher {
        use std::sync::atomic::Ordering::SeqCst;
        let state = std::sync::Arc::new(WatchState {
            addr: std::sync::Mutex::new(addr),
            completing: false.into(),
            stop: false.into(),
            looks: 0.into(),
            answers: 0.into(),
            served_early: std::sync::Mutex::new(None),
        });
        let path = format!("/v2/{repo}/blobs/{digest}");
        let s = state.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(SeqCst) {
                let addr = *s.addr.lock().expect("lock");
                // Read before asking: a 200 is early only if the PUT had not been sent yet.
                let completing = s.completing.load(SeqCst);
                s.looks.fetch_add(1, SeqCst);
                let got =
                    crate::harness::try_http(addr, "GET", &path, &[("range", "bytes=0-0")], b"");
                if let Ok(r) = got {
                    s.answers.fetch_add(1, SeqCst);
                    if r.status != 404 && !completing {
                        *s.served_early.lock().expect("lock") =
                            Some(format!("GET answered {}: {}", r.status, r.text()));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Watcher {
            state,
            thread: Some(thread),
        }
    }

    fn retarget(&self, addr: SocketAddr) {
        *self.state.addr.lock().expect("lock") = addr;
    }

    fn completing(&self) {
        self.state
            .completing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops the reader; panics if it saw the blob early. Returns (looks, answers).
    fn stop(mut self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("watcher thread");
        }
        if let Some(early) = self.state.served_early.lock().expect("lock").take() {
            panic!("a partial blob was served before the upload completed: {early}");
        }
        (
            self.state.looks.load(SeqCst),
            self.state.answers.load(SeqCst),
        )
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- podman ---------------------------------------------------------------------------------

/// `podman ARGS` with its credentials in `authfile` (never the machine's own), stdin optional.
fn podman(authfile: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("podman");
    cmd.args(args)
        .env("REGISTRY_AUTH_FILE", authfile)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("podman is installed (scripts/test installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write podman's stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("podman ran")
}

#[track_caller]
fn podman_ok(authfile: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = podman(authfile, args, stdin);
    assert!(
        out.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the test's images from podman's store however the test ends.
struct PodmanImages<'a>(&'a Path, Vec<String>);

impl Drop for PodmanImages<'_> {
    fn drop(&mut self) {
        for image in &self.1 {
            let _ = podman(self.0, &["rmi", "--force", image], None);
        }
    }
}

#[test]
fn podman_logs_in_pushes_pulls_and_runs_an_image() {
    let berth = Berth::start(Opts::default());
    let work = TempDir::new("podman");
    let work = work.path();
    let authfile = work.join("auth.json");
    let repo = unique("podman/app");
    ecr(&berth, &["create-repository", "--repository-name", &repo]);
    let host = berth.addr.to_string();
    let local = format!("localhost/{}:v1", unique("berth-podman"));
    let remote = format!("{host}/{repo}:v1");
    let _cleanup = PodmanImages(&authfile, vec![local.clone(), remote.clone()]);

    // A busybox root filesystem with a file that names the repository.
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    let content = format!("pushed by podman to {repo}\n");
    std::fs::write(rootfs.join("file"), &content).expect("write file");
    let tar = work.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    podman_ok(&authfile, &["import", &tar.to_string_lossy(), &local], None);
    podman_ok(&authfile, &["tag", &local, &remote], None);

    // Without logging in, the push is refused.
    let anonymous = podman(&authfile, &["push", "--tls-verify=false", &remote], None);
    assert!(!anonymous.status.success(), "an anonymous push succeeded");

    let password = berth.aws_profile(&["ecr", "get-login-password"]);
    assert_eq!(password.code, 0, "{}", password.stderr);
    podman_ok(
        &authfile,
        &[
            "login",
            "--tls-verify=false",
            "--username",
            "AWS",
            "--password-stdin",
            &host,
        ],
        Some(password.stdout.trim()),
    );
    podman_ok(&authfile, &["push", "--tls-verify=false", &remote], None);

    let images = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    assert_eq!(
        images["imageDetails"][0]["imageTags"],
        json!(["v1"]),
        "{images}"
    );
    let pushed_digest = images["imageDetails"][0]["imageDigest"]
        .as_str()
        .expect("digest")
        .to_owned();

    // Gone locally, pulled back, the same manifest, and it runs. The explicit limits are
    // within this machine's hard limits: podman's defaults are above them and runc may not
    // raise them.
    podman_ok(&authfile, &["rmi", "--force", &remote, &local], None);
    podman_ok(&authfile, &["pull", "--tls-verify=false", &remote], None);
    let digest = podman_ok(
        &authfile,
        &["image", "inspect", "--format", "{{.Digest}}", &remote],
        None,
    );
    assert_eq!(digest.trim(), pushed_digest);
    let ran = podman_ok(
        &authfile,
        &[
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            &remote,
            "/bin/busybox",
            "cat",
            "/file",
        ],
        None,
    );
    assert_eq!(ran, content);
}

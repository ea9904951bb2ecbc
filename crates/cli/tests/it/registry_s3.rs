//! The registry with its blobs in an S3-compatible bucket (`--registry-store s3://…`), served by
//! moto's S3 server on loopback (PyPI's `moto[server]`, installed by scripts/test): monolithic and
//! chunked uploads larger than a multipart part, a manifest over them, whole and ranged reads,
//! the objects where S3 clients would find them, nothing staged left behind, a wrong digest that
//! publishes nothing, and the blobs still served after a restart; skopeo pushes an image there
//! and pulls it back; a bad store URL or a missing bucket stops berth at start.

use crate::ecr::unique;
use crate::harness::{Berth, Opts, TempDir, http};
use crate::registry_clients::{
    build_oci_layout, create_repository_open, digest_of, patch, pseudo_random, push_blob,
    skopeo_ok, start_upload, with_digest,
};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's S3 server on a free loopback port; killed when dropped.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (PyPI moto[server]; scripts/test installs it)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, addr }
    }

    /// The keys under `prefix` in `bucket` (one page of ListObjectsV2 is enough here).
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = http(
            self.addr,
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "ListObjectsV2: {}", r.text());
        r.text()
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What berth needs to reach moto's S3.
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", format!("http://{}", moto.addr)),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

fn berth_on(moto: &Moto, store: &str) -> Opts {
    aws_env(moto).into_iter().fold(
        Opts::open()
            .server_only()
            .arg("--registry-store")
            .arg(store),
        |opts, (k, v)| opts.env(k, &v),
    )
}

const MIB: usize = 1024 * 1024;

/// `berth server` with its data in `dir` and its registry in `store`.
fn server_with_store(dir: &TempDir, store: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("server").arg("--data-dir").arg(dir.path()).args([
        "--registry-store",
        store,
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd
}

/// Runs berth expecting it to refuse to start: its stderr once it exits, or a failure if it is
/// still running after a minute (it started after all).
fn refused_start(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait for berth") {
            assert!(!status.success(), "berth exited with success");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("read stderr");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth started instead of refusing to");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn blobs_live_in_an_s3_compatible_bucket() {
    let moto = Moto::start();
    let bucket = "berth-images";
    let r = http(moto.addr, "PUT", &format!("/{bucket}"), &[], b"");
    assert_eq!(r.status, 200, "CreateBucket: {}", r.text());
    let berth = Berth::start(berth_on(&moto, &format!("s3://{bucket}/registry")));
    let repo = unique("s3/app");
    create_repository_open(&berth, &repo);
    let work = TempDir::new("registry-s3");

    // A monolithic upload of 12 MiB and 5 bytes: three multipart parts.
    let big = pseudo_random(12 * MIB + 5, 0x53);
    let big_digest = push_blob(berth.addr, &repo, &work, &big);

    // A chunked upload whose parts do not fall on part boundaries, closed by an empty PUT.
    let chunked = pseudo_random(10 * MIB + 1, 0xc4);
    let chunked_digest = digest_of(&work, &chunked);
    let location = start_upload(berth.addr, &repo);
    let mut at = 0;
    for len in [6 * MIB, 1, 4 * MIB] {
        let r = patch(berth.addr, &location, at, &chunked[at..at + len]);
        assert_eq!(r.status, 202, "PATCH at {at}: {}", r.text());
        at += len;
    }
    let r = http(
        berth.addr,
        "PUT",
        &with_digest(&location, &chunked_digest),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "closing PUT: {}", r.text());

    // A wrong digest publishes nothing.
    let wrong = digest_of(&work, b"something else");
    let r = http(
        berth.addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={wrong}"),
        &[],
        &big[..MIB],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("DIGEST_INVALID"), "{}", r.text());

    // A manifest over the two layers and a config.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(berth.addr, &repo, &work, config);
    let layer = |digest: &str, size: usize| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [layer(&big_digest, big.len()), layer(&chunked_digest, chunked.len())],
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

    // Every blob is an object at its content address under the prefix; nothing is staged.
    let keys = moto.keys(bucket, "registry/");
    for d in [&big_digest, &chunked_digest, &config_digest] {
        let hex = d.trim_start_matches("sha256:");
        let key = format!("registry/blobs/sha256/{}/{hex}", &hex[..2]);
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(wrong.trim_start_matches("sha256:"))),
        "the wrong digest was published: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("registry/uploads/")),
        "staged uploads left: {keys:?}"
    );
    assert!(
        !berth.data_dir().join("registry/blobs").exists(),
        "blobs were written to the data directory"
    );

    let check = |berth: &Berth| {
        let r = berth.get(&format!("/v2/{repo}/manifests/v1"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), manifest);
        let r = berth.get(&format!("/v2/{repo}/blobs/{big_digest}"));
        assert_eq!(r.status, 200);
        assert!(r.body == big, "the big blob reads back other bytes");
        let r = http(
            berth.addr,
            "GET",
            &format!("/v2/{repo}/blobs/{chunked_digest}"),
            &[("range", "bytes=6291455-6291556")],
            b"",
        );
        assert_eq!(r.status, 206, "{}", r.text());
        assert_eq!(r.body, &chunked[6 * MIB - 1..6 * MIB + 101]);
    };
    check(&berth);
    // The store's records and the bucket's objects are all a restarted berth needs.
    let berth = berth.restart(berth_on(&moto, &format!("s3://{bucket}/registry")));
    check(&berth);
}

#[test]
fn a_registry_store_that_is_not_a_bucket_url_stops_berth_at_start() {
    let dir = TempDir::new("bad-store");
    let err = refused_start(&mut server_with_store(&dir, "s3://Not_A_Bucket"));
    assert!(err.contains("--registry-store"), "{err}");
    assert!(err.contains("not an S3 bucket name"), "{err}");
}

#[test]
fn a_bucket_that_does_not_exist_stops_berth_at_start() {
    let moto = Moto::start();
    let dir = TempDir::new("missing-bucket");
    let err = refused_start(server_with_store(&dir, "s3://no-such-bucket/x").envs(aws_env(&moto)));
    assert!(err.contains("registry store s3://no-such-bucket"), "{err}");
    assert!(
        err.contains("NoSuchBucket") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn skopeo_pushes_to_and_pulls_from_a_registry_on_a_bucket() {
    let moto = Moto::start();
    let r = http(moto.addr, "PUT", "/skopeo-images", &[], b"");
    assert_eq!(r.status, 200, "CreateBucket: {}", r.text());
    let berth = Berth::start(berth_on(&moto, "s3://skopeo-images"));
    let repo = unique("s3/skopeo");
    create_repository_open(&berth, &repo);
    let work = TempDir::new("s3-skopeo");
    let work = work.path();
    let layout = work.join("layout");
    let (manifest_digest, layer_digest, _) =
        build_oci_layout(work, &layout, "v1", "pushed to a bucket\n");
    let remote = format!("docker://{}/{repo}:v1", berth.addr);
    skopeo_ok(
        work,
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &remote,
        ],
    );
    let hex = layer_digest.trim_start_matches("sha256:");
    let key = format!("blobs/sha256/{}/{hex}", &hex[..2]);
    assert!(moto.keys("skopeo-images", "blobs/").contains(&key));
    let back = work.join("back");
    skopeo_ok(
        work,
        &[
            "copy",
            "--src-tls-verify=false",
            &remote,
            &format!("oci:{}:back", back.display()),
        ],
    );
    assert_eq!(
        std::fs::read(back.join("blobs/sha256").join(hex)).expect("pulled layer"),
        std::fs::read(layout.join("blobs/sha256").join(hex)).expect("pushed layer"),
    );
    let index = std::fs::read_to_string(back.join("index.json")).expect("index.json");
    assert!(index.contains(&manifest_digest), "{index}");
}

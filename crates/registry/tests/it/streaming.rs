//! A real server on loopback and a raw HTTP/1 client: a 256 MiB blob, generated while it is
//! sent, pushed in chunks to a filesystem-backed registry. It checks streaming end to end (no
//! body limit, no buffering of the blob); timing and memory are for the benchmarks, not here.

use berth_registry::digest::{Algorithm, Hasher};
use berth_registry::{Access, Registry, RegistryOptions};
use berth_store::SqliteStore;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use std::sync::Arc;

const TOTAL: u64 = 256 * 1024 * 1024;
const CHUNK: u64 = 64 * 1024 * 1024;
const FRAME: usize = 256 * 1024;

/// Deterministic bytes: frame `i` is filled with a pattern of `i`.
fn frame(i: u64) -> Bytes {
    let mut v = vec![0u8; FRAME];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    Bytes::from(v)
}

type Body = BoxBody<Bytes, std::io::Error>;
type Sender = hyper::client::conn::http1::SendRequest<Body>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_256_mib_in_chunks_over_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs store"));
    let store = SqliteStore::open_in_memory().expect("store").into();
    // As the server runs it: uploads stage straight into the store's directory (the in-memory
    // harness of the other tests covers object_store's multipart staging).
    let options = RegistryOptions {
        create_on_push: true,
        local_dir: Some(dir.path().to_owned()),
        ..RegistryOptions::default()
    };
    let registry = Registry::new(store, blobs, "p".into(), Access::Open, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = registry.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // The expected digest, computed from the same generator.
    let frames = TOTAL / FRAME as u64;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    for i in 0..frames {
        hasher.update(&frame(i));
    }
    let digest = hasher.finish().to_string();

    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn): (Sender, _) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);

    let empty_body = || -> Body { Empty::<Bytes>::new().map_err(|e| match e {}).boxed() };
    let start = Request::builder()
        .method(Method::POST)
        .uri("/v2/big/blobs/uploads/")
        .header("host", "localhost")
        .body(empty_body())
        .expect("request");
    sender.ready().await.expect("ready");
    let r = sender.send_request(start).await.expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let _ = r.into_body().collect().await;

    let per_chunk = CHUNK / FRAME as u64;
    for c in 0..TOTAL / CHUNK {
        // Frames are made lazily as the body is polled: at most one frame exists at a time.
        let first = c * per_chunk;
        let body: Body = StreamBody::new(futures_util::stream::iter(
            (first..first + per_chunk).map(|i| Ok::<_, std::io::Error>(Frame::data(frame(i)))),
        ))
        .boxed();
        let req = Request::builder()
            .method(Method::PATCH)
            .uri(&location)
            .header("host", "localhost")
            .header(
                "content-range",
                format!("{}-{}", c * CHUNK, (c + 1) * CHUNK - 1),
            )
            .header("content-length", CHUNK.to_string())
            .header("content-type", "application/octet-stream")
            .body(body)
            .expect("request");
        sender.ready().await.expect("ready");
        let r = sender.send_request(req).await.expect("patch");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()["range"], format!("0-{}", (c + 1) * CHUNK - 1));
        let _ = r.into_body().collect().await;
    }
    let put = Request::builder()
        .method(Method::PUT)
        .uri(format!("{location}?digest={digest}"))
        .header("host", "localhost")
        .body(empty_body())
        .expect("request");
    sender.ready().await.expect("ready");
    let r = sender.send_request(put).await.expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let _ = r.into_body().collect().await;

    let head = Request::builder()
        .method(Method::HEAD)
        .uri(format!("/v2/big/blobs/{digest}"))
        .header("host", "localhost")
        .body(empty_body())
        .expect("request");
    sender.ready().await.expect("ready");
    let r = sender.send_request(head).await.expect("head");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], TOTAL.to_string().as_str());
}

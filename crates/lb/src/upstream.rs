//! Connections to targets: one pool per worker thread of idle HTTP/1.1 keep-alive connections
//! (hyper's `client::conn::http1`), keyed by target address. A request checks a connection out,
//! and the response body hands it back once it ended ([`Lease::release`]); a connection whose
//! response was abandoned half-read is dropped instead, so it never carries the rest of an old
//! answer into a new request.
//!
//! Why not hyper-util's pooled client: its pool is shared and locked per request, builds a key
//! from the URI, races a checkout against a lazily built connect future and spawns a task per
//! response to wait for the connection to become idle again. A worker's pool is only touched by
//! that worker, so a checkout is one uncontended lock and a `Vec::pop`.

use crate::proxy::UpstreamBody;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections to a target close after this long unused: a target that drained gets no
/// request that would pick its connections again.
pub const POOL_IDLE: Duration = Duration::from_secs(30);
/// How often a worker closes connections idle past [`POOL_IDLE`].
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a new connection to a target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Sender = http1::SendRequest<UpstreamBody>;

/// Why a request got no response from its target.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: nothing reached the target, so another may take it.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Http(hyper::Error),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// One worker's idle connections.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle: usize = self.idle.lock().values().map(Vec::len).sum();
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

/// A connection lent to one exchange.
pub struct Lease {
    sender: Sender,
    addr: SocketAddr,
    pool: Arc<Pool>,
}

impl Lease {
    /// Gives the connection back for the next request: call only once the response ended.
    pub fn release(self) {
        self.pool.put(self.addr, self.sender);
    }
}

impl Pool {
    /// Sends `req` (origin-form URI, `Host` set) to `addr` on an idle connection, or on a new
    /// one when none is idle. A request that an idle connection could not take (the target had
    /// closed it) goes to the next one: it was never written.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        while let Some(mut sender) = self.take(addr) {
            // Handed back the moment its last response ended: its connection may not have
            // noticed yet that it is free.
            if !sender.is_ready() && sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(addr, sender))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Http(e.into_error())),
                },
            }
        }
        let mut sender = connect(addr).await?;
        let resp = sender.send_request(req).await.map_err(SendError::Http)?;
        Ok((resp, self.lease(addr, sender)))
    }

    fn lease(self: &Arc<Self>, addr: SocketAddr, sender: Sender) -> Lease {
        Lease {
            sender,
            addr,
            pool: self.clone(),
        }
    }

    /// The most recently used open connection to `addr` (the warmest), dropping closed ones.
    fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(&addr)?;
        while let Some(i) = list.pop() {
            if !i.sender.is_closed() {
                return Some(i.sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        self.idle.lock().entry(addr).or_default().push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Closes connections idle past [`POOL_IDLE`] or closed by their target.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.idle.lock().retain(|_, list| {
            list.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < POOL_IDLE);
            !list.is_empty()
        });
    }

    /// Sweeps every [`SWEEP_EVERY`], for as long as the pool is used.
    pub async fn sweep_forever(pool: std::sync::Weak<Pool>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match pool.upgrade() {
                Some(p) => p.sweep(),
                None => return,
            }
        }
    }

    /// How many idle connections the pool holds.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().values().map(Vec::len).sum()
    }
}

/// A new connection to `addr`, driven by its own task on the current runtime (WebSocket
/// upgrades included).
async fn connect(addr: SocketAddr) -> Result<Sender, SendError> {
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => {
                return Err(SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )));
            }
        };
    // Requests are written whole: waiting for more to coalesce only adds latency.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every request on a connection with `hi`, keeping it open; counts connections.
    async fn backend(connections: Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn get(addr: SocketAddr) -> Request<UpstreamBody> {
        Request::builder()
            .uri("/")
            .header("host", addr.to_string())
            .body(UpstreamBody::Right(Empty::new()))
            .expect("request")
    }

    #[tokio::test]
    async fn a_released_connection_serves_the_next_request_and_an_unreleased_one_does_not() {
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let addr = backend(connections.clone()).await;
        let pool = Arc::new(Pool::default());
        for _ in 0..3 {
            let (resp, lease) = pool.send(addr, get(addr)).await.expect("answer");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"hi");
            lease.release();
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
        // A lease dropped without release (an abandoned response) takes its connection along.
        let (_resp, lease) = pool.send(addr, get(addr)).await.expect("answer");
        drop(lease);
        assert_eq!(pool.idle(), 0);
        let (_resp, _lease) = pool.send(addr, get(addr)).await.expect("answer");
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_target_closed_is_not_used_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            // Answers one request per connection, then closes it.
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                    .await;
                drop(s);
            }
        });
        let pool = Arc::new(Pool::default());
        for _ in 0..3 {
            let (resp, lease) = pool.send(addr, get(addr)).await.expect("answer");
            resp.into_body().collect().await.expect("body");
            lease.release();
            // The connection's task sees the close on its own; wait until it has.
            while pool
                .idle
                .lock()
                .values()
                .flatten()
                .any(|i| !i.sender.is_closed())
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        pool.sweep();
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let pool = Arc::new(Pool::default());
        let err = pool.send(addr, get(addr)).await.err().expect("refused");
        assert!(err.is_connect(), "{err:?}");
    }
}

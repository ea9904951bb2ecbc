//! The request path: one listener's request → rule → action → target, with ALB's headers, limits,
//! status codes and metrics. It reads the current table once per request (an atomic load) and
//! never the store.

use crate::balance;
use crate::matching::RequestView;
use crate::metrics::{Counters, Metric};
use crate::redirect;
use crate::table::{Action, Forward, Listener, Target, XffMode};
use crate::upstream::{Lease, Pool, SendError};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Empty;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What goes to a target: the client's body as it streams, or nothing (a bodiless request sent
/// again to another target after the first refused the connection).
pub type UpstreamBody = http_body_util::Either<Incoming, Empty<Bytes>>;

/// ALB's limits: the request line and each header at most 16 KiB, all headers at most 64 KiB.
pub const MAX_LINE: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64 * 1024;

/// How long a request waits for its target before it also watches for the target's drain
/// deadline. Nearly every answer comes sooner, and watching costs a registration in a waiter
/// list every worker shares; deadlines are applied once a second anyway.
const DRAIN_WATCH_AFTER: Duration = Duration::from_secs(1);

/// Headers that describe one hop, not the message: never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// What a client gets back: an answer ALB makes itself, or a target's streamed body. An enum
/// rather than a boxed body: one allocation less per request.
pub enum Body {
    Own(Option<Bytes>),
    Target(Tracked),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Own(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Target(t) => Pin::new(t).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Own(b) => b.is_none(),
            Body::Target(t) => t.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Own(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Target(t) => t.size_hint(),
        }
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    let b = b.into();
    Body::Own((!b.is_empty()).then_some(b))
}

/// A response ALB itself makes, with its `Server` header.
fn own_response(status: u16, content_type: Option<&str>, body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// An error page as ALB writes it.
fn elb_error(status: StatusCode) -> Response<Body> {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    let body = format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    own_response(status.as_u16(), Some("text/html"), Bytes::from(body))
}

/// Counts an error ALB answered itself, in the load balancer's and (when the request got that
/// far) the target group's counters.
fn count_elb(status: StatusCode, scopes: &[&Counters]) {
    let specific = match status.as_u16() {
        502 => Some(Metric::Elb502),
        503 => Some(Metric::Elb503),
        504 => Some(Metric::Elb504),
        _ => None,
    };
    for c in scopes {
        c.add(if status.is_server_error() {
            Metric::Elb5xx
        } else {
            Metric::Elb4xx
        });
        if let Some(m) = specific {
            c.add(m);
        }
    }
}

/// Whether the request exceeds ALB's header limits, and the status it then gets.
fn oversized(req: &Request<Incoming>) -> Option<StatusCode> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + target + 10;
    if line > MAX_LINE {
        return Some(StatusCode::BAD_REQUEST);
    }
    let mut total = 0;
    for (name, value) in req.headers() {
        let len = name.as_str().len() + value.len() + 4;
        if len > MAX_LINE {
            return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        total += len;
    }
    (total > MAX_HEADERS).then_some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
}

/// The Host header (or HTTP/2 authority) without its port.
fn host_of(req: &Request<Incoming>) -> Option<&str> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    Some(&raw[..host_len(raw.as_bytes())])
}

/// How much of a `Host` value (or authority) is the host: all of it up to its `:port`; an IPv6
/// literal (`[v6]:port`) keeps its brackets.
fn host_len(raw: &[u8]) -> usize {
    if raw.first() == Some(&b'[') {
        raw.iter()
            .position(|&b| b == b']')
            .map_or(raw.len(), |i| i + 1)
    } else {
        raw.iter().position(|&b| b == b':').unwrap_or(raw.len())
    }
}

/// The `Host` a target gets when the load balancer does not preserve the client's: ALB's
/// default, the client's host with the listener's port (`example.com` through a listener on
/// 8080 → `example.com:8080`). `None` leaves the header as it is: the listener is on its
/// protocol's default port, or the header already names the listener's port (what a client
/// that connected by address sends, so the common case costs no allocation).
fn host_for_target(
    host: &HeaderValue,
    listener_port: &HeaderValue,
    default_port: bool,
) -> Option<HeaderValue> {
    if default_port {
        return None;
    }
    let raw = host.as_bytes();
    let port = listener_port.as_bytes();
    if raw.len() > port.len() && raw.ends_with(port) && raw[raw.len() - port.len() - 1] == b':' {
        return None;
    }
    let end = host_len(raw);
    let mut with_port = Vec::with_capacity(end + 1 + port.len());
    with_port.extend_from_slice(&raw[..end]);
    with_port.push(b':');
    with_port.extend_from_slice(port);
    HeaderValue::from_bytes(&with_port).ok()
}

/// `Root=1-<8 hex epoch seconds>-<24 hex>`, a new trace id as ALB makes them.
fn new_trace_root() -> String {
    let mut buf = [0; ROOT_LEN];
    String::from_utf8_lossy(write_trace_root(&mut buf)).into_owned()
}

/// `1-` + 8 + `-` + 24.
const ROOT_LEN: usize = 35;

fn write_trace_root(buf: &mut [u8; ROOT_LEN]) -> &[u8] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: [u8; 12] = rand::random();
    buf[..2].copy_from_slice(b"1-");
    // The epoch seconds' low 32 bits: 8 hex digits, as ALB writes them.
    let _ = hex::encode_to_slice((secs as u32).to_be_bytes(), &mut buf[2..10]);
    buf[10] = b'-';
    let _ = hex::encode_to_slice(random, &mut buf[11..]);
    buf
}

/// ALB's `X-Amzn-Trace-Id`: a request with a `Root` keeps it and gets a `Self` field for this
/// hop; any other gets a new `Root`.
pub fn trace_id(existing: Option<&str>) -> String {
    match existing {
        Some(v) if v.split(';').any(|f| f.trim().starts_with("Root=")) => {
            let rest: Vec<&str> = v
                .split(';')
                .map(str::trim)
                .filter(|f| !f.starts_with("Self="))
                .collect();
            format!("Self={};{}", new_trace_root(), rest.join(";"))
        }
        _ => format!("Root={}", new_trace_root()),
    }
}

/// [`trace_id`] as a header value; a request without one (nearly all) gets it written straight
/// into the value, with no intermediate strings.
fn trace_header(existing: Option<&HeaderValue>) -> Option<HeaderValue> {
    if let Some(v) = existing {
        return HeaderValue::from_str(&trace_id(v.to_str().ok())).ok();
    }
    let mut value = [0; 5 + ROOT_LEN];
    value[..5].copy_from_slice(b"Root=");
    let mut root = [0; ROOT_LEN];
    value[5..].copy_from_slice(write_trace_root(&mut root));
    HeaderValue::from_bytes(&value).ok()
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Nearly every message has none: one pass over its few names is cheaper than hashing and
    // looking up each of the seven (twice per request, `bench/lb/README.md`).
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(h);
    }
}

/// Decrements a target's outstanding requests when the response is done (or abandoned).
struct Outstanding(Arc<crate::table::Live>);

impl Outstanding {
    fn new(live: &Arc<crate::table::Live>) -> Outstanding {
        live.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(live.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A target's response body, streamed to the client, holding the target's outstanding count
/// and its connection until it ends; a body that ended gives the connection back to the pool.
pub struct Tracked {
    inner: Incoming,
    ended: bool,
    lease: Option<Lease>,
    _outstanding: Option<Outstanding>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Only a connection whose response was read to its end can carry another request.
        if (self.ended || hyper::body::Body::is_end_stream(&self.inner))
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}

/// What the request path needs besides the table: the worker's connections to targets, and what
/// is known of the client's connection (made once per connection, not per request).
pub struct Ctx {
    pub pool: Arc<Pool>,
    pub local_port: u16,
    pub remote: SocketAddr,
    /// The client's address, as `X-Forwarded-For` carries it.
    pub forwarded_for: HeaderValue,
    /// `X-Forwarded-Port`: the listener's port.
    pub forwarded_port: HeaderValue,
}

impl Ctx {
    pub fn new(pool: Arc<Pool>, local_port: u16, remote: SocketAddr) -> Ctx {
        Ctx {
            pool,
            local_port,
            remote,
            forwarded_for: HeaderValue::from_str(&remote.ip().to_string())
                .unwrap_or(HeaderValue::from_static("")),
            forwarded_port: HeaderValue::from(local_port),
        }
    }
}

/// Serves one request of a client of `listener`.
pub async fn handle(
    ctx: &Ctx,
    listener: Option<Arc<Listener>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(listener) = listener else {
        // The listener was deleted while this connection was open.
        return elb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let lb = &listener.balancer.metrics;
    lb.add(Metric::RequestCount);
    if let Some(status) = oversized(&req) {
        count_elb(status, &[lb]);
        return elb_error(status);
    }
    let view = RequestView {
        method: req.method().as_str(),
        host: host_of(&req),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
        source: ctx.remote.ip(),
    };
    match listener.route(&view) {
        Action::Fixed {
            status,
            content_type,
            body,
        } => {
            lb.add(Metric::FixedResponse);
            own_response(*status, content_type.as_deref(), body.clone())
        }
        Action::Redirect(cfg) => {
            lb.add(Metric::Redirect);
            let origin = redirect::Origin {
                protocol: &listener.protocol,
                host: host_of(&req).unwrap_or_default(),
                port: listener.port,
                path: req.uri().path(),
                query: req.uri().query(),
            };
            let (status, location) = redirect::location(cfg, &origin);
            let mut r = own_response(status, None, Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Action::Unroutable => {
            count_elb(StatusCode::SERVICE_UNAVAILABLE, &[lb]);
            elb_error(StatusCode::SERVICE_UNAVAILABLE)
        }
        Action::Forward(forwards) => forward(ctx, &listener, forwards, req).await,
    }
}

/// How one exchange with a target ended.
// Returned once per request and unpacked at once: boxing the answer would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Exchange {
    Answered(Result<(Response<Incoming>, Lease), SendError>),
    TimedOut,
    /// The target's deregistration delay ended first.
    Drained,
}

/// Sends `req` to `target` and waits for its response head, at most `idle_timeout`, and no
/// longer than the target's drain deadline.
async fn exchange(
    pool: &Arc<Pool>,
    target: &Target,
    addr: SocketAddr,
    req: Request<UpstreamBody>,
    idle_timeout: Duration,
) -> Exchange {
    let send = pool.send(addr, req);
    tokio::pin!(send);
    let first = idle_timeout.min(DRAIN_WATCH_AFTER);
    match tokio::time::timeout(first, &mut send).await {
        Ok(answered) => return Exchange::Answered(answered),
        Err(_) if first == idle_timeout => return Exchange::TimedOut,
        Err(_) => {}
    }
    let mut drained = target.live.drained.subscribe();
    tokio::select! {
        r = tokio::time::timeout(idle_timeout - first, &mut send) => match r {
            Ok(answered) => Exchange::Answered(answered),
            Err(_) => Exchange::TimedOut,
        },
        _ = drained.wait_for(|d| *d) => Exchange::Drained,
    }
}

/// The request line's target as a target gets it: origin-form (`/path?query`), whatever form
/// the client used (HTTP/2 and proxy-style clients send the scheme and authority too).
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    match uri.path_and_query() {
        Some(p) if p.as_str().starts_with('/') => Uri::from(p.clone()),
        _ => Uri::from_static("/"),
    }
}

async fn forward(
    ctx: &Ctx,
    listener: &Listener,
    forwards: &[Forward],
    mut req: Request<Incoming>,
) -> Response<Body> {
    let lb = &listener.balancer.metrics;
    let chosen = if let [only] = forwards {
        (only.weight > 0).then_some(0)
    } else {
        let weights: Vec<u32> = forwards.iter().map(|f| f.weight).collect();
        balance::pick_weighted(&weights, rand::random())
    };
    let Some(chosen) = chosen else {
        count_elb(StatusCode::SERVICE_UNAVAILABLE, &[lb]);
        return elb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Forward { group, metrics, .. } = &forwards[chosen];
    let tg: &Counters = metrics;
    tg.add(Metric::RequestCount);
    // ALB routes to healthy targets; when none is healthy it fails open to every target that
    // is not draining; with none registered it answers 503. The candidates are walked rather
    // than collected: no allocation per request.
    let healthy = |t: &Target| !t.draining && t.live.state() == crate::health::State::Healthy;
    let fail_open = !group.targets.iter().any(healthy);
    let candidate = move |t: &&Target| {
        !t.draining && (fail_open || t.live.state() == crate::health::State::Healthy)
    };
    let candidates = || group.targets.iter().filter(candidate);
    let count = candidates().count();
    // The shared turn counter is only worth touching when there is a choice.
    let turn = if count > 1 {
        group.turn.fetch_add(1, Ordering::Relaxed)
    } else {
        0
    };
    let outstanding = candidates().map(|t| t.live.outstanding.load(Ordering::Relaxed));
    let Some(first) = balance::pick(group.algorithm, count, turn, outstanding) else {
        count_elb(StatusCode::SERVICE_UNAVAILABLE, &[lb, tg]);
        return elb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some(mut target) = candidates().nth(first) else {
        count_elb(StatusCode::SERVICE_UNAVAILABLE, &[lb, tg]);
        return elb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some(mut addr) = target.addr else {
        count_elb(StatusCode::BAD_GATEWAY, &[lb, tg]);
        return elb_error(StatusCode::BAD_GATEWAY);
    };

    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let kept_upgrade = upgrade
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(u) = kept_upgrade {
        parts.headers.insert(header::UPGRADE, u);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let balancer = &listener.balancer;
    let client_named_host =
        parts.headers.contains_key(header::HOST) || parts.uri.authority().is_some();
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/2 carries the host as the authority; an HTTP/1.0 client may send none, and then
        // the target is named as a client of it would.
        let host = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => HeaderValue::from_str(&addr.to_string()).ok(),
        };
        if let Some(v) = host {
            parts.headers.insert(header::HOST, v);
        }
    }
    if client_named_host
        && !balancer.preserve_host
        && let Some(v) = parts.headers.get(header::HOST).and_then(|host| {
            let default_port = ctx.local_port
                == if listener.forwarded_proto == "https" {
                    443
                } else {
                    80
                };
            host_for_target(host, &ctx.forwarded_port, default_port)
        })
    {
        parts.headers.insert(header::HOST, v);
    }
    let h = &mut parts.headers;
    match balancer.xff {
        XffMode::Append => {
            // The address alone is made once per connection; with the port, per request
            // (an attribute few turn on).
            let client = if balancer.xff_client_port {
                HeaderValue::from_str(&ctx.remote.to_string()).ok()
            } else {
                Some(ctx.forwarded_for.clone())
            };
            let xff = match (
                h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
                client,
            ) {
                (Some(prior), Some(client)) if !prior.trim().is_empty() => {
                    let client = client.to_str().unwrap_or_default();
                    HeaderValue::from_str(&format!("{prior}, {client}")).ok()
                }
                (_, client) => client,
            };
            if let Some(v) = xff {
                h.insert(X_FORWARDED_FOR, v);
            }
        }
        XffMode::Preserve => {}
        XffMode::Remove => {
            h.remove(&X_FORWARDED_FOR);
        }
    }
    h.insert(X_FORWARDED_PROTO, listener.forwarded_proto.clone());
    h.insert(X_FORWARDED_PORT, ctx.forwarded_port.clone());
    if let Some(v) = trace_header(h.get(&X_AMZN_TRACE_ID)) {
        h.insert(X_AMZN_TRACE_ID, v);
    }
    parts.uri = origin_form(parts.uri);
    parts.version = Version::HTTP_11;
    // A target whose task just died refuses connections (or resets pooled ones) until the
    // control plane deregisters it, which takes a moment. A request without a body can be sent
    // again, so it goes to the other targets in turn before the client sees a 502: this is what
    // keeps a killed container from failing requests.
    // The copy is only worth its allocation when another target could take the request.
    let resend = (count > 1 && !upgrade && hyper::body::Body::is_end_stream(&body)).then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let mut upstream_req = Request::from_parts(parts, UpstreamBody::Left(body));
    let mut tried = 1;
    let started = Instant::now();
    let idle_timeout = listener.balancer.idle_timeout;
    let (outstanding, answered) = loop {
        // Only least outstanding requests reads the count: other groups skip two writes to a
        // counter every worker shares.
        let outstanding = (group.algorithm == balance::Algorithm::LeastOutstandingRequests)
            .then(|| Outstanding::new(&target.live));
        let answered = match exchange(&ctx.pool, target, addr, upstream_req, idle_timeout).await {
            Exchange::Answered(a) => a,
            Exchange::TimedOut => {
                count_elb(StatusCode::GATEWAY_TIMEOUT, &[lb, tg]);
                return elb_error(StatusCode::GATEWAY_TIMEOUT);
            }
            Exchange::Drained => {
                count_elb(StatusCode::BAD_GATEWAY, &[lb, tg]);
                return elb_error(StatusCode::BAD_GATEWAY);
            }
        };
        // A connection that was never made is always safe to try elsewhere; a pooled one the
        // target broke before answering is too when the method is safe (nginx's
        // `proxy_next_upstream error` does the same).
        let Err(e) = &answered else {
            break (outstanding, answered);
        };
        let Some((method, uri, headers)) = &resend else {
            break (outstanding, answered);
        };
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !(e.is_connect() || safe) {
            break (outstanding, answered);
        }
        // The other candidates in turn after the first, skipping any without an address.
        let next = (tried..count)
            .map(|k| (k, (first + k) % count))
            .find_map(|(k, i)| {
                let t = candidates().nth(i)?;
                Some((k, t, t.addr?))
            });
        let Some((k, t, a)) = next else {
            break (outstanding, answered);
        };
        tried = k + 1;
        target = t;
        addr = a;
        let mut again = Request::new(UpstreamBody::Right(Empty::new()));
        *again.method_mut() = method.clone();
        *again.uri_mut() = uri.clone();
        *again.headers_mut() = headers.clone();
        upstream_req = again;
    };
    let (mut resp, lease) = match answered {
        Ok(answer) => answer,
        Err(e) => {
            tracing::debug!(
                load_balancer = %listener.balancer.dimension,
                target = %addr,
                port = target.port,
                "target failed: {e:?}"
            );
            count_elb(StatusCode::BAD_GATEWAY, &[lb, tg]);
            return elb_error(StatusCode::BAD_GATEWAY);
        }
    };
    tg.response_time(started.elapsed());
    let status = resp.status();
    if let Some(m) = Metric::of_target_status(status.as_u16()) {
        lb.add(m);
        tg.add(m);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The connection now belongs to the tunnel (or, if the client asked for none, to
        // nobody): it never goes back to the pool.
        drop(lease);
        if let Some(client_upgrade) = client_upgrade {
            let target_upgrade = hyper::upgrade::on(&mut resp);
            let mut drained = target.live.drained.subscribe();
            tokio::spawn(async move {
                let _outstanding = outstanding;
                let (Ok(client), Ok(target)) = tokio::join!(client_upgrade, target_upgrade) else {
                    return;
                };
                let (mut client, mut target) = (TokioIo::new(client), TokioIo::new(target));
                // A drained target's tunnels close with its deregistration delay, as its
                // requests.
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut target) => {}
                    _ = drained.wait_for(|d| *d) => {}
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::Own(None));
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        return Response::from_parts(
            parts,
            Body::Target(Tracked {
                inner: body,
                ended: false,
                lease: None,
                _outstanding: outstanding,
            }),
        );
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        Body::Target(Tracked {
            inner: body,
            ended: false,
            lease: Some(lease),
            _outstanding: outstanding,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 3
            && parts[0] == "1"
            && parts[1].len() == 8
            && parts[2].len() == 24
            && parts[1..]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    #[test]
    fn targets_get_the_host_with_the_listener_port_unless_it_is_the_default() {
        let port = HeaderValue::from_static("8080");
        let to_target = |host: &'static str, default_port: bool| {
            host_for_target(&HeaderValue::from_static(host), &port, default_port)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        };
        assert_eq!(
            to_target("example.com", false).as_deref(),
            Some("example.com:8080")
        );
        assert_eq!(
            to_target("example.com:9090", false).as_deref(),
            Some("example.com:8080")
        );
        assert_eq!(to_target("[::1]", false).as_deref(), Some("[::1]:8080"));
        assert_eq!(to_target("[::1]:80", false).as_deref(), Some("[::1]:8080"));
        // Already the listener's port (a client that connected by address): left as it is.
        assert_eq!(to_target("example.com:8080", false), None);
        assert_eq!(to_target("127.0.0.1:8080", false), None);
        assert_eq!(
            to_target("example.com:18080", false).as_deref(),
            Some("example.com:8080")
        );
        // A listener on its protocol's default port sends the client's host unchanged.
        assert_eq!(to_target("example.com", true), None);
        assert_eq!(to_target("example.com:8080", true), None);
    }

    #[test]
    fn trace_ids_are_made_or_extended() {
        let fresh = trace_id(None);
        assert!(
            is_root(fresh.strip_prefix("Root=").expect("Root=")),
            "{fresh}"
        );
        let bogus = trace_id(Some("garbage"));
        assert!(bogus.starts_with("Root="), "{bogus}");
        let kept = trace_id(Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"));
        let (self_field, rest) = kept.split_once(';').expect("two fields");
        assert!(
            is_root(self_field.strip_prefix("Self=").expect("Self=")),
            "{kept}"
        );
        assert_eq!(rest, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
        // A second hop replaces the earlier Self.
        let again = trace_id(Some(&kept));
        assert_eq!(again.matches("Self=").count(), 1, "{again}");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, x-private".parse().expect("v"),
        );
        h.insert("x-private", "1".parse().expect("v"));
        h.insert("keep-alive", "timeout=5".parse().expect("v"));
        h.insert("x-kept", "1".parse().expect("v"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }
}

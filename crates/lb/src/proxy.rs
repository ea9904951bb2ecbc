//! The request path: one listener's request → rule → action → target, with ALB's headers, limits,
//! status codes and metrics. It reads the current table once per request (an atomic load) and
//! never the store.

use crate::balance;
use crate::matching::RequestView;
use crate::metrics::{Counters, Metric};
use crate::redirect;
use crate::table::{Action, Forward, Listener, Target};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

/// What a client gets back.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// What goes to a target: the client's body as it streams, or nothing (a bodiless request sent
/// again to another target after the first refused the connection).
pub type UpstreamBody = http_body_util::Either<Incoming, Empty<Bytes>>;
pub type Upstream = Client<HttpConnector, UpstreamBody>;

/// ALB's limits: the request line and each header at most 16 KiB, all headers at most 64 KiB.
pub const MAX_LINE: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64 * 1024;

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

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
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
    let end = if raw.starts_with('[') {
        // [v6]:port keeps its brackets.
        raw.find(']').map_or(raw.len(), |i| i + 1)
    } else {
        raw.find(':').unwrap_or(raw.len())
    };
    Some(&raw[..end])
}

/// `Root=1-<8 hex epoch seconds>-<24 hex>`, a new trace id as ALB makes them.
fn new_trace_root() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: [u8; 12] = rand::random();
    format!("1-{secs:08x}-{}", hex::encode(random))
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
/// until it ends.
struct Tracked {
    inner: Incoming,
    _outstanding: Outstanding,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the request path needs besides the table.
pub struct Ctx<'a> {
    pub upstream: &'a Upstream,
    pub local_port: u16,
    pub remote: SocketAddr,
}

/// Serves one request of a client of `listener`.
pub async fn handle(
    ctx: Ctx<'_>,
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
        Action::Forward(forwards) => forward(&ctx, &listener, forwards, req).await,
    }
}

async fn forward(
    ctx: &Ctx<'_>,
    listener: &Listener,
    forwards: &[Forward],
    mut req: Request<Incoming>,
) -> Response<Body> {
    let lb = &listener.balancer.metrics;
    let weights: Vec<u32> = forwards.iter().map(|f| f.weight).collect();
    let draw = if forwards.len() == 1 {
        0
    } else {
        rand::random()
    };
    let Some(chosen) = balance::pick_weighted(&weights, draw) else {
        count_elb(StatusCode::SERVICE_UNAVAILABLE, &[lb]);
        return elb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Forward { group, metrics, .. } = &forwards[chosen];
    let tg: &Counters = metrics;
    tg.add(Metric::RequestCount);
    // ALB routes to healthy targets; when none is healthy it fails open to every target that
    // is not draining; with none registered it answers 503.
    let serving: Vec<&Target> = group.targets.iter().filter(|t| !t.draining).collect();
    let healthy: Vec<&Target> = serving
        .iter()
        .copied()
        .filter(|t| t.live.state() == crate::health::State::Healthy)
        .collect();
    let pool = if healthy.is_empty() { serving } else { healthy };
    let outstanding: Vec<usize> = pool
        .iter()
        .map(|t| t.live.outstanding.load(Ordering::Relaxed))
        .collect();
    let turn = group.turn.fetch_add(1, Ordering::Relaxed);
    let Some(first) = balance::pick(group.algorithm, &outstanding, turn) else {
        count_elb(StatusCode::SERVICE_UNAVAILABLE, &[lb, tg]);
        return elb_error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let mut target = pool[first];
    let Some(mut addr) = target.addr else {
        count_elb(StatusCode::BAD_GATEWAY, &[lb, tg]);
        return elb_error(StatusCode::BAD_GATEWAY);
    };

    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let kept_upgrade = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(u) = kept_upgrade.filter(|_| upgrade) {
        parts.headers.insert(header::UPGRADE, u);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if !parts.headers.contains_key(header::HOST)
        && let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, v);
    }
    let client_ip = ctx.remote.ip().to_string();
    let xff = match parts
        .headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {client_ip}"),
        _ => client_ip,
    };
    let trace = trace_id(
        parts
            .headers
            .get(&X_AMZN_TRACE_ID)
            .and_then(|v| v.to_str().ok()),
    );
    let h = &mut parts.headers;
    for (name, value) in [
        (X_FORWARDED_FOR, xff),
        (X_FORWARDED_PROTO, listener.protocol.to_ascii_lowercase()),
        (X_FORWARDED_PORT, ctx.local_port.to_string()),
        (X_AMZN_TRACE_ID, trace),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    parts.uri = match Uri::try_from(format!("http://{addr}{path_and_query}")) {
        Ok(u) => u,
        Err(_) => {
            count_elb(StatusCode::BAD_REQUEST, &[lb]);
            return elb_error(StatusCode::BAD_REQUEST);
        }
    };
    parts.version = Version::HTTP_11;
    // A target whose task just died refuses connections (or resets pooled ones) until the
    // control plane deregisters it, which takes a moment. A request without a body can be sent
    // again, so it goes to the other targets in turn before the client sees a 502: this is what
    // keeps a killed container from failing requests.
    // The copy is only worth its allocation when another target could take the request.
    let resend = (pool.len() > 1 && !upgrade && hyper::body::Body::is_end_stream(&body))
        .then(|| (parts.method.clone(), parts.headers.clone()));
    let mut upstream_req = Request::from_parts(parts, UpstreamBody::Left(body));
    let mut tried = vec![first];
    let started = Instant::now();
    let (outstanding, mut drained, answered) = loop {
        let outstanding = Outstanding::new(&target.live);
        let mut drained = target.live.drained.subscribe();
        let answered = tokio::select! {
            r = tokio::time::timeout(listener.balancer.idle_timeout, ctx.upstream.request(upstream_req)) => r,
            _ = drained.wait_for(|d| *d) => {
                count_elb(StatusCode::BAD_GATEWAY, &[lb, tg]);
                return elb_error(StatusCode::BAD_GATEWAY);
            }
        };
        // A connection that was never made is always safe to try elsewhere; a pooled one the
        // target broke before answering is too when the method is safe (nginx's
        // `proxy_next_upstream error` does the same).
        let safe = resend
            .as_ref()
            .is_some_and(|(m, _)| matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS));
        let refused = matches!(&answered, Ok(Err(e)) if e.is_connect() || safe);
        let next = (0..pool.len()).find(|i| !tried.contains(i) && pool[*i].addr.is_some());
        match (refused, &resend, next) {
            (true, Some((method, headers)), Some(i)) => {
                tried.push(i);
                target = pool[i];
                addr = target.addr.unwrap_or(addr);
                let Ok(uri) = Uri::try_from(format!("http://{addr}{path_and_query}")) else {
                    break (outstanding, drained, answered);
                };
                let mut again = Request::new(UpstreamBody::Right(Empty::new()));
                *again.method_mut() = method.clone();
                *again.uri_mut() = uri;
                *again.headers_mut() = headers.clone();
                upstream_req = again;
            }
            _ => break (outstanding, drained, answered),
        }
    };
    let mut resp = match answered {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::debug!(
                load_balancer = %listener.balancer.dimension,
                target = %addr,
                port = target.port,
                "target failed: {e:?}"
            );
            count_elb(StatusCode::BAD_GATEWAY, &[lb, tg]);
            return elb_error(StatusCode::BAD_GATEWAY);
        }
        Err(_) => {
            count_elb(StatusCode::GATEWAY_TIMEOUT, &[lb, tg]);
            return elb_error(StatusCode::GATEWAY_TIMEOUT);
        }
    };
    tg.response_time(started.elapsed());
    let status = resp.status();
    if let Some(m) = Metric::of_target_status(status.as_u16()) {
        lb.add(m);
        tg.add(m);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let target_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _outstanding = outstanding;
            let (Ok(client), Ok(target)) = tokio::join!(client_upgrade, target_upgrade) else {
                return;
            };
            let (mut client, mut target) = (TokioIo::new(client), TokioIo::new(target));
            // A drained target's tunnels close with its deregistration delay, as its requests.
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut target) => {}
                _ = drained.wait_for(|d| *d) => {}
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Empty::new().map_err(|n| match n {}).boxed_unsync());
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        Tracked {
            inner: body,
            _outstanding: outstanding,
        }
        .boxed_unsync(),
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

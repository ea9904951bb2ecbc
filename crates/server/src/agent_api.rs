//! The agent endpoints (`berth-agent-api`'s paths under `/_berth/agent/v1`): JSON in, JSON
//! out, errors as `ErrorBody` with a 4xx status (401 for a bad join or node token). The
//! decisions are `berth_ecs::nodes`'; this file only moves bytes.
//!
//! Agents belong to the server's configured account and region: their container instances and
//! tasks live in that partition, the one the AWS CLI's default profile reaches.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_agent_api as api;
use berth_aws::RequestContext;
use berth_ecs::Ecs;
use berth_ecs::nodes::{self, NodeError};
use berth_ecs::utilization;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
mod metrics_tests;

pub struct AgentApi {
    pub ecs: Ecs,
    pub logs: berth_logs::Logs,
    pub account_id: String,
    pub region: String,
    pub join_token: String,
    /// How long a poll is held when nothing changed (`api::POLL_WAIT_SECS` in service).
    pub poll_wait: Duration,
    /// The agents' usage samples, by window, until [`publish_metrics`] closes the window.
    pub utilization: std::sync::Mutex<utilization::Aggregator>,
    /// Where each closed window's `AWS/ECS` datapoints go: partition, datapoints.
    pub metrics: MetricsSink,
    /// A fresh login for the server's registry, which the agents pull its images with.
    pub registry_login: RegistryLogin,
    /// Resolves the secrets tasks name (`secrets`, `repositoryCredentials`).
    pub secrets: SecretSource,
}

/// Makes a login for the server's own registry (`berth_ecr::Ecr::pull_credentials`).
pub type RegistryLogin = Arc<dyn Fn() -> berth_ecr::PullCredentials + Send + Sync>;

/// Resolves a secret reference — a `valueFrom` or `credentialsParameter` — in a partition, to
/// the secret's value or a reason it cannot be read.
pub type SecretSource = Arc<dyn Fn(RequestContext, String) -> SecretValue + Send + Sync>;

/// A secret's value, or why it cannot be read.
pub type SecretValue =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>;

/// Receives `AWS/ECS` utilization datapoints for a partition (`account/region`), on a blocking
/// thread of the publishing loop.
pub type MetricsSink = Arc<dyn Fn(&str, Vec<utilization::Metric>) + Send + Sync>;

impl AgentApi {
    fn ctx(&self) -> RequestContext {
        RequestContext {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            request_id: berth_aws::new_request_id(),
            access_key_id: None,
        }
    }
}

/// The routes. `CatchPanicLayer` answers a handler bug with a 500 instead of a dropped
/// connection, as on the AWS routes.
pub fn router(state: Arc<AgentApi>) -> Router {
    Router::new()
        .route(api::REGISTER, post(register))
        .route(api::POLL, post(poll))
        .route(api::STATE, post(state_report))
        .route(api::LOGS, post(log_batch))
        .route(api::METRICS, post(metrics_report))
        .route(api::CREDENTIALS, post(credentials))
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send + 'static>| {
                error(&NodeError {
                    status: 500,
                    body: api::ErrorBody {
                        code: "InternalError".into(),
                        message: "an internal error occurred".into(),
                    },
                })
            },
        ))
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (StatusCode::OK, [("content-type", "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!("encoding an agent answer failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn error(e: &NodeError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json(&e.body);
    *r.status_mut() = status;
    r
}

fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, NodeError> {
    serde_json::from_slice(body)
        .map_err(|e| NodeError::bad_request(format!("the request body is not valid: {e}")))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn register(AxState(s): AxState<Arc<AgentApi>>, body: Bytes) -> Response {
    let result = async {
        let req: api::RegisterRequest = decode(&body)?;
        nodes::register(&s.ecs, &s.ctx(), &s.join_token, req).await
    }
    .await;
    match result {
        Ok(r) => json(&r),
        Err(e) => error(&e),
    }
}

async fn poll(AxState(s): AxState<Arc<AgentApi>>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let req: api::PollRequest = decode(&body)?;
        nodes::poll(&s.ecs, &s.ctx(), bearer(&headers), req, s.poll_wait).await
    }
    .await;
    match result {
        Ok(r) => json(&r),
        Err(e) => error(&e),
    }
}

async fn state_report(
    AxState(s): AxState<Arc<AgentApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let req: api::StateReport = decode(&body)?;
        nodes::report(&s.ecs, &s.ctx(), bearer(&headers), req).await
    }
    .await;
    match result {
        Ok(()) => json(&serde_json::json!({})),
        Err(e) => error(&e),
    }
}

/// Container output shipped by an agent (`awslogs`), ingested through the same path as
/// `PutLogEvents`. The node token is checked by an empty state report, which only reads.
async fn log_batch(
    AxState(s): AxState<Arc<AgentApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let req: api::LogBatch = decode(&body)?;
        nodes::report(
            &s.ecs,
            &s.ctx(),
            bearer(&headers),
            api::StateReport {
                instance_id: req.instance_id.clone(),
                tasks: Vec::new(),
            },
        )
        .await?;
        let mut ctx = s.ctx();
        if let Some(region) = req.region.filter(|r| !r.is_empty()) {
            ctx.region = region;
        }
        let refused = |e: berth_aws::AwsError| NodeError {
            status: e.status.as_u16(),
            body: api::ErrorBody {
                code: e.code.into_owned(),
                message: e.message,
            },
        };
        let events = req
            .events
            .into_iter()
            .map(|e| berth_logs::LineEvent {
                timestamp: e.timestamp,
                message: e.message,
            })
            .collect::<Vec<_>>();
        let sent = events.len();
        let out = s
            .logs
            .put_events(&ctx, &req.group, &req.stream, events, req.create_group)
            .await
            .map_err(refused)?;
        let last_timestamp = s
            .logs
            .last_event_timestamp(&ctx, &req.group, &req.stream)
            .await
            .map_err(refused)?;
        let rejected = sent.saturating_sub(out.accepted);
        Ok::<_, NodeError>(api::LogBatchResponse {
            last_timestamp,
            rejected,
        })
    }
    .await;
    match result {
        Ok(r) => json(&r),
        Err(e) => error(&e),
    }
}

/// What a task needs before its images are pulled (`api::CREDENTIALS`): the registry login
/// for images in berth's own registry, the `repositoryCredentials` secret for other registries,
/// and the values of `secrets`. Any reference that cannot be resolved fails the request, as the
/// task cannot start without it.
async fn credentials(
    AxState(s): AxState<Arc<AgentApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let req: api::CredentialsRequest = decode(&body)?;
        let ctx = s.ctx();
        let needs = nodes::credential_needs(&s.ecs, &ctx, bearer(&headers), &req).await?;
        let reached_as = headers.get("host").and_then(|h| h.to_str().ok());
        let own = (s.registry_login)();
        let mut out = api::CredentialsResponse::default();
        for need in needs {
            let host = api::registry_host(&need.image);
            let registry = if let Some(host) =
                host.filter(|h| is_own_registry(h, &own.host, reached_as))
            {
                Some(api::RegistryCredentials {
                    username: own.username.clone(),
                    password: own.password.clone(),
                    server: host.to_owned(),
                })
            } else if let Some(parameter) = &need.credentials_parameter {
                let text = (s.secrets)(ctx.clone(), parameter.clone())
                    .await
                    .map_err(|why| not_initialized(parameter, &why))?;
                let login = parse_login(&text).map_err(|why| not_initialized(parameter, why))?;
                Some(api::RegistryCredentials {
                    username: login.0,
                    password: login.1,
                    server: host.unwrap_or("docker.io").to_owned(),
                })
            } else {
                None
            };
            let mut secrets = Vec::with_capacity(need.secrets.len());
            for (name, value_from) in need.secrets {
                let value = (s.secrets)(ctx.clone(), value_from.clone())
                    .await
                    .map_err(|why| not_initialized(&value_from, &why))?;
                secrets.push(api::SecretValue { name, value });
            }
            if registry.is_some() || !secrets.is_empty() {
                out.containers.push(api::ContainerCredentials {
                    name: need.name,
                    registry,
                    secrets,
                });
            }
        }
        Ok::<_, NodeError>(out)
    }
    .await;
    match result {
        Ok(r) => json(&r),
        Err(e) => error(&e),
    }
}

/// ECS's words for a task that cannot get its secrets or registry credentials.
fn not_initialized(reference: &str, why: &str) -> NodeError {
    NodeError {
        status: 400,
        body: api::ErrorBody {
            code: "ResourceInitializationError".into(),
            message: format!(
                "unable to pull secrets or registry auth: unable to retrieve secret {reference}: {why}"
            ),
        },
    }
}

/// Whether `host` is this server's registry: its own `host:port`, the address the agent
/// reached the server at, or a loopback spelling of either with the same port.
fn is_own_registry(host: &str, own: &str, reached_as: Option<&str>) -> bool {
    let loopback = |h: &str| -> Option<String> {
        let (name, port) = h.rsplit_once(':')?;
        matches!(name, "127.0.0.1" | "localhost" | "[::1]").then(|| port.to_owned())
    };
    let same = |a: &str, b: &str| {
        a.eq_ignore_ascii_case(b)
            || matches!((loopback(a), loopback(b)), (Some(x), Some(y)) if x == y)
    };
    same(host, own) || reached_as.is_some_and(|r| same(host, r))
}

/// The login a `repositoryCredentials` secret holds: `{"username": …, "password": …}`, as ECS
/// requires it.
fn parse_login(text: &str) -> Result<(String, String), &'static str> {
    #[derive(serde::Deserialize)]
    struct Login {
        username: String,
        password: String,
    }
    serde_json::from_str::<Login>(text)
        .map(|l| (l.username, l.password))
        .map_err(|_| "the secret is not a JSON object with string members username and password")
}

/// An agent's usage sample: resolved against its tasks and added to the current window.
async fn metrics_report(
    AxState(s): AxState<Arc<AgentApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let req: api::MetricsReport = decode(&body)?;
        let ctx = s.ctx();
        if let Some(sample) = utilization::observe(&s.ecs, &ctx, bearer(&headers), &req).await? {
            let now = s.ecs.now_ms();
            // A poisoned lock only means a panic mid-add; the windows are still usable.
            let mut windows = s.utilization.lock().unwrap_or_else(|p| p.into_inner());
            windows.add(&ctx.partition(), now, sample);
        }
        Ok::<_, NodeError>(())
    }
    .await;
    match result {
        Ok(()) => json(&serde_json::json!({})),
        Err(e) => error(&e),
    }
}

/// Closes each window once it has ended and hands its datapoints to the sink: one datapoint
/// per metric and dimension set per window.
pub async fn publish_metrics(agents: Arc<AgentApi>) {
    let window_ms = agents
        .utilization
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .window_ms();
    // A few checks per window, so a window is published soon after it ends.
    let every = Duration::from_millis(u64::try_from(window_ms / 4).unwrap_or(250).clamp(50, 1000));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = agents.ecs.now_ms();
        let closed = agents
            .utilization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(now);
        if closed.is_empty() {
            continue;
        }
        // The sink may write to disk (CloudWatch's log of datapoints): off the async threads.
        let sink = agents.metrics.clone();
        let stored = tokio::task::spawn_blocking(move || {
            for (partition, metrics) in closed {
                sink(&partition, metrics);
            }
        })
        .await;
        if let Err(e) = stored {
            tracing::warn!("publishing AWS/ECS utilization failed: {e}");
        }
    }
}

/// A sink that stores the datapoints in CloudWatch, as ECS publishes them there.
pub fn cloudwatch_sink(cloudwatch: berth_cloudwatch::Cloudwatch) -> MetricsSink {
    Arc::new(move |partition: &str, points: Vec<utilization::Metric>| {
        let points = points.into_iter().map(datapoint).collect();
        if let Err(e) = cloudwatch.ingest(partition, points) {
            tracing::warn!("AWS/ECS utilization was not stored: {e}");
        }
    })
}

fn datapoint(m: utilization::Metric) -> berth_cloudwatch::Datapoint {
    berth_cloudwatch::Datapoint {
        namespace: utilization::NAMESPACE.into(),
        metric_name: m.metric_name.into(),
        dimensions: m.dimensions,
        timestamp_ms: m.timestamp_ms,
        values: berth_cloudwatch::Values::Set {
            sample_count: m.sample_count,
            sum: m.sum,
            minimum: m.minimum,
            maximum: m.maximum,
        },
        unit: Some(utilization::UNIT.into()),
        storage_resolution: m.storage_resolution,
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn the_own_registry_is_recognised_under_its_loopback_spellings_only() {
        let own = "127.0.0.1:4566";
        assert!(is_own_registry("127.0.0.1:4566", own, None));
        assert!(is_own_registry("localhost:4566", own, None));
        assert!(is_own_registry("[::1]:4566", own, None));
        assert!(!is_own_registry("localhost:4567", own, None));
        assert!(!is_own_registry("registry.example.com", own, None));
        assert!(is_own_registry(
            "berth.internal:4566",
            own,
            Some("berth.internal:4566")
        ));
        assert!(!is_own_registry(
            "other.internal:4566",
            own,
            Some("berth.internal:4566")
        ));
    }

    #[test]
    fn registry_secrets_must_hold_a_username_and_a_password() {
        assert_eq!(
            parse_login(r#"{"username":"u","password":"p","extra":1}"#),
            Ok(("u".into(), "p".into()))
        );
        assert!(parse_login(r#"{"username":"u"}"#).is_err());
        assert!(parse_login("u:p").is_err());
    }
}

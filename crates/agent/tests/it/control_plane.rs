//! A fake control plane: register / poll / state as `berth-agent-api` defines them, holding the
//! desired state a test scripts and recording every report. Like the real server it lists only
//! tasks not yet reported STOPPED, and it can be taken down and brought back on the same port.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_agent_api as api;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const JOIN_TOKEN: &str = "join-secret";

#[derive(Default)]
pub struct State {
    pub tasks: Vec<api::AssignedTask>,
    pub revision: u64,
    /// instance id → node token
    pub instances: BTreeMap<String, String>,
    pub registrations: Vec<api::RegisterRequest>,
    pub reports: Vec<api::TaskState>,
    pub polls: u64,
    /// Every metrics report received, in order.
    pub metrics: Vec<api::MetricsReport>,
    /// What the credentials endpoint answers, by task ARN: the answer, or an error code and
    /// message. A task not listed gets a 404, as from a server that does not place it here.
    pub credentials: BTreeMap<String, Result<api::CredentialsResponse, (String, String)>>,
    /// The task ARNs credentials were asked for, in order.
    pub credential_requests: Vec<String>,
}

#[derive(Clone)]
pub struct ControlPlane {
    pub state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    pub addr: SocketAddr,
    server: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cp = ControlPlane {
            state: Arc::default(),
            changed: Arc::default(),
            addr,
            server: Arc::default(),
        };
        cp.serve(listener);
        cp
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route(api::REGISTER, post(register))
            .route(api::POLL, post(poll))
            .route(api::STATE, post(report))
            .route(api::METRICS, post(metrics))
            .route(api::CREDENTIALS, post(credentials))
            .with_state(self.clone());
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock() = Some(handle);
    }

    /// The server goes away: the listener closes and open connections drop.
    pub fn stop(&self) {
        if let Some(h) = self.server.lock().take() {
            h.abort();
        }
    }

    /// The server comes back on the same address, with the same state.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Adds a task with `desired_status` RUNNING.
    pub fn assign(&self, task: api::AssignedTask) {
        let mut s = self.state.lock();
        s.tasks.push(task);
        s.revision += 1;
        drop(s);
        self.changed.notify_waiters();
    }

    pub fn stop_task(&self, arn: &str, reason: &str) {
        let mut s = self.state.lock();
        for t in s.tasks.iter_mut().filter(|t| t.task_arn == arn) {
            t.desired_status = "STOPPED".into();
            t.stop_reason = Some(reason.into());
        }
        s.revision += 1;
        drop(s);
        self.changed.notify_waiters();
    }

    /// The latest state reported for `arn`.
    pub fn latest(&self, arn: &str) -> Option<api::TaskState> {
        self.state
            .lock()
            .reports
            .iter()
            .rev()
            .find(|r| r.task_arn == arn)
            .cloned()
    }

    /// Every status reported for `arn`, in order, without repeats.
    pub fn statuses(&self, arn: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self
            .state
            .lock()
            .reports
            .iter()
            .filter(|r| r.task_arn == arn)
        {
            if out.last() != Some(&r.status) {
                out.push(r.status.clone());
            }
        }
        out
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&api::ErrorBody {
        code: code.into(),
        message: message.into(),
    })
    .unwrap_or_default();
    (status, body).into_response()
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    (StatusCode::OK, serde_json::to_vec(v).unwrap_or_default()).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

async fn register(
    axum::extract::State(cp): axum::extract::State<ControlPlane>,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<api::RegisterRequest>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "bad body");
    };
    let mut s = cp.state.lock();
    s.registrations.push(req.clone());
    if let (Some(id), Some(token)) = (&req.instance_id, &req.node_token)
        && s.instances.get(id) == Some(token)
    {
        return json(&api::RegisterResponse {
            instance_id: id.clone(),
            container_instance_arn: format!(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/{}/{id}",
                req.cluster
            ),
            node_token: token.clone(),
        });
    }
    if req.join_token.as_deref() != Some(JOIN_TOKEN) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", "bad join token");
    }
    let id = format!("inst-{}", s.instances.len() + 1);
    let token = format!("tok-{}", s.instances.len() + 1);
    s.instances.insert(id.clone(), token.clone());
    json(&api::RegisterResponse {
        instance_id: id.clone(),
        container_instance_arn: format!(
            "arn:aws:ecs:us-east-1:000000000000:container-instance/{}/{id}",
            req.cluster
        ),
        node_token: token,
    })
}

fn authorized(s: &State, headers: &HeaderMap, instance_id: &str) -> bool {
    bearer(headers).is_some_and(|t| s.instances.get(instance_id) == Some(&t))
}

async fn credentials(
    axum::extract::State(cp): axum::extract::State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<api::CredentialsRequest>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "bad body");
    };
    let mut s = cp.state.lock();
    if !authorized(&s, &headers, &req.instance_id) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", "bad node token");
    }
    s.credential_requests.push(req.task_arn.clone());
    match s.credentials.get(&req.task_arn) {
        Some(Ok(c)) => json(c),
        Some(Err((code, message))) => error(StatusCode::BAD_REQUEST, code, message),
        None => error(StatusCode::NOT_FOUND, "TaskNotFound", "not placed here"),
    }
}

async fn poll(
    axum::extract::State(cp): axum::extract::State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<api::PollRequest>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "bad body");
    };
    {
        let mut s = cp.state.lock();
        if !authorized(&s, &headers, &req.instance_id) {
            return error(StatusCode::UNAUTHORIZED, "Unauthorized", "bad node token");
        }
        s.polls += 1;
    }
    // Hold the poll briefly while nothing changed, as the real server holds it longer.
    let notified = cp.changed.notified();
    let unchanged = cp.state.lock().revision <= req.after_revision;
    if unchanged {
        let _ = tokio::time::timeout(Duration::from_millis(300), notified).await;
    }
    let s = cp.state.lock();
    json(&api::PollResponse {
        revision: s.revision,
        tasks: s.tasks.clone(),
        draining: false,
    })
}

async fn report(
    axum::extract::State(cp): axum::extract::State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<api::StateReport>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "bad body");
    };
    let mut s = cp.state.lock();
    if !authorized(&s, &headers, &req.instance_id) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", "bad node token");
    }
    let mut changed = false;
    for t in req.tasks {
        if t.status == "STOPPED" {
            let before = s.tasks.len();
            s.tasks.retain(|x| x.task_arn != t.task_arn);
            changed |= s.tasks.len() != before;
        }
        s.reports.push(t);
    }
    if changed {
        s.revision += 1;
    }
    drop(s);
    if changed {
        cp.changed.notify_waiters();
    }
    json(&serde_json::json!({}))
}

async fn metrics(
    axum::extract::State(cp): axum::extract::State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<api::MetricsReport>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "bad body");
    };
    let mut s = cp.state.lock();
    if !authorized(&s, &headers, &req.instance_id) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", "bad node token");
    }
    s.metrics.push(req);
    json(&serde_json::json!({}))
}

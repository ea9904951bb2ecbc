//! ECS's task metadata endpoint, version 4 (and version 3, the same documents without the
//! fields v4 added), served by the agent to the containers of its tasks.
//!
//! Each container gets `ECS_CONTAINER_METADATA_URI_V4` (and `ECS_CONTAINER_METADATA_URI`)
//! = `http://<host as the container reaches it>:<port>/v4/<token>` from `translate.rs`, and
//! reads `${URI}` (itself), `${URI}/task`, `${URI}/stats` and `${URI}/task/stats`. The token is
//! an HMAC of the task ARN and container name under a per-node key kept in the data dir
//! (`metadata.key`), formatted as a v4 UUID: unguessable, so a task cannot read another's, and
//! the same after an agent restart, so re-adopted containers keep a working URI.
//!
//! The documents come from a [`Directory`] that each task's supervisor (`task.rs`) updates
//! through a [`Publisher`] when what it observed changes, and clears when the task has
//! stopped; stats are read from the runtime on request.
//!
//! **Architecture Invariant:** the server binds only loopback and the Docker bridge's gateway
//! (reachable from this host and its containers), never a wildcard address; a request answers
//! only from the directory entry its token names.

use crate::supervisor::{Status, container_status};
use crate::translate::{NetworkMode, TaskPlan};
use berth_runtime::{ContainerId, ContainerState, Runtime};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::RwLock;
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The port the ECS agent serves its introspection API on is 51678; its task metadata
/// endpoint family sits beside it. `0` asks for an ephemeral port (tests).
pub const DEFAULT_PORT: u16 = 51679;

/// The variable ECS sets for version 4 of the endpoint.
pub const ENV_V4: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The variable ECS sets for version 3.
pub const ENV_V3: &str = "ECS_CONTAINER_METADATA_URI";

const KEY_FILE: &str = "metadata.key";
const KEY_LEN: usize = 32;

/// Connections served at once; more wait in the kernel's backlog. A container can only hurt
/// itself by opening many.
const MAX_CONNECTIONS: usize = 128;

/// Longest wait for the engine's stats (it takes about a second to sample twice).
const STATS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot keep the metadata key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The node's secret from which every container's endpoint token is derived.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; KEY_LEN]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> TokenKey {
        TokenKey(bytes)
    }

    /// The key in `<dir>/metadata.key`, made (random, owner-only) when missing or malformed.
    pub fn load_or_create(dir: &Path) -> Result<TokenKey, MetadataError> {
        let path = dir.join(KEY_FILE);
        let err = |source| MetadataError::Key {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Ok(key) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
                    return Ok(TokenKey(key));
                }
                tracing::warn!("{} is malformed; making a new one", path.display());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let mut key = [0u8; KEY_LEN];
        rand::thread_rng().fill_bytes(&mut key);
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        write_private(&tmp, &key).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(TokenKey(key))
    }

    /// The token in the metadata URI of container `container` of task `task_arn`: 16 bytes
    /// of HMAC-SHA256, formatted as a v4 UUID (as ECS's ids look).
    pub fn token(&self, task_arn: &str, container: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(task_arn.as_bytes());
        mac.update(&[0]);
        mac.update(container.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Where containers reach the metadata server, by network mode, and the key of their tokens:
/// what `translate.rs` needs to give each container its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub key: TokenKey,
    /// `http://<bridge gateway>:<port>`, for `bridge` and `awsvpc` containers (the `awsvpc`
    /// namespace holder sits on the bridge); `None` when it could not be bound.
    pub bridge: Option<String>,
    /// `http://127.0.0.1:<port>`, for `host` containers.
    pub host: Option<String>,
}

impl Endpoints {
    /// The base URL a container of `mode` reaches the server at; `none` containers have none.
    pub fn base_for(&self, mode: NetworkMode) -> Option<&str> {
        match mode {
            NetworkMode::Bridge | NetworkMode::Awsvpc => self.bridge.as_deref(),
            NetworkMode::Host => self.host.as_deref(),
            NetworkMode::None => None,
        }
    }
}

// ---- the documents ---------------------------------------------------------------------

/// `${URI}/task`, in ECS's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskMetadata {
    pub cluster: String,
    #[serde(rename = "TaskARN")]
    pub task_arn: String,
    pub family: String,
    /// A string, as ECS writes it.
    pub revision: String,
    pub desired_status: String,
    pub known_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<String>,
    /// The service the task belongs to, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The node's `ecs.availability-zone` attribute, when the operator gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub launch_type: &'static str,
    /// The containers that exist (ECS lists only those the engine knows).
    pub containers: Vec<ContainerMetadata>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// vCPUs for a task, CPU units for a container, as ECS reports them.
    #[serde(rename = "CPU", skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// MiB.
    #[serde(rename = "Memory", skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// `${URI}`, and each element of the task's `Containers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerMetadata {
    pub docker_id: String,
    pub name: String,
    pub docker_name: String,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub desired_status: String,
    pub known_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    pub limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(rename = "ContainerARN", skip_serializing_if = "Option::is_none")]
    pub container_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub log_options: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Port {
    pub container_port: u16,
    pub protocol: String,
    pub host_port: u16,
    pub host_ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    #[serde(rename = "NetworkMode")]
    pub network_mode: &'static str,
    #[serde(rename = "IPv4Addresses", skip_serializing_if = "Vec::is_empty")]
    pub ipv4_addresses: Vec<String>,
}

/// ECS writes the health of a container with a health check in lower camel case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// What a task's supervisor knows at one moment, for [`Publisher::update`].
pub(crate) struct Observed<'a> {
    pub plan: &'a TaskPlan,
    pub ids: &'a [Option<ContainerId>],
    pub status: &'a [Status],
    pub seen: &'a [Option<ContainerState>],
    pub done: bool,
    pub desired_stop: bool,
    pub task_status: &'a str,
    pub pull_started_at: Option<i64>,
    pub pull_stopped_at: Option<i64>,
    pub execution_stopped_at: Option<i64>,
}

/// The task document of what the supervisor observed. Pure.
pub(crate) fn task_metadata(
    cluster: &str,
    availability_zone: Option<&str>,
    o: &Observed<'_>,
) -> TaskMetadata {
    let desired = if o.desired_stop { "STOPPED" } else { "RUNNING" };
    let containers = o
        .plan
        .containers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let id = o.ids.get(i)?.as_ref()?;
            let seen = o.seen.get(i).and_then(Option::as_ref);
            let status = o.status.get(i).copied().unwrap_or(Status::Absent);
            let ip = seen
                .and_then(|s| s.ip_address.clone())
                .filter(|ip| !ip.is_empty());
            Some(ContainerMetadata {
                docker_id: id.0.clone(),
                name: c.name.clone(),
                docker_name: c.spec.name.clone(),
                image: c.spec.image.clone(),
                image_id: seen.map(|s| s.image_id.clone()).unwrap_or_default(),
                ports: seen
                    .map(|s| {
                        s.host_ports
                            .iter()
                            .map(|p| Port {
                                container_port: p.container_port,
                                protocol: p.protocol.as_str().into(),
                                host_port: p.host_port,
                                host_ip: p.host_ip.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                labels: c.spec.labels.clone(),
                desired_status: desired.into(),
                known_status: container_status(status, o.done).into(),
                exit_code: match status {
                    Status::Exited { exit_code } => exit_code,
                    _ => None,
                },
                limits: Limits {
                    cpu: Some(f64::from(c.metadata.cpu)),
                    memory: Some(c.spec.memory_limit_mib.unwrap_or(0)),
                },
                created_at: seen.and_then(|s| s.created_at).and_then(rfc3339),
                started_at: seen.and_then(|s| s.started_at).and_then(rfc3339),
                finished_at: seen.and_then(|s| s.finished_at).and_then(rfc3339),
                kind: "NORMAL",
                container_arn: c.metadata.arn.clone(),
                health: c.spec.health_check.as_ref().map(|_| Health {
                    status: crate::supervisor::container_health(status, true),
                }),
                log_driver: c.metadata.log_driver.clone(),
                log_options: c.metadata.log_options.clone(),
                networks: vec![Network {
                    network_mode: o.plan.network_mode.as_str(),
                    ipv4_addresses: ip.into_iter().collect(),
                }],
            })
        })
        .collect();
    let limits = &o.plan.limits;
    TaskMetadata {
        cluster: cluster.to_string(),
        task_arn: o.plan.task_arn.clone(),
        family: o.plan.family.clone(),
        revision: o.plan.revision.to_string(),
        desired_status: desired.into(),
        known_status: o.task_status.to_string(),
        limits: (limits.vcpu.is_some() || limits.memory_mib.is_some()).then_some(Limits {
            cpu: limits.vcpu,
            memory: limits.memory_mib,
        }),
        pull_started_at: o.pull_started_at.and_then(rfc3339),
        pull_stopped_at: o.pull_stopped_at.and_then(rfc3339),
        execution_stopped_at: o.execution_stopped_at.and_then(rfc3339),
        service_name: o.plan.service_name.clone(),
        availability_zone: availability_zone.map(str::to_string),
        launch_type: "EC2",
        containers,
    }
}

/// Unix milliseconds as Go's `time.Time` marshals (RFC 3339, UTC, `Z`).
fn rfc3339(millis: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

// ---- the directory ---------------------------------------------------------------------

/// Every task's metadata document and the tokens that lead to it. Readers (requests) and
/// writers (supervisors, on change only) share one lock; each holds it for a map operation.
#[derive(Default)]
pub struct Directory {
    inner: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    tasks: HashMap<String, Arc<TaskMetadata>>,
    /// token → (task ARN, container name).
    tokens: HashMap<String, (String, String)>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("tasks", &self.inner.read().tasks.len())
            .finish()
    }
}

impl Directory {
    /// The task and container a token names, if the task is known.
    pub fn lookup(&self, token: &str) -> Option<(Arc<TaskMetadata>, String)> {
        let entries = self.inner.read();
        let (arn, name) = entries.tokens.get(token)?;
        Some((entries.tasks.get(arn)?.clone(), name.clone()))
    }

    fn put(&self, task: TaskMetadata, tokens: Vec<String>, names: Vec<String>) {
        if self
            .inner
            .read()
            .tasks
            .get(&task.task_arn)
            .is_some_and(|t| **t == task)
        {
            return;
        }
        let mut entries = self.inner.write();
        for (token, name) in tokens.into_iter().zip(names) {
            entries.tokens.insert(token, (task.task_arn.clone(), name));
        }
        entries.tasks.insert(task.task_arn.clone(), Arc::new(task));
    }

    fn remove(&self, task_arn: &str) {
        let mut entries = self.inner.write();
        entries.tasks.remove(task_arn);
        entries.tokens.retain(|_, (arn, _)| arn != task_arn);
    }

    pub fn len(&self) -> usize {
        self.inner.read().tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A supervisor's handle on the directory.
#[derive(Clone, Debug)]
pub(crate) struct Publisher {
    pub directory: Arc<Directory>,
    pub cluster: String,
    pub availability_zone: Option<String>,
}

impl Publisher {
    /// Publishes the task's document (a no-op when it has not changed).
    pub fn update(&self, o: &Observed<'_>) {
        let task = task_metadata(&self.cluster, self.availability_zone.as_deref(), o);
        let (tokens, names) = o
            .plan
            .containers
            .iter()
            .filter_map(|c| Some((c.metadata.token.clone()?, c.name.clone())))
            .unzip();
        self.directory.put(task, tokens, names);
    }

    /// Forgets the task: its containers have stopped.
    pub fn remove(&self, task_arn: &str) {
        self.directory.remove(task_arn);
    }
}

// ---- the server ------------------------------------------------------------------------

/// The running server: the base URLs it answers on and its listeners.
#[derive(Debug)]
pub struct Server {
    pub endpoints: Endpoints,
    listeners: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds loopback and, when given, the bridge gateway on `port` (each its own ephemeral
    /// port when `port` is 0). An address that cannot be bound is logged and left out: its
    /// containers get no URI, their tasks still run.
    pub async fn start(
        directory: Arc<Directory>,
        runtime: Runtime,
        key: TokenKey,
        port: u16,
        bridge_gateway: Option<IpAddr>,
    ) -> Server {
        let state = Arc::new(State {
            directory,
            runtime,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        });
        let mut listeners = Vec::new();
        let mut bind = async |ip: IpAddr, what: &str| -> Option<String> {
            match TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(l) => {
                    let addr = l.local_addr().ok()?;
                    tracing::info!(%addr, "task metadata endpoint for {what} containers");
                    listeners.push(tokio::spawn(accept_loop(l, state.clone())));
                    Some(format!("http://{addr}"))
                }
                Err(e) => {
                    tracing::warn!(
                        "{what} containers get no task metadata endpoint: cannot bind {ip}:{port}: {e}"
                    );
                    None
                }
            }
        };
        let host = bind(IpAddr::V4(Ipv4Addr::LOCALHOST), "host-mode").await;
        let bridge = match bridge_gateway {
            Some(ip) if !ip.is_unspecified() => bind(ip, "bridge and awsvpc").await,
            Some(_) => None,
            None => {
                tracing::warn!(
                    "bridge and awsvpc containers get no task metadata endpoint: the runtime has no bridge network"
                );
                None
            }
        };
        Server {
            endpoints: Endpoints { key, bridge, host },
            listeners,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

struct State {
    directory: Arc<Directory>,
    runtime: Runtime,
    connections: Arc<Semaphore>,
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, most likely: pause rather than spin.
                tracing::warn!("task metadata endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(permit) = state.connections.clone().acquire_owned().await else {
            return;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            // One request per connection, its head within 10 s: an idle or slow client cannot
            // hold a slot for long.
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("task metadata connection: {e}");
            }
            drop(permit);
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V3,
    V4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Container,
    Task,
    Stats,
    TaskStats,
}

/// `/v4/<token>[/task][/stats]` (or `/v3/…`), trailing slashes allowed.
fn route(path: &str) -> Option<(Version, &str, Route)> {
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let version = match parts.next()? {
        "v4" => Version::V4,
        "v3" => Version::V3,
        _ => return None,
    };
    let token = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let route = match rest.as_slice() {
        [] => Route::Container,
        ["task"] => Route::Task,
        ["stats"] => Route::Stats,
        ["task", "stats"] => Route::TaskStats,
        _ => return None,
    };
    Some((version, token, route))
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let Some((version, token, route)) = route(req.uri().path()) else {
        return error(StatusCode::NOT_FOUND, "no such metadata path");
    };
    let Some((task, name)) = state.directory.lookup(token) else {
        return error(StatusCode::NOT_FOUND, "unknown container");
    };
    match route {
        Route::Task => json(&versioned_task(&task, version)),
        Route::Container => match task.containers.iter().find(|c| c.name == name) {
            Some(c) => json(&versioned_container(c, version)),
            None => error(StatusCode::NOT_FOUND, "the container does not exist yet"),
        },
        Route::Stats => {
            let Some(c) = task.containers.iter().find(|c| c.name == name) else {
                return error(StatusCode::NOT_FOUND, "the container does not exist yet");
            };
            match stats(&state.runtime, &c.docker_id).await {
                Ok(s) => json(&s),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
            }
        }
        Route::TaskStats => {
            let all = task.containers.iter().map(|c| async {
                let s = stats(&state.runtime, &c.docker_id).await;
                // ECS writes null for a container whose stats it cannot read.
                (c.docker_id.clone(), s.unwrap_or(serde_json::Value::Null))
            });
            let map: serde_json::Map<String, serde_json::Value> =
                futures_util::future::join_all(all)
                    .await
                    .into_iter()
                    .collect();
            json(&map)
        }
    }
}

async fn stats(runtime: &Runtime, docker_id: &str) -> Result<serde_json::Value, String> {
    let id = ContainerId(docker_id.to_string());
    match tokio::time::timeout(STATS_TIMEOUT, runtime.raw_stats(&id)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("cannot read the container's stats: {e}")),
        Err(_) => Err("the container runtime did not answer in time".into()),
    }
}

/// Version 3 is version 4 without the fields v4 added.
fn versioned_container(c: &ContainerMetadata, version: Version) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if version == Version::V3
        && let Some(o) = v.as_object_mut()
    {
        for k in ["LogDriver", "LogOptions", "ContainerARN"] {
            o.remove(k);
        }
    }
    v
}

fn versioned_task(t: &TaskMetadata, version: Version) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if version == Version::V3
        && let Some(o) = v.as_object_mut()
    {
        o.remove("LaunchType");
        o.remove("ServiceName");
        o.insert(
            "Containers".into(),
            t.containers
                .iter()
                .map(|c| versioned_container(c, version))
                .collect(),
        );
    }
    v
}

fn json<T: Serialize>(body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => respond(StatusCode::OK, bytes),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    respond(status, body)
}

fn respond(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_ecs_paths() {
        let t = "7f0a4d7e-0000-4000-8000-000000000000";
        assert_eq!(
            route(&format!("/v4/{t}")),
            Some((Version::V4, t, Route::Container))
        );
        assert_eq!(
            route(&format!("/v4/{t}/")),
            Some((Version::V4, t, Route::Container))
        );
        assert_eq!(
            route(&format!("/v3/{t}/task")),
            Some((Version::V3, t, Route::Task))
        );
        assert_eq!(
            route(&format!("/v4/{t}/stats")),
            Some((Version::V4, t, Route::Stats))
        );
        assert_eq!(
            route(&format!("/v4/{t}/task/stats")),
            Some((Version::V4, t, Route::TaskStats))
        );
        assert_eq!(route(&format!("/v4/{t}/other")), None);
        assert_eq!(route(&format!("/v2/{t}")), None);
        assert_eq!(route("/v4"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn tokens_are_uuid_shaped_stable_and_keyed() {
        let key = TokenKey::from_bytes([7; KEY_LEN]);
        let a = key.token("arn:aws:ecs:us-east-1:0:task/default/t1", "web");
        assert_eq!(
            a,
            key.token("arn:aws:ecs:us-east-1:0:task/default/t1", "web")
        );
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(
            a,
            key.token("arn:aws:ecs:us-east-1:0:task/default/t1", "db")
        );
        assert_ne!(
            a,
            key.token("arn:aws:ecs:us-east-1:0:task/default/t2", "web")
        );
        assert_ne!(
            a,
            TokenKey::from_bytes([8; KEY_LEN])
                .token("arn:aws:ecs:us-east-1:0:task/default/t1", "web")
        );
    }

    #[test]
    fn the_key_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = TokenKey::load_or_create(dir.path()).expect("made");
        let again = TokenKey::load_or_create(dir.path()).expect("read");
        assert_eq!(first, again);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), b"short").expect("corrupt");
        let fresh = TokenKey::load_or_create(dir.path()).expect("remade");
        assert_ne!(fresh, first);
        assert_eq!(format!("{first:?}"), "TokenKey(..)");
    }

    #[test]
    fn times_are_written_as_go_does() {
        assert_eq!(
            rfc3339(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(
            rfc3339(1_700_000_000_000).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }
}

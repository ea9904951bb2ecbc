//! One task's supervisor at work: observes its containers through the runtime, asks
//! `supervisor::next_actions` what to do, does it, and publishes the task's ECS state for the
//! reporter. It runs until the task is STOPPED.

use crate::client::{Client, ClientError};
use crate::pulls::Pulls;
use crate::reports::Reports;
use crate::state::Identity;
use crate::supervisor::{
    self, Action, Failure, Snapshot, Status, StopCode, container_health, container_status,
    task_health, task_status,
};
use crate::translate::TaskPlan;
use crate::{PullBehavior, now_millis};
use berth_agent_api::{
    self as api, ContainerState as ApiContainer, NetworkBinding, TaskState, labels,
};
use berth_runtime::{
    ContainerId, ContainerState, ContainerStatus, RegistryAuth, Runtime, RuntimeError,
    normalize_reference,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// What the server wants of the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub stop: bool,
    pub reason: Option<String>,
}

/// Containers found on the node for this task when the agent started: container name label →
/// id (the namespace holder under its ECS label value).
pub type Adopted = BTreeMap<String, ContainerId>;

pub(crate) struct TaskRunner {
    pub plan: TaskPlan,
    pub runtime: Runtime,
    pub reports: Arc<Reports>,
    pub desired: watch::Receiver<Desired>,
    pub finished: Arc<AtomicBool>,
    pub tick: Duration,
    pub pull_behavior: PullBehavior,
    ids: Vec<Option<ContainerId>>,
    holder_id: Option<ContainerId>,
    status: Vec<Status>,
    holder: Status,
    seen: Vec<Option<ContainerState>>,
    reasons: Vec<Option<String>>,
    digests: BTreeMap<String, String>,
    pulled: bool,
    volumes_ready: bool,
    failure: Option<Failure>,
    pull_started_at: Option<i64>,
    pull_stopped_at: Option<i64>,
    started_at: Option<i64>,
    execution_stopped_at: Option<i64>,
    done: bool,
    last: Option<TaskState>,
    /// Ships `awslogs` containers' output; `None` in tests that run no control plane.
    shipper: Option<crate::logship::Shipper>,
    /// Which containers already have a log follower.
    shipping: Vec<bool>,
    /// Pulls shared with the node's other tasks.
    pulls: Pulls,
    /// Where the task's registry credentials and secrets come from; `None` in tests that run
    /// no control plane (the task then pulls without credentials and names no secrets).
    server: Option<ServerLink>,
    /// Keeps the task metadata endpoint's view of the task; `None` when the node serves none.
    metadata: Option<crate::metadata::Publisher>,
}

/// The control plane, as a task's supervisor needs it before its pull
/// ([`api::CREDENTIALS`]).
#[derive(Clone)]
pub(crate) struct ServerLink {
    pub client: Client,
    pub identity: watch::Receiver<Option<Identity>>,
}

/// What came of asking the server for a task's credentials.
enum Credentials {
    Got(api::CredentialsResponse),
    /// The server cannot be asked now (away, or the node not registered yet): try again later.
    Later(String),
    /// The task cannot start: ECS's stopped reason.
    Refused(String),
}

impl TaskRunner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: TaskPlan,
        runtime: Runtime,
        reports: Arc<Reports>,
        desired: watch::Receiver<Desired>,
        finished: Arc<AtomicBool>,
        tick: Duration,
        pull_behavior: PullBehavior,
        adopted: Adopted,
    ) -> TaskRunner {
        let n = plan.containers.len();
        let ids: Vec<Option<ContainerId>> = plan
            .containers
            .iter()
            .map(|c| adopted.get(&c.name).cloned())
            .collect();
        let holder_id = adopted
            .get(crate::translate::HOLDER_CONTAINER_NAME)
            .cloned();
        // Containers that exist were made from images that are present; a missing one still
        // needs its image.
        let pulled = !ids.is_empty() && ids.iter().all(Option::is_some);
        TaskRunner {
            plan,
            runtime,
            reports,
            desired,
            finished,
            tick,
            pull_behavior,
            ids,
            holder_id,
            status: vec![Status::Absent; n],
            holder: Status::Absent,
            seen: vec![None; n],
            reasons: vec![None; n],
            digests: BTreeMap::new(),
            pulled,
            volumes_ready: false,
            failure: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
            done: false,
            last: None,
            shipper: None,
            shipping: vec![false; n],
            pulls: Pulls::default(),
            server: None,
            metadata: None,
        }
    }

    /// Pulls through the node's shared `pulls`, with the credentials and secrets `server`
    /// resolves for the task.
    pub fn with_server(mut self, pulls: Pulls, server: ServerLink) -> TaskRunner {
        self.pulls = pulls;
        self.server = Some(server);
        self
    }

    /// A task whose definition cannot run here: STOPPED at once, with the reason.
    pub fn refused(task_arn: &str, reason: String) -> TaskState {
        TaskState {
            task_arn: task_arn.to_string(),
            status: "STOPPED".into(),
            containers: vec![],
            stop_code: Some(StopCode::TaskFailedToStart.as_str().into()),
            stopped_reason: Some(reason),
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: Some(now_millis()),
            health_status: None,
        }
    }

    /// Ships the output of the task's `awslogs` containers through `shipper`.
    pub fn with_shipper(mut self, shipper: crate::logship::Shipper) -> TaskRunner {
        self.shipper = Some(shipper);
        self
    }

    /// Keeps the task metadata endpoint's view of the task up to date through `publisher`.
    pub fn with_metadata(mut self, publisher: Option<crate::metadata::Publisher>) -> TaskRunner {
        self.metadata = publisher;
        self
    }

    /// Starts a log follower for each `awslogs` container that has started and has none yet
    /// (adopted containers included: the follower resumes after the last shipped line).
    fn ship_logs(&mut self) {
        let Some(shipper) = &self.shipper else {
            return;
        };
        for i in 0..self.ids.len() {
            if self.shipping[i]
                || !matches!(
                    self.status[i],
                    Status::Running { .. } | Status::Exited { .. }
                )
            {
                continue;
            }
            let (Some(target), Some(id)) =
                (self.plan.containers[i].awslogs.clone(), self.ids[i].clone())
            else {
                continue;
            };
            let stream =
                target.stream_name(&self.plan.containers[i].name, &self.plan.task_id, &id.0);
            self.shipping[i] = true;
            tokio::spawn(
                shipper
                    .clone()
                    .follow(self.runtime.clone(), id, target, stream),
            );
        }
    }

    pub async fn run(mut self) {
        let arn = self.plan.task_arn.clone();
        tracing::info!(task = %arn, "supervising task");
        loop {
            if let Err(e) = self.observe().await {
                // The runtime is away (daemon restarting): keep what we know, try again later.
                tracing::warn!(task = %arn, "cannot observe containers: {e}");
                self.wait().await;
                continue;
            }
            self.ship_logs();
            let desired = self.desired.borrow().clone();
            let snapshot = Snapshot {
                plan: &self.plan,
                stopping: desired.stop || self.failure.is_some(),
                pulled: self.pulled,
                volumes_ready: self.volumes_ready,
                holder: self.holder,
                containers: &self.status,
            };
            let actions = supervisor::next_actions(&snapshot);
            if actions.is_empty() {
                self.publish();
                self.wait().await;
                continue;
            }
            for action in actions {
                tracing::debug!(task = %arn, ?action, "acting");
                if let Err(e) = self.act(action).await {
                    tracing::warn!(task = %arn, "runtime unavailable: {e}");
                    self.wait().await;
                    break;
                }
            }
            self.publish();
            if self.done {
                if let Some(m) = &self.metadata {
                    m.remove(&self.plan.task_arn);
                }
                self.finished.store(true, Ordering::SeqCst);
                tracing::info!(task = %arn, "task stopped");
                return;
            }
        }
    }

    /// Until the server changes its mind or the next tick, whichever comes first.
    async fn wait(&mut self) {
        tokio::select! {
            r = self.desired.changed() => {
                if r.is_err() {
                    // The agent dropped the handle (shutting down): idle until aborted.
                    std::future::pending::<()>().await;
                }
            }
            _ = tokio::time::sleep(self.tick) => {}
        }
    }

    async fn observe(&mut self) -> Result<(), RuntimeError> {
        for i in 0..self.ids.len() {
            let Some(id) = self.ids[i].clone() else {
                continue;
            };
            match self.runtime.inspect(&id).await {
                Ok(st) => {
                    if st.oom_killed && self.reasons[i].is_none() {
                        self.reasons[i] =
                            Some("OutOfMemoryError: Container killed due to memory usage".into());
                    }
                    self.status[i] = status_of(&st);
                    self.seen[i] = Some(st);
                }
                Err(RuntimeError::NotFound(_)) => {
                    // Removed behind our back (or by the cleanup): keep its last exit, if any.
                    self.status[i] = match self.status[i] {
                        s @ Status::Exited { .. } => s,
                        Status::Running { .. } => Status::Exited { exit_code: None },
                        Status::Absent | Status::Created => Status::Absent,
                    };
                    if self.status[i] == Status::Absent {
                        self.ids[i] = None;
                    }
                }
                Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                Err(e) => tracing::warn!(container = %id, "inspect: {e}"),
            }
        }
        if let Some(id) = self.holder_id.clone() {
            match self.runtime.inspect(&id).await {
                Ok(st) => self.holder = status_of(&st),
                Err(RuntimeError::NotFound(_)) => {
                    if matches!(self.holder, Status::Running { .. }) {
                        self.holder = Status::Exited { exit_code: None };
                    } else if self.holder == Status::Created {
                        self.holder = Status::Absent;
                        self.holder_id = None;
                    }
                }
                Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                Err(e) => tracing::warn!(container = %id, "inspect: {e}"),
            }
        }
        Ok(())
    }

    /// Does one action. `Err` only when the runtime is unavailable (retry later); every other
    /// failure becomes the task's failure.
    async fn act(&mut self, action: Action) -> Result<(), RuntimeError> {
        match action {
            Action::Pull => self.pull().await,
            Action::CreateVolumes => {
                for v in self.plan.volumes.clone() {
                    match self.runtime.create_volume(&v.spec).await {
                        Ok(()) => {}
                        Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                        Err(e) => {
                            self.fail_to_start(
                                None,
                                format!("CannotCreateVolumeError: {}", e.reason()),
                            );
                            return Ok(());
                        }
                    }
                }
                self.volumes_ready = true;
                Ok(())
            }
            Action::CreateHolder => {
                let Some(spec) = self.plan.holder.clone() else {
                    return Ok(());
                };
                match self
                    .create(&spec, crate::translate::HOLDER_CONTAINER_NAME)
                    .await
                {
                    Ok(id) => {
                        self.holder_id = Some(id);
                        self.holder = Status::Created;
                    }
                    Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                    Err(e) => self.fail_to_start(
                        None,
                        format!(
                            "CannotCreateContainerError: network namespace holder: {}",
                            e.reason()
                        ),
                    ),
                }
                Ok(())
            }
            Action::StartHolder => {
                let Some(id) = self.holder_id.clone() else {
                    return Ok(());
                };
                match self.runtime.start(&id).await {
                    Ok(()) => self.holder = Status::Running { health: None },
                    Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                    Err(e) => self.fail_to_start(
                        None,
                        format!(
                            "CannotStartContainerError: network namespace holder: {}",
                            e.reason()
                        ),
                    ),
                }
                Ok(())
            }
            Action::Create(i) => {
                let spec = self.plan.containers[i].spec.clone();
                let name = self.plan.containers[i].name.clone();
                match self.create(&spec, &name).await {
                    Ok(id) => {
                        self.ids[i] = Some(id);
                        self.status[i] = Status::Created;
                    }
                    Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                    Err(e) => self.fail_to_start(
                        Some(i),
                        format!("CannotCreateContainerError: {}", e.reason()),
                    ),
                }
                Ok(())
            }
            Action::Start(i) => {
                let Some(id) = self.ids[i].clone() else {
                    return Ok(());
                };
                match self.runtime.start(&id).await {
                    Ok(()) => self.status[i] = Status::Running { health: None },
                    Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                    Err(e) => self.fail_to_start(
                        Some(i),
                        format!("CannotStartContainerError: {}", e.reason()),
                    ),
                }
                Ok(())
            }
            Action::Stop(list) => {
                let stops = list.into_iter().filter_map(|i| {
                    let id = self.ids[i].clone()?;
                    let timeout = self.plan.containers[i].stop_timeout;
                    let runtime = self.runtime.clone();
                    Some(async move { (id.clone(), runtime.stop(&id, timeout).await) })
                });
                for (id, r) in futures_util::future::join_all(stops).await {
                    match r {
                        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                        Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                        Err(e) => tracing::warn!(container = %id, "stop: {e}"),
                    }
                }
                Ok(())
            }
            Action::StopHolder => {
                if let Some(id) = self.holder_id.clone() {
                    // It only sleeps: no grace period needed.
                    match self.runtime.stop(&id, Duration::from_secs(1)).await {
                        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                        Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                        Err(e) => tracing::warn!(container = %id, "stop: {e}"),
                    }
                }
                Ok(())
            }
            Action::Fail(f) => {
                tracing::info!(task = %self.plan.task_arn, reason = %f.reason, "task fails");
                if let Some((i, reason)) = &f.container {
                    self.reasons[*i].get_or_insert_with(|| reason.clone());
                }
                self.failure = Some(f);
                Ok(())
            }
            Action::Finish => {
                self.done = true;
                let finished = self
                    .seen
                    .iter()
                    .flatten()
                    .filter_map(|s| s.finished_at)
                    .max();
                self.execution_stopped_at = Some(finished.unwrap_or_else(now_millis));
                Ok(())
            }
        }
    }

    /// The task's registry credentials and secrets, when it needs any: a container names
    /// `secrets` or `repositoryCredentials`, or an image names a registry host (which may be
    /// the server's own registry; the server knows).
    async fn credentials(&self) -> Credentials {
        let needed = self
            .plan
            .containers
            .iter()
            .any(|c| c.needs_secrets || api::registry_host(&c.spec.image).is_some());
        let Some(server) = self.server.as_ref().filter(|_| needed) else {
            return Credentials::Got(api::CredentialsResponse::default());
        };
        let Some(identity) = server.identity.borrow().clone() else {
            return Credentials::Later("the node is not registered yet".into());
        };
        let req = api::CredentialsRequest {
            instance_id: identity.instance_id.clone(),
            task_arn: self.plan.task_arn.clone(),
        };
        match server.client.credentials(&identity.node_token, &req).await {
            Ok(c) => Credentials::Got(c),
            Err(ClientError::Refused { code, message, .. })
                if code == "ResourceInitializationError" =>
            {
                Credentials::Refused(format!("{code}: {message}"))
            }
            // The server no longer places the task here (it will say so in the next poll), or
            // predates this endpoint: pull as an anonymous client would.
            Err(ClientError::Refused { status: 404, .. }) => {
                Credentials::Got(api::CredentialsResponse::default())
            }
            Err(e) => Credentials::Later(e.to_string()),
        }
    }

    async fn pull(&mut self) -> Result<(), RuntimeError> {
        self.pull_started_at.get_or_insert_with(now_millis);
        let logins = match self.credentials().await {
            Credentials::Got(c) => self.apply_secrets(c),
            Credentials::Later(why) => {
                tracing::warn!(task = %self.plan.task_arn, "cannot get the task's credentials yet: {why}");
                self.wait().await;
                return Ok(());
            }
            Credentials::Refused(reason) => {
                self.pull_stopped_at = Some(now_millis());
                self.fail_to_start(None, reason);
                return Ok(());
            }
        };
        let mut images: Vec<String> = self
            .plan
            .containers
            .iter()
            .map(|c| c.spec.image.clone())
            .collect();
        if let Some(h) = &self.plan.holder {
            images.push(h.image.clone());
        }
        images.dedup();
        for image in images {
            if self.pull_behavior == PullBehavior::PreferCached
                && let Some(found) = self.runtime.image(&image).await?
            {
                self.note_digest(&image, found.digest);
                continue;
            }
            let auth = logins.get(&normalize_reference(&image)).cloned();
            match self.pulls.pull(&self.runtime, &image, auth).await {
                Ok(r) => self.note_digest(&image, r.digest),
                Err(e @ RuntimeError::Unavailable(_)) => return Err(e),
                Err(e) => {
                    // ECS's default behaviour: a failed pull falls back to a cached image.
                    if self.pull_behavior != PullBehavior::Always
                        && let Some(found) = self.runtime.image(&image).await?
                    {
                        tracing::info!(%image, "pull failed ({e}); using the cached image");
                        self.note_digest(&image, found.digest);
                        continue;
                    }
                    let reason = format!("CannotPullContainerError: {}", e.reason());
                    let is_holder = self.plan.holder.as_ref().is_some_and(|h| h.image == image);
                    for (i, c) in self.plan.containers.iter().enumerate() {
                        if normalize_reference(&c.spec.image) == normalize_reference(&image) {
                            self.reasons[i].get_or_insert_with(|| reason.clone());
                        }
                    }
                    self.pull_stopped_at = Some(now_millis());
                    self.failure = Some(Failure {
                        code: StopCode::TaskFailedToStart,
                        reason: if is_holder {
                            format!("{reason} (network namespace holder image)")
                        } else {
                            reason
                        },
                        container: None,
                    });
                    return Ok(());
                }
            }
        }
        self.pull_stopped_at = Some(now_millis());
        self.pulled = true;
        Ok(())
    }

    /// Puts the resolved secrets into the containers' environments (a secret wins over a plain
    /// variable of the same name) and returns the registry login of each image.
    fn apply_secrets(&mut self, got: api::CredentialsResponse) -> BTreeMap<String, RegistryAuth> {
        let mut logins = BTreeMap::new();
        for c in got.containers {
            let Some(i) = self.plan.index_of(&c.name) else {
                continue;
            };
            let spec = &mut self.plan.containers[i].spec;
            for s in c.secrets {
                match spec.env.iter_mut().find(|(k, _)| *k == s.name) {
                    Some((_, v)) => *v = s.value,
                    None => spec.env.push((s.name, s.value)),
                }
            }
            if let Some(r) = c.registry {
                logins
                    .entry(normalize_reference(&spec.image))
                    .or_insert(RegistryAuth {
                        username: r.username,
                        password: r.password,
                        server: r.server,
                    });
            }
        }
        logins
    }

    fn note_digest(&mut self, image: &str, digest: Option<String>) {
        if let Some(d) = digest {
            self.digests.insert(image.to_string(), d);
        }
    }

    /// Creates a container, or finds the one an earlier attempt made (its name is
    /// deterministic), so a create is never done twice.
    async fn create(
        &self,
        spec: &berth_runtime::ContainerSpec,
        container_name: &str,
    ) -> Result<ContainerId, RuntimeError> {
        match self.runtime.create(spec).await {
            Err(RuntimeError::Conflict(msg)) => {
                let found = self
                    .runtime
                    .list(&[
                        (labels::TASK_ARN, self.plan.task_arn.as_str()),
                        (labels::CONTAINER_NAME, container_name),
                    ])
                    .await?;
                found
                    .into_iter()
                    .find(|c| c.name.trim_start_matches('/') == spec.name)
                    .map(|c| c.id)
                    .ok_or(RuntimeError::Conflict(msg))
            }
            other => other,
        }
    }

    fn fail_to_start(&mut self, container: Option<usize>, reason: String) {
        tracing::warn!(task = %self.plan.task_arn, "{reason}");
        if let Some(i) = container {
            self.reasons[i].get_or_insert_with(|| reason.clone());
        }
        self.failure.get_or_insert(Failure {
            code: StopCode::TaskFailedToStart,
            reason,
            container: None,
        });
    }

    /// Hands the task's current state to the reporter when it changed.
    fn publish(&mut self) {
        let status = task_status(&self.plan, &self.status, self.done);
        if status == "RUNNING" && self.started_at.is_none() {
            // Started when the last essential container started, as ECS counts it; from the
            // runtime's record, so an agent restart reports the same time.
            let started = self
                .plan
                .containers
                .iter()
                .zip(&self.seen)
                .filter(|(c, _)| c.essential)
                .filter_map(|(_, s)| s.as_ref().and_then(|s| s.started_at))
                .max();
            self.started_at = Some(started.unwrap_or_else(now_millis));
        }
        let desired = self.desired.borrow().clone();
        if let Some(m) = &self.metadata {
            m.update(&crate::metadata::Observed {
                plan: &self.plan,
                ids: &self.ids,
                status: &self.status,
                seen: &self.seen,
                done: self.done,
                desired_stop: desired.stop,
                task_status: status,
                pull_started_at: self.pull_started_at,
                pull_stopped_at: self.pull_stopped_at,
                execution_stopped_at: self.execution_stopped_at,
            });
        }
        let (stop_code, stopped_reason) = match (&self.failure, desired.stop) {
            (Some(f), _) => (Some(f.code.as_str().to_string()), Some(f.reason.clone())),
            (None, true) => (None, desired.reason.clone()),
            (None, false) => (None, None),
        };
        let containers = self
            .plan
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let seen = self.seen[i].as_ref();
                ApiContainer {
                    name: c.name.clone(),
                    runtime_id: self.ids[i].as_ref().map(|id| id.0.clone()),
                    status: container_status(self.status[i], self.done).into(),
                    exit_code: match self.status[i] {
                        Status::Exited { exit_code } => {
                            exit_code.and_then(|c| i32::try_from(c).ok())
                        }
                        _ => None,
                    },
                    reason: self.reasons[i].clone(),
                    network_bindings: seen
                        .map(|s| {
                            s.host_ports
                                .iter()
                                .map(|p| NetworkBinding {
                                    bind_ip: p.host_ip.clone(),
                                    container_port: p.container_port,
                                    host_port: p.host_port,
                                    protocol: p.protocol.as_str().into(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    health_status: Some(
                        container_health(self.status[i], c.spec.health_check.is_some()).into(),
                    ),
                    image_digest: self.digests.get(&c.spec.image).cloned(),
                }
            })
            .collect();
        let state = TaskState {
            task_arn: self.plan.task_arn.clone(),
            status: status.into(),
            containers,
            stop_code,
            stopped_reason: if self.done || self.failure.is_some() {
                stopped_reason
            } else {
                None
            },
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            started_at: self.started_at,
            execution_stopped_at: self.execution_stopped_at,
            health_status: Some(task_health(&self.plan, &self.status).into()),
        };
        if self.last.as_ref() != Some(&state) {
            self.reports.set(state.clone());
            self.last = Some(state);
        }
    }
}

fn status_of(st: &ContainerState) -> Status {
    match st.status {
        ContainerStatus::Created => Status::Created,
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting => {
            Status::Running { health: st.health }
        }
        ContainerStatus::Exited | ContainerStatus::Dead => Status::Exited {
            exit_code: st.exit_code,
        },
        ContainerStatus::Removing | ContainerStatus::Unknown => {
            if st.started_at.is_some() {
                Status::Exited {
                    exit_code: st.exit_code,
                }
            } else {
                Status::Created
            }
        }
    }
}

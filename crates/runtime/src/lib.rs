//! berth's container runtime layer: one [`Runtime`] the node agent drives, dispatching to the
//! Docker Engine ([`DockerRuntime`], through bollard) or to an in-memory recording fake
//! ([`FakeRuntime`]) for tests and fleet simulation.
//!
//! **API Boundary:** callers see berth's own types ([`ContainerSpec`], [`ContainerState`], ...)
//! and [`RuntimeError`]; no Engine API shape leaves this crate, except [`Runtime::raw_stats`]:
//! the engine's stats document as JSON, which ECS's task metadata endpoint serves as it is.
//!
//! **Architecture Invariant:** both drivers validate a spec with [`ContainerSpec::validate`]
//! before acting, so anything the fake accepts, Docker is asked for in the same form.

mod docker;
mod error;
mod fake;
mod observe;
mod reference;
mod spec;

use std::time::Duration;

pub use docker::DockerRuntime;
pub use error::RuntimeError;
pub use fake::{Call, FakeOp, FakeRuntime};
pub use observe::{
    ContainerEvent, ContainerId, ContainerState, ContainerStatus, ContainerSummary, EventKind,
    Health, ImageRef, LogChunk, LogStream, LogsRequest, NodeInfo, PortBinding, StatsSample,
};
pub use reference::normalize_reference;
pub use spec::{
    ContainerSpec, HealthCheck, LogConfig, Mount, NetworkMode, PortMapping, Protocol, RegistryAuth,
    Ulimit, VolumeSpec,
};

/// A stream of results that owns everything it needs (it may outlive the call that made it).
pub type RuntimeStream<T> = futures_util::stream::BoxStream<'static, Result<T, RuntimeError>>;

/// A container runtime. Cheap to clone: each variant holds its state behind an `Arc`.
#[derive(Clone)]
pub enum Runtime {
    Docker(DockerRuntime),
    Fake(FakeRuntime),
}

/// Calls the same method on whichever driver this is.
macro_rules! dispatch {
    ($self:ident, $rt:ident => $call:expr) => {
        match $self {
            Runtime::Docker($rt) => $call,
            Runtime::Fake($rt) => $call,
        }
    };
}

impl Runtime {
    /// The node's CPU, memory, OS, architecture and runtime versions.
    pub async fn info(&self) -> Result<NodeInfo, RuntimeError> {
        dispatch!(self, rt => rt.info().await)
    }

    /// Pulls `image` (a tag-less reference means `:latest`), streaming the daemon's progress to
    /// completion. A failure of the pull itself is [`RuntimeError::Pull`].
    pub async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageRef, RuntimeError> {
        dispatch!(self, rt => rt.pull(image, auth).await)
    }

    /// The local image `reference` names, if present.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageRef>, RuntimeError> {
        dispatch!(self, rt => rt.image(reference).await)
    }

    /// Creates (does not start) a container.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        dispatch!(self, rt => rt.create(spec).await)
    }

    /// Starts a created or exited container; starting a running one is a no-op.
    pub async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        dispatch!(self, rt => rt.start(id).await)
    }

    /// Sends SIGTERM (or the image's stop signal), then SIGKILL once `timeout` has passed.
    /// Stopping a container that is not running is a no-op.
    pub async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<(), RuntimeError> {
        dispatch!(self, rt => rt.stop(id, timeout).await)
    }

    /// Sends `signal` (`SIGKILL`, `TERM`, `9`, ...). A container that is not running is
    /// [`RuntimeError::Conflict`].
    pub async fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RuntimeError> {
        dispatch!(self, rt => rt.kill(id, signal).await)
    }

    /// Removes a container, killing it first if it runs, with its anonymous volumes.
    pub async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        dispatch!(self, rt => rt.remove(id).await)
    }

    /// The container's current state.
    pub async fn inspect(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        dispatch!(self, rt => rt.inspect(id).await)
    }

    /// Every container (running or not) carrying all of `labels`, for re-adopting containers
    /// after an agent restart.
    pub async fn list(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        dispatch!(self, rt => rt.list(labels).await)
    }

    /// Container lifecycle events from now on (create, start, die, oom, health, destroy). The
    /// stream ends if the runtime goes away; the caller re-lists and re-subscribes.
    pub fn events(&self) -> RuntimeStream<ContainerEvent> {
        dispatch!(self, rt => rt.events())
    }

    /// The container's output. A missing container is an `Err(NotFound)` item.
    pub fn logs(&self, id: &ContainerId, request: LogsRequest) -> RuntimeStream<LogChunk> {
        dispatch!(self, rt => rt.logs(id, request))
    }

    /// One resource-usage sample.
    pub async fn stats(&self, id: &ContainerId) -> Result<StatsSample, RuntimeError> {
        dispatch!(self, rt => rt.stats(id).await)
    }

    /// One stats document of the container exactly as the engine's stats API shapes it
    /// (`read`, `cpu_stats`, `precpu_stats`, `memory_stats`, `networks`, …), what ECS's task
    /// metadata `/stats` serves. Unlike [`Runtime::stats`] it may take the engine's one-second
    /// wait for a second sample.
    pub async fn raw_stats(&self, id: &ContainerId) -> Result<serde_json::Value, RuntimeError> {
        dispatch!(self, rt => rt.raw_stats(id).await)
    }

    /// The host's address on the default bridge network (Docker's `bridge` IPAM gateway,
    /// usually 172.17.0.1): where bridge-mode containers reach the host. `None` when the
    /// runtime has no such network.
    pub async fn bridge_gateway(&self) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        dispatch!(self, rt => rt.bridge_gateway().await)
    }

    /// Creates a named volume; creating one that exists is a no-op.
    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        dispatch!(self, rt => rt.create_volume(spec).await)
    }

    /// Removes a named volume; a volume still in use is [`RuntimeError::Conflict`].
    pub async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        dispatch!(self, rt => rt.remove_volume(name).await)
    }
}

impl From<DockerRuntime> for Runtime {
    fn from(d: DockerRuntime) -> Self {
        Runtime::Docker(d)
    }
}

impl From<FakeRuntime> for Runtime {
    fn from(f: FakeRuntime) -> Self {
        Runtime::Fake(f)
    }
}

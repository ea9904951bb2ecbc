//! The Docker Engine driver: berth's runtime calls made through bollard over the local socket,
//! with the API version negotiated (Debian's dockerd 20.10 speaks 1.41; Docker 29 refuses
//! clients below 1.44, so a fixed version would fail on one or the other).

mod map;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};

use crate::reference::{normalize_reference, split_reference};
use crate::{
    ContainerEvent, ContainerId, ContainerSpec, ContainerState, ContainerSummary, ImageRef,
    LogChunk, LogsRequest, NodeInfo, RegistryAuth, RuntimeError, RuntimeStream, StatsSample,
    VolumeSpec,
};

/// Slack added to the HTTP timeout of a stop call so the daemon's own SIGTERM→SIGKILL wait
/// always finishes before the client gives up.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// A connection to one Docker Engine. Clones share the connection pool.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Docker>,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`) and negotiates
    /// the API version. An engine that does not answer is [`RuntimeError::Unavailable`].
    pub async fn connect() -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(unavailable)?;
        DockerRuntime::negotiate(docker).await
    }

    /// Connects to the engine at a unix socket path.
    pub async fn connect_socket(path: &str) -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            .map_err(unavailable)?;
        DockerRuntime::negotiate(docker).await
    }

    async fn negotiate(docker: Docker) -> Result<DockerRuntime, RuntimeError> {
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        Ok(DockerRuntime {
            inner: Arc::new(docker),
        })
    }

    /// The API version in use (`1.41`).
    pub fn api_version(&self) -> String {
        let v = self.inner.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    pub async fn info(&self) -> Result<NodeInfo, RuntimeError> {
        let info = self.inner.info().await.map_err(classify)?;
        Ok(NodeInfo {
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_mib: info
                .mem_total
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0)
                / (1024 * 1024),
            os_type: info.os_type.unwrap_or_else(|| "linux".into()),
            arch: map::ecs_arch(info.architecture.as_deref().unwrap_or_default()),
            runtime_version: info.server_version.unwrap_or_default(),
            api_version: self.api_version(),
        })
    }

    pub async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageRef, RuntimeError> {
        let reference = normalize_reference(image);
        let (repo, tag) = split_reference(&reference);
        let options = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let credentials = auth.map(|a| bollard::auth::DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let mut progress = self.inner.create_image(Some(options), None, credentials);
        // The pull only finishes when its progress stream does; errors can arrive mid-stream.
        while let Some(item) = progress.next().await {
            if let Err(e) = item {
                return Err(pull_error(e));
            }
        }
        match self.image(&reference).await? {
            Some(found) => Ok(found),
            None => Err(RuntimeError::Pull(format!(
                "{reference}: image not present after pull"
            ))),
        }
    }

    pub async fn image(&self, reference: &str) -> Result<Option<ImageRef>, RuntimeError> {
        let reference = normalize_reference(reference);
        match self.inner.inspect_image(&reference).await {
            Ok(img) => {
                let (repo, _) = split_reference(&reference);
                Ok(Some(ImageRef {
                    id: img.id.unwrap_or_default(),
                    digest: map::repo_digest(repo, img.repo_digests.as_deref().unwrap_or(&[])),
                }))
            }
            Err(e) => match classify(e) {
                RuntimeError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Imports a root filesystem tar as image `reference` (the Engine API's image create from
    /// source `-`, what `docker import` does). This is how tests make images on a machine
    /// with no registry access.
    pub async fn import_image<S>(&self, reference: &str, tar: S) -> Result<ImageRef, RuntimeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let reference = normalize_reference(reference);
        let (repo, tag) = split_reference(&reference);
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut progress =
            self.inner
                .create_image(Some(options), Some(bollard::body_try_stream(tar)), None);
        while let Some(item) = progress.next().await {
            item.map_err(classify)?;
        }
        self.image(&reference).await?.ok_or_else(|| {
            RuntimeError::Other(format!("{reference}: image not present after import"))
        })
    }

    pub async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        spec.validate()?;
        let body = map::create_body(spec);
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .inner
            .create_container(Some(options), body)
            .await
            .map_err(classify)?;
        Ok(ContainerId(created.id))
    }

    pub async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.inner
            .start_container(target(id.as_str())?, None)
            .await
            .map_err(classify)
    }

    pub async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<(), RuntimeError> {
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(secs).build();
        // The default request timeout (2 minutes) would cut a long grace period short.
        let client = (*self.inner)
            .clone()
            .with_timeout(timeout.saturating_add(STOP_SLACK));
        client
            .stop_container(target(id.as_str())?, Some(options))
            .await
            .map_err(classify)
    }

    pub async fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.inner
            .kill_container(target(id.as_str())?, Some(options))
            .await
            .map_err(classify)
    }

    pub async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        self.inner
            .remove_container(target(id.as_str())?, Some(options))
            .await
            .map_err(classify)
    }

    pub async fn inspect(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        let resp = self
            .inner
            .inspect_container(target(id.as_str())?, None)
            .await
            .map_err(classify)?;
        Ok(map::container_state(resp))
    }

    pub async fn list(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let mut filters: HashMap<&str, Vec<String>> = HashMap::new();
        if !labels.is_empty() {
            filters.insert(
                "label",
                labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            );
        }
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .inner
            .list_containers(Some(options))
            .await
            .map_err(classify)?;
        Ok(found.into_iter().map(map::summary).collect())
    }

    pub fn events(&self) -> RuntimeStream<ContainerEvent> {
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([
            ("type", vec!["container"]),
            (
                "event",
                vec!["create", "start", "die", "oom", "health_status", "destroy"],
            ),
        ]);
        // The request is only sent when the stream is first polled; `since` pins "from now" to
        // this call, so an event between the call and the first poll is not lost.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
            .unwrap_or_default();
        let mut options = EventsOptionsBuilder::default().filters(&filters);
        if !since.is_empty() {
            options = options.since(&since);
        }
        let options = options.build();
        self.inner
            .events(Some(options))
            .map_err(classify)
            // Events this crate does not model are dropped rather than surfaced as errors.
            .try_filter_map(|e| async move { Ok(map::event(e)) })
            .boxed()
    }

    pub fn logs(&self, id: &ContainerId, request: LogsRequest) -> RuntimeStream<LogChunk> {
        let id = match target(id.as_str()) {
            Ok(id) => id,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        let mut options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(request.follow);
        if let Some(ms) = request.since_millis {
            // The API takes whole seconds; the exact cut is made below from each line's stamp.
            options = options.since(i32::try_from(ms.div_euclid(1000)).unwrap_or(i32::MAX));
        }
        let since = request.since_millis;
        self.inner
            .logs(id, Some(options.build()))
            .map_err(classify)
            .try_filter_map(move |out| async move {
                Ok(map::log_chunk(out).filter(|c| since.is_none_or(|s| c.timestamp_millis >= s)))
            })
            .boxed()
    }

    pub async fn stats(&self, id: &ContainerId) -> Result<StatsSample, RuntimeError> {
        // `one-shot` (API 1.41+) skips the daemon's one-second wait for a second (pre-)sample:
        // the caller computes rates from consecutive samples itself. Older engines would take
        // the parameter as unknown, so it is only sent when the API speaks it.
        let v = self.inner.client_version();
        let one_shot = (v.major_version, v.minor_version) >= (1, 41);
        let options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(one_shot)
            .build();
        let mut samples = self.inner.stats(target(id.as_str())?, Some(options));
        match samples.next().await {
            Some(Ok(s)) => Ok(map::stats(s)),
            Some(Err(e)) => Err(classify(e)),
            None => Err(RuntimeError::Other(format!("no stats for {id}"))),
        }
    }

    pub async fn raw_stats(&self, id: &ContainerId) -> Result<serde_json::Value, RuntimeError> {
        // Not one-shot: the daemon then waits for a second sample and fills `precpu_stats`, so
        // a reader of this one document can compute a CPU rate, as with ECS's `/stats`.
        let options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(false)
            .build();
        let mut samples = self.inner.stats(target(id.as_str())?, Some(options));
        match samples.next().await {
            Some(Ok(s)) => serde_json::to_value(s)
                .map_err(|e| RuntimeError::Other(format!("stats of {id}: {e}"))),
            Some(Err(e)) => Err(classify(e)),
            None => Err(RuntimeError::Other(format!("no stats for {id}"))),
        }
    }

    pub async fn bridge_gateway(&self) -> Result<Option<IpAddr>, RuntimeError> {
        let network = match self.inner.inspect_network("bridge", None).await {
            Ok(n) => n,
            Err(e) => {
                return match classify(e) {
                    RuntimeError::NotFound(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        Ok(network
            .ipam
            .and_then(|ipam| ipam.config)
            .into_iter()
            .flatten()
            .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
            .find(IpAddr::is_ipv4))
    }

    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let body = bollard::models::VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: Some(spec.driver_opts.clone().into_iter().collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.inner
            .create_volume(body)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveVolumeOptionsBuilder::default().build();
        self.inner
            .remove_volume(target(name)?, Some(options))
            .await
            .map_err(classify)
    }
}

/// The path segment for a container or volume, refusing anything that is not an id or a name
/// (it is pasted into the request path).
fn target(name: &str) -> Result<&str, RuntimeError> {
    if crate::spec::valid_reference(name) {
        Ok(name)
    } else {
        Err(RuntimeError::NotFound(format!("no such object: {name:?}")))
    }
}

/// Sorts a bollard error into what the agent acts on: HTTP status for daemon answers,
/// transport failures as an unreachable daemon.
fn classify(e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => RuntimeError::NotFound(message),
            409 => RuntimeError::Conflict(message),
            400 => RuntimeError::Invalid(message),
            _ => RuntimeError::Other(message),
        },
        BollardError::DockerStreamError { error } => RuntimeError::Other(error),
        e @ (BollardError::SocketNotFoundError(_)
        | BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::RequestTimeoutError) => unavailable(e),
        other => RuntimeError::Other(other.to_string()),
    }
}

fn unavailable(e: BollardError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}

/// A pull that the daemon answered but could not complete is a pull failure, whatever the
/// HTTP status (a missing repository is a 404, an unreachable registry a 500); only an
/// unreachable daemon stays [`RuntimeError::Unavailable`].
fn pull_error(e: BollardError) -> RuntimeError {
    match classify(e) {
        RuntimeError::Unavailable(m) => RuntimeError::Unavailable(m),
        other => RuntimeError::Pull(other.reason().to_owned()),
    }
}

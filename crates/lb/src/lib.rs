//! The Application Load Balancer data plane: it reads the ELBv2 records the API writes
//! (`berth_elbv2::records`) and serves traffic — one bound TCP listener per ELBv2 listener port,
//! an HTTP/1.1 and HTTP/2 (h2c) reverse proxy with ALB's rules, actions, algorithms, headers,
//! limits and status codes, active health checks, draining, and request metrics.
//!
//! Modules: `matching` (rule conditions), `redirect`, `balance` (algorithms) and `health` (the
//! health state machine) are pure; `table` compiles records into the immutable routing table;
//! `serve` is the worker threads, accepting and client connections; `proxy` is the request
//! path; `upstream` is each worker's pool of target connections;
//! `checker` probes targets and writes their health; `metrics` counts; this file watches the
//! store and keeps the sockets.
//!
//! **Architecture Invariant:** the request path reads one immutable table (an `ArcSwap` load)
//! and never the store; a new table is swapped in whole after every ELBv2 change (change feed,
//! plus a periodic resync). The data plane writes only `elbv2.target-health`, under
//! `Expect::Version` of that record, and only when what DescribeTargetHealth shows changes.
//!
//! **API Boundary:** [`DataPlane`] (`new`, `run`, `take_metrics`, `bound`, `serving`) and the
//! [`InstanceAddresses`] resolver the server provides; knows nothing of awsQuery or the API's
//! handlers.

mod balance;
mod checker;
mod health;
mod matching;
mod metrics;
mod proxy;
mod redirect;
mod serve;
mod table;
mod upstream;

pub use metrics::LbMetric;

use arc_swap::ArcSwap;
use berth_model::clock::Clock;
use berth_store::{AnyStore, Store};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use table::Table;

/// Where `instance` targets live: an EC2-style instance id → an address of its host.
pub trait InstanceAddresses: Send + Sync {
    fn address(&self, partition: &str, instance_id: &str) -> Option<IpAddr>;
}

/// Knows no instance: every `instance` target is unreachable.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInstances;

impl InstanceAddresses for NoInstances {
    fn address(&self, _: &str, _: &str) -> Option<IpAddr> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The address every listener binds (ports come from the listeners).
    pub bind: IpAddr,
    /// How long a target may take to answer when the load balancer sets no
    /// `idle_timeout.timeout_seconds` (ALB's default: 60 s); also how long a client may take to
    /// send a request's headers.
    pub idle_timeout: Duration,
    /// Partitions (`account/region`) to serve from the start; others join as their ELBv2
    /// records change.
    pub partitions: Vec<String>,
    /// The periodic full re-read that backs up the change feed.
    pub resync: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: IpAddr::from([127, 0, 0, 1]),
            idle_timeout: table::DEFAULT_IDLE_TIMEOUT,
            partitions: Vec::new(),
            resync: Duration::from_secs(5),
        }
    }
}

/// The data plane. Cheap to clone; [`DataPlane::run`] does the work.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    options: Options,
    instances: Arc<dyn InstanceAddresses>,
    clock: Clock,
    table: Arc<ArcSwap<Table>>,
    lives: table::Lives,
    metrics: metrics::Registry,
    /// The threads that serve traffic, each with its own pool of target connections: started
    /// with the first listener, so a server without one runs none.
    workers: OnceLock<Arc<serve::Workers>>,
    /// Ports bound now, and the address each really got.
    bound: Mutex<HashMap<u16, SocketAddr>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("options", &self.inner.options)
            .finish()
    }
}

impl DataPlane {
    pub fn new(
        store: AnyStore,
        options: Options,
        instances: Arc<dyn InstanceAddresses>,
        clock: Clock,
    ) -> DataPlane {
        DataPlane {
            inner: Arc::new(Inner {
                store,
                options,
                instances,
                clock,
                table: Arc::new(ArcSwap::from_pointee(Table::default())),
                lives: table::Lives::default(),
                metrics: metrics::Registry::default(),
                workers: OnceLock::new(),
                bound: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Every counter's change since the last call, then reset.
    pub fn take_metrics(&self) -> Vec<LbMetric> {
        self.inner.metrics.take()
    }

    /// How many targets of each target group the listeners forward to are healthy, by
    /// (partition, `TargetGroup` dimension): what `RequestCountPerTarget` divides by.
    pub fn healthy_targets(&self) -> HashMap<(String, String), usize> {
        let table = self.inner.table.load();
        let mut out = HashMap::new();
        for listener in table.ports.values() {
            let actions = listener
                .rules
                .iter()
                .map(|r| &r.action)
                .chain(std::iter::once(&listener.default_action));
            for action in actions {
                let table::Action::Forward(forwards) = action else {
                    continue;
                };
                for f in forwards {
                    let healthy = f
                        .group
                        .targets
                        .iter()
                        .filter(|t| !t.draining && t.live.state() == health::State::Healthy)
                        .count();
                    out.insert(
                        (listener.partition.clone(), f.group.dimension.clone()),
                        healthy,
                    );
                }
            }
        }
        out
    }

    /// The worker threads, started on first use (the first listener).
    fn workers(&self) -> std::io::Result<Arc<serve::Workers>> {
        if let Some(w) = self.inner.workers.get() {
            return Ok(w.clone());
        }
        let started = serve::Workers::start()?;
        // Only the watch task starts workers, so nothing raced this.
        Ok(self.inner.workers.get_or_init(|| started).clone())
    }

    /// Whether the worker threads have started (they start with the first listener).
    pub fn serving(&self) -> bool {
        self.inner.workers.get().is_some()
    }

    /// The ports bound now and their addresses.
    pub fn bound(&self) -> HashMap<u16, SocketAddr> {
        self.inner.bound.lock().clone()
    }

    /// Watches the store, keeps the listeners and runs the health checker until dropped
    /// (aborting the task closes every socket and connection).
    pub async fn run(&self) {
        let checker = checker::run(
            self.inner.store.clone(),
            self.inner.table.clone(),
            self.inner.clock.clone(),
        );
        tokio::join!(self.watch(), checker);
    }

    /// Partitions that hold ELBv2 records, as far as the retained change history tells.
    async fn discover(&self, partitions: &mut BTreeSet<String>) {
        let mut after = 0;
        loop {
            match self.inner.store.changes_since(after, 10_000).await {
                Ok(changes) if !changes.is_empty() => {
                    after = changes.last().map(|c| c.revision).unwrap_or(after);
                    for c in changes {
                        if c.kind.starts_with("elbv2.") {
                            partitions.insert(c.partition);
                        }
                    }
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("load balancer: cannot read the change history: {e}");
                    return;
                }
            }
        }
    }

    async fn rebuild(&self, partitions: &BTreeSet<String>) -> bool {
        let mut all = Vec::with_capacity(partitions.len());
        for p in partitions {
            match table::load(&self.inner.store, p).await {
                Ok(r) => all.push(r),
                Err(e) => {
                    tracing::warn!(partition = %p, "load balancer: cannot read ELBv2 records: {e}");
                    return false;
                }
            }
        }
        let table = table::build(
            &all,
            (self.inner.clock)(),
            self.inner.options.idle_timeout,
            &self.inner.lives,
            &self.inner.metrics,
            self.inner.instances.as_ref(),
        );
        self.inner.table.store(Arc::new(table));
        true
    }

    /// Cuts the remaining requests of targets whose deregistration delay ended.
    fn cut_drained(&self) {
        let now = (self.inner.clock)();
        for t in &self.inner.table.load().targets {
            if t.drain_deadline_ms.is_some_and(|d| d <= now) {
                t.live
                    .drained
                    .send_if_modified(|d| !std::mem::replace(d, true));
            }
        }
    }

    async fn watch(&self) {
        use tokio::sync::broadcast::error::RecvError;
        let mut feed = self.inner.store.subscribe();
        let mut partitions: BTreeSet<String> =
            self.inner.options.partitions.iter().cloned().collect();
        self.discover(&mut partitions).await;
        let mut sockets = Sockets::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = tokio::time::Instant::now();
        let mut dirty = true;
        loop {
            if dirty || last_full.elapsed() >= self.inner.options.resync {
                if self.rebuild(&partitions).await {
                    last_full = tokio::time::Instant::now();
                    dirty = false;
                }
                sockets.sync(self).await;
            }
            self.cut_drained();
            tokio::select! {
                _ = tick.tick() => {}
                change = feed.recv() => match change {
                    // Other kinds (instances an `instance` target names) wait for the resync.
                    Ok(c) if c.kind.starts_with("elbv2.") => {
                        partitions.insert(c.partition);
                        // Take the rest of a burst in the same rebuild.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        while let Ok(c) = feed.try_recv() {
                            if c.kind.starts_with("elbv2.") {
                                partitions.insert(c.partition);
                            }
                        }
                        dirty = true;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        self.discover(&mut partitions).await;
                        dirty = true;
                    }
                    Err(RecvError::Closed) => {
                        // No feed: the periodic resync carries on alone.
                        std::future::pending::<()>().await;
                    }
                },
            }
        }
    }
}

/// The listening sockets: one accept loop per port and worker, each owning its connections, so aborting
/// it (a deleted listener, or the data plane dropped) closes the socket and its connections.
#[derive(Default)]
struct Sockets {
    open: HashMap<u16, Vec<tokio::task::JoinHandle<()>>>,
    /// The last bind error per port, so a port in use is logged once, not every resync.
    failed: HashMap<u16, String>,
    conflicts: BTreeSet<String>,
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for h in self.open.drain().flat_map(|(_, hs)| hs) {
            h.abort();
        }
    }
}

impl Sockets {
    async fn sync(&mut self, plane: &DataPlane) {
        let table = plane.inner.table.load_full();
        for (arn, port, winner) in &table.conflicts {
            if self.conflicts.insert(arn.clone()) {
                tracing::warn!(
                    "load balancer: listener {arn} cannot take port {port}: listener {winner} has it"
                );
            }
        }
        let gone: Vec<u16> = self
            .open
            .keys()
            .filter(|p| !table.ports.contains_key(p))
            .copied()
            .collect();
        for port in gone {
            for h in self.open.remove(&port).into_iter().flatten() {
                h.abort();
            }
            plane.inner.bound.lock().remove(&port);
        }
        self.failed.retain(|p, _| table.ports.contains_key(p));
        for &port in table.ports.keys() {
            if self.open.contains_key(&port) {
                continue;
            }
            let workers = match plane.workers() {
                Ok(w) => w,
                Err(e) => {
                    let reason = format!("cannot start its worker threads: {e}");
                    if self.failed.get(&port) != Some(&reason) {
                        tracing::warn!("load balancer: port {port}: {reason}");
                        self.failed.insert(port, reason);
                    }
                    continue;
                }
            };
            let addr = SocketAddr::new(plane.inner.options.bind, port);
            // One socket, a descriptor of it per worker: every worker accepts from the same
            // queue, and the port stays exclusively ours (`SO_REUSEPORT` would let another
            // process share it silently).
            let sockets: std::io::Result<Vec<std::net::TcpListener>> =
                bind(addr).and_then(|socket| {
                    let mut all = (1..workers.threads.len())
                        .map(|_| socket.try_clone())
                        .collect::<std::io::Result<Vec<_>>>()?;
                    all.push(socket);
                    Ok(all)
                });
            match sockets {
                Ok(sockets) => {
                    self.failed.remove(&port);
                    let local = sockets
                        .first()
                        .and_then(|s| s.local_addr().ok())
                        .unwrap_or(addr);
                    plane.inner.bound.lock().insert(port, local);
                    tracing::info!("load balancer: listening on {local}");
                    let tasks = sockets
                        .into_iter()
                        .enumerate()
                        .map(|(i, socket)| {
                            let at = serve::Listening {
                                workers: workers.clone(),
                                worker: i,
                                port,
                                table: plane.inner.table.clone(),
                                idle_timeout: plane.inner.options.idle_timeout,
                            };
                            workers.threads[i].runtime.spawn(serve::accept(at, socket))
                        })
                        .collect();
                    self.open.insert(port, tasks);
                }
                Err(e) => {
                    let reason = e.to_string();
                    if self.failed.get(&port) != Some(&reason) {
                        tracing::warn!("load balancer: cannot listen on {addr}: {reason}");
                        self.failed.insert(port, reason);
                    }
                }
            }
        }
    }
}

/// A listening socket, bound here (so errors are reported where they happen), then handed to
/// the workers' runtimes as a std socket.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A listener re-created right after its deletion finds its port in TIME_WAIT otherwise.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)?.into_std()
}

//! The worker threads and what they do with a client connection: accept it (balanced between
//! workers), serve its requests with hyper, and close it once it has been idle too long.
//!
//! Worker threads run under `SCHED_BATCH` (see [`batch_scheduling`]). Two more choices come
//! from profiling the benchmark's tail (`bench/lb/README.md`):
//! - Workers share each listening socket's queue, and a worker that is awake would otherwise
//!   accept every connection that is waiting (a burst of 64 went 100/0 or 84/16 between two
//!   workers), so the busier worker's clients wait whenever the kernel runs something else.
//!   A worker that just took a connection and now holds more than another leaves the waiting
//!   ones to it for a moment (all workers are woken for them), then takes what is left.
//! - hyper's `header_read_timeout` arms a timer (a boxed sleep and a timer-wheel entry) for
//!   every request; one timer per connection, re-armed twice per idle timeout, does the same
//!   job: a connection with no request in flight that started or finished no request for an
//!   idle timeout — idle, or a slowloris client that never finishes its headers — is closed.

use crate::proxy;
use crate::table::Table;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::Either;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::JoinSet;

/// How long a worker with more connections than another leaves a waiting connection to it
/// before taking it anyway (the other worker may be descheduled).
const LEAVE_FOR: Duration = Duration::from_millis(1);

/// One thread serving traffic on a single-threaded runtime, like an nginx worker: every worker
/// accepts on every listener, and a connection, its requests and the target connections they
/// use all stay on one thread, so a request crosses no thread and wakes no other one. Target
/// connections are pooled per worker for the same reason.
pub struct Worker {
    pub runtime: tokio::runtime::Handle,
    pub upstream: Arc<crate::upstream::Pool>,
}

impl Worker {
    fn start(index: usize) -> std::io::Result<Worker> {
        // Sockets and timers only: with `enable_all`, every park of the worker (one per one to
        // three requests under load) also ran the process driver's orphan reaping and the
        // signal driver, which nothing on a worker uses (`bench/lb/README.md`, session 7).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("berth-lb-{index}"))
            // The runtime lives as long as the process: `run` aborting its tasks is what
            // closes sockets.
            .spawn(move || {
                crate::metrics::set_worker(index);
                batch_scheduling();
                runtime.block_on(std::future::pending::<()>())
            })?;
        let upstream = Arc::new(crate::upstream::Pool::default());
        handle.spawn(crate::upstream::Pool::sweep_forever(Arc::downgrade(
            &upstream,
        )));
        Ok(Worker {
            runtime: handle,
            upstream,
        })
    }
}

/// Puts the calling worker thread under `SCHED_BATCH`, unless its niceness was changed (then
/// whoever changed it chose how it is scheduled).
///
/// On a machine whose cores the load balancer shares with its clients and targets (the
/// benchmark's wrk and backend on 2 cores), a worker under the default policy is woken, and
/// preempts whatever runs, for every event or two: it parks (`epoll_wait`) whenever its run
/// queue is empty, which is after every request or so, and every wake-up and switch is paid in
/// kernel time and in the preempted peer's. Under `SCHED_BATCH` a waking worker does not
/// preempt, so events gather while the peers finish their turn and the worker serves them in one
/// go: measured 37–43k against 25–32k req/s for the same binary under the default policy,
/// 6.5–7.8 against 10.4–12.8 µs of user CPU per request, and a p99 of 5–13 against 7–29 ms
/// (`bench/lb/README.md`, session 7). nginx under `SCHED_BATCH` measured no different. Where a
/// core is idle, a woken worker runs at once under either policy.
#[cfg(target_os = "linux")]
fn batch_scheduling() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    if niceness() != Some(0) {
        return;
    }
    // For the normal policies the crate also sets a niceness, mapped from 0..=99 onto 19..=-20:
    // 48 is niceness 0, unchanged (checked by the test below).
    let set = ThreadPriorityValue::try_from(48u8).map(|unchanged| {
        thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            ThreadPriority::Crossplatform(unchanged),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
        )
    });
    if let Ok(Err(e)) = set {
        tracing::debug!("load balancer: worker stays under the default scheduling policy: {e:?}");
    }
}

#[cfg(not(target_os = "linux"))]
fn batch_scheduling() {}

/// The calling thread's niceness (`/proc/thread-self/stat`, field 19).
#[cfg(target_os = "linux")]
fn niceness() -> Option<i32> {
    thread_stat_field(19)
}

/// Field `n` (1-based, as `proc(5)` numbers them) of the calling thread's
/// `/proc/thread-self/stat`, from field 3 on.
#[cfg(target_os = "linux")]
fn thread_stat_field(n: usize) -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its closing `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// A worker's count of open client connections, alone on its cache line: each worker writes
/// its own, and reads the others' only when a connection is waiting.
#[repr(align(64))]
#[derive(Default)]
struct OpenCount(AtomicUsize);

/// The worker threads (one per core) and how many client connections each holds.
pub struct Workers {
    pub threads: Vec<Worker>,
    open: Vec<OpenCount>,
}

impl Workers {
    /// One worker per core (at least one that started).
    pub fn start() -> std::io::Result<Arc<Workers>> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::with_capacity(count);
        let mut last_error = None;
        for i in 0..count {
            match Worker::start(i) {
                Ok(w) => threads.push(w),
                Err(e) => last_error = Some(e),
            }
        }
        if threads.is_empty() {
            return Err(last_error.unwrap_or_else(|| std::io::Error::other("no worker")));
        }
        let open = threads.iter().map(|_| OpenCount::default()).collect();
        Ok(Arc::new(Workers { threads, open }))
    }

    /// Whether another worker holds fewer connections than `worker` by more than an eighth:
    /// then it should take the next one.
    fn ahead(&self, worker: usize) -> bool {
        let mine = self.open[worker].0.load(Ordering::Relaxed);
        self.open
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != worker)
            .map(|(_, c)| c.0.load(Ordering::Relaxed))
            .min()
            .is_some_and(|least| mine > least + least / 8)
    }
}

/// Counts a client connection as open on its worker while it lives.
struct Open {
    workers: Arc<Workers>,
    worker: usize,
}

impl Open {
    fn new(workers: &Arc<Workers>, worker: usize) -> Open {
        workers.open[worker].0.fetch_add(1, Ordering::Relaxed);
        Open {
            workers: workers.clone(),
            worker,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.workers.open[self.worker]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the idle check reads of a connection: requests in flight, and how many requests
/// started or ended so far (any change is activity).
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    events: AtomicU64,
}

/// A request in flight on a connection, from its head to the end (or abandonment) of its
/// response body.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> InFlight {
        shared.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.activity.events.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.activity.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until hyper has written it.
pub struct Served {
    body: proxy::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Served {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// hyper's per-connection settings: ALB's header limits. The header-read timeout is the idle
/// check's job (see the module's documentation).
/// The two ways a client connection is served: HTTP/1.1 or HTTP/2 by what the client sends,
/// or HTTP/1.1 alone when its load balancer's `routing.http2.enabled` is false. Two builders,
/// because `auto`'s own `http1_only` does not apply to connections served with upgrades.
struct Protocols {
    auto: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
}

fn server() -> Protocols {
    let mut auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .header_read_timeout(None)
        .max_buf_size(proxy::MAX_HEADERS + proxy::MAX_LINE)
        .keep_alive(true);
    auto.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(proxy::MAX_HEADERS).unwrap_or(u32::MAX));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .header_read_timeout(None)
        .max_buf_size(proxy::MAX_HEADERS + proxy::MAX_LINE)
        .keep_alive(true);
    Protocols { auto, http1 }
}

/// What `accept` needs of the data plane.
pub struct Listening {
    pub workers: Arc<Workers>,
    pub worker: usize,
    pub port: u16,
    pub table: Arc<ArcSwap<Table>>,
    pub idle_timeout: Duration,
}

/// Accepts and serves the connections of one listening socket on one worker, until aborted
/// (which closes the socket and every connection it accepted).
pub async fn accept(at: Listening, socket: std::net::TcpListener) {
    let port = at.port;
    let listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(port, "load balancer: cannot serve a socket: {e}");
            return;
        }
    };
    let protocols = Arc::new(server());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(port, "load balancer: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let open = Open::new(&at.workers, at.worker);
                let shared = Arc::new(Shared {
                    table: at.table.clone(),
                    ctx: proxy::Ctx::new(at.workers.threads[at.worker].upstream.clone(), port, remote),
                    activity: Activity::default(),
                    default_idle_timeout: at.idle_timeout,
                });
                // As its load balancer's `routing.http2.enabled` is when it is accepted.
                let http2 = at
                    .table
                    .load()
                    .ports
                    .get(&port)
                    .is_none_or(|l| l.balancer.http2);
                connections.spawn(serve(protocols.clone(), http2, stream, shared, open));
                // Ahead of another worker: leave it the connections waiting now (every
                // worker was woken for them), and take them only if it does not.
                if at.workers.ahead(at.worker) {
                    tokio::time::sleep(LEAVE_FOR).await;
                }
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// What every request of a connection shares, made once per connection: cloning it per
/// request touches only this worker's memory.
struct Shared {
    table: Arc<ArcSwap<Table>>,
    ctx: proxy::Ctx,
    activity: Activity,
    default_idle_timeout: Duration,
}

impl Shared {
    /// The load balancer's own idle timeout, as the table has it now.
    fn idle_timeout(&self) -> Duration {
        self.table
            .load()
            .ports
            .get(&self.ctx.local_port)
            .map_or(self.default_idle_timeout, |l| l.balancer.idle_timeout)
            // A zero timeout would re-check without pause.
            .max(Duration::from_millis(100))
    }
}

/// Serves one client connection until it ends or has been idle for its load balancer's idle
/// timeout (`idle_timeout.timeout_seconds`, else the server's default).
// Everything is passed behind `Arc`s: this future is stored whole in the connection's task,
// and 10,000 idle connections hold 10,000 of them (`bench/lb`: RSS).
async fn serve(
    protocols: Arc<Protocols>,
    http2: bool,
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    _open: Open,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move {
                let in_flight = InFlight::new(&shared);
                let listener = shared
                    .table
                    .load()
                    .ports
                    .get(&shared.ctx.local_port)
                    .cloned();
                let response = proxy::handle(&shared.ctx, listener, req).await;
                Ok::<_, std::convert::Infallible>(response.map(|body| Served {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let io = TokioIo::new(stream);
    // `Either`, not a box: the connection stays inline in this task's future.
    let connection = if http2 {
        Either::Left(async move {
            let _ = protocols
                .auto
                .serve_connection_with_upgrades(io, service)
                .await;
        })
    } else {
        Either::Right(async move {
            let _ = protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        })
    };
    tokio::pin!(connection);
    // Checked twice per idle timeout: a connection is closed once two checks in a row found it
    // with nothing in flight and nothing started or ended, i.e. after between one and one and a
    // half idle timeouts of idleness.
    let check = tokio::time::sleep(shared.idle_timeout() / 2);
    tokio::pin!(check);
    let mut last_events = 0;
    let mut idle_checks = 0;
    loop {
        tokio::select! {
            _ = &mut connection => return,
            _ = &mut check => {
                let activity = &shared.activity;
                let events = activity.events.load(Ordering::Relaxed);
                if events != last_events || activity.in_flight.load(Ordering::Relaxed) > 0 {
                    last_events = events;
                    idle_checks = 0;
                } else {
                    idle_checks += 1;
                    if idle_checks >= 2 {
                        return;
                    }
                }
                check
                    .as_mut()
                    .reset(tokio::time::Instant::now() + shared.idle_timeout() / 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(counts: &[usize]) -> Workers {
        Workers {
            threads: Vec::new(),
            open: counts
                .iter()
                .map(|&n| OpenCount(AtomicUsize::new(n)))
                .collect(),
        }
    }

    /// The calling thread's scheduling policy (`/proc/thread-self/stat`, field 41).
    #[cfg(target_os = "linux")]
    fn policy() -> Option<i32> {
        thread_stat_field(41)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_thread_is_batch_scheduled_and_keeps_its_niceness() {
        std::thread::spawn(|| {
            assert_eq!(policy(), Some(0), "SCHED_OTHER before");
            let nice = niceness();
            batch_scheduling();
            assert_eq!(niceness(), nice);
            if nice == Some(0) {
                assert_eq!(policy(), Some(3), "SCHED_BATCH after");
            } else {
                assert_eq!(policy(), Some(0), "left alone under niceness {nice:?}");
            }
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_worker_is_ahead_when_another_holds_clearly_fewer_connections() {
        assert!(!holding(&[0, 0]).ahead(0));
        assert!(holding(&[1, 0]).ahead(0));
        assert!(!holding(&[1, 0]).ahead(1));
        // Within an eighth of the least loaded: close enough.
        assert!(!holding(&[36, 32]).ahead(0));
        assert!(holding(&[37, 32]).ahead(0));
        assert!(holding(&[5, 9, 2]).ahead(1));
        assert!(!holding(&[5, 9, 2]).ahead(2));
        // Alone, a worker takes everything.
        assert!(!holding(&[100]).ahead(0));
    }
}

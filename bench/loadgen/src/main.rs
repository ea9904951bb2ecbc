//! berth-loadgen: the load generator of berth's benchmarks (`bench/foundation.sh`). It owns three
//! measurements and prints each as one line of `key=value` pairs for the driver script:
//!
//! - `startup`: spawns a server, polls a signed `ListClusters` until it answers 200, reports the
//!   time from spawn to that answer, then the server's VmRSS after a second of idling. The server
//!   is left running (the driver owns its lifetime and kills it by pid).
//! - `call`: sends one signed request and prints the answer (seeding, smoke checks).
//! - `load`: N keep-alive connections, each sending signed requests back to back for a fixed
//!   time; reports requests/s and latency percentiles over the 2xx answers.
//! - `upload`: one OCI blob upload (POST + PUT) with the body sent by `sendfile(2)`, for the
//!   registry benchmark (`bench/registry`, `upload.rs`).
//!
//! Every request carries a real SigV4 signature from `aws-sigv4` (the SDK's signer). By default
//! each request is signed on its own (`--sign each`); `--sign per-second` reuses one signature
//! per connection for the same wall-clock second, which servers accept because a signature stays
//! valid for the clock-skew window.

use anyhow::{Context, Result, anyhow, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;

mod upload;

#[derive(Parser)]
#[command(
    name = "berth-loadgen",
    about = "Signed awsJson load for berth's benchmarks."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Spawn a server (the arguments after `--`), time it to its first 200, then read idle RSS.
    Startup(StartupArgs),
    /// Send one signed request and print the status and body.
    Call(CallArgs),
    /// Drive one operation from many connections and report rps and latency percentiles.
    Load(LoadArgs),
    /// Upload one blob to an OCI registry (POST + PUT), the body sent with sendfile.
    Upload(upload::UploadArgs),
}

/// Where to send, as whom, and what.
#[derive(Args, Clone)]
struct Target {
    /// Server address, `host:port` on loopback.
    #[arg(long)]
    addr: SocketAddr,
    /// berth's identity.json (root key); read when it appears, for servers that make their key
    /// on first start.
    #[arg(long)]
    identity: Option<PathBuf>,
    #[arg(long, default_value = "AKIDBENCHMARK0000000")]
    access_key: String,
    #[arg(long, default_value = "benchmark/secret/key/benchmark/secret/key")]
    secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// SigV4 signing name.
    #[arg(long, default_value = "ecs")]
    service: String,
    /// `X-Amz-Target` prefix; the operation name is appended after a dot. Empty: no header.
    #[arg(long, default_value = "AmazonEC2ContainerServiceV20141113")]
    target_prefix: String,
    #[arg(long, default_value = "application/x-amz-json-1.1")]
    content_type: String,
    /// Operation name (the X-Amz-Target suffix).
    #[arg(long, default_value = "ListClusters")]
    op: String,
    /// Request body.
    #[arg(long, default_value = "{}")]
    body: String,
}

#[derive(Args)]
struct StartupArgs {
    #[command(flatten)]
    target: Target,
    /// File for the server's stdout and stderr.
    #[arg(long, default_value = "/dev/null")]
    log: PathBuf,
    /// Give up after this long without a 200.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Idle time between the first answer and the RSS reading.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    idle: Duration,
    /// The server command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct CallArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignMode {
    /// A fresh signature for every request.
    Each,
    /// One signature per connection per wall-clock second.
    PerSecond,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before measuring starts (answers during warm-up are not counted).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Stop after this many measured requests in total, if reached before `--duration`.
    #[arg(long)]
    max_requests: Option<u64>,
    #[arg(long, value_enum, default_value_t = SignMode::Each)]
    sign: SignMode,
    /// Worker threads of the generator's runtime. One leaves the other core of a 2-core
    /// machine to the server.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Load(a) => a.threads.max(1),
        _ => 1,
    };
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Startup(a) => startup(a).await,
            Command::Call(a) => call(a).await,
            Command::Load(a) => load(a).await,
            // Blocking std I/O on the runtime's only thread, which does nothing else.
            Command::Upload(a) => upload::upload(a),
        }
    })
}

/// The signing key pair, from flags or from berth's identity.json.
#[derive(Clone)]
struct Creds {
    access_key: String,
    secret_key: String,
}

fn read_identity(path: &PathBuf) -> Option<Creds> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let root = v.get("root")?;
    Some(Creds {
        access_key: root.get("access_key_id")?.as_str()?.to_owned(),
        secret_key: root.get("secret_access_key")?.as_str()?.to_owned(),
    })
}

impl Target {
    fn creds(&self) -> Option<Creds> {
        match &self.identity {
            Some(path) => read_identity(path),
            None => Some(Creds {
                access_key: self.access_key.clone(),
                secret_key: self.secret_key.clone(),
            }),
        }
    }

    /// A signed request, ready for hyper, signed as of `time`.
    fn signed(
        &self,
        creds: &Creds,
        body: &Bytes,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>> {
        let host = self.addr.to_string();
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("host", &host)
            .header("content-type", &self.content_type)
            .header("content-length", body.len().to_string())
            .header("user-agent", "berth-loadgen");
        if !self.target_prefix.is_empty() {
            builder = builder.header(
                "x-amz-target",
                format!("{}.{}", self.target_prefix, self.op),
            );
        }
        let mut req = builder.body(Full::new(body.clone()))?;

        let identity: Identity =
            Credentials::new(&creds.access_key, &creds.secret_key, None, None, "bench").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()?
            .into();
        let headers: Vec<(&str, &str)> = req
            .headers()
            .iter()
            .map(|(k, v)| Ok((k.as_str(), v.to_str()?)))
            .collect::<Result<_>>()?;
        let signable =
            SignableRequest::new("POST", "/", headers.into_iter(), SignableBody::Bytes(body))?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        Ok(req)
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on `sender` and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes)> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn call(a: CallArgs) -> Result<()> {
    let t = a.target;
    let creds = t
        .creds()
        .ok_or_else(|| anyhow!("no credentials (identity file unreadable?)"))?;
    let mut sender = connect(t.addr).await.context("connecting")?;
    let body = Bytes::from(t.body.clone());
    let req = t.signed(&creds, &body, SystemTime::now())?;
    let (status, body) = exchange(&mut sender, req).await?;
    println!(
        "status={} body={}",
        status.as_u16(),
        String::from_utf8_lossy(&body)
    );
    if !status.is_success() {
        bail!("{} answered {status}", t.op);
    }
    Ok(())
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn startup(a: StartupArgs) -> Result<()> {
    let t = a.target;
    let log =
        std::fs::File::create(&a.log).with_context(|| format!("creating {}", a.log.display()))?;
    let (program, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow!("no command"))?;
    let body = Bytes::from(t.body.clone());

    let spawned = Instant::now();
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    let pid = child.id();

    let mut attempts = 0u64;
    let first_answer = loop {
        if spawned.elapsed() > a.timeout {
            let _ = child.kill();
            bail!(
                "no 200 from {} within {:?} ({attempts} attempts)",
                t.addr,
                a.timeout
            );
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "server exited with {status} before answering; see {}",
                a.log.display()
            );
        }
        attempts += 1;
        let answered = async {
            let creds = t.creds().ok_or_else(|| anyhow!("no key yet"))?;
            let mut sender = connect(t.addr).await?;
            let req = t.signed(&creds, &body, SystemTime::now())?;
            exchange(&mut sender, req).await
        }
        .await;
        match answered {
            Ok((status, _)) if status.is_success() => break spawned.elapsed(),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };

    tokio::time::sleep(a.idle).await;
    let rss = vm_rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status"))?;
    println!(
        "pid={pid} startup_ms={:.1} rss_kib={rss} attempts={attempts}",
        first_answer.as_secs_f64() * 1000.0
    );
    // The driver kills the server by pid; dropping `child` leaves it running.
    drop(child);
    Ok(())
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    transport_errors: u64,
    reconnects: u64,
}

async fn load(a: LoadArgs) -> Result<()> {
    let t = Arc::new(a.target);
    let creds = t
        .creds()
        .ok_or_else(|| anyhow!("no credentials (identity file unreadable?)"))?;
    // One request first, so a misconfigured run fails loudly instead of measuring errors.
    {
        let mut sender = connect(t.addr).await.context("connecting")?;
        let body = Bytes::from(t.body.clone());
        let (status, resp) =
            exchange(&mut sender, t.signed(&creds, &body, SystemTime::now())?).await?;
        if !status.is_success() {
            bail!(
                "{} answered {status}: {}",
                t.op,
                String::from_utf8_lossy(&resp)
            );
        }
    }

    let start = Instant::now();
    let measure_from = start + a.warmup;
    let end = measure_from + a.duration;
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(
        a.max_requests.unwrap_or(u64::MAX),
    ));
    let mut workers = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let t = t.clone();
        let creds = creds.clone();
        let budget = budget.clone();
        let sign_mode = a.sign;
        workers.push(tokio::spawn(async move {
            let body = Bytes::from(t.body.clone());
            let mut tally = Tally::default();
            let mut sender: Option<SendRequest<Full<Bytes>>> = None;
            let mut cached: Option<(u64, http::Request<Full<Bytes>>)> = None;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let measuring = now >= measure_from;
                if measuring
                    && budget
                        .fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        )
                        .is_err()
                {
                    break;
                }
                let t0 = Instant::now();
                let wall = SystemTime::now();
                let req = match sign_mode {
                    SignMode::Each => t.signed(&creds, &body, wall),
                    SignMode::PerSecond => {
                        let second = wall
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        match &cached {
                            Some((s, r)) if *s == second => Ok(clone_request(r)),
                            _ => t.signed(&creds, &body, wall).inspect(|r| {
                                cached = Some((second, clone_request(r)));
                            }),
                        }
                    }
                };
                let Ok(req) = req else {
                    tally.transport_errors += 1;
                    continue;
                };
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    match connect(t.addr).await {
                        Ok(s) => {
                            tally.reconnects += 1;
                            sender = Some(s);
                        }
                        Err(_) => {
                            tally.transport_errors += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                match exchange(s, req).await {
                    Ok((status, _)) if measuring => {
                        if status.is_success() {
                            let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            tally.latencies_us.push(us);
                        } else {
                            tally.non_2xx += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tally.transport_errors += 1;
                        sender = None;
                    }
                }
            }
            tally
        }));
    }

    let mut all = Tally::default();
    for w in workers {
        let t = w.await?;
        all.latencies_us.extend(t.latencies_us);
        all.non_2xx += t.non_2xx;
        all.transport_errors += t.transport_errors;
        all.reconnects += t.reconnects;
    }
    // Measured time ends when the last worker stops (earlier if --max-requests ran out).
    let measured = Instant::now().saturating_duration_since(measure_from);
    let ok = all.latencies_us.len() as u64;
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (all.latencies_us.len() - 1) as f64).round() as usize;
        all.latencies_us[i] as f64 / 1000.0
    };
    println!(
        "op={} ok={ok} rps={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} non_2xx={} transport_errors={} connections={} new_connections={} seconds={:.2} sign={}",
        t.op,
        ok as f64 / measured.as_secs_f64(),
        pct(50.0),
        pct(99.0),
        pct(100.0),
        all.non_2xx,
        all.transport_errors,
        a.connections,
        all.reconnects,
        measured.as_secs_f64(),
        match a.sign {
            SignMode::Each => "each-request",
            SignMode::PerSecond => "per-connection-per-second",
        },
    );
    Ok(())
}

/// A copy of a signed request (the body is a cheap `Bytes` clone).
fn clone_request(r: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut out = http::Request::new(r.body().clone());
    *out.method_mut() = r.method().clone();
    *out.uri_mut() = r.uri().clone();
    *out.headers_mut() = r.headers().clone();
    out
}

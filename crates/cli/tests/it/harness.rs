//! The test harness: starts a real `berth` process on a free port in a fresh data directory and
//! talks to it the ways users do — raw HTTP, SigV4-signed raw HTTP, the `aws` CLI, boto3 and the
//! AWS SDK for Rust — plus the recursive "request ⊆ response" JSON comparison.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The awsJson target prefix of ECS.
pub const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// How long berth may take to print its ready line. Generous: CI machines are slow and busy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory under the system temp dir, removed when the last handle goes.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Arc<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("berth-it-{tag}-{}-{n}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Arc::new(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Sigv4,
    Open,
}

/// How to start berth. The default: SigV4, `--allow-reset`, a free port, a fresh directory.
#[derive(Debug, Clone)]
pub struct Opts {
    pub auth: Auth,
    pub allow_reset: bool,
    pub listen: String,
    pub dir: Option<Arc<TempDir>>,
    /// `berth server` (no in-process agent) instead of `berth up`.
    pub server_only: bool,
    /// More command-line flags, e.g. `--lb-idle-timeout-secs 2`.
    pub args: Vec<String>,
    /// Soft and hard limits on open files berth starts with (set by util-linux's `prlimit`,
    /// which then execs berth, so the pid is berth's).
    pub open_file_limit: Option<(u64, u64)>,
    /// Environment variables berth gets beyond the test process's own.
    pub env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            auth: Auth::Sigv4,
            allow_reset: true,
            listen: "127.0.0.1:0".into(),
            dir: None,
            server_only: false,
            args: Vec::new(),
            open_file_limit: None,
            env: Vec::new(),
        }
    }
}

impl Opts {
    pub fn open() -> Self {
        Opts {
            auth: Auth::Open,
            ..Opts::default()
        }
    }

    pub fn without_reset(mut self) -> Self {
        self.allow_reset = false;
        self
    }

    /// Reuse a data directory (and AWS config directory) of an earlier berth.
    pub fn in_dir(mut self, dir: Arc<TempDir>) -> Self {
        self.dir = Some(dir);
        self
    }

    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Start `berth server`: the control plane alone, for tests that run `berth agent` apart.
    pub fn server_only(mut self) -> Self {
        self.server_only = true;
        self
    }

    /// One more command-line flag (or its value).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// One more environment variable for berth.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Start berth with these soft and hard limits on open files.
    pub fn open_file_limit(mut self, soft: u64, hard: u64) -> Self {
        self.open_file_limit = Some((soft, hard));
        self
    }
}

/// An access key pair and the account it belongs to.
#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
}

impl Keys {
    pub fn other(access_key_id: &str, secret_access_key: &str) -> Keys {
        Keys {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            account_id: String::new(),
        }
    }
}

/// A running `berth up` (or `berth server`). Dropping it kills the process (SIGKILL).
pub struct Berth {
    child: Mutex<Option<Child>>,
    pub pid: u32,
    pub addr: SocketAddr,
    pub endpoint: String,
    /// The root key from `identity.json`.
    pub keys: Keys,
    pub dir: Arc<TempDir>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Berth {
    pub fn start(opts: Opts) -> Berth {
        let dir = opts.dir.clone().unwrap_or_else(|| TempDir::new("berth"));
        let data_dir = dir.path().join("data");
        let aws_dir = dir.path().join("aws");
        let mut cmd = match opts.open_file_limit {
            None => Command::new(env!("CARGO_BIN_EXE_berth")),
            Some((soft, hard)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_berth"));
                c
            }
        };
        cmd.arg(if opts.server_only { "server" } else { "up" })
            .arg("--listen")
            .arg(&opts.listen)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--aws-config-dir")
            .arg(&aws_dir)
            .arg("--auth")
            .arg(match opts.auth {
                Auth::Sigv4 => "sigv4",
                Auth::Open => "open",
            });
        if opts.allow_reset {
            cmd.arg("--allow-reset");
        }
        // An ephemeral task metadata port, so berths of parallel tests do not contend for one.
        cmd.arg("--metadata-port").arg("0");
        cmd.args(&opts.args);
        // A known join token, so suites can act as an agent (the conformance waiters do).
        cmd.arg("--join-token")
            .arg(berth_conformance::profile::AGENT_JOIN_TOKEN);
        // Only the command line configures the server under test.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn berth");
        let pid = child.id();

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = child.stdout.take().expect("stdout is piped");
            let lines = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("lock").push(line.clone());
                    let _ = tx.send(line);
                }
            });
            let mut err = child.stderr.take().expect("stderr is piped");
            let text = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let addr: SocketAddr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("serving every API on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        break addr.parse().unwrap_or_else(|e| {
                            panic!("berth printed an address that does not parse ({e}): {line}")
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "berth did not print its ready line (exit: {status:?})\nstdout:\n{}\nstderr:\n{}",
                        stdout.lock().expect("lock").join("\n"),
                        stderr.lock().expect("lock")
                    );
                }
            }
        };
        assert_ne!(
            addr.port(),
            0,
            "berth must report the port it really bound, not the one asked for"
        );

        let identity: Value = serde_json::from_str(
            &std::fs::read_to_string(data_dir.join("identity.json")).expect("identity.json"),
        )
        .expect("identity.json is JSON");
        let root = &identity["root"];
        let keys = Keys {
            access_key_id: root["access_key_id"].as_str().expect("key id").into(),
            secret_access_key: root["secret_access_key"].as_str().expect("secret").into(),
            account_id: root["account_id"].as_str().expect("account").into(),
        };
        Berth {
            child: Mutex::new(Some(child)),
            pid,
            addr,
            endpoint: format!("http://{addr}"),
            keys,
            dir,
            stdout,
            stderr,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn aws_dir(&self) -> PathBuf {
        self.dir.path().join("aws")
    }

    /// Lines berth printed to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. "TERM") with kill(1) and waits up to `timeout` for the exit.
    pub fn signal_and_wait(&self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
        let deadline = Instant::now() + timeout;
        let mut guard = self.child.lock().expect("lock");
        let child = guard.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                guard.take();
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills this berth and starts another on the same directories with `opts`.
    pub fn restart(self, opts: Opts) -> Berth {
        self.kill();
        let dir = self.dir.clone();
        drop(self);
        Berth::start(opts.in_dir(dir))
    }

    // ---- raw HTTP ----

    pub fn get(&self, path: &str) -> Response {
        http(self.addr, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http(self.addr, "POST", path, headers, body)
    }

    /// An ECS call signed with the root key now, in us-east-1.
    pub fn ecs(&self, operation: &str, body: &Value) -> Response {
        self.ecs_raw(operation, body.to_string().as_bytes())
    }

    pub fn ecs_raw(&self, operation: &str, body: &[u8]) -> Response {
        self.ecs_signed(
            &format!("{ECS}.{operation}"),
            body,
            &self.keys,
            SystemTime::now(),
        )
    }

    /// A call with any target and body, signed with `keys` at `time`.
    pub fn ecs_signed(&self, target: &str, body: &[u8], keys: &Keys, time: SystemTime) -> Response {
        let headers = sign(self.addr, keys, "us-east-1", target, body, time);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.post("/", &headers, body)
    }

    /// An ECS call that must succeed; returns its JSON.
    pub fn ecs_ok(&self, operation: &str, body: &Value) -> Value {
        let r = self.ecs(operation, body);
        assert_eq!(
            r.status,
            200,
            "{operation} {body} failed: {} {}",
            r.status,
            r.text()
        );
        assert!(
            r.header("x-amzn-requestid").is_some_and(|v| !v.is_empty()),
            "{operation}: no x-amzn-RequestId"
        );
        r.json()
    }

    // ---- the Rust SDK ----

    pub fn sdk(&self) -> aws_sdk_ecs::Client {
        self.sdk_with("us-east-1", &self.keys)
    }

    pub fn sdk_with(&self, region: &str, keys: &Keys) -> aws_sdk_ecs::Client {
        let creds = aws_credential_types::Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.clone(),
            None,
            None,
            "berth-it",
        );
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_ecs::config::Region::new(region.to_string()))
            .credentials_provider(creds)
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    // ---- the aws CLI and boto3 ----

    /// `aws ARGS` with `AWS_PROFILE=berth` and the profile files berth wrote: no other set-up.
    pub fn aws_profile(&self, args: &[&str]) -> Output {
        let mut cmd = tool("aws");
        cmd.env("AWS_PROFILE", "berth")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.aws_dir().join("credentials"),
            )
            .env("AWS_CONFIG_FILE", self.aws_dir().join("config"))
            .args(args);
        Output::of(cmd)
    }

    /// `aws --endpoint-url … ARGS` with `keys` in the environment and no profile files.
    pub fn aws_explicit(&self, keys: &Keys, args: &[&str]) -> Output {
        let mut cmd = tool("aws");
        self.explicit_env(&mut cmd, keys);
        cmd.arg("--endpoint-url").arg(&self.endpoint).args(args);
        Output::of(cmd)
    }

    /// `python3 -c SCRIPT` with `BERTH_ENDPOINT` and the keys in the environment, for boto3.
    pub fn python(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = tool("python3");
        self.explicit_env(&mut cmd, &self.keys);
        cmd.env("BERTH_ENDPOINT", &self.endpoint)
            .arg("-c")
            .arg(script);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Output::of(cmd)
    }

    fn explicit_env(&self, cmd: &mut Command, keys: &Keys) {
        let nowhere = self.dir.path().join("no-aws-files");
        cmd.env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &keys.secret_access_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"))
            .env("AWS_CONFIG_FILE", nowhere.join("config"));
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `berth agent` process joined to a server. Dropping it kills the process (SIGKILL).
pub struct AgentProcess {
    child: Option<Child>,
    output: Arc<Mutex<String>>,
}

impl AgentProcess {
    /// `berth agent --server ENDPOINT --cluster CLUSTER --token <the harness's join token>
    /// --data-dir DATA_DIR`. Returns at once: callers wait for the instance through the API.
    pub fn start(endpoint: &str, cluster: &str, data_dir: &Path) -> AgentProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("agent")
            .arg("--server")
            .arg(endpoint)
            .arg("--cluster")
            .arg(cluster)
            .arg("--token")
            .arg(berth_conformance::profile::AGENT_JOIN_TOKEN)
            .arg("--data-dir")
            .arg(data_dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn berth agent");
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let text = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        AgentProcess {
            child: Some(child),
            output,
        }
    }

    /// What the agent printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command for an AWS tool with every `AWS_*` variable of the test's own environment removed,
/// so a developer's keys, profile or endpoint never leak into a test.
fn tool(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .env("AWS_PAGER", "")
        .stdin(Stdio::null());
    cmd
}

/// What a subprocess printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn of(mut cmd: Command) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON on stdout of a run that must have succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

// ---- raw HTTP/1.1 ----

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The awsJson error code (`__type`), or "" for a success.
    pub fn error_code(&self) -> String {
        if self.status == 200 {
            return String::new();
        }
        let v = self.json();
        let t = v["__type"].as_str().unwrap_or_default();
        // Some services prefix the code with a namespace and `#`.
        t.rsplit('#').next().unwrap_or_default().to_string()
    }

    pub fn message(&self) -> String {
        let v = self.json();
        v["message"]
            .as_str()
            .or_else(|| v["Message"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = request_head(addr, method, path, headers, body.len(), false);
    try_send(&mut stream, &head, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Like [`http`] but returns an error instead of panicking when the connection fails (for the
/// crash test, whose server dies mid-stream).
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = request_head(addr, method, path, headers, body.len(), false);
    try_send(&mut stream, &head, body)
}

pub fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    len: usize,
    keep_alive: bool,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {len}\r\n"));
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Writes the request (the body from another thread, so a server that answers before reading
/// all of it — as for a body over the limit — does not deadlock us) and reads one response.
pub fn try_send(stream: &mut TcpStream, head: &str, body: &[u8]) -> std::io::Result<Response> {
    stream.write_all(head.as_bytes())?;
    if body.len() <= 64 * 1024 {
        stream.write_all(body)?;
        return read_response(stream);
    }
    let mut writer = stream.try_clone()?;
    let body = body.to_vec();
    let handle = std::thread::spawn(move || {
        // The server may stop reading and close once it has seen enough: not an error here.
        let _ = writer.write_all(&body);
    });
    let r = read_response(stream);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = handle.join();
    r
}

/// Reads one response: status line, headers, then a `content-length` or chunked body.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The headers that sign an awsJson 1.1 request to `addr` with `aws-sigv4`, the signer the Rust
/// SDK uses, so berth's verifier sees what a real client sends.
pub fn sign(
    addr: SocketAddr,
    keys: &Keys,
    region: &str,
    target: &str,
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    sign_for("ecs", addr, keys, region, target, body, time)
}

/// Like [`sign`], with the credential scope naming `service`.
pub fn sign_for(
    service: &str,
    addr: SocketAddr,
    keys: &Keys,
    region: &str,
    target: &str,
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let identity: Identity = aws_credential_types::Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.clone(),
        None,
        None,
        "berth-it",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("x-amz-target".to_string(), target.to_string()),
    ];
    let signable = SignableRequest::new(
        "POST",
        format!("http://{addr}/"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable request");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_string(), value.to_string()));
    }
    headers
}

/// Signs an awsQuery request: `body` is the form, the credential scope names `service`.
pub fn sign_form(
    service: &str,
    addr: SocketAddr,
    keys: &Keys,
    region: &str,
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let identity: Identity = aws_credential_types::Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.clone(),
        None,
        None,
        "berth-it",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let mut headers = vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded; charset=utf-8".to_string(),
    )];
    let signable = SignableRequest::new(
        "POST",
        format!("http://{addr}/"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable request");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_string(), value.to_string()));
    }
    headers
}

// ---- JSON comparison ----

/// Every place where `expected` is not contained in `actual` (objects may have more members, as
/// servers add defaults); the conformance suite's own comparison, so both judge alike.
pub use berth_conformance::check::subset_diffs;

/// Panics with every difference when `expected` is not contained in `actual`.
#[track_caller]
pub fn assert_subset(what: &str, expected: &Value, actual: &Value) {
    let diffs = subset_diffs(expected, actual);
    assert!(
        diffs.is_empty(),
        "{what}: the response does not contain the request:\n  {}\nresponse: {}",
        diffs.join("\n  "),
        serde_json::to_string_pretty(actual).unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::subset_diffs;
    use serde_json::json;

    #[test]
    fn a_value_contains_itself_and_added_members() {
        let e = json!({"a": 1, "b": [{"c": "x"}], "d": {"e": true}, "n": null});
        assert!(subset_diffs(&e, &e).is_empty());
        let a = json!({"a": 1.0, "b": [{"c": "x", "extra": 1}], "d": {"e": true, "f": 2}, "n": null, "z": 0});
        assert!(subset_diffs(&e, &a).is_empty());
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let e =
            json!({"a": 1, "b": [1, 2], "c": {"d": "x"}, "e": "1", "f": [{"g": 1}], "h": false});
        let a = json!({"a": 2, "b": [1], "c": {}, "e": 1, "f": [{"g": 2}], "h": null});
        let diffs = subset_diffs(&e, &a);
        let joined = diffs.join("\n");
        assert_eq!(diffs.len(), 6, "{joined}");
        for p in ["$.a:", "$.b:", "$.c.d:", "$.e:", "$.f[0].g:", "$.h:"] {
            assert!(joined.contains(p), "{p} not reported in\n{joined}");
        }
    }

    #[test]
    fn order_of_array_elements_matters_and_missing_top_level_is_reported() {
        assert_eq!(subset_diffs(&json!([1, 2]), &json!([2, 1])).len(), 2);
        assert_eq!(subset_diffs(&json!({"x": 1}), &json!({})).len(), 1);
        assert_eq!(subset_diffs(&json!({"x": 1}), &json!([])).len(), 1);
        assert_eq!(subset_diffs(&json!({}), &json!({"anything": 1})).len(), 0);
        assert_eq!(subset_diffs(&json!("a"), &json!("b")).len(), 1);
    }
}

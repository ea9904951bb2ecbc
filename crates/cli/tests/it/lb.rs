//! The load balancer's data plane end to end: the real `aws elbv2` CLI builds load balancers,
//! target groups, listeners and rules on `berth up`, and requests through the listener reach
//! loopback backends started here (tiny HTTP/1.1 servers on threads) — routed per rule, with
//! ALB's headers, health as DescribeTargetHealth shows it, draining, and ALB's status codes for
//! bad clients and bad targets.

use crate::elbv2::elbv2_fails;
use crate::harness::{Berth, Opts, Response, read_response, request_head, try_send};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[track_caller]
fn elbv2(berth: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["elbv2"];
    all.extend_from_slice(args);
    let out = berth.aws_explicit(&berth.keys, &all);
    if out.code == 0 && out.stdout.trim().is_empty() {
        return Value::Null;
    }
    out.json()
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// A port nothing listens on right now (bound, read, closed). Tests run in parallel, so each
/// picks its own.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A loopback HTTP/1.1 backend. Every response names the backend and echoes the forwarding
/// headers; `/slow` answers after 3 s, `/hang` never, `/close` closes the connection unanswered, `/ws`
/// upgrades to an echo; `failing` makes every answer a 500.
struct Backend {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl Backend {
    fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let addr = listener.local_addr().expect("addr");
        let failing = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (n, f, c) = (name.to_string(), failing.clone(), served.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (n, f, c) = (n.clone(), f.clone(), c.clone());
                std::thread::spawn(move || serve(stream, &n, &f, &c));
            }
        });
        Backend {
            addr,
            failing,
            served,
        }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

fn serve(stream: TcpStream, name: &str, failing: &AtomicBool, served: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push((k, v.trim().to_string()));
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let is_probe = header("user-agent").starts_with("ELB-HealthChecker");
        if !is_probe {
            served.fetch_add(1, Ordering::SeqCst);
        }
        match path.as_str() {
            "/hang" => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            // Closes without an answer, as a crashing target does.
            "/close" => return,
            "/slow" => std::thread::sleep(Duration::from_secs(3)),
            "/ws" => {
                let _ = out.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
                );
                let mut buf = [0u8; 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                return;
            }
            _ => {}
        }
        let status = if failing.load(Ordering::SeqCst) {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let text = format!(
            "{name} {path}\nxff={}\nproto={}\nport={}\ntrace={}\nhost={}\n",
            header("x-forwarded-for"),
            header("x-forwarded-proto"),
            header("x-forwarded-port"),
            header("x-amzn-trace-id"),
            header("host"),
        );
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// One request through the listener on a fresh connection.
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = request_head(addr, "GET", path, headers, 0, false);
    try_send(&mut stream, &head, b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Retries `check` until it holds (the data plane applies records within a resync).
#[track_caller]
fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The listener answers at all (it is bound once the data plane saw the records).
fn wait_listening(port: u16) {
    eventually("listener bound", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

struct Setup {
    berth: Berth,
    lb_arn: String,
    port: u16,
    listener_arn: String,
}

fn setup(opts: Opts, name: &str, default_action: &str) -> Setup {
    let berth = Berth::start(opts);
    let (lb_arn, port, listener_arn) = listener_on(&berth, name, default_action);
    Setup {
        berth,
        lb_arn,
        port,
        listener_arn,
    }
}

/// A load balancer `name` with an HTTP listener on a free port, serving once this returns:
/// (load balancer ARN, port, listener ARN).
fn listener_on(berth: &Berth, name: &str, default_action: &str) -> (String, u16, String) {
    let lb = elbv2(berth, &["create-load-balancer", "--name", name]);
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    let port = free_port();
    let listener = elbv2(
        berth,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            default_action,
        ],
    );
    let listener_arn = s(&listener["Listeners"][0]["ListenerArn"]);
    wait_listening(port);
    (lb_arn, port, listener_arn)
}

/// A target group of `ip` targets with a fast health check on `/health`.
fn target_group(berth: &Berth, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "create-target-group",
        "--name",
        name,
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--target-type",
        "ip",
        "--health-check-path",
        "/health",
        "--health-check-interval-seconds",
        "5",
        "--health-check-timeout-seconds",
        "2",
        "--healthy-threshold-count",
        "2",
        "--unhealthy-threshold-count",
        "2",
    ];
    args.extend_from_slice(extra);
    s(&elbv2(berth, &args)["TargetGroups"][0]["TargetGroupArn"])
}

fn register(berth: &Berth, tg: &str, ports: &[&str]) {
    let targets: Vec<String> = ports
        .iter()
        .map(|p| format!("Id=127.0.0.1,Port={p}"))
        .collect();
    let mut args = vec!["register-targets", "--target-group-arn", tg, "--targets"];
    args.extend(targets.iter().map(String::as_str));
    elbv2(berth, &args);
}

/// `port → (state, reason, description)` from DescribeTargetHealth.
fn health(berth: &Berth, tg: &str) -> Vec<(String, String, String, String)> {
    let v = elbv2(berth, &["describe-target-health", "--target-group-arn", tg]);
    let mut out: Vec<(String, String, String, String)> = v["TargetHealthDescriptions"]
        .as_array()
        .expect("descriptions")
        .iter()
        .map(|d| {
            let h = &d["TargetHealth"];
            (
                d["Target"]["Port"].to_string(),
                h["State"].as_str().unwrap_or_default().to_string(),
                h["Reason"].as_str().unwrap_or_default().to_string(),
                h["Description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn forward_to(tg: &str) -> String {
    format!("Type=forward,TargetGroupArn={tg}")
}

fn rule(berth: &Berth, listener: &str, priority: &str, conditions: &str, actions: &str) {
    elbv2(
        berth,
        &[
            "create-rule",
            "--listener-arn",
            listener,
            "--priority",
            priority,
            "--conditions",
            conditions,
            "--actions",
            actions,
        ],
    );
}

fn from(r: &Response) -> String {
    r.text()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn listener_rules_route_requests_and_health_checks_judge_targets() {
    let a = Backend::start("a");
    let b1 = Backend::start("b1");
    let b2 = Backend::start("b2");
    b2.failing.store(true, Ordering::SeqCst);
    let dead_port = free_port().to_string();

    let berth = Berth::start(Opts::open());
    let tg_a = target_group(&berth, "a", &[]);
    let tg_b = target_group(&berth, "b", &[]);
    let tg_c = target_group(&berth, "c", &[]);
    register(&berth, &tg_a, &[&a.port()]);
    register(&berth, &tg_b, &[&b1.port(), &b2.port()]);
    register(&berth, &tg_c, &[&dead_port]);
    let lb = elbv2(&berth, &["create-load-balancer", "--name", "web"]);
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    let port = free_port();
    let listener = s(&elbv2(
        &berth,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &forward_to(&tg_a),
        ],
    )["Listeners"][0]["ListenerArn"]);
    rule(
        &berth,
        &listener,
        "10",
        "Field=path-pattern,Values=/b/*",
        &forward_to(&tg_b),
    );
    rule(
        &berth,
        &listener,
        "20",
        "Field=path-pattern,Values=/tea?ot",
        r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"418","ContentType":"text/plain","MessageBody":"short and stout"}}]"#,
    );
    rule(
        &berth,
        &listener,
        "30",
        "Field=path-pattern,Values=/old/*",
        r#"[{"Type":"redirect","RedirectConfig":{"Path":"/new/#{path}","Query":"from=#{port}","StatusCode":"HTTP_301"}}]"#,
    );
    rule(
        &berth,
        &listener,
        "40",
        "Field=path-pattern,Values=/c",
        &forward_to(&tg_c),
    );
    rule(
        &berth,
        &listener,
        "5",
        r#"[{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"X-Canary","Values":["yes"]}}]"#,
        &forward_to(&tg_b),
    );
    wait_listening(port);

    // Routing by rule, ALB's forwarding headers, fixed responses and redirects.
    eventually("the rules apply", Duration::from_secs(30), || {
        let r = get(port, "/teapot", &[]);
        (r.status == 418)
            .then_some(())
            .ok_or(format!("{} {}", r.status, r.text()))
    });
    let r = get(port, "/anything?x=1", &[("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert_eq!(from(&r), "a", "{text}");
    assert!(text.contains("xff=203.0.113.7, 127.0.0.1\n"), "{text}");
    assert!(text.contains("proto=http\n"), "{text}");
    assert!(text.contains(&format!("port={port}\n")), "{text}");
    assert!(text.contains(&format!("host=127.0.0.1:{port}\n")), "{text}");
    let trace = text
        .lines()
        .find_map(|l| l.strip_prefix("trace=Root=1-"))
        .unwrap_or_else(|| panic!("no trace id: {text}"));
    assert_eq!(trace.len(), 8 + 1 + 24, "{trace}");
    let r = get(
        port,
        "/",
        &[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        )],
    );
    assert!(
        r.text()
            .contains(";Root=1-5759e988-bd862e3fe1be46a994272793"),
        "{}",
        r.text()
    );
    assert!(["b1", "b2"].contains(&from(&get(port, "/b/x", &[])).as_str()));
    assert!(["b1", "b2"].contains(&from(&get(port, "/", &[("x-canary", "yes")])).as_str()));
    let r = get(port, "/teapot", &[]);
    assert_eq!((r.status, r.text().as_str()), (418, "short and stout"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = get(port, "/old/page?q=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{port}/new/old/page?from={port}").as_str())
    );

    // Keep-alive: several requests on one connection.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    for i in 0..3 {
        let head = request_head(addr, "GET", &format!("/k{i}"), &[], 0, true);
        conn.write_all(head.as_bytes()).expect("write");
        let r = read_response(&mut conn).expect("a response on the same connection");
        assert_eq!((r.status, from(&r)), (200, "a".to_string()));
    }

    // HTTP/2 with prior knowledge (h2c), as curl speaks it.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}"])
        .arg(format!("http://127.0.0.1:{port}/h2"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("a /h2\n") && text.ends_with("\n2"),
        "{text}"
    );

    // A WebSocket upgrade carries bytes both ways.
    let mut ws = TcpStream::connect(addr).expect("connect");
    ws.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ws.write_all(
        format!("GET /ws HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-canary: yes\r\n\r\n")
            .as_bytes(),
    )
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).expect("read the 101");
        head.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    ws.write_all(b"ping").expect("write");
    let mut echo = [0u8; 4];
    ws.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping");

    // Health as the checker sees it: 200 healthy, 500 a code mismatch, nothing listening a
    // failed check.
    let berth_ref = &berth;
    let want = |tg: &str, expected: Vec<(String, &str, &str, &str)>| {
        eventually("target health", Duration::from_secs(45), || {
            let got = health(berth_ref, tg);
            let brief: Vec<(String, &str, &str, &str)> = got
                .iter()
                .map(|(p, st, r, d)| (p.clone(), st.as_str(), r.as_str(), d.as_str()))
                .collect();
            (brief == expected).then_some(()).ok_or(format!("{got:?}"))
        });
    };
    want(&tg_a, vec![(a.port(), "healthy", "", "")]);
    let mut b = vec![
        (b1.port(), "healthy", "", ""),
        (
            b2.port(),
            "unhealthy",
            "Target.ResponseCodeMismatch",
            "Health checks failed with these codes: [500]",
        ),
    ];
    b.sort();
    want(&tg_b, b);
    want(
        &tg_c,
        vec![(
            dead_port.clone(),
            "unhealthy",
            "Target.FailedHealthChecks",
            "Health checks failed",
        )],
    );
    // Only the healthy target gets requests now.
    for _ in 0..6 {
        assert_eq!(from(&get(port, "/b/y", &[])), "b1");
    }
    // No target answers: fail open to it, which refuses the connection: 502.
    assert_eq!(get(port, "/c", &[]).status, 502);

    // A target that recovers becomes healthy again.
    b2.failing.store(false, Ordering::SeqCst);
    want(&tg_b, {
        let mut v = vec![
            (b1.port(), "healthy", "", ""),
            (b2.port(), "healthy", "", ""),
        ];
        v.sort();
        v
    });

    // The requests went to CloudWatch as ALB publishes them, per load balancer.
    let dimension = lb_arn
        .split_once(":loadbalancer/")
        .map(|(_, d)| d.to_string())
        .expect("a load balancer ARN");
    let sum = |metric: &str| -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let out = berth
            .aws_explicit(
                &berth.keys,
                &[
                    "cloudwatch",
                    "get-metric-statistics",
                    "--namespace",
                    "AWS/ApplicationELB",
                    "--metric-name",
                    metric,
                    "--dimensions",
                    &format!("Name=LoadBalancer,Value={dimension}"),
                    "--start-time",
                    &(now - 600).to_string(),
                    "--end-time",
                    &(now + 60).to_string(),
                    "--period",
                    "60",
                    "--statistics",
                    "Sum",
                ],
            )
            .json();
        out["Datapoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["Sum"].as_f64())
            .sum()
    };
    eventually(
        "AWS/ApplicationELB metrics",
        Duration::from_secs(30),
        || {
            let (requests, bad_gateway) = (sum("RequestCount"), sum("HTTPCode_ELB_502_Count"));
            if requests >= 7.0 && bad_gateway >= 1.0 {
                Ok(())
            } else {
                Err(format!(
                    "RequestCount {requests}, HTTPCode_ELB_502_Count {bad_gateway}"
                ))
            }
        },
    );
    drop(berth);
}

#[test]
fn bad_clients_and_bad_targets_get_albs_status_and_the_listener_survives() {
    let backend = Backend::start("ok");
    let opts = Opts::open().arg("--lb-idle-timeout-secs").arg("2");
    let berth = Berth::start(opts.clone());
    let tg = target_group(&berth, "t", &[]);
    register(&berth, &tg, &[&backend.port()]);
    let lb = elbv2(&berth, &["create-load-balancer", "--name", "edge"]);
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    let empty = target_group(&berth, "empty", &[]);
    let port = free_port();
    let listener = s(&elbv2(
        &berth,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &forward_to(&tg),
        ],
    )["Listeners"][0]["ListenerArn"]);
    rule(
        &berth,
        &listener,
        "1",
        "Field=path-pattern,Values=/empty",
        &forward_to(&empty),
    );
    wait_listening(port);
    eventually("routes apply", Duration::from_secs(30), || {
        let r = get(port, "/empty", &[]);
        (r.status == 503)
            .then_some(())
            .ok_or(format!("{}", r.status))
    });
    let r = get(port, "/empty", &[]);
    assert_eq!(r.header("server"), Some("awselb/2.0"));
    assert!(
        r.text().contains("503 Service Temporarily Unavailable")
            || r.text().contains("503 Service Unavailable"),
        "{}",
        r.text()
    );

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let raw = |bytes: &[u8]| -> std::io::Result<Response> {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        c.write_all(bytes)?;
        read_response(&mut c)
    };
    // Malformed HTTP.
    assert_eq!(raw(b"GARBAGE\r\n\r\n").expect("a response").status, 400);
    assert_eq!(
        raw(b"GET / HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n")
            .expect("a response")
            .status,
        400
    );
    // One header over 16 KiB, and headers over 64 KiB in all.
    let big = "x".repeat(17 * 1024);
    assert_eq!(get(port, "/", &[("x-big", &big)]).status, 431);
    let fifteen = "y".repeat(15 * 1024);
    let many: Vec<(String, &str)> = (0..5)
        .map(|i| (format!("x-h{i}"), fifteen.as_str()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let r = raw(request_head(addr, "GET", "/", &many, 0, false).as_bytes());
    assert!(
        matches!(r.as_ref().map(|r| r.status), Ok(431) | Err(_)),
        "{:?}",
        r.map(|r| r.status)
    );
    // A slowloris client that never finishes its headers is cut off.
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let cut = slow.read_to_end(&mut buf);
    assert!(
        cut.is_ok() && !String::from_utf8_lossy(&buf).contains("200 OK"),
        "the connection stays open or was served: {cut:?} {}",
        String::from_utf8_lossy(&buf)
    );
    // A target that closes the connection unanswered: 502; one that hangs past the idle
    // timeout: 504.
    assert_eq!(get(port, "/close", &[]).status, 502);
    assert_eq!(get(port, "/hang", &[]).status, 504);
    // The listener still serves.
    let r = get(port, "/", &[]);
    assert_eq!((r.status, from(&r)), (200, "ok".to_string()));
    drop(berth);
}

#[test]
fn deregistration_drains_in_flight_requests_and_sends_no_new_ones() {
    let old = Backend::start("old");
    let new = Backend::start("new");
    let berth = Berth::start(Opts::open());
    let tg = target_group(&berth, "d", &[]);
    elbv2(
        &berth,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=20",
        ],
    );
    register(&berth, &tg, &[&old.port()]);
    let (_, port, _) = listener_on(&berth, "drain", &forward_to(&tg));
    eventually("routes apply", Duration::from_secs(30), || {
        let r = get(port, "/", &[]);
        (r.status == 200)
            .then_some(())
            .ok_or(format!("{}", r.status))
    });

    let served_before = old.served.load(Ordering::SeqCst);
    let in_flight = std::thread::spawn(move || get(port, "/slow", &[]));
    // The slow request has reached the old target before it is deregistered.
    eventually("the slow request arrived", Duration::from_secs(30), || {
        (old.served.load(Ordering::SeqCst) > served_before)
            .then_some(())
            .ok_or("not yet".into())
    });
    register(&berth, &tg, &[&new.port()]);
    elbv2(
        &berth,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &format!("Id=127.0.0.1,Port={}", old.port()),
        ],
    );
    eventually("the old target drains", Duration::from_secs(30), || {
        let r = get(port, "/", &[]);
        (from(&r) == "new").then_some(()).ok_or(from(&r))
    });
    let before = old.served.load(Ordering::SeqCst);
    for _ in 0..8 {
        assert_eq!(from(&get(port, "/", &[])), "new");
    }
    assert_eq!(
        old.served.load(Ordering::SeqCst),
        before,
        "no new request reaches a draining target"
    );
    let slow = in_flight.join().expect("the in-flight request");
    assert_eq!((slow.status, from(&slow)), (200, "old".to_string()));
    let states: Vec<(String, String)> = health(&berth, &tg)
        .into_iter()
        .map(|(p, st, _, _)| (p, st))
        .collect();
    assert!(
        states.contains(&(old.port(), "draining".to_string())),
        "{states:?}"
    );
}

#[test]
fn deleting_a_listener_closes_its_port() {
    let setup = setup(
        Opts::open(),
        "gone",
        r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"200","ContentType":"text/plain","MessageBody":"here"}}]"#,
    );
    let r = get(setup.port, "/", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "here"));
    elbv2(
        &setup.berth,
        &["delete-listener", "--listener-arn", &setup.listener_arn],
    );
    eventually(
        "the port closes",
        Duration::from_secs(30),
        || match TcpStream::connect(("127.0.0.1", setup.port)) {
            Err(_) => Ok(()),
            Ok(_) => Err("still accepting".into()),
        },
    );
    elbv2(
        &setup.berth,
        &["delete-load-balancer", "--load-balancer-arn", &setup.lb_arn],
    );
}

fn attributes(berth: &Berth, lb_arn: &str) -> std::collections::BTreeMap<String, String> {
    elbv2(
        berth,
        &[
            "describe-load-balancer-attributes",
            "--load-balancer-arn",
            lb_arn,
        ],
    )["Attributes"]
        .as_array()
        .expect("Attributes")
        .iter()
        .map(|a| (s(&a["Key"]), s(&a["Value"])))
        .collect()
}

#[test]
fn load_balancer_attributes_set_timeouts_forwarding_headers_http2_and_deletion_protection() {
    let backend = Backend::start("attrs");
    let berth = Berth::start(Opts::open());
    let tg = target_group(&berth, "attrs", &[]);
    register(&berth, &tg, &[&backend.port()]);
    let (lb_arn, port, _) = listener_on(&berth, "attrs", &forward_to(&tg));

    // AWS's defaults, before anything is set.
    let before = attributes(&berth, &lb_arn);
    assert_eq!(before["idle_timeout.timeout_seconds"], "60");
    assert_eq!(before["deletion_protection.enabled"], "false");
    assert_eq!(before["routing.http2.enabled"], "true");
    assert_eq!(before["load_balancing.cross_zone.enabled"], "true");
    eventually("the target serves", Duration::from_secs(30), || {
        let r = get(port, "/", &[]);
        (r.status == 200)
            .then_some(())
            .ok_or(format!("{}", r.status))
    });
    // A 3-second answer is within the default 60-second idle timeout.
    assert_eq!(get(port, "/slow", &[]).status, 200);

    // Bad values are refused and change nothing.
    for (attr, code) in [
        (
            "Key=idle_timeout.timeout_seconds,Value=0",
            "ValidationError",
        ),
        (
            "Key=idle_timeout.timeout_seconds,Value=4001",
            "ValidationError",
        ),
        (
            "Key=routing.http.xff_header_processing.mode,Value=drop",
            "ValidationError",
        ),
        ("Key=no.such.attribute,Value=1", "ValidationError"),
        (
            "Key=load_balancing.cross_zone.enabled,Value=false",
            "InvalidConfigurationRequest",
        ),
        (
            "Key=access_logs.s3.enabled,Value=true",
            "InvalidConfigurationRequest",
        ),
    ] {
        elbv2_fails(
            &berth,
            &[
                "modify-load-balancer-attributes",
                "--load-balancer-arn",
                &lb_arn,
                "--attributes",
                "Key=deletion_protection.enabled,Value=true",
                attr,
            ],
            code,
        );
    }
    assert_eq!(attributes(&berth, &lb_arn), before);

    // A one-second idle timeout: the 3-second answer becomes ALB's 504; and deletion protection.
    let modified = elbv2(
        &berth,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=1",
            "Key=deletion_protection.enabled,Value=true",
        ],
    );
    let shown: Vec<(String, String)> = modified["Attributes"]
        .as_array()
        .expect("Attributes")
        .iter()
        .map(|a| (s(&a["Key"]), s(&a["Value"])))
        .collect();
    assert!(shown.contains(&("idle_timeout.timeout_seconds".into(), "1".into())));
    let after = attributes(&berth, &lb_arn);
    assert_eq!(after["idle_timeout.timeout_seconds"], "1");
    assert_eq!(after["deletion_protection.enabled"], "true");
    assert_eq!(after.len(), before.len());
    eventually("the idle timeout applies", Duration::from_secs(30), || {
        let r = get(port, "/slow", &[]);
        (r.status == 504)
            .then_some(())
            .ok_or(format!("{}", r.status))
    });
    elbv2_fails(
        &berth,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
        "OperationNotPermitted",
    );
    assert_eq!(
        elbv2(
            &berth,
            &["describe-load-balancers", "--load-balancer-arns", &lb_arn]
        )["LoadBalancers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // What the header-echoing target saw of a header (its `name=value` lines).
    let echoed = |r: &Response, name: &str| -> String {
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    };
    // X-Forwarded-For: ALB's three modes, and the client's port.
    let xff_of = |r: &Response| echoed(r, "xff");
    let set = |attributes: &[&str]| {
        let mut args = vec![
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
        ];
        args.extend_from_slice(attributes);
        elbv2(&berth, &args);
    };
    let prior = [("x-forwarded-for", "203.0.113.7")];
    assert_eq!(xff_of(&get(port, "/", &prior)), "203.0.113.7, 127.0.0.1");
    set(&["Key=routing.http.xff_header_processing.mode,Value=preserve"]);
    eventually("xff is preserved", Duration::from_secs(30), || {
        let (with, without) = (get(port, "/", &prior), get(port, "/", &[]));
        (xff_of(&with) == "203.0.113.7" && xff_of(&without).is_empty())
            .then_some(())
            .ok_or(format!("{} / {}", xff_of(&with), xff_of(&without)))
    });
    set(&["Key=routing.http.xff_header_processing.mode,Value=remove"]);
    eventually("xff is removed", Duration::from_secs(30), || {
        let x = xff_of(&get(port, "/", &prior));
        x.is_empty().then_some(()).ok_or(x)
    });
    set(&[
        "Key=routing.http.xff_header_processing.mode,Value=append",
        "Key=routing.http.xff_client_port.enabled,Value=true",
    ]);
    eventually(
        "xff names the client's port",
        Duration::from_secs(30),
        || {
            let x = xff_of(&get(port, "/", &[]));
            let port_part = x.strip_prefix("127.0.0.1:").unwrap_or_default();
            (port_part.parse::<u16>().is_ok_and(|p| p != port))
                .then_some(())
                .ok_or(x)
        },
    );

    // Host: ALB's default gives the target the listener's port; preserved on request.
    let host_of = |r: &Response| echoed(r, "host");
    let named = [("host", "app.example.com")];
    assert_eq!(
        host_of(&get(port, "/", &named)),
        format!("app.example.com:{port}")
    );
    assert_eq!(host_of(&get(port, "/", &[])), format!("127.0.0.1:{port}"));
    set(&["Key=routing.http.preserve_host_header.enabled,Value=true"]);
    eventually("the host is preserved", Duration::from_secs(30), || {
        let h = host_of(&get(port, "/", &named));
        (h == "app.example.com").then_some(()).ok_or(h)
    });

    // HTTP/2 off: a client speaking it with prior knowledge is refused; HTTP/1.1 still serves.
    let h2 = || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version}",
            ])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("run curl")
    };
    assert_eq!(String::from_utf8_lossy(&h2().stdout), "2");
    set(&["Key=routing.http2.enabled,Value=false"]);
    eventually("HTTP/2 is refused", Duration::from_secs(30), || {
        let out = h2();
        let version = String::from_utf8_lossy(&out.stdout).to_string();
        (version != "2").then_some(()).ok_or(version)
    });
    assert_eq!(get(port, "/", &[]).status, 200);

    // Protection off: the load balancer goes, and its listener's port closes.
    elbv2(
        &berth,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=deletion_protection.enabled,Value=false",
        ],
    );
    elbv2(
        &berth,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    eventually(
        "the port closes",
        Duration::from_secs(30),
        || match TcpStream::connect(("127.0.0.1", port)) {
            Err(_) => Ok(()),
            Ok(_) => Err("still listening".into()),
        },
    );
}

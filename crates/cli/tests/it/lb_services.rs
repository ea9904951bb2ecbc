//! An ECS service behind berth's load balancer, end to end on real Docker: a steady stream of
//! requests goes through the listener while a 4-task service rolls to a new revision and back
//! (the answers show both revisions were served), and while one task's container is killed; not
//! one request may fail. The backends are busybox `httpd` answering their revision. Each failure
//! is recorded with what the test was doing when it happened.

use crate::harness::{Berth, Opts};
use crate::tasks::{FamilyCleanup, docker, import_busybox};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bound for each phase: generous, CI machines are slow and busy.
const WAIT: Duration = Duration::from_secs(180);

fn aws(berth: &Berth, args: &[&str]) -> Value {
    let out = berth.aws_profile(args);
    assert_eq!(out.code, 0, "aws {args:?}: {}", out.stderr);
    if out.stdout.trim().is_empty() {
        return Value::Null;
    }
    out.json()
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A revision whose container serves `/` with its version on port 8080 (bridge, dynamic host
/// port), with an init process so SIGTERM stops it at once.
fn register(berth: &Berth, family: &str, image: &str, version: &str) -> String {
    let defs = json!([{
        "name": "app",
        "image": image,
        "memory": 32,
        "essential": true,
        "command": ["sh", "-c",
            "busybox mkdir -p /www && echo $VERSION > /www/index.html && exec busybox httpd -f -p 8080 -h /www"],
        "environment": [{"name": "VERSION", "value": version}],
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        "linuxParameters": {"initProcessEnabled": true},
        "stopTimeout": 2
    }])
    .to_string();
    s(&aws(
        berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            &defs,
        ],
    )["taskDefinition"]["taskDefinitionArn"])
}

fn describe(berth: &Berth, service: &str) -> Value {
    aws(berth, &["ecs", "describe-services", "--services", service])["services"][0].clone()
}

fn wait_steady(berth: &Berth, service: &str, task_definition: &str, what: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = describe(berth, service);
        let done = s["deployments"].as_array().map(Vec::len) == Some(1)
            && s["deployments"][0]["rolloutState"] == "COMPLETED"
            && s["taskDefinition"] == task_definition
            && s["runningCount"] == s["desiredCount"]
            && s["pendingCount"] == 0;
        if done {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never got to: {what}; last seen: {s:#}\nberth stderr:\n{}",
            berth.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One GET through the listener on a fresh connection: the status and body, or why it failed.
fn get(port: u16) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /index.html HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.trim().to_string()))
}

/// Clients sending requests one after another until stopped: what each answer said, and every
/// failure (a status other than 200, or a connection error).
struct Load {
    stop: Arc<AtomicBool>,
    /// What the test is doing now, recorded with each failure.
    phase: Arc<Mutex<&'static str>>,
    bodies: Arc<Mutex<BTreeMap<String, usize>>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new("steady"));
        let bodies = Arc::new(Mutex::new(BTreeMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, bodies, failures) = (stop.clone(), bodies.clone(), failures.clone());
                let phase = phase.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match get(port) {
                            Ok((200, body)) => {
                                *bodies.lock().expect("lock").entry(body).or_insert(0) += 1;
                            }
                            Ok((status, body)) => {
                                let during = *phase.lock().expect("lock");
                                let first = body.lines().next().unwrap_or_default();
                                failures
                                    .lock()
                                    .expect("lock")
                                    .push(format!("{during}: {status} {first}"))
                            }
                            Err(e) => {
                                let during = *phase.lock().expect("lock");
                                failures
                                    .lock()
                                    .expect("lock")
                                    .push(format!("{during}: {e}"))
                            }
                        }
                        // Bounded: a steady stream, not a benchmark.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Load {
            stop,
            phase,
            bodies,
            failures,
            threads,
        }
    }

    fn phase(&self, now: &'static str) {
        *self.phase.lock().expect("lock") = now;
    }

    fn served(&self) -> BTreeMap<String, usize> {
        self.bodies.lock().expect("lock").clone()
    }

    fn finish(self) -> (BTreeMap<String, usize>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a client thread");
        }
        let bodies = self.bodies.lock().expect("lock").clone();
        let failures = self.failures.lock().expect("lock").clone();
        (bodies, failures)
    }
}

fn task_ids(berth: &Berth, service: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        aws(berth, &["ecs", "list-tasks", "--service-name", service])["taskArns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .map(|a| a.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
    ids.sort();
    ids
}

/// berth with a load balancer whose listener forwards to the target group of service `web`: 4
/// tasks of revision v1 behind healthy targets.
struct Fixture {
    berth: Berth,
    family: String,
    v1: String,
    v2: String,
    port: u16,
    _cleanup: FamilyCleanup,
}

fn fixture(tag: &str) -> Fixture {
    let berth = Berth::start(Opts::default());
    let family = format!("lbsvc{tag}{}", std::process::id());
    let image = import_busybox(&family);
    let cleanup = FamilyCleanup {
        family: family.clone(),
        image: image.clone(),
    };
    let v1 = register(&berth, &family, &image, "v1");
    let v2 = register(&berth, &family, &image, "v2");
    let lb = aws(
        &berth,
        &["elbv2", "create-load-balancer", "--name", &family],
    );
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    let tg = s(&aws(
        &berth,
        &[
            "elbv2",
            "create-target-group",
            "--name",
            &family,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "instance",
            "--health-check-path",
            "/index.html",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
            "--unhealthy-threshold-count",
            "2",
        ],
    )["TargetGroups"][0]["TargetGroupArn"]);
    aws(
        &berth,
        &[
            "elbv2",
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=3",
        ],
    );
    let port = free_port();
    aws(
        &berth,
        &[
            "elbv2",
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ],
    );
    aws(
        &berth,
        &[
            "ecs",
            "create-service",
            "--service-name",
            "web",
            "--task-definition",
            &v1,
            "--desired-count",
            "4",
            "--health-check-grace-period-seconds",
            "30",
            "--deployment-configuration",
            "maximumPercent=200,minimumHealthyPercent=100",
            "--load-balancers",
            &format!("targetGroupArn={tg},containerName=app,containerPort=8080"),
        ],
    );
    wait_steady(&berth, "web", &v1, "4 tasks of v1 behind healthy targets");
    let health = aws(
        &berth,
        &["elbv2", "describe-target-health", "--target-group-arn", &tg],
    );
    let states: Vec<String> = health["TargetHealthDescriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| s(&d["TargetHealth"]["State"]))
        .collect();
    assert_eq!(states, ["healthy"; 4], "{health:#}");
    Fixture {
        berth,
        family,
        v1,
        v2,
        port,
        _cleanup: cleanup,
    }
}

fn assert_none_failed(f: &Fixture, bodies: &BTreeMap<String, usize>, failures: &[String]) {
    let total: usize = bodies.values().sum();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}\nberth stderr:\n{}",
        failures.len(),
        total + failures.len(),
        &failures[..failures.len().min(10)],
        f.berth.stderr()
    );
    assert!(total > 100, "a steady stream: {bodies:?}");
}

#[test]
fn a_service_behind_the_load_balancer_rolls_to_a_new_revision_and_back_without_a_failed_request() {
    let f = fixture("roll");
    let load = Load::start(f.port, 4);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        load.served().contains_key("v1"),
        "v1 answers through the listener"
    );
    load.phase("rolling to v2");
    aws(
        &f.berth,
        &[
            "ecs",
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &f.v2,
        ],
    );
    wait_steady(&f.berth, "web", &f.v2, "rolled to v2");
    load.phase("steady on v2");
    std::thread::sleep(Duration::from_secs(2));
    load.phase("rolling back to v1");
    aws(
        &f.berth,
        &[
            "ecs",
            "update-service",
            "--service",
            "web",
            "--task-definition",
            &f.v1,
        ],
    );
    wait_steady(&f.berth, "web", &f.v1, "rolled back to v1");
    load.phase("steady on v1");
    std::thread::sleep(Duration::from_secs(2));
    let (bodies, failures) = load.finish();
    assert_none_failed(&f, &bodies, &failures);
    assert!(
        bodies.contains_key("v1") && bodies.contains_key("v2"),
        "both revisions served: {bodies:?}"
    );
}

#[test]
fn a_service_behind_the_load_balancer_heals_a_killed_container_without_a_failed_request() {
    let f = fixture("kill");
    let load = Load::start(f.port, 4);
    std::thread::sleep(Duration::from_secs(2));
    // One container dies: its task stops, its target goes, a new task takes its place.
    load.phase("container killed");
    let before = task_ids(&f.berth, "web");
    let victim = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!(
            "label=com.amazonaws.ecs.task-definition-family={}",
            f.family
        ),
    ])
    .split_whitespace()
    .next()
    .expect("a running container")
    .to_string();
    docker(&["kill", &victim]);
    let deadline = Instant::now() + WAIT;
    while task_ids(&f.berth, "web") == before {
        assert!(
            Instant::now() < deadline,
            "the killed task was never replaced"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_steady(&f.berth, "web", &f.v1, "healed after a kill");
    load.phase("healed");
    std::thread::sleep(Duration::from_secs(2));
    let (bodies, failures) = load.finish();
    assert_none_failed(&f, &bodies, &failures);
}

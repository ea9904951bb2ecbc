//! The task metadata endpoint on real Docker through `berth up`'s agent: a container reads
//! `$ECS_CONTAINER_METADATA_URI_V4`, `/task` and `/task/stats` itself (busybox `wget`) and
//! prints them; the test reads them back with `docker logs` and checks them against
//! DescribeTasks. A host-mode container reaches its endpoint on loopback.

use crate::harness::{Berth, Opts, http};
use crate::tasks::{DockerCleanup, aws, docker, import_busybox, run_task, wait_for};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

/// Reads the endpoint once the agent knows the task RUNNING, then prints each document on a
/// line of its own, behind a marker.
const PROBE: &str = r#"U="$ECS_CONTAINER_METADATA_URI_V4"
echo "URI $U"
until wget -q -O - "$U/task" | grep -q '"KnownStatus":"RUNNING"'; do sleep 0.2; done
echo "CONTAINER $(wget -q -O - "$U")"
echo "TASK $(wget -q -O - "$U/task")"
echo "TASKSTATS $(wget -q -O - "$U/task/stats")"
echo "V3 $(wget -q -O - "$ECS_CONTAINER_METADATA_URI/task")"
echo DONE
sleep 600"#;

fn register(berth: &Berth, family: &str, network_mode: &str, image: &str) -> String {
    let container = json!([{
        "name": "probe",
        "image": image,
        "essential": true,
        "memory": 64,
        "cpu": 128,
        // The shell ignores SIGTERM as PID 1: no need to wait ECS's 30 s for the SIGKILL.
        "stopTimeout": 2,
        "entryPoint": ["/bin/sh", "-c"],
        "command": [PROBE],
    }])
    .to_string();
    let out = aws(
        berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            family,
            "--network-mode",
            network_mode,
            "--cpu",
            "256",
            "--memory",
            "512",
            "--container-definitions",
            &container,
        ],
    );
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("task definition arn")
        .to_string()
}

/// The container's output once the probe is done: marker → the rest of its line.
fn probe_output(berth: &Berth, runtime_id: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = std::process::Command::new("docker")
            .args(["logs", runtime_id])
            .output()
            .expect("docker logs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.lines().any(|l| l == "DONE") {
            return text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "the probe never finished; its output:\n{text}\n{}\nberth stderr:\n{}",
            String::from_utf8_lossy(&out.stderr),
            berth.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn doc(lines: &[(String, String)], marker: &str) -> Value {
    let line = lines
        .iter()
        .find(|(k, _)| k == marker)
        .unwrap_or_else(|| panic!("no {marker} line in {lines:?}"));
    serde_json::from_str(&line.1)
        .unwrap_or_else(|e| panic!("{marker} is not JSON ({e}): {}", line.1))
}

fn uri(lines: &[(String, String)]) -> String {
    lines
        .iter()
        .find(|(k, _)| k == "URI")
        .map(|(_, v)| v.clone())
        .expect("a URI line")
}

/// Runs a probe task of `network_mode`, checks what it read against DescribeTasks, and returns
/// its metadata URI.
fn probe(berth: &Berth, cleanup: &mut DockerCleanup, family: &str, network_mode: &str) -> String {
    let td = register(berth, family, network_mode, &cleanup.image);
    let arn = run_task(berth, &td);
    cleanup.task_arns.push(arn.clone());
    let described = wait_for(berth, &arn, "RUNNING");
    let runtime_id = described["containers"][0]["runtimeId"]
        .as_str()
        .expect("runtimeId")
        .to_string();
    let lines = probe_output(berth, &runtime_id);

    let container = doc(&lines, "CONTAINER");
    assert_eq!(container["DockerId"], runtime_id.as_str(), "{container}");
    assert_eq!(container["Name"], "probe");
    assert_eq!(container["Image"], cleanup.image.as_str());
    assert!(
        container["ImageID"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:"))
    );
    assert_eq!(
        container["Labels"]["com.amazonaws.ecs.task-arn"],
        arn.as_str()
    );
    assert_eq!(container["KnownStatus"], "RUNNING");
    assert_eq!(container["DesiredStatus"], "RUNNING");
    assert_eq!(container["Limits"], json!({"CPU": 128.0, "Memory": 64}));
    assert_eq!(container["Type"], "NORMAL");
    assert_eq!(
        container["ContainerARN"], described["containers"][0]["containerArn"],
        "{container}"
    );
    assert_eq!(container["Networks"][0]["NetworkMode"], network_mode);

    let task = doc(&lines, "TASK");
    assert_eq!(task["TaskARN"], described["taskArn"], "{task}");
    assert!(
        described["clusterArn"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!(
                "cluster/{}",
                task["Cluster"].as_str().unwrap_or("?")
            )))
    );
    let td_arn = described["taskDefinitionArn"].as_str().expect("td arn");
    assert!(
        td_arn.ends_with(&format!(
            ":task-definition/{}:{}",
            task["Family"].as_str().unwrap_or("?"),
            task["Revision"].as_str().unwrap_or("?")
        )),
        "{td_arn} vs {task}"
    );
    assert_eq!(task["Family"], family);
    assert_eq!(task["KnownStatus"], described["lastStatus"]);
    assert_eq!(task["DesiredStatus"], "RUNNING");
    assert_eq!(task["LaunchType"], "EC2");
    assert_eq!(task["Limits"], json!({"CPU": 0.25, "Memory": 512}));
    assert_eq!(task["Containers"][0]["DockerId"], runtime_id.as_str());

    let stats = doc(&lines, "TASKSTATS");
    let own = &stats[runtime_id.as_str()];
    assert!(own["memory_stats"]["usage"].as_u64() > Some(0), "{stats}");
    assert!(
        own["cpu_stats"]["cpu_usage"]["total_usage"].is_u64(),
        "{stats}"
    );
    assert!(own["read"].is_string(), "{stats}");

    let v3 = doc(&lines, "V3");
    assert_eq!(v3["TaskARN"], arn.as_str());
    assert!(v3.get("LaunchType").is_none(), "{v3}");

    aws(
        berth,
        &["ecs", "stop-task", "--cluster", "default", "--task", &arn],
    );
    wait_for(berth, &arn, "STOPPED");
    uri(&lines)
}

/// `GET` from this host (the test is where the containers' host is).
fn get(uri: &str) -> u16 {
    let rest = uri.strip_prefix("http://").expect("http URI");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let addr: SocketAddr = authority.parse().expect("an IP:port authority");
    http(addr, "GET", path, &[], b"").status
}

#[test]
fn containers_read_their_task_metadata_endpoint() {
    let berth = Berth::start(Opts::default());
    let name = format!("metadata-{}", std::process::id());
    let image = import_busybox(&name);
    let mut cleanup = DockerCleanup {
        image,
        task_arns: vec![],
    };

    // A bridge container reaches the agent at the bridge's gateway.
    let bridge_uri = probe(&berth, &mut cleanup, &format!("{name}-bridge"), "bridge");
    let gateway = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]);
    assert!(
        bridge_uri.starts_with(&format!("http://{}:", gateway.trim())),
        "{bridge_uri} vs gateway {gateway}"
    );
    // The task has stopped: its token leads nowhere; a made-up one never did.
    assert_eq!(get(&bridge_uri), 404);
    let (base, _) = bridge_uri.rsplit_once('/').expect("a token");
    assert_eq!(
        get(&format!("{base}/00000000-0000-4000-8000-000000000000")),
        404
    );

    // A host-mode container reaches it on loopback.
    let host_uri = probe(&berth, &mut cleanup, &format!("{name}-host"), "host");
    assert!(host_uri.starts_with("http://127.0.0.1:"), "{host_uri}");
}

//! Tasks on real Docker through `berth up`'s own agent, driven by the `aws` CLI: the node joins
//! `default`, a task runs as a labelled container, stops with an exit code, an essential exit
//! and a missing image end their tasks with ECS's stop codes. Needs a Docker Engine and
//! busybox-static (CI installs both); images are imported locally, nothing is pulled.

use crate::harness::{Berth, Opts};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// Upper bound for a task to reach a status: generous, CI machines are slow and busy.
const WAIT: Duration = Duration::from_secs(90);

/// Removes what a test made in Docker, even when it fails half-way.
pub(crate) struct DockerCleanup {
    pub(crate) image: String,
    pub(crate) task_arns: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for arn in &self.task_arns {
            let ids = docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.amazonaws.ecs.task-arn={arn}"),
            ]);
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

pub(crate) fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run docker {args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A busybox image made from the host's busybox-static, under a name unique to this test.
pub(crate) fn import_busybox(name: &str) -> String {
    let dir = tempfile_dir(name);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static must be installed");
    for applet in ["sh", "sleep", "echo", "true", "false", "cat", "env"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
    }
    let image = format!("berth-it/{name}:1");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - '{image}' >/dev/null",
            dir.display()
        ))
        .status()
        .expect("run docker import");
    assert!(status.success(), "docker import of {image} failed");
    let _ = std::fs::remove_dir_all(&dir);
    image
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("berth-it-rootfs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn aws(berth: &Berth, args: &[&str]) -> Value {
    berth.aws_profile(args).json()
}

fn register(berth: &Berth, family: &str, container: Value) -> String {
    let defs = json!([container]).to_string();
    let out = aws(
        berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            family,
            "--container-definitions",
            &defs,
        ],
    );
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("task definition arn")
        .to_string()
}

fn run_task(berth: &Berth, task_definition: &str) -> String {
    let out = aws(
        berth,
        &[
            "ecs",
            "run-task",
            "--cluster",
            "default",
            "--task-definition",
            task_definition,
        ],
    );
    assert_eq!(out["failures"], json!([]), "{out}");
    out["tasks"][0]["taskArn"]
        .as_str()
        .expect("task arn")
        .to_string()
}

fn describe(berth: &Berth, arn: &str) -> Value {
    let out = aws(
        berth,
        &[
            "ecs",
            "describe-tasks",
            "--cluster",
            "default",
            "--tasks",
            arn,
        ],
    );
    out["tasks"][0].clone()
}

/// Polls DescribeTasks until the task's lastStatus is `status`.
fn wait_for(berth: &Berth, arn: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = describe(berth, arn);
        if t["lastStatus"] == status {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task {arn} never reached {status}; last seen: {t}\nberth stderr:\n{}",
            berth.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `berth up` joins its own node to `default` and runs tasks there through Docker.
#[test]
fn tasks_run_as_labelled_containers_and_stop_with_ecs_codes() {
    let berth = Berth::start(Opts::default());
    let name = format!("tasks-{}", std::process::id());
    let image = import_busybox(&name);
    let mut cleanup = DockerCleanup {
        image: image.clone(),
        task_arns: vec![],
    };

    // The node registered itself, connected, able to run tasks.
    let deadline = Instant::now() + WAIT;
    let instance = loop {
        let list = aws(
            &berth,
            &["ecs", "list-container-instances", "--cluster", "default"],
        );
        if let Some(arn) = list["containerInstanceArns"][0].as_str() {
            let d = aws(
                &berth,
                &[
                    "ecs",
                    "describe-container-instances",
                    "--cluster",
                    "default",
                    "--container-instances",
                    arn,
                ],
            );
            let ci = d["containerInstances"][0].clone();
            if ci["agentConnected"] == true {
                break ci;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no connected container instance in default\nstdout: {:?}\nstderr: {}",
            berth.stdout(),
            berth.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(instance["status"], "ACTIVE", "{instance}");
    assert!(
        berth
            .stdout()
            .iter()
            .any(|l| l.contains("this node runs tasks of cluster default")),
        "{:?}",
        berth.stdout()
    );

    // A task runs as a container carrying ECS's labels, and stops with an exit code.
    let td = register(
        &berth,
        &format!("{name}-sleep"),
        json!({"name": "app", "image": image, "memory": 32, "essential": true,
               "entryPoint": ["/bin/sleep"], "command": ["300"], "stopTimeout": 2,
               "environment": [{"name": "GREETING", "value": "hello"}]}),
    );
    let arn = run_task(&berth, &td);
    cleanup.task_arns.push(arn.clone());
    let running = wait_for(&berth, &arn, "RUNNING");
    let runtime_id = running["containers"][0]["runtimeId"]
        .as_str()
        .expect("runtimeId")
        .to_string();
    let ps = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.amazonaws.ecs.task-arn={arn}"),
    ]);
    assert_eq!(
        ps.trim(),
        runtime_id,
        "docker ps shows the task's container"
    );
    let labels: Value = serde_json::from_str(&docker(&[
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &runtime_id,
    ]))
    .expect("labels are JSON");
    assert_eq!(labels["com.amazonaws.ecs.cluster"], "default");
    assert_eq!(labels["com.amazonaws.ecs.container-name"], "app");
    assert_eq!(labels["com.amazonaws.ecs.task-arn"], arn.as_str());
    assert_eq!(
        labels["com.amazonaws.ecs.task-definition-family"],
        format!("{name}-sleep")
    );
    assert_eq!(labels["com.amazonaws.ecs.task-definition-version"], "1");

    aws(
        &berth,
        &[
            "ecs",
            "stop-task",
            "--cluster",
            "default",
            "--task",
            &arn,
            "--reason",
            "test done",
        ],
    );
    let stopped = wait_for(&berth, &arn, "STOPPED");
    assert_eq!(stopped["stopCode"], "UserInitiated", "{stopped}");
    assert!(
        stopped["containers"][0]["exitCode"].is_i64(),
        "a stopped container has an exit code: {stopped}"
    );
    // Stopped containers stay for a while, as on ECS, so their exit can be looked at.
    let exited = docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("id={runtime_id}"),
    ]);
    assert_eq!(exited.trim(), runtime_id);

    // awsvpc: the task's containers share a network namespace held by a holder container.
    let defs = json!([
        {"name": "a", "image": image, "memory": 16, "entryPoint": ["/bin/sleep"], "command": ["300"], "stopTimeout": 1},
        {"name": "b", "image": image, "memory": 16, "entryPoint": ["/bin/sleep"], "command": ["300"], "stopTimeout": 1}
    ])
    .to_string();
    let family = format!("{name}-vpc");
    let out = aws(
        &berth,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            &family,
            "--network-mode",
            "awsvpc",
            "--container-definitions",
            &defs,
        ],
    );
    let td = out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("arn")
        .to_string();
    let arn = run_task(&berth, &td);
    cleanup.task_arns.push(arn.clone());
    let running = wait_for(&berth, &arn, "RUNNING");
    let modes: Vec<String> = running["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| {
            let id = c["runtimeId"].as_str().expect("runtimeId");
            docker(&["inspect", "--format", "{{.HostConfig.NetworkMode}}", id])
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(modes.len(), 2);
    assert!(
        modes[0].starts_with("container:") && modes[0] == modes[1],
        "both containers join one namespace: {modes:?}"
    );
    aws(
        &berth,
        &["ecs", "stop-task", "--cluster", "default", "--task", &arn],
    );
    wait_for(&berth, &arn, "STOPPED");
    let still_running = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.amazonaws.ecs.task-arn={arn}"),
    ]);
    assert_eq!(still_running.trim(), "", "the holder stops with the task");

    // An essential container that exits stops its task.
    let td = register(
        &berth,
        &format!("{name}-fail"),
        json!({"name": "app", "image": image, "memory": 32,
               "entryPoint": ["/bin/sh", "-c", "exit 3"]}),
    );
    let arn = run_task(&berth, &td);
    cleanup.task_arns.push(arn.clone());
    let stopped = wait_for(&berth, &arn, "STOPPED");
    assert_eq!(stopped["stopCode"], "EssentialContainerExited", "{stopped}");
    assert_eq!(
        stopped["stoppedReason"],
        "Essential container in task exited"
    );
    assert_eq!(stopped["containers"][0]["exitCode"], 3, "{stopped}");

    // An image that cannot be pulled (a registry that refuses connections) fails the task.
    let td = register(
        &berth,
        &format!("{name}-nopull"),
        json!({"name": "app", "image": "127.0.0.1:1/berth-missing:1", "memory": 32}),
    );
    let arn = run_task(&berth, &td);
    cleanup.task_arns.push(arn.clone());
    let stopped = wait_for(&berth, &arn, "STOPPED");
    assert_eq!(stopped["stopCode"], "TaskFailedToStart", "{stopped}");
    let reason = stopped["containers"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.starts_with("CannotPullContainerError: "),
        "{stopped}"
    );
    drop(berth);
    drop(cleanup);
}

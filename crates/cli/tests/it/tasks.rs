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

/// Removes the containers of a task definition family and the test's image, even when the test
/// fails half-way.
pub(crate) struct FamilyCleanup {
    pub(crate) family: String,
    pub(crate) image: String,
}

impl Drop for FamilyCleanup {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!(
                "label=com.amazonaws.ecs.task-definition-family={}",
                self.family
            ),
        ]);
        for id in ids.split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
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
    for applet in [
        "sh", "sleep", "echo", "true", "false", "cat", "env", "wget", "grep",
    ] {
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

pub(crate) fn aws(berth: &Berth, args: &[&str]) -> Value {
    berth.aws_profile(args).json()
}

pub(crate) fn register(berth: &Berth, family: &str, container: Value) -> String {
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

pub(crate) fn run_task(berth: &Berth, task_definition: &str) -> String {
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

pub(crate) fn describe(berth: &Berth, arn: &str) -> Value {
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
pub(crate) fn wait_for(berth: &Berth, arn: &str, status: &str) -> Value {
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

// ---- placement through berth-scheduler ----
//
// Two container instances registered through the ECS API in a cluster of their own on
// `berth server` (no agent, no Docker): tasks are placed, never run, so where each one lands is
// all there is to look at. An instance registered this way counts as connected for a minute.

/// Registers an instance with `cpu` units and `memory` MiB; returns its ARN.
fn register_instance(berth: &Berth, cluster: &str, ec2: &str, cpu: i32, memory: i32) -> String {
    let out = berth.ecs_ok(
        "RegisterContainerInstance",
        &json!({"cluster": cluster, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}
        ], "attributes": [{"name": "ecs.os-type", "value": "linux"}],
        "instanceIdentityDocument": json!({"instanceId": ec2}).to_string()}),
    );
    out["containerInstance"]["containerInstanceArn"]
        .as_str()
        .expect("container instance arn")
        .to_string()
}

/// RunTask through the ECS API; returns (instance ARN of each task, (arn, reason) of each failure).
fn place(berth: &Berth, body: Value) -> (Vec<String>, Vec<(String, String)>) {
    let out = berth.ecs_ok("RunTask", &body);
    let on = out["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            t["containerInstanceArn"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let failed = out["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["arn"].as_str().unwrap_or_default().to_string(),
                f["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (on, failed)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn tasks_are_placed_by_constraints_and_strategies() {
    let berth = Berth::start(Opts::default().server_only());
    let cluster = "placement";
    berth.ecs_ok("CreateCluster", &json!({"clusterName": cluster}));
    let a = register_instance(&berth, cluster, "i-0aaaaaaaaaaaaaaaa", 2048, 8192);
    let b = register_instance(&berth, cluster, "i-0bbbbbbbbbbbbbbbb", 2048, 4096);
    for family in ["pinned", "packed", "spread", "distinct"] {
        register(
            &berth,
            family,
            json!({"name": "app", "image": "busybox", "cpu": 128, "memory": 512,
                   "portMappings": [{"containerPort": 80}]}),
        );
    }

    // memberOf on a custom attribute: PutAttributes on a only, and every task lands there.
    aws(
        &berth,
        &[
            "ecs",
            "put-attributes",
            "--cluster",
            cluster,
            "--attributes",
            &format!("name=stack,value=prod,targetType=container-instance,targetId={a}"),
        ],
    );
    // ListContainerInstances' filter reads the same view of an instance.
    let listed = berth.ecs_ok(
        "ListContainerInstances",
        &json!({"cluster": cluster, "filter": "attribute:stack == prod and attribute:ecs.os-type == linux"}),
    );
    assert_eq!(listed["containerInstanceArns"], json!([a]), "{listed}");
    let listed = berth.ecs_ok(
        "ListContainerInstances",
        &json!({"cluster": cluster, "filter": "ec2InstanceId in [i-0bbbbbbbbbbbbbbbb]"}),
    );
    assert_eq!(listed["containerInstanceArns"], json!([b]), "{listed}");
    let r = berth.ecs(
        "ListContainerInstances",
        &json!({"cluster": cluster, "filter": "runningTasksCount == many"}),
    );
    assert_eq!(r.error_code(), "InvalidParameterException");
    assert!(r.message().contains("column 22"), "{}", r.message());
    let out = aws(
        &berth,
        &[
            "ecs",
            "run-task",
            "--cluster",
            cluster,
            "--task-definition",
            "pinned",
            "--count",
            "3",
            "--placement-constraints",
            "type=memberOf,expression=attribute:stack == prod and agentConnected == true",
        ],
    );
    assert_eq!(out["failures"], json!([]), "{out}");
    let on: Vec<&str> = out["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["containerInstanceArn"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(on, vec![a.as_str(); 3], "{out}");
    // An attribute no instance has: nothing placed, each instance fails ATTRIBUTE.
    let (on, failed) = place(
        &berth,
        json!({"cluster": cluster, "taskDefinition": "pinned", "placementConstraints": [
            {"type": "memberOf", "expression": "attribute:stack in [dev, test]"}]}),
    );
    assert!(on.is_empty());
    assert_eq!(
        sorted(failed),
        sorted(vec![
            (a.clone(), "ATTRIBUTE".into()),
            (b.clone(), "ATTRIBUTE".into())
        ])
    );

    // A bad expression is InvalidParameterException pointing at the column of the problem.
    let bad = berth.aws_profile(&[
        "ecs",
        "run-task",
        "--cluster",
        cluster,
        "--task-definition",
        "pinned",
        "--placement-constraints",
        "type=memberOf,expression=attribute:stack = prod",
    ]);
    assert_ne!(bad.code, 0, "{}", bad.stdout);
    assert!(
        bad.stderr.contains("InvalidParameterException")
            && bad.stderr.contains("at column 17")
            && bad.stderr.contains("expected '==' or '=~'"),
        "{}",
        bad.stderr
    );
    let r = berth.ecs(
        "RunTask",
        &json!({"cluster": cluster, "taskDefinition": "pinned",
                "placementStrategy": [{"type": "binpack", "field": "disk"}]}),
    );
    assert_eq!(r.error_code(), "InvalidParameterException");
    assert!(r.message().contains("binpack"), "{}", r.message());

    // distinctInstance with more tasks than instances: one each, then ATTRIBUTE on both.
    let (on, failed) = place(
        &berth,
        json!({"cluster": cluster, "taskDefinition": "distinct", "count": 3,
               "placementConstraints": [{"type": "distinctInstance"}]}),
    );
    assert_eq!(sorted(on), sorted(vec![a.clone(), b.clone()]));
    assert_eq!(
        sorted(failed),
        sorted(vec![
            (a.clone(), "ATTRIBUTE".into()),
            (b.clone(), "ATTRIBUTE".into())
        ])
    );

    // a now has 6144 MiB left, b 3584. binpack(memory) fills b first; spread(instanceId)
    // balances the group over both, binpack breaking the ties.
    let (on, failed) = place(
        &berth,
        json!({"cluster": cluster, "taskDefinition": "packed", "count": 2,
               "placementStrategy": [{"type": "binpack", "field": "memory"}]}),
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(on, vec![b.clone(), b.clone()]);
    let (on, failed) = place(
        &berth,
        json!({"cluster": cluster, "taskDefinition": "spread", "count": 4,
               "placementStrategy": [{"type": "spread", "field": "instanceId"},
                                     {"type": "binpack", "field": "memory"}]}),
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(on.iter().filter(|i| **i == a).count(), 2, "{on:?}");
    assert_eq!(on.iter().filter(|i| **i == b).count(), 2, "{on:?}");

    // Too big for either: each instance says what it lacks.
    let (on, failed) = place(
        &berth,
        json!({"cluster": cluster, "taskDefinition": "packed",
               "overrides": {"containerOverrides": [{"name": "app", "memory": 100000}]}}),
    );
    assert!(on.is_empty());
    assert_eq!(
        sorted(failed),
        sorted(vec![
            (a.clone(), "RESOURCE:MEMORY".into()),
            (b.clone(), "RESOURCE:MEMORY".into())
        ])
    );
}

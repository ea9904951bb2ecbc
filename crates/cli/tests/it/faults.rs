//! Fault tests on real Docker: a SIGKILLed `berth agent` re-adopts its running containers with
//! no task lost or doubled; a SIGKILLed `berth server` leaves tasks serving and the agent
//! reconciles when it comes back; resource accounting refuses a task that does not fit and gives
//! memory back after a stop. Bounded in time, no timing assertions. Images are imported locally.

use crate::harness::{AgentProcess, Berth, Opts, try_http};
use crate::tasks::{DockerCleanup, docker, import_busybox};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Upper bound for anything to converge: generous, CI machines are slow and busy. The agent's
/// longest backoff is 15 s, so a reconnect fits well inside.
const WAIT: Duration = Duration::from_secs(120);

/// Polls `probe` every 250 ms until it returns `Some`, or panics with `what` and `context()`.
fn eventually<T>(
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {WAIT:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The cluster's container instances, described.
fn instances(berth: &Berth) -> Vec<Value> {
    let list = berth.ecs_ok("ListContainerInstances", &json!({"cluster": "default"}));
    let arns = list["containerInstanceArns"].clone();
    if arns.as_array().is_none_or(|a| a.is_empty()) {
        return vec![];
    }
    let d = berth.ecs_ok(
        "DescribeContainerInstances",
        &json!({"cluster": "default", "containerInstances": arns}),
    );
    d["containerInstances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for exactly one connected instance in `default` and returns it.
fn connected_instance(berth: &Berth, context: impl Fn() -> String) -> Value {
    eventually(
        "a connected container instance",
        || {
            let all = instances(berth);
            (all.len() == 1 && all[0]["agentConnected"] == true).then(|| all[0].clone())
        },
        context,
    )
}

fn describe_tasks(berth: &Berth, arns: &[String]) -> Vec<Value> {
    let d = berth.ecs_ok(
        "DescribeTasks",
        &json!({"cluster": "default", "tasks": arns}),
    );
    d["tasks"].as_array().cloned().unwrap_or_default()
}

fn wait_all(berth: &Berth, arns: &[String], status: &str, context: impl Fn() -> String) {
    eventually(
        &format!("every task {status}"),
        || {
            let tasks = describe_tasks(berth, arns);
            (tasks.len() == arns.len() && tasks.iter().all(|t| t["lastStatus"] == status))
                .then_some(())
        },
        || format!("tasks: {:?}\n{}", describe_tasks(berth, arns), context()),
    );
}

fn register(berth: &Berth, family: &str, container: Value, network_mode: &str) -> String {
    let out = berth.ecs_ok(
        "RegisterTaskDefinition",
        &json!({"family": family, "networkMode": network_mode, "containerDefinitions": [container]}),
    );
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .expect("task definition arn")
        .to_string()
}

fn run_tasks(berth: &Berth, td: &str, count: u32, cleanup: &mut DockerCleanup) -> Vec<String> {
    let out = berth.ecs_ok(
        "RunTask",
        &json!({"cluster": "default", "taskDefinition": td, "count": count}),
    );
    assert_eq!(out["failures"], json!([]), "{out}");
    let arns: Vec<String> = out["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["taskArn"].as_str().expect("taskArn").to_string())
        .collect();
    assert_eq!(arns.len(), count as usize, "{out}");
    cleanup.task_arns.extend(arns.iter().cloned());
    arns
}

fn stop_all(berth: &Berth, arns: &[String]) {
    for arn in arns {
        berth.ecs_ok(
            "StopTask",
            &json!({"cluster": "default", "task": arn, "reason": "fault test done"}),
        );
    }
}

/// Every container (running or not) carrying `label=value`, sorted full ids.
fn containers(label: &str, value: &str, all: bool) -> Vec<String> {
    let filter = format!("label={label}={value}");
    let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &filter];
    if all {
        args.push("-a");
    }
    let mut ids: Vec<String> = docker(&args)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// The running containers of `arns`, sorted.
fn running_containers_of(arns: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = arns
        .iter()
        .flat_map(|a| containers("com.amazonaws.ecs.task-arn", a, false))
        .collect();
    ids.sort();
    ids
}

/// The instance id berth puts in the `berth.container-instance` label: the ARN's last part.
fn instance_id(instance: &Value) -> String {
    let arn = instance["containerInstanceArn"]
        .as_str()
        .expect("containerInstanceArn");
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

fn remaining(instance: &Value, name: &str) -> i64 {
    instance["remainingResources"]
        .as_array()
        .expect("remainingResources")
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["integerValue"].as_i64())
        .unwrap_or_else(|| panic!("no {name} in {instance}"))
}

fn registered(instance: &Value, name: &str) -> i64 {
    instance["registeredResources"]
        .as_array()
        .expect("registeredResources")
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["integerValue"].as_i64())
        .unwrap_or_else(|| panic!("no {name} in {instance}"))
}

/// `berth server` with `default` created through the API (only `up` creates it).
fn server(opts: Opts) -> Berth {
    let berth = Berth::start(opts.server_only());
    berth.ecs_ok("CreateCluster", &json!({"clusterName": "default"}));
    berth
}

fn sleeper(image: &str) -> Value {
    json!({"name": "app", "image": image, "memory": 16, "essential": true,
           "entryPoint": ["/bin/sleep"], "command": ["600"], "stopTimeout": 2})
}

#[test]
fn a_sigkilled_agent_readopts_its_containers_without_duplicates() {
    let berth = server(Opts::default());
    let name = format!("faults-agent-{}", std::process::id());
    let image = import_busybox(&name);
    let mut cleanup = DockerCleanup {
        image: image.clone(),
        task_arns: vec![],
    };
    let agent_dir = berth.dir.path().join("agent");
    let mut agent = AgentProcess::start(&berth.endpoint, "default", &agent_dir);
    let ctx = |a: &AgentProcess| format!("agent output:\n{}", a.output());
    let instance = connected_instance(&berth, || ctx(&agent));
    let instance_arn = instance["containerInstanceArn"].clone();
    let label = instance_id(&instance);

    let td = register(&berth, &name, sleeper(&image), "bridge");
    let arns = run_tasks(&berth, &td, 3, &mut cleanup);
    wait_all(&berth, &arns, "RUNNING", || ctx(&agent));
    let before = running_containers_of(&arns);
    assert_eq!(before.len(), 3, "one container per task: {before:?}");
    assert_eq!(
        containers("berth.container-instance", &label, true),
        before,
        "the node has exactly the tasks' containers"
    );

    // The agent dies hard; its containers do not.
    agent.kill();
    assert_eq!(
        running_containers_of(&arns),
        before,
        "containers outlive their agent"
    );

    // The same data directory: the same node, the same containers.
    let agent = AgentProcess::start(&berth.endpoint, "default", &agent_dir);
    eventually(
        "the restarted agent registers",
        || agent.output().contains("registered as").then_some(()),
        || ctx(&agent),
    );
    let again = connected_instance(&berth, || ctx(&agent));
    assert_eq!(
        again["containerInstanceArn"], instance_arn,
        "the restarted agent is the same instance"
    );
    // Let the re-adopting agent look at its containers for a few supervisor ticks, then check
    // nothing was created twice and nothing was lost.
    eventually(
        "the instance counts its 3 running tasks",
        || {
            let all = instances(&berth);
            (all.len() == 1 && all[0]["runningTasksCount"] == 3).then_some(())
        },
        || format!("instances: {:?}\n{}", instances(&berth), ctx(&agent)),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(instances(&berth).len(), 1, "still one container instance");
    assert_eq!(
        containers("berth.container-instance", &label, true),
        before,
        "no container was created twice and none is an orphan\n{}",
        ctx(&agent)
    );
    assert_eq!(running_containers_of(&arns), before, "all still running");
    for t in describe_tasks(&berth, &arns) {
        assert_eq!(t["lastStatus"], "RUNNING", "{t}");
        let id = t["containers"][0]["runtimeId"].as_str().unwrap_or_default();
        assert!(before.iter().any(|b| b == id), "{t} runs in {before:?}");
    }

    stop_all(&berth, &arns);
    wait_all(&berth, &arns, "STOPPED", || ctx(&agent));
    eventually(
        "the containers exit",
        || running_containers_of(&arns).is_empty().then_some(()),
        || ctx(&agent),
    );
    drop(agent);
    drop(berth);
    drop(cleanup);
}

#[test]
fn a_sigkilled_server_leaves_tasks_serving_and_state_converges() {
    let berth = server(Opts::default());
    let name = format!("faults-server-{}", std::process::id());
    let image = import_busybox(&name);
    let mut cleanup = DockerCleanup {
        image: image.clone(),
        task_arns: vec![],
    };
    let agent_dir = berth.dir.path().join("agent");
    let agent = AgentProcess::start(&berth.endpoint, "default", &agent_dir);
    let ctx = || format!("agent output:\n{}", agent.output());
    connected_instance(&berth, ctx);

    // Two sleepers and one busybox httpd on a dynamic host port (bound to loopback).
    let td = register(&berth, &format!("{name}-sleep"), sleeper(&image), "bridge");
    let mut arns = run_tasks(&berth, &td, 2, &mut cleanup);
    let web = register(
        &berth,
        &format!("{name}-web"),
        json!({"name": "web", "image": image, "memory": 16, "essential": true, "stopTimeout": 2,
               "entryPoint": ["/bin/sh", "-c",
                   "/bin/busybox mkdir -p /www && echo berth-ok > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"],
               "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]}),
        "bridge",
    );
    arns.extend(run_tasks(&berth, &web, 1, &mut cleanup));
    wait_all(&berth, &arns, "RUNNING", ctx);
    let web_task = describe_tasks(&berth, &arns[2..]).remove(0);
    let port = web_task["containers"][0]["networkBindings"][0]["hostPort"]
        .as_u64()
        .unwrap_or_else(|| panic!("a host port: {web_task}")) as u16;
    let web_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let answers = || {
        try_http(web_addr, "GET", "/", &[], b"")
            .ok()
            .filter(|r| r.status == 200 && r.text().contains("berth-ok"))
            .map(|_| ())
    };
    eventually("the web task answers", answers, ctx);
    let before = running_containers_of(&arns);
    assert_eq!(before.len(), 3, "{before:?}");

    // The control plane dies hard; the tasks go on serving.
    let addr = berth.addr;
    let dir = berth.dir.clone();
    berth.kill();
    drop(berth);
    assert!(answers().is_some(), "the web task answers with no server");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        running_containers_of(&arns),
        before,
        "tasks outlive the server"
    );
    assert!(answers().is_some(), "the web task still answers");

    // Same data directory, same port: the agent comes back on its own (backoff) and the state
    // converges with nothing doubled.
    let berth = Berth::start(Opts::default().server_only().in_dir(dir).listen(addr));
    let instance = connected_instance(&berth, ctx);
    assert_eq!(instances(&berth).len(), 1);
    wait_all(&berth, &arns, "RUNNING", ctx);
    assert_eq!(
        containers("berth.container-instance", &instance_id(&instance), true),
        before,
        "no container was created twice and none is an orphan"
    );
    assert!(
        answers().is_some(),
        "the web task answers after the restart"
    );

    stop_all(&berth, &arns);
    wait_all(&berth, &arns, "STOPPED", ctx);
    eventually(
        "the containers exit",
        || running_containers_of(&arns).is_empty().then_some(()),
        ctx,
    );
    drop(agent);
    drop(berth);
    drop(cleanup);
}

#[test]
fn a_task_that_does_not_fit_is_refused_and_memory_comes_back_after_stop() {
    let berth = Berth::start(Opts::default());
    let name = format!("faults-resources-{}", std::process::id());
    let image = import_busybox(&name);
    let mut cleanup = DockerCleanup {
        image: image.clone(),
        task_arns: vec![],
    };
    let ctx = || format!("berth stderr:\n{}", berth.stderr());
    let instance = connected_instance(&berth, ctx);
    let total = registered(&instance, "MEMORY");
    let free = remaining(&instance, "MEMORY");
    assert!(total > 0 && free == total, "an idle node: {instance}");

    // Larger than what is left: refused, as ECS does, and nothing runs.
    let mut big = sleeper(&image);
    big["memory"] = json!(free + 1);
    let td = register(&berth, &format!("{name}-big"), big, "bridge");
    let out = berth.ecs_ok(
        "RunTask",
        &json!({"cluster": "default", "taskDefinition": td}),
    );
    assert_eq!(out["tasks"], json!([]), "{out}");
    assert_eq!(out["failures"][0]["reason"], "RESOURCE:MEMORY", "{out}");
    let listed = berth.ecs_ok("ListTasks", &json!({"cluster": "default"}));
    assert_eq!(listed["taskArns"], json!([]), "{listed}");
    assert_eq!(remaining(&instances(&berth)[0], "MEMORY"), free);

    // One that fits takes exactly its memory, and gives it back when it stops.
    let mut small = sleeper(&image);
    small["memory"] = json!(64);
    let td = register(&berth, &format!("{name}-small"), small, "bridge");
    let arns = run_tasks(&berth, &td, 1, &mut cleanup);
    assert_eq!(remaining(&instances(&berth)[0], "MEMORY"), free - 64);
    wait_all(&berth, &arns, "RUNNING", ctx);
    assert_eq!(remaining(&instances(&berth)[0], "MEMORY"), free - 64);
    stop_all(&berth, &arns);
    wait_all(&berth, &arns, "STOPPED", ctx);
    eventually(
        "the memory comes back",
        || (remaining(&instances(&berth)[0], "MEMORY") == free).then_some(()),
        || format!("instances: {:?}", instances(&berth)),
    );
    drop(berth);
    drop(cleanup);
}

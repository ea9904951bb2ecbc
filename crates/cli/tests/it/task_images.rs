//! Tasks whose images live in registries that want credentials, and tasks that name secrets:
//! berth's own registry under SigV4 (the agent pulls with the server's 12-hour registry login,
//! as ECS's agent pulls from ECR with its instance role), another registry through
//! `repositoryCredentials`, and `secrets` from Secrets Manager in the containers' environments.
//! Real Docker, the aws CLI and the docker CLI only.

use crate::ecr::{LocalImages, build_image, docker_ok, ecr, unique};
use crate::harness::{Berth, Opts};
use crate::tasks::{aws, describe, register, run_task, wait_for};
use serde_json::json;
use std::time::{Duration, Instant};

/// Removes the containers of the test's task definition families, even when it fails.
struct Families(Vec<String>);

impl Drop for Families {
    fn drop(&mut self) {
        for family in &self.0 {
            let ids = crate::tasks::docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.amazonaws.ecs.task-definition-family={family}"),
            ]);
            for id in ids.split_whitespace() {
                let _ = crate::tasks::docker(&["rm", "-f", id]);
            }
        }
    }
}

/// Logs in to `registry`'s registry with its own `ecr get-login-password`.
fn login(config: &std::path::Path, registry: &Berth) {
    let password = registry.aws_profile(&["ecr", "get-login-password"]);
    assert_eq!(password.code, 0, "{}", password.stderr);
    docker_ok(
        config,
        &[
            "login",
            "--username",
            "AWS",
            "--password-stdin",
            &registry.addr.to_string(),
        ],
        Some(password.stdout.trim()),
    );
}

fn create_secret(berth: &Berth, name: &str, value: &str) -> String {
    let out = aws(
        berth,
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            name,
            "--secret-string",
            value,
        ],
    );
    out["ARN"]
        .as_str()
        .unwrap_or_else(|| panic!("secret ARN in {out}"))
        .to_string()
}

/// The container's output so far (`docker logs`), once it contains `expected`.
fn logs_containing(runtime_id: &str, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("docker")
            .args(["logs", runtime_id])
            .output()
            .expect("docker logs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(expected) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tasks_pull_with_registry_credentials_and_receive_their_secrets() {
    let berth = Berth::start(Opts::default());
    // "Another registry": a second berth, under SigV4 too, whose login berth does not hold.
    let other = Berth::start(Opts::default().server_only());
    let config = berth.dir.path().join("docker");
    let work = berth.dir.path().join("image");
    std::fs::create_dir_all(&config).expect("mkdir docker config");
    let repo = unique("it/tasks");
    let base = format!("local/{}:1", unique("berth-task-images-base"));
    let own = format!("{}/{repo}:1", berth.addr);
    let foreign = format!("{}/{repo}:1", other.addr);
    let _images = LocalImages(vec![own.clone(), foreign.clone(), base.clone()]);
    let family = unique("task-images");
    let families: Vec<String> = ["own", "anonymous", "foreign", "missing-secret"]
        .iter()
        .map(|k| format!("{family}-{k}"))
        .collect();
    let _containers = Families(families.clone());

    // The same image pushed to both registries, then removed from the node: a task can only
    // get it by pulling, and a pull needs the registry's credentials.
    for registry in [&berth, &other] {
        ecr(registry, &["create-repository", "--repository-name", &repo]);
        login(&config, registry);
    }
    build_image(&config, &work, &base, &own, "from a registry\n");
    docker_ok(&config, &["tag", &own, &foreign], None);
    docker_ok(&config, &["push", &own], None);
    docker_ok(&config, &["push", &foreign], None);
    docker_ok(&config, &["rmi", &own, &foreign], None);
    let pushed = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    let digest = pushed["imageDetails"][0]["imageDigest"]
        .as_str()
        .expect("digest")
        .to_string();

    // berth's own registry, and two secrets: a whole secret and one JSON key of another.
    let whole = create_secret(&berth, &unique("it-whole"), "plain text secret");
    let keyed = create_secret(
        &berth,
        &unique("it-keyed"),
        r#"{"greeting":"hello from a secret","other":"x"}"#,
    );
    let td = register(
        &berth,
        &families[0],
        json!({"name": "app", "image": own, "memory": 32, "essential": true, "stopTimeout": 1,
               "entryPoint": ["/bin/sh", "-c"],
               "command": ["echo \"[$GREETING|$WHOLE|$PLAIN]\"; cat /file; sleep 300"],
               "environment": [{"name": "PLAIN", "value": "plain"},
                               {"name": "GREETING", "value": "overridden by the secret"}],
               "secrets": [{"name": "GREETING", "valueFrom": format!("{keyed}:greeting::")},
                           {"name": "WHOLE", "valueFrom": whole}]}),
    );
    let arn = run_task(&berth, &td);
    let running = wait_for(&berth, &arn, "RUNNING");
    let container = &running["containers"][0];
    assert_eq!(container["imageDigest"], digest.as_str(), "{running}");
    let id = container["runtimeId"].as_str().expect("runtimeId");
    let out = logs_containing(id, "from a registry");
    assert!(
        out.contains("[hello from a secret|plain text secret|plain]"),
        "{out}"
    );
    assert!(out.contains("from a registry"), "{out}");
    // Secrets do not show in the task's description.
    assert!(
        !describe(&berth, &arn)
            .to_string()
            .contains("hello from a secret"),
        "a secret value leaked into DescribeTasks"
    );

    // The other registry without credentials: the pull is refused.
    let td = register(
        &berth,
        &families[1],
        json!({"name": "app", "image": foreign, "memory": 32, "essential": true,
               "entryPoint": ["/bin/sh", "-c"], "command": ["sleep 300"]}),
    );
    let arn = run_task(&berth, &td);
    let stopped = wait_for(&berth, &arn, "STOPPED");
    assert_eq!(stopped["stopCode"], "TaskFailedToStart", "{stopped}");
    assert!(
        stopped["containers"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("CannotPullContainerError")),
        "{stopped}"
    );

    // With `repositoryCredentials` naming a secret that holds the other registry's login.
    let password = other.aws_profile(&["ecr", "get-login-password"]);
    assert_eq!(password.code, 0, "{}", password.stderr);
    let login_secret = create_secret(
        &berth,
        &unique("it-registry"),
        &json!({"username": "AWS", "password": password.stdout.trim()}).to_string(),
    );
    let td = register(
        &berth,
        &families[2],
        json!({"name": "app", "image": foreign, "memory": 32, "essential": true, "stopTimeout": 1,
               "repositoryCredentials": {"credentialsParameter": login_secret},
               "entryPoint": ["/bin/sh", "-c"], "command": ["cat /file; sleep 300"]}),
    );
    let arn = run_task(&berth, &td);
    let running = wait_for(&berth, &arn, "RUNNING");
    let id = running["containers"][0]["runtimeId"]
        .as_str()
        .expect("runtimeId");
    let out = logs_containing(id, "from a registry");
    assert!(out.contains("from a registry"), "{out}");

    // A secret that does not exist: the task cannot start, and says why.
    let missing = whole.replace(":secret:it-whole", ":secret:it-none");
    let td = register(
        &berth,
        &families[3],
        json!({"name": "app", "image": own, "memory": 32, "essential": true,
               "entryPoint": ["/bin/sh", "-c"], "command": ["sleep 300"],
               "secrets": [{"name": "NOPE", "valueFrom": missing}]}),
    );
    let arn = run_task(&berth, &td);
    let stopped = wait_for(&berth, &arn, "STOPPED");
    assert_eq!(stopped["stopCode"], "TaskFailedToStart", "{stopped}");
    assert!(
        stopped["stoppedReason"]
            .as_str()
            .is_some_and(|r| r.starts_with("ResourceInitializationError")),
        "{stopped}"
    );
}

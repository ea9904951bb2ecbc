//! The fake driver: Docker's lifecycle rules, the test hooks, and the call record, all without
//! a daemon or a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_runtime::{
    Call, ContainerId, ContainerSpec, ContainerStatus, EventKind, FakeOp, FakeRuntime, Health,
    HealthCheck, LogStream, LogsRequest, NetworkMode, PortMapping, RegistryAuth, Runtime,
    RuntimeError,
};
use futures_util::StreamExt;

const IMAGE: &str = "127.0.0.1:5000/app:1";

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("c-{name}"),
        image: IMAGE.into(),
        labels: BTreeMap::from([("task".into(), name.into())]),
        ports: vec![PortMapping::new(8080)],
        ..Default::default()
    }
}

/// A fake with the test image pulled, wrapped as the agent sees it.
async fn setup() -> (FakeRuntime, Runtime) {
    let fake = FakeRuntime::new();
    let rt = Runtime::from(fake.clone());
    rt.pull(IMAGE, None).await.unwrap();
    (fake, rt)
}

#[tokio::test]
async fn lifecycle_is_recorded_and_follows_docker_states() {
    let (fake, rt) = setup().await;
    fake.set_time(1_000);
    let id = rt.create(&spec("web")).await.unwrap();
    let st = rt.inspect(&id).await.unwrap();
    assert_eq!(st.status, ContainerStatus::Created);
    assert_eq!(st.exit_code, None);

    fake.set_time(2_000);
    rt.start(&id).await.unwrap();
    let st = rt.inspect(&id).await.unwrap();
    assert_eq!(st.status, ContainerStatus::Running);
    assert_eq!(st.started_at, Some(2_000));
    assert_eq!(st.host_ports.len(), 1);
    assert_eq!(st.host_ports[0].host_port, 32768);
    assert_eq!(st.host_ports[0].host_ip, "127.0.0.1");
    // Starting a running container is a no-op, as Docker's 304.
    rt.start(&id).await.unwrap();

    fake.advance(Duration::from_secs(5));
    rt.stop(&id, Duration::from_secs(30)).await.unwrap();
    let st = rt.inspect(&id).await.unwrap();
    assert_eq!(st.status, ContainerStatus::Exited);
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(st.finished_at, Some(7_000));
    assert!(st.host_ports.is_empty());
    // Stopping again is a no-op.
    rt.stop(&id, Duration::from_secs(30)).await.unwrap();

    rt.remove(&id).await.unwrap();
    assert!(matches!(
        rt.inspect(&id).await,
        Err(RuntimeError::NotFound(_))
    ));

    let calls = fake.take_calls();
    assert!(matches!(&calls[0], Call::Pull { image, auth: None } if image == IMAGE));
    assert!(matches!(&calls[1], Call::Create(s) if s.name == "c-web"));
    assert!(calls.contains(&Call::Stop {
        id: id.clone(),
        timeout: Duration::from_secs(30)
    }));
    assert!(calls.contains(&Call::Remove(id)));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn pulls_record_auth_and_missing_images_fail_as_pull_errors() {
    let (fake, rt) = setup().await;
    fake.set_missing_image("nope:1", "pull access denied for nope");
    let auth = RegistryAuth {
        username: "AWS".into(),
        password: "secret".into(),
        server: "127.0.0.1:5000".into(),
    };
    let err = rt.pull("nope:1", Some(&auth)).await.unwrap_err();
    assert_eq!(
        err,
        RuntimeError::Pull("pull access denied for nope".into())
    );
    assert!(fake.calls().contains(&Call::Pull {
        image: "nope:1".into(),
        auth: Some(auth)
    }));
    // A tag-less reference means :latest, and pulls are deterministic.
    let a = rt.pull("busybox", None).await.unwrap();
    let b = rt.pull("busybox:latest", None).await.unwrap();
    assert_eq!(a, b);
    assert!(a.id.starts_with("sha256:") && a.id.len() == 71);
    assert_eq!(rt.image("busybox").await.unwrap(), Some(a));
    assert_eq!(rt.image("other").await.unwrap(), None);
}

#[tokio::test]
async fn create_refuses_what_docker_refuses() {
    let (_fake, rt) = setup().await;
    let mut s = spec("a");
    s.image = "not-pulled:1".into();
    assert!(matches!(
        rt.create(&s).await,
        Err(RuntimeError::NotFound(_))
    ));

    rt.create(&spec("a")).await.unwrap();
    assert!(matches!(
        rt.create(&spec("a")).await,
        Err(RuntimeError::Conflict(_))
    ));

    let mut s = spec("b");
    s.network = NetworkMode::Container("pause".into());
    assert!(matches!(rt.create(&s).await, Err(RuntimeError::Invalid(_))));

    let mut s = spec("bad/name");
    s.ports.clear();
    assert!(matches!(rt.create(&s).await, Err(RuntimeError::Invalid(_))));
}

#[tokio::test]
async fn exits_kills_and_oom_report_codes_and_events() {
    let (fake, rt) = setup().await;
    let mut events = rt.events();
    let id = rt.create(&spec("a")).await.unwrap();
    rt.start(&id).await.unwrap();
    fake.exit(&id, 3);
    let st = rt.inspect(&id).await.unwrap();
    assert_eq!(
        (st.status, st.exit_code),
        (ContainerStatus::Exited, Some(3))
    );

    let kinds: Vec<EventKind> = [
        events.next().await,
        events.next().await,
        events.next().await,
    ]
    .into_iter()
    .map(|e| e.unwrap().unwrap().kind)
    .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Create,
            EventKind::Start,
            EventKind::Die { exit_code: Some(3) }
        ]
    );

    // Restart, then kill: SIGKILL is 128 + 9.
    rt.start(&id).await.unwrap();
    rt.kill(&id, "SIGKILL").await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap().exit_code, Some(137));
    assert!(matches!(
        rt.kill(&id, "SIGKILL").await,
        Err(RuntimeError::Conflict(_))
    ));

    rt.start(&id).await.unwrap();
    rt.kill(&id, "HUP").await.unwrap();
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Running
    );
    assert!(matches!(
        rt.kill(&id, "SIGNOPE").await,
        Err(RuntimeError::Invalid(_))
    ));

    fake.oom(&id);
    let st = rt.inspect(&id).await.unwrap();
    assert!(st.oom_killed);
    assert_eq!(st.exit_code, Some(137));

    // Per-container stop exit codes.
    rt.start(&id).await.unwrap();
    fake.set_container_stop_exit_code(&id, 143);
    rt.stop(&id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap().exit_code, Some(143));
}

#[tokio::test]
async fn health_checks_start_as_starting_and_follow_the_hook() {
    let (fake, rt) = setup().await;
    let mut s = spec("h");
    s.health_check = Some(HealthCheck {
        test: vec!["CMD-SHELL".into(), "true".into()],
        interval_secs: Some(5),
        timeout_secs: None,
        retries: None,
        start_period_secs: None,
    });
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(
        rt.inspect(&id).await.unwrap().health,
        Some(Health::Starting)
    );
    fake.set_health(&id, Health::Healthy);
    assert_eq!(rt.inspect(&id).await.unwrap().health, Some(Health::Healthy));

    let plain = rt.create(&spec("p")).await.unwrap();
    rt.start(&plain).await.unwrap();
    assert_eq!(rt.inspect(&plain).await.unwrap().health, None);
}

#[tokio::test]
async fn host_ports_clash_and_network_joins_need_a_running_holder() {
    let (_fake, rt) = setup().await;
    let fixed = |name: &str| {
        let mut s = spec(name);
        s.ports[0].host_port = Some(8080);
        s
    };
    let a = rt.create(&fixed("a")).await.unwrap();
    let b = rt.create(&fixed("b")).await.unwrap();
    rt.start(&a).await.unwrap();
    assert!(matches!(rt.start(&b).await, Err(RuntimeError::Conflict(_))));
    let st = rt.inspect(&b).await.unwrap();
    assert_eq!(st.status, ContainerStatus::Created);
    assert!(st.error.unwrap().contains("already allocated"));

    // awsvpc shape: a pause container holds the namespace, the app joins it.
    let mut pause = spec("pause");
    pause.ports.clear();
    let pause = rt.create(&pause).await.unwrap();
    let mut app = spec("app");
    app.ports.clear();
    app.network = NetworkMode::Container(pause.to_string());
    let app = rt.create(&app).await.unwrap();
    assert!(matches!(
        rt.start(&app).await,
        Err(RuntimeError::Conflict(_))
    ));
    rt.start(&pause).await.unwrap();
    rt.start(&app).await.unwrap();
    assert_eq!(rt.inspect(&app).await.unwrap().ip_address, None);
}

#[tokio::test]
async fn list_filters_by_every_label() {
    let (_fake, rt) = setup().await;
    let mut s = spec("one");
    s.labels.insert("cluster".into(), "c1".into());
    let one = rt.create(&s).await.unwrap();
    let mut s = spec("two");
    s.labels.insert("cluster".into(), "c2".into());
    rt.create(&s).await.unwrap();

    let found = rt.list(&[("cluster", "c1")]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, one);
    assert_eq!(found[0].name, "c-one");
    assert_eq!(rt.list(&[]).await.unwrap().len(), 2);
    assert!(
        rt.list(&[("cluster", "c1"), ("task", "two")])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn logs_replay_and_follow_until_exit() {
    let (fake, rt) = setup().await;
    let id = rt.create(&spec("l")).await.unwrap();
    rt.start(&id).await.unwrap();
    fake.set_time(10);
    fake.push_log(&id, LogStream::Stdout, "one\n");
    fake.set_time(20);
    fake.push_log(&id, LogStream::Stderr, "two\n");

    let all: Vec<_> = rt.logs(&id, LogsRequest::default()).collect().await;
    assert_eq!(all.len(), 2);
    let second = all[1].as_ref().unwrap();
    assert_eq!(second.stream, LogStream::Stderr);
    assert_eq!(&second.bytes[..], b"two\n");
    assert_eq!(second.timestamp_millis, 20);

    let since: Vec<_> = rt
        .logs(
            &id,
            LogsRequest {
                follow: false,
                since_millis: Some(15),
            },
        )
        .collect()
        .await;
    assert_eq!(since.len(), 1);

    let mut follow = rt.logs(
        &id,
        LogsRequest {
            follow: true,
            since_millis: None,
        },
    );
    assert_eq!(&follow.next().await.unwrap().unwrap().bytes[..], b"one\n");
    assert_eq!(&follow.next().await.unwrap().unwrap().bytes[..], b"two\n");
    let writer = {
        let fake = fake.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            fake.push_log(&id, LogStream::Stdout, "three\n");
            fake.exit(&id, 0);
        })
    };
    assert_eq!(&follow.next().await.unwrap().unwrap().bytes[..], b"three\n");
    // The stream ends once the container has exited and everything was read.
    assert!(follow.next().await.is_none());
    writer.await.unwrap();

    let missing = ContainerId::from("nope");
    let first = rt.logs(&missing, LogsRequest::default()).next().await;
    assert!(matches!(first, Some(Err(RuntimeError::NotFound(_)))));
}

#[tokio::test]
async fn failures_can_be_injected() {
    let (fake, rt) = setup().await;
    fake.fail_next(FakeOp::Start, RuntimeError::Other("boom".into()));
    let id = rt.create(&spec("f")).await.unwrap();
    assert_eq!(rt.start(&id).await, Err(RuntimeError::Other("boom".into())));
    rt.start(&id).await.unwrap();

    fake.set_unavailable(true);
    assert!(matches!(rt.info().await, Err(RuntimeError::Unavailable(_))));
    assert!(matches!(
        rt.inspect(&id).await,
        Err(RuntimeError::Unavailable(_))
    ));
    fake.set_unavailable(false);
    let info = rt.info().await.unwrap();
    assert_eq!(
        (info.os_type.as_str(), info.arch.as_str()),
        ("linux", "x86_64")
    );

    let stats = rt.stats(&id).await.unwrap();
    assert_eq!(stats.online_cpus, 2);
    assert_eq!(stats.memory_limit_bytes, 4096 * 1024 * 1024);
}

#[tokio::test]
async fn stats_are_settable_and_a_cpu_load_advances_the_counters_per_call() {
    let (fake, rt) = setup().await;
    let id = rt.create(&spec("busy")).await.unwrap();
    rt.start(&id).await.unwrap();
    let set = berth_runtime::StatsSample {
        cpu_total_ns: 5,
        system_cpu_ns: 7,
        online_cpus: 4,
        memory_usage_bytes: 3 * 1024 * 1024,
        memory_limit_bytes: 8 * 1024 * 1024,
        ..Default::default()
    };
    fake.set_stats(&id, set);
    assert_eq!(rt.stats(&id).await.unwrap(), set);
    assert_eq!(
        rt.stats(&id).await.unwrap(),
        set,
        "no load: the counters stay"
    );

    fake.set_cpu_load(&id, 1.5);
    let a = rt.stats(&id).await.unwrap();
    let b = rt.stats(&id).await.unwrap();
    // One second of host time per call on 4 CPUs, 1.5 s of it the container's.
    assert_eq!(b.system_cpu_ns - a.system_cpu_ns, 4_000_000_000);
    assert_eq!(b.cpu_total_ns - a.cpu_total_ns, 1_500_000_000);
    assert_eq!(a.system_cpu_ns - set.system_cpu_ns, 4_000_000_000);
    assert_eq!(b.memory_usage_bytes, set.memory_usage_bytes);
    assert!(
        fake.calls()
            .iter()
            .filter(|c| matches!(c, Call::Stats(s) if *s == id))
            .count()
            >= 4
    );
}

#[tokio::test]
async fn volumes_are_created_and_refused_removal_while_used() {
    let (fake, rt) = setup().await;
    rt.create_volume(&berth_runtime::VolumeSpec {
        name: "data".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut s = spec("v");
    s.mounts.push(berth_runtime::Mount::Volume {
        name: "data".into(),
        container_path: "/data".into(),
        read_only: false,
    });
    let id = rt.create(&s).await.unwrap();
    assert!(matches!(
        rt.remove_volume("data").await,
        Err(RuntimeError::Conflict(_))
    ));
    rt.remove(&id).await.unwrap();
    rt.remove_volume("data").await.unwrap();
    assert!(fake.volumes().is_empty());
}

#[tokio::test]
async fn raw_stats_shape_the_sample_as_docker_does() {
    let (fake, rt) = setup().await;
    let id = rt.create(&spec("raw")).await.unwrap();
    rt.start(&id).await.unwrap();
    fake.set_stats(
        &id,
        berth_runtime::StatsSample {
            cpu_total_ns: 7,
            system_cpu_ns: 70,
            online_cpus: 2,
            memory_usage_bytes: 5,
            memory_limit_bytes: 50,
            network_rx_bytes: 3,
            network_tx_bytes: 4,
        },
    );
    let doc = rt.raw_stats(&id).await.unwrap();
    assert_eq!(doc["cpu_stats"]["cpu_usage"]["total_usage"], 7);
    assert_eq!(doc["cpu_stats"]["system_cpu_usage"], 70);
    assert_eq!(doc["memory_stats"]["usage"], 5);
    assert_eq!(doc["networks"]["eth0"]["tx_bytes"], 4);
    assert_eq!(doc["name"], "/c-raw");
    assert_eq!(doc["read"], "2023-11-14T22:13:20.000000000Z");
    assert!(fake.calls().contains(&Call::Stats(id.clone())));
    fake.fail_next(FakeOp::Stats, RuntimeError::Other("boom".into()));
    assert!(rt.raw_stats(&id).await.is_err());

    assert_eq!(rt.bridge_gateway().await.unwrap(), None);
    fake.set_bridge_gateway(Some(std::net::Ipv4Addr::new(172, 17, 0, 1).into()));
    assert_eq!(
        rt.bridge_gateway().await.unwrap(),
        Some(std::net::Ipv4Addr::new(172, 17, 0, 1).into())
    );
}

//! The Docker driver against the local engine. These tests need Docker and fail, never skip,
//! when it does not answer: CI starts dockerd before running them.
//!
//! Images come from the machine itself (busybox-static packed as a root filesystem and
//! imported through the driver), since nothing can be pulled from the internet here. Every test
//! labels its containers uniquely and a guard removes them, even when the test fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_runtime::{
    ContainerId, ContainerSpec, ContainerState, ContainerStatus, DockerRuntime, EventKind, Health,
    HealthCheck, LogsRequest, Mount, NetworkMode, PortMapping, Runtime, RuntimeError,
};
use bytes::Bytes;
use futures_util::StreamExt;

const LABEL: &str = "berth.test";
const IMAGE: &str = "berth-test/busybox:1";

/// Applets linked into the test image.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "wget", "httpd", "cat", "true", "false",
];

/// One test's view of Docker: the runtime, a label unique to the test, and cleanup on drop.
struct Harness {
    rt: Runtime,
    docker: DockerRuntime,
    tag: String,
}

impl Harness {
    async fn new(test: &str) -> Harness {
        static N: AtomicUsize = AtomicUsize::new(0);
        let docker = DockerRuntime::connect()
            .await
            .expect("Docker Engine must be reachable on /var/run/docker.sock for these tests");
        import_busybox(&docker).await;
        let tag = format!(
            "{test}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        Harness {
            rt: Runtime::from(docker.clone()),
            docker,
            tag,
        }
    }

    /// A spec for this test: unique name, the test label, the busybox image.
    fn spec(&self, name: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: format!("{}-{name}", self.tag),
            image: IMAGE.into(),
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            labels: BTreeMap::from([(LABEL.into(), self.tag.clone())]),
            ..Default::default()
        }
    }

    async fn run(&self, spec: &ContainerSpec) -> ContainerId {
        let id = self.rt.create(spec).await.unwrap();
        self.rt.start(&id).await.unwrap();
        id
    }
}

impl Drop for Harness {
    /// Removes every container carrying this test's label, and its volume. Runs on its own thread and runtime
    /// because the test's runtime may be the one unwinding.
    fn drop(&mut self) {
        let tag = self.tag.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(docker) = DockerRuntime::connect().await else {
                    return;
                };
                if let Ok(found) = docker.list(&[(LABEL, tag.as_str())]).await {
                    for c in found {
                        let _ = docker.remove(&c.id).await;
                    }
                }
                // The one volume a test may make is named after its tag.
                let _ = docker.remove_volume(&format!("{tag}-data")).await;
            });
        })
        .join();
    }
}

/// Packs busybox-static and its applet links as a root filesystem tar and imports it.
async fn import_busybox(docker: &DockerRuntime) {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static must be installed");
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["bin", "tmp", "etc"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let bytes = Bytes::from(tar.into_inner().unwrap());
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    let image = docker.import_image(IMAGE, stream).await.unwrap();
    assert!(image.id.starts_with("sha256:"), "{image:?}");
}

/// Polls `f` every 200 ms until it yields a value, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn exited(rt: &Runtime, id: &ContainerId) -> ContainerState {
    eventually(Duration::from_secs(30), "the container to exit", || async {
        let st = rt.inspect(id).await.unwrap();
        st.status.is_stopped().then_some(st)
    })
    .await
}

#[tokio::test]
async fn info_reports_the_node() {
    let h = Harness::new("info").await;
    let info = h.rt.info().await.unwrap();
    assert!(info.cpus > 0 && info.memory_mib > 0, "{info:?}");
    assert_eq!(info.os_type, "linux");
    assert!(
        ["x86_64", "arm64"].contains(&info.arch.as_str()),
        "{info:?}"
    );
    assert!(!info.runtime_version.is_empty());
    assert_eq!(info.api_version, h.docker.api_version());
}

#[tokio::test]
async fn runs_inspects_logs_samples_and_stops_a_container() {
    let h = Harness::new("run").await;
    let mut spec = h.spec("web", "echo hi $GREETING; sleep 30");
    spec.env = vec![("GREETING".into(), "there".into())];
    spec.labels
        .insert("com.amazonaws.ecs.container-name".into(), "web".into());
    spec.ports = vec![PortMapping::new(8080)];
    spec.memory_limit_mib = Some(64);
    spec.init = true;
    let id = h.run(&spec).await;

    let st = h.rt.inspect(&id).await.unwrap();
    assert_eq!(st.status, ContainerStatus::Running);
    assert_eq!(st.name, spec.name);
    assert_eq!(st.labels, spec.labels);
    assert!(st.started_at.is_some() && st.exit_code.is_none(), "{st:?}");
    let port = st
        .host_ports
        .iter()
        .find(|p| p.container_port == 8080)
        .unwrap_or_else(|| panic!("no host port: {st:?}"));
    assert_eq!(port.host_ip, "127.0.0.1");
    assert!(port.host_port > 0);

    let line = eventually(Duration::from_secs(10), "the log line", || async {
        let chunks: Vec<_> = h.rt.logs(&id, LogsRequest::default()).collect().await;
        chunks
            .into_iter()
            .filter_map(Result::ok)
            .find(|c| c.bytes.starts_with(b"hi"))
    })
    .await;
    assert_eq!(&line.bytes[..], b"hi there\n");
    assert!(line.timestamp_millis > 0);

    let stats = h.rt.stats(&id).await.unwrap();
    assert!(stats.online_cpus > 0, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, 64 * 1024 * 1024);

    let listed = h.rt.list(&[(LABEL, h.tag.as_str())]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].status, ContainerStatus::Running);

    // With init, sh is not PID 1, so SIGTERM ends it at once: 128 + 15.
    h.rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    let st = h.rt.inspect(&id).await.unwrap();
    assert_eq!(st.status, ContainerStatus::Exited);
    assert_eq!(st.exit_code, Some(143));
    assert!(st.finished_at >= st.started_at);
    assert!(st.host_ports.is_empty());

    h.rt.remove(&id).await.unwrap();
    assert!(matches!(
        h.rt.inspect(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn stats_count_a_busy_containers_cpu_time_and_its_memory() {
    let h = Harness::new("stats").await;
    let mut spec = h.spec("busy", "while :; do :; done");
    spec.memory_limit_mib = Some(32);
    let id = h.run(&spec).await;
    let first = h.rt.stats(&id).await.unwrap();
    assert!(first.online_cpus > 0, "{first:?}");
    assert_eq!(first.memory_limit_bytes, 32 * 1024 * 1024);
    assert!(
        first.memory_usage_bytes > 0 && first.memory_usage_bytes < first.memory_limit_bytes,
        "{first:?}"
    );
    // The counters are cumulative: a busy loop's CPU time and the host's both grow.
    let later = eventually(Duration::from_secs(30), "more CPU time", || async {
        let s = h.rt.stats(&id).await.unwrap();
        (s.cpu_total_ns > first.cpu_total_ns && s.system_cpu_ns > first.system_cpu_ns).then_some(s)
    })
    .await;
    assert!(later.cpu_total_ns - first.cpu_total_ns <= later.system_cpu_ns - first.system_cpu_ns);
    h.rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn stop_kills_after_the_timeout_and_exit_codes_are_reported() {
    let h = Harness::new("exit").await;
    let mut events = h.rt.events();

    // sh as PID 1 ignores SIGTERM, so stop has to SIGKILL once the timeout passes.
    let stubborn = h.run(&h.spec("stubborn", "sleep 30")).await;
    h.rt.stop(&stubborn, Duration::from_secs(1)).await.unwrap();
    assert_eq!(h.rt.inspect(&stubborn).await.unwrap().exit_code, Some(137));

    let three = h.run(&h.spec("three", "exit 3")).await;
    let st = exited(&h.rt, &three).await;
    assert_eq!(st.exit_code, Some(3));
    assert!(!st.oom_killed);

    let die = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.id == three && matches!(e.kind, EventKind::Die { .. }) {
                return e;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("a die event for the container");
    assert_eq!(die.kind, EventKind::Die { exit_code: Some(3) });
    assert_eq!(die.labels.get(LABEL), Some(&h.tag));

    let killed = h.run(&h.spec("killed", "sleep 30")).await;
    h.rt.kill(&killed, "SIGKILL").await.unwrap();
    assert_eq!(exited(&h.rt, &killed).await.exit_code, Some(137));
    assert!(matches!(
        h.rt.kill(&killed, "SIGKILL").await,
        Err(RuntimeError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_passing_health_check_becomes_healthy() {
    let h = Harness::new("health").await;
    let mut events = h.rt.events();
    let mut spec = h.spec("healthy", "sleep 30");
    spec.health_check = Some(HealthCheck {
        test: vec!["CMD-SHELL".into(), "true".into()],
        interval_secs: Some(1),
        timeout_secs: Some(5),
        retries: Some(3),
        start_period_secs: None,
    });
    let id = h.run(&spec).await;
    eventually(Duration::from_secs(30), "a healthy container", || async {
        (h.rt.inspect(&id).await.unwrap().health == Some(Health::Healthy)).then_some(())
    })
    .await;
    // Docker spells the action `health_status: healthy`; the driver reports it typed.
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.id == id && e.kind == EventKind::HealthStatus(Health::Healthy) {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("a health_status event");
}

#[tokio::test]
async fn pulling_an_unreachable_image_is_a_pull_error() {
    let h = Harness::new("pull").await;
    match h.rt.pull("127.0.0.1:9/nope:1", None).await {
        Err(RuntimeError::Pull(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected a pull error, got {other:?}"),
    }
    assert_eq!(h.rt.image("127.0.0.1:9/nope:1").await.unwrap(), None);
    assert!(h.rt.image(IMAGE).await.unwrap().is_some());
}

#[tokio::test]
async fn containers_share_a_network_namespace_and_see_bind_mounts() {
    let h = Harness::new("netns").await;
    // awsvpc shape: the pause container holds the namespace and publishes the port; the app
    // joins and listens in it.
    let mut pause = h.spec("pause", "sleep 30");
    pause.init = true;
    pause.ports = vec![PortMapping::new(8080)];
    let pause = h.run(&pause).await;

    let dir = std::env::temp_dir().join(format!("{}-www", h.tag));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "from the host\n").unwrap();
    let mut app = h.spec("app", "httpd -f -p 8080 -h /www");
    app.network = NetworkMode::Container(pause.to_string());
    app.mounts = vec![Mount::Bind {
        host_path: dir.to_string_lossy().into_owned(),
        container_path: "/www".into(),
        read_only: true,
    }];
    app.readonly_rootfs = true;
    let app = h.run(&app).await;
    assert_eq!(
        h.rt.inspect(&app).await.unwrap().status,
        ContainerStatus::Running
    );

    let port = h.rt.inspect(&pause).await.unwrap().host_ports[0].host_port;
    let body = eventually(Duration::from_secs(15), "the app to answer", || async {
        http_get(port).await
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(body.contains("from the host"), "{body}");
}

/// A minimal HTTP GET on loopback (no HTTP client in the workspace's test deps).
async fn http_get(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.starts_with("HTTP/1.").then_some(text)
}

#[tokio::test]
async fn followed_logs_end_when_the_container_exits() {
    let h = Harness::new("follow").await;
    let id = h
        .run(&h.spec("talker", "echo one; sleep 1; echo two >&2"))
        .await;
    let request = LogsRequest {
        follow: true,
        since_millis: None,
    };
    let chunks: Vec<_> = tokio::time::timeout(
        Duration::from_secs(30),
        h.rt.logs(&id, request).collect::<Vec<_>>(),
    )
    .await
    .expect("the followed stream to end with the container");
    let chunks: Vec<_> = chunks.into_iter().map(Result::unwrap).collect();
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(&chunks[0].bytes[..], b"one\n");
    assert_eq!(chunks[1].stream, berth_runtime::LogStream::Stderr);
    assert!(chunks[1].timestamp_millis >= chunks[0].timestamp_millis);

    let missing = ContainerId::from("berth-test-no-such-container");
    let first = h.rt.logs(&missing, LogsRequest::default()).next().await;
    assert!(
        matches!(first, Some(Err(RuntimeError::NotFound(_)))),
        "{first:?}"
    );
}

#[tokio::test]
async fn volumes_are_created_mounted_and_removed() {
    let h = Harness::new("vol").await;
    let name = format!("{}-data", h.tag);
    let spec = berth_runtime::VolumeSpec {
        name: name.clone(),
        labels: BTreeMap::from([(LABEL.into(), h.tag.clone())]),
        ..Default::default()
    };
    h.rt.create_volume(&spec).await.unwrap();
    let mut writer = h.spec("writer", "echo kept > /data/f");
    writer.mounts = vec![Mount::Volume {
        name: name.clone(),
        container_path: "/data".into(),
        read_only: false,
    }];
    let w = h.run(&writer).await;
    assert_eq!(exited(&h.rt, &w).await.exit_code, Some(0));
    let mut reader = h.spec("reader", "cat /data/f");
    reader.mounts = vec![Mount::VolumesFrom {
        container: w.to_string(),
        read_only: true,
    }];
    let r = h.run(&reader).await;
    assert_eq!(exited(&h.rt, &r).await.exit_code, Some(0));
    let out: Vec<_> = h.rt.logs(&r, LogsRequest::default()).collect().await;
    assert_eq!(&out[0].as_ref().unwrap().bytes[..], b"kept\n");

    assert!(matches!(
        h.rt.remove_volume(&name).await,
        Err(RuntimeError::Conflict(_))
    ));
    h.rt.remove(&w).await.unwrap();
    h.rt.remove(&r).await.unwrap();
    h.rt.remove_volume(&name).await.unwrap();
}

#[tokio::test]
async fn an_absent_daemon_is_unavailable() {
    match DockerRuntime::connect_socket("/nonexistent/docker.sock").await {
        Err(RuntimeError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a socket that does not exist"),
    }
}

#[tokio::test]
async fn raw_stats_are_dockers_document_and_the_bridge_has_a_gateway() {
    let h = Harness::new("rawstats").await;
    let mut spec = h.spec("busy", "while :; do :; done");
    spec.memory_limit_mib = Some(32);
    let id = h.run(&spec).await;
    let doc = h.rt.raw_stats(&id).await.unwrap();
    // Docker's own field names, and a second sample taken so a CPU rate can be computed.
    assert_eq!(doc["memory_stats"]["limit"], 32 * 1024 * 1024, "{doc}");
    assert!(
        doc["cpu_stats"]["cpu_usage"]["total_usage"].as_u64() > Some(0),
        "{doc}"
    );
    assert!(
        doc["precpu_stats"]["system_cpu_usage"].as_u64() > Some(0),
        "{doc}"
    );
    assert!(
        doc["read"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{doc}"
    );
    assert!(doc["networks"]["eth0"]["rx_bytes"].is_u64(), "{doc}");
    let gateway =
        h.rt.bridge_gateway()
            .await
            .unwrap()
            .expect("a bridge gateway");
    assert!(gateway.is_ipv4() && !gateway.is_unspecified(), "{gateway}");
    h.rt.remove(&id).await.unwrap();
}

//! Component test of the data plane: the ELBv2 API (`berth-elbv2`) on an in-memory store
//! writes the records, `DataPlane` serves them on loopback in this process, a tiny backend
//! answers, and `take_metrics` reports what the requests did.

use berth_aws::RequestContext;
use berth_aws::query::QueryService;
use berth_elbv2::Elbv2;
use berth_lb::{DataPlane, LbMetric, NoInstances, Options};
use berth_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn ctx() -> RequestContext {
    RequestContext {
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        request_id: "test".into(),
        access_key_id: None,
    }
}

async fn ok(elb: &Elbv2, op: &str, input: Value) -> Value {
    elb.call(ctx(), op, input)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// Answers `GET /missing` with 404 and anything else with 200, on keep-alive connections;
/// keeps the most requests any one connection carried.
async fn backend() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let most = Arc::new(AtomicUsize::new(0));
    let most_per_connection = most.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let most = most_per_connection.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut served = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim_end().is_empty() {
                            break;
                        }
                    }
                    let status = if line.contains(" /missing ") {
                        "404 Not Found"
                    } else {
                        "200 OK"
                    };
                    let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nhi");
                    if write.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    served += 1;
                    most.fetch_max(served, Ordering::SeqCst);
                }
            });
        }
    });
    (port, most)
}

/// Requests on one keep-alive connection, one after the other; their status codes.
async fn statuses_on_one_connection(port: u16, paths: &[&str]) -> Vec<u16> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut statuses = Vec::new();
    for path in paths {
        write
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        statuses.push(
            line.split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("no status: {line}")),
        );
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await.expect("header");
            if h.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.expect("body");
    }
    statuses
}

/// One request on a fresh connection; the status code.
async fn status_of(port: u16, path: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {out}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The ELBv2 API and a running data plane over one in-memory store, with the given idle timeout.
fn start(idle_timeout: Duration) -> (Elbv2, DataPlane, tokio::task::JoinHandle<()>) {
    let store: berth_store::AnyStore = SqliteStore::open_in_memory().expect("store").into();
    let elb = Elbv2::new(store.clone(), [7u8; 32], berth_elbv2::system_clock());
    let plane = DataPlane::new(
        store,
        Options {
            partitions: vec!["000000000000/us-east-1".into()],
            idle_timeout,
            ..Options::default()
        },
        Arc::new(NoInstances),
        berth_elbv2::system_clock(),
    );
    let running = plane.clone();
    let task = tokio::spawn(async move { running.run().await });
    (elb, plane, task)
}

fn sum_of(metrics: &[LbMetric], name: &str, group: bool) -> (f64, u64) {
    metrics
        .iter()
        .filter(|m| m.name == name && m.target_group.is_some() == group)
        .fold((0.0, 0), |(s, n), m| (s + m.sum, n + m.samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_routed_and_counted_per_load_balancer_and_target_group() {
    let (elb, plane, task) = start(Duration::from_secs(2));

    let (backend_port, most_per_connection) = backend().await;
    let lb = ok(&elb, "CreateLoadBalancer", json!({"Name": "web"})).await["LoadBalancers"][0]
        ["LoadBalancerArn"]
        .as_str()
        .expect("arn")
        .to_string();
    let tg_of = |v: Value| {
        v["TargetGroups"][0]["TargetGroupArn"]
            .as_str()
            .expect("arn")
            .to_string()
    };
    let tg = tg_of(
        ok(
            &elb,
            "CreateTargetGroup",
            json!({"Name": "blue", "Protocol": "HTTP", "Port": 80, "TargetType": "ip", "VpcId": "vpc-1"}),
        )
        .await,
    );
    let empty = tg_of(
        ok(
            &elb,
            "CreateTargetGroup",
            json!({"Name": "empty", "Protocol": "HTTP", "Port": 80, "TargetType": "ip", "VpcId": "vpc-1"}),
        )
        .await,
    );
    ok(
        &elb,
        "RegisterTargets",
        json!({"TargetGroupArn": tg, "Targets": [{"Id": "127.0.0.1", "Port": backend_port}]}),
    )
    .await;
    // No listener yet: the change feed has been read, and no worker thread runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!plane.serving(), "workers started without a listener");
    let port = free_port();
    let listener = ok(
        &elb,
        "CreateListener",
        json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": port,
               "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}),
    )
    .await["Listeners"][0]["ListenerArn"]
        .as_str()
        .expect("arn")
        .to_string();
    ok(
        &elb,
        "CreateRule",
        json!({"ListenerArn": listener, "Priority": 1,
               "Conditions": [{"Field": "path-pattern", "Values": ["/empty"]}],
               "Actions": [{"Type": "forward", "TargetGroupArn": empty}]}),
    )
    .await;

    // The change feed brings the listener up; wait for its rule too.
    let mut ready = false;
    for _ in 0..100 {
        if plane.bound().contains_key(&port) && status_of(port, "/empty").await == 503 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the listener never served the rule");
    assert!(plane.serving());
    plane.take_metrics();

    // One client connection stays on one worker, whose pooled target connection carries every
    // request rather than a new one each.
    assert_eq!(
        statuses_on_one_connection(port, &["/", "/", "/missing"]).await,
        [200, 200, 404]
    );
    assert!(
        most_per_connection.load(Ordering::SeqCst) >= 3,
        "target connections are not reused: at most {} requests on one",
        most_per_connection.load(Ordering::SeqCst)
    );
    assert_eq!(status_of(port, "/").await, 200);
    assert_eq!(status_of(port, "/empty").await, 503);

    let m = plane.take_metrics();
    assert!(
        m.iter().all(|x| x.load_balancer.starts_with("app/web/")),
        "{m:?}"
    );
    assert_eq!(sum_of(&m, "RequestCount", false).0, 5.0, "{m:?}");
    assert_eq!(sum_of(&m, "RequestCount", true).0, 5.0, "{m:?}");
    assert_eq!(
        sum_of(&m, "HTTPCode_Target_2XX_Count", false).0,
        3.0,
        "{m:?}"
    );
    assert_eq!(
        sum_of(&m, "HTTPCode_Target_2XX_Count", true).0,
        3.0,
        "{m:?}"
    );
    assert_eq!(
        sum_of(&m, "HTTPCode_Target_4XX_Count", true).0,
        1.0,
        "{m:?}"
    );
    assert_eq!(sum_of(&m, "HTTPCode_ELB_5XX_Count", false).0, 1.0, "{m:?}");
    assert_eq!(sum_of(&m, "HTTPCode_ELB_503_Count", true).0, 1.0, "{m:?}");
    let (seconds, samples) = sum_of(&m, "TargetResponseTime", true);
    assert_eq!(samples, 4, "{m:?}");
    assert!(seconds > 0.0, "{m:?}");
    let groups: Vec<&str> = m.iter().filter_map(|x| x.target_group.as_deref()).collect();
    assert!(
        groups.iter().any(|g| g.starts_with("targetgroup/blue/")),
        "{groups:?}"
    );
    assert!(
        groups.iter().any(|g| g.starts_with("targetgroup/empty/")),
        "{groups:?}"
    );
    assert!(plane.take_metrics().is_empty(), "deltas reset");

    // Deleting the listener closes the port.
    ok(&elb, "DeleteListener", json!({"ListenerArn": listener})).await;
    let mut closed = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the port stayed open");
    task.abort();
}

/// Reads until the peer closes; what it sent.
async fn until_closed(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the connection stayed open: {read:?}"
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_client_connections_are_closed_and_busy_ones_are_not() {
    let (elb, plane, task) = start(Duration::from_secs(1));
    let lb = ok(&elb, "CreateLoadBalancer", json!({"Name": "idle"})).await["LoadBalancers"][0]
        ["LoadBalancerArn"]
        .as_str()
        .expect("arn")
        .to_string();
    let port = free_port();
    ok(
        &elb,
        "CreateListener",
        json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": port,
               "DefaultActions": [{"Type": "fixed-response",
                   "FixedResponseConfig": {"StatusCode": "200"}}]}),
    )
    .await;
    let mut ready = false;
    for _ in 0..100 {
        if plane.bound().contains_key(&port) && status_of(port, "/").await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the listener never served");

    // A client that never finishes its headers is cut off, unanswered.
    let mut slow = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    assert_eq!(until_closed(slow).await, "");

    // A keep-alive connection that goes quiet after a request is closed too.
    let idle = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (read, mut write) = idle.into_split();
    write
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_))), "the idle connection stayed open");

    // One that keeps sending requests for several idle timeouts stays open throughout.
    let paths = ["/"; 16];
    let busy = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut served = 0;
        for path in paths {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if write
                .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            // A fixed response without a body: the status line, headers, the blank line.
            let mut head = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                    return served;
                }
                head.push_str(&h);
                if h.trim_end().is_empty() {
                    break;
                }
            }
            if head.starts_with("HTTP/1.1 200") {
                served += 1;
            }
        }
        served
    };
    assert_eq!(busy.await, paths.len(), "the busy connection was closed");
    task.abort();
}

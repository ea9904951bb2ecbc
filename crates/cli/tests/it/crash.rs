//! Crash safety: berth is SIGKILLed while clients register task definitions; after a restart on
//! the same data directory every acknowledged revision is there with its exact content, and the
//! revisions present are contiguous with no half-written one.

use crate::harness::{Berth, ECS, Keys, Opts, sign, try_http};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const WRITERS: usize = 3;

/// One writer's acknowledged registrations, in order: (revision, seq of the content sent).
type Acked = Mutex<Vec<(i64, usize)>>;

/// The definition the writer of `family` sends as its `seq`-th registration: its content says
/// which one it is, so a describe shows whether a revision holds what was acknowledged for it.
fn definition(family: &str, seq: usize) -> Value {
    let padding = format!("{family}-{seq}-").repeat(40);
    json!({
        "family": family,
        "containerDefinitions": [
            {
                "name": "main",
                "image": format!("busybox:{seq}"),
                "memory": 64 + seq,
                "environment": [
                    {"name": "SEQ", "value": seq.to_string()},
                    {"name": "PADDING", "value": padding}
                ],
                "dockerLabels": {"seq": seq.to_string()}
            },
            {"name": "side", "image": "busybox", "memory": 32, "essential": false, "command": ["sleep", seq.to_string()]}
        ],
        "tags": [{"key": "seq", "value": seq.to_string()}]
    })
}

/// One signed ECS call that may fail because the server is gone.
fn call(addr: SocketAddr, keys: &Keys, op: &str, body: &Value) -> std::io::Result<Value> {
    let body = body.to_string();
    let headers = sign(
        addr,
        keys,
        "us-east-1",
        &format!("{ECS}.{op}"),
        body.as_bytes(),
        SystemTime::now(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = try_http(addr, "POST", "/", &headers, body.as_bytes())?;
    if r.status != 200 {
        return Err(std::io::Error::other(format!(
            "{op}: {} {}",
            r.status,
            r.text()
        )));
    }
    Ok(r.json())
}

/// A number that differs from run to run, to kill at a different point each time.
fn jitter(modulo: usize) -> usize {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0)
        % modulo
}

#[test]
fn a_sigkill_loses_no_acknowledged_task_definition() {
    let berth = Berth::start(Opts::default());
    let addr = berth.addr;
    let keys = berth.keys.clone();
    let total_acks = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Vec<Acked>> = Arc::new((0..WRITERS).map(|_| Mutex::new(Vec::new())).collect());

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (keys, acked, total_acks) = (keys.clone(), acked.clone(), total_acks.clone());
        writers.push(std::thread::spawn(move || {
            let family = format!("crash-{w}");
            let mut seq = 1;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                match call(
                    addr,
                    &keys,
                    "RegisterTaskDefinition",
                    &definition(&family, seq),
                ) {
                    Ok(v) => {
                        let rev = v["taskDefinition"]["revision"].as_i64().unwrap_or(-1);
                        acked[w].lock().expect("lock").push((rev, seq));
                        total_acks.fetch_add(1, Ordering::SeqCst);
                        seq += 1;
                    }
                    // The server is gone: that is the point of the test.
                    Err(_) => return,
                }
            }
        }));
    }

    let kill_after = 40 + jitter(80);
    let deadline = Instant::now() + Duration::from_secs(60);
    while total_acks.load(Ordering::SeqCst) < kill_after {
        assert!(
            Instant::now() < deadline,
            "writers stalled at {} acknowledgements",
            total_acks.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    berth.kill();
    for w in writers {
        w.join().expect("writer thread");
    }

    let berth = berth.restart(Opts::default());
    let mut checked = 0;
    for (w, acked) in acked.iter().enumerate() {
        let acked = acked.lock().expect("lock").clone();
        let family = format!("crash-{w}");
        for (i, (rev, seq)) in acked.iter().enumerate() {
            assert_eq!(
                (*rev, *seq),
                (i as i64 + 1, i + 1),
                "one writer's revisions are 1, 2, 3… in order"
            );
        }

        // Every revision present, through every page of the listing.
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = json!({"familyPrefix": family, "maxResults": 7});
            if let Some(t) = token.take() {
                req["nextToken"] = json!(t);
            }
            let page = berth.ecs_ok("ListTaskDefinitions", &req);
            for arn in page["taskDefinitionArns"].as_array().expect("arns") {
                listed.push(arn.as_str().expect("arn").to_string());
            }
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        let k = listed.len();
        let expected: Vec<String> = (1..=k)
            .map(|rev| {
                format!(
                    "arn:aws:ecs:us-east-1:{}:task-definition/{family}:{rev}",
                    berth.keys.account_id
                )
            })
            .collect();
        assert_eq!(listed, expected, "revisions of {family} are 1..=K");
        assert!(
            k >= acked.len() && k <= acked.len() + 1,
            "{family}: {k} revisions present, {} acknowledged (at most one more was in flight)",
            acked.len()
        );

        eprintln!(
            "{family}: {} acknowledged, {k} present after the kill (killed after {kill_after} acks in all)",
            acked.len()
        );

        // Each present revision is whole: it describes with the content sent for it.
        for rev in 1..=k {
            let d = berth.ecs_ok(
                "DescribeTaskDefinition",
                &json!({"taskDefinition": format!("{family}:{rev}"), "include": ["TAGS"]}),
            );
            let mut want = definition(&family, rev);
            let tags = want
                .as_object_mut()
                .and_then(|o| o.remove("tags"))
                .expect("tags");
            crate::harness::assert_subset(&format!("{family}:{rev}"), &want, &d["taskDefinition"]);
            assert_eq!(d["tags"], tags, "{family}:{rev}");
            assert_eq!(d["taskDefinition"]["revision"], rev);
            assert_eq!(d["taskDefinition"]["status"], "ACTIVE");
            checked += 1;
        }
        // The family record agrees: the next registration continues the sequence.
        let next = berth.ecs_ok("RegisterTaskDefinition", &definition(&family, k + 1));
        assert_eq!(next["taskDefinition"]["revision"], k + 1, "{family}");
    }
    assert!(checked >= kill_after, "{checked} revisions checked");
}

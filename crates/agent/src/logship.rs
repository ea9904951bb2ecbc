//! Ships the output of containers whose task definition says `logDriver: awslogs` to the
//! control plane's CloudWatch Logs, as the ECS agent's `awslogs` driver does: one follower per
//! container reads the runtime's log (Docker keeps its json-file driver, so `docker logs` still
//! works) and sends batches every second or at 1 MiB over the agent protocol
//! (`POST /_berth/agent/v1/logs`, node token; the agent holds no AWS keys to sign
//! `PutLogEvents` with).
//!
//! Resuming: the follower first asks the server for the stream's newest timestamp and reads the
//! runtime's log from just after it, so a restarted agent neither loses nor repeats lines
//! (lines within the same millisecond as the last shipped one are the one blind spot).

use crate::client::{Client, ClientError};
use crate::state;
use berth_agent_api as api;
use berth_runtime::{ContainerId, LogsRequest, Runtime};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::watch;

/// How often a partial batch is sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A batch is sent once it holds this many bytes (CloudWatch Logs' limit is 1 MiB with 26
/// bytes of overhead per event; this leaves room for the last line).
const MAX_BATCH_BYTES: usize = 768 * 1024;
const MAX_BATCH_EVENTS: usize = 10_000;
/// One event holds at most this many bytes of a line (CloudWatch Logs' event limit is 256 KiB
/// less the overhead); longer lines are cut, as the awslogs driver splits them.
const MAX_EVENT_BYTES: usize = 256 * 1024 - 26;
const EVENT_OVERHEAD: usize = 26;

/// `logConfiguration` of an `awslogs` container, as the task definition gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogs {
    pub group: String,
    pub region: Option<String>,
    pub stream_prefix: Option<String>,
    pub create_group: bool,
}

impl AwsLogs {
    /// From a container definition's `logConfiguration`; `None` for any other driver or without
    /// an `awslogs-group`.
    pub fn of(config: Option<&berth_shapes::ecs::LogConfiguration>) -> Option<AwsLogs> {
        let c = config?;
        if c.log_driver.as_deref() != Some("awslogs") {
            return None;
        }
        let options = c.options.as_ref()?;
        Some(AwsLogs {
            group: options.get("awslogs-group")?.clone(),
            region: options.get("awslogs-region").cloned(),
            stream_prefix: options
                .get("awslogs-stream-prefix")
                .filter(|p| !p.is_empty())
                .cloned(),
            create_group: options
                .get("awslogs-create-group")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The stream ECS names: `prefix/container-name/task-id`, or without a prefix the
    /// container's runtime id.
    pub fn stream_name(&self, container: &str, task_id: &str, runtime_id: &str) -> String {
        match &self.stream_prefix {
            Some(p) => format!("{p}/{container}/{task_id}"),
            None => runtime_id.to_owned(),
        }
    }
}

/// What followers need to reach the server: the client and the current node identity (which
/// changes when the agent registers again).
#[derive(Clone)]
pub struct Shipper {
    client: Client,
    identity: watch::Receiver<Option<state::Identity>>,
}

impl Shipper {
    pub fn new(client: Client, identity: watch::Receiver<Option<state::Identity>>) -> Shipper {
        Shipper { client, identity }
    }

    /// Follows `id`'s output into `group`/`stream` until the container's log ends (it stopped)
    /// and everything read is delivered, or the server refuses the destination.
    pub async fn follow(self, runtime: Runtime, id: ContainerId, target: AwsLogs, stream: String) {
        let batch = |events| api::LogBatch {
            instance_id: String::new(),
            region: target.region.clone(),
            group: target.group.clone(),
            stream: stream.clone(),
            create_group: target.create_group,
            events,
        };
        let Some(resume) = self.send(batch(Vec::new())).await else {
            return;
        };
        let since = resume.last_timestamp.map(|t| t + 1);
        let mut lines = runtime.logs(
            &id,
            LogsRequest {
                follow: true,
                since_millis: since,
            },
        );
        let mut pending: Vec<api::LogEvent> = Vec::new();
        let mut bytes = 0usize;
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ended = tokio::select! {
                next = lines.next() => match next {
                    Some(Ok(chunk)) => {
                        let text = String::from_utf8_lossy(&chunk.bytes);
                        let text = text.strip_suffix('\n').unwrap_or(&text);
                        let text = text.strip_suffix('\r').unwrap_or(text);
                        // CloudWatch Logs refuses empty messages; the awslogs driver skips them.
                        if !text.is_empty() {
                            let message = cut(text, MAX_EVENT_BYTES).to_owned();
                            bytes += message.len() + EVENT_OVERHEAD;
                            pending.push(api::LogEvent { timestamp: chunk.timestamp_millis, message });
                        }
                        false
                    }
                    Some(Err(e)) => {
                        tracing::warn!(container = %id, "awslogs: reading the container's output failed: {e}");
                        true
                    }
                    None => true,
                },
                _ = tick.tick() => {
                    if !pending.is_empty() && self.send(batch(std::mem::take(&mut pending))).await.is_none() {
                        return;
                    }
                    bytes = 0;
                    false
                }
            };
            if (bytes >= MAX_BATCH_BYTES || pending.len() >= MAX_BATCH_EVENTS || ended)
                && !pending.is_empty()
            {
                if self
                    .send(batch(std::mem::take(&mut pending)))
                    .await
                    .is_none()
                {
                    return;
                }
                bytes = 0;
            }
            if ended {
                return;
            }
        }
    }

    /// Delivers one batch, retrying while the server is away or the node is registering again.
    /// `None` when the server refuses it for good (the reason is logged).
    async fn send(&self, mut batch: api::LogBatch) -> Option<api::LogBatchResponse> {
        let mut failures = 0u32;
        let mut identity = self.identity.clone();
        loop {
            let id = identity.borrow().clone();
            let Some(id) = id else {
                let _ = tokio::time::timeout(Duration::from_secs(5), identity.changed()).await;
                continue;
            };
            batch.instance_id = id.instance_id.clone();
            match self.client.ship_logs(&id.node_token, &batch).await {
                Ok(r) => {
                    if r.rejected > 0 {
                        tracing::warn!(
                            group = %batch.group, stream = %batch.stream,
                            "awslogs: CloudWatch Logs refused {} lines (too old or too new)", r.rejected
                        );
                    }
                    return Some(r);
                }
                Err(e) if e.is_transient() || matches!(e, ClientError::Unauthorized(_)) => {
                    failures += 1;
                    let pause = Duration::from_millis(200u64 << failures.min(6));
                    tracing::debug!("awslogs: cannot ship logs yet ({e}); retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => {
                    tracing::warn!(
                        group = %batch.group, stream = %batch.stream,
                        "awslogs: the container's output is not shipped: {e} (set awslogs-create-group to \"true\" to create a missing group)"
                    );
                    return None;
                }
            }
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn awslogs_options_and_stream_names_follow_ecs() {
        let options: BTreeMap<String, String> = [
            ("awslogs-group", "/ecs/web"),
            ("awslogs-region", "eu-west-1"),
            ("awslogs-stream-prefix", "web"),
            ("awslogs-create-group", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = berth_shapes::ecs::LogConfiguration {
            log_driver: Some("awslogs".into()),
            options: Some(options),
            ..Default::default()
        };
        let a = AwsLogs::of(Some(&config)).expect("awslogs");
        assert!(a.create_group);
        assert_eq!(a.stream_name("app", "abc", "c0ffee"), "web/app/abc");
        let no_prefix = AwsLogs {
            stream_prefix: None,
            ..a
        };
        assert_eq!(no_prefix.stream_name("app", "abc", "c0ffee"), "c0ffee");
        let json_file = berth_shapes::ecs::LogConfiguration {
            log_driver: Some("json-file".into()),
            ..Default::default()
        };
        assert_eq!(AwsLogs::of(Some(&json_file)), None);
        assert_eq!(cut("héllo", 2), "h");
    }
}

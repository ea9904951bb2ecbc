//! Task states waiting to be delivered to the server. Only the latest state of each task is
//! kept (the server applies forward transitions only, so skipping intermediate ones loses
//! nothing that a later one does not carry), and an entry is cleared only once the server has
//! acknowledged that very version.

use berth_agent_api::TaskState;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Reports {
    inner: Mutex<BTreeMap<String, Entry>>,
    notify: Notify,
}

#[derive(Debug)]
struct Entry {
    state: TaskState,
    version: u64,
    acked: u64,
}

/// States taken for sending, with the versions to acknowledge if the server takes them.
#[derive(Debug)]
pub struct Batch {
    pub tasks: Vec<TaskState>,
    versions: Vec<(String, u64)>,
}

impl Reports {
    /// Records the latest state of a task and wakes the reporter.
    pub fn set(&self, state: TaskState) {
        let mut m = self.inner.lock();
        let e = m.entry(state.task_arn.clone()).or_insert(Entry {
            state: state.clone(),
            version: 0,
            acked: 0,
        });
        e.state = state;
        e.version += 1;
        drop(m);
        self.notify.notify_one();
    }

    /// Every state not yet acknowledged.
    pub fn pending(&self) -> Batch {
        let m = self.inner.lock();
        let mut tasks = Vec::new();
        let mut versions = Vec::new();
        for (arn, e) in m.iter().filter(|(_, e)| e.version > e.acked) {
            tasks.push(e.state.clone());
            versions.push((arn.clone(), e.version));
        }
        Batch { tasks, versions }
    }

    /// The server took `batch`: those versions need no resending.
    pub fn ack(&self, batch: &Batch) {
        let mut m = self.inner.lock();
        for (arn, v) in &batch.versions {
            if let Some(e) = m.get_mut(arn) {
                e.acked = e.acked.max(*v);
            }
        }
    }

    /// Forgets a task once its final state was delivered and the server no longer lists it.
    /// Returns false (and keeps it) while a state is still waiting.
    pub fn forget_if_delivered(&self, task_arn: &str) -> bool {
        let mut m = self.inner.lock();
        match m.get(task_arn) {
            Some(e) if e.version > e.acked => false,
            _ => {
                m.remove(task_arn);
                true
            }
        }
    }

    /// Whether everything was delivered.
    pub fn all_delivered(&self) -> bool {
        self.inner.lock().values().all(|e| e.version == e.acked)
    }

    /// Resolves when a new state is recorded (or one was recorded since the last call).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(arn: &str, status: &str) -> TaskState {
        TaskState {
            task_arn: arn.into(),
            status: status.into(),
            containers: vec![],
            stop_code: None,
            stopped_reason: None,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
            health_status: None,
        }
    }

    #[test]
    fn only_the_acknowledged_version_is_cleared() {
        let r = Reports::default();
        r.set(state("a", "PENDING"));
        let b = r.pending();
        assert_eq!(b.tasks.len(), 1);
        // A newer state arrives while the batch is in flight: it must still be sent.
        r.set(state("a", "RUNNING"));
        r.ack(&b);
        let b2 = r.pending();
        assert_eq!(b2.tasks[0].status, "RUNNING");
        assert!(!r.forget_if_delivered("a"));
        r.ack(&b2);
        assert!(r.pending().tasks.is_empty());
        assert!(r.all_delivered());
        assert!(r.forget_if_delivered("a"));
    }
}

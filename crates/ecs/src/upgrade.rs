//! One-time upgrades of records an earlier berth wrote, run by the server before it serves, so
//! that every other path reads only the current layout.
//!
//! Task records once embedded their whole task definition (`definition`). They now name the
//! revision (`task_definition_arn`, whose record is never removed) and keep the two facts the
//! controller and placement read on every pass (`health_checked`, `dynamic_ports`). A data
//! directory with tasks from before that change would otherwise fail to load them: running
//! tasks must survive an upgrade of the control plane as they survive a restart.
//!
//! Tasks are also indexed under their container instance (`kinds::TASK_ON_INSTANCE`), so a
//! node's poll reads its own tasks; tasks placed before the index existed get their entries here.
//!
//! **Architecture Invariant:** an upgrade is idempotent (a record already in the current layout
//! is left alone) and each record is rewritten under `Expect::Version` of what was read, so a
//! crash half-way leaves every record either old or new, and the next start finishes the job.
//! Only a pass that rewrote everything it found writes the `ecs.upgrade` marker that lets later
//! starts skip the scan; nothing writes the old layout any more, so none can appear after it.

use crate::Ecs;
use crate::placement;
use crate::records::{kinds, on_instance_key};
use berth_aws::AwsError;
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op, Record, Store};
use serde_json::Value;

/// Records read per page while upgrading.
const PAGE: usize = 500;

/// Where a finished upgrade is written down, so later starts skip the scan of every task (a
/// start should stay well under half a second however many tasks the store holds). Each step
/// has its own key.
const DONE_KIND: &str = "ecs.upgrade";
const DONE_PARTITION: &str = "global";

/// Upgrades every stored task record to the current layout and indexes every task under its
/// instance; returns how many records were written.
pub async fn upgrade_records(ecs: &Ecs) -> Result<usize, AwsError> {
    let mut written = each_task(ecs, "task-records-name-their-definition", |partition, r| {
        Ok(upgrade_task(&r.value)?
            .map(|value| {
                Op::put(
                    kinds::TASK,
                    partition.to_string(),
                    r.key.clone(),
                    value,
                    Expect::Version(r.version),
                )
            })
            .into_iter()
            .collect())
    })
    .await?;
    if written > 0 {
        tracing::info!("upgraded {written} task records to name their task definition");
    }
    // Tasks placed before `kinds::TASK_ON_INSTANCE` existed. Nothing else runs during the
    // upgrade (the server has not started serving), so no task can be forgotten meanwhile.
    let indexed = each_task(ecs, "tasks-indexed-by-instance", |partition, r| {
        let instance = r.value.get("container_instance_id").and_then(Value::as_str);
        let (Some(cluster), Some(id), Some(instance)) = (
            r.value.get("cluster").and_then(Value::as_str),
            r.value.get("id").and_then(Value::as_str),
            instance.filter(|i| !i.is_empty()),
        ) else {
            return Ok(vec![]);
        };
        Ok(vec![Op::put(
            kinds::TASK_ON_INSTANCE,
            partition.to_string(),
            on_instance_key(cluster, instance, id),
            Value::Bool(true),
            Expect::Any,
        )])
    })
    .await?;
    if indexed > 0 {
        tracing::info!("indexed {indexed} tasks under their container instances");
    }
    written += indexed;
    Ok(written)
}

/// Runs one upgrade step over every task record of every partition, unless the step's marker
/// `done_key` says an earlier start finished it: `ops` says what to write for a record (nothing
/// when it is current). Marks the step done when every page committed.
async fn each_task(
    ecs: &Ecs,
    done_key: &str,
    ops: impl Fn(&str, &Record) -> Result<Vec<Op>, AwsError>,
) -> Result<usize, AwsError> {
    let store = ecs.store();
    if store
        .get(DONE_KIND, DONE_PARTITION, done_key)
        .await
        .map_err(AwsError::internal)?
        .is_some()
    {
        return Ok(0);
    }
    let mut written = 0;
    let mut complete = true;
    for partition in store
        .partitions(kinds::TASK)
        .await
        .map_err(AwsError::internal)?
    {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list(kinds::TASK, &partition, "", after.as_deref(), PAGE)
                .await
                .map_err(AwsError::internal)?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.key.clone());
            let full = page.len() == PAGE;
            let mut writes = Vec::new();
            for record in &page {
                writes.extend(ops(&partition, record)?);
            }
            let n = writes.len();
            if n > 0 {
                // A conflict means someone wrote the record since (in the new layout): the page
                // is read again on the next start if anything old remains.
                match store.commit(writes).await {
                    Ok(_) => written += n,
                    Err(e) if e.is_conflict() => {
                        complete = false;
                        tracing::warn!("task records changed while being upgraded: {e}")
                    }
                    Err(e) => return Err(AwsError::internal(e)),
                }
            }
            if !full {
                break;
            }
        }
    }
    if complete {
        store
            .commit(vec![Op::put(
                DONE_KIND,
                DONE_PARTITION,
                done_key,
                Value::Bool(true),
                Expect::Any,
            )])
            .await
            .map_err(AwsError::internal)?;
    }
    Ok(written)
}

/// The current layout of a task record in an older one; `None` when it is current already.
fn upgrade_task(value: &Value) -> Result<Option<Value>, AwsError> {
    let Some(object) = value.as_object() else {
        return Ok(None);
    };
    if object.contains_key("task_definition_arn") {
        return Ok(None);
    }
    let Some(embedded) = object.get("definition") else {
        return Ok(None);
    };
    let definition: wire::TaskDefinition =
        serde_json::from_value(embedded.clone()).map_err(AwsError::internal)?;
    let mut object = object.clone();
    object.remove("definition");
    object.insert(
        "task_definition_arn".into(),
        Value::String(definition.task_definition_arn.clone().unwrap_or_default()),
    );
    object.insert(
        "health_checked".into(),
        Value::Bool(
            definition
                .container_definitions
                .iter()
                .flatten()
                .any(|c| c.health_check.is_some()),
        ),
    );
    object.insert(
        "dynamic_ports".into(),
        Value::from(placement::dynamic_ports(&definition)),
    );
    Ok(Some(Value::Object(object)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_embedded_definition_becomes_its_arn_and_the_facts_read_on_every_pass() {
        let old = json!({
            "arn": "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
            "definition": {
                "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
                "networkMode": "bridge",
                "containerDefinitions": [
                    {"name": "app", "image": "i", "portMappings": [{"containerPort": 80}],
                     "healthCheck": {"command": ["CMD", "true"]}}
                ]
            },
            "last_status": "RUNNING"
        });
        let new = upgrade_task(&old).expect("upgrade").expect("changed");
        assert_eq!(
            new,
            json!({
                "arn": "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
                "task_definition_arn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
                "health_checked": true,
                "dynamic_ports": 1,
                "last_status": "RUNNING"
            })
        );
        assert_eq!(upgrade_task(&new).expect("upgrade"), None);
    }
}

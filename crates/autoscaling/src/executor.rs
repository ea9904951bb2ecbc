//! The executor: alarm transitions and the tick in, `UpdateService` out. It reads what the store
//! and ECS say, asks `decide` what to do, claims the decision by writing the target record under
//! its version (so two evaluations never act on one state), then sets the desired count and
//! records the activity.

use crate::Autoscaling;
use crate::common::{self, store_error};
use crate::decide::{self, Decision, Held, PolicyInput};
use crate::records::{self, AlarmStateRecord, PolicyRecord, ScheduledRecord};
use crate::{activities, schedule};
use berth_aws::AwsError;
use berth_cloudwatch::{AlarmActions, AlarmTransition};
use berth_store::{Expect, Op, Store, get_as};
use std::collections::HashMap;

impl AlarmActions for Autoscaling {
    fn fire(&self, transition: AlarmTransition) {
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = this.on_transition(transition).await {
                        tracing::warn!(code = %e.code, "autoscaling: alarm transition failed: {}", e.message);
                    }
                });
            }
            Err(_) => tracing::warn!("autoscaling: alarm transition outside a runtime, dropped"),
        }
    }
}

impl Autoscaling {
    /// Records the alarm's new state for the policies it drives, and evaluates their targets
    /// when it went to ALARM. [`AlarmActions::fire`] runs this on a spawned task.
    pub async fn on_transition(&self, t: AlarmTransition) -> Result<(), AwsError> {
        let partition = t.partition.clone();
        let mut drives: Vec<(String, String)> = Vec::new();
        for action in &t.actions {
            let Some((p, id, resource_id, name)) = common::parse_policy_arn(action) else {
                continue;
            };
            if p != partition {
                continue;
            }
            let key = records::child_key(&resource_id, &name);
            if let Some((policy, _)) =
                get_as::<PolicyRecord, _>(self.store(), records::POLICY, &partition, &key)
                    .await
                    .map_err(store_error)?
                && policy.id == id
            {
                drives.push((key, id));
            }
        }
        if drives.is_empty() {
            // Transitions to states without actions (OK, usually) still say what the alarm
            // that drives a policy is doing now.
            if let Some((known, _)) = get_as::<AlarmStateRecord, _>(
                self.store(),
                records::ALARM_STATE,
                &partition,
                &t.alarm_name,
            )
            .await
            .map_err(store_error)?
            {
                drives.push((known.policy_key, known.policy_id));
            }
        }
        let Some((policy_key, policy_id)) = drives.into_iter().next() else {
            return Ok(());
        };
        let state = AlarmStateRecord {
            policy_key: policy_key.clone(),
            policy_id,
            state: t.new_state.clone(),
            value: t.value,
            threshold: t.threshold,
            timestamp_ms: t.timestamp_ms,
        };
        let value = serde_json::to_value(&state).map_err(AwsError::internal)?;
        self.store()
            .commit(vec![Op::put(
                records::ALARM_STATE,
                &partition,
                &t.alarm_name,
                value,
                Expect::Any,
            )])
            .await
            .map_err(store_error)?;
        if t.new_state == "ALARM"
            && let Some((resource_id, _)) = policy_key.split_once('|')
        {
            self.evaluate(&partition, resource_id, Some(&t.alarm_name))
                .await?;
        }
        Ok(())
    }

    /// One round of periodic work: scheduled actions whose time has come run. (An alarm that
    /// stays in ALARM needs nothing here: CloudWatch fires it again every period with its newest
    /// value, as AWS does, and `fire` evaluates again.) The server calls it every few seconds.
    pub async fn tick(&self) {
        if let Err(e) = self.tick_inner().await {
            tracing::warn!(code = %e.code, "autoscaling: tick failed: {}", e.message);
        }
    }

    async fn tick_inner(&self) -> Result<(), AwsError> {
        let now = self.now_ms();
        let partitions: Vec<String> =
            common::all::<serde_json::Value>(self, records::PARTITIONS, "", "")
                .await?
                .into_iter()
                .map(|(k, _, _)| k)
                .collect();
        for partition in partitions {
            for (key, version, action) in
                common::all::<ScheduledRecord>(self, records::SCHEDULED, &partition, "").await?
            {
                if let Err(e) = self
                    .run_scheduled(&partition, &key, version, action, now)
                    .await
                {
                    tracing::warn!(code = %e.code, "autoscaling: scheduled action {key} failed: {}", e.message);
                }
            }
        }
        Ok(())
    }

    /// Evaluates every policy of a scalable target and scales its service if they say so.
    /// `alarm` is the alarm whose transition to ALARM asked for it (none for the tick): a
    /// capacity it asks for beyond the bounds is recorded as a not-scaled activity.
    pub async fn evaluate(
        &self,
        partition: &str,
        resource_id: &str,
        alarm: Option<&str>,
    ) -> Result<(), AwsError> {
        let _one_at_a_time = self.evaluation_lock().lock().await;
        let Some((mut target, version)) = common::target(self, partition, resource_id).await?
        else {
            return Ok(());
        };
        let policies = common::all::<PolicyRecord>(
            self,
            records::POLICY,
            partition,
            &records::children_prefix(resource_id),
        )
        .await?;
        let states: HashMap<String, AlarmStateRecord> =
            common::all::<AlarmStateRecord>(self, records::ALARM_STATE, partition, "")
                .await?
                .into_iter()
                .map(|(k, _, s)| (k, s))
                .collect();
        let Some(service) = common::service(self, partition, resource_id).await? else {
            return Ok(());
        };
        if service.status != "ACTIVE" {
            return Ok(());
        }
        // Per policy: its input to the decision, and the alarm in ALARM that drives it.
        let mut inputs = Vec::new();
        let mut causes = Vec::new();
        for (key, _, p) in &policies {
            let alarming = |name: &str| {
                states
                    .get(name)
                    .filter(|s| s.state == "ALARM" && s.policy_id == p.id && &s.policy_key == key)
            };
            if let Some(tt) = &p.target_tracking {
                let high = alarming(&tt.high_alarm);
                let low = tt.low_alarm.as_deref().and_then(alarming);
                let cause = high
                    .map(|_| tt.high_alarm.clone())
                    .or_else(|| low.map(|_| tt.low_alarm.clone().unwrap_or_default()));
                inputs.push(PolicyInput::TargetTracking {
                    target: tt.target,
                    disable_scale_in: tt.disable_scale_in,
                    high: high.and_then(|s| s.value),
                    low: low.and_then(|s| s.value),
                    scale_out_cooldown_secs: tt.scale_out_cooldown_secs,
                    scale_in_cooldown_secs: tt.scale_in_cooldown_secs,
                });
                causes.push(cause);
            } else if let Some(step) = &p.step {
                // The newest alarm in ALARM that names this policy.
                let newest = states
                    .iter()
                    .filter(|(_, s)| {
                        s.state == "ALARM" && s.policy_id == p.id && &s.policy_key == key
                    })
                    .max_by_key(|(_, s)| s.timestamp_ms);
                let breach = newest.and_then(|(_, s)| Some(s.value? - s.threshold?));
                inputs.push(PolicyInput::Step {
                    config: step.config.clone(),
                    breach,
                    cooldown_secs: step.cooldown_secs,
                });
                causes.push(newest.map(|(n, _)| n.clone()));
            }
        }
        let now = self.now_ms();
        let situation = decide::Situation {
            now_ms: now,
            current: service.desired_count,
            min: target.min,
            max: target.max,
            scale_in_suspended: target.suspended.dynamic_in,
            scale_out_suspended: target.suspended.dynamic_out,
            deployment_in_progress: service.deployment_in_progress,
            cooldowns: target.cooldowns,
        };
        let decision = decide::decide(&situation, &inputs);
        tracing::debug!(resource_id, ?decision, "autoscaling: evaluated");
        let mut at_bound = None;
        let scale = match decision {
            Decision::Scale {
                to,
                policy,
                cooldowns,
            } => {
                target.cooldowns = cooldowns;
                Some((to, policy))
            }
            Decision::Hold(held @ (Held::AlreadyAtMaxCapacity | Held::AlreadyAtMinCapacity)) => {
                at_bound = Some(held);
                None
            }
            Decision::Hold(_) => None,
        };
        // Claim the decision: a concurrent change of the target (a register, another server)
        // makes this commit fail, and the next tick decides afresh.
        let value = serde_json::to_value(&target).map_err(AwsError::internal)?;
        match self
            .store()
            .commit(vec![Op::put(
                records::TARGET,
                partition,
                resource_id,
                value,
                Expect::Version(version),
            )])
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_conflict() => return Ok(()),
            Err(e) => return Err(store_error(e)),
        }
        let Some((to, policy)) = scale else {
            // The policy the alarm drives asked for more (or less) than the bounds allow.
            if let (Some(held), Some(alarm)) = (at_bound, alarm)
                && let Some(i) = causes.iter().position(|c| c.as_deref() == Some(alarm))
            {
                let code = if held == Held::AlreadyAtMaxCapacity {
                    "AlreadyAtMaxCapacity"
                } else {
                    "AlreadyAtMinCapacity"
                };
                let reason = records::NotScaled {
                    code: code.into(),
                    min: target.min,
                    max: target.max,
                    current: service.desired_count,
                };
                let cause = format!(
                    "monitor alarm {alarm} in state ALARM triggered policy {}",
                    policies[i].2.name
                );
                activities::not_scaled(self, partition, resource_id, cause, reason).await?;
            }
            return Ok(());
        };
        let alarm = causes[policy].clone().unwrap_or_default();
        let cause = format!(
            "monitor alarm {alarm} in state ALARM triggered policy {}",
            policies[policy].2.name
        );
        self.set_capacity(partition, resource_id, to, cause).await
    }

    /// Sets the desired count, recorded as an activity.
    pub(crate) async fn set_capacity(
        &self,
        partition: &str,
        resource_id: &str,
        to: i32,
        cause: String,
    ) -> Result<(), AwsError> {
        let key = activities::start(
            self,
            partition,
            resource_id,
            format!("Setting desired count to {to}."),
            cause,
        )
        .await?;
        let (status, message) = match common::set_desired_count(self, partition, resource_id, to)
            .await
        {
            Ok(()) => (
                "Successful",
                format!(
                    "Successfully set desired count to {to}. Change successfully fulfilled by ecs."
                ),
            ),
            Err(e) => (
                "Failed",
                format!("Failed to set desired count to {to}. Reason: {}", e.message),
            ),
        };
        activities::finish(self, partition, &key, status, message).await
    }

    async fn run_scheduled(
        &self,
        partition: &str,
        key: &str,
        version: u64,
        mut action: ScheduledRecord,
        now: i64,
    ) -> Result<(), AwsError> {
        let Ok(parsed) = schedule::parse(&action.schedule) else {
            return Ok(());
        };
        let tz = schedule::zone(action.timezone.as_deref()).unwrap_or(chrono_tz::Tz::UTC);
        let due = parsed
            .next_after(
                action.checked_until_ms,
                tz,
                action.creation_time,
                action.start_time,
                action.end_time,
            )
            .is_some_and(|t| t <= now);
        if !due {
            return Ok(());
        }
        let _one_at_a_time = self.evaluation_lock().lock().await;
        action.checked_until_ms = now;
        let resource_id = action.resource_id.clone();
        let mut ops = vec![Op::put(
            records::SCHEDULED,
            partition,
            key,
            serde_json::to_value(&action).map_err(AwsError::internal)?,
            Expect::Version(version),
        )];
        let target = common::target(self, partition, &resource_id).await?;
        let service = common::service(self, partition, &resource_id).await?;
        let run = match (target, service) {
            (Some((mut t, tv)), Some(s)) if !t.suspended.scheduled && s.status == "ACTIVE" => {
                let (min, max, desired) =
                    decide::scheduled(s.desired_count, t.min, t.max, action.min, action.max);
                t.min = min;
                t.max = max;
                ops.push(Op::put(
                    records::TARGET,
                    partition,
                    &resource_id,
                    serde_json::to_value(&t).map_err(AwsError::internal)?,
                    Expect::Version(tv),
                ));
                Some((min, max, desired, s.desired_count))
            }
            // Suspended, or nothing to scale: the fire time passes without effect.
            _ => None,
        };
        match self.store().commit(ops).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => return Ok(()),
            Err(e) => return Err(store_error(e)),
        }
        let Some((min, max, desired, current)) = run else {
            return Ok(());
        };
        let cause = format!("scheduled action name {} was triggered", action.name);
        let k = activities::start(
            self,
            partition,
            &resource_id,
            format!("Setting min capacity to {min} and max capacity to {max}"),
            cause.clone(),
        )
        .await?;
        activities::finish(
            self,
            partition,
            &k,
            "Successful",
            format!("Successfully set min capacity to {min} and max capacity to {max}"),
        )
        .await?;
        if desired != current {
            self.set_capacity(partition, &resource_id, desired, cause)
                .await?;
        }
        Ok(())
    }
}

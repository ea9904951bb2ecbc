//! Application Auto Scaling over awsJson 1.1 (`AnyScaleFrontendService`), for ECS services'
//! `ecs:service:DesiredCount`: scalable targets, target-tracking and step scaling policies,
//! scheduled actions, scaling activities and tags; and the executor that turns alarm
//! transitions and schedules into `UpdateService` calls.
//!
//! **API Boundary:** handlers see a validated, typed request and a `RequestContext`; they
//! know nothing of HTTP or SigV4. ECS is reached only through its API ([`berth_ecs::Ecs`] as a
//! `JsonService`: DescribeServices, UpdateService), CloudWatch only through [`Alarms`] (alarms
//! out) and [`berth_cloudwatch::AlarmActions`] (transitions in).
//!
//! **Architecture Invariant:** decisions are pure (`decide`, `schedule`); the executor claims
//! each decision by writing the target record under its version before it acts, so one target
//! state never scales twice. Bad input writes nothing.

mod activities;
pub mod alarms;
mod common;
pub mod decide;
mod executor;
mod policies;
mod records;
pub mod schedule;
mod scheduled;
mod tags;
mod targets;

use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
use berth_ecs::Ecs;
pub use berth_model::clock::{Clock, system_clock};
use berth_store::AnyStore;
use std::sync::Arc;

pub use alarms::{Alarms, JsonAlarms, NoAlarms};

/// Operations berth does not serve yet, one per line as `Name: reason`.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

/// Settings of the executor.
#[derive(Debug, Clone)]
pub struct Options {
    /// The period of target-tracking alarms. AWS fixes 60 s; a shorter one (10 or 30 s, the
    /// high-resolution periods CloudWatch allows) keeps end-to-end tests short
    /// (`BERTH_TARGET_TRACKING_PERIOD_SECS`).
    pub alarm_period_secs: i32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alarm_period_secs: 60,
        }
    }
}

/// The Application Auto Scaling API family and its executor.
#[derive(Clone)]
pub struct Autoscaling {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    model: ServiceModel,
    tokens: TokenCodec,
    clock: Clock,
    ecs: Ecs,
    alarms: Arc<dyn Alarms>,
    options: Options,
    /// Evaluations and scheduled actions run one at a time in this process.
    evaluation: tokio::sync::Mutex<()>,
}

impl Autoscaling {
    /// `token_key` signs pagination tokens; it must be stable across restarts so tokens stay
    /// valid.
    pub fn new(
        store: AnyStore,
        token_key: [u8; 32],
        clock: Clock,
        ecs: Ecs,
        alarms: Arc<dyn Alarms>,
        options: Options,
    ) -> Self {
        let model = ServiceModel::lazy(berth_shapes::models::AUTOSCALING);
        Autoscaling {
            inner: Arc::new(Inner {
                store,
                model,
                tokens: TokenCodec::new(token_key),
                clock,
                ecs,
                alarms,
                options,
                evaluation: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub(crate) fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    pub(crate) fn tokens(&self) -> &TokenCodec {
        &self.inner.tokens
    }

    pub(crate) fn ecs(&self) -> &Ecs {
        &self.inner.ecs
    }

    pub(crate) fn alarms(&self) -> &dyn Alarms {
        self.inner.alarms.as_ref()
    }

    pub(crate) fn alarm_period_secs(&self) -> i32 {
        self.inner.options.alarm_period_secs
    }

    pub(crate) fn evaluation_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.evaluation
    }
}

berth_aws::json_service! {
    service: Autoscaling,
    title: "Application Auto Scaling",
    validation_error: "ValidationException",
    model: |this| &this.inner.model,
    operations: {
    "RegisterScalableTarget" => targets::register_scalable_target,
    "DescribeScalableTargets" => targets::describe_scalable_targets,
    "DeregisterScalableTarget" => targets::deregister_scalable_target,
    "PutScalingPolicy" => policies::put_scaling_policy,
    "DescribeScalingPolicies" => policies::describe_scaling_policies,
    "DeleteScalingPolicy" => policies::delete_scaling_policy,
    "DescribeScalingActivities" => activities::describe_scaling_activities,
    "PutScheduledAction" => scheduled::put_scheduled_action,
    "DescribeScheduledActions" => scheduled::describe_scheduled_actions,
    "DeleteScheduledAction" => scheduled::delete_scheduled_action,
    "TagResource" => tags::tag_resource,
    "UntagResource" => tags::untag_resource,
    "ListTagsForResource" => tags::list_tags_for_resource,
    }
}

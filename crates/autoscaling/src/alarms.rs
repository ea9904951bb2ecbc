//! Where the managed CloudWatch alarms of target-tracking policies go. A trait, so that this
//! crate needs no CloudWatch of its own: tests use a fake, the server hands in CloudWatch through
//! [`JsonAlarms`].

use berth_aws::{AwsError, JsonService, RequestContext};
use berth_shapes::cloudwatch::PutMetricAlarmInput;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Creates (or replaces) and deletes CloudWatch alarms on behalf of a policy.
pub trait Alarms: Send + Sync {
    fn put(
        &self,
        ctx: RequestContext,
        alarm: PutMetricAlarmInput,
    ) -> BoxFuture<'_, Result<(), AwsError>>;

    fn delete(
        &self,
        ctx: RequestContext,
        names: Vec<String>,
    ) -> BoxFuture<'_, Result<(), AwsError>>;
}

/// For a server without CloudWatch: alarms are named in the policy, and nothing evaluates them.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAlarms;

impl Alarms for NoAlarms {
    fn put(
        &self,
        _: RequestContext,
        _: PutMetricAlarmInput,
    ) -> BoxFuture<'_, Result<(), AwsError>> {
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, _: RequestContext, _: Vec<String>) -> BoxFuture<'_, Result<(), AwsError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Alarms through any API family that serves CloudWatch's `PutMetricAlarm` and `DeleteAlarms`
/// (the server passes `berth_cloudwatch`'s service), called as a client would call it.
#[derive(Debug, Clone)]
pub struct JsonAlarms<S>(pub S);

impl<S: JsonService> Alarms for JsonAlarms<S> {
    fn put(
        &self,
        ctx: RequestContext,
        alarm: PutMetricAlarmInput,
    ) -> BoxFuture<'_, Result<(), AwsError>> {
        Box::pin(async move {
            let input = serde_json::to_value(alarm).map_err(AwsError::internal)?;
            self.0.call(ctx, "PutMetricAlarm", input).await.map(drop)
        })
    }

    fn delete(
        &self,
        ctx: RequestContext,
        names: Vec<String>,
    ) -> BoxFuture<'_, Result<(), AwsError>> {
        Box::pin(async move {
            let input = serde_json::json!({ "AlarmNames": names });
            self.0.call(ctx, "DeleteAlarms", input).await.map(drop)
        })
    }
}

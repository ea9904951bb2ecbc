//! The CloudWatch Logs API over awsJson 1.1 (`Logs_20140328`), first slice: log groups, log
//! streams, retention, and the events `PutLogEvents` ingests and `GetLogEvents` /
//! `FilterLogEvents` read back. One file per resource family, one function per action: typed
//! request → CloudWatch Logs' rules → store transaction → typed response.
//!
//! **API Boundary:** handlers see a validated, typed request and a [`RequestContext`]; they know
//! nothing of HTTP or SigV4. [`Logs::put_events`] is the same ingestion path for the agent
//! protocol (the server calls it for `POST /_berth/agent/v1/logs`), so agent-shipped lines obey
//! the same rules as `PutLogEvents`.
//!
//! **Architecture Invariant:** events are stored one record per ingested batch, keyed so that a
//! stream's batches are a range scan in first-timestamp order (`records.rs`); a batch spans at
//! most 24 hours, which bounds how far before a time window a read must start. Growth is bounded
//! by retention: reads drop expired events and [`Logs::sweep`] deletes expired batches. A read
//! without a `startTime` (GetLogEvents' default "newest events") scans the stream's whole
//! retained window; a forward token scans only from its own timestamp on.

mod common;
mod events;
mod filter;
mod groups;
mod records;
mod streams;

use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
use berth_aws::{AwsError, JsonService, RequestContext, json};
use berth_store::AnyStore;
use serde_json::Value;
use std::sync::Arc;

pub use events::{IngestOutcome, LineEvent};

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

/// Milliseconds since the Unix epoch. Injected so tests can fix time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// The CloudWatch Logs API family.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    model: ServiceModel,
    tokens: TokenCodec,
    clock: Clock,
}

impl Logs {
    /// `token_key` signs pagination tokens; it must be stable across restarts so tokens stay
    /// valid.
    pub fn new(store: AnyStore, token_key: [u8; 32], clock: Clock) -> Self {
        let model = ServiceModel::parse(berth_shapes::models::LOGS)
            .expect("the CloudWatch Logs model compiled into berth parses");
        Logs {
            inner: Arc::new(Inner {
                store,
                model,
                tokens: TokenCodec::new(token_key),
                clock,
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
}

/// Declares the implemented operations once, for both dispatch and [`JsonService::implements`].
macro_rules! operations {
    ($($name:literal => $module:ident :: $func:ident),* $(,)?) => {
        const IMPLEMENTED: &[&str] = &[$($name),*];

        impl Logs {
            async fn dispatch(&self, ctx: &RequestContext, op: &str, input: Value) -> Result<Vec<u8>, AwsError> {
                match op {
                    $($name => json::output(&$module::$func(self, ctx, json::input(input)?).await?),)*
                    _ => Err(AwsError::client(
                        "UnsupportedOperationException",
                        format!("berth does not support the CloudWatch Logs operation {op} yet."),
                    )),
                }
            }
        }
    };
}

operations! {
    "CreateLogGroup" => groups::create_log_group,
    "DescribeLogGroups" => groups::describe_log_groups,
    "DeleteLogGroup" => groups::delete_log_group,
    "PutRetentionPolicy" => groups::put_retention_policy,
    "DeleteRetentionPolicy" => groups::delete_retention_policy,
    "CreateLogStream" => streams::create_log_stream,
    "DescribeLogStreams" => streams::describe_log_streams,
    "DeleteLogStream" => streams::delete_log_stream,
    "PutLogEvents" => events::put_log_events,
    "GetLogEvents" => events::get_log_events,
    "FilterLogEvents" => events::filter_log_events,
}

impl JsonService for Logs {
    fn model(&self) -> &ServiceModel {
        &self.inner.model
    }

    fn validation_error_code(&self) -> &'static str {
        "InvalidParameterException"
    }

    fn implements(&self, operation: &str) -> bool {
        IMPLEMENTED.contains(&operation)
    }

    async fn call(
        &self,
        ctx: RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Vec<u8>, AwsError> {
        self.dispatch(&ctx, operation, input).await
    }
}

/// Every operation berth implements, for the ledger and the conformance suite.
pub fn implemented_operations() -> &'static [&'static str] {
    IMPLEMENTED
}

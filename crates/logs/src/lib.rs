//! The CloudWatch Logs API over awsJson 1.1 (`Logs_20140328`), first slice: log groups, log
//! streams, retention, deletion protection, and the events `PutLogEvents` ingests and `GetLogEvents` /
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
pub use berth_model::clock::{Clock, system_clock};
use berth_store::AnyStore;
use std::sync::Arc;

pub use events::{IngestOutcome, LineEvent};

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

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
        let model = ServiceModel::lazy(berth_shapes::models::LOGS);
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

berth_aws::json_service! {
    service: Logs,
    title: "CloudWatch Logs",
    validation_error: "InvalidParameterException",
    model: |this| &this.inner.model,
    operations: {
    "CreateLogGroup" => groups::create_log_group,
    "DescribeLogGroups" => groups::describe_log_groups,
    "DeleteLogGroup" => groups::delete_log_group,
    "PutRetentionPolicy" => groups::put_retention_policy,
    "DeleteRetentionPolicy" => groups::delete_retention_policy,
    "PutLogGroupDeletionProtection" => groups::put_log_group_deletion_protection,
    "CreateLogStream" => streams::create_log_stream,
    "DescribeLogStreams" => streams::describe_log_streams,
    "DeleteLogStream" => streams::delete_log_stream,
    "PutLogEvents" => events::put_log_events,
    "GetLogEvents" => events::get_log_events,
    "FilterLogEvents" => events::filter_log_events,
    }
}

//! Fuzzes the awsJson request decoder and model validator: whatever the body, `json::decode`
//! with the ECS model answers `Ok` or an AWS-shaped error without panicking, and a body it
//! accepts also converts into the typed request the handler would get (`json::input`).
//!
//! Run with `cd crates/aws/fuzz && cargo +nightly fuzz run -s none json_decode`.
//!
//! The first input byte picks the operation (so one corpus covers several input shapes,
//! including a deep one, RegisterTaskDefinition, and one with no input members worth naming);
//! the rest is the request body as the client sent it.

#![no_main]

use std::sync::LazyLock;

use berth_aws::json;
use berth_aws::model::ServiceModel;
use berth_aws::validate::Patterns;
use berth_shapes::ecs;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

static MODEL: LazyLock<ServiceModel> = LazyLock::new(|| {
    ServiceModel::parse(berth_shapes::models::ECS)
        .expect("the ECS model compiled into berth parses")
});
// Shared across runs as it is across requests in the server, so the pattern cache is fuzzed too.
static PATTERNS: LazyLock<Patterns> = LazyLock::new(Patterns::default);

const OPERATIONS: &[&str] = &[
    "ListClusters",
    "CreateCluster",
    "DescribeTaskDefinition",
    "RegisterTaskDefinition",
    "RunTask",
    "TagResource",
    // Not in the model: decode must still answer without panicking.
    "NoSuchOperation",
];

/// Decodes the accepted value into `T` the way a handler does; either outcome is fine.
fn typed<T: DeserializeOwned + serde::Serialize>(value: serde_json::Value) {
    if let Ok(request) = json::input::<T>(value) {
        let _ = json::output(&request);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let operation = OPERATIONS[selector as usize % OPERATIONS.len()];
    match json::decode(
        &MODEL,
        &PATTERNS,
        "InvalidParameterException",
        operation,
        body,
    ) {
        Ok(value) => match operation {
            "ListClusters" => typed::<ecs::ListClustersRequest>(value),
            "CreateCluster" => typed::<ecs::CreateClusterRequest>(value),
            "DescribeTaskDefinition" => typed::<ecs::DescribeTaskDefinitionRequest>(value),
            "RegisterTaskDefinition" => typed::<ecs::RegisterTaskDefinitionRequest>(value),
            "RunTask" => typed::<ecs::RunTaskRequest>(value),
            "TagResource" => typed::<ecs::TagResourceRequest>(value),
            _ => {}
        },
        Err(err) => {
            let _ = json::error_body(&err);
        }
    }
});

//! AWS wire shapes, generated from botocore's service models by `cargo run -p xtask -- codegen`,
//! and the trimmed models (no documentation) that the request validator reads.
//!
//! **API Boundary:** these types are the JSON vocabulary of the AWS APIs, nothing more: every
//! member is optional (the validator enforces `required`) and enums are strings (the validator
//! enforces their values). They know nothing of HTTP, the store or berth's domain.

use serde::{Deserialize, Serialize};

pub mod autoscaling;
pub mod cloudwatch;
pub mod ecr;
pub mod ecs;
pub mod elbv2;
pub mod logs;
pub mod secretsmanager;

/// A point in time as awsJson carries it: seconds since the Unix epoch, fractional.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// From milliseconds since the Unix epoch, the resolution berth stores.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms as f64 / 1000.0)
    }

    /// To milliseconds since the Unix epoch (fractions of a millisecond dropped).
    pub fn to_millis(self) -> i64 {
        (self.0 * 1000.0) as i64
    }
}

/// A binary value as awsJson carries it: base64 text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Blob(pub String);

/// The trimmed service models, as JSON text, by berth's module name for the service.
pub mod models {
    pub const AUTOSCALING: &str = include_str!("../models/autoscaling.json");
    pub const CLOUDWATCH: &str = include_str!("../models/cloudwatch.json");
    pub const ECR: &str = include_str!("../models/ecr.json");
    pub const ECS: &str = include_str!("../models/ecs.json");
    pub const ELBV2: &str = include_str!("../models/elbv2.json");
    pub const LOGS: &str = include_str!("../models/logs.json");
    pub const SECRETSMANAGER: &str = include_str!("../models/secretsmanager.json");
}

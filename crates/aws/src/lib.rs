//! The AWS protocol layer: everything between bytes on the wire and a typed call into an API
//! family. It verifies SigV4, picks the operation (`X-Amz-Target` for awsJson, the form's
//! `Action` for awsQuery), checks the input against the service model, and turns results and
//! errors into the protocol's wire format.
//!
//! **API Boundary:** this crate knows the AWS wire protocols and the service models, not what any
//! operation means. API-family crates (`berth-ecs`, …) implement [`service::JsonService`] or
//! [`query::QueryService`].

pub mod cbor;
pub mod error;
pub mod json;
pub mod model;
pub mod query;
pub mod request_id;
pub mod service;
pub mod sigv4;
pub mod token;
pub mod validate;

pub use error::AwsError;
pub use request_id::new_request_id;
pub use service::{JsonService, RequestContext};

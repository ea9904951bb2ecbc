//! The conformance suite generated from the AWS service models botocore ships: it reads a
//! service's model, paginators, waiters and examples, generates requests from the input shapes,
//! sends them to a running endpoint and checks every answer against the output and error shapes.
//!
//! The pieces, from the data up: [`model`] loads botocore's files, [`generate`] makes valid and
//! invalid requests (seeded, so every run sends the same bytes), [`client`] signs and sends
//! them, [`check`] judges responses, [`profile`] holds what the model cannot say about a service
//! (which List/Describe calls show its state, which Describe echoes which Create, fixtures), and
//! [`suite`] runs the parts and reports.

pub mod cbor;
pub mod check;
pub mod client;
pub mod generate;
pub mod model;
pub mod pattern;
pub mod profile;
pub mod query;
pub mod suite;

pub use check::{Kind, Violation};
pub use client::{Auth, Client, Response};
pub use model::Model;
pub use profile::Profile;
pub use suite::{Config, Part, Report, Suite};

/// Errors that stop the suite from running at all (as opposed to conformance failures, which
/// are reported).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type every API family returns. Only the protocol encoders (`json`, `query`,
//! later `cbor`) turn it into bytes, so internal error text never reaches a client.

use http::StatusCode;
use std::borrow::Cow;

/// An error as an AWS client sees it: a code (`__type`), a message and an HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub code: Cow<'static, str>,
    pub message: String,
    pub status: StatusCode,
}

impl AwsError {
    /// A client fault (HTTP 400), the usual case.
    pub fn client(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        AwsError {
            code: code.into(),
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A real server fault. The detail goes to the log, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let id = crate::request_id::new_uuid();
        tracing::error!(error_id = %id, "internal error: {detail}");
        AwsError {
            code: Cow::Borrowed("ServerException"),
            message: format!("An internal error occurred (reference {id})."),
            status: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The protocol's generic error for a body that is not what the shape says.
    pub fn serialization(message: impl Into<String>) -> Self {
        AwsError::client("SerializationException", message)
    }

    pub fn unknown_operation(target: &str) -> Self {
        AwsError::client(
            "UnknownOperationException",
            format!("The operation {target} is not supported by this endpoint."),
        )
    }
}

/// A store failure is never the client's fault: it is logged and answered as a server error.
/// (Conflicts are retried by `retry_on_conflict` before they get here.)
impl From<berth_store::StoreError> for AwsError {
    fn from(e: berth_store::StoreError) -> Self {
        AwsError::internal(e)
    }
}

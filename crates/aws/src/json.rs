//! awsJson 1.0 and 1.1: `POST /` with `X-Amz-Target: <prefix>.<Operation>`, a JSON body in and
//! out, and errors as `{"__type": …, "message": …}`. The only place that writes awsJson errors.

use crate::AwsError;
use crate::model::ServiceModel;
use crate::validate::{self, Invalid, Patterns};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Request bodies larger than this are refused before parsing. ECS's largest input
/// (RegisterTaskDefinition) is far below it.
pub const MAX_BODY: usize = 1024 * 1024;

/// Splits `AmazonEC2ContainerServiceV20141113.ListClusters` into prefix and operation.
pub fn parse_target(target: &str) -> Option<(&str, &str)> {
    let (prefix, op) = target.rsplit_once('.')?;
    if prefix.is_empty() || op.is_empty() || !op.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((prefix, op))
}

pub fn too_large() -> AwsError {
    AwsError::client(
        "RequestEntityTooLargeException",
        format!("Request body exceeds the limit of {MAX_BODY} bytes."),
    )
    .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
}

/// Parses and validates the body of `operation` against its input shape.
pub fn decode(
    model: &ServiceModel,
    patterns: &Patterns,
    validation_code: &'static str,
    operation: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| AwsError::serialization(format!("Request body is not valid JSON: {e}")))?
    };
    let shape = model
        .operations
        .get(operation)
        .and_then(|op| op.input.as_ref());
    match shape {
        Some(input) => {
            validate::validate(model, patterns, &input.shape, &value).map_err(|e| match e {
                Invalid::Type(_) => AwsError::serialization(e.message()),
                Invalid::Constraints(_) => AwsError::client(validation_code, e.message()),
            })?;
        }
        None if !value.is_object() => {
            return Err(AwsError::serialization(
                "Expected an object at the request body.",
            ));
        }
        None => {}
    }
    Ok(value)
}

/// Turns a validated input into its typed shape. Validation already checked every type, so a
/// failure here means the shape and the model disagree: still a client-visible serialization
/// error, never a panic.
pub fn input<T: DeserializeOwned>(value: Value) -> Result<T, AwsError> {
    serde_json::from_value(value).map_err(|e| AwsError::serialization(e.to_string()))
}

/// Serializes a response body.
pub fn output<T: Serialize>(value: &T) -> Result<Vec<u8>, AwsError> {
    serde_json::to_vec(value).map_err(AwsError::internal)
}

/// The content type of awsJson `version` ("1.0" or "1.1").
pub fn content_type(version: &str) -> &'static str {
    if version == "1.0" {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    }
}

/// The body of an error response. The status and the `x-amzn-ErrorType` header come from
/// the same [`AwsError`].
pub fn error_body(err: &AwsError) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "__type")]
        code: &'a str,
        message: &'a str,
    }
    serde_json::to_vec(&Body {
        code: &err.code,
        message: &err.message,
    })
    .unwrap_or_default()
}

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
    validate_input(model, patterns, validation_code, operation, &value)?;
    Ok(value)
}

/// Checks the JSON form of `operation`'s input against the model, whatever protocol it came
/// in (awsJson, CBOR): a wrong type is the protocol's `SerializationException`, a broken
/// constraint the service's `validation_code` — except that an operation declaring awsQuery's
/// `MissingParameter` gets that code when the only fault is a missing required member, as the
/// former awsQuery services answer.
pub fn validate_input(
    model: &ServiceModel,
    patterns: &Patterns,
    validation_code: &'static str,
    operation: &str,
    value: &Value,
) -> Result<(), AwsError> {
    let op = model.operations.get(operation);
    match op.and_then(|op| op.input.as_ref()) {
        Some(input) => {
            validate::validate(model, patterns, &input.shape, value).map_err(|e| match &e {
                Invalid::Type(_) => AwsError::serialization(e.message()),
                Invalid::Constraints(found) => {
                    let only_missing = found.iter().all(|m| m.ends_with("Member must not be null"));
                    let declares_missing = op.is_some_and(|op| {
                        op.errors
                            .iter()
                            .any(|r| model.error_names(&r.shape).query_code == MISSING_PARAMETER)
                    });
                    let code = if only_missing && declares_missing {
                        MISSING_PARAMETER
                    } else {
                        validation_code
                    };
                    AwsError::client(code, e.message())
                }
            })
        }
        None if !value.is_object() => Err(AwsError::serialization(
            "Expected an object at the request body.",
        )),
        None => Ok(()),
    }
}

/// awsQuery's code for a request that lacks a required parameter.
const MISSING_PARAMETER: &str = "MissingParameter";

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

/// The `__type` of `err` for a service: its exception shape's name when the service is
/// query-compatible (a handler may answer with the awsQuery code), else the code as given.
pub fn error_type<'a>(model: &'a ServiceModel, err: &'a AwsError) -> &'a str {
    if model.is_query_compatible() {
        model.error_names(&err.code).type_name
    } else {
        &err.code
    }
}

/// `x-amzn-query-error: <awsQuery code>;<Sender|Receiver>` for a query-compatible service,
/// which botocore and the AWS SDKs read as the error's code (awsJson and CBOR alike).
pub fn query_error_header(model: &ServiceModel, err: &AwsError) -> Option<String> {
    model.is_query_compatible().then(|| {
        let fault = if err.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        format!("{};{fault}", model.error_names(&err.code).query_code)
    })
}

/// The body of an error response of `model`'s service, `__type` as [`error_type`] names it.
pub fn error_body_for(model: &ServiceModel, err: &AwsError) -> Vec<u8> {
    let mut named = err.clone();
    named.code = error_type(model, err).to_string().into();
    error_body(&named)
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

//! What the handlers share: CloudWatch's error codes (the model's `error.code`, which the
//! query-compatible protocols answer with), dimensions, timestamps and paging.

use crate::series::SeriesKey;
use berth_aws::AwsError;
use berth_shapes::cloudwatch as wire;

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterValue", message)
}

pub fn missing(message: impl Into<String>) -> AwsError {
    AwsError::client("MissingParameter", message)
}

pub fn combination(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterCombination", message)
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::client("ResourceNotFound", message).with_status(http::StatusCode::NOT_FOUND)
}

/// CloudWatch's generic `ValidationError`, what it answers for a bad alarm rule and for
/// DescribeAlarms' filter rules.
pub fn validation(message: impl Into<String>) -> AwsError {
    AwsError::client("ValidationError", message)
}

pub fn invalid_token() -> AwsError {
    AwsError::client(
        "InvalidNextToken",
        "The service couldn't process the token.",
    )
}

/// Dimensions as given on the wire, checked: names and values present, no name twice, at most
/// 30 (the model bounds the list; these are CloudWatch's remaining rules).
pub fn dimensions(
    given: Option<&Vec<wire::Dimension>>,
    at: &str,
) -> Result<Vec<(String, String)>, AwsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, d) in given.into_iter().flatten().enumerate() {
        let n = i + 1;
        let name = d
            .name
            .clone()
            .ok_or_else(|| missing(format!("The parameter {at}.member.{n}.Name is required.")))?;
        let value = d
            .value
            .clone()
            .ok_or_else(|| missing(format!("The parameter {at}.member.{n}.Value is required.")))?;
        if name.trim().is_empty() || value.trim().is_empty() {
            return Err(invalid(format!(
                "The parameter {at}.member.{n} must have a non-empty name and value."
            )));
        }
        if out.iter().any(|(existing, _)| *existing == name) {
            return Err(invalid(format!(
                "No Metric may specify the same dimension name twice: {name}"
            )));
        }
        out.push((name, value));
    }
    if out.len() > 30 {
        return Err(invalid(format!(
            "The collection {at} must not have a size greater than 30."
        )));
    }
    Ok(out)
}

pub fn wire_dimensions(dimensions: &[(String, String)]) -> Vec<wire::Dimension> {
    dimensions
        .iter()
        .map(|(name, value)| wire::Dimension {
            name: Some(name.clone()),
            value: Some(value.clone()),
        })
        .collect()
}

pub fn wire_metric(key: &SeriesKey) -> wire::Metric {
    wire::Metric {
        namespace: Some(key.namespace.clone()),
        metric_name: Some(key.metric_name.clone()),
        dimensions: Some(wire_dimensions(&key.dimensions)),
    }
}

/// CloudWatch's ISO 8601 rendering in reasons and history data (`2026-11-26T09:50:00.000+0000`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
        .unwrap_or_default()
}

/// The short form alarm reasons use (`26/11/26 09:50:00`).
pub fn short_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%d/%m/%y %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The long form composite alarms' reasons use (`Friday 04 August, 2023 12:54:46 UTC`).
pub fn long_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%A %d %B, %Y %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// CloudWatch prints numbers in reasons as Java does (`75.0`, `1.5E7` aside): integers with `.0`.
pub fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

//! What several actions share: CloudWatch Logs' error codes and wording, ARNs, reading groups
//! and streams that must exist, and pagination tokens.

use crate::Logs;
use crate::records::{self, GroupRecord, StreamRecord};
use berth_aws::{AwsError, RequestContext};
use berth_store::get_as;

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", message)
}

pub fn group_not_found() -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
}

pub fn stream_not_found() -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )
}

/// A delete refused by the group's deletion protection: `ValidationException`, in the wording
/// CloudWatch Logs' guide gives ("Protecting log groups from deletion").
pub fn deletion_protected() -> AwsError {
    AwsError::client(
        "ValidationException",
        "Cannot delete log group with deletion protection enabled. Disable deletion protection first.",
    )
}

/// Log group names are 1–512 of `[.\-_/#A-Za-z0-9]`. The model's pattern is not anchored (as in
/// Smithy), so the validator alone lets other characters through; CloudWatch Logs refuses them,
/// and berth's keys rely on `:` never appearing.
pub fn check_group_name(name: &str) -> Result<(), AwsError> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#'));
    if ok && !name.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
    )))
}

/// Log stream names are 1–512 characters without `:` or `*`.
pub fn check_stream_name(name: &str) -> Result<(), AwsError> {
    if !name.is_empty() && !name.contains([':', '*']) {
        return Ok(());
    }
    Err(invalid(format!(
        "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*"
    )))
}

/// The log group ARN as `DescribeLogGroups` gives it in `arn` (with the trailing `:*` AWS keeps
/// for IAM policies); `logGroupArn` is the same without it.
pub fn group_arn(ctx: &RequestContext, name: &str) -> String {
    format!("{}:*", group_arn_bare(ctx, name))
}

pub fn group_arn_bare(ctx: &RequestContext, name: &str) -> String {
    berth_model::Arn::new(
        "logs",
        &ctx.region,
        &ctx.account_id,
        format!("log-group:{name}"),
    )
    .to_string()
}

pub fn stream_arn(ctx: &RequestContext, group: &str, stream: &str) -> String {
    format!("{}:log-stream:{stream}", group_arn_bare(ctx, group))
}

/// The group a request names by `logGroupName` or `logGroupIdentifier` (a name or an ARN, with
/// or without `:*`); exactly one of the two.
pub fn group_name_of(
    ctx: &RequestContext,
    name: Option<&str>,
    identifier: Option<&str>,
) -> Result<String, AwsError> {
    match (name, identifier) {
        (Some(n), None) => Ok(n.to_owned()),
        (None, Some(id)) => {
            if let Some(rest) = id.strip_prefix("arn:") {
                let prefix = format!("aws:logs:{}:{}:log-group:", ctx.region, ctx.account_id);
                rest.strip_prefix(&prefix)
                    .map(|n| n.strip_suffix(":*").unwrap_or(n).to_owned())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(group_not_found)
            } else {
                Ok(id.to_owned())
            }
        }
        (Some(_), Some(_)) => Err(invalid(
            "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
        )),
        (None, None) => Err(invalid(
            "Should provide either name or ARN of the LogGroup.",
        )),
    }
}

pub async fn group(
    logs: &Logs,
    ctx: &RequestContext,
    name: &str,
) -> Result<(GroupRecord, u64), AwsError> {
    get_as::<GroupRecord, _>(logs.store(), records::GROUP, &ctx.partition(), name)
        .await?
        .ok_or_else(group_not_found)
}

pub async fn stream(
    logs: &Logs,
    ctx: &RequestContext,
    group: &str,
    name: &str,
) -> Result<(StreamRecord, u64), AwsError> {
    get_as::<StreamRecord, _>(
        logs.store(),
        records::STREAM,
        &ctx.partition(),
        &records::stream_key(group, name),
    )
    .await?
    .ok_or_else(stream_not_found)
}

/// The binding that ties a pagination token to one list in one account and region.
pub fn binding(ctx: &RequestContext, list: &str) -> String {
    format!("logs.{list}/{}", ctx.partition())
}

pub fn decode_token(logs: &Logs, binding: &str, token: &str) -> Result<String, AwsError> {
    logs.tokens()
        .decode(binding, token)
        .ok_or_else(|| invalid("The specified nextToken is invalid."))
}

/// Reads every record of `kind` under `prefix` in key order, starting after `start_after`, and
/// stops early once `keep_going` says so (it sees each record's key).
pub async fn scan(
    logs: &Logs,
    kind: &str,
    partition: &str,
    prefix: &str,
    start_after: Option<String>,
    mut keep_going: impl FnMut(&berth_store::Record) -> bool,
) -> Result<Vec<berth_store::Record>, AwsError> {
    use berth_store::Store;
    const PAGE: usize = 500;
    let mut out = Vec::new();
    let mut after = start_after;
    loop {
        let page = logs
            .store()
            .list(kind, partition, prefix, after.as_deref(), PAGE)
            .await?;
        let full = page.len() == PAGE;
        for r in page {
            after = Some(r.key.clone());
            if !keep_going(&r) {
                return Ok(out);
            }
            out.push(r);
        }
        if !full {
            return Ok(out);
        }
    }
}

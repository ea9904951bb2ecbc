//! SetRepositoryPolicy, GetRepositoryPolicy and DeleteRepositoryPolicy. A repository policy is
//! an IAM resource-based policy document; berth checks it as IAM does (grammar below) and keeps
//! it in the repository's settings, text unchanged. It is not enforced yet: every caller with
//! valid credentials has full access until berth has IAM.

use crate::Ecr;
use crate::common::{self, check_registry_id, invalid};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::ecr as wire;
use serde_json::{Map, Value};
use std::sync::Mutex;

/// Why a policy document is not one IAM accepts (for logs and tests; the client gets ECR's
/// single message).
pub fn check_policy(text: &str) -> Result<(), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let doc = doc.as_object().ok_or("the policy is not a JSON object")?;
    for key in doc.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            return Err(format!("unknown policy element '{key}'"));
        }
    }
    match doc.get("Version") {
        None => {}
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
        Some(v) => return Err(format!("Version {v} is not 2012-10-17 or 2008-10-17")),
    }
    if doc.get("Id").is_some_and(|id| !id.is_string()) {
        return Err("Id is not a string".into());
    }
    let statements = match doc.get("Statement") {
        Some(Value::Object(s)) => vec![s],
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|s| s.as_object().ok_or("a Statement is not an object"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("Statement is neither an object nor a non-empty list".into()),
        None => return Err("Statement is missing".into()),
    };
    let mut sids = std::collections::HashSet::new();
    for s in statements {
        check_statement(s)?;
        if let Some(sid) = s.get("Sid").and_then(Value::as_str)
            && !sids.insert(sid)
        {
            return Err(format!("Sid '{sid}' is not unique"));
        }
    }
    Ok(())
}

fn check_statement(s: &Map<String, Value>) -> Result<(), String> {
    for key in s.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(format!("unknown statement element '{key}'"));
        }
    }
    if s.get("Sid").is_some_and(|v| !v.is_string()) {
        return Err("Sid is not a string".into());
    }
    match s.get("Effect").and_then(Value::as_str) {
        Some("Allow" | "Deny") => {}
        _ => return Err("Effect must be Allow or Deny".into()),
    }
    // A resource-based policy names who it applies to.
    match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), None) | (None, Some(p)) => check_principal(p)?,
        _ => return Err("a statement needs exactly one of Principal and NotPrincipal".into()),
    }
    match (s.get("Action"), s.get("NotAction")) {
        (Some(a), None) | (None, Some(a)) => {
            for action in strings(a, "Action")? {
                check_action(action)?;
            }
        }
        _ => return Err("a statement needs exactly one of Action and NotAction".into()),
    }
    match (s.get("Resource"), s.get("NotResource")) {
        (Some(_), Some(_)) => return Err("Resource and NotResource together".into()),
        (Some(r), None) | (None, Some(r)) => {
            for resource in strings(r, "Resource")? {
                if resource != "*" && !resource.starts_with("arn:") {
                    return Err(format!("Resource '{resource}' is neither * nor an ARN"));
                }
            }
        }
        (None, None) => {}
    }
    if let Some(c) = s.get("Condition") {
        let c = c.as_object().ok_or("Condition is not an object")?;
        for (operator, block) in c {
            let block = block
                .as_object()
                .ok_or(format!("Condition {operator} is not an object"))?;
            for (key, value) in block {
                let ok = match value {
                    Value::String(_) | Value::Bool(_) | Value::Number(_) => true,
                    Value::Array(list) => list
                        .iter()
                        .all(|v| matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_))),
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "Condition {operator} {key} has a value of a bad type"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A string or a non-empty list of strings.
fn strings<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>, String> {
    match v {
        Value::String(s) => Ok(vec![s]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or(format!("{what} holds a value that is not a string"))
            })
            .collect(),
        _ => Err(format!(
            "{what} is neither a string nor a non-empty list of strings"
        )),
    }
}

fn check_principal(p: &Value) -> Result<(), String> {
    match p {
        Value::String(s) if s == "*" => Ok(()),
        Value::Object(m) if !m.is_empty() => {
            for (kind, ids) in m {
                if !matches!(
                    kind.as_str(),
                    "AWS" | "Service" | "Federated" | "CanonicalUser"
                ) {
                    return Err(format!("unknown principal type '{kind}'"));
                }
                strings(ids, "Principal")?;
            }
            Ok(())
        }
        _ => Err("Principal is neither * nor an object of principal types".into()),
    }
}

/// `*`, or `<service>:<action>` where the action may hold `*` and `?` wildcards.
fn check_action(action: &str) -> Result<(), String> {
    if action == "*" {
        return Ok(());
    }
    let ok = action.split_once(':').is_some_and(|(service, name)| {
        !service.is_empty()
            && service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
    });
    if ok {
        Ok(())
    } else {
        Err(format!("Action '{action}' is not <service>:<action>"))
    }
}

fn policy_not_found(ecr: &Ecr, name: &str) -> AwsError {
    AwsError::client(
        "RepositoryPolicyNotFoundException",
        format!(
            "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            ecr.place().account_id
        ),
    )
}

pub async fn set_repository_policy(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::SetRepositoryPolicyRequest,
) -> Result<wire::SetRepositoryPolicyResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let text = req.policy_text.unwrap_or_default();
    // The repository first: an unknown one is RepositoryNotFoundException whatever the text.
    common::existing(ecr, &name).await?;
    if let Err(why) = check_policy(&text) {
        tracing::debug!(repository = %name, "repository policy refused: {why}");
        return Err(invalid(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
        ));
    }
    // `force` guards against a policy that locks its author out; nothing is enforced yet, so
    // there is nothing to guard.
    common::update_settings(ecr, &name, |s| {
        s.repository_policy = Some(text.clone());
        Ok(())
    })
    .await?;
    Ok(wire::SetRepositoryPolicyResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        policy_text: Some(text),
    })
}

pub async fn get_repository_policy(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::GetRepositoryPolicyRequest,
) -> Result<wire::GetRepositoryPolicyResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let info = common::existing(ecr, &name).await?;
    let text = common::Settings::of(&info)
        .repository_policy
        .ok_or_else(|| policy_not_found(ecr, &name))?;
    Ok(wire::GetRepositoryPolicyResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        policy_text: Some(text),
    })
}

pub async fn delete_repository_policy(
    ecr: &Ecr,
    _ctx: &RequestContext,
    req: wire::DeleteRepositoryPolicyRequest,
) -> Result<wire::DeleteRepositoryPolicyResponse, AwsError> {
    check_registry_id(ecr, req.registry_id.as_deref())?;
    let name = req.repository_name.unwrap_or_default();
    let removed = Mutex::new(None);
    common::update_settings(ecr, &name, |s| {
        let text = s
            .repository_policy
            .take()
            .ok_or_else(|| policy_not_found(ecr, &name))?;
        *removed.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        Ok(())
    })
    .await?;
    Ok(wire::DeleteRepositoryPolicyResponse {
        registry_id: Some(ecr.place().account_id.clone()),
        repository_name: Some(name),
        policy_text: removed.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

#[cfg(test)]
mod tests {
    use super::check_policy;

    #[test]
    fn accepts_what_ecr_documents() {
        // ECR's own examples: cross-account pull, and a policy for a service principal.
        let pull = r#"{
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AllowCrossAccountPull",
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam::123456789012:root"]},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
            }]
        }"#;
        assert_eq!(check_policy(pull), Ok(()));
        let service = r#"{
            "Version": "2008-10-17",
            "Statement": {
                "Effect": "Deny",
                "Principal": "*",
                "NotAction": "ecr:*",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": ["o-abc"]}, "Bool": {"aws:SecureTransport": false}}
            }
        }"#;
        assert_eq!(check_policy(service), Ok(()));
        let codebuild = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"ecr:Get*"}]}"#;
        assert_eq!(check_policy(codebuild), Ok(()));
    }

    #[test]
    fn refuses_what_iam_refuses() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Version":"2012-10-17","Statement":[]}"#,
            r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*"}}"#,
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"ecr:*"}}"#,
            r#"{"Statement":{"Principal":"*","Action":"ecr:*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"ecr:*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"someone","Action":"ecr:*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":{"Robot":"x"},"Action":"ecr:*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"pull"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":[]}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","NotAction":"ecr:Put*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"repo"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":"yes"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*","Extra":1}}"#,
            r#"{"Statement":[{"Sid":"a","Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Sid":"a","Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#,
            r#"{"Other":1,"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:*"}}"#,
        ] {
            assert!(check_policy(bad).is_err(), "accepted: {bad}");
        }
    }
}

//! Listener and rule actions and rule conditions: checked as ELBv2 checks them and normalized to
//! the form AWS returns (a single-target-group forward also carries its `ForwardConfig`;
//! redirects carry every `#{…}` default; `path-pattern` and `host-header` carry both `Values` and
//! their `…Config`). Pure: the target groups an action names are checked by the caller.

use crate::common::validation;
use berth_aws::AwsError;
use berth_shapes::elbv2 as wire;
use std::net::IpAddr;

/// The target groups `actions` forward to.
pub fn target_groups(actions: &[wire::Action]) -> Vec<&str> {
    let mut out = Vec::new();
    for a in actions {
        if let Some(arn) = &a.target_group_arn {
            out.push(arn.as_str());
        }
        for t in a
            .forward_config
            .as_ref()
            .and_then(|f| f.target_groups.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(arn) = &t.target_group_arn
                && !out.contains(&arn.as_str())
            {
                out.push(arn.as_str());
            }
        }
    }
    out
}

const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// Checks and normalizes the actions of a listener or rule. berth serves one terminal action
/// (forward, redirect or fixed-response) per rule; authentication actions need an identity
/// provider berth does not have.
pub fn normalize(actions: Vec<wire::Action>) -> Result<Vec<wire::Action>, AwsError> {
    if actions.is_empty() {
        return Err(validation("At least one action must be specified"));
    }
    let mut out = Vec::with_capacity(actions.len());
    for mut a in actions {
        let kind = a.r#type.clone().unwrap_or_default();
        match kind.as_str() {
            "forward" => {
                let mut tuples = a
                    .forward_config
                    .as_ref()
                    .and_then(|f| f.target_groups.clone())
                    .unwrap_or_default();
                match (&a.target_group_arn, tuples.is_empty()) {
                    (None, true) => {
                        return Err(validation(
                            "A target group ARN must be specified for a forward action",
                        ));
                    }
                    (Some(arn), true) => tuples.push(wire::TargetGroupTuple {
                        target_group_arn: Some(arn.clone()),
                        weight: Some(1),
                    }),
                    (Some(arn), false)
                        if !(tuples.len() == 1
                            && tuples[0].target_group_arn.as_deref() == Some(arn)) =>
                    {
                        return Err(validation(
                            "You cannot specify both a target group ARN and a forward config with different target groups",
                        ));
                    }
                    _ => {}
                }
                if tuples.len() > 5 {
                    return Err(AwsError::client(
                        "TooManyTargetGroups",
                        "A forward action can forward to at most 5 target groups",
                    ));
                }
                let mut seen = Vec::new();
                for t in &mut tuples {
                    let arn = t.target_group_arn.clone().unwrap_or_default();
                    if arn.is_empty() {
                        return Err(validation(
                            "A target group ARN must be specified for each target group of a forward config",
                        ));
                    }
                    if seen.contains(&arn) {
                        return Err(validation(format!(
                            "Target group '{arn}' is specified more than once in a forward config"
                        )));
                    }
                    seen.push(arn);
                    let w = *t.weight.get_or_insert(1);
                    if !(0..=999).contains(&w) {
                        return Err(validation(format!(
                            "Target group weight '{w}' must be between 0 and 999"
                        )));
                    }
                }
                let mut stick = a
                    .forward_config
                    .as_ref()
                    .and_then(|f| f.target_group_stickiness_config.clone())
                    .unwrap_or_default();
                let enabled = *stick.enabled.get_or_insert(false);
                if enabled {
                    let d = stick.duration_seconds.unwrap_or(0);
                    if !(1..=604_800).contains(&d) {
                        return Err(validation(
                            "Target group stickiness duration must be between 1 and 604800 seconds",
                        ));
                    }
                } else if stick.duration_seconds.is_some() {
                    return Err(validation(
                        "A target group stickiness duration cannot be specified when stickiness is disabled",
                    ));
                }
                a.target_group_arn = (tuples.len() == 1)
                    .then(|| tuples[0].target_group_arn.clone())
                    .flatten();
                a.forward_config = Some(wire::ForwardActionConfig {
                    target_groups: Some(tuples),
                    target_group_stickiness_config: Some(stick),
                });
                a.redirect_config = None;
                a.fixed_response_config = None;
            }
            "redirect" => {
                let Some(r) = a.redirect_config.as_mut() else {
                    return Err(validation(
                        "A redirect configuration must be specified for a redirect action",
                    ));
                };
                let protocol = r.protocol.get_or_insert_with(|| "#{protocol}".into());
                if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
                    return Err(validation(format!(
                        "Redirect protocol '{protocol}' must be HTTP, HTTPS or #{{protocol}}"
                    )));
                }
                r.port.get_or_insert_with(|| "#{port}".into());
                r.host.get_or_insert_with(|| "#{host}".into());
                let path = r.path.get_or_insert_with(|| "/#{path}".into());
                if !path.starts_with('/') {
                    return Err(validation("Redirect path must start with a '/'"));
                }
                r.query.get_or_insert_with(|| "#{query}".into());
                if a.target_group_arn.is_some() || a.forward_config.is_some() {
                    return Err(validation(
                        "A target group cannot be specified for a redirect action",
                    ));
                }
            }
            "fixed-response" => {
                let Some(f) = a.fixed_response_config.as_mut() else {
                    return Err(validation(
                        "A fixed response configuration must be specified for a fixed-response action",
                    ));
                };
                if let Some(ct) = &f.content_type
                    && !CONTENT_TYPES.contains(&ct.as_str())
                {
                    return Err(validation(format!(
                        "Content type '{ct}' must be one of {}",
                        CONTENT_TYPES.join(", ")
                    )));
                }
                if f.message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                    return Err(validation(
                        "The message body of a fixed response cannot be longer than 1024 characters",
                    ));
                }
                if a.target_group_arn.is_some() || a.forward_config.is_some() {
                    return Err(validation(
                        "A target group cannot be specified for a fixed-response action",
                    ));
                }
            }
            other => {
                return Err(AwsError::client(
                    "InvalidLoadBalancerAction",
                    format!(
                        "berth does not support '{other}' actions; use forward, redirect or fixed-response"
                    ),
                ));
            }
        }
        out.push(a);
    }
    if out.len() > 1 {
        return Err(AwsError::client(
            "TooManyActions",
            "berth supports exactly one action (forward, redirect or fixed-response) per rule",
        ));
    }
    out[0].order.get_or_insert(1);
    Ok(out)
}

const FIELDS: &[&str] = &[
    "http-header",
    "http-request-method",
    "host-header",
    "path-pattern",
    "query-string",
    "source-ip",
];

/// Checks and normalizes a rule's conditions. ELBv2 allows at most five condition values per
/// rule in all, each field once (`http-header` and `query-string` once per header or key set).
pub fn conditions(conds: Vec<wire::RuleCondition>) -> Result<Vec<wire::RuleCondition>, AwsError> {
    if conds.is_empty() {
        return Err(validation("A rule must have at least one condition"));
    }
    let mut out = Vec::with_capacity(conds.len());
    let mut fields_seen: Vec<String> = Vec::new();
    let mut total = 0;
    for mut c in conds {
        let field = c.field.clone().unwrap_or_default();
        if !FIELDS.contains(&field.as_str()) {
            return Err(validation(format!(
                "Condition field '{field}' must be one of [{}]",
                FIELDS.join(", ")
            )));
        }
        if !matches!(field.as_str(), "http-header" | "query-string") {
            if fields_seen.contains(&field) {
                return Err(validation(format!(
                    "A rule can have only one '{field}' condition"
                )));
            }
            fields_seen.push(field.clone());
        }
        let values: Vec<String> = match field.as_str() {
            "path-pattern" | "host-header" => {
                let config = if field == "path-pattern" {
                    c.path_pattern_config
                        .as_ref()
                        .and_then(|p| p.values.clone())
                } else {
                    c.host_header_config.as_ref().and_then(|p| p.values.clone())
                };
                let v = match (c.values.clone(), config) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(validation(format!(
                            "You cannot specify both 'Values' and a '{field}' configuration with different values"
                        )));
                    }
                    (Some(a), _) => a,
                    (None, Some(b)) => b,
                    (None, None) => Vec::new(),
                };
                for s in &v {
                    if s.is_empty() || s.len() > 128 {
                        return Err(validation(format!(
                            "Condition value '{s}' must be between 1 and 128 characters"
                        )));
                    }
                }
                c.values = Some(v.clone());
                if field == "path-pattern" {
                    c.path_pattern_config = Some(wire::PathPatternConditionConfig {
                        values: Some(v.clone()),
                        ..Default::default()
                    });
                } else {
                    c.host_header_config = Some(wire::HostHeaderConditionConfig {
                        values: Some(v.clone()),
                        ..Default::default()
                    });
                }
                v
            }
            "http-header" => {
                let cfg = c.http_header_config.clone().unwrap_or_default();
                let name = cfg.http_header_name.clone().unwrap_or_default();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(validation(format!(
                        "HTTP header name '{name}' is not valid"
                    )));
                }
                cfg.values.unwrap_or_default()
            }
            "http-request-method" => {
                let v = c
                    .http_request_method_config
                    .as_ref()
                    .and_then(|m| m.values.clone())
                    .unwrap_or_default();
                for m in &v {
                    if m.is_empty()
                        || m.len() > 40
                        || !m
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
                    {
                        return Err(validation(format!(
                            "HTTP request method '{m}' is not valid"
                        )));
                    }
                }
                v
            }
            "query-string" => {
                let pairs = c
                    .query_string_config
                    .as_ref()
                    .and_then(|q| q.values.clone())
                    .unwrap_or_default();
                for p in &pairs {
                    if p.value.as_deref().unwrap_or_default().is_empty() {
                        return Err(validation(
                            "A query string condition value must be specified",
                        ));
                    }
                }
                pairs
                    .iter()
                    .map(|p| p.value.clone().unwrap_or_default())
                    .collect()
            }
            _ => {
                let v = c
                    .source_ip_config
                    .as_ref()
                    .and_then(|s| s.values.clone())
                    .unwrap_or_default();
                for cidr in &v {
                    if !is_cidr(cidr) {
                        return Err(validation(format!(
                            "Source IP '{cidr}' is not a valid CIDR block"
                        )));
                    }
                }
                v
            }
        };
        if values.is_empty() {
            return Err(validation(format!(
                "A '{field}' condition must have at least one value"
            )));
        }
        total += values.len();
        out.push(c);
    }
    if total > 5 {
        return Err(validation("A rule can have at most 5 condition values"));
    }
    Ok(out)
}

/// The longest `Regex` or `Replace` of a rewrite ELBv2 takes.
const MAX_REWRITE_LEN: usize = 1024;

/// Checks a rule's transforms as ELBv2 does: at most one `host-header-rewrite` and one
/// `url-rewrite`, each with the config of its type only and one rewrite, whose regular
/// expression uses none of what ELBv2's engine lacks (look-around, backreferences, atomic
/// groups, possessive quantifiers, recursion, Unicode classes). Returned as given.
pub fn transforms(list: Vec<wire::RuleTransform>) -> Result<Vec<wire::RuleTransform>, AwsError> {
    let mut seen: Vec<&str> = Vec::new();
    for t in &list {
        let kind = t.r#type.as_deref().unwrap_or_default();
        let (config, other) = match kind {
            "host-header-rewrite" => (
                t.host_header_rewrite_config.as_ref().map(|c| &c.rewrites),
                t.url_rewrite_config.is_some(),
            ),
            "url-rewrite" => (
                t.url_rewrite_config.as_ref().map(|c| &c.rewrites),
                t.host_header_rewrite_config.is_some(),
            ),
            other => {
                return Err(validation(format!(
                    "Transform type '{other}' is not valid; valid types are host-header-rewrite and url-rewrite"
                )));
            }
        };
        if seen.contains(&kind) {
            return Err(validation(format!(
                "A rule can have only one transform of type '{kind}'"
            )));
        }
        seen.push(kind);
        if other {
            return Err(validation(format!(
                "A transform of type '{kind}' can carry only the config of its own type"
            )));
        }
        let rewrites = config.cloned().flatten().unwrap_or_default();
        let [rewrite] = rewrites.as_slice() else {
            return Err(validation(format!(
                "A transform of type '{kind}' must have exactly one rewrite"
            )));
        };
        let regex = rewrite.regex.as_deref().unwrap_or_default();
        let replace = rewrite.replace.as_deref().unwrap_or_default();
        if regex.is_empty() || regex.len() > MAX_REWRITE_LEN || replace.len() > MAX_REWRITE_LEN {
            return Err(validation(format!(
                "A rewrite's regular expression must be 1 to {MAX_REWRITE_LEN} characters long and its replacement at most {MAX_REWRITE_LEN}"
            )));
        }
        check_rewrite_regex(regex)?;
    }
    Ok(list)
}

/// `regex-syntax` refuses look-around, backreferences, atomic groups and recursion as ELBv2's
/// engine does. It accepts Unicode classes, and reads a possessive `a++` as `(a+)+`, so both
/// are looked for.
fn check_rewrite_regex(regex: &str) -> Result<(), AwsError> {
    use regex_syntax::ast::{self, Visitor};
    struct Unsupported;
    impl Visitor for Unsupported {
        type Output = ();
        type Err = &'static str;
        fn finish(self) -> Result<(), Self::Err> {
            Ok(())
        }
        fn visit_class_set_item_pre(&mut self, item: &ast::ClassSetItem) -> Result<(), Self::Err> {
            match item {
                ast::ClassSetItem::Unicode(_) => Err("Unicode character classes are not supported"),
                _ => Ok(()),
            }
        }
        fn visit_pre(&mut self, a: &ast::Ast) -> Result<(), Self::Err> {
            match a {
                ast::Ast::ClassUnicode(_) => Err("Unicode character classes are not supported"),
                ast::Ast::Repetition(r) if matches!(*r.ast, ast::Ast::Repetition(_)) => {
                    Err("possessive and stacked quantifiers are not supported")
                }
                _ => Ok(()),
            }
        }
    }
    let bad = |why: String| {
        validation(format!(
            "The regular expression '{regex}' is not valid: {why}"
        ))
    };
    let parsed = ast::parse::Parser::new()
        .parse(regex)
        .map_err(|e| bad(e.kind().to_string()))?;
    ast::visit(&parsed, Unsupported).map_err(|why| bad(why.into()))?;
    regex_syntax::hir::translate::Translator::new()
        .translate(regex, &parsed)
        .map_err(|e| bad(e.kind().to_string()))?;
    Ok(())
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(arn: &str) -> wire::Action {
        wire::Action {
            r#type: Some("forward".into()),
            target_group_arn: Some(arn.into()),
            ..Default::default()
        }
    }

    #[test]
    fn rewrite_regexes_lack_what_elbv2_lacks() {
        let why = |re: &str| check_rewrite_regex(re).map_err(|e| e.message.to_string());
        assert!(why("^/api/(.*)$").is_ok());
        assert!(why("^([a-z]+)\\.example\\.com$").is_ok());
        for (re, reason) in [
            ("(?=a)b", "look-around"),
            ("(?<!a)b", "look-around"),
            ("(a)\\1", "backreferences"),
            ("\\p{L}", "Unicode character classes"),
            ("[\\P{Greek}x]", "Unicode character classes"),
            ("(?>ab)", ""),
            ("a++", "possessive"),
            ("a{2}+", "possessive"),
        ] {
            let e = why(re).expect_err(re);
            assert!(e.contains(reason), "{re}: {e}");
        }
    }

    #[test]
    fn a_single_forward_carries_its_forward_config() {
        let a = normalize(vec![forward("tg")]).expect("valid");
        let f = a[0].forward_config.as_ref().expect("config");
        assert_eq!(f.target_groups.as_ref().expect("tgs")[0].weight, Some(1));
        assert_eq!(a[0].target_group_arn.as_deref(), Some("tg"));
        assert_eq!(a[0].order, Some(1));
    }

    #[test]
    fn bad_actions_and_conditions_are_refused() {
        assert!(normalize(vec![]).is_err());
        let mut a = forward("tg");
        a.r#type = Some("authenticate-oidc".into());
        assert_eq!(
            normalize(vec![a]).unwrap_err().code,
            "InvalidLoadBalancerAction"
        );
        let c = wire::RuleCondition {
            field: Some("source-ip".into()),
            source_ip_config: Some(wire::SourceIpConditionConfig {
                values: Some(vec!["10.0.0.0/33".into()]),
            }),
            ..Default::default()
        };
        assert_eq!(conditions(vec![c]).unwrap_err().code, "ValidationError");
        let c = wire::RuleCondition {
            field: Some("path-pattern".into()),
            values: Some(vec![
                "/a".into(),
                "/b".into(),
                "/c".into(),
                "/d".into(),
                "/e".into(),
                "/f".into(),
            ]),
            ..Default::default()
        };
        assert!(conditions(vec![c]).is_err());
    }
}

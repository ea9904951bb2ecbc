//! Rule conditions, compiled from the stored wire form and evaluated against a request, as an
//! Application Load Balancer evaluates them. Pure: no I/O, no clock.
//!
//! ALB's semantics: a rule matches when every condition matches; a condition matches when any of
//! its values matches. `path-pattern` is case-sensitive and sees the path without the query;
//! `host-header`, `http-header` values and `query-string` are case-insensitive; methods are
//! compared exactly; `source-ip` is the address of the client's connection (not
//! `X-Forwarded-For`). `*` matches any run of characters, `?` exactly one.

use berth_shapes::elbv2 as wire;
use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// What conditions look at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The `Host` header (or HTTP/2 `:authority`) without its port.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub source: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    PathPattern(Vec<String>),
    HostHeader(Vec<String>),
    HttpHeader {
        name: String,
        values: Vec<String>,
    },
    Method(Vec<String>),
    /// `(key, value)`: a pair without a key matches any parameter's value.
    QueryString(Vec<(Option<String>, String)>),
    SourceIp(Vec<IpNet>),
    /// A field berth does not evaluate (never stored: the API refuses it); matches nothing so
    /// a rule is never applied more widely than written.
    Never,
}

/// The values of a condition: its `…Config` values when set (the normalized form carries both),
/// else the legacy `Values`.
fn values_of(config: Option<&Vec<String>>, legacy: Option<&Vec<String>>) -> Vec<String> {
    config.or(legacy).cloned().unwrap_or_default()
}

pub fn compile(conditions: &[wire::RuleCondition]) -> Vec<Condition> {
    conditions.iter().map(compile_one).collect()
}

fn compile_one(c: &wire::RuleCondition) -> Condition {
    let legacy = c.values.as_ref();
    match c.field.as_deref().unwrap_or_default() {
        "path-pattern" => Condition::PathPattern(values_of(
            c.path_pattern_config
                .as_ref()
                .and_then(|p| p.values.as_ref()),
            legacy,
        )),
        "host-header" => Condition::HostHeader(values_of(
            c.host_header_config
                .as_ref()
                .and_then(|p| p.values.as_ref()),
            legacy,
        )),
        "http-header" => match &c.http_header_config {
            Some(h) => Condition::HttpHeader {
                name: h.http_header_name.clone().unwrap_or_default(),
                values: h.values.clone().unwrap_or_default(),
            },
            None => Condition::Never,
        },
        "http-request-method" => Condition::Method(values_of(
            c.http_request_method_config
                .as_ref()
                .and_then(|p| p.values.as_ref()),
            legacy,
        )),
        "query-string" => Condition::QueryString(
            c.query_string_config
                .as_ref()
                .and_then(|q| q.values.as_ref())
                .into_iter()
                .flatten()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect(),
        ),
        "source-ip" => Condition::SourceIp(
            values_of(
                c.source_ip_config.as_ref().and_then(|p| p.values.as_ref()),
                legacy,
            )
            .iter()
            .filter_map(|v| v.parse::<IpNet>().ok())
            .collect(),
        ),
        _ => Condition::Never,
    }
}

/// Whether every condition matches `req` (an empty list matches everything).
pub fn all_match(conditions: &[Condition], req: &RequestView<'_>) -> bool {
    conditions.iter().all(|c| c.matches(req))
}

impl Condition {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Condition::PathPattern(patterns) => {
                patterns.iter().any(|p| wildcard(p, req.path, false))
            }
            Condition::HostHeader(patterns) => req
                .host
                .is_some_and(|h| patterns.iter().any(|p| wildcard(p, h, true))),
            Condition::HttpHeader { name, values } => req
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| values.iter().any(|p| wildcard(p, v, true))),
            Condition::Method(methods) => methods.iter().any(|m| m == req.method),
            Condition::QueryString(pairs) => {
                let params: Vec<(String, String)> =
                    form_pairs(req.query.unwrap_or_default()).collect();
                pairs.iter().any(|(key, value)| {
                    params.iter().any(|(k, v)| {
                        key.as_deref().is_none_or(|key| wildcard(key, k, true))
                            && wildcard(value, v, true)
                    })
                })
            }
            Condition::SourceIp(nets) => nets.iter().any(|n| n.contains(&req.source)),
            Condition::Never => false,
        }
    }
}

/// The query's `key=value` pairs, percent-decoded (`+` stays as is: ALB compares the decoded
/// URL query, not a form).
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

/// ALB's wildcard match: `*` any run (also empty), `?` exactly one character. Linear in
/// practice: on a mismatch it only moves back to the last `*`.
pub fn wildcard(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same =
        |a: char, b: char| a == b || (case_insensitive && a.to_lowercase().eq(b.to_lowercase()));
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && same(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_alb_documents() {
        let cases: &[(&str, &str, bool, bool)] = &[
            ("/img/*", "/img/a.png", false, true),
            ("/img/*", "/img/", false, true),
            ("/img/*", "/img", false, false),
            ("/img/*", "/IMG/a", false, false),
            ("*.example.com", "API.Example.com", true, true),
            ("*.example.com", "example.com", true, false),
            ("/a?c", "/abc", false, true),
            ("/a?c", "/ac", false, false),
            ("*", "", false, true),
            ("/*/x/*", "/a/b/x/c", false, true),
            ("/*/x/*", "/a/b/y/c", false, false),
            ("a*b*c", "aXbYbZc", false, true),
            ("exact", "exact", false, true),
            ("exact", "exactly", false, false),
        ];
        for &(pattern, text, ci, want) in cases {
            assert_eq!(wildcard(pattern, text, ci), want, "{pattern} ~ {text}");
        }
    }

    fn cond(field: &str, values: &[&str]) -> wire::RuleCondition {
        wire::RuleCondition {
            field: Some(field.into()),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn view<'a>(headers: &'a HeaderMap, path: &'a str, query: Option<&'a str>) -> RequestView<'a> {
        RequestView {
            method: "GET",
            host: Some("api.example.com"),
            path,
            query,
            headers,
            source: "10.1.2.3".parse().expect("ip"),
        }
    }

    #[test]
    fn each_condition_kind_matches_and_refuses() {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "Mozilla/5.0 (Mobile)".parse().expect("value"));
        let header = wire::RuleCondition {
            field: Some("http-header".into()),
            http_header_config: Some(wire::HttpHeaderConditionConfig {
                http_header_name: Some("User-Agent".into()),
                values: Some(vec!["*mobile*".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let query = |key: Option<&str>, value: &str| wire::RuleCondition {
            field: Some("query-string".into()),
            query_string_config: Some(wire::QueryStringConditionConfig {
                values: Some(vec![wire::QueryStringKeyValuePair {
                    key: key.map(str::to_string),
                    value: Some(value.into()),
                }]),
            }),
            ..Default::default()
        };
        let method = wire::RuleCondition {
            field: Some("http-request-method".into()),
            http_request_method_config: Some(wire::HttpRequestMethodConditionConfig {
                values: Some(vec!["GET".into(), "HEAD".into()]),
            }),
            ..Default::default()
        };
        let source = wire::RuleCondition {
            field: Some("source-ip".into()),
            source_ip_config: Some(wire::SourceIpConditionConfig {
                values: Some(vec!["10.0.0.0/8".into()]),
            }),
            ..Default::default()
        };
        let other_source = wire::RuleCondition {
            field: Some("source-ip".into()),
            source_ip_config: Some(wire::SourceIpConditionConfig {
                values: Some(vec!["192.168.0.0/16".into()]),
            }),
            ..Default::default()
        };
        let cases: Vec<(wire::RuleCondition, bool)> = vec![
            (cond("path-pattern", &["/api/*"]), true),
            (cond("path-pattern", &["/web/*", "/api/v?/*"]), true),
            (cond("path-pattern", &["/API/*"]), false),
            (cond("host-header", &["*.EXAMPLE.com"]), true),
            (cond("host-header", &["www.example.com"]), false),
            (header, true),
            (query(Some("version"), "v*"), true),
            (query(Some("Version"), "V2"), true),
            (query(None, "v2"), true),
            (query(Some("lang"), "en"), false),
            (method, true),
            (source, true),
            (other_source, false),
        ];
        for (c, want) in cases {
            let compiled = compile(std::slice::from_ref(&c));
            let req = view(&headers, "/api/v1/users", Some("version=v2&x=%41"));
            assert_eq!(all_match(&compiled, &req), want, "{c:?}");
        }
    }

    #[test]
    fn a_rule_needs_every_condition_and_a_query_is_percent_decoded() {
        let headers = HeaderMap::new();
        let both = compile(&[
            cond("path-pattern", &["/api/*"]),
            cond("host-header", &["other.example.com"]),
        ]);
        assert!(!all_match(&both, &view(&headers, "/api/x", None)));
        assert!(all_match(&[], &view(&headers, "/", None)));
        let q = compile(&[wire::RuleCondition {
            field: Some("query-string".into()),
            query_string_config: Some(wire::QueryStringConditionConfig {
                values: Some(vec![wire::QueryStringKeyValuePair {
                    key: Some("name".into()),
                    value: Some("a b".into()),
                }]),
            }),
            ..Default::default()
        }]);
        assert!(all_match(&q, &view(&headers, "/", Some("name=a%20b"))));
        assert!(!all_match(&q, &view(&headers, "/", Some("name=ab"))));
    }
}

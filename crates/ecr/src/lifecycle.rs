//! Lifecycle policies as pure functions: [`parse`] checks a policy document as ECR does and
//! [`evaluate`] decides which images it expires, under ECR's evaluation rules:
//!
//! - rules are evaluated in `rulePriority` order, lowest first;
//! - a rule *selects* images by `tagStatus`: `tagged` (with `tagPrefixList` or
//!   `tagPatternList`, every entry matched by some tag of the image), `untagged`, or `any`;
//! - an image belongs to the first rule that selects it, and only that rule may expire it ("an
//!   image that matches the tagging requirements of a rule cannot be expired by a rule with a
//!   lower priority"), so each image is expired by at most one rule;
//! - a rule still counts the images earlier rules selected or expired ("rules can never mark
//!   images that are marked by higher priority rules, but can still identify them as if they
//!   haven't been expired");
//! - `imageCountMoreThan n` keeps the `n` most recently pushed images it selects and marks the
//!   rest, oldest first; `sinceImagePushed n days` marks those pushed more than `n` days ago;
//! - the only action is `expire`.
//!
//! No I/O, no clock: the caller passes the images and the time.

use serde_json::{Map, Value};

/// A validated lifecycle policy, rules in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: i32,
    pub status: TagStatus,
    pub filter: TagFilter,
    pub count: Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

/// For `tagged` rules: every entry must be matched by some tag of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    None,
    Prefixes(Vec<String>),
    /// `*` matches any run of characters.
    Patterns(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `imageCountMoreThan`: keep this many of the newest.
    MoreThan(u32),
    /// `sinceImagePushed` in days.
    SincePushedDays(u32),
}

/// An image as the evaluation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at_ms: i64,
}

/// An image a policy expires, and the rule that does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub digest: String,
    pub rule_priority: i32,
}

/// Most wildcards a tag pattern may hold (ECR's limit).
pub const MAX_PATTERN_WILDCARDS: usize = 4;
const DAY_MS: i64 = 86_400_000;

impl Rule {
    fn selects(&self, image: &Image) -> bool {
        match self.status {
            TagStatus::Any => true,
            TagStatus::Untagged => image.tags.is_empty(),
            TagStatus::Tagged => match &self.filter {
                TagFilter::None => !image.tags.is_empty(),
                TagFilter::Prefixes(ps) => ps
                    .iter()
                    .all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str()))),
                TagFilter::Patterns(ps) => ps.iter().all(|p| {
                    image
                        .tags
                        .iter()
                        .any(|t| berth_registry::wildcard_match(p, t))
                }),
            },
        }
    }
}

/// The images `policy` expires at `now_ms`, oldest first.
pub fn evaluate(policy: &Policy, images: &[Image], now_ms: i64) -> Vec<Expiry> {
    // Newest first; ties broken by digest so the outcome never depends on input order.
    let mut by_age: Vec<&Image> = images.iter().collect();
    by_age.sort_by(|a, b| {
        b.pushed_at_ms
            .cmp(&a.pushed_at_ms)
            .then_with(|| a.digest.cmp(&b.digest))
    });
    // The rule each image belongs to: the first that selects it.
    let owner: Vec<Option<i32>> = by_age
        .iter()
        .map(|i| {
            policy
                .rules
                .iter()
                .find(|r| r.selects(i))
                .map(|r| r.priority)
        })
        .collect();
    let mut expired: Vec<(usize, i32)> = Vec::new();
    for rule in &policy.rules {
        let selected = by_age
            .iter()
            .enumerate()
            .filter(|(_, image)| rule.selects(image));
        let marked: Vec<usize> = match rule.count {
            Count::MoreThan(n) => selected.skip(n as usize).map(|(i, _)| i).collect(),
            Count::SincePushedDays(days) => selected
                .filter(|(_, image)| {
                    now_ms.saturating_sub(image.pushed_at_ms) > i64::from(days) * DAY_MS
                })
                .map(|(i, _)| i)
                .collect(),
        };
        for i in marked {
            if owner[i] == Some(rule.priority) {
                expired.push((i, rule.priority));
            }
        }
    }
    // Oldest first.
    expired.sort_by_key(|e| std::cmp::Reverse(e.0));
    expired
        .into_iter()
        .map(|(i, rule_priority)| Expiry {
            digest: by_age[i].digest.clone(),
            rule_priority,
        })
        .collect()
}

fn keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what} has an unknown member '{k}'")),
        None => Ok(()),
    }
}

fn string_list(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let list = v
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or(format!("{what} must be a non-empty list of strings"))?;
    list.iter()
        .map(|s| {
            s.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(format!("{what} must hold non-empty strings"))
        })
        .collect()
}

fn positive(v: Option<&Value>, what: &str) -> Result<i64, String> {
    v.and_then(Value::as_i64)
        .filter(|n| *n >= 1)
        .ok_or(format!("{what} must be an integer of at least 1"))
}

/// Checks a lifecycle policy document as ECR does and returns it with its rules in priority
/// order. The error says what is wrong.
pub fn parse(text: &str) -> Result<Policy, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let doc = doc.as_object().ok_or("the policy is not a JSON object")?;
    keys(doc, &["rules"], "the policy")?;
    let rules = doc
        .get("rules")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or("rules must be a non-empty list")?;
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        out.push(parse_rule(rule)?);
    }
    out.sort_by_key(|r| r.priority);
    if let Some(w) = out.windows(2).find(|w| w[0].priority == w[1].priority) {
        return Err(format!("rulePriority {} is not unique", w[0].priority));
    }
    if out
        .iter()
        .filter(|r| r.status == TagStatus::Untagged)
        .count()
        > 1
    {
        return Err("only one rule may select untagged images".into());
    }
    if let Some(pos) = out.iter().position(|r| r.status == TagStatus::Any)
        && pos != out.len() - 1
    {
        return Err("a rule with tagStatus any must have the highest rulePriority".into());
    }
    let mut filters: Vec<Vec<String>> = Vec::new();
    for r in &out {
        let (TagFilter::Prefixes(list) | TagFilter::Patterns(list)) = &r.filter else {
            continue;
        };
        let mut list = list.clone();
        list.sort();
        list.dedup();
        if filters.contains(&list) {
            return Err(format!(
                "the tag prefixes or patterns of rule {} repeat another rule's",
                r.priority
            ));
        }
        filters.push(list);
    }
    Ok(Policy { rules: out })
}

fn parse_rule(rule: &Value) -> Result<Rule, String> {
    let rule = rule.as_object().ok_or("a rule is not an object")?;
    keys(
        rule,
        &["rulePriority", "description", "selection", "action"],
        "a rule",
    )?;
    let priority = positive(rule.get("rulePriority"), "rulePriority")?;
    let priority = i32::try_from(priority).map_err(|_| "rulePriority is too large".to_owned())?;
    if rule.get("description").is_some_and(|d| !d.is_string()) {
        return Err(format!("rule {priority}: description must be a string"));
    }
    let action = rule
        .get("action")
        .and_then(Value::as_object)
        .ok_or(format!("rule {priority}: action is missing"))?;
    keys(action, &["type"], "an action")?;
    match action.get("type").and_then(Value::as_str) {
        Some("expire") => {}
        Some("transition") => {
            return Err(format!(
                "rule {priority}: action transition is not supported (berth has no archive storage class)"
            ));
        }
        _ => return Err(format!("rule {priority}: action type must be expire")),
    }
    let sel = rule
        .get("selection")
        .and_then(Value::as_object)
        .ok_or(format!("rule {priority}: selection is missing"))?;
    keys(
        sel,
        &[
            "tagStatus",
            "tagPrefixList",
            "tagPatternList",
            "countType",
            "countUnit",
            "countNumber",
        ],
        "a selection",
    )?;
    let status = match sel.get("tagStatus").and_then(Value::as_str) {
        Some("tagged") => TagStatus::Tagged,
        Some("untagged") => TagStatus::Untagged,
        Some("any") => TagStatus::Any,
        _ => {
            return Err(format!(
                "rule {priority}: tagStatus must be tagged, untagged or any"
            ));
        }
    };
    let filter = match (sel.get("tagPrefixList"), sel.get("tagPatternList")) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "rule {priority}: tagPrefixList and tagPatternList cannot both be given"
            ));
        }
        (Some(p), None) => TagFilter::Prefixes(string_list(p, "tagPrefixList")?),
        (None, Some(p)) => {
            let patterns = string_list(p, "tagPatternList")?;
            if let Some(p) = patterns
                .iter()
                .find(|p| p.matches('*').count() > MAX_PATTERN_WILDCARDS)
            {
                return Err(format!(
                    "rule {priority}: tag pattern '{p}' has more than {MAX_PATTERN_WILDCARDS} wildcards"
                ));
            }
            TagFilter::Patterns(patterns)
        }
        (None, None) => TagFilter::None,
    };
    match (status, &filter) {
        (TagStatus::Tagged, TagFilter::None) => {
            return Err(format!(
                "rule {priority}: tagStatus tagged needs a tagPrefixList or a tagPatternList"
            ));
        }
        (TagStatus::Untagged | TagStatus::Any, TagFilter::Prefixes(_) | TagFilter::Patterns(_)) => {
            return Err(format!(
                "rule {priority}: tagPrefixList and tagPatternList apply to tagStatus tagged only"
            ));
        }
        _ => {}
    }
    let number = positive(sel.get("countNumber"), "countNumber")?;
    let number = u32::try_from(number).map_err(|_| "countNumber is too large".to_owned())?;
    let unit = sel.get("countUnit");
    let count = match sel.get("countType").and_then(Value::as_str) {
        Some("imageCountMoreThan") => {
            if unit.is_some() {
                return Err(format!(
                    "rule {priority}: countUnit applies to countType sinceImagePushed only"
                ));
            }
            Count::MoreThan(number)
        }
        Some("sinceImagePushed") => match unit.and_then(Value::as_str) {
            Some("days") => Count::SincePushedDays(number),
            _ => {
                return Err(format!(
                    "rule {priority}: countType sinceImagePushed needs countUnit days"
                ));
            }
        },
        Some(other @ ("sinceImagePulled" | "sinceImageTransitioned")) => {
            return Err(format!(
                "rule {priority}: countType {other} is not supported by berth"
            ));
        }
        _ => {
            return Err(format!(
                "rule {priority}: countType must be imageCountMoreThan or sinceImagePushed"
            ));
        }
    };
    Ok(Rule {
        priority,
        status,
        filter,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_000 * DAY_MS;

    fn image(name: &str, tags: &[&str], days_ago: i64) -> Image {
        Image {
            digest: name.to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at_ms: NOW - days_ago * DAY_MS,
        }
    }

    fn run(policy: Value, images: &[Image]) -> Vec<(String, i32)> {
        let policy = parse(&policy.to_string()).expect("valid policy");
        evaluate(&policy, images, NOW)
            .into_iter()
            .map(|e| (e.digest, e.rule_priority))
            .collect()
    }

    fn rule(priority: i32, selection: Value) -> Value {
        json!({"rulePriority": priority, "selection": selection, "action": {"type": "expire"}})
    }

    fn expired(names: &[(&str, i32)]) -> Vec<(String, i32)> {
        names.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
    }

    /// ECR's "Filtering on multiple rules", example A: image A is expired by rule 1; rule 2
    /// would mark A and B, but both were selected by rule 1, so it expires nothing.
    #[test]
    fn multiple_rules_example_a() {
        let images = [
            image("A", &["beta-1", "prod-1"], 10),
            image("B", &["beta-2", "prod-2"], 9),
            image("C", &["beta-3"], 8),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1})),
            rule(2, json!({"tagStatus": "tagged", "tagPrefixList": ["beta"], "countType": "imageCountMoreThan", "countNumber": 1})),
        ]});
        assert_eq!(run(policy, &images), expired(&[("A", 1)]));
    }

    /// Example B: rule 1 expires A and B; rule 2 marks A and B too, already rule 1's.
    #[test]
    fn multiple_rules_example_b() {
        let images = [
            image("A", &["beta-1", "prod-1"], 10),
            image("B", &["beta-2", "prod-2"], 9),
            image("C", &["beta-3", "prod-3"], 8),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1})),
            rule(2, json!({"tagStatus": "tagged", "tagPrefixList": ["beta"], "countType": "imageCountMoreThan", "countNumber": 1})),
        ]});
        assert_eq!(run(policy, &images), expired(&[("A", 1), ("B", 1)]));
    }

    /// "Filtering on multiple tags in a single rule", example A: the rule selects images with
    /// tags of both prefixes (A and C), keeps the newest and expires A.
    #[test]
    fn multiple_tags_in_one_rule_count() {
        let images = [
            image("A", &["alpha-1", "beta-1"], 10),
            image("B", &["alpha-2"], 9),
            image("C", &["alpha-3", "beta-3"], 8),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"], "countType": "imageCountMoreThan", "countNumber": 1})),
        ]});
        assert_eq!(run(policy, &images), expired(&[("A", 1)]));
    }

    /// Example B: `sinceImagePushed` 5 days over images with both prefixes, pushed 10, 9, 8
    /// and 4 days ago: A, B and C expire, D is too recent, E lacks a prefix.
    #[test]
    fn multiple_tags_in_one_rule_since_pushed() {
        let images = [
            image("A", &["alpha-1", "beta-1"], 10),
            image("B", &["alpha-2", "beta-2"], 9),
            image("C", &["alpha-3", "beta-3"], 8),
            image("D", &["alpha-4", "beta-4"], 4),
            image("E", &["alpha-5"], 20),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 5})),
        ]});
        assert_eq!(
            run(policy, &images),
            expired(&[("A", 1), ("B", 1), ("C", 1)])
        );
    }

    /// "Filtering on all images": keep the newest, whatever its tags.
    #[test]
    fn any_keeps_the_newest() {
        let images = [
            image("A", &["alpha-1"], 4),
            image("B", &[], 3),
            image("C", &["alpha-2", "beta"], 2),
            image("D", &[], 1),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
        ]});
        assert_eq!(
            run(policy, &images),
            expired(&[("A", 1), ("B", 1), ("C", 1)])
        );
    }

    /// ECR's example "expire untagged images older than 14 days" next to a tagged rule: the
    /// tagged images a rule selects are safe from the `any` rule after it.
    #[test]
    fn untagged_tagged_and_any() {
        let images = [
            image("old-untagged", &[], 30),
            image("new-untagged", &[], 2),
            image("prod-1", &["prod-1"], 40),
            image("prod-2", &["prod-2"], 35),
            image("prod-3", &["prod-3"], 1),
            image("dev", &["dev-1"], 50),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14})),
            rule(2, json!({"tagStatus": "tagged", "tagPatternList": ["prod-*"], "countType": "imageCountMoreThan", "countNumber": 2})),
            rule(3, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3})),
        ]});
        // Rule 1: old-untagged. Rule 2: keeps prod-3, prod-2; expires prod-1. Rule 3 counts all
        // six, keeps the three newest (prod-3, new-untagged, old-untagged) and may expire only
        // what no earlier rule selected: dev.
        assert_eq!(
            run(policy, &images),
            expired(&[("dev", 3), ("prod-1", 2), ("old-untagged", 1)])
        );
    }

    #[test]
    fn patterns_use_wildcards_and_every_entry_must_match() {
        let images = [
            image("a", &["v1.0-rc1"], 5),
            image("b", &["v1.1-rc2", "latest"], 4),
            image("c", &["v2.0"], 3),
            image("d", &["v2.1-rc1", "stable"], 2),
        ];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "tagged", "tagPatternList": ["v*-rc*"], "countType": "imageCountMoreThan", "countNumber": 1})),
        ]});
        assert_eq!(run(policy, &images), expired(&[("a", 1), ("b", 1)]));
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "tagged", "tagPatternList": ["v*-rc*", "latest"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})),
        ]});
        assert_eq!(run(policy, &images), expired(&[("b", 1)]));
    }

    #[test]
    fn nothing_expires_within_the_count_or_the_age() {
        let images = [image("a", &[], 1), image("b", &[], 1)];
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 2})),
        ]});
        assert_eq!(run(policy, &images), vec![]);
        let policy = json!({"rules": [
            rule(1, json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1})),
        ]});
        assert_eq!(run(policy, &images), vec![]);
    }

    #[test]
    fn rules_are_applied_in_priority_order_whatever_the_document_order() {
        let images = [image("a", &["x1"], 3), image("b", &["x2"], 2)];
        let policy = json!({"rules": [
            rule(5, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
            rule(2, json!({"tagStatus": "tagged", "tagPrefixList": ["x"], "countType": "imageCountMoreThan", "countNumber": 2})),
        ]});
        // Rule 2 selects both and keeps both; rule 5 may not expire them.
        assert_eq!(run(policy, &images), vec![]);
    }

    #[test]
    fn refuses_what_ecr_refuses() {
        let sel = |s: Value| json!({"rules": [rule(1, s)]}).to_string();
        let count = json!({"countType": "imageCountMoreThan", "countNumber": 1});
        let with = |extra: Value| {
            let mut s = count.clone();
            for (k, v) in extra.as_object().into_iter().flatten() {
                s[k] = v.clone();
            }
            sel(s)
        };
        for bad in [
            "".to_owned(),
            "{}".to_owned(),
            json!({"rules": []}).to_string(),
            json!({"rules": [], "other": 1}).to_string(),
            with(json!({})),
            with(json!({"tagStatus": "sometimes"})),
            with(json!({"tagStatus": "tagged"})),
            with(json!({"tagStatus": "tagged", "tagPrefixList": []})),
            with(json!({"tagStatus": "tagged", "tagPrefixList": ["a"], "tagPatternList": ["a*"]})),
            with(json!({"tagStatus": "tagged", "tagPatternList": ["a*b*c*d*e*"]})),
            with(json!({"tagStatus": "untagged", "tagPrefixList": ["a"]})),
            with(json!({"tagStatus": "any", "countNumber": 0})),
            with(json!({"tagStatus": "any", "countUnit": "days"})),
            with(json!({"tagStatus": "any", "countType": "sinceImagePushed"})),
            with(json!({"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "hours"})),
            with(json!({"tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days"})),
            with(json!({"tagStatus": "any", "countType": "forever"})),
            json!({"rules": [{"rulePriority": 0, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}).to_string(),
            json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "delete"}}]}).to_string(),
            json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}}]}).to_string(),
            json!({"rules": [
                rule(1, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(1, json!({"tagStatus": "tagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 1})),
            ]}).to_string(),
            json!({"rules": [
                rule(1, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(2, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 2})),
            ]}).to_string(),
            json!({"rules": [
                rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(2, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 2})),
            ]}).to_string(),
            json!({"rules": [
                rule(1, json!({"tagStatus": "tagged", "tagPrefixList": ["a", "b"], "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(2, json!({"tagStatus": "tagged", "tagPrefixList": ["b", "a"], "countType": "imageCountMoreThan", "countNumber": 2})),
            ]}).to_string(),
        ] {
            assert!(parse(&bad).is_err(), "accepted: {bad}");
        }
        let good = json!({"rules": [
            {"rulePriority": 2, "description": "keep 10 releases", "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 10}, "action": {"type": "expire"}},
            {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14}, "action": {"type": "expire"}},
            {"rulePriority": 9, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100}, "action": {"type": "expire"}},
        ]});
        let parsed = parse(&good.to_string()).expect("valid");
        assert_eq!(
            parsed.rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
            vec![1, 2, 9]
        );
    }
}

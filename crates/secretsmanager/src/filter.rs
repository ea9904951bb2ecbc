//! ListSecrets' and BatchGetSecretValue's `Filters`, as pure functions. Within one filter the
//! values are alternatives (a value starting with `!` excludes what it matches); filters all
//! hold at once. Matching is by prefix: case-sensitive for `name`, `tag-key`, `tag-value`,
//! `primary-region` and `owning-service`, not for `description`; `all` splits its value into
//! words and each word must begin some attribute or some word of one, whatever the case.

use crate::common::invalid_parameter;
use crate::records::SecretRecord;
use berth_aws::AwsError;
use berth_shapes::secretsmanager as wire;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    key: Field,
    /// `(negated, value)`.
    values: Vec<(bool, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Description,
    Name,
    TagKey,
    TagValue,
    PrimaryRegion,
    OwningService,
    All,
}

/// Checks the request's filters (the model checks keys and value characters).
pub fn parse(filters: Option<Vec<wire::Filter>>) -> Result<Vec<Filter>, AwsError> {
    let mut out = Vec::new();
    for f in filters.unwrap_or_default() {
        let key = match f.key.as_deref() {
            Some("description") => Field::Description,
            Some("name") => Field::Name,
            Some("tag-key") => Field::TagKey,
            Some("tag-value") => Field::TagValue,
            Some("primary-region") => Field::PrimaryRegion,
            Some("owning-service") => Field::OwningService,
            Some("all") => Field::All,
            _ => return Err(invalid_parameter("A filter requires a valid Key.")),
        };
        let values: Vec<(bool, String)> = f
            .values
            .unwrap_or_default()
            .into_iter()
            .map(|v| match v.strip_prefix('!') {
                Some(rest) => (true, rest.to_owned()),
                None => (false, v),
            })
            .collect();
        if values.is_empty() {
            return Err(invalid_parameter("A filter requires at least one value."));
        }
        out.push(Filter { key, values });
    }
    Ok(out)
}

/// Whether `secret` passes every filter.
pub fn matches(filters: &[Filter], secret: &SecretRecord) -> bool {
    filters.iter().all(|f| {
        let positives: Vec<&str> = f
            .values
            .iter()
            .filter(|(neg, _)| !neg)
            .map(|(_, v)| v.as_str())
            .collect();
        let negatives = f.values.iter().filter(|(neg, _)| *neg);
        (positives.is_empty() || positives.iter().any(|v| one(f.key, v, secret)))
            && !negatives.into_iter().any(|(_, v)| one(f.key, v, secret))
    })
}

fn one(key: Field, value: &str, s: &SecretRecord) -> bool {
    match key {
        Field::Name => s.name.starts_with(value),
        Field::Description => s
            .description
            .as_deref()
            .is_some_and(|d| d.to_lowercase().starts_with(&value.to_lowercase())),
        Field::TagKey => s.tags.iter().any(|(k, _)| k.starts_with(value)),
        Field::TagValue => s.tags.iter().any(|(_, v)| v.starts_with(value)),
        // berth neither replicates secrets nor lets services own them.
        Field::PrimaryRegion | Field::OwningService => false,
        Field::All => {
            let attributes: Vec<String> = std::iter::once(s.name.as_str())
                .chain(s.description.as_deref())
                .chain(s.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
                .map(str::to_lowercase)
                .collect();
            value.split_whitespace().all(|word| {
                let word = word.to_lowercase();
                attributes.iter().any(|a| {
                    a.starts_with(&word)
                        || a.split(|c: char| !c.is_alphanumeric())
                            .any(|part| part.starts_with(&word))
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secret(name: &str, description: Option<&str>, tags: &[(&str, &str)]) -> SecretRecord {
        SecretRecord {
            name: name.into(),
            arn: String::new(),
            description: description.map(Into::into),
            kms_key_id: None,
            secret_type: None,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            created_ms: 0,
            last_changed_ms: 0,
            last_accessed_ms: None,
            deletion: None,
            versions: BTreeMap::new(),
        }
    }

    fn filters(pairs: &[(&str, &[&str])]) -> Vec<Filter> {
        parse(Some(
            pairs
                .iter()
                .map(|(k, vs)| wire::Filter {
                    key: Some((*k).into()),
                    values: Some(vs.iter().map(|v| (*v).into()).collect()),
                })
                .collect(),
        ))
        .unwrap()
    }

    #[test]
    fn name_is_a_case_sensitive_prefix() {
        let s = secret("prod/db", None, &[]);
        assert!(matches(&filters(&[("name", &["prod"])]), &s));
        assert!(!matches(&filters(&[("name", &["Prod"])]), &s));
        assert!(!matches(&filters(&[("name", &["db"])]), &s));
        assert!(matches(&filters(&[("name", &["dev", "prod/"])]), &s));
    }

    #[test]
    fn description_ignores_case_and_negation_excludes() {
        let s = secret("a", Some("Database password"), &[("team", "core")]);
        assert!(matches(&filters(&[("description", &["data"])]), &s));
        assert!(!matches(&filters(&[("description", &["!data"])]), &s));
        assert!(matches(&filters(&[("tag-key", &["!other"])]), &s));
        assert!(matches(
            &filters(&[("tag-key", &["te"]), ("tag-value", &["co"])]),
            &s
        ));
        assert!(!matches(
            &filters(&[("tag-key", &["te"]), ("tag-value", &["x"])]),
            &s
        ));
    }

    #[test]
    fn all_matches_words_anywhere() {
        let s = secret("prod/db-password", Some("Main"), &[("Team", "Core")]);
        assert!(matches(&filters(&[("all", &["password core"])]), &s));
        assert!(matches(&filters(&[("all", &["MAIN"])]), &s));
        assert!(!matches(&filters(&[("all", &["password other"])]), &s));
    }

    #[test]
    fn a_filter_needs_a_value() {
        let e = parse(Some(vec![wire::Filter {
            key: Some("name".into()),
            values: Some(vec![]),
        }]))
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
    }
}

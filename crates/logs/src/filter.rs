//! Filter patterns, the subset berth understands: plain terms and quoted phrases, all of which
//! must appear in a message (case-sensitive, as CloudWatch Logs matches). The rest of the
//! syntax (`?` alternatives, `-` exclusions, `%regex%`, JSON `{ }` and space-delimited `[ ]`
//! patterns) is refused plainly rather than matched approximately.

use crate::common::invalid;
use berth_aws::AwsError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    terms: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, AwsError> {
        let unsupported = || {
            invalid(format!(
                "berth does not support this filter pattern syntax yet (only terms and quoted phrases, all of which must match): {text}"
            ))
        };
        let trimmed = text.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return Err(unsupported());
        }
        let mut terms = Vec::new();
        let mut chars = trimmed.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            if c == '"' {
                chars.next();
                let mut phrase = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            if let Some(n) = chars.next() {
                                phrase.push(n);
                            }
                        }
                        c => phrase.push(c),
                    }
                }
                if !closed {
                    return Err(invalid(format!(
                        "Invalid filter pattern: unterminated quote in {text}"
                    )));
                }
                if !phrase.is_empty() {
                    terms.push(phrase);
                }
                continue;
            }
            let mut term = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                term.push(c);
                chars.next();
            }
            if term.starts_with(['-', '?', '%', '{', '[']) || term.contains('"') {
                return Err(unsupported());
            }
            terms.push(term);
        }
        Ok(Pattern { terms })
    }

    pub fn matches(&self, message: &str) -> bool {
        self.terms.iter().all(|t| message.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_and_phrases_must_all_appear() {
        let p = Pattern::parse(r#"ERROR "disk full" sda"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.matches("ERROR on sda: disk full"));
        assert!(!p.matches("ERROR on sda: disk is full"));
        assert!(!p.matches("error on sda: disk full"));
        assert!(Pattern::parse("").map(|p| p.matches("x")).unwrap_or(false));
    }

    #[test]
    fn other_syntax_is_refused() {
        for p in [
            "?ERROR ?WARN",
            "-DEBUG",
            "{ $.level = \"x\" }",
            "[ip, user]",
            "%ab+%",
            "\"open",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
    }
}

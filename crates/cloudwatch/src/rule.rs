//! The alarm rule language of composite alarms, as a pure parser and evaluator:
//! `ALARM(name)`, `OK(name)`, `INSUFFICIENT_DATA(name)` (a name or an alarm ARN, in double
//! quotes or bare), `TRUE`, `FALSE`, `NOT`, `AND`, `OR` and parentheses. `NOT` binds tightest,
//! then `AND`, then `OR`; keywords are matched without regard to case.
//!
//! CloudWatch's limits: at most 500 elements (alarm functions, `TRUE`/`FALSE` and parenthesized
//! groups) and 100 distinct alarms; the 10,240-character bound of the text itself is the
//! model's. Parentheses are the only nesting, so the element limit bounds the recursion too;
//! `AND`/`OR` chains are kept flat and runs of `NOT` collapsed, so no input of any length makes
//! the parser or the evaluator recurse deeper than 500 frames.

use crate::evaluate::State;

/// At most this many elements in one rule.
pub const MAX_ELEMENTS: usize = 500;
/// At most this many distinct alarms named by one rule.
pub const MAX_CHILDREN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Const(bool),
    /// True when the named alarm is in this state.
    Is(State, String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// Why a rule does not parse; `at` is the 0-based character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Error in AlarmRule [{message} at char {at}]")]
pub struct RuleError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    elements: usize,
}

/// Parses a rule.
pub fn parse(text: &str) -> Result<Expr, RuleError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: text.chars().count(),
        elements: 0,
    };
    let expr = p.or()?;
    if let Some((at, t)) = p.tokens.get(p.pos) {
        return Err(unsupported(*at, t));
    }
    let children = expr.children();
    if children.len() > MAX_CHILDREN {
        return Err(RuleError {
            at: 0,
            message: format!(
                "The rule names {} alarms; at most {MAX_CHILDREN} are allowed",
                children.len()
            ),
        });
    }
    Ok(expr)
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, RuleError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((i, Token::Open));
                i += 1;
            }
            ')' => {
                out.push((i, Token::Close));
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                while i < chars.len() && chars[i] != '"' {
                    s.push(chars[i]);
                    i += 1;
                }
                if i == chars.len() {
                    return Err(RuleError {
                        at: start,
                        message: "Unterminated quoted alarm name".into(),
                    });
                }
                i += 1;
                out.push((start, Token::Quoted(s)));
            }
            _ => {
                // A bare word runs to whitespace or a parenthesis; inside a function's
                // parentheses the parser joins words back into the alarm name.
                let start = i;
                let mut s = String::new();
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && chars[i] != '('
                    && chars[i] != ')'
                {
                    s.push(chars[i]);
                    i += 1;
                }
                out.push((start, Token::Word(s)));
            }
        }
    }
    Ok(out)
}

fn unsupported(at: usize, token: &Token) -> RuleError {
    let shown = match token {
        Token::Word(w) => w.clone(),
        Token::Quoted(q) => format!("\"{q}\""),
        Token::Open => "(".into(),
        Token::Close => ")".into(),
    };
    RuleError {
        at,
        message: format!("Unsupported token '{shown}'"),
    }
}

fn keyword(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn count_element(&mut self) -> Result<(), RuleError> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(RuleError {
                at: self.at(),
                message: format!("The rule has more than {MAX_ELEMENTS} elements"),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, RuleError> {
        let mut terms = vec![self.and()?];
        while self.peek().is_some_and(|t| keyword(t, "OR")) {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, RuleError> {
        let mut terms = vec![self.unary()?];
        while self.peek().is_some_and(|t| keyword(t, "AND")) {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        let mut negations = 0usize;
        while self.peek().is_some_and(|t| keyword(t, "NOT")) {
            self.pos += 1;
            negations += 1;
        }
        let operand = self.primary()?;
        Ok(if negations % 2 == 1 {
            Expr::Not(Box::new(operand))
        } else {
            operand
        })
    }

    fn primary(&mut self) -> Result<Expr, RuleError> {
        let at = self.at();
        let Some(token) = self.peek().cloned() else {
            return Err(RuleError {
                at,
                message: "Unexpected end of rule".into(),
            });
        };
        match &token {
            Token::Open => {
                self.count_element()?;
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.expected("')'"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Token::Word(w) if w.eq_ignore_ascii_case("TRUE") => {
                self.count_element()?;
                self.pos += 1;
                Ok(Expr::Const(true))
            }
            Token::Word(w) if w.eq_ignore_ascii_case("FALSE") => {
                self.count_element()?;
                self.pos += 1;
                Ok(Expr::Const(false))
            }
            Token::Word(w) => {
                let state = match w.to_ascii_uppercase().as_str() {
                    "ALARM" => State::Alarm,
                    "OK" => State::Ok,
                    "INSUFFICIENT_DATA" => State::InsufficientData,
                    _ => return Err(unsupported(at, &token)),
                };
                self.count_element()?;
                self.pos += 1;
                if self.peek() != Some(&Token::Open) {
                    return Err(self.expected("'('"));
                }
                self.pos += 1;
                let name = self.alarm_name()?;
                Ok(Expr::Is(state, name))
            }
            other => Err(unsupported(at, other)),
        }
    }

    /// What stands between a function's parentheses: one quoted name, or bare words joined by
    /// single spaces (CloudWatch trims a bare name).
    fn alarm_name(&mut self) -> Result<String, RuleError> {
        let at = self.at();
        match self.peek().cloned() {
            Some(Token::Quoted(q)) => {
                self.pos += 1;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.expected("')'"));
                }
                self.pos += 1;
                if q.trim().is_empty() {
                    return Err(RuleError {
                        at,
                        message: "Empty alarm name".into(),
                    });
                }
                Ok(q)
            }
            _ => {
                let mut words = Vec::new();
                while let Some(Token::Word(w)) = self.peek() {
                    words.push(w.clone());
                    self.pos += 1;
                }
                if self.peek() != Some(&Token::Close) {
                    return Err(self.expected("')'"));
                }
                if words.is_empty() {
                    return Err(RuleError {
                        at,
                        message: "Empty alarm name".into(),
                    });
                }
                self.pos += 1;
                Ok(words.join(" "))
            }
        }
    }

    fn expected(&self, what: &str) -> RuleError {
        match self.tokens.get(self.pos) {
            Some((at, t)) => {
                let mut e = unsupported(*at, t);
                e.message = format!("{}, expected {what}", e.message);
                e
            }
            None => RuleError {
                at: self.end,
                message: format!("Unexpected end of rule, expected {what}"),
            },
        }
    }
}

impl Expr {
    /// The alarms the rule names (names or ARNs, as written), each once, in order of
    /// appearance.
    pub fn children(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Is(_, name) = e
                && !out.contains(name)
            {
                out.push(name.clone());
            }
        });
        out
    }

    fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(inner) => inner.visit(f),
            Expr::And(terms) | Expr::Or(terms) => terms.iter().for_each(|t| t.visit(f)),
            Expr::Const(_) | Expr::Is(..) => {}
        }
    }

    /// The rule's value, given each named alarm's state (`None`: unknown, which no state
    /// function matches).
    pub fn eval(&self, state_of: &impl Fn(&str) -> Option<State>) -> bool {
        match self {
            Expr::Const(b) => *b,
            Expr::Is(want, name) => state_of(name) == Some(*want),
            Expr::Not(inner) => !inner.eval(state_of),
            Expr::And(terms) => terms.iter().all(|t| t.eval(state_of)),
            Expr::Or(terms) => terms.iter().any(|t| t.eval(state_of)),
        }
    }

    /// The alarms whose state functions hold and count toward the rule's value (not under a
    /// `NOT`): CloudWatch's `triggeringAlarms`.
    pub fn triggering(&self, state_of: &impl Fn(&str) -> Option<State>) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_triggering(state_of, &mut out);
        out
    }

    fn collect_triggering(&self, state_of: &impl Fn(&str) -> Option<State>, out: &mut Vec<String>) {
        match self {
            Expr::Is(want, name) => {
                if state_of(name) == Some(*want) && !out.contains(name) {
                    out.push(name.clone());
                }
            }
            Expr::And(terms) | Expr::Or(terms) => terms
                .iter()
                .for_each(|t| t.collect_triggering(state_of, out)),
            Expr::Const(_) | Expr::Not(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is(state: State, name: &str) -> Expr {
        Expr::Is(state, name.into())
    }

    #[test]
    fn the_documented_examples_parse() {
        assert_eq!(
            parse("ALARM(CPUUtilizationTooHigh) AND ALARM(DiskReadOpsTooHigh)").unwrap(),
            Expr::And(vec![
                is(State::Alarm, "CPUUtilizationTooHigh"),
                is(State::Alarm, "DiskReadOpsTooHigh")
            ])
        );
        assert_eq!(
            parse("ALARM(CPUUtilizationTooHigh) AND NOT ALARM(DeploymentInProgress)").unwrap(),
            Expr::And(vec![
                is(State::Alarm, "CPUUtilizationTooHigh"),
                Expr::Not(Box::new(is(State::Alarm, "DeploymentInProgress")))
            ])
        );
        assert_eq!(
            parse("(ALARM(CPUUtilizationTooHigh) OR ALARM(DiskReadOpsTooHigh)) AND OK(NetworkOutTooHigh)")
                .unwrap(),
            Expr::And(vec![
                Expr::Or(vec![
                    is(State::Alarm, "CPUUtilizationTooHigh"),
                    is(State::Alarm, "DiskReadOpsTooHigh")
                ]),
                is(State::Ok, "NetworkOutTooHigh")
            ])
        );
    }

    #[test]
    fn names_may_be_quoted_bare_or_arns() {
        assert_eq!(
            parse("ALARM(\"my alarm (prod)\")").unwrap(),
            is(State::Alarm, "my alarm (prod)")
        );
        assert_eq!(
            parse("INSUFFICIENT_DATA(  spaced   name )").unwrap(),
            is(State::InsufficientData, "spaced name")
        );
        let arn = "arn:aws:cloudwatch:us-east-1:000000000000:alarm:a";
        assert_eq!(
            parse(&format!("OK({arn})")).unwrap().children(),
            vec![arn.to_string()]
        );
        assert_eq!(
            parse("alarm(a) and not ok(b) or true").unwrap(),
            Expr::Or(vec![
                Expr::And(vec![
                    is(State::Alarm, "a"),
                    Expr::Not(Box::new(is(State::Ok, "b")))
                ]),
                Expr::Const(true)
            ])
        );
    }

    #[test]
    fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
        let rule = parse("TRUE OR FALSE AND FALSE").unwrap();
        assert!(rule.eval(&|_| None));
        let rule = parse("NOT TRUE AND FALSE").unwrap();
        assert!(!rule.eval(&|_| None));
        let rule = parse("NOT NOT NOT FALSE").unwrap();
        assert_eq!(rule, Expr::Not(Box::new(Expr::Const(false))));
    }

    #[test]
    fn evaluation_follows_the_children_states() {
        let rule = parse("ALARM(a) AND NOT ALARM(b)").unwrap();
        let states = |a: State, b: State| move |n: &str| Some(if n == "a" { a } else { b });
        assert!(rule.eval(&states(State::Alarm, State::Ok)));
        assert!(!rule.eval(&states(State::Alarm, State::Alarm)));
        assert!(!rule.eval(&states(State::Ok, State::Ok)));
        assert!(!rule.eval(&states(State::InsufficientData, State::Ok)));
        assert_eq!(
            rule.triggering(&states(State::Alarm, State::Ok)),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn bad_rules_say_where() {
        let cases = [
            (")", 0, "Unsupported token ')'"),
            ("ALARM(a) AND", 12, "Unexpected end of rule"),
            ("ALARM(a) XOR ALARM(b)", 9, "Unsupported token 'XOR'"),
            ("ALARM a", 6, "Unsupported token 'a', expected '('"),
            ("ALARM()", 6, "Empty alarm name"),
            ("ALARM(\"a)", 6, "Unterminated quoted alarm name"),
            ("(ALARM(a)", 9, "Unexpected end of rule, expected ')'"),
            ("ALARM(a))", 8, "Unsupported token ')'"),
            ("FOO(a)", 0, "Unsupported token 'FOO'"),
            ("", 0, "Unexpected end of rule"),
        ];
        for (text, at, message) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.starts_with(message), "{text}: {e}");
        }
        assert_eq!(
            parse(")").unwrap_err().to_string(),
            "Error in AlarmRule [Unsupported token ')' at char 0]"
        );
    }

    #[test]
    fn limits_hold() {
        let many = vec!["TRUE"; MAX_ELEMENTS].join(" OR ");
        assert!(parse(&many).is_ok());
        let too_many = vec!["TRUE"; MAX_ELEMENTS + 1].join(" OR ");
        assert!(parse(&too_many).is_err());
        let deep = format!("{}TRUE{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&deep).is_err());
        let nots = format!("{}TRUE", "NOT ".repeat(2500));
        assert_eq!(parse(&nots).unwrap(), Expr::Const(true));
        let children: Vec<String> = (0..=MAX_CHILDREN).map(|i| format!("ALARM(a{i})")).collect();
        assert!(parse(&children.join(" OR ")).is_err());
        let repeated = vec!["ALARM(a)"; 200].join(" OR ");
        assert_eq!(parse(&repeated).unwrap().children(), vec!["a".to_string()]);
    }

    proptest! {
        #[test]
        fn random_text_never_panics(text in ".{0,300}") {
            let _ = parse(&text);
        }

        #[test]
        fn random_rule_shaped_text_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("ALARM(".to_string()), Just("OK(".to_string()),
                    Just("INSUFFICIENT_DATA(".to_string()), Just(")".to_string()),
                    Just("(".to_string()), Just(" AND ".to_string()), Just(" OR ".to_string()),
                    Just("NOT ".to_string()), Just("TRUE".to_string()), Just("\"".to_string()),
                    "[a-z ]{0,4}",
                ],
                0..60,
            )
        ) {
            let text = parts.concat();
            if let Ok(rule) = parse(&text) {
                let _ = rule.eval(&|_| Some(State::Alarm));
            }
        }
    }
}

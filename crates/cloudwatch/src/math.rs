//! Metric math, the part berth supports: numbers, query ids, `+ - * /` and unary minus with
//! the usual precedence and parentheses, and the functions `SUM`, `AVG`, `MIN`, `MAX` and
//! `METRICS()`. Anything else is refused with a message naming it, not guessed at.
//!
//! As in CloudWatch: an operation between two time series keeps the timestamps both have; a
//! function of one time series gives a scalar, of an array of time series a time series (the
//! function across the series at each timestamp any of them has); results that are not finite
//! numbers (a division by zero) are dropped.

use std::collections::BTreeMap;

pub type Series = BTreeMap<i64, f64>;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Text(String),
    Id(String),
    Negate(Box<Expr>),
    Binary(char, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Series(Series),
    Array(Vec<Series>),
}

/// What an expression reads: other queries of the same request.
pub trait Env {
    fn query(&mut self, id: &str) -> Result<Value, String>;
    /// The metric-stat queries' series, those whose id contains `filter` when given.
    fn metrics(&mut self, filter: Option<&str>) -> Result<Vec<Series>, String>;
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
    Word(String),
    Symbol(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            out.push(Token::Number(
                literal
                    .parse()
                    .map_err(|_| format!("Invalid number {literal}"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .ok_or("Unterminated string")?;
            out.push(Token::Text(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if "+-*/(),".contains(c) {
            out.push(Token::Symbol(c));
            i += 1;
        } else {
            return Err(format!("Unsupported character '{c}'"));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn eat(&mut self, symbol: char) -> bool {
        if self.peek() == Some(&Token::Symbol(symbol)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Token::Symbol(c @ ('+' | '-'))) => *c,
                _ => return Ok(left),
            };
            self.at += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Symbol(c @ ('*' | '/'))) => *c,
                _ => return Ok(left),
            };
            self.at += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat('-') {
            return Ok(Expr::Negate(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Text(s)) => Ok(Expr::Text(s)),
            Some(Token::Symbol('(')) => {
                let inner = self.sum()?;
                if !self.eat(')') {
                    return Err("Missing closing parenthesis".into());
                }
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                if !self.eat('(') {
                    return Ok(Expr::Id(word));
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.sum()?);
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(format!("Expected ',' or ')' in the arguments of {word}"));
                        }
                    }
                }
                Ok(Expr::Call(word.to_ascii_uppercase(), args))
            }
            Some(Token::Symbol(c)) => Err(format!("Unexpected '{c}'")),
            None => Err("Unexpected end of expression".into()),
        }
    }
}

pub fn parse(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    let expr = parser.sum()?;
    if parser.at < parser.tokens.len() {
        return Err("Unexpected input after the end of the expression".into());
    }
    Ok(expr)
}

/// The ids an expression names, for dependency checks.
pub fn references(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Id(id) => out.push(id.clone()),
        Expr::Negate(e) => references(e, out),
        Expr::Binary(_, a, b) => {
            references(a, out);
            references(b, out);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| references(a, out)),
        Expr::Number(_) | Expr::Text(_) => {}
    }
}

fn finite(series: Series) -> Series {
    series.into_iter().filter(|(_, v)| v.is_finite()).collect()
}

fn apply(op: char, a: f64, b: f64) -> f64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ => a / b,
    }
}

fn binary(op: char, left: Value, right: Value) -> Result<Value, String> {
    use Value::*;
    Ok(match (left, right) {
        (Scalar(a), Scalar(b)) => Scalar(apply(op, a, b)),
        (Series(s), Scalar(b)) => Series(finite(
            s.into_iter().map(|(t, a)| (t, apply(op, a, b))).collect(),
        )),
        (Scalar(a), Series(s)) => Series(finite(
            s.into_iter().map(|(t, b)| (t, apply(op, a, b))).collect(),
        )),
        (Series(a), Series(b)) => Series(finite(
            a.into_iter()
                .filter_map(|(t, x)| b.get(&t).map(|y| (t, apply(op, x, *y))))
                .collect(),
        )),
        (Array(list), other) => Array(
            list.into_iter()
                .map(|s| match binary(op, Series(s), other.clone())? {
                    Series(s) => Ok(s),
                    _ => Err("Arrays of time series can only be combined with a scalar or one time series".to_string()),
                })
                .collect::<Result<_, _>>()?,
        ),
        (other, Array(list)) => Array(
            list.into_iter()
                .map(|s| match binary(op, other.clone(), Series(s))? {
                    Series(s) => Ok(s),
                    _ => Err("Arrays of time series can only be combined with a scalar or one time series".to_string()),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn reduce(function: &str, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match function {
        "SUM" => values.iter().sum(),
        "AVG" => values.iter().sum::<f64>() / values.len() as f64,
        "MIN" => values.iter().copied().fold(f64::INFINITY, f64::min),
        _ => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

pub fn eval(expr: &Expr, env: &mut dyn Env) -> Result<Value, String> {
    match expr {
        Expr::Number(n) => Ok(Value::Scalar(*n)),
        Expr::Text(s) => Err(format!("Unexpected string \"{s}\"")),
        Expr::Id(id) => env.query(id),
        Expr::Negate(e) => binary('*', Value::Scalar(-1.0), eval(e, env)?),
        Expr::Binary(op, a, b) => binary(*op, eval(a, env)?, eval(b, env)?),
        Expr::Call(name, args) => match name.as_str() {
            "METRICS" => match args.as_slice() {
                [] => Ok(Value::Array(env.metrics(None)?)),
                [Expr::Text(filter)] => Ok(Value::Array(env.metrics(Some(filter))?)),
                _ => Err("METRICS takes no argument or one string".into()),
            },
            "SUM" | "AVG" | "MIN" | "MAX" => {
                let values: Vec<Value> = args
                    .iter()
                    .map(|a| eval(a, env))
                    .collect::<Result<_, _>>()?;
                let mut list = Vec::new();
                match values.as_slice() {
                    [Value::Series(s)] => {
                        let all: Vec<f64> = s.values().copied().collect();
                        return Ok(Value::Scalar(reduce(name, &all).unwrap_or(f64::NAN)));
                    }
                    [Value::Scalar(v)] => return Ok(Value::Scalar(*v)),
                    _ => {
                        for v in values {
                            match v {
                                Value::Series(s) => list.push(s),
                                Value::Array(a) => list.extend(a),
                                Value::Scalar(_) => {
                                    return Err(format!(
                                        "{name} of several arguments takes time series only"
                                    ));
                                }
                            }
                        }
                    }
                }
                let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for series in &list {
                    for (t, v) in series {
                        at.entry(*t).or_default().push(*v);
                    }
                }
                Ok(Value::Series(
                    at.into_iter()
                        .filter_map(|(t, vs)| reduce(name, &vs).map(|v| (t, v)))
                        .collect(),
                ))
            }
            other => Err(format!("Unsupported function {other}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(BTreeMap<String, Series>);

    impl Env for Fixed {
        fn query(&mut self, id: &str) -> Result<Value, String> {
            self.0
                .get(id)
                .cloned()
                .map(Value::Series)
                .ok_or_else(|| format!("Unknown id {id}"))
        }
        fn metrics(&mut self, filter: Option<&str>) -> Result<Vec<Series>, String> {
            Ok(self
                .0
                .iter()
                .filter(|(id, _)| filter.is_none_or(|f| id.contains(f)))
                .map(|(_, s)| s.clone())
                .collect())
        }
    }

    fn env() -> Fixed {
        let m1: Series = [(0, 1.0), (60, 2.0), (120, 3.0)].into();
        let m2: Series = [(0, 10.0), (120, 0.0)].into();
        Fixed([("m1".to_string(), m1), ("m2".to_string(), m2)].into())
    }

    fn run(text: &str) -> Result<Value, String> {
        eval(&parse(text)?, &mut env())
    }

    #[test]
    fn arithmetic_keeps_common_timestamps_and_drops_division_by_zero() {
        let table: &[(&str, Value)] = &[
            ("1 + 2 * 3", Value::Scalar(7.0)),
            ("(1 + 2) * 3", Value::Scalar(9.0)),
            (
                "-m1 + 1",
                Value::Series([(0, 0.0), (60, -1.0), (120, -2.0)].into()),
            ),
            (
                "m1 * 100",
                Value::Series([(0, 100.0), (60, 200.0), (120, 300.0)].into()),
            ),
            ("m2 - m1", Value::Series([(0, 9.0), (120, -3.0)].into())),
            ("m1 / m2", Value::Series([(0, 0.1)].into())),
            ("SUM(m1)", Value::Scalar(6.0)),
            ("avg(m1)", Value::Scalar(2.0)),
            (
                "SUM(METRICS())",
                Value::Series([(0, 11.0), (60, 2.0), (120, 3.0)].into()),
            ),
            (
                "MAX(m1, m2)",
                Value::Series([(0, 10.0), (60, 2.0), (120, 3.0)].into()),
            ),
            (
                "MIN(METRICS(\"2\"))",
                Value::Series([(0, 10.0), (120, 0.0)].into()),
            ),
            (
                "AVG(m1, m2)",
                Value::Series([(0, 5.5), (60, 2.0), (120, 1.5)].into()),
            ),
        ];
        for (text, want) in table {
            assert_eq!(&run(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        for (text, fragment) in [
            ("m1 +", "end of expression"),
            ("RATE(m1)", "Unsupported function RATE"),
            ("m1 % 2", "Unsupported character"),
            ("(m1", "parenthesis"),
            ("m3", "Unknown id m3"),
            ("m1 m2", "after the end"),
        ] {
            let err = run(text).unwrap_err();
            assert!(err.contains(fragment), "{text}: {err}");
        }
    }
}

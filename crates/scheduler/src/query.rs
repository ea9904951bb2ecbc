//! The ECS cluster query language: a lexer, a recursive-descent parser into [`Expr`], a printer
//! that gives the canonical text back (`parse(print(e)) == e`), and typed errors that say where
//! the problem is and what was expected.
//!
//! Grammar (lowest precedence first; keywords and word operators are case-insensitive, subject
//! names are matched case-insensitively and printed in ECS's camelCase, attribute names and
//! values are case-sensitive):
//!
//! ```text
//! expr       := and (("or" | "||") and)*
//! and        := unary (("and" | "&&") unary)*
//! unary      := ("not" | "!") unary | "(" expr ")" | comparison
//! comparison := subject operator [argument]
//! argument   := value | "[" value ("," value)* "]"
//! value      := bare-word | 'quoted' | "quoted"      (backslash escapes inside quotes)
//! ```

use regex::Regex;
use std::cmp::Ordering;
use std::fmt;

/// ECS caps a constraint expression at 2,000 characters.
pub const MAX_EXPRESSION_LEN: usize = 2000;
/// Deeper nesting than this is refused rather than risking the stack in the recursive parser.
const MAX_DEPTH: usize = 64;
/// Keeps a hostile `=~` pattern from compiling into a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why an expression does not parse, and where (`column` counts characters from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid cluster query expression at column {column}: {kind}")]
pub struct QueryError {
    pub column: usize,
    pub kind: QueryErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryErrorKind {
    #[error("expected {expected}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: String,
    },
    #[error("unterminated quoted value")]
    Unterminated,
    #[error(
        "unknown subject '{0}'; expected agentConnected, agentVersion, attribute:<name>, ec2InstanceId, registeredAt, runningTasksCount or task:group"
    )]
    UnknownSubject(String),
    #[error("operator '{op}' is not valid for {subject}")]
    OperatorNotAllowed { subject: String, op: &'static str },
    #[error("'{value}' is not a valid value for {subject}: {why}")]
    BadValue {
        subject: String,
        value: String,
        why: &'static str,
    },
    #[error("invalid regular expression '{0}'")]
    BadPattern(String),
    #[error("an argument list needs at least one value")]
    EmptyList,
    #[error("the expression is longer than {MAX_EXPRESSION_LEN} characters")]
    TooLong,
    #[error("the expression nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Comparison),
}

/// `subject operator [argument]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub subject: Subject,
    pub op: Op,
    pub arg: Arg,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    /// `attribute:<name>`
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    /// `task:group`: the groups of the tasks on the instance (a set; `==` means "any").
    TaskGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

/// What follows the operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `exists` / `!exists`.
    None,
    One(Lit),
    /// `in` / `!in`.
    List(Vec<Lit>),
    /// `=~` / `!~`: the pattern, compiled once at parse time.
    Pattern(Pattern),
}

/// A literal value with its typed reading for the subject it is compared with.
#[derive(Debug, Clone)]
pub struct Lit {
    pub text: String,
    typed: Typed,
}

/// Equality is by text: the typed reading is a function of the text and the subject.
impl PartialEq for Lit {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

#[derive(Debug, Clone)]
enum Typed {
    Text,
    Bool(bool),
    Version(Vec<u64>),
    /// Milliseconds since the epoch, UTC.
    Time(i64),
    Count(u64),
}

/// A `=~` pattern: ECS uses Java's `String.matches`, a whole-string match.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Subject {
    fn name(&self) -> String {
        match self {
            Subject::AgentConnected => "agentConnected".into(),
            Subject::AgentVersion => "agentVersion".into(),
            Subject::Attribute(n) => format!("attribute:{n}"),
            Subject::Ec2InstanceId => "ec2InstanceId".into(),
            Subject::RegisteredAt => "registeredAt".into(),
            Subject::RunningTasksCount => "runningTasksCount".into(),
            Subject::TaskGroup => "task:group".into(),
        }
    }

    /// The operators AWS lists for each subject; attributes take them all.
    fn allows(&self, op: Op) -> bool {
        use Op::*;
        match self {
            Subject::AgentConnected | Subject::Ec2InstanceId | Subject::TaskGroup => {
                matches!(op, Eq | Ne | In | NotIn | Matches | NotMatches)
            }
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                matches!(op, Eq | Ne | Gt | Ge | Lt | Le)
            }
            Subject::Attribute(_) => true,
        }
    }

    /// Whether the subject can change while a batch is placed (so its answer cannot be cached).
    fn is_dynamic(&self) -> bool {
        matches!(self, Subject::RunningTasksCount | Subject::TaskGroup)
    }
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Exists => "exists",
            Op::NotExists => "!exists",
            Op::In => "in",
            Op::NotIn => "!in",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        }
    }

    fn from_word(w: &str) -> Option<Op> {
        Some(match w.to_ascii_lowercase().as_str() {
            "equals" => Op::Eq,
            "not_equals" => Op::Ne,
            "greater_than" => Op::Gt,
            "greater_than_equal" => Op::Ge,
            "less_than" => Op::Lt,
            "less_than_equal" => Op::Le,
            "exists" => Op::Exists,
            "not_exists" => Op::NotExists,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "matches" => Op::Matches,
            "not_matches" => Op::NotMatches,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Op(Op),
    AndAnd,
    OrOr,
    Bang,
    Word(String),
    Quoted(String),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Byte offset in the source.
    at: usize,
}

/// Characters that end a bare word: they are tokens of their own (or start one).
fn is_special(c: char) -> bool {
    c.is_whitespace() || "()[],'\"=!<>&|".contains(c)
}

fn lex(src: &str) -> Result<Vec<Token>, (usize, QueryErrorKind)> {
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some((at, c)) = it.next() {
        let mut next_is = |want: char| {
            if it.peek().is_some_and(|&(_, n)| n == want) {
                it.next();
                true
            } else {
                false
            }
        };
        let tok = match c {
            c if c.is_whitespace() => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '=' if next_is('=') => Tok::Op(Op::Eq),
            '=' if next_is('~') => Tok::Op(Op::Matches),
            '=' => {
                return Err((
                    at,
                    QueryErrorKind::Unexpected {
                        expected: "'==' or '=~'",
                        found: "'='".into(),
                    },
                ));
            }
            '!' if next_is('=') => Tok::Op(Op::Ne),
            '!' if next_is('~') => Tok::Op(Op::NotMatches),
            '!' => Tok::Bang,
            '>' if next_is('=') => Tok::Op(Op::Ge),
            '>' => Tok::Op(Op::Gt),
            '<' if next_is('=') => Tok::Op(Op::Le),
            '<' => Tok::Op(Op::Lt),
            '&' if next_is('&') => Tok::AndAnd,
            '|' if next_is('|') => Tok::OrOr,
            '&' | '|' => {
                return Err((
                    at,
                    QueryErrorKind::Unexpected {
                        expected: "'&&' or '||'",
                        found: format!("'{c}'"),
                    },
                ));
            }
            '\'' | '"' => {
                let mut text = String::new();
                let mut closed = false;
                while let Some((_, d)) = it.next() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if d == '\\' {
                        match it.next() {
                            Some((_, e)) => text.push(e),
                            None => break,
                        }
                    } else {
                        text.push(d);
                    }
                }
                if !closed {
                    return Err((at, QueryErrorKind::Unterminated));
                }
                Tok::Quoted(text)
            }
            _ => {
                let mut end = at + c.len_utf8();
                while let Some(&(i, d)) = it.peek() {
                    if is_special(d) {
                        break;
                    }
                    end = i + d.len_utf8();
                    it.next();
                }
                Tok::Word(src[at..end].to_string())
            }
        };
        out.push(Token { tok, at });
    }
    out.push(Token {
        tok: Tok::End,
        at: src.len(),
    });
    Ok(out)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Op(o) => format!("'{}'", o.symbol()),
        Tok::AndAnd => "'&&'".into(),
        Tok::OrOr => "'||'".into(),
        Tok::Bang => "'!'".into(),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Quoted(w) => format!("quoted value '{w}'"),
        Tok::End => "the end of the expression".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

/// Parses an expression. Never panics, whatever the input.
pub fn parse(src: &str) -> Result<Expr, QueryError> {
    let column = |at: usize| src.get(..at).map_or(1, |s| s.chars().count() + 1);
    if src.chars().count() > MAX_EXPRESSION_LEN {
        return Err(QueryError {
            column: MAX_EXPRESSION_LEN + 1,
            kind: QueryErrorKind::TooLong,
        });
    }
    let tokens = lex(src).map_err(|(at, kind)| QueryError {
        column: column(at),
        kind,
    })?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let result = p.expr().and_then(|e| match p.peek() {
        Tok::End => Ok(e),
        other => Err(p.unexpected("'and', 'or' or the end of the expression", other)),
    });
    result.map_err(|(at, kind)| QueryError {
        column: column(at),
        kind,
    })
}

type PResult<T> = Result<T, (usize, QueryErrorKind)>;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).map_or(&Tok::End, |t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        self.tokens.get(self.pos + n).map_or(&Tok::End, |t| &t.tok)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(0, |t| t.at)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn unexpected(&self, expected: &'static str, found: &Tok) -> (usize, QueryErrorKind) {
        (
            self.at(),
            QueryErrorKind::Unexpected {
                expected,
                found: describe(found),
            },
        )
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((self.at(), QueryErrorKind::TooDeep));
        }
        let mut left = self.and()?;
        while matches!(self.peek(), Tok::OrOr) || self.is_keyword("or") {
            self.bump();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        while matches!(self.peek(), Tok::AndAnd) || self.is_keyword("and") {
            self.bump();
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if matches!(self.peek(), Tok::Bang) || self.is_keyword("not") {
            self.bump();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err((self.at(), QueryErrorKind::TooDeep));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if matches!(self.peek(), Tok::LParen) {
            self.bump();
            let inner = self.expr()?;
            return match self.bump() {
                Tok::RParen => Ok(inner),
                other => {
                    self.pos = self.pos.saturating_sub(1);
                    Err(self.unexpected("')'", &other))
                }
            };
        }
        self.comparison().map(Expr::Cmp)
    }

    fn comparison(&mut self) -> PResult<Comparison> {
        let subject_at = self.at();
        let subject = match self.peek().clone() {
            Tok::Word(w) => {
                let s = subject_from(&w).ok_or((subject_at, QueryErrorKind::UnknownSubject(w)))?;
                self.bump();
                s
            }
            other => return Err(self.unexpected("a subject or '('", &other)),
        };
        let op_at = self.at();
        let op = match self.peek().clone() {
            Tok::Op(op) => {
                self.bump();
                op
            }
            Tok::Bang => match self.peek_at(1) {
                Tok::Word(w) if w.eq_ignore_ascii_case("in") => {
                    self.bump();
                    self.bump();
                    Op::NotIn
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("exists") => {
                    self.bump();
                    self.bump();
                    Op::NotExists
                }
                _ => return Err(self.unexpected("an operator", &Tok::Bang)),
            },
            Tok::Word(w) => match Op::from_word(&w) {
                Some(op) => {
                    self.bump();
                    op
                }
                None => return Err(self.unexpected("an operator", &Tok::Word(w))),
            },
            other => return Err(self.unexpected("an operator", &other)),
        };
        if !subject.allows(op) {
            return Err((
                op_at,
                QueryErrorKind::OperatorNotAllowed {
                    subject: subject.name(),
                    op: op.symbol(),
                },
            ));
        }
        let arg = match op {
            Op::Exists | Op::NotExists => Arg::None,
            Op::In | Op::NotIn => {
                if !matches!(self.peek(), Tok::LBracket) {
                    let found = self.peek().clone();
                    return Err(self.unexpected("'[' to start the argument list", &found));
                }
                self.bump();
                let mut items = Vec::new();
                if matches!(self.peek(), Tok::RBracket) {
                    return Err((self.at(), QueryErrorKind::EmptyList));
                }
                loop {
                    items.push(self.literal(&subject)?);
                    match self.bump() {
                        Tok::Comma => continue,
                        Tok::RBracket => break,
                        other => {
                            self.pos = self.pos.saturating_sub(1);
                            return Err(self.unexpected("',' or ']'", &other));
                        }
                    }
                }
                Arg::List(items)
            }
            Op::Matches | Op::NotMatches => {
                let at = self.at();
                let source = self.value_text()?;
                let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|_| (at, QueryErrorKind::BadPattern(source.clone())))?;
                Arg::Pattern(Pattern { source, regex })
            }
            _ => Arg::One(self.literal(&subject)?),
        };
        Ok(Comparison { subject, op, arg })
    }

    fn value_text(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tok::Word(w) | Tok::Quoted(w) => {
                self.bump();
                Ok(w)
            }
            other => Err(self.unexpected("a value", &other)),
        }
    }

    fn literal(&mut self, subject: &Subject) -> PResult<Lit> {
        let at = self.at();
        let text = self.value_text()?;
        let bad = |why| {
            (
                at,
                QueryErrorKind::BadValue {
                    subject: subject.name(),
                    value: text.clone(),
                    why,
                },
            )
        };
        let typed = match subject {
            Subject::AgentConnected => match text.to_ascii_lowercase().as_str() {
                "true" => Typed::Bool(true),
                "false" => Typed::Bool(false),
                _ => return Err(bad("expected true or false")),
            },
            Subject::AgentVersion => Typed::Version(
                parse_version(&text).ok_or_else(|| bad("expected a version such as 1.23.0"))?,
            ),
            Subject::RegisteredAt => Typed::Time(parse_time(&text).ok_or_else(|| {
                bad("expected a date such as 2018-06-18, 2018-06-18T22:28:28Z or 2018-06-18T22:28:28+00:00")
            })?),
            Subject::RunningTasksCount => Typed::Count(
                text.parse()
                    .map_err(|_| bad("expected a non-negative integer"))?,
            ),
            Subject::Attribute(_) | Subject::Ec2InstanceId | Subject::TaskGroup => Typed::Text,
        };
        Ok(Lit { text, typed })
    }
}

fn subject_from(w: &str) -> Option<Subject> {
    let lower = w.to_ascii_lowercase();
    Some(match lower.as_str() {
        "agentconnected" => Subject::AgentConnected,
        "agentversion" => Subject::AgentVersion,
        "ec2instanceid" => Subject::Ec2InstanceId,
        "registeredat" => Subject::RegisteredAt,
        "runningtaskscount" => Subject::RunningTasksCount,
        "task:group" => Subject::TaskGroup,
        _ if lower.starts_with("attribute:") && w.len() > "attribute:".len() => {
            Subject::Attribute(w["attribute:".len()..].to_string())
        }
        _ => return None,
    })
}

/// `1.23.0` → `[1, 23, 0]`.
pub(crate) fn parse_version(s: &str) -> Option<Vec<u64>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}

/// Versions compare by component, missing components counting as 0 (`1.2 == 1.2.0`).
fn cmp_version(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// The date forms AWS lists: `2018-06-18T22:28:28+00:00`, `…Z`, `2018-06-18T22:28:28`
/// (read as UTC), `2018-06-18`. Returns milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (date, rest) = match s.split_once(['T', 't']) {
        Some((d, r)) => (d, Some(r)),
        None => (s, None),
    };
    let mut dp = date.splitn(3, '-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if date.len() != 10 || !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(rest) = rest {
        let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = rest.find(['+', '-']) {
            let (c, o) = rest.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o.get(1..)?.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (c, sign * (oh * 3600 + om * 60))
        } else {
            (rest, 0)
        };
        let mut cp = clock.splitn(3, ':');
        let (h, mi, se) = (num(cp.next()?)?, num(cp.next()?)?, num(cp.next()?)?);
        if clock.len() != 8 || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + se - offset;
    }
    Some(secs * 1000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's civil-from-days, inverted).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Printer

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

impl Expr {
    /// Precedence: or 1, and 2, operands 3. Children print with parentheses when they bind
    /// looser than their place needs, and a right child of equal precedence gets them too, so
    /// the printed text parses back into the same (left-associated) tree.
    fn write(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let (prec, open) = match self {
            Expr::Or(..) => (1, min > 1),
            Expr::And(..) => (2, min > 2),
            _ => (3, false),
        };
        if open {
            f.write_str("(")?;
        }
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                a.write(f, prec)?;
                f.write_str(if prec == 1 { " or " } else { " and " })?;
                b.write(f, prec + 1)?;
            }
            Expr::Not(e) => {
                f.write_str("not(")?;
                e.write(f, 0)?;
                f.write_str(")")?;
            }
            Expr::Cmp(c) => write!(f, "{c}")?,
        }
        if open {
            f.write_str(")")?;
        }
        Ok(())
    }

    /// Whether the answer can change while a batch is placed (it reads `runningTasksCount` or
    /// `task:group`); otherwise the placement engine evaluates it once per instance.
    pub fn is_dynamic(&self) -> bool {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => a.is_dynamic() || b.is_dynamic(),
            Expr::Not(e) => e.is_dynamic(),
            Expr::Cmp(c) => c.subject.is_dynamic(),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject.name(), self.op.symbol())?;
        match &self.arg {
            Arg::None => Ok(()),
            Arg::One(l) => write!(f, " {}", Quote(&l.text)),
            Arg::Pattern(p) => write!(f, " {}", Quote(&p.source)),
            Arg::List(items) => {
                f.write_str(" [")?;
                for (i, l) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", Quote(&l.text))?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A value bare when it lexes back as one word, single-quoted otherwise.
struct Quote<'a>(&'a str);

impl fmt::Display for Quote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() && !self.0.chars().any(is_special) {
            return f.write_str(self.0);
        }
        f.write_str("'")?;
        for c in self.0.chars() {
            if c == '\'' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("'")
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// What an expression can ask about one instance.
pub trait Facts {
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> &str;
    /// `None`: no such attribute; `Some(None)`: the attribute is set without a value.
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    fn ec2_instance_id(&self) -> &str;
    fn registered_at_ms(&self) -> i64;
    fn running_tasks_count(&self) -> u64;
    /// Whether any task on the instance is in a group for which `pred` holds.
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// One value of the instance, read the way its subject is typed.
enum Actual<'a> {
    Text(&'a str),
    Bool(bool),
    Version(&'a str),
    Time(i64),
    Count(u64),
}

impl Actual<'_> {
    fn order(&self, lit: &Lit) -> Option<Ordering> {
        match (self, &lit.typed) {
            (Actual::Bool(a), Typed::Bool(b)) => (a == b).then_some(Ordering::Equal),
            (Actual::Version(a), Typed::Version(b)) => Some(cmp_version(&parse_version(a)?, b)),
            (Actual::Time(a), Typed::Time(b)) => Some(a.cmp(b)),
            (Actual::Count(a), Typed::Count(b)) => Some(a.cmp(b)),
            // Attribute values compare as numbers when both sides are numbers.
            (Actual::Text(a), _) => match (a.parse::<f64>(), lit.text.parse::<f64>()) {
                (Ok(x), Ok(y)) if !x.is_nan() && !y.is_nan() => x.partial_cmp(&y),
                _ => Some(a.cmp(&lit.text.as_str())),
            },
            _ => None,
        }
    }

    fn equals(&self, lit: &Lit) -> bool {
        match self {
            Actual::Text(a) => *a == lit.text,
            _ => self.order(lit) == Some(Ordering::Equal),
        }
    }

    fn matches(&self, p: &Pattern) -> bool {
        match self {
            Actual::Text(s) | Actual::Version(s) => p.regex.is_match(s),
            Actual::Bool(b) => p.regex.is_match(if *b { "true" } else { "false" }),
            Actual::Count(n) => p.regex.is_match(&n.to_string()),
            Actual::Time(t) => p.regex.is_match(&t.to_string()),
        }
    }
}

/// The positive form of a test on one value (`==`, `>`, `in`, `=~`…).
fn test(op: Op, arg: &Arg, actual: &Actual<'_>) -> bool {
    match (op, arg) {
        (Op::Eq, Arg::One(l)) => actual.equals(l),
        (Op::Gt, Arg::One(l)) => actual.order(l) == Some(Ordering::Greater),
        (Op::Ge, Arg::One(l)) => actual.order(l).is_some_and(Ordering::is_ge),
        (Op::Lt, Arg::One(l)) => actual.order(l) == Some(Ordering::Less),
        (Op::Le, Arg::One(l)) => actual.order(l).is_some_and(Ordering::is_le),
        (Op::In, Arg::List(ls)) => ls.iter().any(|l| actual.equals(l)),
        (Op::Matches, Arg::Pattern(p)) => actual.matches(p),
        _ => false,
    }
}

impl Expr {
    /// Evaluates the expression against one instance. Negative operators (`!=`, `!in`, `!~`,
    /// `!exists`) are the negation of their positive forms, so an instance without the attribute
    /// satisfies `attribute:x != y`; `task:group == g` means "some task on it is in group g".
    pub fn matches(&self, facts: &dyn Facts) -> bool {
        match self {
            Expr::Or(a, b) => a.matches(facts) || b.matches(facts),
            Expr::And(a, b) => a.matches(facts) && b.matches(facts),
            Expr::Not(e) => !e.matches(facts),
            Expr::Cmp(c) => c.matches(facts),
        }
    }
}

impl Comparison {
    pub fn matches(&self, facts: &dyn Facts) -> bool {
        let (positive, negate) = match self.op {
            Op::Ne => (Op::Eq, true),
            Op::NotIn => (Op::In, true),
            Op::NotMatches => (Op::Matches, true),
            Op::NotExists => (Op::Exists, true),
            op => (op, false),
        };
        let hit = match &self.subject {
            Subject::TaskGroup => facts.any_task_group(&mut |g| {
                positive == Op::Exists || test(positive, &self.arg, &Actual::Text(g))
            }),
            Subject::Attribute(name) => match facts.attribute(name) {
                None => false,
                Some(_) if positive == Op::Exists => true,
                Some(None) => false,
                Some(Some(v)) => test(positive, &self.arg, &Actual::Text(v)),
            },
            s => {
                let actual = match s {
                    Subject::AgentConnected => Actual::Bool(facts.agent_connected()),
                    Subject::AgentVersion => Actual::Version(facts.agent_version()),
                    Subject::Ec2InstanceId => Actual::Text(facts.ec2_instance_id()),
                    Subject::RegisteredAt => Actual::Time(facts.registered_at_ms()),
                    _ => Actual::Count(facts.running_tasks_count()),
                };
                positive == Op::Exists || test(positive, &self.arg, &actual)
            }
        };
        hit != negate
    }
}

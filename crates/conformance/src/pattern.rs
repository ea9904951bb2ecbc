//! Strings that match a model's `pattern` in full, of about a wanted length: a name generated
//! for `[0-9]{12}` or `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` must be one the service takes, or
//! the valid cases that carry it never get past validation.
//!
//! The pattern is parsed by `regex-syntax` (what the `regex` crate itself uses) and one string
//! is built from its syntax tree, drawing every choice from the suite's seeded [`Rng`], so a
//! seed still names the bytes sent. Patterns Rust's regex cannot parse (Java's look-arounds,
//! `\p{Print}`, surrogate escapes) give nothing; the caller falls back. Written here rather than
//! taken from a generator crate such as `rand_regex`: those draw repetition counts at random,
//! and the bound cases need a string of one exact length.

use crate::generate::Rng;
use regex_syntax::hir::{Class, Hir, HirKind};

/// Characters tried first when a class must give one: letters and digits are what every
/// identifier accepts, then the separators names commonly allow.
const PREFERRED: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_./";

/// A string matching `pattern` (parsed as Rust's regex parses it), as close to `len`
/// characters as the pattern allows, or `None` when the pattern does not parse. The caller
/// checks the result against the pattern and the length bounds.
pub fn generate(pattern: &str, len: usize, rng: &mut Rng) -> Option<String> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut out = String::new();
    build(&hir, len, rng, &mut out);
    Some(out)
}

fn min_len(h: &Hir) -> usize {
    h.properties().minimum_len().unwrap_or(0)
}

fn max_len(h: &Hir) -> usize {
    h.properties().maximum_len().unwrap_or(usize::MAX)
}

/// Appends to `out` a match of `h` of about `want` bytes (generated text is ASCII wherever the
/// pattern allows it, so bytes are characters).
fn build(h: &Hir, want: usize, rng: &mut Rng, out: &mut String) {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.push_str(&String::from_utf8_lossy(&lit.0)),
        HirKind::Class(class) => {
            if let Some(c) = pick(class, rng) {
                out.push(c);
            }
        }
        HirKind::Capture(cap) => build(&cap.sub, want, rng, out),
        HirKind::Concat(items) => {
            let start = out.len();
            for (i, item) in items.iter().enumerate() {
                // What this item may take: what is wanted, less what the items after it need.
                let rest: usize = items[i + 1..].iter().map(min_len).sum();
                let here = want.saturating_sub(out.len() - start).saturating_sub(rest);
                build(item, here.clamp(min_len(item), max_len(item)), rng, out);
            }
        }
        HirKind::Alternation(alts) => {
            // One that can be `want` long, else the one that comes closest.
            let fitting: Vec<&Hir> = alts
                .iter()
                .filter(|a| (min_len(a)..=max_len(a)).contains(&want))
                .collect();
            let chosen = if fitting.is_empty() {
                alts.iter()
                    .min_by_key(|a| min_len(a).abs_diff(want).min(max_len(a).abs_diff(want)))
            } else {
                fitting
                    .get(rng.below(fitting.len() as u64) as usize)
                    .copied()
            };
            if let Some(a) = chosen {
                build(a, want, rng, out);
            }
        }
        HirKind::Repetition(rep) => {
            let start = out.len();
            let max = rep.max.map_or(usize::MAX, |m| m as usize);
            let min = rep.min as usize;
            let mut n = 0;
            // Bounded by `want` so a sub-pattern that matches the empty string cannot spin.
            while n < max && (n < min || out.len() - start < want) && n <= want + min {
                let before = out.len();
                let left = want.saturating_sub(out.len() - start);
                build(&rep.sub, left.max(min_len(&rep.sub)), rng, out);
                n += 1;
                if out.len() == before && n >= min {
                    break;
                }
            }
        }
    }
}

/// A character of `class`: a preferred one it holds (chosen by `rng`), else the first
/// printable one, else its first.
fn pick(class: &Class, rng: &mut Rng) -> Option<char> {
    let contains = |c: char| match class {
        Class::Unicode(u) => u.ranges().iter().any(|r| r.start() <= c && c <= r.end()),
        Class::Bytes(b) => {
            c.is_ascii()
                && b.ranges()
                    .iter()
                    .any(|r| r.start() <= c as u8 && c as u8 <= r.end())
        }
    };
    let preferred: Vec<char> = PREFERRED.chars().filter(|c| contains(*c)).collect();
    // Letters and digits when the class has them, so separators appear only where needed.
    let alnum: Vec<char> = preferred
        .iter()
        .copied()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let from = if alnum.is_empty() { &preferred } else { &alnum };
    if !from.is_empty() {
        return Some(from[rng.below(from.len() as u64) as usize]);
    }
    if let Some(c) = (' '..='~').find(|c| contains(*c)) {
        return Some(c);
    }
    match class {
        Class::Unicode(u) => u.ranges().first().map(|r| r.start()),
        Class::Bytes(b) => b.ranges().first().map(|r| char::from(r.start())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn full(p: &str) -> Regex {
        Regex::new(&format!("^(?:{p})$")).unwrap()
    }

    #[test]
    fn generated_strings_match_in_full_at_the_wanted_length() {
        let mut rng = Rng::new(3);
        for (p, len) in [
            ("[0-9]{12}", 12),
            (
                "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*",
                256,
            ),
            ("^([a-zA-Z0-9]+-)*[a-zA-Z0-9]+$", 32),
            ("[\\.\\-_/#A-Za-z0-9]+", 512),
            ("^(2|4|5)\\d\\d$", 3),
            (
                "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                36,
            ),
        ] {
            let s = generate(p, len, &mut rng).unwrap();
            assert!(full(p).is_match(&s), "{p}: {s}");
            assert_eq!(s.len(), len, "{p}: {s}");
        }
    }

    #[test]
    fn a_pattern_that_fixes_the_length_wins_over_the_wanted_one() {
        let s = generate("[0-9]{12}", 10, &mut Rng::new(1)).unwrap();
        assert_eq!(s.len(), 12);
    }

    #[test]
    fn the_same_seed_gives_the_same_string_and_java_only_syntax_gives_none() {
        let p = "[a-z]+(-[a-z0-9]+)*";
        assert_eq!(
            generate(p, 40, &mut Rng::new(9)),
            generate(p, 40, &mut Rng::new(9))
        );
        assert_eq!(generate("(?!abc).+", 5, &mut Rng::new(9)), None);
    }
}

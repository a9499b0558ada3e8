//! Brace patterns naming tar shards, as WebDataset writes them: `train-{000000..001281}.tar`.
//!
//! A pattern may hold any number of brace groups, each either
//!
//! - a numeric range `{a..b}` of whole numbers with `a ≤ b`, counted up; the numbers are
//!   zero-padded to the longer of the two ends' widths when either end has a leading zero
//!   (`{000..012}` gives `000`, `001`, …, `012`; `{0..12}` gives `0`, …, `12`), as Python's
//!   `braceexpand` (which WebDataset uses) does; or
//! - a list `{a,b,c}` of literal alternatives (at least two, separated by commas).
//!
//! Names come out in the order of the groups' product with the leftmost group varying
//! slowest, so `s{0..1}-{a,b}` is `s0-a, s0-b, s1-a, s1-b`. Nested braces, an unbalanced
//! brace, a group that is neither a range nor a list, a range counted down, and a pattern
//! naming more than [`MAX_NAMES`] shards are errors that say which.

/// The most names one pattern may expand to.
pub const MAX_NAMES: usize = 1_000_000;

/// Why a brace pattern cannot be expanded; the message quotes the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("brace pattern {pattern:?}: {problem}")]
pub struct BraceError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: String,
}

/// One piece of a pattern: literal text, or a group's alternatives.
enum Piece {
    Literal(String),
    Choice(Vec<String>),
}

/// The names `pattern` stands for, in order (see the module docs); a pattern without braces
/// is its own single name.
pub fn expand(pattern: &str) -> Result<Vec<String>, BraceError> {
    let fail = |problem: String| BraceError {
        pattern: pattern.to_string(),
        problem,
    };
    let mut pieces = Vec::new();
    let mut rest = pattern;
    let mut at = 0; // byte offset of `rest` in `pattern`, for messages
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(fail(format!("'}}' at byte {} closes no '{{'", at + open)));
        }
        let body_start = open + 1;
        let Some(close) = rest[body_start..].find(['{', '}']) else {
            return Err(fail(format!("'{{' at byte {} is never closed", at + open)));
        };
        let close = body_start + close;
        if rest.as_bytes()[close] == b'{' {
            return Err(fail(format!(
                "nested '{{' at byte {} (nested braces are not supported)",
                at + close
            )));
        }
        pieces.push(Piece::Literal(rest[..open].to_string()));
        let body = &rest[body_start..close];
        pieces.push(Piece::Choice(
            group(body).map_err(|p| fail(format!("{{{body}}}: {p}")))?,
        ));
        at += close + 1;
        rest = &rest[close + 1..];
    }
    pieces.push(Piece::Literal(rest.to_string()));

    let mut total: usize = 1;
    for piece in &pieces {
        if let Piece::Choice(options) = piece {
            total = total.saturating_mul(options.len());
        }
    }
    if total > MAX_NAMES {
        return Err(fail(format!(
            "names {total} shards, more than the {MAX_NAMES} allowed"
        )));
    }
    let mut names = vec![String::new()];
    for piece in &pieces {
        names = match piece {
            Piece::Literal(text) => names.into_iter().map(|n| n + text).collect(),
            Piece::Choice(options) => names
                .iter()
                .flat_map(|n| options.iter().map(move |o| format!("{n}{o}")))
                .collect(),
        };
    }
    Ok(names)
}

/// The alternatives of one group's body (between the braces).
fn group(body: &str) -> Result<Vec<String>, String> {
    if let Some((from, to)) = body.split_once("..") {
        return range(from, to);
    }
    if body.contains(',') {
        return Ok(body.split(',').map(str::to_string).collect());
    }
    Err("a group is a range {a..b} or a list {a,b}".to_string())
}

fn range(from: &str, to: &str) -> Result<Vec<String>, String> {
    let number = |text: &str| {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} is not a whole number"));
        }
        text.parse::<u64>()
            .map_err(|_| format!("{text} is too large"))
    };
    let (a, b) = (number(from)?, number(to)?);
    if a > b {
        return Err(format!("the range runs down from {a} to {b}"));
    }
    if b - a >= MAX_NAMES as u64 {
        return Err(format!(
            "names {} shards, more than the {MAX_NAMES} allowed",
            b - a + 1
        ));
    }
    let padded = |t: &str| t.len() > 1 && t.starts_with('0');
    let width = if padded(from) || padded(to) {
        from.len().max(to.len())
    } else {
        0
    };
    Ok((a..=b).map(|n| format!("{n:0width$}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_pad_like_braceexpand() {
        assert_eq!(
            expand("train-{000..003}.tar").unwrap(),
            [
                "train-000.tar",
                "train-001.tar",
                "train-002.tar",
                "train-003.tar"
            ]
        );
        assert_eq!(
            expand("s{8..11}.tar").unwrap(),
            ["s8.tar", "s9.tar", "s10.tar", "s11.tar"]
        );
        assert_eq!(expand("s{08..10}").unwrap(), ["s08", "s09", "s10"]);
        assert_eq!(expand("s{7..007}").unwrap(), ["s007"]);
        assert_eq!(expand("train-{000000..001281}.tar").unwrap().len(), 1282);
    }

    #[test]
    fn lists_and_products_in_order() {
        assert_eq!(expand("x.tar").unwrap(), ["x.tar"]);
        assert_eq!(
            expand("s3://b/{a,b}-{0..1}.tar").unwrap(),
            [
                "s3://b/a-0.tar",
                "s3://b/a-1.tar",
                "s3://b/b-0.tar",
                "s3://b/b-1.tar"
            ]
        );
        assert_eq!(expand("{x,}y").unwrap(), ["xy", "y"]);
    }

    #[test]
    fn bad_patterns_say_why() {
        let problem = |p: &str| expand(p).unwrap_err().to_string();
        assert_eq!(
            problem("a-{0..2.tar"),
            "brace pattern \"a-{0..2.tar\": '{' at byte 2 is never closed"
        );
        assert!(problem("a-0..2}.tar").contains("'}' at byte 6 closes no '{'"));
        assert!(problem("a-{{0..2}}.tar").contains("nested '{' at byte 3"));
        assert!(problem("a-{5..2}.tar").contains("{5..2}: the range runs down from 5 to 2"));
        assert!(problem("a-{x..2}.tar").contains("\"x\" is not a whole number"));
        assert!(problem("a-{..2}.tar").contains("\"\" is not a whole number"));
        assert!(problem("a-{}.tar").contains("{}: a group is a range {a..b} or a list {a,b}"));
        assert!(problem("a-{one}.tar").contains("a group is a range"));
        assert!(problem("{0..999}{0..9999}").contains("names 10000000 shards"));
        assert!(problem("{0..99999999}").contains("names 100000000 shards"));
    }
}

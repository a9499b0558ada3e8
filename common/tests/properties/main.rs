//! Property tests (proptest) of the readers that take user or network input: the CSV
//! manifest, VOC / ImageNet / CUB annotations, custom hierarchies and `concepts.json`, a
//! region file's metadata, the proto messages and the completion checks, and the job spec's
//! JSON. Arbitrary or mutated input must give an error, never a panic; generated valid
//! input must read back as what was generated.
//!
//! Each property runs few cases, so `make test` stays fast; `PROPTEST_CASES=N` runs N
//! cases of every property instead, for a longer search:
//!
//! ```sh
//! PROPTEST_CASES=5000 cargo test -p hint-common --test properties
//! ```

mod annotations;
mod hierarchy;
mod manifest;
mod proto;
mod regions_meta;
mod spec_json;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// A property's configuration: `cases` cases, unless `PROPTEST_CASES` asks for another
/// number (proptest's default configuration reads it; an explicit count would override it).
pub fn config(cases: u32) -> Config {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        Config::default()
    } else {
        Config::with_cases(cases)
    }
}

/// One edit of a text: what a damaged or hand-edited file looks like next to a good one.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Remove up to `n` characters at a position.
    Delete(Index, usize),
    /// Insert text at a position.
    Insert(Index, String),
    /// Repeat up to `n` characters at a position.
    Duplicate(Index, usize),
    /// Replace up to `n` characters at a position.
    Replace(Index, usize, String),
}

/// One to five edits; inserted text is one of `tokens` (pieces of the format), a number, or
/// arbitrary text.
pub fn edits(tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<Edit>> {
    let insert = prop_oneof![
        3 => proptest::sample::select(tokens).prop_map(String::from),
        1 => "[-+0-9.eE]{1,12}",
        1 => any::<String>(),
    ];
    let edit = prop_oneof![
        (any::<Index>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<Index>(), insert.clone()).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<Index>(), 1usize..64).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        (any::<Index>(), 1usize..8, insert).prop_map(|(at, n, s)| Edit::Replace(at, n, s)),
    ];
    proptest::collection::vec(edit, 1..6)
}

/// `text` after `edits`, applied in order on characters (so the result stays UTF-8).
pub fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let at = |index: &Index, len: usize| index.index(len + 1);
        match edit {
            Edit::Delete(i, n) => {
                let start = at(i, chars.len());
                let end = (start + n).min(chars.len());
                chars.drain(start..end);
            }
            Edit::Insert(i, s) => {
                let start = at(i, chars.len());
                chars.splice(start..start, s.chars());
            }
            Edit::Duplicate(i, n) => {
                let start = at(i, chars.len());
                let end = (start + n).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
            Edit::Replace(i, n, s) => {
                let start = at(i, chars.len());
                let end = (start + n).min(chars.len());
                chars.splice(start..end, s.chars());
            }
        }
    }
    chars.into_iter().collect()
}

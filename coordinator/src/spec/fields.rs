//! Reading a TOML table by hand, so that one pass finds every problem: a wrong type, a
//! missing required key or an unknown key becomes a [`Problem`] naming its field, and
//! reading goes on with the default. (serde's `deny_unknown_fields` would stop at the
//! first one.)

use std::fmt::Display;

use toml::{Table, Value};

use super::Problem;

/// One table of the spec (`[extract]`, `[data.wordnet]`, or the root), with the keys asked
/// for so far and the problems found in it.
///
/// Every getter registers its key as known, so once a section has been read completely,
/// [`Section::finish`] can name the keys nobody asked for and suggest the closest known one.
#[derive(Debug)]
pub(super) struct Section<'t> {
    /// Dotted path of the table: `extract`, `data.wordnet`; empty for the root.
    name: String,
    /// None when the file has no such table.
    table: Option<&'t Table>,
    known: Vec<&'static str>,
    /// Required keys asked for while the whole table is absent: one problem for the
    /// table instead of one per key.
    missing_required: Vec<&'static str>,
    problems: Vec<Problem>,
}

impl<'t> Section<'t> {
    /// The whole file.
    pub(super) fn root(table: &'t Table) -> Self {
        Section {
            name: String::new(),
            table: Some(table),
            known: Vec::new(),
            missing_required: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The table under `key` (absent, or a problem when `key` holds something else).
    pub(super) fn section(&mut self, key: &'static str) -> Section<'t> {
        let table = match self.value(key) {
            Some(Value::Table(table)) => Some(table),
            Some(other) => {
                self.type_problem(key, "a table", other);
                None
            }
            None => None,
        };
        Section {
            name: self.field(key),
            table,
            known: Vec::new(),
            missing_required: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Whether the file has this table.
    pub(super) fn is_present(&self) -> bool {
        self.table.is_some()
    }

    /// The dotted field name of `key` in this section.
    pub(super) fn field(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    /// Records a problem with `key` (for checks beyond types).
    pub(super) fn problem(&mut self, key: &str, message: impl Display) {
        let field = self.field(key);
        self.problems.push(Problem {
            field,
            message: message.to_string(),
        });
    }

    /// Records a problem with the section itself.
    pub(super) fn section_problem(&mut self, message: impl Display) {
        self.problems.push(Problem {
            field: self.name.clone(),
            message: message.to_string(),
        });
    }

    fn value(&mut self, key: &'static str) -> Option<&'t Value> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.and_then(|t| t.get(key))
    }

    fn type_problem(&mut self, key: &str, expected: &str, found: &Value) {
        self.problem(key, format!("expected {expected}, found {}", kind(found)));
    }

    fn missing(&mut self, key: &'static str) {
        if self.table.is_some() {
            self.problem(key, "missing (required)");
        } else {
            self.missing_required.push(key);
        }
    }

    /// An optional string.
    pub(super) fn string(&mut self, key: &'static str) -> Option<String> {
        match self.value(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.type_problem(key, "a string", other);
                None
            }
        }
    }

    /// A string that must be there.
    pub(super) fn required_string(&mut self, key: &'static str) -> Option<String> {
        let present = self.table.is_some_and(|t| t.contains_key(key));
        let value = self.string(key);
        if !present {
            self.missing(key);
        }
        value
    }

    /// A string with a default.
    pub(super) fn string_or(&mut self, key: &'static str, default: &str) -> String {
        self.string(key).unwrap_or_else(|| default.to_string())
    }

    /// A boolean with a default.
    pub(super) fn bool_or(&mut self, key: &'static str, default: bool) -> bool {
        match self.value(key) {
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                self.type_problem(key, "a boolean (true or false)", other);
                default
            }
            None => default,
        }
    }

    /// An optional number: a TOML float or integer (`threshold = 1` means 1.0).
    pub(super) fn number(&mut self, key: &'static str) -> Option<f64> {
        match self.value(key)? {
            Value::Float(x) => Some(*x),
            Value::Integer(i) => Some(*i as f64),
            other => {
                self.type_problem(key, "a number", other);
                None
            }
        }
    }

    /// A number with a default.
    pub(super) fn number_or(&mut self, key: &'static str, default: f64) -> f64 {
        self.number(key).unwrap_or(default)
    }

    /// An optional integer, at least `min` and fitting `T`.
    pub(super) fn integer<T>(&mut self, key: &'static str, min: i64) -> Option<T>
    where
        T: TryFrom<i64>,
    {
        let value = match self.value(key)? {
            Value::Integer(i) => *i,
            other => {
                self.type_problem(key, "an integer", other);
                return None;
            }
        };
        if value < min {
            self.problem(key, format!("must be at least {min}, found {value}"));
            return None;
        }
        match T::try_from(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.problem(key, format!("{value} is too large"));
                None
            }
        }
    }

    /// An integer with a default, at least `min`.
    pub(super) fn integer_or<T>(&mut self, key: &'static str, default: T, min: i64) -> T
    where
        T: TryFrom<i64>,
    {
        self.integer(key, min).unwrap_or(default)
    }

    /// An optional array of strings (empty when absent).
    pub(super) fn strings(&mut self, key: &'static str) -> Vec<String> {
        let items = match self.value(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.type_problem(key, "an array of strings", other);
                return Vec::new();
            }
        };
        let mut strings = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => strings.push(s.clone()),
                other => self.problem(
                    key,
                    format!("item {}: expected a string, found {}", i + 1, kind(other)),
                ),
            }
        }
        strings
    }

    /// An optional array of integers in `min..=max` (None when absent).
    pub(super) fn integers(&mut self, key: &'static str, min: i64, max: i64) -> Option<Vec<i64>> {
        let items = match self.value(key) {
            None => return None,
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.type_problem(key, "an array of integers", other);
                return None;
            }
        };
        let mut numbers = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Integer(n) if (min..=max).contains(n) => numbers.push(*n),
                Value::Integer(n) => self.problem(
                    key,
                    format!("item {}: must be in {min}..={max}, found {n}", i + 1),
                ),
                other => self.problem(
                    key,
                    format!("item {}: expected an integer, found {}", i + 1, kind(other)),
                ),
            }
        }
        Some(numbers)
    }

    /// The section's problems, then one for each key nobody asked for (with the closest
    /// known key when it is a likely typo), then one for a missing required table.
    pub(super) fn finish(mut self) -> Vec<Problem> {
        if let Some(table) = self.table {
            for (key, value) in table {
                if self.known.contains(&key.as_str()) {
                    continue;
                }
                let what = if self.name.is_empty() {
                    if value.is_table() {
                        "unknown section"
                    } else {
                        "unknown key (the spec is made of sections such as [model])"
                    }
                } else {
                    "unknown key"
                };
                let message = match closest(key, &self.known) {
                    Some(known) => format!("{what} (did you mean {known}?)"),
                    None => format!("{what} (known: {})", self.known.join(", ")),
                };
                self.problem(key, message);
            }
        } else if !self.missing_required.is_empty() {
            let message = format!(
                "missing section [{}] (required: {})",
                self.name,
                self.missing_required.join(", ")
            );
            self.section_problem(message);
        }
        self.problems
    }
}

/// How a value is named in a type problem: `expected a number, found a string`.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The known key nearest to `key`, when it is close enough to be a typo: at most one edit
/// per three characters (one to three).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(&key.to_lowercase(), k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("treshold", "threshold"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_only_near_keys() {
        let known = ["threshold", "method", "steps", "l2"];
        assert_eq!(closest("treshold", &known), Some("threshold"));
        assert_eq!(closest("Method", &known), Some("method"));
        assert_eq!(closest("l3", &known), Some("l2"));
        assert_eq!(closest("colour", &known), None);
    }

    #[test]
    fn wrong_types_and_ranges_are_problems_and_reading_goes_on() {
        let table: Table = "[s]\na = \"x\"\nb = -1\nc = 1\nd = [1, \"y\"]\ne = 2.5\n"
            .parse()
            .unwrap();
        let mut root = Section::root(&table);
        let mut s = root.section("s");
        assert_eq!(s.number("a"), None);
        assert_eq!(s.integer::<u64>("b", 0), None);
        assert_eq!(s.number("c"), Some(1.0));
        assert_eq!(s.strings("d"), vec!["y".to_string()]);
        assert_eq!(s.integer_or::<u32>("e", 7, 1), 7);
        assert!(s.required_string("f").is_none());
        let problems: Vec<String> = s.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "s.a: expected a number, found a string",
                "s.b: must be at least 0, found -1",
                "s.d: item 1: expected a string, found an integer",
                "s.e: expected an integer, found a float",
                "s.f: missing (required)",
            ]
        );
        assert!(root.finish().is_empty());
    }

    #[test]
    fn an_absent_section_with_required_keys_is_one_problem() {
        let table = Table::new();
        let mut root = Section::root(&table);
        let mut model = root.section("model");
        assert!(!model.is_present());
        model.required_string("architecture");
        model.required_string("layer");
        let problems: Vec<String> = model.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["model: missing section [model] (required: architecture, layer)"]
        );
    }
}

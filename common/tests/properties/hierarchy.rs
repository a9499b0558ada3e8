//! Custom hierarchy files (YAML and JSON) and `concepts.json`.

use std::collections::BTreeSet;
use std::path::Path;

use hint_common::hierarchy::{Hierarchy, HierarchyError};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// A concept DAG over dataset labels, as a custom file describes it: `parents[i]` of node
/// `i` are nodes before it (so it is acyclic); the first `roots` nodes have none.
#[derive(Debug, Clone)]
struct Dag {
    names: Vec<String>,
    parents: Vec<BTreeSet<usize>>,
    /// The dataset labels (node indices), in the dataset's order.
    labels: Vec<usize>,
    name: Option<String>,
    /// How the file is written: per entry, a sort key and a style.
    layout: Vec<(u8, u8)>,
}

/// A concept name: any characters but control ones, not blank.
fn concept_name() -> impl Strategy<Value = String> {
    "[\\p{L}\\p{N} _.:#'\"&*!|>-]{1,10}".prop_filter("not blank", |s| !s.trim().is_empty())
}

fn dag() -> impl Strategy<Value = Dag> {
    (2usize..12, 1usize..4)
        .prop_flat_map(|(n, roots)| {
            let roots = roots.min(n / 2);
            (
                proptest::collection::btree_set(concept_name(), n)
                    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                    .prop_shuffle(),
                proptest::collection::vec(proptest::collection::vec(any::<Index>(), 1..4), n),
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(any::<u8>(), 2 * n),
                proptest::option::of(concept_name()),
                proptest::collection::vec((any::<u8>(), any::<u8>()), n),
                Just(roots),
            )
        })
        .prop_map(
            |(names, picks, internal_labels, label_order, name, layout, roots)| {
                let n = names.len();
                let mut parents = vec![BTreeSet::new(); n];
                for i in roots..n {
                    parents[i] = picks[i].iter().map(|p| p.index(i)).collect();
                }
                // A root with no child would be a leaf, which must be a label with a parent.
                for r in 0..roots {
                    if !parents.iter().any(|ps| ps.contains(&r)) {
                        parents[roots + r].insert(r);
                    }
                }
                let has_child: Vec<bool> = (0..n)
                    .map(|i| parents.iter().any(|ps| ps.contains(&i)))
                    .collect();
                // Every leaf is a label; so are some inner concepts (a label may be above labels).
                let mut labels: Vec<usize> = (roots..n)
                    .filter(|&i| !has_child[i] || internal_labels[i])
                    .collect();
                labels.sort_by_key(|&i| (label_order[i], label_order[n + i]));
                Dag {
                    names,
                    parents,
                    labels,
                    name,
                    layout,
                }
            },
        )
}

impl Dag {
    fn children(&self, i: usize) -> Vec<usize> {
        (0..self.names.len())
            .filter(|&c| self.parents[c].contains(&i))
            .collect()
    }

    fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|&i| self.names[i].clone()).collect()
    }

    /// The entries of the file, in a drawn order: every node with children, and some leaves
    /// with an empty list or null.
    fn entries(&self) -> Vec<(usize, Vec<usize>, u8)> {
        let mut entries: Vec<(u8, usize, Vec<usize>, u8)> = (0..self.names.len())
            .filter_map(|i| {
                let (key, style) = self.layout[i];
                let mut children = self.children(i);
                if children.is_empty() && style % 3 != 0 {
                    return None;
                }
                // Children in a drawn order too.
                children.sort_by_key(|&c| (self.layout[c].0 ^ style, c));
                Some((key, i, children, style))
            })
            .collect();
        entries.sort_by_key(|e| (e.0, e.1));
        entries.into_iter().map(|(_, i, c, s)| (i, c, s)).collect()
    }

    /// The file as YAML, with names as double-quoted scalars (JSON strings are YAML's).
    fn yaml(&self) -> String {
        let q = |i: usize| serde_json::to_string(&self.names[i]).unwrap();
        let mut text = String::new();
        if let Some(name) = &self.name {
            text.push_str(&format!("name: {}\n", serde_json::to_string(name).unwrap()));
        }
        text.push_str("children:\n");
        for (i, children, style) in self.entries() {
            if children.is_empty() {
                let empty = ["[]", "null", "~", ""][usize::from(style / 3) % 4];
                text.push_str(&format!("  {}: {empty}\n", q(i)));
            } else if style % 2 == 0 {
                let list: Vec<String> = children.iter().map(|&c| q(c)).collect();
                text.push_str(&format!("  {}: [{}]\n", q(i), list.join(", ")));
            } else {
                text.push_str(&format!("  {}:\n", q(i)));
                for c in children {
                    text.push_str(&format!("    - {}\n", q(c)));
                }
            }
        }
        text
    }

    fn json(&self) -> String {
        let children: serde_json::Map<String, Value> = self
            .entries()
            .into_iter()
            .map(|(i, children, style)| {
                let value = if children.is_empty() && style % 2 == 0 {
                    Value::Null
                } else {
                    children
                        .iter()
                        .map(|&c| Value::from(self.names[c].clone()))
                        .collect()
                };
                (self.names[i].clone(), value)
            })
            .collect();
        let mut file = serde_json::json!({ "children": children });
        if let Some(name) = &self.name {
            file["name"] = Value::from(name.clone());
        }
        serde_json::to_string_pretty(&file).unwrap()
    }

    /// 0 for a root, else one below the deepest parent.
    fn level(&self, i: usize) -> u32 {
        self.parents[i]
            .iter()
            .map(|&p| self.level(p) + 1)
            .max()
            .unwrap_or(0)
    }

    /// The dataset labels at or under node `i` (as label indices).
    fn labels_under(&self, i: usize) -> BTreeSet<u32> {
        let mut under: BTreeSet<u32> = self
            .labels
            .iter()
            .position(|&l| l == i)
            .map(|l| l as u32)
            .into_iter()
            .collect();
        for c in self.children(i) {
            under.extend(self.labels_under(c));
        }
        under
    }

    /// Checks a hierarchy read from this DAG's file.
    fn check(&self, h: &Hierarchy) -> Result<(), TestCaseError> {
        prop_assert_eq!(h.labels(), &self.label_names()[..]);
        prop_assert_eq!(h.name(), self.name.as_deref());
        prop_assert_eq!(h.concepts().len(), self.names.len());
        let names_of = |ids: &[hint_common::hierarchy::ConceptId]| -> BTreeSet<String> {
            ids.iter().map(|&id| h.concept(id).key.clone()).collect()
        };
        for (i, name) in self.names.iter().enumerate() {
            let id = h.find(name);
            prop_assert!(id.is_some(), "{name:?} is not a concept");
            let c = h.concept(id.unwrap());
            prop_assert_eq!(&c.key, name);
            prop_assert_eq!(&c.name, name);
            prop_assert_eq!(c.level, self.level(i), "level of {:?}", name);
            let parents: BTreeSet<String> = self.parents[i]
                .iter()
                .map(|&p| self.names[p].clone())
                .collect();
            prop_assert_eq!(names_of(&c.parents), parents);
            let children: BTreeSet<String> = self
                .children(i)
                .iter()
                .map(|&p| self.names[p].clone())
                .collect();
            prop_assert_eq!(names_of(&c.children), children);
            let labels: Vec<u32> = self.labels_under(i).into_iter().collect();
            prop_assert_eq!(&c.labels, &labels, "labels under {:?}", name);
        }
        let order: Vec<(u32, &str)> = h
            .concepts()
            .iter()
            .map(|c| (c.level, c.key.as_str()))
            .collect();
        prop_assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "not ordered by (level, key)"
        );
        Ok(())
    }
}

/// Pieces of YAML and JSON hierarchy files.
const HIERARCHY_TOKENS: &[&str] = &[
    "children:",
    "name:",
    "\n  ",
    "\n",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "- ",
    "\"a\"",
    "a",
    "b",
    "c",
    "null",
    "~",
    "&x ",
    "*x",
    "!!str ",
    "? ",
    "'",
    "\"",
    "#",
    "---\n",
    "...\n",
    "{}",
    "[a, a]",
    "a: [a]",
    "<<: *x",
    "\t",
    "1",
    "true",
];

fn custom_file_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(HIERARCHY_TOKENS), 0..40)
            .prop_map(|t| t.concat()),
        any::<String>(),
        (dag(), any::<bool>(), crate::edits(HIERARCHY_TOKENS))
            .prop_map(|(d, yaml, e)| crate::apply(&if yaml { d.yaml() } else { d.json() }, &e)),
    ]
}

/// Random parent → children entries over a few names: duplicates, cycles, self-loops,
/// unknown leaves and missing labels all occur.
fn tangled_entries() -> impl Strategy<Value = (Vec<(String, Vec<String>)>, Vec<String>)> {
    let names = proptest::sample::select(&["a", "b", "c", "d", "e"][..]).prop_map(String::from);
    (
        proptest::collection::vec(
            (
                names.clone(),
                proptest::collection::vec(names.clone(), 0..4),
            ),
            0..6,
        ),
        proptest::collection::vec(names, 0..4),
    )
}

fn write_yaml(entries: &[(String, Vec<String>)]) -> String {
    let mut text = String::from("children:\n");
    for (parent, children) in entries {
        text.push_str(&format!("  {parent}: [{}]\n", children.join(", ")));
    }
    text
}

proptest! {
    #![proptest_config(crate::config(64))]

    /// A DAG written as a YAML or JSON custom file reads back as that DAG: every node a
    /// concept with its parents, children, level and labels; the labels in the dataset's
    /// order; concepts ordered by (level, key).
    #[test]
    fn custom_files_give_back_their_dag(dag in dag()) {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [("h.yaml", dag.yaml()), ("h.json", dag.json())] {
            let path = dir.path().join(file);
            std::fs::write(&path, &text).unwrap();
            let read = Hierarchy::from_custom_file(&path, &dag.label_names());
            prop_assert!(read.is_ok(), "{}: {:?}\n{}", file, read.err(), text);
            dag.check(&read.unwrap())?;
        }
    }

    /// `concepts.json` gives back the hierarchy it was written from, with and without
    /// image counts.
    #[test]
    fn concepts_json_round_trips(
        dag in dag(),
        counts in proptest::collection::vec(0u64..1 << 40, 12),
        with_counts in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let custom = dir.path().join("h.yaml");
        std::fs::write(&custom, dag.yaml()).unwrap();
        let mut h = Hierarchy::from_custom_file(&custom, &dag.label_names()).unwrap();
        if with_counts {
            h = h.with_image_counts(counts[..dag.labels.len()].to_vec()).unwrap();
        }
        let json = dir.path().join("concepts.json");
        h.write_json(&json).unwrap();
        prop_assert_eq!(Hierarchy::read_json(&json).unwrap(), h);
    }

    /// Arbitrary, token-soup and damaged custom files: an error naming the file, or a
    /// hierarchy over the labels.
    #[test]
    fn arbitrary_custom_files_never_panic(
        text in custom_file_text(),
        labels in proptest::collection::vec(
            proptest::sample::select(&["a", "b", "c", "\"a\"", ""][..]).prop_map(String::from),
            0..4,
        ),
        json in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if json { "h.json" } else { "h.yaml" });
        std::fs::write(&path, &text).unwrap();
        check_custom(&path, &labels)?;
    }

    /// Tangled entries (duplicates, cycles, unknown leaves, missing labels) give errors,
    /// not panics; what is accepted covers every label.
    #[test]
    fn tangled_custom_files_never_panic((entries, labels) in tangled_entries()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.yaml");
        std::fs::write(&path, write_yaml(&entries)).unwrap();
        check_custom(&path, &labels)?;
    }

    /// A damaged `concepts.json` (numbers changed to anything a u32 or u64 holds, lists
    /// changed, concepts removed, text edited) is an error naming the file, never a panic.
    #[test]
    fn damaged_concepts_json_never_panics(
        dag in dag(),
        counts in proptest::collection::vec(any::<u64>(), 12),
        mutations in proptest::collection::vec(json_mutation(), 1..4),
        edits in proptest::option::of(crate::edits(&["{", "}", "[", "]", ",", "0", "4294967295", "18446744073709551615", "\"level\": ", "\"images\": 1, "])),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let custom = dir.path().join("h.yaml");
        std::fs::write(&custom, dag.yaml()).unwrap();
        let h = Hierarchy::from_custom_file(&custom, &dag.label_names())
            .unwrap()
            .with_image_counts(counts[..dag.labels.len()].iter().map(|c| c % 1000).collect())
            .unwrap();
        let path = dir.path().join("concepts.json");
        h.write_json(&path).unwrap();
        let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for m in &mutations {
            m.apply(&mut value, &counts);
        }
        let mut text = serde_json::to_string_pretty(&value).unwrap();
        if let Some(edits) = &edits {
            text = crate::apply(&text, edits);
        }
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = Hierarchy::read_json(&path) {
            prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }
}

/// Reads a custom file: an error names it; a hierarchy has every label as a concept.
fn check_custom(path: &Path, labels: &[String]) -> Result<(), TestCaseError> {
    match Hierarchy::from_custom_file(path, labels) {
        // A selection that leaves nothing (no labels at all) names no file.
        Err(e @ HierarchyError::Selection(_)) => prop_assert!(labels.is_empty(), "{e}"),
        Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        Ok(h) => {
            prop_assert_eq!(h.labels(), labels);
            for (l, label) in labels.iter().enumerate() {
                let concepts = h.concepts_of_label(l as u32);
                prop_assert!(concepts.iter().any(|&c| &h.concept(c).key == label));
            }
        }
    }
    Ok(())
}

/// One change to a `concepts.json` value.
#[derive(Debug, Clone)]
enum JsonMutation {
    /// Set a concept's numeric field (`id`, `level`, `images`) to a number.
    Number(Index, &'static str, u64),
    /// Set a concept's list (`parents`, `children`, `labels`) to numbers.
    List(Index, &'static str, Vec<u64>),
    /// Set `label_images[i]` to a number (drawn from the counts).
    LabelImages(Index, Index),
    /// Remove a concept.
    Remove(Index),
    /// Swap two concepts.
    Swap(Index, Index),
}

fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    let number = prop_oneof![
        0u64..16,
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(u64::MAX),
        any::<u64>(),
    ];
    prop_oneof![
        (
            any::<Index>(),
            proptest::sample::select(&["id", "level", "images"][..]),
            number.clone()
        )
            .prop_map(|(i, f, v)| JsonMutation::Number(i, f, v)),
        (
            any::<Index>(),
            proptest::sample::select(&["parents", "children", "labels"][..]),
            proptest::collection::vec(number, 0..4),
        )
            .prop_map(|(i, f, v)| JsonMutation::List(i, f, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, c)| JsonMutation::LabelImages(i, c)),
        any::<Index>().prop_map(JsonMutation::Remove),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| JsonMutation::Swap(a, b)),
    ]
}

impl JsonMutation {
    fn apply(&self, file: &mut Value, counts: &[u64]) {
        if let JsonMutation::LabelImages(i, c) = self {
            if let Some(Value::Array(images)) = file.get_mut("label_images") {
                if !images.is_empty() {
                    let n = images.len();
                    images[i.index(n)] = Value::from(counts[c.index(counts.len())]);
                }
            }
            return;
        }
        let Some(Value::Array(concepts)) = file.get_mut("concepts") else {
            return;
        };
        if concepts.is_empty() {
            return;
        }
        let n = concepts.len();
        match self {
            JsonMutation::Number(i, field, v) => concepts[i.index(n)][*field] = Value::from(*v),
            JsonMutation::List(i, field, v) => {
                concepts[i.index(n)][*field] = v.iter().map(|&x| Value::from(x)).collect()
            }
            JsonMutation::Remove(i) => {
                concepts.remove(i.index(n));
            }
            JsonMutation::Swap(a, b) => concepts.swap(a.index(n), b.index(n)),
            JsonMutation::LabelImages(..) => unreachable!(),
        }
    }
}

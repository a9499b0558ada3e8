//! Concept hierarchies: the concepts `E` HINT scores neurons against, above a dataset's labels.
//!
//! A [`Hierarchy`] is a DAG of [`Concept`]s (a concept may have several parents) whose leaves
//! are the dataset's labels. It comes from one of two sources, both first built as a
//! [`ConceptGraph`] (every concept above the labels) and then cut down by a [`Selection`]:
//!
//! - **WordNet 3.0** ([`WordNet`], [`ConceptGraph::from_wordnet`]): labels are noun synset ids
//!   such as `n02084071` (ImageNet's class folders: `n` + the synset's byte offset in
//!   `data.noun`); the graph is their hypernym closure (`@` and instance `@i` pointers), every
//!   path kept. Concept keys are the ids, names the NLTK-style `dog.n.01`.
//! - **A custom file** ([`ConceptGraph::from_custom_file`], [`Hierarchy::from_custom_file`]):
//!   YAML (`.yaml`, `.yml`) or JSON (`.json`), one mapping parent → children:
//!
//!   ```yaml
//!   name: synthetic-world        # optional
//!   children:
//!     whole: [animal, vehicle]
//!     animal: [mammal, bird]
//!     mammal: [cat, dog]         # cat, dog: dataset labels
//!   ```
//!
//!   A name that is never a parent (or has an empty list) is a leaf and must be a dataset
//!   label; a node may have several parents; a label may be the parent of other labels.
//!   Errors, each naming the file: a cycle ([`HierarchyError::Cycle`], the cycle spelled
//!   out), a leaf that is not a dataset label ([`HierarchyError::UnknownLabel`]), a parent
//!   whose children are given twice or a child listed twice under one parent
//!   ([`HierarchyError::DuplicateName`], with the line), a dataset label not in the file or
//!   nobody's child ([`HierarchyError::LabelWithoutConcept`]), a file that does not parse
//!   ([`HierarchyError::Syntax`], with the parser's line).
//!
//! Every dataset label is itself a concept (key = the label; name = the label, or its synset
//! name `siberian_husky.n.01` under WordNet), a leaf unless another
//! label lies below it, unless a selection rule removes it. Concepts are ordered by
//! `(level, key)` and a [`ConceptId`] is a position in that order; level 0 is a root, any other
//! concept is one below its deepest parent (`1 + max(level of parents)`).
//!
//! # Selection (applied in this order; see [`Selection`])
//!
//! 1. **Roots** (`roots`): keep the named concepts and everything below them. A root is named by
//!    key (`n00015388`), by name (`animal.n.01`) or by a lemma (`animal`) when exactly one
//!    concept of the graph has it. Without roots, the graph's own roots are used (for WordNet
//!    `entity.n.01`). A dataset label under no root is an error naming it
//!    ([`HierarchyError::LabelWithoutConcept`]) unless `drop_uncovered` is set; a dropped label
//!    keeps its index in [`Hierarchy::labels`] (region files refer to labels by index) but
//!    belongs to no concept.
//! 2. **Minimum images** (`min_images`): remove every concept with fewer images at or under it.
//!    A concept never has more images than its parents, so what is removed is always a whole
//!    lower part of the DAG and the remaining concepts keep their parents.
//! 3. **Collapse** (`collapse`): remove every concept that has exactly one child and is not a
//!    dataset label; the child takes its place under its parents. Such a concept covers exactly
//!    the images of its child, so its classifier would see the same positives: the two are one
//!    concept. The node kept is the one **closest to the leaves**, because its name is the most
//!    precise description of those images (a dataset of huskies and malamutes collapses
//!    `mammal → carnivore → canine → dog` into `dog`, not `mammal`), and because dataset labels
//!    must survive. A root with one child is collapsed too: its child becomes the root.
//! 4. **Depth** (`max_depth`): remove every concept whose level (after the rules above) is
//!    greater than the limit, dataset labels included; their images still count for the
//!    concepts above. Applied last so that, with `collapse`, the limit counts meaningful levels.
//!
//! A label whose every concept is removed is an error unless `drop_uncovered` is set.
//! [`Hierarchy::write_json`] writes `concepts.json`, the hierarchy actually used, which
//! [`Hierarchy::read_json`] reads back exactly.

mod custom;
mod graph;
mod json;
mod select;
#[cfg(test)]
mod tests;
mod wordnet;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use graph::ConceptGraph;
pub use select::Selection;
pub use wordnet::{is_wordnet_id, Synset, WordNet, DEFAULT_WORDNET_DIR, WORDNET_ENV};

/// A concept's index in [`Hierarchy::concepts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConceptId(pub u32);

impl ConceptId {
    /// The position in [`Hierarchy::concepts`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for ConceptId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One concept of a [`Hierarchy`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concept {
    /// Its position in [`Hierarchy::concepts`].
    pub id: ConceptId,
    /// Stable identity: the WordNet id (`n02084071`) or the custom file's name.
    pub key: String,
    /// For people: `dog.n.01` (WordNet) or the custom name.
    pub name: String,
    /// 0 for a root, otherwise `1 + max(level of parents)`.
    pub level: u32,
    /// Its parents, sorted.
    pub parents: Vec<ConceptId>,
    /// Its children, sorted.
    pub children: Vec<ConceptId>,
    /// The dataset labels (indices into [`Hierarchy::labels`]) at or under it, sorted.
    pub labels: Vec<u32>,
}

/// Errors building, selecting, reading or writing a hierarchy; each names the file (and line
/// where there is one) or the concepts at fault.
#[derive(Debug, thiserror::Error)]
pub enum HierarchyError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The WordNet database files are not where they were looked for.
    #[error(
        "WordNet 3.0 files not found: {path} is missing (run scripts/bootstrap.sh, which \
         installs the Debian package wordnet-base, or point --wordnet / {WORDNET_ENV} at a \
         directory with data.noun and index.noun)"
    )]
    WordNetMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// A WordNet database file does not parse.
    #[error("{path}:{line}: malformed WordNet data: {problem}")]
    MalformedWordNet {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A label or root is not a WordNet noun synset.
    #[error("{0}")]
    UnknownSynset(String),
    /// A custom hierarchy or concepts.json file does not parse.
    #[error("{path}{}: {problem}", line.map_or(String::new(), |l| format!(":{l}")))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number, where the parser knows it.
        line: Option<usize>,
        /// What is wrong.
        problem: String,
    },
    /// The parent → child relation has a cycle.
    #[error("{path}: cycle in the hierarchy: {}", cycle.join(" → "))]
    Cycle {
        /// The file (or a description of the source).
        path: PathBuf,
        /// The concepts on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// Leaves of a custom hierarchy that are not dataset labels.
    #[error(
        "{path}: {} leaf name(s) that are not dataset labels: {} (a name with no children \
         must be one of the dataset labels: {})",
        names.len(), short_list(names), short_list(known)
    )]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// The unknown leaves.
        names: Vec<String>,
        /// The dataset labels (for the message).
        known: Vec<String>,
    },
    /// A name is defined twice.
    #[error("{path}{}: duplicate name {name:?}: {problem}", line.map_or(String::new(), |l| format!(":{l}")))]
    DuplicateName {
        /// The file.
        path: PathBuf,
        /// 1-based line of the second definition, where known.
        line: Option<usize>,
        /// The name.
        name: String,
        /// How it is duplicated.
        problem: String,
    },
    /// Dataset labels with no concept above them (not in the file, or outside every root).
    #[error("{} dataset label(s) with no concept: {} ({why})", labels.len(), short_list(labels))]
    LabelWithoutConcept {
        /// The labels.
        labels: Vec<String>,
        /// Why they have none.
        why: String,
    },
    /// A selection root that names no concept (or several).
    #[error("root {root:?}: {problem}")]
    BadRoot {
        /// The root as given.
        root: String,
        /// What is wrong.
        problem: String,
    },
    /// A selection that cannot be applied (e.g. a minimum image count without counts).
    #[error("concept selection: {0}")]
    Selection(String),
    /// A concepts.json whose contents contradict each other.
    #[error("{path}: inconsistent concepts file: {problem}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// At most 20 names joined by commas, then how many more there are: an error about 1,000
/// ImageNet labels stays readable.
fn short_list(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut list = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// Result with a [`HierarchyError`].
pub type Result<T, E = HierarchyError> = std::result::Result<T, E>;

/// A selected concept hierarchy above a dataset's labels. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Hierarchy {
    name: Option<String>,
    labels: Vec<String>,
    label_images: Option<Vec<u64>>,
    concepts: Vec<Concept>,
    label_concepts: Vec<Vec<ConceptId>>,
    by_key: HashMap<String, ConceptId>,
    by_name: HashMap<String, ConceptId>,
}

/// A concept before ordering: what [`Hierarchy::assemble`] needs.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub key: String,
    pub name: String,
    /// Indices of children among the drafts.
    pub children: BTreeSet<usize>,
    /// Dataset labels at or under it.
    pub labels: BTreeSet<u32>,
}

impl Hierarchy {
    /// The dataset's class names by label index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The concepts, ordered by `(level, key)`; a concept's id is its position.
    pub fn concepts(&self) -> &[Concept] {
        &self.concepts
    }

    /// The concept with this id. Panics if the id is not of this hierarchy.
    pub fn concept(&self, id: ConceptId) -> &Concept {
        &self.concepts[id.index()]
    }

    /// Every concept the label is at or under, sorted; empty for a label that was dropped.
    /// Panics if `label` is not an index into [`labels`](Self::labels).
    pub fn concepts_of_label(&self, label: u32) -> &[ConceptId] {
        &self.label_concepts[label as usize]
    }

    /// The concept with this key, or else with this name.
    pub fn find(&self, key_or_name: &str) -> Option<ConceptId> {
        self.by_key
            .get(key_or_name)
            .or_else(|| self.by_name.get(key_or_name))
            .copied()
    }

    /// The hierarchy's name (a custom file's `name:`), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Images per label (by label index), when known.
    pub fn label_images(&self) -> Option<&[u64]> {
        self.label_images.as_deref()
    }

    /// Images at or under a concept (the sum over its labels), when the counts are known.
    pub fn images(&self, id: ConceptId) -> Option<u64> {
        let counts = self.label_images.as_ref()?;
        Some(
            self.concept(id)
                .labels
                .iter()
                .map(|&l| counts[l as usize])
                .sum(),
        )
    }

    /// Attaches per-label image counts (one per label, by label index).
    pub fn with_image_counts(mut self, counts: Vec<u64>) -> Result<Hierarchy> {
        if counts.len() != self.labels.len() {
            return Err(HierarchyError::Selection(format!(
                "{} image counts for {} labels",
                counts.len(),
                self.labels.len()
            )));
        }
        self.label_images = Some(counts);
        Ok(self)
    }

    /// The roots (level 0), in id order.
    pub fn roots(&self) -> impl Iterator<Item = &Concept> {
        self.concepts.iter().filter(|c| c.level == 0)
    }

    /// Concepts per level: `result[l]` = number of concepts at level `l`.
    pub fn concepts_per_level(&self) -> Vec<usize> {
        let mut per_level = Vec::new();
        for c in &self.concepts {
            let l = c.level as usize;
            if per_level.len() <= l {
                per_level.resize(l + 1, 0);
            }
            per_level[l] += 1;
        }
        per_level
    }

    /// Reads a custom hierarchy file (`.yaml`, `.yml` or `.json`) over `labels` and keeps all
    /// of it (no selection rule). See [`ConceptGraph::from_custom_file`] for the format.
    pub fn from_custom_file(path: &Path, labels: &[String]) -> Result<Hierarchy> {
        ConceptGraph::from_custom_file(path, labels)?.select(&Selection::default(), None)
    }

    /// Writes `concepts.json`: the labels, their image counts and every concept.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        json::write(self, path)
    }

    /// Reads a `concepts.json` written by [`write_json`](Self::write_json), checking that it
    /// is consistent (ids, levels, parent/child symmetry, label sets).
    pub fn read_json(path: &Path) -> Result<Hierarchy> {
        json::read(path)
    }

    /// Orders drafts by `(level, key)` and builds the hierarchy. `source` names where the
    /// drafts came from, for errors (a cycle, a duplicate key).
    pub(crate) fn assemble(
        source: &Path,
        name: Option<String>,
        labels: Vec<String>,
        label_images: Option<Vec<u64>>,
        drafts: Vec<Draft>,
    ) -> Result<Hierarchy> {
        let n = drafts.len();
        let mut parents = vec![Vec::new(); n];
        for (p, d) in drafts.iter().enumerate() {
            for &c in &d.children {
                parents[c].push(p);
            }
        }
        // Kahn's algorithm from the roots; a level is fixed once every parent's is.
        let mut level = vec![0u32; n];
        let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        let mut done = 0;
        while let Some(p) = ready.pop() {
            done += 1;
            for &c in &drafts[p].children {
                level[c] = level[c].max(level[p] + 1);
                waiting[c] -= 1;
                if waiting[c] == 0 {
                    ready.push(c);
                }
            }
        }
        if done != n {
            let on_cycle =
                graph::find_cycle(n, |i| drafts[i].children.iter().copied()).unwrap_or_default();
            return Err(HierarchyError::Cycle {
                path: source.to_path_buf(),
                cycle: on_cycle.iter().map(|&i| drafts[i].name.clone()).collect(),
            });
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| (level[a], &drafts[a].key).cmp(&(level[b], &drafts[b].key)));
        let mut id_of = vec![ConceptId(0); n];
        for (pos, &i) in order.iter().enumerate() {
            id_of[i] = ConceptId(pos as u32);
        }
        let concepts = order
            .iter()
            .map(|&i| {
                let mut ps: Vec<ConceptId> = parents[i].iter().map(|&p| id_of[p]).collect();
                ps.sort();
                let mut cs: Vec<ConceptId> = drafts[i].children.iter().map(|&c| id_of[c]).collect();
                cs.sort();
                Concept {
                    id: id_of[i],
                    key: drafts[i].key.clone(),
                    name: drafts[i].name.clone(),
                    level: level[i],
                    parents: ps,
                    children: cs,
                    labels: drafts[i].labels.iter().copied().collect(),
                }
            })
            .collect();
        Hierarchy::from_concepts(source, name, labels, label_images, concepts)
    }

    /// Builds the lookups of ordered concepts, checking keys are unique and label indices valid.
    pub(crate) fn from_concepts(
        source: &Path,
        name: Option<String>,
        labels: Vec<String>,
        label_images: Option<Vec<u64>>,
        concepts: Vec<Concept>,
    ) -> Result<Hierarchy> {
        let mut by_key = HashMap::new();
        let mut by_name = HashMap::new();
        let mut label_concepts = vec![Vec::new(); labels.len()];
        for c in &concepts {
            if by_key.insert(c.key.clone(), c.id).is_some() {
                return Err(HierarchyError::DuplicateName {
                    path: source.to_path_buf(),
                    line: None,
                    name: c.key.clone(),
                    problem: "two concepts have this key".into(),
                });
            }
            by_name.entry(c.name.clone()).or_insert(c.id);
            for &l in &c.labels {
                let slot = label_concepts.get_mut(l as usize).ok_or_else(|| {
                    HierarchyError::Inconsistent {
                        path: source.to_path_buf(),
                        problem: format!(
                            "concept {} has label {l}, but there are {} labels",
                            c.key,
                            labels.len()
                        ),
                    }
                })?;
                slot.push(c.id);
            }
        }
        if let Some(counts) = &label_images {
            if counts.len() != labels.len() {
                return Err(HierarchyError::Inconsistent {
                    path: source.to_path_buf(),
                    problem: format!("{} image counts for {} labels", counts.len(), labels.len()),
                });
            }
        }
        Ok(Hierarchy {
            name,
            labels,
            label_images,
            concepts,
            label_concepts,
            by_key,
            by_name,
        })
    }
}

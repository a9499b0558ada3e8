//! [`Negatives`]: which rows a concept's classifier is shown as negatives, and
//! [`ConceptLabels`]: a concept's labels as the sampler needs them (its own, its siblings').
//!
//! The choice matters for what a classifier (and the Shapley values computed on it) detects:
//! with half its negatives from other concepts' foreground, a concept's classifier is pushed
//! to separate it from its *siblings*, not only from background. A faithfulness study
//! compares the sets; `mixed` is the default and what every earlier run used.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hierarchy::{ConceptId, Hierarchy};

/// The negative set of each concept classifier. Whatever the set, a concept gets as many
/// negatives as positives when its pools have them, and fewer otherwise (the trainer weights
/// the two classes equally; a concept with no negative training row is skipped).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Negatives {
    /// Half from other concepts' foreground, half from background; a short pool is filled
    /// from the other one.
    #[default]
    Mixed,
    /// Background regions only.
    Background,
    /// Foreground regions of images not at or under the concept.
    Others,
    /// Foreground regions of images under a sibling of the concept (a concept sharing a
    /// parent with it) and not under the concept itself. A concept without such images (a
    /// root, an only child) falls back to [`Others`](Negatives::Others), which its
    /// [`ConceptSample::negatives`](super::ConceptSample::negatives) records.
    Siblings,
}

impl Negatives {
    /// The option names, in declaration order.
    pub const NAMES: [&'static str; 4] = ["mixed", "background", "others", "siblings"];

    /// The option name (as in `classify.json`, the job spec and `--negatives`).
    pub fn name(self) -> &'static str {
        match self {
            Negatives::Mixed => Self::NAMES[0],
            Negatives::Background => Self::NAMES[1],
            Negatives::Others => Self::NAMES[2],
            Negatives::Siblings => Self::NAMES[3],
        }
    }
}

impl fmt::Display for Negatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Negatives {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mixed" => Ok(Negatives::Mixed),
            "background" => Ok(Negatives::Background),
            "others" => Ok(Negatives::Others),
            "siblings" => Ok(Negatives::Siblings),
            _ => Err(format!(
                "unknown negative set '{s}' (expected {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// A concept's labels as sampling needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConceptLabels {
    /// The concept.
    pub id: ConceptId,
    /// Dataset labels at or under it: its positives.
    pub labels: Vec<u32>,
    /// Dataset labels under one of its siblings and not under it, sorted: its negatives
    /// with [`Negatives::Siblings`]. Empty when it has none (then `others` is used).
    pub sibling_labels: Vec<u32>,
}

impl ConceptLabels {
    /// A concept with these labels and no siblings.
    pub fn new(id: ConceptId, labels: Vec<u32>) -> Self {
        ConceptLabels {
            id,
            labels,
            sibling_labels: Vec::new(),
        }
    }

    /// Concept `id` of `hierarchy`: its siblings are the other children of each of its
    /// parents (in a DAG, of any parent).
    pub fn of(hierarchy: &Hierarchy, id: ConceptId) -> Self {
        let concept = hierarchy.concept(id);
        let mut under = vec![false; hierarchy.labels().len()];
        for &l in &concept.labels {
            under[l as usize] = true;
        }
        let mut sibling = vec![false; under.len()];
        for &parent in &concept.parents {
            for &child in &hierarchy.concept(parent).children {
                if child == id {
                    continue;
                }
                for &l in &hierarchy.concept(child).labels {
                    sibling[l as usize] |= !under[l as usize];
                }
            }
        }
        ConceptLabels {
            id,
            labels: concept.labels.clone(),
            sibling_labels: (0..sibling.len() as u32)
                .filter(|&l| sibling[l as usize])
                .collect(),
        }
    }
}

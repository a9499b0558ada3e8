//! `metrics.json`, the classifier directory's per-concept metrics: written by the worker's
//! `classify` stage, read by the report, the worker's Shapley preparation and the tests
//! through these types.

use serde::{Deserialize, Serialize};

use crate::hierarchy::ConceptId;
use crate::regions::sample::Negatives;

/// Per-concept metrics file.
pub const METRICS_FILE: &str = "metrics.json";

/// One trained concept's numbers in `metrics.json`. Metrics are on the held-out split, with
/// a region called positive when `weightᵀr + bias > 0`; precision (recall) is 0 when nothing
/// is predicted (nothing is) positive, and every metric is 0 when the split is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptMetrics {
    /// Concept id (position in `concepts.json`).
    pub id: ConceptId,
    /// Stable key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Level (0 = a root).
    pub level: u32,
    /// Training rows.
    pub n_train: usize,
    /// Positive training rows.
    pub n_train_pos: usize,
    /// Negative training rows.
    pub n_train_neg: usize,
    /// Held-out rows.
    pub n_eval: usize,
    /// Positive held-out rows.
    pub n_eval_pos: usize,
    /// Negative held-out rows.
    pub n_eval_neg: usize,
    /// Held-out accuracy.
    pub accuracy: f64,
    /// Held-out precision.
    pub precision: f64,
    /// Held-out recall.
    pub recall: f64,
    /// Held-out F1.
    pub f1: f64,
    /// Accuracy on the training rows.
    pub train_accuracy: f64,
    /// Newton iterations.
    pub iterations: usize,
    /// Whether the solver reached its tolerance.
    pub converged: bool,
    /// Foreground rows of the dataset under the concept (before sampling).
    pub pool_positives: u64,
    /// Foreground rows of other concepts (before sampling).
    pub pool_other_foreground: u64,
    /// Background rows (before sampling).
    pub pool_background: u64,
    /// The negative set its negatives were drawn from: `classify.json`'s, except `others`
    /// for a concept without sibling images under `siblings`. Files written before the
    /// setting existed read as `mixed`, what they used.
    #[serde(default)]
    pub negatives: Negatives,
}

/// A concept with no classifier, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedConcept {
    /// Concept id.
    pub id: ConceptId,
    /// Stable key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Level.
    pub level: u32,
    /// Why it has no classifier (no positive or no negative training rows).
    pub reason: String,
}

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Model of the region files.
    pub model: String,
    /// Layer of the region files.
    pub layer: String,
    /// `D`.
    pub d: usize,
    /// Trained concepts, by id.
    pub concepts: Vec<ConceptMetrics>,
    /// Concepts without a classifier, by id.
    pub skipped: Vec<SkippedConcept>,
}

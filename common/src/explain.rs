//! `explain.json`: the concept maps `hint explain` draws for any image — one type, shared by
//! its writer (the worker's `explain` engine) and its reader (the report's gallery).
//!
//! Written into `hint explain --out`, by default the job's `results/explain/`
//! ([`EXPLAIN_DIR`]), where `hint report` finds it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The file's name in its directory.
pub const EXPLAIN_FILE: &str = "explain.json";

/// `hint explain`'s default output directory, under the job's `results/`: the place the
/// report looks for concept maps.
pub const EXPLAIN_DIR: &str = "explain";

/// One concept's map on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptMap {
    /// The image file.
    pub image: PathBuf,
    /// The concept's id.
    pub concept: u32,
    /// Its key in the hierarchy.
    pub key: String,
    /// Its name.
    pub name: String,
    /// The heatmap, relative to the output directory.
    pub png: String,
    /// `H` and `W` of the layer's map.
    pub height: usize,
    /// See `height`.
    pub width: usize,
    /// The logit at each position, row-major (`y · W + x`).
    pub logits: Vec<f32>,
    /// The position of the highest logit, `[y, x]`.
    pub peak: [usize; 2],
    /// σ of the highest logit: the classifier's probability that the peak position is a
    /// region of the concept.
    pub peak_probability: f64,
}

/// An image that could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedImage {
    /// The file.
    pub image: PathBuf,
    /// Why.
    pub reason: String,
}

/// What `hint explain` wrote: the whole of `explain.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainReport {
    /// The job directory.
    pub job: PathBuf,
    /// The architecture and layer.
    pub model: String,
    /// See `model`.
    pub layer: String,
    /// The crop side the images were fed at.
    pub crop: u32,
    /// The classifiers were re-fitted on each concept's top-K neurons by Φ (None: the
    /// trained ones).
    pub top: Option<usize>,
    /// Every map, by image then concept.
    pub maps: Vec<ConceptMap>,
    /// Images that could not be read.
    pub skipped: Vec<SkippedImage>,
}

impl ExplainReport {
    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }

    /// Parses the file's text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

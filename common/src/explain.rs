//! `explain.json`: the concept maps `hint explain` draws for any image — one type, shared by
//! its writer (the worker's `explain` engine) and its reader (the report's gallery).
//!
//! Written into `hint explain --out`, by default the job's `results/explain/`
//! ([`EXPLAIN_DIR`]), where `hint report` finds it. With `--boxes`, each map is also checked
//! against the boxes an expert drew on its image ([`BoxCheck`], summed up per concept in
//! [`ConceptCheck`]): the pointing game and the IoU of the map's box, scored as
//! `hint evaluate` scores localisation. Fields added after the first version read as their
//! defaults from older files.

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
    /// The map against its image's boxes, when boxes were given and one matched the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<BoxCheck>,
}

/// One map against the boxes drawn on its image, in the crop frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxCheck {
    /// The image's boxes that reach into the crop.
    pub boxes: usize,
    /// Pointing game: the map's maximum (upsampled to the crop) lies in a box.
    pub pointed: bool,
    /// IoU of the box around the largest connected part of the map at the threshold with
    /// the best-matching box (0 for a constant map).
    pub iou: f64,
    /// IoU of the map at the threshold with the image's object mask, when masks were given
    /// and the image has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_iou: Option<f64>,
}

/// A concept's maps against the boxes, over the images that have boxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptCheck {
    /// The concept's id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// Images checked.
    pub images: usize,
    /// Fraction of them whose map points into a box.
    pub pointing: f64,
    /// Fraction of them whose map's box has IoU ≥ 0.5 with a box (localisation accuracy).
    pub localised: f64,
    /// Mean IoU.
    pub mean_iou: f64,
    /// Mean mask IoU over the images with a mask (None: none had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_mask_iou: Option<f64>,
}

impl ConceptCheck {
    /// The summary of `maps`' checks for each concept, in the order concepts first appear.
    pub fn summarise(maps: &[ConceptMap]) -> Vec<ConceptCheck> {
        let mut concepts: Vec<(u32, &str)> = Vec::new();
        for m in maps.iter().filter(|m| m.check.is_some()) {
            if !concepts.iter().any(|c| c.0 == m.concept) {
                concepts.push((m.concept, &m.name));
            }
        }
        concepts
            .into_iter()
            .map(|(concept, name)| {
                let checks: Vec<&BoxCheck> = maps
                    .iter()
                    .filter(|m| m.concept == concept)
                    .filter_map(|m| m.check.as_ref())
                    .collect();
                let n = checks.len() as f64;
                let masks: Vec<f64> = checks.iter().filter_map(|c| c.mask_iou).collect();
                ConceptCheck {
                    concept,
                    name: name.to_string(),
                    images: checks.len(),
                    pointing: checks.iter().filter(|c| c.pointed).count() as f64 / n,
                    localised: checks.iter().filter(|c| c.iou >= 0.5).count() as f64 / n,
                    mean_iou: checks.iter().map(|c| c.iou).sum::<f64>() / n,
                    mean_mask_iou: (!masks.is_empty())
                        .then(|| masks.iter().sum::<f64>() / masks.len() as f64),
                }
            })
            .collect()
    }
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
    /// The annotation tree the maps were checked against (`--boxes`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<PathBuf>,
    /// The object masks' root (`--masks`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<PathBuf>,
    /// The threshold (of each map's range) that boxes a map, with `boxes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Per concept, its maps against the boxes ([`ConceptCheck::summarise`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<ConceptCheck>,
    /// Images explained but not checked, and why (no annotation matched, an unreadable
    /// one, no box inside the crop).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<SkippedImage>,
}

impl ExplainReport {
    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }
}

//! `sanity.json`: the saliency sanity check `hint sanity` writes (Adebayo et al., 2018:
//! cascading model-parameter randomisation), one type for its writer (the worker's `sanity`
//! engine) and its readers (the report's section, the tests).
//!
//! Starting from the trained model, the weights are destroyed one part at a time from the
//! top — the head, then every stage from the last down to the first — and at every step the
//! hidden-layer saliency of each method is computed again on the same images, with the same
//! target class (the trained model's prediction) and the same per-image randomness. Each
//! step is compared with the trained model: the rank correlation of each image's aggregated
//! saliency map, the IoU of its responsible region (the map normalised and thresholded as
//! extraction does), and the rank correlation of each concept classifier's map of the layer
//! (which only changes once the randomisation reaches the layer or below). A method whose
//! regions survive the destruction of the network above the layer does not explain the
//! network.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::attack::MappedConcept;
pub use crate::explain::SkippedImage;

/// The file's name in its directory.
pub const SANITY_FILE: &str = "sanity.json";

/// `hint sanity`'s default output directory, under the job's `results/`.
pub const SANITY_DIR: &str = "sanity";

/// One method at one step, against the trained model, averaged over the images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSimilarity {
    /// The saliency method.
    pub method: String,
    /// Mean Spearman correlation of the aggregated maps (None: defined on no image).
    pub rank_correlation: Option<f64>,
    /// Its 95% percentile-bootstrap interval over the images ([`interval`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_correlation_interval: Option<[f64; 2]>,
    /// Images where it is defined (neither map constant).
    pub correlated: usize,
    /// Mean IoU of the responsible regions (None: every image's regions empty on both).
    pub region_iou: Option<f64>,
    /// Its 95% percentile-bootstrap interval over the images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_iou_interval: Option<[f64; 2]>,
    /// Images where it is defined (a region on either side).
    pub with_regions: usize,
}

/// One step of the cascade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityStep {
    /// The part randomised at this step (cumulatively with the ones before): `head`, a
    /// stage's name, or None for the trained model (step 0).
    pub randomised: Option<String>,
    /// The randomisation has reached the layer or below: the activations themselves change.
    pub reaches_layer: bool,
    /// One per method, in [`SanityReport::methods`]' order.
    pub methods: Vec<MethodSimilarity>,
    /// Per concept (in [`SanityReport::concepts`]' order), the mean Spearman correlation
    /// of its classifier's map with the trained model's (None: defined on no image).
    pub concept_maps: Vec<Option<f64>>,
}

/// What `hint sanity` wrote: the whole of `sanity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityReport {
    /// The job directory.
    pub job: PathBuf,
    /// The architecture and layer.
    pub model: String,
    /// See `model`.
    pub layer: String,
    /// The crop side the images were fed at.
    pub crop: u32,
    /// The methods compared (with the job's parameters for the parametrised ones).
    pub methods: Vec<String>,
    /// The job's aggregation over channels.
    pub aggregation: String,
    /// The job's threshold on the normalised map.
    pub threshold: f32,
    /// The seed of the randomisation (the job's).
    pub seed: u64,
    /// Images compared.
    pub images: usize,
    /// The concepts whose maps are compared.
    pub concepts: Vec<MappedConcept>,
    /// Step 0 (the trained model) and one step per randomised part, from the top.
    pub steps: Vec<SanityStep>,
    /// Images that could not be read.
    pub skipped: Vec<SkippedImage>,
}

impl SanityReport {
    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }
}

/// The mean of the defined values and how many there were (None: none).
pub fn mean_defined(values: impl IntoIterator<Item = Option<f64>>) -> (Option<f64>, usize) {
    let (sum, n) = values
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    ((n > 0).then(|| sum / n as f64), n)
}

/// Bootstrap replicates of [`interval`].
pub const REPLICATES: usize = 1000;

/// The 95% percentile-bootstrap interval of the mean of the defined `values` (images drawn
/// with replacement, `REPLICATES` times, from a generator seeded by `seed` alone — so every
/// step and method of a run resamples the same images); None without a defined value.
pub fn interval(values: &[Option<f64>], seed: u64) -> Option<[f64; 2]> {
    use rand::RngExt;
    let defined: Vec<f64> = values.iter().flatten().copied().collect();
    let mean = mean_defined(defined.iter().copied().map(Some)).0?;
    let mut rng = crate::seed::rng(seed, &[BOOTSTRAP_STREAM]);
    let n = defined.len();
    let mut replicates: Vec<f64> = (0..REPLICATES)
        .map(|_| (0..n).map(|_| defined[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    let (low, high) = crate::stats::percentile_interval(&mut replicates, 0.95, mean);
    Some([low, high])
}

/// Seed-stream tag of the bootstrap.
const BOOTSTRAP_STREAM: u64 = 0x5342; // "SB"

/// IoU of two masks of equal length (None when both are empty).
pub fn mask_iou(a: &[bool], b: &[bool]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "masks of unequal lengths");
    let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let either = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    (either > 0).then(|| both as f64 / either as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_means_skip_what_is_undefined() {
        let a = [true, true, false, false];
        let b = [false, true, true, false];
        assert_eq!(mask_iou(&a, &b), Some(1.0 / 3.0));
        assert_eq!(mask_iou(&a, &a), Some(1.0));
        assert_eq!(mask_iou(&[false; 3], &[false; 3]), None);
        assert_eq!(mean_defined([Some(1.0), None, Some(0.5)]), (Some(0.75), 2));
        assert_eq!(mean_defined([None, None]), (None, 0));
    }

    #[test]
    fn bootstrap_intervals_hold_the_mean_and_are_seeded() {
        assert_eq!(interval(&[Some(0.5), None, Some(0.5)], 1), Some([0.5, 0.5]));
        assert_eq!(interval(&[None], 1), None);
        let values: Vec<Option<f64>> = (0..40).map(|i| Some(f64::from(i % 7) / 7.0)).collect();
        let [low, high] = interval(&values, 3).unwrap();
        let mean = mean_defined(values.iter().copied()).0.unwrap();
        assert!(low < mean && mean < high, "{low} < {mean} < {high}");
        // About ±2 standard errors of the mean (sd ≈ 0.286 / √40 ≈ 0.045).
        assert!(high - low > 0.12 && high - low < 0.24, "{}", high - low);
        assert_eq!(interval(&values, 3), Some([low, high]));
    }
}

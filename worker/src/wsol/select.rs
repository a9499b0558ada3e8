//! Choosing the top-k% neurons of a concept four ways ([`Selection`]), and re-fitting the
//! concept's classifier on them alone with the job's solver.

use std::cmp::Ordering;

use hint_common::hierarchy::ConceptId;
use hint_common::regions::sample::{ConceptSamples, ConceptSplit};
use hint_common::seed;
pub use hint_common::wsol::Selection;
use tch::Device;

use crate::classify::logistic::{self, LogisticSettings, Problem};
use crate::classify::ConceptClassifier;

/// Identity tag of the evaluation's random choices in [`seed::derive`] (`"hintwsol"`).
pub const WSOL_TAG: u64 = u64::from_be_bytes(*b"hintwsol");

/// Identity part of the random selections' keys, after [`WSOL_TAG`] (1 is the images').
pub const RANDOM_PART: u64 = 2;

/// Neurons kept at `fraction` percent of `d`: `ceil(d · fraction / 100)`, at least 1.
pub fn neurons_kept(d: usize, fraction: u32) -> usize {
    (d * fraction as usize).div_ceil(100).clamp(1, d)
}

/// The indices of the `k` largest `scores` (ties: the lower index), sorted ascending.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order.sort_unstable();
    order
}

/// `k` of `d` neurons uniformly at random, draw `draw`: the `k` smallest keys
/// `derive(seed, [WSOL_TAG, RANDOM_PART, concept, fraction, draw, neuron])`, sorted
/// ascending.
pub fn random_k(
    d: usize,
    k: usize,
    seed: u64,
    concept: ConceptId,
    fraction: u32,
    draw: u32,
) -> Vec<usize> {
    let keys: Vec<f64> = (0..d)
        .map(|n| {
            let key = seed::derive(
                seed,
                &[
                    WSOL_TAG,
                    RANDOM_PART,
                    u64::from(concept.0),
                    u64::from(fraction),
                    u64::from(draw),
                    n as u64,
                ],
            );
            // Negated so that top_k's "largest first" takes the smallest keys.
            -(key as f64)
        })
        .collect();
    top_k(&keys, k)
}

/// `|w_d|`: the saved classifier's weights on raw activations.
pub fn raw_weight(classifier: &ConceptClassifier) -> Vec<f64> {
    classifier
        .weight
        .iter()
        .map(|&w| f64::from(w).abs())
        .collect()
}

/// `|w_d| · σ_d`: the full classifier's weights on the standardised features the solver
/// fitted (σ is the class-balanced standard deviation of the training rows, as in
/// [`logistic`]); raw weights would rank channels by their scale as much as by their use.
pub fn standardised_weight(
    classifier: &ConceptClassifier,
    samples: &ConceptSamples,
    split: &ConceptSplit,
) -> Vec<f64> {
    let d = samples.d();
    let store = samples.activations();
    let pos = split.positives().max(1) as f64;
    let neg = split.negatives().max(1) as f64;
    let omega = |t: f32| if t > 0.5 { 0.5 / pos } else { 0.5 / neg };
    let mut mean = vec![0f64; d];
    for (&row, &t) in split.rows.iter().zip(&split.targets) {
        let r = &store[row as usize * d..(row as usize + 1) * d];
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += omega(t) * f64::from(v);
        }
    }
    let mut var = vec![0f64; d];
    for (&row, &t) in split.rows.iter().zip(&split.targets) {
        let r = &store[row as usize * d..(row as usize + 1) * d];
        for ((s, &v), m) in var.iter_mut().zip(r).zip(&mean) {
            *s += omega(t) * (f64::from(v) - m).powi(2);
        }
    }
    classifier
        .weight
        .iter()
        .zip(var)
        .map(|(&w, v)| f64::from(w).abs() * v.sqrt())
        .collect()
}

/// A linear classifier on all `D` channels (zero outside its neurons).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedClassifier {
    /// The neurons it uses, ascending.
    pub neurons: Vec<usize>,
    /// `D` weights on raw activations, 0 outside `neurons`.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: f32,
}

/// Fits the concept's classifier on `split` (its training rows) once per neuron set, with
/// the job's solver, in one batched solve; every set must have the same size.
pub fn refit(
    samples: &ConceptSamples,
    split: &ConceptSplit,
    neuron_sets: &[Vec<usize>],
    solver: &LogisticSettings,
    device: Device,
) -> Result<Vec<SelectedClassifier>, tch::TchError> {
    let d = samples.d();
    let Some(k) = neuron_sets.first().map(Vec::len) else {
        return Ok(Vec::new());
    };
    assert!(
        neuron_sets.iter().all(|s| s.len() == k),
        "one size per group"
    );
    let store = samples.activations();
    let n = split.rows.len();
    // One reduced store: the split's rows restricted to each set, set after set.
    let mut reduced = Vec::with_capacity(neuron_sets.len() * n * k);
    for set in neuron_sets {
        for &row in &split.rows {
            let r = &store[row as usize * d..(row as usize + 1) * d];
            reduced.extend(set.iter().map(|&c| r[c]));
        }
    }
    let rows: Vec<Vec<u32>> = (0..neuron_sets.len())
        .map(|s| ((s * n) as u32..((s + 1) * n) as u32).collect())
        .collect();
    let problems: Vec<Problem<'_>> = rows
        .iter()
        .map(|rows| Problem {
            rows,
            targets: &split.targets,
        })
        .collect();
    let fits = logistic::fit_group(&reduced, k, &problems, solver, device)?;
    Ok(neuron_sets
        .iter()
        .zip(fits)
        .map(|(set, fit)| {
            let mut weight = vec![0f32; d];
            for (&c, &w) in set.iter().zip(&fit.weight) {
                weight[c] = w;
            }
            SelectedClassifier {
                neurons: set.clone(),
                weight,
                bias: fit.bias,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rankings_and_random_draws() {
        assert_eq!(neurons_kept(64, 10), 7);
        assert_eq!(neurons_kept(64, 20), 13);
        assert_eq!(neurons_kept(64, 100), 64);
        assert_eq!(neurons_kept(5, 1), 1);
        assert_eq!(top_k(&[0.1, 0.9, -1.0, 0.9, 0.5], 3), vec![1, 3, 4]);
        assert_eq!(top_k(&[0.1, 0.9, -1.0, 0.9, 0.5], 1), vec![1]);
        let a = random_k(64, 13, 7, ConceptId(3), 20, 0);
        assert_eq!(a.len(), 13);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, random_k(64, 13, 7, ConceptId(3), 20, 0));
        assert_ne!(a, random_k(64, 13, 8, ConceptId(3), 20, 0));
        assert_ne!(a, random_k(64, 13, 7, ConceptId(4), 20, 0));
        assert_ne!(a, random_k(64, 13, 7, ConceptId(3), 40, 0));
        assert_ne!(a, random_k(64, 13, 7, ConceptId(3), 20, 1));
        // Draws are uniform: over many draws every neuron is kept about k/d of the time.
        let mut kept = [0u32; 64];
        for draw in 0..2000 {
            for n in random_k(64, 16, 7, ConceptId(3), 20, draw) {
                kept[n] += 1;
            }
        }
        // Expected 500 each, binomial sd ≈ 19.4: 5 sd either side.
        assert!(kept.iter().all(|&c| (403..=597).contains(&c)), "{kept:?}");
        let saved = ConceptClassifier {
            concept: ConceptId(0),
            key: "k".into(),
            name: "n".into(),
            level: 0,
            model: "tiny_cnn".into(),
            layer: "features.7".into(),
            weight: vec![-2.0, 1.0, 0.5, -0.25],
            bias: 0.0,
        };
        assert_eq!(raw_weight(&saved), vec![2.0, 1.0, 0.5, 0.25]);
        assert_eq!(top_k(&raw_weight(&saved), 2), vec![0, 1]);
    }
}

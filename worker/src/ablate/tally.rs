//! From per-image outcomes to `ablation.json`'s numbers: each cell's drops per concept, the
//! pooled curves, and Shapley − each baseline with a paired bootstrap interval over images.
//!
//! Everything here is plain arithmetic on the per-image drops the network pass produced
//! ([`CellDrops`]), so it is tested without a model.

use hint_common::ablation::{
    AblationComparison, AblationSelection, Bootstrap, CurvePoint, Drops, Removal,
};
use hint_common::seed;
use hint_common::stats::{percentile_interval, Difference, Verdict};
use rand::RngExt as _;
use rayon::prelude::*;

use super::ABLATE_TAG;

/// Identity part of the bootstrap's streams, after [`ABLATE_TAG`].
const BOOTSTRAP_PART: u64 = 2;

/// What one cell (a concept's neuron set removed one way) did to every evaluated image:
/// unablated − ablated accuracy and probability, for the concept's own measure on its
/// on-target images and the label's on the others.
#[derive(Debug, Clone, PartialEq)]
pub struct CellDrops {
    /// Position of the concept in the evaluated concepts.
    pub concept: usize,
    /// How its neurons were chosen.
    pub selection: AblationSelection,
    /// How they were removed.
    pub removal: Removal,
    /// Percent of neurons removed.
    pub fraction: u32,
    /// The draw (random), else 0.
    pub draw: u32,
    /// Accuracy drop per image (0, ±1).
    pub accuracy: Vec<f32>,
    /// Probability drop per image.
    pub probability: Vec<f32>,
}

/// Which evaluated images are on target for each concept.
#[derive(Debug, Clone)]
pub struct Targets {
    /// `on[c][i]`: image `i` is at or under concept `c`.
    pub on: Vec<Vec<bool>>,
}

impl Targets {
    fn means(&self, c: usize, values: &[f32], weights: Option<&[u32]>) -> Option<(f64, f64)> {
        let (mut on, mut off, mut n_on, mut n_off) = (0f64, 0f64, 0f64, 0f64);
        for (i, (&v, &is_on)) in values.iter().zip(&self.on[c]).enumerate() {
            let w = weights.map_or(1.0, |w| f64::from(w[i]));
            if is_on {
                on += w * f64::from(v);
                n_on += w;
            } else {
                off += w * f64::from(v);
                n_off += w;
            }
        }
        (n_on > 0.0 && n_off > 0.0).then(|| (on / n_on, off / n_off))
    }

    /// A cell's drops over its concept's images, `weights` (bootstrap counts) or all once;
    /// `None` when a side has no image.
    pub fn drops(&self, cell: &CellDrops, weights: Option<&[u32]>) -> Option<Drops> {
        let (on_a, off_a) = self.means(cell.concept, &cell.accuracy, weights)?;
        let (on_p, off_p) = self.means(cell.concept, &cell.probability, weights)?;
        Some(Drops::new(on_a, on_p, off_a, off_p))
    }
}

/// The cells of one (selection, removal, fraction) across concepts and draws.
fn group(
    cells: &[CellDrops],
    selection: AblationSelection,
    removal: Removal,
    fraction: u32,
) -> Vec<&CellDrops> {
    cells
        .iter()
        .filter(|c| c.selection == selection && c.removal == removal && c.fraction == fraction)
        .collect()
}

/// Mean over concepts of each draw's drops, then over draws; and the draws' pooled
/// specificities (for their spread). `None` when no concept has images on both sides.
fn pooled(
    targets: &Targets,
    cells: &[&CellDrops],
    weights: Option<&[u32]>,
) -> Option<(Drops, Vec<f64>)> {
    let mut draws: Vec<u32> = cells.iter().map(|c| c.draw).collect();
    draws.sort_unstable();
    draws.dedup();
    let mut per_draw = Vec::new();
    for draw in draws {
        let drops: Vec<Drops> = cells
            .iter()
            .filter(|c| c.draw == draw)
            .filter_map(|c| targets.drops(c, weights))
            .collect();
        if !drops.is_empty() {
            per_draw.push(mean_drops(&drops));
        }
    }
    if per_draw.is_empty() {
        return None;
    }
    let specificities = per_draw.iter().map(|d| d.specificity).collect();
    Some((mean_drops(&per_draw), specificities))
}

fn mean_drops(all: &[Drops]) -> Drops {
    let n = all.len() as f64;
    let mean = |f: fn(&Drops) -> f64| all.iter().map(f).sum::<f64>() / n;
    Drops::new(
        mean(|d| d.on_accuracy),
        mean(|d| d.on_probability),
        mean(|d| d.off_accuracy),
        mean(|d| d.off_probability),
    )
}

fn sd(values: &[f64]) -> Option<f64> {
    (values.len() > 1).then(|| {
        let n = values.len() as f64;
        let m = values.iter().sum::<f64>() / n;
        (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    })
}

/// The pooled curves, one point per (selection, removal, fraction) present in `cells`.
pub fn curves(
    targets: &Targets,
    cells: &[CellDrops],
    selections: &[AblationSelection],
    removals: &[Removal],
    fractions: &[u32],
    neurons_kept: impl Fn(u32) -> usize,
) -> Vec<CurvePoint> {
    let mut out = Vec::new();
    for &selection in selections {
        for &removal in removals {
            for &fraction in fractions {
                let g = group(cells, selection, removal, fraction);
                if let Some((drops, specificities)) = pooled(targets, &g, None) {
                    out.push(CurvePoint {
                        selection,
                        removal,
                        fraction,
                        neurons: neurons_kept(fraction),
                        draws: specificities.len(),
                        drops,
                        specificity_sd: sd(&specificities),
                    });
                }
            }
        }
    }
    out
}

/// Image counts of bootstrap replicate `b`: `n` images drawn with replacement.
fn resample(n: usize, seed: u64, b: usize) -> Vec<u32> {
    let mut rng = seed::rng(seed, &[ABLATE_TAG, BOOTSTRAP_PART, b as u64]);
    let mut counts = vec![0u32; n];
    for _ in 0..n {
        counts[rng.random_range(0..n)] += 1;
    }
    counts
}

/// Shapley − each baseline on pooled specificity (accuracy and probability), per (removal,
/// fraction), with percentile intervals over `bootstrap.replicates` image resamples — one
/// resample per replicate, shared by every comparison (paired).
pub fn compare(
    targets: &Targets,
    cells: &[CellDrops],
    baselines: &[AblationSelection],
    removals: &[Removal],
    fractions: &[u32],
    images: usize,
    bootstrap: &Bootstrap,
) -> Vec<AblationComparison> {
    // The groups whose pooled specificity a replicate needs: Shapley's and each baseline's,
    // each computed once per replicate.
    let mut groups: Vec<Vec<&CellDrops>> = Vec::new();
    // (baseline, removal, fraction, Shapley's group, the baseline's group)
    let mut wanted = Vec::new();
    for &removal in removals {
        for &fraction in fractions {
            let shapley = group(cells, AblationSelection::Shapley, removal, fraction);
            if shapley.is_empty() {
                continue;
            }
            let s = groups.len();
            groups.push(shapley);
            for &baseline in baselines {
                let other = group(cells, baseline, removal, fraction);
                if !other.is_empty() {
                    wanted.push((baseline, removal, fraction, s, groups.len()));
                    groups.push(other);
                }
            }
        }
    }
    let specificities = |weights: Option<&[u32]>| -> Vec<Option<(f64, f64)>> {
        groups
            .iter()
            .map(|g| {
                pooled(targets, g, weights).map(|(d, _)| (d.specificity, d.probability_specificity))
            })
            .collect()
    };
    let point = specificities(None);
    // Replicate-major: each resample is drawn once and serves every comparison.
    let replicates: Vec<Vec<Option<(f64, f64)>>> = (0..bootstrap.replicates)
        .into_par_iter()
        .map(|b| specificities(Some(&resample(images, bootstrap.seed, b))))
        .collect();
    wanted
        .iter()
        .filter_map(|&(baseline, removal, fraction, s, o)| {
            let ((s_acc, s_prob), (o_acc, o_prob)) = (point[s]?, point[o]?);
            let diffs = |pick: fn((f64, f64)) -> f64| -> Vec<f64> {
                replicates
                    .iter()
                    .filter_map(|r| Some(pick(r[s]?) - pick(r[o]?)))
                    .collect()
            };
            let difference = |shapley: f64, baseline: f64, mut reps: Vec<f64>| {
                let difference = shapley - baseline;
                let (low, high) = percentile_interval(&mut reps, bootstrap.confidence, difference);
                Difference {
                    shapley,
                    baseline,
                    difference,
                    low,
                    high,
                }
            };
            let specificity = difference(s_acc, o_acc, diffs(|p| p.0));
            Some(AblationComparison {
                baseline,
                removal,
                fraction,
                verdict: Verdict::of(&specificity),
                specificity,
                probability_specificity: difference(s_prob, o_prob, diffs(|p| p.1)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(
        concept: usize,
        selection: AblationSelection,
        draw: u32,
        accuracy: Vec<f32>,
    ) -> CellDrops {
        CellDrops {
            concept,
            selection,
            removal: Removal::Zero,
            fraction: 10,
            draw,
            probability: accuracy.iter().map(|a| a / 2.0).collect(),
            accuracy,
        }
    }

    fn settings(replicates: usize) -> Bootstrap {
        Bootstrap {
            replicates,
            confidence: 0.95,
            seed: 4,
        }
    }

    #[test]
    fn drops_are_on_minus_off_and_pool_over_concepts_then_draws() {
        // Concept 0: images 0, 1 on target; concept 1: image 2 on target.
        let targets = Targets {
            on: vec![
                vec![true, true, false, false],
                vec![false, false, true, false],
            ],
        };
        let c0 = cell(0, AblationSelection::Shapley, 0, vec![1.0, 0.0, 0.0, 0.5]);
        let d = targets.drops(&c0, None).unwrap();
        assert_eq!(d.on_accuracy, 0.5);
        assert_eq!(d.off_accuracy, 0.25);
        assert_eq!(d.specificity, 0.25);
        assert_eq!(d.probability_specificity, 0.125);
        // Weights count images: image 0 twice, image 1 never.
        let w = [2, 0, 1, 1];
        let d = targets.drops(&c0, Some(&w)).unwrap();
        assert_eq!((d.on_accuracy, d.off_accuracy), (1.0, 0.25));
        // A side without images gives no drops.
        assert!(targets.drops(&c0, Some(&[0, 0, 1, 1])).is_none());

        let cells = vec![
            c0.clone(),
            cell(1, AblationSelection::Shapley, 0, vec![0.0, 0.0, 1.0, 0.0]),
            cell(0, AblationSelection::Random, 0, vec![0.0; 4]),
            cell(1, AblationSelection::Random, 0, vec![0.0; 4]),
            cell(0, AblationSelection::Random, 1, vec![1.0, 1.0, 0.0, 0.0]),
            cell(1, AblationSelection::Random, 1, vec![0.0; 4]),
        ];
        let points = curves(
            &targets,
            &cells,
            &[AblationSelection::Shapley, AblationSelection::Random],
            &[Removal::Zero],
            &[10],
            |_| 7,
        );
        assert_eq!(points.len(), 2);
        // Shapley: concept 0 specificity 0.25, concept 1: 1 − 0 = 1 → mean 0.625.
        assert_eq!(points[0].drops.specificity, 0.625);
        assert_eq!((points[0].draws, points[0].specificity_sd), (1, None));
        // Random: draw 0 → 0, draw 1 → (1 + 0)/2 = 0.5; mean 0.25, sd of {0, 0.5}.
        assert_eq!(points[1].drops.specificity, 0.25);
        assert_eq!(points[1].draws, 2);
        assert!((points[1].specificity_sd.unwrap() - 0.5f64.sqrt() / 2.0 * 1.0).abs() < 1e-12);
    }

    #[test]
    fn intervals_are_paired_and_deterministic() {
        let n = 40;
        let on = |c: usize| (0..n).map(|i| i % 4 == c).collect::<Vec<_>>();
        let targets = Targets {
            on: (0..4).map(on).collect(),
        };
        // Shapley and the baseline differ by a constant 0.5 on every on-target image: the
        // difference is the same in every resample, so the interval has zero width.
        let mut cells = Vec::new();
        for c in 0..4 {
            let base: Vec<f32> = (0..n).map(|i| ((i * 7 + c) % 3) as f32 / 4.0).collect();
            let plus: Vec<f32> = base
                .iter()
                .enumerate()
                .map(|(i, v)| if i % 4 == c { v + 0.5 } else { *v })
                .collect();
            cells.push(cell(c, AblationSelection::Shapley, 0, plus));
            cells.push(cell(c, AblationSelection::WeightRaw, 0, base));
        }
        let run = |replicates| {
            compare(
                &targets,
                &cells,
                &[AblationSelection::WeightRaw],
                &[Removal::Zero],
                &[10],
                n,
                &settings(replicates),
            )
        };
        let out = run(500);
        assert_eq!(out.len(), 1);
        let d = out[0].specificity;
        assert!((d.difference - 0.5).abs() < 1e-6, "{d:?}");
        assert!(
            (d.low - 0.5).abs() < 1e-6 && (d.high - 0.5).abs() < 1e-6,
            "{d:?}"
        );
        assert_eq!(out[0].verdict, Verdict::Better);
        assert_eq!(out, run(500));
        // Without replicates the interval is the point.
        let p = run(0)[0].specificity;
        assert_eq!((p.low, p.high), (p.difference, p.difference));
    }

    #[test]
    fn noise_gives_an_interval_around_zero() {
        let n = 200;
        let targets = Targets {
            on: vec![(0..n).map(|i| i % 2 == 0).collect()],
        };
        // Two selections whose per-image drops are independent coin flips.
        let flips = |salt: u64| -> Vec<f32> {
            (0..n)
                .map(|i| (seed::derive(salt, &[i as u64]) % 2) as f32)
                .collect()
        };
        let cells = vec![
            cell(0, AblationSelection::Shapley, 0, flips(1)),
            cell(0, AblationSelection::MeanActivation, 0, flips(2)),
        ];
        let out = compare(
            &targets,
            &cells,
            &[AblationSelection::MeanActivation],
            &[Removal::Zero],
            &[10],
            n,
            &settings(1000),
        );
        let d = out[0].specificity;
        assert!(d.low < d.difference && d.difference < d.high);
        // The difference of two specificities of independent 0/1 drops over 100 + 100
        // images has sd ≈ sqrt(4 · 0.25/100) = 0.1: the 95% interval is about ±0.2 wide.
        let width = d.high - d.low;
        assert!((0.25..0.55).contains(&width), "{d:?}");
    }
}

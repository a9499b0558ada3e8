//! From saliency to responsible regions: aggregate over channels (ζ), normalise each
//! image's map to [0, 1], threshold, and pick the positions that become region rows.
//!
//! Normalisation is `ŝ = clip((a − min) / (p99 − min), 0, 1)` per image, where p99 is the
//! 99th percentile with linear interpolation (`torch.quantile`'s default). The
//! denominator is floored at [`MIN_RANGE`] so that a constant map gives `ŝ = 0`
//! everywhere (nothing stands out) instead of NaN. Positions with `ŝ > t` are responsible
//! (foreground); the rest are background, of which a seeded fraction is kept.

use hint_common::seed;
use rand::seq::index;
use tch::{Kind, Tensor};

/// Floor of `p99 − min` in the normalisation.
pub const MIN_RANGE: f64 = 1e-12;

pub use hint_common::settings::Aggregation;

/// Applying ζ to a saliency tensor (the name and its parsing live in `hint_common`).
pub trait Aggregate {
    /// Aggregates `[B, D, H, W]` over channels to `[B, H, W]`.
    fn apply(self, saliency: &Tensor) -> Tensor;
}

impl Aggregate for Aggregation {
    fn apply(self, saliency: &Tensor) -> Tensor {
        let dims: &[i64] = &[1];
        match self {
            Aggregation::Norm => saliency.norm_scalaropt_dim(2.0, dims, false),
            Aggregation::Sum => saliency.sum_dim_intlist(dims, false, Kind::Float),
            Aggregation::FilterNorm => saliency.relu().norm_scalaropt_dim(2.0, dims, false),
            Aggregation::Max => saliency.amax(dims, false),
            Aggregation::AbsSum => saliency.abs().sum_dim_intlist(dims, false, Kind::Float),
            Aggregation::AbsMax => saliency.abs().amax(dims, false),
        }
    }
}

/// `clip((a − min) / (p99 − min), 0, 1)` per image of a `[B, H, W]` map.
pub fn normalise(map: &Tensor) -> Tensor {
    let size = map.size();
    let flat = map.flatten(1, -1).to_kind(Kind::Float);
    let min = flat.amin(1, true);
    let p99 = flat.quantile_scalar(0.99, 1, true, "linear");
    let range = (p99 - &min).clamp_min(MIN_RANGE);
    ((flat - min) / range).clamp(0.0, 1.0).view(size.as_slice())
}

/// Which positions of one image become region rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeptPositions {
    /// Flat positions `y·W + x` with `ŝ > t`, ascending.
    pub foreground: Vec<usize>,
    /// The kept background positions, ascending.
    pub background: Vec<usize>,
}

/// Splits one image's normalised map (`H·W` values, row-major) at `threshold` and keeps
/// `round(background_ratio × n_background)` background positions, chosen uniformly by a
/// generator seeded from `(seed, image_id)` alone.
pub fn kept_positions(
    normalised: &[f32],
    threshold: f32,
    background_ratio: f64,
    seed: u64,
    image_id: u64,
) -> KeptPositions {
    let (foreground, background): (Vec<usize>, Vec<usize>) =
        (0..normalised.len()).partition(|&i| normalised[i] > threshold);
    let keep = ((background.len() as f64) * background_ratio.clamp(0.0, 1.0)).round() as usize;
    let background = if keep >= background.len() {
        background
    } else {
        let mut rng = seed::rng(seed, &[BACKGROUND_STREAM, image_id]);
        let mut chosen: Vec<usize> = index::sample(&mut rng, background.len(), keep)
            .into_iter()
            .map(|i| background[i])
            .collect();
        chosen.sort_unstable();
        chosen
    };
    KeptPositions {
        foreground,
        background,
    }
}

/// Seed-stream tag that keeps background subsampling apart from other per-image draws.
const BACKGROUND_STREAM: u64 = 0x4247; // "BG"

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_maps_min_to_zero_and_p99_to_one() {
        let values: Vec<f32> = (0..200).map(|v| v as f32).collect();
        let map = Tensor::from_slice(&values).view([1, 10, 20]);
        let n = Vec::<f32>::try_from(normalise(&map).flatten(0, -1)).unwrap();
        assert_eq!(n[0], 0.0);
        // p99 of 0..199 with linear interpolation is 197.01.
        assert!((n[197] - 197.0 / 197.01).abs() < 1e-6);
        assert_eq!(n[198], 1.0);
        assert_eq!(n[199], 1.0);
    }

    #[test]
    fn constant_map_has_no_responsible_region() {
        let map = Tensor::full([2, 4, 4], 3.0, (Kind::Float, tch::Device::Cpu));
        let n = normalise(&map);
        assert_eq!(n.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn aggregations_match_their_definitions() {
        let s = Tensor::from_slice(&[1.0f32, -2.0, 2.0, 3.0]).view([1, 2, 1, 2]);
        // Channels at position 0: (1, 2); at position 1: (−2, 3).
        let at = |a: Aggregation| Vec::<f32>::try_from(a.apply(&s).flatten(0, -1)).unwrap();
        assert_eq!(at(Aggregation::Sum), vec![3.0, 1.0]);
        assert_eq!(at(Aggregation::Max), vec![2.0, 3.0]);
        assert_eq!(at(Aggregation::AbsSum), vec![3.0, 5.0]);
        assert_eq!(at(Aggregation::AbsMax), vec![2.0, 3.0]);
        let norm = at(Aggregation::Norm);
        assert!((norm[1] - 13f32.sqrt()).abs() < 1e-6);
        let filter = at(Aggregation::FilterNorm);
        assert!((filter[1] - 3.0).abs() < 1e-6);
        assert!(Aggregation::parse("l2").is_err());
    }

    #[test]
    fn background_subsampling_is_seeded_and_exact() {
        let map: Vec<f32> = (0..100).map(|i| if i < 10 { 0.9 } else { 0.1 }).collect();
        let kept = kept_positions(&map, 0.5, 0.25, 42, 7);
        assert_eq!(kept.foreground, (0..10).collect::<Vec<_>>());
        assert_eq!(kept.background.len(), 23); // round(90 × 0.25)
        assert_eq!(kept, kept_positions(&map, 0.5, 0.25, 42, 7));
        assert_ne!(kept, kept_positions(&map, 0.5, 0.25, 42, 8));
        assert_eq!(kept_positions(&map, 0.5, 1.0, 42, 7).background.len(), 90);
        assert!(kept_positions(&map, 0.5, 0.0, 42, 7).background.is_empty());
    }
}

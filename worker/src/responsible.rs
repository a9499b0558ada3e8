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
use tch::{Device, Kind, Tensor};

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
        let reduce = |s: &Tensor| match self {
            // The square root of the sum of squares, not `norm`: libtorch's norm kernel
            // reduces a non-innermost dimension one element at a time on a CPU, 10–20×
            // slower than a sum (55 ms against 3 ms for a batch of 64 × 16 × 64 × 64). It
            // differs from `norm` by rounding only (≤ 6e-7 relative, measured).
            Aggregation::Norm => sum_of_squares(s).sqrt(),
            Aggregation::Sum => s.sum_dim_intlist(dims, false, Kind::Float),
            Aggregation::FilterNorm => sum_of_squares(&s.relu()).sqrt(),
            Aggregation::Max => s.amax(dims, false),
            Aggregation::AbsSum => s.abs().sum_dim_intlist(dims, false, Kind::Float),
            Aggregation::AbsMax => s.abs().amax(dims, false),
        };
        // On a CPU, a few images at a time: an elementwise temporary (the squares, the
        // absolute values) of a whole batch at an early layer is tens of MB, which malloc
        // maps afresh every batch, and the kernel's zeroing of those pages cost 3× the
        // reduction itself. Chunks of ≤ 8 MB are reused from the heap. The result is the
        // same whatever the chunks (each image is reduced on its own); a GPU takes the
        // batch at once.
        let images = saliency.size()[0];
        let per_image = saliency.numel() as i64 / images.max(1);
        let chunk = match saliency.device() {
            Device::Cpu => (CPU_CHUNK_ELEMENTS / per_image.max(1)).max(1),
            _ => images,
        };
        if chunk >= images {
            return reduce(saliency);
        }
        let parts: Vec<Tensor> = saliency.split(chunk, 0).iter().map(reduce).collect();
        Tensor::cat(&parts, 0)
    }
}

/// Elements of one CPU chunk of [`Aggregate::apply`] (8 MB of f32).
const CPU_CHUNK_ELEMENTS: i64 = 1 << 21;

/// `Σ_d s²` over the channels of `[B, D, H, W]`, in f32.
fn sum_of_squares(s: &Tensor) -> Tensor {
    s.square().sum_dim_intlist(&[1i64][..], false, Kind::Float)
}

/// `clip((a − min) / (p99 − min), 0, 1)` per image of a `[B, H, W]` map.
pub fn normalise(map: &Tensor) -> Tensor {
    let size = map.size();
    let flat = map.flatten(1, -1).to_kind(Kind::Float);
    let min = flat.amin(1, true);
    let range = (percentile_99(&flat) - &min).clamp_min(MIN_RANGE);
    ((flat - min) / range).clamp(0.0, 1.0).view(size.as_slice())
}

/// The 0.99 quantile of each row of `[B, N]` by linear interpolation: bit for bit
/// `flat.quantile(0.99, 1, keepdim=True)` (NaN where a row holds one), from the row's top
/// `N − ⌊0.99·(N − 1)⌋` values instead of a sort of the whole row — 10× faster on a CPU.
/// The rank is computed as torch computes it, in f32.
fn percentile_99(flat: &Tensor) -> Tensor {
    let n = flat.size()[1];
    let rank = 0.99f32 * (n - 1) as f32;
    let (below, above) = (rank.floor() as i64, rank.ceil() as i64);
    let weight = rank - below as f32;
    // Descending: ascending rank r is at n − 1 − r, and rank `below` is the last value.
    let (top, _) = flat.topk(n - below, 1, true, true);
    let at = |r: i64| top.narrow(1, n - 1 - r, 1);
    let p = at(below).lerp(&at(above), f64::from(weight));
    // topk ranks NaN above every number, as quantile's sort does; quantile then answers NaN.
    let largest = top.narrow(1, 0, 1);
    p.where_self(&largest.isnan().logical_not(), &largest)
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
    fn the_99th_percentile_is_torch_quantile_bit_for_bit() {
        tch::manual_seed(11);
        for n in [1i64, 2, 3, 7, 49, 100, 196, 784, 3136, 4096, 12544] {
            for case in 0..4 {
                let mut flat = Tensor::randn([6, n], (Kind::Float, Device::Cpu));
                if case == 1 {
                    flat = flat.round(); // ties
                }
                if case == 2 {
                    let _ = flat.get(2).get(n / 2).fill_(f64::NAN);
                }
                if case == 3 {
                    flat = flat.abs() * 1e-3; // saliency-like: small, non-negative
                }
                let want = flat.quantile_scalar(0.99, 1, true, "linear");
                let got = percentile_99(&flat);
                let same = want
                    .eq_tensor(&got)
                    .logical_or(&want.isnan().logical_and(&got.isnan()));
                assert!(
                    bool::try_from(same.all()).unwrap(),
                    "n = {n}, case {case}: {want} {got}"
                );
            }
        }
    }

    #[test]
    fn aggregations_do_not_depend_on_the_chunking() {
        tch::manual_seed(12);
        // 40 images of 8 × 128 × 64 values: more than one CPU chunk.
        let s = Tensor::randn([40, 8, 128, 64], (Kind::Float, Device::Cpu));
        assert!(s.numel() as i64 > CPU_CHUNK_ELEMENTS);
        for a in [
            Aggregation::Norm,
            Aggregation::FilterNorm,
            Aggregation::AbsSum,
            Aggregation::Sum,
        ] {
            let whole = a.apply(&s);
            let one_by_one = Tensor::cat(
                &(0..40)
                    .map(|b| a.apply(&s.narrow(0, b, 1)))
                    .collect::<Vec<_>>(),
                0,
            );
            assert!(whole.equal(&one_by_one), "{a:?}");
        }
        let norm = Aggregation::Norm.apply(&s);
        let torch = s.norm_scalaropt_dim(2.0, &[1i64][..], false);
        let relative = ((&norm - &torch).abs() / &torch).max().double_value(&[]);
        assert!(relative < 1e-6, "{relative}");
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

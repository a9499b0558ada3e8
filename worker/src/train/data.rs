//! The training images in memory, the held-out split and the epoch order.
//!
//! The worlds hint trains on are small (thousands of 64×64 images, a few tens of MB as
//! `f32`), so every image is decoded once, through the same pipeline and preprocessing
//! extraction uses, into one `[N, 3, S, S]` tensor; batches are row selections from it.
//!
//! Every random choice here is a pure function of the seed and an identity (a class, an
//! epoch), drawn from [`hint_common::seed::rng`] by hand-written Fisher–Yates on the raw
//! ChaCha8 stream, so the split and the order do not change with `rand`'s version.

use std::path::Path;

use rand::Rng;
use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::images::{self, LabelMap, Preprocess, SkippedImage};

/// Identity tag of the held-out split's draws (`"tr-split"` as a big-endian integer).
const TAG_SPLIT: u64 = u64::from_be_bytes(*b"tr-split");
/// Identity tag of the per-epoch order.
const TAG_SHUFFLE: u64 = u64::from_be_bytes(*b"tr-order");
/// Identity tag of the horizontal flips.
const TAG_FLIP: u64 = u64::from_be_bytes(*b"tr-flips");
/// Images per decoding chunk while loading (only bounds the decoder's queue).
const LOAD_CHUNK: usize = 256;

/// Labelled, preprocessed images held in memory.
#[derive(Debug)]
pub struct ImageSet {
    /// `[N, 3, crop, crop]` `f32` pixels on the CPU, row `r` is image `ids[r]`.
    pub pixels: Tensor,
    /// The model output (label index) of each row.
    pub labels: Vec<u32>,
    /// The dataset image id of each row (ImageFolder order), ascending.
    pub ids: Vec<u64>,
    /// Class names by label index: sorted folder names, torchvision's ImageFolder rule,
    /// which is also `hint extract`'s default label map.
    pub classes: Vec<String>,
    /// Images that could not be decoded, with the reason; they are left out.
    pub skipped: Vec<SkippedImage>,
}

impl ImageSet {
    /// Scans `source` (an ImageFolder or a CSV manifest), maps labels by the sorted-name
    /// rule and decodes every image with `preprocess` on `threads` threads. Errors when
    /// fewer than two classes have a decodable image: a classifier needs two.
    pub fn load(source: &Path, preprocess: Preprocess, threads: usize) -> Result<Self> {
        let dataset = images::scan(source)?;
        let label_map = LabelMap::sorted(&dataset.classes);
        let labelled = label_map.labelled(&dataset)?;
        let per_image = preprocess.pixels_per_image();
        let mut values = Vec::with_capacity(labelled.len() * per_image);
        let (mut labels, mut ids, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        let threads = threads.max(1);
        for batch in
            images::spawn_batch_decoder(labelled, preprocess, LOAD_CHUNK, threads, 1, None)?
        {
            values.extend_from_slice(&batch.pixels);
            labels.extend(batch.labels);
            ids.extend(batch.ids);
            skipped.extend(batch.skipped);
        }
        let classes = label_map.names();
        let mut present = vec![false; classes.len()];
        for &label in &labels {
            present[label as usize] = true;
        }
        let present = present.iter().filter(|&&p| p).count();
        if present < 2 {
            return Err(Error::Input(format!(
                "{}: training needs decodable images of at least two classes, found {present} \
                 ({} image(s) decoded, {} skipped)",
                source.display(),
                labels.len(),
                skipped.len()
            )));
        }
        let side = i64::from(preprocess.crop);
        let pixels = Tensor::f_from_slice(&values)?.f_view([labels.len() as i64, 3, side, side])?;
        Ok(ImageSet {
            pixels,
            labels,
            ids,
            classes,
            skipped,
        })
    }

    /// Number of decoded images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no image decoded (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows `rows` as a batch on `device`: pixels `[B, 3, S, S]` and labels `[B]`
    /// (`i64`, what the cross-entropy takes).
    pub fn batch(&self, rows: &[usize], device: Device) -> Result<(Tensor, Tensor)> {
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let index = Tensor::f_from_slice(&index)?;
        let pixels = self.pixels.f_index_select(0, &index)?.f_to_device(device)?;
        let labels: Vec<i64> = rows.iter().map(|&r| i64::from(self.labels[r])).collect();
        let labels = Tensor::f_from_slice(&labels)?.f_to_device(device)?;
        Ok((pixels, labels))
    }
}

/// Which rows of an [`ImageSet`] train the model and which measure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows, ascending.
    pub train: Vec<usize>,
    /// Held-out rows, ascending; no image is in both lists.
    pub heldout: Vec<usize>,
}

/// Splits rows by image, per class (stratified, so every class with two or more images
/// is measured): a class's rows are shuffled by `(seed, class)` and the first
/// `round(holdout × n)` are held out — at least one and never all of them when
/// `0 < holdout < 1`. The split depends only on the seed and each class's image ids.
pub fn split(labels: &[u32], num_classes: usize, holdout: f64, seed: u64) -> Result<Split> {
    if !(0.0..1.0).contains(&holdout) {
        return Err(Error::Config(format!(
            "held-out fraction must be in [0, 1), got {holdout}"
        )));
    }
    let mut train = Vec::new();
    let mut heldout = Vec::new();
    for class in 0..num_classes {
        let mut rows: Vec<usize> = (0..labels.len())
            .filter(|&r| labels[r] as usize == class)
            .collect();
        let n = rows.len();
        let mut held = (holdout * n as f64).round() as usize;
        if holdout > 0.0 && n >= 2 {
            held = held.clamp(1, n - 1);
        } else if n < 2 {
            held = 0;
        }
        shuffle(
            &mut rows,
            &mut hint_common::seed::rng(seed, &[TAG_SPLIT, class as u64]),
        );
        heldout.extend_from_slice(&rows[..held]);
        train.extend_from_slice(&rows[held..]);
    }
    train.sort_unstable();
    heldout.sort_unstable();
    Ok(Split { train, heldout })
}

/// The training rows of `epoch` in the order they are visited: `rows` shuffled by
/// `(seed, epoch)`.
pub fn epoch_order(rows: &[usize], epoch: usize, seed: u64) -> Vec<usize> {
    let mut order = rows.to_vec();
    shuffle(
        &mut order,
        &mut hint_common::seed::rng(seed, &[TAG_SHUFFLE, epoch as u64]),
    );
    order
}

/// Whether each image of `epoch` is mirrored, by position in the epoch's order.
pub fn epoch_flips(len: usize, epoch: usize, seed: u64) -> Vec<bool> {
    let mut rng = hint_common::seed::rng(seed, &[TAG_FLIP, epoch as u64]);
    (0..len).map(|_| rng.next_u32() & 1 == 1).collect()
}

/// Mirrors (left–right) the images of `batch` (`[B, 3, S, S]`) where `flip` is true.
pub fn flip_where(batch: &Tensor, flip: &[bool]) -> Result<Tensor> {
    if !flip.iter().any(|&f| f) {
        return Ok(batch.shallow_clone());
    }
    let mask: Vec<bool> = flip.to_vec();
    let mask = Tensor::f_from_slice(&mask)?
        .f_to_device(batch.device())?
        .f_view([flip.len() as i64, 1, 1, 1])?;
    Ok(batch.f_flip([3])?.f_where_self(&mask, batch)?)
}

/// Fisher–Yates on the raw ChaCha8 stream. `below` maps a 64-bit draw to `0..n` by
/// multiply-shift, whose bias (at most n / 2⁶⁴) is immaterial here.
fn shuffle<R: Rng>(items: &mut [usize], rng: &mut R) {
    for i in (1..items.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// The fraction of true values in a boolean tensor.
    fn mean_of(mask: &Tensor) -> f64 {
        mask.to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
    }

    fn labels(per_class: &[usize]) -> Vec<u32> {
        // Interleaved, so class rows are not contiguous.
        let mut out = Vec::new();
        let max = per_class.iter().copied().max().unwrap_or(0);
        for i in 0..max {
            for (c, &n) in per_class.iter().enumerate() {
                if i < n {
                    out.push(c as u32);
                }
            }
        }
        out
    }

    #[test]
    fn split_is_seeded_disjoint_and_stratified() {
        let labels = labels(&[50, 20, 7, 1, 0]);
        let a = split(&labels, 5, 0.2, 7).unwrap();
        assert_eq!(
            a,
            split(&labels, 5, 0.2, 7).unwrap(),
            "same seed, same split"
        );
        let b = split(&labels, 5, 0.2, 8).unwrap();
        assert_ne!(a.heldout, b.heldout, "another seed, another split");
        // Disjoint and complete.
        let mut all: Vec<usize> = a.train.iter().chain(&a.heldout).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        // Per class: round(0.2 n), at least one held out, the single image trains.
        let held = |c: u32| a.heldout.iter().filter(|&&r| labels[r] == c).count();
        assert_eq!([held(0), held(1), held(2), held(3)], [10, 4, 1, 0]);
        assert!(a.train.windows(2).all(|w| w[0] < w[1]));
        assert!(split(&labels, 5, 1.0, 0).is_err());
        assert!(split(&labels, 5, -0.1, 0).is_err());
        assert!(split(&labels, 5, 0.0, 0).unwrap().heldout.is_empty());
    }

    #[test]
    fn split_of_a_class_ignores_the_other_classes() {
        // Adding images of another class does not move this class's held-out images.
        let a = labels(&[30, 10]);
        let b = labels(&[30, 10, 25]);
        let class0 = |l: &[u32], s: &Split| -> Vec<usize> {
            // Rank among class-0 rows, which is stable across the two layouts.
            let rows: Vec<usize> = (0..l.len()).filter(|&r| l[r] == 0).collect();
            s.heldout
                .iter()
                .filter(|&&r| l[r] == 0)
                .map(|r| rows.iter().position(|x| x == r).unwrap())
                .collect()
        };
        let (sa, sb) = (split(&a, 2, 0.3, 1).unwrap(), split(&b, 3, 0.3, 1).unwrap());
        assert_eq!(class0(&a, &sa), class0(&b, &sb));
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let rows: Vec<usize> = (0..100).map(|r| r * 3).collect();
        let e0 = epoch_order(&rows, 0, 5);
        let mut sorted = e0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, rows);
        assert_ne!(e0, rows);
        assert_eq!(e0, epoch_order(&rows, 0, 5));
        assert_ne!(e0, epoch_order(&rows, 1, 5));
        assert_ne!(e0, epoch_order(&rows, 0, 6));
    }

    #[test]
    fn flips_mirror_only_the_chosen_images() {
        let flips = epoch_flips(1000, 3, 9);
        assert_eq!(flips, epoch_flips(1000, 3, 9));
        let share = flips.iter().filter(|&&f| f).count();
        assert!((400..600).contains(&share), "{share}");

        let x = Tensor::arange(2 * 3 * 2 * 4, (Kind::Float, Device::Cpu)).view([2, 3, 2, 4]);
        let y = flip_where(&x, &[false, true]).unwrap();
        assert!(y.get(0).equal(&x.get(0)));
        assert!(y.get(1).equal(&x.get(1).flip([2])));
        let row = Vec::<f32>::try_from(y.get(1).get(0).get(0)).unwrap();
        assert_eq!(row, [27.0, 26.0, 25.0, 24.0]);
        assert_eq!(mean_of(&y.eq_tensor(&x)), 0.5);
    }
}

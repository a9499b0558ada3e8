//! The geometry of localisation: from a classifier's `H×W` map to a box, and the three
//! scores against the ground truth. Pure functions on plain arrays, so every rule is pinned
//! by a test on a hand-made map.
//!
//! # The frame
//!
//! Everything is measured in the **crop frame**: the `crop × crop` image the model sees after
//! `Resize(resize)` (shorter side) and `CenterCrop(crop)`. The feature map tiles the crop, so
//! the map is upsampled to the crop, and the ground truth is brought into it
//! ([`CropFrame`]): boxes are scaled with the resize and shifted by the crop offset (then
//! clipped to the crop), masks are sampled at each crop pixel's centre mapped back to the
//! original image (nearest pixel). Boxes are 0-based and half-open like
//! [`hint_common::annotations::BoundingBox`]: pixel column `x` covers `[x, x + 1)`.
//!
//! # The rules
//!
//! - upsampling: bilinear with PyTorch's `align_corners=False` ([`upsample_bilinear`]);
//! - normalisation: min-max to `[0, 1]`; a constant map localises nothing ([`normalise`]);
//! - threshold: pixels with normalised value `≥ t` ([`crate::wsol::THRESHOLD`]);
//! - box: the bounding box of the largest 8-connected component of the thresholded pixels
//!   (ties: the component met first in row-major order) ([`largest_component_box`]);
//! - localisation: IoU with a ground-truth box `≥ 0.5`, best over the boxes ([`box_iou`]);
//! - pointing game: the centre of the map's maximum pixel (first in row-major order) lies in
//!   a ground-truth box, no tolerance ([`argmax`], [`Rect::contains`]);
//! - mask IoU: every thresholded pixel (not only the largest component) against the mask;
//! - MaxBoxAcc (Choe et al., CVPR 2020, "Evaluating Weakly Supervised Object Localization
//!   Methods Right"): the box at every threshold `k / 100`, `k = 0..100` (their
//!   `cam_curve_interval` 0.01), localised or not ([`boxes_by_threshold`]); the caller takes
//!   the best threshold over a dataset.

use hint_common::annotations::BoundingBox;

use crate::images::decode::crop_offset;
use crate::images::Preprocess;

/// An axis-aligned box in the crop frame, 0-based half-open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub xmin: f64,
    /// Top edge.
    pub ymin: f64,
    /// Right edge (exclusive).
    pub xmax: f64,
    /// Bottom edge (exclusive).
    pub ymax: f64,
}

impl Rect {
    /// Area; 0 for an empty or inverted box.
    pub fn area(&self) -> f64 {
        (self.xmax - self.xmin).max(0.0) * (self.ymax - self.ymin).max(0.0)
    }

    /// Whether the point `(x, y)` lies inside (left and top edges included).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        self.xmin <= x && x < self.xmax && self.ymin <= y && y < self.ymax
    }
}

/// Intersection over union of two boxes; 0 when the union is empty.
pub fn box_iou(a: &Rect, b: &Rect) -> f64 {
    let inter = Rect {
        xmin: a.xmin.max(b.xmin),
        ymin: a.ymin.max(b.ymin),
        xmax: a.xmax.min(b.xmax),
        ymax: a.ymax.min(b.ymax),
    }
    .area();
    let union = a.area() + b.area() - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// How an original image maps into the crop frame under [`Preprocess`]'s resize and crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropFrame {
    /// Original width and height.
    pub original: (u32, u32),
    /// Width and height after `Resize`.
    pub resized: (u32, u32),
    /// Where the crop starts in the resized image (negative: zero padding).
    pub offset: (i64, i64),
    /// The crop's side.
    pub crop: u32,
}

impl CropFrame {
    /// The frame of a `width × height` image under `p`, computed as the decoder does.
    pub fn new(width: u32, height: u32, p: &Preprocess) -> Self {
        let resized = p.resized_size(width, height);
        CropFrame {
            original: (width, height),
            resized,
            offset: (
                crop_offset(resized.0, p.crop),
                crop_offset(resized.1, p.crop),
            ),
            crop: p.crop,
        }
    }

    fn scale(&self) -> (f64, f64) {
        (
            f64::from(self.resized.0) / f64::from(self.original.0.max(1)),
            f64::from(self.resized.1) / f64::from(self.original.1.max(1)),
        )
    }

    /// A box of the original image in the crop frame, clipped to the crop; `None` when
    /// nothing of it is left inside.
    pub fn map_box(&self, b: &BoundingBox) -> Option<Rect> {
        let (sx, sy) = self.scale();
        let (left, top) = (self.offset.0 as f64, self.offset.1 as f64);
        let c = f64::from(self.crop);
        let r = Rect {
            xmin: (f64::from(b.xmin) * sx - left).clamp(0.0, c),
            ymin: (f64::from(b.ymin) * sy - top).clamp(0.0, c),
            xmax: (f64::from(b.xmax) * sx - left).clamp(0.0, c),
            ymax: (f64::from(b.ymax) * sy - top).clamp(0.0, c),
        };
        (r.area() > 0.0).then_some(r)
    }

    /// A mask of the original image (`width × height`, row-major, true = object) in the
    /// crop frame: crop pixel `(x, y)` takes the original pixel under its centre; padding
    /// is background.
    pub fn map_mask(&self, mask: &[bool]) -> Vec<bool> {
        let (sx, sy) = self.scale();
        let (w, h) = (self.original.0 as usize, self.original.1 as usize);
        assert_eq!(mask.len(), w * h, "mask is width × height");
        let c = self.crop as usize;
        let source = |i: usize, offset: i64, scale: f64, size: usize| {
            let x = ((i as i64 + offset) as f64 + 0.5) / scale;
            (x >= 0.0 && x < size as f64).then_some(x as usize)
        };
        let mut out = vec![false; c * c];
        for y in 0..c {
            let Some(oy) = source(y, self.offset.1, sy, h) else {
                continue;
            };
            for x in 0..c {
                if let Some(ox) = source(x, self.offset.0, sx, w) {
                    out[y * c + x] = mask[oy * w + ox];
                }
            }
        }
        out
    }
}

/// Object pixels and pixels of the crop frame inside some feature-map cells, and over the
/// whole crop: the parts of the regions' *object lift* (object share inside the responsible
/// cells over the object share of the crop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Object pixels inside the cells.
    pub object_in_cells: u64,
    /// Pixels inside the cells.
    pub in_cells: u64,
    /// Object pixels of the crop.
    pub object: u64,
    /// Pixels of the crop.
    pub pixels: u64,
}

impl ObjectCounts {
    /// Adds another image's counts.
    pub fn add(&mut self, other: ObjectCounts) {
        self.object_in_cells += other.object_in_cells;
        self.in_cells += other.in_cells;
        self.object += other.object;
        self.pixels += other.pixels;
    }
}

/// [`ObjectCounts`] of the cells `(y, x)` of an `h × w` grid tiling a `crop × crop` mask
/// (crop frame, row-major, true = object): cell `(y, x)` covers rows
/// `⌊y·crop/h⌋ .. ⌊(y+1)·crop/h⌋` and the columns likewise.
pub fn object_counts(
    mask: &[bool],
    crop: usize,
    (h, w): (usize, usize),
    cells: &[(u16, u16)],
) -> ObjectCounts {
    assert_eq!(mask.len(), crop * crop, "mask is crop × crop");
    let span = |i: usize, n: usize| (i * crop / n)..((i + 1) * crop / n).min(crop);
    let mut counts = ObjectCounts {
        object: mask.iter().filter(|&&m| m).count() as u64,
        pixels: mask.len() as u64,
        ..ObjectCounts::default()
    };
    for &(y, x) in cells {
        for row in span(usize::from(y), h) {
            for col in span(usize::from(x), w) {
                counts.in_cells += 1;
                counts.object_in_cells += u64::from(mask[row * crop + col]);
            }
        }
    }
    counts
}

/// Bilinear upsampling of an `h × w` map to `out × out`, as PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`.
pub fn upsample_bilinear(map: &[f32], h: usize, w: usize, out: usize) -> Vec<f32> {
    assert_eq!(map.len(), h * w, "map is h × w");
    // Source coordinate and weights along one axis, as ATen computes them.
    let axis = |size: usize| -> Vec<(usize, usize, f32)> {
        let scale = size as f32 / out as f32;
        (0..out)
            .map(|i| {
                let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src as usize).min(size - 1);
                let i1 = if i0 + 1 < size { i0 + 1 } else { i0 };
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(h), axis(w));
    let mut result = Vec::with_capacity(out * out);
    for &(y0, y1, ly) in &ys {
        for &(x0, x1, lx) in &xs {
            let top = (1.0 - lx) * map[y0 * w + x0] + lx * map[y0 * w + x1];
            let bottom = (1.0 - lx) * map[y1 * w + x0] + lx * map[y1 * w + x1];
            result.push((1.0 - ly) * top + ly * bottom);
        }
    }
    result
}

/// Min-max normalisation to `[0, 1]`; `None` for a constant map (or one with a non-finite
/// value), which localises nothing.
pub fn normalise(map: &[f32]) -> Option<Vec<f32>> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in map {
        if !v.is_finite() {
            return None;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let range = hi - lo;
    (range > 0.0).then(|| map.iter().map(|&v| (v - lo) / range).collect())
}

/// The first pixel (row-major) holding the map's largest value, as `(x, y)`.
pub fn argmax(map: &[f32], width: usize) -> (usize, usize) {
    let mut best = 0;
    for (i, &v) in map.iter().enumerate() {
        if v > map[best] {
            best = i;
        }
    }
    (best % width, best / width)
}

/// The bounding box of the largest 8-connected component of `mask` (`width` wide,
/// row-major); ties go to the component met first in row-major order. `None` when no pixel
/// is set.
pub fn largest_component_box(mask: &[bool], width: usize) -> Option<Rect> {
    let height = mask.len() / width;
    let mut seen = vec![false; mask.len()];
    let mut stack = Vec::new();
    // (pixel count, xmin, ymin, xmax, ymax) of the best component so far.
    let mut best: Option<(usize, usize, usize, usize, usize)> = None;
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut count, mut x0, mut y0, mut x1, mut y1) =
            (0, usize::MAX, usize::MAX, 0usize, 0usize);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % width, p / width);
            count += 1;
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let q = ny * width + nx;
                    if mask[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        if best.is_none_or(|b| count > b.0) {
            best = Some((count, x0, y0, x1, y1));
        }
    }
    best.map(|(_, x0, y0, x1, y1)| Rect {
        xmin: x0 as f64,
        ymin: y0 as f64,
        xmax: (x1 + 1) as f64,
        ymax: (y1 + 1) as f64,
    })
}

/// Thresholds of the MaxBoxAcc sweep: `k / SWEEP` for `k = 0..SWEEP`.
pub const SWEEP: usize = 100;

/// The threshold of sweep step `k`.
pub fn sweep_threshold(k: usize) -> f32 {
    k as f32 / SWEEP as f32
}

/// [`largest_component_box`] of `map ≥ sweep_threshold(k)` for every `k`, in one pass:
/// pixels are added in descending value with a union-find over 8-neighbours that keeps each
/// component's size, box and first pixel (row-major), so the largest component (same tie
/// rule) is known after each threshold's pixels are in. Components only grow and merge as
/// the threshold falls, and every change is compared with the best so far.
pub fn boxes_by_threshold(map: &[f32], width: usize) -> Vec<Option<Rect>> {
    let n = map.len();
    let height = n / width;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
    let mut parent: Vec<usize> = (0..n).collect();
    let mut active = vec![false; n];
    // Per root: (size, first pixel, xmin, ymin, xmax, ymax).
    let mut comp: Vec<(usize, usize, usize, usize, usize, usize)> = (0..n)
        .map(|p| (1, p, p % width, p / width, p % width, p / width))
        .collect();
    fn find(parent: &mut [usize], mut p: usize) -> usize {
        while parent[p] != p {
            parent[p] = parent[parent[p]];
            p = parent[p];
        }
        p
    }
    let better = |a: &(usize, usize, usize, usize, usize, usize),
                  b: &(usize, usize, usize, usize, usize, usize)| {
        a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
    };
    let mut best: Option<usize> = None;
    let mut next = 0;
    let mut out = vec![None; SWEEP];
    for k in (0..SWEEP).rev() {
        let t = sweep_threshold(k);
        while next < n && map[order[next]] >= t {
            let p = order[next];
            next += 1;
            active[p] = true;
            let mut root = p;
            let (x, y) = (p % width, p / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let q = ny * width + nx;
                    if q == p || !active[q] {
                        continue;
                    }
                    let (a, b) = (find(&mut parent, root), find(&mut parent, q));
                    if a == b {
                        continue;
                    }
                    let (ca, cb) = (comp[a], comp[b]);
                    parent[b] = a;
                    comp[a] = (
                        ca.0 + cb.0,
                        ca.1.min(cb.1),
                        ca.2.min(cb.2),
                        ca.3.min(cb.3),
                        ca.4.max(cb.4),
                        ca.5.max(cb.5),
                    );
                    root = a;
                }
            }
            let root = find(&mut parent, root);
            let stale = best.map(|b| find(&mut parent, b));
            if stale.is_none_or(|b| b == root || better(&comp[root], &comp[b])) {
                best = Some(root);
            } else {
                best = stale;
            }
        }
        out[k] = best.map(|b| {
            let c = comp[find(&mut parent, b)];
            Rect {
                xmin: c.2 as f64,
                ymin: c.3 as f64,
                xmax: (c.4 + 1) as f64,
                ymax: (c.5 + 1) as f64,
            }
        });
    }
    out
}

/// Intersection over union of two pixel masks of the same size; 0 when both are empty.
pub fn mask_iou(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len(), "masks of one size");
    let (mut inter, mut union) = (0usize, 0usize);
    for (&p, &q) in a.iter().zip(b) {
        inter += usize::from(p && q);
        union += usize::from(p || q);
    }
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// One map's scores against one image's ground truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// The predicted box (`None`: a constant map).
    pub predicted: Option<Rect>,
    /// Best IoU of the predicted box with a ground-truth box.
    pub best_iou: f64,
    /// Whether `best_iou ≥ 0.5`.
    pub localised: bool,
    /// Whether the map's maximum lies in a ground-truth box.
    pub pointed: bool,
    /// IoU of the thresholded map with the mask, when there is a mask.
    pub mask_iou: Option<f64>,
    /// Bit `k`: the box at threshold [`sweep_threshold`]`(k)` has IoU ≥ 0.5 with a
    /// ground-truth box (MaxBoxAcc's sweep).
    pub box_hits: u128,
}

/// Scores a classifier's `h × w` map on an image whose ground truth (`boxes`, optional
/// `mask`) is in the crop frame of side `crop`: upsample, normalise, threshold at
/// `threshold`, box, compare. Also returns the normalised upsampled map (for heatmaps).
pub fn score_map(
    map: &[f32],
    (h, w): (usize, usize),
    crop: usize,
    threshold: f32,
    boxes: &[Rect],
    mask: Option<&[bool]>,
) -> (Scores, Option<Vec<f32>>) {
    let up = upsample_bilinear(map, h, w, crop);
    let Some(norm) = normalise(&up) else {
        let scores = Scores {
            predicted: None,
            best_iou: 0.0,
            localised: false,
            pointed: false,
            mask_iou: mask.map(|_| 0.0),
            box_hits: 0,
        };
        return (scores, None);
    };
    let above: Vec<bool> = norm.iter().map(|&v| v >= threshold).collect();
    let predicted = largest_component_box(&above, crop);
    let best_iou = predicted.map_or(0.0, |p| {
        boxes.iter().map(|b| box_iou(&p, b)).fold(0.0, f64::max)
    });
    let (px, py) = argmax(&norm, crop);
    let pointed = boxes
        .iter()
        .any(|b| b.contains(px as f64 + 0.5, py as f64 + 0.5));
    let best_iou_of = |b: &Option<Rect>| {
        b.map_or(0.0, |p| {
            boxes.iter().map(|b| box_iou(&p, b)).fold(0.0, f64::max)
        })
    };
    let box_hits = boxes_by_threshold(&norm, crop)
        .iter()
        .enumerate()
        .filter(|(_, b)| best_iou_of(b) >= 0.5)
        .fold(0u128, |bits, (k, _)| bits | 1 << k);
    let scores = Scores {
        predicted,
        best_iou,
        localised: best_iou >= 0.5,
        pointed,
        mask_iou: mask.map(|m| mask_iou(&above, m)),
        box_hits,
    };
    (scores, Some(norm))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(xmin: f64, ymin: f64, xmax: f64, ymax: f64) -> Rect {
        Rect {
            xmin,
            ymin,
            xmax,
            ymax,
        }
    }

    #[test]
    fn iou_of_hand_made_boxes() {
        let a = rect(0.0, 0.0, 10.0, 10.0);
        assert_eq!(box_iou(&a, &a), 1.0);
        // Half overlapping: 50 / (100 + 100 − 50).
        assert_eq!(box_iou(&a, &rect(5.0, 0.0, 15.0, 10.0)), 50.0 / 150.0);
        // Touching edges do not overlap (half-open boxes).
        assert_eq!(box_iou(&a, &rect(10.0, 0.0, 20.0, 10.0)), 0.0);
        // Nested: 4 / 100.
        assert_eq!(box_iou(&a, &rect(2.0, 2.0, 4.0, 4.0)), 0.04);
        assert_eq!(
            box_iou(&rect(1.0, 1.0, 1.0, 5.0), &rect(1.0, 1.0, 1.0, 5.0)),
            0.0
        );
    }

    #[test]
    fn object_counts_tile_the_crop_with_the_cells() {
        // An 8 × 8 crop, object in its top-left 4 × 4; a 2 × 2 grid: each cell is 4 × 4.
        let mask: Vec<bool> = (0..64).map(|i| i % 8 < 4 && i / 8 < 4).collect();
        let c = object_counts(&mask, 8, (2, 2), &[(0, 0), (1, 1)]);
        assert_eq!(
            (c.object_in_cells, c.in_cells, c.object, c.pixels),
            (16, 32, 16, 64)
        );
        // A 3 × 3 grid over 8 pixels: cells of 2, 3 and 3 rows/columns, covering all 64.
        let all: Vec<(u16, u16)> = (0..3).flat_map(|y| (0..3).map(move |x| (y, x))).collect();
        let c = object_counts(&mask, 8, (3, 3), &all);
        assert_eq!((c.in_cells, c.object_in_cells), (64, 16));
    }

    #[test]
    fn the_sweep_gives_the_largest_component_box_at_every_threshold() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (trial, (h, w)) in [(1, 1), (3, 5), (8, 8), (16, 12), (33, 31)]
            .into_iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            // Coarse values make ties (equal sizes, equal values) common.
            let levels = if trial % 2 == 0 { 5.0 } else { 100.0 };
            let map: Vec<f32> = (0..h * w)
                .map(|_| (rng.random_range(0.0..1.0f32) * levels).floor() / levels)
                .collect();
            let swept = boxes_by_threshold(&map, w);
            for (k, got) in swept.iter().enumerate() {
                let t = sweep_threshold(k);
                let above: Vec<bool> = map.iter().map(|&v| v >= t).collect();
                assert_eq!(*got, largest_component_box(&above, w), "{h}×{w} k={k}");
            }
        }
    }

    #[test]
    fn largest_component_is_8_connected_and_boxed_half_open() {
        // Two components: a diagonal chain of 3 (8-connected, not 4-connected) and a
        // pair; the chain wins.
        #[rustfmt::skip]
        let mask = [
            true,  false, false, false, false,
            false, true,  false, false, true,
            false, false, true,  false, true,
            false, false, false, false, false,
        ];
        assert_eq!(
            largest_component_box(&mask, 5),
            Some(rect(0.0, 0.0, 3.0, 3.0))
        );
        // A tie goes to the first component in row-major order.
        #[rustfmt::skip]
        let tie = [
            false, false, false, true,
            true,  false, false, true,
            true,  false, false, false,
        ];
        assert_eq!(
            largest_component_box(&tie, 4),
            Some(rect(3.0, 0.0, 4.0, 2.0))
        );
        assert_eq!(largest_component_box(&[false; 6], 3), None);
    }

    #[test]
    fn bilinear_upsampling_matches_pytorch_align_corners_false() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]),
        // size=(4, 4), mode="bilinear", align_corners=False)
        let up = upsample_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4);
        #[rustfmt::skip]
        let expected = [
            0.0, 0.25, 0.75, 1.0,
            0.5, 0.75, 1.25, 1.5,
            1.5, 1.75, 2.25, 2.5,
            2.0, 2.25, 2.75, 3.0,
        ];
        assert_eq!(up, expected);
        // A non-integer scale and a non-square map (2 × 3 → 5 × 5), PyTorch's values.
        let up = upsample_bilinear(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2, 3, 5);
        #[rustfmt::skip]
        let torch = [
            0.0, 0.4, 1.0, 1.6, 2.0,
            0.3, 0.7, 1.3, 1.9, 2.3,
            1.5, 1.9, 2.5, 3.1, 3.5,
            2.7, 3.1, 3.7, 4.3, 4.7,
            3.0, 3.4, 4.0, 4.6, 5.0,
        ];
        for (a, b) in up.iter().zip(torch) {
            assert!((a - b).abs() < 1e-5, "{up:?}");
        }
        // Same size is the identity.
        assert_eq!(upsample_bilinear(&[4.0, 5.0], 1, 2, 2).len(), 4);
        let same = upsample_bilinear(&[1.0, 2.0, 3.0, 4.0], 2, 2, 2);
        assert_eq!(same, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn normalise_and_argmax() {
        assert_eq!(normalise(&[2.0, 4.0, 3.0]), Some(vec![0.0, 1.0, 0.5]));
        assert_eq!(normalise(&[1.0, 1.0]), None);
        assert_eq!(normalise(&[1.0, f32::NAN]), None);
        // First maximum in row-major order, as (x, y).
        assert_eq!(argmax(&[0.0, 3.0, 1.0, 3.0, 2.0, 0.0], 3), (1, 0));
        assert_eq!(argmax(&[0.0, 1.0, 1.0, 5.0, 2.0, 0.0], 3), (0, 1));
    }

    #[test]
    fn boxes_and_masks_map_into_the_crop_frame() {
        // 200 × 100 image, Resize(50) → 100 × 50, CenterCrop(40): offset (30, 5).
        let p = Preprocess::imagenet(50, 40);
        let frame = CropFrame::new(200, 100, &p);
        assert_eq!(frame.resized, (100, 50));
        assert_eq!(frame.offset, (30, 5));
        let b = |xmin, ymin, xmax, ymax| BoundingBox {
            label: "x".into(),
            xmin,
            ymin,
            xmax,
            ymax,
            difficult: false,
        };
        // Scaled by ½ then shifted: (80, 20, 120, 60) → (40, 10, 60, 30) → (10, 5, 30, 25).
        assert_eq!(
            frame.map_box(&b(80.0, 20.0, 120.0, 60.0)),
            Some(rect(10.0, 5.0, 30.0, 25.0))
        );
        // Clipped at the crop's edges: (0, 0, 200, 100) → (−30, −5, 70, 45) → the crop.
        assert_eq!(
            frame.map_box(&b(0.0, 0.0, 200.0, 100.0)),
            Some(rect(0.0, 0.0, 40.0, 40.0))
        );
        // Wholly outside the crop (left of resized column 30).
        assert_eq!(frame.map_box(&b(0.0, 0.0, 50.0, 100.0)), None);

        // Mask: one original pixel (x 61, y 11) → resized centre of crop pixel (x, y) is
        // ((x + 30 + ½) · 2, (y + 5 + ½) · 2) → crop pixel (0, 0) samples (61, 11).
        let mut mask = vec![false; 200 * 100];
        mask[11 * 200 + 61] = true;
        let mapped = frame.map_mask(&mask);
        assert_eq!(mapped.len(), 40 * 40);
        assert_eq!(mapped.iter().filter(|&&m| m).count(), 1);
        assert!(mapped[0]);

        // A small image padded by the crop: 20 × 20 with Resize(20), CenterCrop(24): the
        // image sits at (2, 2); padding is background.
        let frame = CropFrame::new(20, 20, &Preprocess::imagenet(20, 24));
        assert_eq!(frame.offset, (-2, -2));
        assert_eq!(
            frame.map_box(&b(0.0, 0.0, 20.0, 20.0)),
            Some(rect(2.0, 2.0, 22.0, 22.0))
        );
        let mapped = frame.map_mask(&vec![true; 400]);
        assert_eq!(mapped.iter().filter(|&&m| m).count(), 400);
        assert!(!mapped[0] && mapped[2 * 24 + 2] && !mapped[24 * 24 - 1]);
    }

    #[test]
    fn a_map_is_scored_against_its_ground_truth() {
        // 4 × 4 map upsampled to 8 × 8 (exact ×2); a hot 2 × 2 block at map (1..3, 1..3).
        #[rustfmt::skip]
        let map = [
            0.0, 0.0, 0.0, 0.0,
            0.0, 1.0, 1.0, 0.0,
            0.0, 1.0, 1.0, 0.0,
            0.0, 0.0, 0.0, 0.0,
        ];
        // Upsampled, each axis reads 0, ¼, ¾, 1, 1, ¾, ¼, 0 and the map is their product
        // (min 0, max 1, so normalisation changes nothing). At 0.8 only the 1 × 1 products
        // stay: the centre 2 × 2 block.
        let truth = rect(2.0, 2.0, 6.0, 6.0);
        let mut mask = vec![false; 64];
        for y in 2..6 {
            for x in 2..4 {
                mask[y * 8 + x] = true;
            }
        }
        let (s, norm) = score_map(&map, (4, 4), 8, 0.8, &[truth], Some(&mask));
        let norm = norm.unwrap();
        assert_eq!(
            (norm[3 * 8 + 3], norm[2 * 8 + 3], norm[2 * 8 + 2]),
            (1.0, 0.75, 0.5625)
        );
        assert_eq!(s.predicted, Some(rect(3.0, 3.0, 5.0, 5.0)));
        assert_eq!(s.best_iou, 4.0 / 16.0);
        assert!(!s.localised);
        // The first maximum is pixel (3, 3), centre (3.5, 3.5): inside the box.
        assert!(s.pointed);
        // Thresholded x 3..5, y 3..5 (4 pixels) vs mask x 2..4, y 2..6 (8): 2 ∩, 10 ∪.
        assert_eq!(s.mask_iou, Some(2.0 / 10.0));
        // At 0.5 the products ¾ · ¾ stay too: the centre 4 × 4 block, the box itself.
        let (s, _) = score_map(&map, (4, 4), 8, 0.5, &[truth], Some(&mask));
        assert_eq!(s.predicted, Some(truth));
        assert!(s.localised && s.pointed);
        assert_eq!(s.mask_iou, Some(8.0 / 16.0));
        // Pointing misses when the maximum is outside every box; the best box counts.
        let far = rect(6.0, 6.0, 8.0, 8.0);
        let (s, _) = score_map(&map, (4, 4), 8, 0.5, &[far, truth], None);
        assert!(s.localised && s.pointed && s.best_iou == 1.0 && s.mask_iou.is_none());
        let (s, _) = score_map(&map, (4, 4), 8, 0.5, &[far], None);
        assert!(!s.localised && !s.pointed);
        // A constant map localises nothing.
        let (s, norm) = score_map(&[1.0; 4], (2, 2), 4, 0.5, &[truth], Some(&[true; 16]));
        assert!(norm.is_none() && !s.localised && !s.pointed && s.predicted.is_none());
        assert_eq!(s.mask_iou, Some(0.0));
    }
}

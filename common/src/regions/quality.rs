//! Region-quality diagnostics: do a layer's responsible regions pick out objects, nothing,
//! or the same positions in every image?
//!
//! Two streaming passes over the region files' identity columns (never the activations):
//!
//! 1. per image, its foreground positions counted; per position, the images in which it is
//!    foreground. The *fixed pattern* M is the set of positions that are foreground in more
//!    than half of the processed images.
//! 2. per image with foreground F, `|F ∩ M|`, so `IoU(F, M) = |F ∩ M| / (|F| + |M| − |F ∩ M|)`.
//!
//! Memory is one counter per position plus two per image (no per-image position sets), so
//! an ImageNet-sized job fits. Images with no row at all (no foreground and no background
//! kept) are counted from `images_processed`, which the caller knows from extraction.
//!
//! What the numbers mean, and the warnings' thresholds (heuristics, stated so a user can
//! judge): objects at varying places give an empty M and a fixed-pattern IoU of 0; a
//! saliency artefact (a stride checkerboard, a border) gives the same mask everywhere and an
//! IoU near 1 — warned at ≥ 0.5. So do objects that are always large and central: the
//! demo's world measures 0.46 at tiny_cnn `features.7` with `gradient_x_activation` (44 of
//! 256 positions are responsible in most images), the same model on `hint synth --preset
//! hard` (objects anywhere) 0.00; the number cannot tell the two causes apart, the warning
//! names both. A spatially constant saliency (`gradient` before global
//! pooling) gives no foreground at all — warned when more than half of the images have none.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{for_each_foreground, read_region_meta, RegionsError};

/// Share of images without a responsible region above which a warning is given.
pub const NO_REGION_WARNING: f64 = 0.5;

/// Mean fixed-pattern IoU at or above which a warning is given.
pub const FIXED_PATTERN_WARNING: f64 = 0.5;

/// The extraction's responsible regions on images that have an object mask: the object
/// share of the pixels their cells cover, against the object share of the crops
/// (`wsol.json`'s and `job.json`'s `region_lift`, measured by the evaluate stage).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionLift {
    /// Images with a mask and regions in the job's region files.
    pub images: usize,
    /// Object pixels / pixels, inside the responsible cells.
    pub object_share_in_regions: f64,
    /// Object pixels / pixels, over the whole crops.
    pub object_share: f64,
    /// Their ratio: 1 = regions no more on objects than chance, higher = on objects.
    pub lift: f64,
}

impl RegionLift {
    /// From pixel counts pooled over `images`; `None` without pixels on either side.
    pub fn from_counts(
        images: usize,
        object_in_cells: u64,
        in_cells: u64,
        object: u64,
        pixels: u64,
    ) -> Option<RegionLift> {
        if images == 0 || in_cells == 0 || object == 0 || pixels == 0 {
            return None;
        }
        let object_share_in_regions = object_in_cells as f64 / in_cells as f64;
        let object_share = object as f64 / pixels as f64;
        Some(RegionLift {
            images,
            object_share_in_regions,
            object_share,
            lift: object_share_in_regions / object_share,
        })
    }

    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "the extraction's responsible regions on these images: {:.1}% object pixels, the \
             crops {:.1}% (object lift {:.2}, {} images with a mask)",
            100.0 * self.object_share_in_regions,
            100.0 * self.object_share,
            self.lift,
            self.images
        )
    }
}

/// The diagnostics of one layer's region files (`job.json`'s `region_quality`, the
/// extraction summary, the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionQuality {
    /// The layer.
    pub layer: String,
    /// The saliency method.
    pub method: String,
    /// Feature-map height × width.
    pub grid: [usize; 2],
    /// Images extracted (skipped images excluded).
    pub images: u64,
    /// Of them, images with at least one responsible (foreground) position.
    pub images_with_regions: u64,
    /// `1 − images_with_regions / images` (0 when there are no images).
    pub no_region_share: f64,
    /// Mean foreground positions per image with regions.
    pub regions_per_image: f64,
    /// Positions foreground in more than half of the images.
    pub fixed_pattern_positions: u64,
    /// Mean over images with regions of the IoU of their mask with the fixed pattern.
    pub fixed_pattern_iou: f64,
    /// What a user should know before trusting the concepts built on these regions.
    pub warnings: Vec<String>,
}

impl RegionQuality {
    /// One line for a summary: `regions: 98.1% of 1,600 images, 12.3 positions each of
    /// 16×16; fixed-pattern IoU 0.02`.
    pub fn line(&self) -> String {
        format!(
            "{} of {} images have responsible regions, {:.1} positions each of {}×{}; \
             fixed-pattern IoU {:.2} ({} positions foreground in most images)",
            percent(1.0 - self.no_region_share),
            self.images,
            self.regions_per_image,
            self.grid[0],
            self.grid[1],
            self.fixed_pattern_iou,
            self.fixed_pattern_positions
        )
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// Measures `files` (one layer's region files) for `images_processed` extracted images.
pub fn measure(files: &[PathBuf], images_processed: u64) -> Result<RegionQuality, RegionsError> {
    let (layer, method, grid) = match files.first() {
        Some(first) => {
            let (meta, _) = read_region_meta(first)?;
            (meta.layer, meta.method, [meta.height, meta.width])
        }
        None => (String::new(), String::new(), [0, 0]),
    };
    let position = |y: u16, x: u16| usize::from(y) * grid[1] + usize::from(x);
    // Pass 1: foreground per image, images per position. Ordered by image, so the means
    // below add in one order and job.json is the same bytes on every run.
    let mut per_image: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    let mut per_position = vec![0u64; grid[0] * grid[1]];
    for_each_foreground(files, |image, y, x| {
        per_image.entry(image).or_default().0 += 1;
        if let Some(count) = per_position.get_mut(position(y, x)) {
            *count += 1;
        }
    })?;
    let images = images_processed.max(per_image.len() as u64);
    let fixed: Vec<bool> = per_position.iter().map(|&n| 2 * n > images).collect();
    let fixed_positions = fixed.iter().filter(|&&f| f).count() as u64;
    // Pass 2 (only when there is a pattern to compare with): |F ∩ M| per image.
    if fixed_positions > 0 {
        for_each_foreground(files, |image, y, x| {
            if fixed.get(position(y, x)).copied().unwrap_or(false) {
                per_image.entry(image).or_default().1 += 1;
            }
        })?;
    }
    let with_regions = per_image.len() as u64;
    let mean = |f: &dyn Fn(u32, u32) -> f64| {
        if with_regions == 0 {
            0.0
        } else {
            per_image.values().map(|&(n, both)| f(n, both)).sum::<f64>() / with_regions as f64
        }
    };
    let regions_per_image = mean(&|n, _| f64::from(n));
    let fixed_pattern_iou = mean(&|n, both| {
        let union = u64::from(n) + fixed_positions - u64::from(both);
        if union == 0 {
            0.0
        } else {
            f64::from(both) / union as f64
        }
    });
    let no_region_share = if images == 0 {
        0.0
    } else {
        1.0 - with_regions as f64 / images as f64
    };
    let mut quality = RegionQuality {
        layer,
        method,
        grid,
        images,
        images_with_regions: with_regions,
        no_region_share,
        regions_per_image,
        fixed_pattern_positions: fixed_positions,
        fixed_pattern_iou,
        warnings: Vec::new(),
    };
    quality.warnings = warnings(&quality);
    Ok(quality)
}

fn warnings(q: &RegionQuality) -> Vec<String> {
    let mut out = Vec::new();
    if q.images > 0 && q.no_region_share > NO_REGION_WARNING {
        out.push(format!(
            "{} of the images have no responsible region at {} with {}: the concepts are \
             learnt from the few that do (a spatially constant saliency — e.g. gradient just \
             before global average pooling — or a threshold too high gives this)",
            percent(q.no_region_share),
            q.layer,
            q.method
        ));
    }
    if q.fixed_pattern_iou >= FIXED_PATTERN_WARNING {
        out.push(format!(
            "the responsible regions at {} with {} are mostly the same {} positions in every \
             image (mean IoU {:.2} with them): a saliency artefact (a stride pattern, a border \
             — try another method or layer) or objects that are always in the same place (then \
             a region's position alone tells its class)",
            q.layer, q.method, q.fixed_pattern_positions, q.fixed_pattern_iou
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regions::{ActivationType, RegionFileMeta, RegionRow, RegionRows, RegionWriter};

    /// A region file of `masks` (one per image: foreground positions on a 4×4 grid; every
    /// other position a background row).
    fn write(dir: &std::path::Path, masks: &[Vec<usize>]) -> PathBuf {
        let meta = RegionFileMeta {
            model: "tiny_cnn".into(),
            layer: "features.4".into(),
            method: "gradient".into(),
            aggregation: "norm".into(),
            threshold: 0.5,
            channels: 1,
            height: 4,
            width: 4,
            activation_type: ActivationType::F32,
            labels: vec!["a".into()],
            job_id: None,
            task_id: None,
            extra: Default::default(),
        };
        let path = dir.join("regions-00000.parquet");
        let mut writer = RegionWriter::create(&path, meta).unwrap();
        let mut rows = RegionRows::with_capacity(0, 1);
        for (image, mask) in masks.iter().enumerate() {
            for p in 0..16 {
                rows.push(RegionRow {
                    image_id: image as u64,
                    label: 0,
                    y: (p / 4) as u16,
                    x: (p % 4) as u16,
                    saliency: 0.0,
                    foreground: mask.contains(&p),
                    activation: &[1.0],
                });
            }
        }
        writer.write(&rows).unwrap();
        writer.finish().unwrap();
        path
    }

    #[test]
    fn objects_at_varying_places_have_no_fixed_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let masks: Vec<Vec<usize>> = (0..8).map(|i| vec![i, i + 1]).collect();
        let q = measure(&[write(dir.path(), &masks)], 8).unwrap();
        assert_eq!((q.images, q.images_with_regions, q.grid), (8, 8, [4, 4]));
        assert_eq!((q.fixed_pattern_positions, q.fixed_pattern_iou), (0, 0.0));
        assert_eq!(q.regions_per_image, 2.0);
        assert!(q.warnings.is_empty(), "{:?}", q.warnings);
    }

    #[test]
    fn the_same_mask_everywhere_is_a_fixed_pattern_and_empty_images_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        // 6 images share {0, 2, 8, 10}; one adds position 5; one has no foreground; and 2
        // more images were extracted without any row (no foreground, no background kept).
        let mut masks = vec![vec![0, 2, 8, 10]; 6];
        masks.push(vec![0, 2, 8, 10, 5]);
        masks.push(vec![]);
        let q = measure(&[write(dir.path(), &masks)], 10).unwrap();
        assert_eq!((q.images, q.images_with_regions), (10, 7));
        assert!((q.no_region_share - 0.3).abs() < 1e-12);
        assert_eq!(q.fixed_pattern_positions, 4);
        // Six images with IoU 1, one with 4/5.
        assert!((q.fixed_pattern_iou - (6.0 + 0.8) / 7.0).abs() < 1e-12);
        assert_eq!(q.warnings.len(), 1, "{:?}", q.warnings);
        assert!(
            q.warnings[0].contains("same 4 positions"),
            "{}",
            q.warnings[0]
        );
    }

    #[test]
    fn mostly_empty_regions_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let masks = vec![vec![3], vec![], vec![], vec![]];
        let q = measure(&[write(dir.path(), &masks)], 4).unwrap();
        assert!((q.no_region_share - 0.75).abs() < 1e-12);
        assert!(
            q.warnings.iter().any(|w| w.contains("75.0%")),
            "{:?}",
            q.warnings
        );
    }
}

//! The image-major pass: decode an image with its ground truth, run the model to the layer
//! once, and score every re-fitted classifier of every concept the image is evaluated under.

use std::path::{Path, PathBuf};

use hint_common::annotations::BoundingBox;

use super::compare::{Outcome, PairOutcomes, Slot};
use super::geometry::{self, CropFrame, Rect};
use super::heatmap::{self, file_safe};
use super::inputs::{read_mask, GroundTruthFiles};
use super::report::{Heatmap, Skipped};
use super::{Evaluated, Selection, WsolError, HEATMAP_DIR, THRESHOLD};
use crate::models::{Backbone, Layer};

/// One image's part of the work: which concepts it is evaluated under.
pub(super) struct ImageWork {
    pub id: u64,
    pub path: PathBuf,
    pub truth: GroundTruthFiles,
    /// (position in the evaluated concepts, draw a heatmap).
    pub concepts: Vec<(usize, bool)>,
}

/// A decoded image with its ground truth in the crop frame.
pub(super) struct Decoded {
    pub pixels: Vec<f32>,
    pub frame: CropFrame,
    pub rgb: image::RgbImage,
    pub boxes: Vec<BoundingBox>,
    /// The object mask in the crop frame (`crop × crop`), when there is one.
    pub mask: Option<Vec<bool>>,
}

/// Reads an image, its annotation and its mask; a problem is a reason to skip the image.
pub(super) fn decode(w: &ImageWork, p: &crate::images::Preprocess) -> Result<Decoded, String> {
    let rgb = crate::images::decode::read_rgb(&w.path)?;
    let (width, height) = rgb.dimensions();
    let boxes = w.truth.boxes.read(w.id)?;
    let mask = match &w.truth.mask {
        Some(path) => Some(read_mask(path, (width, height))?),
        None => None,
    };
    let frame = CropFrame::new(width, height, p);
    Ok(Decoded {
        pixels: crate::images::decode::preprocess(&rgb, p),
        mask: mask.map(|m| frame.map_mask(&m)),
        frame,
        rgb,
        boxes,
    })
}

/// A batch's activations of the layer on the host.
pub(super) struct FeatureMaps {
    /// `[B, D, H, W]`, row-major.
    pub values: Vec<f32>,
    /// `(D, H, W)`.
    pub shape: (usize, usize, usize),
}

/// The layer's activations of a batch (on the model's device).
pub(super) fn feature_maps(
    model: &Backbone,
    layer: Layer,
    batch: &[(&ImageWork, Decoded)],
    p: &crate::images::Preprocess,
) -> Result<FeatureMaps, WsolError> {
    let pixels: Vec<f32> = batch
        .iter()
        .flat_map(|(_, d)| d.pixels.iter().copied())
        .collect();
    let (values, shape) = model.activations_on_host(&pixels, i64::from(p.crop), layer)?;
    Ok(FeatureMaps { values, shape })
}

/// What one image adds.
pub(super) struct ImageScores {
    /// One per concept the image was scored under.
    pub pairs: Vec<PairOutcomes>,
    pub heatmaps: Vec<Heatmap>,
    pub skipped: Vec<Skipped>,
}

/// What scoring an image needs besides the image.
pub(super) struct Context<'a> {
    pub evaluated: &'a [Evaluated],
    /// What each of a concept's classifiers is.
    pub slots: &'a [Slot],
    pub names: &'a [&'a str],
    pub heatmap_dir: &'a Path,
    pub heatmap_fraction: u32,
}

impl Context<'_> {
    /// Scores every classifier of every concept of `w` on its feature map `z` (`D × H × W`).
    pub fn score_image(
        &self,
        w: &ImageWork,
        dec: &Decoded,
        z: &[f32],
        (d, h, wd): (usize, usize, usize),
    ) -> Result<ImageScores, WsolError> {
        let crop = dec.frame.crop as usize;
        let mask = dec.mask.as_deref();
        let mut out = ImageScores {
            pairs: Vec::new(),
            heatmaps: Vec::new(),
            skipped: Vec::new(),
        };
        let hw = h * wd;
        debug_assert_eq!(z.len(), d * hw);
        for &(pos, draw) in &w.concepts {
            let e = &self.evaluated[pos];
            let boxes = concept_boxes(&dec.boxes, &e.labels, self.names);
            let truth: Vec<Rect> = boxes.iter().filter_map(|b| dec.frame.map_box(b)).collect();
            if truth.is_empty() {
                out.skipped.push(Skipped {
                    what: format!("{} for {}", w.path.display(), e.name),
                    reason: "no ground-truth box inside the crop".into(),
                });
                continue;
            }
            let mut outcomes = Vec::with_capacity(e.classifiers.len());
            for (slot, c) in self.slots.iter().zip(&e.classifiers) {
                let mut map = vec![c.bias; hw];
                for &n in &c.neurons {
                    let wn = c.weight[n];
                    for (m, &v) in map.iter_mut().zip(&z[n * hw..(n + 1) * hw]) {
                        *m += wn * v;
                    }
                }
                let (s, norm) = geometry::score_map(&map, (h, wd), crop, THRESHOLD, &truth, mask);
                outcomes.push(Outcome {
                    localised: s.localised,
                    pointed: s.pointed,
                    mask_iou: s.mask_iou,
                    box_hits: s.box_hits,
                    max_box: false, // set once every pair is in (`choose_box_thresholds`)
                });
                if draw
                    && slot.selection == Selection::Shapley
                    && slot.fraction == self.heatmap_fraction
                {
                    let norm = norm.unwrap_or_else(|| vec![0.0; crop * crop]);
                    let crop_img = heatmap::crop_rgb(&dec.rgb, &dec.frame);
                    let png = format!("{:05}-{}-{:07}.png", e.id.0, file_safe(&e.name), w.id);
                    let path = self.heatmap_dir.join(&png);
                    heatmap::render(&crop_img, &norm, &truth, s.predicted)
                        .save(&path)
                        .map_err(|err| WsolError::other(&path, err))?;
                    out.heatmaps.push(Heatmap {
                        concept: e.id.0,
                        name: e.name.clone(),
                        image: w.path.display().to_string(),
                        png: format!("{HEATMAP_DIR}/{png}"),
                        selection: slot.selection,
                        fraction: slot.fraction,
                    });
                }
            }
            out.pairs.push(PairOutcomes {
                concept: e.id.0,
                image: w.id,
                outcomes,
            });
        }
        Ok(out)
    }
}

/// The boxes of objects at or under the concept (by the box's class name among the
/// dataset labels); every box when no box names a dataset label (annotations named in
/// another vocabulary).
fn concept_boxes<'b>(
    boxes: &'b [BoundingBox],
    under: &[u32],
    names: &[&str],
) -> Vec<&'b BoundingBox> {
    let known = |b: &BoundingBox| names.iter().position(|n| *n == b.label);
    if boxes.iter().all(|b| known(b).is_none()) {
        return boxes.iter().collect();
    }
    boxes
        .iter()
        .filter(|b| known(b).is_some_and(|l| under.contains(&(l as u32))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hint_common::annotations::BoundingBox;

    fn b(label: &str) -> BoundingBox {
        BoundingBox {
            label: label.into(),
            xmin: 0.0,
            ymin: 0.0,
            xmax: 1.0,
            ymax: 1.0,
            difficult: false,
        }
    }

    #[test]
    fn boxes_of_a_concept_are_its_objects() {
        let names = ["cat", "dog", "car"];
        let boxes = [b("dog"), b("car"), b("person")];
        let animal = [0, 1];
        let got: Vec<&str> = concept_boxes(&boxes, &animal, &names)
            .iter()
            .map(|b| b.label.as_str())
            .collect();
        assert_eq!(got, ["dog"]);
        // Boxes in another vocabulary all count.
        let other = [b("n02084071"), b("n02121808")];
        assert_eq!(concept_boxes(&other, &animal, &names).len(), 2);
        assert_eq!(file_safe("dog.n.01 x/y"), "dog.n.01_x_y");
    }
}

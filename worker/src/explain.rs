//! Concept maps for any image (`hint explain`): a finished job's concept classifiers applied
//! at every position of an image's feature map at the job's layer.
//!
//! For each image (inside the job's dataset or not) and each asked concept: the logit
//! `weightᵀz(y, x) + bias` of the concept's classifier at every position of the layer's
//! `H × W` map — the classifier HINT trained on responsible regions, so a high value is a
//! position the concept's classifier calls a region of the concept — written to
//! `explain.json` with the position of the peak and its probability σ(logit), and drawn as
//! a heatmap PNG over the image's crop (the map upsampled bilinearly and min-max
//! normalised, as the WSOL heatmaps are). The model, layer and preprocessing are the job's
//! (`spec.json`); the classifiers are its committed `classifiers/*/` directories, read as
//! `hint evaluate` reads them (`wsol::inputs::Job`). With `top = K`, each concept's
//! classifier is instead re-fitted on its K neurons of highest Φ (on its training regions,
//! with the job's solver, as `hint evaluate` re-fits): the map of what those neurons alone
//! say.

use std::path::{Path, PathBuf};

use hint_common::attack::MapStats;
pub use hint_common::explain::{
    BoxCheck, ConceptCheck, ConceptMap, ExplainReport, SkippedImage, EXPLAIN_FILE,
};
use hint_common::hierarchy::{Concept, ConceptId};
use hint_common::images::IMAGE_EXTENSIONS;
use tch::Device;

use crate::images::decode::{self, read_rgb};
use crate::models::Backbone;
use crate::wsol::geometry::{self, normalise, upsample_bilinear, CropFrame, Rect};
use crate::wsol::heatmap::{self, file_safe};
use crate::wsol::inputs::{read_mask, AnnotationIndex, Job};
use crate::wsol::{select, THRESHOLD};

/// What to explain.
#[derive(Debug, Clone)]
pub struct ExplainConfig {
    /// A finished (or at least trained) job's directory: `spec.json`, `classifiers/`.
    pub job: PathBuf,
    /// An image file, or a directory whose image files (at any depth) are explained.
    pub images: PathBuf,
    /// Concepts by key or name; empty: every concept with a classifier.
    pub concepts: Vec<String>,
    /// Re-fit each classifier on its concept's top-K neurons by Φ (None: the trained one).
    pub top: Option<usize>,
    /// Where the PNGs and `explain.json` go.
    pub out: PathBuf,
    /// An annotation tree (VOC / ImageNet XML, or a CUB-200-2011 root) whose boxes each
    /// image's maps are checked against (an expert's boxes: every box of the image counts,
    /// whatever its class); None: no check.
    pub boxes: Option<PathBuf>,
    /// With `boxes`, a root of object masks (PNG, an annotation's relative path with `.png`,
    /// as `hint evaluate --masks` finds them): each map's mask IoU too.
    pub masks: Option<PathBuf>,
    /// The device of the forward passes.
    pub device: Device,
}

/// Errors that stop `hint explain` and `hint attack` (an unreadable image is skipped
/// instead).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The job, an image set or a concept is not usable, and why.
    #[error("{0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The model or a classifier failed.
    #[error(transparent)]
    Engine(#[from] crate::error::Error),
    /// A classifier directory is unreadable.
    #[error(transparent)]
    Classify(#[from] crate::classify::ClassifyError),
    /// The job directory is unreadable.
    #[error(transparent)]
    Job(#[from] crate::wsol::WsolError),
    /// libtorch failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub(crate) fn file_error(path: &Path, e: impl std::fmt::Display) -> ExplainError {
    ExplainError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Runs `hint explain`.
pub fn run(config: &ExplainConfig) -> Result<ExplainReport, ExplainError> {
    let job = Job::open(&config.job)?;
    let concepts = concept_classifiers(&job, &config.concepts, config.top, config.device)?;
    let images = image_files(&config.images)?;
    let model = Backbone::from_safetensors(job.arch, &job.spec.model.weights, config.device)?;
    model.check_input(job.preprocess.crop)?;
    let layer = model.layer(&job.spec.model.layer)?;
    let preprocess = job.preprocess;
    let annotations = config
        .boxes
        .as_deref()
        .map(AnnotationIndex::scan)
        .transpose()?;
    std::fs::create_dir_all(&config.out).map_err(|e| file_error(&config.out, e))?;

    let mut report = ExplainReport {
        job: config.job.clone(),
        model: job.spec.model.architecture.clone(),
        layer: job.spec.model.layer.clone(),
        crop: preprocess.crop,
        top: config.top,
        maps: Vec::new(),
        skipped: Vec::new(),
        boxes: config.boxes.clone(),
        masks: config.masks.clone(),
        threshold: config.boxes.as_ref().map(|_| THRESHOLD),
        checks: Vec::new(),
        unchecked: Vec::new(),
    };
    for (k, image) in images.iter().enumerate() {
        let rgb = match read_rgb(image) {
            Ok(rgb) => rgb,
            Err(reason) => {
                report.skipped.push(SkippedImage {
                    image: image.clone(),
                    reason,
                });
                continue;
            }
        };
        let pixels = decode::preprocess(&rgb, &preprocess);
        let (z, (d, h, w)) =
            model.activations_on_host(&pixels, i64::from(preprocess.crop), layer)?;
        let frame = CropFrame::new(rgb.width(), rgb.height(), &preprocess);
        let crop_rgb = heatmap::crop_rgb(&rgb, &frame);
        // The image's boxes in the crop frame; None: no check (and why, with boxes given).
        let truth = match &annotations {
            None => None,
            Some(index) => match image_truth(index, image, &frame, config.masks.as_deref()) {
                Ok(truth) => Some(truth),
                Err(reason) => {
                    report.unchecked.push(SkippedImage {
                        image: image.clone(),
                        reason,
                    });
                    None
                }
            },
        };
        for (concept, classifier) in &concepts {
            let logits = classifier.map(concept, &z, d, h * w)?;
            let stats = MapStats::of(&logits, w);
            let crop = preprocess.crop as usize;
            // The map upsampled to the crop and normalised; scoring it against boxes makes
            // the same one.
            let (norm, check, predicted) = match &truth {
                Some((boxes, mask)) => {
                    let (s, norm) = geometry::score_map(
                        &logits,
                        (h, w),
                        crop,
                        THRESHOLD,
                        boxes,
                        mask.as_deref(),
                    );
                    let check = BoxCheck {
                        boxes: boxes.len(),
                        pointed: s.pointed,
                        iou: s.best_iou,
                        mask_iou: s.mask_iou,
                    };
                    (norm, Some(check), s.predicted)
                }
                None => (
                    normalise(&upsample_bilinear(&logits, h, w, crop)),
                    None,
                    None,
                ),
            };
            let norm = norm.unwrap_or_else(|| vec![0.0; crop * crop]);
            let png = format!("{:04}-{}-{}.png", k, stem(image), file_safe(&concept.key));
            let path = config.out.join(&png);
            let drawn = truth.as_ref().map_or(&[][..], |(boxes, _)| boxes);
            heatmap::render(&crop_rgb, &norm, drawn, predicted)
                .save(&path)
                .map_err(|e| file_error(&path, e))?;
            report.maps.push(ConceptMap {
                image: image.clone(),
                concept: concept.id.0,
                key: concept.key.clone(),
                name: concept.name.clone(),
                png,
                height: h,
                width: w,
                logits,
                peak: stats.peak,
                peak_probability: stats.peak_probability,
                check,
            });
        }
    }
    report.checks = ConceptCheck::summarise(&report.maps);
    let path = config.out.join(EXPLAIN_FILE);
    std::fs::write(&path, report.to_json()).map_err(|e| file_error(&path, e))?;
    Ok(report)
}

/// The boxes of `image` in the annotation tree, and its mask under `masks` when there is
/// one, in the crop frame; why there are none.
fn image_truth(
    index: &AnnotationIndex,
    image: &Path,
    frame: &CropFrame,
    masks: Option<&Path>,
) -> Result<(Vec<Rect>, Option<Vec<bool>>), String> {
    let truth = index
        .find(image, masks)
        .ok_or("no annotation file matches the image")?;
    let boxes = truth.boxes.read(0)?;
    let inside: Vec<Rect> = boxes.iter().filter_map(|b| frame.map_box(b)).collect();
    if inside.is_empty() {
        return Err(format!(
            "none of its {} box(es) reaches into the crop",
            boxes.len()
        ));
    }
    let mask = match &truth.mask {
        Some(path) => Some(frame.map_mask(&read_mask(path, frame.original)?)),
        None => None,
    };
    Ok((inside, mask))
}

/// The logit `weightᵀz + bias` at each of the `positions` of a `D × H × W` feature map `z`.
pub fn concept_map(weight: &[f32], bias: f32, z: &[f32], positions: usize) -> Vec<f32> {
    let mut map = vec![0f64; positions];
    for (d, &weight) in weight.iter().enumerate() {
        let channel = &z[d * positions..(d + 1) * positions];
        for (m, &v) in map.iter_mut().zip(channel) {
            *m += f64::from(weight) * f64::from(v);
        }
    }
    map.into_iter()
        .map(|m| (m + f64::from(bias)) as f32)
        .collect()
}

/// A concept's linear function on raw activations.
pub(crate) struct Linear {
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: f32,
}

impl Linear {
    /// Its [`concept_map`] of one image's `d × positions` feature map `z`; an error naming
    /// `concept` when it was trained on another number of channels.
    pub(crate) fn map(
        &self,
        concept: &Concept,
        z: &[f32],
        d: usize,
        positions: usize,
    ) -> Result<Vec<f32>, ExplainError> {
        if self.weight.len() != d {
            return Err(ExplainError::Input(format!(
                "{}'s classifier has {} weights, the layer {d} channels",
                concept.name,
                self.weight.len()
            )));
        }
        Ok(concept_map(&self.weight, self.bias, z, positions))
    }
}

/// The asked concepts (keys or names; empty: every one with a classifier), in order, each
/// with its trained classifier or, with `top`, the classifier re-fitted on its top-K
/// neurons by Φ.
pub(crate) fn concept_classifiers(
    job: &Job,
    asked: &[String],
    top: Option<usize>,
    device: Device,
) -> Result<Vec<(Concept, Linear)>, ExplainError> {
    let concepts = job.hierarchy.concepts();
    let ids: Vec<ConceptId> = if asked.is_empty() {
        job.classifier_of.keys().copied().collect()
    } else {
        let resolve = |a: &String| {
            let found = concepts
                .iter()
                .find(|c| c.key == *a)
                .or_else(|| concepts.iter().find(|c| c.name == *a));
            match found {
                Some(c) if job.classifier_of.contains_key(&c.id) => Ok(c.id),
                Some(c) => Err(format!(
                    "{a} (no classifier: too few regions for {})",
                    c.name
                )),
                None => Err(format!("{a} (not a concept of the job)")),
            }
        };
        asked
            .iter()
            .map(resolve)
            .collect::<Result<_, _>>()
            .map_err(|why| {
                let trained: Vec<&str> = job
                    .classifier_of
                    .keys()
                    .map(|&id| job.hierarchy.concept(id).key.as_str())
                    .collect();
                ExplainError::Input(format!(
                    "unknown concept {why}; concepts with a classifier: {}",
                    trained.join(", ")
                ))
            })?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let dir = &job.classifiers[job.classifier_of[&id]];
        let concept = job.hierarchy.concept(id).clone();
        let linear = match top {
            None => {
                let trained = dir.classifier(id)?;
                Linear {
                    weight: trained.weight,
                    bias: trained.bias,
                }
            }
            Some(k) => {
                let phi = job.phi.get(&id).ok_or_else(|| {
                    ExplainError::Input(format!("{} has no complete Φ row", concept.name))
                })?;
                if k == 0 || k > phi.len() {
                    return Err(ExplainError::Input(format!(
                        "--top {k}: the layer has {} neurons",
                        phi.len()
                    )));
                }
                let samples = dir.rebuild_job_samples(&job.dir, Some(&[id]))?;
                let split = &samples
                    .concept(id)
                    .ok_or_else(|| {
                        ExplainError::Input(format!("{} has no training regions", concept.name))
                    })?
                    .train;
                let set = select::top_k(phi, k);
                let fits = select::refit(&samples, split, &[set], &dir.settings.solver, device)?;
                let fit = fits.into_iter().next().expect("one set, one fit");
                Linear {
                    weight: fit.weight,
                    bias: fit.bias,
                }
            }
        };
        out.push((concept, linear));
    }
    Ok(out)
}

/// The image files of `path`: itself, or those below it (any depth), sorted.
pub(crate) fn image_files(path: &Path) -> Result<Vec<PathBuf>, ExplainError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| file_error(&dir, e))? {
            let entry = entry.map_err(|e| file_error(&dir, e))?.path();
            if entry.is_dir() {
                dirs.push(entry);
            } else if entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                files.push(entry);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ExplainError::Input(format!(
            "{}: no image files (.jpg, .jpeg, .png) below it",
            path.display()
        )));
    }
    Ok(files)
}

pub(crate) fn stem(path: &Path) -> String {
    file_safe(
        &path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concept_map_is_the_classifier_at_every_position() {
        let classifier = crate::classify::ConceptClassifier {
            concept: ConceptId(3),
            key: "dog".into(),
            name: "dog".into(),
            level: 1,
            model: "tiny_cnn".into(),
            layer: "features.7".into(),
            weight: vec![0.5, -2.0],
            bias: 0.25,
        };
        // D = 2 channels over 3 positions.
        let z = [1.0, 2.0, 3.0, 0.0, 1.0, -1.0];
        let map = concept_map(&classifier.weight, classifier.bias, &z, 3);
        for (p, &m) in map.iter().enumerate() {
            let expected = classifier.logit(&[z[p], z[3 + p]]) as f32;
            assert_eq!(m, expected);
        }
        assert_eq!(map, [0.75, -0.75, 3.75]);
    }
}

//! The saliency sanity check (`hint sanity`): cascading model-parameter randomisation
//! (Adebayo et al., 2018) applied to HINT's hidden-layer saliency and its concept maps.
//!
//! The job's model is loaded trained; then its parts are destroyed one at a time from the
//! top ([`Backbone::parts_from_top`]: the head, then each stage from the last down), each
//! by a seeded permutation of every trainable tensor's values ([`Backbone::shuffle_part`]:
//! the scale stays, the learned arrangement goes), cumulatively. At the trained model and
//! after every part, each method's saliency at the job's layer is computed on the same
//! images, toward the same class (the trained model's prediction) with the same per-image
//! randomness (image id = its position among the readable images in sorted order, the
//! job's seed), aggregated and normalised and thresholded with the job's settings, as
//! extraction does. Each step is compared with the trained model ([`SanityStep`]): the
//! Spearman correlation of each image's aggregated map, the IoU of its responsible region,
//! and the Spearman correlation of each concept classifier's map of the layer. See
//! `hint_common::sanity`.

use std::path::PathBuf;

use hint_common::hierarchy::Concept;
use hint_common::sanity::{
    interval, mask_iou, mean_defined, MappedConcept, MethodSimilarity, SanityReport, SanityStep,
    SkippedImage, SANITY_FILE,
};
use hint_common::settings::{Method, MethodName};
use hint_common::stats::spearman;
use tch::{Device, Tensor};

use crate::explain::{concept_classifiers, file_error, image_files, ExplainError, Linear};
use crate::images::decode::{self, read_rgb};
use crate::models::{to_host, Backbone, Layer};
use crate::responsible::{self, Aggregate};
use crate::saliency::{self, SaliencyInput};
use crate::wsol::inputs::Job;

/// Images per forward and backward pass.
const BATCH: usize = 16;

/// What to check.
#[derive(Debug, Clone)]
pub struct SanityConfig {
    /// A finished (or at least trained) job's directory.
    pub job: PathBuf,
    /// An image file, or a directory whose image files (at any depth) are used.
    pub images: PathBuf,
    /// Saliency methods (the job's parameters for the parametrised ones); empty: the job's.
    pub methods: Vec<MethodName>,
    /// Concepts by key or name; empty: every concept with a classifier.
    pub concepts: Vec<String>,
    /// Where `sanity.json` goes.
    pub out: PathBuf,
    /// The device.
    pub device: Device,
}

/// One method's maps of every image at one step: aggregated `[N, H·W]` and the
/// responsible-region masks.
struct MethodMaps {
    aggregated: Vec<Vec<f32>>,
    masks: Vec<Vec<bool>>,
}

/// Runs `hint sanity`.
pub fn run(config: &SanityConfig) -> Result<SanityReport, ExplainError> {
    let job = Job::open(&config.job)?;
    let extract = &job.spec.extract;
    let names = if config.methods.is_empty() {
        vec![extract.method]
    } else {
        config.methods.clone()
    };
    let methods: Vec<Method> = names
        .iter()
        .map(|&name| {
            Method::new(
                name,
                extract.samples,
                extract.noise,
                extract.steps,
                extract.baseline,
            )
            .map_err(|e| ExplainError::Input(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let concepts = concept_classifiers(&job, &config.concepts, None, config.device)?;
    let files = image_files(&config.images)?;
    let model = Backbone::from_safetensors(job.arch, &job.spec.model.weights, config.device)?;
    model.check_input(job.preprocess.crop)?;
    let layer = model.layer(&job.spec.model.layer)?;
    for method in &methods {
        if let Some(why) = method.unsupported_on(model.arch()) {
            return Err(ExplainError::Input(why));
        }
    }
    std::fs::create_dir_all(&config.out).map_err(|e| file_error(&config.out, e))?;

    // Every readable image, preprocessed once.
    let crop = job.preprocess.crop as usize;
    let mut pixels: Vec<f32> = Vec::new();
    let mut skipped = Vec::new();
    let mut images = 0usize;
    for file in &files {
        match read_rgb(file) {
            Ok(rgb) => {
                pixels.extend(decode::preprocess(&rgb, &job.preprocess));
                images += 1;
            }
            Err(reason) => skipped.push(SkippedImage {
                image: file.clone(),
                reason,
            }),
        }
    }
    if images == 0 {
        return Err(ExplainError::Input(format!(
            "{}: no image could be read",
            config.images.display()
        )));
    }
    let per_image = 3 * crop * crop;
    let batches: Vec<(usize, Tensor)> = pixels
        .chunks(BATCH * per_image)
        .enumerate()
        .map(|(b, chunk)| -> Result<(usize, Tensor), tch::TchError> {
            let n = (chunk.len() / per_image) as i64;
            let t = Tensor::f_from_slice(chunk)?
                .f_view([n, 3, crop as i64, crop as i64])?
                .f_to_device(config.device)?;
            Ok((b * BATCH, t))
        })
        .collect::<Result<_, _>>()?;
    // The class each image's saliency is taken toward: the trained model's prediction.
    let targets: Vec<Tensor> = batches
        .iter()
        .map(|(_, x)| tch::no_grad(|| model.forward(x).argmax(-1, false)))
        .collect();

    let check = Check {
        model: &model,
        layer,
        batches: &batches,
        targets: &targets,
        seed: job.spec.seed,
        normalisation: (job.preprocess.mean, job.preprocess.std),
        aggregation: extract.aggregation,
        threshold: extract.threshold,
    };
    let trained_maps = methods
        .iter()
        .map(|m| check.maps(m))
        .collect::<Result<Vec<_>, _>>()?;
    let trained_concepts = check.concept_maps(&concepts)?;
    let compare = |maps: &[MethodMaps], concept_maps: &[Vec<Vec<f32>>]| {
        let methods = names
            .iter()
            .zip(&trained_maps)
            .zip(maps)
            .map(|((name, reference), now)| {
                let rho: Vec<Option<f64>> = reference
                    .aggregated
                    .iter()
                    .zip(&now.aggregated)
                    .map(|(a, b)| spearman(a, b))
                    .collect();
                let iou: Vec<Option<f64>> = reference
                    .masks
                    .iter()
                    .zip(&now.masks)
                    .map(|(a, b)| mask_iou(a, b))
                    .collect();
                let (rank_correlation, correlated) = mean_defined(rho.iter().copied());
                let (region_iou, with_regions) = mean_defined(iou.iter().copied());
                MethodSimilarity {
                    method: name.name().to_string(),
                    rank_correlation,
                    rank_correlation_interval: interval(&rho, job.spec.seed),
                    correlated,
                    region_iou,
                    region_iou_interval: interval(&iou, job.spec.seed),
                    with_regions,
                }
            })
            .collect();
        let concept_maps = trained_concepts
            .iter()
            .zip(concept_maps)
            .map(|(reference, now)| {
                mean_defined(reference.iter().zip(now).map(|(a, b)| spearman(a, b))).0
            })
            .collect();
        (methods, concept_maps)
    };

    let (first_methods, first_concepts) = compare(&trained_maps, &trained_concepts);
    let mut steps = vec![SanityStep {
        randomised: None,
        reaches_layer: false,
        methods: first_methods,
        concept_maps: first_concepts,
    }];
    for (part, name) in model.parts_from_top().into_iter().enumerate() {
        model.shuffle_part(part, job.spec.seed)?;
        let maps = methods
            .iter()
            .map(|m| check.maps(m))
            .collect::<Result<Vec<_>, _>>()?;
        let (methods, concept_maps) = compare(&maps, &check.concept_maps(&concepts)?);
        steps.push(SanityStep {
            randomised: Some(name),
            reaches_layer: model.part_reaches(part, layer),
            methods,
            concept_maps,
        });
    }

    let report = SanityReport {
        job: config.job.clone(),
        model: job.spec.model.architecture.clone(),
        layer: job.spec.model.layer.clone(),
        crop: job.preprocess.crop,
        methods: names.iter().map(|n| n.name().to_string()).collect(),
        aggregation: extract.aggregation.name().to_string(),
        threshold: extract.threshold,
        seed: job.spec.seed,
        images,
        concepts: concepts
            .iter()
            .map(|(c, _)| MappedConcept {
                concept: c.id.0,
                key: c.key.clone(),
                name: c.name.clone(),
            })
            .collect(),
        steps,
        skipped,
    };
    let path = config.out.join(SANITY_FILE);
    std::fs::write(&path, report.to_json()).map_err(|e| file_error(&path, e))?;
    Ok(report)
}

/// The images, their targets and the job's region settings, for one model state.
struct Check<'a> {
    model: &'a Backbone,
    layer: Layer,
    /// (id of the first image, `[n, 3, crop, crop]` pixels on the device).
    batches: &'a [(usize, Tensor)],
    /// Per batch, `[n]` model outputs.
    targets: &'a [Tensor],
    seed: u64,
    normalisation: ([f32; 3], [f32; 3]),
    aggregation: hint_common::settings::Aggregation,
    threshold: f32,
}

impl Check<'_> {
    /// `method`'s aggregated maps and responsible-region masks of every image.
    fn maps(&self, method: &Method) -> Result<MethodMaps, ExplainError> {
        let mut maps = MethodMaps {
            aggregated: Vec::new(),
            masks: Vec::new(),
        };
        for ((first, x), targets) in self.batches.iter().zip(self.targets) {
            let n = x.size()[0] as usize;
            let ids: Vec<u64> = (*first as u64..(*first + n) as u64).collect();
            let input = SaliencyInput {
                images: x,
                targets,
                image_ids: &ids,
                seed: self.seed,
                normalisation: self.normalisation,
            };
            let result = saliency::compute(self.model, self.layer, method, &input)?;
            let aggregated = self.aggregation.apply(&result.saliency);
            let normalised = responsible::normalise(&aggregated);
            let rows = |t: &Tensor| -> Result<Vec<Vec<f32>>, tch::TchError> {
                let positions = t.size()[1..].iter().product::<i64>() as usize;
                Ok(to_host(t)?.chunks(positions).map(<[f32]>::to_vec).collect())
            };
            maps.aggregated.extend(rows(&aggregated)?);
            maps.masks.extend(
                rows(&normalised)?
                    .into_iter()
                    .map(|m| m.into_iter().map(|v| v > self.threshold).collect()),
            );
        }
        Ok(maps)
    }

    /// Every concept classifier's logit map (`H·W`) of every image: `[concept][image]`.
    fn concept_maps(
        &self,
        concepts: &[(Concept, Linear)],
    ) -> Result<Vec<Vec<Vec<f32>>>, ExplainError> {
        let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); concepts.len()];
        for (_, x) in self.batches {
            let z = tch::no_grad(|| {
                self.model
                    .forward_to(x, self.layer, crate::models::ReluMode::Plain)
                    .map
            });
            let size = z.size();
            let (d, positions) = (size[1] as usize, (size[2] * size[3]) as usize);
            for image in to_host(&z)?.chunks(d * positions) {
                for ((concept, linear), maps) in concepts.iter().zip(&mut out) {
                    maps.push(linear.map(concept, image, d, positions)?);
                }
            }
        }
        Ok(out)
    }
}

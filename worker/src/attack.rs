//! Adversarial explanation (`hint attack`): which concepts a finished job's concept
//! classifiers see in an image before and after a targeted attack, the paper's application
//! of HINT to adversarial examples.
//!
//! Each image's clean prediction is its source class. Toward every asked target class that
//! is not the source, the image is attacked with targeted PGD in pixel space ([`Pgd`]: an
//! L∞ ball of `epsilon` around the clean pixels, intersected with the valid range [0, 1],
//! `steps` signed-gradient steps of `step_size` on the cross-entropy of the target, from the
//! clean image, every step run). The attacked images of one source image go through the
//! model as one batch (the model is in eval mode, so the images do not interact). Then every
//! asked concept's classifier is applied at every position of the job's layer on the clean
//! and the attacked image, as `hint explain` applies it, and the change is summed up per
//! (source, target) pair ([`PairSummary`]), with each concept's place relative to the pair's
//! classes in the hierarchy. The heatmaps draw σ(logit) upsampled to the crop — a
//! probability, not a min-max normalised map — so a clean and an attacked map of one
//! concept are drawn on one scale, over the very pixels the model saw.

use std::path::PathBuf;

pub use hint_common::attack::{
    Attack, AttackReport, MapChange, MapStats, MappedConcept, PairSummary, Pgd, Relation,
    SkippedImage, ATTACK_FILE,
};
use hint_common::hierarchy::{ConceptId, Hierarchy};
use hint_common::images::LabelMap;
use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::explain::{concept_classifiers, file_error, image_files, stem, ExplainError, Linear};
use crate::images::decode::{self, read_rgb, Preprocess};
use crate::models::{to_host, Backbone, Layer, ReluMode};
use crate::wsol::geometry::upsample_bilinear;
use crate::wsol::heatmap::{self, file_safe};
use crate::wsol::inputs::Job;

/// What to attack and explain.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    /// A finished (or at least trained) job's directory: `spec.json`, `labels.txt`,
    /// `classifiers/`.
    pub job: PathBuf,
    /// An image file, or a directory whose image files (at any depth) are attacked.
    pub images: PathBuf,
    /// Target classes, by the names of the job's label map.
    pub targets: Vec<String>,
    /// Concepts by key or name; empty: every concept with a classifier.
    pub concepts: Vec<String>,
    /// The attack.
    pub pgd: Pgd,
    /// Where the PNGs and `attack.json` go.
    pub out: PathBuf,
    /// The device of the attack and the forward passes.
    pub device: Device,
}

/// Runs `hint attack`.
pub fn run(config: &AttackConfig) -> Result<AttackReport, ExplainError> {
    check_pgd(&config.pgd)?;
    let job = Job::open(&config.job)?;
    let labels_path = job.dir.join("labels.txt");
    let names = LabelMap::from_file(&labels_path)
        .map_err(|e| file_error(&labels_path, e))?
        .names();
    let targets = target_outputs(&config.targets, &names)?;
    // An output the label map does not name (the model may have more) keeps its number.
    let name = |output: usize| match names.get(output) {
        Some(n) if !n.is_empty() => n.clone(),
        _ => format!("output {output}"),
    };
    let concepts = concept_classifiers(&job, &config.concepts, None, config.device)?;
    let images = image_files(&config.images)?;
    let model = Backbone::from_safetensors(job.arch, &job.spec.model.weights, config.device)?;
    model.check_input(job.preprocess.crop)?;
    if (names.len() as i64) > model.num_classes() {
        return Err(ExplainError::Input(format!(
            "{} names {} classes, the model has {} outputs",
            labels_path.display(),
            names.len(),
            model.num_classes()
        )));
    }
    let layer = model.layer(&job.spec.model.layer)?;
    std::fs::create_dir_all(&config.out).map_err(|e| file_error(&config.out, e))?;
    let net = Network {
        model: &model,
        layer,
        preprocess: job.preprocess,
    };

    let mut report = AttackReport {
        job: config.job.clone(),
        model: job.spec.model.architecture.clone(),
        layer: job.spec.model.layer.clone(),
        crop: job.preprocess.crop,
        pgd: config.pgd,
        targets: config.targets.clone(),
        concepts: concepts
            .iter()
            .map(|(c, _)| MappedConcept {
                concept: c.id.0,
                key: c.key.clone(),
                name: c.name.clone(),
            })
            .collect(),
        attacks: Vec::new(),
        pairs: Vec::new(),
        skipped: Vec::new(),
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
        let clean = net.input(&decode::preprocess(&rgb, &job.preprocess))?;
        let seen = net.see(&clean)?;
        let source = argmax(&seen.probabilities[0]);
        let prefix = format!("{k:04}-{}", stem(image));
        let clean_maps = draw_maps(&net, &seen, 0, &concepts, &config.out, &prefix)?;

        let toward: Vec<usize> = targets.iter().copied().filter(|&t| t != source).collect();
        if toward.is_empty() {
            continue;
        }
        let batch = clean.repeat([toward.len() as i64, 1, 1, 1]);
        let attacked = net.pgd(&batch, &toward, &config.pgd)?;
        let linf = net.linf(&attacked, &batch)?;
        let after = net.see(&attacked)?;
        for (b, &target) in toward.iter().enumerate() {
            let to = format!("{prefix}-to-{}", file_safe(&name(target)));
            let maps = draw_maps(&net, &after, b, &concepts, &config.out, &to)?;
            let predicted = argmax(&after.probabilities[b]);
            report.attacks.push(Attack {
                image: image.clone(),
                source: name(source),
                source_probability: f64::from(seen.probabilities[0][source]),
                target: name(target),
                predicted: name(predicted),
                clean_target_probability: f64::from(seen.probabilities[0][target]),
                target_probability: f64::from(after.probabilities[b][target]),
                success: predicted == target,
                linf: linf[b],
                maps: clean_maps
                    .iter()
                    .zip(maps)
                    .zip(&concepts)
                    .map(
                        |(((clean, clean_png), (attacked, attacked_png)), (c, _))| MapChange {
                            concept: c.id.0,
                            clean: *clean,
                            attacked,
                            clean_png: clean_png.clone(),
                            attacked_png,
                        },
                    )
                    .collect(),
            });
        }
    }
    report.pairs = PairSummary::summarise(&report.attacks, &report.concepts, |c, s, t| {
        let above = |class: &str| at_or_above(&job.hierarchy, ConceptId(c), class);
        Relation::of(above(s), above(t))
    });
    let path = config.out.join(ATTACK_FILE);
    std::fs::write(&path, report.to_json()).map_err(|e| file_error(&path, e))?;
    Ok(report)
}

/// The settings must describe an attack that can move an image.
fn check_pgd(pgd: &Pgd) -> Result<(), ExplainError> {
    let ok = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if !ok(pgd.epsilon) || !ok(pgd.step_size) {
        return Err(ExplainError::Input(format!(
            "epsilon ({}) and step size ({}) are pixel values in [0, 1] (8/255 ≈ 0.031)",
            pgd.epsilon, pgd.step_size
        )));
    }
    Ok(())
}

/// The model outputs of the target names, each once; an unknown name lists the known ones.
fn target_outputs(targets: &[String], names: &[String]) -> Result<Vec<usize>, ExplainError> {
    if targets.is_empty() {
        return Err(ExplainError::Input("no target class given".into()));
    }
    let mut outputs = Vec::with_capacity(targets.len());
    for t in targets {
        let output = names.iter().position(|n| n == t).ok_or_else(|| {
            let known: Vec<&str> = names
                .iter()
                .filter(|n| !n.is_empty())
                .map(String::as_str)
                .collect();
            ExplainError::Input(format!(
                "unknown target class '{t}'; the job's classes: {}",
                known.join(", ")
            ))
        })?;
        if !outputs.contains(&output) {
            outputs.push(output);
        }
    }
    Ok(outputs)
}

/// The concept is the class's own leaf concept or one of its ancestors.
fn at_or_above(hierarchy: &Hierarchy, concept: ConceptId, class: &str) -> bool {
    hierarchy
        .labels()
        .iter()
        .position(|l| l == class)
        .is_some_and(|label| hierarchy.concepts_of_label(label as u32).contains(&concept))
}

/// The index of the largest value (the first of equal ones).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .rev()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// A batch as the model saw it: its pixels, the layer's activations and the softmax, on the
/// host.
struct Seen {
    /// `[B, 3, crop, crop]` normalised pixels.
    pixels: Vec<f32>,
    /// `[B, D, H, W]` and `(D, H, W)`.
    z: Vec<f32>,
    shape: (usize, usize, usize),
    /// Per image, the class probabilities.
    probabilities: Vec<Vec<f32>>,
}

/// The model cut at the job's layer, with the job's preprocessing.
struct Network<'a> {
    model: &'a Backbone,
    layer: Layer,
    preprocess: Preprocess,
}

impl Network<'_> {
    fn crop(&self) -> i64 {
        i64::from(self.preprocess.crop)
    }

    /// A channel vector `[1, 3, 1, 1]` on the model's device.
    fn per_channel(&self, values: [f32; 3]) -> Result<Tensor, tch::TchError> {
        Tensor::f_from_slice(&values)?
            .f_view([1, 3, 1, 1])?
            .f_to_device(self.model.device())
    }

    /// One image's normalised pixels as a `[1, 3, crop, crop]` tensor on the device.
    fn input(&self, pixels: &[f32]) -> Result<Tensor, tch::TchError> {
        let c = self.crop();
        Tensor::f_from_slice(pixels)?
            .f_view([1, 3, c, c])?
            .f_to_device(self.model.device())
    }

    /// Activations and probabilities of a batch, without gradients.
    fn see(&self, x: &Tensor) -> Result<Seen, tch::TchError> {
        let (z, probs) = tch::no_grad(|| {
            let z = self.model.forward_to(x, self.layer, ReluMode::Plain);
            let logits = self.model.forward_from(&z, self.layer, ReluMode::Plain);
            (z.map, logits.softmax(-1, Kind::Float))
        });
        let size = z.size();
        let classes = probs.size()[1] as usize;
        Ok(Seen {
            pixels: to_host(x)?,
            z: to_host(&z)?,
            shape: (size[1] as usize, size[2] as usize, size[3] as usize),
            probabilities: to_host(&probs)?
                .chunks(classes)
                .map(<[f32]>::to_vec)
                .collect(),
        })
    }

    /// Targeted PGD on a batch of normalised images, image `b` toward `targets[b]`.
    fn pgd(&self, x0: &Tensor, targets: &[usize], pgd: &Pgd) -> Result<Tensor, tch::TchError> {
        let p = &self.preprocess;
        let mean = self.per_channel(p.mean)?;
        let std = self.per_channel(p.std)?;
        // The ball and the valid range [0, 1] of a pixel, in normalised units.
        let radius = std.reciprocal() * pgd.epsilon;
        let lowest = (-&mean) / &std;
        let highest = (1.0 - &mean) / &std;
        let lo = (x0 - &radius).f_maximum(&lowest)?;
        let hi = (x0 + &radius).f_minimum(&highest)?;
        let step = std.reciprocal() * pgd.step_size;
        let targets: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        let targets = Tensor::f_from_slice(&targets)?.f_to_device(self.model.device())?;
        let mut x = x0.detach();
        for _ in 0..pgd.steps {
            let leaf = x.detach().set_requires_grad(true);
            // Summed, not averaged, so each image's gradient is its own loss's.
            let loss = self.model.forward(&leaf).f_cross_entropy_loss::<Tensor>(
                &targets,
                None,
                tch::Reduction::Sum,
                -100,
                0.0,
            )?;
            let grad = Tensor::f_run_backward(&[loss], &[&leaf], false, false)?.remove(0);
            x = tch::no_grad(|| -> Result<Tensor, tch::TchError> {
                (&x - grad.f_sign()? * &step).f_maximum(&lo)?.f_minimum(&hi)
            })?;
        }
        Ok(x)
    }

    /// Per image, the largest change of a pixel value between `x` and `x0` (pixel units).
    fn linf(&self, x: &Tensor, x0: &Tensor) -> Result<Vec<f64>, tch::TchError> {
        let std = self.per_channel(self.preprocess.std)?;
        let change = ((x - x0) * std).abs().flatten(1, -1).amax([1], false);
        Ok(
            Vec::<f32>::try_from(change.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)?
                .into_iter()
                .map(f64::from)
                .collect(),
        )
    }

    /// Image `b` of a batch of normalised pixels as the RGB crop the model saw.
    fn crop_rgb(&self, pixels: &[f32], b: usize) -> RgbImage {
        let c = self.preprocess.crop as usize;
        let image = &pixels[b * 3 * c * c..(b + 1) * 3 * c * c];
        let p = &self.preprocess;
        RgbImage::from_fn(c as u32, c as u32, |x, y| {
            let at = y as usize * c + x as usize;
            image::Rgb(std::array::from_fn(|ch| {
                let v = image[ch * c * c + at] * p.std[ch] + p.mean[ch];
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            }))
        })
    }
}

/// Every concept's map on image `b` of `seen`, summed up and drawn into `out` as
/// `<prefix>-<concept key>.png`.
fn draw_maps(
    net: &Network,
    seen: &Seen,
    b: usize,
    concepts: &[(hint_common::hierarchy::Concept, Linear)],
    out: &std::path::Path,
    prefix: &str,
) -> Result<Vec<(MapStats, String)>, ExplainError> {
    let (d, h, w) = seen.shape;
    let z = &seen.z[b * d * h * w..(b + 1) * d * h * w];
    let crop = net.preprocess.crop as usize;
    let rgb = net.crop_rgb(&seen.pixels, b);
    let mut maps = Vec::with_capacity(concepts.len());
    for (concept, classifier) in concepts {
        let logits = classifier.map(concept, z, d, h * w)?;
        let probability: Vec<f32> = upsample_bilinear(&logits, h, w, crop)
            .into_iter()
            .map(|v| 1.0 / (1.0 + (-v).exp()))
            .collect();
        let png = format!("{prefix}-{}.png", file_safe(&concept.key));
        let path = out.join(&png);
        heatmap::render(&rgb, &probability, &[], None)
            .save(&path)
            .map_err(|e| file_error(&path, e))?;
        maps.push((MapStats::of(&logits, w), png));
    }
    Ok(maps)
}

//! Training a small backbone on an ImageFolder: the tiny model of the demo and the tests.
//!
//! HINT explains a trained classifier, and no weights can be downloaded here, so hint
//! trains its own: `tiny_cnn` on the synthetic world's leaf classes. The model trained is
//! the very [`Backbone`] extraction loads, run through the very same forward
//! ([`Backbone::forward`], plain ReLUs), on images decoded and preprocessed by the very
//! same pipeline ([`data::ImageSet::load`]), so the saved safetensors file is exactly what
//! `hint extract --model tiny_cnn --weights …` reads, and its outputs are the sorted class
//! names, extraction's default label map.
//!
//! - [`data`]: images in memory ([`ImageSet`]), the seeded stratified held-out
//!   [`split`](data::split), the per-epoch order and flips.
//! - [`initialise`]: seeded He-uniform weights, zero biases, from ChaCha8 (never libtorch's
//!   global generator, so concurrent trainings in one process cannot disturb each other).
//! - [`train`]: Adam with a cosine-decayed learning rate for a fixed number of epochs,
//!   reporting [`Progress`] per batch and per epoch; [`evaluate`] per-class accuracy.
//! - [`TrainMetrics`]: the metrics file written next to the weights.
//!
//! **Reproducibility.** On the CPU, the same data, seed, settings and libtorch thread count
//! give bit-identical weights (every random choice comes from `(seed, identity)`, batches
//! are visited in a seeded order, and libtorch's CPU kernels are deterministic for a fixed
//! thread count). Another thread count, or another processor family (libtorch picks its
//! kernels by instruction set; an AMD EPYC and an Intel Xeon gave different bits and 97.2 %
//! against 97.8 % held-out accuracy from the same world and seed), gives a model of the
//! same quality but not the same bits. CUDA kernels are not guaranteed to be deterministic.

pub mod data;

use std::f64::consts::PI;
use std::path::Path;
use std::time::Instant;

use rand::Rng;
use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

pub use data::{split, ImageSet, Split};

use crate::error::{Error, Result};
use crate::models::{Architecture, Backbone};

/// Identity tag of the initial weights' draws.
const TAG_INIT: u64 = u64::from_be_bytes(*b"tr-inits");

/// Default number of epochs. On the default synthetic world (`hint synth --seed 0`, 8 ×
/// 200 images) `tiny_cnn` reaches 97.8–98.8 % held-out accuracy after 12 epochs and
/// 98.4–99.4 % after 20, which take about 40 s on two dedicated Xeon cores: 20 leaves room
/// for a harder world within the 3-minute budget.
pub const DEFAULT_EPOCHS: usize = 20;
/// Default images per optimisation step.
pub const DEFAULT_BATCH_SIZE: usize = 32;
/// Default peak learning rate of Adam (decayed by a half cosine to zero).
pub const DEFAULT_LEARNING_RATE: f64 = 3e-3;
/// Default fraction of each class's images held out for measuring.
pub const DEFAULT_HOLDOUT: f64 = 0.2;

/// What to train and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The architecture; only those without batch normalisation (hint's backbones run
    /// batch norm in evaluation mode only): `tiny_cnn` and the VGGs.
    pub arch: Architecture,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimisation step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Adam's peak learning rate.
    pub learning_rate: f64,
    /// Fraction of each class's images held out (`[0, 1)`).
    pub holdout: f64,
    /// Seed of the split, the initial weights, the order and the flips.
    pub seed: u64,
    /// Mirror a seeded half of the training images left–right in every epoch.
    pub flip: bool,
    /// Where the model trains.
    pub device: Device,
}

impl TrainConfig {
    /// The defaults for `arch` on the CPU.
    pub fn new(arch: Architecture) -> Self {
        TrainConfig {
            arch,
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            learning_rate: DEFAULT_LEARNING_RATE,
            holdout: DEFAULT_HOLDOUT,
            seed: 0,
            flip: false,
            device: Device::Cpu,
        }
    }

    /// Checks every setting; one error lists every problem.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if !matches!(
            self.arch,
            Architecture::TinyCnn | Architecture::Vgg11 | Architecture::Vgg16 | Architecture::Vgg19
        ) {
            problems.push(format!(
                "hint cannot train {} (its batch normalisation only runs in evaluation mode); \
                 trainable: tiny_cnn, vgg11, vgg16, vgg19",
                self.arch
            ));
        }
        if self.epochs == 0 {
            problems.push("epochs must be at least 1".to_string());
        }
        if self.batch_size == 0 {
            problems.push("batch size must be at least 1".to_string());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            problems.push(format!(
                "learning rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.holdout) {
            problems.push(format!(
                "held-out fraction must be in [0, 1), got {}",
                self.holdout
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }
}

/// Seeded initial weights: every weight of two or more dimensions (convolutions, linear
/// layers, a ViT's class token and position embeddings) He-uniform (`U(±√(6 / fan_in))`,
/// suited to ReLU networks), every `*.bias` zero. One-dimensional tensors that are not
/// biases — batch- and layer-norm scales (1), running means (0) and variances (1) — keep
/// the values the network was built with: drawn, a variance could be negative and the
/// network's evaluation-mode output NaN. Variables are visited by sorted name and each draws
/// from its own `(seed, position)` stream, so the result depends on nothing else.
pub fn initialise(model: &Backbone, seed: u64) -> Result<()> {
    let mut variables: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (position, (name, mut variable)) in variables.into_iter().enumerate() {
            if name.ends_with("bias") {
                let _ = variable.f_zero_()?;
                continue;
            }
            let size = variable.size();
            if size.len() < 2 {
                continue;
            }
            let fan_in: i64 = size.iter().skip(1).product::<i64>();
            let bound = (6.0 / fan_in as f64).sqrt() as f32;
            let parts = [TAG_INIT, position as u64];
            let values = uniform_values(seed, &parts, variable.numel(), bound);
            let values = Tensor::f_from_slice(&values)?.f_view(size.as_slice())?;
            variable.f_copy_(&values)?;
        }
        Ok(())
    })
}

/// `len` values uniform in `[−bound, bound)` from the `(seed, parts)` stream: 24 random bits
/// each → `[0, 1)` exactly representable in f32, then scaled.
pub(crate) fn uniform_values(seed: u64, parts: &[u64], len: usize, bound: f32) -> Vec<f32> {
    let mut rng = hint_common::seed::rng(seed, parts);
    (0..len)
        .map(|_| ((rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * bound)
        .collect()
}

/// What [`train`] reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// One optimisation step done.
    Batch {
        /// Epoch, from 0.
        epoch: usize,
        /// Steps done in this epoch.
        batch: usize,
        /// Steps per epoch.
        batches: usize,
        /// This step's mean cross-entropy.
        loss: f64,
    },
    /// One epoch done and measured.
    Epoch(EpochStats),
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochStats {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training images (as they were seen, while the
    /// weights moved).
    pub loss: f64,
    /// Accuracy on the training images as they were seen.
    pub train_accuracy: f64,
    /// Accuracy on the held-out images after the epoch (`None` without held-out images).
    pub heldout_accuracy: Option<f64>,
    /// Seconds since training started.
    pub seconds: f64,
}

/// Accuracy on one class's images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// Label index (model output).
    pub label: u32,
    /// Class name.
    pub name: String,
    /// Images of the class measured.
    pub images: usize,
    /// Of those, classified as this class.
    pub correct: usize,
    /// `correct / images`; `None` when the class has no image in the set.
    pub accuracy: Option<f64>,
}

/// Accuracy of a model on a set of images, overall and per class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Every class in label order.
    pub per_class: Vec<ClassAccuracy>,
    /// Images measured.
    pub images: usize,
    /// Of those, classified correctly.
    pub correct: usize,
    /// `correct / images`; `None` for an empty set.
    pub accuracy: Option<f64>,
}

/// Classifies `rows` of `data` in batches of `batch_size` and counts hits per class.
pub fn evaluate(
    model: &Backbone,
    data: &ImageSet,
    rows: &[usize],
    batch_size: usize,
) -> Result<Evaluation> {
    let classes = data.classes.len();
    let mut hits = vec![0usize; classes];
    let mut totals = vec![0usize; classes];
    tch::no_grad(|| -> Result<()> {
        for chunk in rows.chunks(batch_size.max(1)) {
            let (x, _) = data.batch(chunk, model.device())?;
            let predicted = predictions(&model.forward(&x))?;
            for (&row, &p) in chunk.iter().zip(&predicted) {
                let label = data.labels[row];
                totals[label as usize] += 1;
                hits[label as usize] += usize::from(p == i64::from(label));
            }
        }
        Ok(())
    })?;
    let ratio = |c: usize, n: usize| (n > 0).then(|| c as f64 / n as f64);
    let per_class = (0..classes)
        .map(|c| ClassAccuracy {
            label: c as u32,
            name: data.classes[c].clone(),
            images: totals[c],
            correct: hits[c],
            accuracy: ratio(hits[c], totals[c]),
        })
        .collect();
    let (correct, images) = (hits.iter().sum(), totals.iter().sum());
    Ok(Evaluation {
        per_class,
        images,
        correct,
        accuracy: ratio(correct, images),
    })
}

/// The argmax of each row of `logits`, on the CPU.
fn predictions(logits: &Tensor) -> Result<Vec<i64>> {
    let argmax = logits.f_argmax(1, false)?.f_to_device(Device::Cpu)?;
    Ok(Vec::<i64>::try_from(&argmax)?)
}

/// What [`train`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Per epoch, in order.
    pub history: Vec<EpochStats>,
    /// The final model on the held-out images.
    pub heldout: Evaluation,
    /// Wall-clock seconds of the training loop (loading and saving excluded).
    pub seconds: f64,
}

/// Trains `model` (already [`initialise`]d) on `split.train` of `data` and measures it on
/// `split.heldout` after every epoch, calling `on_progress` after every step and epoch.
///
/// Adam; the learning rate follows a half cosine from `learning_rate` at the first step to
/// zero after the last, so the weights settle instead of being left mid-jump by a fixed
/// epoch count. Each step is `cross_entropy(model.forward(x), y)` on a batch in the
/// epoch's seeded order, mirrored where [`data::epoch_flips`] says when `config.flip`.
pub fn train(
    model: &Backbone,
    data: &ImageSet,
    split: &Split,
    config: &TrainConfig,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainReport> {
    config.validate()?;
    if model.num_classes() != data.classes.len() as i64 {
        return Err(Error::Config(format!(
            "the model has {} outputs but the images have {} classes",
            model.num_classes(),
            data.classes.len()
        )));
    }
    if split.train.is_empty() {
        return Err(Error::Input("no training images".to_string()));
    }
    let started = Instant::now();
    let mut optimiser = nn::Adam::default().build(model.var_store(), config.learning_rate)?;
    let batches = split.train.len().div_ceil(config.batch_size);
    let total_steps = (batches * config.epochs) as f64;
    let mut history = Vec::with_capacity(config.epochs);
    let mut step = 0usize;
    for epoch in 0..config.epochs {
        let order = data::epoch_order(&split.train, epoch, config.seed);
        let flips = data::epoch_flips(order.len(), epoch, config.seed);
        let (mut loss_sum, mut hits) = (0.0f64, 0usize);
        for (batch, rows) in order.chunks(config.batch_size).enumerate() {
            let (mut x, y) = data.batch(rows, config.device)?;
            if config.flip {
                let start = batch * config.batch_size;
                x = data::flip_where(&x, &flips[start..start + rows.len()])?;
            }
            optimiser.set_lr(cosine(config.learning_rate, step as f64 / total_steps));
            let logits = model.forward(&x);
            let loss = logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
                &y,
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
            )?;
            optimiser.zero_grad();
            loss.f_backward()?;
            optimiser.step();
            step += 1;

            let loss = loss.f_double_value(&[])?;
            loss_sum += loss * rows.len() as f64;
            let predicted = predictions(&logits.detach())?;
            hits += rows
                .iter()
                .zip(&predicted)
                .filter(|(&r, &p)| p == i64::from(data.labels[r]))
                .count();
            on_progress(Progress::Batch {
                epoch,
                batch: batch + 1,
                batches,
                loss,
            });
        }
        if !loss_sum.is_finite() {
            return Err(Error::Config(format!(
                "training diverged in epoch {epoch} (loss {loss_sum}); lower the learning rate"
            )));
        }
        let heldout = evaluate(model, data, &split.heldout, config.batch_size.max(64))?;
        let stats = EpochStats {
            epoch,
            loss: loss_sum / order.len() as f64,
            train_accuracy: hits as f64 / order.len() as f64,
            heldout_accuracy: heldout.accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_progress(Progress::Epoch(stats.clone()));
        history.push(stats);
    }
    let seconds = started.elapsed().as_secs_f64();
    let heldout = evaluate(model, data, &split.heldout, config.batch_size.max(64))?;
    Ok(TrainReport {
        history,
        heldout,
        seconds,
    })
}

/// The learning rate at `progress ∈ [0, 1)` of training: `peak · (1 + cos πp) / 2`.
fn cosine(peak: f64, progress: f64) -> f64 {
    peak * 0.5 * (1.0 + (PI * progress).cos())
}

/// The metrics file written next to the weights (`<out>.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainMetrics {
    /// The architecture's name.
    pub arch: String,
    /// Class names in label (model output) order.
    pub classes: Vec<String>,
    /// Seed of everything random.
    pub seed: u64,
    /// Epochs trained.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam's peak learning rate.
    pub learning_rate: f64,
    /// Fraction held out per class.
    pub holdout: f64,
    /// Whether training images were mirrored.
    pub flip: bool,
    /// Training images.
    pub train_images: usize,
    /// Held-out images.
    pub heldout_images: usize,
    /// Images that could not be decoded: `path: reason`.
    pub skipped: Vec<String>,
    /// Held-out accuracy of the final model, overall (`None` without held-out images).
    pub heldout_accuracy: Option<f64>,
    /// Held-out accuracy per class.
    pub per_class: Vec<ClassAccuracy>,
    /// Per epoch.
    pub history: Vec<EpochStats>,
    /// Wall-clock seconds of the training loop.
    pub train_seconds: f64,
    /// libtorch's intra-op threads during training.
    pub threads: i32,
}

impl TrainMetrics {
    /// Gathers the metrics of a finished training.
    pub fn new(config: &TrainConfig, data: &ImageSet, split: &Split, report: &TrainReport) -> Self {
        TrainMetrics {
            arch: config.arch.name().to_string(),
            classes: data.classes.clone(),
            seed: config.seed,
            epochs: config.epochs,
            batch_size: config.batch_size,
            learning_rate: config.learning_rate,
            holdout: config.holdout,
            flip: config.flip,
            train_images: split.train.len(),
            heldout_images: split.heldout.len(),
            skipped: data
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.path.display(), s.reason))
                .collect(),
            heldout_accuracy: report.heldout.accuracy,
            per_class: report.heldout.per_class.clone(),
            history: report.history.clone(),
            train_seconds: report.seconds,
            threads: tch::get_num_threads(),
        }
    }

    /// Writes the metrics as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Input(format!("{}: cannot encode metrics: {e}", path.display())))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests;

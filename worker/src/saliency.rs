//! Hidden-layer saliency `s = Λ(z, C_k)`: backpropagation from the logit of each image's
//! class, stopped at layer `l`.
//!
//! Every method works on a whole batch at once. The forward pass up to `l` runs without
//! autograd; the activation `z` then becomes a leaf that requires grad, so the backward
//! pass never goes below `l` (HINT only needs `∂ logit / ∂ z`). Images in a batch are
//! independent (models run in eval mode), so one backward of the summed selected logits
//! gives every image's own gradient.
//!
//! Randomness (SmoothGrad's noise) is drawn per image from `(seed, image id)` alone, so
//! the result does not depend on batch composition or on which worker ran it.

use hint_common::seed;
use rand::RngExt;
use rayon::prelude::*;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::guided::ReluMode;
use crate::models::{Backbone, Hidden, Layer};

pub use hint_common::settings::{Baseline, Method, MethodName};

/// The activation of layer `l` and its saliency, both `[B, D, H, W]`, without grad.
#[derive(Debug)]
pub struct LayerSaliency {
    /// `z = f_{≤l}(x)` for the clean input.
    pub activation: Tensor,
    /// `s = Λ(z, C_k)`.
    pub saliency: Tensor,
}

/// What [`compute`] needs besides the model: the batch and where its randomness comes from.
#[derive(Debug)]
pub struct SaliencyInput<'a> {
    /// Preprocessed images, `[B, 3, H, W]`, on the model's device.
    pub images: &'a Tensor,
    /// Model-output index of each image's class, `[B]` (i64), on the model's device.
    pub targets: &'a Tensor,
    /// Each image's id: with `seed`, the only source of per-image randomness.
    pub image_ids: &'a [u64],
    /// The job seed.
    pub seed: u64,
    /// Per-channel normalisation `(mean, std)` the images went through (for
    /// [`Baseline::Black`]).
    pub normalisation: ([f32; 3], [f32; 3]),
}

/// Computes the saliency of `method` at `layer` for a batch. Guided backpropagation on a
/// network without ReLUs (EfficientNet, ConvNeXt) is an error, not a plain gradient.
pub fn compute(
    model: &Backbone,
    layer: Layer,
    method: &Method,
    input: &SaliencyInput<'_>,
) -> Result<LayerSaliency> {
    if let Some(why) = method.unsupported_on(model.arch()) {
        return Err(Error::Config(why));
    }
    let x = input.images;
    let hidden = tch::no_grad(|| model.forward_to(x, layer, ReluMode::Plain));
    let activation = &hidden.map;
    let saliency = match *method {
        Method::Gradient => gradient_at(model, layer, &hidden, input.targets, ReluMode::Plain)?,
        Method::GradientTimesActivation => {
            gradient_at(model, layer, &hidden, input.targets, ReluMode::Plain)? * activation
        }
        Method::GuidedBackprop => {
            gradient_at(model, layer, &hidden, input.targets, ReluMode::Guided)?
        }
        Method::SmoothGrad { samples, noise } => {
            let sigma = noise_sigma(x, noise);
            let mut sum = activation.zeros_like();
            for sample in 0..samples {
                let eps = smoothgrad_noise(input.seed, input.image_ids, sample, &x.size())
                    .to_device(x.device());
                sum += gradient_for_input(model, layer, &(x + &sigma * eps), input.targets)?;
            }
            sum / samples as f64
        }
        Method::IntegratedGradients { steps, baseline } => {
            let x0 = baseline_input(x, baseline, input.normalisation);
            let z0 = tch::no_grad(|| model.forward_to(&x0, layer, ReluMode::Plain)).map;
            let mut sum = activation.zeros_like();
            for k in 1..=steps {
                let alpha = k as f64 / steps as f64;
                sum += gradient_for_input(model, layer, &(&x0 + (x - &x0) * alpha), input.targets)?;
            }
            sum / steps as f64 * (activation - z0)
        }
    };
    Ok(LayerSaliency {
        activation: hidden.map,
        saliency,
    })
}

/// `∂ Σ_b logit_b[target_b] / ∂ z` with backpropagation stopped at `z`'s map (what the
/// network carries past the layer besides, ViT's class token, is held fixed).
fn gradient_at(
    model: &Backbone,
    layer: Layer,
    z: &Hidden,
    targets: &Tensor,
    relu: ReluMode,
) -> Result<Tensor> {
    let leaf = z.map.detach().set_requires_grad(true);
    let logits = model.forward_from(&z.with_map(leaf.shallow_clone()), layer, relu);
    let selected = logits
        .f_gather(1, &targets.unsqueeze(1), false)?
        .sum(Kind::Float);
    let mut grads = Tensor::f_run_backward(&[selected], &[&leaf], false, false)?;
    Ok(grads.pop().expect("one gradient per input"))
}

/// The plain gradient at `l` for another input than the batch's own (a noisy copy, a
/// point on the integration path).
fn gradient_for_input(
    model: &Backbone,
    layer: Layer,
    x: &Tensor,
    targets: &Tensor,
) -> Result<Tensor> {
    let z = tch::no_grad(|| model.forward_to(x, layer, ReluMode::Plain));
    gradient_at(model, layer, &z, targets, ReluMode::Plain)
}

/// σ per image, `[B, 1, 1, 1]`: `noise × (max(x) − min(x))`.
fn noise_sigma(x: &Tensor, noise: f64) -> Tensor {
    let flat = x.flatten(1, -1);
    let range = flat.amax(1, false) - flat.amin(1, false);
    (range * noise).view([-1, 1, 1, 1])
}

/// The standard-normal noise SmoothGrad adds to each image for noisy copy `sample`,
/// shaped like the batch (`[B, 3, H, W]`, on the CPU). Image `b`'s noise depends only on
/// `(seed, image_ids[b], sample)`. Public so that tests can hand the same noise to an
/// independent implementation.
pub fn smoothgrad_noise(seed: u64, image_ids: &[u64], sample: usize, shape: &[i64]) -> Tensor {
    let per_image: usize = shape[1..].iter().product::<i64>() as usize;
    let mut values = vec![0f32; per_image * image_ids.len()];
    values
        .par_chunks_mut(per_image)
        .zip(image_ids.par_iter())
        .for_each(|(chunk, &id)| {
            let mut rng = seed::rng(seed, &[SMOOTHGRAD_STREAM, id, sample as u64]);
            fill_standard_normal(&mut rng, chunk);
        });
    Tensor::from_slice(&values).view(shape)
}

/// Seed-stream tag that keeps SmoothGrad's draws apart from other per-image randomness.
const SMOOTHGRAD_STREAM: u64 = 0x5347; // "SG"

/// Box–Muller: pairs of uniforms in (0, 1] to pairs of independent standard normals.
fn fill_standard_normal(rng: &mut impl RngExt, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        pair[0] = (radius * angle.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = (radius * angle.sin()) as f32;
        }
    }
}

/// The integrated-gradients baseline shaped like `x`.
fn baseline_input(x: &Tensor, baseline: Baseline, (mean, std): ([f32; 3], [f32; 3])) -> Tensor {
    match baseline {
        Baseline::Zero => x.zeros_like(),
        Baseline::Black => {
            let black: Vec<f32> = (0..3).map(|c| -mean[c] / std[c]).collect();
            x.zeros_like()
                + Tensor::from_slice(&black)
                    .view([1, 3, 1, 1])
                    .to_device(x.device())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_per_image_and_standard() {
        let a = smoothgrad_noise(7, &[1, 2], 0, &[2, 3, 16, 16]);
        let b = smoothgrad_noise(7, &[2], 0, &[1, 3, 16, 16]);
        // Image 2's noise does not depend on its neighbours in the batch.
        assert!(a.get(1).equal(&b.get(0)));
        let other_sample = smoothgrad_noise(7, &[2], 1, &[1, 3, 16, 16]);
        assert!(!other_sample.equal(&b));
        let big = smoothgrad_noise(3, &[0], 0, &[1, 3, 100, 100]);
        let mean = big.mean(Kind::Float).double_value(&[]);
        let std = big.std(true).double_value(&[]);
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((std - 1.0).abs() < 0.02, "std {std}");
    }

    #[test]
    fn parameters_are_checked() {
        let bad = Method::new(MethodName::SmoothGrad, 0, 0.15, 1, Baseline::Zero);
        assert!(bad.unwrap_err().to_string().contains("at least 1 sample"));
        let bad = Method::new(MethodName::IntegratedGradients, 1, 0.15, 0, Baseline::Zero);
        assert!(bad.unwrap_err().to_string().contains("at least 1 step"));
        let unknown = MethodName::parse("lrp").unwrap_err();
        assert!(unknown.to_string().contains("guided_backprop"));
    }
}

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
use crate::models::{Backbone, Layer};

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
/// network without ReLUs (EfficientNet, ConvNeXt, ViT) is an error, not a plain gradient.
pub fn compute(
    model: &Backbone,
    layer: Layer,
    method: &Method,
    input: &SaliencyInput<'_>,
) -> Result<LayerSaliency> {
    let mut one = compute_layers(model, &[layer], method, input)?;
    Ok(one.pop().expect("one result per layer"))
}

/// [`compute`] at several layers at once, in `layers`' order. Every gradient the method
/// needs (one, or one per SmoothGrad sample or integration step) is one forward pass from
/// the earliest layer (below it without autograd) and one backward pass stopped there,
/// which gives the gradient at every layer together: the deeper layers' maps are nodes of
/// the same graph. At each layer the result equals [`compute`]'s up to float rounding.
pub fn compute_layers(
    model: &Backbone,
    layers: &[Layer],
    method: &Method,
    input: &SaliencyInput<'_>,
) -> Result<Vec<LayerSaliency>> {
    if let Some(why) = method.unsupported_on(model.arch()) {
        return Err(Error::Config(why));
    }
    if layers.is_empty() {
        return Ok(Vec::new());
    }
    // Depth order for the pass; results go back in the order asked.
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by_key(|&k| layers[k]);
    let sorted: Vec<Layer> = order.iter().map(|&k| layers[k]).collect();
    let x = input.images;
    let targets = input.targets;
    let (activations, saliencies) = match *method {
        Method::Gradient => gradients(model, &sorted, x, targets, ReluMode::Plain)?,
        Method::GradientTimesActivation => {
            let (z, g) = gradients(model, &sorted, x, targets, ReluMode::Plain)?;
            let products = z.iter().zip(&g).map(|(z, g)| g * z).collect();
            (z, products)
        }
        Method::GuidedBackprop => gradients(model, &sorted, x, targets, ReluMode::Guided)?,
        Method::SmoothGrad { samples, noise } => {
            let activations = maps(model, &sorted, x);
            let sigma = noise_sigma(x, noise);
            let mut sums: Vec<Tensor> = activations.iter().map(Tensor::zeros_like).collect();
            for sample in 0..samples {
                let eps = smoothgrad_noise(input.seed, input.image_ids, sample, &x.size())
                    .to_device(x.device());
                let noisy = x + &sigma * eps;
                let (_, g) = gradients(model, &sorted, &noisy, targets, ReluMode::Plain)?;
                for (sum, g) in sums.iter_mut().zip(g) {
                    *sum += g;
                }
            }
            let means = sums.into_iter().map(|s| s / samples as f64).collect();
            (activations, means)
        }
        Method::IntegratedGradients { steps, baseline } => {
            let activations = maps(model, &sorted, x);
            let x0 = baseline_input(x, baseline, input.normalisation);
            let baselines = maps(model, &sorted, &x0);
            let mut sums: Vec<Tensor> = activations.iter().map(Tensor::zeros_like).collect();
            for k in 1..=steps {
                let alpha = k as f64 / steps as f64;
                let point = &x0 + (x - &x0) * alpha;
                let (_, g) = gradients(model, &sorted, &point, targets, ReluMode::Plain)?;
                for (sum, g) in sums.iter_mut().zip(g) {
                    *sum += g;
                }
            }
            let attributions = sums
                .into_iter()
                .zip(activations.iter().zip(&baselines))
                .map(|(sum, (z, z0))| sum / steps as f64 * (z - z0))
                .collect();
            (activations, attributions)
        }
    };
    let mut results: Vec<Option<LayerSaliency>> = (0..layers.len()).map(|_| None).collect();
    for ((activation, saliency), k) in activations.into_iter().zip(saliencies).zip(order) {
        results[k] = Some(LayerSaliency {
            activation,
            saliency,
        });
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every layer"))
        .collect())
}

/// The maps of `layers` (depth order) for `x` and `∂ Σ_b logit_b[target_b] / ∂ map` at
/// each: one forward from the first layer (below it without autograd; what the network
/// carries besides a map, ViT's class token, held fixed there) and one backward stopped
/// at the first layer's map.
fn gradients(
    model: &Backbone,
    layers: &[Layer],
    x: &Tensor,
    targets: &Tensor,
    relu: ReluMode,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let first = layers[0];
    let hidden = tch::no_grad(|| model.forward_to(x, first, ReluMode::Plain));
    let leaf = hidden.map.detach().set_requires_grad(true);
    let (logits, deeper) = model.forward_capturing(
        &hidden.with_map(leaf.shallow_clone()),
        first,
        &layers[1..],
        relu,
    );
    let selected = logits
        .f_gather(1, &targets.unsqueeze(1), false)?
        .sum(Kind::Float);
    let inputs: Vec<&Tensor> = std::iter::once(&leaf).chain(&deeper).collect();
    let grads = Tensor::f_run_backward(&[selected], &inputs, false, false)?;
    let maps = std::iter::once(leaf.detach())
        .chain(deeper.iter().map(Tensor::detach))
        .collect();
    Ok((maps, grads))
}

/// The maps of `layers` (depth order) for `x`, without autograd.
fn maps(model: &Backbone, layers: &[Layer], x: &Tensor) -> Vec<Tensor> {
    tch::no_grad(|| model.forward_maps(x, layers, ReluMode::Plain))
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

    /// One pass at several layers (in any order, an alias beside its stage) gives each
    /// layer what a pass at that layer alone gives, for every method: on a VGG-style, a
    /// ResNet (residual blocks, an alias, points inside a block — two in one block), a
    /// ViT (the class token carried past each layer) and Inception (points inside branches,
    /// one per block; half of a split as the shallowest layer) with random weights.
    #[test]
    fn one_pass_at_several_layers_equals_a_pass_per_layer() {
        use crate::models::Architecture;
        let methods = [
            Method::Gradient,
            Method::GradientTimesActivation,
            Method::GuidedBackprop,
            Method::SmoothGrad {
                samples: 2,
                noise: 0.1,
            },
            Method::IntegratedGradients {
                steps: 3,
                baseline: Baseline::Black,
            },
        ];
        for (arch, names) in [
            (
                Architecture::TinyCnn,
                &["features.7", "features.1", "features.4"][..],
            ),
            (
                Architecture::Resnet18,
                &[
                    "layer3",
                    "layer1.0",
                    "layer3.1",
                    "layer2.0.bn1",
                    "layer2",
                    "layer2.0.conv2",
                    "layer3.1.conv1",
                ],
            ),
            (
                Architecture::VitB16,
                &[
                    "encoder.layers.encoder_layer_2",
                    "conv_proj",
                    "encoder.layers.encoder_layer_7",
                ],
            ),
            (
                Architecture::InceptionV3,
                &[
                    "Mixed_6b.branch7x7_2",
                    "Mixed_5c.branch5x5_1",
                    "Mixed_6a",
                    "Mixed_7b.branch3x3_1",
                ],
            ),
            (
                Architecture::InceptionV3,
                // Half of a split is allowed as the shallowest layer.
                &["Mixed_7c", "Mixed_7b.branch3x3dbl_3a"][..],
            ),
        ] {
            tch::manual_seed(5);
            // Inception's smallest input is 75 × 75.
            let size = if arch == Architecture::InceptionV3 {
                75
            } else {
                64
            };
            let model = Backbone::for_crop(arch, 4, size, tch::Device::Cpu);
            let layers: Vec<Layer> = names.iter().map(|n| model.layer(n).unwrap()).collect();
            let side = i64::from(size);
            let x = Tensor::randn([2, 3, side, side], (Kind::Float, tch::Device::Cpu));
            let targets = Tensor::from_slice(&[1i64, 3]);
            let input = SaliencyInput {
                images: &x,
                targets: &targets,
                image_ids: &[4, 9],
                seed: 3,
                normalisation: ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            };
            for method in &methods {
                if method.unsupported_on(arch).is_some() {
                    continue;
                }
                let together = compute_layers(&model, &layers, method, &input).unwrap();
                for ((name, layer), joint) in names.iter().zip(&layers).zip(&together) {
                    let alone = compute(&model, *layer, method, &input).unwrap();
                    let what = format!("{arch} {name} {}", method.name());
                    assert!(
                        joint.activation.equal(&alone.activation),
                        "{what}: activation"
                    );
                    let scale = alone.saliency.abs().max().double_value(&[]);
                    assert!(scale > 0.0, "{what}: a saliency to compare");
                    let diff = (&joint.saliency - &alone.saliency)
                        .abs()
                        .max()
                        .double_value(&[]);
                    assert!(diff <= 1e-5 * scale, "{what}: {diff:e} of {scale:e}");
                }
            }
        }
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

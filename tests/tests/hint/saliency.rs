//! Hidden-layer saliency, aggregation, normalisation and thresholding against PyTorch:
//! identical weights and inputs, every method × every aggregation, on a VGG-style (the
//! tiny CNN), a ResNet-style (torchvision resnet18), an EfficientNet-B0, a ConvNeXt-T and a
//! ViT-B/16 model; on the last three (no ReLU) guided backpropagation is refused with a
//! clear error.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use hint_worker::models::{Architecture, Backbone};
use hint_worker::responsible::{self, Aggregate, Aggregation};
use hint_worker::saliency::{self, Baseline, Method, SaliencyInput};
use tch::{Device, Kind, Tensor};

use crate::support::run_python;

const SAMPLES: usize = 3;
const NOISE_LEVEL: f64 = 0.15;
const STEPS: usize = 6;
const THRESHOLD: f64 = 0.5;
const SEED: u64 = 11;
const IMAGENET: ([f32; 3], [f32; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

#[test]
fn vgg_style_saliency_matches_pytorch() {
    check_against_pytorch(Architecture::TinyCnn, "features.4", 64, Baseline::Zero);
}

#[test]
fn vgg_style_saliency_at_a_convolution_matches_pytorch() {
    check_against_pytorch(Architecture::TinyCnn, "features.3", 64, Baseline::Black);
}

#[test]
fn resnet_style_saliency_matches_pytorch() {
    check_against_pytorch(Architecture::Resnet18, "layer2.1", 96, Baseline::Zero);
}

#[test]
fn resnet_style_saliency_at_a_stage_alias_matches_pytorch() {
    check_against_pytorch(Architecture::Resnet18, "layer3", 96, Baseline::Black);
}

#[test]
fn resnet_style_saliency_inside_a_block_matches_pytorch() {
    // After the first convolution of a downsampling block: the gradient flows back through
    // the rest of the block, with the block's input (which the downsampling adds back)
    // held fixed — what PyTorch's gradient at the hooked `conv1` output is.
    check_against_pytorch(Architecture::Resnet18, "layer3.0.conv1", 96, Baseline::Zero);
}

#[test]
fn efficientnet_saliency_matches_pytorch() {
    check_against_pytorch(
        Architecture::EfficientnetB0,
        "features.3.1",
        64,
        Baseline::Zero,
    );
}

#[test]
fn efficientnet_saliency_inside_a_block_matches_pytorch() {
    // After the depthwise convolution of a residual block: the gradient goes back through
    // the squeeze and excitation (which pools over positions) and the projection, with the
    // block's input held fixed.
    check_against_pytorch(
        Architecture::EfficientnetB0,
        "features.3.1.block.1",
        64,
        Baseline::Black,
    );
}

#[test]
fn convnext_saliency_matches_pytorch() {
    // Not a stage's last block (features.3 = features.3.2): the downsampling after it
    // starts with a LayerNorm over channels, so the plain gradient there sums to zero over
    // channels, and its `sum` map is rounding noise on both sides.
    check_against_pytorch(
        Architecture::ConvnextTiny,
        "features.3.1",
        64,
        Baseline::Black,
    );
}

#[test]
fn inception_saliency_inside_a_branch_matches_pytorch() {
    // After the second convolution of a 7×7 branch: the gradient goes back through the rest
    // of the branch only; the other branches, computed from the block's input, are held
    // fixed (they do not depend on the point).
    check_against_pytorch(
        Architecture::InceptionV3,
        "Mixed_6b.branch7x7_2",
        96,
        Baseline::Zero,
    );
}

#[test]
fn convnext_saliency_inside_a_block_matches_pytorch() {
    // After the expanding Linear (4 × 192 channels, channels-last in torchvision): the
    // gradient goes back through the GELU and the projection, with the block's input (which
    // the block adds back) held fixed.
    check_against_pytorch(
        Architecture::ConvnextTiny,
        "features.3.1.block.3",
        64,
        Baseline::Zero,
    );
}

#[test]
fn vit_saliency_matches_pytorch() {
    // 64 × 64: a 4 × 4 grid of patch tokens. The map is the patch tokens of the layer's
    // output (class token excluded); the gradient flows back through the later layers'
    // attention, with the class token after the layer held fixed on both sides (PyTorch's
    // gradient with respect to the patch tokens is the same partial derivative).
    check_against_pytorch(
        Architecture::VitB16,
        "encoder.layers.encoder_layer_9",
        64,
        Baseline::Black,
    );
}

fn check_against_pytorch(arch: Architecture, layer_name: &str, size: usize, baseline: Baseline) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let batch = 3;
    python_step(&[
        "setup",
        arch.name(),
        path_str(d),
        "--size",
        &size.to_string(),
        "--batch",
        &batch.to_string(),
    ]);

    let inputs: HashMap<String, Tensor> = Tensor::read_safetensors(d.join("input.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    let x = &inputs["x"];
    let targets = inputs["targets"].to_kind(Kind::Int64);
    let ids: Vec<u64> = (0..batch as u64).map(|i| 100 + i).collect();
    // SmoothGrad's noise is ours (seeded per image); PyTorch gets exactly the same draws.
    let noise: Vec<(String, Tensor)> = (0..SAMPLES)
        .map(|k| {
            (
                format!("noise.{k}"),
                saliency::smoothgrad_noise(SEED, &ids, k, &x.size()),
            )
        })
        .collect();
    Tensor::write_safetensors(&noise, d.join("noise.safetensors")).unwrap();
    python_step(&[
        "reference",
        arch.name(),
        path_str(d),
        "--layer",
        layer_name,
        "--samples",
        &SAMPLES.to_string(),
        "--noise-level",
        &NOISE_LEVEL.to_string(),
        "--steps",
        &STEPS.to_string(),
        "--baseline",
        &baseline.to_string(),
    ]);
    let reference: HashMap<String, Tensor> =
        Tensor::read_safetensors(d.join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();

    let model =
        Backbone::from_safetensors(arch, &d.join("weights.safetensors"), Device::Cpu).unwrap();
    let layer = model.layer(layer_name).unwrap();
    let input = SaliencyInput {
        images: x,
        targets: &targets,
        image_ids: &ids,
        seed: SEED,
        normalisation: IMAGENET,
    };
    let methods = [
        Method::Gradient,
        Method::GradientTimesActivation,
        Method::GuidedBackprop,
        Method::SmoothGrad {
            samples: SAMPLES,
            noise: NOISE_LEVEL,
        },
        Method::IntegratedGradients {
            steps: STEPS,
            baseline,
        },
    ];
    let methods: Vec<Method> = match Method::GuidedBackprop.unsupported_on(arch) {
        None => {
            // Guard against a vacuous pass: guided hooks that did nothing on both sides.
            let plain = &reference["sal:gradient"];
            let guided = &reference["sal:guided_backprop"];
            assert!(
                !plain.allclose(guided, 1e-3, 1e-6, false),
                "{arch} {layer_name}: guided backpropagation equals the plain gradient"
            );
            methods.to_vec()
        }
        Some(why) => {
            // No ReLU: refused, never a plain gradient under guided backpropagation's name.
            let err = saliency::compute(&model, layer, &Method::GuidedBackprop, &input)
                .expect_err("guided backpropagation without ReLUs");
            assert_eq!(err.to_string(), format!("invalid configuration: {why}"));
            assert!(!reference.contains_key("sal:guided_backprop"));
            methods
                .into_iter()
                .filter(|m| *m != Method::GuidedBackprop)
                .collect()
        }
    };
    let mut masks_compared = 0;
    let mut vanished = 0;
    for method in methods {
        let ours = saliency::compute(&model, layer, &method, &input).unwrap();
        let what = format!("{arch} {layer_name} {}", method.name());
        assert_close(
            &ours.activation,
            &reference["act"],
            &format!("{what}: activation"),
        );
        let reference_saliency = &reference[&format!("sal:{}", method.name())];
        assert_close(
            &ours.saliency,
            reference_saliency,
            &format!("{what}: saliency"),
        );
        for aggregation in Aggregation::ALL {
            let raw = aggregation.apply(&ours.saliency);
            if method
                .vanishes_under(aggregation, arch, layer_name)
                .is_some()
            {
                // Every path from the layer to the logits goes through a LayerNorm, which
                // removes the mean over channels: a plain gradient sums to zero over
                // channels on both sides, and the normalised `sum` map is rounding noise.
                // hint warns about it; here the vanishing itself is checked.
                let scale = ours.saliency.abs().max().double_value(&[]);
                let largest = raw.abs().max().double_value(&[]);
                assert!(
                    largest <= 1e-4 * scale,
                    "{what} {aggregation}: expected a vanishing channel sum, got {largest:.3e} \
                     (max |saliency| {scale:.3e})"
                );
                vanished += 1;
                continue;
            }
            let map = responsible::normalise(&raw);
            let reference_map = &reference[&format!("map:{}:{}", method.name(), aggregation)];
            let what = format!("{what} {aggregation}");
            assert_close(&map, reference_map, &format!("{what}: normalised map"));
            masks_compared += assert_masks_equal(&map, reference_map, &what);
        }
    }
    assert!(masks_compared > 0);
    assert_eq!(
        vanished > 0,
        arch.channel_sum_vanishes_at(layer_name),
        "{arch} {layer_name}: vanishing channel sums"
    );
}

fn python_step(args: &[&str]) {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run_python("reference_saliency.py", &args);
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Max |ours − reference| ≤ 1e-4 · max |reference| + 1e-6, with a readable report.
fn assert_close(ours: &Tensor, reference: &Tensor, what: &str) {
    assert_eq!(ours.size(), reference.size(), "{what}: shapes differ");
    let scale = reference.abs().max().double_value(&[]);
    let diff = (ours - reference).abs();
    let worst = diff.max().double_value(&[]);
    let tolerance = 1e-4 * scale + 1e-6;
    assert!(
        worst <= tolerance,
        "{what}: max |diff| {worst:.3e} > tolerance {tolerance:.3e} (max |reference| {scale:.3e}, \
         worst at flat index {})",
        diff.flatten(0, -1).argmax(0, false).int64_value(&[])
    );
}

/// Responsible-region masks (`ŝ > t`) agree everywhere except where the reference value
/// is within 1e-5 of the threshold. Returns how many positions were compared.
fn assert_masks_equal(ours: &Tensor, reference: &Tensor, what: &str) -> i64 {
    let ours_mask = ours.gt(THRESHOLD);
    let reference_mask = reference.gt(THRESHOLD);
    let decidable = (reference - THRESHOLD).abs().gt(1e-5);
    let disagree = ours_mask
        .logical_xor(&reference_mask)
        .logical_and(&decidable);
    let n = disagree.sum(Kind::Int64).int64_value(&[]);
    assert_eq!(
        n, 0,
        "{what}: {n} responsible-region positions differ from PyTorch"
    );
    assert!(
        reference_mask.sum(Kind::Int64).int64_value(&[]) > 0,
        "{what}: the reference has no responsible region at all; the test would prove nothing"
    );
    decidable.sum(Kind::Int64).int64_value(&[])
}

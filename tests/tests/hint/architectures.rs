//! Every backbone against torchvision: the same `state_dict` and input batch through hint's
//! Rust model and through torchvision (`tests/python/reference_models.py`) must give the
//! same logits and the same hidden layers, and splitting at a layer must not change the
//! logits. Plus the errors users see for bad layer names, architectures and weight files.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use hint_worker::models::{Architecture, Backbone, ReluMode};
use hint_worker::Error;
use tch::{Device, Kind, Tensor};

use crate::support::run_python;

/// Batch size and class count of the reference runs (small: the suite runs on CPUs).
const BATCH: i64 = 2;
const NUM_CLASSES: i64 = 10;

fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Fails with a readable report unless `actual` matches `expected` to float32 accuracy
/// relative to the reference's magnitude.
fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape differs");
    let scale = expected.abs().max().double_value(&[]);
    assert!(
        scale.is_finite() && scale > 0.0,
        "{what}: the torchvision reference is degenerate (max |value| = {scale})"
    );
    let diff = (actual - expected).abs();
    let max_diff = diff.max().double_value(&[]);
    let tolerance = 1e-4 * scale + 1e-5;
    if max_diff <= tolerance {
        // With --nocapture: how close, for the record.
        eprintln!(
            "{what}: max |hint - torchvision| = {max_diff:.3e} (max |torchvision| = {scale:.3e})"
        );
        return;
    }
    let worst = diff.flatten(0, -1).argmax(0, false).int64_value(&[]);
    panic!(
        "{what}: max |hint - torchvision| = {max_diff:.3e} > tolerance {tolerance:.3e} \
         (max |torchvision| = {scale:.3e}); at flat index {worst}: hint {:.6e}, \
         torchvision {:.6e}; {} of {} values out of tolerance",
        actual.flatten(0, -1).double_value(&[worst]),
        expected.flatten(0, -1).double_value(&[worst]),
        diff.gt(tolerance).sum(Kind::Int64).int64_value(&[]),
        expected.numel(),
    );
}

/// Runs torchvision on random weights (batch norm statistics included) and a random
/// batch of `size × size` images, loads the same weights into hint's backbone, and
/// compares the logits and `layers`.
fn check_against_torchvision(arch: Architecture, size: u32, layers: &[&str]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = [
        ("--num-classes", NUM_CLASSES.to_string()),
        ("--size", size.to_string()),
        ("--batch", BATCH.to_string()),
        ("--seed", "7".to_string()),
        ("--layers", layers.join(",")),
    ];
    let mut args: Vec<&OsStr> = vec![OsStr::new(arch.name()), dir.path().as_os_str()];
    for (flag, value) in &options {
        args.push(OsStr::new(flag));
        args.push(OsStr::new(value));
    }
    run_python("reference_models.py", &args);

    let weights = dir.path().join("weights.safetensors");
    let backbone = Backbone::from_safetensors(arch, &weights, Device::Cpu)
        .unwrap_or_else(|e| panic!("{arch}: loading torchvision's state_dict: {e}"));
    assert_eq!(
        backbone.num_classes(),
        NUM_CLASSES,
        "{arch}: classes from the file"
    );
    let x = read_tensors(&dir.path().join("input.safetensors"))
        .remove("x")
        .expect("input x");
    let reference = read_tensors(&dir.path().join("reference.safetensors"));

    tch::no_grad(|| {
        let logits = backbone.forward(&x);
        assert_close(&format!("{arch} logits"), &logits, &reference["logits"]);
        for name in layers {
            let layer = backbone
                .layer(name)
                .unwrap_or_else(|e| panic!("{arch}: {e}"));
            let z = backbone.forward_to(&x, layer, ReluMode::Plain);
            assert_close(
                &format!("{arch} layer {name}"),
                &z.map,
                &reference[&format!("layer:{name}")],
            );
            let through = backbone.forward_from(&z, layer, ReluMode::Plain);
            assert_close(
                &format!("{arch} logits split at {name}"),
                &through,
                &reference["logits"],
            );
        }
    });
}

#[test]
fn tiny_cnn_matches_its_pytorch_twin() {
    check_against_torchvision(
        Architecture::TinyCnn,
        64,
        &["features.0", "features.4", "features.7"],
    );
}

#[test]
fn vgg11_matches_torchvision() {
    check_against_torchvision(Architecture::Vgg11, 64, &["features.2", "features.20"]);
}

#[test]
fn vgg16_matches_torchvision() {
    check_against_torchvision(Architecture::Vgg16, 64, &["features.5", "features.30"]);
}

#[test]
fn vgg19_matches_torchvision() {
    check_against_torchvision(Architecture::Vgg19, 64, &["features.30", "features.36"]);
}

#[test]
fn resnet18_matches_torchvision() {
    // Points inside blocks too: a convolution, and a batch norm before its ReLU (in the
    // first block of layer2, whose downsampling the rest of the block adds back).
    check_against_torchvision(
        Architecture::Resnet18,
        64,
        &[
            "bn1",
            "layer1",
            "layer2.0.conv1",
            "layer2.0.bn1",
            "layer3.1.bn2",
            "layer4.1",
        ],
    );
}

#[test]
fn resnet50_matches_torchvision() {
    check_against_torchvision(
        Architecture::Resnet50,
        64,
        &[
            "maxpool",
            "layer2.0",
            "layer2.0.conv2",
            "layer3",
            "layer3.5",
            "layer4.0.bn3",
            "layer4",
        ],
    );
}

#[test]
fn inception_v3_matches_torchvision() {
    // 139 × 139 (torchvision's minimum is 75) leaves a 3 × 3 map at Mixed_7c, so the
    // stride-2 blocks and the final pooling see more than one position.
    // Points inside branches: a chain's first and inner convolutions, a pool branch, a
    // split's input and both kinds of half.
    check_against_torchvision(
        Architecture::InceptionV3,
        139,
        &[
            "Conv2d_1a_3x3",
            "maxpool2",
            "Mixed_5b.branch5x5_1",
            "Mixed_5d",
            "Mixed_5d.branch_pool",
            "Mixed_6a.branch3x3dbl_2",
            "Mixed_6b",
            "Mixed_6c.branch7x7dbl_4",
            "Mixed_7a.branch7x7x3_4",
            "Mixed_7b.branch3x3_1",
            "Mixed_7b.branch3x3_2b",
            "Mixed_7c.branch3x3dbl_3a",
            "Mixed_7c",
        ],
    );
}

#[test]
fn efficientnet_b0_matches_torchvision() {
    // 64 × 64 leaves a 2 × 2 map at features.8: every stride-2 block and the squeeze-
    // excitation pools see more than one position. features.1 is an alias of its only
    // block, features.3 of its second.
    check_against_torchvision(
        Architecture::EfficientnetB0,
        64,
        &[
            "features.0",
            "features.1",
            "features.1.0.block.2",
            "features.2.0",
            "features.3",
            "features.3.1.block.0",
            "features.3.1.block.1",
            "features.5.2",
            "features.6.2.block.2",
            "features.8",
        ],
    );
}

#[test]
fn convnext_tiny_matches_torchvision() {
    // Points inside blocks: the depthwise convolution (channels-first in torchvision), the
    // LayerNorm, GELU and both Linears (channels-last there, compared as [B, C, H, W]).
    check_against_torchvision(
        Architecture::ConvnextTiny,
        64,
        &[
            "features.0",
            "features.1.0.block.0",
            "features.1.1",
            "features.2",
            "features.3.1.block.2",
            "features.5",
            "features.5.4.block.4",
            "features.6",
            "features.7",
            "features.7.2.block.3",
            "features.7.2.block.5",
        ],
    );
}

#[test]
fn vit_b_16_matches_torchvision() {
    // 64 × 64: torchvision's VisionTransformer(image_size=64) with vit_b_16's shape, a 4 × 4
    // grid of patches; hint reads the grid from the position embeddings in the file. A
    // layer's map is its patch tokens (class token excluded).
    check_against_torchvision(
        Architecture::VitB16,
        64,
        &[
            "conv_proj",
            "encoder.layers.encoder_layer_0",
            "encoder.layers.encoder_layer_6",
            "encoder.layers.encoder_layer_11",
        ],
    );
}

#[test]
fn unknown_layer_lists_the_valid_ones() {
    let backbone = Backbone::new(Architecture::TinyCnn, 3, Device::Cpu);
    let err = backbone.layer("features.8").unwrap_err();
    assert!(matches!(err, Error::UnknownLayer { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("'features.8'"), "{message}");
    assert!(
        message.contains("features.0, features.1, features.2"),
        "{message}"
    );
    assert!(message.contains("features.7"), "{message}");
    // Where hint knows why a torchvision name is no layer, it says so.
    let resnet = Backbone::new(Architecture::Resnet18, 3, Device::Cpu);
    let message = resnet.layer("layer3.1.relu").unwrap_err().to_string();
    assert!(
        message.contains("'layer3.1.relu' (torchvision calls layer3.1's one `relu` module"),
        "{message}"
    );
}

#[test]
fn resnet_aliases_are_listed_and_resolve_to_the_last_block() {
    let backbone = Backbone::new(Architecture::Resnet18, 4, Device::Cpu);
    let names = backbone.layer_names();
    assert!(names.iter().any(|n| n == "layer3"), "{names:?}");
    assert_eq!(
        backbone.layer("layer3").unwrap(),
        backbone.layer("layer3.1").unwrap()
    );
}

#[test]
fn unknown_architecture_lists_the_valid_ones() {
    let err = Architecture::parse("vgg13").unwrap_err();
    assert!(
        matches!(
            err,
            hint_common::settings::SettingError::UnknownArchitecture { .. }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    for arch in Architecture::ALL {
        assert!(message.contains(arch.name()), "{message}");
    }
}

/// Saves a random `TinyCnn` with `classes` outputs, edited by `edit`, and loads it back.
fn load_edited_tiny(
    classes: i64,
    edit: impl FnOnce(&mut Vec<(String, Tensor)>),
) -> (Backbone, hint_worker::Result<Backbone>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tiny.safetensors");
    let original = Backbone::new(Architecture::TinyCnn, classes, Device::Cpu);
    original.save_safetensors(&path).expect("saving");
    let mut tensors = Tensor::read_safetensors(&path).expect("reading back");
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &path).expect("rewriting");
    let loaded = Backbone::from_safetensors(Architecture::TinyCnn, &path, Device::Cpu);
    (original, loaded)
}

#[test]
fn num_classes_comes_from_the_file_and_weights_round_trip() {
    let (original, loaded) = load_edited_tiny(5, |_| {});
    let loaded = loaded.expect("loading what hint saved");
    assert_eq!(loaded.num_classes(), 5);
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (a, b) = tch::no_grad(|| (original.forward(&x), loaded.forward(&x)));
    assert_eq!(a.size(), [2, 5]);
    assert!(a.equal(&b), "reloaded weights give different logits");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let (_, loaded) = load_edited_tiny(5, |tensors| {
        let entry = tensors
            .iter_mut()
            .find(|(n, _)| n == "features.3.weight")
            .expect("features.3.weight");
        entry.1 = Tensor::zeros([32, 16, 5, 5], (Kind::Float, Device::Cpu));
    });
    let err = loaded.unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(
            "tensor 'features.3.weight' has shape [32, 16, 5, 5] in the file \
             but tiny_cnn needs [32, 16, 3, 3]"
        ),
        "{message}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let (_, loaded) = load_edited_tiny(5, |tensors| {
        tensors.retain(|(n, _)| n != "features.6.bias");
    });
    let message = loaded.unwrap_err().to_string();
    assert!(
        message.contains("tiny_cnn needs are missing: 'features.6.bias'"),
        "{message}"
    );
}

#[test]
fn weights_of_another_architecture_are_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tiny.safetensors");
    Backbone::new(Architecture::TinyCnn, 5, Device::Cpu)
        .save_safetensors(&path)
        .expect("saving");
    let message = Backbone::from_safetensors(Architecture::Resnet18, &path, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(message.contains("no tensor 'fc.weight'"), "{message}");
    assert!(
        message.contains("is this a torchvision resnet18 state_dict?"),
        "{message}"
    );

    let message = Backbone::from_safetensors(
        Architecture::TinyCnn,
        &dir.path().join("absent.safetensors"),
        Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("absent.safetensors"), "{message}");
}

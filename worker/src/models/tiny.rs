//! `TinyCnn`: a three-convolution VGG-shaped network, small enough to train in tests and
//! the demo on a CPU in seconds.
//!
//! Its PyTorch twin is `tiny_cnn` in `tests/python/hint_models.py`; the two must stay
//! identical module for module:
//!
//! ```text
//! features   = Sequential(Conv2d(3, 16, 3, padding=1), ReLU, MaxPool2d(2, 2),
//!                         Conv2d(16, 32, 3, padding=1), ReLU, MaxPool2d(2, 2),
//!                         Conv2d(32, 64, 3, padding=1), ReLU)
//! avgpool    = AdaptiveAvgPool2d(1); flatten
//! classifier = Sequential(Linear(64, 64), ReLU, Linear(64, num_classes))
//! ```

use tch::nn;

use hint_common::architecture::TINY_FEATURES;

use super::vgg;
use super::Parts;

/// Builds `TinyCnn` under `root`: stages `features.0` … `features.7`.
pub(super) fn build(root: &nn::Path, num_classes: i64) -> Parts {
    let stages = vgg::features(&(root / "features"), 3, TINY_FEATURES);
    let head = vgg::ClassifierHead::new(
        &(root / "classifier"),
        1,
        &[(0, 64, 64), (2, 64, num_classes)],
    );
    Parts {
        stages,
        aliases: Vec::new(),
        head: Box::new(head),
        tokens: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReluMode;
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn matches_the_python_twin_module_for_module() {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root(), 7);
        let names: Vec<&str> = parts.stages.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<String> = (0..8).map(|i| format!("features.{i}")).collect();
        assert_eq!(names, expected);
        let mut keys: Vec<(String, Vec<i64>)> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        keys.sort();
        let expected: Vec<(String, Vec<i64>)> = [
            ("classifier.0.bias", vec![64]),
            ("classifier.0.weight", vec![64, 64]),
            ("classifier.2.bias", vec![7]),
            ("classifier.2.weight", vec![7, 64]),
            ("features.0.bias", vec![16]),
            ("features.0.weight", vec![16, 3, 3, 3]),
            ("features.3.bias", vec![32]),
            ("features.3.weight", vec![32, 16, 3, 3]),
            ("features.6.bias", vec![64]),
            ("features.6.weight", vec![64, 32, 3, 3]),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn shapes_through_the_stages() {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root(), 7);
        let mut x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        for (_, stage) in &parts.stages {
            x = stage.forward(&x, ReluMode::Plain);
        }
        assert_eq!(x.size(), [2, 64, 16, 16]);
        assert_eq!(parts.head.forward(&x, ReluMode::Plain).size(), [2, 7]);
    }
}

//! torchvision's EfficientNet-B0 in eval mode.
//!
//! Stages are `features.0` (the stem), every inverted-residual block `features.1.0` …
//! `features.7.0`, and `features.8` (the 1×1 convolution to 1,280 channels); `features.1`
//! … `features.7` are aliases of their last block, as hooking torchvision's
//! `model.features[k]` gives. Stochastic depth is the identity in eval mode and dropout
//! before the classifier too, so neither is built.
//!
//! There is no ReLU: every activation is a SiLU and the squeeze-excitation gates are
//! sigmoids, so [`ReluMode`] changes nothing here — guided backpropagation is refused on
//! this architecture before it reaches a model (`Method::unsupported_on`).

use hint_common::architecture::{MbConvStage, EFFICIENTNET_B0, EFFICIENTNET_B0_LAST_CHANNELS};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::resnet::batch_norm;
use super::{GlobalPoolHead, Parts, ReluMode, Stage};

/// Channels of the stem's output, `features.1`'s input.
const STEM_CHANNELS: i64 = 32;

/// Builds torchvision's `efficientnet_b0` under `root`.
pub(super) fn build(root: &nn::Path, num_classes: i64) -> Parts {
    let features = root / "features";
    let stem = ConvNormActivation::new(&(&features / 0), 3, STEM_CHANNELS, 3, 2, 1, true);
    let mut stages: Vec<(String, Box<dyn Stage>)> = vec![("features.0".into(), Box::new(stem))];
    let mut aliases = Vec::new();
    for (k, stage) in EFFICIENTNET_B0.iter().enumerate() {
        let index = k + 1;
        for i in 0..stage.blocks {
            let path = &features / index / i;
            let block = MbConv::new(&path, stage, i == 0);
            stages.push((format!("features.{index}.{i}"), Box::new(block)));
        }
        aliases.push((format!("features.{index}"), stages.len() - 1));
    }
    let last_index = EFFICIENTNET_B0.len() + 1;
    let last_inputs = EFFICIENTNET_B0[EFFICIENTNET_B0.len() - 1].outputs;
    let head_conv = ConvNormActivation::new(
        &(&features / last_index),
        last_inputs,
        EFFICIENTNET_B0_LAST_CHANNELS,
        1,
        1,
        1,
        true,
    );
    stages.push((format!("features.{last_index}"), Box::new(head_conv)));
    // classifier = Sequential(Dropout (the identity in eval mode), Linear).
    let fc = nn::linear(
        root / "classifier" / 1,
        EFFICIENTNET_B0_LAST_CHANNELS,
        num_classes,
        Default::default(),
    );
    Parts {
        stages,
        aliases,
        head: Box::new(GlobalPoolHead { fc }),
        tokens: None,
    }
}

/// torchvision's `Conv2dNormActivation`: a convolution without bias (padding `(k − 1)/2`,
/// `groups` channels per group), `BatchNorm2d` (`0`, `1`), then a SiLU when `silu`.
#[derive(Debug)]
struct ConvNormActivation {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    silu: bool,
}

impl ConvNormActivation {
    fn new(
        path: &nn::Path,
        inputs: i64,
        outputs: i64,
        kernel: i64,
        stride: i64,
        groups: i64,
        silu: bool,
    ) -> Self {
        let config = nn::ConvConfig {
            stride,
            padding: (kernel - 1) / 2,
            groups,
            bias: false,
            ..Default::default()
        };
        ConvNormActivation {
            conv: nn::conv2d(path / 0, inputs, outputs, kernel, config),
            bn: batch_norm(&(path / 1), outputs),
            silu,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.bn.forward_t(&self.conv.forward(x), false);
        if self.silu {
            y.silu()
        } else {
            y
        }
    }
}

impl Stage for ConvNormActivation {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        ConvNormActivation::forward(self, x)
    }
}

/// torchvision's `SqueezeExcitation`: global average pool, `fc1` (1×1 convolution), SiLU,
/// `fc2`, sigmoid, and the input scaled by the result per channel.
#[derive(Debug)]
struct SqueezeExcitation {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
}

impl SqueezeExcitation {
    fn new(path: &nn::Path, channels: i64, squeezed: i64) -> Self {
        let config = nn::ConvConfig::default();
        SqueezeExcitation {
            fc1: nn::conv2d(path / "fc1", channels, squeezed, 1, config),
            fc2: nn::conv2d(path / "fc2", squeezed, channels, 1, config),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let scale = x.adaptive_avg_pool2d([1, 1]);
        let scale = self.fc2.forward(&self.fc1.forward(&scale).silu()).sigmoid();
        scale * x
    }
}

/// The points inside an MBConv block: the outputs of its `block` modules (expansion,
/// depthwise convolution, squeeze and excitation, projection), without the expansion where
/// the block has none.
const EXPANDING_POINTS: [&str; 4] = ["block.0", "block.1", "block.2", "block.3"];
const POINTS: [&str; 3] = ["block.0", "block.1", "block.2"];

/// torchvision's `MBConv`: an optional 1×1 expansion, a depthwise convolution, squeeze and
/// excitation, a 1×1 projection without activation, and the input added when the block
/// keeps its shape (stride 1, as many channels out as in).
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    squeeze_excitation: SqueezeExcitation,
    project: ConvNormActivation,
    residual: bool,
}

impl MbConv {
    /// Block `path` of `stage`; the first block of a stage takes its inputs and stride.
    fn new(path: &nn::Path, stage: &MbConvStage, first: bool) -> Self {
        let (inputs, stride) = if first {
            (stage.inputs, stage.stride)
        } else {
            (stage.outputs, 1)
        };
        let hidden = inputs * stage.expand_ratio;
        let block = path / "block";
        // The modules of `block` are numbered in order, the expansion only when present.
        let mut index = 0;
        let mut next = || {
            index += 1;
            &block / (index - 1)
        };
        let expand = (hidden != inputs)
            .then(|| ConvNormActivation::new(&next(), inputs, hidden, 1, 1, 1, true));
        let depthwise =
            ConvNormActivation::new(&next(), hidden, hidden, stage.kernel, stride, hidden, true);
        let squeeze_excitation = SqueezeExcitation::new(&next(), hidden, (inputs / 4).max(1));
        let project = ConvNormActivation::new(&next(), hidden, stage.outputs, 1, 1, 1, false);
        MbConv {
            expand,
            depthwise,
            squeeze_excitation,
            project,
            residual: stride == 1 && inputs == stage.outputs,
        }
    }
}

impl Stage for MbConv {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        self.between(x, x, None, None, relu)
    }

    fn points(&self) -> &'static [&'static str] {
        match self.expand {
            Some(_) => &EXPANDING_POINTS,
            None => &POINTS,
        }
    }

    fn between(
        &self,
        main: &Tensor,
        input: &Tensor,
        from: Option<usize>,
        to: Option<usize>,
        _relu: ReluMode,
    ) -> Tensor {
        let steps = self.points().len();
        let mut y = main.shallow_clone();
        for step in from.map_or(0, |p| p + 1)..to.map_or(steps, |p| p + 1) {
            y = self.step(step, &y);
        }
        match (to, self.residual) {
            (None, true) => y + input,
            _ => y,
        }
    }
}

impl MbConv {
    /// Module `step` of `block` (the numbering of [`Stage::points`]).
    fn step(&self, step: usize, x: &Tensor) -> Tensor {
        // Without an expansion, `block.0` is the depthwise convolution.
        let module = step + usize::from(self.expand.is_none());
        match (module, &self.expand) {
            (0, Some(expand)) => expand.forward(x),
            (1, _) => self.depthwise.forward(x),
            (2, _) => self.squeeze_excitation.forward(x),
            (3, _) => self.project.forward(x),
            _ => unreachable!("an MBConv block has {} points", self.points().len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn parts() -> (nn::VarStore, Parts) {
        Parts::built(|root| build(root, 10))
    }

    #[test]
    fn variables_are_torchvision_state_dict_keys() {
        let (vs, _parts) = parts();
        // torchvision's efficientnet_b0 state_dict has 360 entries, 49 of them
        // num_batches_tracked; features.1.0 has no expansion, so its depthwise
        // convolution is block.0.
        Parts::assert_variables(
            &vs,
            360 - 49,
            &[
                ("features.0.0.weight", &[32, 3, 3, 3]),
                ("features.1.0.block.0.0.weight", &[32, 1, 3, 3]),
                ("features.1.0.block.1.fc1.weight", &[8, 32, 1, 1]),
                ("features.2.0.block.0.0.weight", &[96, 16, 1, 1]),
                ("features.3.1.block.1.0.weight", &[240, 1, 5, 5]),
                ("features.2.0.block.2.fc2.bias", &[96]),
                ("features.7.0.block.3.1.running_var", &[320]),
                ("features.8.0.weight", &[1280, 320, 1, 1]),
                ("classifier.1.weight", &[10, 1280]),
            ],
        );
    }

    #[test]
    fn downsamples_by_32_and_names_every_block() {
        let (_vs, parts) = parts();
        let x = Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (features, logits) = parts.run(&x);
        assert_eq!(
            (features.size(), logits.size()),
            (vec![1, 1280, 2, 2], vec![1, 10])
        );
        assert_eq!(parts.stage_names()[16], "features.7.0");
        assert_eq!(parts.alias_targets()[5], ("features.6", "features.6.3"));
    }
}

//! torchvision's ConvNeXt-T in eval mode.
//!
//! Stages are `features.0` (the 4×4 patchify stem), every block `features.1.0` …
//! `features.7.2`, and the downsamplings `features.2`, `.4`, `.6`; `features.1`, `.3`, `.5`
//! and `.7` are aliases of their last block, as hooking torchvision's `model.features[k]`
//! gives. Stochastic depth is the identity in eval mode, so it is not built.
//!
//! The operations are torchvision's, in its order, so results match it closely: a
//! `LayerNorm2d` permutes to channels-last, normalises over channels and permutes back; a
//! block's `Permute`, `nn.LayerNorm`, `nn.Linear` and exact (erf) GELU run channels-last,
//! and its output is scaled per channel by `layer_scale` before the input is added. There
//! is no ReLU, so [`ReluMode`] changes nothing here — guided backpropagation is refused on
//! this architecture before it reaches a model (`Method::unsupported_on`).

use hint_common::architecture::CONVNEXT_TINY;
use tch::nn::{self, Module};
use tch::Tensor;

use super::{Parts, ReluMode, Stage};

/// The epsilon of every LayerNorm of ConvNeXt.
const EPS: f64 = 1e-6;

/// Builds torchvision's `convnext_tiny` under `root`.
pub(super) fn build(root: &nn::Path, num_classes: i64) -> Parts {
    let features = root / "features";
    let mut stages: Vec<(String, Box<dyn Stage>)> = Vec::new();
    let mut aliases = Vec::new();
    let mut inputs = 3;
    for (k, &(channels, blocks)) in CONVNEXT_TINY.iter().enumerate() {
        // features.0 is the stem, features.2, .4, .6 downsample the stage before.
        let index = 2 * k;
        let path = &features / index;
        let entry = if k == 0 {
            Entry::Stem {
                conv: patchify(&(&path / 0), inputs, channels, 4),
                norm: LayerNorm2d::new(&(&path / 1), channels),
            }
        } else {
            Entry::Downsample {
                norm: LayerNorm2d::new(&(&path / 0), inputs),
                conv: patchify(&(&path / 1), inputs, channels, 2),
            }
        };
        stages.push((format!("features.{index}"), Box::new(entry)));
        for i in 0..blocks {
            let block = Block::new(&(&features / (index + 1) / i), channels);
            stages.push((format!("features.{}.{i}", index + 1), Box::new(block)));
        }
        aliases.push((format!("features.{}", index + 1), stages.len() - 1));
        inputs = channels;
    }
    // classifier = Sequential(LayerNorm2d, Flatten, Linear).
    let classifier = root / "classifier";
    let head = Head {
        norm: LayerNorm2d::new(&(&classifier / 0), inputs),
        fc: nn::linear(&classifier / 2, inputs, num_classes, Default::default()),
    };
    Parts {
        stages,
        aliases,
        head: Box::new(head),
        tokens: None,
    }
}

/// A `kernel × kernel` convolution with stride `kernel` (and a bias): the stem's 4×4
/// patchify and the downsamplings' 2×2.
fn patchify(path: &nn::Path, inputs: i64, outputs: i64, kernel: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride: kernel,
        ..Default::default()
    };
    nn::conv2d(path, inputs, outputs, kernel, config)
}

/// `F.linear`, as `nn.Linear` computes it (one fused multiply-add with the bias, which
/// `nn::Linear::forward`'s matmul-then-add is not).
fn linear(layer: &nn::Linear, x: &Tensor) -> Tensor {
    x.linear(&layer.ws, layer.bs.as_ref())
}

/// `nn.LayerNorm(channels, eps=1e-6)` over the last dimension.
fn layer_norm(path: &nn::Path, channels: i64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps: EPS,
        ..Default::default()
    };
    nn::layer_norm(path, vec![channels], config)
}

/// torchvision's `LayerNorm2d`: a LayerNorm over the channels of an NCHW tensor.
#[derive(Debug)]
struct LayerNorm2d(nn::LayerNorm);

impl LayerNorm2d {
    fn new(path: &nn::Path, channels: i64) -> Self {
        LayerNorm2d(layer_norm(path, channels))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.0
            .forward(&x.permute([0, 2, 3, 1]))
            .permute([0, 3, 1, 2])
    }
}

/// `features.0` (`Conv2d` then `LayerNorm2d`) or a downsampling (`LayerNorm2d` then
/// `Conv2d`).
#[derive(Debug)]
enum Entry {
    Stem { conv: nn::Conv2D, norm: LayerNorm2d },
    Downsample { norm: LayerNorm2d, conv: nn::Conv2D },
}

impl Stage for Entry {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        match self {
            Entry::Stem { conv, norm } => norm.forward(&conv.forward(x)),
            Entry::Downsample { norm, conv } => conv.forward(&norm.forward(x)),
        }
    }
}

/// torchvision's `CNBlock`: `block` = 7×7 depthwise convolution (`0`), `Permute` to
/// channels-last, `LayerNorm` (`2`), `Linear` to 4× the channels (`3`), GELU, `Linear`
/// back (`5`), `Permute` back; then `layer_scale * block(x) + x`.
#[derive(Debug)]
struct Block {
    depthwise: nn::Conv2D,
    norm: nn::LayerNorm,
    expand: nn::Linear,
    project: nn::Linear,
    layer_scale: Tensor,
}

impl Block {
    fn new(path: &nn::Path, channels: i64) -> Self {
        let block = path / "block";
        let depthwise = nn::ConvConfig {
            padding: 3,
            groups: channels,
            ..Default::default()
        };
        Block {
            depthwise: nn::conv2d(&block / 0, channels, channels, 7, depthwise),
            norm: layer_norm(&(&block / 2), channels),
            expand: nn::linear(&block / 3, channels, 4 * channels, Default::default()),
            project: nn::linear(&block / 5, 4 * channels, channels, Default::default()),
            // torchvision's initial value.
            layer_scale: path.var("layer_scale", &[channels, 1, 1], nn::Init::Const(1e-6)),
        }
    }
}

/// The points inside a block, torchvision's `block` modules that compute something (the
/// two `Permute`s, `block.1` and `block.6`, only move the same values): the depthwise
/// convolution, the LayerNorm, the expanding Linear, the GELU and the projecting Linear.
/// From `block.2` on, torchvision's tensors are channels-last; the map at such a point is
/// permuted to channels-first like every other map (`[B, C, H, W]`).
const BLOCK_POINTS: [&str; 5] = ["block.0", "block.2", "block.3", "block.4", "block.5"];

impl Stage for Block {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        self.between(x, x, None, None, relu)
    }

    fn points(&self) -> &'static [&'static str] {
        &BLOCK_POINTS
    }

    fn between(
        &self,
        main: &Tensor,
        input: &Tensor,
        from: Option<usize>,
        to: Option<usize>,
        _relu: ReluMode,
    ) -> Tensor {
        // Steps 0..5 are BLOCK_POINTS' modules; step 0 runs channels-first, the rest
        // channels-last.
        let (first, end) = (from.map_or(0, |p| p + 1), to.map_or(5, |p| p + 1));
        let mut y = if first == 0 {
            main.shallow_clone()
        } else {
            main.permute([0, 2, 3, 1])
        };
        for step in first..end {
            y = match step {
                0 => self.depthwise.forward(&y).permute([0, 2, 3, 1]),
                1 => self.norm.forward(&y),
                2 => linear(&self.expand, &y),
                3 => y.gelu("none"),
                _ => linear(&self.project, &y),
            };
        }
        // Back to channels-first: a point's map, or the branch the block adds to its input.
        let y = y.permute([0, 3, 1, 2]);
        match to {
            Some(_) => y,
            None => &self.layer_scale * y + input,
        }
    }
}

/// `AdaptiveAvgPool2d(1)`, then `classifier`: `LayerNorm2d`, `Flatten`, `Linear`.
#[derive(Debug)]
struct Head {
    norm: LayerNorm2d,
    fc: nn::Linear,
}

impl Stage for Head {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        let pooled = self.norm.forward(&x.adaptive_avg_pool2d([1, 1]));
        linear(&self.fc, &pooled.flatten(1, -1))
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
        // torchvision's convnext_tiny state_dict has 182 entries (no buffers).
        Parts::assert_variables(
            &vs,
            182,
            &[
                ("features.0.0.weight", &[96, 3, 4, 4]),
                ("features.0.1.bias", &[96]),
                ("features.1.0.layer_scale", &[96, 1, 1]),
                ("features.1.0.block.0.weight", &[96, 1, 7, 7]),
                ("features.1.2.block.2.weight", &[96]),
                ("features.3.0.block.3.weight", &[768, 192]),
                ("features.5.8.block.5.bias", &[384]),
                ("features.2.0.weight", &[96]),
                ("features.6.1.weight", &[768, 384, 2, 2]),
                ("classifier.0.weight", &[768]),
                ("classifier.2.weight", &[10, 768]),
            ],
        );
    }

    #[test]
    fn downsamples_by_32_and_aliases_each_block_stage() {
        let (_vs, parts) = parts();
        let x = Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (features, logits) = parts.run(&x);
        assert_eq!(
            (features.size(), logits.size()),
            (vec![1, 768, 2, 2], vec![1, 10])
        );
        assert_eq!(
            parts.alias_targets(),
            [
                ("features.1", "features.1.2"),
                ("features.3", "features.3.2"),
                ("features.5", "features.5.8"),
                ("features.7", "features.7.2")
            ]
        );
    }
}

//! torchvision's ResNet-18 (basic blocks) and ResNet-50 (bottlenecks, "v1.5": the stride
//! of a downsampling bottleneck is on its 3×3 convolution).
//!
//! Stages are the stem's modules (`conv1`, `bn1`, `relu`, `maxpool`) and then every
//! residual block (`layer1.0` … `layer4.2`); `layer1` … `layer4` are aliases of their last
//! block, as hooking torchvision's `model.layer3` gives the output of `layer3[-1]`. Inside
//! every block, its convolutions and batch norms are points of their own
//! (`layer3.1.conv2`, `layer3.1.bn2`: a batch norm's output before the ReLU that follows
//! it, as a hook on torchvision's `bn` module sees it).

use hint_common::architecture::{RESNET18_BLOCKS, RESNET50_BLOCKS};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::vgg::{Conv, Relu};
use super::{GlobalPoolHead, MaxPool, Parts, ReluMode, Stage};

/// Which ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Depth {
    /// `resnet18`: basic blocks, `[2, 2, 2, 2]`.
    D18,
    /// `resnet50`: bottleneck blocks, `[3, 4, 6, 3]`.
    D50,
}

impl Depth {
    /// Blocks per layer.
    fn blocks(self) -> [usize; 4] {
        match self {
            Depth::D18 => RESNET18_BLOCKS,
            Depth::D50 => RESNET50_BLOCKS,
        }
    }

    /// Output channels of a block over its `planes` (torchvision's `expansion`).
    fn expansion(self) -> i64 {
        match self {
            Depth::D18 => 1,
            Depth::D50 => 4,
        }
    }
}

/// Builds torchvision's `resnet18`/`resnet50` under `root`.
pub(super) fn build(root: &nn::Path, depth: Depth, num_classes: i64) -> Parts {
    let mut stages: Vec<(String, Box<dyn Stage>)> = vec![
        (
            "conv1".into(),
            Box::new(Conv(conv(&(root / "conv1"), 3, 64, 7, 2, 3))),
        ),
        (
            "bn1".into(),
            Box::new(BatchNorm(batch_norm(&(root / "bn1"), 64))),
        ),
        ("relu".into(), Box::new(Relu)),
        (
            "maxpool".into(),
            Box::new(MaxPool {
                kernel: 3,
                stride: 2,
                padding: 1,
            }),
        ),
    ];
    let mut aliases = Vec::new();
    let mut in_channels = 64;
    for (k, (blocks, planes)) in depth
        .blocks()
        .into_iter()
        .zip([64, 128, 256, 512])
        .enumerate()
    {
        let layer = format!("layer{}", k + 1);
        for i in 0..blocks {
            // The first block of every layer but layer1 halves the resolution.
            let stride = if i == 0 && k > 0 { 2 } else { 1 };
            let path = root / layer.as_str() / i;
            let block = Block::new(&path, depth, in_channels, planes, stride);
            in_channels = planes * depth.expansion();
            stages.push((format!("{layer}.{i}"), Box::new(block)));
        }
        aliases.push((layer, stages.len() - 1));
    }
    let fc = nn::linear(root / "fc", in_channels, num_classes, Default::default());
    Parts {
        stages,
        aliases,
        head: Box::new(GlobalPoolHead { fc }),
        tokens: None,
    }
}

/// `Conv2d(bias=False)`, square kernel, as everywhere in ResNet.
fn conv(
    path: &nn::Path,
    inputs: i64,
    outputs: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(path, inputs, outputs, kernel, config)
}

/// `BatchNorm2d(channels)` (eps 1e-5) initialised like torchvision (weight 1, bias 0).
pub(super) fn batch_norm(path: &nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        ..Default::default()
    };
    nn::batch_norm2d(path, channels, config)
}

/// The stem's batch norm as a stage (running statistics: eval mode).
#[derive(Debug)]
struct BatchNorm(nn::BatchNorm);

impl Stage for BatchNorm {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        self.0.forward_t(x, false)
    }
}

/// The points inside a basic block and a bottleneck.
const BASIC_POINTS: [&str; 4] = ["conv1", "bn1", "conv2", "bn2"];
const BOTTLENECK_POINTS: [&str; 6] = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"];

/// A residual block. `BasicBlock` and `Bottleneck` share one shape: conv-bn pairs with a
/// ReLU after all but the last, the (possibly downsampled) input added, then a ReLU. Its
/// points are after each convolution and each batch norm: point `2j` after `conv{j+1}`,
/// `2j + 1` after `bn{j+1}`.
#[derive(Debug)]
struct Block {
    /// `(conv1, bn1), (conv2, bn2)[, (conv3, bn3)]`.
    layers: Vec<(nn::Conv2D, nn::BatchNorm)>,
    /// `downsample.0` (1×1 convolution) and `downsample.1` (batch norm).
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(path: &nn::Path, depth: Depth, inputs: i64, planes: i64, stride: i64) -> Self {
        let outputs = planes * depth.expansion();
        // (in, out, kernel, stride, padding) of conv1, conv2[, conv3].
        let shapes: Vec<(i64, i64, i64, i64, i64)> = match depth {
            Depth::D18 => vec![(inputs, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            Depth::D50 => vec![
                (inputs, planes, 1, 1, 0),
                (planes, planes, 3, stride, 1),
                (planes, outputs, 1, 1, 0),
            ],
        };
        let layers = shapes
            .into_iter()
            .enumerate()
            .map(|(j, (i, o, k, s, p))| {
                let n = j + 1;
                let conv = conv(&(path / format!("conv{n}")), i, o, k, s, p);
                (conv, batch_norm(&(path / format!("bn{n}")), o))
            })
            .collect();
        let downsample = (stride != 1 || inputs != outputs).then(|| {
            let ds = path / "downsample";
            (
                conv(&(&ds / 0), inputs, outputs, 1, stride, 0),
                batch_norm(&(&ds / 1), outputs),
            )
        });
        Block { layers, downsample }
    }
}

impl Stage for Block {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        self.between(x, x, None, None, relu)
    }

    fn points(&self) -> &'static [&'static str] {
        match self.layers.len() {
            2 => &BASIC_POINTS,
            _ => &BOTTLENECK_POINTS,
        }
    }

    fn between(
        &self,
        main: &Tensor,
        input: &Tensor,
        from: Option<usize>,
        to: Option<usize>,
        relu: ReluMode,
    ) -> Tensor {
        let steps = 2 * self.layers.len();
        let mut y = main.shallow_clone();
        for step in from.map_or(0, |p| p + 1)..to.map_or(steps, |p| p + 1) {
            let (conv, bn) = &self.layers[step / 2];
            if step % 2 == 1 {
                y = bn.forward_t(&y, false);
                continue;
            }
            // Every convolution but the first follows the ReLU of the batch norm before it.
            if step > 0 {
                y = crate::guided::relu(&y, relu);
            }
            y = conv.forward(&y);
        }
        if to.is_some() {
            return y;
        }
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward(input), false),
            None => input.shallow_clone(),
        };
        crate::guided::relu(&(y + identity), relu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn parts(depth: Depth) -> (nn::VarStore, Parts) {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root(), depth, 10);
        (vs, parts)
    }

    #[test]
    fn resnet50_names_every_block_and_aliases_each_layer() {
        let (_vs, parts) = parts(Depth::D50);
        let names: Vec<&str> = parts.stages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..5], ["conv1", "bn1", "relu", "maxpool", "layer1.0"]);
        assert_eq!(names.len(), 4 + 3 + 4 + 6 + 3);
        assert!(names.contains(&"layer3.5"));
        assert_eq!(names.last(), Some(&"layer4.2"));
        let aliases: Vec<(&str, &str)> = parts
            .aliases
            .iter()
            .map(|(a, i)| (a.as_str(), names[*i]))
            .collect();
        assert_eq!(
            aliases,
            [
                ("layer1", "layer1.2"),
                ("layer2", "layer2.3"),
                ("layer3", "layer3.5"),
                ("layer4", "layer4.2")
            ]
        );
    }

    #[test]
    fn variables_are_torchvision_state_dict_keys() {
        let (vs, _parts) = parts(Depth::D50);
        let vars = vs.variables();
        assert_eq!(vars["layer1.0.downsample.0.weight"].size(), [256, 64, 1, 1]);
        assert_eq!(vars["layer2.0.conv2.weight"].size(), [128, 128, 3, 3]);
        assert_eq!(vars["layer4.2.bn3.running_var"].size(), [2048]);
        assert_eq!(vars["fc.weight"].size(), [10, 2048]);
        assert!(!vars.contains_key("layer2.1.downsample.0.weight"));
        // torchvision's resnet50 state_dict has 320 entries, 53 of them num_batches_tracked.
        assert_eq!(vars.len(), 320 - 53);

        let (vs, _parts) = parts(Depth::D18);
        let vars = vs.variables();
        assert!(!vars.contains_key("layer1.0.downsample.0.weight"));
        assert_eq!(vars["layer2.0.downsample.0.weight"].size(), [128, 64, 1, 1]);
        assert_eq!(vars["fc.weight"].size(), [10, 512]);
        // torchvision's resnet18 state_dict has 122 entries, 20 of them num_batches_tracked.
        assert_eq!(vars.len(), 122 - 20);
    }

    #[test]
    fn resnet18_downsamples_by_32() {
        let (_vs, parts) = parts(Depth::D18);
        let mut x = Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        for (_, stage) in &parts.stages {
            x = stage.forward(&x, ReluMode::Plain);
        }
        assert_eq!(x.size(), [1, 512, 2, 2]);
        assert_eq!(parts.head.forward(&x, ReluMode::Plain).size(), [1, 10]);
    }

    #[test]
    fn guided_mode_runs_through_the_blocks() {
        let (_vs, parts) = parts(Depth::D18);
        let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let gradient = |relu: ReluMode| {
            let mut y = x.shallow_clone();
            for (_, stage) in &parts.stages {
                y = stage.forward(&y, relu);
            }
            let logits = parts.head.forward(&y, relu);
            tch::Tensor::run_backward(&[logits.sum(Kind::Float)], &[&x], false, false).remove(0)
        };
        // A smoke test: guided hooks register inside the blocks (a failure panics) and
        // change the gradient. The exact values are checked against PyTorch with the
        // saliency methods.
        let plain = gradient(ReluMode::Plain);
        let guided = gradient(ReluMode::Guided);
        assert!(!plain.allclose(&guided, 1e-6, 1e-6, false));
    }
}

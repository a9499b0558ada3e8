//! torchvision's VGG-11/16/19 (configurations A, D and E, without batch normalisation).
//!
//! Every module of `features` is a stage of its own, named by its index in torchvision's
//! `nn.Sequential` (`features.0` is the first convolution, `features.1` its ReLU,
//! `features.30` the last max-pool of VGG-16), so any of them can be HINT's layer `l`.
//! The building blocks here ([`features`], [`ClassifierHead`]) are shared with the
//! VGG-shaped test network in `tiny.rs`.

use hint_common::architecture;
use tch::nn::{self, Module};
use tch::Tensor;

use super::{MaxPool, Parts, ReluMode, Stage};

pub(super) use hint_common::architecture::VggBlock as Block;

/// Which VGG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Depth {
    /// `vgg11`, configuration A.
    D11,
    /// `vgg16`, configuration D.
    D16,
    /// `vgg19`, configuration E.
    D19,
}

/// torchvision's `cfgs["A"]`, `cfgs["D"]` and `cfgs["E"]`.
pub(super) fn config(depth: Depth) -> &'static [Block] {
    match depth {
        Depth::D11 => architecture::VGG11,
        Depth::D16 => architecture::VGG16,
        Depth::D19 => architecture::VGG19,
    }
}

/// Builds torchvision's `vgg11`/`vgg16`/`vgg19` under `root`.
pub(super) fn build(root: &nn::Path, depth: Depth, num_classes: i64) -> Parts {
    let stages = features(&(root / "features"), 3, config(depth));
    // torchvision: Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
    // Linear(4096, num_classes); dropout is the identity in eval mode, so only the linear
    // layers (at indices 0, 3, 6) and the ReLUs between them remain.
    let head = ClassifierHead::new(
        &(root / "classifier"),
        7,
        &[
            (0, 512 * 7 * 7, 4096),
            (3, 4096, 4096),
            (6, 4096, num_classes),
        ],
    );
    Parts {
        stages,
        aliases: Vec::new(),
        head: Box::new(head),
        tokens: None,
    }
}

/// torchvision's `make_layers(cfg, batch_norm=False)`: one stage per module, each named
/// `features.<index>` as in the `nn.Sequential`.
pub(super) fn features(
    features: &nn::Path,
    in_channels: i64,
    config: &[Block],
) -> Vec<(String, Box<dyn Stage>)> {
    let mut stages: Vec<(String, Box<dyn Stage>)> = Vec::new();
    let mut channels = in_channels;
    for block in config {
        match *block {
            Block::Conv(out) => {
                let index = stages.len();
                let conv = nn::conv2d(
                    features / index,
                    channels,
                    out,
                    3,
                    nn::ConvConfig {
                        padding: 1,
                        ..Default::default()
                    },
                );
                stages.push((format!("features.{index}"), Box::new(Conv(conv))));
                stages.push((format!("features.{}", index + 1), Box::new(Relu)));
                channels = out;
            }
            Block::Pool => {
                stages.push((
                    format!("features.{}", stages.len()),
                    Box::new(MaxPool {
                        kernel: 2,
                        stride: 2,
                        padding: 0,
                    }),
                ));
            }
        }
    }
    stages
}

/// A convolution stage.
#[derive(Debug)]
pub(super) struct Conv(pub(super) nn::Conv2D);

impl Stage for Conv {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        self.0.forward(x)
    }
}

/// A ReLU stage (guided when asked).
#[derive(Debug)]
pub(super) struct Relu;

impl Stage for Relu {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        crate::guided::relu(x, relu)
    }
}

/// `AdaptiveAvgPool2d(pool)`, `flatten(1)`, then linear layers with a ReLU between
/// consecutive ones (VGG's dropouts are the identity in eval mode).
#[derive(Debug)]
pub(super) struct ClassifierHead {
    pool: i64,
    linears: Vec<nn::Linear>,
}

impl ClassifierHead {
    /// `layers` are `(index in the classifier Sequential, in features, out features)`.
    pub(super) fn new(classifier: &nn::Path, pool: i64, layers: &[(usize, i64, i64)]) -> Self {
        let linears = layers
            .iter()
            .map(|&(index, inputs, outputs)| {
                nn::linear(classifier / index, inputs, outputs, Default::default())
            })
            .collect();
        ClassifierHead { pool, linears }
    }
}

impl Stage for ClassifierHead {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        let mut y = x.adaptive_avg_pool2d([self.pool, self.pool]).flatten(1, -1);
        for (i, linear) in self.linears.iter().enumerate() {
            if i > 0 {
                y = crate::guided::relu(&y, relu);
            }
            y = linear.forward(&y);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn names(depth: Depth) -> Vec<String> {
        let vs = nn::VarStore::new(Device::Cpu);
        build(&vs.root(), depth, 3)
            .stages
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn stage_names_are_torchvision_feature_indices() {
        // torchvision: vgg11 has 8 convs + 8 relus + 5 pools, vgg16 13+13+5, vgg19 16+16+5.
        for (depth, last) in [(Depth::D11, 20), (Depth::D16, 30), (Depth::D19, 36)] {
            let expected: Vec<String> = (0..=last).map(|i| format!("features.{i}")).collect();
            assert_eq!(names(depth), expected, "{depth:?}");
        }
    }

    #[test]
    fn variables_are_torchvision_state_dict_keys() {
        let vs = nn::VarStore::new(Device::Cpu);
        build(&vs.root(), Depth::D16, 5);
        let vars = vs.variables();
        assert_eq!(vars["features.0.weight"].size(), [64, 3, 3, 3]);
        assert_eq!(vars["features.28.weight"].size(), [512, 512, 3, 3]);
        assert_eq!(vars["classifier.0.weight"].size(), [4096, 25088]);
        assert_eq!(vars["classifier.6.weight"].size(), [5, 4096]);
        // 13 convolutions and 3 linear layers, each with a weight and a bias.
        assert_eq!(vars.len(), 2 * (13 + 3));
    }

    #[test]
    fn head_pools_any_feature_map_to_seven_by_seven() {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root(), Depth::D11, 4);
        let z = Tensor::rand([2, 512, 2, 2], (Kind::Float, Device::Cpu));
        assert_eq!(parts.head.forward(&z, ReluMode::Plain).size(), [2, 4]);
    }
}

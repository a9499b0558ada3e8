//! The architectures hint can build, by name, with what is known about them without
//! building one: their addressable layer names, the state_dict key of their classifier and
//! the preprocessing their ImageNet weights expect.
//!
//! This is the libtorch-free half of `hint_worker::models`: a job spec, `hint check` and the
//! coordinator validate a model and layer through it, and the worker builds the network
//! from the same tables ([`VGG11`], [`RESNET18_BLOCKS`], [`EFFICIENTNET_B0`], …), so the
//! names and the networks cannot drift apart.

use std::fmt;
use std::str::FromStr;

use crate::settings::SettingError;

/// The architectures hint can build. Also a command-line value (`--model tiny_cnn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Architecture {
    /// A three-convolution VGG-style network for tests and the demo.
    #[value(name = "tiny_cnn")]
    TinyCnn,
    /// torchvision `vgg11`.
    Vgg11,
    /// torchvision `vgg16`.
    Vgg16,
    /// torchvision `vgg19`.
    Vgg19,
    /// torchvision `resnet18`.
    Resnet18,
    /// torchvision `resnet50`.
    Resnet50,
    /// torchvision `inception_v3` (eval mode: no auxiliary classifier; `transform_input`
    /// on, as in the ImageNet weights torchvision ships).
    #[value(name = "inception_v3")]
    InceptionV3,
    /// torchvision `efficientnet_b0` (SiLU, squeeze-excitation, depthwise convolutions;
    /// stochastic depth is the identity at inference).
    #[value(name = "efficientnet_b0")]
    EfficientnetB0,
    /// torchvision `convnext_tiny` (7×7 depthwise convolutions, LayerNorm over channels,
    /// exact GELU, layer scale; stochastic depth is the identity at inference).
    #[value(name = "convnext_tiny")]
    ConvnextTiny,
    /// torchvision `vit_b_16`: a 16×16 patch embedding and twelve pre-norm transformer
    /// encoder layers (12 heads, width 768, exact GELU). A layer's map is its patch tokens
    /// as a `768 × g × g` grid (`g` = crop / 16: 14 at 224); the class token is carried
    /// past the layer but is not part of the map.
    #[value(name = "vit_b_16")]
    VitB16,
}

/// The nonlinearity an architecture's hidden layers use: what guided backpropagation,
/// defined for ReLU, needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nonlinearity {
    /// ReLU (tiny_cnn, VGG, ResNet, Inception).
    Relu,
    /// SiLU, `x · σ(x)` (EfficientNet; its squeeze-excitation gates are sigmoids).
    Silu,
    /// GELU with the exact erf (ConvNeXt, ViT).
    Gelu,
}

impl Nonlinearity {
    /// The name as in PyTorch's module (`ReLU`, `SiLU`, `GELU`).
    pub fn name(self) -> &'static str {
        match self {
            Nonlinearity::Relu => "ReLU",
            Nonlinearity::Silu => "SiLU",
            Nonlinearity::Gelu => "GELU",
        }
    }
}

/// One entry of a VGG configuration: a 3×3 convolution to that many channels (followed by
/// a ReLU), or a 2×2 max-pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggBlock {
    /// `Conv2d(in, c, 3, padding=1)` then `ReLU`.
    Conv(i64),
    /// `MaxPool2d(2, 2)`.
    Pool,
}

use VggBlock::{Conv as C, Pool as M};

/// torchvision's `cfgs["A"]` (`vgg11`).
#[rustfmt::skip]
pub const VGG11: &[VggBlock] = &[
    C(64), M,
    C(128), M,
    C(256), C(256), M,
    C(512), C(512), M,
    C(512), C(512), M,
];

/// torchvision's `cfgs["D"]` (`vgg16`).
#[rustfmt::skip]
pub const VGG16: &[VggBlock] = &[
    C(64), C(64), M,
    C(128), C(128), M,
    C(256), C(256), C(256), M,
    C(512), C(512), C(512), M,
    C(512), C(512), C(512), M,
];

/// torchvision's `cfgs["E"]` (`vgg19`).
#[rustfmt::skip]
pub const VGG19: &[VggBlock] = &[
    C(64), C(64), M,
    C(128), C(128), M,
    C(256), C(256), C(256), C(256), M,
    C(512), C(512), C(512), C(512), M,
    C(512), C(512), C(512), C(512), M,
];

/// `tiny_cnn`'s `features` in VGG's notation. Unlike VGG there is no final max-pool: at
/// 64×64 input the last layer is a 16×16 map.
pub const TINY_FEATURES: &[VggBlock] = &[C(16), M, C(32), M, C(64)];

/// Residual blocks per layer of `resnet18` (basic blocks).
pub const RESNET18_BLOCKS: [usize; 4] = [2, 2, 2, 2];

/// Residual blocks per layer of `resnet50` (bottlenecks).
pub const RESNET50_BLOCKS: [usize; 4] = [3, 4, 6, 3];

/// One stage of EfficientNet's `features` (torchvision's `MBConvConfig`): `blocks`
/// inverted-residual blocks, the first from `inputs` channels with `stride`, the rest from
/// `outputs` with stride 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbConvStage {
    /// Hidden channels of a block over its input channels (1: no expansion convolution).
    pub expand_ratio: i64,
    /// Side of the depthwise convolution's kernel.
    pub kernel: i64,
    /// Stride of the first block's depthwise convolution.
    pub stride: i64,
    /// Input channels of the first block.
    pub inputs: i64,
    /// Output channels of every block.
    pub outputs: i64,
    /// Number of blocks.
    pub blocks: usize,
}

const fn mb(
    expand_ratio: i64,
    kernel: i64,
    stride: i64,
    inputs: i64,
    outputs: i64,
    blocks: usize,
) -> MbConvStage {
    MbConvStage {
        expand_ratio,
        kernel,
        stride,
        inputs,
        outputs,
        blocks,
    }
}

/// torchvision's `efficientnet_b0` settings (width and depth multipliers 1.0): `features.1`
/// … `features.7`. `features.0` is a stride-2 3×3 convolution to 32 channels, `features.8`
/// a 1×1 convolution to [`EFFICIENTNET_B0_LAST_CHANNELS`].
pub const EFFICIENTNET_B0: [MbConvStage; 7] = [
    mb(1, 3, 1, 32, 16, 1),
    mb(6, 3, 2, 16, 24, 2),
    mb(6, 5, 2, 24, 40, 2),
    mb(6, 3, 2, 40, 80, 3),
    mb(6, 5, 1, 80, 112, 3),
    mb(6, 5, 2, 112, 192, 4),
    mb(6, 3, 1, 192, 320, 1),
];

/// Channels of EfficientNet-B0's `features.8`, what its classifier reads.
pub const EFFICIENTNET_B0_LAST_CHANNELS: i64 = 1280;

/// `convnext_tiny`'s block stages `features.1`, `.3`, `.5`, `.7`: (channels, blocks).
/// `features.0` is the 4×4 patchify stem, `features.2`, `.4`, `.6` the downsamplings.
pub const CONVNEXT_TINY: [(i64, usize); 4] = [(96, 3), (192, 3), (384, 9), (768, 3)];

/// `vit_b_16`'s shape: patch side, encoder layers, attention heads, width, MLP width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitShape {
    /// Side of the square patches `conv_proj` embeds (its kernel and stride).
    pub patch: i64,
    /// Encoder layers `encoder.layers.encoder_layer_0` … `_{layers − 1}`.
    pub layers: usize,
    /// Attention heads of every layer.
    pub heads: i64,
    /// Token width (`hidden_dim`).
    pub width: i64,
    /// Hidden width of every layer's MLP (`mlp_dim`).
    pub mlp: i64,
}

/// torchvision's `vit_b_16`.
pub const VIT_B_16: VitShape = VitShape {
    patch: 16,
    layers: 12,
    heads: 12,
    width: 768,
    mlp: 3072,
};

/// The name of ViT encoder layer `index` (torchvision's module path).
pub fn vit_layer_name(index: usize) -> String {
    format!("encoder.layers.encoder_layer_{index}")
}

/// One entry of a `features` `nn.Sequential` (EfficientNet, ConvNeXt): a single module,
/// or an `nn.Sequential` of that many blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// One module: the stage `features.<index>`.
    Module,
    /// Blocks: the stages `features.<index>.<block>`, and `features.<index>` an alias of
    /// the last one (as hooking torchvision's `model.features[index]` gives).
    Blocks(usize),
}

/// Inception-v3's stages, in forward order.
pub const INCEPTION_STAGES: [&str; 18] = [
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
];

/// InceptionA's points (`Mixed_5b`–`5d`). A mixed block's points are its `BasicConv2d`s by
/// torchvision name, branch by branch in `torch.cat` order, each branch's in forward order.
pub const INCEPTION_A_POINTS: [&str; 7] = [
    "branch1x1",
    "branch5x5_1",
    "branch5x5_2",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
    "branch3x3dbl_3",
    "branch_pool",
];
/// InceptionB (`Mixed_6a`)'s points.
pub const INCEPTION_B_POINTS: [&str; 4] = [
    "branch3x3",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
    "branch3x3dbl_3",
];
/// InceptionC (`Mixed_6b`–`6e`)'s points.
pub const INCEPTION_C_POINTS: [&str; 10] = [
    "branch1x1",
    "branch7x7_1",
    "branch7x7_2",
    "branch7x7_3",
    "branch7x7dbl_1",
    "branch7x7dbl_2",
    "branch7x7dbl_3",
    "branch7x7dbl_4",
    "branch7x7dbl_5",
    "branch_pool",
];
/// InceptionD (`Mixed_7a`)'s points.
pub const INCEPTION_D_POINTS: [&str; 6] = [
    "branch3x3_1",
    "branch3x3_2",
    "branch7x7x3_1",
    "branch7x7x3_2",
    "branch7x7x3_3",
    "branch7x7x3_4",
];
/// InceptionE (`Mixed_7b`, `7c`)'s points.
pub const INCEPTION_E_POINTS: [&str; 9] = [
    "branch1x1",
    "branch3x3_1",
    "branch3x3_2a",
    "branch3x3_2b",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
    "branch3x3dbl_3a",
    "branch3x3dbl_3b",
    "branch_pool",
];

/// The points of an InceptionE block whose output is part of the block's (the last of each
/// branch, both halves of each split).
const INCEPTION_BRANCH_ENDS: [&str; 6] = [
    "branch1x1",
    "branch3x3_2a",
    "branch3x3_2b",
    "branch3x3dbl_3a",
    "branch3x3dbl_3b",
    "branch_pool",
];

/// The points inside Inception-v3's mixed block `stage` (none for other stages).
pub fn inception_points(stage: &str) -> &'static [&'static str] {
    match stage {
        "Mixed_5b" | "Mixed_5c" | "Mixed_5d" => &INCEPTION_A_POINTS,
        "Mixed_6a" => &INCEPTION_B_POINTS,
        "Mixed_6b" | "Mixed_6c" | "Mixed_6d" | "Mixed_6e" => &INCEPTION_C_POINTS,
        "Mixed_7a" => &INCEPTION_D_POINTS,
        "Mixed_7b" | "Mixed_7c" => &INCEPTION_E_POINTS,
        _ => &[],
    }
}

impl Architecture {
    /// Every architecture, in the order they are listed to users.
    pub const ALL: [Architecture; 10] = [
        Architecture::TinyCnn,
        Architecture::Vgg11,
        Architecture::Vgg16,
        Architecture::Vgg19,
        Architecture::Resnet18,
        Architecture::Resnet50,
        Architecture::InceptionV3,
        Architecture::EfficientnetB0,
        Architecture::ConvnextTiny,
        Architecture::VitB16,
    ];

    /// The name used on the command line and in torchvision (`vgg16`, `inception_v3`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::TinyCnn => "tiny_cnn",
            Architecture::Vgg11 => "vgg11",
            Architecture::Vgg16 => "vgg16",
            Architecture::Vgg19 => "vgg19",
            Architecture::Resnet18 => "resnet18",
            Architecture::Resnet50 => "resnet50",
            Architecture::InceptionV3 => "inception_v3",
            Architecture::EfficientnetB0 => "efficientnet_b0",
            Architecture::ConvnextTiny => "convnext_tiny",
            Architecture::VitB16 => "vit_b_16",
        }
    }

    /// Parses a name as given by [`Architecture::name`].
    pub fn parse(name: &str) -> Result<Self, SettingError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| SettingError::UnknownArchitecture {
                name: name.to_string(),
                valid: Self::ALL.iter().map(|a| a.name().to_string()).collect(),
            })
    }

    /// The state_dict key of the final classifier's weight, whose first dimension is the
    /// number of classes.
    pub fn classifier_weight(self) -> &'static str {
        match self {
            Architecture::TinyCnn => "classifier.2.weight",
            Architecture::Vgg11 | Architecture::Vgg16 | Architecture::Vgg19 => {
                "classifier.6.weight"
            }
            Architecture::Resnet18 | Architecture::Resnet50 | Architecture::InceptionV3 => {
                "fc.weight"
            }
            Architecture::EfficientnetB0 => "classifier.1.weight",
            Architecture::ConvnextTiny => "classifier.2.weight",
            Architecture::VitB16 => "heads.head.weight",
        }
    }

    /// The nonlinearity of the hidden layers.
    pub fn nonlinearity(self) -> Nonlinearity {
        match self {
            Architecture::EfficientnetB0 => Nonlinearity::Silu,
            Architecture::ConvnextTiny | Architecture::VitB16 => Nonlinearity::Gelu,
            _ => Nonlinearity::Relu,
        }
    }

    /// The entries of `features` of EfficientNet and ConvNeXt, in order.
    pub fn features(self) -> Option<Vec<Feature>> {
        match self {
            Architecture::EfficientnetB0 => {
                let mut features = vec![Feature::Module];
                features.extend(EFFICIENTNET_B0.iter().map(|s| Feature::Blocks(s.blocks)));
                features.push(Feature::Module);
                Some(features)
            }
            Architecture::ConvnextTiny => Some(
                CONVNEXT_TINY
                    .iter()
                    .flat_map(|&(_, blocks)| [Feature::Module, Feature::Blocks(blocks)])
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The VGG-shaped `features` configuration of tiny_cnn and the VGGs.
    pub fn vgg_features(self) -> Option<&'static [VggBlock]> {
        match self {
            Architecture::TinyCnn => Some(TINY_FEATURES),
            Architecture::Vgg11 => Some(VGG11),
            Architecture::Vgg16 => Some(VGG16),
            Architecture::Vgg19 => Some(VGG19),
            _ => None,
        }
    }

    /// Every addressable layer name, in forward order (aliases after the stage names): what
    /// the worker's `Backbone::layer_names` returns, without building the model (a VGG's
    /// weights alone are half a gigabyte), so a job spec can be checked cheaply.
    pub fn layer_names(self) -> Vec<String> {
        match self {
            Architecture::Resnet18 => resnet_layer_names(RESNET18_BLOCKS, false),
            Architecture::Resnet50 => resnet_layer_names(RESNET50_BLOCKS, true),
            Architecture::InceptionV3 => {
                let points = INCEPTION_STAGES.iter().flat_map(|stage| {
                    inception_points(stage)
                        .iter()
                        .map(move |point| format!("{stage}.{point}"))
                });
                INCEPTION_STAGES
                    .map(String::from)
                    .into_iter()
                    .chain(points)
                    .collect()
            }
            Architecture::EfficientnetB0 => {
                let mut names = features_layer_names(&self.features().unwrap_or_default());
                names.extend(efficientnet_b0_points());
                names
            }
            Architecture::ConvnextTiny => {
                let mut names = features_layer_names(&self.features().unwrap_or_default());
                names.extend(convnext_tiny_points());
                names
            }
            Architecture::VitB16 => std::iter::once("conv_proj".to_string())
                .chain((0..VIT_B_16.layers).map(vit_layer_name))
                .collect(),
            vgg => vgg_layer_names(vgg.vgg_features().unwrap_or_default()),
        }
    }

    /// Where `layer` lies in the forward pass, as a key that sorts layers shallow to deep
    /// (None for a name the architecture does not have). An alias sorts with the stage it
    /// names (`layer3` = `layer3.1`: equal keys are one layer), and a point inside a stage
    /// before the stage's output (`layer3.1.conv2` < `layer3.1`).
    ///
    /// From [`Architecture::layer_names`]' order: stages in forward order, then aliases (a
    /// name with stages under it listed before it), then each stage's points in forward
    /// order (names under a stage listed after it).
    pub fn depth_of(self, layer: &str) -> Option<(usize, usize)> {
        let names = self.layer_names();
        let at = names.iter().position(|n| n == layer)?;
        let under = |parent: &str, name: &str| {
            name.strip_prefix(parent)
                .is_some_and(|rest| rest.starts_with('.'))
        };
        if let Some(stage) = names[..at].iter().rposition(|n| under(layer, n)) {
            // An alias: the last stage under it listed before it.
            return self.depth_of(&names[stage]);
        }
        let parent = names[..at]
            .iter()
            .enumerate()
            .filter(|(_, n)| under(n, layer))
            .max_by_key(|(_, n)| n.len());
        Some(match parent {
            Some((stage, _)) => (stage, at),
            None => (at, usize::MAX),
        })
    }

    /// The name of the last stage (not an alias): the output the head reads.
    fn last_stage(self) -> Option<String> {
        let mut names = self.layer_names();
        match self {
            // The blocks (`layer4.1`) are the names with one dot: aliases (`layer4`) have
            // none, the points inside blocks (`layer4.1.bn2`) two.
            Architecture::Resnet18 | Architecture::Resnet50 => names
                .into_iter()
                .rev()
                .find(|n| n.matches('.').count() == 1),
            Architecture::EfficientnetB0 | Architecture::ConvnextTiny => {
                let features = self.features().unwrap_or_default();
                features_stage_names(&features).pop()
            }
            Architecture::InceptionV3 => INCEPTION_STAGES.last().map(|s| s.to_string()),
            _ => names.pop(),
        }
    }

    /// Whether the only consumer of `layer` is a global average pool: it is the last stage
    /// and the head pools over every position (all but VGG, whose head keeps a 7×7 map;
    /// ConvNeXt's head normalises the pooled vector over channels before its linear layer,
    /// still one value per channel whatever the position; inside ConvNeXt's last block, its
    /// GELU and projection are per position and linear up to the pool; in Inception's last
    /// block, the last `BasicConv2d` of each branch feeds the concatenation the pool reads).
    /// There, `∂ logit / ∂ z` is the same at every position.
    pub fn pools_globally_after(self, layer: &str) -> bool {
        let global_head = match self {
            // ViT's head reads the class token: see `unseen_by_head`.
            Architecture::Vgg11
            | Architecture::Vgg16
            | Architecture::Vgg19
            | Architecture::VitB16 => false,
            Architecture::TinyCnn
            | Architecture::Resnet18
            | Architecture::Resnet50
            | Architecture::InceptionV3
            | Architecture::EfficientnetB0
            | Architecture::ConvnextTiny => true,
        };
        global_head
            && self.last_stage().is_some_and(|last| {
                last == layer
                    || last
                        .strip_prefix(layer)
                        .is_some_and(|rest| rest.starts_with('.'))
                    || (self == Architecture::ConvnextTiny
                        && layer
                            .strip_prefix(last.as_str())
                            .is_some_and(|rest| rest == ".block.4" || rest == ".block.5"))
                    || (self == Architecture::InceptionV3
                        && layer
                            .strip_prefix(last.as_str())
                            .and_then(|rest| rest.strip_prefix('.'))
                            .is_some_and(|point| INCEPTION_BRANCH_ENDS.contains(&point)))
            })
    }

    /// Why a torchvision module name that is no layer here is not one, where hint knows:
    /// a ResNet block's `relu` (one module called after each batch norm but the last and
    /// after the sum, so a hook on it is ambiguous) and the modules inside a ViT encoder
    /// layer (not addressable yet). None for other names.
    pub fn not_addressable(self, layer: &str) -> Option<String> {
        match self {
            Architecture::Resnet18 | Architecture::Resnet50 => {
                let block = layer.strip_suffix(".relu")?;
                self.layer_names().iter().any(|n| n == block).then(|| {
                    format!(
                        "torchvision calls {block}'s one `relu` module several times (after \
                         each batch norm but the last, and after the residual sum), so it names \
                         no single output: {block}.bn1 is the first call's input, {block} the \
                         last call's output"
                    )
                })
            }
            Architecture::VitB16 => {
                let (encoder, inner) =
                    layer
                        .match_indices('.')
                        .map(|(at, _)| layer.split_at(at))
                        .find(|(encoder, _)| self.layer_names().iter().any(|n| n == encoder))?;
                (encoder != "conv_proj").then(|| {
                    format!(
                        "the modules inside a ViT encoder layer ({encoder}{inner}) are not \
                         addressable yet: use {encoder}"
                    )
                })
            }
            _ => None,
        }
    }

    /// Why `layers` cannot share one extraction pass, if they cannot: two points inside one
    /// Inception block (parallel branches; the pass runs on from each layer's map to the
    /// next, and one branch's map does not lead to another's); or half of an InceptionE
    /// split below another layer (the pass recomputes the split's input for each half, and
    /// guided backpropagation, which clamps the gradient summed at a ReLU's output, would
    /// clamp each copy's share instead).
    pub fn pass_problem(self, layers: &[String]) -> Option<String> {
        if self != Architecture::InceptionV3 {
            return None;
        }
        let half = |layer: &str| {
            layer.split_once('.').is_some_and(|(_, point)| {
                INCEPTION_BRANCH_ENDS.contains(&point) && point.ends_with(['a', 'b'])
            })
        };
        for layer in layers.iter().filter(|l| half(l)) {
            if let Some(shallower) = layers
                .iter()
                .find(|other| self.depth_of(other) < self.depth_of(layer))
            {
                return Some(format!(
                    "{layer} is half of a split: it can share a pass only as its shallowest \
                     layer, and {shallower} is shallower; take them in separate runs"
                ));
            }
        }
        let block = |layer: &str| layer.split_once('.').map(|(stage, _)| stage.to_string());
        let mut seen: Vec<(String, &str)> = Vec::new();
        for layer in layers {
            if let Some(stage) = block(layer) {
                if let Some((_, other)) = seen.iter().find(|(s, _)| *s == stage) {
                    return Some(format!(
                        "{other} and {layer} are both inside {stage}: points of one Inception \
                         block cannot share a pass (its branches run side by side); take them \
                         in separate runs"
                    ));
                }
                seen.push((stage, layer));
            }
        }
        None
    }

    /// Whether the head never reads `layer`'s map, so that every saliency there is zero:
    /// ViT's last encoder layer, whose patch tokens no later attention mixes into the class
    /// token, the only token the head reads.
    pub fn unseen_by_head(self, layer: &str) -> bool {
        self == Architecture::VitB16 && layer == vit_layer_name(VIT_B_16.layers - 1)
    }

    /// Whether `∂ logit / ∂ z` at `layer` sums to zero over channels at every position:
    /// every path from the layer to the logits goes through a LayerNorm over channels,
    /// which removes their mean. Every ViT layer (the residual stream reaches the logits
    /// only through `ln_1`, `ln_2` and `encoder.ln`); ConvNeXt's last block of each stage,
    /// which feeds only the next downsampling's or the head's LayerNorm, and every block's
    /// depthwise convolution (`block.0`), which feeds only the block's LayerNorm.
    pub fn channel_sum_vanishes_at(self, layer: &str) -> bool {
        match self {
            Architecture::VitB16 => self.layer_names().iter().any(|n| n == layer),
            // A stage's last block feeds the LayerNorm that starts the downsampling or the
            // head; a block's depthwise convolution (`block.0`) feeds only its LayerNorm.
            Architecture::ConvnextTiny => {
                layer.ends_with(".block.0") && self.layer_names().iter().any(|n| n == layer)
                    || CONVNEXT_TINY.iter().enumerate().any(|(k, &(_, blocks))| {
                        let stage = 2 * k + 1;
                        layer == format!("features.{stage}")
                            || layer == format!("features.{stage}.{}", blocks - 1)
                    })
            }
            _ => false,
        }
    }

    /// Why `crop × crop` images cannot go through this architecture, if they cannot: a
    /// ViT cuts them into 16 × 16 patches. (Its weights fix the grid too: the worker checks
    /// the crop against their position embeddings.)
    pub fn crop_problem(self, crop: u32) -> Option<String> {
        let patch = VIT_B_16.patch as u32;
        (self == Architecture::VitB16 && !crop.is_multiple_of(patch)).then(|| {
            format!(
                "{self} cuts images into {patch} × {patch} patches, so the crop must be a \
                 multiple of {patch} (224 for torchvision's weights), not {crop}"
            )
        })
    }

    /// The sizes of the preprocessing torchvision's ImageNet weights expect. hint resizes
    /// bilinearly (PIL's antialiased filter) for every architecture; torchvision's
    /// EfficientNet-B0 weights were evaluated with bicubic resizing, so its accuracy under
    /// hint's preprocessing may differ slightly from the published figure.
    pub fn default_input(self) -> InputSize {
        match self {
            Architecture::TinyCnn => InputSize {
                resize: 64,
                crop: 64,
            },
            Architecture::InceptionV3 => InputSize {
                resize: 342,
                crop: 299,
            },
            Architecture::ConvnextTiny => InputSize {
                resize: 236,
                crop: 224,
            },
            _ => InputSize {
                resize: 256,
                crop: 224,
            },
        }
    }
}

/// The stage names of a VGG-shaped `features`: a convolution is two modules (with its
/// ReLU), a pool one, named `features.<index>` as in torchvision's `nn.Sequential`.
pub fn vgg_layer_names(config: &[VggBlock]) -> Vec<String> {
    let modules: usize = config
        .iter()
        .map(|block| match block {
            VggBlock::Conv(_) => 2,
            VggBlock::Pool => 1,
        })
        .sum();
    (0..modules).map(|i| format!("features.{i}")).collect()
}

/// The stage names of a `features` `nn.Sequential` of modules and blocks, in forward order
/// (`features.0`, `features.1.0`, `features.1.1`, `features.2`, …).
fn features_stage_names(features: &[Feature]) -> Vec<String> {
    let mut names = Vec::new();
    for (index, feature) in features.iter().enumerate() {
        match *feature {
            Feature::Module => names.push(format!("features.{index}")),
            Feature::Blocks(blocks) => {
                names.extend((0..blocks).map(|block| format!("features.{index}.{block}")))
            }
        }
    }
    names
}

/// EfficientNet's and ConvNeXt's layer names: the stages, then the aliases
/// (`features.<index>` of every [`Feature::Blocks`] entry, the output of its last block).
pub fn features_layer_names(features: &[Feature]) -> Vec<String> {
    let mut names = features_stage_names(features);
    names.extend(
        features
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f, Feature::Blocks(_)))
            .map(|(index, _)| format!("features.{index}")),
    );
    names
}

/// The points inside EfficientNet-B0's MBConv blocks, in forward order: the outputs of each
/// block's `block` modules (`features.3.1.block.0` … `block.3`: expansion, depthwise
/// convolution, squeeze and excitation, projection; a block that does not expand, as in
/// `features.1`, has no expansion and one module fewer).
fn efficientnet_b0_points() -> Vec<String> {
    let mut names = Vec::new();
    for (k, stage) in EFFICIENTNET_B0.iter().enumerate() {
        let modules = if stage.expand_ratio == 1 { 3 } else { 4 };
        for block in 0..stage.blocks {
            names.extend((0..modules).map(|m| format!("features.{}.{block}.block.{m}", k + 1)));
        }
    }
    names
}

/// The points inside ConvNeXt-T's blocks, in forward order: each block's `block` modules
/// that compute (`features.3.1.block.0`, `.2` … `.5`: depthwise convolution, LayerNorm,
/// expanding Linear, GELU, projecting Linear; the `Permute`s `.1` and `.6` only move values).
fn convnext_tiny_points() -> Vec<String> {
    let mut names = Vec::new();
    for (k, &(_, blocks)) in CONVNEXT_TINY.iter().enumerate() {
        for block in 0..blocks {
            names.extend(
                [0, 2, 3, 4, 5].map(|m| format!("features.{}.{block}.block.{m}", 2 * k + 1)),
            );
        }
    }
    names
}

/// A ResNet's stage names (the stem's modules, then every block), then its aliases
/// (`layer3` = the last block of `layer3`, as hooking torchvision's `model.layer3` gives),
/// then the points inside every block (`layer3.1.conv1`, `layer3.1.bn1`, …; a bottleneck
/// has a third pair) — with `bottleneck` telling which block.
pub fn resnet_layer_names(blocks: [usize; 4], bottleneck: bool) -> Vec<String> {
    let mut names: Vec<String> = ["conv1", "bn1", "relu", "maxpool"].map(String::from).into();
    let mut block_names = Vec::new();
    for (k, blocks) in blocks.into_iter().enumerate() {
        block_names.extend((0..blocks).map(|i| format!("layer{}.{i}", k + 1)));
    }
    names.extend(block_names.iter().cloned());
    names.extend((1..=4).map(|k| format!("layer{k}")));
    let pairs = if bottleneck { 3 } else { 2 };
    for block in &block_names {
        for j in 1..=pairs {
            names.push(format!("{block}.conv{j}"));
            names.push(format!("{block}.bn{j}"));
        }
    }
    names
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = SettingError;
    fn from_str(name: &str) -> Result<Self, SettingError> {
        Architecture::parse(name)
    }
}

/// Image preprocessing sizes: resize the shorter side to `resize`, then centre-crop a
/// `crop × crop` square.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSize {
    /// Shorter side after resizing, in pixels.
    pub resize: u32,
    /// Side of the centre crop fed to the model, in pixels.
    pub crop: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        use clap::ValueEnum;
        for arch in Architecture::ALL {
            assert_eq!(Architecture::parse(arch.name()).unwrap(), arch);
            // The command line's name is the same one.
            assert_eq!(arch.to_possible_value().unwrap().get_name(), arch.name());
        }
        assert_eq!(Architecture::value_variants(), Architecture::ALL);
        let err = Architecture::parse("vgg13").unwrap_err().to_string();
        assert!(
            err.contains("'vgg13'") && err.contains("inception_v3"),
            "{err}"
        );
    }

    #[test]
    fn names_that_are_no_layer_are_explained_where_hint_knows_why() {
        let why = Architecture::Resnet18
            .not_addressable("layer3.1.relu")
            .unwrap();
        assert!(
            why.contains("layer3.1.bn1") && why.contains("several times"),
            "{why}"
        );
        assert_eq!(
            Architecture::Resnet18.not_addressable("layer9.1.relu"),
            None
        );
        assert_eq!(Architecture::Resnet18.not_addressable("relu"), None);
        let why = Architecture::VitB16
            .not_addressable("encoder.layers.encoder_layer_3.mlp.0")
            .unwrap();
        assert!(why.contains("use encoder.layers.encoder_layer_3"), "{why}");
        assert_eq!(
            Architecture::VitB16.not_addressable("conv_proj.weight"),
            None
        );
        assert_eq!(Architecture::Vgg16.not_addressable("features.99"), None);
    }

    #[test]
    fn inception_names_its_branches_and_refuses_two_in_one_pass() {
        let inception = Architecture::InceptionV3;
        let names = inception.layer_names();
        // 18 stages, then 3 × 7 + 4 + 4 × 10 + 6 + 2 × 9 points.
        assert_eq!(names.len(), 18 + 21 + 4 + 40 + 6 + 18);
        assert_eq!(names[18], "Mixed_5b.branch1x1");
        assert_eq!(names.last().unwrap(), "Mixed_7c.branch_pool");
        assert!(inception.pools_globally_after("Mixed_7c"));
        assert!(inception.pools_globally_after("Mixed_7c.branch3x3_2b"));
        assert!(inception.pools_globally_after("Mixed_7c.branch_pool"));
        assert!(!inception.pools_globally_after("Mixed_7c.branch3x3_1"));
        assert!(!inception.pools_globally_after("Mixed_7b.branch1x1"));
        assert!(
            inception.depth_of("Mixed_6b.branch7x7_2") < inception.depth_of("Mixed_6b")
                && inception.depth_of("Mixed_6a") < inception.depth_of("Mixed_6b.branch1x1")
        );
        let layers = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let problem = inception
            .pass_problem(&layers(&["Mixed_6b.branch1x1", "Mixed_6b.branch7x7_2"]))
            .unwrap();
        assert!(problem.contains("both inside Mixed_6b"), "{problem}");
        let split = layers(&["Mixed_6b.branch7x7_2", "Mixed_7b.branch3x3_2a"]);
        let problem = inception.pass_problem(&split).unwrap();
        assert!(problem.contains("half of a split"), "{problem}");
        let below = layers(&["Mixed_7c", "Mixed_7b.branch3x3dbl_3b"]);
        assert_eq!(inception.pass_problem(&below), None, "the shallowest");
        let fine = layers(&["Mixed_5b.branch1x1", "Mixed_6b", "Mixed_6b.branch7x7_2"]);
        assert_eq!(inception.pass_problem(&fine), None);
        assert_eq!(
            Architecture::Resnet18.pass_problem(&layers(&["layer2.0.conv1", "layer2.0.bn1"])),
            None
        );
    }

    #[test]
    fn depth_orders_stages_aliases_and_points_shallow_to_deep() {
        let resnet = Architecture::Resnet18;
        let order = [
            "conv1",
            "layer1.1",
            "layer2.0.conv1",
            "layer2.0.bn1",
            "layer2.0.bn2",
            "layer2.0",
            "layer2.1.conv1",
            "layer2.1",
            "layer4.1.bn2",
            "layer4.1",
        ];
        let keys: Vec<_> = order.iter().map(|l| resnet.depth_of(l).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(resnet.depth_of("layer2"), resnet.depth_of("layer2.1"));
        assert_eq!(resnet.depth_of("layer9"), None);
        let efficientnet = Architecture::EfficientnetB0;
        let (a, b, c) = (
            efficientnet.depth_of("features.3.0").unwrap(),
            efficientnet.depth_of("features.3.1.block.2").unwrap(),
            efficientnet.depth_of("features.3").unwrap(),
        );
        assert!(a < b && b < c && Some(c) == efficientnet.depth_of("features.3.1"));
        let vgg = Architecture::Vgg16;
        assert!(vgg.depth_of("features.9") < vgg.depth_of("features.10"));
        let vit = Architecture::VitB16;
        assert!(vit.depth_of("conv_proj") < vit.depth_of(&vit_layer_name(0)));
        assert!(vit.depth_of(&vit_layer_name(2)) < vit.depth_of(&vit_layer_name(11)));
    }

    #[test]
    fn layer_names_follow_torchvision_modules() {
        let vgg16 = Architecture::Vgg16.layer_names();
        assert_eq!((vgg16.len(), vgg16[30].as_str()), (31, "features.30"));
        let resnet = Architecture::Resnet50.layer_names();
        assert!(resnet.contains(&"layer3.5".to_string()) && resnet.contains(&"layer4".into()));
        // Stem, 16 blocks, 4 aliases, then six points inside each bottleneck.
        assert_eq!(resnet.len(), 4 + 16 + 4 + 16 * 6);
        assert_eq!(
            resnet[24..27],
            ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2"]
        );
        assert!(resnet.ends_with(&["layer4.2.conv3".into(), "layer4.2.bn3".into()]));
        let resnet18 = Architecture::Resnet18.layer_names();
        assert!(resnet18.ends_with(&["layer4.1.conv2".into(), "layer4.1.bn2".into()]));
        assert!(!resnet18.contains(&"layer4.1.conv3".to_string()));
        assert!(!Architecture::Resnet18.pools_globally_after("layer4.1.bn2"));
        assert!(Architecture::Resnet18.pools_globally_after("layer4"));
        assert!(Architecture::Resnet18.pools_globally_after("layer4.1"));
        assert!(!Architecture::Resnet18.pools_globally_after("layer3"));
        assert!(!Architecture::Vgg16.pools_globally_after("features.30"));
        assert!(Architecture::TinyCnn.pools_globally_after("features.7"));

        let efficientnet = Architecture::EfficientnetB0.layer_names();
        assert_eq!(
            &efficientnet[..3],
            ["features.0", "features.1.0", "features.2.0"]
        );
        // 1 + 16 blocks + 1 stages, the 7 block stages' aliases, then the points inside
        // blocks: 3 in features.1's one block (no expansion), 4 in each of the 15 others.
        assert_eq!(efficientnet.len(), 18 + 7 + 3 + 15 * 4);
        assert_eq!(efficientnet[17], "features.8");
        assert_eq!(efficientnet[24], "features.7");
        assert_eq!(
            efficientnet[25..29],
            [
                "features.1.0.block.0",
                "features.1.0.block.1",
                "features.1.0.block.2",
                "features.2.0.block.0"
            ]
        );
        assert!(efficientnet.ends_with(&["features.7.0.block.3".into()]));
        assert!(!Architecture::EfficientnetB0.pools_globally_after("features.7.0.block.3"));
        assert!(Architecture::EfficientnetB0.pools_globally_after("features.8"));
        assert!(!Architecture::EfficientnetB0.pools_globally_after("features.7"));

        let convnext = Architecture::ConvnextTiny.layer_names();
        assert_eq!(
            &convnext[..5],
            [
                "features.0",
                "features.1.0",
                "features.1.1",
                "features.1.2",
                "features.2"
            ]
        );
        // Stages, aliases, then five points inside each of the 18 blocks.
        assert_eq!(convnext.len(), 4 + 18 + 4 + 18 * 5);
        assert!(convnext.contains(&"features.5.8".to_string()));
        assert_eq!(
            convnext[26..31],
            [
                "features.1.0.block.0",
                "features.1.0.block.2",
                "features.1.0.block.3",
                "features.1.0.block.4",
                "features.1.0.block.5"
            ]
        );
        let convnext = Architecture::ConvnextTiny;
        assert!(convnext.pools_globally_after("features.7"));
        assert!(convnext.pools_globally_after("features.7.2"));
        assert!(convnext.pools_globally_after("features.7.2.block.5"));
        assert!(convnext.pools_globally_after("features.7.2.block.4"));
        assert!(!convnext.pools_globally_after("features.7.2.block.3"));
        assert!(!convnext.pools_globally_after("features.6"));
        assert!(!convnext.pools_globally_after("features.7.1"));
        assert!(!convnext.pools_globally_after("features.7.1.block.5"));
        assert!(convnext.channel_sum_vanishes_at("features.3.1.block.0"));
        assert!(!convnext.channel_sum_vanishes_at("features.3.1.block.2"));
        assert!(!convnext.channel_sum_vanishes_at("features.3.1"));
        assert!(convnext.channel_sum_vanishes_at("features.3.2"));
    }
}

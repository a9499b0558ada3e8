//! torchvision's ViT-B/16 (`vit_b_16`) in eval mode.
//!
//! Stages are `conv_proj` (the 16×16 patch embedding, a `768 × g × g` map) and the twelve
//! encoder layers `encoder.layers.encoder_layer_0` … `_11`. The first encoder layer's stage
//! also does what torchvision does between the two: flatten the patches to tokens, put the
//! class token in front and add the position embeddings (dropout is the identity in eval
//! mode). An encoder layer's output is a token sequence `[B, 1 + g², 768]`; the backbone
//! shows it to HINT as the patch tokens' map `[B, 768, g, g]` and carries the class token
//! past the layer beside it ([`super::Hidden`]). The head is `encoder.ln` on the class
//! token and `heads.head`.
//!
//! The grid `g` is fixed by the position embeddings: 14 for torchvision's 224-pixel
//! weights, whatever a weights file holds otherwise (`g² + 1` positions), so the crop must
//! be `16 g` ([`super::Backbone::check_input`]).
//!
//! Attention is computed as `softmax(q kᵀ / √d) v` per head from `in_proj_weight`, as
//! `nn.MultiheadAttention` does; there is no ReLU, so [`ReluMode`] changes nothing here —
//! guided backpropagation is refused on this architecture before it reaches a model
//! (`Method::unsupported_on`).

use hint_common::architecture::{vit_layer_name, VitShape, VIT_B_16};
use tch::nn::{self, Init};
use tch::Tensor;

use super::{Parts, ReluMode, Stage, Tokens};

/// The epsilon of every LayerNorm of torchvision's ViT.
const EPS: f64 = 1e-6;

/// The patch grid of torchvision's ImageNet weights (224 / 16).
pub(super) const DEFAULT_GRID: i64 = 14;

/// The state_dict key of the position embeddings, `[1, 1 + g², width]`.
pub(super) const POSITION_EMBEDDING: &str = "encoder.pos_embedding";

/// The state_dict key of the class token, `[1, 1, width]`.
const CLASS_TOKEN: &str = "class_token";

/// Builds torchvision's `vit_b_16` under `root` for a `grid × grid` patch grid.
pub(super) fn build(root: &nn::Path, num_classes: i64, grid: i64) -> Parts {
    let shape = VIT_B_16;
    let width = shape.width;
    let conv_proj = nn::conv2d(
        root / "conv_proj",
        3,
        width,
        shape.patch,
        nn::ConvConfig {
            stride: shape.patch,
            ..Default::default()
        },
    );
    let mut embedding = Some(Embedding {
        class_token: root.var(CLASS_TOKEN, &[1, 1, width], Init::Const(0.0)),
        // `encoder.pos_embedding` (tch's variable names hold no dot).
        positions: (root / "encoder").var(
            "pos_embedding",
            &[1, 1 + grid * grid, width],
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        ),
    });
    let layers = root / "encoder" / "layers";
    let mut stages: Vec<(String, Box<dyn Stage>)> =
        vec![("conv_proj".to_string(), Box::new(PatchEmbedding(conv_proj)))];
    for index in 0..shape.layers {
        let block = EncoderBlock::new(&(&layers / format!("encoder_layer_{index}")), shape);
        let stage: Box<dyn Stage> = match embedding.take() {
            Some(embedding) => Box::new(Embedded { embedding, block }),
            None => Box::new(block),
        };
        stages.push((vit_layer_name(index), stage));
    }
    let head = Head {
        norm: layer_norm(&(root / "encoder" / "ln"), width),
        fc: nn::linear(
            root / "heads" / "head",
            width,
            num_classes,
            Default::default(),
        ),
    };
    Parts {
        stages,
        aliases: Vec::new(),
        head: Box::new(head),
        // The encoder layers carry tokens; the embedding belongs to the first of them.
        tokens: Some(Tokens {
            from: 1,
            owners: vec![
                (CLASS_TOKEN.to_string(), 1),
                (POSITION_EMBEDDING.to_string(), 1),
            ],
        }),
    }
}

fn layer_norm(path: &nn::Path, width: i64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps: EPS,
        ..Default::default()
    };
    nn::layer_norm(path, vec![width], config)
}

/// `F.linear`, as `nn.Linear` computes it (one fused multiply-add with the bias).
fn linear(layer: &nn::Linear, x: &Tensor) -> Tensor {
    x.linear(&layer.ws, layer.bs.as_ref())
}

/// `conv_proj`: non-overlapping 16×16 patches to 768 channels.
#[derive(Debug)]
struct PatchEmbedding(nn::Conv2D);

impl Stage for PatchEmbedding {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        use tch::nn::Module;
        self.0.forward(x)
    }
}

/// The class token and the position embeddings.
#[derive(Debug)]
struct Embedding {
    class_token: Tensor,
    positions: Tensor,
}

/// The first encoder layer, after the patch map becomes tokens: `[B, D, g, g]` →
/// `[B, 1 + g², D]` (class token first) plus the position embeddings, then the block.
#[derive(Debug)]
struct Embedded {
    embedding: Embedding,
    block: EncoderBlock,
}

impl Stage for Embedded {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        let batch = x.size()[0];
        let patches = x.flatten(2, -1).transpose(1, 2);
        let class = self.embedding.class_token.expand([batch, -1, -1], false);
        let tokens = Tensor::cat(&[class, patches], 1) + &self.embedding.positions;
        self.block.forward(&tokens, relu)
    }
}

/// torchvision's `EncoderBlock`: pre-norm self-attention and MLP, each with a residual.
#[derive(Debug)]
struct EncoderBlock {
    ln_1: nn::LayerNorm,
    attention: SelfAttention,
    ln_2: nn::LayerNorm,
    mlp_0: nn::Linear,
    mlp_3: nn::Linear,
}

impl EncoderBlock {
    fn new(path: &nn::Path, shape: VitShape) -> Self {
        let width = shape.width;
        EncoderBlock {
            ln_1: layer_norm(&(path / "ln_1"), width),
            attention: SelfAttention::new(&(path / "self_attention"), width, shape.heads),
            ln_2: layer_norm(&(path / "ln_2"), width),
            mlp_0: nn::linear(path / "mlp" / 0, width, shape.mlp, Default::default()),
            mlp_3: nn::linear(path / "mlp" / 3, shape.mlp, width, Default::default()),
        }
    }
}

impl Stage for EncoderBlock {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        use tch::nn::Module;
        let attended = self.attention.forward(&self.ln_1.forward(x)) + x;
        let hidden = linear(&self.mlp_0, &self.ln_2.forward(&attended)).gelu("none");
        linear(&self.mlp_3, &hidden) + attended
    }
}

/// `nn.MultiheadAttention(width, heads, batch_first=True)` applied as `attn(x, x, x)`.
#[derive(Debug)]
struct SelfAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl SelfAttention {
    fn new(path: &nn::Path, width: i64, heads: i64) -> Self {
        let bound = (6.0 / (width + 3 * width) as f64).sqrt();
        SelfAttention {
            in_proj_weight: path.var(
                "in_proj_weight",
                &[3 * width, width],
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            in_proj_bias: path.var("in_proj_bias", &[3 * width], Init::Const(0.0)),
            out_proj: nn::linear(path / "out_proj", width, width, Default::default()),
            heads,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let (batch, tokens, width) = (size[0], size[1], size[2]);
        let per_head = width / self.heads;
        // [B, T, 3D] → three [B, heads, T, D / heads].
        let qkv = x
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .view([batch, tokens, 3, self.heads, per_head])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let scores = (q * (per_head as f64).powf(-0.5)).matmul(&k.transpose(-2, -1));
        let attended = scores
            .softmax(-1, scores.kind())
            .matmul(&v)
            .transpose(1, 2)
            .reshape([batch, tokens, width]);
        linear(&self.out_proj, &attended)
    }
}

/// `encoder.ln` on the class token, then `heads.head`.
#[derive(Debug)]
struct Head {
    norm: nn::LayerNorm,
    fc: nn::Linear,
}

impl Stage for Head {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        use tch::nn::Module;
        linear(&self.fc, &self.norm.forward(&x.select(1, 0)))
    }
}

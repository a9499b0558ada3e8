//! torchvision's Inception-v3 in eval mode.
//!
//! Stages are the top-level modules of torchvision's `Inception3` in forward order
//! (`Conv2d_1a_3x3` … `Mixed_7c`). The auxiliary classifier only runs in training, so it
//! is not built (its `AuxLogits.*` weights are skipped when loading). `transform_input`
//! is on, as in torchvision's ImageNet weights: the first stage re-normalises its
//! ImageNet-normalised input to the `[-1, 1]` scaling the ported Google weights expect.
//!
//! Every mixed block is a concatenation of branches, each an optional pooling, a chain of
//! `BasicConv2d`s and, in `InceptionE`, a final split into two parallel convolutions whose
//! outputs are concatenated; [`Mixed`] covers `InceptionA` … `InceptionE` that way, with
//! the branches in torchvision's `torch.cat` order.
//!
//! Inside a mixed block every `BasicConv2d` is a point (`Mixed_6b.branch7x7_2`: its output
//! after the ReLU, as a hook on that module sees it). At a point the block's input is
//! carried: the rest of the block is the rest of the point's branch, from the point's map,
//! and every other branch from the input, concatenated. Two points of one block do not
//! share a saliency pass (parallel branches do not feed each other;
//! `Architecture::pass_problem` refuses it); their maps in one forward pass are right.

use hint_common::architecture::{
    INCEPTION_A_POINTS, INCEPTION_B_POINTS, INCEPTION_C_POINTS, INCEPTION_D_POINTS,
    INCEPTION_E_POINTS,
};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::{GlobalPoolHead, MaxPool, Parts, ReluMode, Stage};

/// Builds torchvision's `inception_v3` (without `AuxLogits`) under `root`.
pub(super) fn build(root: &nn::Path, num_classes: i64) -> Parts {
    let basic = |name: &str, i, o, k| BasicConv::new(&(root / name), i, o, (k, k), 1, (0, 0));
    let stages: Vec<(&str, Box<dyn Stage>)> = vec![
        (
            "Conv2d_1a_3x3",
            Box::new(TransformInput(BasicConv::new(
                &(root / "Conv2d_1a_3x3"),
                3,
                32,
                (3, 3),
                2,
                (0, 0),
            ))),
        ),
        ("Conv2d_2a_3x3", Box::new(basic("Conv2d_2a_3x3", 32, 32, 3))),
        (
            "Conv2d_2b_3x3",
            Box::new(BasicConv::new(
                &(root / "Conv2d_2b_3x3"),
                32,
                64,
                (3, 3),
                1,
                (1, 1),
            )),
        ),
        ("maxpool1", Box::new(MAX_POOL_3X3)),
        ("Conv2d_3b_1x1", Box::new(basic("Conv2d_3b_1x1", 64, 80, 1))),
        (
            "Conv2d_4a_3x3",
            Box::new(basic("Conv2d_4a_3x3", 80, 192, 3)),
        ),
        ("maxpool2", Box::new(MAX_POOL_3X3)),
        (
            "Mixed_5b",
            Box::new(inception_a(&(root / "Mixed_5b"), 192, 32)),
        ),
        (
            "Mixed_5c",
            Box::new(inception_a(&(root / "Mixed_5c"), 256, 64)),
        ),
        (
            "Mixed_5d",
            Box::new(inception_a(&(root / "Mixed_5d"), 288, 64)),
        ),
        ("Mixed_6a", Box::new(inception_b(&(root / "Mixed_6a"), 288))),
        (
            "Mixed_6b",
            Box::new(inception_c(&(root / "Mixed_6b"), 768, 128)),
        ),
        (
            "Mixed_6c",
            Box::new(inception_c(&(root / "Mixed_6c"), 768, 160)),
        ),
        (
            "Mixed_6d",
            Box::new(inception_c(&(root / "Mixed_6d"), 768, 160)),
        ),
        (
            "Mixed_6e",
            Box::new(inception_c(&(root / "Mixed_6e"), 768, 192)),
        ),
        ("Mixed_7a", Box::new(inception_d(&(root / "Mixed_7a"), 768))),
        (
            "Mixed_7b",
            Box::new(inception_e(&(root / "Mixed_7b"), 1280)),
        ),
        (
            "Mixed_7c",
            Box::new(inception_e(&(root / "Mixed_7c"), 2048)),
        ),
    ];
    let fc = nn::linear(root / "fc", 2048, num_classes, Default::default());
    Parts {
        stages: stages
            .into_iter()
            .map(|(name, stage)| (name.to_string(), stage))
            .collect(),
        aliases: Vec::new(),
        head: Box::new(GlobalPoolHead { fc }),
        tokens: None,
    }
}

/// torchvision's `BasicConv2d`: convolution without bias, batch norm (eps 0.001), ReLU.
#[derive(Debug)]
struct BasicConv {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl BasicConv {
    fn new(
        path: &nn::Path,
        inputs: i64,
        outputs: i64,
        kernel: (i64, i64),
        stride: i64,
        padding: (i64, i64),
    ) -> Self {
        let config = nn::ConvConfigND::<[i64; 2]> {
            stride: [stride, stride],
            padding: [padding.0, padding.1],
            dilation: [1, 1],
            groups: 1,
            bias: false,
            ws_init: nn::init::DEFAULT_KAIMING_UNIFORM,
            bs_init: nn::Init::Const(0.0),
            padding_mode: nn::PaddingMode::Zeros,
        };
        let conv = nn::conv(path / "conv", inputs, outputs, [kernel.0, kernel.1], config);
        let bn_config = nn::BatchNormConfig {
            eps: 0.001,
            ws_init: nn::Init::Const(1.0),
            ..Default::default()
        };
        let bn = nn::batch_norm2d(path / "bn", outputs, bn_config);
        BasicConv { conv, bn }
    }

    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        crate::guided::relu(&self.bn.forward_t(&self.conv.forward(x), false), relu)
    }
}

impl Stage for BasicConv {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        BasicConv::forward(self, x, relu)
    }
}

/// The first stage: torchvision's `_transform_input`, then `Conv2d_1a_3x3`. Putting the
/// transform inside the stage keeps the model's input the usual ImageNet-normalised image.
#[derive(Debug)]
struct TransformInput(BasicConv);

impl Stage for TransformInput {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        // Same operations and constants as torchvision, so the results agree bit for bit.
        let channel = |c: i64, std: f64, mean: f64| {
            x.select(1, c).unsqueeze(1) * (std / 0.5) + (mean - 0.5) / 0.5
        };
        let x = Tensor::cat(
            &[
                channel(0, 0.229, 0.485),
                channel(1, 0.224, 0.456),
                channel(2, 0.225, 0.406),
            ],
            1,
        );
        self.0.forward(&x, relu)
    }
}

/// `MaxPool2d(kernel_size=3, stride=2)`: the stem's pools and InceptionB/D's pool branch.
const MAX_POOL_3X3: MaxPool = MaxPool {
    kernel: 3,
    stride: 2,
    padding: 0,
};

/// The pooling a branch starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    None,
    /// `F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)`; PyTorch's default
    /// `count_include_pad=True` counts the zero padding in the border averages.
    Avg3x3,
    /// `F.max_pool2d(x, kernel_size=3, stride=2)`.
    Max3x3Stride2,
}

/// One branch of a mixed block.
#[derive(Debug)]
struct Branch {
    pool: Pool,
    convs: Vec<BasicConv>,
    /// InceptionE's `branch3x3_2a`/`_2b` (or `_3a`/`_3b`): two convolutions applied to the
    /// chain's output, concatenated.
    split: Option<[BasicConv; 2]>,
}

impl Branch {
    fn convs(convs: Vec<BasicConv>) -> Self {
        Branch {
            pool: Pool::None,
            convs,
            split: None,
        }
    }

    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        let y = self.chain(x, self.convs.len(), relu);
        match &self.split {
            Some([a, b]) => Tensor::cat(&[a.forward(&y, relu), b.forward(&y, relu)], 1),
            None => y,
        }
    }

    /// Its steps: the chain's convolutions, then the split's two.
    fn steps(&self) -> usize {
        self.convs.len() + if self.split.is_some() { 2 } else { 0 }
    }

    /// The chain's output from the block's input, up to and including convolution `end - 1`.
    fn chain(&self, x: &Tensor, end: usize, relu: ReluMode) -> Tensor {
        let mut y = match self.pool {
            Pool::None => x.shallow_clone(),
            Pool::Avg3x3 => x.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None),
            Pool::Max3x3Stride2 => MAX_POOL_3X3.forward(x, ReluMode::Plain),
        };
        for conv in &self.convs[..end] {
            y = conv.forward(&y, relu);
        }
        y
    }

    /// The map at `step`, from the block's input.
    fn upto(&self, x: &Tensor, step: usize, relu: ReluMode) -> Tensor {
        let n = self.convs.len();
        if step < n {
            return self.chain(x, step + 1, relu);
        }
        let split = self
            .split
            .as_ref()
            .expect("a step past the chain is a split");
        split[step - n].forward(&self.chain(x, n, relu), relu)
    }

    /// The branch's output from the map `y` at `step` (`x`: the block's input, which the
    /// other half of a split starts from).
    fn rest_from(&self, y: &Tensor, step: usize, x: &Tensor, relu: ReluMode) -> Tensor {
        let n = self.convs.len();
        if step >= n {
            // Half of the split: the other half from the input.
            let (other, first) = if step == n { (n + 1, true) } else { (n, false) };
            let other = self.upto(x, other, relu);
            let halves = if first { [y, &other] } else { [&other, y] };
            return Tensor::cat(&halves, 1);
        }
        let mut y = y.shallow_clone();
        for conv in &self.convs[step + 1..] {
            y = conv.forward(&y, relu);
        }
        match &self.split {
            Some([a, b]) => Tensor::cat(&[a.forward(&y, relu), b.forward(&y, relu)], 1),
            None => y,
        }
    }
}

/// InceptionA … InceptionE: the branches' outputs concatenated along channels.
#[derive(Debug)]
struct Mixed {
    branches: Vec<Branch>,
    /// Its `BasicConv2d`s by name (`hint_common::architecture::INCEPTION_A_POINTS` …),
    /// branch by branch, each branch's steps in order.
    points: &'static [&'static str],
}

impl Mixed {
    fn new(branches: Vec<Branch>, points: &'static [&'static str]) -> Self {
        let steps: usize = branches.iter().map(Branch::steps).sum();
        assert_eq!(steps, points.len(), "a name for every BasicConv2d");
        Mixed { branches, points }
    }

    /// The branch and step of point `point`.
    fn locate(&self, point: usize) -> (usize, usize) {
        let mut first = 0;
        for (b, branch) in self.branches.iter().enumerate() {
            if point < first + branch.steps() {
                return (b, point - first);
            }
            first += branch.steps();
        }
        panic!("no point {point} in {:?}", self.points)
    }
}

impl Stage for Mixed {
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor {
        let outputs: Vec<Tensor> = self.branches.iter().map(|b| b.forward(x, relu)).collect();
        Tensor::cat(&outputs, 1)
    }

    fn points(&self) -> &'static [&'static str] {
        self.points
    }

    fn between(
        &self,
        main: &Tensor,
        input: &Tensor,
        from: Option<usize>,
        to: Option<usize>,
        relu: ReluMode,
    ) -> Tensor {
        let from = from.map(|p| self.locate(p));
        match to.map(|q| self.locate(q)) {
            // A point, from the block's input, even when going on from another point of the
            // block: a point of another branch (or the other half of a split) does not lead
            // to it. The map is right; no gradient flows from `from` to it, which is why two
            // points of one block do not share a saliency pass (`Architecture::pass_problem`).
            Some((b, step)) => self.branches[b].upto(input, step, relu),
            None => {
                let outputs: Vec<Tensor> = self
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(b, branch)| match from {
                        Some((a, s)) if a == b => branch.rest_from(main, s, input, relu),
                        _ => branch.forward(input, relu),
                    })
                    .collect();
                Tensor::cat(&outputs, 1)
            }
        }
    }
}

/// `BasicConv2d` named `name` inside block `p`.
fn bc(
    p: &nn::Path,
    name: &str,
    inputs: i64,
    outputs: i64,
    kernel: (i64, i64),
    stride: i64,
    padding: (i64, i64),
) -> BasicConv {
    BasicConv::new(&(p / name), inputs, outputs, kernel, stride, padding)
}

/// A `branch_pool`: average pool then a 1×1 `BasicConv2d`.
fn avg_pool_branch(p: &nn::Path, inputs: i64, outputs: i64) -> Branch {
    Branch {
        pool: Pool::Avg3x3,
        convs: vec![bc(p, "branch_pool", inputs, outputs, (1, 1), 1, (0, 0))],
        split: None,
    }
}

/// A max-pool branch (no parameters).
fn max_pool_branch() -> Branch {
    Branch {
        pool: Pool::Max3x3Stride2,
        convs: Vec::new(),
        split: None,
    }
}

fn inception_a(p: &nn::Path, c: i64, pool_features: i64) -> Mixed {
    Mixed::new(
        vec![
            Branch::convs(vec![bc(p, "branch1x1", c, 64, (1, 1), 1, (0, 0))]),
            Branch::convs(vec![
                bc(p, "branch5x5_1", c, 48, (1, 1), 1, (0, 0)),
                bc(p, "branch5x5_2", 48, 64, (5, 5), 1, (2, 2)),
            ]),
            Branch::convs(vec![
                bc(p, "branch3x3dbl_1", c, 64, (1, 1), 1, (0, 0)),
                bc(p, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)),
                bc(p, "branch3x3dbl_3", 96, 96, (3, 3), 1, (1, 1)),
            ]),
            avg_pool_branch(p, c, pool_features),
        ],
        &INCEPTION_A_POINTS,
    )
}

fn inception_b(p: &nn::Path, c: i64) -> Mixed {
    Mixed::new(
        vec![
            Branch::convs(vec![bc(p, "branch3x3", c, 384, (3, 3), 2, (0, 0))]),
            Branch::convs(vec![
                bc(p, "branch3x3dbl_1", c, 64, (1, 1), 1, (0, 0)),
                bc(p, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)),
                bc(p, "branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0)),
            ]),
            max_pool_branch(),
        ],
        &INCEPTION_B_POINTS,
    )
}

fn inception_c(p: &nn::Path, c: i64, c7: i64) -> Mixed {
    Mixed::new(
        vec![
            Branch::convs(vec![bc(p, "branch1x1", c, 192, (1, 1), 1, (0, 0))]),
            Branch::convs(vec![
                bc(p, "branch7x7_1", c, c7, (1, 1), 1, (0, 0)),
                bc(p, "branch7x7_2", c7, c7, (1, 7), 1, (0, 3)),
                bc(p, "branch7x7_3", c7, 192, (7, 1), 1, (3, 0)),
            ]),
            Branch::convs(vec![
                bc(p, "branch7x7dbl_1", c, c7, (1, 1), 1, (0, 0)),
                bc(p, "branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0)),
                bc(p, "branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3)),
                bc(p, "branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0)),
                bc(p, "branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3)),
            ]),
            avg_pool_branch(p, c, 192),
        ],
        &INCEPTION_C_POINTS,
    )
}

fn inception_d(p: &nn::Path, c: i64) -> Mixed {
    Mixed::new(
        vec![
            Branch::convs(vec![
                bc(p, "branch3x3_1", c, 192, (1, 1), 1, (0, 0)),
                bc(p, "branch3x3_2", 192, 320, (3, 3), 2, (0, 0)),
            ]),
            Branch::convs(vec![
                bc(p, "branch7x7x3_1", c, 192, (1, 1), 1, (0, 0)),
                bc(p, "branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3)),
                bc(p, "branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0)),
                bc(p, "branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0)),
            ]),
            max_pool_branch(),
        ],
        &INCEPTION_D_POINTS,
    )
}

fn inception_e(p: &nn::Path, c: i64) -> Mixed {
    Mixed::new(
        vec![
            Branch::convs(vec![bc(p, "branch1x1", c, 320, (1, 1), 1, (0, 0))]),
            Branch {
                pool: Pool::None,
                convs: vec![bc(p, "branch3x3_1", c, 384, (1, 1), 1, (0, 0))],
                split: Some([
                    bc(p, "branch3x3_2a", 384, 384, (1, 3), 1, (0, 1)),
                    bc(p, "branch3x3_2b", 384, 384, (3, 1), 1, (1, 0)),
                ]),
            },
            Branch {
                pool: Pool::None,
                convs: vec![
                    bc(p, "branch3x3dbl_1", c, 448, (1, 1), 1, (0, 0)),
                    bc(p, "branch3x3dbl_2", 448, 384, (3, 3), 1, (1, 1)),
                ],
                split: Some([
                    bc(p, "branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1)),
                    bc(p, "branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0)),
                ]),
            },
            avg_pool_branch(p, c, 192),
        ],
        &INCEPTION_E_POINTS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn stages_and_variables_follow_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root(), 10);
        let names: Vec<&str> = parts.stages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 18);
        assert_eq!(names[7], "Mixed_5b");
        assert_eq!(names[11], "Mixed_6b");
        let vars = vs.variables();
        assert_eq!(
            vars["Mixed_6b.branch7x7_2.conv.weight"].size(),
            [128, 128, 1, 7]
        );
        assert_eq!(
            vars["Mixed_7c.branch3x3dbl_3b.conv.weight"].size(),
            [384, 384, 3, 1]
        );
        assert_eq!(vars["Mixed_5b.branch_pool.bn.running_mean"].size(), [32]);
        assert_eq!(vars["fc.weight"].size(), [10, 2048]);
        // torchvision's inception_v3 state_dict without AuxLogits: 566 entries, 94 of them
        // num_batches_tracked.
        assert_eq!(vars.len(), 566 - 94);
    }

    #[test]
    fn channel_counts_through_the_mixed_blocks() {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root(), 10);
        // 75×75 is torchvision's minimum input size: Mixed_7c's map is 1×1.
        let mut x = Tensor::rand([1, 3, 75, 75], (Kind::Float, Device::Cpu));
        let mut channels = Vec::new();
        for (i, (_, stage)) in parts.stages.iter().enumerate() {
            x = stage.forward(&x, ReluMode::Plain);
            if i >= 7 {
                channels.push(x.size()[1]);
            }
        }
        assert_eq!(
            channels,
            [256, 288, 288, 768, 768, 768, 768, 768, 1280, 2048, 2048]
        );
        assert_eq!(x.size(), [1, 2048, 1, 1]);
    }
}

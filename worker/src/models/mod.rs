//! Backbones with torchvision's layer names, split at any addressable layer.
//!
//! A [`Backbone`] is a list of named [`Stage`]s run in order plus a head that turns the
//! last stage's output into logits. Every stage name is a torchvision module name
//! (`features.30`, `layer3.5`, `Mixed_6b`, `features.5.8`), so HINT's hidden layer `l` is
//! "the output of stage `l`": [`Backbone::forward_to`] computes `z = f_{≤l}(x)` and
//! [`Backbone::forward_from`] the logits `f_{>l}(z)`, which is all the saliency methods
//! need (backpropagation stopped at `l`).
//!
//! Weights come from a safetensors file holding a torchvision `state_dict`
//! ([`Backbone::from_safetensors`]); the number of classes is read from the classifier's
//! weight in the file.

mod convnext;
mod efficientnet;
mod inception;
mod resnet;
mod tiny;
mod vgg;
mod vit;
mod weights;

use std::fmt;
use std::path::Path;

use tch::{nn, Device, Tensor};

use crate::error::{Error, Result};
pub use crate::guided::ReluMode;

pub use hint_common::architecture::{Architecture, InputSize};

/// One piece of a backbone whose output is an addressable layer, or the head.
pub trait Stage: Send + fmt::Debug {
    /// Runs the stage. `relu` says whether ReLUs inside it are guided.
    fn forward(&self, x: &Tensor, relu: ReluMode) -> Tensor;

    /// Addressable points inside the stage, in forward order, by their torchvision names
    /// under the stage (a residual block's `conv1`, `bn1`, …); none by default.
    fn points(&self) -> &'static [&'static str] {
        &[]
    }

    /// Runs part of the stage on `main`: from point `from` (`None`: the stage's input) to
    /// point `to` (`None`: the stage's output). `input` is the stage's input, which the
    /// rest of a residual block adds back. Only stages with [`points`](Stage::points) are
    /// asked for a part.
    fn between(
        &self,
        main: &Tensor,
        _input: &Tensor,
        from: Option<usize>,
        to: Option<usize>,
        relu: ReluMode,
    ) -> Tensor {
        assert!(
            from.is_none() && to.is_none(),
            "{self:?} has no inner points"
        );
        self.forward(main, relu)
    }
}

/// An addressable layer of a [`Backbone`], resolved from its torchvision name: a stage's
/// output, or a point inside a stage (`layer3.1.conv2`). Layers order by depth (an alias
/// and the stage it names are the same layer; a stage's inner points come before its
/// output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Layer {
    /// Index of the stage this layer is the output of, or inside.
    stage: usize,
    /// Index into the stage's [`Stage::points`], or [`OUTPUT`] for its output.
    point: usize,
}

/// [`Layer::point`] of a stage's output.
const OUTPUT: usize = usize::MAX;

impl Layer {
    /// The point inside the stage, `None` for the stage's output.
    fn inner(self) -> Option<usize> {
        (self.point != OUTPUT).then_some(self.point)
    }

    /// The output of stage `stage`.
    fn output(stage: usize) -> Layer {
        Layer {
            stage,
            point: OUTPUT,
        }
    }
}

/// A layer's output for a batch: the map HINT sees, and what the network carries past the
/// layer besides (ViT's class token; at a point inside a residual block, the block's input,
/// which its end adds back). Saliency differentiates with respect to `map` with
/// the carried part held fixed; an ablation or attack replaces `map` ([`Hidden::with_map`])
/// and runs [`Backbone::forward_from`] on the result.
#[derive(Debug)]
pub struct Hidden {
    /// `[B, D, H, W]`: a CNN's activation; a ViT's patch tokens as a `g × g` grid.
    pub map: Tensor,
    /// ViT's class token `[B, 1, D]`, or a residual block's input `[B, C, H', W']` at a
    /// point inside it; `None` where the layer carries only the map.
    carry: Option<Tensor>,
    /// The memory layout the map was computed in, where that was not NCHW: its dimensions
    /// from the outermost to the innermost in memory (`[0, 2, 3, 1]`: channels last).
    /// [`Backbone::advance`] lays the map out so again before going deeper.
    computed_in: Option<[i64; 4]>,
}

impl Hidden {
    /// The same point of the network with `map` in place of this map (same shape).
    pub fn with_map(&self, map: Tensor) -> Hidden {
        Hidden {
            map,
            carry: self.carry.as_ref().map(Tensor::shallow_clone),
            computed_in: self.computed_in,
        }
    }

    /// The batches of `parts` one after the other.
    pub fn cat(parts: &[Hidden]) -> Hidden {
        let maps: Vec<&Tensor> = parts.iter().map(|h| &h.map).collect();
        let carries: Option<Vec<&Tensor>> = parts.iter().map(|h| h.carry.as_ref()).collect();
        Hidden {
            map: Tensor::cat(&maps, 0),
            carry: carries.map(|c| Tensor::cat(&c, 0)),
            computed_in: parts.first().and_then(|h| h.computed_in),
        }
    }

    /// The batch `times` over, whole batch after whole batch, with `map` (`times × B`
    /// images) in place of the map.
    pub fn repeated_with_map(&self, times: i64, map: Tensor) -> Hidden {
        let carry = self.carry.as_ref().map(|c| {
            let mut repeats = vec![1; c.dim()];
            repeats[0] = times;
            c.repeat(repeats.as_slice())
        });
        Hidden {
            map,
            carry,
            computed_in: self.computed_in,
        }
    }
}

/// A layer's map as a stage computes it, its layout not yet remembered ([`handed_on`]).
fn plain(map: Tensor, carry: Option<Tensor>) -> Hidden {
    Hidden {
        map,
        carry,
        computed_in: None,
    }
}

/// `z` with its map contiguous (NCHW), as [`Backbone::forward_to`] and
/// [`Backbone::advance`] hand a layer on: what the gather and the saliency methods read,
/// and the layout the layers above ran in before channels-last (a layout changes the order
/// of rounding, and a gradient through ReLUs and max pools is discontinuous in it). The
/// layout it was computed in is remembered (`computed_in`); a carried block input keeps
/// its own.
fn handed_on(z: Hidden) -> Hidden {
    let computed_in = (z.map.dim() == 4 && !z.map.is_contiguous()).then(|| {
        let stride = z.map.stride();
        // Outermost first; ties (size-1 dimensions) in dimension order, as PyTorch lays out.
        let mut order = [0i64, 1, 2, 3];
        order.sort_by_key(|&d| std::cmp::Reverse(stride[d as usize]));
        order
    });
    Hidden {
        map: z.map.contiguous(),
        carry: z.carry,
        computed_in,
    }
}

/// `x` laid out with its dimensions `order` from the outermost to the innermost in memory.
fn laid_out(x: &Tensor, order: [i64; 4]) -> Tensor {
    let mut inverse = [0i64; 4];
    for (position, &d) in order.iter().enumerate() {
        inverse[d as usize] = position as i64;
    }
    x.permute(order).contiguous().permute(inverse)
}

/// A tensor's values as f32 on the host, row-major (a copy from the device, if need be).
pub fn to_host(t: &Tensor) -> Result<Vec<f32>, tch::TchError> {
    Vec::<f32>::try_from(
        t.f_to_kind(tch::Kind::Float)?
            .f_to_device(Device::Cpu)?
            .f_contiguous()?
            .f_flatten(0, -1)?,
    )
}

/// A batch's activations at a layer on the host: `[B, D, H, W]` row-major and `(D, H, W)`.
pub type HostActivations = (Vec<f32>, (usize, usize, usize));

/// A CNN split into named stages, with its weights.
#[derive(Debug)]
pub struct Backbone {
    arch: Architecture,
    num_classes: i64,
    vs: nn::VarStore,
    /// Run in order; the name of each is an addressable layer.
    stages: Vec<(String, Box<dyn Stage>)>,
    /// Extra names for stages: ResNet's `layer3` is its last block, `layer3.5`
    /// (EfficientNet's and ConvNeXt's `features.3` likewise).
    aliases: Vec<(String, usize)>,
    head: Box<dyn Stage>,
    /// Where stages pass token sequences instead of maps (ViT), `None` for CNNs.
    tokens: Option<Tokens>,
}

/// A backbone whose stages from `from` on pass token sequences `[B, 1 + g², D]`, class
/// token first (ViT): at such a layer the map is the patch tokens as a `g × g` grid.
#[derive(Debug)]
struct Tokens {
    /// The first stage whose output is tokens.
    from: usize,
    /// Variables named under no stage that belong to one (ViT's class token and position
    /// embeddings, used by the first encoder layer's stage).
    owners: Vec<(String, usize)>,
}

impl Backbone {
    /// Builds `arch` with randomly initialised weights (seeded through `tch::manual_seed`
    /// by the caller where that matters).
    pub fn new(arch: Architecture, num_classes: i64, device: Device) -> Self {
        Self::with_grid(arch, num_classes, vit::DEFAULT_GRID, device)
    }

    /// [`Backbone::new`] for `crop × crop` images: a ViT gets position embeddings for
    /// `crop / 16` patches a side (random, as every weight here), a CNN is as `new` builds
    /// it. For what depends on the crop but not on the weights (`hint layers --shapes`).
    pub fn for_crop(arch: Architecture, num_classes: i64, crop: u32, device: Device) -> Self {
        let patch = hint_common::architecture::VIT_B_16.patch;
        let grid = (i64::from(crop) / patch).max(1);
        Self::with_grid(arch, num_classes, grid, device)
    }

    /// [`Backbone::new`] with a ViT's patch grid `grid × grid` (ignored by CNNs).
    fn with_grid(arch: Architecture, num_classes: i64, grid: i64, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let parts = match arch {
            Architecture::TinyCnn => tiny::build(&root, num_classes),
            Architecture::Vgg11 => vgg::build(&root, vgg::Depth::D11, num_classes),
            Architecture::Vgg16 => vgg::build(&root, vgg::Depth::D16, num_classes),
            Architecture::Vgg19 => vgg::build(&root, vgg::Depth::D19, num_classes),
            Architecture::Resnet18 => resnet::build(&root, resnet::Depth::D18, num_classes),
            Architecture::Resnet50 => resnet::build(&root, resnet::Depth::D50, num_classes),
            Architecture::InceptionV3 => inception::build(&root, num_classes),
            Architecture::EfficientnetB0 => efficientnet::build(&root, num_classes),
            Architecture::ConvnextTiny => convnext::build(&root, num_classes),
            Architecture::VitB16 => vit::build(&root, num_classes, grid),
        };
        Backbone {
            arch,
            num_classes,
            vs,
            stages: parts.stages,
            aliases: parts.aliases,
            head: parts.head,
            tokens: parts.tokens,
        }
    }

    /// Builds `arch` and loads a torchvision `state_dict` saved as safetensors. The number
    /// of classes comes from the file. Every tensor the architecture needs must be there
    /// with its exact shape; tensors it does not use (`num_batches_tracked`, Inception's
    /// `AuxLogits.*`) are ignored; anything else unknown is an error.
    pub fn from_safetensors(arch: Architecture, path: &Path, device: Device) -> Result<Self> {
        let tensors = weights::read(path)?;
        let num_classes = weights::num_classes(arch, path, &tensors)?;
        let grid = weights::vit_grid(arch, path, &tensors)?;
        let mut backbone = Backbone::with_grid(arch, num_classes, grid, device);
        weights::load_into(&mut backbone.vs, arch, path, tensors)?;
        Ok(backbone)
    }

    /// Saves the weights as a torchvision-compatible safetensors `state_dict`.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        self.vs.save(path)?;
        Ok(())
    }

    /// The trainable weights, named by their torchvision `state_dict` keys. Training
    /// (`crate::train`) builds its optimiser on them and initialises them; it then runs
    /// [`Backbone::forward`], the very path extraction uses.
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The architecture.
    pub fn arch(&self) -> Architecture {
        self.arch
    }

    /// Number of model outputs (classes).
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// Why `crop × crop` images cannot go through this backbone, if they cannot: a ViT's
    /// position embeddings fix its patch grid, so its crop must be 16 × the grid.
    pub fn check_input(&self, crop: u32) -> Result<()> {
        let Some(grid) = self.vit_grid() else {
            return Ok(());
        };
        let patch = hint_common::architecture::VIT_B_16.patch;
        if i64::from(crop) == patch * grid {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{} with these weights needs {size} × {size} images ({grid} × {grid} patches of \
             {patch} pixels, fixed by its {positions} position embeddings), but the crop is \
             {crop}: set the crop to {size}",
            self.arch,
            size = patch * grid,
            positions = grid * grid + 1,
        )))
    }

    /// A ViT's patch grid side, from its position embeddings.
    fn vit_grid(&self) -> Option<i64> {
        self.tokens.as_ref()?;
        let positions = self.vs.variables()[vit::POSITION_EMBEDDING].size()[1];
        Some(((positions - 1) as f64).sqrt().round() as i64)
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every addressable layer name with its layer: the stages in forward order, their
    /// aliases, then the points inside stages (`layer3.1.conv2`) in forward order.
    fn named_layers(&self) -> Vec<(String, Layer)> {
        let stages = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), Layer::output(i)));
        let aliases = self
            .aliases
            .iter()
            .map(|(n, i)| (n.clone(), Layer::output(*i)));
        let inner = self
            .stages
            .iter()
            .enumerate()
            .flat_map(|(stage, (n, module))| {
                module
                    .points()
                    .iter()
                    .enumerate()
                    .map(move |(point, p)| (format!("{n}.{p}"), Layer { stage, point }))
            });
        stages.chain(aliases).chain(inner).collect()
    }

    /// Every addressable layer name: the stages in forward order, their aliases, then the
    /// points inside stages.
    pub fn layer_names(&self) -> Vec<String> {
        self.named_layers().into_iter().map(|(n, _)| n).collect()
    }

    /// Every addressable layer name with its output's shape `[D, H, W]` for one
    /// `crop × crop` image, in [`layer_names`](Self::layer_names)' order: one forward pass
    /// (an alias has its stage's shape).
    pub fn layer_shapes(&self, crop: i64) -> Vec<(String, Vec<i64>)> {
        let named = self.named_layers();
        let mut layers: Vec<Layer> = named.iter().map(|(_, l)| *l).collect();
        layers.sort();
        layers.dedup();
        let x = Tensor::zeros([1, 3, crop, crop], (tch::Kind::Float, self.device()));
        let maps = tch::no_grad(|| self.forward_maps(&x, &layers, ReluMode::Plain));
        named
            .into_iter()
            .map(|(name, layer)| {
                let k = layers.binary_search(&layer).expect("every layer mapped");
                (name, maps[k].size()[1..].to_vec())
            })
            .collect()
    }

    /// Resolves a torchvision layer name; the error lists the valid ones.
    pub fn layer(&self, name: &str) -> Result<Layer> {
        self.named_layers()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, layer)| layer)
            .ok_or_else(|| Error::UnknownLayer {
                arch: self.arch.to_string(),
                layer: name.to_string(),
                why: self.arch.not_addressable(name),
                valid: self.layer_names(),
            })
    }

    /// The parts a cascading randomisation destroys, from the top: `head`, then every
    /// stage from the last down to the first. Part `p`'s stage index is `stages − p` (the
    /// head is past the last stage).
    pub fn parts_from_top(&self) -> Vec<String> {
        std::iter::once(HEAD.to_string())
            .chain(self.stages.iter().rev().map(|(n, _)| n.clone()))
            .collect()
    }

    /// Part `part` of [`parts_from_top`](Self::parts_from_top) reaches `layer`: its stage
    /// is the layer's or one below, so the layer's activations change with it.
    pub fn part_reaches(&self, part: usize, layer: Layer) -> bool {
        part > 0 && self.stages.len() - part <= layer.stage
    }

    /// Destroys what part `part` of [`parts_from_top`](Self::parts_from_top) learned:
    /// every trainable tensor of it (a variable named under the stage, or for the head
    /// one under no stage) has its values permuted by a permutation drawn from `(seed,
    /// part, tensor)`. Each tensor keeps its values (so their scale), not their
    /// arrangement; batch-norm statistics are not trainable and stay.
    pub fn shuffle_part(&self, part: usize, seed: u64) -> Result<()> {
        use rand::seq::SliceRandom;
        let mut variables: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, (name, var)) in variables.iter().enumerate() {
            if !var.requires_grad() || self.part_of(name) != part {
                continue;
            }
            let n = var.numel() as i64;
            let mut order: Vec<i64> = (0..n).collect();
            let mut rng = hint_common::seed::rng(seed, &[SHUFFLE_STREAM, part as u64, k as u64]);
            order.shuffle(&mut rng);
            let index = Tensor::f_from_slice(&order)?.f_to_device(var.device())?;
            tch::no_grad(|| -> Result<()> {
                let shuffled = var.f_flatten(0, -1)?.f_index_select(0, &index)?;
                let mut target = var.shallow_clone();
                target.f_copy_(&shuffled.f_view(var.size().as_slice())?)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The part of [`parts_from_top`](Self::parts_from_top) a variable belongs to: the
    /// stage whose name (with a dot) begins the variable's, the longest such; else the head.
    fn part_of(&self, variable: &str) -> usize {
        let owner = self.tokens.as_ref().and_then(|t| {
            t.owners
                .iter()
                .find(|(name, _)| name == variable)
                .map(|(_, stage)| *stage)
        });
        if let Some(stage) = owner {
            return self.stages.len() - stage;
        }
        self.stages
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| {
                variable.len() > n.len()
                    && variable.starts_with(n.as_str())
                    && variable.as_bytes()[n.len()] == b'.'
            })
            .max_by_key(|(_, (n, _))| n.len())
            .map_or(0, |(i, _)| self.stages.len() - i)
    }

    /// `z = f_{≤l}(x)`: the activation of `layer` for a batch of preprocessed images.
    pub fn forward_to(&self, x: &Tensor, layer: Layer, relu: ReluMode) -> Hidden {
        let mut y = self.in_native_layout(x);
        for (_, stage) in &self.stages[..layer.stage] {
            y = stage.forward(&y, relu);
        }
        handed_on(self.enter(&y, layer, relu))
    }

    /// `x` (`[B, C, H, W]`) laid out as this device's convolutions run fastest. On a CPU
    /// that is channels last: oneDNN's convolutions and libtorch's pooling take an NHWC
    /// input natively and every stage's output stays NHWC, while on NCHW libtorch's max
    /// pooling is a scalar loop (a third of the tiny CNN's forward). Measured with PyTorch
    /// 2.11 on 2 cores, NHWC over NCHW input, same weights: forward 1.8× (tiny CNN, batch
    /// 64, 64 × 64), 1.4× (VGG-11 features), 1.26× (ResNet-18); forward and backward 1.14×
    /// (VGG-11), 1.16× (ResNet-18); logits within 2.5e-6 relative. Only the strides change:
    /// every operation is the same, and [`forward_to`](Self::forward_to) hands its layer back
    /// contiguous. A GPU keeps NCHW (cuDNN's choice there is unmeasured).
    fn in_native_layout(&self, x: &Tensor) -> Tensor {
        if self.device() != Device::Cpu || x.dim() != 4 {
            return x.shallow_clone();
        }
        // NHWC strides on an `[B, C, H, W]` tensor: what `memory_format=channels_last` is.
        laid_out(x, [0, 2, 3, 1])
    }

    /// Layer `layer` from its stage's input `y`.
    fn enter(&self, y: &Tensor, layer: Layer, relu: ReluMode) -> Hidden {
        let stage = &self.stages[layer.stage].1;
        match layer.inner() {
            None => self.hidden(stage.forward(y, relu), layer.stage),
            Some(point) => plain(
                stage.between(y, y, None, Some(point), relu),
                Some(y.shallow_clone()),
            ),
        }
    }

    /// Stage `stage`'s output as HINT sees it: a token sequence split into the patch
    /// tokens' map and the class token; any other output is the map.
    fn hidden(&self, output: Tensor, stage: usize) -> Hidden {
        if self.tokens.as_ref().is_none_or(|t| stage < t.from) {
            return plain(output, None);
        }
        let size = output.size();
        let (batch, tokens, width) = (size[0], size[1], size[2]);
        let grid = ((tokens - 1) as f64).sqrt().round() as i64;
        let map = output
            .narrow(1, 1, tokens - 1)
            .transpose(1, 2)
            .reshape([batch, width, grid, grid]);
        plain(map, Some(output.narrow(1, 0, 1)))
    }

    /// The output of `layer`'s stage from the layer (the inverse of [`hidden`](Self::hidden)
    /// at a stage's output; the rest of the stage at a point inside it).
    fn finish_stage(&self, z: &Hidden, layer: Layer, relu: ReluMode) -> Tensor {
        match (layer.inner(), &z.carry) {
            (None, None) => z.map.shallow_clone(),
            (None, Some(class)) => {
                let patches = z.map.flatten(2, -1).transpose(1, 2);
                Tensor::cat(&[class, &patches], 1)
            }
            (Some(point), Some(input)) => {
                self.stages[layer.stage]
                    .1
                    .between(&z.map, input, Some(point), None, relu)
            }
            (Some(_), None) => unreachable!("a point inside a block carries the block's input"),
        }
    }

    /// From layer `from` (`z`) to the deeper layer `to`, running only what lies between.
    /// The result is computed from `z.map`: in the autograd graph when `z.map` is.
    fn advance(&self, z: &Hidden, from: Layer, to: Layer, relu: ReluMode) -> Hidden {
        assert!(from <= to, "advance goes deeper");
        if from == to {
            return z.with_map(z.map.shallow_clone());
        }
        // The map in the layout it was computed in, so that the layers between run as they
        // do in a pass to `to` alone: a pass at several layers writes, bit for bit, the
        // activations of a pass per layer.
        let relaid = z
            .computed_in
            .map(|order| z.with_map(laid_out(&z.map, order)));
        let z = relaid.as_ref().unwrap_or(z);
        if let (Some(a), Some(b), true) = (from.inner(), to.inner(), from.stage == to.stage) {
            let input = z.carry.as_ref().expect("a block's input");
            let map = self.stages[from.stage]
                .1
                .between(&z.map, input, Some(a), Some(b), relu);
            return handed_on(z.with_map(map));
        }
        let mut y = self.finish_stage(z, from, relu);
        if to == Layer::output(from.stage) {
            return handed_on(self.hidden(y, from.stage));
        }
        for (_, stage) in &self.stages[from.stage + 1..to.stage] {
            y = stage.forward(&y, relu);
        }
        handed_on(self.enter(&y, to, relu))
    }

    /// The activations of `layer` for a batch of preprocessed `crop × crop` images
    /// (`pixels`: `[B, 3, crop, crop]` row-major, on the host), without gradients, back on
    /// the host as f32: `[B, D, H, W]` row-major and `(D, H, W)`.
    pub fn activations_on_host(
        &self,
        pixels: &[f32],
        crop: i64,
        layer: Layer,
    ) -> Result<HostActivations, tch::TchError> {
        let batch = pixels.len() as i64 / (3 * crop * crop);
        let z = tch::no_grad(|| -> Result<Tensor, tch::TchError> {
            let x = Tensor::f_from_slice(pixels)?
                .f_view([batch, 3, crop, crop])?
                .f_to_device(self.device())?;
            Ok(self.forward_to(&x, layer, ReluMode::Plain).map)
        })?;
        let size = z.size();
        let shape = (size[1] as usize, size[2] as usize, size[3] as usize);
        Ok((to_host(&z)?, shape))
    }

    /// Logits `f_{>l}(z)` from the activation of `layer` (`z`), and on the way the maps of
    /// `deeper` (layers at or after `layer`, in depth order) as computed from `z`: in the
    /// autograd graph when `z` is, so one backward pass reaches every one of them.
    pub fn forward_capturing(
        &self,
        z: &Hidden,
        layer: Layer,
        deeper: &[Layer],
        relu: ReluMode,
    ) -> (Tensor, Vec<Tensor>) {
        let mut maps = Vec::with_capacity(deeper.len());
        let (mut at, mut here) = (layer, z.with_map(z.map.shallow_clone()));
        for &next in deeper {
            here = self.advance(&here, at, next, relu);
            maps.push(here.map.shallow_clone());
            at = next;
        }
        (self.forward_from(&here, at, relu), maps)
    }

    /// The maps of `layers` (in depth order) for a batch of preprocessed images: one forward
    /// pass up to the deepest of them.
    pub fn forward_maps(&self, x: &Tensor, layers: &[Layer], relu: ReluMode) -> Vec<Tensor> {
        let Some((&first, deeper)) = layers.split_first() else {
            return Vec::new();
        };
        let mut here = self.forward_to(x, first, relu);
        let mut maps = vec![here.map.shallow_clone()];
        let mut at = first;
        for &next in deeper {
            here = self.advance(&here, at, next, relu);
            maps.push(here.map.shallow_clone());
            at = next;
        }
        maps
    }

    /// Logits `f_{>l}(z)` from the activation of `layer`.
    pub fn forward_from(&self, z: &Hidden, layer: Layer, relu: ReluMode) -> Tensor {
        let mut y = self.finish_stage(z, layer, relu);
        for (_, stage) in &self.stages[layer.stage + 1..] {
            y = stage.forward(&y, relu);
        }
        self.head.forward(&y, relu)
    }

    /// Logits for a batch of preprocessed images.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let last = Layer::output(self.stages.len() - 1);
        self.forward_from(
            &self.forward_to(x, last, ReluMode::Plain),
            last,
            ReluMode::Plain,
        )
    }
}

/// The name of the part above every stage in [`Backbone::parts_from_top`].
pub const HEAD: &str = "head";

/// Seed-stream tag of the weight shuffles of a cascading randomisation.
const SHUFFLE_STREAM: u64 = 0x5348; // "SH"

/// `MaxPool2d(kernel, stride, padding)` with square windows, as a stage.
#[derive(Debug)]
struct MaxPool {
    kernel: i64,
    stride: i64,
    padding: i64,
}

impl Stage for MaxPool {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        x.max_pool2d([k, k], [s, s], [p, p], [1, 1], false)
    }
}

/// The head of ResNet, Inception and EfficientNet: `AdaptiveAvgPool2d((1, 1))`,
/// `flatten(1)`, `fc` (their dropout in between is the identity in eval mode).
#[derive(Debug)]
struct GlobalPoolHead {
    fc: nn::Linear,
}

impl Stage for GlobalPoolHead {
    fn forward(&self, x: &Tensor, _relu: ReluMode) -> Tensor {
        use tch::nn::Module;
        self.fc
            .forward(&x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
    }
}

/// What an architecture's `build` returns.
struct Parts {
    stages: Vec<(String, Box<dyn Stage>)>,
    aliases: Vec<(String, usize)>,
    head: Box<dyn Stage>,
    tokens: Option<Tokens>,
}

#[cfg(test)]
impl Parts {
    /// Builds with `build` on a fresh CPU variable store, returned beside the parts.
    fn built(build: impl FnOnce(&nn::Path) -> Parts) -> (nn::VarStore, Parts) {
        let vs = nn::VarStore::new(Device::Cpu);
        let parts = build(&vs.root());
        (vs, parts)
    }

    /// The stage names, in order.
    fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Every alias with the name of the stage it stands for.
    fn alias_targets(&self) -> Vec<(&str, &str)> {
        let names = self.stage_names();
        self.aliases
            .iter()
            .map(|(alias, stage)| (alias.as_str(), names[*stage]))
            .collect()
    }

    /// Fails unless `vs` holds `count` variables, among them `shapes` (name, shape): what a
    /// torchvision `state_dict` of the architecture has.
    fn assert_variables(vs: &nn::VarStore, count: usize, shapes: &[(&str, &[i64])]) {
        let vars = vs.variables();
        for (name, shape) in shapes {
            let actual = vars.get(*name).map(Tensor::size);
            assert_eq!(actual.as_deref(), Some(*shape), "{name}");
        }
        assert_eq!(vars.len(), count);
    }

    /// The last stage's output and the logits for `x`, through every stage and the head.
    fn run(&self, x: &Tensor) -> (Tensor, Tensor) {
        let mut z = x.shallow_clone();
        for (_, stage) in &self.stages {
            z = stage.forward(&z, ReluMode::Plain);
        }
        let logits = self.head.forward(&z, ReluMode::Plain);
        (z, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input of `shape`, uniform in [-√3, √3) (unit variance), from `seed` alone: with the
    /// network from `train::initialise`, a test that compares two forward passes at a tight
    /// tolerance does not depend on what other test threads draw from libtorch's shared
    /// generator (`tch::manual_seed` before building did, and the test was flaky).
    fn seeded_input(shape: &[i64], seed: u64) -> Tensor {
        let len = shape.iter().product::<i64>() as usize;
        let values = crate::train::uniform_values(seed, &[], len, 3f32.sqrt());
        Tensor::from_slice(&values).view(shape)
    }

    #[test]
    fn architecture_layer_names_are_the_built_backbones() {
        for arch in Architecture::ALL {
            let built = Backbone::new(arch, 1, Device::Cpu).layer_names();
            assert_eq!(arch.layer_names(), built, "{arch}");
        }
    }

    /// Every trainable tensor belongs to one part of the cascade: the head holds exactly
    /// torchvision's head (`fc`, `classifier`; ViT's `encoder.ln` and `heads`), every other
    /// tensor the stage it is named under (ViT's class token and position embeddings the
    /// first encoder layer, which adds them).
    #[test]
    fn every_trainable_tensor_has_one_part_and_the_head_is_the_classifier() {
        for arch in Architecture::ALL {
            let model = Backbone::new(arch, 3, Device::Cpu);
            let parts = model.parts_from_top();
            assert_eq!(parts.len(), model.stages.len() + 1);
            for (name, var) in model.vs.variables() {
                if !var.requires_grad() {
                    continue;
                }
                let part = model.part_of(&name);
                let head = ["fc.", "classifier.", "heads.", "encoder.ln."]
                    .iter()
                    .any(|prefix| name.starts_with(prefix));
                assert_eq!(part == 0, head, "{arch} {name} in {}", parts[part]);
                if name == "class_token" || name == "encoder.pos_embedding" {
                    assert_eq!(parts[part], "encoder.layers.encoder_layer_0", "{name}");
                } else if part > 0 {
                    assert!(
                        name.starts_with(&format!("{}.", parts[part])),
                        "{arch} {name}"
                    );
                }
            }
        }
    }

    /// Shuffling a part permutes each of its tensors (same values, another order) and
    /// leaves every other tensor as it was; the same seed shuffles the same way.
    #[test]
    fn shuffling_a_part_permutes_its_tensors_only() {
        let model = Backbone::new(Architecture::TinyCnn, 3, Device::Cpu);
        let snapshot = |m: &Backbone| -> std::collections::BTreeMap<String, Vec<f32>> {
            m.vs.variables()
                .into_iter()
                .map(|(n, v)| (n, Vec::<f32>::try_from(v.flatten(0, -1)).unwrap()))
                .collect()
        };
        // Distinct values everywhere (a fresh model's biases are all zero).
        for (_, mut var) in model.vs.variables() {
            tch::no_grad(|| var.copy_(&var.randn_like()));
        }
        let before = snapshot(&model);
        // The topmost stage with weights.
        let part = (1..model.stages.len() + 1)
            .find(|&p| before.keys().any(|n| model.part_of(n) == p))
            .unwrap();
        model.shuffle_part(part, 11).unwrap();
        let after = snapshot(&model);
        let mut shuffled = 0;
        for (name, old) in &before {
            let new = &after[name];
            if model.part_of(name) == part {
                assert_ne!(old, new, "{name} shuffled");
                let sorted = |v: &[f32]| {
                    let mut v = v.to_vec();
                    v.sort_by(f32::total_cmp);
                    v
                };
                assert_eq!(sorted(old), sorted(new), "{name} keeps its values");
                shuffled += 1;
            } else {
                assert_eq!(old, new, "{name} untouched");
            }
        }
        assert!(shuffled >= 2, "a conv weight and bias at least");
        let again = Backbone::new(Architecture::TinyCnn, 3, Device::Cpu);
        for (name, mut var) in again.vs.variables() {
            let old = Tensor::from_slice(&before[&name]).view(var.size().as_slice());
            tch::no_grad(|| var.copy_(&old));
        }
        again.shuffle_part(part, 11).unwrap();
        assert_eq!(snapshot(&again), after, "seeded");
    }

    #[test]
    fn only_the_last_stage_before_a_global_pool_pools_globally() {
        use Architecture::*;
        for (arch, layer, expected) in [
            (TinyCnn, "features.7", true),
            (TinyCnn, "features.6", false),
            (TinyCnn, "features.4", false),
            (Resnet18, "layer4", true),
            (Resnet18, "layer4.1", true),
            (Resnet18, "layer4.0", false),
            (Resnet18, "layer3", false),
            (Resnet50, "layer4.2", true),
            (InceptionV3, "Mixed_7c", true),
            (InceptionV3, "Mixed_7b", false),
            (EfficientnetB0, "features.8", true),
            (EfficientnetB0, "features.7", false),
            (ConvnextTiny, "features.7", true),
            (ConvnextTiny, "features.7.2", true),
            (ConvnextTiny, "features.7.1", false),
            (ConvnextTiny, "features.7.2.block.5", true),
            (ConvnextTiny, "features.7.2.block.3", false),
            // VGG's head keeps a 7×7 map before its first linear layer.
            (Vgg16, "features.30", false),
            // ViT's head reads the class token, not a pool of the patches.
            (VitB16, "encoder.layers.encoder_layer_11", false),
        ] {
            assert_eq!(arch.pools_globally_after(layer), expected, "{arch} {layer}");
        }
    }

    /// At a point inside a residual block the block's input is carried: going on from the
    /// map gives the whole network's logits, and a batch repeated with its carry (as
    /// ablation stacks copies) gives them once per copy.
    #[test]
    fn a_point_inside_a_block_carries_the_blocks_input() {
        let model = Backbone::new(Architecture::Resnet18, 3, Device::Cpu);
        crate::train::initialise(&model, 4).unwrap();
        let x = seeded_input(&[2, 3, 64, 64], 4);
        tch::no_grad(|| {
            let whole = model.forward(&x);
            let layer = model.layer("layer2.0.bn1").unwrap();
            let hidden = model.forward_to(&x, layer, ReluMode::Plain);
            assert_eq!(hidden.map.size(), [2, 128, 8, 8]);
            let split = model.forward_from(&hidden, layer, ReluMode::Plain);
            assert!(whole.allclose(&split, 1e-5, 1e-5, false));
            let twice = Tensor::cat(&[&hidden.map, &hidden.map], 0);
            let stacked =
                model.forward_from(&hidden.repeated_with_map(2, twice), layer, ReluMode::Plain);
            assert!(Tensor::cat(&[&whole, &whole], 0).allclose(&stacked, 1e-5, 1e-5, false));
        });
    }

    /// Every Inception layer has a shape from one forward pass, points of one block and
    /// both halves of a split among them (their maps come from the block's input).
    #[test]
    fn inception_points_have_their_shapes() {
        let model = Backbone::new(Architecture::InceptionV3, 5, Device::Cpu);
        let shapes = model.layer_shapes(75);
        assert_eq!(
            shapes.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            Architecture::InceptionV3.layer_names()
        );
        let shape = |name: &str| &shapes.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(shape("Mixed_5b.branch5x5_1"), &[48, 7, 7]);
        assert_eq!(shape("Mixed_7c.branch3x3_2a"), &[384, 1, 1]);
        assert_eq!(shape("Mixed_7c.branch3x3_2b"), &[384, 1, 1]);
        assert_eq!(shape("Mixed_7c"), &[2048, 1, 1]);
    }

    /// A ViT layer is its patch tokens as a `768 × g × g` map, `g` = crop / 16, and the
    /// crop must fit the position embeddings.
    #[test]
    fn vit_layers_are_patch_grids_and_the_crop_must_fit_the_position_embeddings() {
        let model = Backbone::new(Architecture::VitB16, 5, Device::Cpu);
        let shapes = model.layer_shapes(224);
        assert_eq!(shapes.len(), 13);
        for (name, shape) in &shapes {
            assert_eq!(shape, &[768, 14, 14], "{name}");
        }
        assert_eq!(shapes[12].0, "encoder.layers.encoder_layer_11");
        model.check_input(224).unwrap();
        let why = model.check_input(64).unwrap_err().to_string();
        assert!(
            why.contains("vit_b_16 with these weights needs 224 × 224 images")
                && why.contains("197 position embeddings")
                && why.contains("the crop is 64"),
            "{why}"
        );
        // Every CNN takes any crop here.
        Backbone::new(Architecture::TinyCnn, 5, Device::Cpu)
            .check_input(37)
            .unwrap();
    }

    /// Splitting a ViT at a layer and going on from its map (with the class token carried
    /// beside it) gives the whole network's logits; a changed map changes them.
    #[test]
    fn a_vit_split_at_a_layer_carries_its_class_token() {
        let model = Backbone::new(Architecture::VitB16, 4, Device::Cpu);
        crate::train::initialise(&model, 3).unwrap();
        let x = seeded_input(&[2, 3, 224, 224], 3);
        tch::no_grad(|| {
            let whole = model.forward(&x);
            let layer = model.layer("encoder.layers.encoder_layer_3").unwrap();
            let hidden = model.forward_to(&x, layer, ReluMode::Plain);
            assert_eq!(hidden.map.size(), [2, 768, 14, 14]);
            let split = model.forward_from(&hidden, layer, ReluMode::Plain);
            assert!(whole.allclose(&split, 1e-5, 1e-5, false));
            let zeroed = hidden.with_map(hidden.map.zeros_like());
            let changed = model.forward_from(&zeroed, layer, ReluMode::Plain);
            assert!(!whole.allclose(&changed, 1e-3, 1e-3, false));
        });
    }
}

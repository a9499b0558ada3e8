//! The network side of ablation: the evaluated images' activations at the layer, computed
//! once, and the tail of the network run on them with channels removed — many ablations
//! stacked into one batch, on the worker's device.

use tch::{Device, Kind, Tensor};

use hint_common::ablation::Removal;

use crate::models::{Backbone, Hidden, Layer, ReluMode};

/// Bytes of stacked activations one tail pass may hold (the batch of ablated copies).
const STACK_BYTES: i64 = 256 << 20;

/// The layer's activations of every evaluated image, kept on the device.
pub struct LayerActivations {
    /// `[N, D, H, W]` (and ViT's class tokens).
    pub z: Hidden,
    /// Each channel's mean over every position of every image, `[D]` (mean removal).
    pub channel_mean: Tensor,
}

impl LayerActivations {
    /// Runs `pixels` (`N × 3 × crop × crop`, preprocessed) to `layer` in batches of `batch`.
    pub fn compute(
        model: &Backbone,
        layer: Layer,
        pixels: &[f32],
        crop: i64,
        batch: usize,
        device: Device,
    ) -> Result<Self, tch::TchError> {
        let per_image = (3 * crop * crop) as usize;
        let n = pixels.len() / per_image;
        let z = tch::no_grad(|| -> Result<Hidden, tch::TchError> {
            let mut parts = Vec::new();
            for start in (0..n).step_by(batch.max(1)) {
                let end = (start + batch.max(1)).min(n);
                let x = Tensor::f_from_slice(&pixels[start * per_image..end * per_image])?
                    .f_view([(end - start) as i64, 3, crop, crop])?
                    .f_to_device(device)?;
                let z = model.forward_to(&x, layer, ReluMode::Plain);
                let map = z.map.f_to_kind(Kind::Float)?;
                parts.push(z.with_map(map));
            }
            Ok(Hidden::cat(&parts))
        })?;
        let channel_mean = tch::no_grad(|| {
            z.map
                .f_mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float)
        })?;
        Ok(LayerActivations { z, channel_mean })
    }

    /// Images.
    pub fn images(&self) -> usize {
        self.z.map.size()[0] as usize
    }

    /// Channels `D`.
    pub fn channels(&self) -> usize {
        self.z.map.size()[1] as usize
    }

    /// Softmax of the unablated network, `N × C` row-major.
    pub fn probabilities(&self, model: &Backbone, layer: Layer) -> Result<Vec<f32>, tch::TchError> {
        let mut out = Vec::new();
        tail_probabilities(model, layer, &self.z, &mut out)?;
        Ok(out)
    }

    /// Ablations stacked into one batch through the tail: at most [`STACK_BYTES`] of
    /// activations.
    pub fn stack_group(&self) -> usize {
        let per_copy = self.z.map.size().iter().product::<i64>() * 4;
        (STACK_BYTES / per_copy.max(1)).max(1) as usize
    }

    /// Softmax of the network with `removed[k]`'s channels replaced as `removals[k]` says,
    /// one `N × C` block per ablation, in order. Ablations are stacked into batches of at
    /// most [`STACK_BYTES`] of activations.
    pub fn ablated_probabilities(
        &self,
        model: &Backbone,
        layer: Layer,
        ablations: &[(&[usize], Removal)],
    ) -> Result<Vec<f32>, tch::TchError> {
        let size = self.z.map.size();
        let d = size[1];
        let group = self.stack_group();
        let device = self.z.map.device();
        let mut out = Vec::new();
        for chunk in ablations.chunks(group) {
            let g = chunk.len() as i64;
            // keep[g, d] = 1 for channels that stay; fill[g, d] = what replaces the others.
            let mut keep = vec![1f32; chunk.len() * d as usize];
            let mut use_mean = vec![0f32; chunk.len() * d as usize];
            for (k, (removed, removal)) in chunk.iter().enumerate() {
                for &c in removed.iter() {
                    keep[k * d as usize + c] = 0.0;
                    if *removal == Removal::Mean {
                        use_mean[k * d as usize + c] = 1.0;
                    }
                }
            }
            let stacked = tch::no_grad(|| -> Result<Tensor, tch::TchError> {
                let keep = Tensor::f_from_slice(&keep)?
                    .f_view([g, 1, d, 1, 1])?
                    .f_to_device(device)?;
                let fill = Tensor::f_from_slice(&use_mean)?
                    .f_view([g, 1, d, 1, 1])?
                    .f_to_device(device)?
                    .f_mul(&self.channel_mean.f_view([1, 1, d, 1, 1])?)?;
                let z = self.z.map.f_unsqueeze(0)?;
                // Exact for kept channels (z·1 + 0) and for removed ones (z·0 + fill).
                let ablated = z.f_mul(&keep)?.f_add(&fill)?;
                let mut shape = vec![g * size[0]];
                shape.extend_from_slice(&size[1..]);
                ablated.f_reshape(shape.as_slice())
            })?;
            let stacked = self.z.repeated_with_map(g, stacked);
            tail_probabilities(model, layer, &stacked, &mut out)?;
        }
        Ok(out)
    }
}

/// Softmax of `f_{>l}(z)`, appended to `out` row by row.
fn tail_probabilities(
    model: &Backbone,
    layer: Layer,
    z: &Hidden,
    out: &mut Vec<f32>,
) -> Result<(), tch::TchError> {
    let p = tch::no_grad(|| -> Result<Tensor, tch::TchError> {
        model
            .forward_from(z, layer, ReluMode::Plain)
            .f_to_kind(Kind::Float)?
            .f_softmax(-1, Kind::Float)?
            .f_to_device(Device::Cpu)?
            .f_contiguous()
    })?;
    out.extend(Vec::<f32>::try_from(p.flatten(0, -1))?);
    Ok(())
}

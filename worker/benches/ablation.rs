//! The cost of causal ablation against one extraction pass over the same images, side by
//! side in one run on the same model, layer and device.
//!
//! - **extraction pass**: what extraction's model side must do for every image at least —
//!   a batched forward to the layer, forward from it and the backward of the labels' logits
//!   to the layer (plain gradient, the cheapest method);
//! - **ablation**: `hint ablate`'s network work for `concepts × selections × fractions`
//!   removals (zero removal) — the layer's activations once, then the tail of the network
//!   for every removal, stacked as `hint ablate` stacks them ([`LayerActivations`]).
//!
//! ```text
//! cargo bench -p hint-worker --bench ablation -- [--model resnet18] [--layer layer3] \
//!     [--images 200] [--size 224] [--concepts 16] [--selections 5] [--fractions 6] \
//!     [--batch 32] [--device auto]
//! ```
//! The defaults are the issue's benchmark (16 × 5 × 6 = 480 removals on 200 images of
//! ResNet-18 at 224, a GPU's job); on a 2-core CPU use e.g. `--images 16 --size 112`.
//! Weights and images are random: speed does not depend on their values.

use std::time::Instant;

use hint_common::ablation::Removal;
use hint_worker::ablate::network::LayerActivations;
use hint_worker::guided::ReluMode;
use hint_worker::models::{Architecture, Backbone};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    let mut model = "resnet18".to_string();
    let mut layer = "layer3".to_string();
    let (mut images, mut size, mut concepts, mut selections, mut fractions, mut batch) =
        (200usize, 224i64, 16usize, 5usize, 6usize, 32usize);
    let mut device = "auto".to_string();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--model" => model = value,
            "--layer" => layer = value,
            "--images" => images = value.parse()?,
            "--size" => size = value.parse()?,
            "--concepts" => concepts = value.parse()?,
            "--selections" => selections = value.parse()?,
            "--fractions" => fractions = value.parse()?,
            "--batch" => batch = value.parse()?,
            "--device" => device = value,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let device = hint_worker::device::parse(&device)?;
    tch::manual_seed(0);
    let net = Backbone::new(Architecture::parse(&model)?, 1000, device);
    let at = net.layer(&layer)?;
    let pixels: Vec<f32> = Vec::<f32>::try_from(Tensor::randn(
        [images as i64 * 3 * size * size],
        (Kind::Float, Device::Cpu),
    ))?;
    let labels: Vec<i64> = (0..images as i64).map(|i| i % 1000).collect();
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };

    // Warm-up (kernels, allocator), then the extraction pass.
    let extraction = |n: usize| -> anyhow::Result<f64> {
        sync();
        let start = Instant::now();
        let per = (3 * size * size) as usize;
        for first in (0..n).step_by(batch) {
            let end = (first + batch).min(n);
            let x = Tensor::f_from_slice(&pixels[first * per..end * per])?
                .f_view([(end - first) as i64, 3, size, size])?
                .f_to_device(device)?;
            let hidden = tch::no_grad(|| net.forward_to(&x, at, ReluMode::Plain));
            let z = hidden.map.detach().set_requires_grad(true);
            let logits = net.forward_from(&hidden.with_map(z.shallow_clone()), at, ReluMode::Plain);
            let target = Tensor::f_from_slice(&labels[first..end])?.f_to_device(device)?;
            let picked = logits
                .f_gather(1, &target.f_unsqueeze(1)?, false)?
                .f_sum(Kind::Float)?;
            let grad = Tensor::f_run_backward(&[picked], &[&z], false, false)?;
            let _ = grad[0].f_abs()?.f_sum(Kind::Float)?.f_double_value(&[])?;
        }
        sync();
        Ok(start.elapsed().as_secs_f64())
    };
    extraction(batch.min(images))?;
    let extract_s = extraction(images)?;

    let d = {
        let x = Tensor::zeros([1, 3, size, size], (Kind::Float, device));
        tch::no_grad(|| net.forward_to(&x, at, ReluMode::Plain))
            .map
            .size()[1] as usize
    };
    let fraction_list = [1u32, 2, 5, 10, 20, 40, 60, 80];
    let removed: Vec<Vec<usize>> = (0..concepts * selections)
        .flat_map(|k| {
            fraction_list[..fractions.min(fraction_list.len())]
                .iter()
                .map(move |&f| {
                    let n = (d * f as usize).div_ceil(100).max(1);
                    (0..n)
                        .map(|i| (i * 7 + k) % d)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let ablations: Vec<(&[usize], Removal)> = removed
        .iter()
        .map(|r| (r.as_slice(), Removal::Zero))
        .collect();
    sync();
    let start = Instant::now();
    let acts = LayerActivations::compute(&net, at, &pixels, size, batch, device)?;
    let probs = acts.ablated_probabilities(&net, at, &ablations)?;
    sync();
    let ablate_s = start.elapsed().as_secs_f64();
    assert_eq!(probs.len(), ablations.len() * images * 1000);
    println!(
        "{model} {layer} (D = {d}), {images} images at {size}, device {device:?}, batch {batch}"
    );
    println!("  extraction pass (forward + backward to the layer): {extract_s:>8.2} s");
    println!(
        "  ablation, {} removals ({concepts} concepts × {selections} selections × {fractions} fractions): {ablate_s:>8.2} s",
        ablations.len()
    );
    println!(
        "  ratio ablation / extraction: {:.1}×",
        ablate_s / extract_s
    );
    Ok(())
}

//! Extraction throughput of every saliency method against the libtorch floor, side by
//! side in one run on the same model, layer, batch and device.
//!
//! The floor is the least any method must do: a batched forward to `l` without autograd,
//! then forward from `l` and backward of the selected logits to the layer activation.
//! Each method is timed through `extract::regions_of_batch`, i.e. everything the model
//! thread does per batch: tensor upload, saliency, aggregation, normalisation, threshold
//! and the gather of kept rows back to the CPU. Decoding runs on other threads in a real
//! run and is not part of either number.
//!
//! ```text
//! cargo bench -p hint-worker --bench extraction -- \
//!     [--model vgg16] [--layer features.26] [--batch 16] [--iters 3] [--device auto] \
//!     [--methods gradient,gradient_x_activation,…] [--samples 20] [--steps 20]
//! ```
//! (`make bench` runs it with the defaults.) Weights are random: speed does not depend
//! on their values.

use std::time::Instant;

use hint_common::regions::ActivationType;
use hint_worker::extract::{self, ExtractConfig};
use hint_worker::guided::ReluMode;
use hint_worker::images::DecodedImage;
use hint_worker::models::{Architecture, Backbone, Layer};
use hint_worker::saliency::{Baseline, Method};
use tch::{Device, Kind, Tensor};

struct Options {
    model: String,
    layer: String,
    batch: usize,
    iters: usize,
    device: String,
    methods: Vec<String>,
    samples: usize,
    steps: usize,
}

fn options() -> Options {
    let mut o = Options {
        model: "vgg16".into(),
        layer: "features.26".into(),
        batch: 16,
        iters: 3,
        device: "auto".into(),
        methods: Method::NAMES.iter().map(|s| s.to_string()).collect(),
        samples: 20,
        steps: 20,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    for pair in args.chunks(2) {
        let value = pair
            .get(1)
            .cloned()
            .unwrap_or_else(|| panic!("{} needs a value", pair[0]));
        match pair[0].as_str() {
            "--model" => o.model = value,
            "--layer" => o.layer = value,
            "--batch" => o.batch = value.parse().expect("--batch N"),
            "--iters" => o.iters = value.parse().expect("--iters N"),
            "--device" => o.device = value,
            "--methods" => o.methods = value.split(',').map(String::from).collect(),
            "--samples" => o.samples = value.parse().expect("--samples N"),
            "--steps" => o.steps = value.parse().expect("--steps N"),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn main() {
    let o = options();
    let device = hint_worker::device::parse(&o.device).expect("device");
    let arch = Architecture::parse(&o.model).expect("architecture");
    tch::manual_seed(0);
    let model = Backbone::new(arch, 1000, device);
    let layer = model.layer(&o.layer).expect("layer");
    let crop = arch.default_input().crop as i64;
    let images: Vec<DecodedImage> = (0..o.batch)
        .map(|i| DecodedImage {
            id: i as u64,
            label: (i * 37 % 1000) as u32,
            pixels: Vec::<f32>::try_from(Tensor::randn(
                [3 * crop * crop],
                (Kind::Float, Device::Cpu),
            ))
            .expect("f32 pixels"),
        })
        .collect();
    println!(
        "model {} layer {} batch {} input {crop}×{crop} device {device:?} threads {} iters {}",
        arch,
        o.layer,
        o.batch,
        tch::get_num_threads(),
        o.iters
    );

    // The floor is timed before and after the methods: the spread shows how steady the
    // machine was, and ratios use the faster (stricter) of the two.
    let floor_before = time(o.iters, device, || {
        floor_pass(&model, layer, &images, device)
    });
    let mut rows = Vec::new();
    for name in &o.methods {
        let method = Method::parse(name, o.samples, 0.15, o.steps, Baseline::Zero).expect("method");
        let mut config = ExtractConfig::new(
            arch,
            "random".into(),
            o.layer.clone(),
            ".".into(),
            ".".into(),
        );
        config.method = method;
        config.device = device;
        config.activation_type = ActivationType::F32;
        let normalisation = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let seconds = time(o.iters, device, || {
            extract::regions_of_batch(&model, layer, &config, normalisation, &images)
                .expect("extraction");
        });
        let label = match method {
            Method::SmoothGrad { samples, .. } => format!("{name} (n={samples})"),
            Method::IntegratedGradients { steps, .. } => format!("{name} (steps={steps})"),
            _ => name.clone(),
        };
        rows.push((label, seconds));
    }
    let floor_after = time(o.iters, device, || {
        floor_pass(&model, layer, &images, device)
    });
    let floor = floor_before.min(floor_after);
    let rate = |seconds: f64| o.batch as f64 / seconds;
    println!(
        "{:<34} {:>9.2} images/s   1.00× floor (before {:.2}, after {:.2} images/s)",
        "floor (forward + backward to l)",
        rate(floor),
        rate(floor_before),
        rate(floor_after)
    );
    for (label, seconds) in rows {
        println!(
            "{label:<34} {:>9.2} images/s   {:.2}× floor",
            rate(seconds),
            floor / seconds
        );
    }
}

/// The floor: plain batched forward to `l`, forward from `l`, backward of the selected
/// logits to the activation — nothing else.
fn floor_pass(model: &Backbone, layer: Layer, images: &[DecodedImage], device: Device) {
    let crop = (images[0].pixels.len() as f64 / 3.0).sqrt() as i64;
    let (x, targets) = extract::batch_tensors(images, crop, device);
    let z = tch::no_grad(|| model.forward_to(&x, layer, ReluMode::Plain)).set_requires_grad(true);
    let logits = model.forward_from(&z, layer, ReluMode::Plain);
    let selected = logits
        .gather(1, &targets.unsqueeze(1), false)
        .sum(Kind::Float);
    let grads = Tensor::run_backward(&[selected], &[&z], false, false);
    // Like extraction, the result must reach the host.
    let _ = grads[0].sum(Kind::Float).double_value(&[]);
}

/// Median seconds per call over `iters` calls, after one warm-up call.
fn time(iters: usize, device: Device, mut f: impl FnMut()) -> f64 {
    f();
    let mut seconds: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

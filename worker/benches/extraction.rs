//! Extraction throughput of every saliency method against the libtorch floor, side by
//! side in one run on the same model, layer, batch and device.
//!
//! The floor is the least any method must do: a batched forward to `l` without autograd,
//! then forward from `l` and backward of the selected logits to the layer activation.
//! Each method is timed as `extract::run` drives it: `iters` batches launched on this
//! thread (`extract::launch_regions`: upload, saliency, aggregation, normalisation,
//! threshold, the gather of kept rows launched on the device) while an
//! `extract::GatherStage` copies each batch's kept activations to the host. The column
//! "one at a time" is the same work without the overlap (median of `iters` batches, each
//! gathered before the next starts). Decoding and Parquet writing run on other threads
//! in a real run and are not part of either number.
//!
//! `--profile` adds, per method, the median milliseconds of each step of one batch, with
//! the device synchronised between steps (so the steps add up to more than a pipelined
//! batch takes): where the time beyond the floor goes.
//!
//! ```text
//! cargo bench -p hint-worker --bench extraction -- \
//!     [--model vgg16] [--layer features.26] [--batch 16] [--iters 3] [--device auto] \
//!     [--methods gradient,gradient_x_activation,…] [--samples 20] [--steps 20] \
//!     [--background-ratio 1.0] [--profile]
//! ```
//! (`make bench` runs it with the defaults.) Weights are random: speed does not depend
//! on their values.

use std::time::Instant;

use hint_common::regions::ActivationType;
use hint_worker::extract::{self, ExtractConfig, GatherStage, HostStaging, Phase};
use hint_worker::guided::ReluMode;
use hint_worker::images::{PinnedPool, PixelBatch};
use hint_worker::models::{Architecture, Backbone, Layer};
use hint_worker::saliency::{Baseline, Method, MethodName};
use tch::{Device, Kind, Tensor};

struct Options {
    model: String,
    layer: String,
    batch: usize,
    iters: usize,
    device: String,
    methods: Vec<MethodName>,
    samples: usize,
    steps: usize,
    background_ratio: f64,
    profile: bool,
}

fn options() -> Options {
    let mut o = Options {
        model: "vgg16".into(),
        layer: "features.26".into(),
        batch: 16,
        iters: 3,
        device: "auto".into(),
        methods: MethodName::ALL.to_vec(),
        samples: 20,
        steps: 20,
        background_ratio: 1.0,
        profile: false,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        if flag == "--profile" {
            o.profile = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => o.model = value,
            "--layer" => o.layer = value,
            "--batch" => o.batch = value.parse().expect("--batch N"),
            "--iters" => o.iters = value.parse().expect("--iters N"),
            "--device" => o.device = value,
            "--methods" => {
                o.methods = value
                    .split(',')
                    .map(|name| {
                        MethodName::parse(name).unwrap_or_else(|e| panic!("--methods: {e}"))
                    })
                    .collect()
            }
            "--samples" => o.samples = value.parse().expect("--samples N"),
            "--steps" => o.steps = value.parse().expect("--steps N"),
            "--background-ratio" => {
                o.background_ratio = value.parse().expect("--background-ratio R")
            }
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// One method's numbers: seconds per batch pipelined and one at a time, and the profile.
struct MethodTimes {
    label: String,
    pipelined: f64,
    one_at_a_time: f64,
    phases: Option<[f64; PHASES.len()]>,
}

/// The profiled steps: the model thread's [`Phase`]s, then the gather.
const PHASES: [&str; 5] = [
    "upload",
    "saliency",
    "normalise+map→host",
    "host loop",
    "gather+copy",
];

fn main() {
    let o = options();
    let device = hint_worker::device::parse(&o.device).expect("device");
    let arch = Architecture::parse(&o.model).expect("architecture");
    tch::manual_seed(0);
    let model = Backbone::new(arch, 1000, device);
    let layer = model.layer(&o.layer).expect("layer");
    let crop = arch.default_input().crop as i64;
    let values = Vec::<f32>::try_from(Tensor::randn(
        [o.batch as i64 * 3 * crop * crop],
        (Kind::Float, Device::Cpu),
    ))
    .expect("f32 pixels");
    // On a GPU the batch is in pinned memory, where `hint extract`'s decoders put it.
    let pixels = match device {
        Device::Cpu => values.into(),
        _ => {
            let pool = PinnedPool::new(1, values.len(), device).expect("pinned memory");
            let mut pixels = pool.lend(values.len()).expect("a free buffer");
            pixels.copy_from_slice(&values);
            pixels
        }
    };
    let images = PixelBatch {
        ids: (0..o.batch as u64).collect(),
        labels: (0..o.batch).map(|i| (i * 37 % 1000) as u32).collect(),
        pixels,
        ..PixelBatch::default()
    };
    println!(
        "model {} layer {} batch {} input {crop}×{crop} device {device:?} threads {} iters {} \
         background ratio {}",
        arch,
        o.layer,
        o.batch,
        tch::get_num_threads(),
        o.iters,
        o.background_ratio
    );

    // The floor is timed before and after the methods: the spread shows how steady the
    // machine was, and ratios use the faster (stricter) of the two.
    let floor_before = time(o.iters, device, || {
        floor_pass(&model, layer, &images, device)
    });
    let normalisation = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let mut results = Vec::new();
    for name in &o.methods {
        let method = Method::new(*name, o.samples, 0.15, o.steps, Baseline::Zero).expect("method");
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
        config.background_ratio = o.background_ratio;
        let launch = |on_phase: &mut dyn FnMut(Phase)| {
            extract::launch_regions(&model, layer, &config, normalisation, &images, on_phase)
                .expect("extraction")
        };
        // One staging buffer for the whole method, as the gather stage keeps one: the
        // one-at-a-time number then differs from the pipelined one by the overlap only.
        let mut staging = HostStaging::default();
        let one_at_a_time = time(o.iters, device, || {
            launch(&mut |_| {}).gather(&mut staging).expect("gather");
        });
        let pipelined = time_pipelined(o.iters, device, || launch(&mut |_| {}));
        let phases = o
            .profile
            .then(|| profile(o.iters, device, &mut staging, launch));
        let label = match method {
            Method::SmoothGrad { samples, .. } => format!("{name} (n={samples})"),
            Method::IntegratedGradients { steps, .. } => format!("{name} (steps={steps})"),
            _ => name.to_string(),
        };
        results.push(MethodTimes {
            label,
            pipelined,
            one_at_a_time,
            phases,
        });
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
    for m in &results {
        println!(
            "{:<34} {:>9.2} images/s   {:.2}× floor (one batch at a time: {:.2} images/s, {:.2}×)",
            m.label,
            rate(m.pipelined),
            floor / m.pipelined,
            rate(m.one_at_a_time),
            floor / m.one_at_a_time
        );
    }
    if o.profile {
        println!(
            "profile: median ms per batch of {}, device synchronised between steps; \
             floor {:.2} ms",
            o.batch,
            floor * 1e3
        );
        print!("{:<34}", "method");
        for phase in PHASES {
            print!(" {phase:>18}");
        }
        println!(" {:>10}", "sum");
        for m in &results {
            let phases = m.phases.expect("profiled");
            print!("{:<34}", m.label);
            for ms in phases {
                print!(" {ms:>18.2}");
            }
            println!(" {:>10.2}", phases.iter().sum::<f64>());
        }
    }
}

/// The floor: plain batched forward to `l`, forward from `l`, backward of the selected
/// logits to the activation — nothing else.
fn floor_pass(model: &Backbone, layer: Layer, images: &PixelBatch, device: Device) {
    let crop = (images.image(0).len() as f64 / 3.0).sqrt() as i64;
    let (x, targets) = extract::batch_tensors(images, crop, device).expect("batch tensors");
    let hidden = tch::no_grad(|| model.forward_to(&x, layer, ReluMode::Plain));
    let z = hidden.map.detach().set_requires_grad(true);
    let logits = model.forward_from(&hidden.with_map(z.shallow_clone()), layer, ReluMode::Plain);
    let selected = logits
        .gather(1, &targets.unsqueeze(1), false)
        .sum(Kind::Float);
    let grads = Tensor::run_backward(&[selected], &[&z], false, false);
    // Like extraction, the result must reach the host.
    let _ = grads[0].sum(Kind::Float).double_value(&[]);
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Median seconds per call over `iters` calls, after one warm-up call.
fn time(iters: usize, device: Device, mut f: impl FnMut()) -> f64 {
    f();
    let mut seconds: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            synchronize(device);
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// Seconds per batch of `iters` batches (at least 2, so that there is something to
/// overlap) through a gather stage, as `extract::run` drives them: from the first launch
/// to the last batch on the host. The tail (the last gather, which nothing overlaps) is
/// included, so few iterations understate the steady state a little.
fn time_pipelined(
    iters: usize,
    device: Device,
    mut launch: impl FnMut() -> extract::PendingRegions,
) -> f64 {
    let batches = iters.max(2);
    synchronize(device);
    let start = Instant::now();
    let stage = GatherStage::spawn(2, |_| true);
    for _ in 0..batches {
        assert!(stage.send(launch()), "the gather stage stopped");
    }
    stage.finish().expect("gather");
    synchronize(device);
    start.elapsed().as_secs_f64() / batches as f64
}

/// Median milliseconds of each step of one batch over `iters` batches (after a warm-up),
/// synchronising the device at every step's end so that each step's device work is
/// counted in that step.
fn profile(
    iters: usize,
    device: Device,
    staging: &mut HostStaging,
    launch: impl Fn(&mut dyn FnMut(Phase)) -> extract::PendingRegions,
) -> [f64; PHASES.len()] {
    let mut samples: Vec<[f64; PHASES.len()]> = Vec::new();
    for iteration in 0..=iters.max(1) {
        synchronize(device);
        let mut marks = vec![Instant::now()];
        let pending = launch(&mut |_| {
            synchronize(device);
            marks.push(Instant::now());
        });
        pending.gather(staging).expect("gather");
        synchronize(device);
        marks.push(Instant::now());
        assert_eq!(marks.len(), PHASES.len() + 1, "one mark per phase");
        if iteration > 0 {
            let mut ms = [0.0; PHASES.len()];
            for (i, pair) in marks.windows(2).enumerate() {
                ms[i] = (pair[1] - pair[0]).as_secs_f64() * 1e3;
            }
            samples.push(ms);
        }
    }
    std::array::from_fn(|i| {
        let mut column: Vec<f64> = samples.iter().map(|s| s[i]).collect();
        column.sort_by(f64::total_cmp);
        column[column.len() / 2]
    })
}

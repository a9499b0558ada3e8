//! `hint extract`: flags → [`ExtractConfig`], a progress bar, a closing summary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hint_common::job::spec::ExtractSpec;
use hint_common::regions::{ActivationType, Compression};
use hint_worker::busy;
use hint_worker::extract::{self, ExtractConfig, ExtractReport, Progress, SUMMARY_FILE};
use hint_worker::models::{Architecture, InputSize};
use hint_worker::responsible::Aggregation;
use hint_worker::saliency::{Baseline, MethodName};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `hint extract`.
#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// Architecture.
    #[arg(long, env = "HINT_MODEL", value_enum)]
    model: Architecture,
    /// Weights: a torchvision state_dict saved as safetensors.
    #[arg(long, env = "HINT_WEIGHTS")]
    weights: PathBuf,
    /// The hidden layer, by torchvision module name (`features.26`, `layer3.5`, `Mixed_6b`).
    /// Several (`--layer layer2.1,layer3.1,layer4.1`, or the flag repeated) are extracted in
    /// one pass, each into `OUT/<layer>/`.
    #[arg(long, required = true, value_delimiter = ',')]
    layer: Vec<String>,
    /// An ImageFolder directory (one folder per class) or a CSV manifest with `path,label`.
    #[arg(long)]
    images: PathBuf,
    /// Label → model output map (one class name per line, line k = output k). Default:
    /// the sorted class names, torchvision's ImageFolder rule.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Saliency method.
    #[arg(long, value_enum, default_value_t = ExtractSpec::default().method)]
    method: MethodName,
    /// Channel aggregation.
    #[arg(long, value_enum, default_value_t = ExtractSpec::default().aggregation)]
    aggregation: Aggregation,
    /// Threshold t on the normalised saliency: positions with ŝ > t are responsible.
    #[arg(long, default_value_t = ExtractSpec::default().threshold)]
    threshold: f32,
    /// Fraction of background positions kept per image (seeded), in [0, 1].
    #[arg(long, default_value_t = ExtractSpec::default().background_ratio)]
    background_ratio: f64,
    /// Stored activation precision: f32 or f16.
    #[arg(long, value_enum, default_value_t = ExtractSpec::default().activation_type, hide_possible_values = true)]
    activation_type: ActivationType,
    /// How the region files are compressed: zstd (smaller) or lz4 (about a third larger,
    /// about three times faster to decompress).
    #[arg(long, value_enum, default_value_t = ExtractSpec::default().compression)]
    compression: Compression,
    /// SmoothGrad: number of noisy copies.
    #[arg(long, default_value_t = ExtractSpec::default().samples)]
    samples: usize,
    /// SmoothGrad: noise level, σ / (max(x) − min(x)).
    #[arg(long, default_value_t = ExtractSpec::default().noise)]
    noise: f64,
    /// Integrated gradients: points on the path.
    #[arg(long, default_value_t = ExtractSpec::default().steps)]
    steps: usize,
    /// Integrated gradients: where the path starts.
    #[arg(long, value_enum, default_value_t = ExtractSpec::default().baseline)]
    baseline: Baseline,
    /// Images per model batch.
    #[arg(long, default_value_t = ExtractSpec::default().batch_size)]
    batch_size: usize,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
    /// Seed of every random choice (SmoothGrad noise, background subsampling).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Resize the shorter side to this many pixels (default: the architecture's).
    #[arg(long)]
    resize: Option<u32>,
    /// Centre-crop side in pixels (default: the architecture's).
    #[arg(long)]
    crop: Option<u32>,
    /// Image decoding threads (default, or 0: the cores the model leaves, at least 1: all
    /// cores minus libtorch's intra-op threads on a CPU device, minus the one model thread
    /// on a GPU).
    #[arg(long)]
    decode_threads: Option<usize>,
    /// Row groups of a region file encoded at once, each on a thread of its own (default,
    /// or 0: the cores less two, 4 to 24; each holds about 32 MB).
    #[arg(long)]
    encode_threads: Option<usize>,
    /// Images per Parquet file.
    #[arg(long, default_value_t = 10_000)]
    images_per_file: usize,
    /// Output directory for regions-NNNNN.parquet and summary.json.
    #[arg(long)]
    out: PathBuf,
    /// Replace region files left in --out by an earlier run.
    #[arg(long)]
    overwrite: bool,
    /// Print each pipeline stage's threads, busy seconds, milliseconds per image and
    /// utilisation (the `stages:` line has the utilisations alone).
    #[arg(long)]
    profile: bool,
}

impl ExtractArgs {
    fn config(self) -> anyhow::Result<ExtractConfig> {
        let (arch, baseline) = (self.model, self.baseline);
        let mut layers = self.layer.into_iter();
        let first = layers.next().context("--layer names no layer")?;
        let mut config = ExtractConfig::new(arch, self.weights, first, self.images, self.out);
        config.more_layers = layers.collect();
        let defaults = arch.default_input();
        config.input = InputSize {
            resize: self.resize.unwrap_or(defaults.resize),
            crop: self.crop.unwrap_or(defaults.crop),
        };
        config.label_map = self.labels;
        // The flags as an `[extract]` section, so they become settings the way a job's do.
        config.apply(&ExtractSpec {
            method: self.method,
            samples: self.samples,
            noise: self.noise,
            steps: self.steps,
            baseline,
            aggregation: self.aggregation,
            threshold: self.threshold,
            background_ratio: self.background_ratio,
            activation_type: self.activation_type,
            compression: self.compression,
            batch_size: self.batch_size,
            ..ExtractSpec::default()
        })?;
        config.device = hint_worker::device::parse(&self.device)?;
        config.seed = self.seed;
        if let Some(threads) = self.decode_threads {
            config.decode_threads = threads;
        }
        if let Some(threads) = self.encode_threads {
            config.encode_threads = threads;
        }
        config.images_per_file = self.images_per_file;
        config.overwrite = self.overwrite;
        config.validate()?;
        Ok(config)
    }
}

/// Runs `hint extract`.
pub fn run(args: ExtractArgs) -> anyhow::Result<()> {
    let profile = args.profile;
    let config = args.config()?;
    let method = &config.method;
    for layer in config.layer_names() {
        let warnings = [
            method.spatially_constant_at(config.arch, layer),
            method.vanishes_under(config.aggregation, config.arch, layer),
        ];
        for why in warnings.into_iter().flatten() {
            eprintln!("warning: {why}");
        }
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} extract [{elapsed_precise}] {wide_bar} {pos}/{len} images ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template"),
    );
    let mut on_progress = |p: Progress| {
        bar.set_length(p.images_total as u64);
        bar.set_position(p.images_done as u64);
        bar.set_message(format!(
            "{} fg / {} bg rows",
            p.foreground_rows, p.background_rows
        ));
    };
    let reports = extract::run(&config, &mut on_progress)
        .with_context(|| format!("extracting regions from {}", config.images.display()))?;
    bar.finish_and_clear();
    for (k, (layer, report)) in config.per_layer().iter().zip(&reports).enumerate() {
        print_summary(layer, report, k == 0);
        if profile {
            print_profile(report);
        }
    }
    Ok(())
}

/// `--profile`: a row per pipeline stage.
fn print_profile(report: &ExtractReport) {
    println!("  profile: stage    threads   busy s  ms/image  utilisation");
    let images = report.images_processed.max(1) as f64;
    for s in &report.stages {
        println!(
            "           {:<8} {:>7} {:>8.2} {:>9.3} {:>11.0}%",
            s.stage,
            s.threads,
            s.busy_seconds,
            1000.0 * s.busy_seconds / images,
            100.0 * s.utilisation
        );
    }
}

/// One layer's summary; `first` adds what every layer of the pass shares (images, time,
/// skipped images).
fn print_summary(config: &ExtractConfig, report: &ExtractReport, first: bool) {
    let (d, h, w) = report.layer_shape;
    if first {
        let rate = report.images_processed as f64 / report.seconds.max(1e-9);
        println!(
            "extracted {} of {} images in {:.1} s ({rate:.1} images/s)",
            report.images_processed, report.images_total, report.seconds
        );
        print_skipped(report);
    }
    println!(
        "  model {} layer {} [D={d}, H={h}, W={w}], method {}, aggregation {}, threshold {}, device {:?}",
        config.arch, config.layer, config.method.name(), config.aggregation, config.threshold, config.device
    );
    println!(
        "  regions: {} foreground, {} background (ratio {}) in {} file(s) under {}",
        report.foreground_rows(),
        report.background_rows(),
        config.background_ratio,
        report.files.len(),
        config.out.display()
    );
    println!(
        "  stages: {} (JPEG decoder: {})",
        busy::describe(&report.stages),
        hint_worker::images::turbo::decoder()
    );
    if let Some(quality) = &report.quality {
        println!("  quality: {}", quality.line());
        for warning in &quality.warnings {
            println!("  warning: {warning}");
        }
    }
    println!("  summary: {}", config.out.join(SUMMARY_FILE).display());
}

fn print_skipped(report: &ExtractReport) {
    if report.skipped.is_empty() {
        println!("  skipped: none");
    } else {
        println!("  skipped {} image(s):", report.skipped.len());
        for skipped in &report.skipped {
            println!(
                "    {}: {}",
                skipped.path.display(),
                skipped.reason.trim_end()
            );
        }
    }
}

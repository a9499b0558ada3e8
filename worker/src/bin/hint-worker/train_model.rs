//! `hint train-model`: train the tiny model on an ImageFolder (the synthetic world's
//! `images/`), save it as a torchvision-style safetensors `state_dict` that
//! `hint extract --model tiny_cnn --weights …` loads, and write `<out>.json` with the
//! held-out accuracy per class.
//!
//! The reference measurement (the default synthetic world, default settings: `tiny_cnn`,
//! 20 epochs, batch 32, Adam at 3e-3 with cosine decay, 20 % held out, 2 threads):
//!
//! ```sh
//! hint synth --out /tmp/world --seed 0
//! /usr/bin/time -v hint train-model --images /tmp/world/images --out /tmp/world/tiny_cnn.safetensors
//! hint extract --model tiny_cnn --weights /tmp/world/tiny_cnn.safetensors --layer features.7 \
//!     --images /tmp/world/images --out /tmp/world/regions
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hint_worker::images::Preprocess;
use hint_worker::models::{Architecture, Backbone};
use hint_worker::train::{
    self, ImageSet, Progress, TrainConfig, TrainMetrics, TrainReport, DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS, DEFAULT_HOLDOUT, DEFAULT_LEARNING_RATE,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `hint train-model`.
#[derive(Args, Debug)]
pub struct TrainModelArgs {
    /// An ImageFolder directory (one folder per class; the synthetic world's `images/`) or
    /// a CSV manifest `path,label`. Outputs are the sorted class names.
    #[arg(long)]
    images: PathBuf,
    /// The weights file to write (`.safetensors`); metrics go to the same name with
    /// `.json`.
    #[arg(long)]
    out: PathBuf,
    /// Architecture (a VGG is slow on a CPU).
    #[arg(long, value_enum, default_value_t = Architecture::TinyCnn)]
    arch: Architecture,
    /// Passes over the training images.
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    epochs: usize,
    /// Images per optimisation step.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Adam's peak learning rate (decayed by a half cosine to zero).
    #[arg(long, default_value_t = DEFAULT_LEARNING_RATE)]
    lr: f64,
    /// Fraction of each class's images held out for measuring, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_HOLDOUT)]
    holdout: f64,
    /// Seed of the split, the initial weights, the order and the flips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mirror a seeded half of the training images left–right each epoch.
    #[arg(long)]
    flip: bool,
    /// cpu, cuda, cuda:N, or auto. The CPU is the default because only its results are
    /// bit-reproducible (and the tiny model trains in a minute or two there).
    #[arg(long, default_value = "cpu", env = "HINT_DEVICE")]
    device: String,
    /// libtorch threads (and decoding threads). The weights are bit-identical for the
    /// same seed, the same thread count and the same kind of processor. On a machine
    /// shared with other work, `OMP_WAIT_POLICY=passive` in the environment stops waiting
    /// threads from spinning (often twice as fast there; the same weights).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

impl TrainModelArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let config = TrainConfig {
            arch: self.arch,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            holdout: self.holdout,
            seed: self.seed,
            flip: self.flip,
            device: hint_worker::device::parse(&self.device)?,
        };
        config.validate()?;
        if self.threads == 0 {
            anyhow::bail!("--threads must be at least 1");
        }
        if self.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            anyhow::bail!(
                "--out {}: the weights file must end in .safetensors",
                self.out.display()
            );
        }
        Ok(config)
    }
}

/// Where the metrics of a weights file go: the same name with `.json`.
pub fn metrics_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Runs `hint train-model`.
pub fn run(args: TrainModelArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    tch::set_num_threads(args.threads as i32);
    let started = Instant::now();

    let input = config.arch.default_input();
    let preprocess = Preprocess::imagenet(input.resize, input.crop);
    let data = ImageSet::load(&args.images, preprocess, args.threads)
        .with_context(|| format!("loading images from {}", args.images.display()))?;
    let split = train::split(
        &data.labels,
        data.classes.len(),
        config.holdout,
        config.seed,
    )?;
    println!(
        "loaded {} images of {} classes from {} in {:.1} s ({} skipped): {} train, {} held out",
        data.len(),
        data.classes.len(),
        args.images.display(),
        started.elapsed().as_secs_f64(),
        data.skipped.len(),
        split.train.len(),
        split.heldout.len()
    );

    let model = Backbone::new(config.arch, data.classes.len() as i64, config.device);
    train::initialise(&model, config.seed)?;
    let batches = split.train.len().div_ceil(config.batch_size);
    let bar = ProgressBar::new((batches * config.epochs) as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} train [{elapsed_precise}] {wide_bar} {pos}/{len} steps (eta {eta}) {msg}",
        )
        .expect("valid template"),
    );
    let epochs = config.epochs;
    let mut last_heldout = String::new();
    let mut on_progress = |p: Progress| match p {
        Progress::Batch { epoch, loss, .. } => {
            bar.inc(1);
            bar.set_message(format!(
                "epoch {}/{epochs} loss {loss:.3}{last_heldout}",
                epoch + 1
            ));
        }
        Progress::Epoch(stats) => {
            if let Some(accuracy) = stats.heldout_accuracy {
                last_heldout = format!(", held-out {:.1}%", 100.0 * accuracy);
            }
            let line = format!(
                "epoch {:>3}/{epochs}: loss {:.4}, train {:.1}%{last_heldout} ({:.1} s)",
                stats.epoch + 1,
                stats.loss,
                100.0 * stats.train_accuracy,
                stats.seconds
            );
            // A hidden bar (output not a terminal) drops its printlns; logs want the line.
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    let report = train::train(&model, &data, &split, &config, &mut on_progress)
        .with_context(|| format!("training {} on {}", config.arch, args.images.display()))?;
    bar.finish_and_clear();

    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    model
        .save_safetensors(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let metrics = TrainMetrics::new(&config, &data, &split, &report);
    let metrics_file = metrics_path(&args.out);
    metrics.write_json(&metrics_file)?;
    print_summary(&args, &data, &report, started.elapsed().as_secs_f64());
    println!("  weights: {}", args.out.display());
    println!("  metrics: {}", metrics_file.display());
    Ok(())
}

fn print_summary(args: &TrainModelArgs, data: &ImageSet, report: &TrainReport, total: f64) {
    let percent = |a: Option<f64>| a.map_or("—".to_string(), |a| format!("{:.1}%", 100.0 * a));
    let width = data
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    println!("held-out accuracy per class:");
    println!(
        "  {:>5}  {:<width$}  {:>7}  {:>8}",
        "label", "class", "images", "accuracy"
    );
    for class in &report.heldout.per_class {
        println!(
            "  {:>5}  {:<width$}  {:>7}  {:>8}",
            class.label,
            class.name,
            class.images,
            percent(class.accuracy)
        );
    }
    println!(
        "  {:>5}  {:<width$}  {:>7}  {:>8}",
        "",
        "overall",
        report.heldout.images,
        percent(report.heldout.accuracy)
    );
    println!(
        "trained {} for {} epochs (batch {}, lr {}, seed {}, {} thread(s){}) in {:.1} s \
         ({:.1} s with loading and saving)",
        args.arch,
        args.epochs,
        args.batch_size,
        args.lr,
        args.seed,
        args.threads,
        if args.flip { ", flips" } else { "" },
        report.seconds,
        total
    );
    if !data.skipped.is_empty() {
        println!("  skipped {} image(s):", data.skipped.len());
        for skipped in &data.skipped {
            println!(
                "    {}: {}",
                skipped.path.display(),
                skipped.reason.trim_end()
            );
        }
    }
}

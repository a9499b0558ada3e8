//! `hint classify`: flags → [`ClassifyConfig`], progress bars, a table of every concept.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hint_common::hierarchy::Hierarchy;
use hint_common::job::spec::ClassifySpec;
use hint_common::regions::sample::{
    check_region_set, region_files, RegionSampler, SampleConfig, BATCH_ROWS,
};
use hint_common::regions::{open_regions, RegionProjection};
use hint_worker::classify::{self, ClassifyConfig, ClassifyProgress, ClassifyReport};
use indicatif::{ProgressBar, ProgressStyle};

/// The flags' defaults: the `[classify]` section's.
static DEFAULTS: std::sync::LazyLock<ClassifySpec> =
    std::sync::LazyLock::new(ClassifySpec::default);

/// Flags of `hint classify`.
#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// The region directory written by `hint extract` (regions-*.parquet).
    #[arg(long)]
    regions: PathBuf,
    /// The concept hierarchy: a custom YAML/JSON file (parent: [children]) over the regions'
    /// labels, or a concepts.json written by `hint concepts` / an earlier run.
    #[arg(long)]
    hierarchy: PathBuf,
    /// Output directory: concept-NNNNN.safetensors, metrics.json, concepts.json, classify.json.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    sampling: SampleConfig,
    /// L2 penalty λ on the standardised weights.
    #[arg(long, default_value_t = DEFAULTS.l2)]
    l2: f64,
    /// Most Newton iterations per concept.
    #[arg(long, default_value_t = DEFAULTS.iterations)]
    iterations: usize,
    /// Stop a concept when its Newton decrement is below this.
    #[arg(long, default_value_t = DEFAULTS.tolerance)]
    tolerance: f64,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
    /// Only these concepts (key or name; repeat the flag). Default: every concept.
    #[arg(long = "concept")]
    concepts: Vec<String>,
    /// Memory one batched solve may use, in MiB (concepts are grouped to fit).
    #[arg(long, default_value_t = 2048)]
    group_memory_mb: u64,
    /// Replace classifier output left in --out by an earlier run.
    #[arg(long)]
    overwrite: bool,
    /// Train on a sample `hint sample` drew from --regions (read instead of streaming every
    /// region file). It must have been drawn with these --seed, --max-per-class, --holdout
    /// and --negatives; the classifiers are those of streaming.
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
    /// Print where the time went: a read-only pass over the region files first (Parquet
    /// decoding alone, timed apart), then sampling, each part of the solver, evaluation and
    /// writing.
    #[arg(long)]
    profile: bool,
}

/// A concepts.json (`"format": "hint-concepts"`) or a custom hierarchy file over `labels`.
fn load_hierarchy(path: &Path, labels: &[String]) -> anyhow::Result<Hierarchy> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        if value.get("format").and_then(|f| f.as_str()) == Some("hint-concepts") {
            return Ok(Hierarchy::read_json(path)?);
        }
    }
    Ok(Hierarchy::from_custom_file(path, labels)?)
}

impl ClassifyArgs {
    fn config(self) -> anyhow::Result<(ClassifyConfig, Hierarchy, bool)> {
        let files = region_files(&self.regions)?;
        let info = check_region_set(&files)?;
        let hierarchy = load_hierarchy(&self.hierarchy, &info.labels)
            .with_context(|| format!("loading the hierarchy {}", self.hierarchy.display()))?;
        let mut config = ClassifyConfig::new(self.regions, self.out);
        config.hierarchy_source =
            Some(std::fs::canonicalize(&self.hierarchy).unwrap_or_else(|_| self.hierarchy.clone()));
        // The flags as a `[classify]` section, so they become settings the way a job's do.
        config.apply(
            &ClassifySpec {
                max_per_class: self.sampling.max_per_class,
                holdout: self.sampling.holdout,
                negatives: self.sampling.negatives,
                l2: self.l2,
                iterations: self.iterations,
                tolerance: self.tolerance,
                ..ClassifySpec::default()
            },
            self.sampling.seed,
        );
        config.device = hint_worker::device::parse(&self.device)?;
        if !self.concepts.is_empty() {
            let mut ids = Vec::new();
            for name in &self.concepts {
                let id = hierarchy.find(name).with_context(|| {
                    format!(
                        "--concept {name}: no such concept in {} (give a key or a name)",
                        self.hierarchy.display()
                    )
                })?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids.sort();
            config.concepts = Some(ids);
        }
        if let Some(dir) = self.samples {
            let drawn_from = RegionSampler::stored_source(&dir, &config.sample)?;
            let names = |files: &[PathBuf]| -> Vec<Option<std::ffi::OsString>> {
                files
                    .iter()
                    .map(|f| f.file_name().map(Into::into))
                    .collect()
            };
            anyhow::ensure!(
                drawn_from.rows == info.rows && names(&drawn_from.files) == names(&info.files),
                "--samples {}: drawn from {} region files ({} rows), but --regions {} holds {} \
                 ({} rows): draw it again with `hint sample --regions {}`",
                dir.display(),
                drawn_from.files.len(),
                drawn_from.rows,
                config.regions.display(),
                info.files.len(),
                info.rows,
                config.regions.display()
            );
            config.samples = Some(dir);
        }
        config.group_memory_bytes = self.group_memory_mb.max(1) << 20;
        config.overwrite = self.overwrite;
        config.validate()?;
        Ok((config, hierarchy, self.profile))
    }
}

/// Runs `hint classify`.
pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (config, hierarchy, profile) = args.config()?;
    let setup_seconds = started.elapsed().as_secs_f64();
    let reading_seconds = if profile {
        Some(read_only_pass(&config.regions)?)
    } else {
        None
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_prefix("sample");
    let mut training = false;
    let mut on_progress = |p: ClassifyProgress| match p {
        ClassifyProgress::Sampling(s) => {
            bar.set_length(s.rows_total);
            bar.set_position(s.rows_done);
            bar.set_message(format!("rows, file {}/{}", s.files_done, s.files_total));
        }
        ClassifyProgress::Training { done, total } => {
            if !training {
                training = true;
                bar.reset();
                bar.set_prefix("train");
                bar.set_message("concepts");
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let report = classify::run(&config, &hierarchy, &mut on_progress).with_context(|| {
        format!(
            "training concept classifiers on {}",
            config.regions.display()
        )
    })?;
    bar.finish_and_clear();
    print_summary(&config, &report);
    if let Some(reading_seconds) = reading_seconds {
        print_profile(&report, setup_seconds, reading_seconds, started);
    }
    Ok(())
}

/// Seconds to read and decode every region file's activations and positions (what the
/// sampling pass reads, in its batches), without sampling.
fn read_only_pass(regions: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    for path in region_files(regions)? {
        let reader = open_regions(
            &path,
            RegionProjection {
                saliency: false,
                activation: true,
            },
            BATCH_ROWS,
        )?;
        for batch in reader {
            std::hint::black_box(batch?);
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `--profile`'s breakdown. What precedes `main` (loading libtorch and its CUDA libraries,
/// `hint` handing over to `hint-worker`) is not seen from here: it is the wall time less the
/// in-process total.
fn print_profile(report: &ClassifyReport, setup: f64, reading: f64, started: Instant) {
    let fit = &report.fit;
    let solver =
        fit.prepare_seconds + fit.hessian_seconds + fit.solve_seconds + fit.gradient_seconds;
    println!("profile (seconds, wall):");
    println!("  checking the region files and the hierarchy: {setup:.3}");
    println!("  reading alone (a separate read-only pass over the Parquet files): {reading:.3}");
    println!(
        "  sampling (reading + bottom-k pools + split, one pass): {:.3}",
        report.sampling_seconds
    );
    println!(
        "  solver {solver:.3}: preparing (gather, standardise) {:.3}, Hessians {:.3} ({} formed), \
         Cholesky and solves {:.3}, gradients and line searches {:.3}; {} steps re-used a Hessian",
        fit.prepare_seconds,
        fit.hessian_seconds,
        fit.hessians,
        fit.solve_seconds,
        fit.gradient_seconds,
        fit.reused_steps
    );
    println!(
        "  evaluation {:.3}, writing {:.3}",
        report.evaluation_seconds, report.writing_seconds
    );
    println!(
        "  in-process total {:.3} (wall time beyond it: process start, loading libtorch)",
        started.elapsed().as_secs_f64()
    );
}

fn print_summary(config: &ClassifyConfig, report: &ClassifyReport) {
    let m = &report.metrics;
    println!(
        "trained {} concept classifier(s) on {} {} (D = {}) in {:.1} s sampling + {:.1} s training, device {:?}",
        m.concepts.len(),
        m.model,
        m.layer,
        m.d,
        report.sampling_seconds,
        report.training_seconds,
        config.device
    );
    println!(
        "  sampling: seed {}, at most {} positives per concept, negatives {}, {:.0}% of images held out, {} distinct regions kept (memory bound {:.0} MiB)",
        config.sample.seed,
        config.sample.max_per_class,
        config.sample.negatives,
        config.sample.holdout * 100.0,
        report.sampled_rows,
        report.memory_bound_bytes as f64 / f64::from(1u32 << 20)
    );
    let width = m
        .concepts
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(7);
    println!(
        "  {:>5}  {:<width$}  {:>15}  {:>13}  {:>8}  {:>6}",
        "level", "concept", "train pos/neg", "eval pos/neg", "accuracy", "F1"
    );
    for c in &m.concepts {
        println!(
            "  {:>5}  {:<width$}  {:>15}  {:>13}  {:>8.3}  {:>6.3}{}{}",
            c.level,
            c.name,
            format!("{}/{}", c.n_train_pos, c.n_train_neg),
            format!("{}/{}", c.n_eval_pos, c.n_eval_neg),
            c.accuracy,
            c.f1,
            if c.converged { "" } else { "  (not converged)" },
            // A concept without siblings under `siblings` drew from `others`.
            if c.negatives == config.sample.negatives {
                String::new()
            } else {
                format!("  (negatives: {}, no siblings)", c.negatives)
            }
        );
    }
    if !m.skipped.is_empty() {
        println!("  skipped {} concept(s):", m.skipped.len());
        for s in &m.skipped {
            println!("    {} (level {}): {}", s.name, s.level, s.reason);
        }
    }
    if !m.concepts.is_empty() {
        let mean_f1 = m.concepts.iter().map(|c| c.f1).sum::<f64>() / m.concepts.len() as f64;
        println!("  mean held-out F1: {mean_f1:.3}");
    }
    println!(
        "  classifiers: {}/concept-NNNNN.safetensors; metrics: {}; settings: {}",
        config.out.display(),
        config.out.join(classify::METRICS_FILE).display(),
        config.out.join(classify::SETTINGS_FILE).display()
    );
}

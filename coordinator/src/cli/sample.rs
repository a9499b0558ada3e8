//! `hint sample`: the sample stage on one machine — a region directory's bounded sample per
//! label and background (what classifiers train on and Shapley values are evaluated on),
//! drawn once and stored as `sample.parquet` + `sample.json`, exactly as a job's sample
//! tasks store it. Needs no libtorch.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Args;
use hint_common::regions::read_region_meta;
use hint_common::regions::sample::{
    check_region_set, region_files, RegionSampler, SampleConfig, SAMPLE_ROWS, SAMPLE_STATE,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `hint sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// The region directory written by `hint extract` (regions-*.parquet).
    #[arg(long)]
    regions: PathBuf,
    /// Output directory: sample.parquet and sample.json (created; must not hold a sample).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    sampling: SampleConfig,
    /// Threads reading region files, each holding its own pools (0: every core). The sample
    /// does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Draws the sample, writes it and prints a summary.
pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = args.sampling;
    config.validate()?;
    let files = region_files(&args.regions)?;
    let info = check_region_set(&files)?;
    for name in [SAMPLE_ROWS, SAMPLE_STATE] {
        anyhow::ensure!(
            !args.out.join(name).exists(),
            "{} already holds a sample ({name}): remove it or choose another --out",
            args.out.display()
        );
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let bar = ProgressBar::new(info.rows).with_style(
        ProgressStyle::with_template(
            "{spinner} sample [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let sampler = RegionSampler::from_files(
        &config,
        (info.channels, info.labels.len()),
        &files,
        threads,
        &|rows| bar.inc(rows),
        &AtomicBool::new(false),
    )?;
    bar.finish_and_clear();
    // The source files' metadata, less what named the task that wrote the first one.
    let (mut meta, _) = read_region_meta(&files[0])?;
    meta.task_id = None;
    std::fs::create_dir_all(&args.out)?;
    let rows = sampler.write_to(&args.out, &info, meta)?;
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sampled {} rows of {} region files ({:.1} MB) on {threads} threads in {seconds:.2} s \
         ({:.0} MB/s): {rows} rows kept in {}",
        info.rows,
        files.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds.max(1e-9),
        args.out.display()
    );
    Ok(())
}

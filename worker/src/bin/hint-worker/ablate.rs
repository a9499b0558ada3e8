//! `hint ablate`: causal ablation on a finished job — flags → [`AblateConfig`], a progress
//! bar, the specificity tables and `results/ablation.json`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hint_common::ablation::{self, AblationReport, AblationSelection, Removal, ABLATION_FILE};
use hint_worker::ablate::{self as engine, AblateConfig};

use super::evaluate::job_seed;

/// Flags of `hint ablate`.
#[derive(Args, Debug)]
pub struct AblateArgs {
    /// The finished job's directory (`<storage.root>/<job-id>`).
    #[arg(long)]
    job: PathBuf,
    /// Held-out images (an ImageFolder or a `path,label` CSV with the job's labels), e.g. a
    /// world generated with `hint synth --first-index`; default: the job's own held-out
    /// images (those no concept classifier trained on).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Images evaluated, at most (a seeded choice).
    #[arg(long, default_value_t = ablation::DEFAULT_MAX_IMAGES)]
    max_images: usize,
    /// Percentages of the layer's neurons removed.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20,40")]
    fractions: Vec<u32>,
    /// What removed neurons become: zero, mean (the channel's mean over the images).
    #[arg(long, value_delimiter = ',', default_value = "zero,mean", value_parser = Removal::parse)]
    removals: Vec<Removal>,
    /// Selections compared with Shapley: shapley_positive, weight_standardised, weight_raw,
    /// mean_activation, random.
    #[arg(long, value_delimiter = ',',
          default_value = "shapley_positive,weight_standardised,weight_raw,mean_activation,random",
          value_parser = AblationSelection::parse)]
    selections: Vec<AblationSelection>,
    /// Independent random selections per concept and fraction, averaged.
    #[arg(long, default_value_t = ablation::DEFAULT_RANDOM_DRAWS)]
    random_draws: u32,
    /// Bootstrap replicates of the 95% intervals of Shapley − each baseline (0: none).
    #[arg(long, default_value_t = ablation::DEFAULT_BOOTSTRAP_REPLICATES)]
    bootstrap: usize,
    /// Seed of the image choice, the random selections and the bootstrap (default: the
    /// job's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
    /// Rank Shapley by this phi.csv instead of the job's (e.g. another game's Φ from
    /// `hint shapley --classifiers <job>/classifiers/train-00000 --quality prediction`).
    #[arg(long)]
    phi: Option<PathBuf>,
    /// Write the report here instead of <job>/results/ablation.json.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `hint ablate`.
pub fn run(args: AblateArgs) -> anyhow::Result<()> {
    let seed = match args.seed {
        Some(seed) => seed,
        None => job_seed(&args.job)?,
    };
    let config = AblateConfig {
        job_dir: args.job,
        images: args.images,
        max_images: args.max_images,
        fractions: args.fractions,
        removals: args.removals,
        selections: args.selections,
        random_draws: args.random_draws,
        bootstrap_replicates: args.bootstrap,
        seed,
        device: hint_worker::device::parse(&args.device)?,
        phi: args.phi,
        out: args.out,
    };
    ablate_and_print(&config)
}

fn ablate_and_print(config: &AblateConfig) -> anyhow::Result<()> {
    let bar = hint_coordinator::progress::counting_bar("ablations through the network");
    let start = Instant::now();
    let never = std::sync::atomic::AtomicBool::new(false);
    let report = engine::ablate(
        config,
        &mut hint_coordinator::progress::advance(&bar),
        &never,
    )
    .with_context(|| format!("ablating {}", config.job_dir.display()))?;
    bar.finish_and_clear();
    println!(
        "ablation of {} concepts at {} {} (D = {}), {} images ({}), device {:?}, seed {}, \
         {} random draws, {} bootstrap replicates, {:.1} s",
        report.concepts.len(),
        report.model,
        report.layer,
        report.neurons,
        report.images,
        report.image_source,
        config.device,
        config.seed,
        report.random_draws,
        report.bootstrap.replicates,
        start.elapsed().as_secs_f64()
    );
    print_results(&report);
    let written = config
        .out
        .clone()
        .unwrap_or_else(|| config.job_dir.join("results").join(ABLATION_FILE));
    println!("wrote {}", written.display());
    Ok(())
}

/// The specificity tables and what was left out (shared with `hint run`, which prints a
/// job's `ablation.json`).
pub(super) fn print_results(report: &AblationReport) {
    print!("{}", report.table());
    for s in &report.skipped {
        println!("skipped {}: {}", s.what, s.reason);
    }
}

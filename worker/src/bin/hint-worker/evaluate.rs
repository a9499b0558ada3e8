//! `hint evaluate`: WSOL on a finished job — flags → [`WsolConfig`], a progress bar, the
//! pooled table and `results/wsol.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hint_common::job::JobSpec;
use hint_worker::wsol::{self, WsolConfig, WsolReport, HEATMAP_DIR, THRESHOLD, WSOL_FILE};

/// Flags of `hint evaluate`.
#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// The finished job's directory (`<storage.root>/<job-id>`).
    #[arg(long)]
    job: PathBuf,
    /// Boxes of the job's images, matched by file stem and folders: a tree of PASCAL VOC or
    /// ImageNet XML files (e.g. world/annotations, ILSVRC2012 val/), or a CUB-200-2011 root
    /// (images.txt, bounding_boxes.txt, …).
    #[arg(long)]
    annotations: PathBuf,
    /// Object masks (PNG, nonzero = object) at the annotations' relative paths.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Percentages of the layer's neurons kept.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,80")]
    fractions: Vec<u32>,
    /// Evaluation images per concept (held-out, annotated), at most.
    #[arg(long, default_value_t = 40)]
    images_per_concept: usize,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
    /// Seed of the random selections, the image choice and the bootstrap (default: the
    /// job's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Independent random selections per concept and fraction, averaged (mean ± sd).
    #[arg(long, default_value_t = wsol::DEFAULT_RANDOM_DRAWS)]
    random_draws: u32,
    /// Bootstrap replicates of the 95% intervals of Shapley − each baseline.
    #[arg(long, default_value_t = wsol::DEFAULT_BOOTSTRAP_REPLICATES)]
    bootstrap: usize,
    /// Rank Shapley by this phi.csv instead of the job's (e.g. another game's Φ from
    /// `hint shapley`).
    #[arg(long)]
    phi: Option<PathBuf>,
    /// Evaluate on these images instead of the job's held-out split: an ImageFolder or CSV
    /// with the job's labels (e.g. `hint synth --first-index` of the same world), every
    /// image a candidate; `--annotations` (and `--masks`) must cover them.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Write wsol.json and heatmaps/ into this directory instead of the job's results/
    /// (keeps the job's own evaluation).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `hint evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let seed = match args.seed {
        Some(seed) => seed,
        None => job_seed(&args.job)?,
    };
    let config = WsolConfig {
        job_dir: args.job,
        annotations: args.annotations,
        masks: args.masks,
        fractions: args.fractions,
        images_per_concept: args.images_per_concept,
        device: hint_worker::device::parse(&args.device)?,
        seed,
        random_draws: args.random_draws,
        bootstrap_replicates: args.bootstrap,
        phi: args.phi,
        images: args.images,
        out: args.out,
    };
    evaluate_and_print(&config)
}

/// The images, the regions' object lift, the pooled table and what was left out (shared
/// with `hint run`, which prints a job's `wsol.json`).
pub(super) fn print_results(report: &WsolReport) {
    println!("images: {}", report.image_source);
    if let Some(lift) = &report.region_lift {
        println!("regions: {}", lift.line());
    }
    print!("{}", report.table());
    for s in &report.skipped {
        println!("skipped {}: {}", s.what, s.reason);
    }
}

/// The seed in the job's `spec.json`.
pub(super) fn job_seed(job_dir: &Path) -> anyhow::Result<u64> {
    let path = job_dir.join("spec.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(JobSpec::from_json(&text)
        .with_context(|| format!("{}", path.display()))?
        .seed)
}

/// Runs the evaluation under a progress bar and prints the table, the skips and the files.
fn evaluate_and_print(config: &WsolConfig) -> anyhow::Result<()> {
    let bar =
        hint_coordinator::progress::counting_bar("re-fitting classifiers, then scoring images");
    let start = Instant::now();
    let never = std::sync::atomic::AtomicBool::new(false);
    let report = wsol::evaluate(
        config,
        &mut hint_coordinator::progress::advance(&bar),
        &never,
    )
    .with_context(|| format!("evaluating {}", config.job_dir.display()))?;
    bar.finish_and_clear();

    let concepts = report
        .concepts
        .iter()
        .map(|c| c.concept)
        .collect::<BTreeSet<_>>()
        .len();
    println!(
        "WSOL on {concepts} concepts, D = {} neurons, device {:?}, seed {}, {} random draws, \
         {} bootstrap replicates, {:.1} s",
        report.neurons,
        config.device,
        config.seed,
        config.random_draws,
        config.bootstrap_replicates,
        start.elapsed().as_secs_f64()
    );
    println!(
        "maps: the re-fitted classifier's logit at every position, bilinear to the crop, \
         min-max normalised, ≥ {THRESHOLD}; box of the largest 8-connected component; \
         localised = IoU ≥ 0.5; max_box_acc = the same at the best threshold of a 0.01 sweep \
         (τ: where it was reached); pooled over (concept, image) pairs. Neurons kept: top by \
         Shapley value, by |w|·σ (the classifier's weight on standardised features), by raw |w| \
         (its weight on raw activations), or at random (mean ± sd over the draws)"
    );
    print_results(&report);
    let results = config
        .out
        .clone()
        .unwrap_or_else(|| config.job_dir.join("results"));
    println!(
        "wrote {} and {} heatmaps in {}",
        results.join(WSOL_FILE).display(),
        report.heatmaps.len(),
        results.join(HEATMAP_DIR).display()
    );
    Ok(())
}

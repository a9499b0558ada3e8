//! `hint explain`: a finished job's concept classifiers on any image → heatmaps and
//! per-position scores.

use std::path::{Path, PathBuf};

use clap::Args;
use hint_common::explain::EXPLAIN_DIR;
use hint_common::storage;
use hint_worker::explain::{self, ExplainConfig, EXPLAIN_FILE};

/// Flags of `hint explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The job directory (`spec.json`, `classifiers/`): its model, layer, preprocessing and
    /// concept classifiers are used.
    #[arg(long)]
    job: PathBuf,
    /// An image, or a directory whose images (.jpg, .jpeg, .png at any depth) are explained;
    /// they need not be the job's.
    #[arg(long)]
    images: PathBuf,
    /// Concepts by key or name, comma-separated. Default: every concept with a classifier.
    #[arg(long, value_delimiter = ',')]
    concepts: Vec<String>,
    /// Re-fit each concept's classifier on its K neurons of highest Φ (on its training
    /// regions, as `hint evaluate` re-fits) and map those: what the top neurons alone say.
    /// Default: the trained classifier on every neuron.
    #[arg(long)]
    top: Option<usize>,
    /// Output directory: one heatmap PNG per image and concept, and explain.json. Default:
    /// the job's results/explain/, where `hint report` shows them as a gallery.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Check each map against the boxes an expert drew on its image: an annotation tree of
    /// PASCAL VOC / ImageNet XML files (matched to the images by file name, as `hint
    /// evaluate` matches them) or a CUB-200-2011 root. Every box of an image counts,
    /// whatever its class. Reports the pointing game and the IoU of the map's box per map
    /// and per concept.
    #[arg(long)]
    boxes: Option<PathBuf>,
    /// With --boxes: a root of object masks (PNG; an annotation's path relative to the
    /// annotation tree, with .png, as `hint evaluate --masks` finds them). Adds each map's
    /// mask IoU (the map at the threshold against the mask).
    #[arg(long, requires = "boxes")]
    masks: Option<PathBuf>,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
}

/// `--out`, or by default the job's `results/<dir>/` (where `hint report` looks), which
/// `hint <command>` can only write for a local job.
pub fn out_dir(
    out: Option<PathBuf>,
    job: &Path,
    dir: &str,
    command: &str,
) -> anyhow::Result<PathBuf> {
    match out {
        Some(out) => Ok(out),
        None if storage::is_remote(job) => anyhow::bail!(
            "--out is needed: the job {} is on object storage, and hint {command} writes local \
             files",
            job.display()
        ),
        None => Ok(job.join("results").join(dir)),
    }
}

/// Runs `hint explain` and prints where each concept peaks.
pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let out = out_dir(args.out, &args.job, EXPLAIN_DIR, "explain")?;
    let config = ExplainConfig {
        job: args.job,
        images: args.images,
        concepts: args.concepts,
        top: args.top,
        out,
        boxes: args.boxes,
        masks: args.masks,
        device: hint_worker::device::parse(&args.device)?,
    };
    let report = explain::run(&config)?;
    let images = report
        .maps
        .iter()
        .map(|m| &m.image)
        .collect::<std::collections::BTreeSet<_>>();
    let classifiers = match report.top {
        Some(k) => format!("classifiers re-fitted on each concept's top {k} neurons by Φ"),
        None => "the trained classifiers".to_string(),
    };
    println!(
        "explained {} image(s) with {} concept map(s) at {} {} ({}×{} crop), {classifiers}",
        images.len(),
        report.maps.len(),
        report.model,
        report.layer,
        report.crop,
        report.crop
    );
    for map in &report.maps {
        println!(
            "  {}  {:<16} peak at [{}, {}] of {}×{}, p = {:.3}  → {}",
            map.image.display(),
            map.name,
            map.peak[0],
            map.peak[1],
            map.height,
            map.width,
            map.peak_probability,
            map.png
        );
    }
    for skipped in &report.skipped {
        println!("  skipped {}: {}", skipped.image.display(), skipped.reason);
    }
    if let Some(boxes) = &report.boxes {
        println!(
            "against the boxes of {} (map boxed at {} of its range):",
            boxes.display(),
            report.threshold.unwrap_or_default()
        );
        for c in &report.checks {
            println!(
                "  {:<16} {} image(s): pointing {:.1}%, localised (IoU ≥ 0.5) {:.1}%, mean IoU \
                 {:.3}{}",
                c.name,
                c.images,
                100.0 * c.pointing,
                100.0 * c.localised,
                c.mean_iou,
                c.mean_mask_iou
                    .map_or(String::new(), |m| format!(", mean mask IoU {m:.3}"))
            );
        }
        for u in &report.unchecked {
            println!("  not checked {}: {}", u.image.display(), u.reason);
        }
    }
    println!("  scores: {}", config.out.join(EXPLAIN_FILE).display());
    Ok(())
}

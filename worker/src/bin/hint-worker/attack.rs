//! `hint attack`: a finished job's concept classifiers on images before and after a targeted
//! attack → which concepts appear and vanish, per (source, target) pair of classes.

use std::path::PathBuf;

use clap::Args;
use hint_common::attack::{AttackReport, ATTACK_DIR};
use hint_worker::attack::{self, AttackConfig, Pgd, ATTACK_FILE};

/// Flags of `hint attack`.
#[derive(Args, Debug)]
pub struct AttackArgs {
    /// The job directory (`spec.json`, `labels.txt`, `classifiers/`): its model, layer,
    /// preprocessing and concept classifiers are used.
    #[arg(long)]
    job: PathBuf,
    /// An image, or a directory whose images (.jpg, .jpeg, .png at any depth) are attacked;
    /// they need not be the job's.
    #[arg(long)]
    images: PathBuf,
    /// Target classes (names of the job's labels.txt), comma-separated: each image is
    /// attacked toward each of them that is not its clean prediction.
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// Concepts by key or name, comma-separated. Default: every concept with a classifier.
    #[arg(long, value_delimiter = ',')]
    concepts: Vec<String>,
    /// The L∞ budget in pixel values, as a number in [0, 1] or a fraction such as 8/255.
    #[arg(long, default_value = "8/255", value_parser = pixel_value)]
    epsilon: f64,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    steps: u32,
    /// The step, in pixel values (a number or a fraction). Default: epsilon / 4, so the
    /// attack can cross the ball in `steps` ≥ 4 steps.
    #[arg(long, value_parser = pixel_value)]
    step_size: Option<f64>,
    /// Output directory: heatmap PNGs of every clean and attacked map, and attack.json.
    /// Default: the job's results/attack/, where `hint report` shows them.
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
}

/// A pixel value: `0.031` or `8/255`.
fn pixel_value(text: &str) -> Result<f64, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<f64>()
            .map_err(|_| format!("'{text}' is not a number or a fraction such as 8/255"))
    };
    let value = match text.split_once('/') {
        Some((a, b)) => number(a)? / number(b)?,
        None => number(text)?,
    };
    if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
        return Err(format!("'{text}' is not a pixel value in [0, 1]"));
    }
    Ok(value)
}

/// Runs `hint attack` and prints each pair's summary.
pub fn run(args: AttackArgs) -> anyhow::Result<()> {
    let out = crate::explain::out_dir(args.out, &args.job, ATTACK_DIR, "attack")?;
    let config = AttackConfig {
        job: args.job,
        images: args.images,
        targets: args.targets,
        concepts: args.concepts,
        pgd: Pgd {
            epsilon: args.epsilon,
            steps: args.steps,
            step_size: args.step_size.unwrap_or(args.epsilon / 4.0),
        },
        out,
        device: hint_worker::device::parse(&args.device)?,
    };
    let report = attack::run(&config)?;
    print_summary(&report);
    println!("  scores: {}", config.out.join(ATTACK_FILE).display());
    Ok(())
}

fn print_summary(report: &AttackReport) {
    let pgd = &report.pgd;
    println!(
        "attacked {} image × target pair(s) at {} {} (targeted PGD, ε = {:.4} = {:.1}/255, {} \
         steps of {:.4})",
        report.attacks.len(),
        report.model,
        report.layer,
        pgd.epsilon,
        pgd.epsilon * 255.0,
        pgd.steps,
        pgd.step_size
    );
    for pair in &report.pairs {
        println!(
            "  {} → {}: {} image(s), {} now classified {} (its mean p {:.3} → {:.3})",
            pair.source,
            pair.target,
            pair.images,
            pair.succeeded,
            pair.target,
            pair.mean_clean_target_probability,
            pair.mean_target_probability
        );
        for c in &pair.concepts {
            println!(
                "    {:<16} {:<7} present {:>5.1}% → {:>5.1}%, area {:.3} → {:.3}",
                c.name,
                c.relation.label(),
                100.0 * c.present_clean,
                100.0 * c.present_attacked,
                c.area_clean,
                c.area_attacked
            );
        }
    }
    for skipped in &report.skipped {
        println!("  skipped {}: {}", skipped.image.display(), skipped.reason);
    }
}

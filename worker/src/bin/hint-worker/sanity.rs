//! `hint sanity`: the saliency sanity check — cascading randomisation of the job's model
//! from the top, each step's saliency and concept maps against the trained model's.

use std::path::PathBuf;

use clap::Args;
use hint_common::sanity::{SanityReport, SANITY_DIR};
use hint_common::settings::MethodName;
use hint_worker::sanity::{self, SanityConfig};

/// Flags of `hint sanity`.
#[derive(Args, Debug)]
pub struct SanityArgs {
    /// The job directory (`spec.json`, `classifiers/`): its model, layer, preprocessing,
    /// region settings and concept classifiers are used.
    #[arg(long)]
    job: PathBuf,
    /// An image, or a directory whose images (.jpg, .jpeg, .png at any depth) are used;
    /// they need not be the job's.
    #[arg(long)]
    images: PathBuf,
    /// Saliency methods, comma-separated (the job's parameters for smoothgrad and
    /// integrated_gradients). Default: the job's method.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<MethodName>,
    /// Concepts whose maps are compared, by key or name, comma-separated. Default: every
    /// concept with a classifier.
    #[arg(long, value_delimiter = ',')]
    concepts: Vec<String>,
    /// Output directory of sanity.json. Default: the job's results/sanity/, where `hint
    /// report` shows it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
}

/// Runs `hint sanity` and prints each step.
pub fn run(args: SanityArgs) -> anyhow::Result<()> {
    let out = crate::explain::out_dir(args.out, &args.job, SANITY_DIR, "sanity")?;
    let config = SanityConfig {
        job: args.job,
        images: args.images,
        methods: args.methods,
        concepts: args.concepts,
        out,
        device: hint_worker::device::parse(&args.device)?,
    };
    let report = sanity::run(&config)?;
    print_steps(&report);
    println!(
        "  scores: {}",
        config.out.join(hint_common::sanity::SANITY_FILE).display()
    );
    Ok(())
}

fn print_steps(report: &SanityReport) {
    println!(
        "sanity check of {} {} on {} image(s), each part randomised from the top, \
         cumulatively; per method ρ / IoU against the trained model (ρ: rank correlation of \
         the {}-aggregated maps, IoU: of the regions at {}), and the concept maps' mean ρ:",
        report.model, report.layer, report.images, report.aggregation, report.threshold
    );
    let number = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
    let mut header = format!("  {:<18}", "randomised");
    for m in &report.methods {
        header += &format!(" {m:>22}");
    }
    println!("{header} {:>13}", "concept maps");
    for step in &report.steps {
        let part = step.randomised.as_deref().unwrap_or("nothing (trained)");
        let mut line = format!(
            "  {:<18}",
            format!("{part}{}", if step.reaches_layer { " *" } else { "" })
        );
        for m in &step.methods {
            let cell = format!("{} / {}", number(m.rank_correlation), number(m.region_iou));
            line += &format!(" {cell:>22}");
        }
        let (concepts, _) = hint_common::sanity::mean_defined(step.concept_maps.iter().copied());
        println!("{line} {:>13}", number(concepts));
    }
    println!(
        "  * reaches the layer: its activations change too. —: undefined (a constant map on \
         every image, e.g. a plain gradient just before a global pool)."
    );
    for skipped in &report.skipped {
        println!("  skipped {}: {}", skipped.image.display(), skipped.reason);
    }
}

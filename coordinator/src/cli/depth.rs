//! `hint depth --job DIR --job DIR … --out DIR`: the depth view of finished jobs that
//! analysed different layers of one network (see `hint_coordinator::report::depth`):
//! writes depth.html, depth.json and depth.csv and prints a table of the layers.

use std::path::PathBuf;

use clap::Args;

use hint_coordinator::report::depth::{DepthView, DEPTH_CSV, DEPTH_JSON};

/// Flags of `hint depth`.
#[derive(Args, Debug)]
pub struct DepthArgs {
    /// A finished job's directory; give one per layer (any order: the view sorts them
    /// shallow to deep), or several separated by commas.
    #[arg(long = "job", required = true, value_delimiter = ',')]
    jobs: Vec<PathBuf>,
    /// Where to write depth.html, depth.json and depth.csv (created if missing).
    #[arg(long)]
    out: PathBuf,
}

/// Writes the view and prints its layers.
pub fn run(args: DepthArgs) -> anyhow::Result<()> {
    let view = DepthView::read(&args.jobs)?;
    for warning in &view.file.warnings {
        eprintln!("warning: {warning}");
    }
    let page = view.write(&args.out)?;
    let file = &view.file;
    let width = file
        .layers
        .iter()
        .map(|l| l.layer.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<width$}  {:>7}  {:>7}  {:>13}  {:>11}",
        "layer", "neurons", "mean F1", "half of Φ⁺ in", "Gini of Φ⁺"
    );
    let percent = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{:.1}%", 100.0 * v));
    for l in &file.layers {
        println!(
            "{:<width$}  {:>7}  {:>7}  {:>13}  {:>11}",
            l.layer,
            l.neurons,
            l.mean_f1.map_or("—".to_string(), |f| format!("{f:.3}")),
            percent(l.median_half_mass_fraction),
            l.median_gini.map_or("—".to_string(), |g| format!("{g:.3}"))
        );
    }
    println!(
        "({} concepts with a classifier at every layer; medians over them)",
        file.shared_concepts
    );
    println!("{}", page.display());
    eprintln!(
        "also {} and {}",
        args.out.join(DEPTH_JSON).display(),
        args.out.join(DEPTH_CSV).display()
    );
    Ok(())
}

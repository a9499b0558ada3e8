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
    print!("{}", view.file.table());
    println!("{}", page.display());
    eprintln!(
        "also {} and {}",
        args.out.join(DEPTH_JSON).display(),
        args.out.join(DEPTH_CSV).display()
    );
    Ok(())
}

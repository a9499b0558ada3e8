//! `hint report --job DIR`: writes the self-contained `results/report.html` of a finished
//! job (opens offline; see `hint_coordinator::report`) and prints its path.

use clap::Args;

/// Flags of `hint report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The job directory (`<storage.root>/<job-id>`, holding spec.json and results/).
    #[arg(long)]
    job: std::path::PathBuf,
}

/// Writes the report and prints its path.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let path = hint_coordinator::report::write(&args.job)?;
    println!("{}", path.display());
    Ok(())
}

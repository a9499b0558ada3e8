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
    let layers = args
        .job
        .join("results")
        .join(hint_coordinator::results::LAYERS_FILE);
    anyhow::ensure!(
        !layers.is_file(),
        "{} is a job with several layers: its depth view is results/depth.html there, and \
         each layer's report is layers/<layer>/results/report.html (`hint report --job` on a \
         layer's directory writes it again)",
        args.job.display()
    );
    let path = hint_coordinator::report::write(&args.job)?;
    println!("{}", path.display());
    Ok(())
}

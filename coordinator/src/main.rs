//! `hint`: the command-line tool. Thin: flags become the libraries' validated configs.
//!
//! - `hint synth`, `hint train-model`: the synthetic world and a tiny CNN trained on it.
//! - `hint concepts`: the concept hierarchy of a dataset (WordNet 3.0 or a custom file).
//! - `hint extract …`: images → responsible-region Parquet files on one machine.
//! - `hint classify`, `hint shapley`: concept classifiers on the regions, then Φ.
//! - `hint run job.toml --workers N`: a whole job with an embedded coordinator and workers;
//!   `hint coordinator`, `hint submit / status / results / cancel` for a cluster (`hint-worker` is the
//!   worker binary), `hint health` to probe a coordinator; `hint check job.toml` validates a spec.
//! - `hint layers --model ARCH`: the addressable layers of an architecture.
//! - `hint example --out DIR`: a seconds-long smoke test input for `hint extract` (random
//!   tiny CNN, one corrupt image).

mod cli;

use clap::{Parser, Subcommand};

/// HINT — which neurons of a CNN layer carry which concepts, at every level of a hierarchy.
#[derive(Parser, Debug)]
#[command(name = "hint", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Extract responsible regions: hidden-layer saliency → thresholded regions → Parquet.
    Extract(Box<cli::extract::ExtractArgs>),
    /// List the layers an architecture can be cut at (torchvision module names).
    Layers(cli::layers::LayersArgs),
    /// Write a small generated dataset and a seeded tiny CNN to try `hint extract` on.
    Example(cli::example::ExampleArgs),
    /// Print the concept hierarchy of a dataset's labels, with image counts per concept.
    Concepts(cli::concepts::ConceptsArgs),
    /// Generate the synthetic world: hierarchical classes, boxes, masks, hierarchy file.
    Synth(cli::synth::SynthArgs),
    /// Train a small CNN on an ImageFolder (the synthetic world) and save it as safetensors.
    TrainModel(cli::train_model::TrainModelArgs),
    /// Train one linear classifier per concept on a region dataset.
    Classify(cli::classify::ClassifyArgs),
    /// Monte-Carlo Shapley values of every neuron for every concept → Φ.
    Shapley(cli::shapley::ShapleyArgs),
    /// Validate a job spec (TOML) and summarise it, without running anything.
    Check(cli::check::CheckArgs),
    /// Run a whole job here: a coordinator and N workers in this process (the embedded default).
    Run(cli::run::RunArgs),
    /// Serve as a cluster's coordinator (gRPC; state in a directory, resumed on restart).
    Coordinator(cli::serve::ServeArgs),
    /// Submit a job spec to a running coordinator.
    Submit(cli::client::SubmitArgs),
    /// Show the status of a coordinator's jobs.
    Status(cli::client::StatusArgs),
    /// List the result files of a finished job.
    Results(cli::client::ResultsArgs),
    /// Cancel a job on a running coordinator.
    Cancel(cli::client::CancelArgs),
    /// Is a coordinator serving? (exit status 0 or 1: a Kubernetes exec probe)
    Health(cli::health::HealthArgs),
    /// Weakly supervised localisation of a finished job's concepts (Shapley vs |w|·σ vs raw |w| vs random).
    Evaluate(cli::evaluate::EvaluateArgs),
    /// Causal ablation: remove each concept's top neurons (Φ vs weights vs mean activation vs random) and measure what breaks.
    Ablate(cli::ablate::AblateArgs),
    /// Write the self-contained report.html of a finished job.
    Report(cli::report::ReportArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HINT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: not in pod logs or redirected files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Extract(args) => cli::extract::run(*args),
        Command::Layers(args) => cli::layers::run(args),
        Command::Example(args) => cli::example::run(args),
        Command::Concepts(args) => cli::concepts::run(args),
        Command::Synth(args) => cli::synth::run(args),
        Command::TrainModel(args) => cli::train_model::run(args),
        Command::Classify(args) => cli::classify::run(args),
        Command::Shapley(args) => cli::shapley::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Coordinator(args) => cli::serve::run(args),
        Command::Submit(args) => cli::client::submit(args),
        Command::Status(args) => cli::client::status(args),
        Command::Results(args) => cli::client::results(args),
        Command::Cancel(args) => cli::client::cancel(args),
        Command::Health(args) => cli::health::run(args),
        Command::Evaluate(args) => cli::evaluate::run(args),
        Command::Ablate(args) => cli::ablate::run(args),
        Command::Report(args) => cli::report::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

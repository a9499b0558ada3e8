//! `hint-worker`: the executable that links libtorch.
//!
//! - Without a subcommand, a worker of a hint coordinator (`work.rs`): registers, polls for
//!   tasks, runs them, reports results.
//! - With one, a single-machine stage of `hint` (`hint extract`, `hint run`, …): `hint`
//!   hands these over with `exec` and argv[0] = `hint` (see `hint_coordinator::commands`),
//!   so `hint` itself, the coordinator and the client commands never load libtorch. The
//!   names and help lines come from that module's table.

mod ablate;
mod attack;
mod classify;
mod evaluate;
mod example;
mod explain;
mod extract;
mod layers;
mod run;
mod sanity;
mod shapley;
mod train_model;
mod work;

use clap::{Parser, Subcommand};
use hint_coordinator::commands;

/// A hint worker, and the stages of `hint` that need libtorch.
#[derive(Parser, Debug)]
#[command(
    name = "hint-worker",
    version,
    about,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Stage>,
    #[command(flatten)]
    work: work::WorkArgs,
}

#[derive(Subcommand, Debug)]
enum Stage {
    #[command(about = commands::EXTRACT)]
    Extract(Box<extract::ExtractArgs>),
    #[command(about = commands::LAYERS)]
    Layers(layers::LayersArgs),
    #[command(about = commands::EXAMPLE)]
    Example(example::ExampleArgs),
    #[command(about = commands::TRAIN_MODEL)]
    TrainModel(train_model::TrainModelArgs),
    #[command(about = commands::CLASSIFY)]
    Classify(classify::ClassifyArgs),
    #[command(about = commands::SHAPLEY)]
    Shapley(shapley::ShapleyArgs),
    #[command(about = commands::RUN)]
    Run(run::RunArgs),
    #[command(about = commands::EVALUATE)]
    Evaluate(evaluate::EvaluateArgs),
    #[command(about = commands::ABLATE)]
    Ablate(ablate::AblateArgs),
    #[command(about = commands::EXPLAIN)]
    Explain(explain::ExplainArgs),
    #[command(about = commands::ATTACK)]
    Attack(attack::AttackArgs),
    #[command(about = commands::SANITY)]
    Sanity(sanity::SanityArgs),
}

fn main() -> std::process::ExitCode {
    hint_worker::allocator::keep_freed_blocks();
    let cli = Cli::parse();
    // A worker's log is its pod's log (info); a stage on a terminal says only what is wrong.
    let default_level = if cli.command.is_none() {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HINT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: not in a pod's log or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A stage handed over by `hint` must come from the same build.
    let handed_by = std::env::var(commands::HANDOVER_VERSION_VAR).ok();
    if let Err(error) = commands::check_handover(handed_by.as_deref()) {
        return commands::exit_code(Err(error));
    }
    let result = match cli.command {
        None => work::run(cli.work),
        Some(Stage::Extract(args)) => extract::run(*args),
        Some(Stage::Layers(args)) => layers::run(args),
        Some(Stage::Example(args)) => example::run(args),
        Some(Stage::TrainModel(args)) => train_model::run(args),
        Some(Stage::Classify(args)) => classify::run(args),
        Some(Stage::Shapley(args)) => shapley::run(args),
        Some(Stage::Run(args)) => run::run(args),
        Some(Stage::Evaluate(args)) => evaluate::run(args),
        Some(Stage::Ablate(args)) => ablate::run(args),
        Some(Stage::Explain(args)) => explain::run(args),
        Some(Stage::Attack(args)) => attack::run(args),
        Some(Stage::Sanity(args)) => sanity::run(args),
    };
    commands::exit_code(result)
}

//! `hint`: the command-line tool. Thin: flags become the libraries' validated configs.
//!
//! - `hint synth`: the synthetic world; `hint concepts`: the concept hierarchy of a dataset
//!   (WordNet 3.0 or a custom file); `hint check job.toml` validates a spec.
//! - `hint coordinator`, `hint submit / status / results / cancel` for a cluster
//!   (`hint-worker` is the worker binary), `hint health` to probe a coordinator, `hint
//!   report` to write a finished job's report.html, `hint depth` to compare jobs at several
//!   layers, `hint sample` to draw a region directory's sample once.
//! - The stages that need libtorch (`hint extract`, `layers`, `example`, `train-model`,
//!   `classify`, `shapley`, `run`, `evaluate`, `ablate`) run in the `hint-worker` executable:
//!   `hint` lists them and hands them over with `exec` (`hint_coordinator::commands`), so
//!   this executable, the coordinator and the probes never load libtorch.

mod cli;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches, Subcommand};
use hint_coordinator::commands::{self, TORCH_COMMANDS, WORKER_EXECUTABLE};

/// The subcommands `hint` runs itself.
#[derive(Subcommand, Debug)]
enum Local {
    /// Print the concept hierarchy of a dataset's labels, with image counts per concept.
    Concepts(cli::concepts::ConceptsArgs),
    /// Generate the synthetic world: hierarchical classes, boxes, masks, hierarchy file.
    Synth(cli::synth::SynthArgs),
    /// Validate a job spec (TOML) and summarise it, without running anything.
    Check(cli::check::CheckArgs),
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
    /// Write the self-contained report.html of a finished job.
    Report(cli::report::ReportArgs),
    /// Compare finished jobs at different layers of one network: F1, top neurons and Φ's
    /// concentration across depth (depth.html, depth.json, depth.csv).
    Depth(cli::depth::DepthArgs),
    /// Draw a region directory's bounded sample once (what classifiers and Shapley read).
    Sample(cli::sample::SampleArgs),
}

/// The whole command line: the libtorch stages first (they take any arguments, which
/// `hint-worker` parses), then the local subcommands.
fn command() -> Command {
    let torch = TORCH_COMMANDS.iter().map(|c| {
        Command::new(c.name)
            .about(c.about)
            // `hint extract --help` is hint-worker's help for `extract`.
            .disable_help_flag(true)
            .arg(
                Arg::new("args")
                    .num_args(0..)
                    .trailing_var_arg(true)
                    .allow_hyphen_values(true)
                    .action(ArgAction::Append)
                    .value_parser(clap::value_parser!(OsString)),
            )
    });
    let hint = Command::new("hint").subcommands(torch);
    Local::augment_subcommands(hint)
        .version(env!("CARGO_PKG_VERSION"))
        .about("HINT — which neurons of a CNN layer carry which concepts, at every level of a hierarchy.")
        .subcommand_required(true)
        .arg_required_else_help(true)
}

/// Replaces this process with `hint-worker <name> <args>` (argv[0] = `hint`, so its usage
/// lines and errors read `hint <name>`); returns only when that fails.
fn hand_over(name: &str, matches: &ArgMatches) -> anyhow::Error {
    let args = matches
        .get_many::<OsString>("args")
        .into_iter()
        .flatten()
        .cloned();
    let worker = worker_executable();
    let error = std::process::Command::new(&worker)
        .env(commands::HANDOVER_VERSION_VAR, commands::VERSION)
        .arg0("hint")
        .arg(name)
        .args(args)
        .exec();
    let next_to = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .unwrap_or_else(|| "this executable".into());
    if error.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "`hint {name}` runs in the {WORKER_EXECUTABLE} executable (it needs libtorch), which \
             is neither in {next_to} nor on PATH: build it with `cargo build --release -p \
             hint-worker` or install both with `make install`"
        )
    } else {
        anyhow::anyhow!("starting {} for `hint {name}`: {error}", worker.display())
    }
}

/// `hint-worker` next to this executable (a build's target directory, an install prefix,
/// the container's /usr/local/bin), else whatever PATH finds.
fn worker_executable() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(WORKER_EXECUTABLE))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(WORKER_EXECUTABLE))
}

fn main() -> std::process::ExitCode {
    let matches = command().get_matches();
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    let result = if TORCH_COMMANDS.iter().any(|c| c.name == name) {
        Err(hand_over(name, sub))
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("HINT_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            // Colour codes only on a terminal: not in pod logs or redirected files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
        match Local::from_arg_matches(&matches) {
            Ok(local) => run(local),
            Err(e) => e.exit(),
        }
    };
    commands::exit_code(result)
}

fn run(command: Local) -> anyhow::Result<()> {
    match command {
        Local::Concepts(args) => cli::concepts::run(args),
        Local::Synth(args) => cli::synth::run(args),
        Local::Check(args) => cli::check::run(args),
        Local::Coordinator(args) => cli::serve::run(args),
        Local::Submit(args) => cli::client::submit(args),
        Local::Status(args) => cli::client::status(args),
        Local::Results(args) => cli::client::results(args),
        Local::Cancel(args) => cli::client::cancel(args),
        Local::Health(args) => cli::health::run(args),
        Local::Report(args) => cli::report::run(args),
        Local::Depth(args) => cli::depth::run(args),
        Local::Sample(args) => cli::sample::run(args),
    }
}

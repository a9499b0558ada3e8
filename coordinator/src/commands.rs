//! The subcommands of `hint` that run in the `hint-worker` executable because they need
//! libtorch (a model, saliency, classifiers, Φ). `hint` lists them in its help and hands
//! them over (`exec`, argv[0] = `hint`, so usage and errors still read `hint extract …`);
//! `hint-worker` defines their flags. One table, so the two cannot disagree on a name.
//!
//! Why two executables: loading libtorch costs a client command most of its start-up time
//! (0.4 s of `hint --version` on 2 cores), and `hint health` is the Kubernetes probe, so
//! `hint` and the coordinator link no libtorch at all.

/// A subcommand that runs in `hint-worker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TorchCommand {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line of help.
    pub about: &'static str,
}

/// `hint extract`.
pub const EXTRACT: &str =
    "Extract responsible regions: hidden-layer saliency → thresholded regions → Parquet";
/// `hint layers`.
pub const LAYERS: &str = "List the layers an architecture can be cut at (torchvision module names)";
/// `hint example`.
pub const EXAMPLE: &str =
    "Write a small generated dataset and a seeded tiny CNN to try `hint extract` on";
/// `hint train-model`.
pub const TRAIN_MODEL: &str =
    "Train a small CNN on an ImageFolder (the synthetic world) and save it as safetensors";
/// `hint classify`.
pub const CLASSIFY: &str = "Train one linear classifier per concept on a region dataset";
/// `hint shapley`.
pub const SHAPLEY: &str = "Monte-Carlo Shapley values of every neuron for every concept → Φ";
/// `hint run`.
pub const RUN: &str =
    "Run a whole job here: a coordinator and N workers in this process (the embedded default)";
/// `hint evaluate`.
pub const EVALUATE: &str = "Weakly supervised localisation of a finished job's concepts \
                            (Shapley vs |w|·σ vs raw |w| vs random)";
/// `hint ablate`.
pub const ABLATE: &str = "Causal ablation: remove each concept's top neurons (Φ vs weights vs \
                          mean activation vs random) and measure what breaks";

/// `hint explain`.
pub const EXPLAIN: &str = "Concept maps for any image: a finished job's concept classifiers at \
                           every position of the image's feature map → heatmaps and scores";

/// `hint attack`.
pub const ATTACK: &str = "Adversarial explanation: attack images toward other classes (targeted \
                          PGD) and see which concepts appear and vanish in their feature maps";

/// `hint sanity`.
pub const SANITY: &str = "Saliency sanity check: randomise the model from the top, part by part, \
                          and measure how each method's regions and the concept maps change";

/// Every subcommand `hint` hands to `hint-worker`, in the order `hint --help` lists them.
pub const TORCH_COMMANDS: [TorchCommand; 12] = [
    TorchCommand {
        name: "extract",
        about: EXTRACT,
    },
    TorchCommand {
        name: "layers",
        about: LAYERS,
    },
    TorchCommand {
        name: "example",
        about: EXAMPLE,
    },
    TorchCommand {
        name: "train-model",
        about: TRAIN_MODEL,
    },
    TorchCommand {
        name: "classify",
        about: CLASSIFY,
    },
    TorchCommand {
        name: "shapley",
        about: SHAPLEY,
    },
    TorchCommand {
        name: "run",
        about: RUN,
    },
    TorchCommand {
        name: "evaluate",
        about: EVALUATE,
    },
    TorchCommand {
        name: "ablate",
        about: ABLATE,
    },
    TorchCommand {
        name: "explain",
        about: EXPLAIN,
    },
    TorchCommand {
        name: "attack",
        about: ATTACK,
    },
    TorchCommand {
        name: "sanity",
        about: SANITY,
    },
];

/// The executable that runs [`TORCH_COMMANDS`].
pub const WORKER_EXECUTABLE: &str = "hint-worker";

/// Set by `hint` to its version when it hands a command over: `hint-worker` refuses to run
/// for a `hint` of another version (two executables from different builds).
pub const HANDOVER_VERSION_VAR: &str = "HINT_HANDOVER_VERSION";

/// This build's version, as both executables report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `Err` when `hint` of another version handed the command over (`handed_by`: the value of
/// [`HANDOVER_VERSION_VAR`], if set).
pub fn check_handover(handed_by: Option<&str>) -> anyhow::Result<()> {
    match handed_by {
        Some(version) if version != VERSION => anyhow::bail!(
            "hint {version} handed this command to hint-worker {VERSION}: the two executables \
             come from different builds; install both from one (make install, or cargo build \
             --release -p hint-coordinator -p hint-worker)"
        ),
        _ => Ok(()),
    }
}

/// The exit status of a command, printing an error and its causes on stderr as every `hint`
/// and `hint-worker` command does.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
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

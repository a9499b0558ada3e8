//! Helpers shared by the end-to-end tests: the project's Python, the `hint` binary.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The project's virtualenv Python (torch, torchvision, safetensors, pyarrow), made by
/// `scripts/bootstrap.sh`.
pub fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make test` (or scripts/bootstrap.sh) first",
        python.display()
    );
    python
}

/// Runs `tests/python/<script>` with `args`; panics with its stderr when it fails.
pub fn run_python(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(python())
        .arg(root().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("starting the project's python");
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python printed UTF-8")
}

/// The `hint` binary of this build (`cargo build` puts it beside the test binary's
/// parent directory; the Makefile builds it before the tests run).
pub fn hint_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = profile_dir.join("hint");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p hint-coordinator`)",
        bin.display()
    );
    bin
}

/// The `hint` binary as the tests run it: on the CPU (the tests compare CPU numerics), and
/// with OpenMP told to sleep rather than spin while it waits — the suite runs several
/// libtorch processes on few cores, where spinning threads steal each other's time (two
/// threads then train slower than one); results do not change.
pub fn hint_command() -> Command {
    let mut command = Command::new(hint_bin());
    command
        .env("HINT_DEVICE", "cpu")
        .env("OMP_WAIT_POLICY", "passive");
    command
}

/// Runs `hint` with `args` to completion.
pub fn hint<S: AsRef<OsStr>>(args: &[S]) -> Output {
    hint_command().args(args).output().expect("starting hint")
}

/// The standard output of a run that must succeed; panics with both streams otherwise.
pub fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// The error output of a run that must fail; panics with its output otherwise.
pub fn failed(output: &Output, what: &str) -> String {
    assert!(
        !output.status.success(),
        "{what} should have failed; stdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The labels of the toy region sets the classify and Shapley tests write.
pub const TOY_LABELS: [&str; 4] = ["cat", "dog", "car", "truck"];

/// The toy hierarchy over [`TOY_LABELS`], as a custom hierarchy file.
pub const TOY_HIERARCHY: &str = r#"{
  "name": "toy",
  "children": {
    "whole": ["animal", "vehicle"],
    "animal": ["cat", "dog"],
    "vehicle": ["car", "truck"]
  }
}"#;

/// A roughly standard-normal draw (Irwin–Hall of 12 uniforms) for the identity `parts`.
pub fn noise(seed: u64, parts: &[u64]) -> f32 {
    (0..12u64)
        .map(|k| {
            let mut p = parts.to_vec();
            p.push(k);
            (hint_common::seed::derive(seed, &p) >> 11) as f64 / (1u64 << 53) as f64
        })
        .sum::<f64>() as f32
        - 6.0
}

/// `hint example`: `per_class` generated images per class and a tiny CNN seeded by `seed`,
/// in `dir`.
pub fn example(dir: &Path, per_class: u32, seed: u64) {
    succeeded(
        &hint(&[
            "example",
            "--out",
            dir.to_str().unwrap(),
            "--per-class",
            &per_class.to_string(),
            "--seed",
            &seed.to_string(),
        ]),
        "hint example",
    );
}

/// A synthetic world (`hint synth`) and a tiny CNN briefly trained on it (`hint
/// train-model`): what the end-to-end tests run jobs on.
pub struct TinyWorld {
    /// The world's directory: `images/`, `annotations/`, `masks/`, `hierarchy.yaml`.
    pub world: PathBuf,
    /// The trained model.
    pub weights: PathBuf,
}

impl TinyWorld {
    /// Makes `dir/world` (`per_class` images per class from `seed`) and
    /// `dir/tiny_cnn.safetensors` (trained for `epochs`).
    pub fn make(dir: &Path, seed: u64, per_class: u32, epochs: u32) -> TinyWorld {
        let world = dir.join("world");
        let weights = dir.join("tiny_cnn.safetensors");
        let (out, images) = (world.to_str().unwrap(), world.join("images"));
        let (seed, per_class) = (seed.to_string(), per_class.to_string());
        succeeded(
            &hint(&[
                "synth",
                "--out",
                out,
                "--seed",
                &seed,
                "--per-class",
                &per_class,
            ]),
            "hint synth",
        );
        succeeded(
            &hint(&[
                "train-model",
                "--images",
                images.to_str().unwrap(),
                "--out",
                weights.to_str().unwrap(),
                "--epochs",
                &epochs.to_string(),
            ]),
            "hint train-model",
        );
        TinyWorld { world, weights }
    }

    /// The ImageFolder.
    pub fn images(&self) -> PathBuf {
        self.world.join("images")
    }

    /// The world's concept hierarchy.
    pub fn hierarchy(&self) -> PathBuf {
        self.world.join("hierarchy.yaml")
    }

    /// A job spec over this world and model writing under `storage`; `sections` (TOML:
    /// `[extract]`, `[shapley]`, …) follow `[data]`.
    pub fn spec(&self, name: &str, seed: u64, storage: &Path, sections: &str) -> String {
        job_spec(
            name,
            seed,
            [&self.images(), &self.weights, &self.hierarchy()].map(|p| p.to_str().unwrap()),
            storage.to_str().unwrap(),
            sections,
        )
    }
}

impl TinyWorld {
    /// `[evaluate]` (this world's annotations and masks) and `[ablate]` sections, small: a
    /// handful of images and one fraction each.
    pub fn assessments(&self) -> String {
        format!(
            r#"[evaluate]
annotations = "{}"
masks = "{}"
fractions = [20]
images_per_concept = 6
random_draws = 1
bootstrap = 100

[ablate]
max_images = 24
fractions = [10]
removals = ["zero"]
selections = ["weight_standardised", "random"]
random_draws = 1
bootstrap = 100"#,
            self.world.join("annotations").display(),
            self.world.join("masks").display()
        )
    }

    /// Writes `dir/job.toml` (this world and model, `sections`, storage `dir/runs`) and runs
    /// it with `hint run --workers 1`: the job directory `dir/runs/job-0001` and the stdout.
    pub fn run_job(&self, dir: &Path, name: &str, seed: u64, sections: &str) -> (PathBuf, String) {
        let spec_path = dir.join("job.toml");
        let spec = self.spec(name, seed, &dir.join("runs"), sections);
        std::fs::write(&spec_path, spec).expect("writing the spec");
        let out = succeeded(
            &hint(&["run", spec_path.to_str().unwrap(), "--workers", "1"]),
            "hint run",
        );
        (dir.join("runs/job-0001"), out)
    }
}

/// The text of a job spec on the tiny CNN's last ReLU (`features.7`): `[job]`, `[model]`,
/// `[data]` with `inputs` = [images, weights, hierarchy] (paths or URLs), then `sections`,
/// then `[storage]` with `storage` as its root.
pub fn job_spec(name: &str, seed: u64, inputs: [&str; 3], storage: &str, sections: &str) -> String {
    let [images, weights, hierarchy] = inputs;
    format!(
        r#"[job]
name = "{name}"
seed = {seed}

[model]
architecture = "tiny_cnn"
weights = "{weights}"
layer = "features.7"

[data]
images = "{images}"
hierarchy = "{hierarchy}"

{sections}

[storage]
root = "{storage}"
"#
    )
}

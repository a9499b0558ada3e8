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

//! `hint check`: a job spec with several mistakes is refused with every problem named by its
//! field, and nothing is written; a valid spec passes with a summary.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{failed, hint, succeeded};

/// Every path under `dir`, relative, so a run that writes anything shows up.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            paths.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    paths
}

/// What a spec points at: weights (only their existence is checked), an ImageFolder, a
/// hierarchy.
fn world(dir: &Path) {
    fs::create_dir_all(dir.join("images/cat")).unwrap();
    fs::create_dir_all(dir.join("images/dog")).unwrap();
    fs::write(dir.join("tiny_cnn.safetensors"), b"not checked here").unwrap();
    fs::write(
        dir.join("hierarchy.yaml"),
        "children:\n  animal: [cat, dog]\n",
    )
    .unwrap();
}

const VALID: &str = r#"
[job]
name = "check-me"

[model]
architecture = "tiny_cnn"
weights = "tiny_cnn.safetensors"
layer = "features.7"

[data]
images = "images"
hierarchy = "hierarchy.yaml"

[extract]
method = "gradient_x_activation"
background_ratio = 0.25

[shapley]
permutations = 64
permutations_per_task = 16

[storage]
root = "runs"
"#;

/// [`VALID`] with six mistakes.
const MISTAKES: &str = r#"
[model]
architecture = "tiny_cnn"
weights = "gone.safetensors"
layer = "features.99"

[data]
images = "images"
hierarchy = "hierarchy.yaml"

[extract]
threshold = 2.0
treshold = 0.3

[shapley]
permutations = 64
permutations_per_task = 15

[storage]
root = "runs"

[scheduler]
max_attempts = 0
"#;

#[test]
fn check_lists_every_problem_by_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    world(dir.path());
    let spec = MISTAKES;
    let path = dir.path().join("job.toml");
    fs::write(&path, spec).unwrap();
    let before = listing(dir.path());

    let stderr = failed(&hint(&["check".as_ref(), path.as_os_str()]), "hint check");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].ends_with("job.toml: 6 problems:"),
        "first line: {}\n{stderr}",
        lines[0]
    );
    for (field, says) in [
        ("model.weights", "no such file"),
        ("model.layer", "no layer \"features.99\" in tiny_cnn"),
        ("extract.threshold", "must be in [0, 1], found 2"),
        ("extract.treshold", "unknown key (did you mean threshold?)"),
        ("shapley.permutations_per_task", "must be even"),
        ("scheduler.max_attempts", "must be at least 1"),
    ] {
        let prefix = format!("  {field}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(says)),
            "no `{field}: …{says}…` line in:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), 7, "one line per problem:\n{stderr}");
    assert_eq!(listing(dir.path()), before, "hint check wrote something");

    // `hint run` refuses it the same way before anything runs.
    let run = failed(
        &hint(&[
            "run".as_ref(),
            path.as_os_str(),
            "--workers".as_ref(),
            "1".as_ref(),
        ]),
        "hint run",
    );
    assert!(run.contains("job.toml: 6 problems:"), "{run}");
    assert!(run.contains("  extract.threshold: "), "{run}");
    assert_eq!(listing(dir.path()), before, "hint run wrote something");
}

#[test]
fn check_passes_a_valid_spec_and_summarises_it() {
    let dir = tempfile::tempdir().unwrap();
    world(dir.path());
    let path = dir.path().join("job.toml");
    fs::write(&path, VALID).unwrap();
    let before = listing(dir.path());

    let stdout = succeeded(&hint(&["check".as_ref(), path.as_os_str()]), "hint check");
    let root = dir.path().canonicalize().unwrap();
    for expected in [
        "valid".to_string(),
        "check-me (seed 0)".to_string(),
        "tiny_cnn, layer features.7, input resize 64 crop 64".to_string(),
        format!("images     {}", root.join("images").display()),
        format!("hierarchy  {}", root.join("hierarchy.yaml").display()),
        "gradient_x_activation, aggregation norm, threshold 0.5, background ratio 0.25".to_string(),
        "at most 64, 16 per task".to_string(),
        "1000 images per task".to_string(),
        format!("storage    {}/<job-id>/", root.join("runs").display()),
    ] {
        assert!(stdout.contains(&expected), "no `{expected}` in:\n{stdout}");
    }
    // The storage root is created when a job is submitted, not when it is checked.
    assert_eq!(listing(dir.path()), before, "hint check wrote something");

    let json = succeeded(
        &hint(&["check".as_ref(), path.as_os_str(), "--json".as_ref()]),
        "hint check --json",
    );
    let spec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(spec["model"]["layer"], "features.7");
    assert_eq!(spec["shapley"]["permutations_per_task"], 16);
    // Unset: one tar shard, or 1,000 loose images, per extract task.
    assert!(spec["extract"]["images_per_task"].is_null(), "{json}");
    assert_eq!(
        spec["storage"]["root"],
        root.join("runs").display().to_string()
    );
}

/// The example shipped in the repository is a valid spec once `make demo` has made its
/// world (its paths point into demo-output/); a missing world is all it may complain about.
#[test]
fn the_shipped_example_only_misses_the_demo_world() {
    let example = crate::support::root().join("examples/job.toml");
    let output = hint(&["check".as_ref(), example.as_os_str()]);
    if output.status.success() {
        return;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().skip(1) {
        assert!(
            line.contains("no such file")
                || line.contains("no such directory")
                || line.contains("not found"),
            "examples/job.toml: {line}\n{stderr}"
        );
    }
}

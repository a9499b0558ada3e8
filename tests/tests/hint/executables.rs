//! `hint` and `hint-worker` as two executables: `hint` links no libtorch, hands the stages
//! that need it to the `hint-worker` beside it with the stage's own usage and exit status,
//! and says what to do when hint-worker is missing.

use std::path::Path;
use std::process::Command;

use hint_coordinator::commands::TORCH_COMMANDS;

use crate::support::{failed, hint, hint_bin, succeeded};

/// The shared libraries an executable loads, as `ldd` lists them.
fn libraries(bin: &Path) -> String {
    let output = Command::new("ldd").arg(bin).output().expect("running ldd");
    succeeded(&output, "ldd")
}

#[test]
fn hint_links_no_libtorch_and_hint_worker_does() {
    let hint_libs = libraries(&hint_bin());
    assert!(
        !hint_libs.contains("torch") && !hint_libs.contains("libc10"),
        "hint must not load libtorch:\n{hint_libs}"
    );
    let worker = hint_bin().with_file_name("hint-worker");
    assert!(
        libraries(&worker).contains("libtorch"),
        "hint-worker links libtorch"
    );
}

#[test]
fn every_stage_that_needs_libtorch_is_listed_and_handed_over() {
    let help = succeeded(&hint(&["--help"]), "hint --help");
    for command in TORCH_COMMANDS {
        assert!(help.contains(command.name), "{} in:\n{help}", command.name);
        // hint-worker answers, under hint's name, with the stage's own flags.
        let stage_help = succeeded(&hint(&[command.name, "--help"]), command.name);
        assert!(
            stage_help.contains(&format!("Usage: hint {}", command.name)),
            "{stage_help}"
        );
    }
    // A bad flag is the stage's error, with clap's exit status 2.
    let output = hint(&["layers", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = failed(&output, "hint layers --no-such-flag");
    assert!(stderr.contains("Usage: hint layers"), "{stderr}");
    let layers = succeeded(&hint(&["layers", "--model", "resnet18"]), "hint layers");
    assert!(layers.lines().any(|l| l == "layer3.1"), "{layers}");
    // With shapes: ResNet-18's layer3.1 is 256 × 14 × 14 on 224 × 224 (torchvision's).
    let shapes = succeeded(
        &hint(&["layers", "--model", "resnet18", "--shapes"]),
        "hint layers --shapes",
    );
    // Names are padded to the longest (a point inside a block, `layer1.0.conv1`).
    let rows: Vec<String> = shapes
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for row in [
        "layer3.1 256 × 14 × 14",
        "layer4 512 × 7 × 7",
        "layer3.0.conv1 256 × 14 × 14",
        "layer4.1.bn2 512 × 7 × 7",
    ] {
        assert!(rows.iter().any(|r| r == row), "{row}: {shapes}");
    }
}

#[test]
fn without_hint_worker_a_stage_says_what_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("hint");
    std::fs::copy(hint_bin(), &alone).unwrap();
    let output = Command::new(&alone)
        .args(["extract", "--help"])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = failed(&output, "hint extract without hint-worker");
    assert!(
        stderr.contains("hint-worker") && stderr.contains("make install"),
        "{stderr}"
    );
    // Its own subcommands do not need it.
    let version = Command::new(&alone).arg("--version").output().unwrap();
    succeeded(&version, "hint --version without hint-worker");
}

#[test]
fn a_hint_worker_of_another_build_refuses_a_handed_over_stage() {
    let worker = hint_bin().with_file_name("hint-worker");
    let output = Command::new(worker)
        .args(["layers", "--model", "tiny_cnn"])
        .env(
            hint_coordinator::commands::HANDOVER_VERSION_VAR,
            "0.0.0-other",
        )
        .output()
        .unwrap();
    let stderr = failed(&output, "hint-worker handed over by another hint");
    assert!(
        stderr.contains("hint 0.0.0-other handed this command to hint-worker")
            && stderr.contains("make install"),
        "{stderr}"
    );
    // Handed over by this build's hint, it runs (the other tests), and run directly too.
    let direct = Command::new(hint_bin().with_file_name("hint-worker"))
        .args(["layers", "--model", "tiny_cnn"])
        .env_remove(hint_coordinator::commands::HANDOVER_VERSION_VAR)
        .output()
        .unwrap();
    succeeded(&direct, "hint-worker layers");
}

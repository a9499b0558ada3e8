//! `hint shapley` end to end: a region dataset with planted concept channels → the real
//! `hint classify` → the real `hint shapley` → phi.parquet read by pyarrow, whose top
//! neurons per concept are the planted channels.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use hint_common::regions::{ActivationType, RegionFileMeta, RegionRow, RegionRows, RegionWriter};
use hint_common::shapley::phi::{ShapleySummary, SHAPLEY_SUMMARY_FILE};
use serde_json::Value;

use crate::support::{
    failed, hint_command, noise, run_python, succeeded, TOY_HIERARCHY, TOY_LABELS,
};

/// Channels 0–3: one per leaf; 4–5: animal; 6–7: vehicle; 8–15: noise.
const D: usize = 16;
const IMAGES: u64 = 160;

/// Region files: label `id % 4`, a 2×2 foreground box; foreground regions get +2 on their
/// leaf channel and +3 on both channels of their group.
fn dataset(dir: &Path) {
    let mut rows = RegionRows::default();
    for id in 0..IMAGES {
        let label = (id % 4) as usize;
        let (by, bx) = ((id % 3) as u16, ((id / 3) % 3) as u16);
        for y in 0..4u16 {
            for x in 0..4u16 {
                let foreground = (by..by + 2).contains(&y) && (bx..bx + 2).contains(&x);
                let mut act: Vec<f32> = (0..D)
                    .map(|c| noise(7, &[id, u64::from(y), u64::from(x), c as u64]))
                    .collect();
                if foreground {
                    act[label] += 2.0;
                    let group = 4 + 2 * (label / 2);
                    act[group] += 3.0;
                    act[group + 1] += 3.0;
                }
                rows.push(RegionRow {
                    image_id: id,
                    label: label as u32,
                    y,
                    x,
                    saliency: if foreground { 0.9 } else { 0.1 },
                    foreground,
                    activation: &act,
                });
            }
        }
    }
    let meta = RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.4".into(),
        method: "gradient".into(),
        aggregation: "norm".into(),
        threshold: 0.5,
        channels: D,
        height: 4,
        width: 4,
        activation_type: ActivationType::F32,
        labels: TOY_LABELS.iter().map(|s| s.to_string()).collect(),
        job_id: None,
        task_id: None,
        extra: BTreeMap::new(),
    };
    std::fs::create_dir_all(dir.join("regions")).unwrap();
    let mut writer =
        RegionWriter::create(&dir.join("regions/regions-00000.parquet"), meta).unwrap();
    writer.write(&rows).unwrap();
    writer.finish().unwrap();
    std::fs::write(dir.join("hierarchy.json"), TOY_HIERARCHY).unwrap();
}

fn shapley(dir: &Path, out: &str, extra: &[&str]) -> Output {
    hint_command()
        .arg("shapley")
        .arg("--classifiers")
        .arg(dir.join("classifiers"))
        .arg("--out")
        .arg(dir.join(out))
        .args(["--seed", "5", "--top", "2", "--device", "cpu"])
        .args(extra)
        .output()
        .expect("running hint shapley")
}

#[test]
fn shapley_finds_the_planted_channels_and_pyarrow_reads_phi() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    dataset(dir);
    succeeded(
        &hint_command()
            .arg("classify")
            .arg("--regions")
            .arg(dir.join("regions"))
            .arg("--hierarchy")
            .arg(dir.join("hierarchy.json"))
            .arg("--out")
            .arg(dir.join("classifiers"))
            .args(["--seed", "3", "--max-per-class", "200", "--device", "cpu"])
            .output()
            .unwrap(),
        "hint classify",
    );
    let stdout = succeeded(
        &shapley(dir, "phi", &["--permutations", "40"]),
        "hint shapley",
    );
    println!("{stdout}");
    for needle in [
        "Shapley values of 7 concept(s)",
        "level 0",
        "animal",
        "multimodal",
    ] {
        assert!(stdout.contains(needle), "summary lacks {needle}:\n{stdout}");
    }
    let out = dir.join("phi");
    for file in [
        "phi.parquet",
        "phi.csv",
        "top_neurons.csv",
        "multimodal.csv",
        "concepts.json",
        "shapley.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let report: Value = serde_json::from_str(&run_python(
        "read_phi_shapley.py",
        &[out.join("phi.parquet").as_os_str(), OsStr::new("2")],
    ))
    .unwrap();
    assert_eq!(
        report["columns"],
        serde_json::json!([
            "concept",
            "concept_name",
            "level",
            "neuron",
            "phi",
            "stderr",
            "n_permutations"
        ])
    );
    assert_eq!(report["rows"], 7 * D);
    assert_eq!(report["n_permutations"], serde_json::json!([40]));
    assert_eq!(report["stderr_finite"], true);
    assert_eq!(report["metadata"]["hint.shapley.mode"], "fixed");
    assert_eq!(report["metadata"]["hint.shapley.backend"], "cpu");
    let top = |name: &str| -> Vec<u64> {
        let mut t: Vec<u64> = report["top"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        t.sort_unstable();
        t
    };
    assert_eq!(top("animal"), vec![4, 5], "{report}");
    assert_eq!(top("vehicle"), vec![6, 7], "{report}");
    for (leaf, channel) in [("cat", 0u64), ("dog", 1), ("car", 2), ("truck", 3)] {
        assert!(top(leaf).contains(&channel), "{leaf}: {report}");
    }
    // The CSV holds the same rows as the Parquet file.
    let csv = std::fs::read_to_string(out.join("phi.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7 * D);
    assert!(csv.starts_with("concept,concept_name,level,neuron,phi,stderr,n_permutations\n"));

    // Deterministic: the same run again gives a byte-identical phi.csv; a stopping rule
    // stops early; retrain mode runs through the same CLI.
    succeeded(
        &shapley(dir, "again", &["--permutations", "40"]),
        "hint shapley again",
    );
    assert_eq!(
        csv,
        std::fs::read_to_string(dir.join("again/phi.csv")).unwrap()
    );
    // An earlier run is never replaced silently.
    let refused = failed(
        &shapley(dir, "again", &["--permutations", "4"]),
        "hint shapley into an earlier run's --out",
    );
    assert!(refused.contains("--overwrite"), "{refused}");
    assert_eq!(
        csv,
        std::fs::read_to_string(dir.join("again/phi.csv")).unwrap()
    );
    succeeded(
        &shapley(dir, "again", &["--permutations", "4", "--overwrite"]),
        "hint shapley --overwrite",
    );
    succeeded(
        &shapley(
            dir,
            "rule",
            &[
                "--permutations",
                "400",
                "--until-top-k",
                "2",
                "--concept",
                "animal",
            ],
        ),
        "hint shapley --until-top-k",
    );
    let rule = ShapleySummary::read(&dir.join("rule").join(SHAPLEY_SUMMARY_FILE)).unwrap();
    assert!(rule.concepts[0].stopped_by_rule, "{rule:?}");
    assert_eq!(
        rule.rule.as_deref(),
        Some("TopKSeparated { k: 2, confidence: 0.95 }")
    );
    succeeded(
        &shapley(
            dir,
            "retrain",
            &[
                "--permutations",
                "4",
                "--mode",
                "retrain",
                "--concept",
                "vehicle",
            ],
        ),
        "hint shapley --mode retrain",
    );
    // The paper's sign-aware value through the CLI: animal's own channels lead, and vehicle's
    // channels (which the animal classifier hardly uses here) earn next to nothing.
    succeeded(
        &shapley(
            dir,
            "prediction",
            &[
                "--permutations",
                "20",
                "--quality",
                "prediction_all",
                "--replacement",
                "zero",
                "--concept",
                "animal",
            ],
        ),
        "hint shapley --quality prediction_all",
    );
    let summary = ShapleySummary::read(&dir.join("prediction").join(SHAPLEY_SUMMARY_FILE)).unwrap();
    assert_eq!(
        summary.settings["hint.shapley.quality"], "prediction_all",
        "{summary:?}"
    );
    let phi_of = |neuron: usize| -> f64 {
        let csv = std::fs::read_to_string(dir.join("prediction/phi.csv")).unwrap();
        let line = csv.lines().nth(1 + neuron).unwrap();
        line.split(',').nth(4).unwrap().parse().unwrap()
    };
    let phi: Vec<f64> = (0..D).map(phi_of).collect();
    let mut order: Vec<usize> = (0..D).collect();
    order.sort_by(|&a, &b| phi[b].total_cmp(&phi[a]));
    order[..2].sort_unstable();
    assert_eq!(order[..2], [4, 5], "{phi:?}");
    assert!(
        phi[6].abs().max(phi[7].abs()) < 0.05 * phi[4].min(phi[5]),
        "{phi:?}"
    );
}

#[test]
fn bad_flags_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let output = shapley(tmp.path(), "x", &["--mode", "sometimes"]);
    assert!(!output.status.success());
    let output = shapley(tmp.path(), "x", &["--quality", "auc"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "invalid value 'auc' for '--quality <QUALITY>': unknown quality 'auc' (expected \
             log_likelihood, balanced_log_likelihood, accuracy, prediction, logit, \
             prediction_all, logit_all)"
        ),
        "{stderr}"
    );
    let output = shapley(tmp.path(), "x", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("classify.json"), "{stderr}");
}

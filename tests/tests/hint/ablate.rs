//! `hint ablate` and the `[ablate]` section: causal ablation on a finished job over a small
//! synthetic world (`hint synth` → `hint train-model` → `hint run --workers 1` with
//! `[ablate]`, then `hint ablate` on images of another seed of the world).
//!
//! - `hint run` runs the section: `ablation.json` has a curve point for every (selection,
//!   removal, fraction), per-concept neuron sets of the right sizes, drops whose
//!   specificity is on − off, comparisons whose numbers are the curves' and whose verdict
//!   is its interval's; the report gains the section;
//! - the drops equal an independent PyTorch computation (a forward hook that zeroes or
//!   mean-fills the channels) on every cell: probabilities to float tolerance, accuracies
//!   exactly up to one image whose arg-max is a float tie;
//! - a second run writes the same file; bad flags and a label the job does not know are
//!   errors that say so (`cluster.rs` runs `[ablate]` under a coordinator).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hint_common::ablation::{AblationReport, AblationSelection, Removal};
use hint_common::stats::Verdict;
use serde_json::Value;

use crate::support::{failed, hint, run_python, succeeded, TinyWorld};

/// The world, the model and the finished job (with `[ablate]`), made once.
fn job() -> &'static (tempfile::TempDir, PathBuf) {
    static JOB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    JOB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = TinyWorld::make(dir.path(), 5, 30, 10);
        let (job, out) = tiny.run_job(
            dir.path(),
            "ablate-test",
            11,
            r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25

[shapley]
permutations = 16
permutations_per_task = 16

[ablate]
max_images = 40
fractions = [5, 20]
selections = ["weight_standardised", "random"]
random_draws = 2
bootstrap = 200"#,
        );
        assert!(
            out.contains("ablation ("),
            "hint run prints the table:\n{out}"
        );
        assert!(job.join("results/ablation.json").is_file());
        (dir, job)
    })
}

fn report(job: &Path) -> AblationReport {
    AblationReport::read(&job.join("results/ablation.json")).expect("ablation.json reads")
}

#[test]
fn the_ablate_section_runs_under_hint_run_and_its_numbers_hang_together() {
    let job = &job().1;
    let r = report(job);
    assert_eq!(
        (r.model.as_str(), r.layer.as_str(), r.neurons),
        ("tiny_cnn", "features.7", 64)
    );
    assert_eq!(r.fractions, vec![5, 20]);
    assert_eq!(r.removals, Removal::ALL.to_vec());
    assert_eq!(
        r.selections,
        vec![
            AblationSelection::Shapley,
            AblationSelection::WeightStandardised,
            AblationSelection::Random
        ]
    );
    assert!(r.images >= 2 && r.images <= 40, "{}", r.images);
    assert_eq!(r.image_source, "the job's held-out images");
    assert!((0.0..=1.0).contains(&r.accuracy));
    assert_eq!(r.concepts.len(), 15, "every concept of the world");
    for c in &r.concepts {
        assert_eq!(c.on_images + c.off_images, r.images);
        // Shapley and |w|·σ once per fraction, random twice.
        assert_eq!(c.sets.len(), 2 * 4);
        for s in &c.sets {
            let k = if s.fraction == 5 { 4 } else { 13 };
            assert_eq!(s.neurons.len(), k, "{} {:?}", c.name, s);
            assert!(s.neurons.windows(2).all(|w| w[0] < w[1]));
        }
        // A concept with images on one side only (the root holds every label) has no drops.
        let both = c.on_images > 0 && c.off_images > 0;
        assert_eq!(c.cells.len(), if both { 8 * 2 } else { 0 }, "{}", c.name);
        for cell in &c.cells {
            let d = cell.drops;
            assert!((d.specificity - (d.on_accuracy - d.off_accuracy)).abs() < 1e-12);
            for v in [
                d.on_accuracy,
                d.off_accuracy,
                d.on_probability,
                d.off_probability,
            ] {
                assert!((-1.0..=1.0).contains(&v), "{v}");
            }
        }
    }
    assert_eq!(r.curves.len(), 3 * 2 * 2);
    let random = r
        .point(AblationSelection::Random, Removal::Zero, 20)
        .unwrap();
    assert_eq!(random.draws, 2);
    assert!(random.specificity_sd.is_some());
    assert_eq!(r.comparisons.len(), 2 * 2 * 2);
    for c in &r.comparisons {
        let s = r
            .point(AblationSelection::Shapley, c.removal, c.fraction)
            .unwrap();
        let b = r.point(c.baseline, c.removal, c.fraction).unwrap();
        assert!((c.specificity.shapley - s.drops.specificity).abs() < 1e-12);
        assert!((c.specificity.baseline - b.drops.specificity).abs() < 1e-12);
        assert!(c.specificity.low <= c.specificity.difference + 1e-12);
        assert!(c.specificity.difference <= c.specificity.high + 1e-12);
        assert_eq!(c.verdict, Verdict::of(&c.specificity));
    }
    let html = std::fs::read_to_string(job.join("results/report.html")).unwrap();
    assert!(html.contains("blation"), "the report mentions the ablation");
}

/// Another seed of the world: images no classifier or model saw (made once: tests run in
/// parallel).
fn held_out_images() -> PathBuf {
    static IMAGES: OnceLock<PathBuf> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let dir = job().0.path().join("held-out");
            succeeded(
                &hint(&[
                    "synth",
                    "--out",
                    dir.to_str().unwrap(),
                    "--seed",
                    "77",
                    "--per-class",
                    "4",
                ]),
                "hint synth",
            );
            dir.join("images")
        })
        .clone()
}

#[test]
fn drops_equal_an_independent_pytorch_ablation() {
    let (tmp, job) = job();
    let copy = tmp.path().join("oracle-job");
    // A copy of the job, so this test's ablation.json does not race the other tests'.
    succeeded(
        &std::process::Command::new("cp")
            .args(["-r", job.to_str().unwrap(), copy.to_str().unwrap()])
            .output()
            .unwrap(),
        "cp",
    );
    let images = held_out_images();
    let ablate = |what: &str| {
        succeeded(
            &hint(&[
                "ablate",
                "--job",
                copy.to_str().unwrap(),
                "--images",
                images.to_str().unwrap(),
                "--max-images",
                "1000",
                "--fractions",
                "2,10,40",
                "--selections",
                "mean_activation,shapley_positive,weight_raw",
                "--bootstrap",
                "0",
                "--device",
                "cpu",
            ]),
            what,
        )
    };
    let out = ablate("hint ablate");
    assert!(out.contains("Shapley − mean act."), "{out}");
    let r = report(&copy);
    assert_eq!(r.images, 32, "8 classes × 4 images, all of them");
    let oracle_path = tmp.path().join("oracle.json");
    run_python(
        "ablation_oracle.py",
        &[
            copy.as_os_str(),
            images.as_os_str(),
            tmp.path().join("tiny_cnn.safetensors").as_os_str(),
            oracle_path.as_os_str(),
        ],
    );
    let oracle: Value =
        serde_json::from_str(&std::fs::read_to_string(&oracle_path).unwrap()).unwrap();
    assert_eq!(oracle["images"], 32);
    let rows = oracle["rows"].as_array().unwrap();
    let mut checked = 0;
    for row in rows {
        let concept = r
            .concepts
            .iter()
            .find(|c| u64::from(c.concept) == row["concept"].as_u64().unwrap())
            .unwrap();
        if concept.on_images == 0 || concept.off_images == 0 {
            continue;
        }
        assert_eq!(concept.on_images as u64, row["on_images"].as_u64().unwrap());
        let cell = concept
            .cells
            .iter()
            .find(|c| {
                c.selection.name() == row["selection"].as_str().unwrap()
                    && c.removal.name() == row["removal"].as_str().unwrap()
                    && u64::from(c.fraction) == row["fraction"].as_u64().unwrap()
                    && u64::from(c.draw) == row["draw"].as_u64().unwrap()
            })
            .expect("every oracle row has a cell");
        let near = |ours: f64, key: &str, tol: f64| {
            let theirs = row[key].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= tol,
                "{} {:?} {:?} {}%: {key} ours {ours}, PyTorch {theirs}",
                concept.name,
                cell.selection,
                cell.removal,
                cell.fraction
            );
        };
        // One image's arg-max may flip on a float tie: 1/n of its side.
        near(
            cell.drops.on_accuracy,
            "on_accuracy",
            1.0 / concept.on_images as f64 + 1e-9,
        );
        near(
            cell.drops.off_accuracy,
            "off_accuracy",
            1.0 / concept.off_images as f64 + 1e-9,
        );
        near(cell.drops.on_probability, "on_probability", 1e-4);
        near(cell.drops.off_probability, "off_probability", 1e-4);
        checked += 1;
    }
    // 15 concepts × 4 selections × 3 fractions × 2 removals, less the root (no image
    // outside it).
    assert_eq!(checked, 14 * 4 * 3 * 2, "cells checked");

    // The same command again writes the same file.
    let before = std::fs::read(copy.join("results/ablation.json")).unwrap();
    ablate("hint ablate again");
    assert_eq!(
        before,
        std::fs::read(copy.join("results/ablation.json")).unwrap()
    );
}

#[test]
fn bad_input_is_an_error_that_says_what() {
    let (tmp, job) = job();
    let job = job.to_str().unwrap();
    let err = failed(
        &hint(&["ablate", "--job", job, "--fractions", "0"]),
        "fraction 0",
    );
    assert!(err.contains("between 1 and 100"), "{err}");
    let err = failed(
        &hint(&["ablate", "--job", job, "--selections", "shapley,bogus"]),
        "unknown selection",
    );
    assert!(err.contains("unknown selection 'bogus'"), "{err}");
    // Images whose label the job does not know.
    let odd = tmp.path().join("odd/zebra");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(
        held_out_images().join("cat/cat_00000.png"),
        odd.join("z.png"),
    )
    .unwrap();
    let err = failed(
        &hint(&[
            "ablate",
            "--job",
            job,
            "--images",
            tmp.path().join("odd").to_str().unwrap(),
        ]),
        "unknown label",
    );
    assert!(
        err.contains("label 'zebra' is not one of the job's labels"),
        "{err}"
    );
}

#[test]
fn another_phi_ranks_shapley_and_the_report_goes_where_asked() {
    let (tmp, job) = job();
    // Φ negated: Shapley's neurons become the job's least valuable ones.
    let text = std::fs::read_to_string(job.join("results/phi.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header,
        "concept,concept_name,level,neuron,phi,stderr,n_permutations"
    );
    let mut negated_text = format!("{header}\n");
    let mut original: std::collections::BTreeMap<u32, Vec<(f64, usize)>> = Default::default();
    for line in lines {
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        let phi: f64 = fields[4].parse().unwrap();
        original
            .entry(fields[0].parse().unwrap())
            .or_default()
            .push((phi, fields[3].parse().unwrap()));
        fields[4] = (-phi).to_string();
        negated_text.push_str(&(fields.join(",") + "\n"));
    }
    let negated = tmp.path().join("negated-phi.csv");
    std::fs::write(&negated, negated_text).unwrap();
    let out = tmp.path().join("ablation-negated.json");
    succeeded(
        &hint(&[
            "ablate",
            "--job",
            job.to_str().unwrap(),
            "--phi",
            negated.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-images",
            "10",
            "--fractions",
            "5",
            "--selections",
            "random",
            "--removals",
            "zero",
            "--bootstrap",
            "0",
        ]),
        "hint ablate --phi --out",
    );
    let r = AblationReport::read(&out).unwrap();
    for c in &r.concepts {
        let set = c
            .sets
            .iter()
            .find(|s| s.selection == AblationSelection::Shapley)
            .unwrap();
        let mut by_phi = original[&c.concept].clone();
        by_phi.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let k = set.neurons.len();
        if by_phi[k - 1].0 == by_phi[k].0 {
            continue; // a tie at the boundary: either neuron may be taken
        }
        let mut lowest: Vec<usize> = by_phi[..set.neurons.len()].iter().map(|p| p.1).collect();
        lowest.sort_unstable();
        assert_eq!(set.neurons, lowest, "{}", c.name);
    }
}

#[test]
fn a_cancel_stops_the_engine_between_batches_and_writes_nothing() {
    // What a drained or cancelled ablate task does: the flag, set while the engine runs
    // (here from its first progress report), stops it at the next batch.
    use std::sync::atomic::{AtomicBool, Ordering};
    let (tmp, job) = job();
    let out = tmp.path().join("cancelled/ablation.json");
    let mut config = hint_worker::ablate::AblateConfig::new(job.clone(), tch::Device::Cpu);
    config.max_images = 40;
    config.bootstrap_replicates = 0;
    config.out = Some(out.clone());
    let cancel = AtomicBool::new(false);
    let mut reports = Vec::new();
    let result = hint_worker::ablate::ablate(
        &config,
        &mut |done, total| {
            reports.push((done, total));
            cancel.store(true, Ordering::Relaxed);
        },
        &cancel,
    );
    assert!(
        matches!(result, Err(hint_worker::wsol::WsolError::Cancelled)),
        "{result:?}"
    );
    let (done, total) = *reports.last().unwrap();
    assert!(done < total, "stopped early: {reports:?}");
    assert!(!out.exists(), "a cancelled ablation writes no report");
}

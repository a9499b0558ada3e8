//! `hint classify` end to end: a region dataset with planted concept signal and a custom
//! hierarchy → the real binary → classifiers that Python loads and that match an
//! independent fit (`tests/python/classify_oracle.py`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use hint_common::regions::{
    read_regions, ActivationType, RegionFileMeta, RegionRow, RegionRows, RegionWriter,
};
use hint_worker::classify::{ClassifierDir, ConceptClassifier, MetricsFile};
use serde_json::Value;

use crate::support::{
    failed, hint_command, noise, run_python, succeeded, TOY_HIERARCHY, TOY_LABELS,
};

/// Channels: one per leaf (0–3), one per group (4 animal, 5 vehicle), the rest noise.
const D: usize = 10;
const IMAGES: u64 = 120;
/// Planted shift of a concept's channels in foreground regions, in noise standard deviations.
const SIGNAL: f32 = 4.0;

fn meta(d: usize, t: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.4".into(),
        method: "gradient".into(),
        aggregation: "norm".into(),
        threshold: 0.5,
        channels: d,
        height: 4,
        width: 4,
        activation_type: t,
        labels: TOY_LABELS.iter().map(|s| s.to_string()).collect(),
        job_id: None,
        task_id: None,
        extra: BTreeMap::new(),
    }
}

/// Rows of images `ids`: label `id % 4`; a 2×2 foreground box whose place depends on the
/// image; noise everywhere, plus SIGNAL on the label's and its group's channels in the
/// foreground.
fn rows(ids: std::ops::Range<u64>, d: usize) -> RegionRows {
    let mut rows = RegionRows::default();
    for id in ids {
        let label = (id % 4) as u32;
        let (by, bx) = ((id % 3) as u16, ((id / 3) % 3) as u16);
        for y in 0..4u16 {
            for x in 0..4u16 {
                let foreground = (by..by + 2).contains(&y) && (bx..bx + 2).contains(&x);
                let mut act: Vec<f32> = (0..d)
                    .map(|c| noise(99, &[id, u64::from(y), u64::from(x), c as u64]))
                    .collect();
                if foreground {
                    act[label as usize] += SIGNAL;
                    act[4 + (label as usize) / 2] += SIGNAL;
                }
                rows.push(RegionRow {
                    image_id: id,
                    label,
                    y,
                    x,
                    saliency: if foreground { 0.9 } else { 0.1 },
                    foreground,
                    activation: &act,
                });
            }
        }
    }
    rows
}

fn write_file(path: &Path, rows: &RegionRows, d: usize, t: ActivationType) {
    let mut writer = RegionWriter::create(path, meta(d, t)).unwrap();
    writer.write(rows).unwrap();
    writer.finish().unwrap();
}

/// Two region files (one f32, one f16) and the hierarchy file.
fn dataset(dir: &Path) -> (PathBuf, PathBuf) {
    let regions = dir.join("regions");
    std::fs::create_dir_all(&regions).unwrap();
    write_file(
        &regions.join("regions-00000.parquet"),
        &rows(0..IMAGES / 2, D),
        D,
        ActivationType::F32,
    );
    write_file(
        &regions.join("regions-00001.parquet"),
        &rows(IMAGES / 2..IMAGES, D),
        D,
        ActivationType::F16,
    );
    let hierarchy = dir.join("hierarchy.json");
    std::fs::write(&hierarchy, TOY_HIERARCHY).unwrap();
    (regions, hierarchy)
}

fn classify(regions: &Path, hierarchy: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = hint_command();
    cmd.arg("classify")
        .arg("--regions")
        .arg(regions)
        .arg("--hierarchy")
        .arg(hierarchy)
        .arg("--out")
        .arg(out)
        .args(["--max-per-class", "150", "--device", "cpu"])
        .args(extra);
    if !extra.contains(&"--seed") {
        cmd.args(["--seed", "3"]);
    }
    cmd.output().expect("running hint classify")
}

fn metrics(out: &Path) -> MetricsFile {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn classifiers_find_planted_concepts_and_load_in_python() {
    let tmp = tempfile::tempdir().unwrap();
    let (regions, hierarchy) = dataset(tmp.path());
    let out = tmp.path().join("out");
    let stdout = succeeded(&classify(&regions, &hierarchy, &out, &[]), "hint classify");
    for name in [
        "whole",
        "animal",
        "vehicle",
        "cat",
        "dog",
        "car",
        "truck",
        "mean held-out F1",
    ] {
        assert!(stdout.contains(name), "summary lacks {name}:\n{stdout}");
    }

    // metrics.json: every concept trained, with high held-out F1 on planted signal.
    let m = metrics(&out);
    assert_eq!(
        (m.model.as_str(), m.layer.as_str(), m.d),
        ("tiny_cnn", "features.4", D)
    );
    assert_eq!(m.concepts.len(), 7, "{m:?}");
    assert!(m.skipped.is_empty());
    let raw: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for field in [
        "id",
        "key",
        "name",
        "level",
        "n_train",
        "n_train_pos",
        "n_train_neg",
        "n_eval",
        "n_eval_pos",
        "n_eval_neg",
        "accuracy",
        "precision",
        "recall",
        "f1",
    ] {
        assert!(
            raw["concepts"][0].get(field).is_some(),
            "metrics.json lacks {field}"
        );
    }
    for c in &m.concepts {
        assert!(
            c.f1 > 0.9 && c.accuracy > 0.9,
            "{} is not learnt: {c:?}",
            c.name
        );
        assert!(c.converged, "{c:?}");
        assert!(
            c.n_train_pos > 0 && c.n_eval_pos > 0 && c.n_eval_neg > 0,
            "{c:?}"
        );
        assert!(c.n_train_pos + c.n_eval_pos <= 150, "budget: {c:?}");
        // Balanced: as many negatives as positives (the pools are large enough).
        assert_eq!(
            c.n_train_pos + c.n_eval_pos,
            c.n_train_neg + c.n_eval_neg,
            "{c:?}"
        );
        assert_eq!(c.n_train, c.n_train_pos + c.n_train_neg);
    }
    let whole = m.concepts.iter().find(|c| c.name == "whole").unwrap();
    assert_eq!(whole.level, 0);
    assert_eq!(whole.pool_positives, IMAGES * 4);

    // classify.json records what rebuilds the split; concepts.json is the hierarchy used.
    let dir = ClassifierDir::open(&out).unwrap();
    assert_eq!(dir.settings.sample.seed, 3);
    assert_eq!(dir.settings.sample.max_per_class, 150);
    assert_eq!(
        dir.settings.regions,
        std::fs::canonicalize(&regions).unwrap()
    );
    assert_eq!(dir.settings.files.len(), 2);
    assert_eq!(dir.hierarchy.concepts().len(), 7);
    assert_eq!(dir.trained().len(), 7);

    // The evaluation regions rebuilt from the directory give the metrics.json numbers.
    let samples = dir.rebuild_samples(None, None, &mut |_| {}).unwrap();
    for c in &m.concepts {
        let classifier = dir.classifier(c.id).unwrap();
        let eval = samples.eval(c.id).unwrap();
        assert_eq!(eval.len(), c.n_eval);
        let correct = (0..eval.len())
            .filter(|&i| {
                classifier.predict(&eval.activations[i * D..(i + 1) * D]) == (eval.targets[i] > 0.5)
            })
            .count();
        assert!((correct as f64 / eval.len() as f64 - c.accuracy).abs() < 1e-12);
    }

    // Python loads every classifier with safetensors.torch and gets the same logits.
    let region_file = regions.join("regions-00000.parquet");
    let py: Value = serde_json::from_str(&run_python(
        "classify_oracle.py",
        &[
            OsStr::new("predict"),
            out.as_os_str(),
            region_file.as_os_str(),
        ],
    ))
    .unwrap();
    let (_, rows) = read_regions(&region_file).unwrap();
    for c in &m.concepts {
        let file = ConceptClassifier::file_name(c.id);
        let entry = &py[&file];
        assert_eq!(entry["weight_shape"], serde_json::json!([D]), "{file}");
        assert_eq!(entry["bias_shape"], serde_json::json!([1]), "{file}");
        let md = &entry["metadata"];
        assert_eq!(md["key"], c.key.as_str());
        assert_eq!(md["name"], c.name.as_str());
        assert_eq!(md["level"], c.level.to_string().as_str());
        assert_eq!(md["layer"], "features.4");
        let classifier = ConceptClassifier::load(&out.join(&file)).unwrap();
        let logits = entry["logits"].as_array().unwrap();
        assert_eq!(logits.len(), 50);
        for (i, logit) in logits.iter().enumerate() {
            let ours = classifier.logit(&rows.activation[i * D..(i + 1) * D]);
            let theirs = logit.as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-9 * (1.0 + theirs.abs()),
                "{file} row {i}: {ours} vs {theirs}"
            );
        }
    }
}

#[test]
fn logistic_regression_matches_an_independent_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let (regions, hierarchy) = dataset(tmp.path());
    let out = tmp.path().join("out");
    succeeded(
        &classify(&regions, &hierarchy, &out, &["--l2", "0.01"]),
        "hint classify",
    );
    let dir = ClassifierDir::open(&out).unwrap();
    for name in ["whole", "animal", "truck"] {
        let id = dir.hierarchy.find(name).unwrap();
        let samples = dir.rebuild_samples(None, Some(&[id]), &mut |_| {}).unwrap();
        let train = samples.train(id).unwrap();
        let x: Vec<&[f32]> = train.activations.chunks(D).collect();
        let problem = serde_json::json!({ "x": x, "y": train.targets, "l2": 0.01 });
        let path = tmp.path().join(format!("{name}.json"));
        std::fs::write(&path, problem.to_string()).unwrap();
        let fit: Value = serde_json::from_str(&run_python(
            "classify_oracle.py",
            &[OsStr::new("fit"), path.as_os_str()],
        ))
        .unwrap();
        assert!(
            fit["grad_norm"].as_f64().unwrap() < 1e-8,
            "oracle did not converge: {fit}"
        );
        let ours = dir.classifier(id).unwrap();
        let weight: Vec<f64> = fit["weight"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (c, (&a, &b)) in ours.weight.iter().zip(&weight).enumerate() {
            assert!(
                (f64::from(a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{name} weight {c}: hint {a} vs oracle {b}"
            );
        }
        let bias = fit["bias"].as_f64().unwrap();
        assert!(
            (f64::from(ours.bias) - bias).abs() <= 1e-4 * (1.0 + bias.abs()),
            "{name} bias {} vs {bias}",
            ours.bias
        );
    }
}

#[test]
fn outputs_are_deterministic_selectable_and_never_silently_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let (regions, hierarchy) = dataset(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    succeeded(&classify(&regions, &hierarchy, &a, &[]), "hint classify");
    succeeded(&classify(&regions, &hierarchy, &b, &[]), "hint classify");
    let mut names: Vec<String> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 7 + 3, "{names:?}");
    for name in &names {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs between two runs with the same seed"
        );
    }

    // The concepts.json a run wrote is a hierarchy file too: the same concepts, the same
    // classifiers.
    let again = tmp.path().join("again");
    succeeded(
        &classify(&regions, &a.join("concepts.json"), &again, &[]),
        "hint classify",
    );
    for name in names.iter().filter(|n| *n != "classify.json") {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(again.join(name)).unwrap(),
            "{name} differs when the hierarchy is read from concepts.json"
        );
    }

    // Another seed draws another sample.
    let c = tmp.path().join("c");
    succeeded(
        &classify(&regions, &hierarchy, &c, &["--seed", "4"]),
        "hint classify",
    );
    assert_ne!(
        std::fs::read(a.join("metrics.json")).unwrap(),
        std::fs::read(c.join("metrics.json")).unwrap()
    );

    // Refuses to overwrite; --overwrite replaces.
    let err = failed(&classify(&regions, &hierarchy, &a, &[]), "hint classify");
    assert!(err.contains("--overwrite"), "{err}");
    succeeded(
        &classify(&regions, &hierarchy, &a, &["--overwrite"]),
        "hint classify",
    );

    // One concept alone: the same samples, so the same classifier up to rounding.
    let only = tmp.path().join("only");
    succeeded(
        &classify(&regions, &hierarchy, &only, &["--concept", "animal"]),
        "hint classify",
    );
    let m = metrics(&only);
    assert_eq!(m.concepts.len(), 1);
    assert_eq!(m.concepts[0].name, "animal");
    let full = metrics(&a);
    let same = full.concepts.iter().find(|c| c.name == "animal").unwrap();
    assert_eq!(
        (m.concepts[0].n_train, m.concepts[0].n_eval),
        (same.n_train, same.n_eval)
    );
    let alone = ConceptClassifier::load(&only.join(ConceptClassifier::file_name(same.id))).unwrap();
    let together = ConceptClassifier::load(&a.join(ConceptClassifier::file_name(same.id))).unwrap();
    for (x, y) in alone.weight.iter().zip(&together.weight) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }
    let err = failed(
        &classify(
            &regions,
            &hierarchy,
            &tmp.path().join("none"),
            &["--concept", "unicorn"],
        ),
        "hint classify",
    );
    assert!(err.contains("unicorn"), "{err}");
}

#[test]
fn wrong_hierarchies_and_mixed_region_sets_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (regions, _) = dataset(tmp.path());

    // A leaf that is not a label of the regions.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"children": {"whole": ["animal", "vehicle"], "animal": ["cat", "dog"], "vehicle": ["car", "bus"]}}"#,
    )
    .unwrap();
    let err = failed(
        &classify(&regions, &bad, &tmp.path().join("o1"), &[]),
        "hint classify",
    );
    assert!(err.contains("bus"), "{err}");

    // A file of another layer width in the region directory.
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    write_file(
        &mixed.join("regions-00000.parquet"),
        &rows(0..8, D),
        D,
        ActivationType::F32,
    );
    write_file(
        &mixed.join("regions-00001.parquet"),
        &rows(8..16, D + 3),
        D + 3,
        ActivationType::F32,
    );
    let hierarchy = tmp.path().join("hierarchy.json");
    let err = failed(
        &classify(&mixed, &hierarchy, &tmp.path().join("o2"), &[]),
        "hint classify",
    );
    assert!(
        err.contains("regions-00001.parquet")
            && err.contains("D is 13")
            && err.contains("regions-00000.parquet"),
        "{err}"
    );

    // An empty directory.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = failed(
        &classify(&empty, &hierarchy, &tmp.path().join("o3"), &[]),
        "hint classify",
    );
    assert!(err.contains("no region files"), "{err}");
}

/// `--negatives`: the default is `mixed` (the same files as without the flag); each set is
/// recorded in `classify.json` and in `metrics.json` per concept, and the samples rebuilt from
/// the directory (what `hint shapley`, the job's Shapley stage and WSOL use) are the ones
/// trained on. A `classify.json` from before the setting reads as `mixed`.
#[test]
fn negative_sets_are_recorded_and_rebuilt_from_the_classifier_directory() {
    use hint_common::regions::sample::Negatives;

    let tmp = tempfile::tempdir().unwrap();
    let (regions, hierarchy) = dataset(tmp.path());
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let stdout = succeeded(
            &classify(&regions, &hierarchy, &out, extra),
            "hint classify",
        );
        (out, stdout)
    };
    let (default, _) = run("default", &[]);
    let (mixed, _) = run("mixed", &["--negatives", "mixed"]);
    for entry in std::fs::read_dir(&default).unwrap() {
        let name = entry.unwrap().file_name();
        assert_eq!(
            std::fs::read(default.join(&name)).unwrap(),
            std::fs::read(mixed.join(&name)).unwrap(),
            "{name:?}: --negatives mixed is not the default"
        );
    }
    let label = |name: &str| TOY_LABELS.iter().position(|l| *l == name).unwrap() as u32;
    for set in [
        Negatives::Background,
        Negatives::Others,
        Negatives::Siblings,
    ] {
        let (out, stdout) = run(set.name(), &["--negatives", set.name()]);
        assert!(stdout.contains(&format!("negatives {set}")), "{stdout}");
        let raw: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("classify.json")).unwrap())
                .unwrap();
        assert_eq!(raw["sample"]["negatives"], set.name());
        let dir = ClassifierDir::open(&out).unwrap();
        assert_eq!(dir.settings.sample.negatives, set);
        let samples = dir.rebuild_samples(None, None, &mut |_| {}).unwrap();
        for c in &dir.metrics.concepts {
            let sample = samples.concept(c.id).unwrap();
            // The rebuilt sample is the one trained and evaluated on.
            assert_eq!(
                (sample.train.negatives(), sample.eval.negatives()),
                (c.n_train_neg, c.n_eval_neg),
                "{set} {}",
                c.name
            );
            assert_eq!(sample.negatives, c.negatives);
            let concept = dir.hierarchy.concept(c.id);
            for split in [&sample.train, &sample.eval] {
                for (&row, &target) in split.rows.iter().zip(&split.targets) {
                    if target > 0.5 {
                        continue;
                    }
                    let region = samples.regions()[row as usize];
                    let ok = match (set, c.name.as_str()) {
                        (Negatives::Background, _) => !region.foreground,
                        (Negatives::Others, _) => {
                            region.foreground && !concept.labels.contains(&region.label)
                        }
                        (Negatives::Siblings, "animal") => {
                            [label("car"), label("truck")].contains(&region.label)
                        }
                        (Negatives::Siblings, "cat") => region.label == label("dog"),
                        (Negatives::Siblings, "truck") => region.label == label("car"),
                        (Negatives::Siblings, _) => {
                            region.foreground && !concept.labels.contains(&region.label)
                        }
                        (Negatives::Mixed, _) => unreachable!(),
                    };
                    assert!(ok, "{set} {}: negative {region:?}", c.name);
                    assert!(region.foreground || set == Negatives::Background);
                }
            }
        }
        // `whole` covers every label: no other foreground, so no negative and no classifier,
        // except from background; under `siblings` it is a root and draws from `others`.
        let whole = dir.hierarchy.find("whole").unwrap();
        match set {
            Negatives::Background => assert!(dir.trained().contains(&whole)),
            _ => {
                let skipped = dir.metrics.skipped.iter().find(|s| s.id == whole).unwrap();
                assert!(
                    skipped.reason.contains("no negative training regions")
                        && skipped.reason.contains("with negatives = others"),
                    "{}",
                    skipped.reason
                );
                assert_eq!(samples.concept(whole).unwrap().negatives, Negatives::Others);
            }
        }
        if set == Negatives::Siblings {
            let cat = dir.hierarchy.find("cat").unwrap();
            let m = dir.metrics.concepts.iter().find(|m| m.id == cat).unwrap();
            assert_eq!(m.negatives, Negatives::Siblings);
        }
    }

    // A classify.json written before the setting: no `negatives`, read as `mixed`, and the
    // same samples rebuilt.
    let path = default.join("classify.json");
    let mut raw: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(raw["sample"]["negatives"], "mixed");
    let before = ClassifierDir::open(&default)
        .unwrap()
        .rebuild_samples(None, None, &mut |_| {})
        .unwrap();
    raw["sample"].as_object_mut().unwrap().remove("negatives");
    std::fs::write(&path, serde_json::to_string_pretty(&raw).unwrap()).unwrap();
    let old = ClassifierDir::open(&default).unwrap();
    assert_eq!(old.settings.sample.negatives, Negatives::Mixed);
    let after = old.rebuild_samples(None, None, &mut |_| {}).unwrap();
    assert_eq!(before.concepts(), after.concepts());
    assert_eq!(before.regions(), after.regions());

    let err = failed(
        &classify(
            &regions,
            &hierarchy,
            &tmp.path().join("bad"),
            &["--negatives", "sibling"],
        ),
        "hint classify",
    );
    assert!(
        err.contains("invalid value 'sibling' for '--negatives <NEGATIVES>'")
            && err.contains("[possible values: mixed, background, others, siblings]"),
        "{err}"
    );
}

//! `hint evaluate`: weakly supervised localisation on a finished job over a small synthetic
//! world (`hint synth` → `hint train-model` → `hint run --workers 1` → `hint evaluate`).
//!
//! - `wsol.json` has every (selection, fraction) pooled and per concept, values in [0, 1],
//!   pooled counts equal to the per-concept sums, random rows averaged over the draws asked
//!   for with their spread, a comparison of Shapley with each baseline per fraction whose
//!   numbers are the pooled rows' and whose verdict is its interval's, heatmap PNGs that
//!   decode; a second run writes the same file; the table names every selection and
//!   comparison;
//! - re-fitting on every neuron gives back the job's classifier (same solver, same rows);
//! - a tree without annotations is an error that names it.
//!
//! The geometry (boxes, IoU, pointing, crop frame, upsampling) is unit-tested in
//! `hint_worker::wsol::geometry` on hand-made maps.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hint_common::regions::sample::ConceptSamples;
use hint_worker::classify::ClassifierDir;
use hint_worker::wsol::select;
use serde_json::Value;

use crate::support::{failed, hint, succeeded, TinyWorld};

const IMAGES_PER_CONCEPT: usize = 8;
/// Random draws and bootstrap replicates asked for (not the defaults: the flags must reach
/// the file).
const RANDOM_DRAWS: u64 = 3;
const REPLICATES: u64 = 500;

/// The world, the model and the finished job, made once: (tempdir, job directory). `hint
/// attack`'s tests (`attack.rs`) use it too.
pub(crate) fn job() -> &'static (tempfile::TempDir, PathBuf) {
    static JOB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    JOB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = TinyWorld::make(dir.path(), 5, 30, 10);
        let (job, _) = tiny.run_job(
            dir.path(),
            "wsol-test",
            11,
            r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25

[shapley]
permutations = 16
permutations_per_task = 16"#,
        );
        assert!(job.join("results/phi.csv").is_file(), "the job finished");
        (dir, job)
    })
}

pub(crate) fn world() -> PathBuf {
    job().0.path().join("world")
}

/// Runs `hint evaluate` on the job; its stdout and `wsol.json`.
fn evaluate() -> (String, Value) {
    let job = &job().1;
    let stdout = succeeded(
        &hint(&[
            "evaluate",
            "--job",
            job.to_str().unwrap(),
            "--annotations",
            world().join("annotations").to_str().unwrap(),
            "--masks",
            world().join("masks").to_str().unwrap(),
            "--fractions",
            "10,20,40,80",
            "--images-per-concept",
            &IMAGES_PER_CONCEPT.to_string(),
            "--random-draws",
            &RANDOM_DRAWS.to_string(),
            "--bootstrap",
            &REPLICATES.to_string(),
        ]),
        "hint evaluate",
    );
    let text = std::fs::read_to_string(job.join("results/wsol.json")).expect("wsol.json");
    (
        stdout,
        serde_json::from_str(&text).expect("wsol.json parses"),
    )
}

/// A baseline's name in the printed table.
fn b_label(name: &str) -> &'static str {
    match name {
        "weight_standardised" => "|w|·σ",
        "weight_raw" => "raw |w|",
        "random" => "random",
        other => panic!("no baseline {other}"),
    }
}

fn unit(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is a number: {v}"));
    assert!((0.0..=1.0).contains(&x), "{what} = {x} is not in [0, 1]");
    x
}

#[test]
fn evaluate_writes_every_selection_and_fraction_and_heatmaps() {
    let (stdout, report) = evaluate();
    let fractions = [10u64, 20, 40, 80];
    let selections = ["shapley", "weight_standardised", "weight_raw", "random"];
    assert_eq!(report["fractions"], serde_json::json!(fractions));
    assert_eq!(report["selections"], serde_json::json!(selections));
    assert_eq!(report["random_draws"], RANDOM_DRAWS);
    assert_eq!(report["bootstrap"]["replicates"], REPLICATES);
    assert_eq!(report["bootstrap"]["confidence"], 0.95);
    let summary = report["summary"].as_array().unwrap();
    let concepts = report["concepts"].as_array().unwrap();
    assert_eq!(summary.len(), 16);
    // The job's regions on the evaluated images sit on the objects more than the crops do.
    let lift = &report["region_lift"];
    let (inside, overall) = (
        unit(&lift["object_share_in_regions"], "object share in regions"),
        unit(&lift["object_share"], "object share"),
    );
    assert!((lift["lift"].as_f64().unwrap() - inside / overall).abs() < 1e-12);
    assert!(lift["images"].as_u64().unwrap() > 0, "{lift}");
    assert!(inside > overall, "{lift}");
    assert!(stdout.contains("object lift"), "{stdout}");
    // The world's 15 concepts all have a classifier, Φ and held-out annotated images.
    assert_eq!(concepts.len(), 15 * 16);
    for s in selections {
        for f in fractions {
            let row = summary
                .iter()
                .find(|r| r["selection"] == s && r["fraction"] == f)
                .unwrap_or_else(|| panic!("no summary row {s} {f}%"));
            let what = format!("{s} {f}%");
            let draws = if s == "random" { RANDOM_DRAWS } else { 1 };
            assert_eq!(row["draws"], draws, "{what}");
            // A spread across draws only where there are several.
            assert_eq!(row["loc_accuracy_sd"].is_f64(), draws > 1, "{what}");
            unit(&row["loc_accuracy"], &what);
            unit(&row["pointing"], &what);
            unit(&row["mask_iou"], &what);
            // MaxBoxAcc takes the best threshold of a sweep that holds the fixed one (0.5).
            let max_box = unit(&row["max_box_acc"], &what);
            assert!(
                max_box >= row["loc_accuracy"].as_f64().unwrap() - 1e-12,
                "{what}"
            );
            assert_eq!(row["max_box_threshold"].is_f64(), draws == 1, "{what}");
            // Pooled over (concept, image) pairs: the per-concept counts add up.
            let mine: Vec<&Value> = concepts
                .iter()
                .filter(|c| c["selection"] == s && c["fraction"] == f)
                .collect();
            assert_eq!(mine.len(), 15);
            let images: u64 = mine.iter().map(|c| c["images"].as_u64().unwrap()).sum();
            assert_eq!(row["images"].as_u64().unwrap(), images, "{what}");
            let localised: f64 = mine
                .iter()
                .map(|c| c["loc_accuracy"].as_f64().unwrap() * c["images"].as_f64().unwrap())
                .sum();
            let pooled = row["loc_accuracy"].as_f64().unwrap();
            assert!((pooled * images as f64 - localised).abs() < 1e-9, "{what}");
            for c in mine {
                let n = c["images"].as_u64().unwrap();
                assert!(n >= 1 && n <= IMAGES_PER_CONCEPT as u64, "{c}");
                unit(&c["loc_accuracy"], &what);
                unit(&c["pointing"], &what);
                unit(&c["mask_iou"], &what);
            }
        }
    }
    for label in ["Shapley ", "|w|·σ ", "raw |w| ", "random "] {
        assert!(stdout.contains(label), "{stdout}");
    }

    // Shapley − each baseline, per fraction: the pooled rows' numbers, an interval, and the
    // verdict the interval gives.
    let comparisons = report["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 3 * 4);
    let acc = |s: &str, f: u64| {
        summary
            .iter()
            .find(|r| r["selection"] == s && r["fraction"] == f)
            .unwrap()["loc_accuracy"]
            .as_f64()
            .unwrap()
    };
    for c in comparisons {
        let (b, f) = (
            c["baseline"].as_str().unwrap(),
            c["fraction"].as_u64().unwrap(),
        );
        assert!(selections[1..].contains(&b), "{c}");
        assert_eq!(c["pairs"], summary[0]["images"], "{c}");
        assert!(
            c["images"].as_u64().unwrap() <= c["pairs"].as_u64().unwrap(),
            "{c}"
        );
        let d = &c["loc_accuracy"];
        let num = |k: &str| d[k].as_f64().unwrap();
        assert!((num("shapley") - acc("shapley", f)).abs() < 1e-12, "{c}");
        assert!((num("baseline") - acc(b, f)).abs() < 1e-12, "{c}");
        assert!((num("difference") - (num("shapley") - num("baseline"))).abs() < 1e-12);
        assert!(num("low") <= num("high") && num("low") >= -1.0 && num("high") <= 1.0);
        let verdict = if num("low") > 0.0 {
            "better"
        } else if num("high") < 0.0 {
            "worse"
        } else {
            "within_noise"
        };
        assert_eq!(c["verdict"], verdict, "{c}");
        let overlap = c["overlap"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&overlap), "{c}");
        assert!(c["mask_iou"]["low"].as_f64().unwrap() <= c["mask_iou"]["high"].as_f64().unwrap());
        let line = format!("{f:>7}%  {:<8} {:>7.3}", b_label(b), num("shapley"));
        assert!(stdout.contains(&line), "no {line:?} in {stdout}");
    }
    // The leaf concepts are easy on this world: a trained model localises most objects with
    // all but a few neurons, whatever the selection.
    let at80: f64 = summary
        .iter()
        .filter(|r| r["fraction"] == 80)
        .map(|r| r["loc_accuracy"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(at80 > 0.5, "localisation at 80% of the neurons: {at80}");

    let heatmaps = report["heatmaps"].as_array().unwrap();
    assert_eq!(heatmaps.len(), 15 * 3, "three per concept");
    let results = job().1.join("results");
    for h in heatmaps {
        let png = results.join(h["png"].as_str().unwrap());
        let image = image::open(&png)
            .unwrap_or_else(|e| panic!("{}: {e}", png.display()))
            .to_rgb8();
        assert_eq!(image.dimensions(), (192, 192), "64-px crops drawn ×3");
        assert!(Path::new(h["image"].as_str().unwrap()).is_file());
        assert_eq!(h["selection"], "shapley");
        assert_eq!(h["fraction"], 20);
    }

    // Same job, same seed: the same file.
    let (_, again) = evaluate();
    assert_eq!(report, again);
}

#[test]
fn refitting_on_every_neuron_gives_back_the_jobs_classifier() {
    let job = &job().1;
    let dir = ClassifierDir::open(&job.join("classifiers/train-00000")).unwrap();
    let id = dir.trained()[0];
    let samples: ConceptSamples = dir
        .rebuild_samples(Some(&job.join("regions")), Some(&[id]), &mut |_| {})
        .unwrap();
    let saved = dir.classifier(id).unwrap();
    let train = &samples.concept(id).unwrap().train;
    let all: Vec<usize> = (0..saved.d()).collect();
    let fit = select::refit(
        &samples,
        train,
        &[all.clone(), all],
        &dir.settings.solver,
        tch::Device::Cpu,
    )
    .unwrap();
    for refit in &fit {
        let scale = saved.weight.iter().fold(0f32, |m, w| m.max(w.abs()));
        for (a, b) in refit.weight.iter().zip(&saved.weight) {
            assert!((a - b).abs() <= 1e-4 * scale, "{a} vs {b}");
        }
        assert!((refit.bias - saved.bias).abs() <= 1e-4 * scale.max(1.0));
    }
    // A subset is a different classifier, zero outside its neurons.
    let subset = select::refit(
        &samples,
        train,
        &[vec![0, 5, 9]],
        &dir.settings.solver,
        tch::Device::Cpu,
    )
    .unwrap();
    let nonzero: Vec<usize> = (0..saved.d())
        .filter(|&n| subset[0].weight[n] != 0.0)
        .collect();
    assert!(nonzero.iter().all(|n| [0, 5, 9].contains(n)), "{nonzero:?}");
}

#[test]
fn annotations_without_xml_are_an_error_naming_the_directory() {
    let job = &job().1;
    let empty = tempfile::tempdir().unwrap();
    let stderr = failed(
        &hint(&[
            "evaluate",
            "--job",
            job.to_str().unwrap(),
            "--annotations",
            empty.path().to_str().unwrap(),
        ]),
        "hint evaluate without annotations",
    );
    assert!(
        stderr.contains("no annotation files") && stderr.contains(empty.path().to_str().unwrap()),
        "{stderr}"
    );
}

/// `hint evaluate` of the job into `out` with `annotations` and `extra` flags, small
/// settings: its stdout and wsol.json.
fn evaluate_into(annotations: &Path, out: &Path, extra: &[&str]) -> (String, Value) {
    let mut args = vec![
        "evaluate",
        "--job",
        job().1.to_str().unwrap(),
        "--annotations",
        annotations.to_str().unwrap(),
        "--fractions",
        "20",
        "--random-draws",
        "2",
        "--bootstrap",
        "100",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let stdout = succeeded(&hint(&args), "hint evaluate --out");
    let text = std::fs::read_to_string(out.join("wsol.json")).unwrap();
    (stdout, serde_json::from_str(&text).unwrap())
}

#[test]
fn a_held_out_image_set_is_evaluated_into_its_own_directory() {
    let (tmp, job) = job();
    // Images 30..33 of every class of the job's world (seed 5): no classifier saw them.
    let held_out = tmp.path().join("held-out-wsol");
    succeeded(
        &hint(&[
            "synth",
            "--out",
            held_out.to_str().unwrap(),
            "--seed",
            "5",
            "--first-index",
            "30",
            "--per-class",
            "3",
        ]),
        "hint synth --first-index",
    );
    let out = tmp.path().join("wsol-held-out");
    let images = held_out.join("images");
    let (stdout, report) = evaluate_into(
        &held_out.join("annotations"),
        &out,
        &["--images", images.to_str().unwrap()],
    );
    assert!(stdout.contains(images.to_str().unwrap()), "{stdout}");
    assert_eq!(report["image_source"], images.to_str().unwrap());
    // No region of the job describes these images.
    assert!(report["region_lift"].is_null());
    // Every heatmap is of a held-out image, and the job's own results were left alone.
    let heatmaps = report["heatmaps"].as_array().unwrap();
    assert!(!heatmaps.is_empty());
    for h in heatmaps {
        let image = h["image"].as_str().unwrap();
        assert!(image.starts_with(images.to_str().unwrap()), "{image}");
        assert!(out.join(h["png"].as_str().unwrap()).is_file(), "{h}");
    }
    // 8 classes × 3 images; a concept is evaluated on every held-out image under it.
    let rows = report["summary"].as_array().unwrap();
    let shapley = rows.iter().find(|r| r["selection"] == "shapley").unwrap();
    assert!(shapley["images"].as_u64().unwrap() >= 24, "{shapley}");

    // A set whose labels are not the job's is refused, naming the image.
    let stranger = tmp.path().join("stranger/zebra");
    std::fs::create_dir_all(&stranger).unwrap();
    std::fs::copy(
        std::fs::read_dir(images.join("dog"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        stranger.join("z.png"),
    )
    .unwrap();
    let stderr = failed(
        &hint(&[
            "evaluate",
            "--job",
            job.to_str().unwrap(),
            "--images",
            stranger.parent().unwrap().to_str().unwrap(),
            "--annotations",
            held_out.join("annotations").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        "hint evaluate on foreign labels",
    );
    assert!(
        stderr.contains("label 'zebra' is not one of the job's labels"),
        "{stderr}"
    );
}

#[test]
fn cub_annotations_give_the_numbers_of_the_same_boxes_in_voc_xml() {
    let tmp = &job().0;
    // The world's boxes (one object per image) written as a CUB-200-2011 root.
    let cub = tmp.path().join("CUB_200_2011");
    std::fs::create_dir_all(&cub).unwrap();
    let annotations = world().join("annotations");
    let mut classes: Vec<String> = std::fs::read_dir(&annotations)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let (mut images, mut labels, mut boxes) = (String::new(), String::new(), String::new());
    let mut id = 0;
    for (c, class) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(annotations.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for xml in files {
            id += 1;
            let a = hint_common::annotations::voc::read_file(&xml, id).unwrap();
            assert_eq!(a.boxes.len(), 1, "{}", xml.display());
            let b = &a.boxes[0];
            let stem = xml.file_stem().unwrap().to_string_lossy().into_owned();
            images += &format!("{id} {class}/{stem}.png\n");
            labels += &format!("{id} {}\n", c + 1);
            boxes += &format!(
                "{id} {} {} {} {}\n",
                b.xmin,
                b.ymin,
                b.xmax - b.xmin,
                b.ymax - b.ymin
            );
        }
    }
    let class_lines: String = classes
        .iter()
        .enumerate()
        .map(|(c, name)| format!("{} {name}\n", c + 1))
        .collect();
    for (file, text) in [
        ("classes.txt", class_lines),
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("bounding_boxes.txt", boxes),
    ] {
        std::fs::write(cub.join(file), text).unwrap();
    }
    let (_, from_xml) = evaluate_into(&annotations, &tmp.path().join("wsol-xml"), &[]);
    let (_, from_cub) = evaluate_into(&cub, &tmp.path().join("wsol-cub"), &[]);
    assert!(!from_xml["summary"].as_array().unwrap().is_empty());
    for key in ["summary", "concepts", "comparisons", "skipped"] {
        assert_eq!(from_xml[key], from_cub[key], "{key}");
    }
}

/// `hint explain` on the finished job: a map per image and concept, whose logit at every
/// position the job kept as a region is the concept's classifier on that region's stored
/// activation (the same model, layer and preprocessing; one image at a time instead of the
/// extract task's batches, so equal up to float rounding), a heatmap per map, and unknown
/// concepts refused by name.
#[test]
fn explain_maps_are_the_classifiers_on_the_jobs_own_regions() {
    use hint_common::regions::read_regions;
    use hint_worker::classify::ConceptClassifier;

    let (_, job) = job();
    let out = job.parent().unwrap().join("explained");
    let images = world().join("images/bus");
    // `hint explain` of the job on the bus images, writing into `out`.
    let explain = |concepts: &str, out: &Path, extra: &[&str]| {
        let mut args = vec!["explain", "--job", job.to_str().unwrap()];
        args.extend(["--images", images.to_str().unwrap(), "--concepts", concepts]);
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        hint(&args)
    };
    let stdout = succeeded(&explain("vehicle,bus", &out, &[]), "hint explain");
    assert!(
        stdout.contains("explained 30 image(s) with 60 concept map(s)"),
        "{stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("explain.json")).unwrap()).unwrap();
    let maps = report["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 60);

    // The job's ids of these images, and their region rows.
    let manifest = std::fs::read_to_string(job.join("manifest.csv")).unwrap();
    let id_of = |path: &str| {
        manifest
            .lines()
            .skip(1)
            .position(|l| l.starts_with(&format!("{path},")))
            .map(|i| i as u64)
    };
    let mut rows = Vec::new();
    for file in std::fs::read_dir(job.join("regions")).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            rows.push(read_regions(&path).unwrap().1);
        }
    }
    let mut compared = 0;
    for map in maps {
        let png = out.join(map["png"].as_str().unwrap());
        assert!(image::open(&png).is_ok(), "{} decodes", png.display());
        let concept = map["concept"].as_u64().unwrap();
        let classifier = std::fs::read_dir(job.join("classifiers"))
            .unwrap()
            .map(|d| {
                d.unwrap()
                    .path()
                    .join(format!("concept-{concept:05}.safetensors"))
            })
            .find(|p| p.is_file())
            .map(|p| ConceptClassifier::load(&p).unwrap())
            .expect("the concept's classifier");
        let width = map["width"].as_u64().unwrap() as usize;
        let logits: Vec<f64> = map["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let id = id_of(map["image"].as_str().unwrap()).expect("a job image");
        let d = classifier.d();
        for r in &rows {
            for i in (0..r.image_id.len()).filter(|&i| r.image_id[i] == id) {
                let stored = &r.activation[i * d..(i + 1) * d];
                let at = usize::from(r.y[i]) * width + usize::from(r.x[i]);
                let expected = classifier.logit(stored);
                assert!(
                    (logits[at] - expected).abs() <= 1e-3 * (1.0 + expected.abs()),
                    "{} at {at}: {} vs {expected}",
                    map["name"],
                    logits[at]
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 100, "compared {compared} positions");

    // Re-fitted on every neuron (top = D), a concept's map is its trained classifier's.
    let d = 64; // the tiny CNN's features.7
    let refitted = job.parent().unwrap().join("explained-top");
    let stdout = succeeded(
        &explain("vehicle", &refitted, &["--top", &d.to_string()]),
        "hint explain --top D",
    );
    assert!(
        stdout.contains("re-fitted on each concept's top 64 neurons by Φ"),
        "{stdout}"
    );
    let top: Value =
        serde_json::from_str(&std::fs::read_to_string(refitted.join("explain.json")).unwrap())
            .unwrap();
    assert_eq!(top["top"], 64);
    let vehicle = maps.iter().filter(|m| m["key"] == "vehicle");
    for (full, refit) in vehicle.zip(top["maps"].as_array().unwrap()) {
        assert_eq!(full["image"], refit["image"]);
        for (a, b) in full["logits"]
            .as_array()
            .unwrap()
            .iter()
            .zip(refit["logits"].as_array().unwrap())
        {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-3 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    // Without --out, into the job's results/explain/, where `hint report` looks.
    let one = images.join(
        maps[0]["image"]
            .as_str()
            .and_then(|p| Path::new(p).file_name())
            .unwrap(),
    );
    let stdout = succeeded(
        &hint(&[
            "explain",
            "--job",
            job.to_str().unwrap(),
            "--images",
            one.to_str().unwrap(),
            "--concepts",
            "bus",
        ]),
        "hint explain without --out",
    );
    let default_out = job.join("results/explain");
    assert!(
        stdout.contains(&default_out.join("explain.json").display().to_string()),
        "{stdout}"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(default_out.join("explain.json")).unwrap())
            .unwrap();
    assert_eq!(written["maps"].as_array().unwrap().len(), 1);

    // Checked against the world's boxes: every bus image has its box; the summary is the
    // maps' own checks, and a bus map mostly points into the bus.
    let checked = job.parent().unwrap().join("explained-boxes");
    let annotations = world().join("annotations");
    let stdout = succeeded(
        &explain(
            "bus,cat",
            &checked,
            &[
                "--boxes",
                annotations.to_str().unwrap(),
                "--masks",
                world().join("masks").to_str().unwrap(),
            ],
        ),
        "hint explain --boxes --masks",
    );
    assert!(stdout.contains("against the boxes of "), "{stdout}");
    let boxed: Value =
        serde_json::from_str(&std::fs::read_to_string(checked.join("explain.json")).unwrap())
            .unwrap();
    assert_eq!(boxed["threshold"], 0.5);
    assert!(boxed.get("unchecked").is_none(), "{}", boxed["unchecked"]);
    let checks = boxed["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    for check in checks {
        let of_concept: Vec<&Value> = boxed["maps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["concept"] == check["concept"])
            .map(|m| &m["check"])
            .collect();
        assert_eq!(of_concept.len(), 30);
        assert_eq!(check["images"], 30);
        let pointed = of_concept.iter().filter(|c| c["pointed"] == true).count();
        assert_eq!(check["pointing"].as_f64().unwrap(), pointed as f64 / 30.0);
        let iou: f64 = of_concept.iter().map(|c| c["iou"].as_f64().unwrap()).sum();
        assert!((check["mean_iou"].as_f64().unwrap() - iou / 30.0).abs() < 1e-12);
        // Every world image has its mask.
        let mask_iou: f64 = of_concept
            .iter()
            .map(|c| c["mask_iou"].as_f64().expect("a mask IoU"))
            .sum();
        assert!((check["mean_mask_iou"].as_f64().unwrap() - mask_iou / 30.0).abs() < 1e-12);
    }
    let bus = checks.iter().find(|c| c["name"] == "bus").unwrap();
    assert!(bus["pointing"].as_f64().unwrap() >= 0.5, "{bus}");

    // An expert's own tree: one image boxed whole (every map points into it), one without
    // an annotation (explained, not checked, and said why).
    let expert = job.parent().unwrap().join("expert");
    let two = job.parent().unwrap().join("two-buses");
    std::fs::create_dir_all(&expert).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let mut buses: Vec<PathBuf> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    buses.sort();
    for bus in &buses[..2] {
        std::fs::copy(bus, two.join(bus.file_name().unwrap())).unwrap();
    }
    let (width, height) = image::image_dimensions(&buses[0]).unwrap();
    std::fs::write(
        expert.join(buses[0].with_extension("xml").file_name().unwrap()),
        format!(
            "<annotation><filename>{}</filename>\
             <size><width>{width}</width><height>{height}</height></size><object><name>lesion</name><bndbox><xmin>1</xmin><ymin>1</ymin>\
             <xmax>{width}</xmax><ymax>{height}</ymax></bndbox></object></annotation>",
            buses[0].file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let by_expert = job.parent().unwrap().join("explained-expert");
    succeeded(
        &hint(&[
            "explain",
            "--job",
            job.to_str().unwrap(),
            "--images",
            two.to_str().unwrap(),
            "--concepts",
            "bus,cat",
            "--boxes",
            expert.to_str().unwrap(),
            "--out",
            by_expert.to_str().unwrap(),
        ]),
        "hint explain --boxes (an expert's tree)",
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(by_expert.join("explain.json")).unwrap())
            .unwrap();
    let unchecked = report["unchecked"].as_array().unwrap();
    assert_eq!(unchecked.len(), 1, "{unchecked:?}");
    assert!(unchecked[0]["image"]
        .as_str()
        .unwrap()
        .ends_with(buses[1].file_name().unwrap().to_str().unwrap()));
    assert_eq!(
        unchecked[0]["reason"],
        "no annotation file matches the image"
    );
    for map in report["maps"].as_array().unwrap() {
        let whole = map["image"]
            .as_str()
            .unwrap()
            .ends_with(buses[0].file_name().unwrap().to_str().unwrap());
        assert_eq!(map.get("check").is_some(), whole, "{map}");
        if whole {
            assert_eq!(map["check"]["pointed"], true, "{map}");
            assert!(map["check"]["iou"].as_f64().unwrap() > 0.0, "{map}");
        }
    }
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(
            (check["images"].as_u64(), check["pointing"].as_f64()),
            (Some(1), Some(1.0))
        );
    }

    let unknown = failed(
        &explain("zeppelin", &out, &[]),
        "hint explain of an unknown concept",
    );
    assert!(
        unknown.contains(
            "unknown concept zeppelin (not a concept of the job); concepts with a classifier: "
        ),
        "{unknown}"
    );
}

//! `hint attack` on the finished job of `wsol.rs` (the tiny CNN on the synthetic world):
//!
//! - every image is attacked toward every target but its clean prediction, within ε, and
//!   the attack works (the target's probability rises; some predictions flip);
//! - the clean maps are `hint explain`'s maps of the same images;
//! - with ε = 0 every attacked map is the clean one and no attack succeeds;
//! - each concept's relation to a pair's classes follows the hierarchy; the pairs add up to
//!   the attacks; every heatmap decodes;
//! - an unknown target class, or a budget outside [0, 1], is refused by name.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{failed, hint, succeeded};
use crate::wsol::{job, world};

const CONCEPTS: &str = "vehicle,bus,animal,cat";

/// Runs `hint attack` on the bus images toward cat and bus, into `out`: its stdout and
/// `attack.json`.
fn attack(out: &Path, epsilon: &str) -> (String, Value) {
    let (_, job) = job();
    let images = world().join("images/bus");
    let stdout = succeeded(
        &hint(&[
            "attack",
            "--job",
            job.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--targets",
            "cat,bus",
            "--concepts",
            CONCEPTS,
            "--epsilon",
            epsilon,
            "--steps",
            "8",
            "--out",
            out.to_str().unwrap(),
        ]),
        "hint attack",
    );
    let report =
        serde_json::from_str(&std::fs::read_to_string(out.join("attack.json")).unwrap()).unwrap();
    (stdout, report)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn attacks_stay_within_epsilon_flip_predictions_and_map_clean_images_as_explain_does() {
    let (_, job) = job();
    let out = job.parent().unwrap().join("attacked");
    let (stdout, report) = attack(&out, "16/255");
    let epsilon = 16.0 / 255.0;
    assert!((f(&report["pgd"]["epsilon"]) - epsilon).abs() < 1e-12);
    assert!((f(&report["pgd"]["step_size"]) - epsilon / 4.0).abs() < 1e-12);
    assert_eq!(report["pgd"]["steps"], 8);
    let names: Vec<&str> = report["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(names.join(","), CONCEPTS);

    let attacks = report["attacks"].as_array().unwrap();
    // Each of the 30 bus images toward cat and bus, but not toward its clean prediction.
    let mut targets: BTreeMap<&str, (String, Vec<&str>)> = BTreeMap::new();
    for a in attacks {
        let entry = targets.entry(a["image"].as_str().unwrap()).or_default();
        entry.0 = a["source"].as_str().unwrap().to_string();
        entry.1.push(a["target"].as_str().unwrap());
    }
    assert_eq!(targets.len(), 30);
    for (image, (source, toward)) in &targets {
        let expected: Vec<&str> = ["cat", "bus"].into_iter().filter(|t| t != source).collect();
        assert_eq!(toward, &expected, "{image} ({source})");
    }
    let (mut succeeded_count, mut raised) = (0, 0);
    for a in attacks {
        assert_ne!(
            a["source"], a["target"],
            "an image is not attacked toward its class"
        );
        let linf = f(&a["linf"]);
        assert!(linf <= epsilon + 1e-6, "L∞ {linf} > ε");
        assert!(linf > epsilon / 2.0, "the attack moved the image: {linf}");
        assert_eq!(a["success"], Value::Bool(a["predicted"] == a["target"]));
        raised += usize::from(f(&a["target_probability"]) > f(&a["clean_target_probability"]));
        succeeded_count += usize::from(a["success"] == Value::Bool(true));
        assert_eq!(a["maps"].as_array().unwrap().len(), 4);
        for m in a["maps"].as_array().unwrap() {
            for png in [&m["clean_png"], &m["attacked_png"]] {
                let path = out.join(png.as_str().unwrap());
                assert!(image::open(&path).is_ok(), "{} decodes", path.display());
            }
        }
    }
    // Each step descends the target's loss: the target's probability rises, and some
    // predictions flip (how many is the model's robustness, not checked here).
    assert!(
        raised * 10 >= attacks.len() * 9,
        "the target's probability rose in {raised} of {} attacks",
        attacks.len()
    );
    assert!(
        succeeded_count > 0,
        "no attack flipped a prediction: {stdout}"
    );

    // The pairs add up to the attacks, and the relations follow the hierarchy.
    let pairs = report["pairs"].as_array().unwrap();
    let images: u64 = pairs.iter().map(|p| p["images"].as_u64().unwrap()).sum();
    assert_eq!(images as usize, attacks.len());
    let succeeded_in_pairs: u64 = pairs.iter().map(|p| p["succeeded"].as_u64().unwrap()).sum();
    assert_eq!(succeeded_in_pairs as usize, succeeded_count);
    let bus_to_cat = pairs
        .iter()
        .find(|p| p["source"] == "bus" && p["target"] == "cat")
        .expect("a bus → cat pair");
    let relations: Vec<&str> = bus_to_cat["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["relation"].as_str().unwrap())
        .collect();
    assert_eq!(relations, ["source", "source", "target", "target"]);
    assert!(stdout.contains("bus → cat: "), "{stdout}");

    // The clean maps are `hint explain`'s maps of the same images.
    let explained = job.parent().unwrap().join("attacked-explained");
    let images = world().join("images/bus");
    succeeded(
        &hint(&[
            "explain",
            "--job",
            job.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--concepts",
            CONCEPTS,
            "--out",
            explained.to_str().unwrap(),
        ]),
        "hint explain",
    );
    let explain: Value =
        serde_json::from_str(&std::fs::read_to_string(explained.join("explain.json")).unwrap())
            .unwrap();
    let maps = explain["maps"].as_array().unwrap();
    let mut compared = 0;
    for a in attacks.iter().filter(|a| a["target"] == "cat") {
        for (k, m) in a["maps"].as_array().unwrap().iter().enumerate() {
            let e = maps
                .iter()
                .filter(|e| e["image"] == a["image"])
                .nth(k)
                .expect("explain mapped the image");
            assert_eq!(e["concept"], m["concept"]);
            assert_eq!(e["peak"], m["clean"]["peak"]);
            let (p, q) = (
                f(&e["peak_probability"]),
                f(&m["clean"]["peak_probability"]),
            );
            assert!((p - q).abs() < 1e-5, "{p} vs {q}");
            compared += 1;
        }
    }
    assert_eq!(compared, 120);
}

#[test]
fn an_attack_with_no_budget_changes_nothing() {
    let (_, job) = job();
    let out = job.parent().unwrap().join("attacked-zero");
    let (_, report) = attack(&out, "0");
    for a in report["attacks"].as_array().unwrap() {
        assert_eq!(f(&a["linf"]), 0.0);
        assert_eq!(a["predicted"], a["source"]);
        assert_eq!(a["success"], false);
        for m in a["maps"].as_array().unwrap() {
            let (clean, attacked) = (&m["clean"], &m["attacked"]);
            assert_eq!(clean["peak"], attacked["peak"]);
            let close = |key: &str| (f(&clean[key]) - f(&attacked[key])).abs() < 1e-5;
            assert!(close("peak_probability") && close("area"), "{m}");
        }
    }
    for pair in report["pairs"].as_array().unwrap() {
        assert_eq!(pair["succeeded"], 0);
        for c in pair["concepts"].as_array().unwrap() {
            assert_eq!(c["present_clean"], c["present_attacked"], "{c}");
        }
    }
}

#[test]
fn unknown_targets_and_budgets_outside_pixel_values_are_refused() {
    let (_, job) = job();
    let images = world().join("images/bus");
    let base = ["attack", "--job", job.to_str().unwrap(), "--images"];
    let mut args: Vec<&str> = base.to_vec();
    args.extend([images.to_str().unwrap(), "--targets", "cat,zebra"]);
    let stderr = failed(&hint(&args), "an unknown target");
    assert!(stderr.contains("unknown target class 'zebra'"), "{stderr}");
    assert!(
        stderr.contains("bus"),
        "the error lists the classes: {stderr}"
    );

    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        images.to_str().unwrap(),
        "--targets",
        "cat",
        "--epsilon",
        "8",
    ]);
    let stderr = failed(&hint(&args), "ε = 8");
    assert!(stderr.contains("not a pixel value in [0, 1]"), "{stderr}");
}

//! `hint sanity` on the finished job of `wsol.rs` (the tiny CNN at `features.7`, the stage
//! before its global pool):
//!
//! - the cascade is the trained model, then the head, then every stage from the last down;
//! - the trained model against itself: every defined correlation and IoU is 1;
//! - a plain gradient just before a global pool is the same at every position, so its
//!   correlation is undefined (reported as such, not as a number);
//! - the concept maps do not move while the randomisation is above the layer, and are gone
//!   once it has destroyed everything; the head's randomisation moves the saliency;
//! - two runs write the same file (the shuffles are seeded).
//!
//! The rank correlation and the shuffles are unit-tested (`hint_common::stats`,
//! `hint_worker::models`).

use serde_json::Value;

use crate::support::{hint, succeeded};
use crate::wsol::{job, world};

fn sanity(out: &std::path::Path) -> (String, Value, String) {
    let (_, job) = job();
    let images = world().join("images/bus");
    let stdout = succeeded(
        &hint(&[
            "sanity",
            "--job",
            job.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--methods",
            "gradient,gradient_x_activation",
            "--concepts",
            "vehicle,bus",
            "--out",
            out.to_str().unwrap(),
        ]),
        "hint sanity",
    );
    let text = std::fs::read_to_string(out.join("sanity.json")).unwrap();
    (stdout, serde_json::from_str(&text).unwrap(), text)
}

#[test]
fn cascading_randomisation_destroys_the_concept_maps_from_the_layer_down() {
    let (_, job) = job();
    let (stdout, report, text) = sanity(&job.parent().unwrap().join("sanity"));
    assert_eq!(report["images"], 30);
    assert_eq!(report["layer"], "features.7");
    let steps = report["steps"].as_array().unwrap();
    let parts: Vec<&str> = steps
        .iter()
        .skip(1)
        .map(|s| s["randomised"].as_str().unwrap())
        .collect();
    let stages: Vec<String> = (0..8).rev().map(|i| format!("features.{i}")).collect();
    assert_eq!(parts[0], "head");
    assert_eq!(
        parts[1..],
        stages.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert!(steps[0]["randomised"].is_null());
    let reaches: Vec<bool> = steps.iter().map(|s| s["reaches_layer"] == true).collect();
    assert_eq!(reaches[..2], [false, false], "trained, head");
    assert!(reaches[2..].iter().all(|&r| r), "features.7 and below");

    let method = |step: &Value, name: &str| -> Value {
        step["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == name)
            .unwrap()
            .clone()
    };
    let concept_rho = |step: &Value| -> Vec<f64> {
        step["concept_maps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    // The trained model against itself.
    let gxa = method(&steps[0], "gradient_x_activation");
    assert!((gxa["rank_correlation"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(gxa["region_iou"], 1.0);
    assert_eq!(
        gxa["rank_correlation_interval"],
        serde_json::json!([1.0, 1.0])
    );
    assert_eq!(gxa["correlated"], 30);
    assert!(concept_rho(&steps[0])
        .iter()
        .all(|r| (r - 1.0).abs() < 1e-9));
    // A plain gradient before a global pool: constant maps, no correlation, no regions.
    for step in steps {
        let g = method(step, "gradient");
        assert!(g["rank_correlation"].is_null(), "{g}");
        assert_eq!(g["correlated"], 0);
        assert!(g["region_iou"].is_null());
    }
    // The head: the saliency moves, the layer's activations (so the concept maps) do not.
    let head = &steps[1];
    assert!(
        method(head, "gradient_x_activation")["rank_correlation"]
            .as_f64()
            .unwrap()
            < 1.0
    );
    assert!(concept_rho(head).iter().all(|r| (r - 1.0).abs() < 1e-9));
    // Everything destroyed: the concept classifiers no longer find their concepts' layout.
    let last = steps.last().unwrap();
    // Its intervals hold their means.
    let gxa = method(last, "gradient_x_activation");
    for key in ["rank_correlation", "region_iou"] {
        let mean = gxa[key].as_f64().unwrap();
        let interval = &gxa[format!("{key}_interval")];
        let [low, high] = [0, 1].map(|k| interval[k].as_f64().unwrap());
        assert!(
            low <= mean && mean <= high && low < high,
            "{key}: {mean} in [{low}, {high}]"
        );
    }
    for rho in concept_rho(last) {
        assert!(
            rho < 0.5,
            "concept map ρ {rho} after randomising every part"
        );
    }
    assert!(stdout.contains("nothing (trained)"), "{stdout}");
    assert!(stdout.contains("features.0 *"), "{stdout}");

    // Seeded: a second run writes the same file.
    let (_, _, again) = sanity(&job.parent().unwrap().join("sanity-again"));
    assert_eq!(text, again);
}

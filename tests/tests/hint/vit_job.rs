//! A ViT-B/16 job end to end on the synthetic world: torchvision's `VisionTransformer` with
//! `vit_b_16`'s shape at 64 × 64 (random weights written by `reference_models.py`, a 4 × 4
//! grid of patch tokens; hint cannot train a ViT) through `hint run` with a real
//! coordinator and worker: regions on the patch tokens, classifiers and Φ over the 768
//! channels, WSOL and ablation (the map ablated, the class token carried beside it). Plus
//! what a user sees for a crop the weights do not fit.

use std::ffi::OsStr;
use std::path::Path;

use crate::support::{failed, hint, run_python, succeeded, TinyWorld};

const LAYER: &str = "encoder.layers.encoder_layer_9";
const CLASSES: usize = 8;
const PER_CLASS: usize = 4;

fn spec(dir: &Path, weights: &Path, crop: u32, method: &str) -> String {
    let world = dir.join("world");
    format!(
        r#"[job]
name = "vit"
seed = 5

[model]
architecture = "vit_b_16"
weights = "{weights}"
layer = "{LAYER}"
resize = {crop}
crop = {crop}

[data]
images = "{images}"
hierarchy = "{hierarchy}"

[extract]
method = "{method}"

[shapley]
permutations = 8
permutations_per_task = 8

[storage]
root = "{runs}"
"#,
        weights = weights.display(),
        images = world.join("images").display(),
        hierarchy = world.join("hierarchy.yaml").display(),
        runs = dir.join("runs").display(),
    )
}

#[test]
fn a_vit_job_runs_end_to_end_on_patch_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let world = d.join("world");
    succeeded(
        &hint(&[
            "synth",
            "--out",
            world.to_str().unwrap(),
            "--seed",
            "3",
            "--per-class",
            &PER_CLASS.to_string(),
        ]),
        "hint synth",
    );
    let weights_dir = d.join("vit");
    let classes = CLASSES.to_string();
    let args = [
        "vit_b_16",
        weights_dir.to_str().unwrap(),
        "--num-classes",
        &classes,
        "--size",
        "64",
        "--batch",
        "1",
    ]
    .map(OsStr::new);
    run_python("reference_models.py", &args);
    let weights = weights_dir.join("weights.safetensors");

    let spec_path = d.join("job.toml");
    let assessments = TinyWorld {
        world: world.clone(),
        weights: weights.clone(),
    }
    .assessments();
    let job = spec(d, &weights, 64, "gradient_x_activation") + &assessments;
    std::fs::write(&spec_path, job).unwrap();
    let out = succeeded(
        &hint(&["run", spec_path.to_str().unwrap(), "--workers", "1"]),
        "hint run",
    );
    // Every position of the 4 × 4 grid of every image is a region row (background ratio 1).
    let images = CLASSES * PER_CLASS;
    assert!(
        out.contains(&format!(
            "{images} of {images} images → {} region rows",
            images * 16
        )),
        "{out}"
    );
    assert!(out.contains("positions each of 4×4"), "{out}");
    assert!(
        out.contains("top neurons (φ ± stderr) per concept:\n    level 0:"),
        "{out}"
    );

    let results = d.join("runs/job-0001/results");
    let phi = std::fs::read_to_string(results.join("phi.csv")).unwrap();
    let rows: Vec<Vec<&str>> = phi
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let concepts: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(rows.len(), concepts.len() * 768, "Φ over the 768 channels");
    let neurons: std::collections::BTreeSet<u32> =
        rows.iter().map(|r| r[3].parse().unwrap()).collect();
    assert_eq!(neurons.len(), 768);
    assert!(
        rows.iter().any(|r| r[4].parse::<f64>().unwrap() > 0.0),
        "some neuron carries a concept"
    );
    assert!(results.join("report.html").is_file());
    // WSOL and ablation ran on the patch tokens: their files and tables.
    for file in ["wsol.json", "ablation.json"] {
        assert!(results.join(file).is_file(), "{file}");
    }
    assert!(
        out.contains(&format!("images, vit_b_16 at {LAYER}): ")),
        "{out}"
    );

    // The same weights at 224 × 224: the position embeddings are for a 4 × 4 grid.
    let extract = hint(&[
        "extract",
        "--model",
        "vit_b_16",
        "--weights",
        weights.to_str().unwrap(),
        "--layer",
        LAYER,
        "--images",
        world.join("images").to_str().unwrap(),
        "--out",
        d.join("wrong-crop").to_str().unwrap(),
    ]);
    let err = failed(&extract, "hint extract at 224 with 64-pixel weights");
    assert!(
        err.contains("vit_b_16 with these weights needs 64 × 64 images")
            && err.contains("the crop is 224")
            && err.contains("set the crop to 64"),
        "{err}"
    );

    // A crop that is no multiple of 16 is a problem of the spec; the last encoder layer
    // and a gradient's channel sum are warned about.
    std::fs::write(&spec_path, spec(d, &weights, 60, "gradient")).unwrap();
    let check = failed(&hint(&["check", spec_path.to_str().unwrap()]), "hint check");
    assert!(check.contains("crop must be a multiple of 16"), "{check}");
    let last = spec(d, &weights, 64, "gradient").replace(LAYER, "encoder.layers.encoder_layer_11");
    std::fs::write(&spec_path, last).unwrap();
    let check = warnings_of_check(&spec_path);
    assert!(check.contains("is zero everywhere"), "{check}");
    let sum = spec(d, &weights, 64, "gradient").replace(
        "method = \"gradient\"",
        "method = \"gradient\"\naggregation = \"sum\"",
    );
    std::fs::write(&spec_path, sum).unwrap();
    let check = warnings_of_check(&spec_path);
    assert!(
        check.contains("warning: extract.aggregation: gradient with aggregation sum"),
        "{check}"
    );

    let shapes = succeeded(
        &hint(&["layers", "--model", "vit_b_16", "--shapes"]),
        "hint layers",
    );
    assert!(
        shapes.contains("encoder.layers.encoder_layer_11  768 × 14 × 14"),
        "{shapes}"
    );
}

/// The standard error (where warnings go) of `hint check` on a valid spec.
fn warnings_of_check(spec: &Path) -> String {
    let output = hint(&["check", spec.to_str().unwrap()]);
    succeeded(&output, "hint check");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

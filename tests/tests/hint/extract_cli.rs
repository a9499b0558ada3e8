//! `hint extract` as a user runs it: the real binary on a generated folder that contains a
//! corrupt image, read back with pyarrow; and the errors a user meets before work starts.

use std::path::Path;
use std::process::Output;

use hint_common::regions::read_regions;

use crate::support::{example, hint, run_python, succeeded};

fn extract(dir: &Path, out: &str, extra: &[&str]) -> Output {
    extract_at(dir, "features.4", out, extra)
}

fn extract_at(dir: &Path, layer: &str, out: &str, extra: &[&str]) -> Output {
    let weights = dir.join("tiny_cnn.safetensors");
    let images = dir.join("images");
    let out = dir.join(out);
    let mut args = vec![
        "extract",
        "--model",
        "tiny_cnn",
        "--weights",
        weights.to_str().unwrap(),
        "--layer",
        layer,
        "--images",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "4",
    ];
    args.extend_from_slice(extra);
    hint(&args)
}

#[test]
fn extract_skips_a_corrupt_image_and_writes_regions_pyarrow_reads() {
    let dir = tempfile::tempdir().unwrap();
    example(dir.path(), 5, 3);
    let stdout = succeeded(
        &extract(
            dir.path(),
            "regions",
            &[
                "--method",
                "guided_backprop",
                "--background-ratio",
                "0.3",
                "--compression",
                "lz4",
                "--encode-threads",
                "3",
                "--profile",
            ],
        ),
        "hint extract",
    );
    assert!(
        stdout.contains("extracted 15 of 16 images"),
        "summary:\n{stdout}"
    );
    assert!(
        stdout.contains("broken.jpg"),
        "the corrupt file is named:\n{stdout}"
    );

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("regions/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["images_skipped"], 1);
    // Each stage's busy time: every stage worked, none beyond its threads' share of the run
    // (up to timer noise), and the printout names the one that bounds the run.
    let stages = summary["stages"].as_array().unwrap();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["decode", "model", "gather", "write", "encode"]);
    assert_eq!(stages[4]["threads"], 3, "--encode-threads: {}", stages[4]);
    for stage in stages {
        let share = stage["utilisation"].as_f64().unwrap();
        assert!(stage["busy_seconds"].as_f64().unwrap() > 0.0, "{stage}");
        assert!(share > 0.0 && share <= 1.05, "{stage}");
    }
    assert!(stdout.contains("  stages: decode "), "{stdout}");
    // Which decoder this build's JPEGs go through, named in both.
    let decoder = summary["jpeg_decoder"].as_str().unwrap();
    assert!(
        decoder == "zune-jpeg" || decoder.starts_with("libjpeg-turbo "),
        "{decoder}"
    );
    assert!(
        stdout.contains(&format!("(JPEG decoder: {decoder})")),
        "{stdout}"
    );
    assert!(stdout.contains("; bound by "), "{stdout}");
    // --profile: a row per stage, with its threads.
    assert!(stdout.contains("  profile: stage    threads"), "{stdout}");
    for stage in ["decode", "model", "gather", "write", "encode"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(stage) && l.contains('%')),
            "no profile row for {stage}:\n{stdout}"
        );
    }
    let skipped = &summary["skipped"][0];
    assert!(skipped["path"].as_str().unwrap().ends_with("broken.jpg"));
    assert!(!skipped["reason"].as_str().unwrap().is_empty());

    let file = dir.path().join("regions/regions-00000.parquet");
    let (meta, rows) = read_regions(&file).unwrap();
    assert_eq!(meta.model, "tiny_cnn");
    assert_eq!(meta.layer, "features.4");
    assert_eq!(meta.method, "guided_backprop");
    assert_eq!((meta.channels, meta.height, meta.width), (32, 32, 32));
    assert_eq!(meta.labels, vec!["disc", "square", "stripes"]);
    let foreground = rows.foreground.iter().filter(|f| **f).count() as u64;
    assert_eq!(summary["foreground_rows"].as_u64().unwrap(), foreground);
    assert_eq!(
        summary["background_rows"].as_u64().unwrap(),
        rows.len() as u64 - foreground
    );
    assert!(foreground > 0);
    // Every processed image has rows; the corrupt one (id 0: first file of "disc") has none.
    let mut ids: Vec<u64> = rows.image_id.clone();
    ids.dedup();
    assert_eq!(ids.len(), 15);
    assert!(rows
        .saliency
        .iter()
        .zip(&rows.foreground)
        .all(|(s, f)| (*s > 0.5) == *f));

    // The region-quality diagnostics, recomputed here from the rows with per-image sets.
    assert!(stdout.contains("quality: "), "summary:\n{stdout}");
    let quality = &summary["region_quality"];
    let mut masks: std::collections::BTreeMap<u64, std::collections::BTreeSet<usize>> =
        Default::default();
    for i in (0..rows.len()).filter(|&i| rows.foreground[i]) {
        let p = usize::from(rows.y[i]) * 32 + usize::from(rows.x[i]);
        masks.entry(rows.image_id[i]).or_default().insert(p);
    }
    let fixed: std::collections::BTreeSet<usize> = (0..32 * 32)
        .filter(|p| 2 * masks.values().filter(|m| m.contains(p)).count() > 15)
        .collect();
    let iou = masks
        .values()
        .map(|m| m.intersection(&fixed).count() as f64 / m.union(&fixed).count() as f64)
        .sum::<f64>()
        / masks.len() as f64;
    let per_image = masks.values().map(|m| m.len()).sum::<usize>() as f64 / masks.len() as f64;
    assert_eq!(quality["images"], 15, "{quality}");
    assert_eq!(quality["images_with_regions"], masks.len(), "{quality}");
    assert_eq!(quality["fixed_pattern_positions"], fixed.len(), "{quality}");
    assert!((quality["fixed_pattern_iou"].as_f64().unwrap() - iou).abs() < 1e-12);
    assert!((quality["regions_per_image"].as_f64().unwrap() - per_image).abs() < 1e-12);

    let pyarrow = run_python("read_regions.py", &[file.as_os_str()]);
    let read: serde_json::Value = serde_json::from_str(&pyarrow).unwrap();
    assert_eq!(
        read["num_rows"].as_u64().unwrap(),
        rows.len() as u64,
        "pyarrow: {pyarrow}"
    );
    assert_eq!(read["compression"], serde_json::json!(["LZ4"]), "{pyarrow}");
}

#[test]
fn extraction_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    example(dir.path(), 5, 3);
    let args = [
        "--method",
        "smoothgrad",
        "--samples",
        "2",
        "--background-ratio",
        "0.5",
        "--seed",
        "9",
    ];
    succeeded(&extract(dir.path(), "a", &args), "first run");
    succeeded(&extract(dir.path(), "b", &args), "second run");
    // Same seed, same batch size: bit-identical rows. (A different batch size may change
    // libtorch's kernels and so the last bits, which can flip positions at the threshold.)
    let (_, a) = read_regions(&dir.path().join("a/regions-00000.parquet")).unwrap();
    let (_, b) = read_regions(&dir.path().join("b/regions-00000.parquet")).unwrap();
    assert_eq!(a, b);
}

/// Three layers in one pass (one forward and one backward per batch) write three region
/// datasets, each the one a run at that layer alone writes: the same rows, activations
/// equal, normalised saliency within float rounding (the gradient comes from another
/// graph), the foreground flags equal wherever the saliency is not at the threshold.
#[test]
fn several_layers_in_one_pass_write_what_a_run_per_layer_writes() {
    let dir = tempfile::tempdir().unwrap();
    example(dir.path(), 5, 3);
    let layers = ["features.4", "features.1", "features.7"];
    let args = ["--method", "integrated_gradients", "--steps", "3"];
    let stdout = succeeded(
        &extract_at(dir.path(), &layers.join(","), "together", &args),
        "hint extract at three layers",
    );
    for layer in layers {
        assert!(stdout.contains(&format!("layer {layer} [D=")), "{stdout}");
        let alone_dir = format!("alone-{layer}");
        succeeded(
            &extract_at(dir.path(), layer, &alone_dir, &args),
            "hint extract at one layer",
        );
        let together = dir.path().join("together").join(layer);
        assert!(together.join("summary.json").is_file(), "{layer}");
        let (meta, joint) = read_regions(&together.join("regions-00000.parquet")).unwrap();
        let (_, alone) =
            read_regions(&dir.path().join(&alone_dir).join("regions-00000.parquet")).unwrap();
        assert_eq!(meta.layer, layer);
        assert_eq!(
            (&joint.image_id, &joint.y, &joint.x),
            (&alone.image_id, &alone.y, &alone.x),
            "{layer}: rows"
        );
        assert_eq!(joint.activation, alone.activation, "{layer}: activations");
        for (k, (a, b)) in joint.saliency.iter().zip(&alone.saliency).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4,
                "{layer} row {k}: saliency {a} vs {b}"
            );
            if (b - 0.5).abs() > 1e-4 {
                assert_eq!(joint.foreground[k], alone.foreground[k], "{layer} row {k}");
            }
        }
    }
    // A layer asked for twice is refused before any work.
    let twice = extract_at(dir.path(), "features.4,features.4", "twice", &[]);
    let err = crate::support::failed(&twice, "hint extract at one layer twice");
    assert!(err.contains("layer features.4 is asked for twice"), "{err}");
}

#[test]
fn a_wrong_layer_name_lists_the_valid_ones_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    example(dir.path(), 5, 3);
    let output = extract_at(dir.path(), "features.40", "out", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("features.40") && stderr.contains("features.7"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_class_without_a_model_output_is_an_error_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    example(dir.path(), 5, 3);
    // A fourth class folder; the model has three outputs.
    let extra = dir.path().join("images/zebra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(
        dir.path().join("images/disc/disc_000.png"),
        extra.join("zebra_000.png"),
    )
    .unwrap();
    let output = extract(dir.path(), "out", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("zebra"), "{stderr}");
    assert!(!dir.path().join("out/regions-00000.parquet").exists());
}

#[test]
fn an_earlier_run_is_not_overwritten_silently() {
    let dir = tempfile::tempdir().unwrap();
    example(dir.path(), 5, 3);
    succeeded(&extract(dir.path(), "out", &[]), "first run");
    let again = extract(dir.path(), "out", &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
    succeeded(&extract(dir.path(), "out", &["--overwrite"]), "overwrite");
}

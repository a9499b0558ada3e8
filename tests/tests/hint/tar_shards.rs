//! WebDataset-style tar shards as input, written by Python's `tarfile`
//! (`tests/python/pack_shards.py`): `hint extract` on shards (labels as names, or as class
//! indices with a label map; local and on moto's S3) writes the rows of the same images as
//! a folder, skips and names a corrupt member and an unlabelled one; a damaged shard and a
//! bad brace pattern are errors that say where; and a whole `hint run` job on the synthetic
//! world packed into shards, local and on S3, writes the loose world's phi.csv byte for byte.

use std::path::{Path, PathBuf};

use hint_common::regions::read_regions;

use crate::moto::Moto;
use crate::support::{example, failed, hint, job_spec, run_python, succeeded, TinyWorld};

/// Packs the ImageFolder `images` into `<prefix>-{0..}.tar`, `per_shard` samples each;
/// returns the brace pattern naming them.
fn pack(images: &Path, prefix: &Path, per_shard: usize, extra: &[&str]) -> String {
    let per_shard = per_shard.to_string();
    let mut args = vec![images.as_os_str(), prefix.as_os_str(), per_shard.as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let shards: usize = run_python("pack_shards.py", &args).trim().parse().unwrap();
    format!("{}-{{0..{}}}.tar", prefix.display(), shards - 1)
}

fn extract_args<'a>(weights: &'a str, images: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "extract",
        "--model",
        "tiny_cnn",
        "--weights",
        weights,
        "--layer",
        "features.4",
        "--images",
        images,
        "--out",
        out,
        "--batch-size",
        "4",
        "--method",
        "guided_backprop",
        "--background-ratio",
        "0.3",
    ]
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// `(path, reason)` of every skipped image in a `summary.json`.
fn skipped(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn extract_from_shards_gives_the_folders_rows_local_and_on_s3() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // 16 images in 3 classes, the first of "disc" (broken.jpg) corrupt.
    example(dir, 5, 3);
    let weights = dir.join("tiny_cnn.safetensors");
    let w = weights.to_str().unwrap();
    let loose = dir.join("loose");
    succeeded(
        &hint(&extract_args(
            w,
            dir.join("images").to_str().unwrap(),
            loose.to_str().unwrap(),
        )),
        "hint extract (folder)",
    );
    let (loose_meta, loose_rows) = read_regions(&loose.join("regions-00000.parquet")).unwrap();
    assert!(!loose_rows.is_empty());

    // Labels as names, 5 samples a shard (shards cut across classes), and one image
    // without a label at the end of the last shard.
    let shards_dir = dir.join("shards");
    std::fs::create_dir(&shards_dir).unwrap();
    let names = pack(
        &dir.join("images"),
        &shards_dir.join("train"),
        5,
        &["--unlabelled"],
    );
    assert!(names.ends_with("train-{0..3}.tar"), "{names}");
    let out = dir.join("from-shards");
    let stdout = succeeded(
        &hint(&extract_args(w, &names, out.to_str().unwrap())),
        "hint extract (shards)",
    );
    assert!(stdout.contains("extracted 15 of 17 images"), "{stdout}");
    let (meta, rows) = read_regions(&out.join("regions-00000.parquet")).unwrap();
    assert!(rows == loose_rows, "the shards' rows are the folder's");
    assert_eq!(meta.labels, loose_meta.labels);
    let skips = skipped(&summary(&out));
    assert_eq!(skips.len(), 2, "{skips:?}");
    let shard0 = shards_dir.join("train-0.tar");
    assert!(
        skips[0]
            .0
            .starts_with(&format!("{}#000000.jpg@", shard0.display())),
        "the corrupt member is named by shard and member: {skips:?}"
    );
    assert!(skips[0].1.contains("decode error"), "{skips:?}");
    assert!(
        skips[1].0.contains("train-3.tar#000016.png@") && skips[1].1.starts_with("no label"),
        "{skips:?}"
    );

    // `hint concepts` counts the labelled images of the shards.
    let hierarchy = dir.join("hierarchy.yaml");
    std::fs::write(
        &hierarchy,
        "name: shape\nchildren:\n  shape: [disc, square, stripes]\n",
    )
    .unwrap();
    let stdout = succeeded(
        &hint(&[
            "concepts",
            "--images",
            &names,
            "--hierarchy",
            hierarchy.to_str().unwrap(),
        ]),
        "hint concepts (shards)",
    );
    assert!(
        stdout.contains("4 concepts over 3 labels and 16 images"),
        "{stdout}"
    );

    // Labels as class indices, named by a label map (the sorted class names).
    let indexed = dir.join("indexed");
    std::fs::create_dir(&indexed).unwrap();
    let numbers = pack(
        &dir.join("images"),
        &indexed.join("train"),
        7,
        &["--cls", "index"],
    );
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, loose_meta.labels.join("\n")).unwrap();
    let without_map = failed(
        &hint(&extract_args(
            w,
            &numbers,
            dir.join("no-map").to_str().unwrap(),
        )),
        "hint extract (class indices without a label map)",
    );
    assert!(
        without_map.contains(
            "train-0.tar: 000000.cls holds the class index 0: class indices need a label map"
        ),
        "{without_map}"
    );
    let out = dir.join("from-indices");
    let mut args = extract_args(w, &numbers, out.to_str().unwrap());
    args.extend(["--labels", labels.to_str().unwrap()]);
    succeeded(&hint(&args), "hint extract (class indices)");
    let (_, rows) = read_regions(&out.join("regions-00000.parquet")).unwrap();
    assert!(rows == loose_rows, "class indices give the folder's rows");

    // The same shards on S3: each image is one ranged read.
    let moto = Moto::shared();
    let bucket = "tar-shards-extract";
    moto.create_bucket(bucket);
    for shard in 0..4 {
        let name = format!("train-{shard}.tar");
        moto.put(
            bucket,
            &format!("shards/{name}"),
            &std::fs::read(shards_dir.join(&name)).unwrap(),
        );
    }
    let remote = format!("s3://{bucket}/shards/train-{{0..3}}.tar");
    let out = dir.join("from-s3");
    let stdout = succeeded(
        &moto.hint(
            &dir.join("cache"),
            &extract_args(w, &remote, out.to_str().unwrap()),
        ),
        "hint extract (shards on s3)",
    );
    assert!(stdout.contains("extracted 15 of 17 images"), "{stdout}");
    let (_, rows) = read_regions(&out.join("regions-00000.parquet")).unwrap();
    assert!(
        rows == loose_rows,
        "the shards on S3 give the folder's rows"
    );
    let skips = skipped(&summary(&out));
    assert!(
        skips[0]
            .0
            .starts_with(&format!("s3://{bucket}/shards/train-0.tar#000000.jpg@")),
        "{skips:?}"
    );

    // A shard cut short is an error naming it and the byte where it stops.
    let bytes = std::fs::read(shards_dir.join("train-1.tar")).unwrap();
    std::fs::write(shards_dir.join("train-1.tar"), &bytes[..2000]).unwrap();
    let stderr = failed(
        &hint(&extract_args(w, &names, dir.join("cut").to_str().unwrap())),
        "hint extract (a truncated shard)",
    );
    let shard1 = shards_dir.join("train-1.tar");
    assert!(
        stderr.contains(&format!("{}: at byte ", shard1.display()))
            && stderr.contains("a truncated shard"),
        "{stderr}"
    );
    // A pattern that does not expand says why.
    let stderr = failed(
        &hint(&extract_args(
            w,
            &format!("{}/train-{{3..0}}.tar", shards_dir.display()),
            dir.join("bad").to_str().unwrap(),
        )),
        "hint extract (a bad pattern)",
    );
    assert!(
        stderr.contains("{3..0}: the range runs down from 3 to 0"),
        "{stderr}"
    );
}

/// The job settings both runs share (small: a handful of tasks per stage).
const SECTIONS: &str = r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25
batch_size = 8
images_per_task = 16

[classify]
concepts_per_task = 8

[shapley]
permutations = 16
permutations_per_task = 8"#;

fn run(spec: &Path, workers: &str) {
    succeeded(
        &hint(&[
            "run",
            spec.to_str().unwrap(),
            "--workers",
            workers,
            "--device",
            "cpu",
        ]),
        "hint run",
    );
}

#[test]
fn a_job_on_the_world_in_shards_writes_the_folders_phi() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let tiny = TinyWorld::make(dir, 7, 8, 1);

    let loose_runs = dir.join("loose-runs");
    let loose = dir.join("loose.toml");
    std::fs::write(&loose, tiny.spec("shards", 5, &loose_runs, SECTIONS)).unwrap();
    run(&loose, "1");
    let loose_job = loose_runs.join("job-0001");
    let loose_phi = std::fs::read(loose_job.join("results/phi.csv")).unwrap();

    // Shards of 10 images, so extract tasks (16 images) straddle shards.
    let shards = dir.join("shards");
    std::fs::create_dir(&shards).unwrap();
    let pattern = pack(&tiny.images(), &shards.join("world"), 10, &[]);
    let shard_runs = dir.join("shard-runs");
    // Their region files LZ4-compressed: lossless, so Φ must not change either.
    let sections = SECTIONS.replace(
        "images_per_task = 16\n",
        "images_per_task = 16\ncompression = \"lz4\"\n",
    );
    let spec = tiny
        .spec("shards", 5, &shard_runs, &sections)
        .replace(tiny.images().to_str().unwrap(), &pattern);
    assert!(spec.contains(&pattern) && spec.contains("lz4"));
    let shard_spec = dir.join("shards.toml");
    std::fs::write(&shard_spec, spec).unwrap();
    run(&shard_spec, "2");
    let job = shard_runs.join("job-0001");
    let phi = std::fs::read(job.join("results/phi.csv")).unwrap();
    assert!(
        phi == loose_phi,
        "Φ from shards (LZ4 region files) differs from Φ from the folder"
    );
    let region_file = std::fs::read_dir(job.join("regions"))
        .unwrap()
        .next()
        .expect("a region file")
        .unwrap()
        .path();
    let read: serde_json::Value =
        serde_json::from_str(&run_python("read_regions.py", &[region_file.as_os_str()])).unwrap();
    assert_eq!(read["compression"], serde_json::json!(["LZ4"]), "{read}");

    // `hint check` expands the pattern and looks for every shard.
    let shard_count = std::fs::read_dir(&shards).unwrap().count();
    let check = |pattern: &str| {
        let spec = dir.join("check.toml");
        std::fs::write(
            &spec,
            tiny.spec("shards", 5, &shard_runs, SECTIONS)
                .replace(tiny.images().to_str().unwrap(), pattern),
        )
        .unwrap();
        failed(&hint(&["check", spec.to_str().unwrap()]), "hint check")
    };
    let beyond = shards.join(format!("world-{{0..{}}}.tar", shard_count + 1));
    let stderr = check(beyond.to_str().unwrap());
    assert!(
        stderr.contains(&format!(
            "data.images: 2 of {} shard(s) unusable: not found: {}",
            shard_count + 2,
            shards.join(format!("world-{shard_count}.tar")).display()
        )),
        "{stderr}"
    );
    let stderr = check(shards.join("world-{0..1.tar").to_str().unwrap());
    assert!(stderr.contains("data.images: brace pattern"), "{stderr}");
    assert!(stderr.contains("is never closed"), "{stderr}");

    // The same shards on S3, under a one-byte cache limit: the plan fetches each shard to
    // read its labels, the workers read each image with a ranged GET. Without
    // `images_per_task`, one extract task (and so one region file) per shard.
    let moto = Moto::start();
    moto.create_bucket("shard-data");
    moto.create_bucket("shard-runs");
    for k in 0..shard_count {
        let name = format!("world-{k}.tar");
        moto.put(
            "shard-data",
            &format!("world/{name}"),
            &std::fs::read(shards.join(&name)).unwrap(),
        );
    }
    let read = |p: &Path| std::fs::read(p).unwrap();
    moto.put("shard-data", "model/tiny.safetensors", &read(&tiny.weights));
    moto.put(
        "shard-data",
        "model/hierarchy.yaml",
        &read(&tiny.hierarchy()),
    );
    let remote_pattern = format!("s3://shard-data/world/world-{{0..{}}}.tar", shard_count - 1);
    let remote = dir.join("s3.toml");
    std::fs::write(
        &remote,
        job_spec(
            "shards",
            5,
            [
                remote_pattern.as_str(),
                "s3://shard-data/model/tiny.safetensors",
                "s3://shard-data/model/hierarchy.yaml",
            ],
            "s3://shard-runs/runs",
            &SECTIONS.replace("images_per_task = 16\n", ""),
        ),
    )
    .unwrap();
    let state = dir.join("state");
    succeeded(
        &moto.hint_with_env(
            &dir.join("cache"),
            &[("HINT_CACHE_LIMIT", "1")],
            &[
                "run",
                remote.to_str().unwrap(),
                "--workers",
                "2",
                "--device",
                "cpu",
                "--state",
                state.to_str().unwrap(),
            ],
        ),
        "hint run (shards on s3)",
    );
    let remote_phi = moto
        .get("shard-runs", "runs/job-0001/results/phi.csv")
        .expect("phi.csv");
    assert!(remote_phi == loose_phi, "Φ from shards on S3 differs");
    let region_files = moto.keys("shard-runs", "runs/job-0001/regions/");
    assert_eq!(region_files.len(), shard_count, "{region_files:?}");

    // The plan names each image by its member: the manifest is the folder's, row by row.
    let manifest = |job: &PathBuf| -> Vec<(String, String)> {
        std::fs::read_to_string(job.join("manifest.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let (path, label) = l.rsplit_once(',').unwrap();
                (path.to_string(), label.to_string())
            })
            .collect()
    };
    let (loose_rows, shard_rows) = (manifest(&loose_job), manifest(&job));
    assert_eq!(loose_rows.len(), shard_rows.len());
    for (k, ((_, loose_label), (path, label))) in loose_rows.iter().zip(&shard_rows).enumerate() {
        assert_eq!(label, loose_label, "row {k}");
        let shard = shards.join(format!("world-{}.tar", k / 10));
        assert!(
            path.starts_with(&format!("{}#{k:06}.", shard.display())),
            "row {k}: {path}"
        );
    }
}

/// Writes `<dir>/<format>.tar` in each of `tarfile`'s formats, with a long member name (a
/// ustar prefix, a GNU long name, a pax path) and a non-ASCII one.
const WRITE_FORMATS: &str = r#"
import io, sys, tarfile
out = sys.argv[1]
long_dir = "/".join(["d" * 40] * 3)
members = [
    (long_dir + "/n01_0001.png", b"PNG-one"),
    (long_dir + "/n01_0001.cls", b"n01\n"),
    ("caf\u00e9.jpg", b"JPEG-two"),
    ("caf\u00e9.cls", b"n02"),
]
for name, fmt in [("ustar", tarfile.USTAR_FORMAT), ("gnu", tarfile.GNU_FORMAT),
                  ("pax", tarfile.PAX_FORMAT)]:
    with tarfile.open(f"{out}/{name}.tar", "w", format=fmt) as tar:
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
"#;

#[test]
fn every_tarfile_format_reads_alike() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(crate::support::python())
        .args(["-c", WRITE_FORMATS, dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let long_dir = vec!["d".repeat(40); 3].join("/");
    for format in ["ustar", "gnu", "pax"] {
        let dataset = hint_common::images::scan(&dir.path().join(format!("{format}.tar"))).unwrap();
        let got: Vec<(String, String, Vec<u8>)> = dataset
            .images
            .iter()
            .map(|i| {
                let member = hint_common::images::MemberLocation::parse(&i.path).unwrap();
                let bytes = hint_common::images::read_image(&i.path).unwrap();
                (member.member, i.label.clone(), bytes)
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    format!("{long_dir}/n01_0001.png"),
                    "n01".to_string(),
                    b"PNG-one".to_vec()
                ),
                (
                    "café.jpg".to_string(),
                    "n02".to_string(),
                    b"JPEG-two".to_vec()
                ),
            ],
            "{format}"
        );
    }
}

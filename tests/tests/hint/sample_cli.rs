//! `hint sample` end to end: region files (f32 and f16) → the real binary → a stored sample
//! that does not depend on the number of threads, that pyarrow reads as a region file, and
//! that hint reads back as the sample streaming the files gives — and that `hint classify
//! --samples` trains on, with the classifiers of streaming.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use hint_common::regions::sample::{check_region_set, RegionSampler, SampleConfig};
use hint_common::regions::{ActivationType, RegionFileMeta, RegionRow, RegionRows, RegionWriter};

use crate::support::{failed, hint, noise, python, succeeded, TOY_HIERARCHY, TOY_LABELS};

const D: usize = 24;

fn meta(t: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.4".into(),
        method: "gradient".into(),
        aggregation: "norm".into(),
        threshold: 0.5,
        channels: D,
        height: 6,
        width: 6,
        activation_type: t,
        labels: TOY_LABELS.iter().map(|s| s.to_string()).collect(),
        job_id: None,
        task_id: None,
        extra: BTreeMap::new(),
    }
}

/// Five region files of 20 images each (every position of a 6×6 map), f32 and f16
/// alternating.
fn region_dir(dir: &Path) -> PathBuf {
    let regions = dir.join("regions");
    std::fs::create_dir_all(&regions).unwrap();
    for file in 0..5u64 {
        let t = if file % 2 == 0 {
            ActivationType::F32
        } else {
            ActivationType::F16
        };
        let mut rows = RegionRows::default();
        for id in file * 20..(file + 1) * 20 {
            for y in 0..6u16 {
                for x in 0..6u16 {
                    let act: Vec<f32> = (0..D)
                        .map(|c| noise(5, &[id, u64::from(y), u64::from(x), c as u64]))
                        .collect();
                    rows.push(RegionRow {
                        image_id: id,
                        label: (id % 4) as u32,
                        y,
                        x,
                        saliency: 0.5,
                        foreground: (y + x) % 3 == 0,
                        activation: &act,
                    });
                }
            }
        }
        let path = regions.join(format!("regions-{file:05}.parquet"));
        let mut writer = RegionWriter::create(&path, meta(t)).unwrap();
        writer.write(&rows).unwrap();
        writer.finish().unwrap();
    }
    regions
}

fn sample(regions: &Path, out: &Path, threads: &str) -> std::process::Output {
    hint(&[
        "sample".as_ref(),
        "--regions".as_ref(),
        regions.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--max-per-class".as_ref(),
        "60".as_ref(),
        "--seed".as_ref(),
        "4".as_ref(),
        "--threads".as_ref(),
        threads.as_ref(),
    ])
}

#[test]
fn a_sample_is_the_same_on_any_number_of_threads_and_reads_back_as_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let regions = region_dir(dir.path());
    let one = dir.path().join("one");
    let three = dir.path().join("three");
    let said = succeeded(&sample(&regions, &one, "1"), "hint sample --threads 1");
    assert!(
        said.contains("sampled 3600 rows of 5 region files") && said.contains("on 1 threads"),
        "{said}"
    );
    succeeded(&sample(&regions, &three, "3"), "hint sample --threads 3");
    for file in ["sample.parquet", "sample.json"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(three.join(file)).unwrap(),
            "{file} depends on the number of threads"
        );
    }

    // hint reads it back as the sampler that streams every file in one thread.
    let config = SampleConfig {
        seed: 4,
        max_per_class: 60,
        ..SampleConfig::default()
    };
    let files: Vec<PathBuf> = (0..5)
        .map(|f| regions.join(format!("regions-{f:05}.parquet")))
        .collect();
    check_region_set(&files).unwrap();
    let mut streamed = RegionSampler::new(&config, D, TOY_LABELS.len()).unwrap();
    for file in &files {
        streamed.offer_file(file, &mut |_| {}).unwrap();
    }
    let (stored, _) = RegionSampler::read_from(&one, &config).unwrap();
    assert_eq!(stored.population(), streamed.population());
    assert_eq!(stored.held_rows(), streamed.held_rows());
    assert_eq!(
        stored.held_rows(),
        5 * 60,
        "4 labels and background, 60 each"
    );

    // pyarrow reads it as a region file, activations as f32.
    let script = r#"
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(t.num_rows, t.schema.field("activation").type.value_type, t.schema.metadata[b"activation_type"].decode())
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(one.join("sample.parquet"))
        .output()
        .unwrap();
    let out = succeeded(&out, "pyarrow reading sample.parquet");
    assert_eq!(out.trim(), "300 float f32", "{out}");

    // `hint classify --samples` trains on it: the classifiers of streaming, byte for byte.
    let hierarchy = dir.path().join("hierarchy.json");
    std::fs::write(&hierarchy, TOY_HIERARCHY).unwrap();
    let classify = |out: &str, extra: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec![
            "classify".as_ref(),
            "--regions".as_ref(),
            regions.as_os_str(),
            "--hierarchy".as_ref(),
            hierarchy.as_os_str(),
            "--out".as_ref(),
        ];
        let out = dir.path().join(out);
        args.push(out.as_os_str());
        args.extend(["--max-per-class", "60", "--seed", "4", "--device", "cpu"].map(OsStr::new));
        args.extend(extra);
        (hint(&args), out)
    };
    let (streamed_run, streamed_out) = classify("streamed", &[]);
    succeeded(&streamed_run, "hint classify");
    let (stored_run, stored_out) = classify("stored", &["--samples".as_ref(), one.as_os_str()]);
    succeeded(&stored_run, "hint classify --samples");
    let mut compared = 0;
    for entry in std::fs::read_dir(&streamed_out).unwrap() {
        let name = entry.unwrap().file_name();
        if name.to_string_lossy().ends_with(".safetensors") {
            assert_eq!(
                std::fs::read(streamed_out.join(&name)).unwrap(),
                std::fs::read(stored_out.join(&name)).unwrap(),
                "{name:?}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 5, "{compared} classifiers");
    // Drawn with other settings: refused, naming the sample.
    let (other, _) = classify(
        "other",
        &[
            "--samples".as_ref(),
            one.as_os_str(),
            "--holdout".as_ref(),
            "0.3".as_ref(),
        ],
    );
    let other = failed(&other, "hint classify --samples with other settings");
    assert!(other.contains("sample.json"), "{other}");

    // A second run into the same place, or a directory without region files: clear errors.
    let again = failed(&sample(&regions, &one, "1"), "a sample over a sample");
    assert!(again.contains("already holds a sample"), "{again}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let none = failed(&sample(&empty, &dir.path().join("x"), "1"), "no files");
    assert!(none.contains("no region files"), "{none}");
}

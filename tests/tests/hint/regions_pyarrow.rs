//! The region dataset contract, checked from the outside: files written by
//! [`RegionWriter`] read in pyarrow alone with the documented column types, metadata and
//! values (`tests/python/read_regions.py`).

use std::collections::BTreeMap;
use std::path::Path;

use hint_common::regions::{
    read_regions, ActivationType, Compression, RegionFileMeta, RegionRow, RegionRows, RegionWriter,
};
use serde_json::Value;

use crate::support::run_python;

const D: usize = 5;
const H: usize = 3;
const W: usize = 4;
const ROWS: usize = 37;

fn meta(activation_type: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.4".into(),
        method: "smoothgrad".into(),
        aggregation: "sum_abs".into(),
        threshold: 0.35,
        channels: D,
        height: H,
        width: W,
        activation_type,
        labels: vec![
            "n02084071".into(),
            "n02121808".into(),
            "ünïcode, \"quoted\"".into(),
        ],
        job_id: Some("job-1".into()),
        task_id: Some("task-2".into()),
        extra: BTreeMap::from([
            ("seed".to_string(), "11".to_string()),
            ("samples".to_string(), "3".to_string()),
        ]),
    }
}

/// Rows with varied, exactly checkable values (activations span signs and magnitudes).
fn rows() -> RegionRows {
    let mut rows = RegionRows::with_capacity(ROWS, D);
    for i in 0..ROWS {
        let activation: Vec<f32> = (0..D)
            .map(|c| ((i * D + c) as f32 - 90.0) * 0.731)
            .collect();
        rows.push(RegionRow {
            image_id: 1_000_000_007 + (i / 4) as u64,
            label: (i % 3) as u32,
            y: (i % H) as u16,
            x: ((i * 7) % W) as u16,
            saliency: (i as f32 * 0.1).sin().abs(),
            foreground: i % 3 != 1,
            activation: &activation,
        });
    }
    rows
}

fn write(path: &Path, activation_type: ActivationType, compression: Compression) -> RegionRows {
    let rows = rows();
    let mut writer =
        RegionWriter::create_compressed(path, meta(activation_type), compression).expect("create");
    // Two writes, so that the file holds more than one record batch's worth of calls.
    let (first, second) = split(&rows, 20);
    writer.write(&first).expect("write");
    writer.write(&second).expect("write");
    let summary = writer.finish().expect("finish");
    assert_eq!(summary.rows, ROWS as u64);
    rows
}

fn split(rows: &RegionRows, at: usize) -> (RegionRows, RegionRows) {
    let (mut a, mut b) = (RegionRows::default(), RegionRows::default());
    for i in 0..rows.len() {
        let target = if i < at { &mut a } else { &mut b };
        target.push(rows.row(i, D));
    }
    (a, b)
}

/// `codec`: the name pyarrow gives the file's compression.
fn check_with_pyarrow(
    activation_type: ActivationType,
    value_type: &str,
    compression: Compression,
    codec: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("regions.parquet");
    let written = write(&path, activation_type, compression);
    // What a reader of the file gets back (f16 rounding included) is the reference for
    // the activation values; the other columns must equal what was written.
    let (_, stored) = read_regions(&path).expect("read back");

    let out = run_python("read_regions.py", &[path.as_os_str()]);
    let v: Value = serde_json::from_str(&out).expect("read_regions.py prints JSON");

    let fields: Vec<(String, String, bool)> = v["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
                f["nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected_types = [
        ("image_id", "uint64"),
        ("label", "uint32"),
        ("y", "uint16"),
        ("x", "uint16"),
        ("saliency", "float"),
        ("foreground", "bool"),
    ];
    assert_eq!(fields.len(), 7, "{fields:?}");
    for ((name, ty, nullable), (want_name, want_ty)) in fields.iter().zip(expected_types) {
        assert_eq!((name.as_str(), ty.as_str()), (want_name, want_ty));
        assert!(!nullable, "{name} must be non-nullable");
    }
    assert_eq!(fields[6].0, "activation");
    assert!(
        fields[6].1.starts_with("fixed_size_list<"),
        "{}",
        fields[6].1
    );
    assert!(!fields[6].2, "activation must be non-nullable");
    assert_eq!(v["activation"]["value_type"], value_type);
    assert_eq!(v["activation"]["list_size"], D);

    assert_eq!(v["num_rows"], ROWS);
    assert_eq!(v["compression"], serde_json::json!([codec]));
    let metadata: BTreeMap<String, String> =
        serde_json::from_value(v["metadata"].clone()).expect("metadata is a string map");
    let expected: BTreeMap<String, String> =
        meta(activation_type).to_key_values().into_iter().collect();
    assert_eq!(metadata, expected);
    assert_eq!(metadata["D"], "5");
    assert_eq!(metadata["activation_type"], activation_type.to_string());
    assert_eq!(metadata["hint.param.seed"], "11");
    let labels: Vec<String> = serde_json::from_str(&metadata["labels"]).expect("labels JSON");
    assert_eq!(labels, meta(activation_type).labels);

    let first = &v["first_row"];
    assert_eq!(first["image_id"], written.image_id[0]);
    assert_eq!(first["label"], written.label[0]);
    assert_eq!(first["y"], written.y[0]);
    assert_eq!(first["x"], written.x[0]);
    assert_eq!(
        first["saliency"].as_f64(),
        Some(f64::from(written.saliency[0]))
    );
    assert_eq!(first["foreground"], written.foreground[0]);
    let first_activation: Vec<f64> = serde_json::from_value(first["activation"].clone()).unwrap();
    let stored_first: Vec<f64> = stored.activation[..D].iter().map(|&a| a.into()).collect();
    assert_eq!(first_activation, stored_first);

    let sums = &v["sums"];
    assert_eq!(sums["image_id"], written.image_id.iter().sum::<u64>());
    assert_eq!(
        sums["label"],
        written.label.iter().map(|&l| u64::from(l)).sum::<u64>()
    );
    assert_eq!(
        sums["y"],
        written.y.iter().map(|&y| u64::from(y)).sum::<u64>()
    );
    assert_eq!(
        sums["x"],
        written.x.iter().map(|&x| u64::from(x)).sum::<u64>()
    );
    let close = |got: &Value, want: f64| {
        let got = got.as_f64().expect("a number");
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    };
    close(
        &sums["saliency"],
        written.saliency.iter().map(|&s| f64::from(s)).sum(),
    );
    close(
        &sums["activation"],
        stored.activation.iter().map(|&a| f64::from(a)).sum(),
    );
    let foreground = written.foreground.iter().filter(|&&f| f).count();
    assert_eq!(v["foreground_rows"], foreground);

    // The columns besides activation round-trip exactly; activations within the type.
    assert_eq!(stored.image_id, written.image_id);
    assert_eq!(stored.saliency, written.saliency);
    for (got, want) in stored.activation.iter().zip(&written.activation) {
        let tolerance = match activation_type {
            ActivationType::F32 => 0.0,
            ActivationType::F16 => want.abs() * 4.9e-4,
        };
        assert!((got - want).abs() <= tolerance, "{got} vs {want}");
    }
}

#[test]
fn f32_region_files_read_in_pyarrow() {
    check_with_pyarrow(ActivationType::F32, "float", Compression::Zstd, "ZSTD");
}

#[test]
fn f16_region_files_read_in_pyarrow() {
    check_with_pyarrow(ActivationType::F16, "halffloat", Compression::Zstd, "ZSTD");
}

/// Parquet's `LZ4_RAW` codec, which pyarrow calls LZ4.
#[test]
fn lz4_region_files_read_in_pyarrow() {
    check_with_pyarrow(ActivationType::F16, "halffloat", Compression::Lz4, "LZ4");
}

/// A file as `hint extract` writes them — VGG-16 `features.26`-wide f16 rows, zstd, written
/// a batch of images at a time, over several row groups of many pages each (hint encodes
/// the activation pages itself) — reads in pyarrow, DuckDB and polars with every row's
/// activations in place.
#[test]
fn many_pages_and_row_groups_read_in_pyarrow_duckdb_and_polars() {
    check_many_pages(ActivationType::F16, Compression::Zstd);
}

/// The same as f32 with LZ4.
#[test]
fn many_f32_lz4_pages_read_in_pyarrow_duckdb_and_polars() {
    check_many_pages(ActivationType::F32, Compression::Lz4);
}

fn check_many_pages(activation_type: ActivationType, compression: Compression) {
    const CHANNELS: usize = 512;
    const ROWS: usize = 33_000;
    const WRITE: usize = 64 * 147;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("regions.parquet");
    let meta = RegionFileMeta {
        channels: CHANNELS,
        height: 14,
        width: 14,
        ..meta(activation_type)
    };
    let mut writer = RegionWriter::create_compressed(&path, meta, compression).expect("create");
    for start in (0..ROWS).step_by(WRITE) {
        let mut part = RegionRows::with_capacity(WRITE, CHANNELS);
        for i in start..(start + WRITE).min(ROWS) {
            let activation: Vec<f32> = (0..CHANNELS)
                .map(|c| ((i * 31 + c * 7) % 997) as f32 * 0.01 - 3.0)
                .collect();
            part.push(RegionRow {
                image_id: (i / 147) as u64,
                label: (i % 3) as u32,
                y: (i % 14) as u16,
                x: (i / 14 % 14) as u16,
                saliency: 0.5,
                foreground: i % 2 == 0,
                activation: &activation,
            });
        }
        writer.write(&part).expect("write");
    }
    writer.finish().expect("finish");
    let (_, stored) = read_regions(&path).expect("read back");
    assert_eq!(stored.len(), ROWS);

    let out = run_python("read_regions.py", &[path.as_os_str()]);
    let v: Value = serde_json::from_str(&out).expect("read_regions.py prints JSON");
    assert_eq!(v["num_rows"], ROWS);
    assert!(
        v["row_groups"].as_u64().unwrap() >= 2,
        "{}",
        v["row_groups"]
    );
    assert_eq!(v["activation_offset_index"], true);
    let weighted: f64 = stored
        .activation
        .chunks(CHANNELS)
        .enumerate()
        .map(|(i, row)| (i + 1) as f64 * row.iter().map(|&a| f64::from(a)).sum::<f64>())
        .sum();
    let got = v["activation_row_weighted"].as_f64().expect("a number");
    assert!(
        (got - weighted).abs() <= 1e-9 * weighted.abs(),
        "{got} vs {weighted}"
    );
    let elsewhere = run_python("read_regions_elsewhere.py", &[path.as_os_str()]);
    let v: Value = serde_json::from_str(&elsewhere).expect("read_regions_elsewhere.py prints JSON");
    for engine in ["duckdb", "polars"] {
        assert_eq!(v[engine]["num_rows"], ROWS, "{engine}");
        let got = v[engine]["activation_row_weighted"]
            .as_f64()
            .expect("a number");
        assert!(
            (got - weighted).abs() <= 1e-9 * weighted.abs(),
            "{engine}: {got} vs {weighted}"
        );
    }
    // And what hint reads back is what was written (to f16's precision where f16).
    for (i, row) in stored.activation.chunks(CHANNELS).enumerate().step_by(977) {
        for (c, &a) in row.iter().enumerate() {
            let want = ((i * 31 + c * 7) % 997) as f32 * 0.01 - 3.0;
            assert!(
                (a - want).abs() <= want.abs() * 4.9e-4,
                "row {i} channel {c}: {a} vs {want}"
            );
        }
    }
}

/// A file another tool wrote by the README's schema, without `activation_type` in its
/// metadata: the `activation` column's type says it.
fn read_a_file_written_by_pyarrow(kind: &str, activation_type: ActivationType) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("regions-00000.parquet");
    run_python(
        "write_regions.py",
        &[path.as_os_str(), std::ffi::OsStr::new(kind)],
    );
    let (meta, rows) = read_regions(&path).expect("hint reads the file");
    assert_eq!(meta.activation_type, activation_type);
    assert_eq!((meta.channels, meta.height, meta.width), (4, 2, 2));
    assert_eq!(meta.labels, vec!["cat", "dog"]);
    assert_eq!(rows.len(), 6);
    assert_eq!(rows.image_id, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(rows.foreground.iter().filter(|f| **f).count(), 2);
    // Row 4 is image 1, position 1: 1.1, 2.1, 3.1, 4.1 (f16 rounds them).
    let activation = &rows.activation[4 * 4..5 * 4];
    for (k, &v) in activation.iter().enumerate() {
        assert!((v - (1.1 + k as f32)).abs() < 2e-3, "{activation:?}");
    }
}

#[test]
fn region_files_of_another_tool_read_without_activation_type_metadata() {
    read_a_file_written_by_pyarrow("f32", ActivationType::F32);
    read_a_file_written_by_pyarrow("f16", ActivationType::F16);
}

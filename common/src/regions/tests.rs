//! Round trips through real Parquet files in a temporary directory.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn meta(d: usize, t: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "vgg19".into(),
        layer: "features.30".into(),
        method: "guided_backprop".into(),
        aggregation: "sum_abs".into(),
        threshold: 0.3,
        channels: d,
        height: 4,
        width: 5,
        activation_type: t,
        labels: vec!["n01".into(), "n02".into(), "cat \"tabby\"".into()],
        job_id: Some("job-7".into()),
        task_id: None,
        extra: BTreeMap::from([
            ("seed".to_string(), "42".to_string()),
            ("background_ratio".to_string(), "0.5".to_string()),
        ]),
    }
}

fn sample_rows(n: usize, d: usize) -> RegionRows {
    let mut rows = RegionRows::default();
    for i in 0..n {
        let activation: Vec<f32> = (0..d).map(|c| (i * d + c) as f32 * 0.37 - 5.0).collect();
        rows.push(RegionRow {
            image_id: (i / 3) as u64,
            label: (i % 3) as u32,
            y: (i % 4) as u16,
            x: (i % 5) as u16,
            saliency: i as f32 / n as f32,
            foreground: i % 2 == 0,
            activation: &activation,
        });
    }
    rows
}

#[test]
fn round_trip_f32_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.parquet");
    let (d, n) = (6, 100);
    let rows = sample_rows(n, d);
    let mut writer = RegionWriter::create(&path, meta(d, ActivationType::F32)).unwrap();
    assert!(partial_path(&path).exists());
    assert!(!path.exists(), "final name appears only on finish");
    // Two writes: batches append.
    let mut first = RegionRows::default();
    let mut second = RegionRows::default();
    for i in 0..n {
        let target = if i < 40 { &mut first } else { &mut second };
        target.push(rows.row(i, d));
    }
    writer.write(&first).unwrap();
    writer.write(&RegionRows::default()).unwrap();
    writer.write(&second).unwrap();
    let summary = writer.finish().unwrap();
    assert_eq!(summary.rows, n as u64);
    assert_eq!(summary.foreground_rows, 50);
    assert_eq!(summary.background_rows, 50);
    assert!(!partial_path(&path).exists());
    let (back_meta, back) = read_regions(&path).unwrap();
    assert_eq!(back_meta, meta(d, ActivationType::F32));
    assert_eq!(back, rows);
}

#[test]
fn round_trip_f16_within_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.parquet");
    let (d, n) = (3, 50);
    let rows = sample_rows(n, d);
    let mut writer = RegionWriter::create(&path, meta(d, ActivationType::F16)).unwrap();
    writer.write(&rows).unwrap();
    writer.finish().unwrap();
    let (back_meta, back) = read_regions(&path).unwrap();
    assert_eq!(back_meta.activation_type, ActivationType::F16);
    assert_eq!(back.image_id, rows.image_id);
    assert_eq!(back.saliency, rows.saliency);
    assert_eq!(back.activation.len(), rows.activation.len());
    for (a, b) in back.activation.iter().zip(&rows.activation) {
        // f16 has an 11-bit significand: relative error ≤ 2^-11.
        assert!((a - b).abs() <= b.abs() * 4.9e-4 + 1e-7, "{a} vs {b}");
    }
}

#[test]
fn rows_paged_across_writes_come_back_whole() {
    // 4,096 channels: a 1 MiB page holds 64 rows of f32 or 128 of f16, so writes of 150
    // rows end inside pages and pages hold the rows of two writes; f32 exact, f16 bit-equal
    // to its conversion.
    let (d, n) = (4096, 300);
    let rows = sample_rows(n, d);
    for t in [ActivationType::F32, ActivationType::F16] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let mut writer = RegionWriter::create(&path, meta(d, t)).unwrap();
        assert!(writer.encodes_activation_pages());
        for start in [0, 150] {
            let mut part = RegionRows::default();
            for i in start..start + 150 {
                part.push(rows.row(i, d));
            }
            writer.write(&part).unwrap();
        }
        assert_eq!(writer.finish().unwrap().rows, n as u64);
        let (_, back) = read_regions(&path).unwrap();
        assert_eq!(
            (&back.image_id, &back.y, &back.x),
            (&rows.image_id, &rows.y, &rows.x)
        );
        let halved = |v: f32| half::f16::from_f32(v).to_f32();
        for (i, (a, b)) in back.activation.iter().zip(&rows.activation).enumerate() {
            let expected = if t == ActivationType::F16 {
                halved(*b)
            } else {
                *b
            };
            assert_eq!(*a, expected, "{t:?}: value {i} (row {})", i / d);
        }
    }
}

#[test]
fn metadata_round_trips_and_reports_problems() {
    let mut m = meta(8, ActivationType::F16);
    m.task_id = Some("task-3".into());
    m.threshold = 0.1 + 0.2;
    let kv = m.to_key_values();
    let pairs = || kv.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    assert_eq!(RegionFileMeta::from_key_values(pairs()).unwrap(), m);
    assert!(kv.iter().any(|(k, v)| k == "hint.param.seed" && v == "42"));
    assert!(kv.iter().any(|(k, v)| k == "D" && v == "8"));

    let without_layer = pairs().filter(|(k, _)| *k != "layer");
    assert_eq!(
        RegionFileMeta::from_key_values(without_layer),
        Err(MetadataProblem::Missing("layer"))
    );
    let bad_d = pairs().map(|(k, v)| if k == "D" { (k, "eight") } else { (k, v) });
    let err = RegionFileMeta::from_key_values(bad_d).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key 'D' = 'eight': expected a non-negative integer"
    );
    let bad_labels = pairs().map(|(k, v)| if k == "labels" { (k, "[1") } else { (k, v) });
    assert!(matches!(
        RegionFileMeta::from_key_values(bad_labels),
        Err(MetadataProblem::BadValue { key, .. }) if key == "labels"
    ));
}

#[test]
fn dropping_an_unfinished_writer_removes_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.parquet");
    let mut writer = RegionWriter::create(&path, meta(2, ActivationType::F32)).unwrap();
    writer.write(&sample_rows(10, 2)).unwrap();
    assert!(partial_path(&path).exists());
    drop(writer);
    assert!(!partial_path(&path).exists());
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn wrong_activation_length_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    let mut writer = RegionWriter::create(&path, meta(4, ActivationType::F32)).unwrap();
    let mut rows = sample_rows(5, 4);
    rows.activation.pop();
    let err = writer.write(&rows).unwrap_err();
    assert!(
        matches!(
            err,
            RegionsError::RowShape {
                column: "activation",
                expected: 20,
                actual: 19,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.parquet"), "{err}");
    let mut rows = sample_rows(5, 4);
    rows.saliency.pop();
    assert!(matches!(
        writer.write(&rows),
        Err(RegionsError::RowShape {
            column: "saliency",
            ..
        })
    ));
}

#[test]
fn out_of_range_positions_and_labels_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("range.parquet");
    let mut writer = RegionWriter::create(&path, meta(1, ActivationType::F32)).unwrap();
    let mut rows = sample_rows(3, 1);
    rows.x[2] = 5;
    assert!(matches!(
        writer.write(&rows),
        Err(RegionsError::OutOfRange {
            row: 2,
            column: "x",
            value: 5,
            limit: 5,
            ..
        })
    ));
    let mut rows = sample_rows(3, 1);
    rows.label[1] = 3;
    assert!(matches!(
        writer.write(&rows),
        Err(RegionsError::OutOfRange {
            row: 1,
            column: "label",
            ..
        })
    ));
}

#[test]
fn invalid_sizes_are_rejected_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.parquet");
    let err = RegionWriter::create(&path, meta(0, ActivationType::F32)).unwrap_err();
    assert!(matches!(err, RegionsError::Metadata { .. }), "{err:?}");
    assert!(!partial_path(&path).exists());
}

#[test]
fn reading_a_missing_file_names_it() {
    let err = read_regions(Path::new("/nonexistent/r.parquet")).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/r.parquet: "),
        "{err}"
    );
}

#[test]
fn activation_type_parses_and_displays() {
    for t in [ActivationType::F32, ActivationType::F16] {
        assert_eq!(t.to_string().parse::<ActivationType>(), Ok(t));
    }
    assert!("f64".parse::<ActivationType>().is_err());
}

#[test]
fn empty_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    let writer = RegionWriter::create(&path, meta(3, ActivationType::F16)).unwrap();
    let summary = writer.finish().unwrap();
    assert_eq!(summary.rows, 0);
    let (_, rows) = read_regions(&path).unwrap();
    assert!(rows.is_empty());
}

/// Found by the property tests (`common/tests/properties/regions_meta.rs`): a file written
/// by another tool whose metadata gives sizes the schema cannot have (`D` beyond Arrow's
/// i32 list size, `H` = 0) is a metadata error naming the key, not a panic.
#[test]
fn reading_sizes_out_of_range_is_a_metadata_error() {
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-tool.parquet");
    for (key, value) in [("D", "2147483648"), ("H", "0"), ("W", "65537")] {
        let schema = Arc::new(region_schema(2, ActivationType::F32));
        let kv = meta(2, ActivationType::F32)
            .to_key_values()
            .into_iter()
            .map(|(k, v)| KeyValue::new(k.clone(), if k == key { value.into() } else { v }))
            .collect();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        writer
            .write(&arrow::record_batch::RecordBatch::new_empty(schema))
            .unwrap();
        writer.close().unwrap();
        let err = read_region_meta(&path).unwrap_err();
        assert!(
            matches!(&err, RegionsError::Metadata { problem: MetadataProblem::BadValue { key: k, .. }, .. } if k == key),
            "{err}"
        );
    }
}

/// Activations read straight from their data pages equal Arrow's reading, value for value:
/// f32 and f16, version 1 and 2 pages, zstd and LZ4, pages and record batches ending inside
/// rows, several row groups; a file with a dictionary is read by Arrow. Version 1 pages
/// without a dictionary are hint's own ([`ActivationChunks`](super::activation_chunk)), the
/// others parquet-rs's: Arrow decoding their levels checks hint's.
#[test]
fn activations_read_from_pages_equal_arrows() {
    use parquet::basic::Encoding;
    use parquet::file::properties::WriterVersion;
    let (d, n) = (40, 3000);
    let rows = sample_rows(n, d);
    for t in [ActivationType::F32, ActivationType::F16] {
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            for (dictionary, compression) in [false, true]
                .into_iter()
                .flat_map(|d| [(d, Compression::Zstd), (d, Compression::Lz4)])
            {
                let case = format!("{t:?} {version:?} dictionary {dictionary} {compression}");
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("r.parquet");
                let activation = parquet::schema::types::ColumnPath::new(vec![
                    "activation".into(),
                    "list".into(),
                    "item".into(),
                ]);
                let mut writer =
                    RegionWriter::create_with(&path, meta(d, t), compression, |props| {
                        props
                            .set_writer_version(version)
                            .set_max_row_group_row_count(Some(700))
                            .set_data_page_size_limit(4096)
                            .set_column_dictionary_enabled(activation.clone(), dictionary)
                            .set_column_encoding(activation, Encoding::PLAIN)
                    })
                    .unwrap();
                assert_eq!(
                    writer.encodes_activation_pages(),
                    version == WriterVersion::PARQUET_1_0 && !dictionary,
                    "{case}"
                );
                writer.write(&rows).unwrap();
                writer.finish().unwrap();
                let file = std::fs::File::open(&path).unwrap();
                let metadata = parquet::file::reader::FileReader::metadata(
                    &parquet::file::reader::SerializedFileReader::new(file).unwrap(),
                )
                .clone();
                assert_eq!(metadata.num_row_groups(), 5, "{case}");
                for group in metadata.row_groups() {
                    for chunk in group.columns() {
                        assert_eq!(chunk.compression(), compression.parquet(), "{case}");
                    }
                }
                let (_, arrow) = read_regions(&path).unwrap();
                let reader = open_regions(&path, RegionProjection::ALL, 333).unwrap();
                assert_eq!(reader.reads_pages(), !dictionary, "{case}");
                let mut row = 0;
                let mut out = vec![0.0f32; d];
                for batch in reader {
                    let batch = batch.unwrap();
                    for i in 0..batch.len() {
                        batch.activation_into(i, &mut out);
                        let want = &arrow.activation[(row + i) * d..(row + i + 1) * d];
                        assert_eq!(out.as_slice(), want, "{case}, row {}", row + i);
                        assert_eq!(batch.image_id()[i], arrow.image_id[row + i], "{case}");
                    }
                    row += batch.len();
                }
                assert_eq!(row, n, "{case}");
            }
        }
    }
}

#[test]
fn row_groups_encoded_apart_keep_the_rows_in_order() {
    // Writes of 37 rows into groups of 100: a group fills across writes, a write spans two
    // groups, and there are more groups than encode at once — one at a time, six, or the
    // default — giving the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let (d, n) = (5, 1333);
    let rows = sample_rows(n, d);
    let write = |name: &str, groups: Option<usize>| {
        let path = dir.path().join(name);
        let mut writer = RegionWriter::create_with(
            &path,
            meta(d, ActivationType::F32),
            Compression::Zstd,
            |props| props.set_max_row_group_row_count(Some(100)),
        )
        .unwrap();
        if let Some(groups) = groups {
            writer.set_groups_encoding(groups);
        }
        for start in (0..n).step_by(37) {
            let mut part = RegionRows::default();
            for i in start..(start + 37).min(n) {
                part.push(rows.row(i, d));
            }
            writer.write(&part).unwrap();
        }
        assert_eq!(writer.finish().unwrap().rows, n as u64);
        path
    };
    let path = write("g.parquet", None);
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let groups: Vec<i64> = parquet::file::reader::FileReader::metadata(&reader)
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups.len(), 14);
    assert!(
        groups[..13].iter().all(|&r| r == 100) && groups[13] == 33,
        "{groups:?}"
    );
    let (_, back) = read_regions(&path).unwrap();
    assert_eq!(back, rows);
    let bytes = std::fs::read(&path).unwrap();
    for groups in [1, 6] {
        let other = write(&format!("g{groups}.parquet"), Some(groups));
        assert!(std::fs::read(other).unwrap() == bytes, "{groups} at once");
    }
}

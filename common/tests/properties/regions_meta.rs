//! A region file's key/value metadata: `RegionFileMeta::from_key_values`, and region files
//! whose footer holds arbitrary metadata.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use hint_common::regions::{self, ActivationType, MetadataProblem, RegionFileMeta, PARAM_PREFIX};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;

/// The keys `from_key_values` requires.
const REQUIRED: [&str; 10] = [
    "model",
    "layer",
    "method",
    "aggregation",
    "threshold",
    "D",
    "H",
    "W",
    "activation_type",
    "labels",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&REQUIRED[..]).prop_map(String::from),
        1 => proptest::sample::select(&["job_id", "task_id", "hint.param.seed", "hint.param.", "ARROW:schema", "d", ""][..])
            .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Values that are valid for some key and not for others, and arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(
            &[
                "", "f32", "f16", "F32", "0", "1", "7", "-1", "+3", "65536", "65537", "2147483647",
                "2147483648", "4294967296", "18446744073709551615", "18446744073709551616",
                "NaN", "inf", "-inf", "0.5", "1e40", "[]", "[\"cat\",\"dog\"]", "[1]", "[\"a\"",
                "{}", "null", "vgg16", "features.7",
            ][..]
        )
        .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Sizes at the edges of what the schema holds (`D` fits an i32, `H` and `W` a u16 + 1).
const SIZE_EDGES: [&str; 8] = [
    "0",
    "1",
    "65536",
    "65537",
    "2147483647",
    "2147483648",
    "4294967296",
    "18446744073709551615",
];

/// A valid map (so reading gets past the first missing key) changed by arbitrary entries.
fn metadata_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    use std::collections::BTreeSet;
    let kept = prop_oneof![
        Just(REQUIRED.into_iter().collect()),
        proptest::collection::btree_set(proptest::sample::select(&REQUIRED[..]), 0..=10),
    ];
    (kept, proptest::collection::btree_map(key(), value(), 0..4)).prop_map(
        |(valid, changes): (BTreeSet<&str>, _)| {
            let good = good_meta(2, ActivationType::F32).to_key_values();
            let mut map: BTreeMap<String, String> = good
                .into_iter()
                .filter(|(k, _)| valid.contains(&k.as_str()))
                .collect();
            map.extend(changes);
            map
        },
    )
}

fn good_meta(d: usize, activation_type: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.7".into(),
        method: "gradient".into(),
        aggregation: "norm".into(),
        threshold: 0.5,
        channels: d,
        height: 4,
        width: 4,
        activation_type,
        labels: vec!["cat".into(), "dog".into()],
        job_id: None,
        task_id: None,
        extra: BTreeMap::new(),
    }
}

fn meta() -> impl Strategy<Value = RegionFileMeta> {
    (
        (
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
        ),
        any::<f32>().prop_filter("NaN is not equal to itself", |t| !t.is_nan()),
        (any::<usize>(), any::<usize>(), any::<usize>()),
        proptest::sample::select(&[ActivationType::F32, ActivationType::F16][..]),
        proptest::collection::vec(any::<String>(), 0..4),
        (any::<Option<String>>(), any::<Option<String>>()),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
    )
        .prop_map(
            |(
                (model, layer, method, aggregation),
                threshold,
                (channels, height, width),
                activation_type,
                labels,
                (job_id, task_id),
                extra,
            )| {
                RegionFileMeta {
                    model,
                    layer,
                    method,
                    aggregation,
                    threshold,
                    channels,
                    height,
                    width,
                    activation_type,
                    labels,
                    job_id,
                    task_id,
                    extra,
                }
            },
        )
}

/// Writes a region file with the region schema of `d` channels stored as `t` and no rows,
/// whose footer holds exactly `pairs` (and the Arrow schema the writer adds).
fn write_region_file(path: &Path, d: usize, t: ActivationType, pairs: &BTreeMap<String, String>) {
    let schema = Arc::new(regions::region_schema(d, t));
    let kv = pairs
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    writer.write(&RecordBatch::new_empty(schema)).unwrap();
    writer.close().unwrap();
}

proptest! {
    #![proptest_config(crate::config(64))]

    /// Any metadata the types hold reads back from its key/value pairs.
    #[test]
    fn metadata_round_trips(meta in meta()) {
        let kv = meta.to_key_values();
        let back = RegionFileMeta::from_key_values(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert_eq!(back, Ok(meta));
    }

    /// Arbitrary maps: a problem that names a key of the map (or a required key it lacks)
    /// and says what was expected; or metadata that writes back to the same pairs.
    #[test]
    fn arbitrary_metadata_maps_give_clear_problems(map in metadata_map()) {
        let read = RegionFileMeta::from_key_values(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match read {
            Err(MetadataProblem::Missing(key)) => {
                prop_assert!(REQUIRED.contains(&key) && !map.contains_key(key), "{key}");
            }
            Err(MetadataProblem::BadValue { ref key, ref value, expected }) => {
                prop_assert_eq!(map.get(key), Some(value));
                let message = read.as_ref().unwrap_err().to_string();
                prop_assert!(message.contains(key.as_str()) && message.contains(expected), "{}", message);
            }
            Ok(meta) => {
                for key in REQUIRED {
                    prop_assert!(map.contains_key(key));
                }
                let again: BTreeMap<String, String> = meta.to_key_values().into_iter().collect();
                let back = RegionFileMeta::from_key_values(again.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                prop_assert_eq!(back.map(|m| m.to_key_values()), Ok(meta.to_key_values()));
                for (k, v) in &map {
                    if let Some(extra) = k.strip_prefix(PARAM_PREFIX) {
                        prop_assert_eq!(meta.extra.get(extra), Some(v));
                    }
                }
            }
        }
    }

    /// A region file whose footer holds arbitrary metadata (sizes out of range, a `D` that
    /// is not the schema's, a wrong activation type, missing keys) is an error naming the
    /// file, never a panic; one that reads has the schema's `D` and type.
    #[test]
    fn region_files_with_arbitrary_metadata_never_panic(
        map in metadata_map(),
        d in 1usize..4,
        f16 in any::<bool>(),
        sizes in proptest::collection::vec(proptest::option::of(proptest::sample::select(&SIZE_EDGES[..])), 3),
    ) {
        let t = if f16 { ActivationType::F16 } else { ActivationType::F32 };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("regions.parquet");
        let mut map = map;
        // The schema's own D unless a size at the edge replaces it (so reading gets as far
        // as the sizes); H and W at their edges too.
        if map.get("D").is_some_and(|v| v == "2") {
            map.insert("D".into(), d.to_string());
        }
        for (key, size) in ["D", "H", "W"].into_iter().zip(sizes) {
            if let (true, Some(size)) = (map.contains_key(key), size) {
                map.insert(key.into(), size.into());
            }
        }
        write_region_file(&path, d, t, &map);
        for read in [
            regions::read_region_meta(&path).map(|(meta, _)| meta),
            regions::read_regions(&path).map(|(meta, _)| meta),
        ] {
            match read {
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.contains(&path.display().to_string()), "{message}");
                }
                Ok(meta) => {
                    prop_assert_eq!(meta.channels, d);
                    prop_assert_eq!(meta.activation_type, t);
                    prop_assert!(meta.height >= 1 && meta.height <= 65536, "H = {}", meta.height);
                    prop_assert!(meta.width >= 1 && meta.width <= 65536, "W = {}", meta.width);
                }
            }
        }
    }
}

//! A region file's key/value metadata and the activation storage type.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use arrow::datatypes::DataType;

/// Prefix of metadata keys that carry [`RegionFileMeta::extra`] entries: the extra key `seed`
/// is stored as `hint.param.seed`.
pub const PARAM_PREFIX: &str = "hint.param.";

/// What is wrong with a region file's key/value metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataProblem {
    /// A required key is absent.
    #[error("missing key '{0}'")]
    Missing(&'static str),
    /// A key's value does not parse or is not allowed.
    #[error("key '{key}' = '{value}': expected {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// Its value as stored.
        value: String,
        /// What the value should have been.
        expected: &'static str,
    },
}

/// How activations are stored: `f16` halves the files at about three significant digits.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ActivationType {
    /// 32-bit floats, exact.
    #[default]
    F32,
    /// 16-bit IEEE half floats.
    F16,
}

impl ActivationType {
    /// The Arrow type of one activation value.
    pub fn arrow_type(self) -> DataType {
        match self {
            ActivationType::F32 => DataType::Float32,
            ActivationType::F16 => DataType::Float16,
        }
    }

    /// Bytes per activation value.
    pub fn bytes(self) -> usize {
        match self {
            ActivationType::F32 => 4,
            ActivationType::F16 => 2,
        }
    }
}

impl fmt::Display for ActivationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ActivationType::F32 => "f32",
            ActivationType::F16 => "f16",
        })
    }
}

impl FromStr for ActivationType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(ActivationType::F32),
            "f16" => Ok(ActivationType::F16),
            other => Err(format!(
                "unknown activation type '{other}' (expected f32 or f16)"
            )),
        }
    }
}

/// How a region file's pages are compressed. Readers need not be told: Parquet records the
/// codec per column chunk.
///
/// zstd (level 1) makes the smaller files; LZ4 (Parquet's `LZ4_RAW`) files are about a third
/// larger but decompress about three times faster, which is what bounds the sample stage
/// on a machine with few cores and a fast disk (`scripts/bench_sample.py` measures both).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd level 1.
    #[default]
    Zstd,
    /// LZ4 block compression (Parquet's `LZ4_RAW` codec).
    Lz4,
}

/// The zstd level of [`Compression::Zstd`]: most of zstd's gain on float data at close to
/// snappy's speed.
pub(super) const ZSTD_LEVEL: i32 = 1;

impl Compression {
    /// The Parquet codec that implements it.
    pub fn parquet(self) -> parquet::basic::Compression {
        match self {
            Compression::Zstd => parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
            ),
            Compression::Lz4 => parquet::basic::Compression::LZ4_RAW,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        })
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zstd" => Ok(Compression::Zstd),
            "lz4" => Ok(Compression::Lz4),
            other => Err(format!(
                "unknown compression '{other}' (expected zstd or lz4)"
            )),
        }
    }
}

/// The file-level metadata of a region file, stored as Parquet key/value metadata.
///
/// Keys: `model`, `layer`, `method`, `aggregation`, `threshold`, `D`, `H`, `W`,
/// `activation_type`, `labels` (a JSON list of strings), `job_id` and `task_id` (only when
/// set), and each [`extra`](Self::extra) entry under [`PARAM_PREFIX`]. Other keys (such as
/// the `ARROW:schema` the writer adds) are ignored on reading.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionFileMeta {
    /// Model architecture name (e.g. `vgg19`).
    pub model: String,
    /// Layer the activations come from, in torchvision naming (e.g. `features.30`).
    pub layer: String,
    /// Saliency method (e.g. `guided_backprop`).
    pub method: String,
    /// Channel aggregation used to build the saliency map (e.g. `sum_abs`).
    pub aggregation: String,
    /// Threshold on the normalised saliency that defines the responsible region.
    pub threshold: f32,
    /// `D`: channels of the layer, the length of each activation vector.
    pub channels: usize,
    /// `H`: feature-map height.
    pub height: usize,
    /// `W`: feature-map width.
    pub width: usize,
    /// How activations are stored.
    pub activation_type: ActivationType,
    /// Class names by label index.
    pub labels: Vec<String>,
    /// The job that produced the file, when run by the coordinator.
    pub job_id: Option<String>,
    /// The task that produced the file, when run by the coordinator.
    pub task_id: Option<String>,
    /// Method parameters, seed, background ratio… stored under [`PARAM_PREFIX`].
    pub extra: BTreeMap<String, String>,
}

impl RegionFileMeta {
    /// The metadata as key/value pairs, in a fixed order.
    pub fn to_key_values(&self) -> Vec<(String, String)> {
        let labels = serde_json::to_string(&self.labels).expect("a list of strings serialises");
        let mut kv: Vec<(String, String)> = [
            ("model", self.model.clone()),
            ("layer", self.layer.clone()),
            ("method", self.method.clone()),
            ("aggregation", self.aggregation.clone()),
            // Display of f32 is the shortest string that parses back to the same value.
            ("threshold", self.threshold.to_string()),
            ("D", self.channels.to_string()),
            ("H", self.height.to_string()),
            ("W", self.width.to_string()),
            ("activation_type", self.activation_type.to_string()),
            ("labels", labels),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(job) = &self.job_id {
            kv.push(("job_id".into(), job.clone()));
        }
        if let Some(task) = &self.task_id {
            kv.push(("task_id".into(), task.clone()));
        }
        for (k, v) in &self.extra {
            kv.push((format!("{PARAM_PREFIX}{k}"), v.clone()));
        }
        kv
    }

    /// Parses metadata written by [`to_key_values`](Self::to_key_values); unknown keys are
    /// ignored so that other tools may add their own.
    pub fn from_key_values<'a, I>(pairs: I) -> Result<Self, MetadataProblem>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let map: BTreeMap<&str, &str> = pairs.into_iter().collect();
        let get = |key: &'static str| map.get(key).copied().ok_or(MetadataProblem::Missing(key));
        let bad = |key: &str, value: &str, expected: &'static str| MetadataProblem::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let count = |key: &'static str| -> Result<usize, MetadataProblem> {
            let value = get(key)?;
            value
                .parse::<usize>()
                .map_err(|_| bad(key, value, "a non-negative integer"))
        };
        let threshold_str = get("threshold")?;
        let threshold = threshold_str
            .parse::<f32>()
            .map_err(|_| bad("threshold", threshold_str, "a number"))?;
        let type_str = get("activation_type")?;
        let activation_type = type_str
            .parse()
            .map_err(|_| bad("activation_type", type_str, "f32 or f16"))?;
        let labels_str = get("labels")?;
        let labels = serde_json::from_str::<Vec<String>>(labels_str)
            .map_err(|_| bad("labels", labels_str, "a JSON list of strings"))?;
        let extra = map
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(PARAM_PREFIX)
                    .map(|k| (k.to_string(), v.to_string()))
            })
            .collect();
        Ok(RegionFileMeta {
            model: get("model")?.to_string(),
            layer: get("layer")?.to_string(),
            method: get("method")?.to_string(),
            aggregation: get("aggregation")?.to_string(),
            threshold,
            channels: count("D")?,
            height: count("H")?,
            width: count("W")?,
            activation_type,
            labels,
            job_id: map.get("job_id").map(|s| s.to_string()),
            task_id: map.get("task_id").map(|s| s.to_string()),
            extra,
        })
    }

    /// Checks the sizes fit the schema: `D` ≥ 1 and fits Arrow's list size, `H` and `W` fit
    /// the `u16` position columns.
    pub(super) fn validate(&self) -> Result<(), MetadataProblem> {
        let bad = |key: &str, value: usize, expected| MetadataProblem::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        if self.channels == 0 || i32::try_from(self.channels).is_err() {
            return Err(bad("D", self.channels, "between 1 and 2^31 - 1"));
        }
        let positions = usize::from(u16::MAX) + 1;
        if self.height == 0 || self.height > positions {
            return Err(bad("H", self.height, "between 1 and 65536"));
        }
        if self.width == 0 || self.width > positions {
            return Err(bad("W", self.width, "between 1 and 65536"));
        }
        Ok(())
    }
}

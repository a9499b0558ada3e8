//! The classifier directory on disk: `concept-<id:05>.safetensors`, `metrics.json`,
//! `concepts.json`, `classify.json` — and [`ClassifierDir`], which reads it back and rebuilds
//! the samples (the evaluation regions Shapley values are computed on).

use std::path::{Path, PathBuf};

use hint_common::hierarchy::{ConceptId, Hierarchy};
use hint_common::regions::sample::{ConceptSamples, SampleConfig, SampleProgress};
use hint_common::storage;
use serde::{Deserialize, Serialize};

use super::logistic::LogisticSettings;
use super::{ClassifyError, ConceptClassifier};

/// The hierarchy used.
pub const CONCEPTS_FILE: &str = "concepts.json";
/// The settings.
pub const SETTINGS_FILE: &str = "classify.json";
/// Version of the `classify.json` layout.
pub const SETTINGS_FORMAT: u32 = 1;

pub use hint_common::classify::{ConceptMetrics, MetricsFile, SkippedConcept, METRICS_FILE};

/// `classify.json`: everything that, with the region files and `concepts.json`, determines
/// the classifiers and their train / evaluation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifySettings {
    /// Layout version ([`SETTINGS_FORMAT`]).
    pub format: u32,
    /// The region directory (absolute).
    pub regions: PathBuf,
    /// The stored sample of `regions` the samples were read from (the sample stage's), if
    /// any; absent when they were streamed from the region files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<PathBuf>,
    /// The hierarchy file given to `hint classify`, if any (`concepts.json` is what was used).
    pub hierarchy_source: Option<PathBuf>,
    /// Sampling, negative set (`sample.negatives`; `mixed` when absent) and split.
    pub sample: SampleConfig,
    /// Solver.
    pub solver: LogisticSettings,
    /// Keys of the concepts asked for; `None` = every concept.
    pub concepts: Option<Vec<String>>,
    /// Model of the region files.
    pub model: String,
    /// Layer of the region files.
    pub layer: String,
    /// `D`.
    pub d: usize,
    /// The region files read (names in `regions`).
    pub files: Vec<String>,
    /// Rows in them.
    pub rows: u64,
    /// Device the classifiers were trained on (results agree across devices to rounding).
    pub device: String,
}

/// Writes `bytes` to `path` through `.<name>.tmp` and a rename, so a reader never sees half a
/// file.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ClassifyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| ClassifyError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ClassifyError::io(path, e))
}

/// Writes `value` as pretty JSON.
pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ClassifyError> {
    let mut text = serde_json::to_string_pretty(value).expect("plain data serialises");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ClassifyError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClassifyError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ClassifyError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A classifier directory written by [`run`](super::run), read back.
#[derive(Debug, Clone)]
pub struct ClassifierDir {
    /// The directory.
    pub dir: PathBuf,
    /// `classify.json`.
    pub settings: ClassifySettings,
    /// `concepts.json`.
    pub hierarchy: Hierarchy,
    /// `metrics.json`.
    pub metrics: MetricsFile,
}

impl ClassifierDir {
    /// Reads `classify.json`, `concepts.json` and `metrics.json` of `dir`.
    pub fn open(dir: &Path) -> Result<Self, ClassifyError> {
        let settings: ClassifySettings = read_json(&dir.join(SETTINGS_FILE))?;
        if settings.format != SETTINGS_FORMAT {
            return Err(ClassifyError::Config(format!(
                "{}: format {} is not the {SETTINGS_FORMAT} this hint reads",
                dir.join(SETTINGS_FILE).display(),
                settings.format
            )));
        }
        let hierarchy = Hierarchy::read_json(&dir.join(CONCEPTS_FILE))?;
        let metrics = read_json(&dir.join(METRICS_FILE))?;
        Ok(ClassifierDir {
            dir: dir.to_path_buf(),
            settings,
            hierarchy,
            metrics,
        })
    }

    /// Concepts that have a classifier, by id.
    pub fn trained(&self) -> Vec<ConceptId> {
        self.metrics.concepts.iter().map(|m| m.id).collect()
    }

    /// Loads concept `id`'s classifier.
    pub fn classifier(&self, id: ConceptId) -> Result<ConceptClassifier, ClassifyError> {
        ConceptClassifier::load(&self.dir.join(ConceptClassifier::file_name(id)))
    }

    /// Rebuilds the samples the classifiers were trained and evaluated on — the same rows,
    /// split and targets — for the concepts `only` (all when `None`): from the stored
    /// sample recorded in `classify.json` if there is one, else from its region directory;
    /// from `regions` when given (the files have moved), streaming every file.
    pub fn rebuild_samples(
        &self,
        regions: Option<&Path>,
        only: Option<&[ConceptId]>,
        progress: &mut dyn FnMut(SampleProgress),
    ) -> Result<ConceptSamples, ClassifyError> {
        let source = match (regions, &self.settings.samples) {
            (None, Some(stored)) => SampleSource::Stored(stored),
            (regions, _) => SampleSource::Regions(regions.unwrap_or(&self.settings.regions)),
        };
        self.samples_from(source, only, progress)
    }

    /// [`rebuild_samples`](Self::rebuild_samples) for a job's classifiers, `job_dir` being
    /// where the job's files are read now (a local copy of a job in object storage, or a
    /// job directory that moved): the job's stored sample when `classify.json` names one —
    /// one small file, not a pass over every region file — where it recorded it (object
    /// storage, or a local path that still exists), else under `job_dir/samples/`; without
    /// one, the job's `regions/`.
    pub fn rebuild_job_samples(
        &self,
        job_dir: &Path,
        only: Option<&[ConceptId]>,
    ) -> Result<ConceptSamples, ClassifyError> {
        let stored = self.settings.samples.as_deref().and_then(|recorded| {
            if storage::is_remote(recorded) || recorded.exists() {
                Some(recorded.to_path_buf())
            } else {
                recorded
                    .file_name()
                    .map(|name| job_dir.join("samples").join(name))
            }
        });
        let regions = job_dir.join("regions");
        let source = match &stored {
            Some(stored) => SampleSource::Stored(stored),
            None => SampleSource::Regions(&regions),
        };
        self.samples_from(source, only, &mut |_| {})
    }

    fn samples_from(
        &self,
        source: SampleSource<'_>,
        only: Option<&[ConceptId]>,
        progress: &mut dyn FnMut(SampleProgress),
    ) -> Result<ConceptSamples, ClassifyError> {
        let (dir, samples) = match source {
            SampleSource::Stored(stored) => (
                stored,
                ConceptSamples::from_stored(stored, &self.hierarchy, &self.settings.sample, only)?,
            ),
            SampleSource::Regions(dir) => (
                dir,
                ConceptSamples::build_with(
                    dir,
                    &self.hierarchy,
                    &self.settings.sample,
                    only,
                    progress,
                )?,
            ),
        };
        let info = samples.info();
        if info.model != self.settings.model
            || info.layer != self.settings.layer
            || info.channels != self.settings.d
        {
            return Err(ClassifyError::Config(format!(
                "{} holds {} {} D={}, but the classifiers in {} were trained on {} {} D={}",
                dir.display(),
                info.model,
                info.layer,
                info.channels,
                self.dir.display(),
                self.settings.model,
                self.settings.layer,
                self.settings.d
            )));
        }
        if info.rows != self.settings.rows {
            return Err(ClassifyError::Config(format!(
                "{} now holds {} rows, but the classifiers in {} were trained when it held {}: \
                 the samples would differ",
                dir.display(),
                info.rows,
                self.dir.display(),
                self.settings.rows
            )));
        }
        Ok(samples)
    }
}

/// Where a classifier directory's samples are rebuilt from.
enum SampleSource<'a> {
    /// A stored sample (the sample stage's directory).
    Stored(&'a Path),
    /// A region directory, streamed.
    Regions(&'a Path),
}

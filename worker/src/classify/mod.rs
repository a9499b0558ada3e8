//! Concept classifiers: for every concept `e` of a hierarchy, a linear classifier
//! `L_e(r) = σ(weightᵀr + bias)` separating the responsible regions of images under `e` from
//! other concepts' regions and background, with held-out accuracy, precision, recall and F1.
//!
//! - Samples come from [`hint_common::regions::sample`] (bounded, seeded, split by image).
//! - [`logistic`]: L2-regularised logistic regression, many concepts per batched Newton solve,
//!   on CPU or GPU.
//! - [`ConceptClassifier`]: one classifier, saved as safetensors (`weight` `[D]`, `bias` `[1]`).
//! - [`ClassifierDir`]: a finished output directory read back, with
//!   [`ClassifierDir::rebuild_samples`] giving the evaluation regions to Shapley.
//!
//! [`run`] is the stage end to end: samples → classifiers → `OUT/`.

mod classifier;
pub mod logistic;
mod output;

use std::cmp::Reverse;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hint_common::hierarchy::{ConceptId, Hierarchy, HierarchyError};
use hint_common::job::spec::ClassifySpec;
use hint_common::regions::sample::{
    ConceptSample, ConceptSamples, ConceptSplit, Negatives, SampleConfig, SampleError,
    SampleProgress,
};
use tch::Device;

pub use classifier::ConceptClassifier;
pub use logistic::{FitProfile, LogisticSettings};
pub use output::{
    ClassifierDir, ClassifySettings, ConceptMetrics, MetricsFile, SkippedConcept, CONCEPTS_FILE,
    METRICS_FILE, SETTINGS_FILE, SETTINGS_FORMAT,
};

/// Errors of the classifier stage; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// Reading or sampling the region files failed.
    #[error(transparent)]
    Sample(#[from] SampleError),
    /// Reading or writing the hierarchy failed.
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    /// A libtorch operation failed (out of memory, device).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A JSON file does not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// A classifier file is unreadable or incomplete.
    #[error("{path}: {problem}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The output directory already holds classifiers and overwriting was not asked for.
    #[error("{path} already holds classifier output ({found}); pass --overwrite to replace it")]
    OutputExists {
        /// The output directory.
        path: PathBuf,
        /// The first output file found.
        found: String,
    },
    /// An invalid setting.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ClassifyError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClassifyError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Settings of [`run`]; tests and the CLI fill it directly.
#[derive(Debug, Clone)]
pub struct ClassifyConfig {
    /// The region directory (`hint extract`'s output).
    pub regions: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// A sample of `regions` stored by the sample stage, read instead of streaming every
    /// region file; it must have been drawn with [`sample`](Self::sample).
    pub samples: Option<PathBuf>,
    /// The hierarchy file the hierarchy came from, recorded in `classify.json`.
    pub hierarchy_source: Option<PathBuf>,
    /// Sampling budget, seed and split.
    pub sample: SampleConfig,
    /// Solver.
    pub solver: LogisticSettings,
    /// Where to train.
    pub device: Device,
    /// Only these concepts (all when `None`).
    pub concepts: Option<Vec<ConceptId>>,
    /// Replace earlier output in `out`.
    pub overwrite: bool,
    /// Device memory one batched solve may use; concepts are grouped to fit it.
    pub group_memory_bytes: u64,
}

impl ClassifyConfig {
    /// Defaults for everything but the paths.
    pub fn new(regions: PathBuf, out: PathBuf) -> Self {
        ClassifyConfig {
            regions,
            out,
            samples: None,
            hierarchy_source: None,
            sample: SampleConfig::default(),
            solver: LogisticSettings::default(),
            device: Device::Cpu,
            concepts: None,
            overwrite: false,
            group_memory_bytes: 2 << 30,
        }
    }

    /// Takes the sampling and solver settings of a `[classify]` section (the job's, or the
    /// one `hint classify` builds from its flags) and the job's seed.
    pub fn apply(&mut self, spec: &ClassifySpec, seed: u64) {
        self.sample = Self::sample_settings(spec, seed);
        self.solver = LogisticSettings {
            l2: spec.l2,
            max_iterations: spec.iterations,
            tolerance: spec.tolerance,
        };
    }

    /// The sampling settings of a `[classify]` section and the job's seed (what the sample
    /// stage draws with).
    pub fn sample_settings(spec: &ClassifySpec, seed: u64) -> SampleConfig {
        SampleConfig {
            seed,
            max_per_class: spec.max_per_class,
            holdout: spec.holdout,
            negatives: spec.negatives,
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), ClassifyError> {
        self.sample.validate()?;
        let s = &self.solver;
        if !(s.l2 > 0.0 && s.l2.is_finite()) {
            return Err(ClassifyError::Config(format!(
                "l2 = {} must be positive (it makes the problem strictly convex)",
                s.l2
            )));
        }
        if s.max_iterations == 0 {
            return Err(ClassifyError::Config(
                "iterations must be at least 1".into(),
            ));
        }
        if !(s.tolerance > 0.0 && s.tolerance.is_finite()) {
            return Err(ClassifyError::Config(format!(
                "tolerance = {} must be positive",
                s.tolerance
            )));
        }
        Ok(())
    }
}

/// What [`run`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifyProgress {
    /// Streaming the region files.
    Sampling(SampleProgress),
    /// Concepts fitted so far, of all to fit.
    Training {
        /// Done.
        done: usize,
        /// All.
        total: usize,
    },
}

/// A trained concept.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedConcept {
    /// The classifier.
    pub classifier: ConceptClassifier,
    /// Its metrics.
    pub metrics: ConceptMetrics,
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct ClassifyReport {
    /// `metrics.json` as written.
    pub metrics: MetricsFile,
    /// Seconds spent streaming and sampling.
    pub sampling_seconds: f64,
    /// Seconds spent fitting and evaluating.
    pub training_seconds: f64,
    /// Where the fitting time went.
    pub fit: FitProfile,
    /// Seconds of the training time spent evaluating the classifiers (train and held out).
    pub evaluation_seconds: f64,
    /// Seconds spent writing the output directory.
    pub writing_seconds: f64,
    /// Distinct rows held in the samples.
    pub sampled_rows: usize,
    /// The bound on the sampling pass's memory ([`SampleConfig::memory_bound_bytes`]).
    pub memory_bound_bytes: u64,
}

/// Output files `run` writes and `--overwrite` replaces.
fn is_output(name: &str) -> bool {
    (name.starts_with("concept-") && name.ends_with(".safetensors"))
        || [METRICS_FILE, CONCEPTS_FILE, SETTINGS_FILE].contains(&name)
}

/// Refuses to mix with earlier output unless `overwrite`, in which case the earlier output is
/// removed (a stale `concept-*.safetensors` of another hierarchy must not survive).
fn prepare_out(out: &Path, overwrite: bool) -> Result<(), ClassifyError> {
    std::fs::create_dir_all(out).map_err(|e| ClassifyError::io(out, e))?;
    let mut existing = Vec::new();
    for entry in std::fs::read_dir(out).map_err(|e| ClassifyError::io(out, e))? {
        let entry = entry.map_err(|e| ClassifyError::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_output(&name) {
            existing.push(entry.path());
        }
    }
    existing.sort();
    if let Some(first) = existing.first() {
        if !overwrite {
            return Err(ClassifyError::OutputExists {
                path: out.to_path_buf(),
                found: first
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            });
        }
        for path in &existing {
            std::fs::remove_file(path).map_err(|e| ClassifyError::io(path, e))?;
        }
    }
    Ok(())
}

/// The stage end to end: samples every concept of `hierarchy` from `config.regions`, fits
/// the classifiers, evaluates them on the held-out images and writes `config.out`.
pub fn run(
    config: &ClassifyConfig,
    hierarchy: &Hierarchy,
    progress: &mut dyn FnMut(ClassifyProgress),
) -> Result<ClassifyReport, ClassifyError> {
    config.validate()?;
    if let Some(ids) = &config.concepts {
        if let Some(bad) = ids
            .iter()
            .find(|id| id.index() >= hierarchy.concepts().len())
        {
            return Err(ClassifyError::Config(format!("no concept with id {bad}")));
        }
    }
    prepare_out(&config.out, config.overwrite)?;
    let start = Instant::now();
    let samples = match &config.samples {
        Some(stored) => ConceptSamples::from_stored(
            stored,
            hierarchy,
            &config.sample,
            config.concepts.as_deref(),
        )?,
        None => ConceptSamples::build_with(
            &config.regions,
            hierarchy,
            &config.sample,
            config.concepts.as_deref(),
            &mut |p| progress(ClassifyProgress::Sampling(p)),
        )?,
    };
    let sampling_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut profile = TrainProfile::default();
    let (trained, skipped) = train(
        &samples,
        hierarchy,
        &config.solver,
        config.device,
        config.group_memory_bytes,
        &mut profile,
        &mut |done, total| progress(ClassifyProgress::Training { done, total }),
    )?;
    let training_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();

    for t in &trained {
        t.classifier.save(
            &config
                .out
                .join(ConceptClassifier::file_name(t.classifier.concept)),
        )?;
    }
    let info = samples.info();
    let metrics = MetricsFile {
        model: info.model.clone(),
        layer: info.layer.clone(),
        d: info.channels,
        concepts: trained.into_iter().map(|t| t.metrics).collect(),
        skipped,
    };
    hierarchy.write_json(&config.out.join(CONCEPTS_FILE))?;
    output::write_json(&config.out.join(METRICS_FILE), &metrics)?;
    let regions = if hint_common::storage::is_remote(&config.regions) {
        config.regions.clone()
    } else {
        std::fs::canonicalize(&config.regions).map_err(|e| ClassifyError::io(&config.regions, e))?
    };
    let settings = ClassifySettings {
        format: SETTINGS_FORMAT,
        regions,
        samples: config.samples.clone(),
        hierarchy_source: config.hierarchy_source.clone(),
        sample: config.sample.clone(),
        solver: config.solver,
        concepts: config.concepts.as_ref().map(|ids| {
            ids.iter()
                .map(|&id| hierarchy.concept(id).key.clone())
                .collect()
        }),
        model: info.model.clone(),
        layer: info.layer.clone(),
        d: info.channels,
        files: info
            .files
            .iter()
            .map(|f| {
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
        rows: info.rows,
        device: format!("{:?}", config.device),
    };
    // Written last: its presence marks a complete directory.
    output::write_json(&config.out.join(SETTINGS_FILE), &settings)?;
    Ok(ClassifyReport {
        metrics,
        sampling_seconds,
        training_seconds,
        fit: profile.fit,
        evaluation_seconds: profile.evaluation_seconds,
        writing_seconds: start.elapsed().as_secs_f64(),
        sampled_rows: samples.regions().len(),
        memory_bound_bytes: config
            .sample
            .memory_bound_bytes(info.channels, info.labels.len()),
    })
}

/// Where [`train`]'s time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainProfile {
    /// The solver's.
    pub fit: FitProfile,
    /// Evaluating the classifiers on their training and held-out rows.
    pub evaluation_seconds: f64,
}

/// Fits and evaluates every concept of `samples` that has both classes in its training
/// split; the others are returned as skipped. On a GPU concepts are fitted in groups
/// (largest first) that fit `group_memory_bytes`; on the CPU one at a time, since a group
/// pads every problem to its largest and the CPU gains nothing from batching. Results are
/// by concept id; where the time went is added to `profile`.
pub fn train(
    samples: &ConceptSamples,
    hierarchy: &Hierarchy,
    solver: &LogisticSettings,
    device: Device,
    group_memory_bytes: u64,
    profile: &mut TrainProfile,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<TrainedConcept>, Vec<SkippedConcept>), ClassifyError> {
    let d = samples.d();
    let mut skipped = Vec::new();
    let mut todo: Vec<&ConceptSample> = Vec::new();
    for sample in samples.concepts() {
        let (pos, neg) = (sample.train.positives(), sample.train.negatives());
        if pos > 0 && neg > 0 {
            todo.push(sample);
        } else {
            let c = hierarchy.concept(sample.concept);
            skipped.push(SkippedConcept {
                id: c.id,
                key: c.key.clone(),
                name: c.name.clone(),
                level: c.level,
                reason: format!(
                    "no {} training regions ({pos} positive, {neg} negative; {} foreground \
                     regions under it in the dataset){}",
                    if pos == 0 { "positive" } else { "negative" },
                    sample.pool.positives,
                    if sample.negatives == Negatives::Mixed {
                        String::new()
                    } else {
                        format!(" with negatives = {}", sample.negatives)
                    }
                ),
            });
        }
    }
    todo.sort_by_key(|s| (Reverse(s.train.len()), s.concept));
    let total = todo.len();
    progress(0, total);
    let mut trained = Vec::with_capacity(total);
    let mut start = 0;
    while start < total {
        // The first (largest) concept sets the padded size of the group.
        let rows = todo[start].train.len();
        let mut end = start + 1;
        while end < total
            && device != Device::Cpu
            && logistic::group_bytes(end + 1 - start, rows, d) <= group_memory_bytes
        {
            end += 1;
        }
        let group = &todo[start..end];
        let problems: Vec<logistic::Problem<'_>> = group
            .iter()
            .map(|s| logistic::Problem {
                rows: &s.train.rows,
                targets: &s.train.targets,
            })
            .collect();
        let fits = logistic::fit_group_profiled(
            samples.activations(),
            d,
            &problems,
            solver,
            device,
            &mut profile.fit,
        )?;
        let clock = Instant::now();
        for (sample, fit) in group.iter().zip(fits) {
            let c = hierarchy.concept(sample.concept);
            let classifier = ConceptClassifier {
                concept: c.id,
                key: c.key.clone(),
                name: c.name.clone(),
                level: c.level,
                model: samples.info().model.clone(),
                layer: samples.info().layer.clone(),
                weight: fit.weight,
                bias: fit.bias,
            };
            let eval = confusion(&classifier, samples, &sample.eval);
            let train = confusion(&classifier, samples, &sample.train);
            let metrics = ConceptMetrics {
                id: c.id,
                key: c.key.clone(),
                name: c.name.clone(),
                level: c.level,
                n_train: sample.train.len(),
                n_train_pos: sample.train.positives(),
                n_train_neg: sample.train.negatives(),
                n_eval: sample.eval.len(),
                n_eval_pos: sample.eval.positives(),
                n_eval_neg: sample.eval.negatives(),
                accuracy: eval.accuracy(),
                precision: eval.precision(),
                recall: eval.recall(),
                f1: eval.f1(),
                train_accuracy: train.accuracy(),
                iterations: fit.iterations,
                converged: fit.converged,
                pool_positives: sample.pool.positives,
                pool_other_foreground: sample.pool.other_foreground,
                pool_background: sample.pool.background,
                negatives: sample.negatives,
            };
            trained.push(TrainedConcept {
                classifier,
                metrics,
            });
        }
        profile.evaluation_seconds += clock.elapsed().as_secs_f64();
        start = end;
        progress(start, total);
    }
    trained.sort_by_key(|t| t.classifier.concept);
    skipped.sort_by_key(|s| s.id);
    Ok((trained, skipped))
}

/// True / false positives / negatives of a classifier on a split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Positives called positive.
    pub tp: usize,
    /// Negatives called positive.
    pub fp: usize,
    /// Negatives called negative.
    pub tn: usize,
    /// Positives called negative.
    pub fn_: usize,
}

impl Confusion {
    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64
        }
    }

    /// (tp + tn) / all; 0 for an empty split.
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }

    /// tp / (tp + fp); 0 when nothing is called positive.
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }

    /// 2tp / (2tp + fp + fn), the harmonic mean of precision and recall; 0 when undefined.
    pub fn f1(&self) -> f64 {
        Self::ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// Applies `classifier` to a split's rows.
pub fn confusion(
    classifier: &ConceptClassifier,
    samples: &ConceptSamples,
    split: &ConceptSplit,
) -> Confusion {
    let d = samples.d();
    let store = samples.activations();
    let mut c = Confusion::default();
    for (&row, &target) in split.rows.iter().zip(&split.targets) {
        let row = row as usize;
        let predicted = classifier.predict(&store[row * d..(row + 1) * d]);
        match (target > 0.5, predicted) {
            (true, true) => c.tp += 1,
            (true, false) => c.fn_ += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_follow_their_definitions() {
        let c = Confusion {
            tp: 6,
            fp: 2,
            tn: 10,
            fn_: 4,
        };
        assert_eq!(c.accuracy(), 16.0 / 22.0);
        assert_eq!(c.precision(), 0.75);
        assert_eq!(c.recall(), 0.6);
        let f1 = 2.0 * 0.75 * 0.6 / (0.75 + 0.6);
        assert!((c.f1() - f1).abs() < 1e-12);
        let none = Confusion::default();
        assert_eq!(
            (none.accuracy(), none.precision(), none.recall(), none.f1()),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn output_files_are_recognised_and_not_overwritten_silently() {
        assert!(is_output("concept-00003.safetensors"));
        assert!(is_output("classify.json"));
        assert!(!is_output("notes.txt"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        prepare_out(dir.path(), false).unwrap();
        std::fs::write(dir.path().join("concept-00001.safetensors"), "old").unwrap();
        let err = prepare_out(dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains("--overwrite") && err.contains("concept-00001"),
            "{err}"
        );
        prepare_out(dir.path(), true).unwrap();
        assert!(!dir.path().join("concept-00001.safetensors").exists());
        assert!(dir.path().join("notes.txt").exists());
    }
}

//! Bounded, seeded samples of a region dataset per concept: what the concept classifiers
//! train on and what Shapley values are evaluated on.
//!
//! [`ConceptSamples::build`] streams every region file of a directory once, record batch by
//! record batch, and returns for every concept `e` of a [`Hierarchy`] a training and an
//! evaluation set of region activations with 0/1 targets. Memory is bounded by the settings
//! ([`SampleConfig::memory_bound_bytes`]), never by the size of the dataset.
//!
//! # What a concept's samples are
//!
//! - **positives**: foreground regions of images whose label is at or under `e`;
//! - **negatives**, by [`SampleConfig::negatives`] ([`Negatives`]):
//!   - `mixed` (the default): foreground regions of images not under `e` ("other") and
//!     background regions of every image (background is a negative for every concept);
//!   - `background`: background regions only;
//!   - `others`: "other" foreground only;
//!   - `siblings`: foreground regions of images under a sibling of `e` (a concept sharing a
//!     parent with it) and not under `e`; a concept with no such images (a root, an only
//!     child) falls back to `others` and says so ([`ConceptSample::negatives`]).
//!
//! # How they are drawn
//!
//! Every row gets a key `seed::derive(seed, [SAMPLE_TAG, image_id, y, x])`; a sample of a
//! pool of rows is the `max_per_class` rows with the smallest keys (bottom-k, ties broken by
//! the row's identity). This is a uniform sample without replacement whose result depends
//! only on the *set* of rows — not on file order, on how rows are split into files, or on
//! which machine read them — so the distributed runtime gets the same samples, and partial
//! samples merge exactly ([`RegionSampler::merge`]).
//!
//! The key does not depend on the concept. A pool of a concept is a union of per-label pools,
//! and the bottom-k of a union is the bottom-k of the union of the parts' bottom-k; so the
//! streaming pass keeps one bottom-k per label (foreground) plus one for background, and
//! every concept's sample is read off them afterwards. Memory is therefore
//! `(labels + 1) × max_per_class` rows whatever the number of concepts, and a row shared by
//! several concepts (a dog region is a positive of `dog`, `mammal`, `animal`) is stored once.
//!
//! # Class balance
//!
//! With `P` positives sampled (`P ≤ max_per_class`), the negatives are `P` rows as well. With
//! `mixed`, half from "other" and half from background, the bottom of each pool; when one pool
//! is short the other fills in. With a single pool (`background`, `others`, `siblings`) they
//! are the bottom `P` of that pool, or the whole pool when it holds fewer: nothing else fills
//! in, since that would change what the negatives are. Counts are therefore balanced whenever
//! the dataset allows; the classifier trainer weights the classes equally on top, for the
//! cases it does not, and skips a concept with no negative training row.
//!
//! Each negative set is read off the same per-label and background pools, so the choice does
//! not change the streaming pass, its memory, the positives or the split.
//!
//! # Train / evaluation split
//!
//! By image, stratified by label: the images of each label are ranked by
//! `derive(seed, [SPLIT_TAG, image_id])` (ties by id) and the first
//! `round(holdout × images)` of them are held out — at least one and at most all but one
//! when the label has two images or more. So no image has rows in both sets, for any
//! concept, and every label with two images has some in each (a plain per-image coin flip
//! leaves small classes without evaluation images). The split depends only on the set of
//! images per label; the streaming pass collects it (8 bytes per image).

mod concepts;
mod negatives;
mod pool;
mod stored;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

pub use self::concepts::{
    ConceptSample, ConceptSamples, ConceptSplit, LabelledRegions, PoolSizes, SampledRegion,
};
pub use self::negatives::{ConceptLabels, Negatives};
use self::pool::{BottomK, SampleKey};
pub use self::stored::{SAMPLE_ROWS, SAMPLE_STATE};
use super::{open_regions, read_region_meta, RegionBatch, RegionProjection, RegionsError};
use crate::seed;

/// Identity tag of the sampling key in [`seed::derive`] (`"hintsamp"`).
pub const SAMPLE_TAG: u64 = u64::from_be_bytes(*b"hintsamp");
/// Identity tag of the train / evaluation split in [`seed::derive`] (`"hintsplt"`).
pub const SPLIT_TAG: u64 = u64::from_be_bytes(*b"hintsplt");

/// Rows per record batch while streaming. Small: each batch's buffers are allocated afresh
/// (for a file Arrow decodes, two levels per value besides the value: 6 bytes per f16
/// channel), and at 8,192 rows of D = 512 those 25 MB buffers cost a fifth of the read in
/// page faults (perf, 1,169 MB of region files, Arrow decoding); at 1,024 the allocator
/// reuses them and the faults were a twentieth.
pub const BATCH_ROWS: usize = 1024;

/// The settings that, with the region files and the hierarchy, determine every sample.
/// Also the sampling flags of `hint sample` and `hint classify` (flattened into each), with
/// the `[classify]` section's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct SampleConfig {
    /// Seed of the sampling and of the train / evaluation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many positive regions per concept, and as many negatives; also the
    /// bound of every per-label pool kept while streaming, so it bounds memory.
    #[arg(long, default_value_t = SampleConfig::default().max_per_class)]
    pub max_per_class: usize,
    /// Fraction of images held out for evaluation, in (0, 1).
    #[arg(long, default_value_t = SampleConfig::default().holdout)]
    pub holdout: f64,
    /// Each concept's negatives: mixed (half other concepts' foreground, half background),
    /// background, others (other concepts' foreground) or siblings (its siblings'
    /// foreground; others for a concept without siblings).
    // Absent from settings written before it existed, which all used `Negatives::Mixed`.
    #[serde(default)]
    #[arg(long, value_enum, default_value_t = Negatives::Mixed, hide_possible_values = true)]
    pub negatives: Negatives,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            seed: 0,
            max_per_class: 20_000,
            holdout: 0.2,
            negatives: Negatives::Mixed,
        }
    }
}

impl SampleConfig {
    /// Checks the budget is positive and the holdout fraction is strictly between 0 and 1.
    pub fn validate(&self) -> Result<(), SampleError> {
        if self.max_per_class == 0 || u32::try_from(self.max_per_class).is_err() {
            return Err(SampleError::Config(format!(
                "max_per_class = {} must be between 1 and 2^32 - 1",
                self.max_per_class
            )));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return Err(SampleError::Config(format!(
                "holdout = {} must be strictly between 0 and 1 (a fraction of the images)",
                self.holdout
            )));
        }
        Ok(())
    }

    /// How many of a label's `images` are held out: `round(holdout × images)`, kept
    /// between 1 and `images − 1` when there are two images or more.
    pub fn eval_images(&self, images: usize) -> usize {
        if images < 2 {
            return 0;
        }
        ((self.holdout * images as f64).round() as usize).clamp(1, images - 1)
    }

    /// The held-out images of one label: the [`eval_images`](Self::eval_images) first of
    /// `images` ranked by their split key.
    pub fn held_out(&self, images: &HashSet<u64>) -> Vec<u64> {
        let mut ranked: Vec<(u64, u64)> = images
            .iter()
            .map(|&id| (seed::derive(self.seed, &[SPLIT_TAG, id]), id))
            .collect();
        ranked.sort_unstable();
        ranked.truncate(self.eval_images(images.len()));
        ranked.into_iter().map(|(_, id)| id).collect()
    }

    /// The sampling key of a row.
    fn key(&self, image_id: u64, y: u16, x: u16) -> SampleKey {
        SampleKey {
            key: seed::derive(
                self.seed,
                &[SAMPLE_TAG, image_id, u64::from(y), u64::from(x)],
            ),
            image_id,
            y,
            x,
        }
    }

    /// Upper bound of the memory the streaming pass holds for `d` channels and `labels`
    /// labels: `(labels + 1) × max_per_class` rows of activations plus bookkeeping, plus one
    /// record batch. (The image ids kept for the split, ~32 bytes per image, come on top.)
    pub fn memory_bound_bytes(&self, d: usize, labels: usize) -> u64 {
        let row = (d * 4 + 64) as u64;
        (labels as u64 + 1) * self.max_per_class as u64 * row + (BATCH_ROWS * d * 4) as u64
    }
}

/// Errors building samples; each names the file, and the field or row, at fault.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// Reading a region file failed.
    #[error(transparent)]
    Regions(#[from] RegionsError),
    /// Listing the region directory failed.
    #[error("{dir}: {source}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory has no region files.
    #[error("{dir}: no region files (*.parquet) in this directory")]
    NoRegionFiles {
        /// The directory.
        dir: PathBuf,
    },
    /// A file's metadata disagrees with the first file's: the files are not one region set.
    #[error(
        "{path}: {field} is {found}, but {reference} has {expected}; all region files of a \
         directory must come from one model layer and one label set"
    )]
    Inconsistent {
        /// The disagreeing file.
        path: PathBuf,
        /// The metadata field (`model`, `layer`, `D`, `labels`).
        field: &'static str,
        /// Its value in `path`.
        found: String,
        /// Its value in `reference`.
        expected: String,
        /// The first file of the directory.
        reference: PathBuf,
    },
    /// A row's label has no name in the file's `labels`.
    #[error("{path}: row {row}: label {label} has no name (the file names {labels} labels)")]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Row index in the file.
        row: u64,
        /// The label.
        label: u32,
        /// How many labels the file names.
        labels: usize,
    },
    /// The hierarchy was built over other labels than the region files'.
    #[error(
        "the hierarchy's labels do not match the labels of the region files ({path}): {problem}"
    )]
    HierarchyMismatch {
        /// The first region file.
        path: PathBuf,
        /// The first difference.
        problem: String,
    },
    /// Invalid settings.
    #[error("invalid sampling settings: {0}")]
    Config(String),
    /// A stored sample (the sample stage's output) cannot be used.
    #[error("{path}: {message}")]
    Stored {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// What a region directory holds, from the files' metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSetInfo {
    /// Model architecture.
    pub model: String,
    /// Layer.
    pub layer: String,
    /// `D`, channels per activation.
    pub channels: usize,
    /// Class names by label index.
    pub labels: Vec<String>,
    /// The region files, sorted by name.
    pub files: Vec<PathBuf>,
    /// Rows in all files.
    pub rows: u64,
}

/// The region files of `dir`: every `*.parquet` not starting with `.` (partial files do),
/// sorted by name.
pub fn region_files(dir: &Path) -> Result<Vec<PathBuf>, SampleError> {
    let read_dir_err = |source| SampleError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let is_region_file = |path: &Path| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.ends_with(".parquet") && !name.starts_with('.')
    };
    let mut files = Vec::new();
    if crate::storage::is_remote(dir) {
        // Objects directly under the prefix (an object store has no directories to skip).
        let entries = crate::storage::list(dir).map_err(|e| read_dir_err(e.into()))?;
        files.extend(
            entries
                .into_iter()
                .map(|entry| entry.path)
                .filter(|path| path.parent() == Some(dir) && is_region_file(path)),
        );
    } else {
        for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
            let path = entry.map_err(read_dir_err)?.path();
            if is_region_file(&path) && path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(SampleError::NoRegionFiles {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// Reads every file's footer and checks they agree on model, layer, `D` and labels.
pub fn check_region_set(files: &[PathBuf]) -> Result<RegionSetInfo, SampleError> {
    let mut info: Option<RegionSetInfo> = None;
    for path in files {
        let (meta, rows) = read_region_meta(path)?;
        let file = RegionSetInfo {
            model: meta.model,
            layer: meta.layer,
            channels: meta.channels,
            labels: meta.labels,
            files: vec![path.clone()],
            rows,
        };
        match info.as_mut() {
            None => info = Some(file),
            Some(first) => first.merge(file)?,
        }
    }
    info.ok_or_else(|| SampleError::Config("no region files given".into()))
}

/// Progress of the streaming pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleProgress {
    /// Rows read so far.
    pub rows_done: u64,
    /// Rows in all files.
    pub rows_total: u64,
    /// Files finished.
    pub files_done: usize,
    /// Files in all.
    pub files_total: usize,
}

/// The streaming half of sampling: per-label bottom-k pools of foreground rows and one of
/// background rows. Offer rows (or whole files) in any order, merge samplers built on
/// disjoint parts of a dataset, then [`ConceptSamples::from_sampler`].
#[derive(Debug, Clone)]
pub struct RegionSampler {
    config: SampleConfig,
    d: usize,
    foreground: Vec<BottomK>,
    background: BottomK,
    /// Every image id seen, per label (for the stratified split).
    images: Vec<HashSet<u64>>,
}

impl RegionSampler {
    /// An empty sampler for `labels` labels and `d` channels.
    pub fn new(config: &SampleConfig, d: usize, labels: usize) -> Result<Self, SampleError> {
        config.validate()?;
        let k = config.max_per_class;
        Ok(RegionSampler {
            config: config.clone(),
            d,
            foreground: (0..labels).map(|_| BottomK::new(k, d)).collect(),
            background: BottomK::new(k, d),
            images: vec![HashSet::new(); labels],
        })
    }

    /// Offers one record batch (read with activations) of `path`, whose first row is row
    /// `first_row` of the file (for error messages).
    pub fn offer_batch(
        &mut self,
        batch: &RegionBatch,
        path: &Path,
        first_row: u64,
    ) -> Result<(), SampleError> {
        let labels = self.foreground.len();
        let (ids, label, ys, xs) = (batch.image_id(), batch.label(), batch.y(), batch.x());
        // Rows of one image are contiguous in extraction output: skip repeated set inserts.
        let mut last = None;
        for i in 0..batch.len() {
            let l = label[i] as usize;
            if l >= labels {
                return Err(SampleError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    row: first_row + i as u64,
                    label: label[i],
                    labels,
                });
            }
            if last != Some((l, ids[i])) {
                self.images[l].insert(ids[i]);
                last = Some((l, ids[i]));
            }
            let key = self.config.key(ids[i], ys[i], xs[i]);
            let pool = if batch.foreground(i) {
                &mut self.foreground[l]
            } else {
                &mut self.background
            };
            pool.offer(key, label[i], |out| batch.activation_into(i, out));
        }
        Ok(())
    }

    /// Streams a whole file through [`offer_batch`](Self::offer_batch); `on_rows` hears how
    /// many rows each batch had.
    pub fn offer_file(
        &mut self,
        path: &Path,
        on_rows: &mut dyn FnMut(u64),
    ) -> Result<(), SampleError> {
        let reader = open_regions(
            path,
            RegionProjection {
                saliency: false,
                activation: true,
            },
            BATCH_ROWS,
        )?;
        if reader.meta().channels != self.d {
            return Err(SampleError::Config(format!(
                "{}: D = {} but the sampler was made for D = {}",
                path.display(),
                reader.meta().channels,
                self.d
            )));
        }
        let mut row = 0u64;
        for batch in reader {
            let batch = batch?;
            self.offer_batch(&batch, path, row)?;
            row += batch.len() as u64;
            on_rows(batch.len() as u64);
        }
        Ok(())
    }

    /// The sample of `files` (one region set, `d` channels, `labels` labels) read on up to
    /// `threads` threads: each takes the next unread file (so a slow file holds up only its
    /// thread) into its own sampler, and the samplers are merged. The result depends only
    /// on the rows, so it equals one thread's, bit for bit; memory is one sampler per
    /// thread. `on_rows` hears each record batch's rows, from any of the threads. The first
    /// error stops every thread and is returned; `stop` set (a cancelled task) makes each
    /// thread stop after its file, and the caller checks it.
    pub fn from_files(
        config: &SampleConfig,
        (d, labels): (usize, usize),
        files: &[PathBuf],
        threads: usize,
        on_rows: &(dyn Fn(u64) + Sync),
        stop: &AtomicBool,
    ) -> Result<RegionSampler, SampleError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let read = || -> Result<RegionSampler, SampleError> {
            let mut sampler = RegionSampler::new(config, d, labels)?;
            while !failed.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                if let Err(error) = sampler.offer_file(file, &mut |rows| on_rows(rows)) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
            Ok(sampler)
        };
        let threads = threads.clamp(1, files.len().max(1));
        let samplers: Vec<Result<RegionSampler, SampleError>> = if threads == 1 {
            vec![read()]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads).map(|_| scope.spawn(read)).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        let mut merged: Option<RegionSampler> = None;
        for sampler in samplers {
            let sampler = sampler?;
            match merged.as_mut() {
                None => merged = Some(sampler),
                Some(all) => all.merge(sampler),
            }
        }
        Ok(merged.expect("at least one thread"))
    }

    /// Adds the rows of `other`, a sampler with the same settings over other rows.
    ///
    /// # Panics
    /// If the settings, `D` or the number of labels differ.
    pub fn merge(&mut self, other: RegionSampler) {
        assert_eq!(
            self.config, other.config,
            "merging samplers of other settings"
        );
        assert_eq!(self.d, other.d, "merging samplers of another D");
        assert_eq!(self.foreground.len(), other.foreground.len());
        for (mine, theirs) in self.foreground.iter_mut().zip(other.foreground) {
            mine.merge(theirs);
        }
        for (mine, theirs) in self.images.iter_mut().zip(other.images) {
            mine.extend(theirs);
        }
        self.background.merge(other.background);
    }

    /// Foreground rows offered per label, and background rows offered.
    pub fn population(&self) -> (Vec<u64>, u64) {
        (
            self.foreground.iter().map(BottomK::offered).collect(),
            self.background.offered(),
        )
    }

    /// Rows held (the memory in use is about this × `D` × 4 bytes).
    pub fn held_rows(&self) -> usize {
        self.foreground.iter().map(BottomK::len).sum::<usize>() + self.background.len()
    }
}

/// The hierarchy must have been built over exactly the region files' labels.
fn check_labels(hierarchy: &[String], info: &RegionSetInfo) -> Result<(), SampleError> {
    let problem = if hierarchy.len() != info.labels.len() {
        Some(format!(
            "the hierarchy has {} labels, the region files {}",
            hierarchy.len(),
            info.labels.len()
        ))
    } else {
        hierarchy
            .iter()
            .zip(&info.labels)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("label {i} is '{a}' in the hierarchy, '{b}' in the files"))
    };
    match problem {
        Some(problem) => Err(SampleError::HierarchyMismatch {
            path: info.files[0].clone(),
            problem,
        }),
        None => Ok(()),
    }
}

//! Weakly supervised object localisation (WSOL) with concept classifiers on selected
//! neurons: the faithfulness check of Φ.
//!
//! For every concept of a finished job with a classifier and a Φ row, and every fraction
//! `k%` of the layer's `D` neurons, the concept classifier is re-fitted on the top `k%`
//! neurons chosen four ways ([`Selection`]: by Φ, by the full classifier's `|weight|` on
//! standardised features and on raw activations, and at random —
//! [`WsolConfig::random_draws`] independent draws), on the concept's training regions with
//! the job's solver ([`select`]). Each re-fitted classifier is applied at every position of
//! the feature map of the concept's evaluation images — its **logit** map, a linear map
//! like CAM's — and the map is scored against the ground truth ([`geometry`]: upsample
//! bilinearly to the crop, min-max normalise, threshold at [`THRESHOLD`], box the largest
//! connected component; localisation = IoU ≥ 0.5, pointing game, mask IoU). Shapley is compared with each
//! baseline on the same pairs, with a bootstrap interval over images ([`compare`]).
//!
//! **Evaluation images** of a concept: images at or under it that are in the classifiers'
//! held-out split (the images no classifier trained on) and have an annotation; at most
//! [`WsolConfig::images_per_concept`] of them, the smallest keys
//! `derive(seed, [WSOL_TAG, IMAGE_PART, concept, image])`.
//!
//! **Output**: [`WsolReport`] as `<job>/results/wsol.json` ([`WSOL_FILE`]) — pooled rows per
//! (selection, fraction) over every (concept, image) pair, the comparisons with their
//! intervals, and per-concept rows — and heatmaps in `<job>/results/heatmaps/` (the first
//! [`HEATMAPS_PER_CONCEPT`] evaluation images of each concept, Shapley selection at the
//! fraction nearest [`HEATMAP_FRACTION`]).

pub mod compare;
pub mod geometry;
pub mod heatmap;
pub mod inputs;
pub mod report;
mod score;
pub mod select;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use hint_common::hierarchy::ConceptId;
use hint_common::job::spec::EvaluateSpec;
use hint_common::regions::sample::{region_files, ConceptSamples};
use hint_common::regions::{for_each_foreground, read_region_meta};
use hint_common::seed;
use hint_common::storage;
use rayon::prelude::*;
use tch::Device;

use crate::classify::ClassifyError;
use crate::images;
use crate::models::Backbone;
use compare::{BootstrapSettings, PairOutcomes};
pub use compare::{Comparison, Difference, Verdict};
pub use hint_common::wsol::WSOL_FILE;
use inputs::{AnnotationIndex, GroundTruthFiles, Job};
pub use report::{ConceptRow, Heatmap, RegionLift, Skipped, SummaryRow, WsolReport};
use score::{Context, Decoded, ImageScores, ImageWork};
pub use select::{SelectedClassifier, Selection, WSOL_TAG};

/// The heatmaps' directory in `<job>/results/`.
pub const HEATMAP_DIR: &str = "heatmaps";
/// Threshold on the min-max normalised, upsampled map (the half-maximum rule).
pub const THRESHOLD: f32 = 0.5;
/// Heatmaps drawn per concept.
pub const HEATMAPS_PER_CONCEPT: usize = 3;
/// The fraction whose Shapley classifier the heatmaps show (the nearest one evaluated).
pub const HEATMAP_FRACTION: u32 = 20;
/// Identity part of the evaluation-image keys, after [`WSOL_TAG`].
pub const IMAGE_PART: u64 = 1;
/// Draws of the random selection per (concept, fraction) when not given.
pub const DEFAULT_RANDOM_DRAWS: u32 = 5;
/// Bootstrap replicates of the comparisons' intervals when not given.
pub const DEFAULT_BOOTSTRAP_REPLICATES: usize = 2000;
/// Coverage of the comparisons' intervals.
pub const CONFIDENCE: f64 = 0.95;

/// Settings of [`evaluate`].
#[derive(Debug, Clone)]
pub struct WsolConfig {
    /// The finished job's directory.
    pub job_dir: PathBuf,
    /// VOC XML annotations of the job's images (matched by file stem and folders).
    pub annotations: PathBuf,
    /// Object masks (PNG, nonzero = object) at the annotations' relative paths.
    pub masks: Option<PathBuf>,
    /// Percentages of neurons kept (each in 1..=100).
    pub fractions: Vec<u32>,
    /// Evaluation images per concept, at most.
    pub images_per_concept: usize,
    /// Where the model runs and the classifiers are re-fitted.
    pub device: Device,
    /// Seed of the random selection, of the choice of images and of the bootstrap.
    pub seed: u64,
    /// Independent random selections per (concept, fraction), averaged.
    pub random_draws: u32,
    /// Bootstrap replicates of the intervals of Shapley − each baseline.
    pub bootstrap_replicates: usize,
    /// Rank Shapley by this `phi.csv` instead of the job's `results/phi.csv` (Φ of another
    /// game from `hint shapley`).
    pub phi: Option<PathBuf>,
    /// Evaluate on these images (ImageFolder or CSV manifest with the job's labels, e.g. a
    /// held-out set of the same world) instead of the job's held-out split.
    pub images: Option<PathBuf>,
    /// Write `wsol.json` and the heatmaps here instead of the job's `results/`.
    pub out: Option<PathBuf>,
}

/// Why an evaluation failed; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum WsolError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file of the job or of the annotations is unusable.
    #[error("{path}: {problem}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An invalid setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading the classifiers or their samples failed.
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// The model or the images failed.
    #[error(transparent)]
    Worker(#[from] crate::Error),
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The `cancel` flag was set (a drained or cancelled task).
    #[error("cancelled")]
    Cancelled,
}

/// Reports progress, then stops with [`WsolError::Cancelled`] once `cancel` is set (the
/// engines call it between steps: a concept re-fitted, a chunk of images, a batch of
/// ablations).
pub(crate) fn step(
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
    done: usize,
    total: usize,
) -> Result<(), WsolError> {
    progress(done, total);
    if cancel.load(Ordering::Relaxed) {
        Err(WsolError::Cancelled)
    } else {
        Ok(())
    }
}

impl From<hint_common::settings::SettingError> for WsolError {
    fn from(e: hint_common::settings::SettingError) -> Self {
        WsolError::Worker(e.into())
    }
}

impl From<hint_common::images::Error> for WsolError {
    fn from(e: hint_common::images::Error) -> Self {
        WsolError::Worker(e.into())
    }
}

impl WsolError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WsolError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn other(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        WsolError::Input {
            path: path.into(),
            problem: e.to_string(),
        }
    }
}

impl WsolConfig {
    /// The evaluation a job's `[evaluate]` section asks for, with the job's seed, written
    /// into `out` (the job's `results/` when None).
    pub fn from_spec(
        job_dir: &Path,
        spec: &EvaluateSpec,
        seed: u64,
        device: Device,
        out: Option<PathBuf>,
    ) -> Self {
        WsolConfig {
            job_dir: job_dir.to_path_buf(),
            annotations: spec.annotations.clone(),
            masks: spec.masks.clone(),
            fractions: spec.fractions.clone(),
            images_per_concept: spec.images_per_concept,
            device,
            seed,
            random_draws: spec.random_draws,
            bootstrap_replicates: spec.bootstrap,
            phi: None,
            images: spec.images.clone(),
            out,
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), WsolError> {
        if self.fractions.is_empty() {
            return Err(WsolError::Config("no fractions".into()));
        }
        if let Some(f) = self.fractions.iter().find(|&&f| f == 0 || f > 100) {
            return Err(WsolError::Config(format!(
                "fraction {f}% is not between 1 and 100"
            )));
        }
        let mut sorted = self.fractions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.fractions.len() {
            return Err(WsolError::Config("a fraction is given twice".into()));
        }
        if self.images_per_concept == 0 {
            return Err(WsolError::Config(
                "images per concept must be at least 1".into(),
            ));
        }
        if self.random_draws == 0 {
            return Err(WsolError::Config("random draws must be at least 1".into()));
        }
        if self.bootstrap_replicates < 100 {
            return Err(WsolError::Config(format!(
                "{} bootstrap replicates are too few for a 95% interval (at least 100)",
                self.bootstrap_replicates
            )));
        }
        Ok(())
    }
}

/// A concept under evaluation: its re-fitted classifiers and images.
pub(super) struct Evaluated {
    pub id: ConceptId,
    pub name: String,
    pub level: u32,
    /// Dataset labels at or under it.
    pub labels: Vec<u32>,
    /// Its classifiers, one per slot ([`compare::slots`]).
    pub classifiers: Vec<SelectedClassifier>,
    /// Evaluation images, in key order.
    pub images: Vec<u64>,
}

/// Runs the evaluation of `config.job_dir` and writes `results/wsol.json` and the heatmaps.
/// `progress(done, total)` counts concepts re-fitted, then images scored; once `cancel` is
/// set the evaluation stops at the next step with [`WsolError::Cancelled`].
pub fn evaluate(
    config: &WsolConfig,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<WsolReport, WsolError> {
    config.validate()?;
    let mut job = Job::open(&config.job_dir)?;
    if let Some(phi) = &config.phi {
        job.phi = inputs::read_phi(phi, &job.hierarchy)?;
    }
    // Annotations and masks in object storage are read from their copies in the cache,
    // pinned for the whole evaluation.
    let fetch = |dir: &Path| {
        storage::fetch_dir(dir).map_err(|e| WsolError::Input {
            path: dir.to_path_buf(),
            problem: e.message,
        })
    };
    let annotations = fetch(&config.annotations)?;
    let masks = config.masks.as_deref().map(fetch).transpose()?;
    let masks = masks.as_ref().map(|m| m.path());
    let index = AnnotationIndex::scan(&annotations)?;
    let mut skipped = Vec::new();
    let d = job.classifiers[0].settings.d;

    // Concepts with a classifier and Φ, and their samples (one pass per sample setting).
    let mut by_settings: BTreeMap<String, Vec<ConceptId>> = BTreeMap::new();
    for (&id, &dir) in &job.classifier_of {
        let name = &job.hierarchy.concept(id).name;
        match job.phi.get(&id) {
            Some(phi) if phi.len() == d => {
                let key = serde_json::to_string(&job.classifiers[dir].settings.sample)
                    .expect("plain data serialises");
                by_settings.entry(key).or_default().push(id);
            }
            Some(phi) => skipped.push(Skipped {
                what: name.clone(),
                reason: format!("Φ has {} neurons, the classifiers {d}", phi.len()),
            }),
            None => skipped.push(Skipped {
                what: name.clone(),
                reason: "no complete Φ row".into(),
            }),
        }
    }
    let mut groups: Vec<(ConceptSamples, Vec<ConceptId>)> = Vec::new();
    for ids in by_settings.into_values() {
        let dir = &job.classifiers[job.classifier_of[&ids[0]]];
        let samples = dir.rebuild_job_samples(&job.dir, Some(&ids))?;
        groups.push((samples, ids));
    }

    if groups.is_empty() {
        return Err(WsolError::Config(
            "no concept has both a classifier and a Φ row".into(),
        ));
    }
    // The images evaluated from: the user's set (every image of it), or the job's own
    // (its held-out split only). Ids are positions in `pool`.
    let (pool, image_source) = match &config.images {
        Some(path) => (job.image_set(path)?, path.display().to_string()),
        None => (
            std::mem::take(&mut job.images),
            "the job's held-out images".to_string(),
        ),
    };
    let held_out_only = config.images.is_none();
    let labels = job.label_index();
    let mut truth_of: HashMap<u64, GroundTruthFiles> = HashMap::new();
    let heatmap_fraction = *config
        .fractions
        .iter()
        .min_by_key(|&&f| (f.abs_diff(HEATMAP_FRACTION), f))
        .expect("validated: not empty");
    let slots = compare::slots(&config.fractions, config.random_draws);
    let total_concepts: usize = groups.iter().map(|(_, ids)| ids.len()).sum();
    let mut evaluated: Vec<Evaluated> = Vec::new();
    let mut done = 0;
    let mut total = total_concepts;
    progress(0, total);
    for (samples, ids) in &groups {
        // Evaluation images come from this group's held-out split (every group of one job
        // has the same split: one spec).
        let held_out_by_label = evaluation_images(
            (&pool, held_out_only),
            samples,
            &labels,
            &index,
            masks,
            &mut truth_of,
            &mut skipped,
        );
        for &id in ids {
            done += 1;
            let concept = job.hierarchy.concept(id);
            let mut images: Vec<(u64, u64)> = concept
                .labels
                .iter()
                .flat_map(|&l| &held_out_by_label[l as usize])
                .map(|&i| {
                    let key =
                        seed::derive(config.seed, &[WSOL_TAG, IMAGE_PART, u64::from(id.0), i]);
                    (key, i)
                })
                .collect();
            images.sort_unstable();
            images.truncate(config.images_per_concept);
            let sample = samples.concept(id).expect("built for this concept");
            if images.is_empty() {
                skipped.push(Skipped {
                    what: concept.name.clone(),
                    reason: "no annotated evaluation image".into(),
                });
                step(progress, cancel, done, total)?;
                continue;
            }
            let dir = &job.classifiers[job.classifier_of[&id]];
            let full = dir.classifier(id)?;
            let standardised = select::standardised_weight(&full, samples, &sample.train);
            let raw = select::raw_weight(&full);
            let phi = &job.phi[&id];
            let mut classifiers = Vec::new();
            for &fraction in &config.fractions {
                let k = select::neurons_kept(d, fraction);
                // One batched fit per fraction, in slot order.
                let sets: Vec<Vec<usize>> = slots
                    .iter()
                    .filter(|s| s.fraction == fraction)
                    .map(|s| match s.selection {
                        Selection::Shapley => select::top_k(phi, k),
                        Selection::WeightStandardised => select::top_k(&standardised, k),
                        Selection::WeightRaw => select::top_k(&raw, k),
                        Selection::Random => {
                            select::random_k(d, k, config.seed, id, fraction, s.draw)
                        }
                    })
                    .collect();
                classifiers.extend(select::refit(
                    samples,
                    &sample.train,
                    &sets,
                    &dir.settings.solver,
                    config.device,
                )?);
            }
            evaluated.push(Evaluated {
                id,
                name: concept.name.clone(),
                level: concept.level,
                labels: concept.labels.clone(),
                classifiers,
                images: images.into_iter().map(|(_, i)| i).collect(),
            });
            step(progress, cancel, done, total)?;
        }
    }
    evaluated.sort_by_key(|e| e.id);

    // The image-major pass: each image runs through the model once, for all its concepts.
    let mut work: BTreeMap<u64, ImageWork> = BTreeMap::new();
    for (pos, e) in evaluated.iter().enumerate() {
        for (rank, &id) in e.images.iter().enumerate() {
            work.entry(id)
                .or_insert_with(|| ImageWork {
                    id,
                    path: pool[id as usize].path.clone(),
                    truth: truth_of[&id].clone(),
                    concepts: Vec::new(),
                })
                .concepts
                .push((pos, rank < HEATMAPS_PER_CONCEPT));
        }
    }
    let work: Vec<ImageWork> = work.into_values().collect();
    total += work.len();
    progress(done, total);

    let results = config
        .out
        .clone()
        .unwrap_or_else(|| job.dir.join("results"));
    std::fs::create_dir_all(&results).map_err(|e| WsolError::io(&results, e))?;
    let heatmap_dir = results.join(HEATMAP_DIR);
    prepare_heatmap_dir(&heatmap_dir)?;
    let model = Backbone::from_safetensors(job.arch, &job.spec.model.weights, config.device)?;
    model.check_input(job.preprocess.crop)?;
    let layer = model.layer(&job.spec.model.layer)?;
    let names: Vec<&str> = job.hierarchy.labels().iter().map(String::as_str).collect();
    let mut pairs: Vec<PairOutcomes> = Vec::new();
    let mut heatmaps = Vec::new();
    // The extraction's regions of the evaluated images (the job's own images only: a
    // user's set has none), for their object lift where there are masks.
    let regions_of = match (&config.images, masks) {
        (None, Some(_)) => Some(foreground_cells(&job.dir.join("regions"), &work)?),
        _ => None,
    };
    let (mut lift_counts, mut lift_images) = (geometry::ObjectCounts::default(), 0);
    let batch = job.spec.extract.batch_size.max(1);
    let ctx = Context {
        evaluated: &evaluated,
        slots: &slots,
        names: &names,
        heatmap_dir: &heatmap_dir,
        heatmap_fraction,
    };
    for chunk in work.chunks(batch) {
        let decoded: Vec<Result<Decoded, String>> = chunk
            .par_iter()
            .map(|w| score::decode(w, &job.preprocess))
            .collect();
        let ok: Vec<(&ImageWork, Decoded)> = chunk
            .iter()
            .zip(decoded)
            .filter_map(|(w, r)| match r {
                Ok(d) => Some((w, d)),
                Err(reason) => {
                    skipped.push(Skipped {
                        what: w.path.display().to_string(),
                        reason,
                    });
                    None
                }
            })
            .collect();
        if let Some((cells, grid)) = &regions_of {
            for (w, dec) in &ok {
                if let (Some(mask), Some(cells)) = (&dec.mask, cells.get(&w.id)) {
                    let crop = dec.frame.crop as usize;
                    lift_counts.add(geometry::object_counts(mask, crop, *grid, cells));
                    lift_images += 1;
                }
            }
        }
        if !ok.is_empty() {
            let maps = score::feature_maps(&model, layer, &ok, &job.preprocess)?;
            let (d, h, w) = maps.shape;
            let scored: Vec<Result<ImageScores, WsolError>> = ok
                .par_iter()
                .zip(maps.values.par_chunks(d * h * w))
                .map(|((work, dec), z)| ctx.score_image(work, dec, z, maps.shape))
                .collect();
            for s in scored {
                let s = s?;
                pairs.extend(s.pairs);
                heatmaps.extend(s.heatmaps);
                skipped.extend(s.skipped);
            }
        }
        done += chunk.len();
        step(progress, cancel, done, total)?;
    }

    // Images were scored in id order: sort by concept, then image, for the rows.
    pairs.sort_by_key(|p| (p.concept, p.image));
    let box_thresholds = compare::choose_box_thresholds(&mut pairs, slots.len());
    let mut concepts = Vec::new();
    for e in &evaluated {
        let mine: Vec<&PairOutcomes> = pairs.iter().filter(|p| p.concept == e.id.0).collect();
        concepts.extend(report::concept_rows(
            (e.id.0, &e.name, e.level),
            &mine,
            &slots,
            &config.fractions,
        ));
    }
    let bootstrap = BootstrapSettings {
        replicates: config.bootstrap_replicates,
        confidence: CONFIDENCE,
        seed: config.seed,
    };
    heatmaps.sort_by(|a, b| (a.concept, &a.png).cmp(&(b.concept, &b.png)));
    let report = WsolReport {
        fractions: config.fractions.clone(),
        selections: Selection::ALL.to_vec(),
        summary: report::summary_rows(&pairs, &slots, &config.fractions, &box_thresholds, |f| {
            select::neurons_kept(d, f)
        }),
        comparisons: compare::compare(&pairs, &slots, &config.fractions, &bootstrap)
            .into_iter()
            .map(|c| Comparison {
                overlap: overlap(&evaluated, &slots, c.baseline, c.fraction),
                ..c
            })
            .collect(),
        random_draws: config.random_draws as usize,
        bootstrap: Some(bootstrap),
        concepts,
        heatmaps,
        threshold: THRESHOLD,
        seed: config.seed,
        neurons: d,
        skipped,
        image_source,
        region_lift: RegionLift::from_counts(
            lift_images,
            lift_counts.object_in_cells,
            lift_counts.in_cells,
            lift_counts.object,
            lift_counts.pixels,
        ),
    };
    let path = results.join(WSOL_FILE);
    report
        .write(&path)
        .map_err(|e| WsolError::other(&path, e.message))?;
    Ok(report)
}

/// Share of `baseline`'s neurons at `fraction` that Shapley also keeps: mean over the
/// evaluated concepts and the baseline's draws.
fn overlap(
    evaluated: &[Evaluated],
    slots: &[compare::Slot],
    baseline: Selection,
    fraction: u32,
) -> Option<f64> {
    let shapley = compare::slots_of(slots, Selection::Shapley, fraction);
    let draws = compare::slots_of(slots, baseline, fraction);
    let mut shares = Vec::new();
    for e in evaluated {
        let s = &e.classifiers[*shapley.first()?].neurons;
        for &b in &draws {
            let b = &e.classifiers[b].neurons;
            let common = b.iter().filter(|n| s.binary_search(n).is_ok()).count();
            shares.push(common as f64 / b.len().max(1) as f64);
        }
    }
    (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
}

/// The evaluation images with an annotation, per label: every image of `pool`, or only
/// those in `samples`' held-out split (`held_out_only`: the pool is the job's own images);
/// their ground truth files go to `truth_of`. `labels` indexes every label of the job.
fn evaluation_images(
    (pool, held_out_only): (&[images::ImageRecord], bool),
    samples: &ConceptSamples,
    labels: &HashMap<&str, u32>,
    index: &AnnotationIndex,
    masks: Option<&Path>,
    truth_of: &mut HashMap<u64, GroundTruthFiles>,
    skipped: &mut Vec<Skipped>,
) -> Vec<Vec<u64>> {
    let mut by_label: Vec<Vec<u64>> = vec![Vec::new(); labels.len()];
    let mut unannotated = 0usize;
    for img in pool {
        let Some(&label) = labels.get(img.label.as_str()) else {
            continue;
        };
        if held_out_only && !samples.is_held_out(label, img.id) {
            continue;
        }
        let truth = match truth_of.get(&img.id) {
            Some(t) => Some(t.clone()),
            None => index.find(&img.path, masks),
        };
        match truth {
            Some(truth) => {
                truth_of.insert(img.id, truth);
                by_label[label as usize].push(img.id);
            }
            None => unannotated += 1,
        }
    }
    if unannotated > 0 {
        skipped.push(Skipped {
            what: format!("{unannotated} evaluation images"),
            reason: "no (unambiguous) annotation file".into(),
        });
    }
    by_label
}

/// Each image's responsible cells `(y, x)`, and the grid's `(H, W)`.
type ForegroundCells = (HashMap<u64, Vec<(u16, u16)>>, (usize, usize));

/// The foreground cells of each image of `work` in the region files of `dir`: one pass over
/// their position columns.
fn foreground_cells(dir: &Path, work: &[ImageWork]) -> Result<ForegroundCells, WsolError> {
    let wanted: std::collections::HashSet<u64> = work.iter().map(|w| w.id).collect();
    let files = region_files(dir).map_err(|e| WsolError::other(dir, e))?;
    let grid = match files.first() {
        Some(first) => {
            let (meta, _) = read_region_meta(first).map_err(|e| WsolError::other(first, e))?;
            (meta.height, meta.width)
        }
        None => (0, 0),
    };
    let mut cells: HashMap<u64, Vec<(u16, u16)>> = HashMap::new();
    for_each_foreground(&files, |image, y, x| {
        if wanted.contains(&image) {
            cells.entry(image).or_default().push((y, x));
        }
    })
    .map_err(|e| WsolError::other(dir, e))?;
    Ok((cells, grid))
}

/// Removes heatmaps of an earlier evaluation (the directory is this stage's own).
fn prepare_heatmap_dir(dir: &Path) -> Result<(), WsolError> {
    std::fs::create_dir_all(dir).map_err(|e| WsolError::io(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| WsolError::io(dir, e))? {
        let path = entry.map_err(|e| WsolError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(&path).map_err(|e| WsolError::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked() {
        let mut c = WsolConfig {
            job_dir: "j".into(),
            annotations: "a".into(),
            masks: None,
            fractions: vec![10, 20],
            images_per_concept: 4,
            device: Device::Cpu,
            seed: 0,
            random_draws: 5,
            bootstrap_replicates: 2000,
            phi: None,
            images: None,
            out: None,
        };
        c.validate().unwrap();
        c.fractions = vec![0];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("between 1 and 100"));
        c.fractions = vec![10, 10];
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
        c.fractions = vec![];
        assert!(c.validate().is_err());
        c.fractions = vec![100];
        c.images_per_concept = 0;
        assert!(c.validate().is_err());
        c.images_per_concept = 1;
        c.random_draws = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("random draws"));
        c.random_draws = 1;
        c.bootstrap_replicates = 10;
        assert!(c.validate().unwrap_err().to_string().contains("too few"));
    }
}

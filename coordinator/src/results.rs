//! The report stage: Φ from the committed partial sums, and the result files of a job in
//! `<job_dir>/results/`.
//!
//! ```text
//! phi.parquet, phi.csv   concept, concept_name, level, neuron, phi, stderr, n_permutations
//! top_neurons.csv        the top N neurons of each concept
//! multimodal.csv         neurons in the top N of ≥ 2 concepts
//! concepts.json          the hierarchy used
//! job.json               the run: images, region rows, region-quality diagnostics
//!                        (`hint_common::regions::quality`) and, after the evaluate stage,
//!                        the regions' object lift; skipped images, quarantined tasks,
//!                        concepts with their permutation counts
//! report.html            everything above for people (`report::write`)
//! ```
//!
//! A job with several layers has its layers' jobs' results in `layers/<layer>/results/`;
//! its own are `layers.json` (each layer's job and how it ended) and, when two or more
//! succeeded, the depth view (`depth.html`, `depth.json`, `depth.csv`; `report::depth`).

use std::path::{Path, PathBuf};

use hint_common::hierarchy::{ConceptId, Hierarchy, HierarchyError};
use hint_common::job::{JobId, Stage};
use hint_common::regions::quality::{self, RegionLift, RegionQuality};
use hint_common::shapley::phi::{
    multimodal, top_neurons, write_multimodal_csv, write_phi_csv, write_phi_parquet, write_top_csv,
    ConceptPhi,
};
use hint_common::shapley::ShapleyError;
use hint_common::storage::{self, StorageError};
use hint_common::wsol::{WsolReport, WSOL_FILE};

use crate::job_file::{ConceptRun, JobSummary, QuarantinedTask, SkippedImage, JOB_FILE};
use crate::scheduler::{Job, Output, TaskState};

/// The results directory of a job.
pub fn results_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("results")
}

/// Errors of the report stage.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The planned hierarchy could not be read.
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    /// Φ could not be written.
    #[error(transparent)]
    Phi(#[from] ShapleyError),
    /// The report could not be written.
    #[error("report.html: {0}")]
    Report(String),
    /// The comparison of a job's layers could not be written.
    #[error("depth view: {0}")]
    Depth(String),
    /// An input could not be fetched from, or a result uploaded to, object storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Φ of every concept with committed sums, in concept order.
pub fn phi(job: &Job, hierarchy: &Hierarchy) -> Vec<ConceptPhi> {
    job.sums
        .iter()
        .map(|(&concept, sums)| {
            let c = hierarchy.concept(ConceptId(concept));
            ConceptPhi {
                concept,
                name: c.name.clone(),
                level: c.level,
                estimates: sums.estimates(),
            }
        })
        .collect()
}

/// Writes the results of a job whose Shapley tasks have all settled. For a job in object
/// storage they are written to a local copy of the job directory first (what the report
/// reads: spec.json, the classifiers' metrics) and uploaded file by file.
pub fn write(job: &Job) -> Result<(), ResultsError> {
    if !storage::is_remote(&job.job_dir) {
        write_into(job, &job.job_dir)?;
    } else {
        let staging = storage::cache_dir().join("results").join(&job.id.0);
        // The fetched classifiers stay pinned in the cache while the report reads them.
        let staged = stage(job, &staging).and_then(|_pinned| write_into(job, &staging));
        let uploaded = staged.and_then(|()| {
            storage::upload_dir(&results_dir(&staging), &results_dir(&job.job_dir))
                .map_err(ResultsError::from)
        });
        if let Err(error) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(%error, "could not remove {}", staging.display());
        }
        uploaded?;
    }
    // What is left under attempts/ are outputs of attempts that were never committed.
    let attempts = job.job_dir.join("attempts");
    if let Err(error) = storage::remove_all(&attempts) {
        tracing::warn!(%error, "could not remove {}", attempts.display());
    }
    Ok(())
}

/// A local job directory for the report of a job in object storage: its spec, its
/// hierarchy, (linked) the fetched classifier directories, and a copy of what the evaluate
/// and ablate stages committed into `results/` (`wsol.json` and its heatmaps,
/// `ablation.json`), which the report reads beside the files it writes. Returns the fetched
/// classifier directories, pinned in the cache while the caller holds them.
fn stage(job: &Job, staging: &Path) -> Result<storage::Cached, ResultsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultsError::Io { path, source }
    };
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(io(staging))?;
    }
    std::fs::create_dir_all(staging).map_err(io(staging))?;
    std::fs::write(staging.join("spec.json"), job.spec.to_json()).map_err(io(staging))?;
    let concepts = storage::fetch(&job.job_dir.join("concepts.json"))?;
    std::fs::copy(&concepts, staging.join("concepts.json")).map_err(io(&concepts))?;
    let classifiers = storage::fetch_dir(&job.job_dir.join("classifiers"))?;
    std::os::unix::fs::symlink(&classifiers, staging.join("classifiers"))
        .map_err(io(&classifiers))?;
    // Copied, not linked: the report writes into results/, and the cache's copies must
    // stay the objects' bytes.
    let committed = storage::fetch_dir(&results_dir(&job.job_dir))?;
    copy_tree(&committed, &results_dir(staging)).map_err(io(&committed))?;
    Ok(classifiers)
}

/// Copies every file below `from` to the same relative path below `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Writes the result files into `<job_dir>/results/` (a local directory).
fn write_into(job: &Job, job_dir: &Path) -> Result<(), ResultsError> {
    let hierarchy = Hierarchy::read_json(&job_dir.join("concepts.json"))?;
    let phis = phi(job, &hierarchy);
    let out = results_dir(job_dir);
    std::fs::create_dir_all(&out).map_err(|source| ResultsError::Io {
        path: out.clone(),
        source,
    })?;
    let top = job.spec.shapley.top;
    write_phi_parquet(&out.join("phi.parquet"), &phis, &settings(job))?;
    write_phi_csv(&out.join("phi.csv"), &phis)?;
    write_top_csv(&out.join("top_neurons.csv"), &top_neurons(&phis, top))?;
    write_multimodal_csv(&out.join("multimodal.csv"), &multimodal(&phis, top))?;
    hierarchy.write_json(&out.join("concepts.json"))?;
    let path = out.join(JOB_FILE);
    std::fs::write(&path, summary(job, &hierarchy).to_json())
        .map_err(|source| ResultsError::Io { path, source })?;
    // The page people open first; after the evaluate and ablate stages it is written again
    // with their sections.
    crate::report::write(job_dir).map_err(|e| ResultsError::Report(e.to_string()))?;
    Ok(())
}

/// `results/layers.json` of a job with several layers.
pub const LAYERS_FILE: &str = "layers.json";

/// One layer's job in `layers.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerJob {
    /// The layer.
    pub layer: String,
    /// Its job.
    pub job: String,
    /// Its directory (its own `results/report.html` is there).
    pub job_dir: PathBuf,
    /// `succeeded`, `failed` or `cancelled`; None while it runs.
    pub outcome: Option<String>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}

/// The results of a job with several layers, whose layers' jobs (`children`, shallow to
/// deep) have ended: `layers.json`, and the depth view of those that succeeded when there
/// are two or more. Local job directories only (the spec refuses others).
pub fn write_layers(job: &Job, children: &[Job]) -> Result<(), ResultsError> {
    let out = results_dir(&job.job_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultsError::Io { path, source }
    };
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let layers: Vec<LayerJob> = children
        .iter()
        .map(|c| LayerJob {
            layer: c.spec.model.layer.clone(),
            job: c.id.to_string(),
            job_dir: c.job_dir.clone(),
            outcome: c.ending().map(|e| e.outcome.as_str().to_string()),
            error: c.ending().and_then(|e| e.error.clone()),
        })
        .collect();
    let path = out.join(LAYERS_FILE);
    let text = serde_json::to_string_pretty(&layers).expect("layers serialise");
    std::fs::write(&path, text).map_err(io(&path))?;
    let succeeded: Vec<PathBuf> = layers
        .iter()
        .filter(|l| l.outcome.as_deref() == Some("succeeded"))
        .map(|l| l.job_dir.clone())
        .collect();
    if succeeded.len() >= 2 {
        let depth = |e: crate::report::depth::DepthError| ResultsError::Depth(e.to_string());
        crate::report::depth::DepthView::read(&succeeded)
            .map_err(depth)?
            .write(&out)
            .map_err(depth)?;
    }
    let attempts = job.job_dir.join("attempts");
    if let Err(error) = storage::remove_all(&attempts) {
        tracing::warn!(%error, "could not remove {}", attempts.display());
    }
    Ok(())
}

/// Key/value metadata of phi.parquet: what decides whether two runs are bit-comparable.
fn settings(job: &Job) -> Vec<(String, String)> {
    let s = &job.spec.shapley;
    let backend = if s.mode == hint_common::settings::Mode::Retrain {
        "retrain on the workers' devices".to_string()
    } else if s.sweep_on_device {
        "the workers' devices (batched sweep)".to_string()
    } else {
        "cpu".to_string()
    };
    let mut pairs = vec![
        ("hint.job.id".into(), job.id.to_string()),
        ("hint.job.name".into(), job.spec.name.clone()),
    ];
    pairs.extend(s.phi_metadata(job.spec.seed, &backend));
    pairs.push(("hint.model".into(), job.spec.model.architecture.clone()));
    pairs.push(("hint.layer".into(), job.spec.model.layer.clone()));
    pairs
}

/// Where the job's region-quality diagnostics are kept once measured.
pub const REGION_QUALITY_FILE: &str = "region_quality.json";

/// What the region-quality diagnostics read: every committed extract output's files, the
/// images they cover, and where the measurement is kept. Small, so it is taken under the
/// scheduler's lock and measured outside it.
#[derive(Debug, Clone)]
pub struct RegionInputs {
    job: JobId,
    files: Vec<PathBuf>,
    images: u64,
    kept: PathBuf,
}

impl RegionInputs {
    /// The inputs of `job`'s committed extract outputs.
    pub fn of(job: &Job) -> RegionInputs {
        let (mut files, mut images) = (Vec::new(), 0);
        for task in job.stage_tasks(Stage::Extract) {
            if let TaskState::Done {
                output:
                    Output::Extract {
                        files: f,
                        images: n,
                        ..
                    },
                ..
            } = &task.state
            {
                files.extend(f.iter().map(|f| PathBuf::from(&f.path)));
                images += n;
            }
        }
        RegionInputs {
            job: job.id.clone(),
            files,
            images,
            kept: job.job_dir.join(REGION_QUALITY_FILE),
        }
    }
}

/// Region-quality diagnostics over every committed extract output together (the fixed
/// pattern is the whole dataset's), each warning logged. Measured once — when the last
/// extract task commits — and kept in `<job>/region_quality.json`, which the results read
/// back (two passes over an ImageNet job's position columns are worth not repeating). A
/// file that cannot be read is logged and gives `None`, never a failed job: the
/// diagnostics are advice.
pub fn region_quality(inputs: &RegionInputs) -> Option<RegionQuality> {
    let RegionInputs {
        job,
        files,
        images,
        kept,
    } = inputs;
    let images = *images;
    let cached = storage::read_to_string(kept)
        .ok()
        .and_then(|text| serde_json::from_str::<RegionQuality>(&text).ok())
        .filter(|q| q.images == images);
    if cached.is_some() {
        return cached;
    }
    match quality::measure(files, images) {
        Ok(q) => {
            for warning in &q.warnings {
                tracing::warn!(job = %job, "{warning}");
            }
            let text = serde_json::to_string_pretty(&q).expect("plain data serialises");
            if let Err(error) = storage::write(kept, text.as_bytes()) {
                tracing::warn!(job = %job, %error, "could not keep {}", kept.display());
            }
            Some(q)
        }
        Err(error) => {
            tracing::warn!(job = %job, %error, "region-quality diagnostics failed");
            None
        }
    }
}

/// The object lift the evaluate stage measured (its committed `wsol.json`, read through
/// the writer's type); None before it ran, without masks, or for a file that does not read.
fn region_lift(job: &Job) -> Option<RegionLift> {
    let path = results_dir(&job.job_dir).join(WSOL_FILE);
    let text = storage::read_to_string(&path).ok()?;
    WsolReport::from_json(&text)
        .map_err(|e| tracing::warn!("{}: {e}", path.display()))
        .ok()?
        .region_lift
}

fn summary(job: &Job, hierarchy: &Hierarchy) -> JobSummary {
    let planned = job
        .planned()
        .expect("the report follows the Shapley stage, so the plan");
    let (mut region_files, mut region_rows, mut images_processed) = (0u64, 0u64, 0u64);
    let mut skipped_images = Vec::new();
    for task in job.stage_tasks(Stage::Extract) {
        if let TaskState::Done {
            output:
                Output::Extract {
                    files,
                    skipped,
                    images,
                },
            ..
        } = &task.state
        {
            region_files += files.len() as u64;
            region_rows += files.iter().map(|f| f.rows).sum::<u64>();
            images_processed += images;
            skipped_images.extend(skipped.iter().map(|(path, reason)| SkippedImage {
                path: path.clone(),
                reason: reason.clone(),
            }));
        }
    }
    let quarantined_tasks = job
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Quarantined)
        .map(|t| QuarantinedTask {
            task: t.id.to_string(),
            attempts: u64::from(t.attempts),
            reason: t.last_failure.as_ref().map(|f| f.reason.clone()),
            message: t.last_failure.as_ref().map(|f| f.message.clone()),
        })
        .collect();
    let rule = job.rule();
    let max = job.spec.shapley.permutations;
    let concepts = job
        .sums
        .iter()
        .map(|(&concept, sums)| {
            let c = hierarchy.concept(ConceptId(concept));
            ConceptRun {
                concept,
                name: c.name.clone(),
                level: c.level,
                n_permutations: sums.permutations(),
                stopped_by_rule: rule.is_some() && sums.permutations() < max,
                complete: sums.blocks().len() == 1 && sums.blocks()[0].start == 0,
            }
        })
        .collect();
    let trained: Vec<u32> = job.trained().into_iter().map(|(c, _)| c).collect();
    let concepts_without_classifier = (0..planned.concepts)
        .filter(|c| !trained.contains(c))
        .map(|c| hierarchy.concept(ConceptId(c)).name.clone())
        .collect();
    // Seconds from the first lease of a stage to its last task settling, as this process saw.
    let timings = job
        .stage_times
        .iter()
        .filter_map(|(stage, (start, end))| {
            let end = (*end)?;
            Some((
                stage.name().to_string(),
                end.saturating_duration_since(*start).as_secs_f64(),
            ))
        })
        .collect();
    let finished_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    JobSummary {
        job: job.id.to_string(),
        name: job.spec.name.clone(),
        submitted_at: Some(job.submitted_at),
        finished_at: Some(finished_at),
        timings,
        spec: Some(job.spec.clone()),
        images: planned.images,
        images_processed,
        region_files,
        region_rows,
        region_quality: region_quality(&RegionInputs::of(job)),
        region_lift: region_lift(job),
        skipped_images,
        quarantined_tasks,
        concepts,
        concepts_without_classifier,
        classifiers: job.job_dir.join("classifiers").display().to_string(),
        regions: job.regions_dir().display().to_string(),
    }
}

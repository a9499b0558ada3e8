//! The train task: classifiers for a part of the job's concepts, on the committed regions.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use hint_common::hierarchy::{ConceptId, Hierarchy};
use hint_common::proto::{TrainOutput, TrainTask};
use hint_common::storage;

use super::failure::TaskError;
use super::{check_cancel, output_dir, require, Job, TaskRunner};
use crate::classify::{self, ClassifyConfig, ClassifyProgress, ConceptClassifier, ConceptMetrics};

/// Whether a trained concept's evaluation split can define a Shapley game: two regions or
/// more, both classes present (`hint shapley` skips the others).
pub(super) fn shapley_ready(m: &ConceptMetrics) -> bool {
    m.n_eval >= 2 && m.n_eval_pos > 0 && m.n_eval_pos < m.n_eval
}

/// A local directory for an attempt's output bound for object storage: one per attempt
/// (the URL's last components name it), under the worker's cache.
fn scratch_dir(out: &Path) -> PathBuf {
    let name: Vec<String> = out
        .iter()
        .rev()
        .take(3)
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    storage::cache_dir()
        .join("outputs")
        .join(name.into_iter().rev().collect::<Vec<_>>().join("-"))
}

/// Runs the train task.
pub(super) fn run(
    runner: &TaskRunner,
    job: &Job,
    task: &TrainTask,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<TrainOutput, TaskError> {
    let started = Instant::now();
    if task.concepts.is_empty() {
        return Err(TaskError::BadInput(format!(
            "train part {} lists no concept",
            task.part
        )));
    }
    let concepts_file = job.concepts();
    require(&concepts_file, "the job's hierarchy")?;
    if task.regions_dir.is_empty() {
        return Err(TaskError::BadInput(
            "the task names no region directory".into(),
        ));
    }
    let regions = PathBuf::from(&task.regions_dir);
    require(&regions, "the region directory")?;
    let hierarchy = Hierarchy::read_json(&storage::fetch(&concepts_file)?)?;
    let mut ids: Vec<ConceptId> = task.concepts.iter().map(|&c| ConceptId(c)).collect();
    ids.sort();
    ids.dedup();
    let total = ids.len() as u64;

    let spec = &job.spec.classify;
    let out = output_dir(&task.out_dir, "train output directory")?;
    // The classifier files are small: for object storage they are written to a scratch
    // directory here and uploaded as a whole once trained (the coordinator commits the
    // attempt's prefix only after its completion arrives).
    let scratch = storage::is_remote(&out).then(|| scratch_dir(&out));
    let written = scratch.clone().unwrap_or_else(|| out.clone());
    let mut config = ClassifyConfig::new(regions, written.clone());
    if !task.samples_dir.is_empty() {
        let samples = PathBuf::from(&task.samples_dir);
        require(&samples, "the job's sample")?;
        config.samples = Some(samples);
    }
    config.hierarchy_source = Some(concepts_file);
    config.apply(spec, job.spec.seed);
    config.device = runner.device;
    config.concepts = Some(ids);
    // The attempt's directory is its own; a leftover there is an earlier try of it.
    config.overwrite = true;
    config.validate()?;

    progress(0, total);
    let report = classify::run(&config, &hierarchy, &mut |p| {
        if let ClassifyProgress::Training {
            done,
            total: fitting,
        } = p
        {
            // Concepts skipped for lack of training regions are done from the start.
            let skipped = total.saturating_sub(fitting as u64);
            progress(skipped + done as u64, total);
        }
    })?;
    check_cancel(cancel)?;

    let trained = report
        .metrics
        .concepts
        .iter()
        .filter(|m| shapley_ready(m))
        .filter(|m| written.join(ConceptClassifier::file_name(m.id)).is_file())
        .map(|m| m.id.0)
        .collect();
    if let Some(scratch) = &scratch {
        let uploaded = storage::upload_dir(scratch, &out);
        // The scratch copy is of no use after the upload, whatever its outcome.
        if let Err(error) = std::fs::remove_dir_all(scratch) {
            tracing::warn!(%error, "could not remove {}", scratch.display());
        }
        uploaded?;
    }
    progress(total, total);
    Ok(TrainOutput {
        dir: out.display().to_string(),
        trained,
        seconds: started.elapsed().as_secs_f64(),
    })
}

//! The train task: classifiers for a part of the job's concepts, on the committed regions.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use hint_common::hierarchy::{ConceptId, Hierarchy};
use hint_common::proto::{TrainOutput, TrainTask};
use hint_common::regions::sample::SampleConfig;

use super::failure::TaskError;
use super::{check_cancel, output_dir, require, Job, TaskRunner};
use crate::classify::{
    self, ClassifyConfig, ClassifyProgress, ConceptClassifier, ConceptMetrics, LogisticSettings,
};

/// Whether a trained concept's evaluation split can define a Shapley game: two regions or
/// more, both classes present (`hint shapley` skips the others).
pub(super) fn shapley_ready(m: &ConceptMetrics) -> bool {
    m.n_eval >= 2 && m.n_eval_pos > 0 && m.n_eval_pos < m.n_eval
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
    let hierarchy = Hierarchy::read_json(&concepts_file)?;
    let mut ids: Vec<ConceptId> = task.concepts.iter().map(|&c| ConceptId(c)).collect();
    ids.sort();
    ids.dedup();
    let total = ids.len() as u64;

    let spec = &job.spec.classify;
    let out = output_dir(&task.out_dir, "train output directory")?;
    let mut config = ClassifyConfig::new(regions, out.clone());
    config.hierarchy_source = Some(concepts_file);
    config.sample = SampleConfig {
        seed: job.spec.seed,
        max_per_class: spec.max_per_class,
        holdout: spec.holdout,
    };
    config.solver = LogisticSettings {
        l2: spec.l2,
        max_iterations: spec.iterations,
        tolerance: spec.tolerance,
    };
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
        .filter(|m| out.join(ConceptClassifier::file_name(m.id)).is_file())
        .map(|m| m.id.0)
        .collect();
    progress(total, total);
    Ok(TrainOutput {
        dir: out.display().to_string(),
        trained,
        seconds: started.elapsed().as_secs_f64(),
    })
}

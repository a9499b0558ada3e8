//! The extract task: one shard of the job's manifest → one region file per layer (with
//! `model.layers`, one pass writes each layer's file into `<out>/<layer>/`).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hint_common::proto::{ExtractSummary, ExtractTask, RegionFile, SkippedImage};
use hint_common::storage;

use super::failure::TaskError;
use super::{check_cancel, output_dir, require, Job, TaskRunner};
use crate::extract::{self, ExtractConfig};
use crate::models::{Architecture, InputSize};

/// The extraction settings of `job` for the task's shard, on the runner's device, and the
/// cached copy of a label map in object storage (pinned in the cache while it is held).
pub(super) fn config(
    runner: &TaskRunner,
    job: &Job,
    task: &ExtractTask,
) -> Result<(ExtractConfig, Option<storage::Cached>), TaskError> {
    let spec = &job.spec;
    let arch = Architecture::parse(&spec.model.architecture)?;
    let (first, end) = (task.first_image, task.end_image);
    if first >= end {
        return Err(TaskError::BadInput(format!(
            "shard {} has no images ({first}..{end})",
            task.shard
        )));
    }
    let images_per_file = usize::try_from(end - first)
        .map_err(|_| TaskError::BadInput(format!("shard {first}..{end} is too large")))?;
    let mut config = ExtractConfig::new(
        arch,
        spec.model.weights.clone(),
        spec.model.layer.clone(),
        job.manifest(),
        output_dir(&task.out_dir, "extract output directory")?,
    );
    // Several layers: the spec's `layer` is the shallowest, the rest share its pass.
    config.more_layers = spec.model.layers.iter().skip(1).cloned().collect();
    let defaults = arch.default_input();
    config.input = InputSize {
        resize: spec.model.resize.unwrap_or(defaults.resize),
        crop: spec.model.crop.unwrap_or(defaults.crop),
    };
    // The plan's label map fixes label indices for every shard (a class with no image in
    // the manifest keeps its index); job directories made by hand may lack it.
    let planned = job.labels();
    // A label map in object storage is read from its copy in the cache; a local one is
    // checked where the task runs (`require`).
    let local_copy = |path: &Path| -> Result<storage::Cached, TaskError> {
        Ok(if storage::is_remote(path) {
            storage::fetch(path)?
        } else {
            storage::Cached::local(path.to_path_buf())
        })
    };
    let label_map = if storage::exists(&planned)? {
        Some(local_copy(&planned)?)
    } else {
        spec.data.labels.as_deref().map(local_copy).transpose()?
    };
    config.label_map = label_map.as_ref().map(|copy| copy.to_path_buf());
    config.apply(&spec.extract)?;
    config.device = runner.device;
    config.seed = spec.seed;
    config.decode_threads = runner.decode_threads;
    config.encode_threads = runner.encode_threads;
    // One file per task: the coordinator commits (or drops) a shard as a whole.
    config.images_per_file = images_per_file;
    // The attempt's directory is its own; a leftover there is an earlier try of this very
    // attempt.
    config.overwrite = true;
    config.image_range = Some(first..end);
    config.file_prefix = format!("regions-s{:05}", task.shard);
    config.validate()?;
    Ok((config, label_map))
}

/// Runs the extract task.
pub(super) fn run(
    runner: &TaskRunner,
    job: &Job,
    task: &ExtractTask,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<ExtractSummary, TaskError> {
    let (mut config, _label_map) = config(runner, job, task)?;
    require(&config.weights, "the model weights")?;
    require(&config.images, "the job's manifest")?;
    if let Some(labels) = &config.label_map {
        require(labels, "the label map")?;
    }
    // The engine polls its own flag between batches; this thread mirrors ours into it.
    let stop = Arc::new(AtomicBool::new(false));
    config.cancel = Some(stop.clone());
    progress(0, task.end_image - task.first_image);
    let reports = extract::run(&config, &mut |p| {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        progress(p.images_done as u64, p.images_total as u64);
    })?;
    // One report per layer, over the same images: the first has the images, skips and
    // stages; every layer's files go back.
    let files: Vec<RegionFile> = reports
        .iter()
        .flat_map(|r| r.files.iter().map(RegionFile::from))
        .collect();
    let report = reports.into_iter().next().expect("a report per layer");
    // Stopped early (or told to stop as the last batch ended): the files are incomplete or
    // unwanted either way.
    check_cancel(cancel)?;
    tracing::info!(
        images = report.images_processed,
        seconds = report.seconds,
        "stages: {}",
        crate::busy::describe(&report.stages)
    );
    Ok(ExtractSummary {
        files,
        skipped: report.skipped.iter().map(SkippedImage::from).collect(),
        images_processed: report.images_processed as u64,
        seconds: report.seconds,
        stages: report
            .stages
            .iter()
            .map(|s| hint_common::proto::StageBusy {
                stage: s.stage.to_string(),
                threads: s.threads as u32,
                busy_seconds: s.busy_seconds,
            })
            .collect(),
    })
}

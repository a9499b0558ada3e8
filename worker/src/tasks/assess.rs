//! The evaluate and ablate tasks: WSOL (`[evaluate]`) and causal ablation (`[ablate]`) of
//! the job's Φ, which the coordinator's first report wrote to `results/phi.csv`. Each is one
//! task running the engine `hint evaluate` / `hint ablate` runs, with the spec's section and
//! the job's seed, into the attempt's directory; the coordinator moves the files into
//! `results/` when it commits them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use hint_common::ablation::ABLATION_FILE;
use hint_common::proto::{AblateTask, EvaluateTask, ResultFiles};
use hint_common::storage;

use super::failure::TaskError;
use super::{output_dir, require, Job, TaskRunner};
use crate::ablate::{self, AblateConfig};
use crate::wsol::{self, WsolConfig, WsolError};

/// Runs the evaluate task: `wsol.json` and `heatmaps/` in the attempt's directory.
pub(super) fn evaluate(
    runner: &TaskRunner,
    job: &Job,
    task: &EvaluateTask,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<ResultFiles, TaskError> {
    let started = Instant::now();
    let spec = job.spec.evaluate.as_ref().ok_or_else(|| {
        TaskError::BadInput("an evaluate task of a job whose spec has no [evaluate]".into())
    })?;
    let out = prepare(job, &task.out_dir, "evaluate")?;
    let config = WsolConfig::from_spec(
        &job.dir,
        spec,
        job.spec.seed,
        runner.device,
        Some(out.clone()),
    );
    wsol::evaluate(
        &config,
        &mut |done, total| progress(done as u64, total as u64),
        cancel,
    )
    .map_err(stopped)?;
    finished(out, started)
}

/// Runs the ablate task: `ablation.json` in the attempt's directory.
pub(super) fn ablate(
    runner: &TaskRunner,
    job: &Job,
    task: &AblateTask,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<ResultFiles, TaskError> {
    let started = Instant::now();
    let spec = job.spec.ablate.as_ref().ok_or_else(|| {
        TaskError::BadInput("an ablate task of a job whose spec has no [ablate]".into())
    })?;
    let out = prepare(job, &task.out_dir, "ablate")?;
    let config = AblateConfig::from_spec(
        &job.dir,
        spec,
        job.spec.seed,
        runner.device,
        Some(out.join(ABLATION_FILE)),
    );
    ablate::ablate(
        &config,
        &mut |done, total| progress(done as u64, total as u64),
        cancel,
    )
    .map_err(stopped)?;
    finished(out, started)
}

/// An engine that saw `cancel` set is a cancelled attempt (not counted, retried elsewhere).
fn stopped(error: WsolError) -> TaskError {
    match error {
        WsolError::Cancelled => TaskError::Cancelled,
        other => other.into(),
    }
}

/// The attempt's output directory, once the job's inputs are known to be there. The
/// engines read the job's files directly, so the job must be on a local (shared) file
/// system; the spec check refuses these sections for object storage already.
fn prepare(job: &Job, out_dir: &str, stage: &str) -> Result<PathBuf, TaskError> {
    if storage::is_remote(&job.dir) {
        return Err(TaskError::BadInput(format!(
            "the {stage} stage needs the job on a file system, not {}",
            job.dir.display()
        )));
    }
    require(
        &job.dir.join("results").join("phi.csv"),
        "the job's Φ (written by its first report)",
    )?;
    let out = output_dir(out_dir, &format!("{stage} output directory"))?;
    std::fs::create_dir_all(&out).map_err(|source| crate::Error::io(&out, source))?;
    Ok(out)
}

/// The files the attempt wrote, relative to its directory.
fn finished(out: PathBuf, started: Instant) -> Result<ResultFiles, TaskError> {
    let mut files = Vec::new();
    collect_files(&out, Path::new(""), &mut files)
        .map_err(|source| crate::Error::io(&out, source))?;
    files.sort();
    Ok(ResultFiles {
        dir: out.display().to_string(),
        files,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn collect_files(root: &Path, under: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(under))? {
        let entry = entry?;
        let relative = under.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            collect_files(root, &relative, files)?;
        } else {
            let parts: Vec<String> = relative
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            files.push(parts.join("/"));
        }
    }
    Ok(())
}

//! The evaluate and ablate tasks: WSOL (`[evaluate]`) and causal ablation (`[ablate]`) of
//! the job's Φ, which the coordinator's first report wrote to `results/phi.csv`. Each is one
//! task running the engine `hint evaluate` / `hint ablate` runs, with the spec's section and
//! the job's seed, into the attempt's directory; the coordinator moves the files into
//! `results/` when it commits them.
//!
//! The engines read a job directory and write plain files. For a job in object storage the
//! task gives them a local mirror of what they read (fetched into the storage cache, where
//! the worker's earlier tasks may have left most of it) and a local scratch directory, and
//! uploads the scratch directory to the attempt's directory when the engine is done.

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
    let work = Workspace::prepare(job, &task.out_dir, "evaluate")?;
    let config = WsolConfig::from_spec(
        &work.job_dir,
        spec,
        job.spec.seed,
        runner.device,
        Some(work.out.clone()),
    );
    wsol::evaluate(
        &config,
        &mut |done, total| progress(done as u64, total as u64),
        cancel,
    )
    .map_err(stopped)?;
    work.finish(started)
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
    let work = Workspace::prepare(job, &task.out_dir, "ablate")?;
    let config = AblateConfig::from_spec(
        &work.job_dir,
        spec,
        job.spec.seed,
        runner.device,
        Some(work.out.join(ABLATION_FILE)),
    );
    ablate::ablate(
        &config,
        &mut |done, total| progress(done as u64, total as u64),
        cancel,
    )
    .map_err(stopped)?;
    work.finish(started)
}

/// An engine that saw `cancel` set is a cancelled attempt (not counted, retried elsewhere).
fn stopped(error: WsolError) -> TaskError {
    match error {
        WsolError::Cancelled => TaskError::Cancelled,
        other => other.into(),
    }
}

/// Files of the job directory the engines read besides `spec.json`, and its directories
/// (fetched whole).
const MIRRORED_FILES: [&str; 4] = [
    "concepts.json",
    "manifest.csv",
    "labels.txt",
    "results/phi.csv",
];
const MIRRORED_DIRS: [&str; 2] = ["classifiers", "regions"];

/// Where an engine reads the job and writes its files.
struct Workspace {
    /// The job directory the engine reads: the job's own, or a local mirror of it.
    job_dir: PathBuf,
    /// The directory the engine writes into: the attempt's, or a local scratch directory.
    out: PathBuf,
    /// The attempt's directory in object storage, where `out` is uploaded.
    upload_to: Option<PathBuf>,
    /// The mirrored files, pinned in the cache while the engine reads them.
    _mirror: Vec<storage::Cached>,
}

impl Workspace {
    /// Checks that the job's Φ is there, then mirrors an object-storage job locally.
    fn prepare(job: &Job, out_dir: &str, stage: &str) -> Result<Workspace, TaskError> {
        require(
            &job.dir.join("results").join("phi.csv"),
            "the job's Φ (written by its first report)",
        )?;
        let attempt = output_dir(out_dir, &format!("{stage} output directory"))?;
        if !storage::is_remote(&job.dir) {
            std::fs::create_dir_all(&attempt)
                .map_err(|source| crate::Error::io(&attempt, source))?;
            return Ok(Workspace {
                job_dir: job.dir.clone(),
                out: attempt,
                upload_to: None,
                _mirror: Vec::new(),
            });
        }
        // The cache keeps an object at `<cache>/s3/<bucket>/<key>`, so the fetched files
        // and directories form one local tree under the job's prefix, spec.json's parent.
        let spec = storage::fetch(&job.dir.join("spec.json"))?;
        let job_dir = spec
            .parent()
            .expect("a fetched file lies below its job directory")
            .to_path_buf();
        let mut mirror = vec![spec];
        for file in MIRRORED_FILES {
            mirror.push(storage::fetch(&job.dir.join(file))?);
        }
        for dir in MIRRORED_DIRS {
            mirror.push(storage::fetch_dir(&job.dir.join(dir))?);
        }
        // Named after the attempt's URL: unique across jobs and storage roots.
        let url = attempt.to_string_lossy();
        let out = storage::cache_dir()
            .join("scratch")
            .join(url.trim_start_matches("s3://"));
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(|source| crate::Error::io(&out, source))?;
        }
        std::fs::create_dir_all(&out).map_err(|source| crate::Error::io(&out, source))?;
        Ok(Workspace {
            job_dir,
            out,
            upload_to: Some(attempt),
            _mirror: mirror,
        })
    }

    /// The files the engine wrote, relative to the attempt's directory (uploaded there
    /// first for a job in object storage).
    fn finish(self, started: Instant) -> Result<ResultFiles, TaskError> {
        let mut files = Vec::new();
        collect_files(&self.out, Path::new(""), &mut files)
            .map_err(|source| crate::Error::io(&self.out, source))?;
        files.sort();
        let dir = match &self.upload_to {
            None => self.out.clone(),
            Some(attempt) => {
                storage::upload_dir(&self.out, attempt)?;
                if let Err(error) = std::fs::remove_dir_all(&self.out) {
                    tracing::warn!(%error, "could not remove {}", self.out.display());
                }
                attempt.clone()
            }
        };
        Ok(ResultFiles {
            dir: dir.display().to_string(),
            files,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
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

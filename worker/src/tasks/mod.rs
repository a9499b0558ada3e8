//! Running one leased attempt of a distributed task with the engines: [`TaskRunner`].
//!
//! A task ([`proto::Task`]) carries the validated job spec as JSON, the job directory and one
//! of five kinds; each drives the very engine its single-machine command drives:
//!
//! - extract ([`extract`]): images `[first_image, end_image)` of `<job_dir>/manifest.csv` →
//!   one region file `regions-s{shard:05}-00000.parquet` in the attempt's directory, image ids
//!   the manifest positions (what `hint extract` gives those images);
//! - train ([`train`]): the listed concepts of `<job_dir>/concepts.json` → classifiers in the
//!   attempt's directory (what `hint classify --concept …` gives);
//! - shapley ([`shapley`]): one permutation block of one concept → exact partial sums
//!   (bit-identical to the same permutations of `hint shapley` on the CPU sweep);
//! - evaluate and ablate ([`assess`]): the spec's `[evaluate]` / `[ablate]` on the job's Φ →
//!   `wsol.json` and heatmaps / `ablation.json` in the attempt's directory (what `hint
//!   evaluate` / `hint ablate` write into `results/`).
//!
//! A failure comes back as a [`TaskFailure`], classified where it happened ([`failure`]).
//! One runner serves every slot of a worker: it holds the device, the decoding threads and
//! the Shapley caches (the evaluation samples of a classifier directory are rebuilt once,
//! not once per permutation block).

mod assess;
mod extract;
mod failure;
mod sample;
mod shapley;
mod train;

#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hint_common::job::JobSpec;
use hint_common::proto::{self, complete_request::Output, task::Kind};
use hint_common::storage;
use tch::Device;

use failure::TaskError;
pub use failure::TaskFailure;

/// The plan's image list in the job directory: `path,label`, row k = image id k.
pub const MANIFEST_FILE: &str = "manifest.csv";
/// The plan's hierarchy in the job directory (`Hierarchy::write_json`).
pub const CONCEPTS_FILE: &str = "concepts.json";
/// The plan's label map in the job directory (label k on line k).
pub const LABELS_FILE: &str = "labels.txt";

/// Runs leased task attempts; one per worker process, shared by its slots (threads).
#[derive(Debug)]
pub struct TaskRunner {
    device: Device,
    decode_threads: usize,
    /// An extract task's row groups encoding at once; 0: the default
    /// ([`ExtractConfig::encode_threads`](crate::extract::ExtractConfig::encode_threads)).
    encode_threads: usize,
    shapley: shapley::ShapleyCache,
}

// The worker's slots (threads) share one runner.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<TaskRunner>();
};

/// A leased attempt as a runner receives it: the coordinator's task message and its job's
/// spec, which reaches a worker once per job (`PollResponse.jobs`) and is kept by the
/// runtime.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The task message.
    pub task: proto::Task,
    /// Its job's validated spec.
    pub spec: Arc<JobSpec>,
}

/// A job as a task sees it: the spec and the job directory.
#[derive(Debug)]
struct Job<'a> {
    spec: &'a JobSpec,
    dir: PathBuf,
}

impl<'a> Job<'a> {
    fn of(lease: &'a Lease) -> Result<Job<'a>, TaskError> {
        if lease.task.job_dir.is_empty() {
            return Err(TaskError::BadInput(
                "the task names no job directory".into(),
            ));
        }
        Ok(Job {
            spec: &lease.spec,
            dir: PathBuf::from(&lease.task.job_dir),
        })
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    fn concepts(&self) -> PathBuf {
        self.dir.join(CONCEPTS_FILE)
    }

    fn labels(&self) -> PathBuf {
        self.dir.join(LABELS_FILE)
    }
}

/// A path the task needs and cannot do without: missing, it is the job's fault, not the
/// worker's (no retry would find it). A remote directory exists when objects lie under it.
fn require(path: &Path, what: &str) -> Result<(), TaskError> {
    let exists = if storage::is_remote(path) {
        storage::exists(path)? || storage::is_dir(path)?
    } else {
        path.exists()
    };
    if exists {
        Ok(())
    } else {
        Err(TaskError::BadInput(format!(
            "{what} {} does not exist",
            path.display()
        )))
    }
}

/// A directory the task was told to write into, as an absolute path (or its URL).
fn output_dir(dir: &str, what: &str) -> Result<PathBuf, TaskError> {
    if dir.is_empty() {
        return Err(TaskError::BadInput(format!("the task names no {what}")));
    }
    if storage::is_remote(Path::new(dir)) {
        return Ok(PathBuf::from(dir));
    }
    std::path::absolute(dir).map_err(|e| TaskError::BadInput(format!("{what} {dir}: {e}")))
}

fn check_cancel(cancel: &AtomicBool) -> Result<(), TaskError> {
    if cancel.load(Ordering::Relaxed) {
        Err(TaskError::Cancelled)
    } else {
        Ok(())
    }
}

impl TaskRunner {
    /// A runner whose tasks run on `device` (Shapley's fixed mode sweeps on the CPU unless
    /// the spec asks for the device) and decode images, or read a sample task's region
    /// files, on `decode_threads` threads.
    pub fn new(device: Device, decode_threads: usize) -> Self {
        if device.is_cuda() {
            warm_up_cuda_linalg(device);
        }
        TaskRunner {
            device,
            decode_threads: decode_threads.max(1),
            encode_threads: 0,
            shapley: shapley::ShapleyCache::default(),
        }
    }

    /// The same runner with `threads` row groups of an extract task's region file encoding
    /// at once (0: the default, the cores less two, 4 to 24).
    pub fn with_encode_threads(mut self, threads: usize) -> Self {
        self.encode_threads = threads;
        self
    }

    /// The device tasks run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs one leased attempt. `progress(done, total)` is called in the task's units
    /// (images, concepts, permutations); `cancel` is read before the task starts and at
    /// every safe point (between batches, phases and permutation chunks): once set, the
    /// attempt ends with a [`TaskFailure`] of reason `Cancelled` (retryable, not counted).
    /// A panic in an engine is caught and reported as a failure, never a crashed worker.
    pub fn run(
        &self,
        lease: &Lease,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &AtomicBool,
    ) -> Result<Output, TaskFailure> {
        let task = &lease.task;
        let _span = tracing::info_span!(
            "task",
            task_id = %task.task_id,
            attempt = task.attempt
        )
        .entered();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.dispatch(lease, progress, cancel)));
        let result = match outcome {
            Ok(result) => result.map_err(|e| e.failure()),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Err(TaskFailure::new(
                    failure::message_reason(message),
                    format!("the task panicked: {message}"),
                ))
            }
        };
        if let Err(failure) = &result {
            tracing::warn!(reason = failure.reason.as_str_name(), "{}", failure.message);
        }
        result
    }

    fn dispatch(
        &self,
        lease: &Lease,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &AtomicBool,
    ) -> Result<Output, TaskError> {
        check_cancel(cancel)?;
        let job = Job::of(lease)?;
        let task = &lease.task;
        match &task.kind {
            Some(Kind::Extract(t)) => {
                extract::run(self, &job, t, progress, cancel).map(Output::Extract)
            }
            Some(Kind::Sample(t)) => {
                sample::run(self, &job, t, progress, cancel).map(Output::Sample)
            }
            Some(Kind::Train(t)) => train::run(self, &job, t, progress, cancel).map(Output::Train),
            Some(Kind::Shapley(t)) => {
                shapley::run(self, &job, t, progress, cancel).map(Output::Shapley)
            }
            Some(Kind::Evaluate(t)) => {
                assess::evaluate(self, &job, t, progress, cancel).map(Output::Results)
            }
            Some(Kind::Ablate(t)) => {
                assess::ablate(self, &job, t, progress, cancel).map(Output::Results)
            }
            None => Err(TaskError::BadInput(format!(
                "task {} has no kind (extract, sample, train, shapley, evaluate or ablate)",
                task.task_id
            ))),
        }
    }
}

/// libtorch loads its CUDA linear algebra (Cholesky, used by the classifiers' Newton
/// steps) lazily, and two threads doing so at once fail with "lazy wrapper should be called
/// at most once" (seen with two embedded workers on an H200). One small factorisation per
/// process, before any task runs, loads it.
fn warm_up_cuda_linalg(device: Device) {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let eye = tch::Tensor::eye(2, (tch::Kind::Double, device));
        if let Err(error) = eye.f_linalg_cholesky(false) {
            tracing::warn!(%error, "warming up CUDA linear algebra failed");
        }
    });
}

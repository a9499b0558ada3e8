//! Why an attempt failed, decided here where the error happened: [`TaskFailure`].
//!
//! The coordinator only judges (retry, quarantine); what kind of failure it was is known only
//! on the worker, from the error's variant. A bad input (spec, weights, layer, hierarchy)
//! fails the same way on every worker, so it is not retried; storage and device troubles may
//! pass, so they are; a cancelled attempt did nothing wrong, so it does not count.

use hint_common::hierarchy::HierarchyError;
use hint_common::proto::FailureReason;
use hint_common::regions::sample::SampleError;
use hint_common::regions::RegionsError;
use hint_common::shapley::ShapleyError;
use hint_common::storage::StorageError;

use crate::classify::ClassifyError;
use crate::shapley::ShapleyRunError;

/// A failed attempt as the worker reports it (`FailRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// What kind of failure.
    pub reason: FailureReason,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Whether this attempt counts toward the task's attempt limit.
    pub count_to_failures: bool,
    /// The error with its cause chain (`error: cause: cause…`).
    pub message: String,
}

impl TaskFailure {
    /// A failure of `reason` with the flags that reason implies.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        let (retryable, count_to_failures) = match reason {
            FailureReason::BadInput => (false, true),
            FailureReason::Cancelled => (true, false),
            _ => (true, true),
        };
        TaskFailure {
            reason,
            retryable,
            count_to_failures,
            message: message.into(),
        }
    }

    /// The failure of an attempt stopped by its `cancel` flag.
    pub fn cancelled() -> Self {
        TaskFailure::new(
            FailureReason::Cancelled,
            "cancelled before the task finished",
        )
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str_name(), self.message)
    }
}

/// What can go wrong in a task, by the engine that raised it; [`TaskError::failure`]
/// classifies it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    /// The task or its spec cannot run anywhere (unparsable spec, unknown names, a missing
    /// input file, an empty range).
    #[error("{0}")]
    BadInput(String),
    /// The `cancel` flag was set.
    #[error("cancelled")]
    Cancelled,
    /// Extraction (models, images, saliency, region files).
    #[error(transparent)]
    Worker(#[from] crate::Error),
    /// Concept classifiers and their samples.
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// The Shapley engine.
    #[error(transparent)]
    Shapley(#[from] ShapleyRunError),
    /// The job's `concepts.json`.
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    /// WSOL or ablation (they share one error type).
    #[error(transparent)]
    Assess(#[from] crate::wsol::WsolError),
    /// Fetching an input from, or uploading an output to, the job's storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<hint_common::settings::SettingError> for TaskError {
    fn from(e: hint_common::settings::SettingError) -> Self {
        TaskError::Worker(e.into())
    }
}

impl From<SampleError> for TaskError {
    fn from(e: SampleError) -> Self {
        TaskError::Classify(e.into())
    }
}

impl From<hint_common::images::Error> for TaskError {
    fn from(e: hint_common::images::Error) -> Self {
        TaskError::Worker(e.into())
    }
}

impl TaskError {
    /// The report of this error.
    pub(crate) fn failure(&self) -> TaskFailure {
        if matches!(self, TaskError::Cancelled) {
            return TaskFailure::cancelled();
        }
        TaskFailure::new(self.reason(), chain(self))
    }

    fn reason(&self) -> FailureReason {
        match self {
            TaskError::BadInput(_) => FailureReason::BadInput,
            TaskError::Cancelled => FailureReason::Cancelled,
            TaskError::Worker(e) => worker_reason(e),
            TaskError::Classify(e) => classify_reason(e),
            TaskError::Shapley(e) => shapley_reason(e),
            TaskError::Hierarchy(e) => hierarchy_reason(e),
            TaskError::Assess(e) => assess_reason(e),
            // A missing input stays missing on every worker; anything else (the network,
            // the store) may pass.
            TaskError::Storage(e) if e.not_found => FailureReason::BadInput,
            TaskError::Storage(_) => FailureReason::Io,
        }
    }
}

/// `error: cause: cause…`, leaving out a cause whose text the message already holds
/// (errors such as `{path}: {source}` print their source themselves).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}

/// libtorch reports a device allocation failure only in its message.
pub(crate) fn message_reason(message: &str) -> FailureReason {
    if message.to_ascii_lowercase().contains("out of memory") {
        FailureReason::OutOfMemory
    } else {
        FailureReason::Execution
    }
}

fn torch_reason(e: &tch::TchError) -> FailureReason {
    match e {
        tch::TchError::Io(_) => FailureReason::Io,
        other => message_reason(&other.to_string()),
    }
}

fn worker_reason(e: &crate::Error) -> FailureReason {
    use crate::Error;
    match e {
        Error::Setting(_)
        | Error::Images(hint_common::images::Error::Input(_))
        | Error::UnknownLayer { .. }
        | Error::Weights { .. }
        | Error::Input(_)
        | Error::Config(_) => FailureReason::BadInput,
        Error::Torch(t) => torch_reason(t),
        Error::Io { .. } | Error::Images(hint_common::images::Error::Io { .. }) => {
            FailureReason::Io
        }
        Error::Regions(r) => regions_reason(r),
    }
}

fn regions_reason(e: &RegionsError) -> FailureReason {
    match e {
        // Reading or writing storage, or a file that storage truncated.
        RegionsError::Io { .. } | RegionsError::Parquet { .. } | RegionsError::Arrow { .. } => {
            FailureReason::Io
        }
        // A file that is not a region file of this layout: the same on every try.
        RegionsError::Metadata { .. } | RegionsError::Schema { .. } => FailureReason::BadInput,
        _ => FailureReason::Execution,
    }
}

fn sample_reason(e: &SampleError) -> FailureReason {
    match e {
        SampleError::Regions(r) => regions_reason(r),
        // A stored sample that cannot be read: the store or the file may come back.
        SampleError::ReadDir { .. } | SampleError::Stored { .. } => FailureReason::Io,
        SampleError::NoRegionFiles { .. }
        | SampleError::Inconsistent { .. }
        | SampleError::LabelOutOfRange { .. }
        | SampleError::HierarchyMismatch { .. }
        | SampleError::Config(_) => FailureReason::BadInput,
    }
}

fn assess_reason(e: &crate::wsol::WsolError) -> FailureReason {
    use crate::wsol::WsolError;
    match e {
        WsolError::Io { .. } => FailureReason::Io,
        // Annotations that do not cover the images, a bad setting: the same on every try.
        WsolError::Input { .. } | WsolError::Config(_) => FailureReason::BadInput,
        WsolError::Classify(e) => classify_reason(e),
        WsolError::Worker(e) => worker_reason(e),
        WsolError::Torch(e) => torch_reason(e),
        WsolError::Cancelled => FailureReason::Cancelled,
    }
}

fn hierarchy_reason(e: &HierarchyError) -> FailureReason {
    match e {
        HierarchyError::Io { .. } => FailureReason::Io,
        _ => FailureReason::BadInput,
    }
}

fn classify_reason(e: &ClassifyError) -> FailureReason {
    match e {
        ClassifyError::Sample(s) => sample_reason(s),
        ClassifyError::Hierarchy(h) => hierarchy_reason(h),
        ClassifyError::Torch(t) => torch_reason(t),
        ClassifyError::Io { .. } => FailureReason::Io,
        ClassifyError::Json { .. }
        | ClassifyError::Safetensors { .. }
        | ClassifyError::OutputExists { .. }
        | ClassifyError::Config(_) => FailureReason::BadInput,
    }
}

fn shapley_reason(e: &ShapleyRunError) -> FailureReason {
    match e {
        ShapleyRunError::Shapley(s) => match s {
            ShapleyError::Shape { .. } | ShapleyError::Input(_) | ShapleyError::Block { .. } => {
                FailureReason::BadInput
            }
            ShapleyError::Io { .. } | ShapleyError::Parquet { .. } | ShapleyError::Arrow { .. } => {
                FailureReason::Io
            }
            ShapleyError::Merge(_) | ShapleyError::Overflow { .. } => FailureReason::Execution,
        },
        ShapleyRunError::Torch(t) => torch_reason(t),
        ShapleyRunError::Config(_) => FailureReason::BadInput,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn reasons_carry_their_flags() {
        let bad = TaskFailure::new(FailureReason::BadInput, "x");
        assert_eq!((bad.retryable, bad.count_to_failures), (false, true));
        let cancelled = TaskFailure::cancelled();
        assert_eq!(cancelled.reason, FailureReason::Cancelled);
        assert_eq!(
            (cancelled.retryable, cancelled.count_to_failures),
            (true, false)
        );
        for reason in [
            FailureReason::Io,
            FailureReason::OutOfMemory,
            FailureReason::Execution,
        ] {
            let f = TaskFailure::new(reason, "x");
            assert_eq!((f.retryable, f.count_to_failures), (true, true));
        }
    }

    #[test]
    fn errors_are_classified_by_variant() {
        let io = || std::io::Error::other("disk gone");
        let cases: Vec<(TaskError, FailureReason)> = vec![
            (
                crate::Error::UnknownLayer {
                    arch: "tiny_cnn".into(),
                    layer: "features.99".into(),
                    why: None,
                    valid: vec!["features.0".into()],
                }
                .into(),
                FailureReason::BadInput,
            ),
            (crate::Error::io("/x", io()).into(), FailureReason::Io),
            (
                crate::Error::Torch(tch::TchError::Torch(
                    "CUDA out of memory. Tried to allocate 2.00 GiB".into(),
                ))
                .into(),
                FailureReason::OutOfMemory,
            ),
            (
                crate::Error::Torch(tch::TchError::Torch("shape mismatch".into())).into(),
                FailureReason::Execution,
            ),
            (
                ClassifyError::Sample(SampleError::ReadDir {
                    dir: PathBuf::from("/r"),
                    source: io(),
                })
                .into(),
                FailureReason::Io,
            ),
            (
                ClassifyError::Sample(SampleError::NoRegionFiles {
                    dir: PathBuf::from("/r"),
                })
                .into(),
                FailureReason::BadInput,
            ),
            (
                ShapleyRunError::Shapley(ShapleyError::Merge("x".into())).into(),
                FailureReason::Execution,
            ),
            (
                HierarchyError::Selection("x".into()).into(),
                FailureReason::BadInput,
            ),
            (TaskError::Cancelled, FailureReason::Cancelled),
        ];
        for (error, reason) in cases {
            assert_eq!(error.failure().reason, reason, "{error}");
        }
    }

    #[test]
    fn the_message_holds_the_cause_chain_once() {
        let e: TaskError = crate::Error::io(
            "/data/w.safetensors",
            std::io::Error::other("stale file handle"),
        )
        .into();
        assert_eq!(
            e.failure().message,
            "/data/w.safetensors: stale file handle"
        );

        #[derive(Debug, thiserror::Error)]
        #[error("reading the manifest")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(std::io::Error::other("EIO"));
        assert_eq!(chain(&outer), "reading the manifest: EIO");
    }
}

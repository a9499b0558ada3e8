//! What the coordinator and its workers agree on about a job.
//!
//! - [`spec`]: [`JobSpec`], the job spec (a TOML file, validated by the coordinator, sent to
//!   workers as JSON with absolute paths).
//! - [`ids`]: newtype ids of jobs, tasks and workers, and the task naming scheme.
//! - [`wire`]: conversions between the proto messages and the engines' types
//!   (exact Shapley partial sums).

pub mod ids;
pub mod spec;
pub mod wire;

pub use ids::{JobId, Stage, TaskId, WorkerId};
pub use spec::JobSpec;

/// The worker protocol's version: bumped on any change an older peer would misread.
/// `Register` refuses a worker that speaks another one.
///
/// 2: evaluate and ablate tasks (`Task.kind`), result files (`CompleteRequest.output`) and
/// the retrain settings in the spec a task carries — a version-1 worker cannot run them.
/// 3: a job's spec reaches each worker once (`PollResponse.jobs`, asked for by
/// `PollRequest.known_jobs`), no longer in every task — a version-2 worker would find none.
/// 5: a spec's `model.layers` (an extract task writes every layer's region file, each in
/// its `<out_dir>/<layer>/`) and layers inside blocks (`layer3.1.conv2`,
/// `features.5.4.block.3`) — a version-4 worker would extract one layer, or know no such
/// layer.
pub const PROTOCOL_VERSION: u32 = 5;

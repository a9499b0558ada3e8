//! hint's coordinator: plans HINT jobs, leases their tasks to workers over gRPC, keeps the
//! state durable, and aggregates the workers' partial Shapley sums into Φ.
//!
//! - [`spec`]: the job spec (TOML) → a validated [`hint_common::job::JobSpec`], every problem
//!   reported at once.
//! - [`plan`]: the plan stage: the image manifest, the concept hierarchy, the shards.
#![deny(missing_docs)]

pub mod commands;
pub mod coordinator;
pub mod http;
pub mod job_file;
pub mod journal;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod service;
pub mod spec;
pub mod status;
#[cfg(test)]
mod test_spec;

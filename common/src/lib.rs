//! Types shared by hint's coordinator and workers.
//!
//! - [`proto`]: the generated messages of `proto/hint.proto` (package `hint.v1`).
//! - [`regions`]: the region dataset's Arrow schema and its Parquet writer and reader.
//! - [`seed`]: deterministic seeds derived from a job seed and an identity.
#![deny(missing_docs)]

pub mod annotations;
pub mod hierarchy;
pub mod proto;
pub mod regions;
pub mod seed;
pub mod shapley;
pub mod synth;

//! Shapley math: the games, permutations, exact partial sums, estimates and Φ files.
//!
//! φ(d, e) is the Shapley value of neuron `d` in the game `v_e(S)` = *quality* of the concept
//! classifier `L_e` on the concept's evaluation regions when the neurons outside `S` are
//! replaced. This module is pure Rust (no libtorch); the worker runs it.
//!
//! - [`game`]: the value function of `fixed` mode ([`LinearGame`]: the trained classifier,
//!   one incremental sweep per permutation, O(N·D)) and the [`Replacement`] rows.
//! - [`quality`]: what v measures ([`Quality`]): the log-likelihood of the true labels
//!   (default), or the concept's prediction — the paper's sign-aware value — and the
//!   deterministic f32 score functions (log σ, σ) of the kernel.
//! - [`permutation`]: permutation `k` of concept `e` from `seed::rng(job, [TAG, e, k])` alone
//!   (Fisher–Yates on an exact, version-stable bounded draw); antithetic pairs.
//! - [`sums`]: [`PartialSums`] (Σ, Σ², n per neuron) in exact fixed point, so any split of
//!   permutations across workers merges to bit-identical Φ; [`ShapleyEstimate`].
//! - [`exact`]: Shapley values by enumeration of all 2^D coalitions (tests, small D).
//! - [`stopping`]: the rule the scheduler asks — top-k separated, or every stderr below a bound.
//! - [`phi`]: Φ as Parquet and CSV, top-N neurons per concept, multimodal neurons.
//!
//! # The game is deterministic
//!
//! Everything random is drawn once from the job seed: the replacement rows of a concept
//! (`seed::rng(job, [REPLACEMENT_TAG, e])`) and each permutation. `v_e(S)` is therefore a fixed
//! function of `S`, and Monte Carlo samples only permutations — which is what makes the
//! estimates comparable with exact enumeration.
//!
//! # Antithetic pairs and their standard error
//!
//! With antithetic sampling, permutation `2j + 1` is the reverse of permutation `2j`. The two
//! marginals of a pair are negatively correlated, so they are not two independent samples: the
//! *sample* is the pair, its value the mean of the two marginals, and the standard error is the
//! sample standard deviation of the pair means over √(pairs). Treating the halves as
//! independent would misstate the error (in either direction). `n_permutations` counts
//! permutations (twice the pairs).

pub mod exact;
pub mod game;
pub mod permutation;
pub mod phi;
pub mod quality;
pub mod stopping;
pub mod sums;

use std::path::PathBuf;

pub use exact::exact_shapley;
pub use game::{replacement_rows, LinearGame, Replacement, SignedContributions};
pub use permutation::{permutation, PermutationBlock, Sampling};
pub use phi::{ConceptPhi, MultimodalNeuron, TopNeuron};
pub use quality::Quality;
pub use stopping::{Rounds, StoppingRule, MIN_SAMPLES};
pub use sums::{PartialSums, ShapleyEstimate};

/// Tag of the permutation draws: permutation `k` of concept `e` comes from
/// `seed::rng(job_seed, &[PERMUTATION_TAG, e, k])`.
pub const PERMUTATION_TAG: u64 = 0x5348_4150_5045_524D; // "SHAPPERM"

/// Tag of the replacement-row draws of `marginal` replacement: concept `e`'s rows come from
/// `seed::rng(job_seed, &[REPLACEMENT_TAG, e])`.
pub const REPLACEMENT_TAG: u64 = 0x5348_4150_5245_504C; // "SHAPREPL"

/// Errors of the Shapley math and of writing Φ; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ShapleyError {
    /// Inputs whose sizes disagree (rows × neurons, weights, targets, replacement rows).
    #[error("shape mismatch: {what} has {actual} values, expected {expected}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Values expected.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// An input that cannot define a game (no rows, a NaN activation, one region only…).
    #[error("invalid input: {0}")]
    Input(String),
    /// A permutation block that does not fit the sampling scheme (odd bounds with antithetic
    /// pairs, end before start).
    #[error("permutation block {start}..{end}: {problem}")]
    Block {
        /// First permutation index.
        start: u64,
        /// One past the last permutation index.
        end: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two partial sums to merge cover the same permutations (a task counted twice) or
    /// different neuron counts.
    #[error("cannot merge partial sums: {0}")]
    Merge(String),
    /// A marginal or a sum left the fixed-point range (|marginal| ≥ 2^31 or 2^32 samples).
    #[error("partial sums overflow the fixed-point range at neuron {neuron}")]
    Overflow {
        /// The neuron whose sum overflowed.
        neuron: usize,
    },
    /// Creating or writing an output file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The Parquet encoder failed.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Building Arrow arrays failed.
    #[error("{path}: arrow: {source}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The Arrow error.
        source: arrow::error::ArrowError,
    },
}

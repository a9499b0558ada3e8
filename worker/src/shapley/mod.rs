//! The Shapley stage: Monte-Carlo φ(d, e) of every neuron `d` for one concept `e`.
//!
//! [`ShapleyEngine`] holds one concept's game, prepared from a [`ConceptInput`] (evaluation
//! activations, targets, the classifier; independent of files so tests build it directly),
//! and turns a [`PermutationBlock`] into [`PartialSums`] — the result of one Shapley task.
//! The math (games, permutations, exact sums, stopping) is in [`hint_common::shapley`].
//!
//! Two value modes ([`Mode`]):
//! - `fixed`: the trained classifier, unchanged. A permutation is one incremental sweep of
//!   [`LinearGame`] (O(N·D), sparse columns O(nonzeros)); samples run in parallel on the CPU
//!   (rayon), each on one thread in a fixed order, so a permutation's marginals are
//!   bit-identical wherever it runs. No libtorch is involved: the sweep is column additions
//!   plus a vectorised log σ, and libtorch's CPU kernels give no bit-identity across thread
//!   counts (their chunking decides which elements take the scalar tail path). This is the
//!   backend of `--device cpu` ([`SweepBackend::Rust`]).
//! - `fixed` on a libtorch device ([`SweepBackend::Torch`], chosen for CUDA devices by
//!   [`ShapleyConfig::with_device`]): [`batched::BatchedSweep`] sweeps a group of `P`
//!   permutations at once (`[T, P, N]` chunks of margins, the quality of all `T·P`
//!   coalitions in one pass) and hands the same f64 marginals to [`PartialSums`]. Its margins
//!   are bit-identical to the CPU sweep's; its values agree with them to float tolerance
//!   (libtorch's `log σ` and reductions), not bits — see [`batched`] for the contract.
//! - `retrain` (the paper's `L*_e`): every coalition gets its own logistic regression, fitted
//!   by [`retrain::RetrainGame`] in libtorch (CPU or GPU): the nested coalitions of a
//!   permutation one after the other, each fit starting from the previous optimum.
//!
//! Determinism: the permutations of a block and the replacement rows come from the job seed
//! alone, retrain mode fits each permutation's path on its own, and the batched
//! fixed sweep always computes whole groups `gP..(g+1)P` (the same shapes for any split), so
//! splitting the permutations of a concept into any blocks and merging the partial sums gives
//! bit-identical Φ on a given device kind and thread count. Across backends (pure Rust,
//! libtorch CPU, GPU) Φ agrees to float tolerance only: every permutation block of one
//! concept must run on one device kind, with one [`FixedConfig`].

pub mod batched;
pub mod retrain;

use hint_common::hierarchy::ConceptId;
use hint_common::job::spec::ShapleySpec;
use hint_common::regions::sample::ConceptSamples;
use hint_common::seed;
use hint_common::shapley::{
    exact, permutation, replacement_rows, LinearGame, PartialSums, PermutationBlock, Quality,
    Replacement, Rounds, Sampling, ShapleyError, SignedContributions,
};
use rayon::prelude::*;
use tch::Device;

use crate::classify::ConceptClassifier;
pub use batched::BatchedSweep;
pub use retrain::RetrainGame;

/// Errors of the Shapley stage.
#[derive(Debug, thiserror::Error)]
pub enum ShapleyRunError {
    /// The inputs or the sums are unusable.
    #[error(transparent)]
    Shapley(#[from] ShapleyError),
    /// A libtorch operation failed (retrain mode).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An invalid setting.
    #[error("invalid Shapley configuration: {0}")]
    Config(String),
}

/// Result of the Shapley stage.
pub type Result<T, E = ShapleyRunError> = std::result::Result<T, E>;

pub use hint_common::settings::Mode;

/// [`RetrainConfig::fit_regions`]'s default, the spec's `retrain_fit_regions`.
pub use hint_common::job::spec::DEFAULT_RETRAIN_FIT_REGIONS as DEFAULT_FIT_REGIONS;

/// Settings of retrain mode's fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrainConfig {
    /// Full Newton steps per fit: exactly this many for a fit from the cold start
    /// ([`RetrainGame::values`]), at most this many for a fit on a permutation's path, which
    /// stops earlier once converged (10: converged to working precision on well-posed
    /// problems).
    pub iterations: usize,
    /// L2 penalty λ on the weights (not the bias) of the mean log-loss; must be > 0 so that
    /// the Newton systems of coalitions with constant features are solvable.
    pub l2: f64,
    /// Where the fits run (always in f64: a path's fits stop at a relative step of 1e-12).
    pub device: Device,
    /// Bytes of coalition design matrices held at once (bounds memory at large N·D).
    pub memory_budget: usize,
    /// Fitting regions per concept: a concept with more is fitted on a seeded uniform
    /// subsample of this many (0: all). Each step of a fit passes over them, so they set
    /// retrain mode's cost.
    pub fit_regions: usize,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        RetrainConfig {
            iterations: 10,
            l2: 1e-3,
            device: Device::Cpu,
            memory_budget: 1 << 30,
            fit_regions: DEFAULT_FIT_REGIONS,
        }
    }
}

/// Where fixed mode's permutation sweeps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SweepBackend {
    /// The pure-Rust sweep on the CPU (rayon): bit-identical on every machine.
    #[default]
    Rust,
    /// Groups of permutations swept at once by libtorch on this device ([`BatchedSweep`]);
    /// `Torch(Device::Cpu)` exists for tests and benchmarks.
    Torch(Device),
}

impl SweepBackend {
    /// The backend of a device: the pure-Rust sweep on the CPU, libtorch elsewhere.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => SweepBackend::Rust,
            other => SweepBackend::Torch(other),
        }
    }
}

/// Settings of fixed mode's sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedConfig {
    /// Where the sweeps run.
    pub backend: SweepBackend,
    /// Permutations swept at once by the libtorch backend (`P`, even so that an antithetic
    /// pair is never split). With the memory budget it fixes the kernels' shapes, so it is
    /// part of the determinism contract: every worker of a job must use the same value.
    pub group: usize,
    /// Device bytes of one chunk of a group's margins and scores (20 bytes × steps ×
    /// `group` × N); the `[D, N]` contributions come on top.
    pub memory_budget: usize,
}

impl Default for FixedConfig {
    fn default() -> Self {
        FixedConfig {
            backend: SweepBackend::Rust,
            group: 64,
            memory_budget: 1 << 30,
        }
    }
}

/// Settings of the Shapley stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapleyConfig {
    /// Value mode.
    pub mode: Mode,
    /// Quality measure of the game.
    pub quality: Quality,
    /// What replaces neurons outside a coalition.
    pub replacement: Replacement,
    /// Independent permutations or antithetic pairs (default).
    pub sampling: Sampling,
    /// Stop a sweep once |v(all) − v(prefix)| ≤ this (off by default; either mode).
    pub truncation: Option<f64>,
    /// The job seed.
    pub seed: u64,
    /// Fixed mode's sweeps.
    pub fixed: FixedConfig,
    /// Retrain mode's fits.
    pub retrain: RetrainConfig,
}

impl Default for ShapleyConfig {
    fn default() -> Self {
        ShapleyConfig {
            mode: Mode::Fixed,
            quality: Quality::LogLikelihood,
            replacement: Replacement::Marginal,
            sampling: Sampling::Antithetic,
            truncation: None,
            seed: 0,
            fixed: FixedConfig::default(),
            retrain: RetrainConfig::default(),
        }
    }
}

impl ShapleyConfig {
    /// The settings of a spec's `[shapley]` section and seed: the one place names become a
    /// config (`hint shapley` builds a section from its flags). `device` serves retrain mode,
    /// and fixed mode only with `sweep_on_device` (otherwise the pure-Rust CPU sweep:
    /// bit-identical on any mix of machines).
    pub fn from_spec(spec: &ShapleySpec, seed: u64, device: Device) -> Result<Self> {
        let mode = spec.mode;
        let config = ShapleyConfig {
            mode,
            quality: spec.quality,
            replacement: spec.replacement,
            sampling: spec.sampling(),
            truncation: spec.truncation,
            seed,
            retrain: RetrainConfig {
                iterations: spec.retrain_iterations,
                l2: spec.retrain_l2,
                fit_regions: spec.retrain_fit_regions,
                ..RetrainConfig::default()
            },
            ..ShapleyConfig::default()
        };
        let device = if spec.sweep_on_device || mode == Mode::Retrain {
            device
        } else {
            Device::Cpu
        };
        let config = config.with_device(device);
        config.validate()?;
        Ok(config)
    }

    /// Runs both modes on `device`: fixed mode's sweep backend
    /// ([`SweepBackend::for_device`]) and retrain mode's fits.
    pub fn with_device(mut self, device: Device) -> Self {
        self.fixed.backend = SweepBackend::for_device(device);
        self.retrain.device = device;
        self
    }

    /// Rejects combinations that cannot run.
    pub fn validate(&self) -> Result<()> {
        if self.fixed.group < 2 || !self.fixed.group.is_multiple_of(2) {
            return Err(ShapleyRunError::Config(format!(
                "the batched sweep's group must be even and ≥ 2, not {}",
                self.fixed.group
            )));
        }
        if self.truncation.is_some_and(|t| t.is_nan() || t < 0.0) {
            return Err(ShapleyRunError::Config("truncation must be ≥ 0".into()));
        }
        if self.mode == Mode::Retrain && (self.retrain.l2.is_nan() || self.retrain.l2 <= 0.0) {
            return Err(ShapleyRunError::Config(
                "retrain needs an L2 penalty > 0".into(),
            ));
        }
        Ok(())
    }
}

/// One concept's inputs: evaluation regions, the classifier and (for retrain mode) the
/// regions to re-fit on.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptInput {
    /// The concept's id: part of every seed.
    pub concept: u32,
    /// Evaluation activations, `N × D` row-major.
    pub eval_x: Vec<f32>,
    /// Whether each evaluation region is a positive of the concept.
    pub eval_targets: Vec<bool>,
    /// Retrain mode's fitting regions (`N_fit × D`); empty = fit on the evaluation regions.
    pub fit_x: Vec<f32>,
    /// Targets of the fitting regions.
    pub fit_targets: Vec<bool>,
    /// The trained classifier's weights, `[D]`.
    pub weight: Vec<f32>,
    /// The trained classifier's bias.
    pub bias: f32,
}

/// Why a concept's samples define no game.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoGame {
    /// The samples have no rows of the concept.
    #[error("has no samples")]
    NoSamples,
    /// Fewer than two evaluation regions, or only one class among them.
    #[error(
        "has an evaluation split of {regions} regions, {positives} positive, which defines no game"
    )]
    OneSided {
        /// Evaluation regions.
        regions: usize,
        /// Positives among them.
        positives: usize,
    },
}

impl ConceptInput {
    /// A concept's game from the samples its classifier directory rebuilds and its
    /// classifier: the evaluation split, and for retrain mode the training split to re-fit
    /// on. The one place `hint shapley` and the Shapley task decide a concept has a game.
    pub fn from_samples(
        concept: ConceptId,
        samples: &ConceptSamples,
        classifier: &ConceptClassifier,
        mode: Mode,
    ) -> Result<Self, NoGame> {
        let eval = samples.eval(concept).ok_or(NoGame::NoSamples)?;
        let positives = eval.targets.iter().filter(|&&t| t > 0.5).count();
        if eval.len() < 2 || positives == 0 || positives == eval.len() {
            return Err(NoGame::OneSided {
                regions: eval.len(),
                positives,
            });
        }
        let (fit_x, fit_targets) = match (mode, samples.train(concept)) {
            (Mode::Retrain, Some(train)) => (
                train.activations,
                train.targets.iter().map(|&t| t > 0.5).collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Ok(ConceptInput {
            concept: concept.0,
            eval_targets: eval.targets.iter().map(|&t| t > 0.5).collect(),
            eval_x: eval.activations,
            fit_x,
            fit_targets,
            weight: classifier.weight.clone(),
            bias: classifier.bias,
        })
    }

    /// Neurons `D`.
    pub fn neurons(&self) -> usize {
        self.weight.len()
    }
}

/// Seed part that separates the fitting set's replacement rows from the evaluation set's.
const FIT_REPLACEMENT_TAG: u64 = 0x4649_5452_4550_4C00; // "FITREPL"
/// Seed part of the fitting set's subsample.
const FIT_SAMPLE_TAG: u64 = 0x4649_5453_414D_5000; // "FITSAMP"

/// The rows of `x` (`n × d`) and `targets` kept in a seeded uniform subsample of at most
/// `cap` rows (0: all), in their original order.
fn subsample(
    x: &[f32],
    targets: &[bool],
    d: usize,
    cap: usize,
    seed: u64,
    concept: u32,
) -> (Vec<f32>, Vec<bool>) {
    let n = targets.len();
    if cap == 0 || n <= cap {
        return (x.to_vec(), targets.to_vec());
    }
    // A partial Fisher–Yates draw of `cap` distinct rows.
    let mut rng = seed::rng(seed, &[FIT_SAMPLE_TAG, u64::from(concept)]);
    let mut rows: Vec<usize> = (0..n).collect();
    for i in 0..cap {
        let j = i + permutation::below(&mut rng, (n - i) as u64) as usize;
        rows.swap(i, j);
    }
    let mut kept = rows[..cap].to_vec();
    kept.sort_unstable();
    (
        kept.iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
            .collect(),
        kept.iter().map(|&r| targets[r]).collect(),
    )
}

/// The game of one concept, ready to sweep permutation blocks.
#[derive(Debug)]
pub struct ShapleyEngine {
    concept: u32,
    neurons: usize,
    config: ShapleyConfig,
    game: Game,
}

#[derive(Debug)]
enum Game {
    /// The pure-Rust game (values, exact sums, and the sweeps unless `batched` is there).
    Fixed {
        game: LinearGame,
        batched: Option<BatchedSweep>,
    },
    Retrain(RetrainGame),
}

impl ShapleyEngine {
    /// Prepares the game: draws the replacement rows and builds the fixed-mode kernel or the
    /// retrain-mode tensors.
    pub fn new(input: &ConceptInput, config: &ShapleyConfig) -> Result<Self> {
        config.validate()?;
        let (n, d) = (input.eval_targets.len(), input.neurons());
        let rows = replacement_rows(
            &input.eval_x,
            n,
            d,
            config.replacement,
            config.seed,
            input.concept,
        )?;
        let game = match config.mode {
            Mode::Fixed => {
                // Built once for both sweeps: the device sweep starts from the very numbers
                // the pure-Rust game (which also serves `values` and `exact`) keeps.
                let contributions = SignedContributions::new(
                    &input.eval_x,
                    &input.eval_targets,
                    &rows,
                    &input.weight,
                    input.bias,
                    config.quality,
                )?;
                let batched = match config.fixed.backend {
                    SweepBackend::Rust => None,
                    SweepBackend::Torch(device) => {
                        Some(BatchedSweep::new(&contributions, &config.fixed, device)?)
                    }
                };
                Game::Fixed {
                    game: LinearGame::from_contributions(contributions),
                    batched,
                }
            }
            Mode::Retrain => {
                let (fit_x, fit_targets, fit_rows) = if input.fit_targets.is_empty() {
                    (
                        input.eval_x.clone(),
                        input.eval_targets.clone(),
                        rows.clone(),
                    )
                } else {
                    let (fit_x, fit_targets) = subsample(
                        &input.fit_x,
                        &input.fit_targets,
                        d,
                        config.retrain.fit_regions,
                        config.seed,
                        input.concept,
                    );
                    let fit_seed = seed::derive(config.seed, &[FIT_REPLACEMENT_TAG]);
                    let fit_rows = replacement_rows(
                        &fit_x,
                        fit_targets.len(),
                        d,
                        config.replacement,
                        fit_seed,
                        input.concept,
                    )?;
                    (fit_x, fit_targets, fit_rows)
                };
                Game::Retrain(RetrainGame::new(
                    retrain::Regions::new(&input.eval_x, &input.eval_targets, &rows, d)?,
                    retrain::Regions::new(&fit_x, &fit_targets, &fit_rows, d)?,
                    d,
                    config.quality,
                    &config.retrain,
                )?)
            }
        };
        Ok(ShapleyEngine {
            concept: input.concept,
            neurons: d,
            config: *config,
            game,
        })
    }

    /// Neurons (players).
    pub fn neurons(&self) -> usize {
        self.neurons
    }

    /// The settings.
    pub fn config(&self) -> &ShapleyConfig {
        &self.config
    }

    /// v(S) of each coalition (`masks[i][d]`: is neuron `d` in coalition `i`).
    pub fn values(&self, masks: &[Vec<bool>]) -> Result<Vec<f64>> {
        match &self.game {
            Game::Fixed { game, .. } => Ok(masks.iter().map(|m| game.value(|d| m[d])).collect()),
            Game::Retrain(game) => game.values(masks),
        }
    }

    /// Exact Shapley values by enumerating all 2^D coalitions (D ≤ 16).
    pub fn exact(&self) -> Result<Vec<f64>> {
        let d = self.neurons;
        if d > 16 {
            return Err(ShapleyRunError::Config(format!(
                "exact enumeration needs D ≤ 16, not {d}"
            )));
        }
        let masks: Vec<Vec<bool>> = (0..1u64 << d)
            .map(|m| (0..d).map(|k| m >> k & 1 == 1).collect())
            .collect();
        Ok(exact::exact_from_values(d, &self.values(&masks)?))
    }

    /// The partial sums of the permutations of `block` — one Shapley task.
    pub fn run_block(&self, block: PermutationBlock) -> Result<PartialSums> {
        let sampling = self.config.sampling;
        let samples = block.samples(sampling)?;
        let mut sums = PartialSums::new(self.neurons, sampling, block);
        // Samples are computed in parallel, in bounded chunks, and added in index order
        // (the sums are exact, so the order is for readability, not for the result).
        let chunk = 256u64;
        let mut start = samples.start;
        while start < samples.end {
            let end = (start + chunk).min(samples.end);
            let marginals: Vec<Vec<f64>> = match &self.game {
                // Groups of permutations on the device; the host only applies marginals.
                Game::Fixed {
                    batched: Some(sweep),
                    ..
                } => (start..end)
                    .map(|j| {
                        let mut out = vec![0.0f64; self.neurons];
                        for (k, scale) in self.permutations_of(j) {
                            sweep.sweep(
                                self.source(),
                                k,
                                self.config.truncation,
                                scale,
                                &mut out,
                            )?;
                        }
                        Ok(out)
                    })
                    .collect::<Result<_>>()?,
                Game::Fixed { game, .. } => {
                    let sampler = FixedSampler {
                        game,
                        config: &self.config,
                        concept: self.concept,
                    };
                    (start..end)
                        .into_par_iter()
                        .map(|j| sampler.sample(j))
                        .collect()
                }
                // One permutation's path at a time (its fits are sequential); libtorch
                // parallelises inside each step.
                Game::Retrain(game) => (start..end)
                    .map(|j| {
                        let mut out = vec![0.0f64; self.neurons];
                        for (k, scale) in self.permutations_of(j) {
                            game.sweep(&self.order(k), self.config.truncation, scale, &mut out)?;
                        }
                        Ok(out)
                    })
                    .collect::<Result<_>>()?,
            };
            for m in &marginals {
                sums.add_sample(m)?;
            }
            start = end;
        }
        Ok(sums)
    }

    /// The permutation indices of sample `j` with the weight of each.
    fn permutations_of(&self, j: u64) -> impl Iterator<Item = (u64, f64)> {
        permutations_of(self.config.sampling, j)
    }

    /// Retrain mode: (fits made so far, fits that stopped at `retrain_iterations` Newton
    /// steps short of the tolerance). None in fixed mode.
    pub fn retrain_fits(&self) -> Option<(u64, u64)> {
        match &self.game {
            Game::Retrain(game) => Some(game.fit_counts()),
            Game::Fixed { .. } => None,
        }
    }

    /// A warning when retrain fits made since `since` (an earlier [`Self::retrain_fits`];
    /// (0, 0) for all) stopped at the Newton-step cap: their values depend on the
    /// permutation's path, so Φ is not the exact Shapley value of the game. None otherwise.
    pub fn unconverged_warning(&self, since: (u64, u64)) -> Option<String> {
        let (fits, at_cap) = self.retrain_fits()?;
        let (fits, at_cap) = (fits - since.0, at_cap - since.1);
        (at_cap > 0).then(|| {
            format!(
                "{at_cap} of {fits} retrain fits of concept {} stopped at retrain_iterations = {} \
                 Newton steps before converging: their values depend on the path; raise \
                 retrain_iterations",
                self.concept, self.config.retrain.iterations
            )
        })
    }

    /// The batched sweep, when fixed mode runs on libtorch.
    pub fn batched(&self) -> Option<&BatchedSweep> {
        match &self.game {
            Game::Fixed { batched, .. } => batched.as_ref(),
            Game::Retrain(_) => None,
        }
    }

    fn source(&self) -> batched::PermutationSource {
        batched::PermutationSource {
            seed: self.config.seed,
            concept: self.concept,
            sampling: self.config.sampling,
        }
    }

    fn order(&self, k: u64) -> Vec<u32> {
        permutation(
            self.config.seed,
            self.concept,
            k,
            self.neurons,
            self.config.sampling,
        )
    }
}

/// The permutation indices of sample `j` and the weight of each (½ for a pair's halves).
fn permutations_of(sampling: Sampling, j: u64) -> impl Iterator<Item = (u64, f64)> {
    let per = sampling.permutations_per_sample();
    (j * per..(j + 1) * per).map(move |k| (k, 1.0 / per as f64))
}

/// What a fixed-mode sample needs, all shareable across rayon's threads.
struct FixedSampler<'a> {
    game: &'a LinearGame,
    config: &'a ShapleyConfig,
    concept: u32,
}

impl FixedSampler<'_> {
    /// The marginals of sample `j` (a permutation, or the mean over an antithetic pair).
    fn sample(&self, j: u64) -> Vec<f64> {
        let d = self.game.neurons();
        let mut out = vec![0.0f64; d];
        for (k, scale) in permutations_of(self.config.sampling, j) {
            let order = permutation(self.config.seed, self.concept, k, d, self.config.sampling);
            self.game
                .sweep(&order, self.config.truncation, scale, &mut out);
        }
        out
    }
}

/// Runs the blocks of `rounds` for one concept, from permutation 0, until the budget is
/// spent or the stopping rule holds (the plan the coordinator's Shapley stage follows one
/// task per block); `on_round` sees the merged sums after each block. The blocks are
/// contiguous from 0, so the result equals one block of the same length.
pub fn estimate(
    engine: &ShapleyEngine,
    rounds: &Rounds,
    mut on_round: impl FnMut(&PartialSums),
) -> Result<PartialSums> {
    let mut sums: Option<PartialSums> = None;
    let mut done = 0;
    while let Some(block) = rounds.next(done, sums.as_ref()) {
        let part = engine.run_block(block)?;
        let merged = match sums.take() {
            None => PartialSums::merge([part])?,
            Some(previous) => PartialSums::merge([previous, part])?,
        };
        on_round(&merged);
        done = block.end;
        sums = Some(merged);
    }
    sums.map_or_else(
        || {
            Ok(PartialSums::new(
                engine.neurons,
                engine.config.sampling,
                PermutationBlock::new(0, 0),
            ))
        },
        Ok,
    )
}

#[cfg(test)]
mod tests;

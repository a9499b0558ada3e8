//! Fixed mode on a libtorch device: a *group* of permutations swept at once.
//!
//! The game is the one of [`LinearGame`](hint_common::shapley::LinearGame): region `i`'s
//! signed margin starts at `base_i = s_i (b + Σ_d w_d r_id)` and neuron `d` joining the
//! coalition adds `C[d, i] = s_i w_d (x_id − r_id)`. Both are computed here on the host with
//! the same f32/f64 operations as `LinearGame` and uploaded once: `C` is a `[D, N]` f32
//! device tensor (40 MB at D = 512, N = 20,000), `base` an `[N]` one.
//!
//! A group is `P` consecutive permutation indices `gP..(g+1)P` (row `r` = permutation
//! `gP + r`). Its `D` steps run in chunks of `T` steps: `G = C[perm[t0..t0+T, :]]` is one
//! `index_select` to `[T, P, N]`; `G[0] += carry`, `G[t] += G[t − 1]` turn it into the margins
//! after each step (sequential IEEE f32 additions in the CPU sweep's order, `margin +=
//! column`, so the margins equal the pure-Rust sweep's bit for bit — tested on the CPU via
//! `accuracy`, whose 0/1 scores are summed exactly; the bench checks it on a GPU); the
//! quality is then evaluated for all `T·P` coalitions at once. The per-step values `[D, P]` go to the
//! host once per group, where marginals, antithetic halves and truncation are applied with
//! the same f64 operations as the CPU sweep, and the engine feeds the same
//! [`PartialSums::add_sample`](hint_common::shapley::PartialSums::add_sample) — merging,
//! stderr and the stopping rule are one code path for both backends.
//!
//! # Precision
//!
//! Margins are f32 (the game's own definition, shared with the CPU sweep: bit-identical
//! margins). Scores and their sums are f64: `log σ` (or `σ`, or the logit itself, per
//! [`Quality`]) of the f32 margin in f64 and a f64 reduction over the `N` regions. An f32
//! sum of 20,000 scores would carry errors near 10⁻⁷ in v(S), the size of small neurons'
//! marginals; in f64 the device values differ from the CPU sweep's only by the CPU's f32
//! `log σ` or `σ` (≤ 3·10⁻⁷ per region, averaging out) and the order of the f64 sums.
//! Every quality runs here, the prediction qualities included (their margins are the plain
//! logits, so the same gather-and-prefix-sum serves them).
//! The work is memory-bound, and H100/H200-class GPUs have full-rate f64 units, so f64
//! costs bandwidth (about 1.5× the bytes of an all-f32 quality), not arithmetic.
//!
//! # Determinism
//!
//! - The shapes of every kernel depend only on `(N, D, P, T)`, never on the block being run:
//!   permutation `k` is always row `k mod P` of group `k / P`, a block that starts or ends
//!   inside a group still computes the whole group (the engine keeps the last group, so
//!   consecutive blocks of one group pay once), and the chunking of the `D` steps depends
//!   only on `D` and `T`. Every element of permutation `k`'s computation therefore sits at
//!   the same position of identically shaped tensors whichever block runs it, so libtorch's
//!   kernels (vectorised bodies, scalar tails, reduction trees) treat it identically and
//!   **any split of the permutations merges to bit-identical Φ on one device kind** (one
//!   GPU model and libtorch build — kernels pick launch shapes by the device — and, on the
//!   CPU, one libtorch thread count). `P` and `T` come from
//!   [`FixedConfig`](super::FixedConfig) (`group`, `memory_budget`), which every worker of a
//!   job must share.
//! - **CPU and GPU agree to float tolerance, not bits** (libtorch's `log σ` and reductions
//!   differ by device, and from the pure-Rust sweep): a distributed job must compute the
//!   Shapley stage of a concept on one device kind.
//! - Truncation is applied on the host after the group's values are known: the estimator is
//!   the CPU sweep's (remaining neurons get marginal 0), but the device does not save work.

use std::sync::Mutex;

use hint_common::shapley::{permutation, Quality, Sampling, SignedContributions};
use tch::{Device, Kind, Tensor};

use super::{FixedConfig, Result};

/// Device bytes per element of a chunk (`T·P·N` elements): the f32 margins, their f64 copy
/// and the f64 scores. (libtorch's CPU `log_sigmoid` keeps a buffer of 8 more.)
const BYTES_PER_ELEMENT: usize = 4 + 8 + 8;

/// The fixed-mode game of one concept on a libtorch device, swept a group of permutations
/// at a time; see the module docs.
#[derive(Debug)]
pub struct BatchedSweep {
    neurons: usize,
    regions: usize,
    positives: usize,
    alpha: f64,
    beta: f64,
    quality: Quality,
    device: Device,
    /// `[D, N]` f32: `C[d, i]`, regions positives first.
    contributions: Tensor,
    /// `[N]` f32: the margins of the empty coalition.
    base: Tensor,
    v_none: f64,
    v_all: f64,
    /// Permutations per group `P` (even).
    group: usize,
    /// Steps per chunk `T`.
    chunk: usize,
    /// The last group computed: consecutive blocks inside one group compute it once.
    last: Mutex<Option<GroupValues>>,
}

/// The values of every prefix of every permutation of one group, on the host.
#[derive(Debug)]
struct GroupValues {
    index: u64,
    /// The permutations of the group's rows.
    orders: Vec<Vec<u32>>,
    /// `[D, P]`: v(first t + 1 neurons of row r's permutation) at `t·P + r`.
    values: Vec<f64>,
}

/// Which permutations a group holds: the permutation stream of a concept.
#[derive(Debug, Clone, Copy)]
pub struct PermutationSource {
    /// The job seed.
    pub seed: u64,
    /// The concept.
    pub concept: u32,
    /// Independent or antithetic.
    pub sampling: Sampling,
}

impl BatchedSweep {
    /// Prepares the game on `device` from its signed contributions — the same numbers the
    /// pure-Rust [`hint_common::shapley::LinearGame`] sweeps, so the margins of the two
    /// backends are bit-identical.
    pub fn new(
        contributions: &SignedContributions,
        config: &FixedConfig,
        device: Device,
    ) -> Result<Self> {
        let _no_grad = tch::no_grad_guard();
        let &SignedContributions {
            regions: n,
            neurons: d,
            positives,
            alpha,
            beta,
            quality,
            ref delta,
            ref base,
        } = contributions;
        let group = config.group;
        let per_step = BYTES_PER_ELEMENT * group * n;
        let chunk = (config.memory_budget / per_step.max(1)).clamp(1, d);
        let contributions = Tensor::f_from_slice(delta)?
            .f_reshape([d as i64, n as i64])?
            .f_to_device(device)?;
        let base = Tensor::f_from_slice(base)?.f_to_device(device)?;
        let mut sweep = BatchedSweep {
            neurons: d,
            regions: n,
            positives,
            alpha,
            beta,
            quality,
            device,
            contributions,
            base,
            v_none: 0.0,
            v_all: 0.0,
            group,
            chunk,
            last: Mutex::new(None),
        };
        // v(∅) and v(all) as `[1, 1, N]` chunks: fixed shapes, so fixed bits.
        sweep.v_none = sweep.values(&sweep.base.f_view([1, 1, n as i64])?)?[0];
        let mut all = sweep.base.copy();
        for k in 0..d as i64 {
            let _ = all.f_add_(&sweep.contributions.f_get(k)?)?;
        }
        sweep.v_all = sweep.values(&all.f_view([1, 1, n as i64])?)?[0];
        Ok(sweep)
    }

    /// Neurons (players).
    pub fn neurons(&self) -> usize {
        self.neurons
    }

    /// The device the sweeps run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Permutations per group `P`.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Steps per chunk `T` (from the memory budget).
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// v(∅) as this backend computes it.
    pub fn v_none(&self) -> f64 {
        self.v_none
    }

    /// v(all neurons) as this backend computes it.
    pub fn v_all(&self) -> f64 {
        self.v_all
    }

    /// Drops the kept group, so the next sweep recomputes its group (benchmarks and checks of
    /// run-to-run determinism).
    pub fn forget(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Adds the marginals of permutation `k` to `out` (indexed by neuron), scaled by `scale`,
    /// with the CPU sweep's truncation rule; computes `k`'s group unless it is the last one.
    pub fn sweep(
        &self,
        source: PermutationSource,
        k: u64,
        truncation: Option<f64>,
        scale: f64,
        out: &mut [f64],
    ) -> Result<()> {
        let p = self.group as u64;
        let (index, row) = (k / p, (k % p) as usize);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_none_or(|g| g.index != index) {
            *last = Some(self.compute_group(source, index)?);
        }
        let group = last.as_ref().expect("just computed");
        let mut previous = self.v_none;
        for (t, &d) in group.orders[row].iter().enumerate() {
            let value = group.values[t * self.group + row];
            out[d as usize] += scale * (value - previous);
            previous = value;
            if truncation.is_some_and(|tol| (self.v_all - value).abs() <= tol) {
                break;
            }
        }
        Ok(())
    }

    /// The values of every prefix of the permutations `index·P..(index + 1)·P`.
    fn compute_group(&self, source: PermutationSource, index: u64) -> Result<GroupValues> {
        let _no_grad = tch::no_grad_guard();
        let (p, d, n) = (self.group, self.neurons, self.regions as i64);
        let orders: Vec<Vec<u32>> = (0..p as u64)
            .map(|r| {
                permutation(
                    source.seed,
                    source.concept,
                    index * p as u64 + r,
                    d,
                    source.sampling,
                )
            })
            .collect();
        // Step-major: entry t·P + r is the neuron row r adds at step t.
        let steps: Vec<i64> = (0..d)
            .flat_map(|t| orders.iter().map(move |o| i64::from(o[t])))
            .collect();
        let steps = Tensor::f_from_slice(&steps)?.f_to_device(self.device)?;
        let mut carry = self.base.f_view([1, n])?;
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for start in (0..d).step_by(self.chunk) {
            let len = self.chunk.min(d - start);
            let index = steps.f_narrow(0, (start * p) as i64, (len * p) as i64)?;
            let margins = self
                .contributions
                .f_index_select(0, &index)?
                .f_view([len as i64, p as i64, n])?;
            let _ = margins.f_get(0)?.f_add_(&carry)?;
            for t in 1..len as i64 {
                let _ = margins.f_get(t)?.f_add_(&margins.f_get(t - 1)?)?;
            }
            let (sp, sn) = self.sums(&margins)?;
            pos.push(sp);
            neg.push(sn);
            // A copy, so the chunk's memory is freed before the next one is gathered.
            carry = margins.f_get(len as i64 - 1)?.copy();
        }
        // One copy to the host per group (the only synchronisation).
        let values = self.combine(&Tensor::f_cat(&pos, 0)?, &Tensor::f_cat(&neg, 0)?)?;
        Ok(GroupValues {
            index,
            orders,
            values,
        })
    }

    /// The quality of each coalition of a `[T, P, N]` tensor of f32 margins, flattened
    /// step-major, on the host.
    fn values(&self, margins: &Tensor) -> Result<Vec<f64>> {
        let (pos, neg) = self.sums(margins)?;
        self.combine(&pos, &neg)
    }

    /// The f64 score sums over the positive and the negative regions of each coalition of a
    /// `[T, P, N]` tensor of f32 margins, flattened step-major, on the device.
    fn sums(&self, margins: &Tensor) -> Result<(Tensor, Tensor)> {
        let scores = match self.quality {
            Quality::LogLikelihood | Quality::BalancedLogLikelihood => {
                margins.f_to_kind(Kind::Double)?.f_log_sigmoid()?
            }
            Quality::Accuracy => margins.f_gt(0.0)?.f_to_kind(Kind::Double)?,
            // The margins of the prediction qualities are the plain logits (`Quality::sign`).
            Quality::Prediction | Quality::PredictionAll => {
                margins.f_to_kind(Kind::Double)?.f_sigmoid()?
            }
            Quality::Logit | Quality::LogitAll => margins.f_to_kind(Kind::Double)?,
        };
        let (pos, neg) = (
            self.positives as i64,
            (self.regions - self.positives) as i64,
        );
        let sum = |start: i64, len: i64| -> Result<Tensor> {
            Ok(scores
                .f_narrow(2, start, len)?
                .f_sum_dim_intlist([2i64].as_slice(), false, Kind::Double)?
                .f_view([-1])?)
        };
        Ok((sum(0, pos)?, sum(pos, neg)?))
    }

    /// `α Σ_pos + β Σ_neg` on the host, as the CPU sweep combines its sums.
    fn combine(&self, pos: &Tensor, neg: &Tensor) -> Result<Vec<f64>> {
        let (pos, neg) = (Vec::<f64>::try_from(pos)?, Vec::<f64>::try_from(neg)?);
        Ok(pos
            .iter()
            .zip(&neg)
            .map(|(&sp, &sn)| self.alpha * sp + self.beta * sn)
            .collect())
    }
}

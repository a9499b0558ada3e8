//! The game `v_e(S)`: quality of a linear concept classifier on evaluation regions whose
//! neurons outside `S` are replaced.
//!
//! # Replacement ([`Replacement`])
//!
//! Region `i` seen through coalition `S` is `x^S_i = (x_i on S, r_i off S)`. The replacement
//! row `r_i` is drawn once per concept, so the game is a fixed function of `S`:
//! - `marginal` (default): `r_i` = another region of the evaluation pool, `j ≠ i` uniform from
//!   `seed::rng(job, [REPLACEMENT_TAG, e])` — the neurons outside `S` take values from their
//!   joint marginal over the pool, breaking their link to the label;
//! - `mean`: `r_i` = the pool's mean activation; `zero`: `r_i = 0`.
//!
//! # Quality ([`Quality`])
//!
//! What v scores — the true labels (`log_likelihood`, default) or the concept's prediction
//! (`prediction`, `logit`, …, the paper's sign-aware value) — is in [`super::quality`].
//!
//! # The fixed-mode kernel ([`LinearGame`])
//!
//! With weights `w` and bias `b`, the margin of region `i` is `s_i (b + Σ_d w_d x^S_id)`,
//! `s_i = ±1` its label for the label qualities, `+1` for the prediction qualities
//! ([`Quality::sign`]), so that one score function serves both classes. Adding neuron `d` to
//! `S` adds `s_i w_d (x_id − r_id)` — one column of a precomputed `[D, N]` matrix — so a whole
//! permutation is one sweep of `D` column additions and quality evaluations: O(N·D), not
//! O(N·D²). The kernel is plain f32 arithmetic in a fixed order with f64 lane sums and its
//! own vectorisable log σ and σ, so the marginals of a permutation are bit-identical whatever
//! thread, batch or machine computes them (no libm, no FMA; an AVX2 build of the same loop is
//! chosen at run time where the CPU has it, with the same IEEE operations lane by lane).
//!
//! A column whose entries are mostly 0 (ReLU activations: a region whose activation and
//! replacement are both 0 does not move when the neuron joins) is stored sparsely and swept
//! by re-scoring only the regions it moves, against a cache of every region's score; a step
//! then costs O(nonzeros) instead of O(N). Below 40% density this pays; the choice is made per
//! column from the data alone, so it is the same on every worker.

use std::fmt;
use std::str::FromStr;

use super::quality::{log_sigmoid, sigmoid, Quality};
use super::{permutation::below, ShapleyError, REPLACEMENT_TAG};
use crate::seed;

/// What replaces the neurons outside a coalition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    /// Values of another region of the pool (seeded, one draw per concept).
    #[default]
    Marginal,
    /// The pool's mean activation.
    Mean,
    /// Zero.
    Zero,
}

impl Replacement {
    /// The option names.
    pub const NAMES: [&'static str; 3] = ["marginal", "mean", "zero"];

    /// The option name.
    pub fn name(self) -> &'static str {
        match self {
            Replacement::Marginal => "marginal",
            Replacement::Mean => "mean",
            Replacement::Zero => "zero",
        }
    }
}

impl fmt::Display for Replacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Replacement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "marginal" => Ok(Replacement::Marginal),
            "mean" => Ok(Replacement::Mean),
            "zero" => Ok(Replacement::Zero),
            _ => Err(format!(
                "unknown replacement '{s}' (expected marginal, mean, zero)"
            )),
        }
    }
}

/// The replacement rows (`n × d`, row-major) of the evaluation regions `x` (`n × d`) of
/// `concept`; the pool is `x` itself. `marginal` needs at least two regions.
pub fn replacement_rows(
    x: &[f32],
    n: usize,
    d: usize,
    kind: Replacement,
    job_seed: u64,
    concept: u32,
) -> Result<Vec<f32>, ShapleyError> {
    check_len("activations", n * d, x.len())?;
    match kind {
        Replacement::Zero => Ok(vec![0.0; n * d]),
        Replacement::Mean => {
            let mut mean = vec![0.0f64; d];
            for row in x.chunks_exact(d.max(1)) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += f64::from(v);
                }
            }
            let row: Vec<f32> = mean.iter().map(|m| (m / n.max(1) as f64) as f32).collect();
            Ok(row.iter().copied().cycle().take(n * d).collect())
        }
        Replacement::Marginal => {
            if n < 2 {
                return Err(ShapleyError::Input(format!(
                    "marginal replacement needs at least 2 evaluation regions, concept {concept} has {n}"
                )));
            }
            let mut rng = seed::rng(job_seed, &[REPLACEMENT_TAG, u64::from(concept)]);
            let mut out = Vec::with_capacity(n * d);
            for i in 0..n {
                let mut j = below(&mut rng, n as u64 - 1) as usize;
                if j >= i {
                    j += 1;
                }
                out.extend_from_slice(&x[j * d..(j + 1) * d]);
            }
            Ok(out)
        }
    }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), ShapleyError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ShapleyError::Shape {
            what,
            expected,
            actual,
        })
    }
}

/// The fixed-mode game of one concept, prepared for sweeps; see the module docs.
#[derive(Debug, Clone)]
pub struct LinearGame {
    neurons: usize,
    regions: usize,
    /// Regions are reordered positives first; the first `positives` belong to α.
    positives: usize,
    alpha: f64,
    beta: f64,
    quality: Quality,
    /// `[D, N]`: column `d` is `s_i w_d (x_id − r_id)` over the reordered regions.
    delta: Vec<f32>,
    /// Margins of the empty coalition, `s_i (b + Σ_d w_d r_id)`.
    base: Vec<f32>,
    /// v(all neurons), for truncation.
    full: f64,
    /// The nonzero entries of each column that is mostly zeros (`None`: swept densely).
    sparse: Vec<Option<SparseColumn>>,
    /// Whether any column is sparse (else the score cache is not kept).
    any_sparse: bool,
}

/// The nonzero entries of a column of `delta`: ReLU activations are mostly zeros, and a
/// region whose activation and replacement are both 0 keeps its margin when the neuron joins.
#[derive(Debug, Clone)]
struct SparseColumn {
    /// Region slots with a nonzero entry, increasing.
    index: Vec<u32>,
    /// The entries.
    value: Vec<f32>,
    /// Entries before this one are positives (α), the rest negatives (β).
    split: usize,
}

/// A column is swept sparsely below this density: a sparse entry costs a gather and a
/// scatter on top of the score, so it pays only when most entries are 0.
const SPARSE_DENSITY: f64 = 0.4;

/// A fixed-mode game in the form both sweeps (the CPU's [`LinearGame`] and the batched
/// device sweep) run: regions reordered positives first, each margin signed by
/// [`Quality::sign`] (its target for the label qualities, +1 for the prediction qualities), so
/// that adding neuron `d` to a coalition adds column `d` of `delta` to the margins. Built in
/// one place so the two backends start from bit-identical numbers.
#[derive(Debug, Clone)]
pub struct SignedContributions {
    /// Evaluation regions `N` in the game: all of them, or the positives only where the
    /// quality does not score negatives ([`Quality::scores_negatives`]).
    pub regions: usize,
    /// Neurons `D`.
    pub neurons: usize,
    /// Regions with target 1; they come first in the reordered slots.
    pub positives: usize,
    /// The quality's weight of a positive region's score.
    pub alpha: f64,
    /// The quality's weight of a negative region's score.
    pub beta: f64,
    /// The quality measure the weights are for.
    pub quality: Quality,
    /// `[D, N]`: column `d` is `s_i w_d (x_id − r_id)` over the reordered regions.
    pub delta: Vec<f32>,
    /// Margins of the empty coalition, `s_i (b + Σ_d w_d r_id)` (the sum in f64), `s_i` from
    /// [`Quality::sign`].
    pub base: Vec<f32>,
}

impl SignedContributions {
    /// From evaluation activations `x` (`n × d`, row-major), their targets, the replacement
    /// rows (`n × d`) and the classifier `(weight [d], bias)`.
    pub fn new(
        x: &[f32],
        targets: &[bool],
        replacement: &[f32],
        weight: &[f32],
        bias: f32,
        quality: Quality,
    ) -> Result<Self, ShapleyError> {
        let (n, d) = (targets.len(), weight.len());
        if n == 0 || d == 0 {
            return Err(ShapleyError::Input(format!(
                "a game needs regions and neurons (got {n} regions, {d} neurons)"
            )));
        }
        check_len("activations", n * d, x.len())?;
        check_len("replacement rows", n * d, replacement.len())?;
        if let Some(bad) = x.iter().chain(replacement).position(|v| !v.is_finite()) {
            return Err(ShapleyError::Input(format!(
                "non-finite activation at value {bad}"
            )));
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| targets[i]).collect();
        let positives = order.len();
        let (alpha, beta) = quality.class_weights(positives, n - positives)?;
        // A quality that ignores the negatives (weight 0) leaves them out of the game: they
        // would cost a sweep and add 0.
        if quality.scores_negatives() {
            order.extend((0..n).filter(|&i| !targets[i]));
        }
        let n = order.len();
        let mut delta = vec![0.0f32; d * n];
        let mut base = vec![0.0f32; n];
        for (slot, &i) in order.iter().enumerate() {
            let sign = quality.sign(targets[i]);
            let (row, rep) = (&x[i * d..(i + 1) * d], &replacement[i * d..(i + 1) * d]);
            let mut logit = f64::from(bias);
            for k in 0..d {
                logit += f64::from(weight[k]) * f64::from(rep[k]);
                delta[k * n + slot] = sign * weight[k] * (row[k] - rep[k]);
            }
            base[slot] = sign * logit as f32;
        }
        Ok(SignedContributions {
            regions: n,
            neurons: d,
            positives,
            alpha,
            beta,
            quality,
            delta,
            base,
        })
    }
}

impl LinearGame {
    /// Prepares the game from evaluation activations `x` (`n × d`, row-major), their targets,
    /// the replacement rows (`n × d`) and the classifier `(weight [d], bias)`.
    pub fn new(
        x: &[f32],
        targets: &[bool],
        replacement: &[f32],
        weight: &[f32],
        bias: f32,
        quality: Quality,
    ) -> Result<Self, ShapleyError> {
        let contributions =
            SignedContributions::new(x, targets, replacement, weight, bias, quality)?;
        Ok(Self::from_contributions(contributions))
    }

    /// Prepares the game from its signed contributions (shared with the batched sweep).
    pub fn from_contributions(contributions: SignedContributions) -> Self {
        let SignedContributions {
            regions: n,
            neurons: d,
            positives,
            alpha,
            beta,
            quality,
            delta,
            base,
        } = contributions;
        let mut game = LinearGame {
            neurons: d,
            regions: n,
            positives,
            alpha,
            beta,
            quality,
            sparse: (0..d)
                .map(|k| sparse_column(&delta[k * n..(k + 1) * n], positives))
                .collect(),
            any_sparse: false,
            delta,
            base,
            full: 0.0,
        };
        game.any_sparse = game.sparse.iter().any(Option::is_some);
        game.full = game.value(|_| true);
        game
    }

    /// Neurons (players).
    pub fn neurons(&self) -> usize {
        self.neurons
    }

    /// Evaluation regions.
    pub fn regions(&self) -> usize {
        self.regions
    }

    /// v(S) computed directly, `member(d)` saying whether neuron `d` is in S.
    pub fn value(&self, member: impl Fn(usize) -> bool) -> f64 {
        let mut margin = self.base.clone();
        for d in (0..self.neurons).filter(|&d| member(d)) {
            for (m, c) in margin.iter_mut().zip(self.column(d)) {
                *m += c;
            }
        }
        self.score(&margin)
    }

    fn column(&self, d: usize) -> &[f32] {
        &self.delta[d * self.regions..(d + 1) * self.regions]
    }

    fn score(&self, margin: &[f32]) -> f64 {
        let (pos, neg) = margin.split_at(self.positives);
        let q = self.quality;
        self.alpha * lane_sum(pos, |m| q.score(m)) + self.beta * lane_sum(neg, |m| q.score(m))
    }

    /// One sweep along `order`: adds the marginal contribution of every neuron to `out`
    /// (indexed by neuron) scaled by `scale` (½ for each half of an antithetic pair).
    ///
    /// Truncation: with `Some(tol)`, once |v(all) − v(prefix)| ≤ tol, the remaining neurons
    /// get marginal 0 and the sweep stops. This biases φ by at most `tol` in total and is
    /// off by default.
    pub fn sweep(&self, order: &[u32], truncation: Option<f64>, scale: f64, out: &mut [f64]) {
        self.sweep_state(order, truncation, scale, out);
    }

    /// [`LinearGame::sweep`], returning the final margins and score cache.
    fn sweep_state(
        &self,
        order: &[u32],
        truncation: Option<f64>,
        scale: f64,
        out: &mut [f64],
    ) -> (Vec<f32>, Vec<f32>) {
        // The quality is chosen once per sweep, so the inner loop is a plain elementwise map.
        match self.quality {
            Quality::LogLikelihood | Quality::BalancedLogLikelihood => {
                self.sweep_with(order, truncation, scale, out, log_sigmoid)
            }
            Quality::Accuracy => self.sweep_with(order, truncation, scale, out, |m| {
                f32::from(u8::from(m > 0.0))
            }),
            Quality::Prediction | Quality::PredictionAll => {
                self.sweep_with(order, truncation, scale, out, sigmoid)
            }
            Quality::Logit | Quality::LogitAll => {
                self.sweep_with(order, truncation, scale, out, |m| m)
            }
        }
    }

    /// The sweep with the score function `f`; returns the final margins and score cache (the
    /// cache is current only where a column is sparse) for the tests of the sparse path.
    fn sweep_with(
        &self,
        order: &[u32],
        truncation: Option<f64>,
        scale: f64,
        out: &mut [f64],
        f: impl Fn(f32) -> f32 + Copy,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut margin = self.base.clone();
        // The score of every region, kept current so a sparse step re-scores only the
        // regions it moves; a dense step re-sums from scratch.
        let mut scores: Vec<f32> = margin.iter().map(|&m| f(m)).collect();
        let pos_end = self.positives;
        let (mut sum_pos, mut sum_neg) = (
            lane_sum(&scores[..pos_end], |q| q),
            lane_sum(&scores[pos_end..], |q| q),
        );
        let mut previous = self.alpha * sum_pos + self.beta * sum_neg;
        for &d in order {
            let d = d as usize;
            match &self.sparse[d] {
                Some(column) => {
                    let (dp, dn) = sparse_step(&mut margin, &mut scores, column, f);
                    sum_pos += dp;
                    sum_neg += dn;
                }
                None => {
                    let column = self.column(d);
                    let (pm, nm) = margin.split_at_mut(pos_end);
                    let (ps, ns) = scores.split_at_mut(pos_end);
                    let (pc, nc) = column.split_at(pos_end);
                    if self.any_sparse {
                        sum_pos = add_and_sum::<true>(pm, ps, pc, f);
                        sum_neg = add_and_sum::<true>(nm, ns, nc, f);
                    } else {
                        sum_pos = add_and_sum::<false>(pm, ps, pc, f);
                        sum_neg = add_and_sum::<false>(nm, ns, nc, f);
                    }
                }
            }
            let value = self.alpha * sum_pos + self.beta * sum_neg;
            out[d] += scale * (value - previous);
            previous = value;
            if truncation.is_some_and(|tol| (self.full - value).abs() <= tol) {
                break;
            }
        }
        (margin, scores)
    }
}

/// Moves the regions of a sparse column and returns the change of the positive and negative
/// score sums. Gathers a block of entries, scores it with the vectorised `f`, scatters back.
fn sparse_step(
    margin: &mut [f32],
    scores: &mut [f32],
    column: &SparseColumn,
    f: impl Fn(f32) -> f32 + Copy,
) -> (f64, f64) {
    let mut moved = [0.0f32; BLOCK];
    let mut scored = [0.0f32; BLOCK];
    let mut change = |index: &[u32], value: &[f32]| {
        let mut acc = [0.0f64; LANES];
        for (ib, vb) in index.chunks(BLOCK).zip(value.chunks(BLOCK)) {
            let len = ib.len();
            for ((m, &i), &v) in moved.iter_mut().zip(ib).zip(vb) {
                *m = margin[i as usize] + v;
            }
            for (q, &m) in scored.iter_mut().zip(&moved[..len]) {
                *q = f(m);
            }
            for (k, &i) in ib.iter().enumerate() {
                let i = i as usize;
                acc[k % LANES] += f64::from(scored[k]) - f64::from(scores[i]);
                scores[i] = scored[k];
                margin[i] = moved[k];
            }
        }
        acc.iter().sum::<f64>()
    };
    let s = column.split;
    let dp = change(&column.index[..s], &column.value[..s]);
    let dn = change(&column.index[s..], &column.value[s..]);
    (dp, dn)
}

/// The sparse form of `column` when it is sparse enough to pay.
fn sparse_column(column: &[f32], positives: usize) -> Option<SparseColumn> {
    let nonzero = column.iter().filter(|&&v| v != 0.0).count();
    if nonzero as f64 >= SPARSE_DENSITY * column.len() as f64 {
        return None;
    }
    let index: Vec<u32> = (0..column.len() as u32)
        .filter(|&i| column[i as usize] != 0.0)
        .collect();
    Some(SparseColumn {
        split: index.partition_point(|&i| (i as usize) < positives),
        value: index.iter().map(|&i| column[i as usize]).collect(),
        index,
    })
}

/// Lanes of the f64 accumulators: independent lanes let the compiler vectorise without
/// reassociating, and fix the summation order.
const LANES: usize = 8;

/// Elements mapped per pass before their values are summed: the map is a plain elementwise
/// loop (which the compiler vectorises), the sum a fixed lane order.
const BLOCK: usize = 256;

/// Adds `values` into the lane accumulators: element `i` of each 8-chunk into lane `i`.
#[inline(always)]
fn accumulate(acc: &mut [f64; LANES], values: &[f32]) {
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            acc[k] += f64::from(chunk[k]);
        }
    }
    for (k, &v) in tail.iter().enumerate() {
        acc[k] += f64::from(v);
    }
}

/// Σ f(m) over `margin`, in a fixed order.
fn lane_sum(margin: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut values = [0.0f32; BLOCK];
    for block in margin.chunks(BLOCK) {
        for (v, &m) in values.iter_mut().zip(block) {
            *v = f(m);
        }
        accumulate(&mut acc, &values[..block.len()]);
    }
    acc.iter().sum()
}

/// `margin += column`, `scores = f(margin)` (only when `STORE`: the cache is needed only by
/// sparse steps), and Σ f(margin) in the order of [`lane_sum`]. Dispatches to an AVX2 build
/// of the same code where the CPU has it: the operations are the same IEEE operations lane by
/// lane (no FMA is enabled), so the results are bit-identical either way.
fn add_and_sum<const STORE: bool>(
    margin: &mut [f32],
    scores: &mut [f32],
    column: &[f32],
    f: impl Fn(f32) -> f32 + Copy,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { add_and_sum_avx2::<STORE>(margin, scores, column, f) };
        }
    }
    add_and_sum_portable::<STORE>(margin, scores, column, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_and_sum_avx2<const STORE: bool>(
    margin: &mut [f32],
    scores: &mut [f32],
    column: &[f32],
    f: impl Fn(f32) -> f32 + Copy,
) -> f64 {
    add_and_sum_portable::<STORE>(margin, scores, column, f)
}

#[inline(always)]
fn add_and_sum_portable<const STORE: bool>(
    margin: &mut [f32],
    scores: &mut [f32],
    column: &[f32],
    f: impl Fn(f32) -> f32 + Copy,
) -> f64 {
    let mut acc = [0.0f64; LANES];
    // Scores go to a block in L1 first; the sum reads them there.
    let mut values = [0.0f32; BLOCK];
    for ((block, sblock), cblock) in margin
        .chunks_mut(BLOCK)
        .zip(scores.chunks_mut(BLOCK))
        .zip(column.chunks(BLOCK))
    {
        let len = block.len();
        for ((m, &c), v) in block.iter_mut().zip(cblock).zip(values.iter_mut()) {
            *m += c;
            *v = f(*m);
        }
        accumulate(&mut acc, &values[..len]);
        if STORE {
            sblock.copy_from_slice(&values[..len]);
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_game(quality: Quality) -> LinearGame {
        let (n, d) = (37, 5);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let targets: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let rep = replacement_rows(&x, n, d, Replacement::Marginal, 3, 1).unwrap();
        LinearGame::new(
            &x,
            &targets,
            &rep,
            &[0.5, -1.0, 0.2, 0.0, 1.5],
            0.1,
            quality,
        )
        .unwrap()
    }

    #[test]
    fn a_sweep_telescopes_to_v_all_minus_v_none() {
        for quality in Quality::ALL {
            let game = small_game(quality);
            let mut out = vec![0.0; 5];
            game.sweep(&[3, 1, 4, 0, 2], None, 1.0, &mut out);
            let total: f64 = out.iter().sum();
            let want = game.value(|_| true) - game.value(|_| false);
            assert!((total - want).abs() < 1e-6, "{quality}: {total} vs {want}");
            // The weightless neuron 3 contributes exactly nothing.
            assert_eq!(out[3], 0.0);
        }
    }

    #[test]
    fn sparse_columns_sweep_like_direct_values() {
        // ReLU-like activations, mostly 0, with zero replacement: most columns are sparse.
        let (n, d) = (301, 7);
        let x: Vec<f32> = (0..n * d)
            .map(|i| {
                if i % 5 == 0 {
                    ((i * 7 % 11) as f32) / 3.0
                } else {
                    0.0
                }
            })
            .collect();
        let targets: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        for kind in [Replacement::Zero, Replacement::Marginal] {
            let rep = replacement_rows(&x, n, d, kind, 1, 2).unwrap();
            let w = [0.9, -0.4, 0.3, 1.2, -1.0, 0.5, 0.05];
            for quality in Quality::ALL {
                let game = LinearGame::new(&x, &targets, &rep, &w, -0.2, quality).unwrap();
                assert!(
                    game.sparse.iter().any(Option::is_some),
                    "{kind}: no sparse column"
                );
                let order = [4u32, 0, 6, 2, 5, 1, 3];
                let mut out = vec![0.0; d];
                game.sweep(&order, None, 1.0, &mut out);
                let mut inside = [false; 7];
                let mut previous = game.value(|_| false);
                for &k in &order {
                    inside[k as usize] = true;
                    let v = game.value(|j| inside[j]);
                    let want = v - previous;
                    assert!(
                        (out[k as usize] - want).abs() < 1e-6,
                        "{kind} {quality} neuron {k}: {} vs {want}",
                        out[k as usize]
                    );
                    previous = v;
                }
            }
        }
    }

    /// The game with every column swept densely.
    fn dense(game: &LinearGame) -> LinearGame {
        LinearGame {
            sparse: vec![None; game.neurons],
            any_sparse: false,
            ..game.clone()
        }
    }

    #[test]
    fn prediction_qualities_sweep_sparse_columns_like_dense_ones_bit_for_bit() {
        // ReLU-like activations, mostly 0, in quarters; dyadic weights and bias: every f32
        // margin is exact, so the logits' f64 sums are exact in any order.
        let (n, d) = (263, 6);
        let x: Vec<f32> = (0..n * d)
            .map(|i| {
                // Column 0 dense, the others a fifth nonzero.
                if i % d == 0 || i % 5 == 0 {
                    ((i * 7 % 13) as f32) / 4.0
                } else {
                    0.0
                }
            })
            .collect();
        let targets: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
        let w = [0.75, -0.5, 0.25, 1.25, -1.0, 0.125];
        let order = [2u32, 5, 0, 3, 1, 4];
        for kind in [Replacement::Zero, Replacement::Marginal] {
            let rep = replacement_rows(&x, n, d, kind, 5, 1).unwrap();
            for quality in [
                Quality::Prediction,
                Quality::Logit,
                Quality::PredictionAll,
                Quality::LogitAll,
            ] {
                let what = format!("{kind} {quality}");
                let sparse = LinearGame::new(&x, &targets, &rep, &w, -0.25, quality).unwrap();
                assert!(sparse.any_sparse, "{what}: no sparse column");
                assert!(
                    sparse.sparse.iter().any(Option::is_none),
                    "{what}: no dense one"
                );
                let positives = targets.iter().filter(|&&t| t).count();
                let want = if quality.scores_negatives() {
                    n
                } else {
                    positives
                };
                assert_eq!(sparse.regions(), want, "{what}: regions in the game");
                let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
                let (margin, scores) = sparse.sweep_state(&order, None, 1.0, &mut a);
                let (dense_margin, _) = dense(&sparse).sweep_state(&order, None, 1.0, &mut b);
                // The same margins, and a score cache that is exactly f(margin).
                for (i, ((m, dm), q)) in margin.iter().zip(&dense_margin).zip(&scores).enumerate() {
                    assert_eq!(m.to_bits(), dm.to_bits(), "{what}: margin {i}");
                    assert_eq!(
                        q.to_bits(),
                        quality.score(*m).to_bits(),
                        "{what}: score {i}"
                    );
                }
                for k in 0..d {
                    if matches!(quality, Quality::Logit | Quality::LogitAll) {
                        // Exact scores, exact sums: the same bits.
                        assert_eq!(a[k].to_bits(), b[k].to_bits(), "{what} neuron {k}");
                    } else {
                        // σ is rounded, and the sparse step sums changes rather than re-summing.
                        assert!((a[k] - b[k]).abs() < 1e-12, "{what} neuron {k}");
                    }
                }
                assert!(a.iter().any(|&p| p.abs() > 1e-3), "{what}: {a:?}");
            }
        }
    }

    #[test]
    fn marginal_rows_come_from_other_regions() {
        let (n, d) = (10, 2);
        let x: Vec<f32> = (0..n * d).map(|i| i as f32).collect();
        let rep = replacement_rows(&x, n, d, Replacement::Marginal, 9, 4).unwrap();
        assert_eq!(
            rep,
            replacement_rows(&x, n, d, Replacement::Marginal, 9, 4).unwrap()
        );
        assert_ne!(
            rep,
            replacement_rows(&x, n, d, Replacement::Marginal, 9, 5).unwrap()
        );
        for i in 0..n {
            let j = (rep[i * d] / d as f32) as usize;
            assert_ne!(i, j);
            assert_eq!(&rep[i * d..i * d + d], &x[j * d..j * d + d]);
        }
        let mean = replacement_rows(&x, n, d, Replacement::Mean, 0, 0).unwrap();
        assert_eq!(&mean[..2], &[9.0, 10.0]);
        assert!(replacement_rows(&x[..2], 1, 2, Replacement::Marginal, 0, 0).is_err());
    }
}

//! Retrain mode (the paper's `L*_e`): v(S) is the quality of a logistic regression re-fitted
//! on the coalition `S`.
//!
//! A coalition's design is `x^S = x ⊙ m + r ⊙ (1 − m)` (the same replacement as fixed mode,
//! applied to the fitting regions too) plus a bias column. Each fit minimises the mean log-loss
//! plus `λ/2 ‖w‖²`, a strictly convex objective: v(S) is the quality of its unique optimum.
//!
//! **A permutation's fits follow a path** ([`RetrainGame::sweep`]). Its `D + 1` nested
//! coalitions differ one column at a time, so each fit starts from the previous coalition's
//! optimum and re-uses its Hessian: swapping column `j` from `r_j` to `x_j` changes one row and
//! column of `Zᵀ diag(w) Z` (O(N·D) to update, then a Cholesky factor, O(D³/3)), and steps
//! with that factor contract to the new optimum at O(N·D) each. A full Hessian (O(N·D²), the
//! expensive part) is rebuilt only when those steps contract slower than 4× per step or a
//! step would raise the loss, and then the step is a safeguarded Newton step: the longest of
//! the lengths 1, ½, ¼, ⅛, 1/32, 1/256 that does not raise the loss (beyond its rounding,
//! 10⁻¹² relative — near the optimum the loss moves below f64's resolution, and a strict
//! "least loss" would stall there with θ still 10⁻⁷ away), else none. A fit ends when
//! its next step is below 10⁻¹² of the parameters' scale (that step is taken), or after
//! `iterations` full Newton steps — such fits are counted ([`RetrainGame::fit_counts`]) and
//! the Shapley task and `hint shapley` warn about them. The empty and the full coalition are the same in every
//! permutation: both are fitted once, when the game is built, and the last marginal of every
//! permutation ends at the cached full fit, so each permutation's marginals sum to exactly
//! v(all) − v(∅). A fit's value depends on the path only through the stopping tolerance.
//!
//! **Arbitrary coalitions** ([`RetrainGame::values`], exact enumeration and the tests'
//! reference) are fitted from a fixed start — weights 0, bias the log-odds of the base rate —
//! by exactly `iterations` of the same safeguarded Newton steps, many coalitions at once as batched
//! matrix products and one batched `linalg_solve`. (Not the trained classifier as the start:
//! its bias belongs to all neurons, and from a saturated start the Hessian vanishes.)
//!
//! Cost of a permutation: cold fits of its D + 1 coalitions are O(iterations · N · D³); the
//! path is O(D · (N·D·steps + D³/3)) plus O(N·D²) per Hessian rebuilt (about 10 steps per
//! coalition and a rebuild every 10 coalitions at D = 256) — `cargo bench -p hint-worker
//! --bench shapley` times both on one game (22.6× at D = 256, N = 2,000 on 2 cores). Every
//! fit is in f64, on the CPU or a GPU.

use std::sync::atomic::{AtomicU64, Ordering};

use hint_common::shapley::{Quality, ShapleyError};
use tch::{Device, Kind, Tensor};

use super::{Result, RetrainConfig};

/// One set of regions of a concept: activations, targets and replacement rows (`N × D`).
#[derive(Debug, Clone, PartialEq)]
pub struct Regions {
    x: Vec<f32>,
    targets: Vec<bool>,
    rows: Vec<f32>,
    d: usize,
}

impl Regions {
    /// Checks the shapes: `x` and `rows` are `targets.len() × d`.
    pub fn new(x: &[f32], targets: &[bool], rows: &[f32], d: usize) -> Result<Self> {
        for (what, len) in [("activations", x.len()), ("replacement rows", rows.len())] {
            if len != targets.len() * d {
                return Err(ShapleyError::Shape {
                    what,
                    expected: targets.len() * d,
                    actual: len,
                }
                .into());
            }
        }
        if targets.is_empty() {
            return Err(ShapleyError::Input(
                "retrain mode needs regions to fit and evaluate".into(),
            )
            .into());
        }
        Ok(Regions {
            x: x.to_vec(),
            targets: targets.to_vec(),
            rows: rows.to_vec(),
            d,
        })
    }
}

/// The retrain-mode game of one concept, its regions on the fitting device.
#[derive(Debug)]
pub struct RetrainGame {
    problem: Problem,
    /// The empty coalition's fit: where every permutation's path starts.
    start: Fit,
    /// v(∅), from `start`.
    empty_value: f64,
    /// v(all), fitted once: the end of every permutation's path.
    full_value: f64,
    /// Fits made so far (the game's two cold fits and every fit on a path), and those that
    /// reached `iterations` Newton steps before the tolerance.
    fits: FitCounts,
}

/// How many fits a retrain game made, and how many stopped at the Newton-step cap
/// (`retrain_iterations`) short of the tolerance: their values depend on the path, so Φ is
/// then not the exact Shapley value of the game it names.
#[derive(Debug, Default)]
pub struct FitCounts {
    fits: AtomicU64,
    at_cap: AtomicU64,
}

impl FitCounts {
    fn record(&self, converged: bool) {
        self.fits.fetch_add(1, Ordering::Relaxed);
        if !converged {
            self.at_cap.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (fits, fits stopped at the cap) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.fits.load(Ordering::Relaxed),
            self.at_cap.load(Ordering::Relaxed),
        )
    }
}

impl RetrainGame {
    /// Moves the regions to the device, sizes the coalition groups and fits the empty and the
    /// full coalition.
    pub fn new(
        eval: Regions,
        fit: Regions,
        neurons: usize,
        quality: Quality,
        config: &RetrainConfig,
    ) -> Result<Self> {
        let problem = Problem::new(eval, fit, neurons, quality, config)?;
        let _guard = tch::no_grad_guard();
        let fits = FitCounts::default();
        let (start, converged) = Fit::cold(&problem, false)?;
        fits.record(converged);
        let (full, converged) = Fit::cold(&problem, true)?;
        fits.record(converged);
        Ok(RetrainGame {
            empty_value: start.value(&problem)?,
            full_value: full.value(&problem)?,
            start,
            problem,
            fits,
        })
    }

    /// v(S) of each coalition (`masks[i][d]`: is neuron `d` in coalition `i`), each fitted
    /// from the fixed start by the batched Newton steps.
    pub fn values(&self, masks: &[Vec<bool>]) -> Result<Vec<f64>> {
        let d = self.problem.neurons;
        let flat: Vec<f64> = masks
            .iter()
            .flat_map(|m| (0..d).map(move |k| f64::from(u8::from(m[k]))))
            .collect();
        let masks = Tensor::f_from_slice(&flat)?
            .f_reshape([masks.len() as i64, d as i64])?
            .f_to_device(self.problem.device)?;
        self.problem.values_of(&masks)
    }

    /// Adds `scale ×` the marginals along `order` to `out`: the `D + 1` nested coalitions of
    /// the permutation, each fit warm-started from the previous one. With `truncation`, the
    /// sweep stops once |v(all) − v(prefix)| ≤ it (the rest of the order gets 0), as fixed
    /// mode's does.
    pub fn sweep(
        &self,
        order: &[u32],
        truncation: Option<f64>,
        scale: f64,
        out: &mut [f64],
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let problem = &self.problem;
        let mut fit = self.start.copy()?;
        let mut previous = self.empty_value;
        for (t, &neuron) in order.iter().enumerate() {
            let value = if t + 1 == order.len() {
                self.full_value
            } else {
                fit.swap_in(problem, neuron as i64)?;
                self.fits.record(fit.converge(problem)?);
                fit.value(problem)?
            };
            out[neuron as usize] += scale * (value - previous);
            previous = value;
            if truncation.is_some_and(|tol| (self.full_value - value).abs() <= tol) {
                break;
            }
        }
        Ok(())
    }

    /// The fits made so far (construction and every sweep), and how many stopped at the
    /// Newton-step cap.
    pub fn fit_counts(&self) -> (u64, u64) {
        self.fits.get()
    }
}

/// A fit's next step is taken as the last once its largest entry is below this fraction of
/// the parameters' scale (max(1, max |θ|)).
const TOLERANCE: f64 = 1e-12;
/// Steps with a re-used Hessian must shrink at least this much per step; slower, and the
/// Hessian is rebuilt.
const CONTRACTION: f64 = 0.25;
/// A step with a re-used Hessian is kept unless it raises the loss by more than this
/// (relative): near the optimum the loss changes below f64's resolution.
const LOSS_SLACK: f64 = 1e-12;
/// Step lengths tried by a safeguarded Newton step (0, keeping θ, is always a candidate).
const STEP_LENGTHS: [f64; 6] = [1.0, 0.5, 0.25, 0.125, 1.0 / 32.0, 1.0 / 256.0];

/// One concept's regions and the fitting objective, in f64 on the fitting device.
#[derive(Debug)]
struct Problem {
    neurons: usize,
    quality: Quality,
    iterations: usize,
    device: Device,
    eval_x: Tensor,
    eval_r: Tensor,
    /// The sign of each evaluation region's margin ([`Quality::sign`]): its target's (±1)
    /// for the label qualities, +1 for the prediction qualities.
    eval_sign: Tensor,
    /// The quality's weight of each evaluation region (α or β).
    eval_weight: Tensor,
    fit_x: Tensor,
    fit_r: Tensor,
    /// 0/1 targets of the fitting regions.
    fit_y: Tensor,
    /// The start of every cold fit's bias: the log-odds of the fitting set's base rate.
    init_b: f64,
    /// λ on the weights, a tiny ridge on the bias: `[D + 1]`.
    ridge: Tensor,
    /// Coalitions fitted at once by [`Problem::values_of`].
    group: usize,
}

impl Problem {
    fn new(
        eval: Regions,
        fit: Regions,
        neurons: usize,
        quality: Quality,
        config: &RetrainConfig,
    ) -> Result<Self> {
        let d = neurons;
        if eval.d != d || fit.d != d {
            return Err(ShapleyError::Shape {
                what: "regions' neurons",
                expected: d,
                actual: if eval.d != d { eval.d } else { fit.d },
            }
            .into());
        }
        let device = config.device;
        let matrix = |v: &[f32], n: usize| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?
                .f_reshape([n as i64, d as i64])?
                .f_to_kind(Kind::Double)?
                .f_to_device(device)?)
        };
        let vector =
            |v: Vec<f64>| -> Result<Tensor> { Ok(Tensor::f_from_slice(&v)?.f_to_device(device)?) };
        let (n, nf) = (eval.targets.len(), fit.targets.len());
        let positives = eval.targets.iter().filter(|&&t| t).count();
        let (alpha, beta) = quality.class_weights(positives, n - positives)?;
        let mut ridge = vec![config.l2; d];
        ridge.push(1e-8);
        let per_coalition = 8 * (n + 2 * nf) * (d + 1);
        Ok(Problem {
            neurons: d,
            quality,
            iterations: config.iterations,
            device,
            eval_x: matrix(&eval.x, n)?,
            eval_r: matrix(&eval.rows, n)?,
            eval_sign: vector(
                eval.targets
                    .iter()
                    .map(|&t| f64::from(quality.sign(t)))
                    .collect(),
            )?,
            eval_weight: vector(
                eval.targets
                    .iter()
                    .map(|&t| if t { alpha } else { beta })
                    .collect(),
            )?,
            fit_x: matrix(&fit.x, nf)?,
            fit_r: matrix(&fit.rows, nf)?,
            fit_y: vector(
                fit.targets
                    .iter()
                    .map(|&t| f64::from(u8::from(t)))
                    .collect(),
            )?,
            init_b: {
                let rate =
                    (fit.targets.iter().filter(|&&t| t).count() as f64 + 0.5) / (nf as f64 + 1.0);
                (rate / (1.0 - rate)).ln()
            },
            ridge: vector(ridge)?,
            group: (config.memory_budget / per_coalition.max(1)).max(1),
        })
    }

    /// The fixed start of a cold fit: weights 0, bias the base rate's log-odds; `[D + 1]`.
    fn cold_start(&self) -> Result<Tensor> {
        let options = (Kind::Double, self.device);
        Ok(Tensor::f_cat(
            &[
                Tensor::f_zeros([self.neurons as i64], options)?,
                Tensor::f_full([1], self.init_b, options)?,
            ],
            0,
        )?)
    }

    /// Mean log-loss of the fitting margins plus the ridge of the parameters, over the last
    /// dimension (`[g, N]`, `[g, D + 1]` → `[g]`; `[N]`, `[D + 1]` → a scalar).
    fn objective(&self, margins: &Tensor, theta: &Tensor) -> Result<Tensor> {
        let nll = margins
            .f_softplus()?
            .f_sub(&margins.f_mul(&self.fit_y)?)?
            .f_mean_dim(-1, false, Kind::Double)?;
        let penalty = theta
            .f_square()?
            .f_mul(&self.ridge)?
            .f_sum_dim_intlist(-1, false, Kind::Double)?
            .f_mul_scalar(0.5)?;
        Ok(nll.f_add(&penalty)?)
    }

    /// The quality of classifiers with these evaluation margins, over the last dimension.
    /// For the prediction qualities, the classifier's mean prediction (or logit) on the same
    /// regions as fixed mode (`prediction`, `logit`: the negatives weigh 0).
    fn quality_of(&self, margins: &Tensor) -> Result<Tensor> {
        let margin = margins.f_mul(&self.eval_sign)?;
        let score = match self.quality {
            Quality::LogLikelihood | Quality::BalancedLogLikelihood => margin.f_log_sigmoid()?,
            Quality::Accuracy => margin.f_gt(0.0)?.f_to_kind(Kind::Double)?,
            Quality::Prediction | Quality::PredictionAll => margin.f_sigmoid()?,
            Quality::Logit | Quality::LogitAll => margin,
        };
        Ok(score
            .f_mul(&self.eval_weight)?
            .f_sum_dim_intlist(-1, false, Kind::Double)?)
    }

    fn values_of(&self, masks: &Tensor) -> Result<Vec<f64>> {
        let _guard = tch::no_grad_guard();
        let total = masks.size()[0];
        let mut values = Vec::with_capacity(total as usize);
        let mut start = 0;
        while start < total {
            let len = (self.group as i64).min(total - start);
            let group = masks.f_narrow(0, start, len)?;
            let theta = self.fit(&group)?;
            let margins = self
                .design(&self.eval_x, &self.eval_r, &group)?
                .f_matmul(&theta.f_unsqueeze(-1)?)?
                .f_squeeze_dim(-1)?;
            values.extend(Vec::<f64>::try_from(
                self.quality_of(&margins)?.f_to_device(Device::Cpu)?,
            )?);
            start += len;
        }
        Ok(values)
    }

    /// `[g, N, D + 1]`: the regions seen through each coalition, plus a bias column.
    fn design(&self, x: &Tensor, r: &Tensor, masks: &Tensor) -> Result<Tensor> {
        let m = masks.f_unsqueeze(1)?;
        let kept = x.f_unsqueeze(0)?.f_mul(&m)?;
        let replaced = r.f_unsqueeze(0)?.f_mul(&m.f_neg()?.f_add_scalar(1.0)?)?;
        let xs = kept.f_add(&replaced)?;
        let size = xs.size();
        let ones = Tensor::f_ones([size[0], size[1], 1], (Kind::Double, self.device))?;
        Ok(Tensor::f_cat(&[xs, ones], 2)?)
    }

    /// Fits every coalition of the group from the cold start by `iterations` safeguarded
    /// Newton steps: `[g, D + 1]` (weights, then bias).
    fn fit(&self, masks: &Tensor) -> Result<Tensor> {
        let xs = self.design(&self.fit_x, &self.fit_r, masks)?;
        let g = masks.size()[0];
        let nf = xs.size()[1] as f64;
        let mut theta = self.cold_start()?.f_unsqueeze(0)?.f_repeat([g, 1])?;
        let xt = xs.f_transpose(1, 2)?;
        let ridge = self.ridge.f_diag_embed(0, -2, -1)?;
        let loss = |theta: &Tensor| -> Result<Tensor> {
            let margins = xs.f_matmul(&theta.f_unsqueeze(-1)?)?.f_squeeze_dim(-1)?;
            self.objective(&margins, theta)
        };
        for _ in 0..self.iterations {
            let z = xs.f_matmul(&theta.f_unsqueeze(-1)?)?.f_squeeze_dim(-1)?;
            let p = z.f_sigmoid()?;
            let residual = p.f_sub(&self.fit_y)?.f_div_scalar(nf)?;
            let grad = xt
                .f_matmul(&residual.f_unsqueeze(-1)?)?
                .f_squeeze_dim(-1)?
                .f_add(&theta.f_mul(&self.ridge)?)?;
            let curvature = p.f_mul(&p.f_neg()?.f_add_scalar(1.0)?)?.f_div_scalar(nf)?;
            let hessian = xt
                .f_matmul(&xs.f_mul(&curvature.f_unsqueeze(-1)?)?)?
                .f_add(&ridge)?;
            let step = Tensor::f_linalg_solve(&hessian, &grad.f_unsqueeze(-1)?, true)?
                .f_squeeze_dim(-1)?;
            // Candidates: θ itself, then θ − t·step for each t; per fit, the longest step
            // that keeps the loss ([`keeps_loss`]), else θ.
            let mut candidates = vec![theta.shallow_clone()];
            for t in STEP_LENGTHS {
                candidates.push(theta.f_sub(&step.f_mul_scalar(t)?)?);
            }
            let losses = Tensor::f_stack(
                &candidates.iter().map(&loss).collect::<Result<Vec<_>>>()?,
                0,
            )?
            .f_nan_to_num(f64::INFINITY, f64::INFINITY, f64::INFINITY)?;
            let current = losses.f_select(0, 0)?;
            let bound = current.f_add(
                &current
                    .f_abs()?
                    .f_clamp_min(1.0)?
                    .f_mul_scalar(LOSS_SLACK)?,
            )?;
            let keeps = losses
                .f_narrow(0, 1, STEP_LENGTHS.len() as i64)?
                .f_le_tensor(&bound)?;
            // `argmax` of the 0/1 rows is the first (longest) step that keeps the loss.
            let first = keeps
                .f_to_kind(Kind::Int)?
                .f_argmax(0, false)?
                .f_add_scalar(1)?;
            let best = first.f_where_self(&keeps.f_any_dim(0, false)?, &first.f_zeros_like()?)?;
            let stacked = Tensor::f_stack(&candidates, 0)?;
            let index = best
                .f_view([1, g, 1])?
                .f_expand([1, g, stacked.size()[2]], false)?;
            theta = stacked.f_gather(0, &index, false)?.f_squeeze_dim(0)?;
        }
        Ok(theta)
    }
}

/// One coalition's fit on a permutation's path: its designs, parameters, and the Hessian
/// (with its Cholesky factor) that its steps re-use.
#[derive(Debug)]
struct Fit {
    /// The fitting design, `[N_fit, D + 1]` (bias column last).
    design: Tensor,
    /// The evaluation design, `[N_eval, D + 1]`.
    eval_design: Tensor,
    /// Weights, then bias: `[D + 1]`.
    theta: Tensor,
    /// `design · theta`.
    margins: Tensor,
    /// The objective at `theta`.
    loss: f64,
    /// p(1 − p)/N at the parameters the Hessian was built at: `[N_fit]`.
    curvature: Tensor,
    /// `designᵀ diag(curvature) design + diag(ridge)`.
    hessian: Tensor,
    /// Its lower Cholesky factor.
    factor: Tensor,
}

impl Fit {
    /// The empty (`full = false`) or the full coalition, fitted from the cold start, and
    /// whether it converged.
    fn cold(problem: &Problem, full: bool) -> Result<(Fit, bool)> {
        let (fit, eval) = if full {
            (&problem.fit_x, &problem.eval_x)
        } else {
            (&problem.fit_r, &problem.eval_r)
        };
        let with_bias = |x: &Tensor| -> Result<Tensor> {
            let ones = Tensor::f_ones([x.size()[0], 1], (Kind::Double, problem.device))?;
            Ok(Tensor::f_cat(&[x.shallow_clone(), ones], 1)?)
        };
        let design = with_bias(fit)?;
        let eval_design = with_bias(eval)?;
        let theta = problem.cold_start()?;
        let margins = design.f_mv(&theta)?;
        let loss = problem.objective(&margins, &theta)?.f_double_value(&[])?;
        let mut fit = Fit {
            design,
            eval_design,
            theta,
            margins,
            loss,
            curvature: Tensor::new(),
            hessian: Tensor::new(),
            factor: Tensor::new(),
        };
        fit.rebuild(problem)?;
        let converged = fit.converge(problem)?;
        Ok((fit, converged))
    }

    /// An independent copy (the path mutates its tensors in place).
    fn copy(&self) -> Result<Fit> {
        Ok(Fit {
            // `detach_copy` copies the data; the rest is replaced, never written in place.
            design: self.design.f_detach_copy()?,
            eval_design: self.eval_design.f_detach_copy()?,
            theta: self.theta.shallow_clone(),
            margins: self.margins.shallow_clone(),
            loss: self.loss,
            curvature: self.curvature.shallow_clone(),
            hessian: self.hessian.f_detach_copy()?,
            factor: self.factor.shallow_clone(),
        })
    }

    /// Moves `neuron` into the coalition: its columns become the activations, and the
    /// Hessian's row and column follow at the same curvature.
    fn swap_in(&mut self, problem: &Problem, neuron: i64) -> Result<()> {
        for (design, x) in [
            (&mut self.design, &problem.fit_x),
            (&mut self.eval_design, &problem.eval_x),
        ] {
            design
                .f_narrow(1, neuron, 1)?
                .f_copy_(&x.f_narrow(1, neuron, 1)?)?;
        }
        let column = self
            .design
            .f_tr()?
            .f_mv(&self.design.f_select(1, neuron)?.f_mul(&self.curvature)?)?;
        let _ = column
            .f_select(0, neuron)?
            .f_add_(&problem.ridge.f_select(0, neuron)?)?;
        self.hessian.f_select(1, neuron)?.f_copy_(&column)?;
        self.hessian.f_select(0, neuron)?.f_copy_(&column)?;
        self.factor = self.hessian.f_linalg_cholesky(false)?;
        self.margins = self.design.f_mv(&self.theta)?;
        self.loss = problem
            .objective(&self.margins, &self.theta)?
            .f_double_value(&[])?;
        Ok(())
    }

    /// Rebuilds the Hessian at the current parameters.
    fn rebuild(&mut self, problem: &Problem) -> Result<()> {
        let n = self.design.size()[0] as f64;
        let p = self.margins.f_sigmoid()?;
        self.curvature = p.f_mul(&p.f_neg()?.f_add_scalar(1.0)?)?.f_div_scalar(n)?;
        self.hessian = self
            .design
            .f_tr()?
            .f_matmul(&self.design.f_mul(&self.curvature.f_unsqueeze(1)?)?)?
            .f_add(&problem.ridge.f_diag_embed(0, -2, -1)?)?;
        self.factor = self.hessian.f_linalg_cholesky(false)?;
        Ok(())
    }

    /// The step `H⁻¹ ∇` at the current parameters with the current factor, and its largest
    /// entry.
    fn step(&self, problem: &Problem) -> Result<(Tensor, f64)> {
        let n = self.design.size()[0] as f64;
        let residual = self
            .margins
            .f_sigmoid()?
            .f_sub(&problem.fit_y)?
            .f_div_scalar(n)?;
        let grad = self
            .design
            .f_tr()?
            .f_mv(&residual)?
            .f_add(&self.theta.f_mul(&problem.ridge)?)?;
        let step = grad
            .f_unsqueeze(1)?
            .f_cholesky_solve(&self.factor, false)?
            .f_squeeze_dim(1)?;
        let size = step.f_abs()?.f_max()?.f_double_value(&[])?;
        Ok((step, size))
    }

    /// θ − `length`·step, with its margins and loss.
    fn moved(
        &self,
        problem: &Problem,
        step: &Tensor,
        length: f64,
    ) -> Result<(Tensor, Tensor, f64)> {
        let theta = self.theta.f_sub(&step.f_mul_scalar(length)?)?;
        let margins = self.design.f_mv(&theta)?;
        let loss = problem.objective(&margins, &theta)?.f_double_value(&[])?;
        Ok((theta, margins, loss))
    }

    /// Whether a step to `loss` is kept: it does not raise the loss beyond rounding.
    fn keeps_loss(&self, loss: f64) -> bool {
        loss <= self.loss + LOSS_SLACK * self.loss.abs().max(1.0)
    }

    fn accept(&mut self, (theta, margins, loss): (Tensor, Tensor, f64)) {
        self.theta = theta;
        self.margins = margins;
        self.loss = loss;
    }

    /// Steps to the optimum (see the module's documentation for the rule); false when it
    /// stopped at `iterations` Newton steps instead.
    fn converge(&mut self, problem: &Problem) -> Result<bool> {
        let mut newton_steps = 0;
        let mut previous = f64::INFINITY;
        loop {
            let (step, size) = self.step(problem)?;
            let scale = self.theta.f_abs()?.f_max()?.f_double_value(&[])?.max(1.0);
            if size <= TOLERANCE * scale {
                let last = self.moved(problem, &step, 1.0)?;
                self.accept(last);
                return Ok(true);
            }
            if size <= CONTRACTION * previous {
                let moved = self.moved(problem, &step, 1.0)?;
                if self.keeps_loss(moved.2) {
                    self.accept(moved);
                    previous = size;
                    continue;
                }
            }
            // The re-used Hessian is too far off: a safeguarded Newton step from here, the
            // longest of the step lengths that keeps the loss.
            if newton_steps == problem.iterations {
                return Ok(false);
            }
            newton_steps += 1;
            self.rebuild(problem)?;
            let (step, size) = self.step(problem)?;
            let mut taken = false;
            for length in STEP_LENGTHS {
                let candidate = self.moved(problem, &step, length)?;
                if self.keeps_loss(candidate.2) {
                    self.accept(candidate);
                    taken = true;
                    break;
                }
            }
            // Not even 1/256 of a Newton step keeps the loss: the fit is at f64's resolution.
            if !taken {
                return Ok(true);
            }
            previous = size;
        }
    }

    /// v of this fit on the evaluation regions.
    fn value(&self, problem: &Problem) -> Result<f64> {
        let margins = self.eval_design.f_mv(&self.theta)?;
        Ok(problem.quality_of(&margins)?.f_double_value(&[])?)
    }
}

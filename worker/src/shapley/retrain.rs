//! Retrain mode (the paper's `L*_e`): v(S) is the quality of a logistic regression re-fitted
//! on the coalition `S`, many coalitions fitted at once as one batched optimisation.
//!
//! A coalition's design is `x^S = x ⊙ m + r ⊙ (1 − m)` (the same replacement as fixed mode,
//! applied to the fitting regions too) plus a bias column. Each fit minimises the mean log-loss
//! plus `λ/2 ‖w‖²` by a fixed number of Newton steps (IRLS) from a fixed start — weights 0,
//! bias the log-odds of the base rate. (Not the trained classifier: its bias belongs to all
//! neurons, and from a saturated start the Hessian vanishes and Newton steps explode.) For
//! `g` coalitions at once the gradients `[g, D+1]` and Hessians `[g, D+1, D+1]` are batched
//! matrix products and the steps one batched `linalg_solve`. Each step is safeguarded by
//! trying the step lengths 1, ½, ¼, ⅛, 1/32, 1/256 and 0 and keeping, per coalition, the one
//! with the least loss — so the loss never rises and a fit cannot diverge. Newton converges quadratically near the optimum, so a fixed
//! count of steps is a fit to working precision; because the count and the start are fixed,
//! v(S) is a deterministic function of `S` and exact enumeration is comparable with Monte
//! Carlo.
//!
//! Cost: per coalition O(N·D²) per step (the Hessian), so a permutation (D + 1 coalitions)
//! is O(iterations · N · D³) — a GPU job at D = 512. Memory is bounded by fitting the
//! coalitions in groups sized by [`RetrainConfig::memory_budget`](super::RetrainConfig); the
//! grouping depends only on (N, D), never on the block being run.

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
    neurons: usize,
    quality: Quality,
    config: RetrainConfig,
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
    /// The start of every fit's bias: the log-odds of the fitting set's base rate.
    init_b: f64,
    /// λ on the weights, a tiny ridge on the bias: `[D + 1]`.
    ridge: Tensor,
    /// Coalitions fitted at once.
    group: usize,
}

impl RetrainGame {
    /// Moves the regions to the device and sizes the coalition groups.
    pub fn new(
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
        let (kind, device) = (config.kind, config.device);
        let matrix = |v: &[f32], n: usize| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?
                .f_reshape([n as i64, d as i64])?
                .f_to_kind(kind)?
                .f_to_device(device)?)
        };
        let vector = |v: Vec<f64>| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(&v)?
                .f_to_kind(kind)?
                .f_to_device(device)?)
        };
        let (n, nf) = (eval.targets.len(), fit.targets.len());
        let positives = eval.targets.iter().filter(|&&t| t).count();
        let (alpha, beta) = quality.class_weights(positives, n - positives)?;
        let mut ridge = vec![config.l2; d];
        ridge.push(1e-8);
        let per_coalition = 8 * (n + 2 * nf) * (d + 1);
        Ok(RetrainGame {
            neurons: d,
            quality,
            config: *config,
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

    /// v(S) of each coalition (`masks[i][d]`: is neuron `d` in coalition `i`).
    pub fn values(&self, masks: &[Vec<bool>]) -> Result<Vec<f64>> {
        let d = self.neurons;
        let flat: Vec<f32> = masks
            .iter()
            .flat_map(|m| (0..d).map(move |k| f32::from(u8::from(m[k]))))
            .collect();
        let masks = Tensor::f_from_slice(&flat)?
            .f_reshape([masks.len() as i64, d as i64])?
            .f_to_kind(self.config.kind)?
            .f_to_device(self.config.device)?;
        self.values_of(&masks)
    }

    /// Adds `scale ×` the marginals along `order` to `out`: the `D + 1` nested coalitions of
    /// the permutation, fitted together.
    pub fn sweep(&self, order: &[u32], scale: f64, out: &mut [f64]) -> Result<()> {
        let d = self.neurons;
        let mut flat = vec![0.0f32; (d + 1) * d];
        for t in 1..=d {
            let (previous, row) = flat.split_at_mut(t * d);
            row[..d].copy_from_slice(&previous[(t - 1) * d..]);
            row[order[t - 1] as usize] = 1.0;
        }
        let masks = Tensor::f_from_slice(&flat)?
            .f_reshape([(d + 1) as i64, d as i64])?
            .f_to_kind(self.config.kind)?
            .f_to_device(self.config.device)?;
        let values = self.values_of(&masks)?;
        for (t, &neuron) in order.iter().enumerate() {
            out[neuron as usize] += scale * (values[t + 1] - values[t]);
        }
        Ok(())
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
            let q = self.quality_of(&group, &theta)?;
            values.extend(Vec::<f64>::try_from(
                q.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?,
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
        let ones = Tensor::f_ones(
            [size[0], size[1], 1],
            (self.config.kind, self.config.device),
        )?;
        Ok(Tensor::f_cat(&[xs, ones], 2)?)
    }

    /// Mean log-loss + ridge of each coalition's parameters: `[g]`.
    fn loss(&self, xs: &Tensor, theta: &Tensor) -> Result<Tensor> {
        let z = xs.f_matmul(&theta.f_unsqueeze(-1)?)?.f_squeeze_dim(-1)?;
        let nll = z.f_softplus()?.f_sub(&z.f_mul(&self.fit_y)?)?.f_mean_dim(
            1,
            false,
            self.config.kind,
        )?;
        let penalty = theta
            .f_square()?
            .f_mul(&self.ridge)?
            .f_sum_dim_intlist(1, false, self.config.kind)?
            .f_mul_scalar(0.5)?;
        Ok(nll.f_add(&penalty)?)
    }

    /// Fits every coalition of the group: `[g, D + 1]` (weights, then bias).
    fn fit(&self, masks: &Tensor) -> Result<Tensor> {
        let (kind, device) = (self.config.kind, self.config.device);
        let xs = self.design(&self.fit_x, &self.fit_r, masks)?;
        let g = masks.size()[0];
        let nf = xs.size()[1] as f64;
        let mut theta = Tensor::f_cat(
            &[
                Tensor::f_zeros([g, masks.size()[1]], (kind, device))?,
                Tensor::f_full([g, 1], self.init_b, (kind, device))?,
            ],
            1,
        )?;
        let xt = xs.f_transpose(1, 2)?;
        let ridge = self.ridge.f_diag_embed(0, -2, -1)?;
        let steps = [1.0, 0.5, 0.25, 0.125, 1.0 / 32.0, 1.0 / 256.0];
        for _ in 0..self.config.iterations {
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
            // Candidates: θ − t·step for each t, and θ itself; keep the least loss per fit.
            let mut candidates = vec![theta.shallow_clone()];
            for t in steps {
                candidates.push(theta.f_sub(&step.f_mul_scalar(t)?)?);
            }
            let losses = Tensor::f_stack(
                &candidates
                    .iter()
                    .map(|c| self.loss(&xs, c))
                    .collect::<Result<Vec<_>>>()?,
                0,
            )?
            .f_nan_to_num(f64::INFINITY, f64::INFINITY, f64::INFINITY)?;
            let best = losses.f_argmin(0, false)?;
            let stacked = Tensor::f_stack(&candidates, 0)?;
            let index = best
                .f_view([1, g, 1])?
                .f_expand([1, g, stacked.size()[2]], false)?;
            theta = stacked.f_gather(0, &index, false)?.f_squeeze_dim(0)?;
        }
        Ok(theta)
    }

    /// The quality of each coalition's fitted classifier on the evaluation regions: `[g]`. For
    /// the prediction qualities, the re-fitted classifier's mean prediction (or logit) on the
    /// same regions as fixed mode (`prediction`, `logit`: the negatives weigh 0).
    fn quality_of(&self, masks: &Tensor, theta: &Tensor) -> Result<Tensor> {
        let xs = self.design(&self.eval_x, &self.eval_r, masks)?;
        let margin = xs
            .f_matmul(&theta.f_unsqueeze(-1)?)?
            .f_squeeze_dim(-1)?
            .f_mul(&self.eval_sign)?;
        let score = match self.quality {
            Quality::LogLikelihood | Quality::BalancedLogLikelihood => margin.f_log_sigmoid()?,
            Quality::Accuracy => margin.f_gt(0.0)?.f_to_kind(self.config.kind)?,
            Quality::Prediction | Quality::PredictionAll => margin.f_sigmoid()?,
            Quality::Logit | Quality::LogitAll => margin,
        };
        Ok(score
            .f_mul(&self.eval_weight)?
            .f_sum_dim_intlist(1, false, self.config.kind)?)
    }
}

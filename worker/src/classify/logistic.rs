//! L2-regularised logistic regression for many concepts at once: damped Newton on
//! standardised features, one batched linear system per concept, on CPU or GPU.
//!
//! # The objective (per concept)
//!
//! With training rows `xᵢ`, targets `yᵢ ∈ {0, 1}` and class-balanced weights `ωᵢ` (each class
//! sums to ½: `ωᵢ = 1/(2P)` for a positive, `1/(2N)` for a negative), features standardised
//! as `zᵢ = (xᵢ − μ) / σ` (ω-weighted mean and standard deviation per channel; a constant
//! channel gets `σ = 1`):
//!
//! ```text
//! minimise over (v, c):  Σᵢ ωᵢ · BCE(yᵢ, vᵀzᵢ + c)  +  (λ / 2) · ‖v‖²      (bias not penalised)
//! ```
//!
//! and the result is folded back to raw activations: `weight = v / σ`,
//! `bias = c − Σ_d v_d μ_d / σ_d`, so `weightᵀx + bias = vᵀz + c`.
//!
//! # Why Newton
//!
//! The objective is strictly convex (λ > 0), so its minimiser is unique and any exact solver
//! finds the same classifier — which is what makes the result checkable against an
//! independent solution and reproducible. Newton's method with a backtracking (Armijo) line
//! search reaches it to machine precision in a handful of Hessians from zero, with no
//! learning rate to tune and no randomness. A concept stops when its Newton decrement
//! `gᵀH⁻¹g / 2` (a bound on its distance to the optimum in loss) falls below the tolerance,
//! after taking that last step; stopped concepts are frozen, so a concept's trajectory does
//! not depend on the other concepts of its group.
//!
//! # Where the time goes, and what keeps it down
//!
//! A Hessian costs `O(n·D²)`; everything else in an iteration — margins, gradient, trying
//! step lengths, a `(D+1)²` Cholesky solve — `O(n·D)` or `O(D²)`. So (`hint classify
//! --profile` shows each part; `make bench-classify` times it against scikit-learn):
//!
//! - Hessians are formed in f32 from the f64 design's f32 copy, only the blocks on and below
//!   the diagonal (`HESSIAN_BLOCK`), then factored in f64. Their rounding (~1e-7 relative)
//!   changes the path, not the optimum: the gradient, the objective and the steps stay f64.
//! - A Hessian is re-used (a chord step, `O(n·D)`) while the decrement it measures keeps
//!   shrinking fast enough (`REUSE_CONTRACTION`) and the full step passes the Armijo test;
//!   near the optimum that is every step. Such steps contract only linearly, so a concept
//!   that meets the tolerance on one takes a few more (`POLISH`) to land as near the optimum
//!   as Newton's quadratic last step would.
//! - Trying a step length moves the margins along `ZA·step`, computed once per iteration.
//! - The design is standardised on the host in one pass; on the CPU each concept is its own
//!   group (`classify::train`), so no problem is padded to a larger one's rows.

use std::time::Instant;

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Solver settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogisticSettings {
    /// λ, the L2 penalty on the standardised weights.
    pub l2: f64,
    /// Most Newton iterations (Hessians formed) per concept.
    pub max_iterations: usize,
    /// Stop when the Newton decrement `gᵀH⁻¹g / 2` is below this.
    pub tolerance: f64,
}

impl Default for LogisticSettings {
    fn default() -> Self {
        LogisticSettings {
            l2: 1e-3,
            max_iterations: 100,
            tolerance: 1e-12,
        }
    }
}

/// One concept's training problem: rows of a shared store with 0/1 targets; both classes
/// must be present.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// Row indices into the store.
    pub rows: &'a [u32],
    /// 1.0 = positive, 0.0 = negative, one per row.
    pub targets: &'a [f32],
}

/// A fitted classifier on raw activations, with how the solver ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// `D` weights.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: f32,
    /// Newton steps taken (each with a Hessian formed where the concept stood; steps that
    /// re-used a Hessian are not counted).
    pub iterations: usize,
    /// Whether the decrement fell below the tolerance within `max_iterations`.
    pub converged: bool,
    /// The final objective value.
    pub objective: f64,
}

/// Where a fit's time went; [`fit_group_profiled`] adds to it, so one profile can sum the
/// groups of a stage. Seconds are wall time on the host; on a GPU they include waiting for the device where the
/// solver reads a result back (every step does).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FitProfile {
    /// Gathering rows, moving them to the device, standardising.
    pub prepare_seconds: f64,
    /// Forming Hessians (`Zᵀ diag(c) Z`, f32).
    pub hessian_seconds: f64,
    /// Cholesky factorisations and solves.
    pub solve_seconds: f64,
    /// Margins, gradients and the line search's objectives.
    pub gradient_seconds: f64,
    /// Hessians formed (one per Newton step of one concept).
    pub hessians: usize,
    /// Steps that re-used the last Hessian formed.
    pub reused_steps: usize,
}

/// A step with a re-used Hessian is taken as long as the Newton decrement it measures shrank
/// at least this much against the step before (the step's length by about ½); slower, and
/// the Hessian is formed anew where the concept stands. Measured on `make bench-classify`
/// (3 concepts, D = 512, 8,000–16,000 rows): ¼ forms 11 Hessians and takes 26 cheap steps,
/// 1/16 forms 15 and takes 10 (solver 25% slower), ½ forms 9 but takes 38 (slower still).
const REUSE_CONTRACTION: f64 = 0.25;

/// What a concept does in one iteration of [`fit_group_profiled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Nothing: stopped.
    Keep,
    /// A full step with the factor of the last Hessian formed.
    Chord,
    /// A Hessian where it stands and a damped Newton step.
    Newton,
    /// Within the tolerance on a re-used Hessian: a full step, and on (see `POLISH`).
    Polish,
    /// The decrement is within the tolerance: a full last step, then stop.
    Last,
}

/// A concept that meets the tolerance on a re-used Hessian takes further full steps with it
/// (`O(n·D)` each) while they contract, until its decrement is below `POLISH × tolerance`.
/// Newton's last step usually lands far inside the tolerance (its convergence is
/// quadratic); chord steps contract only linearly, and stopping them at the tolerance left
/// weights up to 1e-3 (relative) from the exact optimum on the demo world, where the
/// tolerance allows that much. With these steps they land as close as Newton's.
const POLISH: f64 = 1e-4;

/// Hessians are formed from column blocks of about this width: only the blocks on and below
/// the diagonal are multiplied (the Cholesky factorisation reads the lower triangle), which
/// saves a third to a half of the `O(n·D²)` work.
const HESSIAN_BLOCK: i64 = 128;

/// Bytes of device memory a group of `concepts` problems of up to `rows` rows needs
/// (per concept: the f64 design and two row-sized temporaries, its f32 copy, the Hessians).
pub fn group_bytes(concepts: usize, rows: usize, d: usize) -> u64 {
    let cells = rows as u64 * (d as u64 + 1);
    let per = 3 * cells * 8 + 2 * cells * 4 + 4 * (d as u64 + 1).pow(2) * 8;
    concepts as u64 * per
}

/// `Aᵀ A` for a batch `a` of `[G, n, m]` f32 matrices, as f64 `[G, m, m]`: the blocks on and
/// below the diagonal are multiplied and the upper triangle mirrored from the lower.
fn gram(a: &Tensor) -> Result<Tensor, tch::TchError> {
    let (g, m) = (a.size()[0], a.size()[2]);
    let parts = (m / HESSIAN_BLOCK).max(1);
    let width = (m + parts - 1) / parts;
    let lower = Tensor::f_zeros([g, m, m], (Kind::Float, a.device()))?;
    let mut at = 0;
    while at < m {
        let w = width.min(m - at);
        // Rows at.., columns at..at + w: [G, m − at, w].
        let block = a
            .f_narrow(2, at, m - at)?
            .f_transpose(1, 2)?
            .f_bmm(&a.f_narrow(2, at, w)?)?;
        lower
            .f_narrow(1, at, m - at)?
            .f_narrow(2, at, w)?
            .f_copy_(&block)?;
        at += w;
    }
    let lower = lower.f_to_kind(Kind::Double)?;
    let strict = lower.f_tril(-1)?;
    Ok(lower.f_tril(0)? + strict.f_transpose(1, 2)?)
}

/// Fits every problem (a group: one batched solve) on `device`. `store` holds the rows,
/// `d` values each.
///
/// # Panics
/// If a problem lacks a class, or rows and targets differ in length.
pub fn fit_group(
    store: &[f32],
    d: usize,
    problems: &[Problem<'_>],
    settings: &LogisticSettings,
    device: Device,
) -> Result<Vec<Fit>, tch::TchError> {
    fit_group_profiled(
        store,
        d,
        problems,
        settings,
        device,
        &mut FitProfile::default(),
    )
}

/// [`fit_group`], adding where the time went to `profile`.
///
/// Each iteration, every active concept first tries the factor of the last Hessian it formed
/// (a chord step, `O(n·D)`): the step is kept if the decrement so measured fell by
/// `REUSE_CONTRACTION` against the step before and the full step passes the Armijo test.
/// Otherwise the concept forms its Hessian where it stands (`O(n·D²)`, in f32 — its rounding,
/// ~1e-7 relative, only slows the contraction, it does not move the optimum, which the f64
/// gradient defines) and takes a damped Newton step. The decrement that stops a concept is
/// measured with the Hessian in use; a kept chord step bounds how far that is from the
/// current Hessian's. A concept within the tolerance on a re-used Hessian keeps stepping
/// while the steps contract, to `POLISH` times the tolerance.
///
/// # Panics
/// If a problem lacks a class, or rows and targets differ in length.
pub fn fit_group_profiled(
    store: &[f32],
    d: usize,
    problems: &[Problem<'_>],
    settings: &LogisticSettings,
    device: Device,
    profile: &mut FitProfile,
) -> Result<Vec<Fit>, tch::TchError> {
    let _guard = tch::no_grad_guard();
    let g = problems.len();
    if g == 0 {
        return Ok(Vec::new());
    }
    let clock = Instant::now();
    let n = problems.iter().map(|p| p.rows.len()).max().unwrap_or(0);
    let Design { z, y, w, mu, sigma } = Design::new(store, d, n, problems);
    let (gi, ni, di) = (g as i64, n as i64, d as i64);
    let opts = (Kind::Double, device);
    let y = Tensor::f_from_slice(&y)?
        .f_view([gi, ni])?
        .f_to_device(device)?;
    let w = Tensor::f_from_slice(&w)?
        .f_view([gi, ni])?
        .f_to_device(device)?;
    let za = Tensor::f_from_slice(&z)?
        .f_view([gi, ni, di + 1])?
        .f_to_device(device)?;
    let zat = za.transpose(1, 2); // [G, D+1, n], a view
    drop(z);
    let za32 = za.f_to_kind(Kind::Float)?; // what Hessians are formed from

    // λ on the weights, not on the bias; a tiny ridge on the bias keeps H invertible when
    // every p(1 − p) underflows (perfectly separated data).
    let mut pen = vec![settings.l2; d + 1];
    pen[d] = 0.0;
    let pen = Tensor::f_from_slice(&pen)?.f_to_device(device)?;
    let mut ridge = vec![0.0f64; d + 1];
    ridge[d] = 1e-12;
    let ridge = Tensor::f_from_slice(&ridge)?.f_to_device(device)?;
    let pen_col = pen.view([1, di + 1, 1]);
    let hess_diag = (&pen + &ridge).diag_embed(0, -2, -1).unsqueeze(0);

    // The objective of every concept at margins `s` = ZA θ.
    let objective = |s: &Tensor, theta: &Tensor| -> Result<Tensor, tch::TchError> {
        let bce = s.clamp_min(0.0) - s * &y + (-s.abs()).exp().log1p();
        let data = (&w * bce).f_sum_dim_intlist(1, false, Kind::Double)?;
        let reg = (theta.square() * &pen_col).f_sum_dim_intlist(
            [1i64, 2].as_slice(),
            false,
            Kind::Double,
        )? * 0.5;
        Ok(data + reg) // [G]
    };
    let decrements = |grad: &Tensor, step: &Tensor| -> Result<Vec<f64>, tch::TchError> {
        Vec::<f64>::try_from(
            &(-(grad * step).f_sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double)?)
                .to_device(Device::Cpu),
        )
    };
    let mut theta = Tensor::f_zeros([gi, di + 1, 1], opts)?;
    let mut s = Tensor::f_zeros([gi, ni], opts)?; // the margins ZA θ
    profile.prepare_seconds += clock.elapsed().as_secs_f64();

    // Each concept's Cholesky factor of the last Hessian it formed.
    let mut chol = Tensor::f_zeros([gi, di + 1, di + 1], opts)?;
    let mut formed = vec![false; g];
    let mut previous = vec![f64::INFINITY; g]; // the decrement of the step before
    let mut active = vec![true; g];
    let mut converged = vec![false; g];
    let mut iterations = vec![0usize; g];
    // Chord steps cut the decrement 4-fold each, so they are few; the bound is a backstop.
    for _ in 0..64 * settings.max_iterations {
        if !active.iter().any(|&a| a) {
            break;
        }
        let clock = Instant::now();
        let p = s.sigmoid();
        let r = (&w * (&p - &y)).unsqueeze(-1);
        let grad = zat.f_bmm(&r)? + &pen_col * &theta; // [G, D+1, 1]
        let f0 = objective(&s, &theta)?;
        profile.gradient_seconds += clock.elapsed().as_secs_f64();

        // Every active concept with a factor tries a chord step first.
        let clock = Instant::now();
        let mut step = (-grad.f_cholesky_solve(&chol, false)?).nan_to_num(0.0, 0.0, 0.0);
        let mut decrement = decrements(&grad, &step)?;
        profile.solve_seconds += clock.elapsed().as_secs_f64();
        let mut action = vec![Action::Keep; g];
        for c in 0..g {
            if !active[c] {
                continue;
            }
            let contracts = decrement[c] <= REUSE_CONTRACTION * previous[c];
            action[c] = if !formed[c] {
                Action::Newton
            } else if decrement[c] / 2.0 <= settings.tolerance * POLISH
                || (decrement[c] / 2.0 <= settings.tolerance && !contracts)
            {
                Action::Last
            } else if decrement[c] / 2.0 <= settings.tolerance {
                Action::Polish
            } else if contracts {
                Action::Chord
            } else {
                Action::Newton
            };
        }
        for c in 0..g {
            if action[c] == Action::Newton && iterations[c] >= settings.max_iterations {
                action[c] = Action::Keep;
                active[c] = false;
            }
        }

        // Newton steps: the Hessian where the concept stands.
        let fresh: Vec<i64> = (0..g as i64)
            .filter(|&c| action[c as usize] == Action::Newton)
            .collect();
        if !fresh.is_empty() {
            let clock = Instant::now();
            let index = Tensor::f_from_slice(&fresh)?.f_to_device(device)?;
            let curv = (&w * &p * (p.ones_like() - &p))
                .f_index_select(0, &index)?
                .f_to_kind(Kind::Float)?
                .f_sqrt()?
                .unsqueeze(-1);
            let a = za32.f_index_select(0, &index)?.f_mul(&curv)?;
            let hess = gram(&a)? + &hess_diag;
            drop(a);
            profile.hessian_seconds += clock.elapsed().as_secs_f64();
            profile.hessians += fresh.len();
            let clock = Instant::now();
            let (factor, info) = hess.f_linalg_cholesky_ex(false, false)?;
            let info = Vec::<i64>::try_from(&info.to_device(Device::Cpu))?;
            chol = chol.f_index_copy(0, &index, &factor)?;
            let newton_step = -grad
                .f_index_select(0, &index)?
                .f_cholesky_solve(&factor, false)?;
            step = step.f_index_copy(0, &index, &newton_step)?;
            decrement = decrements(&grad, &step)?;
            profile.solve_seconds += clock.elapsed().as_secs_f64();
            for (k, &c) in fresh.iter().enumerate() {
                let c = c as usize;
                formed[c] = true;
                iterations[c] += 1;
                if info[k] != 0 || !decrement[c].is_finite() {
                    // Not positive definite (cannot happen with λ > 0 short of overflow):
                    // stop this concept where it is.
                    action[c] = Action::Keep;
                    active[c] = false;
                } else if decrement[c] / 2.0 <= settings.tolerance {
                    action[c] = Action::Last;
                }
            }
        }

        // Step lengths. The margins move along ZA·step, so trying a length costs O(n), not
        // O(n·D). Last and polishing steps (within the tolerance of the optimum, where the
        // objective changes below what f64 resolves) are taken whole; chord steps whole if
        // that passes the Armijo test, else the concept forms its Hessian next iteration
        // where it stands; Newton steps backtrack, halving t where the Armijo test fails.
        let clock = Instant::now();
        let moving: Vec<f64> = action
            .iter()
            .map(|&a| if a == Action::Keep { 0.0 } else { 1.0 })
            .collect();
        let step = step
            * Tensor::f_from_slice(&moving)?
                .f_to_device(device)?
                .view([gi, 1, 1]);
        let ds = za.f_bmm(&step)?.squeeze_dim(-1); // [G, n]
        let slope = (&grad * &step).f_sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double)?;
        let armijo = |t: &[f64]| -> Result<Vec<bool>, tch::TchError> {
            let tt = Tensor::f_from_slice(t)?.f_to_device(device)?;
            let trial = &theta + &step * tt.view([gi, 1, 1]);
            let f1 = objective(&(&s + &ds * tt.view([gi, 1])), &trial)?;
            Vec::<bool>::try_from(
                &f1.le_tensor(&(&f0 + 1e-4 * &tt * &slope))
                    .to_device(Device::Cpu),
            )
        };
        let mut t = moving.clone();
        let mut searching: Vec<bool> = action
            .iter()
            .map(|&a| a == Action::Newton || a == Action::Chord)
            .collect();
        for _ in 0..60 {
            if !searching.contains(&true) {
                break;
            }
            let ok = armijo(&t)?;
            for c in 0..g {
                if !searching[c] {
                    continue;
                }
                if ok[c] {
                    searching[c] = false;
                } else if action[c] == Action::Chord {
                    // The re-used Hessian is too far off: stay, and form it anew next time.
                    t[c] = 0.0;
                    searching[c] = false;
                    formed[c] = false;
                } else {
                    t[c] *= 0.5;
                }
            }
        }
        for c in 0..g {
            match action[c] {
                Action::Newton if searching[c] => {
                    // No decrease found at any step size: at the limit of f64 precision.
                    t[c] = 0.0;
                    active[c] = false;
                    converged[c] = decrement[c] / 2.0 <= settings.tolerance.max(1e-9);
                }
                Action::Chord | Action::Polish if t[c] > 0.0 => profile.reused_steps += 1,
                Action::Last => {
                    active[c] = false;
                    converged[c] = true;
                }
                _ => {}
            }
            if action[c] != Action::Keep {
                tracing::debug!(
                    concept = c,
                    action = ?action[c],
                    decrement = decrement[c],
                    t = t[c],
                    "newton"
                );
            }
            previous[c] = decrement[c];
        }
        let tt = Tensor::f_from_slice(&t)?.f_to_device(device)?;
        theta = &theta + &step * tt.view([gi, 1, 1]);
        s = &s + &ds * tt.view([gi, 1]);
        profile.gradient_seconds += clock.elapsed().as_secs_f64();
    }
    // The objective from the parameters, not the margins moved step by step.
    let s = za.f_bmm(&theta)?.squeeze_dim(-1);
    let objective = Vec::<f64>::try_from(&objective(&s, &theta)?.to_device(Device::Cpu))?;

    // Fold the standardisation back: weight = v / σ, bias = c − Σ v μ / σ.
    let theta = Vec::<f64>::try_from(&theta.to_device(Device::Cpu).reshape([-1]))?;
    Ok((0..g)
        .map(|c| {
            let (v, bias) = (&theta[c * (d + 1)..c * (d + 1) + d], theta[c * (d + 1) + d]);
            let (mu, sigma) = (&mu[c * d..(c + 1) * d], &sigma[c * d..(c + 1) * d]);
            let weight: Vec<f64> = v.iter().zip(sigma).map(|(v, s)| v / s).collect();
            let shift: f64 = weight.iter().zip(mu).map(|(w, m)| w * m).sum();
            Fit {
                weight: weight.iter().map(|&v| v as f32).collect(),
                bias: (bias - shift) as f32,
                iterations: iterations[c],
                converged: converged[c],
                objective: objective[c],
            }
        })
        .collect())
}

/// A group's problems as the solver needs them, built on the host in one pass over their
/// rows: each padded to `n` rows (padding rows have weight 0 and so count nowhere).
struct Design {
    /// Standardised features and a 1 for the bias, `[G, n, D + 1]` row-major, f64.
    z: Vec<f64>,
    /// 0/1 targets, `[G, n]`.
    y: Vec<f64>,
    /// Class-balanced weights ω, `[G, n]`.
    w: Vec<f64>,
    /// ω-weighted means, `[G, D]`.
    mu: Vec<f64>,
    /// ω-weighted standard deviations (1 for a constant channel), `[G, D]`.
    sigma: Vec<f64>,
}

impl Design {
    fn new(store: &[f32], d: usize, n: usize, problems: &[Problem<'_>]) -> Design {
        let g = problems.len();
        let m = d + 1;
        let mut design = Design {
            z: vec![0.0; g * n * m],
            y: vec![0.0; g * n],
            w: vec![0.0; g * n],
            mu: vec![0.0; g * d],
            sigma: vec![0.0; g * d],
        };
        for (gi, p) in problems.iter().enumerate() {
            assert_eq!(p.rows.len(), p.targets.len(), "one target per row");
            let pos = p.targets.iter().filter(|&&t| t > 0.5).count();
            let neg = p.targets.len() - pos;
            assert!(pos > 0 && neg > 0, "a problem needs both classes");
            let x = |i: usize| {
                let row = p.rows[i] as usize;
                &store[row * d..(row + 1) * d]
            };
            let y = &mut design.y[gi * n..gi * n + p.rows.len()];
            let w = &mut design.w[gi * n..gi * n + p.rows.len()];
            for (i, &t) in p.targets.iter().enumerate() {
                let positive = t > 0.5;
                y[i] = if positive { 1.0 } else { 0.0 };
                w[i] = 0.5 / if positive { pos } else { neg } as f64;
            }
            // Two passes for the moments (the mean, then squares about it), in f64.
            let mu = &mut design.mu[gi * d..(gi + 1) * d];
            for (i, &wi) in w.iter().enumerate() {
                for (m, &v) in mu.iter_mut().zip(x(i)) {
                    *m += wi * f64::from(v);
                }
            }
            let sigma = &mut design.sigma[gi * d..(gi + 1) * d];
            for (i, &wi) in w.iter().enumerate() {
                for ((s, &m), &v) in sigma.iter_mut().zip(mu.iter()).zip(x(i)) {
                    *s += wi * (f64::from(v) - m).powi(2);
                }
            }
            for s in sigma.iter_mut() {
                *s = s.sqrt();
                if *s <= 1e-12 {
                    *s = 1.0;
                }
            }
            let (mu, sigma) = (&*mu, &*sigma);
            design.z[gi * n * m..(gi * n + p.rows.len()) * m]
                .par_chunks_mut(m)
                .enumerate()
                .for_each(|(i, z)| {
                    for (((z, &v), &mu), &sigma) in z.iter_mut().zip(x(i)).zip(mu).zip(sigma) {
                        *z = (f64::from(v) - mu) / sigma;
                    }
                    z[d] = 1.0;
                });
        }
        design
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// A planted separator with label noise: rows x ~ N(0, s²) per channel, y = 1 when
    /// `wᵀx + b + noise > 0`.
    fn planted(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, f32) {
        let mut rng = hint_common::seed::rng(seed, &[]);
        let w: Vec<f32> = (0..d)
            .map(|i| if i % 3 == 0 { 1.5 } else { -0.5 })
            .collect();
        let b = 0.3f32;
        let mut x = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f32> = (0..d)
                .map(|c| (rng.random::<f32>() - 0.5) * (1.0 + c as f32) + c as f32 * 0.1)
                .collect();
            let noise = (rng.random::<f32>() - 0.5) * 0.8;
            let s: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b + noise;
            y.push(if s > 0.0 { 1.0 } else { 0.0 });
            x.extend(row);
        }
        (x, y, w, b)
    }

    /// The gradient of the documented objective at (weight, bias) on raw activations,
    /// computed independently of the solver: in raw space, with v = weight ⊙ σ.
    fn raw_gradient(
        x: &[f32],
        y: &[f32],
        d: usize,
        l2: f64,
        weight: &[f32],
        bias: f32,
    ) -> Vec<f64> {
        let n = y.len();
        let pos = y.iter().filter(|&&t| t > 0.5).count() as f64;
        let neg = n as f64 - pos;
        let om: Vec<f64> = y
            .iter()
            .map(|&t| if t > 0.5 { 0.5 / pos } else { 0.5 / neg })
            .collect();
        let mut mu = vec![0f64; d];
        for i in 0..n {
            for c in 0..d {
                mu[c] += om[i] * f64::from(x[i * d + c]);
            }
        }
        let mut sigma = vec![0f64; d];
        for i in 0..n {
            for c in 0..d {
                sigma[c] += om[i] * (f64::from(x[i * d + c]) - mu[c]).powi(2);
            }
        }
        let sigma: Vec<f64> = sigma
            .iter()
            .map(|v| if v.sqrt() <= 1e-12 { 1.0 } else { v.sqrt() })
            .collect();
        // Gradient w.r.t. (v, c) of Σ ω BCE(y, vᵀz + c) + λ/2 ‖v‖².
        let mut g = vec![0f64; d + 1];
        for i in 0..n {
            let s: f64 = (0..d)
                .map(|c| f64::from(weight[c]) * f64::from(x[i * d + c]))
                .sum::<f64>()
                + f64::from(bias);
            let p = 1.0 / (1.0 + (-s).exp());
            let r = om[i] * (p - f64::from(y[i]));
            for c in 0..d {
                g[c] += r * (f64::from(x[i * d + c]) - mu[c]) / sigma[c];
            }
            g[d] += r;
        }
        for c in 0..d {
            g[c] += l2 * f64::from(weight[c]) * sigma[c];
        }
        g
    }

    /// One problem over every row of `x` (`d` columns) on the CPU, with its profile.
    fn fit_every_row(
        x: &[f32],
        y: &[f32],
        d: usize,
        settings: &LogisticSettings,
    ) -> (Fit, FitProfile) {
        let rows: Vec<u32> = (0..y.len() as u32).collect();
        let mut profile = FitProfile::default();
        let problem = Problem {
            rows: &rows,
            targets: y,
        };
        let fit = fit_group_profiled(x, d, &[problem], settings, Device::Cpu, &mut profile)
            .unwrap()
            .remove(0);
        (fit, profile)
    }

    #[test]
    fn recovers_a_planted_separator_at_the_optimum() {
        let (d, n) = (6, 800);
        let (x, y, w_true, _) = planted(n, d, 5);
        let settings = LogisticSettings {
            l2: 1e-3,
            ..LogisticSettings::default()
        };
        let (fit, _) = fit_every_row(&x, &y, d, &settings);
        assert!(fit.converged, "{fit:?}");
        // First-order optimality, checked in plain f64 without the solver's code: the
        // gradient at the f32-rounded classifier is at the level of that rounding.
        let g = raw_gradient(&x, &y, d, settings.l2, &fit.weight, fit.bias);
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm < 1e-5, "gradient norm {norm}: {g:?}");
        // The direction of the planted separator: cosine close to 1.
        let dot: f64 = fit
            .weight
            .iter()
            .zip(&w_true)
            .map(|(a, b)| f64::from(a * b))
            .sum();
        let na: f64 = fit
            .weight
            .iter()
            .map(|a| f64::from(a * a))
            .sum::<f64>()
            .sqrt();
        let nb: f64 = w_true.iter().map(|a| f64::from(a * a)).sum::<f64>().sqrt();
        assert!(dot / (na * nb) > 0.95, "cosine {}", dot / (na * nb));
        // Training accuracy on data with little label noise.
        let correct = (0..n)
            .filter(|&i| {
                let s: f32 = (0..d).map(|c| fit.weight[c] * x[i * d + c]).sum::<f32>() + fit.bias;
                (s > 0.0) == (y[i] > 0.5)
            })
            .count();
        assert!(correct as f64 / n as f64 > 0.9, "accuracy {correct}/{n}");
    }

    #[test]
    fn gram_is_the_full_product_from_the_lower_blocks() {
        // 300 columns: two blocks of 150; a batch of two.
        tch::manual_seed(0);
        let (g, n, m) = (2i64, 64i64, 300i64);
        let a = Tensor::randn([g, n, m], (Kind::Float, Device::Cpu));
        let ours = gram(&a).unwrap();
        let a64 = a.to_kind(Kind::Double);
        let full = a64.transpose(1, 2).bmm(&a64);
        let err = f64::try_from((&ours - &full).abs().max()).unwrap();
        let scale = f64::try_from(full.abs().max()).unwrap();
        assert!(err <= 1e-5 * scale, "{err} vs {scale}");
        // Exactly symmetric.
        assert!(ours.equal(&ours.transpose(1, 2)));
    }

    #[test]
    fn re_used_hessians_reach_the_same_optimum_at_d_300() {
        // Wide enough for Hessian blocks; enough rows that re-used Hessians pay.
        let (d, n) = (300, 3000);
        let (x, y, _, _) = planted(n, d, 11);
        let settings = LogisticSettings::default();
        let (fit, profile) = fit_every_row(&x, &y, d, &settings);
        assert!(fit.converged, "{fit:?}");
        assert_eq!(profile.hessians, fit.iterations);
        assert!(profile.reused_steps > 0, "{profile:?}");
        let g = raw_gradient(&x, &y, d, settings.l2, &fit.weight, fit.bias);
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm < 1e-5, "gradient norm {norm}");
    }

    #[test]
    fn a_group_solves_each_problem_as_if_alone() {
        let (d, n) = (4, 300);
        let (x, y, _, _) = planted(n, d, 9);
        // Three problems over one store: all rows, the first half, every third row; plus a
        // constant channel appended to exercise σ = 1.
        let mut xc = Vec::with_capacity(n * (d + 1));
        for i in 0..n {
            xc.extend_from_slice(&x[i * d..(i + 1) * d]);
            xc.push(2.0);
        }
        let d = d + 1;
        let all: Vec<u32> = (0..n as u32).collect();
        let half: Vec<u32> = (0..n as u32 / 2).collect();
        let third: Vec<u32> = (0..n as u32).step_by(3).collect();
        let t = |rows: &[u32]| rows.iter().map(|&r| y[r as usize]).collect::<Vec<f32>>();
        let (ta, th, tt) = (t(&all), t(&half), t(&third));
        let problems = [
            Problem {
                rows: &all,
                targets: &ta,
            },
            Problem {
                rows: &half,
                targets: &th,
            },
            Problem {
                rows: &third,
                targets: &tt,
            },
        ];
        let settings = LogisticSettings::default();
        let together = fit_group(&xc, d, &problems, &settings, Device::Cpu).unwrap();
        for (p, fit) in problems.iter().zip(&together) {
            let alone = fit_group(&xc, d, &[*p], &settings, Device::Cpu)
                .unwrap()
                .remove(0);
            assert!(fit.converged && alone.converged);
            for (a, b) in fit.weight.iter().zip(&alone.weight) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
            assert!((fit.bias - alone.bias).abs() <= 1e-5 * (1.0 + alone.bias.abs()));
            // The constant channel carries no information: its weight is 0.
            assert!(fit.weight[d - 1].abs() < 1e-6, "{}", fit.weight[d - 1]);
        }
        // Deterministic.
        let again = fit_group(&xc, d, &problems, &settings, Device::Cpu).unwrap();
        assert_eq!(together, again);
    }
}

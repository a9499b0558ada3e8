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
//! search reaches it to machine precision in ~10–30 iterations from zero, with no learning
//! rate to tune and no randomness. One iteration costs `O(n·D²)` for the Hessian plus a
//! `(D+1)²` Cholesky solve, batched over the concepts of a group with `bmm`. A concept stops
//! when its Newton decrement `gᵀH⁻¹g / 2` (a bound on its distance to the optimum in loss)
//! falls below the tolerance; stopped concepts are frozen, so a concept's trajectory does
//! not depend on the other concepts of its group.

use tch::{Device, Kind, Tensor};

/// Solver settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogisticSettings {
    /// λ, the L2 penalty on the standardised weights.
    pub l2: f64,
    /// Most Newton iterations per concept.
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
    /// Newton steps taken.
    pub iterations: usize,
    /// Whether the decrement fell below the tolerance within `max_iterations`.
    pub converged: bool,
    /// The final objective value.
    pub objective: f64,
}

/// Bytes of device memory a group of `concepts` problems of up to `rows` rows needs
/// (three `rows × (D + 1)` f64 tensors per concept and the Hessians).
pub fn group_bytes(concepts: usize, rows: usize, d: usize) -> u64 {
    let per = 3 * rows as u64 * (d as u64 + 1) * 8 + 3 * (d as u64 + 1).pow(2) * 8;
    concepts as u64 * per
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
    let _guard = tch::no_grad_guard();
    let g = problems.len();
    if g == 0 {
        return Ok(Vec::new());
    }
    let n = problems.iter().map(|p| p.rows.len()).max().unwrap_or(0);
    // Padded host buffers; padding rows have weight 0 and so do not count anywhere.
    let mut x = vec![0f32; g * n * d];
    let mut y = vec![0f64; g * n];
    let mut w = vec![0f64; g * n];
    for (gi, p) in problems.iter().enumerate() {
        assert_eq!(p.rows.len(), p.targets.len(), "one target per row");
        let pos = p.targets.iter().filter(|&&t| t > 0.5).count();
        let neg = p.targets.len() - pos;
        assert!(pos > 0 && neg > 0, "a problem needs both classes");
        for (i, (&row, &t)) in p.rows.iter().zip(p.targets).enumerate() {
            let row = row as usize;
            let at = (gi * n + i) * d;
            x[at..at + d].copy_from_slice(&store[row * d..(row + 1) * d]);
            let positive = t > 0.5;
            y[gi * n + i] = if positive { 1.0 } else { 0.0 };
            w[gi * n + i] = 0.5 / if positive { pos } else { neg } as f64;
        }
    }
    let (gi, ni, di) = (g as i64, n as i64, d as i64);
    let opts = (Kind::Double, device);
    let x = Tensor::f_from_slice(&x)?
        .f_view([gi, ni, di])?
        .f_to_device(device)?
        .f_to_kind(Kind::Double)?;
    let y = Tensor::f_from_slice(&y)?
        .f_view([gi, ni])?
        .f_to_device(device)?;
    let w = Tensor::f_from_slice(&w)?
        .f_view([gi, ni])?
        .f_to_device(device)?;

    // Standardise with the ω-weighted moments.
    let wv = w.unsqueeze(-1);
    let mu = (&x * &wv).f_sum_dim_intlist(1, true, Kind::Double)?; // [G, 1, D]
    let centred = x.f_sub(&mu)?;
    drop(x);
    let var = (centred.square() * &wv).f_sum_dim_intlist(1, true, Kind::Double)?;
    let sigma = var.sqrt();
    let sigma = sigma.masked_fill(&sigma.le(1e-12), 1.0);
    let z = centred.f_div(&sigma)?;
    drop(centred);
    let za = Tensor::f_cat(&[z, Tensor::f_ones([gi, ni, 1], opts)?], 2)?; // [G, n, D+1]
    let zat = za.transpose(1, 2); // [G, D+1, n], a view

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

    let objective = |theta: &Tensor| -> Result<Tensor, tch::TchError> {
        let s = za.f_bmm(theta)?.squeeze_dim(-1); // [G, n]
        let bce = s.clamp_min(0.0) - &s * &y + (-s.abs()).exp().log1p();
        let data = (&w * bce).f_sum_dim_intlist(1, false, Kind::Double)?;
        let reg = (theta.square() * &pen_col).f_sum_dim_intlist(
            [1i64, 2].as_slice(),
            false,
            Kind::Double,
        )? * 0.5;
        Ok(data + reg) // [G]
    };

    let mut theta = Tensor::f_zeros([gi, di + 1, 1], opts)?;
    let mut active = vec![true; g];
    let mut converged = vec![false; g];
    let mut iterations = vec![0usize; g];
    for _ in 0..settings.max_iterations {
        let s = za.f_bmm(&theta)?.squeeze_dim(-1);
        let p = s.sigmoid();
        let r = (&w * (&p - &y)).unsqueeze(-1);
        let grad = zat.f_bmm(&r)? + &pen_col * &theta; // [G, D+1, 1]
        let curv = (&w * &p * (p.ones_like() - &p)).unsqueeze(-1);
        let hess = (&za * curv).transpose(1, 2).f_bmm(&za)? + &hess_diag;
        let (chol, info) = hess.f_linalg_cholesky_ex(false, false)?;
        let info = Vec::<i64>::try_from(&info.to_device(Device::Cpu))?;
        let step = -grad.f_cholesky_solve(&chol, false)?;
        let decrement = Vec::<f64>::try_from(
            &(-(&grad * &step).f_sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double)?)
                .to_device(Device::Cpu),
        )?;
        for c in 0..g {
            if !active[c] {
                continue;
            }
            if info[c] != 0 || !decrement[c].is_finite() {
                // Not positive definite (cannot happen with λ > 0 short of overflow): stop
                // this concept where it is.
                active[c] = false;
            } else if decrement[c] / 2.0 <= settings.tolerance {
                active[c] = false;
                converged[c] = true;
            }
        }
        if !active.iter().any(|&a| a) {
            break;
        }
        let mask = Tensor::f_from_slice(
            &active
                .iter()
                .map(|&a| if a { 1.0 } else { 0.0 })
                .collect::<Vec<f64>>(),
        )?
        .f_to_device(device)?;
        let step = step.nan_to_num(0.0, 0.0, 0.0) * mask.view([gi, 1, 1]);
        let slope = (&grad * &step).f_sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double)?;
        let f0 = objective(&theta)?;
        // Backtracking per concept: halve t where the Armijo condition fails.
        let mut t = vec![1.0f64; g];
        let mut accepted: Vec<bool> = active.iter().map(|&a| !a).collect();
        for _ in 0..60 {
            let tt = Tensor::f_from_slice(&t)?.f_to_device(device)?;
            let trial = &theta + &step * tt.view([gi, 1, 1]);
            let f1 = objective(&trial)?;
            let ok = f1.le_tensor(&(&f0 + 1e-4 * &tt * &slope));
            let ok = Vec::<bool>::try_from(&ok.to_device(Device::Cpu))?;
            for c in 0..g {
                if !accepted[c] {
                    if ok[c] {
                        accepted[c] = true;
                    } else {
                        t[c] *= 0.5;
                    }
                }
            }
            if accepted.iter().all(|&a| a) {
                break;
            }
        }
        for c in 0..g {
            if active[c] && !accepted[c] {
                // No decrease found at any step size: at the limit of f64 precision.
                t[c] = 0.0;
                active[c] = false;
                converged[c] = decrement[c] / 2.0 <= settings.tolerance.max(1e-9);
            }
            if active[c] {
                iterations[c] += 1;
            }
        }
        let tt = Tensor::f_from_slice(&t)?.f_to_device(device)?;
        theta = &theta + &step * tt.view([gi, 1, 1]);
    }
    let objective = Vec::<f64>::try_from(&objective(&theta)?.to_device(Device::Cpu))?;

    // Fold the standardisation back: weight = v / σ, bias = c − Σ v μ / σ.
    let v = theta.narrow(1, 0, di).squeeze_dim(-1); // [G, D]
    let c = theta.narrow(1, di, 1).view([gi]);
    let sigma = sigma.view([gi, di]);
    let mu = mu.view([gi, di]);
    let weight = &v / &sigma;
    let bias = c - (&weight * mu).f_sum_dim_intlist(1, false, Kind::Double)?;
    let weight = Vec::<f64>::try_from(&weight.to_device(Device::Cpu).reshape([-1]))?;
    let bias = Vec::<f64>::try_from(&bias.to_device(Device::Cpu))?;
    Ok((0..g)
        .map(|c| Fit {
            weight: weight[c * d..(c + 1) * d]
                .iter()
                .map(|&v| v as f32)
                .collect(),
            bias: bias[c] as f32,
            iterations: iterations[c],
            converged: converged[c],
            objective: objective[c],
        })
        .collect())
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

    #[test]
    fn recovers_a_planted_separator_at_the_optimum() {
        let (d, n) = (6, 800);
        let (x, y, w_true, _) = planted(n, d, 5);
        let rows: Vec<u32> = (0..n as u32).collect();
        let settings = LogisticSettings {
            l2: 1e-3,
            ..LogisticSettings::default()
        };
        let fit = fit_group(
            &x,
            d,
            &[Problem {
                rows: &rows,
                targets: &y,
            }],
            &settings,
            Device::Cpu,
        )
        .unwrap()
        .remove(0);
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

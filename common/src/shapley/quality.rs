//! What the game `v_e(S)` measures: [`Quality`], and the deterministic f32 score functions
//! the fixed-mode kernel applies to every region.
//!
//! # Label scores and prediction scores
//!
//! The first three qualities score the classifier against the **true labels** of positives
//! and negatives. They credit a neuron for helping *either* side: a vehicle detector with a
//! negative weight in the "animal" classifier pushes vehicle regions towards "not animal",
//! so it ranks among animal's top neurons.
//!
//! - `log_likelihood` (default): mean log σ(±logit) of the true labels. Smooth and proper: it
//!   moves with every neuron's contribution, including neurons that shift confidence without
//!   flipping a decision, so few permutations already rank neurons; it is the objective the
//!   classifier was trained on.
//! - `balanced_log_likelihood`: the same with positives and negatives weighted equally (for
//!   evaluation splits that are not class-balanced).
//! - `accuracy`: fraction of regions on the right side of 0 (ties count as wrong). A step
//!   function: many marginals are exactly 0, so it needs many more permutations.
//!
//! The other four are the HINT paper's value (Eq. 2; supplement Eq. S.4: the contributions
//! sum to the prediction for a region minus its expectation): the classifier's **prediction**
//! `L_e(r) = σ(wᵀr + b)`, whatever the region's label — **sign-aware**, so a neuron that
//! lowers the concept's prediction gets a negative φ.
//!
//! - `prediction`: mean σ(logit) over the concept's own evaluation regions (its positives);
//! - `logit`: mean logit over the positives. The fixed-mode game is then additive:
//!   φ_d = w_d · mean over positives of (x_d − r_d), every permutation giving the same
//!   marginals — a closed form the tests check;
//! - `prediction_all`, `logit_all`: the same over all evaluation regions, positives and
//!   negatives alike (each region's prediction of the concept, not of its label).
//!
//! The fixed-mode kernel signs each region's margin by its target (`m = s·logit`) so that one
//! score function serves both classes of the label qualities. The prediction qualities use
//! `s = +1` for every region ([`Quality::sign`]): their margin is the plain logit, and again
//! one score function (σ or the identity) serves both classes — the same numbers as scoring a
//! negative's target-signed margin by σ(−m) or −m, with no per-class branch in the kernel.
//! `prediction` and `logit` leave the negatives out of the game altogether
//! ([`Quality::scores_negatives`]): their weight would be 0.
//!
//! # Which replacement goes with which quality
//!
//! - With `marginal` (or `mean`) replacement, a neuron that fires on negatives only and has a
//!   negative weight still earns positive `prediction` credit on the positives, where it is
//!   silent while its replacement (drawn from the whole pool) often is not. With `zero`
//!   replacement a silent neuron equals its replacement and earns nothing.
//! - `prediction_all` and `logit_all` average over the very pool that `marginal` and `mean`
//!   draw the reference from, so v(∅) ≈ v(all) (Eq. S.4: Σφ = f(r) − E f, and the mean of
//!   f(r) over the pool *is* E f): Σφ ≈ 0 and φ reflects interactions only (`logit_all` with
//!   `mean`: exactly 0). Use them with `zero` replacement.
//! - In `retrain` mode `prediction_all` barely moves: a logistic regression with an intercept
//!   is calibrated, its mean prediction over its fitting regions is their base rate whatever
//!   the coalition.

use std::fmt;
use std::str::FromStr;

use super::ShapleyError;

/// How a classifier's output on the replaced regions is scored; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Mean log σ(±logit) of the true labels.
    #[default]
    LogLikelihood,
    /// Mean log-likelihood with the two classes weighted equally.
    BalancedLogLikelihood,
    /// Fraction classified correctly.
    Accuracy,
    /// Mean prediction σ(logit) over the positives.
    Prediction,
    /// Mean logit over the positives.
    Logit,
    /// Mean prediction σ(logit) over all evaluation regions.
    PredictionAll,
    /// Mean logit over all evaluation regions.
    LogitAll,
}

impl Quality {
    /// Every quality, in the order of [`Quality::NAMES`].
    pub const ALL: [Quality; 7] = [
        Quality::LogLikelihood,
        Quality::BalancedLogLikelihood,
        Quality::Accuracy,
        Quality::Prediction,
        Quality::Logit,
        Quality::PredictionAll,
        Quality::LogitAll,
    ];

    /// The option names.
    pub const NAMES: [&'static str; 7] = [
        "log_likelihood",
        "balanced_log_likelihood",
        "accuracy",
        "prediction",
        "logit",
        "prediction_all",
        "logit_all",
    ];

    /// The option name.
    pub fn name(self) -> &'static str {
        match self {
            Quality::LogLikelihood => Self::NAMES[0],
            Quality::BalancedLogLikelihood => Self::NAMES[1],
            Quality::Accuracy => Self::NAMES[2],
            Quality::Prediction => Self::NAMES[3],
            Quality::Logit => Self::NAMES[4],
            Quality::PredictionAll => Self::NAMES[5],
            Quality::LogitAll => Self::NAMES[6],
        }
    }

    /// Whether the quality scores the true labels (`log_likelihood`, `balanced_…`,
    /// `accuracy`) rather than the concept's prediction.
    pub fn scores_labels(self) -> bool {
        matches!(
            self,
            Quality::LogLikelihood | Quality::BalancedLogLikelihood | Quality::Accuracy
        )
    }

    /// Whether the negatives enter the value (`prediction` and `logit` average over the
    /// positives only).
    pub fn scores_negatives(self) -> bool {
        !matches!(self, Quality::Prediction | Quality::Logit)
    }

    /// The sign `s` of a region's margin `s · logit` in the kernel: its target's (±1) for the
    /// label qualities, +1 for the prediction qualities (whose margin is the logit itself).
    pub fn sign(self, target: bool) -> f32 {
        if target || !self.scores_labels() {
            1.0
        } else {
            -1.0
        }
    }

    /// The weights of the positive and negative sums: v = α Σ_pos q(m) + β Σ_neg q(m).
    /// `prediction` and `logit` need at least one positive.
    pub fn class_weights(
        self,
        positives: usize,
        negatives: usize,
    ) -> Result<(f64, f64), ShapleyError> {
        let n = (positives + negatives) as f64;
        Ok(match self {
            Quality::LogLikelihood
            | Quality::Accuracy
            | Quality::PredictionAll
            | Quality::LogitAll => (1.0 / n, 1.0 / n),
            Quality::BalancedLogLikelihood => match (positives, negatives) {
                (0, _) => (0.0, 1.0 / negatives as f64),
                (_, 0) => (1.0 / positives as f64, 0.0),
                _ => (0.5 / positives as f64, 0.5 / negatives as f64),
            },
            Quality::Prediction | Quality::Logit => {
                if positives == 0 {
                    return Err(ShapleyError::Input(format!(
                        "quality {self} averages over the concept's positive evaluation regions, \
                         and there are none ({negatives} negatives); use {self}_all"
                    )));
                }
                (1.0 / positives as f64, 0.0)
            }
        })
    }

    /// The per-region score of a kernel margin `s · logit` (`s` from [`Quality::sign`]).
    #[inline(always)]
    pub fn score(self, margin: f32) -> f32 {
        match self {
            Quality::LogLikelihood | Quality::BalancedLogLikelihood => log_sigmoid(margin),
            Quality::Accuracy => f32::from(u8::from(margin > 0.0)),
            Quality::Prediction | Quality::PredictionAll => sigmoid(margin),
            Quality::Logit | Quality::LogitAll => margin,
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|q| q.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown quality '{s}' (expected {})",
                    Self::NAMES.join(", ")
                )
            })
    }
}

/// σ(x) in branch-free f32 arithmetic: with t = e^−|x|, 1 / (1 + t) for x ≥ 0 and
/// t / (1 + t) below (no cancellation either side). Absolute error below 2·10⁻⁷, relative
/// below 10⁻⁶ for x ≥ −87 (see the test; below, |x| is clamped at 87 as in `log_sigmoid`); IEEE operations only (`exp_neg` rather than libm, a correctly rounded division), so
/// bit-identical on every machine and vectorisable.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let t = exp_neg(x.abs().min(87.0));
    let numerator = if x >= 0.0 { 1.0 } else { t };
    numerator / (1.0 + t)
}

/// log σ(x) = min(x, 0) − log1p(e^−|x|), in branch-free f32 arithmetic (error below
/// 3·10⁻⁷ absolute, or relative where |log σ| > 1; see the test). libm's `exp`/`log1p` are neither vectorisable nor
/// guaranteed identical across platforms; this is both.
#[inline(always)]
pub fn log_sigmoid(x: f32) -> f32 {
    let a = x.abs().min(87.0);
    x.min(0.0) - log1p_unit(exp_neg(a))
}

/// e^−a for a in [0, 87]: e^−a = 2^−k · e^−r, k = round(a / ln 2), |r| ≤ ln 2 / 2.
#[inline(always)]
fn exp_neg(a: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let shifted = a * LOG2E + MAGIC;
    let k_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let k = shifted - MAGIC;
    let r = (a - k * LN2_HI) - k * LN2_LO;
    // e^−r by its Taylor series to degree 7 (|r| ≤ 0.347: error < 3·10⁻⁹).
    let p = 1.0
        - r * (1.0
            - r * (0.5
                - r * (1.0 / 6.0
                    - r * (1.0 / 24.0
                        - r * (1.0 / 120.0 - r * (1.0 / 720.0 - r * (1.0 / 5040.0)))))));
    // 2^−k with k in 0..=126: a normal float.
    p * f32::from_bits(127u32.wrapping_sub(k_bits) << 23)
}

/// log(1 + t) for t in [0, 1] without a division (a division is most of the cost of a
/// vectorised log σ): u = 1 + t is brought to m ∈ [√½, √2] by halving when u > √2, and
/// ln m = f − f²/2 + f³ P(f), f = m − 1, with Cephes' `logf` polynomial; ln 2 is split in
/// two parts as in Cephes. Absolute error below 2·10⁻⁷ (for t below 6·10⁻⁸, 1 + t rounds to
/// 1 and the result is 0: an absolute error below 6·10⁻⁸).
#[inline(always)]
fn log1p_unit(t: f32) -> f32 {
    const P: [f32; 9] = [
        7.037_683_6e-2,
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_5e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ];
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let u = 1.0 + t;
    let halve = u > std::f32::consts::SQRT_2;
    let m = if halve { u * 0.5 } else { u };
    let e = if halve { 1.0 } else { 0.0 };
    let f = m - 1.0;
    let z = f * f;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * f + c;
    }
    let y = f * (z * p) + e * LN2_LO - 0.5 * z;
    (f + y) + e * LN2_HI
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sigmoid_is_accurate() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-3;
            let exact = -(-(x as f64)).exp().ln_1p();
            let exact = if x < 0.0 {
                x as f64 - (x as f64).exp().ln_1p()
            } else {
                exact
            };
            let err = (f64::from(log_sigmoid(x)) - exact).abs() / exact.abs().max(1.0);
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(log_sigmoid(-1000.0), -1000.0);
        assert!(log_sigmoid(1000.0) <= 0.0 && log_sigmoid(1000.0) > -1e-30);
        assert!(log_sigmoid(30.0) <= 0.0 && log_sigmoid(30.0) > -1e-7);
    }

    #[test]
    fn sigmoid_is_accurate() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-3;
            let exact = 1.0 / (1.0 + (-f64::from(x)).exp());
            let got = f64::from(sigmoid(x));
            worst = worst.max((got - exact).abs());
            if x < 0.0 && x > -87.0 {
                // Small predictions keep their relative precision (no 1 − σ cancellation);
                // below −87 e^x is clamped at e^−87 ≈ 1.6·10⁻³⁸ (a normal float).
                assert!((got - exact).abs() <= 1e-6 * exact, "{x}: {got} vs {exact}");
            }
        }
        assert!(worst < 2e-7, "worst absolute error {worst}");
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(-1000.0) < 1e-37);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-0.0), 0.5);
    }

    #[test]
    fn every_name_parses_and_an_unknown_one_lists_all_seven() {
        for (q, name) in Quality::ALL.into_iter().zip(Quality::NAMES) {
            assert_eq!(q.name(), name);
            assert_eq!(name.parse::<Quality>(), Ok(q));
            assert_eq!(q.to_string(), name);
        }
        assert_eq!(Quality::default(), Quality::LogLikelihood);
        let err = "auc".parse::<Quality>().unwrap_err();
        assert_eq!(
            err,
            "unknown quality 'auc' (expected log_likelihood, balanced_log_likelihood, accuracy, \
             prediction, logit, prediction_all, logit_all)"
        );
        assert!("Prediction".parse::<Quality>().is_err());
    }

    #[test]
    fn prediction_qualities_score_the_prediction_not_the_label() {
        for q in [Quality::PredictionAll, Quality::LogitAll] {
            // A negative with logit 2: margin +2 (not −2), scored as a confident "yes".
            assert_eq!(q.sign(false), 1.0);
            assert_eq!(q.class_weights(3, 1).unwrap(), (0.25, 0.25));
        }
        assert_eq!(Quality::PredictionAll.score(2.0), sigmoid(2.0));
        assert_eq!(Quality::LogitAll.score(-1.5), -1.5);
        assert_eq!(Quality::LogLikelihood.sign(false), -1.0);
        for q in [Quality::Prediction, Quality::Logit] {
            assert!(!q.scores_negatives());
            assert_eq!(q.class_weights(4, 6).unwrap(), (0.25, 0.0));
            let err = q.class_weights(0, 6).unwrap_err().to_string();
            assert!(err.contains(q.name()) && err.contains("positive"), "{err}");
        }
    }
}

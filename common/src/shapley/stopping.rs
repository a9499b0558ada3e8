//! When to stop sampling permutations: the question the scheduler asks between rounds.
//!
//! - [`StoppingRule::StderrBelow`]: every neuron's standard error is below a bound.
//! - [`StoppingRule::TopKSeparated`]: every neuron of the current top-k beats every other
//!   neuron by `z · √(se_i² + se_j²)`, `z` the one-sided normal quantile of the requested
//!   confidence — a pairwise z-test per (inside, outside) pair, without a multiple-comparison
//!   correction (ask for a higher confidence to be stricter).
//!
//! Neither rule answers before `min_samples` samples: a standard error from a handful of
//! samples is itself too noisy to trust (and is NaN below two).

use super::{PartialSums, PermutationBlock, Sampling, ShapleyEstimate};

/// Samples a concept needs before its stopping rule is first asked (`hint shapley` and the
/// coordinator's rounds alike).
pub const MIN_SAMPLES: u64 = 5;

/// A rule that says when the estimates of one concept are good enough.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoppingRule {
    /// Stop when every standard error is below the bound.
    StderrBelow(f64),
    /// Stop when the top `k` neurons by φ are separated from the rest with `confidence`
    /// (e.g. 0.95).
    TopKSeparated {
        /// How many top neurons.
        k: usize,
        /// One-sided confidence of each pairwise separation, in (0.5, 1).
        confidence: f64,
    },
}

impl StoppingRule {
    /// Whether sampling may stop, given the current estimates and the samples they rest on.
    pub fn satisfied(&self, estimates: &[ShapleyEstimate], samples: u64, min_samples: u64) -> bool {
        if samples < min_samples.max(2) || estimates.is_empty() {
            return false;
        }
        match *self {
            StoppingRule::StderrBelow(bound) => estimates.iter().all(|e| e.stderr < bound),
            StoppingRule::TopKSeparated { k, confidence } => {
                top_k_separated(estimates, k, normal_quantile(confidence))
            }
        }
    }
}

/// How one concept's permutations are spent: blocks of `round` permutations from 0 up to
/// `max`, until the stopping rule holds (asked after each block, from [`MIN_SAMPLES`]
/// samples on). `hint shapley` (one process, block after block) and the scheduler (one task
/// per block) both follow this plan, so they stop after the same block and give the same Φ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rounds {
    /// The most permutations, rounded up to whole samples.
    pub max: u64,
    /// Permutations per block, rounded up to whole samples (an antithetic pair is never
    /// split).
    pub round: u64,
    /// Stop earlier when this holds.
    pub rule: Option<StoppingRule>,
}

impl Rounds {
    /// At most `permutations`, in blocks of `round`, stopping when `rule` holds.
    pub fn new(
        sampling: Sampling,
        permutations: u64,
        round: u64,
        rule: Option<StoppingRule>,
    ) -> Self {
        let per = sampling.permutations_per_sample();
        let whole = |p: u64| p.div_ceil(per) * per;
        Rounds {
            max: whole(permutations),
            round: whole(round.max(1)),
            rule,
        }
    }

    /// The block after the first `done` permutations, whose merged sums are `sums` (None
    /// before the first block); None once the budget is spent or the rule holds.
    pub fn next(&self, done: u64, sums: Option<&PartialSums>) -> Option<PermutationBlock> {
        if done >= self.max {
            return None;
        }
        if let (Some(rule), Some(sums)) = (self.rule, sums) {
            if rule.satisfied(&sums.estimates(), sums.samples(), MIN_SAMPLES) {
                return None;
            }
        }
        Some(PermutationBlock::new(
            done,
            (done + self.round).min(self.max),
        ))
    }

    /// Every block from `done` to the budget's end, as planned at once without a rule.
    pub fn remaining(&self, done: u64) -> impl Iterator<Item = PermutationBlock> + '_ {
        std::iter::successors(self.next(done, None), |block| self.next(block.end, None))
    }

    /// Blocks per concept at most; block `b` of a concept starts at `b × round`.
    pub fn blocks(&self) -> u64 {
        self.max.div_ceil(self.round)
    }
}

/// Whether the `k` largest φ all exceed every other φ by `z` combined standard errors.
pub fn top_k_separated(estimates: &[ShapleyEstimate], k: usize, z: f64) -> bool {
    if k == 0 || k >= estimates.len() {
        return true;
    }
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_by(|&a, &b| estimates[b].phi.total_cmp(&estimates[a].phi));
    let (top, rest) = order.split_at(k);
    top.iter().all(|&i| {
        rest.iter().all(|&j| {
            let (a, b) = (estimates[i], estimates[j]);
            a.phi - b.phi > z * (a.stderr * a.stderr + b.stderr * b.stderr).sqrt()
        })
    })
}

/// The standard normal quantile Φ⁻¹(p) (Acklam's rational approximation, relative error
/// below 1.2·10⁻⁹), for 0 < p < 1.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(phi: f64, stderr: f64) -> ShapleyEstimate {
        ShapleyEstimate {
            phi,
            stderr,
            n_permutations: 10,
        }
    }

    #[test]
    fn quantiles() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn top_k_needs_separation() {
        let clear = [
            est(1.0, 0.01),
            est(0.9, 0.01),
            est(0.1, 0.01),
            est(0.0, 0.01),
        ];
        let rule = StoppingRule::TopKSeparated {
            k: 2,
            confidence: 0.99,
        };
        assert!(rule.satisfied(&clear, 10, 5));
        assert!(!rule.satisfied(&clear, 3, 5), "too few samples");
        let blurred = [est(1.0, 0.5), est(0.9, 0.01), est(0.1, 0.5), est(0.0, 0.01)];
        assert!(!rule.satisfied(&blurred, 10, 5));
    }

    #[test]
    fn rounds_are_whole_samples_and_stop_when_the_rule_holds() {
        let blocks =
            |r: Rounds| -> Vec<(u64, u64)> { r.remaining(0).map(|b| (b.start, b.end)).collect() };
        // 9 antithetic permutations are 5 pairs; a round of 3 becomes 2 pairs.
        let pairs = Rounds::new(Sampling::Antithetic, 9, 3, None);
        assert_eq!((pairs.max, pairs.round, pairs.blocks()), (10, 4, 3));
        assert_eq!(blocks(pairs), [(0, 4), (4, 8), (8, 10)]);
        let single = Rounds::new(Sampling::Independent, 7, 0, None);
        assert_eq!(blocks(single).len(), 7);
        assert_eq!(single.remaining(7).count(), 0);

        let rule = Some(StoppingRule::StderrBelow(0.5));
        let ruled = Rounds::new(Sampling::Independent, 100, 5, rule);
        assert_eq!(ruled.next(0, None), Some(PermutationBlock::new(0, 5)));
        let mut sums = PartialSums::new(2, Sampling::Independent, PermutationBlock::new(0, 5));
        for _ in 0..4 {
            sums.add_sample(&[1.0, 0.0]).unwrap();
        }
        // Four equal samples: a standard error of 0, but fewer than MIN_SAMPLES.
        assert_eq!(
            ruled.next(5, Some(&sums)),
            Some(PermutationBlock::new(5, 10))
        );
        sums.add_sample(&[1.0, 0.0]).unwrap();
        assert_eq!(ruled.next(5, Some(&sums)), None, "the rule holds");
        assert_eq!(ruled.next(100, None), None, "the budget is spent");
    }

    #[test]
    fn stderr_bound() {
        let e = [est(1.0, 0.01), est(0.0, 0.02)];
        assert!(StoppingRule::StderrBelow(0.05).satisfied(&e, 10, 2));
        assert!(!StoppingRule::StderrBelow(0.015).satisfied(&e, 10, 2));
        assert!(!StoppingRule::StderrBelow(1.0).satisfied(&[est(0.0, f64::NAN)], 10, 2));
    }
}

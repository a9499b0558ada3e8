//! Paired comparisons of two neuron selections, shared by the faithfulness checks (WSOL's
//! `wsol.json`, ablation's `ablation.json`): a difference with its bootstrap interval
//! ([`Difference`]), what the interval says ([`Verdict`]), and numpy's quantile.

use serde::{Deserialize, Serialize};

/// Shapley − baseline for one metric, with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Shapley's pooled value.
    pub shapley: f64,
    /// The baseline's (mean over draws).
    pub baseline: f64,
    /// `shapley − baseline`.
    pub difference: f64,
    /// The interval's lower end.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
}

/// What an interval of Shapley − baseline says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval lies above 0.
    Better,
    /// The interval holds 0: no difference beyond noise.
    WithinNoise,
    /// The interval lies below 0.
    Worse,
}

impl Verdict {
    /// The verdict of an interval.
    pub fn of(d: &Difference) -> Verdict {
        if d.low > 0.0 {
            Verdict::Better
        } else if d.high < 0.0 {
            Verdict::Worse
        } else {
            Verdict::WithinNoise
        }
    }

    /// In words.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::WithinNoise => "within noise",
            Verdict::Worse => "worse",
        }
    }
}

/// The `p` quantile of ascending `sorted` by linear interpolation between order
/// statistics (numpy's default, Hyndman–Fan type 7).
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "a quantile of nothing");
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The percentile interval of `replicates` (sorted in place) at `confidence`, around
/// `estimate`; with no replicates the interval is the point itself.
pub fn percentile_interval(replicates: &mut [f64], confidence: f64, estimate: f64) -> (f64, f64) {
    if replicates.is_empty() {
        return (estimate, estimate);
    }
    replicates.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    (
        quantile(replicates, alpha),
        quantile(replicates, 1.0 - alpha),
    )
}

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

/// Spearman's rank correlation of `a` and `b` (equal lengths): Pearson's correlation of
/// their ranks, tied values sharing their mean rank (scipy's `spearmanr`). None when either
/// is constant (or shorter than 2): the correlation is undefined there.
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "spearman of unequal lengths");
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    (aa > 0.0 && bb > 0.0).then(|| ab / (aa * bb).sqrt())
}

/// The rank (from 1) of each value, ties at their mean rank.
fn ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share ranks start+1..=end: their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_ranks_ties_at_their_mean_as_scipy_does() {
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) = 8 / √95.
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((rho - 8.0 / 95f64.sqrt()).abs() < 1e-12, "{rho}");
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 2.0]), [4.0, 1.0, 2.5, 2.5]);
        // Monotone maps keep it at ±1; a constant map has none.
        let a = [0.1, 5.0, -2.0, 3.0];
        let cubed: Vec<f32> = a.iter().map(|v| v * v * v).collect();
        assert!((spearman(&a, &cubed).unwrap() - 1.0).abs() < 1e-12);
        let negated: Vec<f32> = a.iter().map(|v| -v).collect();
        assert!((spearman(&a, &negated).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&a, &[2.0; 4]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }
}

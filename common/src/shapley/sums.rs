//! [`PartialSums`]: Σ marginal, Σ marginal², sample count per neuron — in exact fixed point.
//!
//! The design asks for partial sums merged "in a fixed order in f64" so that any split of
//! permutations across workers gives bit-identical Φ. Fixed order alone is not enough: f64
//! addition is not associative, so Σ(0..7) + Σ(7..9) and Σ(0..3) + Σ(3..9) differ in the last
//! bits. Each marginal is therefore rounded once to a multiple of 2^-64 and summed as an
//! `i128`: integer addition is exact and associative, so the merged sums — and Φ computed
//! from them — are bit-identical for any split and any completion order. Merging still sorts
//! the parts by block and rejects overlaps (a task counted twice).
//!
//! Range: a marginal must satisfy |m| < 2^16 and a merge may hold at most 2^31 samples, which
//! keeps Σm² · 2^64 below 2^127 (marginals of a mean log-likelihood or an accuracy are far
//! inside). Leaving the range is an [`ShapleyError::Overflow`], never a wrapped sum. The
//! rounding (2^-64 ≈ 5·10^-20) is far below any marginal's own floating-point error.

use super::{PermutationBlock, Sampling, ShapleyError};

/// 2^64: the fixed-point scale of sums and sums of squares.
const SCALE: f64 = 18_446_744_073_709_551_616.0;
/// Marginals must be smaller than this in magnitude.
const MAX_MARGINAL: f64 = 65_536.0;
/// Samples a sum may hold.
const MAX_SAMPLES: u64 = 1 << 31;

/// Σ marginal, Σ marginal² (fixed point) and the sample count, for every neuron of one concept,
/// plus the permutation blocks they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSums {
    sum: Vec<i128>,
    sum_sq: Vec<i128>,
    samples: u64,
    sampling: Sampling,
    blocks: Vec<PermutationBlock>,
}

/// The Monte-Carlo Shapley value of one neuron: mean marginal, its standard error, and how
/// many permutations it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapleyEstimate {
    /// φ: the mean marginal contribution.
    pub phi: f64,
    /// Standard error of φ (sample standard deviation of the samples over √samples; a sample
    /// is an antithetic pair when pairs are used). NaN with fewer than two samples.
    pub stderr: f64,
    /// Permutations behind the estimate.
    pub n_permutations: u64,
}

impl PartialSums {
    /// Empty sums over `neurons` neurons for the permutations of `block`.
    pub fn new(neurons: usize, sampling: Sampling, block: PermutationBlock) -> Self {
        PartialSums {
            sum: vec![0; neurons],
            sum_sq: vec![0; neurons],
            samples: 0,
            sampling,
            blocks: if block.is_empty() {
                vec![]
            } else {
                vec![block]
            },
        }
    }

    /// Neurons.
    pub fn neurons(&self) -> usize {
        self.sum.len()
    }

    /// Samples summed (pairs when antithetic).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Permutations summed.
    pub fn permutations(&self) -> u64 {
        self.samples * self.sampling.permutations_per_sample()
    }

    /// The sampling scheme.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// The permutation blocks covered, sorted.
    pub fn blocks(&self) -> &[PermutationBlock] {
        &self.blocks
    }

    /// Σ marginal of neuron `d`, as f64.
    pub fn sum(&self, d: usize) -> f64 {
        self.sum[d] as f64 / SCALE
    }

    /// Σ marginal² of neuron `d`, as f64.
    pub fn sum_sq(&self, d: usize) -> f64 {
        self.sum_sq[d] as f64 / SCALE
    }

    /// Adds one sample: the marginal contribution of every neuron (for an antithetic pair,
    /// the mean of the pair's two marginals).
    pub fn add_sample(&mut self, marginals: &[f64]) -> Result<(), ShapleyError> {
        if marginals.len() != self.neurons() {
            return Err(ShapleyError::Shape {
                what: "marginals",
                expected: self.neurons(),
                actual: marginals.len(),
            });
        }
        if self.samples + 1 > MAX_SAMPLES {
            return Err(ShapleyError::Overflow { neuron: 0 });
        }
        for (d, &m) in marginals.iter().enumerate() {
            if !m.is_finite() || m.abs() >= MAX_MARGINAL {
                return Err(ShapleyError::Overflow { neuron: d });
            }
            // m · 2^64 is exact (a power-of-two scaling) and rounds once here.
            let q = (m * SCALE).round() as i128;
            let q_sq = (m * m * SCALE).round() as i128;
            self.sum[d] = self.sum[d]
                .checked_add(q)
                .ok_or(ShapleyError::Overflow { neuron: d })?;
            self.sum_sq[d] = self.sum_sq[d]
                .checked_add(q_sq)
                .ok_or(ShapleyError::Overflow { neuron: d })?;
        }
        self.samples += 1;
        Ok(())
    }

    /// Merges the sums of disjoint permutation blocks. The parts are ordered by block and
    /// overlapping blocks are rejected; the result does not depend on the order of `parts`
    /// (bit for bit — see the module docs).
    pub fn merge(
        parts: impl IntoIterator<Item = PartialSums>,
    ) -> Result<PartialSums, ShapleyError> {
        let mut parts: Vec<PartialSums> = parts.into_iter().collect();
        parts.sort_by_key(|p| p.blocks.first().copied());
        let first = parts
            .first()
            .ok_or_else(|| ShapleyError::Merge("nothing to merge".into()))?;
        let mut merged =
            PartialSums::new(first.neurons(), first.sampling, PermutationBlock::new(0, 0));
        for part in &parts {
            if part.neurons() != merged.neurons() || part.sampling != merged.sampling {
                return Err(ShapleyError::Merge(format!(
                    "parts disagree: {} neurons ({:?}) vs {} ({:?})",
                    part.neurons(),
                    part.sampling,
                    merged.neurons(),
                    merged.sampling
                )));
            }
            // Sample counts come off the wire: add them checked, like the sums.
            merged.samples = merged
                .samples
                .checked_add(part.samples)
                .filter(|&n| n <= MAX_SAMPLES)
                .ok_or(ShapleyError::Overflow { neuron: 0 })?;
            for d in 0..merged.neurons() {
                let overflow = ShapleyError::Overflow { neuron: d };
                merged.sum[d] = merged.sum[d].checked_add(part.sum[d]).ok_or(overflow)?;
                merged.sum_sq[d] = merged.sum_sq[d]
                    .checked_add(part.sum_sq[d])
                    .ok_or(ShapleyError::Overflow { neuron: d })?;
            }
            merged.blocks.extend_from_slice(&part.blocks);
        }
        merged.blocks.sort();
        for pair in merged.blocks.windows(2) {
            if pair[1].start < pair[0].end {
                return Err(ShapleyError::Merge(format!(
                    "permutation blocks {}..{} and {}..{} overlap (a task counted twice?)",
                    pair[0].start, pair[0].end, pair[1].start, pair[1].end
                )));
            }
        }
        // Adjacent blocks become one, so the covered set reads the same for any split.
        let mut coalesced: Vec<PermutationBlock> = Vec::with_capacity(merged.blocks.len());
        for block in merged.blocks.drain(..) {
            match coalesced.last_mut() {
                Some(last) if last.end == block.start => last.end = block.end,
                _ => coalesced.push(block),
            }
        }
        merged.blocks = coalesced;
        Ok(merged)
    }

    /// The fixed-point sums (Σm · 2^64 and Σm² · 2^64 per neuron), for the wire.
    pub fn raw(&self) -> (&[i128], &[i128]) {
        (&self.sum, &self.sum_sq)
    }

    /// The one block these sums cover (`0..0` when empty). Sums that cover several
    /// disjoint blocks (a merge with a gap) have no single block: their span is returned.
    pub fn covered(&self) -> PermutationBlock {
        match (self.blocks.first(), self.blocks.last()) {
            (Some(first), Some(last)) => PermutationBlock::new(first.start, last.end),
            _ => PermutationBlock::new(0, 0),
        }
    }

    /// Sums received from elsewhere (a worker's completion): checked for shape and for a
    /// sample count that fits the block, so a malformed message is an error, not a wrong Φ.
    pub fn from_raw(
        sum: Vec<i128>,
        sum_sq: Vec<i128>,
        samples: u64,
        sampling: Sampling,
        block: PermutationBlock,
    ) -> Result<PartialSums, ShapleyError> {
        if sum.len() != sum_sq.len() {
            return Err(ShapleyError::Shape {
                what: "sum of squares",
                expected: sum.len(),
                actual: sum_sq.len(),
            });
        }
        let expected = block.samples(sampling)?;
        if expected.end - expected.start != samples {
            return Err(ShapleyError::Merge(format!(
                "{samples} samples do not fill permutations {}..{} ({} expected)",
                block.start,
                block.end,
                expected.end - expected.start
            )));
        }
        let mut sums = PartialSums::new(sum.len(), sampling, block);
        sums.sum = sum;
        sums.sum_sq = sum_sq;
        sums.samples = samples;
        Ok(sums)
    }

    /// The estimate of every neuron.
    pub fn estimates(&self) -> Vec<ShapleyEstimate> {
        let n = self.samples as f64;
        (0..self.neurons())
            .map(|d| {
                let mean = self.sum(d) / n;
                let stderr = if self.samples < 2 {
                    f64::NAN
                } else {
                    let var = (self.sum_sq(d) - self.sum(d) * mean) / (n - 1.0);
                    (var.max(0.0) / n).sqrt()
                };
                ShapleyEstimate {
                    phi: if self.samples == 0 { f64::NAN } else { mean },
                    stderr,
                    n_permutations: self.permutations(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_sums(start: u64, end: u64, data: &[Vec<f64>]) -> PartialSums {
        let mut s = PartialSums::new(
            data[0].len(),
            Sampling::Independent,
            PermutationBlock::new(start, end),
        );
        for k in start..end {
            s.add_sample(&data[k as usize]).unwrap();
        }
        s
    }

    #[test]
    fn any_split_and_order_merges_bit_identically() {
        let data: Vec<Vec<f64>> = (0..50)
            .map(|k| {
                (0..3)
                    .map(|d| ((k * 7 + d) as f64).sin() * 1e-3 / 3.0)
                    .collect()
            })
            .collect();
        let whole = PartialSums::merge([block_sums(0, 50, &data)]).unwrap();
        let parts = vec![
            block_sums(30, 50, &data),
            block_sums(0, 13, &data),
            block_sums(13, 30, &data),
        ];
        let split = PartialSums::merge(parts).unwrap();
        assert_eq!(whole, split);
        let (a, b) = (whole.estimates(), split.estimates());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.phi.to_bits(), y.phi.to_bits());
            assert_eq!(x.stderr.to_bits(), y.stderr.to_bits());
        }
    }

    #[test]
    fn overlapping_blocks_are_rejected() {
        let data = vec![vec![0.5]; 10];
        let err = PartialSums::merge([block_sums(0, 6, &data), block_sums(5, 10, &data)]);
        assert!(matches!(err, Err(ShapleyError::Merge(_))));
    }

    #[test]
    fn sample_counts_that_add_past_u64_are_an_error_not_a_panic() {
        let whole = PermutationBlock::new(0, u64::MAX);
        let part = || {
            PartialSums::from_raw(vec![0], vec![0], u64::MAX, Sampling::Independent, whole).unwrap()
        };
        assert!(matches!(
            PartialSums::merge([part(), part()]),
            Err(ShapleyError::Overflow { .. })
        ));
    }

    #[test]
    fn estimates_match_the_textbook_formulas() {
        let xs = [0.1, 0.4, -0.2, 0.3];
        let data: Vec<Vec<f64>> = xs.iter().map(|&x| vec![x]).collect();
        let e = block_sums(0, 4, &data).estimates()[0];
        let mean = xs.iter().sum::<f64>() / 4.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((e.phi - mean).abs() < 1e-15);
        assert!((e.stderr - (var / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(e.n_permutations, 4);
    }

    #[test]
    fn out_of_range_marginals_are_errors() {
        let mut s = PartialSums::new(2, Sampling::Independent, PermutationBlock::new(0, 1));
        assert!(matches!(
            s.add_sample(&[0.0, 1e6]),
            Err(ShapleyError::Overflow { neuron: 1 })
        ));
        assert!(s.add_sample(&[f64::NAN, 0.0]).is_err());
    }
}

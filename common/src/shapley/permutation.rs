//! Permutations of the neurons, drawn from `(job seed, concept, index)` alone.
//!
//! A draw never depends on which worker runs it or on which other permutations it runs
//! with, so a block of permutation indices is a self-contained task. The bounded draw is
//! Lemire's multiply-and-reject on the ChaCha8 stream, written here rather than taken from
//! `rand`'s `random_range`, whose algorithm may change between versions: the permutations
//! of a seed are as stable as [`crate::seed`].

use rand::Rng;

use super::{ShapleyError, PERMUTATION_TAG};
use crate::seed;

/// How permutations are sampled: independently, or in antithetic pairs (permutation `2j + 1`
/// is the reverse of `2j`, and the pair is one sample; see the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Every permutation is its own sample.
    Independent,
    /// Permutation `2j + 1` reverses `2j`; a sample is the pair.
    Antithetic,
}

impl Sampling {
    /// Permutations per sample: 1 or 2.
    pub fn permutations_per_sample(self) -> u64 {
        match self {
            Sampling::Independent => 1,
            Sampling::Antithetic => 2,
        }
    }
}

/// The permutation indices `start..end` of one concept: the unit of work of a Shapley task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PermutationBlock {
    /// First permutation index.
    pub start: u64,
    /// One past the last permutation index.
    pub end: u64,
}

impl PermutationBlock {
    /// The block `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        PermutationBlock { start, end }
    }

    /// Permutations in the block.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the block holds no permutation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample indices of the block under `sampling`; an antithetic block must start and
    /// end on a pair boundary (even indices), so no pair is split across tasks.
    pub fn samples(&self, sampling: Sampling) -> Result<std::ops::Range<u64>, ShapleyError> {
        let per = sampling.permutations_per_sample();
        let error = |problem| ShapleyError::Block {
            start: self.start,
            end: self.end,
            problem,
        };
        if self.end < self.start {
            return Err(error("end is before start"));
        }
        if !self.start.is_multiple_of(per) || !self.end.is_multiple_of(per) {
            return Err(error(
                "antithetic pairs need even bounds (a pair is never split)",
            ));
        }
        Ok(self.start / per..self.end / per)
    }
}

/// Permutation `k` of the `neurons` neurons of `concept`, as neuron indices in the order they
/// join the coalition.
pub fn permutation(
    job_seed: u64,
    concept: u32,
    k: u64,
    neurons: usize,
    sampling: Sampling,
) -> Vec<u32> {
    if sampling == Sampling::Antithetic && k % 2 == 1 {
        let mut order = draw(job_seed, concept, k - 1, neurons);
        order.reverse();
        order
    } else {
        draw(job_seed, concept, k, neurons)
    }
}

/// A uniform random permutation by Fisher–Yates from `seed::rng(job, [TAG, concept, k])`.
fn draw(job_seed: u64, concept: u32, k: u64, neurons: usize) -> Vec<u32> {
    let mut rng = seed::rng(job_seed, &[PERMUTATION_TAG, u64::from(concept), k]);
    let mut order: Vec<u32> = (0..neurons as u32).collect();
    for i in (1..neurons).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// A uniform integer in `0..n` (`n > 0`): Lemire's nearly-divisionless method, exact.
pub fn below(rng: &mut impl Rng, n: u64) -> u64 {
    assert!(n > 0, "below(0)");
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        let low = product as u64;
        // Reject the few draws that would make low values more likely.
        if low < n && low < n.wrapping_neg() % n {
            continue;
        }
        return (product >> 64) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_deterministic_and_valid() {
        let a = permutation(7, 3, 11, 50, Sampling::Independent);
        assert_eq!(a, permutation(7, 3, 11, 50, Sampling::Independent));
        assert_ne!(a, permutation(7, 3, 12, 50, Sampling::Independent));
        assert_ne!(a, permutation(7, 4, 11, 50, Sampling::Independent));
        assert_ne!(a, permutation(8, 3, 11, 50, Sampling::Independent));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<u32>>());
    }

    #[test]
    fn antithetic_partner_is_the_reverse() {
        let even = permutation(1, 0, 4, 20, Sampling::Antithetic);
        let mut odd = permutation(1, 0, 5, 20, Sampling::Antithetic);
        assert_eq!(even, permutation(1, 0, 4, 20, Sampling::Independent));
        odd.reverse();
        assert_eq!(even, odd);
    }

    #[test]
    fn draws_are_uniform() {
        // Position of neuron 0 over many permutations of 4: each position ≈ 1/4.
        let mut counts = [0u32; 4];
        for k in 0..8000 {
            let p = permutation(5, 1, k, 4, Sampling::Independent);
            counts[p.iter().position(|&d| d == 0).unwrap()] += 1;
        }
        for c in counts {
            assert!((1800..2200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn antithetic_blocks_need_even_bounds() {
        assert_eq!(
            PermutationBlock::new(2, 8)
                .samples(Sampling::Antithetic)
                .unwrap(),
            1..4
        );
        assert!(PermutationBlock::new(1, 8)
            .samples(Sampling::Antithetic)
            .is_err());
        assert_eq!(
            PermutationBlock::new(1, 8)
                .samples(Sampling::Independent)
                .unwrap(),
            1..8
        );
    }
}

//! Deterministic seeds derived from a job seed and an identity.
//!
//! Every random choice in hint (background subsampling, SmoothGrad noise, Shapley
//! permutations, train/test splits) draws from a generator seeded by
//! `derive(job_seed, &[what, which…])` ([`derive()`], [`rng`]), never from a shared stream. A task therefore
//! makes the same choices whichever worker runs it, in whatever order, after however many
//! retries — this is what makes a run reproducible.
//!
//! **Stability contract**: [`derive()`] is plain integer arithmetic (SplitMix64 steps chained
//! over the parts) with no dependence on platform, endianness, pointer width or crate
//! versions. Changing it changes every result hint produces from a given seed, so its known
//! values are pinned by tests. [`rng`] builds a ChaCha8 generator from a 32-byte seed
//! expanded by the same function, so only the ChaCha8 stream itself (a published cipher)
//! comes from a dependency.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The SplitMix64 increment (the golden-ratio constant).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective, well-avalanching mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives a seed from `seed` and an identity `parts` (for example a stage tag, an image
/// id and a neuron index).
///
/// Each part is absorbed as `state = mix((state + GAMMA) ^ part)` (wrapping add) and the
/// number of parts last, so `[1, 2]`, `[2, 1]`, `[1, 2, 0]` and `[3]` all give different
/// seeds. Stable across versions and platforms; see the module docs.
pub fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut state = mix(seed.wrapping_add(GAMMA));
    for &part in parts {
        // Adding GAMMA before xoring the part makes a zero part still move the state.
        state = mix(state.wrapping_add(GAMMA) ^ part);
    }
    mix(state.wrapping_add(GAMMA) ^ parts.len() as u64)
}

/// A ChaCha8 generator for `seed` and identity `parts`: its 32-byte key is four successive
/// [`derive()`] values in little-endian order, so the stream is as stable as [`derive()`].
pub fn rng(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    let base = derive(seed, parts);
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&derive(base, &[i as u64]).to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use std::collections::HashSet;

    #[test]
    fn known_values_are_stable() {
        // Regression guard: these values define reproducibility of every hint run. If this
        // test fails, results from old seeds are no longer reproducible — do not just update.
        assert_eq!(derive(0, &[]), KNOWN[0]);
        assert_eq!(derive(42, &[]), KNOWN[1]);
        assert_eq!(derive(42, &[0]), KNOWN[2]);
        assert_eq!(derive(42, &[1, 2, 3]), KNOWN[3]);
        assert_eq!(derive(u64::MAX, &[u64::MAX]), KNOWN[4]);
        assert_eq!(rng(42, &[7]).next_u64(), KNOWN[5]);
    }

    // The first five were cross-checked against an independent Python transcription of
    // `derive`.
    const KNOWN: [u64; 6] = [
        12035550249420947055,
        6332618229526065668,
        11850619448187863329,
        17332141213459975892,
        680281428037744950,
        3994208136625513415,
    ];

    #[test]
    fn different_identities_give_different_seeds() {
        let cases: Vec<Vec<u64>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 2],
            vec![2, 1],
            vec![1, 2, 0],
            vec![3],
        ];
        let seeds: HashSet<u64> = cases.iter().map(|p| derive(7, p)).collect();
        assert_eq!(seeds.len(), cases.len());
        assert_ne!(derive(7, &[1]), derive(8, &[1]));
        // Many nearby identities, no collisions.
        let many: HashSet<u64> = (0..10_000u64).map(|i| derive(1, &[5, i])).collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn rng_is_deterministic_and_identity_dependent() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = rng(3, &[1]);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = rng(3, &[1]);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = rng(3, &[2]);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bits_are_balanced() {
        // A weak avalanche check: flipping one input bit flips about half the output bits.
        let mut total = 0u32;
        for bit in 0..64 {
            total += (derive(99, &[0]) ^ derive(99, &[1u64 << bit])).count_ones();
        }
        let mean = f64::from(total) / 64.0;
        assert!((24.0..40.0).contains(&mean), "mean flipped bits {mean}");
    }
}

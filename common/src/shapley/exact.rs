//! Exact Shapley values by enumerating all 2^D coalitions — the oracle of the Monte-Carlo
//! estimates in tests, usable for small layers (D ≤ 20).

/// φ_d = Σ_{S ⊆ N∖{d}} |S|! (D − |S| − 1)! / D! · (v(S ∪ {d}) − v(S)) for every player `d`,
/// where `value(mask)` is v of the coalition whose members are the set bits of `mask`.
///
/// # Panics
/// If `players > 20` (2^20 coalitions is the limit of an oracle).
pub fn exact_shapley(players: usize, value: impl Fn(u64) -> f64) -> Vec<f64> {
    let values: Vec<f64> = (0..1u64 << players).map(&value).collect();
    exact_from_values(players, &values)
}

/// [`exact_shapley`] from v of every coalition, indexed by mask (`values.len() == 2^players`);
/// lets a caller compute v in batches.
///
/// # Panics
/// If `players > 20` or `values` has the wrong length.
pub fn exact_from_values(players: usize, values: &[f64]) -> Vec<f64> {
    assert!(
        players <= 20,
        "exact Shapley enumerates 2^D coalitions; D = {players} is too many"
    );
    assert_eq!(values.len(), 1 << players, "one value per coalition");
    // weight[s] = s! (D − s − 1)! / D! = 1 / (D · C(D − 1, s)).
    let mut weight = vec![0.0f64; players.max(1)];
    let mut binom = 1.0f64;
    for (s, w) in weight.iter_mut().enumerate().take(players) {
        *w = 1.0 / (players as f64 * binom);
        binom = binom * (players - 1 - s) as f64 / (s + 1) as f64;
    }
    let mut phi = vec![0.0f64; players];
    for (d, phi_d) in phi.iter_mut().enumerate() {
        let bit = 1u64 << d;
        for mask in 0..1u64 << players {
            if mask & bit == 0 {
                let s = mask.count_ones() as usize;
                *phi_d += weight[s] * (values[(mask | bit) as usize] - values[mask as usize]);
            }
        }
    }
    phi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glove_game() {
        // Players 0 and 1 hold left gloves, 2 a right glove; a pair is worth 1.
        let v = |m: u64| {
            let left = (m & 1) + ((m >> 1) & 1);
            let right = (m >> 2) & 1;
            left.min(right) as f64
        };
        let phi = exact_shapley(3, v);
        for (p, want) in phi.iter().zip([1.0 / 6.0, 1.0 / 6.0, 2.0 / 3.0]) {
            assert!((p - want).abs() < 1e-12, "{phi:?}");
        }
    }

    #[test]
    fn additive_game_gives_the_weights() {
        let w = [0.5, -1.0, 2.0, 0.25];
        let v = |m: u64| {
            (0..4)
                .filter(|d| m >> d & 1 == 1)
                .map(|d| w[d])
                .sum::<f64>()
        };
        let phi = exact_shapley(4, v);
        for (p, want) in phi.iter().zip(w) {
            assert!((p - want).abs() < 1e-12);
        }
    }
}

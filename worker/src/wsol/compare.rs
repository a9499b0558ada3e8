//! Comparing selections honestly: each (concept, image) pair's outcome under every
//! re-fitted classifier ([`PairOutcomes`]), random selections averaged over their draws
//! ([`pooled`]), and Shapley − each baseline with a paired bootstrap interval ([`compare`]).
//!
//! **The interval.** Each replicate resamples the evaluated *images* with replacement — the
//! pairs of one image (under each concept it is evaluated for) travel together, since they
//! share its pixels — and, for a baseline with several draws (random), resamples each
//! (concept, fraction)'s draws with replacement, so the interval also holds the randomness
//! of the random selection. Every comparison of a replicate uses the same image resample
//! (paired). The statistic is the ratio Σ (Shapley − baseline) / pairs over the resampled
//! pairs; the interval is its percentile interval (quantiles by linear interpolation,
//! numpy's default). Concepts are fixed: the interval is about images and draws, not about
//! other concepts, models or jobs.

use hint_common::seed;
use hint_common::stats::percentile_interval;
pub use hint_common::stats::{quantile, Difference, Verdict};
pub use hint_common::wsol::{BootstrapSettings, Comparison};

use super::select::{Selection, WSOL_TAG};

/// Identity part of the bootstrap's random streams, after [`WSOL_TAG`].
pub const BOOTSTRAP_PART: u64 = 3;

/// One classifier's scores on one (concept, image) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// The predicted box has IoU ≥ 0.5 with a ground-truth box.
    pub localised: bool,
    /// The map's maximum is inside a ground-truth box.
    pub pointed: bool,
    /// IoU of the thresholded map with the mask, when there is a mask.
    pub mask_iou: Option<f64>,
    /// Bit `k`: localised at the sweep's threshold `k` (see `geometry::boxes_by_threshold`).
    pub box_hits: u128,
    /// Localised at its slot's MaxBoxAcc threshold ([`choose_box_thresholds`]).
    pub max_box: bool,
}

/// What is measured of an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Localisation accuracy (1 if localised).
    LocAccuracy,
    /// Pointing game (1 if pointed).
    Pointing,
    /// Mask IoU (pairs with a mask only).
    MaskIou,
    /// Box accuracy at the slot's best sweep threshold (MaxBoxAcc).
    MaxBoxAcc,
}

impl Metric {
    /// The four, in report order.
    pub const ALL: [Metric; 4] = [
        Metric::LocAccuracy,
        Metric::Pointing,
        Metric::MaskIou,
        Metric::MaxBoxAcc,
    ];

    /// The outcome's value; `None` where the metric does not apply (no mask).
    pub fn value(self, o: &Outcome) -> Option<f64> {
        match self {
            Metric::LocAccuracy => Some(f64::from(u8::from(o.localised))),
            Metric::Pointing => Some(f64::from(u8::from(o.pointed))),
            Metric::MaskIou => o.mask_iou,
            Metric::MaxBoxAcc => Some(f64::from(u8::from(o.max_box))),
        }
    }
}

/// MaxBoxAcc's threshold of every slot: the sweep step with the most localised pairs over
/// all of them (the lowest step on a tie), as Choe et al. take the best threshold over the
/// evaluation set; each outcome's `max_box` is then its hit at its slot's step. Every
/// selection (each random draw too) gets its own best threshold, so none is favoured.
pub fn choose_box_thresholds(pairs: &mut [PairOutcomes], slots: usize) -> Vec<usize> {
    let steps = super::geometry::SWEEP;
    let chosen: Vec<usize> = (0..slots)
        .map(|slot| {
            let mut hits = vec![0usize; steps];
            for p in pairs.iter() {
                let bits = p.outcomes[slot].box_hits;
                for (k, h) in hits.iter_mut().enumerate() {
                    *h += usize::from(bits >> k & 1 == 1);
                }
            }
            // The first maximum: the lowest threshold among the best.
            (0..steps).fold(0, |best, k| if hits[k] > hits[best] { k } else { best })
        })
        .collect();
    for p in pairs.iter_mut() {
        for (o, &k) in p.outcomes.iter_mut().zip(&chosen) {
            o.max_box = o.box_hits >> k & 1 == 1;
        }
    }
    chosen
}

/// A re-fitted classifier of a concept: every concept has the same [`slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// How its neurons were chosen.
    pub selection: Selection,
    /// Percent of neurons kept.
    pub fraction: u32,
    /// The draw (0 for the selections that are not random).
    pub draw: u32,
}

/// The classifiers of a concept, fraction after fraction: Shapley, |w|·σ, raw |w|, then
/// `draws` random ones.
pub fn slots(fractions: &[u32], draws: u32) -> Vec<Slot> {
    let mut out = Vec::new();
    for &fraction in fractions {
        for selection in Selection::ALL {
            let n = if selection == Selection::Random {
                draws
            } else {
                1
            };
            out.extend((0..n).map(|draw| Slot {
                selection,
                fraction,
                draw,
            }));
        }
    }
    out
}

/// The slots of (selection, fraction), in draw order.
pub fn slots_of(slots: &[Slot], selection: Selection, fraction: u32) -> Vec<usize> {
    (0..slots.len())
        .filter(|&i| slots[i].selection == selection && slots[i].fraction == fraction)
        .collect()
}

/// One (concept, image) pair: one outcome per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct PairOutcomes {
    /// Concept id.
    pub concept: u32,
    /// Image id.
    pub image: u64,
    /// Outcomes, indexed like the slots.
    pub outcomes: Vec<Outcome>,
}

/// A metric pooled over pairs: the mean over draws of each draw's pooled value, and the
/// sample standard deviation across draws (several draws only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pooled {
    /// Mean over draws; `None` when no pair has the metric.
    pub mean: Option<f64>,
    /// Standard deviation over draws (n − 1); `None` with one draw.
    pub sd: Option<f64>,
}

/// `metric` pooled over `pairs` for the slots `draws` (one or several draws of a selection).
pub fn pooled(pairs: &[&PairOutcomes], draws: &[usize], metric: Metric) -> Pooled {
    let per_draw: Vec<f64> = draws
        .iter()
        .filter_map(|&slot| {
            let (mut sum, mut n) = (0.0, 0usize);
            for v in pairs.iter().filter_map(|p| metric.value(&p.outcomes[slot])) {
                sum += v;
                n += 1;
            }
            (n > 0).then(|| sum / n as f64)
        })
        .collect();
    if per_draw.is_empty() {
        return Pooled {
            mean: None,
            sd: None,
        };
    }
    let m = per_draw.iter().sum::<f64>() / per_draw.len() as f64;
    let sd = (per_draw.len() > 1).then(|| {
        let ss: f64 = per_draw.iter().map(|v| (v - m).powi(2)).sum();
        (ss / (per_draw.len() - 1) as f64).sqrt()
    });
    Pooled { mean: Some(m), sd }
}

/// Every (baseline, fraction) comparison with Shapley, baseline-major.
pub fn compare(
    pairs: &[PairOutcomes],
    slots: &[Slot],
    fractions: &[u32],
    settings: &BootstrapSettings,
) -> Vec<Comparison> {
    // Images as clusters 0..n, concepts as groups 0..m, in first-seen order.
    let mut image_ids: Vec<u64> = pairs.iter().map(|p| p.image).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let cluster: Vec<usize> = pairs
        .iter()
        .map(|p| image_ids.binary_search(&p.image).expect("listed"))
        .collect();
    let mut concept_ids: Vec<u32> = pairs.iter().map(|p| p.concept).collect();
    concept_ids.sort_unstable();
    concept_ids.dedup();
    let group: Vec<usize> = pairs
        .iter()
        .map(|p| concept_ids.binary_search(&p.concept).expect("listed"))
        .collect();
    let images = ImageResamples::draw(image_ids.len(), settings);

    let mut out = Vec::new();
    for baseline in Selection::BASELINES {
        for &fraction in fractions {
            let shapley = slots_of(slots, Selection::Shapley, fraction);
            let draws = slots_of(slots, baseline, fraction);
            if shapley.len() != 1 || draws.is_empty() {
                continue;
            }
            // The baseline's position in `Selection` names its stream.
            let stream = [
                WSOL_TAG,
                BOOTSTRAP_PART,
                baseline as u64,
                u64::from(fraction),
            ];
            let draw_weights =
                DrawResamples::draw(concept_ids.len(), draws.len(), settings, &stream);
            let difference = |metric: Metric| -> Option<Difference> {
                let mut data = Paired::default();
                for (i, p) in pairs.iter().enumerate() {
                    let Some(x) = metric.value(&p.outcomes[shapley[0]]) else {
                        continue;
                    };
                    let y: Option<Vec<f64>> = draws
                        .iter()
                        .map(|&s| metric.value(&p.outcomes[s]))
                        .collect();
                    let Some(y) = y else { continue };
                    data.push(cluster[i], group[i], x, &y);
                }
                data.difference(&images, &draw_weights, settings.confidence)
            };
            let (Some(loc_accuracy), Some(pointing)) = (
                difference(Metric::LocAccuracy),
                difference(Metric::Pointing),
            ) else {
                continue;
            };
            out.push(Comparison {
                baseline,
                fraction,
                pairs: pairs.len(),
                images: image_ids.len(),
                draws: draws.len(),
                verdict: Verdict::of(&loc_accuracy),
                loc_accuracy,
                pointing,
                mask_iou: difference(Metric::MaskIou),
                max_box_acc: difference(Metric::MaxBoxAcc),
                overlap: None,
            });
        }
    }
    out
}

/// How many times each image is taken in each replicate.
struct ImageResamples {
    /// `replicates × images`.
    counts: Vec<u32>,
    images: usize,
}

impl ImageResamples {
    fn draw(images: usize, settings: &BootstrapSettings) -> Self {
        use rand::RngExt;
        let mut counts = vec![0u32; settings.replicates * images];
        if images > 0 {
            for (b, row) in counts.chunks_mut(images).enumerate() {
                let mut rng = seed::rng(settings.seed, &[WSOL_TAG, BOOTSTRAP_PART, b as u64]);
                for _ in 0..images {
                    row[rng.random_range(0..images)] += 1;
                }
            }
        }
        ImageResamples { counts, images }
    }

    fn replicate(&self, b: usize) -> &[u32] {
        &self.counts[b * self.images..(b + 1) * self.images]
    }
}

/// How many times each draw of each group (concept) is taken in each replicate; one draw
/// is always taken once (nothing to resample).
struct DrawResamples {
    /// `replicates × groups × draws`.
    counts: Vec<u32>,
    groups: usize,
    draws: usize,
}

impl DrawResamples {
    fn draw(groups: usize, draws: usize, settings: &BootstrapSettings, stream: &[u64]) -> Self {
        use rand::RngExt;
        let per = groups * draws;
        let mut counts = vec![if draws == 1 { 1 } else { 0 }; settings.replicates * per];
        if draws > 1 {
            for (b, row) in counts.chunks_mut(per).enumerate() {
                let mut parts = stream.to_vec();
                parts.push(b as u64);
                let mut rng = seed::rng(settings.seed, &parts);
                for g in row.chunks_mut(draws) {
                    for _ in 0..draws {
                        g[rng.random_range(0..draws)] += 1;
                    }
                }
            }
        }
        DrawResamples {
            counts,
            groups,
            draws,
        }
    }

    fn weights(&self, b: usize, group: usize) -> &[u32] {
        let at = (b * self.groups + group) * self.draws;
        &self.counts[at..at + self.draws]
    }
}

/// One metric's paired data: per pair its image, its concept, Shapley's value and the
/// baseline's value per draw.
#[derive(Default)]
struct Paired {
    cluster: Vec<usize>,
    group: Vec<usize>,
    x: Vec<f64>,
    /// `pairs × draws`.
    y: Vec<f64>,
    draws: usize,
}

impl Paired {
    fn push(&mut self, cluster: usize, group: usize, x: f64, y: &[f64]) {
        self.draws = y.len();
        self.cluster.push(cluster);
        self.group.push(group);
        self.x.push(x);
        self.y.extend_from_slice(y);
    }

    /// Shapley − baseline over the pairs resampled by `images` (`None` for the original
    /// sample) and `draws`; `None` when no pair is taken.
    fn statistic(
        &self,
        images: Option<&[u32]>,
        draws: Option<(&DrawResamples, usize)>,
    ) -> Option<(f64, f64)> {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for i in 0..self.x.len() {
            let c = images.map_or(1.0, |w| f64::from(w[self.cluster[i]]));
            if c == 0.0 {
                continue;
            }
            let y = &self.y[i * self.draws..(i + 1) * self.draws];
            let baseline = match draws {
                None => y.iter().sum::<f64>() / self.draws as f64,
                Some((d, b)) => {
                    let w = d.weights(b, self.group[i]);
                    y.iter().zip(w).map(|(v, &k)| v * f64::from(k)).sum::<f64>() / self.draws as f64
                }
            };
            sx += c * self.x[i];
            sy += c * baseline;
            n += c;
        }
        (n > 0.0).then(|| (sx / n, sy / n))
    }

    fn difference(
        &self,
        images: &ImageResamples,
        draws: &DrawResamples,
        confidence: f64,
    ) -> Option<Difference> {
        let (shapley, baseline) = self.statistic(None, None)?;
        let mut replicates: Vec<f64> = (0..images.counts.len() / images.images.max(1))
            .filter_map(|b| {
                self.statistic(Some(images.replicate(b)), Some((draws, b)))
                    .map(|(x, y)| x - y)
            })
            .collect();
        let difference = shapley - baseline;
        let (low, high) = percentile_interval(&mut replicates, confidence, difference);
        Some(Difference {
            shapley,
            baseline,
            difference,
            low,
            high,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(localised: bool) -> Outcome {
        Outcome {
            localised,
            pointed: true,
            mask_iou: Some(if localised { 0.75 } else { 0.25 }),
            max_box: localised,
            ..Outcome::default()
        }
    }

    fn settings(replicates: usize) -> BootstrapSettings {
        BootstrapSettings {
            replicates,
            confidence: 0.95,
            seed: 9,
        }
    }

    /// Pairs for fraction 10 with one random draw per value of `random`; `s` / `ws` / `wr`
    /// say whether Shapley / |w|·σ / raw |w| localise.
    fn pair(
        concept: u32,
        image: u64,
        s: bool,
        ws: bool,
        wr: bool,
        random: &[bool],
    ) -> PairOutcomes {
        let mut outcomes = vec![outcome(s), outcome(ws), outcome(wr)];
        outcomes.extend(random.iter().map(|&r| outcome(r)));
        PairOutcomes {
            concept,
            image,
            outcomes,
        }
    }

    #[test]
    fn each_slot_takes_its_own_best_sweep_threshold() {
        let with_bits = |a: u128, b: u128| PairOutcomes {
            concept: 0,
            image: 0,
            outcomes: vec![
                Outcome {
                    box_hits: a,
                    ..Outcome::default()
                },
                Outcome {
                    box_hits: b,
                    ..Outcome::default()
                },
            ],
        };
        // Slot 0: step 3 localises both pairs, step 1 one. Slot 1: steps 2 and 7 tie at one
        // pair each (the lower wins); nothing at step 3.
        let mut pairs = vec![with_bits(0b1010, 1 << 2), with_bits(0b1000, 1 << 7)];
        assert_eq!(choose_box_thresholds(&mut pairs, 2), vec![3, 2]);
        let hits = |slot: usize| {
            pairs
                .iter()
                .map(|p| p.outcomes[slot].max_box)
                .collect::<Vec<_>>()
        };
        assert_eq!((hits(0), hits(1)), (vec![true, true], vec![true, false]));
    }

    #[test]
    fn slots_list_each_fraction_then_the_random_draws() {
        let s = slots(&[10, 40], 3);
        assert_eq!(s.len(), 12);
        assert_eq!(
            s[..6]
                .iter()
                .map(|s| (s.selection, s.draw))
                .collect::<Vec<_>>(),
            vec![
                (Selection::Shapley, 0),
                (Selection::WeightStandardised, 0),
                (Selection::WeightRaw, 0),
                (Selection::Random, 0),
                (Selection::Random, 1),
                (Selection::Random, 2),
            ]
        );
        assert_eq!(slots_of(&s, Selection::Random, 40), vec![9, 10, 11]);
        assert_eq!(slots_of(&s, Selection::WeightRaw, 10), vec![2]);
    }

    #[test]
    fn random_draws_are_averaged_with_their_spread() {
        // Two pairs, three draws: per draw 1/2, 2/2, 0/2 localised → mean 0.5, sd 0.5.
        let a = pair(0, 1, true, true, true, &[true, true, false]);
        let b = pair(0, 2, true, true, true, &[false, true, false]);
        let random = [3, 4, 5];
        let p = pooled(&[&a, &b], &random, Metric::LocAccuracy);
        assert_eq!(p.mean, Some(0.5));
        assert!((p.sd.unwrap() - 0.5).abs() < 1e-12);
        // Mask IoU per draw: 0.5, 0.75, 0.25.
        let m = pooled(&[&a, &b], &random, Metric::MaskIou);
        assert!((m.mean.unwrap() - 0.5).abs() < 1e-12);
        assert!((m.sd.unwrap() - 0.25).abs() < 1e-12);
        // One draw: no spread.
        let one = pooled(&[&a, &b], &[0], Metric::LocAccuracy);
        assert_eq!((one.mean, one.sd), (Some(1.0), None));
        let mut none = a.clone();
        none.outcomes[0].mask_iou = None;
        assert_eq!(pooled(&[&none], &[0], Metric::MaskIou).mean, None);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.0), 1.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 1.0), 4.0);
        // numpy.quantile([0, 10, 20, 30, 40], 0.025) = 1.0
        assert!((quantile(&[0.0, 10.0, 20.0, 30.0, 40.0], 0.025) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_difference_on_every_pair_has_no_spread() {
        // Shapley always localises, |w|·σ never: Δ = 1 in every replicate.
        let pairs: Vec<PairOutcomes> = (0..30)
            .map(|i| pair(i % 3, u64::from(i), true, false, true, &[true, false]))
            .collect();
        let c = compare(&pairs, &slots(&[10], 2), &[10], &settings(200));
        assert_eq!(c.len(), 3);
        let ws = &c[0];
        assert_eq!(ws.baseline, Selection::WeightStandardised);
        assert_eq!((ws.pairs, ws.images, ws.draws), (30, 30, 1));
        let d = ws.loc_accuracy;
        assert_eq!((d.difference, d.low, d.high), (1.0, 1.0, 1.0));
        assert_eq!(ws.verdict, Verdict::Better);
        assert_eq!(ws.mask_iou.unwrap().difference, 0.5);
        assert_eq!(ws.pointing.difference, 0.0);
        // Equal to raw |w| everywhere: exactly 0, within noise.
        let wr = &c[1];
        assert_eq!((wr.loc_accuracy.low, wr.loc_accuracy.high), (0.0, 0.0));
        assert_eq!(wr.verdict, Verdict::WithinNoise);
        // Random: half of the draws localise on every pair: Δ = 0.5, but resampling two
        // draws per concept spreads it.
        let r = &c[2];
        assert_eq!((r.draws, r.loc_accuracy.difference), (2, 0.5));
        assert!(
            r.loc_accuracy.low < 0.5 && r.loc_accuracy.high > 0.5,
            "{r:?}"
        );
    }

    #[test]
    fn the_interval_matches_the_binomial_standard_error() {
        // 400 images, one pair each, Shapley localises 60%, the baseline never: the
        // bootstrap interval of Δ = 0.6 is about ± 1.96 · √(0.6 · 0.4 / 400) = ± 0.048.
        let pairs: Vec<PairOutcomes> = (0..400)
            .map(|i| pair(0, i, i % 5 < 3, false, false, &[false]))
            .collect();
        let c = compare(&pairs, &slots(&[10], 1), &[10], &settings(2000));
        let d = c[0].loc_accuracy;
        assert!((d.difference - 0.6).abs() < 1e-12);
        let half = (d.high - d.low) / 2.0;
        assert!((half - 0.048).abs() < 0.006, "half-width {half}");
        assert!(((d.low + d.high) / 2.0 - 0.6).abs() < 0.01);
        // Same seed, same answer; another seed, another resample.
        assert_eq!(c, compare(&pairs, &slots(&[10], 1), &[10], &settings(2000)));
        let other = BootstrapSettings {
            seed: 10,
            ..settings(2000)
        };
        assert_eq!(
            ImageResamples::draw(400, &settings(5)).counts,
            ImageResamples::draw(400, &settings(5)).counts
        );
        assert_ne!(
            ImageResamples::draw(400, &settings(5)).counts,
            ImageResamples::draw(
                400,
                &BootstrapSettings {
                    replicates: 5,
                    ..other
                }
            )
            .counts
        );
        // Each replicate takes as many images as there are.
        let r = ImageResamples::draw(400, &settings(5));
        assert!((0..5).all(|b| r.replicate(b).iter().sum::<u32>() == 400));
    }

    #[test]
    fn pairs_of_one_image_are_resampled_together() {
        // Each image evaluated under two concepts with the same outcomes: the same images
        // resampled, so exactly the interval of one pair per image.
        let one: Vec<PairOutcomes> = (0..50)
            .map(|i| pair(0, i, i % 2 == 0, i % 3 == 0, false, &[i % 7 == 0]))
            .collect();
        let two: Vec<PairOutcomes> = one
            .iter()
            .flat_map(|p| {
                let mut q = p.clone();
                q.concept = 1;
                [p.clone(), q]
            })
            .collect();
        let s = slots(&[10], 1);
        let a = compare(&one, &s, &[10], &settings(500));
        let b = compare(&two, &s, &[10], &settings(500));
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.loc_accuracy, b.loc_accuracy);
            assert_eq!((a.images, b.images, b.pairs), (50, 50, 100));
        }
    }

    #[test]
    fn identical_draws_give_the_interval_of_one_draw() {
        // Resampling draws that are all equal changes nothing: the random baseline's
        // interval equals that of a single draw (the image resample is the same stream).
        let three: Vec<PairOutcomes> = (0..60)
            .map(|i| {
                let r = i % 4 == 0;
                pair((i % 5) as u32, i, i % 2 == 0, false, false, &[r, r, r])
            })
            .collect();
        let one: Vec<PairOutcomes> = three
            .iter()
            .map(|p| {
                let mut q = p.clone();
                q.outcomes.truncate(4);
                q
            })
            .collect();
        let a = compare(&three, &slots(&[10], 3), &[10], &settings(300));
        let b = compare(&one, &slots(&[10], 1), &[10], &settings(300));
        assert_eq!(a[2].loc_accuracy, b[2].loc_accuracy);
        assert_eq!((a[2].draws, b[2].draws), (3, 1));
    }
}

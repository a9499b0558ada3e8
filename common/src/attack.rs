//! `attack.json`: the adversarial explanation `hint attack` writes — which concepts a job's
//! concept classifiers see in an image before and after a targeted attack moved the model's
//! prediction toward another class. One type for its writer (the worker's `attack` engine)
//! and its readers (the report's section, the tests).
//!
//! Each image is attacked toward each target class with projected gradient descent (PGD)
//! under an L∞ budget in pixel units; every asked concept's classifier is applied at every
//! position of the layer's clean and attacked feature maps. A concept is *present* in a map
//! when its classifier calls at least one position a region of it (peak probability ≥ 0.5);
//! its *area* is the fraction of positions so called. [`PairSummary`] sums these up per
//! (source, target) pair of classes, over every attacked image of the pair, so clean and
//! attacked are paired on the same images.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::explain::SkippedImage;

/// The file's name in its directory.
pub const ATTACK_FILE: &str = "attack.json";

/// `hint attack`'s default output directory, under the job's `results/`: where the report
/// looks for it.
pub const ATTACK_DIR: &str = "attack";

/// A concept is present in a map when its peak probability reaches this.
pub const PRESENT: f64 = 0.5;

/// The attack's settings: targeted PGD from the clean image (no random start), each step
/// `x ← clip(x − step_size · sign(∇ₓ CE(f(x), target)))` into the ε-ball and the valid pixel
/// range, every step run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pgd {
    /// The L∞ budget, in pixel units (values in [0, 1]; 8/255 ≈ 0.0314).
    pub epsilon: f64,
    /// Gradient steps.
    pub steps: u32,
    /// The step, in pixel units.
    pub step_size: f64,
}

/// A concept that was mapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappedConcept {
    /// Its id in the job's hierarchy.
    pub concept: u32,
    /// Its key.
    pub key: String,
    /// Its name.
    pub name: String,
}

/// One concept's map on one image, summed up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapStats {
    /// The position of the highest logit, `[y, x]`.
    pub peak: [usize; 2],
    /// σ of the highest logit.
    pub peak_probability: f64,
    /// Fraction of positions whose logit is > 0 (probability > 0.5).
    pub area: f64,
}

impl MapStats {
    /// The stats of a map of logits, row-major with `width` columns.
    pub fn of(logits: &[f32], width: usize) -> MapStats {
        let (at, peak) =
            logits
                .iter()
                .copied()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                });
        MapStats {
            peak: [at / width, at % width],
            peak_probability: 1.0 / (1.0 + (-f64::from(peak)).exp()),
            area: logits.iter().filter(|&&v| v > 0.0).count() as f64 / logits.len() as f64,
        }
    }

    /// The concept is present: its peak probability reaches [`PRESENT`].
    pub fn present(&self) -> bool {
        self.peak_probability >= PRESENT
    }
}

/// One concept on one image, before and after the attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapChange {
    /// The concept's id.
    pub concept: u32,
    /// On the clean image.
    pub clean: MapStats,
    /// On the attacked image.
    pub attacked: MapStats,
    /// The clean map's heatmap, relative to the output directory.
    pub clean_png: String,
    /// The attacked map's heatmap over the attacked crop.
    pub attacked_png: String,
}

/// One image attacked toward one target class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attack {
    /// The image file.
    pub image: PathBuf,
    /// The model's prediction on the clean image (the source class).
    pub source: String,
    /// Its probability on the clean image.
    pub source_probability: f64,
    /// The class the attack pushed toward.
    pub target: String,
    /// The model's prediction on the attacked image.
    pub predicted: String,
    /// The target's probability on the clean image.
    pub clean_target_probability: f64,
    /// The target's probability on the attacked image.
    pub target_probability: f64,
    /// The attacked image is classified as the target.
    pub success: bool,
    /// The perturbation's largest change of a pixel value, measured (≤ ε).
    pub linf: f64,
    /// One per mapped concept, in [`AttackReport::concepts`]' order.
    pub maps: Vec<MapChange>,
}

/// Where a concept stands in the hierarchy relative to a pair's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// At or above the source class only.
    Source,
    /// At or above the target class only.
    Target,
    /// At or above both (a shared ancestor).
    Both,
    /// Above neither.
    Neither,
}

impl Relation {
    /// From whether the concept is at or above each class.
    pub fn of(source: bool, target: bool) -> Relation {
        match (source, target) {
            (true, true) => Relation::Both,
            (true, false) => Relation::Source,
            (false, true) => Relation::Target,
            (false, false) => Relation::Neither,
        }
    }

    /// Its name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Relation::Source => "source",
            Relation::Target => "target",
            Relation::Both => "both",
            Relation::Neither => "",
        }
    }
}

/// One concept over a pair's attacked images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptShift {
    /// The concept's id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// Where it stands relative to the pair's classes.
    pub relation: Relation,
    /// Fraction of the pair's images where it is present, clean.
    pub present_clean: f64,
    /// The same, attacked.
    pub present_attacked: f64,
    /// Mean area, clean.
    pub area_clean: f64,
    /// Mean area, attacked.
    pub area_attacked: f64,
}

/// Every attack of one (source, target) pair of classes, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSummary {
    /// The clean prediction.
    pub source: String,
    /// The target.
    pub target: String,
    /// Images attacked.
    pub images: usize,
    /// Of them, classified as the target afterwards.
    pub succeeded: usize,
    /// Mean probability of the target before the attack.
    pub mean_clean_target_probability: f64,
    /// Mean probability of the target after the attack.
    pub mean_target_probability: f64,
    /// One per mapped concept.
    pub concepts: Vec<ConceptShift>,
}

impl PairSummary {
    /// The summaries of `attacks`, one per (source, target) pair in the order pairs first
    /// appear; `relation` says where a concept stands relative to a (source, target) pair.
    pub fn summarise(
        attacks: &[Attack],
        concepts: &[MappedConcept],
        relation: impl Fn(u32, &str, &str) -> Relation,
    ) -> Vec<PairSummary> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for a in attacks {
            if !pairs.contains(&(a.source.as_str(), a.target.as_str())) {
                pairs.push((&a.source, &a.target));
            }
        }
        pairs
            .into_iter()
            .map(|(source, target)| {
                let of_pair: Vec<&Attack> = attacks
                    .iter()
                    .filter(|a| a.source == source && a.target == target)
                    .collect();
                let n = of_pair.len() as f64;
                let mean =
                    |f: &dyn Fn(&Attack) -> f64| of_pair.iter().map(|a| f(a)).sum::<f64>() / n;
                let shifts = concepts
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        let share = |f: &dyn Fn(&MapChange) -> f64| mean(&|a| f(&a.maps[k]));
                        ConceptShift {
                            concept: c.concept,
                            name: c.name.clone(),
                            relation: relation(c.concept, source, target),
                            present_clean: share(&|m| f64::from(u8::from(m.clean.present()))),
                            present_attacked: share(&|m| f64::from(u8::from(m.attacked.present()))),
                            area_clean: share(&|m| m.clean.area),
                            area_attacked: share(&|m| m.attacked.area),
                        }
                    })
                    .collect();
                PairSummary {
                    source: source.to_string(),
                    target: target.to_string(),
                    images: of_pair.len(),
                    succeeded: of_pair.iter().filter(|a| a.success).count(),
                    mean_clean_target_probability: mean(&|a| a.clean_target_probability),
                    mean_target_probability: mean(&|a| a.target_probability),
                    concepts: shifts,
                }
            })
            .collect()
    }
}

/// What `hint attack` wrote: the whole of `attack.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    /// The job directory.
    pub job: PathBuf,
    /// The architecture and layer.
    pub model: String,
    /// See `model`.
    pub layer: String,
    /// The crop side the images were fed at.
    pub crop: u32,
    /// The attack.
    pub pgd: Pgd,
    /// The target classes asked for.
    pub targets: Vec<String>,
    /// The mapped concepts.
    pub concepts: Vec<MappedConcept>,
    /// Every image × target whose clean prediction is not already the target.
    pub attacks: Vec<Attack>,
    /// Per (source, target) pair ([`PairSummary::summarise`]).
    pub pairs: Vec<PairSummary>,
    /// Images that could not be read.
    pub skipped: Vec<SkippedImage>,
}

impl AttackReport {
    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }

    /// One attack per pair, in [`pairs`](Self::pairs)' order, to show as an example: the
    /// pair's first successful attack, or its first.
    pub fn examples(&self) -> Vec<&Attack> {
        self.pairs
            .iter()
            .filter_map(|p| {
                let mut of_pair = self
                    .attacks
                    .iter()
                    .filter(|a| a.source == p.source && a.target == p.target);
                let first = of_pair.clone().next();
                of_pair.find(|a| a.success).or(first)
            })
            .collect()
    }

    /// The examples' heatmaps: for each example, for each concept, its clean map then its
    /// attacked map.
    pub fn example_pngs(&self) -> Vec<&str> {
        self.examples()
            .into_iter()
            .flat_map(|a| &a.maps)
            .flat_map(|m| [m.clean_png.as_str(), m.attacked_png.as_str()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(peak_probability: f64, area: f64) -> MapStats {
        MapStats {
            peak: [0, 0],
            peak_probability,
            area,
        }
    }

    fn attack(
        source: &str,
        target: &str,
        success: bool,
        maps: [(MapStats, MapStats); 2],
    ) -> Attack {
        Attack {
            image: PathBuf::from("x.png"),
            source: source.into(),
            source_probability: 0.9,
            target: target.into(),
            predicted: if success { target } else { source }.into(),
            clean_target_probability: 0.1,
            target_probability: if success { 0.8 } else { 0.2 },
            success,
            linf: 0.01,
            maps: maps
                .into_iter()
                .enumerate()
                .map(|(k, (clean, attacked))| MapChange {
                    concept: k as u32,
                    clean,
                    attacked,
                    clean_png: String::new(),
                    attacked_png: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn map_stats_find_the_peak_and_the_area_above_zero() {
        let s = MapStats::of(&[-1.0, 0.5, 2.0, -3.0, 0.0, 1.0], 3);
        assert_eq!(s.peak, [0, 2]);
        assert!((s.peak_probability - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-12);
        assert!((s.area - 3.0 / 6.0).abs() < 1e-12, "0 is not above zero");
        assert!(s.present());
        assert!(!MapStats::of(&[-0.1, -2.0], 2).present());
    }

    #[test]
    fn pairs_are_summed_over_their_own_attacks_only() {
        let concepts = [
            MappedConcept {
                concept: 0,
                key: "a".into(),
                name: "A".into(),
            },
            MappedConcept {
                concept: 1,
                key: "b".into(),
                name: "B".into(),
            },
        ];
        let attacks = [
            attack(
                "cat",
                "dog",
                true,
                [
                    (stats(0.9, 0.5), stats(0.1, 0.0)),
                    (stats(0.2, 0.0), stats(0.7, 0.25)),
                ],
            ),
            attack(
                "bus",
                "dog",
                false,
                [
                    (stats(0.9, 1.0), stats(0.9, 1.0)),
                    (stats(0.9, 1.0), stats(0.9, 1.0)),
                ],
            ),
            attack(
                "cat",
                "dog",
                false,
                [
                    (stats(0.9, 0.25), stats(0.8, 0.25)),
                    (stats(0.2, 0.0), stats(0.4, 0.0)),
                ],
            ),
        ];
        let pairs = PairSummary::summarise(&attacks, &concepts, |c, s, _| {
            Relation::of(c == 0 && s == "cat", c == 1)
        });
        assert_eq!(pairs.len(), 2);
        let cat = &pairs[0];
        assert_eq!((cat.source.as_str(), cat.target.as_str()), ("cat", "dog"));
        assert_eq!((cat.images, cat.succeeded), (2, 1));
        assert!((cat.mean_target_probability - 0.5).abs() < 1e-12);
        let [a, b] = [&cat.concepts[0], &cat.concepts[1]];
        assert_eq!(
            (a.relation, b.relation),
            (Relation::Source, Relation::Target)
        );
        assert_eq!((a.present_clean, a.present_attacked), (1.0, 0.5));
        assert_eq!((a.area_clean, a.area_attacked), (0.375, 0.125));
        assert_eq!((b.present_clean, b.present_attacked), (0.0, 0.5));
        assert_eq!((b.area_clean, b.area_attacked), (0.0, 0.125));
        assert_eq!(pairs[1].source, "bus");
        assert_eq!(pairs[1].concepts[0].relation, Relation::Neither);
    }
}

//! `results/wsol.json`: the evaluation's numbers, per concept and pooled, and the table the
//! CLI prints.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::compare::{self, BootstrapSettings, Comparison, Metric, PairOutcomes, Slot, Verdict};
use super::geometry;
use super::select::Selection;
use super::WsolError;
pub use hint_common::regions::quality::RegionLift;

/// Pooled numbers of one (selection, fraction): over every (concept, image) pair evaluated,
/// so an image counts once for each concept it is evaluated under. A selection with several
/// draws (random) reports the mean over draws of each draw's pooled value, and the spread
/// across draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// How the neurons were chosen.
    pub selection: Selection,
    /// Percent of the layer's neurons kept.
    pub fraction: u32,
    /// Neurons kept (`ceil(D · fraction / 100)`).
    pub neurons: usize,
    /// (concept, image) pairs evaluated.
    pub images: usize,
    /// Draws averaged (random: [`WsolConfig::random_draws`](super::WsolConfig); else 1).
    #[serde(default = "one")]
    pub draws: usize,
    /// Share with a predicted box of IoU ≥ 0.5 with a ground-truth box.
    pub loc_accuracy: f64,
    /// Share whose map maximum lies in a ground-truth box.
    pub pointing: f64,
    /// Mean IoU of the thresholded map with the mask, over the pairs with a mask; `None`
    /// without masks.
    pub mask_iou: Option<f64>,
    /// Sample standard deviation of `loc_accuracy` across draws (several draws only).
    #[serde(default)]
    pub loc_accuracy_sd: Option<f64>,
    /// …of `pointing`.
    #[serde(default)]
    pub pointing_sd: Option<f64>,
    /// …of `mask_iou`.
    #[serde(default)]
    pub mask_iou_sd: Option<f64>,
    /// MaxBoxAcc: box accuracy at the best threshold of the sweep (mean over draws; absent
    /// in older files).
    #[serde(default)]
    pub max_box_acc: Option<f64>,
    /// The threshold it was reached at (one-draw selections).
    #[serde(default)]
    pub max_box_threshold: Option<f32>,
}

fn one() -> usize {
    1
}

/// One concept's numbers for one (selection, fraction), over its evaluation images (random:
/// the mean over draws).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptRow {
    /// Concept id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// Its level.
    pub level: u32,
    /// How the neurons were chosen.
    pub selection: Selection,
    /// Percent of neurons kept.
    pub fraction: u32,
    /// Images evaluated.
    pub images: usize,
    /// Draws averaged.
    #[serde(default = "one")]
    pub draws: usize,
    /// Share localised (IoU ≥ 0.5).
    pub loc_accuracy: f64,
    /// Pointing-game hits.
    pub pointing: f64,
    /// Mean mask IoU over the images with a mask.
    pub mask_iou: Option<f64>,
    /// Standard deviation of `loc_accuracy` across draws (several draws only).
    #[serde(default)]
    pub loc_accuracy_sd: Option<f64>,
    /// Box accuracy at the selection's pooled MaxBoxAcc threshold (absent in older files).
    #[serde(default)]
    pub max_box_acc: Option<f64>,
}

/// One heatmap PNG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// Concept id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// The source image.
    pub image: String,
    /// The PNG, relative to `results/`.
    pub png: String,
    /// The classifier drawn: its selection…
    pub selection: Selection,
    /// …and fraction.
    pub fraction: u32,
}

/// Something left out of the evaluation, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// A concept name or an image path.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// `results/wsol.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsolReport {
    /// Percentages of neurons kept.
    pub fractions: Vec<u32>,
    /// The selections compared.
    pub selections: Vec<Selection>,
    /// Pooled rows, selection-major.
    pub summary: Vec<SummaryRow>,
    /// Shapley − each baseline per fraction, with intervals, baseline-major.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    /// Draws of the random selection per (concept, fraction).
    #[serde(default = "one")]
    pub random_draws: usize,
    /// The bootstrap behind the comparisons' intervals (see [`compare`]).
    #[serde(default)]
    pub bootstrap: Option<BootstrapSettings>,
    /// Per-concept rows.
    pub concepts: Vec<ConceptRow>,
    /// Heatmap PNGs written.
    pub heatmaps: Vec<Heatmap>,
    /// Threshold on the min-max normalised map.
    pub threshold: f32,
    /// The seed of the random selection and of the image choice.
    pub seed: u64,
    /// `D`.
    pub neurons: usize,
    /// Concepts and images left out.
    pub skipped: Vec<Skipped>,
    /// Where the evaluated images came from (the job's held-out split or a user's set;
    /// empty in older files).
    #[serde(default)]
    pub image_source: String,
    /// The object lift of the job's regions on the evaluated images (the job's own images
    /// with masks only).
    #[serde(default)]
    pub region_lift: Option<RegionLift>,
}

impl WsolReport {
    /// Writes the report as pretty JSON (through a temporary name).
    pub fn write(&self, path: &Path) -> Result<(), WsolError> {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| WsolError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| WsolError::io(path, e))
    }

    /// Reads a `wsol.json`.
    pub fn read(path: &Path) -> Result<Self, WsolError> {
        let text = std::fs::read_to_string(path).map_err(|e| WsolError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| WsolError::Input {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })
    }

    /// The pooled row of (selection, fraction).
    pub fn row(&self, selection: Selection, fraction: u32) -> Option<&SummaryRow> {
        self.summary
            .iter()
            .find(|r| r.selection == selection && r.fraction == fraction)
    }

    /// The pooled table (fraction-major), Shapley − each baseline with its interval, and
    /// per baseline the fractions where Shapley is better, within noise, worse.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<9} {:>8} {:>7} {:>6} {:>5} {:>15} {:>9} {:>15} {:>16}",
            "selection",
            "fraction",
            "neurons",
            "pairs",
            "draws",
            "loc_accuracy",
            "pointing",
            "mask_iou",
            "max_box_acc (τ)"
        );
        let with_sd = |v: f64, sd: Option<f64>| match sd {
            Some(sd) => format!("{v:.3} ± {sd:.3}"),
            None => format!("{v:.3}"),
        };
        for &f in &self.fractions {
            for r in self.summary.iter().filter(|r| r.fraction == f) {
                let mask = r
                    .mask_iou
                    .map_or_else(|| "-".to_string(), |m| with_sd(m, r.mask_iou_sd));
                let max_box = match (r.max_box_acc, r.max_box_threshold) {
                    (Some(v), Some(t)) => format!("{v:.3} ({t:.2})"),
                    (Some(v), None) => format!("{v:.3}"),
                    _ => "-".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{:<9} {:>7}% {:>7} {:>6} {:>5} {:>15} {:>9.3} {:>15} {:>16}",
                    r.selection.label(),
                    r.fraction,
                    r.neurons,
                    r.images,
                    r.draws,
                    with_sd(r.loc_accuracy, r.loc_accuracy_sd),
                    r.pointing,
                    mask,
                    max_box
                );
            }
        }
        if let (Some(first), Some(b)) = (self.comparisons.first(), &self.bootstrap) {
            let _ = writeln!(
                out,
                "Shapley − baseline, localisation accuracy: {:.0}% interval, bootstrap over the \
                 {} images ({} replicates; random: also over its {} draws); overlap = share of \
                 the baseline's neurons that Shapley also keeps",
                100.0 * b.confidence,
                first.images,
                b.replicates,
                self.random_draws
            );
            let _ = writeln!(
                out,
                "{:>8}  {:<8} {:>7} {:>8} {:>10}  {:<18}  {:<12}  {:<8} {:<24}",
                "fraction",
                "baseline",
                "Shapley",
                "baseline",
                "difference",
                "interval",
                "verdict",
                "overlap",
                "MaxBoxAcc difference"
            );
            for c in &self.comparisons {
                let d = &c.loc_accuracy;
                let max_box = c.max_box_acc.as_ref().map_or_else(
                    || "-".to_string(),
                    |m| format!("{:+.3} [{:+.3}, {:+.3}]", m.difference, m.low, m.high),
                );
                let _ = writeln!(
                    out,
                    "{:>7}%  {:<8} {:>7.3} {:>8.3} {:>+10.3}  {:<18}  {:<12}  {:<8} {}",
                    c.fraction,
                    c.baseline.label(),
                    d.shapley,
                    d.baseline,
                    d.difference,
                    format!("[{:+.3}, {:+.3}]", d.low, d.high),
                    c.verdict.words(),
                    c.overlap
                        .map_or_else(|| "-".to_string(), |o| format!("{:.0}%", 100.0 * o)),
                    max_box
                );
            }
            for baseline in Selection::BASELINES {
                let at = |v: Verdict| {
                    let f: Vec<String> = self
                        .comparisons
                        .iter()
                        .filter(|c| c.baseline == baseline && c.verdict == v)
                        .map(|c| format!("{}%", c.fraction))
                        .collect();
                    if f.is_empty() {
                        "—".to_string()
                    } else {
                        f.join(", ")
                    }
                };
                let _ = writeln!(
                    out,
                    "Shapley vs {}: better at {}; within noise at {}; worse at {}",
                    baseline.label(),
                    at(Verdict::Better),
                    at(Verdict::WithinNoise),
                    at(Verdict::Worse)
                );
            }
        }
        out
    }
}

/// Pairs, draws and the four metrics of `slots` (one selection at one fraction) over
/// `pairs`.
fn numbers(pairs: &[&PairOutcomes], slots: &[usize]) -> (usize, usize, [compare::Pooled; 4]) {
    (
        pairs.len(),
        slots.len(),
        Metric::ALL.map(|m| compare::pooled(pairs, slots, m)),
    )
}

/// The summary rows (selection-major, then fraction), pooled over every pair.
/// `box_thresholds`: each slot's MaxBoxAcc sweep step ([`compare::choose_box_thresholds`]).
pub(super) fn summary_rows(
    pairs: &[PairOutcomes],
    slots: &[Slot],
    fractions: &[u32],
    box_thresholds: &[usize],
    neurons: impl Fn(u32) -> usize,
) -> Vec<SummaryRow> {
    let all: Vec<&PairOutcomes> = pairs.iter().collect();
    let mut rows = Vec::new();
    for selection in Selection::ALL {
        for &fraction in fractions {
            let mine = compare::slots_of(slots, selection, fraction);
            let (images, draws, [loc, pointing, mask, max_box]) = numbers(&all, &mine);
            let max_box_threshold = match mine[..] {
                [slot] => box_thresholds
                    .get(slot)
                    .map(|&k| geometry::sweep_threshold(k)),
                _ => None,
            };
            rows.push(SummaryRow {
                selection,
                fraction,
                neurons: neurons(fraction),
                images,
                draws,
                loc_accuracy: loc.mean.unwrap_or(0.0),
                pointing: pointing.mean.unwrap_or(0.0),
                mask_iou: mask.mean,
                loc_accuracy_sd: loc.sd,
                pointing_sd: pointing.sd,
                mask_iou_sd: mask.sd,
                max_box_acc: max_box.mean,
                max_box_threshold,
            });
        }
    }
    rows
}

/// One concept's rows (selection-major, then fraction).
pub(super) fn concept_rows(
    (concept, name, level): (u32, &str, u32),
    pairs: &[&PairOutcomes],
    slots: &[Slot],
    fractions: &[u32],
) -> Vec<ConceptRow> {
    let mut rows = Vec::new();
    for selection in Selection::ALL {
        for &fraction in fractions {
            let (images, draws, [loc, pointing, mask, max_box]) =
                numbers(pairs, &compare::slots_of(slots, selection, fraction));
            rows.push(ConceptRow {
                concept,
                name: name.to_string(),
                level,
                selection,
                fraction,
                images,
                draws,
                loc_accuracy: loc.mean.unwrap_or(0.0),
                pointing: pointing.mean.unwrap_or(0.0),
                mask_iou: mask.mean,
                loc_accuracy_sd: loc.sd,
                max_box_acc: max_box.mean,
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsol::compare::Outcome;

    fn pair(concept: u32, image: u64, localised: &[bool], mask: Option<f64>) -> PairOutcomes {
        PairOutcomes {
            concept,
            image,
            outcomes: localised
                .iter()
                .map(|&l| Outcome {
                    localised: l,
                    pointed: true,
                    mask_iou: mask,
                    max_box: !l,
                    ..Outcome::default()
                })
                .collect(),
        }
    }

    #[test]
    fn pooling_is_over_pairs_not_a_mean_of_concepts() {
        // Slots at 10%: Shapley, |w|·σ, raw |w|, random × 2.
        let slots = compare::slots(&[10], 2);
        // Concept 0: Shapley 1 of 1 localised; concept 1: 1 of 3. Pooled 2/4 (a mean of
        // concepts would say 2/3). Random draws: 3/4 and 1/4 → 0.5 ± 0.354.
        let pairs = vec![
            pair(0, 1, &[true, false, true, true, false], Some(0.5)),
            pair(1, 1, &[true, false, false, true, false], None),
            pair(1, 2, &[false, false, false, true, true], None),
            pair(1, 3, &[false, false, false, false, false], None),
        ];
        let rows = summary_rows(&pairs, &slots, &[10], &[50, 50, 50, 50, 50], |_| 7);
        assert_eq!(rows.len(), 4);
        let shapley = &rows[0];
        assert_eq!(shapley.selection, Selection::Shapley);
        assert_eq!((shapley.images, shapley.neurons, shapley.draws), (4, 7, 1));
        assert_eq!(shapley.loc_accuracy, 0.5);
        assert_eq!(shapley.pointing, 1.0);
        assert_eq!(shapley.mask_iou, Some(0.5));
        assert_eq!(shapley.loc_accuracy_sd, None);
        // MaxBoxAcc pools each outcome's hit at its slot's threshold (here set by hand).
        assert_eq!(
            (shapley.max_box_acc, shapley.max_box_threshold),
            (Some(0.5), Some(0.5))
        );
        assert_eq!(
            (rows[3].max_box_acc, rows[3].max_box_threshold),
            (Some(0.5), None)
        );
        assert_eq!((rows[1].loc_accuracy, rows[2].loc_accuracy), (0.0, 0.25));
        let random = &rows[3];
        assert_eq!((random.draws, random.loc_accuracy), (2, 0.5));
        assert!((random.loc_accuracy_sd.unwrap() - 0.5f64.sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(random.mask_iou_sd, Some(0.0));

        let mine: Vec<&PairOutcomes> = pairs.iter().filter(|p| p.concept == 1).collect();
        let per_concept = concept_rows((1, "dog", 2), &mine, &slots, &[10]);
        assert_eq!(per_concept.len(), 4);
        assert_eq!(
            (per_concept[0].images, per_concept[0].loc_accuracy),
            (3, 1.0 / 3.0)
        );
        assert_eq!(per_concept[0].mask_iou, None);

        let bootstrap = BootstrapSettings {
            replicates: 100,
            confidence: 0.95,
            seed: 0,
        };
        let report = WsolReport {
            fractions: vec![10],
            selections: Selection::ALL.to_vec(),
            summary: rows,
            comparisons: compare::compare(&pairs, &slots, &[10], &bootstrap),
            random_draws: 2,
            bootstrap: Some(bootstrap),
            concepts: per_concept,
            heatmaps: Vec::new(),
            threshold: 0.5,
            seed: 0,
            neurons: 64,
            skipped: Vec::new(),
            image_source: "the job's held-out images".into(),
            region_lift: None,
        };
        let table = report.table();
        assert!(
            table.contains("random         10%       7      4     2   0.500 ± 0.354"),
            "{table}"
        );
        assert!(
            table.contains("     10%  |w|·σ      0.500    0.000     +0.500  ["),
            "{table}"
        );
        assert!(table.contains("Shapley vs raw |w|: better at"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["selections"],
            serde_json::json!(["shapley", "weight_standardised", "weight_raw", "random"])
        );
        // Mask IoU over the pairs with a mask only (concept 0's).
        assert_eq!(json["summary"][1]["mask_iou"], 0.5);
        assert_eq!(
            json["summary"][0]["loc_accuracy_sd"],
            serde_json::Value::Null
        );
        assert_eq!(json["comparisons"][0]["baseline"], "weight_standardised");
        assert_eq!(json["comparisons"][0]["loc_accuracy"]["difference"], 0.5);
        // It reads back, and a file of the first version (one draw, "weight") still reads.
        let back: WsolReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        let old = r#"{"fractions":[10],"selections":["shapley","weight","random"],
            "summary":[{"selection":"weight","fraction":10,"neurons":7,"images":4,
                        "loc_accuracy":0.5,"pointing":1.0,"mask_iou":null}],
            "concepts":[],"heatmaps":[],"threshold":0.5,"seed":0,"neurons":64,"skipped":[]}"#;
        let old: WsolReport = serde_json::from_str(old).unwrap();
        assert_eq!(old.summary[0].selection, Selection::WeightStandardised);
        assert_eq!((old.summary[0].draws, old.random_draws), (1, 1));
    }
}

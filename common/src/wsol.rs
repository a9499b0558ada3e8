//! `results/wsol.json`: weakly supervised localisation with concept classifiers re-fitted on
//! selected neurons — one type, shared by the writer (`hint evaluate`, the worker's engine)
//! and its readers (the report, `hint run`'s tables, the coordinator's `job.json`).
//!
//! For every evaluated concept and every fraction `k%` of the layer's `D` neurons, the
//! concept classifier is re-fitted on the top `k%` neurons chosen four ways ([`Selection`]),
//! and its logit map is scored against the ground truth on the concept's evaluation images:
//! localisation accuracy (box IoU ≥ 0.5), pointing game, mask IoU and MaxBoxAcc. Rows are
//! pooled over every (concept, image) pair ([`SummaryRow`]) and per concept
//! ([`ConceptRow`]); Shapley − each baseline carries a paired bootstrap interval over images
//! ([`Comparison`]).
//!
//! Fields added after the first version read as their defaults from older files (`#[serde
//! (default)]`; `weight` reads as [`Selection::WeightStandardised`]).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::regions::quality::RegionLift;
use crate::stats::{Difference, Verdict};

/// The report's file name in `<job>/results/`.
pub const WSOL_FILE: &str = "wsol.json";

/// How a concept's neurons are ranked.
///
/// "|classifier weight|" reads two ways, both kept: the classifier is fitted on standardised
/// features (its own weight there is `w_d · σ_d`) and saved mapped back to raw activations
/// (`w_d`); raw `|w_d|` favours channels of small variance.
///
/// The order of the variants is part of the results: a baseline's position names its
/// bootstrap stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// By Φ, largest first.
    Shapley,
    /// By the full classifier's weight on standardised features, `|w_d| · σ_d`, largest
    /// first (`weight` in files written before the raw weight was added).
    #[serde(alias = "weight")]
    WeightStandardised,
    /// By the saved classifier's weight on raw activations, `|w_d|`, largest first.
    WeightRaw,
    /// Uniformly at random: several draws (the evaluation's `random_draws`), each seeded by
    /// (seed, concept, fraction, draw).
    Random,
}

impl Selection {
    /// The four, in report order.
    pub const ALL: [Selection; 4] = [
        Selection::Shapley,
        Selection::WeightStandardised,
        Selection::WeightRaw,
        Selection::Random,
    ];

    /// The baselines Shapley is compared with.
    pub const BASELINES: [Selection; 3] = [
        Selection::WeightStandardised,
        Selection::WeightRaw,
        Selection::Random,
    ];

    /// The name in `wsol.json`.
    pub fn name(self) -> &'static str {
        match self {
            Selection::Shapley => "shapley",
            Selection::WeightStandardised => "weight_standardised",
            Selection::WeightRaw => "weight_raw",
            Selection::Random => "random",
        }
    }

    /// The name in the printed tables.
    pub fn label(self) -> &'static str {
        match self {
            Selection::Shapley => "Shapley",
            Selection::WeightStandardised => "|w|·σ",
            Selection::WeightRaw => "raw |w|",
            Selection::Random => "random",
        }
    }
}

/// Settings of the bootstrap behind the comparisons' intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSettings {
    /// Replicates.
    pub replicates: usize,
    /// Coverage of the interval (0.95).
    pub confidence: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

/// Shapley against one baseline at one fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline.
    pub baseline: Selection,
    /// Percent of neurons kept.
    pub fraction: u32,
    /// (concept, image) pairs compared.
    pub pairs: usize,
    /// Distinct images among them (the bootstrap's unit).
    pub images: usize,
    /// The baseline's draws (random: several).
    pub draws: usize,
    /// Localisation accuracy.
    pub loc_accuracy: Difference,
    /// Pointing game.
    pub pointing: Difference,
    /// Mask IoU (pairs with a mask), `None` without masks.
    pub mask_iou: Option<Difference>,
    /// MaxBoxAcc, each selection at its own best threshold (absent in older files).
    #[serde(default)]
    pub max_box_acc: Option<Difference>,
    /// What the localisation accuracy's interval says.
    pub verdict: Verdict,
    /// Share of the baseline's neurons that Shapley also keeps, mean over concepts (and
    /// draws); set by the caller, who knows the neuron sets.
    #[serde(default)]
    pub overlap: Option<f64>,
}

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
    /// Draws averaged (random: [`WsolReport::random_draws`]; else 1).
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
    /// The bootstrap behind the comparisons' intervals.
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
    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }

    /// Parses the file's text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Writes the report ([`to_json`](Self::to_json)) through [`crate::storage`],
    /// atomically, so `path` may be a URL.
    pub fn write(&self, path: &Path) -> Result<(), crate::storage::StorageError> {
        crate::storage::write(path, self.to_json().as_bytes())
    }

    /// Reads a report; the error names the file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = crate::storage::read_to_string(path).map_err(|e| e.to_string())?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_first_version_still_reads() {
        // One draw, no comparisons, the standardised weight still called "weight".
        let old = r#"{"fractions":[10],"selections":["shapley","weight","random"],
            "summary":[{"selection":"weight","fraction":10,"neurons":7,"images":4,
                        "loc_accuracy":0.5,"pointing":1.0,"mask_iou":null}],
            "concepts":[],"heatmaps":[],"threshold":0.5,"seed":0,"neurons":64,"skipped":[]}"#;
        let old = WsolReport::from_json(old).unwrap();
        assert_eq!(old.summary[0].selection, Selection::WeightStandardised);
        assert_eq!((old.summary[0].draws, old.random_draws), (1, 1));
        assert_eq!(
            (old.summary[0].max_box_acc, &old.bootstrap, &old.region_lift),
            (None, &None, &None)
        );
        assert!(old.comparisons.is_empty() && old.image_source.is_empty());
        // Without comparisons the table has the pooled rows only.
        let table = old.table();
        assert!(
            table.contains("|w|·σ          10%       7      4     1"),
            "{table}"
        );
        assert!(!table.contains("Shapley vs"), "{table}");
    }

    #[test]
    fn the_file_is_pretty_json_with_a_final_newline_and_reads_back() {
        let difference = Difference {
            shapley: 0.75,
            baseline: 0.25,
            difference: 0.5,
            low: 0.25,
            high: 0.75,
        };
        let report = WsolReport {
            fractions: vec![20],
            selections: Selection::ALL.to_vec(),
            summary: vec![SummaryRow {
                selection: Selection::Random,
                fraction: 20,
                neurons: 13,
                images: 8,
                draws: 2,
                loc_accuracy: 0.25,
                pointing: 0.5,
                mask_iou: None,
                loc_accuracy_sd: Some(0.125),
                pointing_sd: Some(0.0),
                mask_iou_sd: None,
                max_box_acc: Some(0.375),
                max_box_threshold: None,
            }],
            comparisons: vec![Comparison {
                baseline: Selection::Random,
                fraction: 20,
                pairs: 8,
                images: 6,
                draws: 2,
                loc_accuracy: difference,
                pointing: difference,
                mask_iou: None,
                max_box_acc: Some(difference),
                verdict: Verdict::of(&difference),
                overlap: Some(0.25),
            }],
            random_draws: 2,
            bootstrap: Some(BootstrapSettings {
                replicates: 100,
                confidence: 0.95,
                seed: 4,
            }),
            concepts: vec![ConceptRow {
                concept: 3,
                name: "bird".into(),
                level: 2,
                selection: Selection::Shapley,
                fraction: 20,
                images: 4,
                draws: 1,
                loc_accuracy: 1.0,
                pointing: 1.0,
                mask_iou: Some(0.5),
                loc_accuracy_sd: None,
                max_box_acc: Some(1.0),
            }],
            heatmaps: vec![Heatmap {
                concept: 3,
                name: "bird".into(),
                image: "/data/bird_0.jpg".into(),
                png: "heatmaps/bird-0.png".into(),
                selection: Selection::Shapley,
                fraction: 20,
            }],
            threshold: 0.5,
            seed: 4,
            neurons: 64,
            skipped: vec![Skipped {
                what: "/data/broken.jpg".into(),
                reason: "not an image".into(),
            }],
            image_source: "the job's held-out images".into(),
            region_lift: None,
        };
        let text = report.to_json();
        assert!(
            text.starts_with("{\n  \"fractions\": [\n    20\n  ],\n"),
            "{text}"
        );
        assert!(text.ends_with("\n}\n"), "{text}");
        assert!(text.contains("\"verdict\": \"better\""), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WSOL_FILE);
        report.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(WsolReport::read(&path).unwrap(), report);
        let table = report.table();
        assert!(
            table.contains("     20%  random     0.750    0.250     +0.500  [+0.250, +0.750]"),
            "{table}"
        );
        assert!(
            table.contains("Shapley vs random: better at 20%"),
            "{table}"
        );
        // A file missing a field every version wrote is an error that names the file.
        std::fs::write(&path, r#"{"fractions":[10]}"#).unwrap();
        let error = WsolReport::read(&path).unwrap_err();
        assert!(error.contains("wsol.json: missing field"), "{error}");
    }
}

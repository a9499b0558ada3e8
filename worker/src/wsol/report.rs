//! `results/wsol.json`: the evaluation's numbers, per concept and pooled, and the table the
//! CLI prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::select::Selection;
use super::WsolError;

/// Pooled numbers of one (selection, fraction): over every (concept, image) pair evaluated,
/// so an image counts once for each concept it is evaluated under.
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
    /// Share with a predicted box of IoU ≥ 0.5 with a ground-truth box.
    pub loc_accuracy: f64,
    /// Share whose map maximum lies in a ground-truth box.
    pub pointing: f64,
    /// Mean IoU of the thresholded map with the mask, over the pairs with a mask; `None`
    /// without masks.
    pub mask_iou: Option<f64>,
}

/// One concept's numbers for one (selection, fraction), over its evaluation images.
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
    /// Share localised (IoU ≥ 0.5).
    pub loc_accuracy: f64,
    /// Pointing-game hits.
    pub pointing: f64,
    /// Mean mask IoU over the images with a mask.
    pub mask_iou: Option<f64>,
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

    /// The pooled table, then one line per fraction saying whether Shapley-selected neurons
    /// localise at least as well as the others (localisation accuracy).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<9} {:>8} {:>7} {:>7} {:>12} {:>9} {:>9}",
            "selection", "fraction", "neurons", "pairs", "loc_accuracy", "pointing", "mask_iou"
        );
        for r in &self.summary {
            let mask = r
                .mask_iou
                .map_or_else(|| "-".to_string(), |m| format!("{m:.3}"));
            let _ = writeln!(
                out,
                "{:<9} {:>7}% {:>7} {:>7} {:>12.3} {:>9.3} {:>9}",
                r.selection.name(),
                r.fraction,
                r.neurons,
                r.images,
                r.loc_accuracy,
                r.pointing,
                mask
            );
        }
        for &f in &self.fractions {
            let acc = |s| self.row(s, f).map(|r| r.loc_accuracy);
            if let (Some(sh), Some(w), Some(r)) = (
                acc(Selection::Shapley),
                acc(Selection::Weight),
                acc(Selection::Random),
            ) {
                let verdict = |other: f64| if sh >= other { "≥" } else { "<" };
                let _ = writeln!(
                    out,
                    "{f:>3}%: shapley {sh:.3} {} weight {w:.3}, {} random {r:.3}",
                    verdict(w),
                    verdict(r)
                );
            }
        }
        out
    }
}

/// Running totals of one (concept, selection, fraction).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Tally {
    pub images: usize,
    pub localised: usize,
    pub pointed: usize,
    pub masks: usize,
    pub mask_iou: f64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.images += other.images;
        self.localised += other.localised;
        self.pointed += other.pointed;
        self.masks += other.masks;
        self.mask_iou += other.mask_iou;
    }

    fn share(count: usize, of: usize) -> f64 {
        if of == 0 {
            0.0
        } else {
            count as f64 / of as f64
        }
    }

    pub fn loc_accuracy(&self) -> f64 {
        Self::share(self.localised, self.images)
    }

    pub fn pointing(&self) -> f64 {
        Self::share(self.pointed, self.images)
    }

    pub fn mask_iou(&self) -> Option<f64> {
        (self.masks > 0).then(|| self.mask_iou / self.masks as f64)
    }
}

/// Pools per-concept tallies into the summary rows (selection-major, then fraction).
pub(super) fn pool(
    tallies: &BTreeMap<(u32, Selection, u32), Tally>,
    fractions: &[u32],
    neurons: impl Fn(u32) -> usize,
) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for selection in Selection::ALL {
        for &fraction in fractions {
            let mut total = Tally::default();
            for (_, t) in tallies
                .iter()
                .filter(|((_, s, f), _)| *s == selection && *f == fraction)
            {
                total.add(t);
            }
            rows.push(SummaryRow {
                selection,
                fraction,
                neurons: neurons(fraction),
                images: total.images,
                loc_accuracy: total.loc_accuracy(),
                pointing: total.pointing(),
                mask_iou: total.mask_iou(),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_is_over_pairs_not_a_mean_of_concepts() {
        let mut tallies = BTreeMap::new();
        // Concept 0: 1 of 1 localised; concept 1: 1 of 3. Pooled 2/4 (a mean of concepts
        // would say 2/3).
        let one = |images, localised, pointed, masks, iou| Tally {
            images,
            localised,
            pointed,
            masks,
            mask_iou: iou,
        };
        tallies.insert((0, Selection::Shapley, 10), one(1, 1, 1, 1, 0.5));
        tallies.insert((1, Selection::Shapley, 10), one(3, 1, 0, 0, 0.0));
        tallies.insert((1, Selection::Random, 10), one(2, 0, 1, 0, 0.0));
        let rows = pool(&tallies, &[10], |_| 7);
        assert_eq!(rows.len(), 3);
        let shapley = &rows[0];
        assert_eq!((shapley.images, shapley.neurons), (4, 7));
        assert_eq!(shapley.loc_accuracy, 0.5);
        assert_eq!(shapley.pointing, 0.25);
        assert_eq!(shapley.mask_iou, Some(0.5));
        // No pairs: zeros, no mask IoU.
        assert_eq!((rows[1].images, rows[1].loc_accuracy), (0, 0.0));
        assert_eq!(rows[2].mask_iou, None);
        let report = WsolReport {
            fractions: vec![10],
            selections: Selection::ALL.to_vec(),
            summary: rows,
            concepts: Vec::new(),
            heatmaps: Vec::new(),
            threshold: 0.5,
            seed: 0,
            neurons: 64,
            skipped: Vec::new(),
        };
        let table = report.table();
        assert!(
            table.contains("10%: shapley 0.500 ≥ weight 0.000, ≥ random 0.000"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["selections"][0], "shapley");
        assert_eq!(json["summary"][1]["mask_iou"], serde_json::Value::Null);
    }
}

//! `results/wsol.json`'s rows from the pairs' outcomes: pooled over every pair
//! ([`summary_rows`]) and per concept ([`concept_rows`]). The file's types, its writer and
//! its table live in [`hint_common::wsol`], shared with the report that reads it.

use super::compare::{self, Metric, PairOutcomes, Slot};
use super::geometry;
use super::select::Selection;
pub use hint_common::regions::quality::RegionLift;
pub use hint_common::wsol::{ConceptRow, Heatmap, Skipped, SummaryRow, WsolReport};

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
    use crate::wsol::compare::{BootstrapSettings, Outcome};

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
        // It reads back (older files: `hint_common::wsol`'s tests).
        let back: WsolReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}

use hint_common::ablation::{
    AblationComparison, AblationSkipped, Bootstrap, ConceptAblation, ConceptCell, Drops,
};
use hint_common::stats::Difference;

use super::*;

const FRACTIONS: [u32; 6] = [1, 2, 5, 10, 20, 40];
const SELECTIONS: [AblationSelection; 3] = [
    AblationSelection::Shapley,
    AblationSelection::WeightStandardised,
    AblationSelection::Random,
];

/// The verdict of Shapley − `baseline` at (removal, fraction index) in the fixture: against
/// |w|·σ at the zero removal better at the three smallest fractions and within noise at the
/// others; at the mean removal better, noise, noise, worse, worse and not compared at 40%.
fn verdict(baseline: AblationSelection, removal: Removal, k: usize) -> Option<Verdict> {
    use Verdict::*;
    match (baseline, removal) {
        (AblationSelection::Random, _) => Some(Better),
        (_, Removal::Zero) => Some(
            [
                Better,
                Better,
                Better,
                WithinNoise,
                WithinNoise,
                WithinNoise,
            ][k],
        ),
        (_, Removal::Mean) => [
            Some(Better),
            Some(WithinNoise),
            Some(WithinNoise),
            Some(Worse),
            Some(Worse),
            None,
        ][k],
    }
}

fn fixture() -> AblationReport {
    let mut curves = Vec::new();
    let mut comparisons = Vec::new();
    for removal in Removal::ALL {
        for (k, &fraction) in FRACTIONS.iter().enumerate() {
            for (i, &selection) in SELECTIONS.iter().enumerate() {
                let on = 0.05 * (k + 1) as f64 / (i + 1) as f64;
                let random = selection == AblationSelection::Random;
                curves.push(CurvePoint {
                    selection,
                    removal,
                    fraction,
                    neurons: (64 * fraction as usize).div_ceil(100),
                    draws: if random { 5 } else { 1 },
                    drops: Drops::new(on, on, 0.01 * k as f64, 0.0),
                    specificity_sd: random.then_some(0.02),
                });
                let Some(verdict) = verdict(selection, removal, k).filter(|_| i > 0) else {
                    continue;
                };
                let (low, high) = match verdict {
                    Verdict::Better => (0.01, 0.2),
                    Verdict::WithinNoise => (-0.05, 0.05),
                    Verdict::Worse => (-0.2, -0.01),
                };
                let d = Difference {
                    shapley: 0.3,
                    baseline: 0.2,
                    difference: 0.1,
                    low,
                    high,
                };
                comparisons.push(AblationComparison {
                    baseline: selection,
                    removal,
                    fraction,
                    specificity: d,
                    probability_specificity: d,
                    verdict,
                });
            }
        }
    }
    let cells = SELECTIONS
        .iter()
        .flat_map(|&selection| {
            FRACTIONS.map(|fraction| ConceptCell {
                selection,
                removal: Removal::Zero,
                fraction,
                draw: 0,
                drops: Drops::new(0.5, 0.5, 0.125, 0.0),
            })
        })
        .collect();
    AblationReport {
        model: "tiny_cnn".into(),
        layer: "features.7".into(),
        neurons: 64,
        images: 120,
        image_source: "the job's held-out split".into(),
        accuracy: 0.875,
        fractions: FRACTIONS.into(),
        removals: Removal::ALL.into(),
        selections: SELECTIONS.into(),
        random_draws: 5,
        bootstrap: Bootstrap {
            replicates: 1000,
            confidence: 0.95,
            seed: 3,
        },
        curves,
        comparisons,
        concepts: vec![ConceptAblation {
            concept: 4,
            name: "<bird>".into(),
            level: 2,
            on_images: 30,
            off_images: 90,
            on_accuracy: 0.9,
            off_accuracy: 0.8,
            sets: Vec::new(),
            cells,
        }],
        skipped: vec![AblationSkipped {
            what: "fish".into(),
            reason: "no images".into(),
        }],
    }
}

#[test]
fn the_summary_counts_each_verdict() {
    let r = fixture();
    let b = AblationSelection::WeightStandardised;
    let zero = verdict_counts(&r, b, Removal::Zero);
    assert_eq!(
        (zero.better, zero.within_noise, zero.worse, zero.compared()),
        (3, 3, 0, 6)
    );
    let mean = verdict_counts(&r, b, Removal::Mean);
    assert_eq!(
        (mean.better, mean.within_noise, mean.worse, mean.compared()),
        (1, 2, 2, 5)
    );
    assert_eq!(
        summary(&r, b, Removal::Zero),
        "Shapley's neurons are more specific than |w|·σ's at 3 of 6 fractions (zero removal), \
         within noise at 3, worse at 0."
    );
    assert!(summary(&r, b, Removal::Mean).contains("at 1 of 5 fractions (mean removal)"));
    assert_eq!(headline_baseline(&r), Some(b));
    let none = verdict_counts(&r, AblationSelection::WeightRaw, Removal::Zero);
    assert_eq!(none.compared(), 0);
    assert!(summary(&r, AblationSelection::WeightRaw, Removal::Zero).contains("not compared"));
}

#[test]
fn the_section_has_a_chart_per_measure_and_removal_tables_and_verdicts() {
    let html = section(Some(&fixture()));
    // Three charts (specificity, on-target, off-target) per removal, a legend per removal.
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 6);
    assert_eq!(html.matches("class=\"chart-legend\"").count(), 2);
    // Every chart has one Shapley line with one point per fraction.
    let lines: Vec<&str> = html.split("data-series=\"Shapley\"").skip(1).collect();
    assert_eq!(lines.len(), 6);
    for line in lines {
        let start = line.find("points=\"").unwrap() + 8;
        let points = &line[start..start + line[start..].find('"').unwrap()];
        assert_eq!(points.split(' ').count(), FRACTIONS.len(), "{points}");
    }
    // Random's specificity band, in both removals' specificity charts only.
    assert_eq!(html.matches("<polygon class=\"band\"").count(), 2);
    for needle in [
        "<h2>Causal ablation</h2>",
        "Specificity (zero removal)",
        "Off-target accuracy drop (mean removal)",
        "<strong>Shapley</strong>",
        "|w|·σ",
        "random (± sd band)",
        "at 3 of 6 fractions (zero removal), within noise at 3, worse at 0.",
        "<td class=\"verdict better\">better</td>",
        "<td class=\"verdict noise\">within noise</td>",
        "<td class=\"verdict worse\">worse</td>",
        "[+0.010, +0.200]",
        ">1% (1)</td>",
        ">40% (26)</td>",
        "95% paired bootstrap",
        "&lt;bird&gt;",
        ">40% |w|·σ</th>",
        ">+0.375</td>",
        "fish: no images",
        "unablated top-1 accuracy 87.5%",
    ] {
        assert!(html.contains(needle), "no {needle:?} in the section");
    }
    assert!(!html.contains("<bird>") && !html.contains("NaN"));
}

#[test]
fn no_ablation_file_says_how_to_add_one() {
    let html = section(None);
    assert!(html.contains("id=\"ablation\""));
    assert!(html.contains("run <code>hint ablate</code> to add them"));
}

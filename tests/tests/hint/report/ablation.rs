//! The report of a job with `results/ablation.json`: an ablation section with its charts,
//! every selection, the verdicts, and a page that still runs and draws in headless Chromium.

use hint_common::ablation::{
    AblationComparison, AblationReport, AblationSelection, AblationSkipped, Bootstrap,
    ConceptAblation, ConceptCell, CurvePoint, Drops, NeuronSet, Removal, ABLATION_FILE,
};
use hint_common::stats::{Difference, Verdict};

use super::{
    assert_self_contained, body_tag, copy_job, dump_dom, report, run_chromium, with_script,
    INTERACT,
};

const FRACTIONS: [u32; 6] = [1, 2, 5, 10, 20, 40];

/// An ablation of the fixture job's concepts in the shape `hint ablate` writes (this test is
/// about the report, not about ablation): Shapley's on-target drop grows fastest with the
/// fraction, the baselines' less, random's least; the verdicts cover all three words.
fn ablation(concepts: &serde_json::Value, neurons: usize) -> AblationReport {
    let strength = |s: AblationSelection| match s {
        AblationSelection::Shapley => 1.0,
        AblationSelection::ShapleyPositive => 0.9,
        AblationSelection::WeightStandardised => 0.8,
        AblationSelection::WeightRaw => 0.5,
        AblationSelection::MeanActivation => 0.6,
        AblationSelection::Random => 0.1,
    };
    let drops = |s: AblationSelection, k: usize, removal: Removal| {
        let scale = if removal == Removal::Zero { 1.0 } else { 0.7 };
        let on = (scale * strength(s) * 0.12 * (k + 1) as f64).min(0.95);
        let off = 0.015 * (k + 1) as f64 * (1.2 - strength(s));
        Drops::new(on, 0.8 * on, off, 0.8 * off)
    };
    let (mut curves, mut comparisons) = (Vec::new(), Vec::new());
    for removal in Removal::ALL {
        for (k, &fraction) in FRACTIONS.iter().enumerate() {
            let count = (neurons * fraction as usize).div_ceil(100);
            for s in AblationSelection::ALL {
                let random = s == AblationSelection::Random;
                curves.push(CurvePoint {
                    selection: s,
                    removal,
                    fraction,
                    neurons: count,
                    draws: if random { 5 } else { 1 },
                    drops: drops(s, k, removal),
                    specificity_sd: random.then_some(0.01 + 0.004 * k as f64),
                });
                if s == AblationSelection::Shapley {
                    continue;
                }
                let (a, b) = (
                    drops(AblationSelection::Shapley, k, removal),
                    drops(s, k, removal),
                );
                let difference = a.specificity - b.specificity;
                // Narrow at small fractions for weak baselines, wide for strong ones.
                let half = 0.02 + 0.6 * strength(s) * strength(s) * difference.abs();
                let mut d = Difference {
                    shapley: a.specificity,
                    baseline: b.specificity,
                    difference,
                    low: difference - half,
                    high: difference + half,
                };
                // Raw |w| at the largest fraction of the mean removal: Shapley worse.
                if s == AblationSelection::WeightRaw && removal == Removal::Mean && fraction == 40 {
                    (d.difference, d.low, d.high) = (-0.04, -0.07, -0.01);
                }
                comparisons.push(AblationComparison {
                    baseline: s,
                    removal,
                    fraction,
                    specificity: d,
                    probability_specificity: d,
                    verdict: Verdict::of(&d),
                });
            }
        }
    }
    let concepts: Vec<ConceptAblation> = concepts["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut cells = Vec::new();
            for removal in Removal::ALL {
                for s in AblationSelection::ALL {
                    for (k, &fraction) in FRACTIONS.iter().enumerate() {
                        let draw = 0;
                        cells.push(ConceptCell {
                            selection: s,
                            removal,
                            fraction,
                            draw,
                            drops: drops(s, k, removal),
                        });
                    }
                }
            }
            ConceptAblation {
                concept: c["id"].as_u64().unwrap() as u32,
                name: c["name"].as_str().unwrap().to_string(),
                level: c["level"].as_u64().unwrap() as u32,
                on_images: 12,
                off_images: 36,
                on_accuracy: 0.75,
                off_accuracy: 0.625,
                sets: vec![NeuronSet {
                    selection: AblationSelection::Shapley,
                    fraction: 1,
                    draw: 0,
                    neurons: vec![3],
                }],
                cells,
            }
        })
        .collect();
    AblationReport {
        model: "tiny_cnn".into(),
        layer: "features.7".into(),
        neurons,
        images: 48,
        image_source: "the job's held-out split".into(),
        accuracy: 0.6875,
        fractions: FRACTIONS.into(),
        removals: Removal::ALL.into(),
        selections: AblationSelection::ALL.into(),
        random_draws: 5,
        bootstrap: Bootstrap {
            replicates: 500,
            confidence: 0.95,
            seed: 5,
        },
        curves,
        comparisons,
        concepts,
        skipped: vec![AblationSkipped {
            what: "a concept".into(),
            reason: "no on-target image".into(),
        }],
    }
}

/// Hides every part of the page but the ablation section (so a screenshot shows its charts)
/// and sorts its tables by every column.
const ABLATION_ONLY: &str = r##"
Array.prototype.forEach.call(document.querySelectorAll("header, nav, main > section:not(#ablation)"), function (e) { e.hidden = true; });
Array.prototype.forEach.call(document.querySelectorAll("#ablation table"), function (t) {
  Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th) { th.click(); });
});
document.body.dataset.ablationOnly = "yes";
"##;

#[test]
fn ablation_results_are_drawn_and_compared() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job-0001");
    std::fs::create_dir(&job).unwrap();
    copy_job(super::job(), &job);
    let results = job.join("results");
    let concepts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("concepts.json")).unwrap())
            .unwrap();
    let ablation = ablation(&concepts, 64);
    ablation.write(&results.join(ABLATION_FILE)).unwrap();

    let page = report(&job);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(!html.contains("run <code>hint ablate</code>"));
    let section = &html[html
        .find("<section id=\"ablation\">")
        .expect("the ablation section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("<h2>Causal ablation</h2>"));
    assert!(html.contains("<a href=\"#ablation\">Ablation</a>"));
    for s in AblationSelection::ALL {
        let label = s.label().replace('>', "&gt;");
        assert!(section.contains(&label), "no selection {label:?}");
    }
    for verdict in [Verdict::Better, Verdict::WithinNoise, Verdict::Worse] {
        let cell = format!(">{}</td>", verdict.words());
        assert!(section.contains(&cell), "no verdict {cell:?}");
    }
    for needle in [
        "zero removal",
        "mean removal",
        "Shapley&#39;s neurons are more specific than |w|·σ&#39;s at",
    ] {
        assert!(section.contains(needle), "no {needle:?}");
    }
    assert_eq!(section.matches("<svg class=\"chart\"").count(), 6);
    assert!(!section.contains("NaN"));

    // It runs, and is used, with no script error.
    let dom = dump_dom(&with_script(&page, "interact.html", INTERACT));
    let body = body_tag(&dom);
    assert!(body.contains("data-interacted=\"yes\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}");

    // The section alone draws: much ink, many colours, Shapley's red lines.
    let only = with_script(&page, "ablation.html", ABLATION_ONLY);
    let body = body_tag(&dump_dom(&only)).to_string();
    assert!(body.contains("data-ablation-only=\"yes\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}");
    let shot = page.with_file_name("ablation.png");
    let args = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,900".to_string(),
    ];
    run_chromium(&only, &[&args[0], &args[1]]);
    let image = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    let pixels: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    let colours: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let ink = pixels.iter().filter(|p| **p != [255, 255, 255]).count() as f64 / pixels.len() as f64;
    let red = pixels
        .iter()
        .filter(|[r, g, b]| *r > 150 && *g < 110 && *b < 110)
        .count();
    assert!(colours.len() > 100, "{} colours", colours.len());
    assert!(ink > 0.05, "{ink} of the pixels are not white");
    assert!(red > 300, "{red} red pixels: no Shapley line drawn");
    eprintln!(
        "ablation screenshot: {} colours, {:.0}% ink, {red} red pixels",
        colours.len(),
        100.0 * ink
    );
}

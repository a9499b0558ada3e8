//! The causal-ablation section: `hint ablate`'s `results/ablation.json` (read once, with
//! [`AblationReport::read`]) as curves per removal, Shapley − each baseline with its
//! interval and verdict, and a per-concept table. The definitions (on-target, off-target,
//! drop, specificity) are those of [`hint_common::ablation`].

use std::fmt::Write as _;

use hint_common::ablation::{AblationReport, AblationSelection, CurvePoint, Removal};
use hint_common::stats::Verdict;

use super::chart::{legend, y_range, LineChart, Series};
use super::html::num_cell;
use super::text::{escape, percent, warning_list};

/// A selection's colour in every chart: Shapley's stands out, random is grey.
fn colour(s: AblationSelection) -> &'static str {
    match s {
        AblationSelection::Shapley => "#b2182b",
        AblationSelection::ShapleyPositive => "#e08214",
        AblationSelection::WeightStandardised => "#2166ac",
        AblationSelection::WeightRaw => "#35978f",
        AblationSelection::MeanActivation => "#8073ac",
        AblationSelection::Random => "#7b8591",
    }
}

/// One series per selection of `measure` over the report's fractions at `removal`; the
/// random selection's specificity carries its ± sd band when `band` is set.
fn series(
    report: &AblationReport,
    removal: Removal,
    measure: fn(&CurvePoint) -> f64,
    band: bool,
) -> Vec<Series> {
    report
        .selections
        .iter()
        .map(|&s| {
            let points: Vec<Option<&CurvePoint>> = report
                .fractions
                .iter()
                .map(|&f| report.point(s, removal, f))
                .collect();
            let spread = points
                .iter()
                .map(|p| p.and_then(|p| p.specificity_sd.map(|sd| (measure(p), sd))))
                .map(|p| p.map_or((f64::NAN, f64::NAN), |(v, sd)| (v - sd, v + sd)))
                .collect::<Vec<_>>();
            Series {
                label: s.label().to_string(),
                colour: colour(s),
                values: points.iter().map(|p| p.map_or(f64::NAN, measure)).collect(),
                band: (band && spread.iter().any(|b| b.0.is_finite())).then_some(spread),
                emphasis: s == AblationSelection::Shapley,
            }
        })
        .collect()
}

/// The charts of one removal: accuracy specificity, then the on- and off-target accuracy
/// drops on one y scale (so the two panels compare by eye).
fn charts(report: &AblationReport, removal: Removal) -> String {
    let x: Vec<String> = report.fractions.iter().map(|f| format!("{f}%")).collect();
    let chart = |title: &str, y_label: &str, series: Vec<Series>, y_range| LineChart {
        title: format!("{title} ({} removal)", removal.name()),
        x_label: "neurons removed (% of the layer)".into(),
        y_label: y_label.into(),
        x: x.clone(),
        series,
        y_range,
    };
    let specificity = series(report, removal, |p| p.drops.specificity, true);
    let on = series(report, removal, |p| p.drops.on_accuracy, false);
    let off = series(report, removal, |p| p.drops.off_accuracy, false);
    let shared = Some(y_range(on.iter().chain(&off)));
    let key = legend(&specificity);
    format!(
        "<h3>{} removal</h3>\n{key}<div class=\"charts\">{}{}{}</div>\n",
        capitalised(removal.name()),
        chart("Specificity", "on − off accuracy drop", specificity, None).svg(),
        chart("On-target accuracy drop", "accuracy drop", on, shared).svg(),
        chart("Off-target accuracy drop", "accuracy drop", off, shared).svg()
    )
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// How often Shapley − one baseline was better, within noise or worse at one removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerdictCounts {
    /// Fractions where the interval lies above 0.
    pub better: usize,
    /// Where it holds 0.
    pub within_noise: usize,
    /// Where it lies below 0.
    pub worse: usize,
}

impl VerdictCounts {
    /// Fractions compared.
    pub fn compared(&self) -> usize {
        self.better + self.within_noise + self.worse
    }
}

/// The verdicts of Shapley − `baseline` over the report's fractions at `removal`.
pub fn verdict_counts(
    report: &AblationReport,
    baseline: AblationSelection,
    removal: Removal,
) -> VerdictCounts {
    let mut counts = VerdictCounts::default();
    for &f in &report.fractions {
        match report.comparison(baseline, removal, f).map(|c| c.verdict) {
            Some(Verdict::Better) => counts.better += 1,
            Some(Verdict::WithinNoise) => counts.within_noise += 1,
            Some(Verdict::Worse) => counts.worse += 1,
            None => {}
        }
    }
    counts
}

/// The baseline the summary speaks of: |w|·σ (the classifier's own view of importance, the
/// strongest simple baseline), else the first one measured.
fn headline_baseline(report: &AblationReport) -> Option<AblationSelection> {
    let baselines = || {
        report
            .selections
            .iter()
            .copied()
            .filter(|&s| s != AblationSelection::Shapley)
    };
    baselines()
        .find(|&s| s == AblationSelection::WeightStandardised)
        .or_else(|| baselines().next())
}

/// One plain sentence: at how many fractions Shapley's neurons were more specific than
/// `baseline`'s at `removal`, within noise, or less.
pub fn summary(report: &AblationReport, baseline: AblationSelection, removal: Removal) -> String {
    let c = verdict_counts(report, baseline, removal);
    if c.compared() == 0 {
        return format!(
            "Shapley was not compared with {} ({} removal).",
            baseline.label(),
            removal.name()
        );
    }
    format!(
        "Shapley's neurons are more specific than {}'s at {} of {} fractions ({} removal), \
         within noise at {}, worse at {}.",
        baseline.label(),
        c.better,
        c.compared(),
        removal.name(),
        c.within_noise,
        c.worse
    )
}

fn signed(v: f64) -> String {
    if v.is_finite() {
        format!("{v:+.3}")
    } else {
        "—".into()
    }
}

/// Shapley − every baseline at every (removal, fraction), in report order.
fn comparison_table(report: &AblationReport) -> String {
    let mut rows = String::new();
    for &removal in &report.removals {
        for &baseline in &report.selections {
            for &fraction in &report.fractions {
                let Some(c) = report.comparison(baseline, removal, fraction) else {
                    continue;
                };
                let neurons = report
                    .point(AblationSelection::Shapley, removal, fraction)
                    .map_or(String::new(), |p| format!(" ({})", p.neurons));
                let (d, p) = (&c.specificity, &c.probability_specificity);
                let verdict = match c.verdict {
                    Verdict::Better => "better",
                    Verdict::WithinNoise => "noise",
                    Verdict::Worse => "worse",
                };
                let _ = write!(
                    rows,
                    "<tr><td>{}</td><td>{}</td>{}{}{}{}<td>[{}, {}]</td>\
                     <td class=\"verdict {verdict}\">{}</td>{}<td>[{}, {}]</td></tr>",
                    removal.name(),
                    escape(baseline.label()),
                    num_cell(f64::from(fraction), &format!("{fraction}%{neurons}")),
                    num_cell(d.shapley, &signed(d.shapley)),
                    num_cell(d.baseline, &signed(d.baseline)),
                    num_cell(d.difference, &signed(d.difference)),
                    signed(d.low),
                    signed(d.high),
                    c.verdict.words(),
                    num_cell(p.difference, &signed(p.difference)),
                    signed(p.low),
                    signed(p.high),
                );
            }
        }
    }
    if rows.is_empty() {
        return "<p class=\"note\">ablation.json holds no comparison of Shapley with a \
                baseline.</p>\n"
            .into();
    }
    format!(
        "<table class=\"sortable\"><thead><tr><th>removal</th><th>baseline</th>\
         <th class=\"num\">removed</th><th class=\"num\">Shapley</th>\
         <th class=\"num\">baseline</th><th class=\"num\">difference</th><th>interval</th>\
         <th>verdict</th><th class=\"num\">probability spec. difference</th>\
         <th>interval</th></tr></thead><tbody>{rows}</tbody></table>\n"
    )
}

/// Per concept: its images, unablated accuracies, and Shapley's and |w|·σ's (or the
/// headline baseline's) accuracy specificity at every fraction, at the zero removal (the
/// first measured when zero was not).
fn concept_table(report: &AblationReport, baseline: Option<AblationSelection>) -> String {
    let Some(&removal) = report
        .removals
        .iter()
        .find(|&&r| r == Removal::Zero)
        .or(report.removals.first())
    else {
        return String::new();
    };
    let shown: Vec<AblationSelection> = std::iter::once(AblationSelection::Shapley)
        .chain(baseline)
        .collect();
    let mut head = String::new();
    for f in &report.fractions {
        for s in &shown {
            let _ = write!(head, "<th class=\"num\">{f}% {}</th>", escape(s.label()));
        }
    }
    let mut rows = String::new();
    for c in &report.concepts {
        let _ = write!(
            rows,
            "<tr><td><a href=\"#concept-{}\">{}</a></td>{}{}{}{}{}",
            c.concept,
            escape(&c.name),
            num_cell(f64::from(c.level), &c.level.to_string()),
            num_cell(c.on_images as f64, &c.on_images.to_string()),
            num_cell(c.off_images as f64, &c.off_images.to_string()),
            num_cell(c.on_accuracy, &percent(Some(c.on_accuracy))),
            num_cell(c.off_accuracy, &percent(Some(c.off_accuracy))),
        );
        for &f in &report.fractions {
            for &s in &shown {
                let v = c
                    .cells
                    .iter()
                    .find(|k| k.selection == s && k.removal == removal && k.fraction == f)
                    .map_or(f64::NAN, |k| k.drops.specificity);
                rows += &num_cell(v, &signed(v));
            }
        }
        rows += "</tr>";
    }
    format!(
        "<details><summary>Per concept ({} concepts; accuracy specificity, {} removal)\
         </summary><table class=\"sortable\"><thead><tr><th>concept</th>\
         <th class=\"num\">level</th><th class=\"num\">on images</th>\
         <th class=\"num\">off images</th><th class=\"num\">on accuracy</th>\
         <th class=\"num\">off accuracy</th>{head}</tr></thead><tbody>{rows}</tbody></table>\
         </details>\n",
        report.concepts.len(),
        removal.name()
    )
}

/// The ablation section: the results of `hint ablate`, or a note that there are none.
pub fn section(report: Option<&AblationReport>) -> String {
    let Some(r) = report else {
        return "<section id=\"ablation\"><h2>Causal ablation</h2><p class=\"note\">No ablation \
                results in this job: run <code>hint ablate</code> to add them.</p></section>\n"
            .to_string();
    };
    let baseline = headline_baseline(r);
    let mut out = format!(
        "<section id=\"ablation\"><h2>Causal ablation</h2>\n<p class=\"note\">Each concept's \
         top neurons by each selection are removed from layer <code>{}</code> of the {} ({} \
         neurons) — set to zero or to their mean — and the network re-run on {} images ({}; \
         unablated top-1 accuracy {}). A <em>drop</em> is unablated − ablated accuracy: \
         on-target over the concept's images (a prediction under the concept counts), \
         off-target over the others. <em>Specificity</em> = on-target drop − off-target drop; \
         values are means over {} concepts; random is the mean of {} draws, with a band of ± \
         one sd across draws.</p>\n",
        escape(&r.layer),
        escape(&r.model),
        r.neurons,
        r.images,
        escape(&r.image_source),
        percent(Some(r.accuracy)),
        r.concepts.len(),
        r.random_draws
    );
    for &removal in &r.removals {
        out += &charts(r, removal);
    }
    let _ = write!(
        out,
        "<h3>Shapley − baseline</h3>\n<p class=\"summary\">{}</p>\n<p class=\"note\">Accuracy \
         specificity of Shapley's neurons minus a baseline's, with a {:.0}% paired bootstrap \
         interval over images ({} replicates; random also over its draws). Better / worse: the \
         interval lies above / below 0; within noise: it holds 0.</p>\n{}",
        baseline.map_or_else(String::new, |b| r
            .removals
            .iter()
            .map(|&removal| escape(&summary(r, b, removal)))
            .collect::<Vec<_>>()
            .join(" ")),
        100.0 * r.bootstrap.confidence,
        r.bootstrap.replicates,
        comparison_table(r)
    );
    out += &concept_table(r, baseline);
    out += &warning_list(
        &format!(
            "{} concept(s) or image(s) left out of the ablation",
            r.skipped.len()
        ),
        r.skipped.iter().map(|s| (&s.what, &s.reason)),
    );
    out + "</section>\n"
}

#[cfg(test)]
mod tests;

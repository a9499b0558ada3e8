//! The localisation (WSOL) section: `hint evaluate`'s pooled and per-concept results and the
//! concept-classifier heatmaps, embedded as PNG data URIs.

use std::fmt::Write as _;

use hint_common::stats::{Difference, Verdict};
use hint_common::wsol::{Comparison, ConceptRow, Selection, SummaryRow, WsolReport};

use super::data::Wsol;
use super::html::num_cell;
use super::text::{base64, escape, percent, warning_list};

/// A row of the localisation tables: pooled over every pair (no concept) or of one concept.
struct Row<'a> {
    /// The concept's name and level (per-concept rows).
    concept: Option<(&'a str, u32)>,
    selection: Selection,
    fraction: u32,
    /// Neurons kept (pooled rows).
    neurons: Option<usize>,
    images: usize,
    draws: usize,
    loc_accuracy: f64,
    loc_accuracy_sd: Option<f64>,
    pointing: f64,
    mask_iou: Option<f64>,
    mask_iou_sd: Option<f64>,
    max_box_acc: Option<f64>,
    max_box_threshold: Option<f32>,
}

impl<'a> From<&'a SummaryRow> for Row<'a> {
    fn from(r: &'a SummaryRow) -> Self {
        Row {
            concept: None,
            selection: r.selection,
            fraction: r.fraction,
            neurons: Some(r.neurons),
            images: r.images,
            draws: r.draws,
            loc_accuracy: r.loc_accuracy,
            loc_accuracy_sd: r.loc_accuracy_sd,
            pointing: r.pointing,
            mask_iou: r.mask_iou,
            mask_iou_sd: r.mask_iou_sd,
            max_box_acc: r.max_box_acc,
            max_box_threshold: r.max_box_threshold,
        }
    }
}

impl<'a> From<&'a ConceptRow> for Row<'a> {
    fn from(r: &'a ConceptRow) -> Self {
        Row {
            concept: Some((&r.name, r.level)),
            selection: r.selection,
            fraction: r.fraction,
            neurons: None,
            images: r.images,
            draws: r.draws,
            loc_accuracy: r.loc_accuracy,
            loc_accuracy_sd: r.loc_accuracy_sd,
            pointing: r.pointing,
            mask_iou: r.mask_iou,
            mask_iou_sd: None,
            max_box_acc: r.max_box_acc,
            max_box_threshold: None,
        }
    }
}

fn wsol_rows<'a>(rows: impl IntoIterator<Item = Row<'a>>) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str("<tr>");
        if let Some((name, level)) = r.concept {
            let _ = write!(
                out,
                "<td>{}</td>{}",
                escape(name),
                num_cell(f64::from(level), &level.to_string())
            );
        }
        let _ = write!(
            out,
            "<td>{}</td>{}{}",
            escape(&selection_label(r.selection, r.draws)),
            num_cell(
                f64::from(r.fraction),
                &match r.neurons {
                    Some(n) => format!("{}% ({n})", r.fraction),
                    None => format!("{}%", r.fraction),
                }
            ),
            num_cell(r.images as f64, &r.images.to_string())
        );
        for (v, sd) in [
            (Some(r.loc_accuracy), r.loc_accuracy_sd),
            (Some(r.pointing), None),
            (r.mask_iou, r.mask_iou_sd),
        ] {
            let text = match sd {
                Some(sd) if v.is_some() => format!("{} ± {:.1}", percent(v), 100.0 * sd),
                _ => percent(v),
            };
            out += &num_cell(v.unwrap_or(f64::NAN), &text);
        }
        let text = match (r.max_box_acc, r.max_box_threshold) {
            (Some(v), Some(t)) => format!("{} (τ {t:.2})", percent(Some(v))),
            (v, _) => percent(v),
        };
        out += &num_cell(r.max_box_acc.unwrap_or(f64::NAN), &text);
        out.push_str("</tr>");
    }
    out
}

/// A selection's name for people; random ones say how many draws they average.
fn selection_label(selection: Selection, draws: usize) -> String {
    let name = match selection {
        Selection::Shapley => "Shapley",
        Selection::WeightStandardised => "|w|·σ (standardised weight)",
        Selection::WeightRaw => "raw |w|",
        Selection::Random => "random",
    };
    if draws > 1 {
        format!("{name} (mean ± sd of {draws} draws)")
    } else {
        name.to_string()
    }
}

/// Shapley − each baseline with its interval and verdict; empty for files without them.
fn comparisons(f: &WsolReport) -> String {
    if f.comparisons.is_empty() {
        return String::new();
    }
    let (confidence, replicates) = f
        .bootstrap
        .as_ref()
        .map_or((0.95, 0), |b| (b.confidence, b.replicates));
    let images = f.comparisons[0].images;
    let mut rows = String::new();
    for c in &f.comparisons {
        rows += &comparison_row(c);
    }
    format!(
        "<h3>Shapley − baseline</h3>\n<p class=\"note\">Localisation accuracy and mask IoU of \
         Shapley-selected neurons minus a baseline's, on the same (concept, image) pairs, with \
         a {:.0}% interval from a bootstrap over the {images} images ({replicates} replicates; \
         for random selections also over their draws). Better / worse: the interval of the \
         localisation accuracy's difference lies above / below 0; within noise: it holds \
         0.</p>\n<table class=\"sortable\"><thead><tr><th class=\"num\">neurons kept</th>\
         <th>baseline</th><th class=\"num\">Shapley</th><th class=\"num\">baseline</th>\
         <th class=\"num\">difference</th><th>interval</th><th>verdict</th>\
         <th class=\"num\">mask IoU difference</th><th>interval</th>\
         <th class=\"num\" title=\"share of the baseline's neurons that Shapley also keeps\">\
         overlap</th><th class=\"num\">MaxBoxAcc difference</th><th>interval</th>\
         </tr></thead><tbody>\
         {rows}</tbody></table>\n",
        100.0 * confidence
    )
}

fn comparison_row(c: &Comparison) -> String {
    let points = |v: f64| format!("{:+.1}", 100.0 * v);
    let interval = |d: &Difference| format!("[{}, {}]", points(d.low), points(d.high));
    let d = &c.loc_accuracy;
    let mut out = format!(
        "<tr>{}<td>{}</td>{}{}{}<td>{}</td>",
        num_cell(f64::from(c.fraction), &format!("{}%", c.fraction)),
        escape(&selection_label(c.baseline, c.draws)),
        num_cell(d.shapley, &percent(Some(d.shapley))),
        num_cell(d.baseline, &percent(Some(d.baseline))),
        num_cell(d.difference, &format!("{} pts", points(d.difference))),
        escape(&interval(d))
    );
    let class = if c.verdict == Verdict::Worse {
        " class=\"warn\""
    } else {
        ""
    };
    let _ = write!(out, "<td{class}>{}</td>", escape(c.verdict.words()));
    // A difference and its interval, or two empty cells.
    let difference = |d: Option<&Difference>| match d {
        Some(d) => format!(
            "{}<td>{}</td>",
            num_cell(d.difference, &format!("{} pts", points(d.difference))),
            escape(&interval(d))
        ),
        None => "<td></td><td></td>".to_string(),
    };
    out += &difference(c.mask_iou.as_ref());
    out += &num_cell(c.overlap.unwrap_or(f64::NAN), &percent(c.overlap));
    out += &difference(c.max_box_acc.as_ref());
    out + "</tr>"
}

const WSOL_HEAD: &str = "<th>selection</th><th class=\"num\">neurons kept</th>\
    <th class=\"num\">images</th><th class=\"num\">loc. accuracy</th>\
    <th class=\"num\">pointing</th><th class=\"num\">mask IoU</th>\
    <th class=\"num\" title=\"box accuracy at the best threshold of a 0.01-step sweep \
    (Choe et al. 2020)\">MaxBoxAcc</th></tr></thead><tbody>";

/// The localisation section: the results of `hint evaluate`, or a note that there are none.
pub fn section(wsol: Option<&Wsol>) -> String {
    let Some(wsol) = wsol else {
        return "<section id=\"wsol\"><h2>Localisation (WSOL)</h2><p class=\"note\">No \
                localisation results in this job: run <code>hint evaluate</code> to add \
                localisation results.</p></section>\n"
            .to_string();
    };
    let f = &wsol.file;
    let mut out = format!(
        "<section id=\"wsol\"><h2>Localisation (WSOL)</h2>\n<p class=\"note\">Weakly supervised \
         localisation with each concept classifier restricted to a fraction of the neurons, \
         chosen by Shapley value, by classifier weight (|w|·σ: on the standardised features \
         the classifier was fitted on; raw |w|: on raw activations) or at random: \
         localisation accuracy (box IoU ≥ 0.5), pointing game, mask IoU{}, and MaxBoxAcc (Choe \
         et al. 2020): the box accuracy at the best threshold of a 0.01-step sweep, chosen per \
         selection on these images (its interval holds that threshold fixed).{}{}</p>\n<table \
         class=\"sortable\"><thead><tr>{WSOL_HEAD}{}</tbody></table>\n{}",
        format_args!("; maps thresholded at {} of their range", f.threshold),
        Some(f.image_source.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| format!(" Images: {}.", escape(s)))
            .unwrap_or_default(),
        f.region_lift
            .as_ref()
            .map(|l| {
                format!(
                    " The extraction's responsible regions on these images are {:.1}% object \
                     pixels against {:.1}% of the crops: object lift {:.2} ({} images with a \
                     mask).",
                    100.0 * l.object_share_in_regions,
                    100.0 * l.object_share,
                    l.lift,
                    l.images
                )
            })
            .unwrap_or_default(),
        wsol_rows(f.summary.iter().map(Row::from)),
        comparisons(f)
    );
    if !f.concepts.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Per concept ({} rows)</summary><table class=\"sortable\"><thead>\
             <tr><th>concept</th><th class=\"num\">level</th>{WSOL_HEAD}{}</tbody></table>\
             </details>",
            f.concepts.len(),
            wsol_rows(f.concepts.iter().map(Row::from))
        );
    }
    out += "<h3>Concept-classifier heatmaps</h3>\n";
    if wsol.images.is_empty() {
        out += "<p class=\"note\">wsol.json names no heatmap images that could be embedded.</p>";
    }
    // Grouped by concept, in the order of wsol.json.
    let mut groups: Vec<(u32, &str, Vec<String>)> = Vec::new();
    for (i, png) in &wsol.images {
        let h = &f.heatmaps[*i];
        let figure = format!(
            "<figure><img alt=\"heatmap of {name} over {image}\" src=\"data:image/png;base64,{}\">\
             <figcaption>{image}{drawn}</figcaption></figure>",
            base64(png),
            name = escape(&h.name),
            drawn = format_args!(
                "<br>{}, {}% of neurons",
                escape(h.selection.name()),
                h.fraction
            ),
            image = escape(
                std::path::Path::new(&h.image)
                    .file_name()
                    .map_or(h.image.as_str(), |n| n.to_str().unwrap_or(&h.image))
            ),
        );
        match groups.iter_mut().find(|g| g.0 == h.concept) {
            Some(group) => group.2.push(figure),
            None => groups.push((h.concept, &h.name, vec![figure])),
        }
    }
    out += "<div class=\"galleries\">";
    for (id, name, figures) in groups {
        let _ = writeln!(
            out,
            "<div class=\"concept-gallery\"><h3><a href=\"#concept-{id}\">{}</a></h3>\
             <div class=\"gallery\">{}</div></div>",
            escape(name),
            figures.concat()
        );
    }
    out += "</div>\n";
    out += &warning_list(
        &format!("{} heatmap image(s) not embedded", wsol.left_out.len()),
        wsol.left_out
            .iter()
            .map(|(i, why)| (&f.heatmaps[*i].png, why)),
    );
    out += &warning_list(
        &format!(
            "{} concept(s) or image(s) left out of the evaluation",
            f.skipped.len()
        ),
        f.skipped.iter().map(|s| (&s.what, &s.reason)),
    );
    out + "</section>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_and_random_spreads_are_shown() {
        let file = WsolReport::from_json(
            r#"{"fractions":[10],"selections":["shapley","weight_raw","random"],
                "random_draws":5,"bootstrap":{"replicates":2000,"confidence":0.95,"seed":0},
                "summary":[{"selection":"random","fraction":10,"neurons":7,"images":600,
                            "draws":5,"loc_accuracy":0.662,"pointing":0.99,"mask_iou":0.5,
                            "loc_accuracy_sd":0.021,"pointing_sd":0.0,"mask_iou_sd":0.01,
                            "max_box_acc":0.705},
                           {"selection":"shapley","fraction":10,"neurons":7,"images":600,
                            "loc_accuracy":0.812,"pointing":1.0,"mask_iou":0.6,
                            "max_box_acc":0.9,"max_box_threshold":0.31}],
                "comparisons":[
                  {"baseline":"weight_raw","fraction":10,"pairs":600,"images":580,"draws":1,
                   "loc_accuracy":{"shapley":0.812,"baseline":0.255,"difference":0.557,
                                   "low":0.51,"high":0.6},
                   "pointing":{"shapley":1,"baseline":1,"difference":0,"low":0,"high":0},
                   "mask_iou":null,"verdict":"better","overlap":0.25,
                   "max_box_acc":{"shapley":0.9,"baseline":0.4,"difference":0.5,
                                  "low":0.45,"high":0.55}},
                  {"baseline":"weight_standardised","fraction":10,"pairs":600,"images":580,
                   "draws":1,"loc_accuracy":{"shapley":0.812,"baseline":0.848,
                   "difference":-0.036,"low":-0.061,"high":-0.011},
                   "pointing":{"shapley":1,"baseline":1,"difference":0,"low":0,"high":0},
                   "mask_iou":{"shapley":0.6,"baseline":0.61,"difference":-0.01,
                               "low":-0.02,"high":0.0},"verdict":"worse"}],
                "concepts":[],"heatmaps":[],"threshold":0.5,"seed":0,"neurons":64,
                "skipped":[]}"#,
        )
        .unwrap();
        let html = section(Some(&Wsol {
            file,
            images: Vec::new(),
            left_out: Vec::new(),
        }));
        for needle in [
            "random (mean ± sd of 5 draws)",
            "66.2% ± 2.1",
            "50.0% ± 1.0",
            "bootstrap over the 580 images (2000 replicates",
            "<td>raw |w|</td>",
            "+55.7 pts",
            "[+51.0, +60.0]",
            "<td>better</td>",
            "|w|·σ (standardised weight)",
            "-3.6 pts",
            "[-6.1, -1.1]",
            "<td class=\"warn\">worse</td>",
            "[-2.0, +0.0]",
            ">25.0%</td>",
            ">70.5%</td>",
            "90.0% (τ 0.31)",
            "+50.0 pts",
            "[+45.0, +55.0]",
        ] {
            assert!(html.contains(needle), "no {needle:?} in {html}");
        }
        // A file without comparisons (the first version) has no such table.
        let old = section(Some(&Wsol {
            file: WsolReport::from_json(
                r#"{"fractions":[10],"selections":["shapley","weight","random"],
                    "summary":[{"selection":"weight","fraction":10,"neurons":7,"images":4,
                                "loc_accuracy":0.5,"pointing":1.0,"mask_iou":null}],
                    "concepts":[],"heatmaps":[],"threshold":0.5,"seed":0,"neurons":64,
                    "skipped":[]}"#,
            )
            .unwrap(),
            images: Vec::new(),
            left_out: Vec::new(),
        }));
        assert!(!old.contains("Shapley − baseline"));
        assert!(
            old.contains("<td>|w|·σ (standardised weight)</td>"),
            "{old}"
        );
    }
}

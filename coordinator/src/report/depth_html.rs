//! Rendering a [`DepthView`] as one self-contained page (`depth.html`): the layers, mean
//! F1 per hierarchy level across depth (an SVG line chart), every concept's F1 per layer
//! (a sortable table), Φ's concentration per layer, and each concept's top neurons per
//! layer. The report's style and table script; every name goes through [`escape`].

use std::fmt::Write as _;

use super::assets::{CSS, ERROR_HANDLER, SCRIPT};
use super::chart::{legend, LineChart, Series};
use super::depth::{DepthView, TOP_NEURONS};
use super::html::num_cell;
use super::text::{escape, warning_list};

/// Line colours, one per hierarchy level (the mean over all levels is drawn in black).
const LEVEL_COLOURS: [&str; 6] = [
    "#2f5d8a", "#b2182b", "#1b7837", "#8c510a", "#762a83", "#01665e",
];

/// The whole page.
pub fn render(view: &DepthView) -> String {
    let file = &view.file;
    let title = format!(
        "HINT depth view: {} at {} layers",
        file.architecture,
        file.layers.len()
    );
    let mut page = String::with_capacity(1 << 18);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <div id=\"script-errors\" hidden><strong>Script errors on this page:</strong><ul></ul></div>\n\
         <script>{ERROR_HANDLER}</script>\n<header><h1>{t}</h1>{}</header>\n\
         <nav><a href=\"#layers\">Layers</a><a href=\"#f1\">F1 across layers</a>\
         <a href=\"#concentration\">Φ concentration</a><a href=\"#top\">Top neurons</a></nav>\n<main>\n",
        meta(view),
        t = escape(&title)
    );
    page += &warning_list(
        &format!(
            "{} caveat(s) about this comparison",
            view.file.warnings.len()
        ),
        file.warnings.iter().map(|w| ("caveat", w.as_str())),
    );
    page += &layers(view);
    page += &f1(view);
    page += &concentration(view);
    page += &top_neurons(view);
    let _ = write!(
        page,
        "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    page
}

fn meta(view: &DepthView) -> String {
    let spec = &view.layers[0].data.spec;
    let mut dl = String::from("<dl class=\"meta\">");
    for (key, value) in [
        ("Model", view.file.architecture.clone()),
        ("Weights", spec.model.weights.display().to_string()),
        ("Images", spec.data.images.display().to_string()),
        ("Saliency method", spec.extract.method.name().to_string()),
        (
            "Layers",
            view.layers
                .iter()
                .map(|l| l.layer.as_str())
                .collect::<Vec<_>>()
                .join(" → "),
        ),
        (
            "Concepts compared",
            format!(
                "{} with a classifier at every layer (of {})",
                view.file.shared_concepts,
                view.file.concepts.len()
            ),
        ),
    ] {
        let _ = write!(
            dl,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(key),
            escape(&value)
        );
    }
    dl + "</dl>"
}

fn percent_cell(v: Option<f64>) -> String {
    match v {
        Some(v) => num_cell(v, &format!("{:.1}%", 100.0 * v)),
        None => num_cell(f64::NAN, "—"),
    }
}

fn f1_cell(v: Option<f64>) -> String {
    match v {
        Some(v) => {
            let hue = (v.clamp(0.0, 1.0) * 120.0).round();
            let cell = num_cell(v, &format!("{v:.3}"));
            cell.replacen(
                "<td ",
                &format!("<td style=\"background:hsl({hue},60%,88%)\" "),
                1,
            )
        }
        None => num_cell(f64::NAN, "—"),
    }
}

fn layers(view: &DepthView) -> String {
    let mut rows = String::new();
    for (depth, l) in view.file.layers.iter().enumerate() {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td>{}{}{}{}{}{}</tr>",
            depth + 1,
            escape(&l.layer),
            escape(&l.job_dir.display().to_string()),
            num_cell(l.neurons as f64, &l.neurons.to_string()),
            num_cell(l.classifiers as f64, &l.classifiers.to_string()),
            f1_cell(l.mean_f1),
            percent_cell(l.median_half_mass_fraction),
            match l.median_gini {
                Some(g) => num_cell(g, &format!("{g:.3}")),
                None => num_cell(f64::NAN, "—"),
            },
            num_cell(
                l.multimodal_neurons as f64,
                &l.multimodal_neurons.to_string()
            ),
        );
    }
    format!(
        "<section id=\"layers\"><h2>Layers, shallow to deep</h2>\n<p class=\"note\">One \
         finished job per layer. Mean F1 is over the {} concepts with a classifier at every \
         layer; “half of Φ⁺” is the median, over those concepts, of the fraction of the \
         layer's neurons that hold half of the concept's positive Φ (smaller: more \
         concentrated), and “Gini” the median Gini coefficient of the positive φ over the \
         layer's neurons (0: spread evenly; near 1: held by one neuron).</p>\n<table class=\"sortable\"><thead><tr><th class=\"num\">#</th>\
         <th>layer</th><th>job</th><th class=\"num\">neurons</th><th class=\"num\">classifiers</th>\
         <th class=\"num\">mean F1</th><th class=\"num\">half of Φ⁺ in</th>\
         <th class=\"num\">Gini of Φ⁺</th><th class=\"num\">multimodal neurons</th></tr></thead>\
         <tbody>{rows}</tbody></table></section>\n",
        view.file.shared_concepts
    )
}

/// The layer names, the charts' x categories.
fn x(view: &DepthView) -> Vec<String> {
    view.layers.iter().map(|l| l.layer.clone()).collect()
}

fn f1(view: &DepthView) -> String {
    let file = &view.file;
    let levels: std::collections::BTreeSet<u32> = file
        .layers
        .iter()
        .flat_map(|l| l.mean_f1_by_level.iter().map(|f| f.level))
        .collect();
    let mut series: Vec<Series> = levels
        .iter()
        .enumerate()
        .map(|(i, &level)| Series {
            label: format!("level {level}"),
            colour: LEVEL_COLOURS[i % LEVEL_COLOURS.len()],
            values: file
                .layers
                .iter()
                .map(|l| {
                    l.mean_f1_by_level
                        .iter()
                        .find(|f| f.level == level)
                        .map_or(f64::NAN, |f| f.mean_f1)
                })
                .collect(),
            band: None,
            emphasis: false,
        })
        .collect();
    series.push(Series {
        label: "all levels".into(),
        colour: "#1d232b",
        values: file
            .layers
            .iter()
            .map(|l| l.mean_f1.unwrap_or(f64::NAN))
            .collect(),
        band: None,
        emphasis: true,
    });
    let chart = LineChart {
        title: "Mean held-out F1 of the concept classifiers".into(),
        x_label: "layer".into(),
        y_label: "mean F1".into(),
        x: x(view),
        y_range: Some((0.0, 1.0)),
        series,
    };
    let mut head = String::new();
    for l in &file.layers {
        let _ = write!(
            head,
            "<th class=\"num\"><code>{}</code></th>",
            escape(&l.layer)
        );
    }
    let mut rows = String::new();
    for c in &file.concepts {
        let mut cells = String::new();
        for at in &c.layers {
            cells += &f1_cell(at.f1);
        }
        let (first, last) = (c.layers[0].f1, c.layers[c.layers.len() - 1].f1);
        let change = match (first, last) {
            (Some(a), Some(b)) => num_cell(b - a, &format!("{:+.3}", b - a)),
            _ => num_cell(f64::NAN, "—"),
        };
        let _ = write!(
            rows,
            "<tr{}><td>{}</td>{}{cells}{change}</tr>",
            if c.shared {
                ""
            } else {
                " class=\"unexplained\""
            },
            escape(&c.name),
            num_cell(f64::from(c.level), &c.level.to_string()),
        );
    }
    format!(
        "<section id=\"f1\"><h2>Concept classifiers across layers</h2>\n<p class=\"note\">\
         How separable each concept's regions are at each layer: the held-out F1 of its \
         logistic classifier on the layer's region activations (the paper's rise with depth). \
         Shaded rows lack a classifier at some layer and are left out of the means.</p>\n\
         <div class=\"charts\">{}</div>{}\n<table class=\"sortable\" id=\"depth-f1\"><thead><tr>\
         <th>concept</th><th class=\"num\">level</th>{head}<th class=\"num\">last − first</th>\
         </tr></thead><tbody>{rows}</tbody></table></section>\n",
        chart.svg(),
        legend(&chart.series)
    )
}

fn concentration(view: &DepthView) -> String {
    let file = &view.file;
    let fraction = |f: fn(&super::depth::LayerSummary) -> Option<f64>| -> Vec<f64> {
        file.layers
            .iter()
            .map(|l| f(l).map_or(f64::NAN, |v| 100.0 * v))
            .collect()
    };
    let charts = [
        LineChart {
            title: "Neurons holding half of a concept's Φ⁺".into(),
            x_label: "layer".into(),
            y_label: "% of the layer (median)".into(),
            x: x(view),
            y_range: None,
            series: vec![Series {
                label: "half of Φ⁺".into(),
                colour: LEVEL_COLOURS[0],
                values: fraction(|l| l.median_half_mass_fraction),
                band: None,
                emphasis: true,
            }],
        },
        LineChart {
            title: "Gini coefficient of Φ⁺ over the neurons".into(),
            x_label: "layer".into(),
            y_label: "Gini (median)".into(),
            x: x(view),
            y_range: Some((0.0, 1.0)),
            series: vec![Series {
                label: "Gini".into(),
                colour: LEVEL_COLOURS[1],
                values: file
                    .layers
                    .iter()
                    .map(|l| l.median_gini.unwrap_or(f64::NAN))
                    .collect(),
                band: None,
                emphasis: true,
            }],
        },
    ];
    format!(
        "<section id=\"concentration\"><h2>How concentrated Φ is</h2>\n<p class=\"note\">Per \
         layer, the median over the compared concepts: a concept carried by a few neurons \
         needs a small fraction of the layer for half its positive Φ, and its φ are unequal \
         (a high Gini). Both are free of the layer's width, so layers of different widths \
         compare.</p>\n<div class=\"charts\">{}{}</div></section>\n",
        charts[0].svg(),
        charts[1].svg()
    )
}

fn top_neurons(view: &DepthView) -> String {
    let mut head = String::new();
    for l in &view.file.layers {
        let _ = write!(head, "<th><code>{}</code></th>", escape(&l.layer));
    }
    let mut rows = String::new();
    for c in &view.file.concepts {
        let mut cells = String::new();
        for at in &c.layers {
            let chips: String = at
                .top
                .iter()
                .map(|(n, phi)| {
                    format!(
                        "<span class=\"chip {}\" title=\"neuron {n}, φ = {phi}\">#{n}</span>",
                        if *phi >= 0.0 { "pos" } else { "neg" }
                    )
                })
                .collect();
            let _ = write!(
                cells,
                "<td>{}</td>",
                if chips.is_empty() {
                    "—".to_string()
                } else {
                    chips
                }
            );
        }
        let _ = write!(
            rows,
            "<tr><td>{}</td>{}{cells}</tr>",
            escape(&c.name),
            num_cell(f64::from(c.level), &c.level.to_string()),
        );
    }
    format!(
        "<section id=\"top\"><h2>Top neurons per layer</h2>\n<p class=\"note\">Each concept's \
         top {TOP_NEURONS} neurons by φ at each layer (a neuron number is a channel of that \
         layer; hover for φ).</p>\n<table class=\"sortable\"><thead><tr><th>concept</th>\
         <th class=\"num\">level</th>{head}</tr></thead><tbody>{rows}</tbody></table></section>\n"
    )
}

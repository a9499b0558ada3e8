//! The localisation (WSOL) section: `hint evaluate`'s pooled and per-concept results and the
//! concept-classifier heatmaps, embedded as PNG data URIs.

use std::fmt::Write as _;

use super::data::{Wsol, WsolRow};
use super::html::num_cell;
use super::text::{base64, escape, percent};

fn wsol_rows(rows: &[WsolRow], per_concept: bool) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str("<tr>");
        if per_concept {
            let _ = write!(
                out,
                "<td>{}</td>{}",
                escape(r.name.as_deref().unwrap_or("?")),
                num_cell(
                    r.level.map_or(f64::NAN, f64::from),
                    &r.level.map(|l| l.to_string()).unwrap_or_default()
                )
            );
        }
        let _ = write!(
            out,
            "<td>{}</td>{}{}",
            escape(&r.selection),
            num_cell(
                f64::from(r.fraction),
                &match r.neurons {
                    Some(n) => format!("{}% ({n})", r.fraction),
                    None => format!("{}%", r.fraction),
                }
            ),
            num_cell(r.images as f64, &r.images.to_string())
        );
        for v in [r.loc_accuracy, r.pointing, r.mask_iou] {
            out += &num_cell(v.unwrap_or(f64::NAN), &percent(v));
        }
        out.push_str("</tr>");
    }
    out
}

const WSOL_HEAD: &str = "<th>selection</th><th class=\"num\">neurons kept</th>\
    <th class=\"num\">images</th><th class=\"num\">loc. accuracy</th>\
    <th class=\"num\">pointing</th><th class=\"num\">mask IoU</th></tr></thead><tbody>";

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
         chosen by Shapley value, by classifier weight or at random: localisation accuracy \
         (box IoU ≥ 0.5), pointing game and mask IoU{}.</p>\n<table class=\"sortable\"><thead><tr>\
         {WSOL_HEAD}{}</tbody></table>\n",
        f.threshold
            .map(|t| format!("; maps thresholded at {t} of their range"))
            .unwrap_or_default(),
        wsol_rows(&f.summary, false)
    );
    if !f.concepts.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Per concept ({} rows)</summary><table class=\"sortable\"><thead>\
             <tr><th>concept</th><th class=\"num\">level</th>{WSOL_HEAD}{}</tbody></table>\
             </details>",
            f.concepts.len(),
            wsol_rows(&f.concepts, true)
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
            drawn = match (&h.selection, h.fraction) {
                (Some(s), Some(f)) => format!("<br>{}, {f}% of neurons", escape(s)),
                _ => String::new(),
            },
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
    if !wsol.left_out.is_empty() {
        let mut list = String::new();
        for (i, why) in &wsol.left_out {
            let _ = write!(
                list,
                "<li>{}: {}</li>",
                escape(&f.heatmaps[*i].png),
                escape(why)
            );
        }
        let _ = writeln!(
            out,
            "<details><summary class=\"warn\">{} heatmap image(s) not embedded</summary>\
             <ul>{list}</ul></details>",
            wsol.left_out.len()
        );
    }
    if !f.skipped.is_empty() {
        let mut list = String::new();
        for s in &f.skipped {
            let _ = write!(list, "<li>{}: {}</li>", escape(&s.what), escape(&s.reason));
        }
        let _ = writeln!(
            out,
            "<details><summary class=\"warn\">{} concept(s) or image(s) left out of the \
             evaluation</summary><ul>{list}</ul></details>",
            f.skipped.len()
        );
    }
    out + "</section>\n"
}

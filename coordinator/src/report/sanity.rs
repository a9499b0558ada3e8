//! The saliency sanity check: what `hint sanity` wrote into the job's `results/sanity/` —
//! per step of the cascading randomisation, each method's maps and regions against the
//! trained model's, and the concept maps'.

use std::fmt::Write as _;

use hint_common::sanity::{mean_defined, SanityReport};

use super::html::num_cell;
use super::text::escape;

/// A similarity cell: the value with its interval when it has one, or a dash where it is
/// undefined.
fn cell(value: Option<f64>, interval: Option<[f64; 2]>) -> String {
    match (value, interval) {
        (Some(v), Some([low, high])) => num_cell(v, &format!("{v:.3} [{low:.2}, {high:.2}]")),
        (Some(v), None) => num_cell(v, &format!("{v:.3}")),
        (None, _) => num_cell(f64::NAN, "—"),
    }
}

/// The section: the cascade's table, or a note on how to add it.
pub fn section(report: Option<&SanityReport>) -> String {
    let Some(r) = report else {
        return "<section id=\"sanity\"><h2>Saliency sanity check</h2><p class=\"note\">No \
                sanity check in this job: <code>hint sanity --job DIR --images PATH \
                [--methods a,b]</code> writes one into the job's <code>results/sanity/</code>, \
                and the report shows it here.</p></section>\n"
            .to_string();
    };
    let mut out = format!(
        "<section id=\"sanity\"><h2>Saliency sanity check</h2>\n<p class=\"note\">Cascading \
         randomisation (Adebayo et al., 2018) on {} image(s): from the trained {} model, each \
         part's weights are shuffled (a seeded permutation of every tensor's values, seed {}), \
         the head first, then every stage from the last down, cumulatively. At each step, per \
         method: ρ, the mean rank correlation of each image's {}-aggregated saliency map at \
         {} with the trained model's, and IoU, of its responsible region at {}, each with its \
         95% bootstrap interval over the images; and the concept classifiers' maps' mean ρ. A method whose maps stay put while the network above the \
         layer is destroyed is not explaining the network. Rows marked * have reached the \
         layer, so its activations change too. — : undefined (every image's map constant, e.g. \
         a plain gradient just before a global pool).</p>\n<table><thead><tr>\
         <th>randomised</th>",
        r.images,
        escape(&r.model),
        r.seed,
        escape(&r.aggregation),
        escape(&r.layer),
        r.threshold,
    );
    for m in &r.methods {
        let _ = write!(
            out,
            "<th class=\"num\">{m} ρ</th><th class=\"num\">{m} IoU</th>",
            m = escape(m)
        );
    }
    out += "<th class=\"num\">concept maps ρ</th></tr></thead><tbody>";
    for step in &r.steps {
        let part = step
            .randomised
            .as_deref()
            .map_or_else(|| "nothing (trained)".to_string(), escape);
        let _ = write!(
            out,
            "<tr><td>{part}{}</td>",
            if step.reaches_layer { " *" } else { "" }
        );
        for m in &step.methods {
            out += &cell(m.rank_correlation, m.rank_correlation_interval);
            out += &cell(m.region_iou, m.region_iou_interval);
        }
        out += &cell(mean_defined(step.concept_maps.iter().copied()).0, None);
        out += "</tr>";
    }
    out += "</tbody></table>\n";
    out += &super::concept_maps::unread_images(&r.skipped);
    out + "</section>\n"
}

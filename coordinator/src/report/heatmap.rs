//! The Φ heatmap: which neurons it shows, its colour scale, and the JSON block the page's
//! script draws on a canvas (one canvas, not one element per cell: 256 neurons × 1,000
//! concepts are 256 k cells).

use std::fmt::Write as _;

use super::data::PhiTable;
use super::text::{escape, number, script_json};

/// At most this many neurons (rows) are drawn.
pub const MAX_HEATMAP_NEURONS: usize = 256;
/// At most this many cells: with very many concepts, fewer neurons (but at least
/// [`MIN_HEATMAP_NEURONS`]).
pub const MAX_HEATMAP_CELLS: usize = 400_000;
/// The fewest neurons drawn when the layer has them.
pub const MIN_HEATMAP_NEURONS: usize = 16;

/// The neurons the heatmap shows, by index: all of them when they fit, otherwise those whose
/// φ varies most across concepts (the ones that tell concepts apart), ties by index.
pub fn select_neurons(phi: &PhiTable) -> Vec<usize> {
    let concepts = phi.concepts.len().max(1);
    let rows = (MAX_HEATMAP_CELLS / concepts).clamp(MIN_HEATMAP_NEURONS, MAX_HEATMAP_NEURONS);
    if phi.neurons <= rows {
        return (0..phi.neurons).collect();
    }
    let variance = |n: usize| {
        let values: Vec<f64> = (0..phi.concepts.len())
            .map(|c| phi.get(c, n))
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            return f64::NEG_INFINITY;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64
    };
    let variances: Vec<f64> = (0..phi.neurons).map(variance).collect();
    let mut order: Vec<usize> = (0..phi.neurons).collect();
    order.sort_by(|&a, &b| variances[b].total_cmp(&variances[a]).then(a.cmp(&b)));
    order.truncate(rows);
    order.sort_unstable();
    order
}

/// Where the colours saturate: the 99th percentile of |φ| over the drawn cells, so that one
/// outlier does not wash out the rest (1 when there is nothing to draw).
pub fn colour_scale(phi: &PhiTable, neurons: &[usize]) -> f64 {
    let mut values: Vec<f64> = (0..phi.concepts.len())
        .flat_map(|c| neurons.iter().map(move |&n| phi.get(c, n).abs()))
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return 1.0;
    }
    values.sort_by(f64::total_cmp);
    let p99 = values[((values.len() - 1) as f64 * 0.99).round() as usize];
    if p99 > 0.0 {
        p99
    } else {
        values.last().copied().filter(|&v| v > 0.0).unwrap_or(1.0)
    }
}

/// A JSON number (4 significant digits are plenty for colours and tooltips); null for NaN.
fn json_number(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v:.3e}");
    } else {
        out.push_str("null");
    }
}

/// The heatmap's data: concepts (columns), neurons (rows), the scale, and φ / stderr as one
/// array per drawn neuron, in column order.
pub fn json(phi: &PhiTable, neurons: &[usize], scale: f64) -> String {
    let concepts: Vec<_> = phi
        .concepts
        .iter()
        .map(|(id, name, level)| serde_json::json!({"id": id, "name": name, "level": level}))
        .collect();
    let mut out = format!(
        "{{\"concepts\":{},\"neurons\":{},\"total_neurons\":{},\"scale\":",
        serde_json::Value::from(concepts),
        serde_json::Value::from(neurons.to_vec()),
        phi.neurons
    );
    json_number(&mut out, scale);
    for (key, values) in [("phi", &phi.phi), ("stderr", &phi.stderr)] {
        let _ = write!(out, ",\"{key}\":[");
        for (i, &n) in neurons.iter().enumerate() {
            out.push_str(if i == 0 { "[" } else { ",[" });
            for c in 0..phi.concepts.len() {
                if c > 0 {
                    out.push(',');
                }
                json_number(&mut out, values[c * phi.neurons + n]);
            }
            out.push(']');
        }
        out.push(']');
    }
    out.push('}');
    script_json(&out)
}

/// The heatmap section: controls, canvas, legend, the note on what is drawn, and the data.
pub fn section(phi: &PhiTable) -> String {
    if phi.concepts.is_empty() || phi.neurons == 0 {
        return "<p class=\"note\">phi.csv holds no values.</p>".to_string();
    }
    let neurons = select_neurons(phi);
    let scale = colour_scale(phi, &neurons);
    let mut options = String::new();
    for (c, (id, name, level)) in phi.concepts.iter().enumerate() {
        let _ = write!(
            options,
            "<option value=\"{c}\">{} (level {level}, #{id})</option>",
            escape(name)
        );
    }
    let shown = if neurons.len() == phi.neurons {
        format!("all {} neurons", phi.neurons)
    } else {
        format!(
            "the {} of {} neurons whose φ varies most across concepts (the full Φ is in \
             results/phi.csv)",
            neurons.len(),
            phi.neurons
        )
    };
    format!(
        r#"<div class="controls">
<label>Sort neurons by <select id="phi-sort"><option value="index">neuron index</option><option value="variance">variance across concepts</option>{options}</select></label>
<span class="legend"><span>−{s}</span><canvas id="phi-legend" width="160" height="12"></canvas><span>+{s}</span></span>
</div>
<p class="note">Rows: {shown}; columns: the {c} concepts in hierarchy order. Blue is negative φ, red positive; colours saturate at ±{s} (the 99th percentile of |φ|). Click a column to sort by its concept; hover a cell for its value.</p>
<div class="heatmap-wrap"><canvas id="phi-canvas" width="10" height="10"></canvas><div id="phi-tip" class="tip" hidden></div></div>
<script type="application/json" id="phi-data">{data}</script>"#,
        s = escape(&number(scale)),
        c = phi.concepts.len(),
        data = json(phi, &neurons, scale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(concepts: usize, neurons: usize, f: impl Fn(usize, usize) -> f64) -> PhiTable {
        let mut phi = Vec::new();
        for c in 0..concepts {
            phi.extend((0..neurons).map(|n| f(c, n)));
        }
        PhiTable {
            concepts: (0..concepts as u32)
                .map(|c| (c, format!("c<{c}>"), 0))
                .collect(),
            neurons,
            stderr: vec![0.5; phi.len()],
            phi,
        }
    }

    #[test]
    fn small_layers_are_drawn_whole_and_large_ones_by_variance() {
        let small = table(3, 10, |c, n| (c * n) as f64);
        assert_eq!(select_neurons(&small), (0..10).collect::<Vec<_>>());
        // Neuron n's variance grows with n % 300; each value twice: the top 256 are 172..=299.
        let large = table(4, 600, |c, n| if c == 0 { (n % 300) as f64 } else { 0.0 });
        let chosen = select_neurons(&large);
        assert_eq!(chosen.len(), MAX_HEATMAP_NEURONS);
        assert!(chosen.windows(2).all(|w| w[0] < w[1]), "by index");
        assert!(chosen.iter().all(|&n| n % 300 >= 172), "{chosen:?}");
        // Very many concepts: fewer rows, within the cell budget.
        let huge = table(5000, 100, |c, n| ((c + n) % 7) as f64);
        let chosen = select_neurons(&huge);
        assert_eq!(chosen.len(), MAX_HEATMAP_CELLS / 5000);
    }

    #[test]
    fn the_scale_ignores_an_outlier_and_nan() {
        let phi = table(1, 200, |_, n| match n {
            0 => 1e6,
            1 => f64::NAN,
            _ => 0.1,
        });
        let neurons: Vec<usize> = (0..200).collect();
        assert_eq!(colour_scale(&phi, &neurons), 0.1);
        let zeros = table(2, 3, |_, _| 0.0);
        assert_eq!(colour_scale(&zeros, &[0, 1, 2]), 1.0);
    }

    #[test]
    fn the_json_is_valid_escaped_and_row_per_neuron() {
        let phi = table(2, 3, |c, n| if n == 1 { f64::NAN } else { (c + n) as f64 });
        let text = json(&phi, &[0, 1, 2], 2.0);
        assert!(!text.contains('<'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["concepts"][1]["name"], "c<1>");
        assert_eq!(value["phi"][2], serde_json::json!([2.0, 3.0]));
        assert_eq!(value["phi"][1], serde_json::json!([null, null]));
        assert_eq!(value["stderr"][0][1], 0.5);
        assert_eq!(value["scale"], 2.0);
    }
}

//! Inline SVG line charts over categorical x values (the ablation's fractions of neurons
//! removed). Pure markup — no script, no external resource — so a chart draws from `file://`,
//! in a screenshot and with scripts off; each point carries a `<title>` for its value.

use std::fmt::Write as _;

use super::text::escape;

/// Width of a chart in CSS pixels.
pub const WIDTH: f64 = 380.0;
/// Height of a chart.
pub const HEIGHT: f64 = 250.0;
/// The plot box inside it: left, top, right, bottom edges (room for tick and axis labels).
pub const PLOT: (f64, f64, f64, f64) = (58.0, 30.0, WIDTH - 12.0, HEIGHT - 46.0);

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name in the legend and the points' titles.
    pub label: String,
    /// A CSS colour.
    pub colour: &'static str,
    /// One value per x category; a non-finite value leaves a gap.
    pub values: Vec<f64>,
    /// A band (low, high) per x category, drawn under the line (a spread across draws).
    pub band: Option<Vec<(f64, f64)>>,
    /// Drawn thicker and on top: the selection the chart is about.
    pub emphasis: bool,
}

/// A line chart: a title, axis labels, x categories and its lines.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The x categories, equally spaced.
    pub x: Vec<String>,
    /// The lines, drawn in order (emphasised ones last, on top).
    pub series: Vec<Series>,
    /// The y range; None: from the data ([`y_range`]).
    pub y_range: Option<(f64, f64)>,
}

/// A range that holds every finite value and band end of `series` and 0 (a drop of 0 is
/// the reference), padded by 6%; never empty.
pub fn y_range<'a>(series: impl IntoIterator<Item = &'a Series>) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for s in series {
        let bands = s.band.iter().flatten().flat_map(|&(l, h)| [l, h]);
        for v in s.values.iter().copied().chain(bands) {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if hi - lo < 1e-9 {
        return (lo - 0.05, hi + 0.05);
    }
    let pad = 0.06 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Round tick values inside `[lo, hi]`: steps of 1, 2 or 5 × 10ⁿ, about five of them.
pub fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // `k * step` rather than repeated addition, and -0 printed as 0.
    (first..=last).map(|k| k as f64 * step + 0.0).collect()
}

/// A tick label with no more decimals than the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

impl LineChart {
    fn range(&self) -> (f64, f64) {
        self.y_range.unwrap_or_else(|| y_range(&self.series))
    }

    /// The x pixel of category `i`: the middle of its slot.
    pub fn x_of(&self, i: usize) -> f64 {
        let (left, _, right, _) = PLOT;
        left + (i as f64 + 0.5) * (right - left) / self.x.len().max(1) as f64
    }

    /// The y pixel of `v`, clamped into the plot box.
    pub fn y_of(&self, v: f64) -> f64 {
        let (_, top, _, bottom) = PLOT;
        let (lo, hi) = self.range();
        let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        bottom - t * (bottom - top)
    }

    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> String {
        let (left, top, right, bottom) = PLOT;
        let (lo, hi) = self.range();
        let mut out = format!(
            "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} \
             {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{t}\">\
             <title>{t}</title><text class=\"chart-title\" x=\"{left}\" y=\"18\">{t}</text>",
            t = escape(&self.title)
        );
        let ticks = ticks(lo, hi);
        let step = if ticks.len() > 1 {
            ticks[1] - ticks[0]
        } else {
            hi - lo
        };
        for &v in &ticks {
            let y = self.y_of(v);
            let _ = write!(
                out,
                "<line class=\"{}\" x1=\"{left}\" x2=\"{right}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                if v == 0.0 { "zero" } else { "grid" },
                left - 5.0,
                y + 4.0,
                tick_label(v, step)
            );
        }
        let _ = write!(
            out,
            "<rect class=\"frame\" x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\"/>",
            right - left,
            bottom - top
        );
        for (i, x) in self.x.iter().enumerate() {
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                self.x_of(i),
                bottom + 15.0,
                escape(x)
            );
        }
        let _ = write!(
            out,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text class=\"axis\" transform=\"translate(14 {:.1}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text>",
            (left + right) / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label),
            (top + bottom) / 2.0,
            escape(&self.y_label)
        );
        for s in self.series.iter().filter(|s| s.band.is_some()) {
            out += &self.band(s);
        }
        let mut order: Vec<&Series> = self.series.iter().collect();
        order.sort_by_key(|s| s.emphasis);
        for s in order {
            out += &self.line(s);
        }
        out + "</svg>"
    }

    /// The finite stretches of a series: runs of consecutive categories with a value.
    fn runs(values: &[f64]) -> Vec<std::ops::Range<usize>> {
        let mut runs = Vec::new();
        let mut start = None;
        for i in 0..=values.len() {
            match (start, values.get(i).is_some_and(|v| v.is_finite())) {
                (None, true) => start = Some(i),
                (Some(s), false) => {
                    runs.push(s..i);
                    start = None;
                }
                _ => {}
            }
        }
        runs
    }

    fn band(&self, s: &Series) -> String {
        let Some(band) = &s.band else {
            return String::new();
        };
        let ends: Vec<f64> = band
            .iter()
            .map(|&(l, h)| {
                if l.is_finite() && h.is_finite() {
                    l
                } else {
                    f64::NAN
                }
            })
            .collect();
        let mut out = String::new();
        for run in Self::runs(&ends) {
            let mut points = String::new();
            for i in run.clone() {
                let _ = write!(points, "{:.1},{:.1} ", self.x_of(i), self.y_of(band[i].1));
            }
            for i in run.rev() {
                let _ = write!(points, "{:.1},{:.1} ", self.x_of(i), self.y_of(band[i].0));
            }
            let _ = write!(
                out,
                "<polygon class=\"band\" fill=\"{}\" points=\"{}\"/>",
                s.colour,
                points.trim_end()
            );
        }
        out
    }

    fn line(&self, s: &Series) -> String {
        let width = if s.emphasis { 3.2 } else { 1.6 };
        let mut out = String::new();
        for run in Self::runs(&s.values) {
            let points: Vec<String> = run
                .clone()
                .map(|i| format!("{:.1},{:.1}", self.x_of(i), self.y_of(s.values[i])))
                .collect();
            let _ = write!(
                out,
                "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\" \
                 points=\"{}\"/>",
                escape(&s.label),
                s.colour,
                points.join(" ")
            );
        }
        for (i, &v) in s.values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\"><title>{}, {}: \
                 {v:+.3}</title></circle>",
                self.x_of(i),
                self.y_of(v),
                if s.emphasis { 3.6 } else { 2.4 },
                s.colour,
                escape(&s.label),
                escape(&self.x[i])
            );
        }
        out
    }
}

/// One legend for charts drawn with `series`' colours (a band named where there is one).
pub fn legend(series: &[Series]) -> String {
    let mut out = String::from("<div class=\"chart-legend\">");
    for s in series {
        let width = if s.emphasis { 3.2 } else { 1.6 };
        let _ = write!(
            out,
            "<span class=\"legend\"><svg width=\"26\" height=\"10\" aria-hidden=\"true\">\
             {}<line x1=\"1\" x2=\"25\" y1=\"5\" y2=\"5\" stroke=\"{}\" stroke-width=\"{width}\"/>\
             </svg>{}{}</span>",
            if s.band.is_some() {
                format!(
                    "<rect class=\"band\" x=\"1\" y=\"0\" width=\"24\" height=\"10\" fill=\"{}\"/>",
                    s.colour
                )
            } else {
                String::new()
            },
            s.colour,
            if s.emphasis {
                format!("<strong>{}</strong>", escape(&s.label))
            } else {
                escape(&s.label)
            },
            if s.band.is_some() {
                " (± sd band)"
            } else {
                ""
            }
        );
    }
    out + "</div>"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, values: Vec<f64>) -> Series {
        Series {
            label: label.into(),
            colour: "#b2182b",
            values,
            band: None,
            emphasis: false,
        }
    }

    fn chart(series: Vec<Series>) -> LineChart {
        LineChart {
            title: "specificity <zero>".into(),
            x_label: "neurons removed".into(),
            y_label: "drop".into(),
            x: ["1%", "2%", "5%", "10%", "20%", "40%"]
                .map(String::from)
                .into(),
            series,
            y_range: None,
        }
    }

    /// The (x, y) pairs of every polyline with `data-series="label"`.
    fn polylines(svg: &str, label: &str) -> Vec<Vec<(f64, f64)>> {
        let key = format!("data-series=\"{label}\"");
        svg.match_indices(&key)
            .map(|(at, _)| {
                let rest = &svg[at..];
                let start = rest.find("points=\"").unwrap() + 8;
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end]
                    .split(' ')
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_line_has_one_point_per_category_inside_the_plot_box() {
        let values = vec![0.5, 0.1, -0.2, 0.0, 0.3, 0.9];
        let mut random = series("random", vec![0.01; 6]);
        random.band = Some(vec![(-0.05, 0.07); 6]);
        let c = chart(vec![series("Shapley", values.clone()), random]);
        let svg = c.svg();
        let lines = polylines(&svg, "Shapley");
        assert_eq!(lines.len(), 1);
        let points = &lines[0];
        assert_eq!(points.len(), 6, "one point per fraction");
        let (left, top, right, bottom) = PLOT;
        for (i, &(x, y)) in points.iter().enumerate() {
            assert!(x > left && x < right && y >= top && y <= bottom, "{x},{y}");
            if i > 0 {
                assert!(x > points[i - 1].0, "x grows with the fraction");
            }
        }
        // Larger values are higher up (smaller y), and the extremes sit inside the padding.
        assert!(points[5].1 < points[0].1 && points[0].1 < points[1].1);
        assert!(points[5].1 > top && points[2].1 < bottom);
        // The zero line is drawn where 0 maps to.
        assert!(svg.contains(&format!("y1=\"{:.1}\"", c.y_of(0.0))));
        assert!(svg.contains("class=\"zero\""));
        assert!(svg.contains("<polygon class=\"band\""));
        assert!(svg.contains("&lt;zero&gt;"), "the title is escaped");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn missing_values_leave_gaps_and_no_nan() {
        let mut s = series("raw |w|", vec![0.2, f64::NAN, 0.3, 0.4, f64::INFINITY, 0.1]);
        s.band = Some(vec![(f64::NAN, 1.0); 6]);
        let svg = chart(vec![s]).svg();
        let runs: Vec<usize> = polylines(&svg, "raw |w|").iter().map(Vec::len).collect();
        assert_eq!(runs, vec![1, 2, 1]);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(
            !svg.contains("<polygon"),
            "a band with no finite end is not drawn"
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Nothing at all is still a chart, with a range around 0.
        let empty = chart(vec![series("none", vec![f64::NAN; 6])]).svg();
        assert!(!empty.contains("NaN") && empty.contains("</svg>"));
    }

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks(-0.06, 0.52), vec![0.0, 0.2, 0.4]);
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(-0.2, 0.2), vec![-0.2, -0.1, 0.0, 0.1, 0.2]);
        assert_eq!(tick_label(0.1 * 3.0, 0.1), "0.3");
        assert_eq!(tick_label(10.0, 5.0), "10");
        let (lo, hi) = y_range(&[series("a", vec![0.2, 0.4])]);
        assert!(
            lo < 0.0 && lo > -0.05 && hi > 0.4,
            "0 is in the range: {lo}..{hi}"
        );
    }

    #[test]
    fn the_legend_names_every_series_and_its_band() {
        let mut random = series("random", vec![0.0]);
        random.band = Some(vec![(0.0, 0.0)]);
        let mut shapley = series("Shapley", vec![0.0]);
        shapley.emphasis = true;
        let html = legend(&[shapley, series("|w|·σ", vec![0.0]), random]);
        for needle in ["<strong>Shapley</strong>", "|w|·σ", "random (± sd band)"] {
            assert!(html.contains(needle), "{needle} in {html}");
        }
    }
}

//! The concept-map gallery: what `hint explain` wrote into the job's `results/explain/` —
//! each image with its concepts' maps, embedded as PNG data URIs.

use std::fmt::Write as _;
use std::path::Path;

use hint_common::explain::SkippedImage;

use super::data::ConceptMaps;
use super::html::num_cell;
use super::text::{base64, escape, percent, warning_list};

/// The file name of `path` (the whole path when it has none).
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The section: a gallery per image, or a note on how to add one.
pub fn section(maps: Option<&ConceptMaps>) -> String {
    let Some(maps) = maps else {
        return "<section id=\"explain\"><h2>Concept maps</h2><p class=\"note\">No concept maps \
                in this job: <code>hint explain --job DIR --images PATH [--concepts a,b] \
                [--top K]</code> writes them into the job's <code>results/explain/</code>, and \
                the report shows them here.</p></section>\n"
            .to_string();
    };
    let f = &maps.file;
    let classifiers = match f.top {
        Some(k) => format!("re-fitted on each concept's top {k} neurons by Φ"),
        None => "as trained".to_string(),
    };
    let mut out = format!(
        "<section id=\"explain\"><h2>Concept maps</h2>\n<p class=\"note\">Each concept's \
         classifier ({classifiers}) applied at every position of the image's {} {} map \
         ({}×{} crop), upsampled and drawn over the crop (min-max normalised per map); p is \
         the classifier's probability at the peak. {} map(s) of {} image(s), from \
         <code>hint explain</code>.</p>\n",
        escape(&f.model),
        escape(&f.layer),
        f.crop,
        f.crop,
        f.maps.len(),
        f.maps
            .iter()
            .map(|m| &m.image)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
    );
    if let Some(boxes) = &f.boxes {
        let masked = f.checks.iter().any(|c| c.mean_mask_iou.is_some());
        let mut rows = String::new();
        for c in &f.checks {
            let mask_cell = match (masked, c.mean_mask_iou) {
                (false, _) => String::new(),
                (true, Some(m)) => num_cell(m, &format!("{m:.3}")),
                (true, None) => num_cell(f64::NAN, "—"),
            };
            let _ = write!(
                rows,
                "<tr><td>{}</td>{}{}{}{}{mask_cell}</tr>",
                escape(&c.name),
                num_cell(c.images as f64, &c.images.to_string()),
                num_cell(c.pointing, &percent(Some(c.pointing))),
                num_cell(c.localised, &percent(Some(c.localised))),
                num_cell(c.mean_iou, &format!("{:.3}", c.mean_iou)),
            );
        }
        let _ = writeln!(
            out,
            "<h3>Against the given boxes</h3>\n<p class=\"note\">Each map against every box \
             drawn on its image (<code>{}</code>): the pointing game (the map's maximum in a \
             box) and the IoU of the box around the map's largest part at {} of its range, \
             as <code>hint evaluate</code> scores localisation. On the maps the given boxes are \
             green, the map's own box blue.</p>\n<table class=\"sortable\"><thead>\
             <tr><th>concept</th><th class=\"num\">images</th><th class=\"num\">pointing</th>\
             <th class=\"num\">IoU ≥ 0.5</th><th class=\"num\">mean IoU</th>{}</tr></thead>\
             <tbody>{rows}</tbody></table>",
            escape(&boxes.display().to_string()),
            f.threshold.unwrap_or_default(),
            if masked {
                "<th class=\"num\">mean mask IoU</th>"
            } else {
                ""
            },
        );
        out += &warning_list(
            &format!("{} image(s) not checked", f.unchecked.len()),
            f.unchecked
                .iter()
                .map(|s| (s.image.display().to_string(), &s.reason)),
        );
    }
    // Grouped by image, in the order of explain.json.
    let mut groups: Vec<(&Path, Vec<String>)> = Vec::new();
    for (i, png) in &maps.images {
        let m = &f.maps[*i];
        let figure = format!(
            "<figure><img alt=\"map of {name} over {image}\" src=\"data:image/png;base64,{}\">\
             <figcaption>{name}<br>p = {:.3} at [{}, {}] of {}×{}{}</figcaption></figure>",
            base64(png),
            m.peak_probability,
            m.peak[0],
            m.peak[1],
            m.height,
            m.width,
            m.check.as_ref().map_or(String::new(), |c| format!(
                "<br>{}, IoU {:.2}",
                if c.pointed {
                    "points into a box"
                } else {
                    "points outside the boxes"
                },
                c.iou
            )),
            name = escape(&m.name),
            image = escape(&file_name(&m.image)),
        );
        match groups.iter_mut().find(|g| g.0 == m.image.as_path()) {
            Some(group) => group.1.push(figure),
            None => groups.push((&m.image, vec![figure])),
        }
    }
    if groups.is_empty() {
        out += "<p class=\"note\">explain.json names no concept map that could be embedded.</p>";
    }
    out += "<div class=\"galleries\">";
    for (image, figures) in groups {
        let _ = writeln!(
            out,
            "<div class=\"concept-gallery\"><h3 title=\"{}\">{}</h3>\
             <div class=\"gallery\">{}</div></div>",
            escape(&image.display().to_string()),
            escape(&file_name(image)),
            figures.concat()
        );
    }
    out += "</div>\n";
    out += &warning_list(
        &format!("{} concept map(s) not embedded", maps.left_out.len()),
        maps.left_out.iter().map(|(i, why)| (&f.maps[*i].png, why)),
    );
    out += &unread_images(&f.skipped);
    out + "</section>\n"
}

/// The collapsed list of images `hint explain` or `hint attack` could not read.
pub(super) fn unread_images(skipped: &[SkippedImage]) -> String {
    warning_list(
        &format!("{} image(s) could not be read", skipped.len()),
        skipped
            .iter()
            .map(|s| (s.image.display().to_string(), &s.reason)),
    )
}

//! The adversarial explanation: what `hint attack` wrote into the job's `results/attack/` —
//! per (source, target) pair, how often the attack flipped the prediction and which concepts
//! the classifiers see before and after, with one example image's maps side by side.

use std::fmt::Write as _;

use super::concept_maps;
use super::data::Attacks;
use super::html::num_cell;
use super::text::{base64, escape, percent, warning_list};

/// The section: the pairs' tables and examples, or a note on how to add them.
pub fn section(attacks: Option<&Attacks>) -> String {
    let Some(attacks) = attacks else {
        return "<section id=\"attack\"><h2>Adversarial explanation</h2><p class=\"note\">No \
                attacks in this job: <code>hint attack --job DIR --images PATH --targets \
                CLASS[,CLASS…] [--epsilon 8/255]</code> writes them into the job's \
                <code>results/attack/</code>, and the report shows them here.</p></section>\n"
            .to_string();
    };
    let f = &attacks.file;
    let flipped = f.attacks.iter().filter(|a| a.success).count();
    let mut out = format!(
        "<section id=\"attack\"><h2>Adversarial explanation</h2>\n<p class=\"note\">Each image \
         attacked toward each target class but its clean prediction (the source) with \
         targeted PGD: an L∞ budget ε = {:.4} ({:.1}/255) in pixel values, {} steps of {:.4}, \
         from the clean image. Then each concept's classifier at every position of the {} {} \
         map, clean and attacked: a concept is <em>present</em> when its classifier calls some \
         position a region of it (p ≥ 0.5), its <em>area</em> is the fraction of positions so \
         called. <em>source</em> / <em>target</em> mark concepts at or above the pair's \
         class in the hierarchy. {} attack(s), {} flipped to the target ({}).</p>\n",
        f.pgd.epsilon,
        f.pgd.epsilon * 255.0,
        f.pgd.steps,
        f.pgd.step_size,
        escape(&f.model),
        escape(&f.layer),
        f.attacks.len(),
        flipped,
        percent((!f.attacks.is_empty()).then(|| flipped as f64 / f.attacks.len() as f64)),
    );
    let examples = f.examples();
    let concepts = f.concepts.len();
    for (p, pair) in f.pairs.iter().enumerate() {
        let mut rows = String::new();
        for c in &pair.concepts {
            let change = c.area_attacked - c.area_clean;
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td>{}{}{}{}{}</tr>",
                escape(&c.name),
                c.relation.label(),
                num_cell(c.present_clean, &percent(Some(c.present_clean))),
                num_cell(c.present_attacked, &percent(Some(c.present_attacked))),
                num_cell(c.area_clean, &format!("{:.3}", c.area_clean)),
                num_cell(c.area_attacked, &format!("{:.3}", c.area_attacked)),
                num_cell(change, &format!("{change:+.3}")),
            );
        }
        let _ = writeln!(
            out,
            "<h3>{} → {}</h3>\n<p class=\"note\">{} image(s); {} now classified {}; the \
             target's mean probability {:.3} → {:.3}.</p>\n<table class=\"sortable\"><thead>\
             <tr><th>concept</th><th>class</th><th class=\"num\">present, clean</th>\
             <th class=\"num\">present, attacked</th><th class=\"num\">area, clean</th>\
             <th class=\"num\">area, attacked</th><th class=\"num\">Δ area</th></tr></thead>\
             <tbody>{rows}</tbody></table>",
            escape(&pair.source),
            escape(&pair.target),
            pair.images,
            pair.succeeded,
            escape(&pair.target),
            pair.mean_clean_target_probability,
            pair.mean_target_probability,
        );
        // The pair's example: each concept's clean and attacked maps, where embedded.
        let Some(example) = examples.get(p) else {
            continue;
        };
        let mut figures = String::new();
        for (c, (change, concept)) in example.maps.iter().zip(&f.concepts).enumerate() {
            for (attacked, stats, state) in [
                (0, &change.clean, "clean"),
                (1, &change.attacked, "attacked"),
            ] {
                let index = (p * concepts + c) * 2 + attacked;
                let Some((_, png)) = attacks.images.iter().find(|(i, _)| *i == index) else {
                    continue;
                };
                let _ = write!(
                    figures,
                    "<figure><img alt=\"{state} map of {name}\" \
                     src=\"data:image/png;base64,{}\"><figcaption>{name}, {state}<br>p = {:.3}, \
                     area {:.2}</figcaption></figure>",
                    base64(png),
                    stats.peak_probability,
                    stats.area,
                    name = escape(&concept.name),
                );
            }
        }
        if !figures.is_empty() {
            let _ = writeln!(
                out,
                "<div class=\"concept-gallery\"><h3 title=\"{}\">Example: {} (clean: {}; \
                 attacked: {}, p({}) = {:.3})</h3><div class=\"gallery\">{figures}</div></div>",
                escape(&example.image.display().to_string()),
                escape(
                    &example
                        .image
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ),
                escape(&example.source),
                escape(&example.predicted),
                escape(&example.target),
                example.target_probability,
            );
        }
    }
    let pngs = f.example_pngs();
    out += &warning_list(
        &format!("{} example map(s) not embedded", attacks.left_out.len()),
        attacks.left_out.iter().map(|(i, why)| (pngs[*i], why)),
    );
    out += &concept_maps::unread_images(&f.skipped);
    out + "</section>\n"
}

//! Rendering [`ReportData`] as one HTML page. Every string from the job's files goes through
//! [`escape`] (names come from user hierarchies and WordNet; paths from the file system).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use hint_common::hierarchy::ConceptId;
use hint_common::job::spec::HierarchySpec;

use super::assets::{CSS, ERROR_HANDLER, SCRIPT};
use super::data::{ReportData, TopRow};
use super::text::{duration, escape, number, utc};
use super::{ablation, attacks, concept_maps, heatmap, localisation, sanity};

/// Concept trees with at most this many concepts open fully; larger ones open to level 1.
const OPEN_TREE_CONCEPTS: usize = 60;

/// The whole page.
pub fn render(data: &ReportData) -> String {
    let title = format!("HINT report: {} ({})", data.summary.job, data.spec.name);
    let mut page = String::with_capacity(1 << 20);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <div id=\"script-errors\" hidden><strong>Script errors on this page:</strong><ul></ul></div>\n\
         <script>{ERROR_HANDLER}</script>\n",
        escape(&title)
    );
    page += &header(data, &title);
    page += "<nav><a href=\"#phi\">Φ heatmap</a><a href=\"#regions\">Regions</a><a href=\"#hierarchy\">Hierarchy</a>\
             <a href=\"#classifiers\">Classifiers</a><a href=\"#multimodal\">Multimodal neurons</a>\
             <a href=\"#wsol\">Localisation</a><a href=\"#ablation\">Ablation</a><a href=\"#explain\">Concept maps</a><a href=\"#attack\">Attacks</a><a href=\"#sanity\">Sanity check</a><a href=\"#problems\">Skipped &amp; quarantined</a></nav>\n<main>\n";
    let _ = write!(
        page,
        "<section id=\"phi\"><h2>Φ: Shapley values of neurons × concepts</h2>\n{}</section>\n",
        heatmap::section(&data.phi)
    );
    page += &regions(data);
    page += &hierarchy(data);
    page += &classifiers(data);
    page += &multimodal(data);
    page += &localisation::section(data.wsol.as_ref());
    page += &ablation::section(data.ablation.as_ref());
    page += &concept_maps::section(data.explain.as_ref());
    page += &attacks::section(data.attack.as_ref());
    page += &sanity::section(data.sanity.as_ref());
    page += &problems(data);
    let _ = write!(
        page,
        "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    page
}

fn meta(out: &mut String, key: &str, value: &str) {
    let _ = write!(
        out,
        "<div><dt>{}</dt><dd>{}</dd></div>",
        escape(key),
        escape(value)
    );
}

fn header(data: &ReportData, title: &str) -> String {
    let (spec, summary) = (&data.spec, &data.summary);
    let mut dl = String::new();
    meta(&mut dl, "Model", &spec.model.architecture);
    meta(
        &mut dl,
        "Weights",
        &spec.model.weights.display().to_string(),
    );
    meta(&mut dl, "Layer", &spec.model.layer);
    meta(&mut dl, "Neurons", &data.phi.neurons.to_string());
    meta(&mut dl, "Saliency method", spec.extract.method.name());
    meta(&mut dl, "Seed", &spec.seed.to_string());
    meta(&mut dl, "Images", &spec.data.images.display().to_string());
    meta(
        &mut dl,
        "Hierarchy",
        &describe_hierarchy(&spec.data.hierarchy),
    );
    let levels = data.hierarchy.concepts_per_level();
    meta(
        &mut dl,
        "Concepts",
        &format!(
            "{} on {} levels ({})",
            data.hierarchy.concepts().len(),
            levels.len(),
            levels
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    );
    meta(
        &mut dl,
        "Images processed",
        &format!("{} of {}", summary.images_processed, summary.images),
    );
    meta(
        &mut dl,
        "Region rows",
        &format!("{} in {} files", summary.region_rows, summary.region_files),
    );
    let s = &spec.shapley;
    meta(
        &mut dl,
        "Shapley",
        &format!(
            "{} mode, {} quality, {} replacement{}",
            s.mode,
            s.quality,
            s.replacement,
            if s.antithetic { ", antithetic" } else { "" }
        ),
    );
    meta(&mut dl, "Permutations", &permutations(data));
    meta(
        &mut dl,
        "Classifiers",
        &format!(
            "{} trained, {} without",
            data.metrics.len(),
            data.hierarchy.concepts().len() - data.metrics.len()
        ),
    );
    for (key, at) in [
        ("Submitted", summary.submitted_at),
        ("Finished", summary.finished_at),
    ] {
        if let Some(at) = at {
            meta(&mut dl, key, &utc(at));
        }
    }
    if let (Some(a), Some(b)) = (summary.submitted_at, summary.finished_at) {
        meta(&mut dl, "Elapsed", &duration(b - a));
    }
    for (key, seconds) in &summary.timings {
        meta(&mut dl, key, &duration(*seconds));
    }
    if summary.submitted_at.is_none() && summary.timings.is_empty() {
        meta(&mut dl, "Timings", "not recorded in job.json");
    }
    meta(
        &mut dl,
        "Skipped images",
        &summary.skipped_images.len().to_string(),
    );
    meta(
        &mut dl,
        "Quarantined tasks",
        &summary.quarantined_tasks.len().to_string(),
    );
    let spec_json = serde_json::to_string_pretty(spec).expect("a spec always serialises");
    format!(
        "<header><h1>{}</h1>\n<dl class=\"meta\">{dl}</dl>\n\
         <details><summary class=\"sub\">Full job spec</summary><pre>{}</pre></details></header>\n",
        escape(title),
        escape(&spec_json)
    )
}

/// The region-quality diagnostics: whether the saliency picked objects, nothing, or the
/// same positions everywhere (`hint_common::regions::quality`).
fn regions(data: &ReportData) -> String {
    let mut out = String::from("<section id=\"regions\"><h2>Responsible regions</h2>\n");
    let Some(q) = &data.summary.region_quality else {
        out += "<p class=\"note\">No region-quality diagnostics in job.json (written before \
                hint recorded them).</p></section>\n";
        return out;
    };
    let _ = write!(
        out,
        "<p class=\"note\">Objects at varying places give a fixed-pattern IoU near 0; a \
         saliency artefact (the same positions in every image, such as a stride pattern) \
         near 1. The fixed pattern is the set of positions that are responsible in more than \
         half of the images.</p>\n<table><tbody>\
         <tr><th>Layer, method</th><td>{} · {}</td></tr>\
         <tr><th>Images with a responsible region</th><td>{} of {} ({:.1}%)</td></tr>\
         <tr><th>Responsible positions per such image</th><td>{:.1} of {}×{}</td></tr>\
         <tr><th>Fixed pattern</th><td>{} positions; mean IoU with it {:.3}</td></tr>\
         </tbody></table>\n",
        escape(&q.layer),
        escape(&q.method),
        q.images_with_regions,
        q.images,
        100.0 * (1.0 - q.no_region_share),
        q.regions_per_image,
        q.grid[0],
        q.grid[1],
        q.fixed_pattern_positions,
        q.fixed_pattern_iou
    );
    for warning in &q.warnings {
        let _ = writeln!(out, "<p class=\"warn\">Warning: {}</p>", escape(warning));
    }
    out + "</section>\n"
}

fn describe_hierarchy(spec: &HierarchySpec) -> String {
    match spec {
        HierarchySpec::File { path } => path.display().to_string(),
        HierarchySpec::Wordnet { roots, .. } if roots.is_empty() => "WordNet 3.0".to_string(),
        HierarchySpec::Wordnet { roots, .. } => format!("WordNet 3.0 under {}", roots.join(", ")),
    }
}

fn permutations(data: &ReportData) -> String {
    let counts: Vec<u64> = data
        .summary
        .concepts
        .iter()
        .map(|c| c.n_permutations)
        .collect();
    let (Some(min), Some(max)) = (counts.iter().min(), counts.iter().max()) else {
        return format!("up to {} per concept", data.spec.shapley.permutations);
    };
    let stopped = data
        .summary
        .concepts
        .iter()
        .filter(|c| c.stopped_by_rule)
        .count();
    let range = if min == max {
        format!("{min}")
    } else {
        format!("{min}–{max}")
    };
    format!(
        "{range} per concept (spec: {}){}",
        data.spec.shapley.permutations,
        if stopped > 0 {
            format!("; {stopped} stopped early by the rule")
        } else {
            String::new()
        }
    )
}

/// A colour for F1 from red (0) through amber to green (1).
fn f1_badge(f1: f64) -> String {
    let hue = (f1.clamp(0.0, 1.0) * 120.0).round();
    format!(
        "<span class=\"f1\" style=\"background:hsl({hue},55%,38%)\" title=\"held-out F1 of the \
         concept classifier\">F1 {f1:.3}</span>"
    )
}

fn chips(tops: &[&TopRow]) -> String {
    let mut out = String::from("<div class=\"chips\">");
    for t in tops {
        let _ = write!(
            out,
            "<span class=\"chip {}\" title=\"rank {}: neuron {}, φ = {} ± {}\">#{} {} ±{}</span>",
            if t.phi >= 0.0 { "pos" } else { "neg" },
            t.rank,
            t.neuron,
            t.phi,
            t.stderr,
            t.neuron,
            escape(&number(t.phi)),
            escape(&number(t.stderr))
        );
    }
    out + "</div>"
}

fn hierarchy(data: &ReportData) -> String {
    let h = &data.hierarchy;
    let mut tops: BTreeMap<u32, Vec<&TopRow>> = BTreeMap::new();
    for t in &data.top {
        tops.entry(t.concept).or_default().push(t);
    }
    let perms: BTreeMap<u32, u64> = data
        .summary
        .concepts
        .iter()
        .map(|c| (c.concept, c.n_permutations))
        .collect();
    let open_all = h.concepts().len() <= OPEN_TREE_CONCEPTS;
    let mut seen = BTreeSet::new();
    let mut out = String::new();
    // The hierarchy is a DAG (WordNet has several parents): a concept is drawn in full under
    // the first parent that reaches it, and named with a link under the others.
    fn node(
        id: ConceptId,
        data: &ReportData,
        tops: &BTreeMap<u32, Vec<&TopRow>>,
        perms: &BTreeMap<u32, u64>,
        open_all: bool,
        seen: &mut BTreeSet<ConceptId>,
        out: &mut String,
    ) {
        let c = data.hierarchy.concept(id);
        if !seen.insert(id) {
            let _ = write!(
                out,
                "<li class=\"ref\"><a href=\"#concept-{}\">{}</a> (also under another parent; \
                 shown above)</li>",
                id.0,
                escape(&c.name)
            );
            return;
        }
        let f1 = match data.metrics.get(&id.0) {
            Some(m) => f1_badge(m.f1),
            None => "<span class=\"badge warn\">no classifier</span>".to_string(),
        };
        let perm = perms
            .get(&id.0)
            .map(|n| format!("<span class=\"badge\">{n} permutations</span>"))
            .unwrap_or_default();
        let open = open_all || c.level < 1;
        let _ = write!(
            out,
            "<li id=\"concept-{}\"><details{}><summary><span class=\"name\">{}</span>\
             <span class=\"badge\">level {}</span>{f1}{perm}</summary>{}",
            id.0,
            if open { " open" } else { "" },
            escape(&c.name),
            c.level,
            tops.get(&id.0).map(|t| chips(t)).unwrap_or_default()
        );
        if !c.children.is_empty() {
            out.push_str("<ul>");
            for &child in &c.children {
                node(child, data, tops, perms, open_all, seen, out);
            }
            out.push_str("</ul>");
        }
        out.push_str("</details></li>");
    }
    for root in h.roots() {
        node(root.id, data, &tops, &perms, open_all, &mut seen, &mut out);
    }
    format!(
        "<section id=\"hierarchy\"><h2>Concept hierarchy</h2>\n<p class=\"note\">Each concept \
         with its level, the held-out F1 of its concept classifier and its top {} neurons by \
         Shapley value (#neuron φ ±stderr; red positive, blue negative).</p>\n\
         <div class=\"controls\"><button data-tree=\"open\">expand all</button>\
         <button data-tree=\"close\">collapse all</button></div>\n<ul class=\"tree\">{out}</ul></section>\n",
        data.spec.shapley.top
    )
}

/// A numeric table cell that sorts by its value.
pub(super) fn num_cell(v: f64, text: &str) -> String {
    let key = if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    };
    format!("<td class=\"num\" data-v=\"{key}\">{}</td>", escape(text))
}

fn classifiers(data: &ReportData) -> String {
    let mut rows = String::new();
    let perms: BTreeMap<u32, u64> = data
        .summary
        .concepts
        .iter()
        .map(|c| (c.concept, c.n_permutations))
        .collect();
    for c in data.hierarchy.concepts() {
        let m = data.metrics.get(&c.id.0);
        let metric = |f: fn(&hint_common::classify::ConceptMetrics) -> f64| {
            m.map(|m| num_cell(f(m), &format!("{:.3}", f(m))))
                .unwrap_or_else(|| num_cell(f64::NAN, "—"))
        };
        let _ = write!(
            rows,
            "<tr><td><a href=\"#concept-{}\">{}</a></td>{}{}{}{}{}{}{}</tr>",
            c.id.0,
            escape(&c.name),
            num_cell(f64::from(c.level), &c.level.to_string()),
            metric(|m| m.f1),
            metric(|m| m.accuracy),
            metric(|m| m.precision),
            metric(|m| m.recall),
            m.map(|m| num_cell(m.n_eval as f64, &m.n_eval.to_string()))
                .unwrap_or_else(|| num_cell(f64::NAN, "—")),
            perms
                .get(&c.id.0)
                .map(|&n| num_cell(n as f64, &n.to_string()))
                .unwrap_or_else(|| num_cell(f64::NAN, "—")),
        );
    }
    format!(
        "<section id=\"classifiers\"><h2>Concept classifiers</h2>\n<p class=\"note\">Held-out \
         metrics of each concept's logistic classifier on the layer's region activations \
         (click a column to sort).</p>\n<table class=\"sortable\"><thead><tr><th>concept</th>\
         <th class=\"num\">level</th><th class=\"num\">F1</th><th class=\"num\">accuracy</th>\
         <th class=\"num\">precision</th><th class=\"num\">recall</th>\
         <th class=\"num\">held-out rows</th><th class=\"num\">permutations</th></tr></thead>\
         <tbody>{rows}</tbody></table></section>\n"
    )
}

fn multimodal(data: &ReportData) -> String {
    if data.multimodal.is_empty() {
        return "<section id=\"multimodal\"><h2>Multimodal neurons</h2><p class=\"note\">No \
                neuron is in the top N of two or more concepts.</p></section>\n"
            .to_string();
    }
    let mut rows = String::new();
    let mut order: Vec<_> = data.multimodal.iter().collect();
    order.sort_by_key(|m| {
        (
            std::cmp::Reverse(m.max_same_level),
            std::cmp::Reverse(m.n_concepts),
            m.neuron,
        )
    });
    for m in order {
        let _ = write!(
            rows,
            "<tr{}>{}{}{}<td>{}</td></tr>",
            if m.max_same_level >= 2 {
                " class=\"unexplained\""
            } else {
                ""
            },
            num_cell(f64::from(m.neuron), &m.neuron.to_string()),
            num_cell(f64::from(m.n_concepts), &m.n_concepts.to_string()),
            num_cell(f64::from(m.max_same_level), &m.max_same_level.to_string()),
            escape(&m.concepts.join(", "))
        );
    }
    let unexplained = data
        .multimodal
        .iter()
        .filter(|m| m.max_same_level >= 2)
        .count();
    format!(
        "<section id=\"multimodal\"><h2>Multimodal neurons</h2>\n<p class=\"note\">{} neurons \
         are in the top {} of two or more concepts (listed as name@level#rank). {unexplained} \
         of them (highlighted) are top neurons of two concepts on one level, which the \
         hierarchy does not explain.</p>\n<table class=\"sortable\"><thead><tr>\
         <th class=\"num\">neuron</th><th class=\"num\">concepts</th>\
         <th class=\"num\">most on one level</th><th>concepts (name@level#rank)</th></tr>\
         </thead><tbody>{rows}</tbody></table></section>\n",
        data.multimodal.len(),
        data.spec.shapley.top
    )
}

fn problems(data: &ReportData) -> String {
    let s = &data.summary;
    let mut out =
        String::from("<section id=\"problems\"><h2>Skipped images and quarantined tasks</h2>\n");
    if s.skipped_images.is_empty() {
        out += "<p>No image was skipped.</p>\n";
    } else {
        let _ = write!(
            out,
            "<h3>{} skipped image(s)</h3><table><thead><tr><th>image</th><th>reason</th></tr></thead><tbody>",
            s.skipped_images.len()
        );
        for i in &s.skipped_images {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&i.path),
                escape(&i.reason)
            );
        }
        out += "</tbody></table>\n";
    }
    if s.quarantined_tasks.is_empty() {
        out += "<p>No task was quarantined.</p>\n";
    } else {
        let _ = write!(
            out,
            "<h3>{} quarantined task(s)</h3><table><thead><tr><th>task</th><th class=\"num\">attempts</th>\
             <th>reason</th><th>last error</th></tr></thead><tbody>",
            s.quarantined_tasks.len()
        );
        for t in &s.quarantined_tasks {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.task),
                t.attempts,
                escape(t.reason.as_deref().unwrap_or("")),
                escape(t.message.as_deref().unwrap_or(""))
            );
        }
        out += "</tbody></table>\n";
    }
    if data.skipped_concepts.is_empty() && s.concepts_without_classifier.is_empty() {
        out += "<p>Every concept has a classifier.</p>\n";
    } else {
        out += "<h3>Concepts without a classifier</h3><ul>";
        let mut named = BTreeSet::new();
        for c in &data.skipped_concepts {
            named.insert(c.name.as_str());
            let _ = write!(out, "<li>{}: {}</li>", escape(&c.name), escape(&c.reason));
        }
        for name in &s.concepts_without_classifier {
            if !named.contains(name.as_str()) {
                let _ = write!(
                    out,
                    "<li>{}: its train task did not complete</li>",
                    escape(name)
                );
            }
        }
        out += "</ul>\n";
    }
    out + "</section>\n"
}

//! `concepts.json`: the hierarchy actually used, read back exactly.
//!
//! ```json
//! { "format": "hint-concepts", "version": 1, "name": "wordnet-3.0",
//!   "labels": ["n02110185", …], "label_images": [12, …],
//!   "concepts": [ { "id": 0, "key": "n00015388", "name": "animal.n.01", "level": 0,
//!                   "parents": [], "children": [1, 2], "labels": [0, 1], "images": 20 }, … ] }
//! ```
//! `label_images` and each concept's `images` are absent when image counts are unknown;
//! `images` is derived (the sum over the concept's labels) and checked on reading.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Concept, ConceptId, Hierarchy, HierarchyError, Result};

const FORMAT: &str = "hint-concepts";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    version: u32,
    #[serde(default)]
    name: Option<String>,
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label_images: Option<Vec<u64>>,
    concepts: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    concept: Concept,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    images: Option<u64>,
}

pub(super) fn write(hierarchy: &Hierarchy, path: &Path) -> Result<()> {
    let file = File {
        format: FORMAT.into(),
        version: VERSION,
        name: hierarchy.name.clone(),
        labels: hierarchy.labels.clone(),
        label_images: hierarchy.label_images.clone(),
        concepts: hierarchy
            .concepts
            .iter()
            .map(|c| Record {
                concept: c.clone(),
                images: hierarchy.images(c.id),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).expect("plain data serialises");
    text.push('\n');
    std::fs::write(path, text).map_err(|source| HierarchyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn read(path: &Path) -> Result<Hierarchy> {
    let text = std::fs::read_to_string(path).map_err(|source| HierarchyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: File = serde_json::from_str(&text).map_err(|e| HierarchyError::Syntax {
        path: path.to_path_buf(),
        line: Some(e.line()).filter(|&l| l > 0),
        problem: e.to_string(),
    })?;
    let bad = |problem: String| HierarchyError::Inconsistent {
        path: path.to_path_buf(),
        problem,
    };
    if file.format != FORMAT || file.version != VERSION {
        return Err(bad(format!(
            "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
            file.format, file.version
        )));
    }
    // Every concept's image count is a sum over distinct labels: bounded by this total.
    if let Some(counts) = &file.label_images {
        if counts
            .iter()
            .try_fold(0u64, |sum, &c| sum.checked_add(c))
            .is_none()
        {
            return Err(bad("label_images add up to more than 2^64 images".into()));
        }
    }
    let n = file.concepts.len();
    let concepts: Vec<Concept> = file.concepts.iter().map(|r| r.concept.clone()).collect();
    for (pos, c) in concepts.iter().enumerate() {
        let at = |problem: String| bad(format!("concept {pos} ({}): {problem}", c.key));
        if c.id != ConceptId(pos as u32) {
            return Err(at(format!("id {} is not its position", c.id)));
        }
        if pos > 0 {
            let prev = &concepts[pos - 1];
            if (prev.level, &prev.key) >= (c.level, &c.key) {
                return Err(at("not ordered by (level, key)".into()));
            }
        }
        for list in [&c.parents, &c.children] {
            if list.windows(2).any(|w| w[0] >= w[1]) || list.iter().any(|x| x.index() >= n) {
                return Err(at(
                    "parents/children not sorted, repeated or out of range".into()
                ));
            }
        }
        if c.labels.windows(2).any(|w| w[0] >= w[1]) {
            return Err(at("labels not sorted or repeated".into()));
        }
        // None: a parent's level is u32::MAX (checked, so a cycle cannot pass as levels).
        let expected = c
            .parents
            .iter()
            .map(|p| concepts[p.index()].level.checked_add(1))
            .try_fold(0, |deepest, level| Some(level?.max(deepest)));
        if expected != Some(c.level) {
            return Err(at(format!(
                "level {} but its parents make it {}",
                c.level,
                expected.map_or("more than u32::MAX".into(), |e| e.to_string())
            )));
        }
        for p in &c.parents {
            let parent = &concepts[p.index()];
            if parent.children.binary_search(&c.id).is_err() {
                return Err(at(format!(
                    "parent {} does not list it as a child",
                    parent.key
                )));
            }
            if !c
                .labels
                .iter()
                .all(|l| parent.labels.binary_search(l).is_ok())
            {
                return Err(at(format!("has labels its parent {} lacks", parent.key)));
            }
        }
        for ch in &c.children {
            if concepts[ch.index()].parents.binary_search(&c.id).is_err() {
                return Err(at(format!(
                    "child {} does not list it as a parent",
                    concepts[ch.index()].key
                )));
            }
        }
    }
    let hierarchy =
        Hierarchy::from_concepts(path, file.name, file.labels, file.label_images, concepts)?;
    for r in &file.concepts {
        if r.images.is_some() && r.images != hierarchy.images(r.concept.id) {
            return Err(bad(format!(
                "concept {}: images {:?}, but its labels' counts add up to {:?}",
                r.concept.key,
                r.images,
                hierarchy.images(r.concept.id)
            )));
        }
    }
    Ok(hierarchy)
}

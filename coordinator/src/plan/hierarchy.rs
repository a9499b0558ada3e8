//! The one way hint builds a concept hierarchy above a dataset's labels: from a custom file,
//! a `concepts.json`, or WordNet 3.0, cut by the selection rules. `hint concepts` and the
//! job planner both call [`build`], so a job and a single-machine run over the same labels
//! get the same hierarchy.

use std::path::{Path, PathBuf};

use hint_common::hierarchy::{
    is_wordnet_id, ConceptGraph, Hierarchy, HierarchyError, Selection, WordNet,
};

/// Where the concepts above the labels come from.
#[derive(Clone, Copy, Debug)]
pub enum HierarchySource<'a> {
    /// A custom YAML/JSON file (parent → children), or a `concepts.json` written by
    /// [`Hierarchy::write_json`] (recognised by its `"format": "hint-concepts"`).
    File(&'a Path),
    /// The WordNet 3.0 database in this directory (the labels must be WordNet noun ids).
    WordNet(&'a Path),
}

/// Why [`build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// WordNet was asked for, but a label is not a WordNet noun id.
    #[error("label {label:?} is not a WordNet noun id (like n02084071)")]
    NotWordNetId {
        /// The first such label.
        label: String,
    },
    /// A `concepts.json` was written for other labels (or another label order).
    #[error("{path}: written for other labels: {problem}")]
    OtherLabels {
        /// The concepts.json.
        path: PathBuf,
        /// The first difference.
        problem: String,
    },
    /// Selection rules were given with a `concepts.json`, which is already a selection.
    #[error(
        "{path} is a concepts.json, already a selected hierarchy: selection rules (roots, \
         minimum images, collapse, depth, dropping labels) apply to WordNet or a custom file"
    )]
    SelectionOnConceptsJson {
        /// The concepts.json.
        path: PathBuf,
    },
    /// Reading the source or selecting from it failed (the error names the file).
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
}

/// The hierarchy above `labels` (by label index) with `counts` images per label: read from
/// `source`, then cut by `selection` (see [`hint_common::hierarchy`] for the rules; a
/// `concepts.json` is taken as it is and must name exactly these labels, in this order).
pub fn build(
    source: HierarchySource<'_>,
    selection: &Selection,
    labels: &[String],
    counts: &[u64],
) -> Result<Hierarchy, BuildError> {
    let graph = match source {
        HierarchySource::File(path) => {
            if is_concepts_json(path)? {
                if *selection != Selection::default() {
                    return Err(BuildError::SelectionOnConceptsJson {
                        path: path.to_path_buf(),
                    });
                }
                let hierarchy = Hierarchy::read_json(path)?;
                check_same_labels(path, hierarchy.labels(), labels)?;
                // Its own counts, if any, may be of another image set: this dataset's rule.
                return Ok(hierarchy.with_image_counts(counts.to_vec())?);
            }
            ConceptGraph::from_custom_file(path, labels)?
        }
        HierarchySource::WordNet(dir) => {
            if let Some(bad) = labels.iter().find(|l| !is_wordnet_id(l)) {
                return Err(BuildError::NotWordNetId { label: bad.clone() });
            }
            ConceptGraph::from_wordnet(&WordNet::open(dir)?, labels)?
        }
    };
    Ok(graph.select(selection, Some(counts))?)
}

/// Whether `path` is a `concepts.json` (rather than a custom hierarchy in JSON). Only `.json`
/// files are opened; one that is not valid JSON is left to the custom-file reader, whose
/// error names the line.
fn is_concepts_json(path: &Path) -> Result<bool, BuildError> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !is_json {
        return Ok(false);
    }
    let text = std::fs::read_to_string(path).map_err(|source| HierarchyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(false);
    };
    Ok(value.get("format").and_then(|f| f.as_str()) == Some("hint-concepts"))
}

fn check_same_labels(path: &Path, theirs: &[String], ours: &[String]) -> Result<(), BuildError> {
    let problem = if theirs.len() != ours.len() {
        Some(format!(
            "it has {} labels, the dataset {}",
            theirs.len(),
            ours.len()
        ))
    } else {
        theirs
            .iter()
            .zip(ours)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("label {i} is {a:?} there, {b:?} in the dataset"))
    };
    match problem {
        Some(problem) => Err(BuildError::OtherLabels {
            path: path.to_path_buf(),
            problem,
        }),
        None => Ok(()),
    }
}

//! Φ on disk: `phi.parquet` / `phi.csv` (one row per concept × neuron), the top-N neurons of
//! every concept and the multimodal neurons; `shapley.json` ([`ShapleySummary`]), `hint
//! shapley`'s account of its run.
//!
//! Columns of Φ: `concept` (u32 id), `concept_name` (utf8), `level` (u32), `neuron` (u32),
//! `phi`, `stderr` (f64; stderr NaN with fewer than two samples), `n_permutations` (u64). The
//! Parquet file also carries the run's settings as key/value metadata. Files are written to a
//! `.partial` name and renamed, like the region files.
//!
//! A neuron is *multimodal* when it is in the top-N of at least two concepts. In a hierarchy
//! a neuron of "husky" is naturally also one of "dog": `max_same_level` counts the most of its
//! concepts that share a level — concepts of one level are never ancestor and descendant
//! (a parent's level is always lower), so `max_same_level ≥ 2` is multimodality the hierarchy
//! does not explain.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::{ShapleyError, ShapleyEstimate};
use crate::regions::partial_path;

/// Φ of one concept: an estimate per neuron.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptPhi {
    /// The concept's id (index in the hierarchy).
    pub concept: u32,
    /// Its name for people.
    pub name: String,
    /// Its level in the hierarchy (0 = a root).
    pub level: u32,
    /// φ of every neuron, by neuron index.
    pub estimates: Vec<ShapleyEstimate>,
}

impl ConceptPhi {
    /// Neuron indices by decreasing φ (ties by index; NaN last).
    pub fn ranking(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.estimates.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (
                self.estimates[a as usize].phi,
                self.estimates[b as usize].phi,
            );
            match (x.is_nan(), y.is_nan()) {
                (false, false) => y.total_cmp(&x).then(a.cmp(&b)),
                (nan_x, nan_y) => nan_x.cmp(&nan_y).then(a.cmp(&b)),
            }
        });
        order
    }
}

/// One of the top-N neurons of a concept.
#[derive(Debug, Clone, PartialEq)]
pub struct TopNeuron {
    /// The concept's id.
    pub concept: u32,
    /// The concept's name.
    pub concept_name: String,
    /// The concept's level.
    pub level: u32,
    /// 1 = the largest φ.
    pub rank: u32,
    /// The neuron.
    pub neuron: u32,
    /// Its estimate.
    pub estimate: ShapleyEstimate,
}

/// A neuron in the top-N of two or more concepts.
#[derive(Debug, Clone, PartialEq)]
pub struct MultimodalNeuron {
    /// The neuron.
    pub neuron: u32,
    /// (concept id, name, level, rank) of every concept it is top-N of, by concept id.
    pub concepts: Vec<(u32, String, u32, u32)>,
    /// The most of those concepts on one level (≥ 2: not explained by the hierarchy).
    pub max_same_level: usize,
}

/// The `n` neurons with the largest φ of every concept.
pub fn top_neurons(phis: &[ConceptPhi], n: usize) -> Vec<TopNeuron> {
    phis.iter()
        .flat_map(|c| {
            c.ranking()
                .into_iter()
                .take(n)
                .enumerate()
                .map(move |(r, neuron)| TopNeuron {
                    concept: c.concept,
                    concept_name: c.name.clone(),
                    level: c.level,
                    rank: r as u32 + 1,
                    neuron,
                    estimate: c.estimates[neuron as usize],
                })
        })
        .collect()
}

/// Neurons in the top-`n` of at least two concepts, by neuron index.
pub fn multimodal(phis: &[ConceptPhi], n: usize) -> Vec<MultimodalNeuron> {
    let mut by_neuron: std::collections::BTreeMap<u32, Vec<(u32, String, u32, u32)>> =
        Default::default();
    for top in top_neurons(phis, n) {
        by_neuron.entry(top.neuron).or_default().push((
            top.concept,
            top.concept_name,
            top.level,
            top.rank,
        ));
    }
    by_neuron
        .into_iter()
        .filter(|(_, concepts)| concepts.len() >= 2)
        .map(|(neuron, mut concepts)| {
            concepts.sort_by_key(|c| c.0);
            let mut levels = std::collections::BTreeMap::<u32, usize>::new();
            for c in &concepts {
                *levels.entry(c.2).or_default() += 1;
            }
            MultimodalNeuron {
                neuron,
                max_same_level: levels.values().copied().max().unwrap_or(0),
                concepts,
            }
        })
        .collect()
}

/// Column names of Φ, in order.
pub const PHI_COLUMNS: [&str; 7] = [
    "concept",
    "concept_name",
    "level",
    "neuron",
    "phi",
    "stderr",
    "n_permutations",
];

/// Writes Φ as Parquet with `metadata` (the run's settings) as key/value metadata.
pub fn write_phi_parquet(
    path: &Path,
    phis: &[ConceptPhi],
    metadata: &[(String, String)],
) -> Result<(), ShapleyError> {
    let schema = Arc::new(
        Schema::new(vec![
            Field::new(PHI_COLUMNS[0], DataType::UInt32, false),
            Field::new(PHI_COLUMNS[1], DataType::Utf8, false),
            Field::new(PHI_COLUMNS[2], DataType::UInt32, false),
            Field::new(PHI_COLUMNS[3], DataType::UInt32, false),
            Field::new(PHI_COLUMNS[4], DataType::Float64, false),
            Field::new(PHI_COLUMNS[5], DataType::Float64, false),
            Field::new(PHI_COLUMNS[6], DataType::UInt64, false),
        ])
        .with_metadata(
            metadata
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    );
    let rows = phis.iter().flat_map(|c| {
        c.estimates
            .iter()
            .enumerate()
            .map(move |(d, e)| (c, d as u32, e))
    });
    let (mut concept, mut name, mut level, mut neuron) = (vec![], vec![], vec![], vec![]);
    let (mut phi, mut stderr, mut count) = (vec![], vec![], vec![]);
    for (c, d, e) in rows {
        concept.push(c.concept);
        name.push(c.name.as_str());
        level.push(c.level);
        neuron.push(d);
        phi.push(e.phi);
        stderr.push(e.stderr);
        count.push(e.n_permutations);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(concept)),
        Arc::new(StringArray::from(name)),
        Arc::new(UInt32Array::from(level)),
        Arc::new(UInt32Array::from(neuron)),
        Arc::new(Float64Array::from(phi)),
        Arc::new(Float64Array::from(stderr)),
        Arc::new(UInt64Array::from(count)),
    ];
    let arrow_err = |source| ShapleyError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let parquet_err = |source| ShapleyError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(arrow_err)?;
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ))
        .build();
    atomic_write(path, |file| {
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(parquet_err)?;
        writer.write(&batch).map_err(parquet_err)?;
        writer.close().map_err(parquet_err)?;
        Ok(())
    })
}

/// Writes Φ as CSV with the [`PHI_COLUMNS`] header.
pub fn write_phi_csv(path: &Path, phis: &[ConceptPhi]) -> Result<(), ShapleyError> {
    let mut text = PHI_COLUMNS.join(",") + "\n";
    for c in phis {
        for (d, e) in c.estimates.iter().enumerate() {
            let _ = writeln!(
                text,
                "{},{},{},{d},{},{},{}",
                c.concept,
                csv_field(&c.name),
                c.level,
                e.phi,
                e.stderr,
                e.n_permutations
            );
        }
    }
    write_text(path, &text)
}

/// Writes the top-N table: `concept, concept_name, level, rank, neuron, phi, stderr`.
pub fn write_top_csv(path: &Path, tops: &[TopNeuron]) -> Result<(), ShapleyError> {
    let mut text = String::from("concept,concept_name,level,rank,neuron,phi,stderr\n");
    for t in tops {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{}",
            t.concept,
            csv_field(&t.concept_name),
            t.level,
            t.rank,
            t.neuron,
            t.estimate.phi,
            t.estimate.stderr
        );
    }
    write_text(path, &text)
}

/// Writes the multimodal table: `neuron, n_concepts, max_same_level, concepts` where
/// `concepts` lists `name@level#rank` joined by `;`.
pub fn write_multimodal_csv(path: &Path, neurons: &[MultimodalNeuron]) -> Result<(), ShapleyError> {
    let mut text = String::from("neuron,n_concepts,max_same_level,concepts\n");
    for m in neurons {
        let list: Vec<String> = m
            .concepts
            .iter()
            .map(|(_, name, level, rank)| format!("{name}@{level}#{rank}"))
            .collect();
        let _ = writeln!(
            text,
            "{},{},{},{}",
            m.neuron,
            m.concepts.len(),
            m.max_same_level,
            csv_field(&list.join(";"))
        );
    }
    write_text(path, &text)
}

/// `shapley.json`'s name in `hint shapley`'s output directory.
pub const SHAPLEY_SUMMARY_FILE: &str = "shapley.json";

/// `shapley.json`: what `hint shapley` ran and how each concept went.
///
/// Fields are declared in alphabetical order (here and in the types below): the file was
/// first written from a `serde_json::Value`, whose objects sort their keys, and this keeps its
/// bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapleySummary {
    /// Each concept with a game, in the order computed.
    pub concepts: Vec<ShapleySummaryConcept>,
    /// The most permutations per concept.
    pub max_permutations: u64,
    /// The stopping rule (its `Debug` form), if one was set.
    pub rule: Option<String>,
    /// The Φ files' metadata ([`ShapleySpec::phi_metadata`], the same pairs as `phi.parquet`'s)
    /// with the classifier directory (`hint.shapley.classifiers`).
    ///
    /// [`ShapleySpec::phi_metadata`]: crate::job::spec::ShapleySpec::phi_metadata
    pub settings: BTreeMap<String, String>,
    /// Concepts with a classifier but no game, and why.
    pub skipped: Vec<ShapleySkipped>,
    /// Neurons listed per concept in `top_neurons.csv`.
    pub top: usize,
}

/// One concept's run in `shapley.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapleySummaryConcept {
    /// The concept's id.
    pub concept: u32,
    /// Evaluation regions of its game.
    pub eval_regions: usize,
    /// Its level.
    pub level: u32,
    /// Permutations sampled.
    pub n_permutations: u64,
    /// Its name.
    pub name: String,
    /// Wall-clock seconds of its estimate.
    pub seconds: f64,
    /// The stopping rule held before the budget was spent.
    pub stopped_by_rule: bool,
}

/// A concept `hint shapley` left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapleySkipped {
    /// The concept's id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// Why it has no game.
    pub reason: String,
}

impl ShapleySummary {
    /// The file's text: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises") + "\n"
    }

    /// Writes the file ([`to_json`](Self::to_json)) through a `.partial` name.
    pub fn write(&self, path: &Path) -> Result<(), ShapleyError> {
        write_text(path, &self.to_json())
    }

    /// Reads a `shapley.json`; the error names the file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Quotes a CSV field when it holds a separator, a quote or a line break (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_text(path: &Path, text: &str) -> Result<(), ShapleyError> {
    atomic_write(path, |mut file| {
        file.write_all(text.as_bytes())
            .map_err(|source| ShapleyError::Io {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// Writes through `.<name>.partial` and renames, so a complete-looking file is complete.
fn atomic_write(
    path: &Path,
    write: impl FnOnce(File) -> Result<(), ShapleyError>,
) -> Result<(), ShapleyError> {
    let partial = partial_path(path);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ShapleyError::Io { path: p, source }
    };
    let file = File::create(&partial).map_err(io(&partial))?;
    if let Err(e) = write(file) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concept(id: u32, level: u32, phis: &[f64]) -> ConceptPhi {
        ConceptPhi {
            concept: id,
            name: format!("c,{id}"),
            level,
            estimates: phis
                .iter()
                .map(|&phi| ShapleyEstimate {
                    phi,
                    stderr: 0.1,
                    n_permutations: 8,
                })
                .collect(),
        }
    }

    #[test]
    fn top_and_multimodal() {
        let phis = [
            concept(0, 0, &[0.1, 0.9, 0.5, f64::NAN]),
            concept(1, 1, &[0.8, 0.7, 0.0, 0.1]),
            concept(2, 1, &[0.0, 0.9, 0.1, 0.8]),
        ];
        assert_eq!(phis[0].ranking(), vec![1, 2, 0, 3]);
        let tops = top_neurons(&phis, 2);
        assert_eq!(tops.len(), 6);
        assert_eq!((tops[0].neuron, tops[0].rank), (1, 1));
        let multi = multimodal(&phis, 2);
        assert_eq!(multi.len(), 1);
        assert_eq!(multi[0].neuron, 1);
        assert_eq!(multi[0].concepts.len(), 3);
        assert_eq!(multi[0].max_same_level, 2);
    }

    #[test]
    fn csv_quotes_names_and_files_are_complete() {
        let dir = tempfile::tempdir().unwrap();
        let phis = [concept(3, 2, &[0.5, 0.25])];
        write_phi_csv(&dir.path().join("phi.csv"), &phis).unwrap();
        let text = std::fs::read_to_string(dir.path().join("phi.csv")).unwrap();
        assert_eq!(
            text,
            "concept,concept_name,level,neuron,phi,stderr,n_permutations\n\
             3,\"c,3\",2,0,0.5,0.1,8\n3,\"c,3\",2,1,0.25,0.1,8\n"
        );
        write_phi_parquet(
            &dir.path().join("phi.parquet"),
            &phis,
            &[("mode".into(), "fixed".into())],
        )
        .unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    }

    #[test]
    fn shapley_json_keeps_the_bytes_of_the_value_it_replaced() {
        let summary = ShapleySummary {
            concepts: vec![ShapleySummaryConcept {
                concept: 1,
                eval_regions: 2381,
                level: 1,
                n_permutations: 40,
                name: "animal".into(),
                seconds: 1.109215144,
                stopped_by_rule: true,
            }],
            max_permutations: 400,
            rule: Some("TopKSeparated { k: 2, confidence: 0.95 }".into()),
            settings: [("hint.shapley.seed", "5"), ("hint.shapley.mode", "fixed")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            skipped: vec![ShapleySkipped {
                concept: 7,
                name: "duck".into(),
                reason: "no evaluation regions".into(),
            }],
            top: 2,
        };
        // What `hint shapley` wrote before the type: a `serde_json::json!` value.
        let value = serde_json::json!({
            "settings": summary.settings,
            "max_permutations": 400,
            "rule": "TopKSeparated { k: 2, confidence: 0.95 }",
            "top": 2,
            "concepts": [{"concept": 1, "name": "animal", "level": 1, "eval_regions": 2381,
                          "n_permutations": 40, "stopped_by_rule": true,
                          "seconds": 1.109215144}],
            "skipped": [{"concept": 7, "name": "duck", "reason": "no evaluation regions"}],
        });
        let before = serde_json::to_string_pretty(&value).unwrap() + "\n";
        assert_eq!(summary.to_json(), before);
        let none = ShapleySummary {
            rule: None,
            ..summary.clone()
        };
        assert!(none.to_json().contains("\"rule\": null,"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SHAPLEY_SUMMARY_FILE);
        summary.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(ShapleySummary::read(&path).unwrap(), summary);
    }
}

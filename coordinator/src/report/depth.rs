//! The depth view: how concepts emerge layer by layer (the paper's classifier F1 rising from
//! early to late layers), read from finished jobs that analysed different layers of one
//! network on the same images and hierarchy. `hint depth --job A --job B … --out DIR` writes
//! `depth.html` (self-contained, like report.html), `depth.json` and `depth.csv` (one row
//! per layer and concept, for pandas or a spreadsheet).
//!
//! Per layer it shows each concept's held-out classifier F1, its top neurons by φ, and how
//! concentrated its positive Φ is: the fraction of the layer's neurons that hold half of it
//! and the Gini coefficient of its positive φ over the neurons. Both are width-free (a
//! fraction, an index), since layers differ in width. Means across layers use only the concepts that have a classifier at
//! every layer, so a layer is not flattered by the concepts it could not fit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hint_common::architecture::Architecture;
use hint_common::shapley::phi::csv_field;

use super::data::ReportData;
use super::{depth_html, ReportError};

/// The page's file name in the output directory.
pub const DEPTH_HTML: &str = "depth.html";
/// The figures as JSON.
pub const DEPTH_JSON: &str = "depth.json";
/// One row per layer and concept.
pub const DEPTH_CSV: &str = "depth.csv";

/// Top neurons kept per concept and layer.
pub const TOP_NEURONS: usize = 5;

/// Why a depth view could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    /// A job's files could not be read.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The jobs cannot be compared as layers of one network.
    #[error("{0}")]
    Mismatch(String),
    /// An output could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One analysed layer: a finished job's results.
#[derive(Debug)]
pub struct LayerJob {
    /// The layer's name.
    pub layer: String,
    /// Its job's files.
    pub data: ReportData,
}

/// The depth view: the layers shallow to deep, and the figures computed from them.
#[derive(Debug)]
pub struct DepthView {
    /// The layers, shallow to deep.
    pub layers: Vec<LayerJob>,
    /// What `depth.json` holds.
    pub file: DepthFile,
}

/// `depth.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DepthFile {
    /// `hint-depth`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// The network.
    pub architecture: String,
    /// One summary per layer, shallow to deep.
    pub layers: Vec<LayerSummary>,
    /// Every concept of any layer's hierarchy, by (level, name), with a figure per layer.
    pub concepts: Vec<ConceptDepth>,
    /// Concepts with a classifier at every layer: the ones the layer means average over.
    pub shared_concepts: usize,
    /// What makes the comparison weaker than it looks (differing images, settings, …).
    pub warnings: Vec<String>,
}

/// One layer's summary.
#[derive(Debug, Serialize, Deserialize)]
pub struct LayerSummary {
    /// The layer.
    pub layer: String,
    /// Its job's directory.
    pub job_dir: PathBuf,
    /// Its job's id.
    pub job: String,
    /// Neurons (channels) of the layer.
    pub neurons: usize,
    /// Concepts with a classifier at this layer.
    pub classifiers: usize,
    /// Mean held-out F1 over the shared concepts.
    pub mean_f1: Option<f64>,
    /// The same per hierarchy level.
    pub mean_f1_by_level: Vec<LevelF1>,
    /// Median over the shared concepts with positive Φ of the fraction of neurons that hold
    /// half of the concept's positive Φ (smaller: more concentrated).
    pub median_half_mass_fraction: Option<f64>,
    /// Median over the same concepts of the Gini coefficient of positive Φ.
    pub median_gini: Option<f64>,
    /// Neurons in the top N of two or more concepts (`multimodal.csv`).
    pub multimodal_neurons: usize,
}

/// Mean F1 of one hierarchy level's shared concepts at a layer.
#[derive(Debug, Serialize, Deserialize)]
pub struct LevelF1 {
    /// The level (0: roots).
    pub level: u32,
    /// Mean held-out F1.
    pub mean_f1: f64,
    /// Concepts averaged.
    pub concepts: usize,
}

/// One concept across the layers.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConceptDepth {
    /// Its key in the hierarchy.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its level.
    pub level: u32,
    /// Whether it has a classifier at every layer.
    pub shared: bool,
    /// Per layer, shallow to deep.
    pub layers: Vec<ConceptAtLayer>,
}

/// One concept at one layer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConceptAtLayer {
    /// Held-out F1 of its classifier; None without one.
    pub f1: Option<f64>,
    /// Its top neurons by φ: (neuron, φ).
    pub top: Vec<(u32, f64)>,
    /// How concentrated its positive Φ is; None without Φ or without a positive φ.
    pub concentration: Option<Concentration>,
}

/// How concentrated a concept's positive Φ is over a layer's neurons.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Concentration {
    /// Σ max(φ, 0) over the neurons.
    pub positive_mass: f64,
    /// The fewest neurons whose positive φ sum to half of it.
    pub half_mass_neurons: usize,
    /// That count over the layer's neurons.
    pub half_mass_fraction: f64,
    /// The Gini coefficient of the positive φ over all the layer's neurons: 0 when every
    /// neuron holds the same, (n − 1)/n when one holds it all.
    pub gini: f64,
}

impl Concentration {
    /// Of one φ row (NaN entries, neurons without φ, count as zero); None when no φ is
    /// positive.
    pub fn of(phi: &[f64]) -> Option<Concentration> {
        let mut positive: Vec<f64> = phi
            .iter()
            .map(|&v| if v.is_finite() { v.max(0.0) } else { 0.0 })
            .collect();
        positive.sort_by(|a, b| b.total_cmp(a));
        let mass: f64 = positive.iter().sum();
        if mass <= 0.0 {
            return None;
        }
        let mut sum = 0.0;
        let half_mass_neurons = positive
            .iter()
            .position(|v| {
                sum += v;
                sum >= mass / 2.0
            })
            .map_or(positive.len(), |at| at + 1);
        // Gini = Σ (2i − n − 1) xᵢ / (n Σ x) over the values in ascending order (i from 1).
        let n = positive.len() as f64;
        let weighted: f64 = positive
            .iter()
            .rev()
            .enumerate()
            .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
            .sum();
        Some(Concentration {
            positive_mass: mass,
            half_mass_neurons,
            half_mass_fraction: half_mass_neurons as f64 / phi.len() as f64,
            gini: weighted / (n * mass),
        })
    }
}

impl DepthView {
    /// Reads the jobs in `job_dirs` (any order) and computes the view; refuses jobs that are
    /// not distinct layers of one network or share no concept.
    pub fn read(job_dirs: &[PathBuf]) -> Result<DepthView, DepthError> {
        let mismatch = |m: String| Err(DepthError::Mismatch(m));
        if job_dirs.len() < 2 {
            return mismatch(format!(
                "the depth view compares layers: give at least two job directories (got {})",
                job_dirs.len()
            ));
        }
        let mut layers = Vec::new();
        for dir in job_dirs {
            let data = ReportData::read(dir)?;
            layers.push(LayerJob {
                layer: data.spec.model.layer.clone(),
                data,
            });
        }
        let architecture = layers[0].data.spec.model.architecture.clone();
        let arch = Architecture::parse(&architecture)
            .map_err(|e| DepthError::Mismatch(format!("{}: {e}", job_dirs[0].display())))?;
        let mut keyed = Vec::new();
        for layer in layers {
            let other = &layer.data.spec.model.architecture;
            if *other != architecture {
                return mismatch(format!(
                    "{} analysed {other}, {} analysed {architecture}: the depth view compares \
                     layers of one network",
                    layer.data.job_dir.display(),
                    job_dirs[0].display()
                ));
            }
            let Some(key) = arch.depth_of(&layer.layer) else {
                return mismatch(format!(
                    "{}: {} is not a layer of {architecture}",
                    layer.data.job_dir.display(),
                    layer.layer
                ));
            };
            keyed.push((key, layer));
        }
        keyed.sort_by_key(|(key, _)| *key);
        for pair in keyed.windows(2) {
            let ((a, first), (b, second)) = (&pair[0], &pair[1]);
            if a == b {
                return mismatch(format!(
                    "{} ({}) and {} ({}) analysed the same layer",
                    first.data.job_dir.display(),
                    first.layer,
                    second.data.job_dir.display(),
                    second.layer
                ));
            }
        }
        let layers: Vec<LayerJob> = keyed.into_iter().map(|(_, layer)| layer).collect();
        let file = figures(&layers, architecture)?;
        Ok(DepthView { layers, file })
    }

    /// Writes `depth.html`, `depth.json` and `depth.csv` into `out` (created if missing);
    /// returns the page's path. Each file is written under another name and renamed.
    pub fn write(&self, out: &Path) -> Result<PathBuf, DepthError> {
        let fail = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DepthError::Write { path, source }
        };
        std::fs::create_dir_all(out).map_err(fail(out))?;
        let json = serde_json::to_string_pretty(&self.file).expect("the depth file serialises");
        for (name, text) in [
            (DEPTH_JSON, json),
            (DEPTH_CSV, self.csv()),
            (DEPTH_HTML, depth_html::render(self)),
        ] {
            let path = out.join(name);
            let partial = out.join(format!(".{name}.partial"));
            std::fs::write(&partial, text).map_err(fail(&partial))?;
            std::fs::rename(&partial, &path).map_err(fail(&path))?;
        }
        Ok(out.join(DEPTH_HTML))
    }

    /// `depth.csv`: one row per layer and concept, shallow to deep; empty cells where a
    /// figure is missing.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "layer,depth,concept,concept_name,level,shared,f1,half_mass_neurons,\
             half_mass_fraction,gini,top_neurons\n",
        );
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for (depth, layer) in self.file.layers.iter().enumerate() {
            for concept in &self.file.concepts {
                let at = &concept.layers[depth];
                let c = at.concentration;
                let top: Vec<String> = at.top.iter().map(|(n, _)| n.to_string()).collect();
                let _ = writeln!(
                    out,
                    "{},{depth},{},{},{},{},{},{},{},{},{}",
                    csv_field(&layer.layer),
                    csv_field(&concept.key),
                    csv_field(&concept.name),
                    concept.level,
                    concept.shared,
                    opt(at.f1),
                    c.map(|c| c.half_mass_neurons.to_string())
                        .unwrap_or_default(),
                    opt(c.map(|c| c.half_mass_fraction)),
                    opt(c.map(|c| c.gini)),
                    top.join(";")
                );
            }
        }
        out
    }
}

impl DepthFile {
    /// Reads a `depth.json` that [`DepthView::write`] wrote.
    pub fn read(path: &Path) -> Result<DepthFile, DepthError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            DepthError::Report(ReportError::Read {
                path: path.to_path_buf(),
                source,
            })
        })?;
        serde_json::from_str(&text).map_err(|e| {
            DepthError::Report(ReportError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })
    }

    /// The layers as a text table for a terminal (`hint depth`, `hint run`).
    pub fn table(&self) -> String {
        let width = self
            .layers
            .iter()
            .map(|l| l.layer.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = format!(
            "{:<width$}  {:>7}  {:>7}  {:>13}  {:>11}\n",
            "layer", "neurons", "mean F1", "half of Φ⁺ in", "Gini of Φ⁺"
        );
        let number = |v: Option<f64>, percent: bool| match v {
            Some(v) if percent => format!("{:.1}%", 100.0 * v),
            Some(v) => format!("{v:.3}"),
            None => "—".to_string(),
        };
        for l in &self.layers {
            let _ = writeln!(
                out,
                "{:<width$}  {:>7}  {:>7}  {:>13}  {:>11}",
                l.layer,
                l.neurons,
                number(l.mean_f1, false),
                number(l.median_half_mass_fraction, true),
                number(l.median_gini, false)
            );
        }
        let _ = writeln!(
            out,
            "({} concepts with a classifier at every layer; medians over them)",
            self.shared_concepts
        );
        out
    }
}

/// Every concept at every layer, the layer summaries and the warnings.
fn figures(layers: &[LayerJob], architecture: String) -> Result<DepthFile, DepthError> {
    let mut warnings = differences(layers);
    // Concepts by key, from every layer's hierarchy (the first one's name and level).
    let mut concepts: BTreeMap<String, ConceptDepth> = BTreeMap::new();
    for (depth, layer) in layers.iter().enumerate() {
        let data = &layer.data;
        let phi_row: BTreeMap<u32, usize> = data
            .phi
            .concepts
            .iter()
            .enumerate()
            .map(|(row, (id, _, _))| (*id, row))
            .collect();
        let mut top: BTreeMap<u32, Vec<(u32, f64)>> = BTreeMap::new();
        for t in &data.top {
            let list = top.entry(t.concept).or_default();
            if list.len() < TOP_NEURONS {
                list.push((t.neuron, t.phi));
            }
        }
        for c in data.hierarchy.concepts() {
            let entry = concepts
                .entry(c.key.clone())
                .or_insert_with(|| ConceptDepth {
                    key: c.key.clone(),
                    name: c.name.clone(),
                    level: c.level,
                    shared: false,
                    layers: (0..layers.len())
                        .map(|_| ConceptAtLayer::default())
                        .collect(),
                });
            let n = data.phi.neurons;
            entry.layers[depth] = ConceptAtLayer {
                f1: data.metrics.get(&c.id.0).map(|m| m.f1),
                top: top.remove(&c.id.0).unwrap_or_default(),
                concentration: phi_row
                    .get(&c.id.0)
                    .and_then(|&row| Concentration::of(&data.phi.phi[row * n..(row + 1) * n])),
            };
        }
    }
    let mut concepts: Vec<ConceptDepth> = concepts.into_values().collect();
    for c in &mut concepts {
        c.shared = c.layers.iter().all(|at| at.f1.is_some());
    }
    concepts.sort_by(|a, b| (a.level, &a.name, &a.key).cmp(&(b.level, &b.name, &b.key)));
    let shared = concepts.iter().filter(|c| c.shared).count();
    if shared == 0 {
        return Err(DepthError::Mismatch(
            "no concept has a classifier at every layer: the jobs share no concept to compare"
                .into(),
        ));
    }
    let partial = concepts.len() - shared;
    if partial > 0 {
        warnings.push(format!(
            "{partial} of {} concepts lack a classifier (or the concept) at some layer; the \
             layer means use the {shared} with one at every layer",
            concepts.len()
        ));
    }
    let summaries = layers
        .iter()
        .enumerate()
        .map(|(depth, layer)| summary(depth, layer, &concepts))
        .collect();
    Ok(DepthFile {
        format: "hint-depth".into(),
        version: 1,
        architecture,
        layers: summaries,
        concepts,
        shared_concepts: shared,
        warnings,
    })
}

/// One layer's summary over the shared concepts.
fn summary(depth: usize, layer: &LayerJob, concepts: &[ConceptDepth]) -> LayerSummary {
    let shared: Vec<&ConceptAtLayer> = concepts
        .iter()
        .filter(|c| c.shared)
        .map(|c| &c.layers[depth])
        .collect();
    let f1: Vec<f64> = shared.iter().filter_map(|at| at.f1).collect();
    let mut by_level: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for c in concepts.iter().filter(|c| c.shared) {
        if let Some(f1) = c.layers[depth].f1 {
            by_level.entry(c.level).or_default().push(f1);
        }
    }
    let concentration: Vec<Concentration> =
        shared.iter().filter_map(|at| at.concentration).collect();
    let data = &layer.data;
    LayerSummary {
        layer: layer.layer.clone(),
        job_dir: data.job_dir.clone(),
        job: data.summary.job.clone(),
        neurons: data.phi.neurons,
        classifiers: data.metrics.len(),
        mean_f1: mean(&f1),
        mean_f1_by_level: by_level
            .into_iter()
            .filter_map(|(level, v)| {
                Some(LevelF1 {
                    level,
                    mean_f1: mean(&v)?,
                    concepts: v.len(),
                })
            })
            .collect(),
        median_half_mass_fraction: median(
            concentration.iter().map(|c| c.half_mass_fraction).collect(),
        ),
        median_gini: median(concentration.iter().map(|c| c.gini).collect()),
        multimodal_neurons: data.multimodal.len(),
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// What differs between the jobs besides the layer, each a warning: the comparison is of
/// layers only when images, weights, hierarchy and region settings agree.
fn differences(layers: &[LayerJob]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut differ = |what: &str, of: &dyn Fn(&hint_common::job::JobSpec) -> String| {
        let values: BTreeSet<String> = layers.iter().map(|l| of(&l.data.spec)).collect();
        if values.len() > 1 {
            let each: Vec<String> = layers
                .iter()
                .map(|l| format!("{} at {}", of(&l.data.spec), l.layer))
                .collect();
            warnings.push(format!("the jobs' {what} differ ({})", each.join("; ")));
        }
    };
    differ("images", &|s| s.data.images.display().to_string());
    differ("weights", &|s| s.model.weights.display().to_string());
    differ("hierarchies", &|s| format!("{:?}", s.data.hierarchy));
    differ("saliency methods", &|s| s.extract.method.name().to_string());
    differ("aggregations", &|s| s.extract.aggregation.to_string());
    differ("thresholds", &|s| s.extract.threshold.to_string());
    differ("seeds", &|s| s.seed.to_string());
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concentration_counts_the_neurons_holding_half_the_positive_mass() {
        // Positive mass 10: 4 + 3 reach half; negatives and NaN count as zero.
        let c = Concentration::of(&[3.0, -5.0, 4.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!(c.positive_mass, 10.0);
        assert_eq!(c.half_mass_neurons, 2);
        assert!((c.half_mass_fraction - 2.0 / 6.0).abs() < 1e-12);
        // The Gini coefficient by its mean-difference definition, Σᵢⱼ |xᵢ − xⱼ| / (2 n² x̄),
        // on the same values (the negative and the NaN as zeros).
        let xs = [0.0, 0.0, 1.0, 2.0, 3.0, 4.0];
        let n = xs.len() as f64;
        let mut pairs = 0.0;
        for a in xs {
            for b in xs {
                pairs += f64::abs(a - b);
            }
        }
        let gini = pairs / (2.0 * n * n * (10.0 / n));
        assert!((c.gini - gini).abs() < 1e-12, "{} vs {gini}", c.gini);
        // Spread evenly over 200 neurons: half needs 100, no inequality.
        let even = Concentration::of(&[1.0; 200]).unwrap();
        assert_eq!(even.half_mass_neurons, 100);
        assert!(even.gini.abs() < 1e-12);
        // One neuron holds it all: (n − 1)/n.
        let mut one = vec![0.0; 50];
        one[7] = 2.0;
        assert!((Concentration::of(&one).unwrap().gini - 49.0 / 50.0).abs() < 1e-12);
        assert_eq!(Concentration::of(&[-1.0, 0.0, f64::NAN]), None);
    }

    #[test]
    fn medians_and_means() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
        assert_eq!(mean(&[]), None);
    }
}

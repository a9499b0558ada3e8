//! Reading a finished job's files for the report: `spec.json`, `results/{job.json, phi.csv,
//! top_neurons.csv, multimodal.csv, concepts.json}`, `classifiers/*/metrics.json`, and — when
//! `hint evaluate` has run — `results/wsol.json` with its heatmap PNGs, when `hint ablate`
//! has run — `results/ablation.json`, when `hint explain` wrote into the job —
//! `results/explain/explain.json` with its concept-map PNGs, and when `hint attack` did —
//! `results/attack/attack.json` with its examples' maps, and when `hint sanity` did —
//! `results/sanity/sanity.json`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub use crate::job_file::{ConceptRun, JobSummary, QuarantinedTask, SkippedImage};
use hint_common::ablation::{AblationReport, ABLATION_FILE};
use hint_common::attack::{AttackReport, ATTACK_DIR, ATTACK_FILE};
use hint_common::classify::{ConceptMetrics, MetricsFile, SkippedConcept, METRICS_FILE};
use hint_common::explain::{ExplainReport, EXPLAIN_DIR, EXPLAIN_FILE};
use hint_common::hierarchy::Hierarchy;
use hint_common::job::JobSpec;
use hint_common::sanity::{SanityReport, SANITY_DIR, SANITY_FILE};
use hint_common::wsol::{WsolReport, WSOL_FILE};

use super::csv::csv_table;
use super::ReportError;

/// At most this many heatmap PNGs are embedded, WSOL's and `hint explain`'s together (a few
/// per concept × 1,000 concepts would make a page no browser opens comfortably); the page
/// says how many were left out.
pub const MAX_HEATMAP_IMAGES: usize = 240;
/// And at most this many bytes of them.
pub const MAX_HEATMAP_BYTES: u64 = 24 << 20;

/// Everything the report shows, read from a job directory.
#[derive(Debug)]
pub struct ReportData {
    /// The job directory.
    pub job_dir: PathBuf,
    /// `spec.json`.
    pub spec: JobSpec,
    /// `results/job.json`.
    pub summary: JobSummary,
    /// `results/concepts.json`.
    pub hierarchy: Hierarchy,
    /// `results/phi.csv`.
    pub phi: PhiTable,
    /// `results/top_neurons.csv`, in file order (by concept, then rank).
    pub top: Vec<TopRow>,
    /// `results/multimodal.csv`.
    pub multimodal: Vec<MultimodalRow>,
    /// Classifier metrics of every trained concept, by concept id.
    pub metrics: BTreeMap<u32, ConceptMetrics>,
    /// Concepts the classifier stage skipped, and why.
    pub skipped_concepts: Vec<SkippedConcept>,
    /// `results/wsol.json` and its heatmaps, when `hint evaluate` has run.
    pub wsol: Option<Wsol>,
    /// `results/ablation.json`, when `hint ablate` has run.
    pub ablation: Option<AblationReport>,
    /// `results/explain/explain.json` and its concept maps, when `hint explain` wrote there.
    pub explain: Option<ConceptMaps>,
    /// `results/attack/attack.json` and its examples' maps, when `hint attack` wrote there.
    pub attack: Option<Attacks>,
    /// `results/sanity/sanity.json`, when `hint sanity` wrote there.
    pub sanity: Option<SanityReport>,
}

/// Φ: concepts × neurons.
#[derive(Debug, Default)]
pub struct PhiTable {
    /// The concepts with Φ, by id: (id, name, level).
    pub concepts: Vec<(u32, String, u32)>,
    /// Neurons of the layer.
    pub neurons: usize,
    /// φ, `concepts.len() × neurons`, row-major by concept; NaN where a row is missing.
    pub phi: Vec<f64>,
    /// Standard errors, same layout.
    pub stderr: Vec<f64>,
}

impl PhiTable {
    /// φ of the `c`-th concept (position in `concepts`) and neuron `n`.
    pub fn get(&self, c: usize, n: usize) -> f64 {
        self.phi[c * self.neurons + n]
    }
}

/// A row of `top_neurons.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopRow {
    /// Concept id.
    pub concept: u32,
    /// 1 = the largest φ.
    pub rank: u32,
    /// The neuron.
    pub neuron: u32,
    /// φ.
    pub phi: f64,
    /// Its standard error.
    pub stderr: f64,
}

/// A row of `multimodal.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MultimodalRow {
    /// The neuron.
    pub neuron: u32,
    /// Concepts it is top-N of.
    pub n_concepts: u32,
    /// The most of them on one level.
    pub max_same_level: u32,
    /// Those concepts as `name@level#rank`.
    pub concepts: Vec<String>,
}

/// A JSON file that names PNG files beside it, with those PNGs loaded.
#[derive(Debug)]
pub struct WithPngs<F> {
    /// The file.
    pub file: F,
    /// The embedded PNGs: (index into the file's list of them, PNG bytes).
    pub images: Vec<(usize, Vec<u8>)>,
    /// PNGs not embedded: (index, why).
    pub left_out: Vec<(usize, String)>,
}

/// WSOL results with the heatmap PNGs loaded (indices into `file.heatmaps`).
pub type Wsol = WithPngs<WsolReport>;

/// `hint explain`'s concept maps with their PNGs loaded (indices into `file.maps`).
pub type ConceptMaps = WithPngs<ExplainReport>;

/// A results file whose entries each name a PNG, relative to the file's directory.
trait NamesPngs: serde::de::DeserializeOwned {
    /// The PNGs, in the file's order.
    fn pngs(&self) -> Vec<&str>;
}

impl NamesPngs for WsolReport {
    fn pngs(&self) -> Vec<&str> {
        self.heatmaps.iter().map(|h| h.png.as_str()).collect()
    }
}

impl NamesPngs for ExplainReport {
    fn pngs(&self) -> Vec<&str> {
        self.maps.iter().map(|m| m.png.as_str()).collect()
    }
}

/// `hint attack`'s summaries with its examples' maps loaded (indices into
/// `file.example_pngs()`).
pub type Attacks = WithPngs<AttackReport>;

impl NamesPngs for AttackReport {
    fn pngs(&self) -> Vec<&str> {
        self.example_pngs()
    }
}

/// PNGs read for a page: (index, bytes) of those embedded, (index, why) of the others.
type Embedded = (Vec<(usize, Vec<u8>)>, Vec<(usize, String)>);

/// What is left of the page's allowance for embedded PNGs.
struct PngBudget {
    images: usize,
    bytes: u64,
}

impl PngBudget {
    /// The PNG files `names` (relative to `dir`) that fit: (index, bytes) for those embedded,
    /// (index, why) for the others. Only paths inside `dir` are read: the page embeds what
    /// its files name, nothing else.
    fn embed<'a>(&mut self, dir: &Path, names: impl Iterator<Item = &'a str>) -> Embedded {
        let (mut images, mut left_out) = (Vec::new(), Vec::new());
        for (i, name) in names.enumerate() {
            let relative = Path::new(name);
            if !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                left_out.push((i, format!("not a path inside {}", dir.display())));
                continue;
            }
            if self.images == 0 || self.bytes == 0 {
                left_out.push((i, "over the report's limit".to_string()));
                continue;
            }
            match std::fs::read(dir.join(relative)) {
                Ok(png) if png.starts_with(b"\x89PNG\r\n\x1a\n") => {
                    self.images -= 1;
                    self.bytes = self.bytes.saturating_sub(png.len() as u64);
                    images.push((i, png));
                }
                Ok(_) => left_out.push((i, "not a PNG file".to_string())),
                Err(e) => left_out.push((i, e.to_string())),
            }
        }
        (images, left_out)
    }
}

impl Default for PngBudget {
    fn default() -> Self {
        PngBudget {
            images: MAX_HEATMAP_IMAGES,
            bytes: MAX_HEATMAP_BYTES,
        }
    }
}

impl ReportData {
    /// Reads every file of the finished job in `job_dir`.
    pub fn read(job_dir: &Path) -> Result<ReportData, ReportError> {
        let results = job_dir.join("results");
        let spec_path = job_dir.join("spec.json");
        let spec =
            JobSpec::from_json(&read_text(&spec_path)?).map_err(|e| parse_error(&spec_path, e))?;
        let summary_path = results.join("job.json");
        let summary: JobSummary = serde_json::from_str(&read_text(&summary_path)?)
            .map_err(|e| parse_error(&summary_path, e))?;
        let hierarchy = Hierarchy::read_json(&results.join("concepts.json"))?;
        let phi_path = results.join("phi.csv");
        let phi = parse_phi(&read_text(&phi_path)?).map_err(|m| parse_error(&phi_path, m))?;
        let top_path = results.join("top_neurons.csv");
        let top = parse_top(&read_text(&top_path)?).map_err(|m| parse_error(&top_path, m))?;
        let mm_path = results.join("multimodal.csv");
        let multimodal =
            parse_multimodal(&read_text(&mm_path)?).map_err(|m| parse_error(&mm_path, m))?;
        let (metrics, skipped_concepts) = read_metrics(&job_dir.join("classifiers"))?;
        let mut budget = PngBudget::default();
        // results/wsol.json when `hint evaluate` has run, results/explain/explain.json when
        // `hint explain` wrote into the job, results/attack/attack.json when `hint attack` did.
        let wsol = read_with_pngs(&results, WSOL_FILE, &mut budget)?;
        let ablation = read_ablation(&results)?;
        let explain = read_with_pngs(&results.join(EXPLAIN_DIR), EXPLAIN_FILE, &mut budget)?;
        let attack = read_with_pngs(&results.join(ATTACK_DIR), ATTACK_FILE, &mut budget)?;
        let sanity = read_sanity(&results.join(SANITY_DIR).join(SANITY_FILE))?;
        Ok(ReportData {
            job_dir: job_dir.to_path_buf(),
            spec,
            summary,
            hierarchy,
            phi,
            top,
            multimodal,
            metrics,
            skipped_concepts,
            wsol,
            ablation,
            explain,
            attack,
            sanity,
        })
    }
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, message: impl ToString) -> ReportError {
    ReportError::Parse {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Every `classifiers/*/metrics.json`, merged.
fn read_metrics(
    dir: &Path,
) -> Result<(BTreeMap<u32, ConceptMetrics>, Vec<SkippedConcept>), ReportError> {
    let (mut metrics, mut skipped) = (BTreeMap::new(), Vec::new());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A job whose every train task was quarantined has no classifiers: the page says so.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((metrics, skipped)),
        Err(source) => {
            return Err(ReportError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(METRICS_FILE))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in files {
        let file: MetricsFile =
            serde_json::from_str(&read_text(&path)?).map_err(|e| parse_error(&path, e))?;
        for m in file.concepts {
            metrics.insert(m.id.0, m);
        }
        skipped.extend(file.skipped);
    }
    skipped.sort_by_key(|s| s.id);
    Ok((metrics, skipped))
}

/// The file `name` in `dir` and the PNGs it names (within `budget`); None when there is no
/// such file.
fn read_with_pngs<F: NamesPngs>(
    dir: &Path,
    name: &str,
    budget: &mut PngBudget,
) -> Result<Option<WithPngs<F>>, ReportError> {
    let path = dir.join(name);
    let Some(text) = read_if_there(&path)? else {
        return Ok(None);
    };
    let file: F = serde_json::from_str(&text).map_err(|e| parse_error(&path, e))?;
    let (images, left_out) = budget.embed(dir, file.pngs().into_iter());
    Ok(Some(WithPngs {
        file,
        images,
        left_out,
    }))
}

/// The text of `path`; None when there is no such file.
fn read_if_there(path: &Path) -> Result<Option<String>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `results/ablation.json`; None when `hint ablate` has not run.
/// `sanity.json`, when it exists.
fn read_sanity(path: &Path) -> Result<Option<SanityReport>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReportError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| parse_error(path, e))
}

fn read_ablation(results: &Path) -> Result<Option<AblationReport>, ReportError> {
    let path = results.join(ABLATION_FILE);
    match std::fs::metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReportError::Read { path, source }),
    }
    AblationReport::read(&path).map(Some).map_err(|message| {
        // The reader names the file itself; the error names it once.
        let prefix = format!("{}: ", path.display());
        let message = message
            .strip_prefix(&prefix)
            .unwrap_or(&message)
            .to_string();
        ReportError::Parse { path, message }
    })
}

fn num<T: std::str::FromStr>(field: &str, what: &str) -> Result<T, String> {
    field
        .parse()
        .map_err(|_| format!("{what} {field:?} is not a number"))
}

/// Parses `phi.csv`.
pub fn parse_phi(text: &str) -> Result<PhiTable, String> {
    let columns = hint_common::shapley::phi::PHI_COLUMNS;
    // concept id → (name, level, [(neuron, φ, stderr)])
    type Rows = (String, u32, Vec<(u32, f64, f64)>);
    let mut by_concept: BTreeMap<u32, Rows> = BTreeMap::new();
    let mut neurons = 0usize;
    for record in csv_table(text, &columns)? {
        let r = record?;
        let concept = num(&r[0], "concept")?;
        let neuron: u32 = num(&r[3], "neuron")?;
        let entry = by_concept
            .entry(concept)
            .or_insert_with(|| (r[1].clone(), 0, Vec::new()));
        entry.1 = num(&r[2], "level")?;
        entry
            .2
            .push((neuron, num(&r[4], "phi")?, num(&r[5], "stderr")?));
        neurons = neurons.max(neuron as usize + 1);
    }
    let mut table = PhiTable {
        neurons,
        phi: vec![f64::NAN; by_concept.len() * neurons],
        stderr: vec![f64::NAN; by_concept.len() * neurons],
        concepts: Vec::with_capacity(by_concept.len()),
    };
    for (c, (id, (name, level, values))) in by_concept.into_iter().enumerate() {
        for (n, phi, stderr) in values {
            table.phi[c * neurons + n as usize] = phi;
            table.stderr[c * neurons + n as usize] = stderr;
        }
        table.concepts.push((id, name, level));
    }
    Ok(table)
}

/// Parses `top_neurons.csv`.
pub fn parse_top(text: &str) -> Result<Vec<TopRow>, String> {
    const COLUMNS: [&str; 7] = [
        "concept",
        "concept_name",
        "level",
        "rank",
        "neuron",
        "phi",
        "stderr",
    ];
    csv_table(text, &COLUMNS)?
        .map(|record| {
            let r = record?;
            Ok(TopRow {
                concept: num(&r[0], "concept")?,
                rank: num(&r[3], "rank")?,
                neuron: num(&r[4], "neuron")?,
                phi: num(&r[5], "phi")?,
                stderr: num(&r[6], "stderr")?,
            })
        })
        .collect()
}

/// Parses `multimodal.csv`.
pub fn parse_multimodal(text: &str) -> Result<Vec<MultimodalRow>, String> {
    const COLUMNS: [&str; 4] = ["neuron", "n_concepts", "max_same_level", "concepts"];
    csv_table(text, &COLUMNS)?
        .map(|record| {
            let r = record?;
            Ok(MultimodalRow {
                neuron: num(&r[0], "neuron")?,
                n_concepts: num(&r[1], "n_concepts")?,
                max_same_level: num(&r[2], "max_same_level")?,
                concepts: r[3].split(';').map(str::to_string).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_is_read_into_a_concept_by_neuron_table() {
        let text = "concept,concept_name,level,neuron,phi,stderr,n_permutations\n\
                    3,\"a,b\",1,1,0.5,0.01,8\n3,\"a,b\",1,0,-0.25,NaN,8\n7,c,2,0,1e-3,0,8\n";
        let phi = parse_phi(text).unwrap();
        assert_eq!(
            phi.concepts,
            vec![(3, "a,b".to_string(), 1), (7, "c".to_string(), 2)]
        );
        assert_eq!(phi.neurons, 2);
        assert_eq!(
            (phi.get(0, 0), phi.get(0, 1), phi.get(1, 0)),
            (-0.25, 0.5, 1e-3)
        );
        assert!(phi.get(1, 1).is_nan(), "a missing row is NaN");
        assert!(phi.stderr[0].is_nan());
        let error = parse_phi("concept,neuron\n").unwrap_err();
        assert!(error.contains("header"), "{error}");
        let error = parse_phi(&text.replace("0.5,", "half,")).unwrap_err();
        assert!(error.contains("\"half\""), "{error}");
    }

    #[test]
    fn top_and_multimodal_rows_are_read() {
        let top = parse_top(
            "concept,concept_name,level,rank,neuron,phi,stderr\n0,whole,0,1,63,0.25,0.001\n",
        )
        .unwrap();
        assert_eq!(
            top,
            vec![TopRow {
                concept: 0,
                rank: 1,
                neuron: 63,
                phi: 0.25,
                stderr: 0.001
            }]
        );
        let mm = parse_multimodal(
            "neuron,n_concepts,max_same_level,concepts\n2,2,1,whole@0#4;\"car\"@3#1\n",
        );
        // A quote inside an unquoted field is kept as it is.
        assert_eq!(mm.unwrap()[0].concepts, vec!["whole@0#4", "\"car\"@3#1"]);
        let error = parse_top("concept,concept_name,level,rank,neuron,phi,stderr\n0,1\n");
        assert!(error.unwrap_err().contains("2 fields"));
    }

    #[test]
    fn a_missing_wsol_file_is_none_and_bad_heatmap_paths_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_with_pngs::<WsolReport>(dir.path(), WSOL_FILE, &mut PngBudget::default())
                .unwrap()
                .is_none()
        );
        std::fs::create_dir(dir.path().join("heatmaps")).unwrap();
        std::fs::write(dir.path().join("heatmaps/a.png"), b"\x89PNG\r\n\x1a\nrest").unwrap();
        std::fs::write(dir.path().join("heatmaps/b.png"), b"GIF89a").unwrap();
        std::fs::write(
            dir.path().join("wsol.json"),
            r#"{"fractions":[10],"selections":["shapley"],
                "summary":[{"selection":"shapley","fraction":10,"neurons":7,"images":4,
                            "loc_accuracy":0.5,"pointing":0.75,"mask_iou":null}],
                "concepts":[],
                "heatmaps":[{"concept":1,"name":"a","image":"x.jpg","png":"heatmaps/a.png",
                             "selection":"shapley","fraction":10},
                            {"concept":1,"name":"a","image":"y.jpg","png":"../spec.json",
                             "selection":"shapley","fraction":10},
                            {"concept":2,"name":"b","image":"z.jpg","png":"heatmaps/b.png",
                             "selection":"shapley","fraction":10},
                            {"concept":2,"name":"b","image":"w.jpg","png":"heatmaps/none.png",
                             "selection":"shapley","fraction":10}],
                "threshold":0.5,"seed":0,"neurons":64,"skipped":[]}"#,
        )
        .unwrap();
        let wsol = read_with_pngs::<WsolReport>(dir.path(), WSOL_FILE, &mut PngBudget::default())
            .unwrap()
            .unwrap();
        assert_eq!(wsol.file.summary[0].pointing, 0.75);
        assert_eq!(wsol.file.summary[0].mask_iou, None);
        assert_eq!(wsol.images.len(), 1);
        assert_eq!(wsol.images[0].0, 0);
        let left: Vec<usize> = wsol.left_out.iter().map(|l| l.0).collect();
        assert_eq!(left, vec![1, 2, 3]);
        std::fs::write(dir.path().join("wsol.json"), "{").unwrap();
        assert!(matches!(
            read_with_pngs::<WsolReport>(dir.path(), WSOL_FILE, &mut PngBudget::default()),
            Err(ReportError::Parse { .. })
        ));
        // The writer's type reads the file: a field every version wrote is not optional.
        std::fs::write(dir.path().join("wsol.json"), r#"{"fractions":[10]}"#).unwrap();
        let error = read_with_pngs::<WsolReport>(dir.path(), WSOL_FILE, &mut PngBudget::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing field"), "{error}");
    }

    /// `hint explain`'s maps are read from `results/explain/`, within what the WSOL heatmaps
    /// left of the page's allowance.
    #[test]
    fn concept_maps_share_the_pages_png_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let mut budget = PngBudget {
            images: 2,
            bytes: MAX_HEATMAP_BYTES,
        };
        assert!(
            read_with_pngs::<ExplainReport>(dir.path(), EXPLAIN_FILE, &mut budget)
                .unwrap()
                .is_none()
        );
        let map = |png: &str| hint_common::explain::ConceptMap {
            image: "/photos/bus.jpg".into(),
            concept: 3,
            key: "bus".into(),
            name: "bus".into(),
            png: png.into(),
            height: 1,
            width: 2,
            logits: vec![0.5, -1.0],
            peak: [0, 0],
            peak_probability: 0.62,
            check: None,
        };
        let report = ExplainReport {
            job: "/runs/job-0001".into(),
            model: "tiny_cnn".into(),
            layer: "features.7".into(),
            crop: 64,
            top: None,
            maps: vec![map("a.png"), map("/etc/passwd"), map("b.png"), map("c.png")],
            skipped: Vec::new(),
            boxes: None,
            masks: None,
            threshold: None,
            checks: Vec::new(),
            unchecked: Vec::new(),
        };
        for name in ["a.png", "b.png", "c.png"] {
            std::fs::write(dir.path().join(name), b"\x89PNG\r\n\x1a\nrest").unwrap();
        }
        std::fs::write(dir.path().join(EXPLAIN_FILE), report.to_json()).unwrap();
        let maps = read_with_pngs::<ExplainReport>(dir.path(), EXPLAIN_FILE, &mut budget)
            .unwrap()
            .unwrap();
        assert_eq!(maps.file, report);
        let embedded: Vec<usize> = maps.images.iter().map(|i| i.0).collect();
        assert_eq!(embedded, [0, 2]);
        assert_eq!(maps.left_out.len(), 2);
        assert!(
            maps.left_out[0].1.starts_with("not a path inside"),
            "{:?}",
            maps.left_out
        );
        assert_eq!(maps.left_out[1], (3, "over the report's limit".to_string()));
        assert_eq!(budget.images, 0);
    }

    #[test]
    fn a_missing_ablation_file_is_none_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_ablation(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(ABLATION_FILE), r#"{"model":"tiny_cnn"}"#).unwrap();
        let error = read_ablation(dir.path()).unwrap_err().to_string();
        assert!(error.contains("ablation.json: missing field"), "{error}");
        assert_eq!(error.matches("ablation.json").count(), 1, "{error}");
    }
}

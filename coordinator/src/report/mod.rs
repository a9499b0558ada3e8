//! `report.html`: one self-contained page that explains a finished job, opened offline from
//! `file://` — no CDN, no fetch; the heatmap PNGs are embedded as data URIs and the Φ matrix
//! as a JSON block drawn by a small inline script.
//!
//! The page shows the run's metadata (model, layer, method, seed, timings that `job.json`
//! records, the full spec), a Φ heatmap (neurons × concepts, rows sortable by any concept's φ),
//! the concept hierarchy with each concept's classifier F1 and top-N neurons (φ ± stderr),
//! a table of every concept's classifier metrics, the multimodal neurons, the localisation
//! (WSOL) results and heatmap gallery when `hint evaluate` has run, the causal ablation
//! (curves as inline SVG, Shapley − each baseline with verdicts) when `hint ablate` has run,
//! a gallery of concept maps when `hint explain` wrote into the job's `results/explain/`,
//! the adversarial explanation (per source → target pair, concepts before and after the
//! attack, one example's maps) when `hint attack` wrote into `results/attack/`, the
//! saliency sanity check's cascade when `hint sanity` wrote into `results/sanity/`, and
//! what went wrong (skipped images, quarantined tasks, concepts without a classifier).
//!
//! Scale: a 1,000-concept × 2,048-neuron run would be 2 M heatmap cells, so the heatmap holds
//! at most [`heatmap::MAX_HEATMAP_CELLS`] cells and at most [`heatmap::MAX_HEATMAP_NEURONS`] rows —
//! the neurons whose φ varies most across concepts — and says so; the complete Φ stays in
//! `phi.csv`. The galleries embed at most [`data::MAX_HEATMAP_IMAGES`] PNGs together.

mod ablation;
mod assets;
mod attacks;
mod chart;
mod concept_maps;
mod csv;
pub mod data;
pub mod depth;
mod depth_html;
pub mod heatmap;
pub mod html;
mod localisation;
mod sanity;
pub mod text;

use std::path::{Path, PathBuf};

pub use data::ReportData;

/// The report's file name, in `<job_dir>/results/`.
pub const REPORT_FILE: &str = "report.html";

/// Errors writing a report; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file of the job could not be read (a required one missing: the job is not finished).
    #[error("{path}: {source} (is this the directory of a finished job?)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file of the job is malformed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where there is one.
        message: String,
    },
    /// The hierarchy could not be read.
    #[error(transparent)]
    Hierarchy(#[from] hint_common::hierarchy::HierarchyError),
    /// The report could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Reads the finished job in `job_dir` and writes `<job_dir>/results/report.html`; returns
/// its path.
pub fn write(job_dir: &Path) -> Result<PathBuf, ReportError> {
    let data = ReportData::read(job_dir)?;
    let page = html::render(&data);
    let path = job_dir.join("results").join(REPORT_FILE);
    // Written under another name and renamed, so a reader never sees half a page.
    let partial = path.with_extension("html.partial");
    std::fs::write(&partial, page).map_err(|source| ReportError::Write {
        path: partial.clone(),
        source,
    })?;
    std::fs::rename(&partial, &path).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"name":"x<y","seed":11,"model":{"architecture":"tiny_cnn",
      "weights":"/w/<w>.safetensors","layer":"features.7","resize":null,"crop":null},
      "data":{"images":"/i","labels":null,"hierarchy":{"source":"file","path":"/h.yaml"}},
      "extract":{"method":"integrated_gradients","samples":20,"noise":0.15,"steps":20,
      "baseline":"zero","aggregation":"norm","threshold":0.5,"background_ratio":0.25,
      "activation_type":"f32","batch_size":16,"images_per_task":500},
      "classify":{"max_per_class":20000,"holdout":0.2,"l2":0.001,"iterations":100,
      "tolerance":1e-12,"concepts_per_task":8},
      "shapley":{"mode":"fixed","quality":"log_likelihood","replacement":"marginal",
      "antithetic":true,"permutations":8,"permutations_per_task":8,"until_stderr":null,
      "until_top_k":null,"confidence":0.95,"truncation":null,"retrain_iterations":10,
      "retrain_l2":0.001,"top":2,"sweep_on_device":false},
      "storage":{"root":"/r"},"scheduler":{"max_attempts":3}}"#;

    /// A job whose names and paths are hostile HTML.
    fn job(dir: &Path) {
        let evil = "<script>alert(1)</script>";
        let concepts = serde_json::json!({
            "format": "hint-concepts", "version": 1, "name": "t", "labels": ["a", "b"],
            "concepts": [
                {"id": 0, "key": "r", "name": "all & <b>", "level": 0, "parents": [],
                 "children": [1, 2], "labels": [0, 1]},
                {"id": 1, "key": "s", "name": evil, "level": 1, "parents": [0],
                 "children": [], "labels": [0]},
                {"id": 2, "key": "t", "name": "q\"u'o,te", "level": 1, "parents": [0],
                 "children": [], "labels": [1]}]});
        let results = dir.join("results");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(dir.join("spec.json"), SPEC).unwrap();
        std::fs::write(results.join("concepts.json"), concepts.to_string()).unwrap();
        let names = ["all & <b>", evil, "\"q\"\"u'o,te\""];
        let mut phi = String::from("concept,concept_name,level,neuron,phi,stderr,n_permutations\n");
        let mut top = String::from("concept,concept_name,level,rank,neuron,phi,stderr\n");
        for (c, name) in names.iter().enumerate() {
            let level = usize::from(c > 0);
            for n in 0..3 {
                let v = (c as f64 - n as f64) / 4.0;
                phi += &format!("{c},{name},{level},{n},{v},0.01,8\n");
            }
            top += &format!("{c},{name},{level},1,0,{},0.01\n", c as f64 / 4.0);
        }
        std::fs::write(results.join("phi.csv"), phi).unwrap();
        std::fs::write(results.join("top_neurons.csv"), top).unwrap();
        let multimodal = format!(
            "neuron,n_concepts,max_same_level,concepts\n0,2,2,\"{}@1#1;q\"\"u'o,te@1#1\"\n",
            evil
        );
        std::fs::write(results.join("multimodal.csv"), multimodal).unwrap();
        let summary = serde_json::json!({
            "job": "job-0007", "name": "x<y", "images": 4, "images_processed": 3,
            "skipped_images": [{"path": "/i/<img>.jpg", "reason": evil}],
            "quarantined_tasks": [{"task": "job-0007/train-00000", "attempts": 3,
                                   "reason": "Execution", "message": evil}],
            "concepts": [{"concept": 0, "n_permutations": 8}],
            "concepts_without_classifier": [evil]});
        std::fs::write(results.join("job.json"), summary.to_string()).unwrap();
    }

    #[test]
    fn every_name_and_path_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        job(dir.path());
        let path = write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("results/report.html"));
        let html = std::fs::read_to_string(path).unwrap();
        assert!(!html.contains("<script>alert"), "an unescaped name");
        assert!(!html.contains("<b>"));
        for escaped in [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "all &amp; &lt;b&gt;",
            "q&quot;u&#39;o,te",
            "/i/&lt;img&gt;.jpg",
            "/w/&lt;w&gt;.safetensors",
            "x&lt;y",
        ] {
            assert!(html.contains(escaped), "{escaped} missing");
        }
        // The heatmap's JSON holds the name with `<` as \u003c, which the script reads back.
        assert!(html.contains(r#""name":"\u003cscript>alert(1)\u003c/script>""#));
        assert!(html.contains("run <code>hint evaluate</code> to add localisation results"));
        assert!(html.contains("run <code>hint ablate</code> to add them"));
        assert!(html.contains("<dt>Timings</dt><dd>not recorded in job.json</dd>"));
        assert!(html.contains("<dt>Images processed</dt><dd>3 of 4</dd>"));
        assert!(html.contains("no classifier"));
        assert!(!dir.path().join("results/report.html.partial").exists());
    }

    #[test]
    fn timings_are_shown_when_recorded() {
        let dir = tempfile::tempdir().unwrap();
        job(dir.path());
        let path = dir.path().join("results/job.json");
        let mut summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        summary["submitted_at"] = 1_709_210_096.0.into();
        summary["finished_at"] = 1_709_213_819.0.into();
        summary["timings"] = serde_json::json!({"extract": 61.5});
        std::fs::write(&path, summary.to_string()).unwrap();
        let html = std::fs::read_to_string(write(dir.path()).unwrap()).unwrap();
        assert!(html.contains("<dt>Submitted</dt><dd>2024-02-29 12:34:56 UTC</dd>"));
        assert!(html.contains("<dt>Elapsed</dt><dd>1h 02m 03s</dd>"));
        assert!(html.contains("<dt>extract</dt><dd>1m 02s</dd>"));
        assert!(!html.contains("not recorded"));
    }

    #[test]
    fn a_missing_result_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        job(dir.path());
        std::fs::remove_file(dir.path().join("results/phi.csv")).unwrap();
        let error = write(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("phi.csv") && error.contains("finished job"),
            "{error}"
        );
        std::fs::write(dir.path().join("results/phi.csv"), "concept\n").unwrap();
        let error = write(dir.path()).unwrap_err().to_string();
        assert!(error.contains("phi.csv: header"), "{error}");
    }
}

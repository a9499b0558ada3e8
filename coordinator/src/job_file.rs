//! `results/job.json`: the run's summary. One type, written by the results stage
//! ([`crate::results`]) and read by the report and `hint run`; every field has a default, so
//! files written before a field existed still read.

use std::collections::BTreeMap;

use hint_common::job::JobSpec;
use hint_common::regions::quality::{RegionLift, RegionQuality};
use serde::{Deserialize, Serialize};

/// The file's name under `results/`.
pub const JOB_FILE: &str = "job.json";

/// `results/job.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSummary {
    /// The job id.
    pub job: String,
    /// The job's name.
    pub name: String,
    /// Submission time (Unix seconds).
    pub submitted_at: Option<f64>,
    /// Finishing time (Unix seconds).
    pub finished_at: Option<f64>,
    /// Seconds from a stage's first lease to its last task settling, as the coordinator
    /// that finished the job saw them.
    pub timings: BTreeMap<String, f64>,
    /// The validated spec.
    pub spec: Option<JobSpec>,
    /// Images in the manifest.
    pub images: u64,
    /// Images the extract tasks processed.
    pub images_processed: u64,
    /// Committed region files.
    pub region_files: u64,
    /// Region rows in them.
    pub region_rows: u64,
    /// Region-quality diagnostics (absent in files written before they existed).
    pub region_quality: Option<RegionQuality>,
    /// The object lift of the responsible regions on the evaluated images with a mask, as
    /// the evaluate stage measured it (absent without `[evaluate]` masks).
    pub region_lift: Option<RegionLift>,
    /// Images the extraction skipped.
    pub skipped_images: Vec<SkippedImage>,
    /// Tasks that failed too often.
    pub quarantined_tasks: Vec<QuarantinedTask>,
    /// Concepts with Φ and their permutation counts.
    pub concepts: Vec<ConceptRun>,
    /// Names of concepts without a classifier.
    pub concepts_without_classifier: Vec<String>,
    /// The committed classifier directories' parent.
    pub classifiers: String,
    /// The committed region directory.
    pub regions: String,
}

/// An image the extraction skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SkippedImage {
    /// Its path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A quarantined task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuarantinedTask {
    /// `job-0001/extract-00003`.
    pub task: String,
    /// Attempts made.
    pub attempts: u64,
    /// The last failure's reason.
    pub reason: Option<String>,
    /// The last failure's message.
    pub message: Option<String>,
}

/// A concept's Shapley run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConceptRun {
    /// Concept id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// Its level.
    pub level: u32,
    /// Permutations behind its φ.
    pub n_permutations: u64,
    /// Whether a stopping rule ended it early.
    pub stopped_by_rule: bool,
    /// Whether its blocks cover permutations `0..n` without a gap.
    pub complete: bool,
}

impl JobSummary {
    /// Pretty JSON with a final newline, as written.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_round_trips_and_an_older_file_still_reads() {
        let summary = JobSummary {
            job: "job-0001".into(),
            images: 10,
            images_processed: 9,
            skipped_images: vec![SkippedImage {
                path: "a.jpg".into(),
                reason: "cannot decode".into(),
            }],
            concepts: vec![ConceptRun {
                concept: 2,
                name: "dog".into(),
                n_permutations: 64,
                complete: true,
                ..ConceptRun::default()
            }],
            ..JobSummary::default()
        };
        let back: JobSummary = serde_json::from_str(&summary.to_json()).unwrap();
        assert_eq!(back, summary);
        // A file of an earlier version: no region quality, fewer fields per concept.
        let old: JobSummary = serde_json::from_str(
            r#"{"job":"job-0002","images":4,"concepts":[{"concept":1,"n_permutations":8}],
                "unknown_field":true}"#,
        )
        .unwrap();
        assert_eq!((old.job.as_str(), old.images), ("job-0002", 4));
        assert_eq!(
            (old.concepts[0].concept, old.concepts[0].n_permutations),
            (1, 8)
        );
        assert!(old.region_quality.is_none() && old.spec.is_none());
    }
}

//! Sample: region files → the job's bounded sample of regions, which every train and
//! Shapley task reads instead of streaming all region files again.
//!
//! Round one cuts the committed region files into groups of [`FILES_PER_PART`], one task
//! each, that write partial samples; once they have all committed, one more task merges
//! them (a single part is the sample itself). Samples are bottom-k by a per-row key, so the
//! merge of parts is exactly the sample of the whole (`hint_common::regions::sample`), and Φ
//! does not depend on how the files were grouped.

use std::path::{Path, PathBuf};

use hint_common::job::Stage;
use hint_common::proto;

use super::{in_attempt_dir, other_kind, StageRules, Wire};
use crate::scheduler::job::{Job, Task, TaskState};
use crate::scheduler::records::{Output, TaskSpec};

/// Region files per part. A part reads its files once and holds at most `(labels + 1) ×
/// max_per_class` rows, whatever its size; more parts spread the reading over more workers
/// but make a larger merge.
pub const FILES_PER_PART: usize = 8;

/// The sample stage.
pub struct Sample;

impl StageRules for Sample {
    fn stage(&self) -> Stage {
        Stage::Sample
    }

    /// The parts, once; then, when every part has committed and there are several, the
    /// merge. A job journalled before this stage existed (it already has train tasks)
    /// gets none: its tasks read the region files.
    fn next_tasks(&self, job: &Job, _only: Option<u32>) -> Result<Vec<TaskSpec>, String> {
        if job.has_tasks(Stage::Train) {
            return Ok(Vec::new());
        }
        let tasks: Vec<&Task> = job.stage_tasks(Stage::Sample).collect();
        if tasks.is_empty() {
            let mut files: Vec<String> = job
                .stage_tasks(Stage::Extract)
                .filter_map(|t| match &t.state {
                    TaskState::Done {
                        output: Output::Extract { files, .. },
                        ..
                    } => Some(files.iter().map(|f| f.path.clone())),
                    _ => None,
                })
                .flatten()
                .collect();
            files.sort();
            if files.is_empty() {
                return Err("the committed extract tasks wrote no region file".into());
            }
            return Ok(files
                .chunks(FILES_PER_PART)
                .enumerate()
                .map(|(k, files)| TaskSpec::Sample {
                    index: k as u32,
                    files: files.to_vec(),
                    parts: Vec::new(),
                })
                .collect());
        }
        let merged = tasks
            .iter()
            .any(|t| matches!(&t.spec, TaskSpec::Sample { parts, .. } if !parts.is_empty()));
        if merged || tasks.len() == 1 || !tasks.iter().all(|t| t.is_settled()) {
            return Ok(Vec::new());
        }
        let mut parts = Vec::new();
        for task in &tasks {
            match &task.state {
                TaskState::Done {
                    output: Output::Sample { dir, .. },
                    ..
                } => parts.push(dir.clone()),
                // A lost part would leave its files' rows out of every sample.
                _ => return Err(part_lost(job)),
            }
        }
        Ok(vec![TaskSpec::Sample {
            index: tasks.len() as u32,
            files: Vec::new(),
            parts,
        }])
    }

    /// Training needs the sample: every task must have committed.
    fn check_settled(&self, job: &Job) -> Result<(), String> {
        if job.stage_tasks(Stage::Sample).all(|t| {
            matches!(
                t.state,
                TaskState::Done {
                    output: Output::Sample { .. },
                    ..
                }
            )
        }) {
            Ok(())
        } else {
            Err(part_lost(job))
        }
    }

    fn task_kind(&self, _job: &Job, task: &Task, out_dir: String) -> proto::task::Kind {
        let TaskSpec::Sample {
            index,
            files,
            parts,
        } = &task.spec
        else {
            unreachable!("a sample task has a sample spec")
        };
        proto::task::Kind::Sample(proto::SampleTask {
            part: *index,
            region_files: files.clone(),
            parts: parts.clone(),
            out_dir,
        })
    }

    /// The attempt's directory itself, renamed to `samples/<task>`.
    fn output(
        &self,
        job: &Job,
        task: &Task,
        attempt_dir: &Path,
        wire: Wire,
    ) -> Result<Output, String> {
        let Wire::Sample(out) = wire else {
            return Err(other_kind());
        };
        in_attempt_dir("the sample", &out.dir, attempt_dir)?;
        Ok(Output::Sample {
            from: out.dir,
            dir: job.sample_part_dir(&task.id).display().to_string(),
            rows: out.rows,
        })
    }

    fn owned_place(&self, job: &Job) -> Option<PathBuf> {
        Some(job.job_dir.join("samples"))
    }
}

fn part_lost(job: &Job) -> String {
    format!(
        "the job's sample could not be drawn ({})",
        job.quarantine_summary(Stage::Sample)
    )
}

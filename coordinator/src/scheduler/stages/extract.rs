//! Extract: images → region files, one task per shard of the manifest.

use std::path::{Path, PathBuf};

use hint_common::job::Stage;
use hint_common::proto;

use super::{other_kind, StageRules, Wire};
use crate::plan;
use crate::scheduler::job::{Job, Task, TaskState};
use crate::scheduler::records::{CommittedFile, Output, TaskSpec};

/// The extract stage.
pub struct Extract;

impl StageRules for Extract {
    fn stage(&self) -> Stage {
        Stage::Extract
    }

    /// Every shard at once: [`plan::extract_shards`] of the plan (one tar shard each, or
    /// `images_per_task` manifest positions).
    fn next_tasks(&self, job: &Job, _only: Option<u32>) -> Result<Vec<TaskSpec>, String> {
        if job.has_tasks(Stage::Extract) {
            return Ok(Vec::new());
        }
        let planned = job.running();
        if planned.images == 0 {
            return Err("the image set is empty".into());
        }
        let shards = plan::extract_shards(
            planned.images,
            &planned.tar_shards,
            job.spec.extract.images_per_task,
        );
        Ok(shards
            .into_iter()
            .enumerate()
            .map(|(k, range)| TaskSpec::Extract {
                index: k as u32,
                first: range.start,
                end: range.end,
            })
            .collect())
    }

    /// Training needs region files: at least one shard must have committed.
    fn check_settled(&self, job: &Job) -> Result<(), String> {
        if job
            .stage_tasks(Stage::Extract)
            .any(|t| matches!(t.state, TaskState::Done { .. }))
        {
            Ok(())
        } else {
            Err(format!(
                "every extract task was quarantined ({})",
                job.quarantine_summary(Stage::Extract)
            ))
        }
    }

    fn task_kind(&self, _job: &Job, task: &Task, out_dir: String) -> proto::task::Kind {
        let TaskSpec::Extract { index, first, end } = &task.spec else {
            unreachable!("an extract task has an extract spec")
        };
        proto::task::Kind::Extract(proto::ExtractTask {
            shard: *index,
            first_image: *first,
            end_image: *end,
            out_dir,
        })
    }

    /// Region files written directly in the attempt's directory, committed into `regions/`
    /// under the same names; with several layers, written into the attempt's `<layer>/`
    /// directories and committed into `layers/<layer>/regions/`.
    fn output(
        &self,
        job: &Job,
        _task: &Task,
        attempt_dir: &Path,
        wire: Wire,
    ) -> Result<Output, String> {
        let Wire::Extract(summary) = wire else {
            return Err(other_kind());
        };
        let layers = &job.spec.model.layers;
        let mut files = Vec::new();
        for file in summary.files {
            let from = PathBuf::from(&file.url);
            // One layer: the attempt's directory; several: its `<layer>/` directories.
            let regions = match from.parent() {
                Some(dir) if layers.is_empty() && dir == attempt_dir => Some(job.regions_dir()),
                Some(dir) if dir.parent() == Some(attempt_dir) => dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| layers.iter().any(|l| l == n))
                    .map(|layer| job.layer_dir(layer).join("regions")),
                _ => None,
            };
            let Some(regions) = regions else {
                return Err(format!(
                    "{} is not in the attempt's directory {}{}",
                    from.display(),
                    attempt_dir.display(),
                    if layers.is_empty() {
                        ""
                    } else {
                        " (under a directory named for one of the job's layers)"
                    }
                ));
            };
            let name = from.file_name().ok_or("a region file without a name")?;
            files.push(CommittedFile {
                from: file.url.clone(),
                path: regions.join(name).display().to_string(),
                rows: file.rows,
                foreground: file.foreground_rows,
                background: file.background_rows,
            });
        }
        Ok(Output::Extract {
            files,
            skipped: summary
                .skipped
                .into_iter()
                .map(|s| (s.path, s.reason))
                .collect(),
            images: summary.images_processed,
        })
    }

    /// `regions/`; with several layers, none: the files go to the layers' jobs'
    /// `regions/`, which each layer's job owns.
    fn owned_place(&self, job: &Job) -> Option<PathBuf> {
        job.spec.model.layers.is_empty().then(|| job.regions_dir())
    }
}

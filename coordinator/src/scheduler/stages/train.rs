//! Train: regions → concept classifiers, one task per group of concepts.

use std::path::{Path, PathBuf};

use hint_common::job::Stage;
use hint_common::proto;

use super::{in_attempt_dir, other_kind, StageRules, Wire};
use crate::scheduler::job::{Job, Task, TaskState};
use crate::scheduler::records::{Output, TaskSpec};

/// The train stage.
pub struct Train;

impl StageRules for Train {
    fn stage(&self) -> Stage {
        Stage::Train
    }

    /// Every group at once, `concepts_per_task` concepts each.
    fn next_tasks(&self, job: &Job, _only: Option<u32>) -> Result<Vec<TaskSpec>, String> {
        if job.has_tasks(Stage::Train) {
            return Ok(Vec::new());
        }
        let per = job.spec.classify.concepts_per_task.max(1) as u32;
        let concepts = job.running().concepts;
        Ok((0..concepts.div_ceil(per))
            .map(|k| TaskSpec::Train {
                index: k,
                concepts: (k * per..((k + 1) * per).min(concepts)).collect(),
            })
            .collect())
    }

    /// Shapley needs at least one concept with a classifier and an evaluation split. (Asked
    /// on every completion after training: it stops at the first task that trained one.)
    fn check_settled(&self, job: &Job) -> Result<(), String> {
        let any_trained = job.stage_tasks(Stage::Train).any(|t| {
            matches!(&t.state, TaskState::Done { output: Output::Train { trained, .. }, .. }
                if !trained.is_empty())
        });
        if !any_trained {
            Err(format!(
                "no concept classifier could be trained ({}; see metrics.json in {})",
                job.quarantine_summary(Stage::Train),
                job.job_dir.join("classifiers").display()
            ))
        } else {
            Ok(())
        }
    }

    fn task_kind(&self, job: &Job, task: &Task, out_dir: String) -> proto::task::Kind {
        let TaskSpec::Train { index, concepts } = &task.spec else {
            unreachable!("a train task has a train spec")
        };
        proto::task::Kind::Train(proto::TrainTask {
            part: *index,
            concepts: concepts.clone(),
            regions_dir: job.regions_dir().display().to_string(),
            out_dir,
            samples_dir: job
                .samples_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default(),
        })
    }

    /// The attempt's directory itself, renamed to `classifiers/<task>`; only the task's
    /// concepts may be named trained.
    fn output(
        &self,
        job: &Job,
        task: &Task,
        attempt_dir: &Path,
        wire: Wire,
    ) -> Result<Output, String> {
        let (TaskSpec::Train { concepts, .. }, Wire::Train(out)) = (&task.spec, wire) else {
            return Err(other_kind());
        };
        in_attempt_dir("classifiers", &out.dir, attempt_dir)?;
        if let Some(bad) = out.trained.iter().find(|c| !concepts.contains(c)) {
            return Err(format!("concept {bad} was not part of the task"));
        }
        Ok(Output::Train {
            from: out.dir,
            dir: job.classifiers_dir(&task.id).display().to_string(),
            trained: out.trained,
        })
    }

    fn owned_place(&self, job: &Job) -> Option<PathBuf> {
        Some(job.job_dir.join("classifiers"))
    }
}

//! Evaluate and ablate: the stages that assess Φ once a report wrote it (`[evaluate]` →
//! WSOL, `[ablate]` → causal ablation), one task each; their files are committed into
//! `results/`.

use std::path::{Component, Path};

use hint_common::job::{JobSpec, Stage};
use hint_common::proto;

use super::{in_attempt_dir, other_kind, StageRules, Wire};
use crate::scheduler::job::{Job, Task, TaskState};
use crate::scheduler::records::{MovedFile, Output, TaskSpec};

/// A stage that assesses Φ: one task when the spec has its section.
pub struct Assessment {
    stage: Stage,
    /// Whether the spec asks for it.
    wanted: fn(&JobSpec) -> bool,
    /// Its one task.
    task: TaskSpec,
    /// What that task is told.
    kind: fn(String) -> proto::task::Kind,
}

/// The evaluate stage (`[evaluate]`: WSOL of Φ's selections).
pub static EVALUATE: Assessment = Assessment {
    stage: Stage::Evaluate,
    wanted: |spec| spec.evaluate.is_some(),
    task: TaskSpec::Evaluate { index: 0 },
    kind: |out_dir| proto::task::Kind::Evaluate(proto::EvaluateTask { out_dir }),
};

/// The ablate stage (`[ablate]`: Φ's selections removed in the network).
pub static ABLATE: Assessment = Assessment {
    stage: Stage::Ablate,
    wanted: |spec| spec.ablate.is_some(),
    task: TaskSpec::Ablate { index: 0 },
    kind: |out_dir| proto::task::Kind::Ablate(proto::AblateTask { out_dir }),
};

impl StageRules for Assessment {
    fn stage(&self) -> Stage {
        self.stage
    }

    fn after_report(&self) -> bool {
        true
    }

    fn next_tasks(&self, job: &Job, _only: Option<u32>) -> Result<Vec<TaskSpec>, String> {
        if (self.wanted)(&job.spec) && !job.has_tasks(self.stage) {
            Ok(vec![self.task.clone()])
        } else {
            Ok(Vec::new())
        }
    }

    /// A quarantined assessment fails the job, naming the task (Φ itself was written).
    fn check_settled(&self, job: &Job) -> Result<(), String> {
        if job
            .stage_tasks(self.stage)
            .any(|t| t.state == TaskState::Quarantined)
        {
            Err(format!(
                "{}: {}",
                self.stage,
                job.quarantine_summary(self.stage)
            ))
        } else {
            Ok(())
        }
    }

    fn task_kind(&self, _job: &Job, _task: &Task, out_dir: String) -> proto::task::Kind {
        (self.kind)(out_dir)
    }

    fn output(&self, job: &Job, _: &Task, dir: &Path, wire: Wire) -> Result<Output, String> {
        results(job, dir, wire)
    }

    fn worker_counts_units(&self) -> bool {
        true
    }
}

/// Files named relative to the attempt's directory (plain relative paths only), committed
/// under the same names into `results/`.
fn results(job: &Job, attempt_dir: &Path, wire: Wire) -> Result<Output, String> {
    let Wire::Results(out) = wire else {
        return Err(other_kind());
    };
    in_attempt_dir("results", &out.dir, attempt_dir)?;
    let results = crate::results::results_dir(&job.job_dir);
    let files = out
        .files
        .iter()
        .map(|name| {
            let relative = Path::new(name);
            let plain = relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if name.is_empty() || !plain {
                return Err(format!("{name:?} is not a plain relative path"));
            }
            Ok(MovedFile {
                from: attempt_dir.join(relative).display().to_string(),
                path: results.join(relative).display().to_string(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if files.is_empty() {
        return Err("no result files".into());
    }
    Ok(Output::Results { files })
}

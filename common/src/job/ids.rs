//! Ids of jobs, tasks and workers.
//!
//! A task id is `<job>/<stage>-<index>` (`job-0001/extract-00003`): it names the task, not an
//! attempt, so it is the key under which exactly one completion is committed. Attempts are
//! numbered from 1 and every attempt writes under its own name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job: `job-NNNN`, assigned by the coordinator in submission order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub String);

impl JobId {
    /// The `n`-th job a coordinator accepted (from 1).
    pub fn numbered(n: u64) -> Self {
        JobId(format!("job-{n:04}"))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registered worker: `w-NNNN`, unique for the coordinator's lifetime (restarts included:
/// the number continues from the persisted state).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub String);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stages of a job, in order. `plan` and `report` run on the coordinator; `evaluate`
/// and `ablate` run only when the spec has their section, on Φ that a first report wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Scan the images, build the hierarchy, cut the manifest into shards.
    Plan,
    /// Images → region files (one task per shard).
    Extract,
    /// Region files → the job's bounded sample of regions, read by train and Shapley tasks
    /// (one task per group of region files, then one that merges their parts).
    Sample,
    /// Regions → concept classifiers (one task per group of concepts).
    Train,
    /// Classifiers → partial Shapley sums (one task per concept and permutation block).
    Shapley,
    /// Φ → WSOL with re-fitted classifiers (`[evaluate]`; one task: wsol.json, heatmaps).
    Evaluate,
    /// Φ → causal ablation in the network (`[ablate]`; one task: ablation.json).
    Ablate,
    /// Partial sums → Φ and the result files.
    Report,
}

impl Stage {
    /// Every stage in order.
    pub const ALL: [Stage; 8] = [
        Stage::Plan,
        Stage::Extract,
        Stage::Sample,
        Stage::Train,
        Stage::Shapley,
        Stage::Evaluate,
        Stage::Ablate,
        Stage::Report,
    ];

    /// The stages whose tasks are leased to workers, in order.
    pub const LEASED: [Stage; 6] = [
        Stage::Extract,
        Stage::Sample,
        Stage::Train,
        Stage::Shapley,
        Stage::Evaluate,
        Stage::Ablate,
    ];

    /// The stage's name in ids, logs and status.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Extract => "extract",
            Stage::Sample => "sample",
            Stage::Train => "train",
            Stage::Shapley => "shapley",
            Stage::Evaluate => "evaluate",
            Stage::Ablate => "ablate",
            Stage::Report => "report",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.name() == s)
            .ok_or_else(|| format!("unknown stage {s:?}"))
    }
}

/// A task: the `index`-th task of a stage of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    /// The job.
    pub job: JobId,
    /// The stage.
    pub stage: Stage,
    /// Position among the stage's tasks (Shapley tasks are numbered in planning order).
    pub index: u32,
}

impl TaskId {
    /// The task's directory-safe name without the job: `extract-00003`.
    pub fn local_name(&self) -> String {
        format!("{}-{:05}", self.stage, self.index)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job, self.local_name())
    }
}

impl FromStr for TaskId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a task id (job-NNNN/stage-NNNNN)");
        let (job, local) = s.split_once('/').ok_or_else(bad)?;
        let (stage, index) = local.rsplit_once('-').ok_or_else(bad)?;
        Ok(TaskId {
            job: JobId(job.to_string()),
            stage: stage.parse().map_err(|_| bad())?,
            index: index.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip() {
        let id = TaskId {
            job: JobId::numbered(1),
            stage: Stage::Shapley,
            index: 42,
        };
        assert_eq!(id.to_string(), "job-0001/shapley-00042");
        assert_eq!(id.to_string().parse::<TaskId>().unwrap(), id);
        assert!("job-0001".parse::<TaskId>().is_err());
        assert!("job-0001/cook-00001".parse::<TaskId>().is_err());
    }
}

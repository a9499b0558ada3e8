//! The leased stages, one module each, behind one trait.
//!
//! A stage's module owns everything the coordinator decides about it: when its tasks are
//! cut ([`StageRules::next_tasks`]), what a settled stage means for the job
//! ([`StageRules::check_settled`]), what its tasks are told ([`StageRules::task_kind`]),
//! what a completion must hold and where its files go once committed
//! ([`StageRules::output`]), and which of the job's places only its commits own
//! ([`StageRules::owned_place`]). [`Job::next_step`](super::Job) walks [`STAGES`] in order;
//! the coordinator's commit path and restart sweep dispatch through [`rules`]. All of it is
//! pure (paths, not I/O): the coordinator moves the files.
//!
//! Adding a leased stage on the coordinator is its module and one line in [`STAGES`]; the
//! data it shares with the rest of the system (the `Stage` id, the proto message, the
//! journalled `TaskSpec`/`Output` variants, the worker's runner) is listed in
//! ARCHITECTURE.md.

mod assess;
mod extract;
mod sample;
mod shapley;
mod train;

use std::path::{Path, PathBuf};

use hint_common::job::Stage;
use hint_common::proto;

use super::job::{Job, Task};
use super::records::{Output, TaskSpec};

/// A completion's output as it arrives.
pub type Wire = proto::complete_request::Output;

/// One leased stage's rules.
pub trait StageRules: Sync {
    /// The stage.
    fn stage(&self) -> Stage;

    /// Whether its tasks run on Φ that a report wrote: [`Scheduler::reported`](super::Scheduler::reported)
    /// adds them, and the report runs again once they settle.
    fn after_report(&self) -> bool {
        false
    }

    /// The tasks to add now (none when the stage is open and waits), or why the job cannot
    /// go on. Called once every earlier stage has settled; `only` is the Shapley concept
    /// whose task just settled (None: consider all, as after a restart).
    fn next_tasks(&self, job: &Job, only: Option<u32>) -> Result<Vec<TaskSpec>, String>;

    /// Once every task of the stage has settled: why the job cannot go on, if it cannot.
    fn check_settled(&self, job: &Job) -> Result<(), String>;

    /// What a task of the stage is told (its attempt writes under `out_dir`).
    fn task_kind(&self, job: &Job, task: &Task, out_dir: String) -> proto::task::Kind;

    /// A completion's output, checked against its task and given its committed locations.
    fn output(
        &self,
        job: &Job,
        task: &Task,
        attempt_dir: &Path,
        wire: Wire,
    ) -> Result<Output, String>;

    /// The place in the job directory whose entries only this stage's commits own: after a
    /// restart, an entry there that no commit names is removed.
    fn owned_place(&self, _job: &Job) -> Option<PathBuf> {
        None
    }

    /// Whether a task's work units are the steps its worker reports (not known when it is
    /// cut).
    fn worker_counts_units(&self) -> bool {
        false
    }
}

/// Every leased stage, in the order a job runs them.
pub static STAGES: [&dyn StageRules; 6] = [
    &extract::Extract,
    &sample::Sample,
    &train::Train,
    &shapley::Shapley,
    &assess::EVALUATE,
    &assess::ABLATE,
];

/// The rules of a leased stage.
///
/// # Panics
/// For `plan` and `report`, which run on the coordinator and have no tasks.
pub fn rules(stage: Stage) -> &'static dyn StageRules {
    STAGES
        .iter()
        .copied()
        .find(|rules| rules.stage() == stage)
        .unwrap_or_else(|| panic!("{stage} has no leased tasks"))
}

/// That an output directory is the attempt's own: `what` (classifiers, results) in `dir`.
fn in_attempt_dir(what: &str, dir: &str, attempt_dir: &Path) -> Result<(), String> {
    if Path::new(dir) == attempt_dir {
        Ok(())
    } else {
        Err(format!(
            "{what} in {dir}, expected {}",
            attempt_dir.display()
        ))
    }
}

/// `kind` when the output is of another kind than the task.
fn other_kind() -> String {
    "the output is of another kind than the task".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_holds_every_leased_stage_once_in_order() {
        let stages: Vec<Stage> = STAGES.iter().map(|r| r.stage()).collect();
        assert_eq!(stages, Stage::LEASED);
    }
}

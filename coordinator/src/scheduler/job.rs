//! One job's tasks and the rules that open its stages and Shapley rounds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use hint_common::job::{JobId, JobSpec, Stage, TaskId, WorkerId};
use hint_common::proto;
use hint_common::shapley::{PartialSums, PermutationBlock, StoppingRule};

use super::records::{unhex, Failure, MergedSums, Outcome, Output, Record, Settled, TaskSpec};
use super::stages::{self, STAGES};

/// Where a job is; each phase holds what only it has (no counts before the plan, no error
/// before the end).
#[derive(Debug, Clone, PartialEq)]
pub enum JobPhase {
    /// Waiting for (or running) the plan stage.
    Planning,
    /// Tasks are being leased, cut from the plan's counts.
    Running(Planned),
    /// Ended.
    Ended(Ending),
}

/// What the plan stage found: what tasks are cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Images in the manifest.
    pub images: u64,
    /// Concepts in the hierarchy.
    pub concepts: u32,
    /// Where each tar shard's images begin, when the images are tar members (else empty):
    /// [`crate::plan::Plan::tar_shards`].
    pub tar_shards: Vec<u64>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// Succeeded, failed or cancelled.
    pub outcome: Outcome,
    /// The plan, when the job got that far.
    pub planned: Option<Planned>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}

/// A task's state.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Waiting for a worker.
    Pending,
    /// Leased.
    Running {
        /// To whom.
        worker: WorkerId,
        /// Which attempt.
        attempt: u32,
        /// When the lease expires unless renewed.
        deadline: Instant,
    },
    /// Committed.
    Done {
        /// The attempt committed.
        attempt: u32,
        /// Its output.
        output: Output,
    },
    /// Given up on; named in the results.
    Quarantined,
}

/// A task of a job.
#[derive(Debug, Clone)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// What it does.
    pub spec: TaskSpec,
    /// Attempts started (the last attempt's number).
    pub attempts: u32,
    /// Failures that count toward the limit.
    pub failures: u32,
    /// Its state.
    pub state: TaskState,
    /// The last failure, for status and the results.
    pub last_failure: Option<Failure>,
    /// The attempt of the last failure (0: none failed).
    pub last_failed_attempt: u32,
    /// Progress of the running attempt (units done, total).
    pub progress: (u64, u64),
}

impl Task {
    pub(super) fn is_running(&self, worker: &WorkerId, attempt: u32) -> bool {
        matches!(&self.state, TaskState::Running { worker: w, attempt: a, .. } if w == worker && *a == attempt)
    }

    /// Whether a worker reporting `attempt` may keep it: the task waits for a worker and
    /// that attempt is its latest and never failed — what a coordinator restart leaves.
    pub(super) fn adoptable(&self, attempt: u32) -> bool {
        self.state == TaskState::Pending
            && self.attempts == attempt
            && self.last_failed_attempt < attempt
    }

    pub(super) fn current_attempt(&self) -> Option<u32> {
        match self.state {
            TaskState::Running { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    pub(super) fn accepts(&self, attempt: u32) -> bool {
        let open = matches!(self.state, TaskState::Pending | TaskState::Running { .. });
        open && attempt >= 1 && attempt <= self.attempts
    }

    pub(super) fn renew(&mut self, deadline: Instant, done: u64, total: u64) {
        if let TaskState::Running { deadline: d, .. } = &mut self.state {
            *d = deadline;
        }
        self.progress = (done, total);
    }

    /// Work units of the task: its spec's, or for an evaluate or ablate task the steps its
    /// worker reported.
    pub fn units(&self) -> u64 {
        if stages::rules(self.id.stage).worker_counts_units() {
            self.progress.1.max(1)
        } else {
            self.spec.units()
        }
    }

    /// Whether the task is done or quarantined.
    pub fn is_settled(&self) -> bool {
        matches!(self.state, TaskState::Done { .. } | TaskState::Quarantined)
    }
}

/// A job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The validated spec.
    pub spec: JobSpec,
    /// The spec as workers receive it (once per worker: `PollResponse.jobs`).
    pub spec_json: String,
    /// Its storage root.
    pub job_dir: PathBuf,
    /// Seconds since the Unix epoch at submission.
    pub submitted_at: f64,
    /// When this process learnt of it.
    pub seen_at: Instant,
    /// Where it is.
    pub phase: JobPhase,
    /// Every task, by id (so by stage, then index).
    pub tasks: BTreeMap<TaskId, Task>,
    /// Pending tasks in leasing order.
    pub pending: BTreeSet<TaskId>,
    /// Committed Shapley sums merged per concept (exact: any order gives the same bits).
    pub sums: BTreeMap<u32, PartialSums>,
    /// Tasks per stage: (all, not yet settled) — so a completion is O(1), not a scan.
    counts: BTreeMap<Stage, (usize, usize)>,
    /// Shapley bookkeeping per concept.
    rounds: BTreeMap<u32, Rounds>,
    /// Since when no worker has been registered (None while one is).
    pub no_worker_since: Option<Instant>,
    /// When this process first leased a task of each stage, and when the stage last
    /// settled (for timings; not durable: a restarted coordinator times what it sees).
    pub stage_times: BTreeMap<Stage, (Instant, Option<Instant>)>,
    /// The job with several layers this one analyses one layer of.
    pub parent: Option<JobId>,
    /// A job with several layers: its layers' jobs, shallow to deep, once its extraction
    /// settled ([`Scheduler::fork`](super::Scheduler::fork)).
    pub children: Vec<JobId>,
}

/// A concept's Shapley tasks so far.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rounds {
    /// One past the last permutation planned.
    pub(super) planned_end: u64,
    /// Tasks planned and not settled.
    pub(super) outstanding: u32,
    /// A task was quarantined: no more rounds (Φ rests on the blocks that were committed).
    pub(super) stopped: bool,
}

/// What a job needs next.
pub(super) enum Step {
    Wait,
    Add(Vec<TaskSpec>),
    Fail(String),
    Report,
    /// A job with several layers extracted them all: one job per layer next.
    Fork,
    /// A job with several layers waits for its layers' jobs.
    Children,
}

impl Job {
    pub(super) fn new(
        id: JobId,
        spec: JobSpec,
        spec_json: String,
        job_dir: PathBuf,
        submitted_at: f64,
        now: Instant,
    ) -> Self {
        Job {
            id,
            spec,
            spec_json,
            job_dir,
            submitted_at,
            seen_at: now,
            phase: JobPhase::Planning,
            tasks: BTreeMap::new(),
            pending: BTreeSet::new(),
            sums: BTreeMap::new(),
            counts: BTreeMap::new(),
            rounds: BTreeMap::new(),
            no_worker_since: None,
            stage_times: BTreeMap::new(),
            parent: None,
            children: Vec::new(),
        }
    }

    /// Whether the job analyses several layers (each in a job of its own after extraction).
    pub fn has_layers(&self) -> bool {
        !self.spec.model.layers.is_empty()
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, JobPhase::Ended(_))
    }

    /// Whether the job waits for (or runs) its plan.
    pub fn is_planning(&self) -> bool {
        self.phase == JobPhase::Planning
    }

    /// The plan's counts, once planned (running, or ended after the plan).
    pub fn planned(&self) -> Option<&Planned> {
        match &self.phase {
            JobPhase::Planning => None,
            JobPhase::Running(planned) => Some(planned),
            JobPhase::Ended(ending) => ending.planned.as_ref(),
        }
    }

    /// How it ended (None while it runs).
    pub fn ending(&self) -> Option<&Ending> {
        match &self.phase {
            JobPhase::Ended(ending) => Some(ending),
            _ => None,
        }
    }

    /// Why it failed or was cancelled.
    pub fn error(&self) -> Option<&str> {
        self.ending().and_then(|e| e.error.as_deref())
    }

    /// The counts the leased stages cut tasks from: they run only on a running job.
    pub(super) fn running(&self) -> &Planned {
        match &self.phase {
            JobPhase::Running(planned) => planned,
            _ => unreachable!("stages cut tasks of running jobs only"),
        }
    }

    /// The stage running now: the first leased stage with open tasks; plan before any task,
    /// report once every task from Shapley on has settled (Φ is written before evaluate and
    /// ablate, and again with their results after them).
    pub fn stage(&self) -> Stage {
        let Some(last) = self.tasks.keys().next_back() else {
            return Stage::Plan;
        };
        // Its layers' jobs do the rest; the job itself reports once they end.
        if !self.children.is_empty() {
            return Stage::Report;
        }
        match Stage::LEASED
            .into_iter()
            .find(|&s| self.has_tasks(s) && !self.all_settled(s))
        {
            Some(open) => open,
            None if last.stage >= Stage::Shapley => Stage::Report,
            None => last.stage,
        }
    }

    /// The tasks of one stage.
    pub fn stage_tasks(&self, stage: Stage) -> impl Iterator<Item = &Task> {
        let from = TaskId {
            job: self.id.clone(),
            stage,
            index: 0,
        };
        self.tasks
            .range(from..)
            .map(|(_, t)| t)
            .take_while(move |t| t.id.stage == stage)
    }

    /// Whether every task of `stage` is done or quarantined (true for a stage without tasks).
    pub fn all_settled(&self, stage: Stage) -> bool {
        self.counts.get(&stage).is_none_or(|&(_, open)| open == 0)
    }

    /// Whether `stage` has any task (it opened).
    pub(super) fn has_tasks(&self, stage: Stage) -> bool {
        self.counts.get(&stage).is_some_and(|&(all, _)| all > 0)
    }

    /// A task left the open states (done or quarantined).
    fn settled(&mut self, spec: &TaskSpec, stage: Stage, quarantined: bool, now: Instant) {
        if let Some((_, open)) = self.counts.get_mut(&stage) {
            *open -= 1;
            if *open == 0 {
                if let Some((_, end)) = self.stage_times.get_mut(&stage) {
                    *end = Some(now);
                }
            }
        }
        if let TaskSpec::Shapley { concept, .. } = spec {
            let rounds = self.rounds.entry(*concept).or_default();
            rounds.outstanding -= 1;
            rounds.stopped |= quarantined;
        }
    }

    pub(super) fn plan_done(&mut self, planned: Planned, now: Instant) {
        // Workers cannot have had work before the plan: the grace period starts now.
        if self.no_worker_since.is_some() {
            self.no_worker_since = Some(now);
        }
        self.phase = JobPhase::Running(planned);
    }

    pub(super) fn finished(&mut self, outcome: Outcome, error: Option<String>) {
        self.phase = JobPhase::Ended(Ending {
            outcome,
            planned: self.planned().cloned(),
            error,
        });
        self.pending.clear();
        // Φ is in the job's files now: an ended job keeps no Shapley sums, so neither the
        // coordinator's memory nor its snapshots grow with every job it ever ran (32 bytes
        // per neuron and concept: 29 MB for 1,800 ImageNet concepts at D = 512).
        self.sums.clear();
        self.rounds.clear();
        // Nothing runs for an ended job: its leases are void (workers are told to stop).
        for task in self.tasks.values_mut() {
            if matches!(task.state, TaskState::Running { .. }) {
                task.state = TaskState::Pending;
            }
        }
    }

    pub(super) fn add_task(&mut self, spec: TaskSpec) {
        let stage = spec.stage();
        let id = TaskId {
            job: self.id.clone(),
            stage,
            index: spec.index(),
        };
        if self.tasks.contains_key(&id) {
            return;
        }
        if !self.is_finished() {
            self.pending.insert(id.clone());
        }
        let counts = self.counts.entry(stage).or_default();
        counts.0 += 1;
        counts.1 += 1;
        if let TaskSpec::Shapley { concept, end, .. } = &spec {
            let rounds = self.rounds.entry(*concept).or_default();
            rounds.planned_end = rounds.planned_end.max(*end);
            rounds.outstanding += 1;
        }
        self.tasks.insert(
            id.clone(),
            Task {
                id,
                spec,
                attempts: 0,
                failures: 0,
                state: TaskState::Pending,
                last_failure: None,
                last_failed_attempt: 0,
                progress: (0, 0),
            },
        );
    }

    pub(super) fn lease(&mut self, id: &TaskId, worker: WorkerId, now: Instant, deadline: Instant) {
        self.pending.remove(id);
        self.stage_times.entry(id.stage).or_insert((now, None)).1 = None;
        let task = self.tasks.get_mut(id).expect("leased task exists");
        task.state = TaskState::Running {
            worker,
            attempt: task.attempts,
            deadline,
        };
        task.progress = (0, task.spec.units());
    }

    pub(super) fn attempt_failed(
        &mut self,
        id: &TaskId,
        attempt: u32,
        failure: Failure,
        now: Instant,
    ) {
        let max_attempts = self.spec.scheduler.max_attempts;
        let finished = self.is_finished();
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.is_settled() {
            return;
        }
        if failure.counted {
            task.failures += 1;
        }
        let give_up = !failure.retryable || task.failures >= max_attempts;
        task.last_failed_attempt = attempt;
        task.last_failure = Some(failure);
        if give_up {
            task.state = TaskState::Quarantined;
            let spec = task.spec.clone();
            self.pending.remove(id);
            self.settled(&spec, id.stage, true, now);
        } else {
            task.state = TaskState::Pending;
            if !finished {
                self.pending.insert(id.clone());
            }
        }
    }

    pub(super) fn commit(&mut self, id: &TaskId, attempt: u32, output: Output, now: Instant) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.is_settled() {
            return;
        }
        if let (
            TaskSpec::Shapley {
                concept,
                first,
                end,
                ..
            },
            Output::Shapley { .. },
        ) = (&task.spec, &output)
        {
            let part = decode_sums(&output, PermutationBlock::new(*first, *end))
                .expect("committed sums were checked when they arrived");
            let merged = match self.sums.remove(concept) {
                None => PartialSums::merge([part]),
                Some(acc) => PartialSums::merge([acc, part]),
            }
            .expect("each task is committed once, so blocks never overlap");
            self.sums.insert(*concept, merged);
        }
        // The merged sums hold a Shapley block's sums from now on: the task keeps only its
        // counts, so neither memory nor a snapshot holds every block's sums.
        let output = match output {
            Output::Shapley {
                neurons,
                samples,
                antithetic,
                ..
            } => Output::Shapley {
                neurons,
                samples,
                antithetic,
                sum: String::new(),
                sum_sq: String::new(),
            },
            other => other,
        };
        task.state = TaskState::Done { attempt, output };
        let units = task.units();
        task.progress = (units, units);
        let spec = task.spec.clone();
        self.pending.remove(id);
        self.settled(&spec, id.stage, false, now);
    }

    /// A snapshot's task (see [`Record::TaskRestored`]): its counts and how it settled, as
    /// the records it replaces would have left it. Its sums come with the concept's.
    pub(super) fn restore_task(
        &mut self,
        id: &TaskId,
        (attempts, failures): (u32, u32),
        last_failure: Option<(u32, Failure)>,
        settled: Option<Settled>,
        now: Instant,
    ) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.is_settled() {
            return;
        }
        task.attempts = attempts;
        task.failures = failures;
        (task.last_failed_attempt, task.last_failure) = match last_failure {
            Some((attempt, failure)) => (attempt, Some(failure)),
            None => (0, None),
        };
        let quarantined = match settled {
            None => return,
            Some(Settled::Committed { attempt, output }) => {
                task.state = TaskState::Done { attempt, output };
                let units = task.units();
                task.progress = (units, units);
                false
            }
            Some(Settled::Quarantined) => {
                task.state = TaskState::Quarantined;
                true
            }
        };
        let spec = task.spec.clone();
        self.pending.remove(id);
        self.settled(&spec, id.stage, quarantined, now);
    }

    /// The records that rebuild this job as it is now (a snapshot's part for it): its
    /// submission, plan, tasks, each task that moved, each concept's merged sums, its end.
    /// Leases are left out, as in the journal.
    pub(super) fn snapshot(&self) -> Vec<Record> {
        let job = || self.id.clone();
        let mut records = vec![Record::Submitted {
            job: job(),
            spec_json: self.spec_json.clone(),
            job_dir: self.job_dir.display().to_string(),
            submitted_at: self.submitted_at,
            parent: self.parent.clone(),
        }];
        if let Some(planned) = self.planned() {
            records.push(Record::Planned {
                job: job(),
                images: planned.images,
                concepts: planned.concepts,
                tar_shards: planned.tar_shards.clone(),
            });
        }
        if !self.tasks.is_empty() {
            records.push(Record::TasksAdded {
                job: job(),
                tasks: self.tasks.values().map(|t| t.spec.clone()).collect(),
            });
        }
        for task in self.tasks.values() {
            let settled = match &task.state {
                TaskState::Done { attempt, output } => Some(Settled::Committed {
                    attempt: *attempt,
                    output: output.clone(),
                }),
                TaskState::Quarantined => Some(Settled::Quarantined),
                TaskState::Pending | TaskState::Running { .. } => None,
            };
            let last_failure = task
                .last_failure
                .clone()
                .map(|f| (task.last_failed_attempt, f));
            if task.attempts == 0 && last_failure.is_none() && settled.is_none() {
                continue;
            }
            records.push(Record::TaskRestored {
                task: task.id.clone(),
                attempts: task.attempts,
                failures: task.failures,
                last_failure,
                settled,
            });
        }
        for (&concept, sums) in &self.sums {
            records.push(Record::SumsRestored {
                job: job(),
                concept,
                sums: MergedSums::of(sums),
            });
        }
        if let Some(ending) = self.ending() {
            records.push(Record::Finished {
                job: job(),
                outcome: ending.outcome,
                error: ending.error.clone(),
            });
        }
        records
    }

    pub(super) fn held_by(&self, worker: &WorkerId) -> Vec<(TaskId, u32)> {
        self.tasks
            .values()
            .filter_map(|t| match &t.state {
                TaskState::Running {
                    worker: w, attempt, ..
                } if w == worker => Some((t.id.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn overdue(&self, now: Instant) -> Vec<(TaskId, u32)> {
        self.tasks
            .values()
            .filter_map(|t| match &t.state {
                TaskState::Running {
                    attempt, deadline, ..
                } if *deadline < now => Some((t.id.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    /// The attempt's output directory (extract and train write there; the coordinator
    /// moves what it commits).
    pub fn attempt_dir(&self, id: &TaskId, attempt: u32) -> PathBuf {
        self.job_dir
            .join("attempts")
            .join(format!("{}-a{attempt}", id.local_name()))
    }

    /// Where a train task's classifiers live once committed.
    pub fn classifiers_dir(&self, id: &TaskId) -> PathBuf {
        self.job_dir.join("classifiers").join(id.local_name())
    }

    /// The committed region directory.
    pub fn regions_dir(&self) -> PathBuf {
        self.job_dir.join("regions")
    }

    /// The id of the `k`-th layer's job (from 0, shallow to deep): `<job>.<k + 1>`.
    pub fn child_id(&self, k: usize) -> JobId {
        JobId(format!("{}.{}", self.id, k + 1))
    }

    /// The spec of one layer's job, in a job with several layers: this spec at that layer.
    pub fn layer_spec(&self, layer: &str) -> JobSpec {
        let mut spec = self.spec.clone();
        spec.name = format!("{} @ {layer}", self.spec.name);
        spec.model.layer = layer.to_string();
        spec.model.layers = Vec::new();
        spec
    }

    /// The directory of one layer's job, in a job with several layers.
    pub fn layer_dir(&self, layer: &str) -> PathBuf {
        self.job_dir.join("layers").join(layer)
    }

    /// The committed directory of a sample task.
    pub fn sample_part_dir(&self, id: &TaskId) -> PathBuf {
        self.job_dir.join("samples").join(id.local_name())
    }

    /// The job's committed sample, which train and Shapley tasks read: the sample stage's
    /// last task's output (the merge, or the only part). None for a job planned before the
    /// stage existed, whose tasks read the region files.
    pub fn samples_dir(&self) -> Option<PathBuf> {
        match &self.stage_tasks(Stage::Sample).last()?.state {
            TaskState::Done {
                output: Output::Sample { dir, .. },
                ..
            } => Some(PathBuf::from(dir)),
            _ => None,
        }
    }

    pub(super) fn task_message(&self, id: &TaskId, attempt: u32) -> proto::Task {
        let task = &self.tasks[id];
        let out_dir = self.attempt_dir(id, attempt).display().to_string();
        let kind = stages::rules(id.stage).task_kind(self, task, out_dir);
        proto::Task {
            task_id: id.to_string(),
            job_id: self.id.to_string(),
            attempt,
            job_dir: self.job_dir.display().to_string(),
            kind: Some(kind),
        }
    }

    /// The next step: open a stage, add Shapley rounds, fail, report, or wait. Each leased
    /// stage before the report, in order, may add tasks, must settle, and must leave the
    /// job able to go on; then the report writes Φ. The stages after it (added by
    /// [`Job::assessments`] once a report wrote Φ) must settle, and any that cannot go on
    /// fail the job together, Φ written. `only`: the Shapley concept whose task just
    /// settled (None: consider every concept, as after a restart), so a completion costs
    /// O(1) rather than a scan of the job.
    pub(super) fn next_step(&self, only: Option<u32>) -> Step {
        if !matches!(self.phase, JobPhase::Running(_)) {
            return Step::Wait;
        }
        if self.has_layers() {
            // Extraction here, in one pass for every layer; the rest in the layers' jobs.
            if let Some(step) = self.stage_step(stages::rules(Stage::Extract), only) {
                return step;
            }
            return if self.children.is_empty() {
                Step::Fork
            } else {
                Step::Children
            };
        }
        for rules in STAGES.iter().filter(|r| !r.after_report()) {
            if let Some(step) = self.stage_step(*rules, only) {
                return step;
            }
        }
        let assessing: Vec<_> = STAGES.iter().filter(|r| r.after_report()).collect();
        if !assessing.iter().all(|r| self.all_settled(r.stage())) {
            return Step::Wait;
        }
        let errors: Vec<String> = assessing
            .iter()
            .filter_map(|r| r.check_settled(self).err())
            .collect();
        if !errors.is_empty() {
            return Step::Fail(format!(
                "{} (Φ was written to {})",
                errors.join("; "),
                self.job_dir.join("results").display()
            ));
        }
        Step::Report
    }

    /// What a stage before the report needs: tasks to add, to wait, or to fail; None once it
    /// has settled and the job can go on.
    fn stage_step(&self, rules: &dyn stages::StageRules, only: Option<u32>) -> Option<Step> {
        match rules.next_tasks(self, only) {
            Err(error) => return Some(Step::Fail(error)),
            Ok(tasks) if !tasks.is_empty() => return Some(Step::Add(tasks)),
            Ok(_) => {}
        }
        if !self.all_settled(rules.stage()) {
            return Some(Step::Wait);
        }
        rules.check_settled(self).err().map(Step::Fail)
    }

    /// The tasks that run on Φ once a report has written it (an evaluate task for
    /// `[evaluate]`, an ablate task for `[ablate]`), each unless already added; or why the
    /// job cannot go on.
    pub(super) fn assessments(&self) -> Result<Vec<TaskSpec>, String> {
        let mut tasks = Vec::new();
        for rules in STAGES.iter().filter(|r| r.after_report()) {
            tasks.extend(rules.next_tasks(self, None)?);
        }
        Ok(tasks)
    }

    /// Concepts with a committed classifier and usable evaluation split, with the directory
    /// holding each.
    pub fn trained(&self) -> Vec<(u32, String)> {
        let mut trained = Vec::new();
        for task in self.stage_tasks(Stage::Train) {
            if let TaskState::Done {
                output: Output::Train {
                    dir, trained: ids, ..
                },
                ..
            } = &task.state
            {
                trained.extend(ids.iter().map(|&c| (c, dir.clone())));
            }
        }
        trained.sort();
        trained
    }

    /// A concept's Shapley tasks so far.
    pub(super) fn rounds(&self, concept: u32) -> Rounds {
        self.rounds.get(&concept).copied().unwrap_or_default()
    }

    /// The stopping rule of the spec, if any.
    pub fn rule(&self) -> Option<StoppingRule> {
        self.spec.shapley.stopping_rule()
    }

    /// A completion's output, checked against its task (by the task's stage) and given its
    /// committed locations.
    pub fn check_output(
        &self,
        id: &TaskId,
        attempt: u32,
        wire: proto::complete_request::Output,
    ) -> Result<Output, String> {
        let task = self.tasks.get(id).ok_or("no such task")?;
        stages::rules(id.stage).output(self, task, &self.attempt_dir(id, attempt), wire)
    }

    /// `3 quarantined: extract-00001 (BAD_INPUT: …), …` for error messages.
    pub fn quarantine_summary(&self, stage: Stage) -> String {
        let quarantined: Vec<String> = self
            .stage_tasks(stage)
            .filter(|t| t.state == TaskState::Quarantined)
            .map(|t| match &t.last_failure {
                Some(f) => format!(
                    "{} ({}: {})",
                    t.id.local_name(),
                    super::reason_label(&f.reason),
                    f.message
                ),
                None => t.id.local_name(),
            })
            .collect();
        if quarantined.is_empty() {
            "none quarantined".into()
        } else {
            format!(
                "{} quarantined: {}",
                quarantined.len(),
                quarantined.join("; ")
            )
        }
    }
}

/// The exact sums of a committed Shapley output.
pub fn decode_sums(output: &Output, block: PermutationBlock) -> Option<PartialSums> {
    let Output::Shapley {
        neurons,
        samples,
        antithetic,
        sum,
        sum_sq,
    } = output
    else {
        return None;
    };
    let message = proto::ShapleySums {
        neurons: *neurons,
        samples: *samples,
        antithetic: *antithetic,
        first_permutation: block.start,
        end_permutation: block.end,
        sum: unhex(sum)?,
        sum_sq: unhex(sum_sq)?,
        seconds: 0.0,
    };
    hint_common::job::wire::sums_from_proto(&message).ok()
}

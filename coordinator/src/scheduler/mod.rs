//! The scheduler: every job, task and worker, and the one place their state changes.
//!
//! ```text
//!            lease (poll)             complete (accepted)
//!  Pending ───────────────▶ Running ──────────────────────▶ Done
//!     ▲                       │
//!     │ retryable and         │ fail / lease expired / worker lost
//!     │ attempts < limit      ▼
//!     └────────────────── (judged) ──── not retryable, or limit reached ──▶ Quarantined
//! ```
//!
//! The scheduler is a plain state machine: no I/O, no clock of its own (`now` is passed in),
//! so the harness in `tests.rs` drives it with virtual workers and virtual time. Durable facts
//! are [`Record`]s: every change that must survive a restart is made by building a record and
//! applying it ([`Scheduler::apply`], also used to replay the journal), then queued in the
//! outbox for the journal. Leases are not durable: after a restart every task that was
//! running is pending again, with its attempt count intact.
//!
//! Stages open when the previous one has settled (every task done or quarantined):
//! plan (on the coordinator) → extract → train → shapley (more rounds while a stopping rule
//! asks for them) → report (on the coordinator). With `[evaluate]` or `[ablate]`, the report
//! that wrote Φ opens evaluate and ablate ([`Scheduler::reported`]), which run on that Φ,
//! and the report runs again with their results.

mod job;
pub mod records;
pub mod stages;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hint_common::job::{JobId, JobSpec, Stage, TaskId, WorkerId};
use hint_common::proto;

pub use job::{decode_sums, Ending, Job, JobPhase, Planned, Task, TaskState};
pub use records::{Failure, MergedSums, MovedFile, Outcome, Output, Record, Settled, TaskSpec};

/// Timing rules of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// A lease not renewed by a poll within this expires (the task is retried) and a worker
    /// not heard from within this is lost.
    pub lease_timeout: Duration,
    /// A running job with no live worker for this long fails.
    pub worker_grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease_timeout: Duration::from_secs(30),
            worker_grace: Duration::from_secs(600),
        }
    }
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Name it gave (host or pod).
    pub name: String,
    /// Its device.
    pub device: String,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Last poll.
    pub last_seen: Instant,
}

/// A task a worker reports as running: (task, attempt, units done, units total).
pub type RunningTask = (TaskId, u32, u64, u64);

/// A poll's answer: new leases, and held tasks the worker should stop.
pub type PollOutcome = (Vec<proto::Task>, Vec<(TaskId, u32)>);

/// What the coordinator must do outside the scheduler (I/O) for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the plan stage, then apply [`Record::Planned`] (or finish the job failed).
    Plan(JobId),
    /// Compute Φ and write the results, then apply [`Record::Finished`].
    Report(JobId),
    /// A job with several layers extracted them: give each layer's job its files (its
    /// spec and the plan's files), then call [`Scheduler::fork`].
    Fork(JobId),
}

/// The answer to a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// This attempt's output is the task's committed output.
    Accepted,
    /// Another attempt was committed already, or the job ended: drop the output.
    Rejected,
}

/// Errors of the worker-facing calls.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerError {
    /// The worker is not registered (the coordinator restarted, or it was declared lost).
    #[error("unknown worker {0}: register again")]
    UnknownWorker(WorkerId),
    /// The task does not exist.
    #[error("unknown task {0}")]
    UnknownTask(String),
    /// The job does not exist.
    #[error("unknown job {0}")]
    UnknownJob(String),
}

/// Every job, task and worker.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    incarnation: u32,
    next_worker: u64,
    jobs: BTreeMap<JobId, Job>,
    workers: HashMap<WorkerId, Worker>,
    outbox: Vec<Record>,
    version: u64,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            incarnation: 0,
            next_worker: 0,
            jobs: BTreeMap::new(),
            workers: HashMap::new(),
            outbox: Vec::new(),
            version: 0,
        }
    }

    /// Rebuilds the state from the journal's records and starts a new incarnation
    /// ([`Scheduler::resume`]).
    pub fn recover(
        config: SchedulerConfig,
        records: impl IntoIterator<Item = Record>,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let mut scheduler = Scheduler::new(config);
        for record in records {
            scheduler.apply(&record, now);
        }
        let actions = scheduler.resume(now);
        (scheduler, actions)
    }

    /// After the journal's records were applied to a new scheduler: starts a new incarnation
    /// (its [`Record::Started`] is in the outbox). Jobs that were running resume; the
    /// returned actions (plans and reports that did not finish) must be run again.
    pub fn resume(&mut self, now: Instant) -> Vec<Action> {
        let incarnation = self.incarnation + 1;
        self.record(Record::Started { incarnation }, now);
        let mut actions = Vec::new();
        let ids: Vec<JobId> = self.jobs.keys().cloned().collect();
        for id in ids {
            let job = self.jobs.get_mut(&id).expect("listed job");
            job.no_worker_since = Some(now);
            if job.is_planning() {
                actions.push(Action::Plan(id.clone()));
            }
            actions.extend(self.advance(&id, None, now));
        }
        actions
    }

    /// The records that rebuild the state as it is now, for a snapshot of the journal
    /// (`crate::journal`): replaying them gives what replaying every record so far gives
    /// (leases and workers aside, which no record holds), with one replay path for both.
    /// Call it with an empty outbox, so that the state is exactly what the journal holds.
    pub fn snapshot(&self) -> Vec<Record> {
        debug_assert!(self.outbox.is_empty(), "records not yet journalled");
        let mut records = vec![Record::Started {
            incarnation: self.incarnation,
        }];
        for job in self.jobs.values() {
            records.extend(job.snapshot());
        }
        records
    }

    /// Takes the records made since the last call (for the journal, in order).
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.outbox)
    }

    /// Bumped on every change (status watchers wait on it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The jobs, in submission order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// One job.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Registered, live workers.
    pub fn workers(&self) -> &HashMap<WorkerId, Worker> {
        &self.workers
    }

    /// Accepts a job (already validated; its storage is `<storage.root>/<job-id>`) and asks
    /// for its plan.
    pub fn submit(&mut self, spec: &JobSpec, submitted_at: f64, now: Instant) -> (JobId, Action) {
        // Layers' jobs are numbered under their job, not among submissions.
        let submitted = self.jobs.values().filter(|j| j.parent.is_none()).count();
        let id = JobId::numbered(submitted as u64 + 1);
        let job_dir = spec.storage.root.join(&id.0);
        self.record(
            Record::Submitted {
                job: id.clone(),
                spec_json: spec.to_json(),
                job_dir: job_dir.display().to_string(),
                submitted_at,
                parent: None,
            },
            now,
        );
        if self.workers.is_empty() {
            self.jobs.get_mut(&id).expect("just added").no_worker_since = Some(now);
        }
        (id.clone(), Action::Plan(id))
    }

    /// The plan stage finished: the extract stage opens.
    pub fn planned(&mut self, job: &JobId, planned: Planned, now: Instant) -> Vec<Action> {
        if !self.jobs.get(job).is_some_and(Job::is_planning) {
            return Vec::new();
        }
        let Planned {
            images,
            concepts,
            tar_shards,
        } = planned;
        self.record(
            Record::Planned {
                job: job.clone(),
                images,
                concepts,
                tar_shards,
            },
            now,
        );
        self.advance(job, None, now)
    }

    /// Ends a job (plan failure, report written, cancel). A job already ended stays as it is.
    /// Its layers' jobs still running end with it; when it is one layer's job and the last
    /// of its siblings to end, the job with the layers reports (the returned action).
    pub fn finish(
        &mut self,
        job: &JobId,
        outcome: Outcome,
        error: Option<String>,
        now: Instant,
    ) -> Vec<Action> {
        let Some(ending) = self.jobs.get(job).filter(|j| !j.is_finished()) else {
            return Vec::new();
        };
        let (children, parent) = (ending.children.clone(), ending.parent.clone());
        let why = format!(
            "{job} {}{}",
            outcome.as_str(),
            error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        self.record(
            Record::Finished {
                job: job.clone(),
                outcome,
                error,
            },
            now,
        );
        for child in children {
            let outcome = match outcome {
                Outcome::Succeeded => Outcome::Failed,
                other => other,
            };
            self.finish(&child, outcome, Some(why.clone()), now);
        }
        match parent {
            Some(parent) => self.advance(&parent, None, now),
            None => Vec::new(),
        }
    }

    /// A job with several layers extracted them (and the coordinator gave each layer's
    /// directory its spec and the plan's files): one job per layer, shallow to deep, each
    /// starting with this job's committed extract tasks as its own, their files those of
    /// its layer. The layers' jobs then run on like any job. One record, so a crash never
    /// leaves some of the layers' jobs without the others.
    pub fn fork(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        let can = self.jobs.get(job).is_some_and(|j| {
            j.has_layers() && j.children.is_empty() && matches!(j.phase, JobPhase::Running(_))
        });
        if !can {
            return Vec::new();
        }
        self.record(Record::Forked { job: job.clone() }, now);
        let mut actions = self.advance(job, None, now);
        for child in self.jobs[job].children.clone() {
            actions.extend(self.advance(&child, None, now));
        }
        actions
    }

    /// The records that make the layers' jobs of `job` ([`Record::Forked`]): each one's
    /// submission, plan, and extract tasks committed with its layer's files.
    fn layer_jobs(&self, job: &JobId) -> Vec<Record> {
        let Some(parent) = self.jobs.get(job) else {
            return Vec::new();
        };
        let JobPhase::Running(planned) = &parent.phase else {
            return Vec::new();
        };
        let done: Vec<(&Task, u32, &Output)> = parent
            .stage_tasks(Stage::Extract)
            .filter_map(|t| match &t.state {
                TaskState::Done { attempt, output } => Some((t, *attempt, output)),
                _ => None,
            })
            .collect();
        let mut records = Vec::new();
        for (k, layer) in parent.spec.model.layers.iter().enumerate() {
            let child = parent.child_id(k);
            records.push(Record::Submitted {
                job: child.clone(),
                spec_json: parent.layer_spec(layer).to_json(),
                job_dir: parent.layer_dir(layer).display().to_string(),
                submitted_at: parent.submitted_at,
                parent: Some(job.clone()),
            });
            records.push(Record::Planned {
                job: child.clone(),
                images: planned.images,
                concepts: planned.concepts,
                tar_shards: planned.tar_shards.clone(),
            });
            records.push(Record::TasksAdded {
                job: child.clone(),
                tasks: done.iter().map(|(t, _, _)| t.spec.clone()).collect(),
            });
            let regions = parent.layer_dir(layer).join("regions");
            for &(task, attempt, output) in &done {
                records.push(Record::Committed {
                    task: TaskId {
                        job: child.clone(),
                        ..task.id.clone()
                    },
                    attempt,
                    output: output.of_layer(&regions),
                });
            }
        }
        records
    }

    /// The report wrote Φ and the result files. A job with `[evaluate]` or `[ablate]`
    /// whose tasks have not run yet gets them now (they read that Φ); any other job has
    /// succeeded.
    ///
    /// A job with several layers reported on its layers' jobs, which have all ended: it
    /// succeeded when each of them did.
    pub fn reported(&mut self, job: &JobId, now: Instant) -> Vec<Action> {
        let Some(ending) = self.jobs.get(job).filter(|j| !j.is_finished()) else {
            return Vec::new();
        };
        if !ending.children.is_empty() {
            let failed: Vec<String> = ending
                .children
                .iter()
                .filter_map(|c| self.jobs.get(c))
                .filter_map(|c| Some((&c.spec.model.layer, c.ending()?)))
                .filter(|(_, e)| e.outcome != Outcome::Succeeded)
                .map(|(layer, e)| {
                    format!(
                        "{layer}: {}{}",
                        e.outcome.as_str(),
                        e.error
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            return if failed.is_empty() {
                self.finish(job, Outcome::Succeeded, None, now)
            } else {
                let error = format!("a layer's job did not succeed: {}", failed.join("; "));
                self.finish(job, Outcome::Failed, Some(error), now)
            };
        }
        match ending.assessments() {
            Err(error) => self.finish(job, Outcome::Failed, Some(error), now),
            Ok(tasks) if tasks.is_empty() => self.finish(job, Outcome::Succeeded, None, now),
            Ok(tasks) => {
                self.record(
                    Record::TasksAdded {
                        job: job.clone(),
                        tasks,
                    },
                    now,
                );
                Vec::new()
            }
        }
    }

    /// A worker joins.
    pub fn register(&mut self, name: String, device: String, slots: u32, now: Instant) -> WorkerId {
        self.next_worker += 1;
        let id = WorkerId(format!("w{}-{:04}", self.incarnation, self.next_worker));
        self.workers.insert(
            id.clone(),
            Worker {
                name,
                device,
                slots,
                last_seen: now,
            },
        );
        for job in self.jobs.values_mut() {
            job.no_worker_since = None;
        }
        self.version += 1;
        id
    }

    /// A poll: renews the leases of the tasks the worker reports, tells it which of them to
    /// stop, and leases it up to `free_slots` pending tasks (oldest job first, then by stage
    /// and index).
    pub fn poll(
        &mut self,
        worker: &WorkerId,
        free_slots: u32,
        running: &[RunningTask],
        now: Instant,
    ) -> Result<PollOutcome, SchedulerError> {
        let seen = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| SchedulerError::UnknownWorker(worker.clone()))?;
        seen.last_seen = now;
        let deadline = now + self.config.lease_timeout;
        let mut cancel = Vec::new();
        for (task_id, attempt, done, total) in running {
            let task = self
                .jobs
                .get_mut(&task_id.job)
                .filter(|j| !j.is_finished())
                .and_then(|j| j.tasks.get_mut(task_id));
            match task {
                Some(task) if task.is_running(worker, *attempt) => {
                    task.renew(deadline, *done, *total);
                }
                // After a coordinator restart every lease is gone, but a worker still running
                // the task's latest attempt keeps it instead of starting over elsewhere.
                Some(task) if task.adoptable(*attempt) => {
                    task.state = TaskState::Running {
                        worker: worker.clone(),
                        attempt: *attempt,
                        deadline,
                    };
                    task.progress = (*done, *total);
                    self.jobs
                        .get_mut(&task_id.job)
                        .expect("task's job")
                        .pending
                        .remove(task_id);
                }
                _ => cancel.push((task_id.clone(), *attempt)),
            }
        }
        let mut leases = Vec::new();
        while leases.len() < free_slots as usize {
            let Some(task_id) = self
                .jobs
                .values()
                .filter(|j| !j.is_finished())
                .find_map(|j| j.pending.first().cloned())
            else {
                break;
            };
            let attempt = self.jobs[&task_id.job].tasks[&task_id].attempts + 1;
            self.record(
                Record::AttemptStarted {
                    task: task_id.clone(),
                    attempt,
                },
                now,
            );
            let job = self.jobs.get_mut(&task_id.job).expect("task's job");
            job.lease(&task_id, worker.clone(), now, deadline);
            leases.push(job.task_message(&task_id, attempt));
        }
        if !leases.is_empty() {
            self.version += 1;
        }
        Ok((leases, cancel))
    }

    /// Whether a completion of `attempt` would be committed now (checked before the
    /// coordinator moves the attempt's files into place).
    pub fn would_accept(&self, task: &TaskId, attempt: u32) -> bool {
        self.jobs
            .get(&task.job)
            .filter(|j| !j.is_finished())
            .and_then(|j| j.tasks.get(task))
            .is_some_and(|t| t.accepts(attempt))
    }

    /// A completion: committed if no other attempt was (a late completion of an attempt
    /// whose lease expired is as good as any: tasks are deterministic), else rejected.
    pub fn complete(
        &mut self,
        task: &TaskId,
        attempt: u32,
        output: Output,
        now: Instant,
    ) -> (Acceptance, Vec<Action>) {
        if !self.would_accept(task, attempt) {
            return (Acceptance::Rejected, Vec::new());
        }
        self.record(
            Record::Committed {
                task: task.clone(),
                attempt,
                output,
            },
            now,
        );
        (
            Acceptance::Accepted,
            self.advance(&task.job, self.shapley_concept(task), now),
        )
    }

    /// A failed attempt: retried, or quarantined when it may not be retried or has used up
    /// its attempts. A failure of an attempt that is no longer current changes nothing.
    pub fn fail(
        &mut self,
        task: &TaskId,
        attempt: u32,
        failure: Failure,
        now: Instant,
    ) -> Vec<Action> {
        let current = self
            .jobs
            .get(&task.job)
            .filter(|j| !j.is_finished())
            .and_then(|j| j.tasks.get(task))
            .is_some_and(|t| t.current_attempt() == Some(attempt));
        if !current {
            return Vec::new();
        }
        self.record(
            Record::AttemptFailed {
                task: task.clone(),
                attempt,
                failure,
            },
            now,
        );
        self.advance(&task.job, self.shapley_concept(task), now)
    }

    /// The concept of a Shapley task (the only concept whose next round it can open).
    fn shapley_concept(&self, task: &TaskId) -> Option<u32> {
        match self.jobs.get(&task.job)?.tasks.get(task)?.spec {
            TaskSpec::Shapley { concept, .. } => Some(concept),
            _ => None,
        }
    }

    /// A draining worker leaves: what it holds is requeued without counting against it.
    pub fn leave(&mut self, worker: &WorkerId, now: Instant) -> Vec<Action> {
        self.lose(worker, "the worker left (drained)", false, now)
    }

    /// Expires quiet workers and overdue leases, and fails jobs that have had no worker for
    /// the grace period. Call it periodically.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let timeout = self.config.lease_timeout;
        let quiet: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for worker in quiet {
            let message = format!(
                "worker {worker} was not heard from for {:.1} s",
                timeout.as_secs_f64()
            );
            actions.extend(self.lose(&worker, &message, true, now));
        }
        let overdue: Vec<(TaskId, u32)> = self.jobs.values().flat_map(|j| j.overdue(now)).collect();
        for (task, attempt) in overdue {
            let failure = Failure {
                reason: proto::FailureReason::WorkerLost.as_str_name().into(),
                retryable: true,
                counted: true,
                message: "the lease expired (the worker stopped reporting the task)".into(),
            };
            actions.extend(self.fail(&task, attempt, failure, now));
        }
        let grace = self.config.worker_grace;
        let stranded: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| matches!(j.phase, JobPhase::Running(_)))
            // A job waiting for its report needs no worker.
            .filter(|j| j.stage() != Stage::Report)
            .filter(|j| {
                j.no_worker_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|j| j.id.clone())
            .collect();
        for job in stranded {
            let error = format!(
                "no worker was seen for {:.0} s (the grace period): start workers with \
                 `hint-worker --coordinator URL`, then resubmit",
                grace.as_secs_f64()
            );
            actions.extend(self.finish(&job, Outcome::Failed, Some(error), now));
        }
        // A job whose layers' jobs all ended reports, however they ended (a client may
        // have cancelled one, where no action can be handed back).
        let waiting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| !j.children.is_empty() && !j.is_finished())
            .map(|j| j.id.clone())
            .collect();
        for job in waiting {
            actions.extend(self.advance(&job, None, now));
        }
        actions
    }

    /// Applies one durable fact. The only place job and task state changes; used live
    /// (through [`Scheduler::record`]) and to replay the journal.
    pub fn apply(&mut self, record: &Record, now: Instant) {
        self.version += 1;
        match record {
            Record::Started { incarnation } => self.incarnation = *incarnation,
            Record::Submitted {
                job,
                spec_json,
                job_dir,
                submitted_at,
                parent,
            } => {
                let spec = JobSpec::from_json(spec_json).expect("the journal holds valid specs");
                let mut new = Job::new(
                    job.clone(),
                    spec,
                    spec_json.clone(),
                    job_dir.into(),
                    *submitted_at,
                    now,
                );
                new.parent = parent.clone();
                if let Some(parent) = parent.as_ref().and_then(|p| self.jobs.get_mut(p)) {
                    parent.children.push(job.clone());
                    // Shallow to deep (`<job>.<k>`), whatever order a snapshot lists them in.
                    parent.children.sort_by_key(|c| {
                        c.0.rsplit('.').next().and_then(|k| k.parse::<usize>().ok())
                    });
                }
                self.jobs.insert(job.clone(), new);
            }
            Record::Planned {
                job,
                images,
                concepts,
                tar_shards,
            } => {
                if let Some(job) = self.jobs.get_mut(job) {
                    let planned = Planned {
                        images: *images,
                        concepts: *concepts,
                        tar_shards: tar_shards.clone(),
                    };
                    job.plan_done(planned, now);
                }
            }
            Record::TasksAdded { job, tasks } => {
                if let Some(job) = self.jobs.get_mut(job) {
                    for spec in tasks {
                        job.add_task(spec.clone());
                    }
                }
            }
            Record::AttemptStarted { task, attempt } => {
                if let Some(task) = self.task_mut(task) {
                    task.attempts = task.attempts.max(*attempt);
                }
            }
            Record::AttemptFailed {
                task,
                attempt,
                failure,
            } => {
                if let Some(job) = self.jobs.get_mut(&task.job) {
                    job.attempt_failed(task, *attempt, failure.clone(), now);
                }
            }
            Record::Committed {
                task,
                attempt,
                output,
            } => {
                if let Some(job) = self.jobs.get_mut(&task.job) {
                    job.commit(task, *attempt, output.clone(), now);
                }
            }
            Record::Finished {
                job,
                outcome,
                error,
            } => {
                if let Some(job) = self.jobs.get_mut(job) {
                    job.finished(*outcome, error.clone());
                }
            }
            Record::TaskRestored {
                task,
                attempts,
                failures,
                last_failure,
                settled,
            } => {
                if let Some(job) = self.jobs.get_mut(&task.job) {
                    let counts = (*attempts, *failures);
                    job.restore_task(task, counts, last_failure.clone(), settled.clone(), now);
                }
            }
            Record::Forked { job } => {
                for record in self.layer_jobs(job) {
                    self.apply(&record, now);
                }
            }
            Record::SumsRestored { job, concept, sums } => {
                let sums = sums
                    .to_sums()
                    .expect("a snapshot holds the sums it was given");
                if let Some(job) = self.jobs.get_mut(job) {
                    job.sums.insert(*concept, sums);
                }
            }
        }
    }

    fn record(&mut self, record: Record, now: Instant) {
        self.apply(&record, now);
        self.outbox.push(record);
    }

    fn task_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        self.jobs.get_mut(&id.job)?.tasks.get_mut(id)
    }

    fn lose(
        &mut self,
        worker: &WorkerId,
        message: &str,
        counted: bool,
        now: Instant,
    ) -> Vec<Action> {
        if self.workers.remove(worker).is_none() {
            return Vec::new();
        }
        self.version += 1;
        let held: Vec<(TaskId, u32)> = self.jobs.values().flat_map(|j| j.held_by(worker)).collect();
        let mut actions = Vec::new();
        for (task, attempt) in held {
            let reason = if counted {
                proto::FailureReason::WorkerLost
            } else {
                proto::FailureReason::Cancelled
            };
            let failure = Failure {
                reason: reason.as_str_name().into(),
                retryable: true,
                counted,
                message: message.to_string(),
            };
            actions.extend(self.fail(&task, attempt, failure, now));
        }
        if self.workers.is_empty() {
            for job in self.jobs.values_mut() {
                job.no_worker_since.get_or_insert(now);
            }
        }
        actions
    }

    /// Opens the next stage or Shapley round when the current one has settled.
    fn advance(&mut self, id: &JobId, only: Option<u32>, now: Instant) -> Vec<Action> {
        let Some(job) = self.jobs.get(id) else {
            return Vec::new();
        };
        match job.next_step(only) {
            job::Step::Wait => Vec::new(),
            job::Step::Add(tasks) => {
                self.record(
                    Record::TasksAdded {
                        job: id.clone(),
                        tasks,
                    },
                    now,
                );
                Vec::new()
            }
            job::Step::Fail(error) => self.finish(id, Outcome::Failed, Some(error), now),
            job::Step::Report => vec![Action::Report(id.clone())],
            job::Step::Fork => vec![Action::Fork(id.clone())],
            job::Step::Children => {
                let ended = job
                    .children
                    .iter()
                    .all(|c| self.jobs.get(c).is_none_or(Job::is_finished));
                if ended {
                    vec![Action::Report(id.clone())]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

/// A failure reason as people read it: `BAD_INPUT` for `FAILURE_REASON_BAD_INPUT` (the
/// journal keeps the proto name).
pub fn reason_label(name: &str) -> &str {
    name.strip_prefix("FAILURE_REASON_").unwrap_or(name)
}

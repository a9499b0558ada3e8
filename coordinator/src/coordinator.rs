//! [`Coordinator`]: the scheduler behind a lock, its journal, and the I/O around it —
//! planning, committing attempt outputs into place, writing results.
//!
//! Every change goes through the [`Scheduler`] under one mutex and its records are appended
//! to the journal before the lock is released, so the journal's order is the order of the
//! changes. Commits that move files (extract, train, evaluate, ablate) are synced at once;
//! the rest (attempt starts, Shapley sums) are group-committed by a background task every
//! few milliseconds.
//! Planning and reports run on blocking threads and report back through the scheduler.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hint_common::job::{JobId, JobSpec, Stage, TaskId, WorkerId, PROTOCOL_VERSION};
use hint_common::proto;
use hint_common::storage;
use tokio::sync::watch;

use crate::journal::{Journal, JournalError, Syncer};
use crate::metrics::Metrics;
use crate::scheduler::stages::STAGES;
use crate::scheduler::{
    Acceptance, Action, Failure, Job, JobPhase, Outcome, Output, Planned, Record, Scheduler,
    SchedulerConfig, SchedulerError, TaskState,
};
use crate::{plan, results, status};

/// Settings of a coordinator process.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The state directory (the journal lives there).
    pub state_dir: PathBuf,
    /// Leases and the worker grace period.
    pub scheduler: SchedulerConfig,
    /// Group-commit interval of the journal.
    pub sync_interval: Duration,
    /// A snapshot compacts the journal once the segments since the last one hold this many
    /// bytes, and at least as many as that snapshot (see [`Journal::snapshot_due`]).
    pub snapshot_bytes: u64,
}

/// The default of [`CoordinatorConfig::snapshot_bytes`]: 64 MiB, a few seconds of replay.
pub const DEFAULT_SNAPSHOT_BYTES: u64 = 64 << 20;

impl CoordinatorConfig {
    /// Defaults for everything but the state directory.
    pub fn new(state_dir: PathBuf) -> Self {
        CoordinatorConfig {
            state_dir,
            scheduler: SchedulerConfig::default(),
            sync_interval: Duration::from_millis(5),
            snapshot_bytes: DEFAULT_SNAPSHOT_BYTES,
        }
    }
}

/// Errors of the coordinator, mapped to gRPC codes by the service.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A worker-facing call the scheduler refused.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The job spec is invalid.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// A worker speaking another protocol version.
    #[error("worker protocol version {worker} is not this coordinator's {PROTOCOL_VERSION}: run matching versions")]
    Protocol {
        /// What the worker speaks.
        worker: u32,
    },
    /// A malformed request (bad task id, output of the wrong kind…).
    #[error("{0}")]
    BadRequest(String),
    /// The journal failed: this coordinator takes no more work (fail-stop).
    #[error("{0}")]
    Stopped(String),
    /// Preparing a job's storage failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

struct Inner {
    scheduler: Scheduler,
    journal: Journal,
    /// Tasks whose completion is moving its files (outside the lock): one commit in flight
    /// per task, so two attempts never move into the same place at once.
    committing: HashSet<TaskId>,
}

/// The coordinator of one state directory.
pub struct Coordinator {
    inner: Mutex<Inner>,
    metrics: Metrics,
    syncer: Arc<Syncer>,
    config: CoordinatorConfig,
    changed: watch::Sender<u64>,
    busy: Mutex<HashSet<JobId>>,
    /// Set once, when the journal could not be written: from then on every call that would
    /// change state is refused and the process should exit
    /// ([`Coordinator::journal_failure`]), so
    /// nothing ever acts on a state the journal does not hold.
    stopped: watch::Sender<Option<String>>,
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Coordinator {
    /// Opens the state directory, replays its journal and redoes what a crash may have left
    /// half done (file moves of committed outputs, plans, reports). Call
    /// [`Coordinator::spawn_background`] from a Tokio runtime to start leasing.
    pub fn open(
        config: CoordinatorConfig,
    ) -> Result<(Arc<Coordinator>, Vec<Action>), CoordinatorError> {
        // Each record is applied as it is read (and a committed output's file move redone),
        // so a long journal is never held whole.
        let now = Instant::now();
        let mut scheduler = Scheduler::new(config.scheduler);
        let mut resumed = 0;
        let (mut journal, replayed) = Journal::open_replayed(&config.state_dir, |record| {
            if let Some(output) = record.committed_output() {
                if let Err(error) = move_committed(output) {
                    tracing::error!(%error, "redoing a committed move");
                }
            }
            resumed += usize::from(matches!(record, Record::Submitted { .. }));
            scheduler.apply(&record, now);
        })?;
        if replayed.dropped > 0 {
            tracing::warn!(bytes = replayed.dropped, "cut a torn tail off the journal");
        }
        if let Some(snapshot) = &replayed.snapshot {
            tracing::info!(
                segments = replayed.segments,
                "replayed {} and the journal after it",
                snapshot.display()
            );
        }
        let actions = scheduler.resume(now);
        let mut damaged = Vec::new();
        for job in scheduler.jobs().filter(|j| !j.is_finished()) {
            sweep_uncommitted(job);
            if let Some(problem) = check_plan(job) {
                damaged.push((job.id.clone(), problem));
            }
        }
        for (id, problem) in damaged {
            tracing::error!(job = %id, %problem, "cannot resume");
            scheduler.finish(&id, Outcome::Failed, Some(problem), now);
        }
        journal.append(&scheduler.take_records())?;
        journal.sync()?;
        if resumed > 0 {
            tracing::info!(
                jobs = resumed,
                "resumed from {}",
                config.state_dir.display()
            );
        }
        let (changed, _) = watch::channel(0);
        let coordinator = Arc::new(Coordinator {
            metrics: Metrics::default(),
            syncer: journal.syncer(),
            inner: Mutex::new(Inner {
                scheduler,
                journal,
                committing: HashSet::new(),
            }),
            config,
            changed,
            busy: Mutex::new(HashSet::new()),
            stopped: watch::channel(None).0,
        });
        Ok((coordinator, actions))
    }

    /// Starts the background work: journal group commits, lease expiry, and `actions`
    /// (from [`Coordinator::open`]).
    pub fn spawn_background(self: &Arc<Self>, actions: Vec<Action>) {
        self.run_actions(actions);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut sync = tokio::time::interval(me.config.sync_interval);
            sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let tick_every = (me.config.scheduler.lease_timeout / 4).max(Duration::from_millis(20));
            let mut last_tick = Instant::now();
            loop {
                sync.tick().await;
                me.sync_now();
                if last_tick.elapsed() >= tick_every {
                    last_tick = Instant::now();
                    me.metrics.sample(last_tick);
                    let actions = me.mutate(|s, now| s.tick(now));
                    me.run_actions(actions);
                }
            }
        });
    }

    /// Resolves with the reason once the journal failed and the coordinator stopped taking
    /// work (`hint coordinator` and `hint run` then exit; a restart resumes from the
    /// journal); never resolves otherwise.
    pub async fn journal_failure(&self) -> String {
        let mut stopped = self.stopped.subscribe();
        let reason = match stopped.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => return std::future::pending().await,
        };
        reason
    }

    /// Fail-stop: the first journal failure stops the coordinator for good.
    fn journal_failed(&self, error: &JournalError) {
        self.stopped.send_if_modified(|stopped| {
            if stopped.is_some() {
                return false;
            }
            let message = format!(
                "the journal could not be written ({error}): this coordinator stopped taking \
                 work so that its state stays what the journal holds; free the space (or mend \
                 the file system) and start it again: it resumes from the journal"
            );
            tracing::error!("{message}");
            *stopped = Some(message);
            true
        });
    }

    /// `Err` once stopped: the calls that change state start here.
    fn running(&self) -> Result<(), CoordinatorError> {
        match &*self.stopped.borrow() {
            Some(message) => Err(CoordinatorError::Stopped(message.clone())),
            None => Ok(()),
        }
    }

    /// A journal result, failing the coordinator on an error.
    fn journaled<T>(&self, result: Result<T, JournalError>) -> Result<T, CoordinatorError> {
        result.map_err(|error| {
            self.journal_failed(&error);
            CoordinatorError::Journal(error)
        })
    }

    /// Waits for any change (for watchers).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the scheduler and appends its records before unlocking.
    fn mutate<T>(&self, change: impl FnOnce(&mut Scheduler, Instant) -> T) -> T {
        let mut inner = self.lock();
        let result = change(&mut inner.scheduler, Instant::now());
        let records = inner.scheduler.take_records();
        self.metrics.observe(&records);
        // Nothing more is written after a failure: the journal keeps its intact prefix.
        if self.running().is_ok() {
            match inner.journal.append(&records) {
                Ok(()) => self.compact(&mut inner),
                Err(error) => self.journal_failed(&error),
            }
        }
        let version = inner.scheduler.version();
        drop(inner);
        self.changed.send_replace(version);
        result
    }

    /// Starts a snapshot when one is due: under the lock (every applied record is
    /// appended), the journal moves to a new segment and the scheduler's state is copied as
    /// records; a thread writes them, so commits wait only for the copy and one `fsync`.
    /// A rotation that fails is a journal failure (fail-stop); a snapshot that fails to be
    /// written is not: the journal it would replace is intact, so it is logged and tried
    /// again later.
    fn compact(&self, inner: &mut Inner) {
        if self.running().is_err() || !inner.journal.snapshot_due(self.config.snapshot_bytes) {
            return;
        }
        let started = Instant::now();
        let file = match inner.journal.rotate() {
            Ok(file) => file,
            Err(error) => return self.journal_failed(&error),
        };
        let records = inner.scheduler.snapshot();
        let locked = started.elapsed();
        std::thread::spawn(move || {
            let path = file.path();
            match file.write(&records) {
                Ok(bytes) => tracing::info!(
                    bytes,
                    records = records.len(),
                    locked_ms = locked.as_secs_f64() * 1e3,
                    total_ms = started.elapsed().as_secs_f64() * 1e3,
                    "journal compacted into {}",
                    path.display()
                ),
                Err(error) => tracing::error!(
                    %error,
                    "a snapshot of the journal could not be written (the journal is intact; it is tried again later)"
                ),
            }
        });
    }

    /// Waits for a snapshot being written (tests).
    #[cfg(test)]
    fn wait_snapshot(&self) {
        self.lock().journal.wait_snapshot();
    }

    /// Reads the scheduler.
    pub fn read<T>(&self, look: impl FnOnce(&Scheduler) -> T) -> T {
        look(&self.lock().scheduler)
    }

    fn run_actions(self: &Arc<Self>, actions: Vec<Action>) {
        if self.running().is_err() {
            return;
        }
        for action in actions {
            let job = match &action {
                Action::Plan(job) | Action::Report(job) | Action::Fork(job) => job.clone(),
            };
            if !self.busy.lock().expect("busy set").insert(job.clone()) {
                continue;
            }
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                let follow_up = match action {
                    Action::Plan(job) => me.plan(&job),
                    Action::Report(job) => me.report(&job),
                    Action::Fork(job) => me.fork(&job),
                };
                me.busy.lock().expect("busy set").remove(&job);
                me.run_actions(follow_up);
            });
        }
    }

    fn plan(&self, id: &JobId) -> Vec<Action> {
        let Some((spec, job_dir)) =
            self.read(|s| s.job(id).map(|j| (j.spec.clone(), j.job_dir.clone())))
        else {
            return Vec::new();
        };
        let _span = tracing::info_span!("plan", job = %id).entered();
        match plan::plan(&spec, &job_dir) {
            Ok(plan) => {
                tracing::info!(
                    images = plan.images,
                    concepts = plan.hierarchy.concepts().len(),
                    "planned"
                );
                let planned = Planned {
                    images: plan.images,
                    concepts: plan.hierarchy.concepts().len() as u32,
                    tar_shards: plan.tar_shards,
                };
                self.mutate(|s, now| s.planned(id, planned, now))
            }
            Err(error) => {
                let message = format!("plan: {error}");
                tracing::error!(%message);
                self.mutate(|s, now| s.finish(id, Outcome::Failed, Some(message), now));
                Vec::new()
            }
        }
    }

    /// Writes Φ and the result files, then tells the scheduler: the job succeeds, or its
    /// evaluate and ablate tasks open on that Φ. A job with several layers writes the
    /// comparison of its layers' jobs instead.
    fn report(&self, id: &JobId) -> Vec<Action> {
        let Some((job, children)) = self.read(|s| {
            let job = s.job(id)?.clone();
            let children: Vec<Job> = job
                .children
                .iter()
                .filter_map(|c| s.job(c).cloned())
                .collect();
            Some((job, children))
        }) else {
            return Vec::new();
        };
        let _span = tracing::info_span!("report", job = %id).entered();
        let written = if job.has_layers() {
            results::write_layers(&job, &children)
        } else {
            results::write(&job)
        };
        let follow_up = match written {
            Ok(()) => self.mutate(|s, now| s.reported(id, now)),
            Err(error) => {
                let error = format!("report: {error:#}");
                self.mutate(|s, now| s.finish(id, Outcome::Failed, Some(error), now))
            }
        };
        self.sync_now();
        follow_up
    }

    /// A job with several layers extracted them: each layer's directory gets its job's spec
    /// and the plan's files, then the layers' jobs start.
    fn fork(&self, id: &JobId) -> Vec<Action> {
        let Some(job) = self.read(|s| s.job(id).cloned()) else {
            return Vec::new();
        };
        let _span = tracing::info_span!("fork", job = %id).entered();
        let prepared = job.spec.model.layers.iter().try_for_each(|layer| {
            let dir = job.layer_dir(layer);
            plan::files::copy_plan(&job.job_dir, &dir).map_err(|e| e.to_string())?;
            storage::write(
                &dir.join("spec.json"),
                job.layer_spec(layer).to_json().as_bytes(),
            )
            .map_err(|e| format!("{}: {e}", dir.join("spec.json").display()))
        });
        let follow_up = match prepared {
            Ok(()) => {
                tracing::info!(layers = job.spec.model.layers.len(), "one job per layer");
                self.mutate(|s, now| s.fork(id, now))
            }
            Err(error) => {
                let error = format!("preparing the layers' jobs: {error}");
                self.mutate(|s, now| s.finish(id, Outcome::Failed, Some(error), now))
            }
        };
        self.sync_now();
        follow_up
    }

    /// Accepts a job spec (TOML text; relative paths against `base_dir`): validated, given a
    /// storage directory, persisted, then planned in the background.
    pub fn submit(
        self: &Arc<Self>,
        spec_toml: &str,
        base_dir: &Path,
    ) -> Result<JobId, CoordinatorError> {
        let spec = crate::spec::parse(spec_toml, base_dir, "job spec")?;
        self.submit_spec(spec)
    }

    /// Accepts an already validated spec.
    pub fn submit_spec(self: &Arc<Self>, spec: JobSpec) -> Result<JobId, CoordinatorError> {
        self.running()?;
        let (id, action) = self.mutate(|s, now| s.submit(&spec, now_epoch(), now));
        self.sync_now();
        // Acknowledged only once durable.
        self.running()?;
        let job_dir = spec.storage.root.join(&id.0);
        let spec_path = job_dir.join("spec.json");
        // Writing spec.json also shows the storage root is writable before any work runs.
        let written = storage::write(&spec_path, spec.to_json().as_bytes()).map_err(|source| {
            CoordinatorError::Io {
                path: spec_path,
                source: source.into(),
            }
        });
        if let Err(error) = written {
            let message = format!("preparing its storage: {error}");
            self.mutate(|s, now| s.finish(&id, Outcome::Failed, Some(message), now));
            self.sync_now();
            return Err(error);
        }
        tracing::info!(job = %id, name = %spec.name, "submitted");
        for warning in crate::spec::warnings(&spec) {
            tracing::warn!(job = %id, "{warning}");
        }
        self.run_actions(vec![action]);
        Ok(id)
    }

    /// Makes every change so far durable (the `fsync` runs outside the lock).
    fn sync_now(&self) {
        if self.running().is_err() {
            return;
        }
        let synced = self
            .lock()
            .journal
            .flush()
            .and_then(|ticket| self.syncer.sync_through(ticket));
        if let Err(error) = synced {
            self.journal_failed(&error);
        }
    }

    /// A client cancels a job: it ends now; workers drop its tasks at their next poll.
    pub fn cancel(&self, id: &JobId) -> Result<(), CoordinatorError> {
        self.running()?;
        self.read(|s| s.job(id).map(|_| ()))
            .ok_or_else(|| SchedulerError::UnknownJob(id.to_string()))?;
        self.mutate(|s, now| {
            s.finish(
                id,
                Outcome::Cancelled,
                Some("cancelled by a client".into()),
                now,
            )
        });
        self.sync_now();
        self.running()
    }

    /// A worker registers.
    pub fn register(
        &self,
        request: &proto::RegisterRequest,
    ) -> Result<proto::RegisterResponse, CoordinatorError> {
        self.running()?;
        if request.protocol_version != PROTOCOL_VERSION {
            return Err(CoordinatorError::Protocol {
                worker: request.protocol_version,
            });
        }
        let slots = request.slots.max(1);
        let id = self
            .mutate(|s, now| s.register(request.name.clone(), request.device.clone(), slots, now));
        self.running()?;
        tracing::info!(worker = %id, name = %request.name, device = %request.device, slots, "worker registered");
        let lease = self.config.scheduler.lease_timeout;
        Ok(proto::RegisterResponse {
            worker_id: id.0,
            lease_timeout_ms: lease.as_millis() as u64,
            heartbeat_interval_ms: (lease / 4).as_millis().max(10) as u64,
        })
    }

    /// A worker polls: leases renewed, stale tasks cancelled, new tasks leased.
    pub fn poll(
        &self,
        request: &proto::PollRequest,
    ) -> Result<proto::PollResponse, CoordinatorError> {
        self.running()?;
        let worker = WorkerId(request.worker_id.clone());
        let mut running = Vec::with_capacity(request.running.len());
        for status in &request.running {
            running.push((
                parse_task(&status.task_id)?,
                status.attempt,
                status.done,
                status.total,
            ));
        }
        let (tasks, cancel, jobs) = self.mutate(|s, now| {
            let (tasks, cancel) = s.poll(&worker, request.free_slots, &running, now)?;
            let jobs = specs_to_send(s, &tasks, &request.known_jobs);
            Ok::<_, SchedulerError>((tasks, cancel, jobs))
        })?;
        // Leases whose records could not be appended are not handed out.
        self.running()?;
        Ok(proto::PollResponse {
            tasks,
            jobs,
            cancel: cancel
                .into_iter()
                .map(|(task, attempt)| proto::TaskRef {
                    task_id: task.to_string(),
                    attempt,
                })
                .collect(),
        })
    }

    /// A worker completes an attempt. Extract, train and result files are moved from the
    /// attempt's directory to their committed place before the commit is recorded (and
    /// synced); a rejected completion leaves its files where they are.
    ///
    /// The lock covers the checks and the state change, not the moves (on object storage a
    /// move is a copy of every object, too long to stall every worker's poll): the task is
    /// reserved while its files move, so a second attempt completing meanwhile is answered
    /// "not accepted", and files moved for a commit the scheduler no longer takes (its job
    /// was cancelled or its task quarantined meanwhile) are removed again.
    pub fn complete(
        self: &Arc<Self>,
        request: proto::CompleteRequest,
    ) -> Result<bool, CoordinatorError> {
        self.running()?;
        let task = parse_task(&request.task_id)?;
        let attempt = request.attempt;
        let output = request.output.ok_or_else(|| {
            CoordinatorError::BadRequest(format!("{task}: completion without output"))
        })?;
        // The pipeline's figures are not journalled: counted once the commit is taken.
        let extracted = match &output {
            proto::complete_request::Output::Extract(summary) => Some(summary.clone()),
            _ => None,
        };
        let Some(checked) = self.begin_commit(&task, attempt, output) else {
            return Ok(false);
        };
        let reserved = checked.is_ok();
        let checked = checked.and_then(|output| {
            move_committed(&output)?;
            Ok(output)
        });
        let accepted = self.finish_commit(task, attempt, checked, reserved)?;
        if let (true, Some(summary)) = (accepted, extracted) {
            let worker = WorkerId(request.worker_id);
            let name = self.read(|s| s.workers().get(&worker).map(|w| w.name.clone()));
            let name = name.unwrap_or(worker.0);
            self.metrics.extracted(&name, &summary);
        }
        Ok(accepted)
    }

    /// Checks a completion against its task and, when it holds, reserves the task for its
    /// commit. None: the completion is not wanted (the task is done, gone, or another
    /// attempt's commit is in flight).
    fn begin_commit(
        &self,
        task: &TaskId,
        attempt: u32,
        output: proto::complete_request::Output,
    ) -> Option<Result<Output, String>> {
        let mut inner = self.lock();
        if !inner.scheduler.would_accept(task, attempt) || inner.committing.contains(task) {
            return None;
        }
        let job = inner
            .scheduler
            .job(&task.job)
            .expect("accepting job exists");
        let checked = job.check_output(task, attempt, output);
        if checked.is_ok() {
            inner.committing.insert(task.clone());
        }
        Some(checked)
    }

    /// Records a completion whose files were moved (`Ok`) or that was refused (`Err`), and
    /// releases the task's reservation (`reserved`).
    fn finish_commit(
        self: &Arc<Self>,
        task: TaskId,
        attempt: u32,
        checked: Result<Output, String>,
        reserved: bool,
    ) -> Result<bool, CoordinatorError> {
        let mut inner = self.lock();
        if reserved {
            inner.committing.remove(&task);
        }
        if !inner.scheduler.would_accept(&task, attempt) {
            if let Ok(output) = &checked {
                unmove(output);
            }
            return Ok(false);
        }
        let now = Instant::now();
        let mut ticket = None;
        let (accepted, actions) = match checked {
            Ok(output) => {
                // Moved files are answered for only once their commit is durable.
                let moved_files = !matches!(output, Output::Shapley { .. });
                let (acceptance, actions) = inner.scheduler.complete(&task, attempt, output, now);
                let records = inner.scheduler.take_records();
                self.metrics.observe(&records);
                self.journaled(inner.journal.append(&records))?;
                if moved_files {
                    ticket = Some(self.journaled(inner.journal.flush())?);
                }
                self.compact(&mut inner);
                (acceptance == Acceptance::Accepted, actions)
            }
            Err(message) => {
                tracing::warn!(%task, attempt, %message, "completion refused");
                let failure = Failure {
                    reason: proto::FailureReason::Execution.as_str_name().into(),
                    retryable: true,
                    counted: true,
                    message: format!("its output was refused: {message}"),
                };
                let actions = inner.scheduler.fail(&task, attempt, failure, now);
                let records = inner.scheduler.take_records();
                self.metrics.observe(&records);
                self.journaled(inner.journal.append(&records))?;
                self.compact(&mut inner);
                (false, actions)
            }
        };
        // The last extract commit: diagnose the regions while training starts, so a layer
        // whose saliency is an artefact is warned about now, not only in the results.
        let extracted = (accepted && task.stage == Stage::Extract)
            .then(|| inner.scheduler.job(&task.job))
            .flatten()
            .filter(|job| job.all_settled(Stage::Extract))
            .map(results::RegionInputs::of);
        let version = inner.scheduler.version();
        drop(inner);
        if let Some(ticket) = ticket {
            self.journaled(self.syncer.sync_through(ticket))?;
        }
        self.changed.send_replace(version);
        self.run_actions(actions);
        if let Some(inputs) = extracted {
            std::thread::spawn(move || {
                let _span = tracing::info_span!("regions", job = %task.job).entered();
                if let Some(q) = results::region_quality(&inputs) {
                    tracing::info!("{}", q.line());
                }
            });
        }
        Ok(accepted)
    }

    /// A worker reports a failed attempt.
    pub fn fail(self: &Arc<Self>, request: &proto::FailRequest) -> Result<(), CoordinatorError> {
        self.running()?;
        let task = parse_task(&request.task_id)?;
        let reason = proto::FailureReason::try_from(request.reason)
            .unwrap_or(proto::FailureReason::Execution);
        tracing::warn!(%task, attempt = request.attempt, reason = reason.as_str_name(), message = %request.message, "attempt failed");
        let failure = Failure {
            reason: reason.as_str_name().into(),
            retryable: request.retryable,
            counted: request.count_to_failures,
            message: request.message.clone(),
        };
        let actions = self.mutate(|s, now| s.fail(&task, request.attempt, failure, now));
        self.running()?;
        self.run_actions(actions);
        Ok(())
    }

    /// A draining worker leaves.
    pub fn leave(self: &Arc<Self>, worker: &str) {
        let actions = self.mutate(|s, now| s.leave(&WorkerId(worker.to_string()), now));
        self.run_actions(actions);
    }

    /// A job's status.
    pub fn status(&self, id: &JobId) -> Result<proto::JobStatus, CoordinatorError> {
        self.read(|s| {
            let job = s
                .job(id)
                .ok_or_else(|| SchedulerError::UnknownJob(id.to_string()))?;
            Ok(status::job_status(job, s))
        })
    }

    /// Every job's status, oldest first.
    pub fn list(&self) -> Vec<proto::JobStatus> {
        self.read(|s| s.jobs().map(|j| status::job_status(j, s)).collect())
    }
}

impl Coordinator {
    /// The Prometheus exposition of the coordinator's state and counters.
    pub fn render_metrics(&self) -> String {
        self.read(|s| self.metrics.render(s, Instant::now()))
    }

    /// Work per second over the last minute.
    pub fn rates(&self) -> crate::metrics::Rates {
        self.metrics.sample(Instant::now())
    }
}

/// The specs a poll's worker lacks: one per job of the leased `tasks` that `known` (the
/// worker's `known_jobs`) does not name, in the order the tasks first name them.
fn specs_to_send(
    scheduler: &Scheduler,
    tasks: &[proto::Task],
    known: &[String],
) -> Vec<proto::JobSpecJson> {
    let mut sent: Vec<proto::JobSpecJson> = Vec::new();
    for task in tasks {
        let job_id = &task.job_id;
        if known.contains(job_id) || sent.iter().any(|j| &j.job_id == job_id) {
            continue;
        }
        let job = scheduler
            .job(&JobId(job_id.clone()))
            .expect("a task leased now belongs to a known job");
        sent.push(proto::JobSpecJson {
            job_id: job_id.clone(),
            spec_json: job.spec_json.clone(),
        });
    }
    sent
}

fn parse_task(id: &str) -> Result<TaskId, CoordinatorError> {
    id.parse().map_err(CoordinatorError::BadRequest)
}

/// Why a planned job cannot resume: its plan files (read back as the workers will read them)
/// are damaged or no longer match what the journal recorded. None when they are intact (or
/// the job is not planned yet).
fn check_plan(job: &Job) -> Option<String> {
    let JobPhase::Running(planned) = &job.phase else {
        return None;
    };
    match plan::reload(&job.spec, &job.job_dir) {
        Err(error) => Some(format!("resuming: the plan of the job is damaged: {error}")),
        Ok(plan)
            if plan.images != planned.images
                || plan.hierarchy.concepts().len() as u32 != planned.concepts =>
        {
            Some(format!(
                "resuming: the plan in {} has {} images and {} concepts, the journal {} and {}",
                job.job_dir.display(),
                plan.images,
                plan.hierarchy.concepts().len(),
                planned.images,
                planned.concepts
            ))
        }
        // The tar shards cut the extract tasks only when `images_per_task` is unset (and
        // journals from before the record had it set).
        Ok(plan)
            if job.spec.extract.images_per_task.is_none()
                && plan.tar_shards != planned.tar_shards =>
        {
            Some(format!(
                "resuming: the plan in {} has its images in {} tar shard(s), the journal {}: \
                 the extract tasks would be cut differently",
                job.job_dir.display(),
                plan.tar_shards.len(),
                planned.tar_shards.len()
            ))
        }
        Ok(_) => None,
    }
}

/// Removes files in a job's committed places that no commit names: a crash between moving an
/// attempt's files and making its commit durable leaves them, and a stage must never read
/// them (the task is redone, or quarantined and named).
fn sweep_uncommitted(job: &Job) {
    let mut committed = HashSet::new();
    for task in job.tasks.values() {
        if let TaskState::Done { output, .. } = &task.state {
            committed.extend(output.owned_paths());
        }
    }
    let owned = STAGES.iter().filter_map(|rules| rules.owned_place(job));
    for place in owned {
        for path in children(&place) {
            if committed.contains(&path) {
                continue;
            }
            tracing::warn!(job = %job.id, "removing {}: no commit names it", path.display());
            if let Err(error) = storage::remove_all(&path) {
                tracing::error!(%error, "could not remove {}", path.display());
            }
        }
    }
}

/// The entries directly under `place` (files and directories; for object storage, the
/// first component below the prefix of every object). None when `place` cannot be read.
fn children(place: &Path) -> Vec<PathBuf> {
    if !storage::is_remote(place) {
        let Ok(entries) = std::fs::read_dir(place) else {
            return Vec::new();
        };
        return entries.flatten().map(|e| e.path()).collect();
    }
    let entries = match storage::list(place) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!(%error, "could not list {}", place.display());
            return Vec::new();
        }
    };
    let mut children: Vec<PathBuf> = entries
        .iter()
        .filter_map(|e| e.path.strip_prefix(place).ok()?.iter().next())
        .map(|first| place.join(first))
        .collect();
    children.dedup();
    children
}

/// Moves a committed output's files into place. Idempotent: what is already in place is
/// left alone, so replaying a commit after a crash is safe.
pub fn move_committed(output: &Output) -> Result<(), String> {
    match output {
        Output::Extract { files, .. } => {
            for file in files {
                move_file(Path::new(&file.from), Path::new(&file.path))?;
            }
            Ok(())
        }
        Output::Sample { from, dir, .. } | Output::Train { from, dir, .. } => {
            move_dir(Path::new(from), Path::new(dir))
        }
        Output::Results { files } => {
            for file in files {
                move_file(Path::new(&file.from), Path::new(&file.path))?;
            }
            Ok(())
        }
        Output::Shapley { .. } => Ok(()),
    }
}

/// Removes what [`move_committed`] moved for a commit that was then not recorded: no commit
/// names those places, so no stage may read them (the restart sweep,
/// [`sweep_uncommitted`], would remove them too). Results are left: the report rewrites
/// what it owns there.
fn unmove(output: &Output) {
    for place in output.owned_paths() {
        tracing::warn!("removing {}: its commit was not taken", place.display());
        if let Err(error) = storage::remove_all(&place) {
            tracing::error!(%error, "could not remove {}", place.display());
        }
    }
}

/// Moves one file (or object) unless the target is already in place.
fn move_file(from: &Path, to: &Path) -> Result<(), String> {
    if storage::exists(to).map_err(|e| e.to_string())? {
        return Ok(());
    }
    if !storage::exists(from).map_err(|e| e.to_string())? {
        return Err(missing(from, to));
    }
    storage::rename(from, to)
        .map_err(|e| format!("moving {} to {}: {e}", from.display(), to.display()))
}

/// Moves a directory: one rename locally. An object store has no directories: each object
/// under the prefix moves on its own (copy, then delete), so a move cut short by a crash
/// leaves some objects at each end, and redoing it moves the rest.
fn move_dir(from: &Path, to: &Path) -> Result<(), String> {
    if !storage::is_remote(from) {
        if to.exists() {
            return Ok(());
        }
        if !from.exists() {
            return Err(missing(from, to));
        }
        // One rename moves the whole directory (its parent is created).
        return storage::rename(from, to)
            .map_err(|e| format!("moving {} to {}: {e}", from.display(), to.display()));
    }
    let objects = storage::list(from).map_err(|e| e.to_string())?;
    if objects.is_empty() {
        return if storage::is_dir(to).map_err(|e| e.to_string())? {
            Ok(())
        } else {
            Err(missing(from, to))
        };
    }
    for object in objects {
        let relative = object
            .path
            .strip_prefix(from)
            .map_err(|_| format!("{} is not under {}", object.path.display(), from.display()))?;
        storage::rename(&object.path, &to.join(relative))
            .map_err(|e| format!("moving {} to {}: {e}", object.path.display(), to.display()))?;
    }
    Ok(())
}

fn missing(from: &Path, to: &Path) -> String {
    format!(
        "{} is missing (and {} was never committed)",
        from.display(),
        to.display()
    )
}

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::records::CommittedFile;
    use crate::scheduler::TaskSpec;
    use hint_common::job::Stage;

    fn spec(root: &Path) -> String {
        crate::test_spec::spec(Path::new("/none/images"), Path::new("/none/c.json"), root).to_json()
    }

    /// The records of a planned job with two extract tasks (images 0..4 and 4..`images`)
    /// whose task 0 has attempt 1 started, then `more`, journalled and synced in `state`.
    fn journal_extract_job(
        state: &Path,
        job: &JobId,
        spec_json: String,
        job_dir: &Path,
        (images, concepts, tar_shards): (u64, u32, Vec<u64>),
        more: Vec<Record>,
    ) {
        let task = TaskId {
            job: job.clone(),
            stage: Stage::Extract,
            index: 0,
        };
        let mut records = vec![
            Record::Submitted {
                job: job.clone(),
                spec_json,
                job_dir: job_dir.display().to_string(),
                submitted_at: 0.0,
                parent: None,
            },
            Record::Planned {
                job: job.clone(),
                images,
                concepts,
                tar_shards,
            },
            Record::TasksAdded {
                job: job.clone(),
                tasks: vec![
                    TaskSpec::Extract {
                        index: 0,
                        first: 0,
                        end: 4,
                    },
                    TaskSpec::Extract {
                        index: 1,
                        first: 4,
                        end: images,
                    },
                ],
            },
            Record::AttemptStarted { task, attempt: 1 },
        ];
        records.extend(more);
        let (mut journal, _, _) = Journal::open(state).unwrap();
        journal.append(&records).unwrap();
        journal.sync().unwrap();
    }

    /// A coordinator on a planned job of 6 (empty) images in two extract tasks whose task 0
    /// has attempt 1 on record, with that attempt's region file.
    struct PlannedJob {
        coordinator: Arc<Coordinator>,
        task: TaskId,
        /// The region file in the attempt's directory.
        file: PathBuf,
        /// Where its commit puts it.
        committed: PathBuf,
    }

    impl PlannedJob {
        /// The attempt's completion, naming `file`.
        fn request(&self) -> proto::CompleteRequest {
            proto::CompleteRequest {
                worker_id: "w".into(),
                task_id: self.task.to_string(),
                attempt: 1,
                output: Some(extract_output(&self.file)),
            }
        }
    }

    fn planned_job(dir: &Path) -> PlannedJob {
        planned_job_with(dir, Some(4), Vec::new())
    }

    /// [`planned_job`] with `extract.images_per_task` and the journal's tar shard starts
    /// (the images stay loose files, whose plan has none).
    fn planned_job_with(
        dir: &Path,
        images_per_task: Option<u64>,
        tar_shards: Vec<u64>,
    ) -> PlannedJob {
        let images = dir.join("images");
        for (class, n) in [("cat", 2), ("dog", 3), ("car", 1)] {
            std::fs::create_dir_all(images.join(class)).unwrap();
            for i in 0..n {
                std::fs::write(images.join(class).join(format!("{class}_{i}.png")), b"").unwrap();
            }
        }
        let yaml = dir.join("pets.yaml");
        std::fs::write(
            &yaml,
            "children:\n  whole: [animal, car]\n  animal: [cat, dog]\n",
        )
        .unwrap();
        let mut spec = JobSpec::from_json(&spec(&dir.join("runs"))).unwrap();
        spec.data.images = images;
        spec.data.hierarchy = hint_common::job::spec::HierarchySpec::File { path: yaml };
        spec.extract.images_per_task = images_per_task;
        let job = JobId::numbered(1);
        let job_dir = dir.join("runs").join(&job.0);
        let plan = crate::plan::plan(&spec, &job_dir).unwrap();
        let task = TaskId {
            job: job.clone(),
            stage: Stage::Extract,
            index: 0,
        };
        journal_extract_job(
            &dir.join("state"),
            &job,
            spec.to_json(),
            &job_dir,
            (
                plan.images,
                plan.hierarchy.concepts().len() as u32,
                tar_shards,
            ),
            Vec::new(),
        );
        let (coordinator, _) =
            Coordinator::open(CoordinatorConfig::new(dir.join("state"))).unwrap();
        let attempt_dir = coordinator.read(|s| s.job(&task.job).unwrap().attempt_dir(&task, 1));
        std::fs::create_dir_all(&attempt_dir).unwrap();
        let name = "regions-s00000-00000.parquet";
        let file = attempt_dir.join(name);
        std::fs::write(&file, "rows").unwrap();
        let committed = coordinator.read(|s| s.job(&task.job).unwrap().regions_dir().join(name));
        PlannedJob {
            coordinator,
            task,
            file,
            committed,
        }
    }

    fn extract_output(file: &Path) -> proto::complete_request::Output {
        proto::complete_request::Output::Extract(proto::ExtractSummary {
            files: vec![proto::RegionFile {
                url: file.display().to_string(),
                rows: 1,
                foreground_rows: 1,
                background_rows: 0,
            }],
            skipped: vec![],
            images_processed: 4,
            seconds: 0.1,
            stages: vec![],
        })
    }

    /// Commit moves run outside the lock: while one completion of a task moves its files,
    /// another is not accepted and touches nothing; files moved for a commit the scheduler
    /// no longer takes (the job was cancelled meanwhile) are removed again.
    #[test]
    fn a_commit_in_flight_reserves_its_task_and_a_commit_not_taken_is_unmoved() {
        let dir = tempfile::tempdir().unwrap();
        let job = planned_job(dir.path());
        let PlannedJob {
            coordinator,
            task,
            file,
            committed,
        } = &job;

        // Another completion of the task is moving its files.
        coordinator.lock().committing.insert(task.clone());
        assert!(!coordinator.complete(job.request()).unwrap());
        assert!(file.exists() && !committed.exists(), "nothing moved");
        coordinator.lock().committing.remove(task);

        // Checked and reserved, moved, then the job is cancelled before the record.
        let checked = coordinator
            .begin_commit(task, 1, extract_output(file))
            .expect("wanted");
        assert!(coordinator
            .begin_commit(task, 1, extract_output(file))
            .is_none());
        let output = checked.unwrap();
        move_committed(&output).unwrap();
        assert!(committed.exists());
        coordinator.cancel(&task.job).unwrap();
        assert!(!coordinator
            .finish_commit(task.clone(), 1, Ok(output), true)
            .unwrap());
        assert!(
            !committed.exists(),
            "a commit not taken leaves nothing in regions/"
        );
        assert!(coordinator.lock().committing.is_empty());
    }

    #[test]
    fn a_worker_of_another_protocol_version_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, _) =
            Coordinator::open(CoordinatorConfig::new(dir.path().join("state"))).unwrap();
        let request = |protocol_version| proto::RegisterRequest {
            name: "old".into(),
            device: "cpu".into(),
            device_memory: 0,
            slots: 1,
            protocol_version,
        };
        let refused = coordinator
            .register(&request(PROTOCOL_VERSION - 1))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "worker protocol version {} is not this coordinator's {PROTOCOL_VERSION}: \
                 run matching versions",
                PROTOCOL_VERSION - 1
            )
        );
        assert!(coordinator.register(&request(PROTOCOL_VERSION)).is_ok());
    }

    #[test]
    fn a_jobs_spec_is_sent_with_its_first_task_to_each_worker_not_with_every_task() {
        let dir = tempfile::tempdir().unwrap();
        let job = planned_job(dir.path());
        let coordinator = &job.coordinator;
        let spec_json = coordinator.read(|s| s.job(&job.task.job).unwrap().spec_json.clone());
        let register = |name: &str| {
            let request = proto::RegisterRequest {
                name: name.into(),
                device: "cpu".into(),
                device_memory: 0,
                slots: 1,
                protocol_version: PROTOCOL_VERSION,
            };
            coordinator.register(&request).unwrap().worker_id
        };
        let poll = |worker_id: &str, known_jobs: Vec<String>| {
            coordinator
                .poll(&proto::PollRequest {
                    worker_id: worker_id.into(),
                    free_slots: 1,
                    running: vec![],
                    known_jobs,
                })
                .unwrap()
        };
        let job_id = job.task.job.0.clone();
        let (first, second) = (register("a"), register("b"));

        let response = poll(&first, vec![]);
        assert_eq!(response.tasks.len(), 1);
        let sent: Vec<_> = response
            .jobs
            .iter()
            .map(|j| (&j.job_id, &j.spec_json))
            .collect();
        assert_eq!(sent, [(&job_id, &spec_json)], "the worker named no job");
        // The other worker knows the job already (from an earlier task): no spec.
        let response = poll(&second, vec![job_id.clone()]);
        assert_eq!(response.tasks.len(), 1);
        assert!(response.jobs.is_empty(), "{:?}", response.jobs);
    }

    #[test]
    fn a_completion_moves_its_files_and_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let job = planned_job(dir.path());
        let coordinator = &job.coordinator;
        assert!(coordinator.complete(job.request()).unwrap());
        assert!(job.committed.exists() && !job.file.exists());
        assert!(coordinator.lock().committing.is_empty());
        assert!(
            !coordinator.complete(job.request()).unwrap(),
            "a second completion"
        );
        let status = coordinator.status(&job.task.job).unwrap();
        assert_eq!(status.stages[0].done, 1);
    }

    #[test]
    fn a_restart_removes_files_no_commit_names_and_refuses_a_missing_plan() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let job = JobId::numbered(1);
        let job_dir = dir.path().join("runs").join(&job.0);
        let regions = job_dir.join("regions");
        std::fs::create_dir_all(&regions).unwrap();
        let kept = regions.join("regions-s00000-00000.parquet");
        let orphan = regions.join("regions-s00001-00000.parquet");
        std::fs::write(&kept, "committed").unwrap();
        std::fs::write(&orphan, "moved, but the commit was never made durable").unwrap();
        let task = TaskId {
            job: job.clone(),
            stage: Stage::Extract,
            index: 0,
        };
        journal_extract_job(
            &state,
            &job,
            spec(&dir.path().join("runs")),
            &job_dir,
            (8, 3, Vec::new()),
            vec![Record::Committed {
                task,
                attempt: 1,
                output: Output::Extract {
                    files: vec![CommittedFile {
                        from: job_dir
                            .join("attempts/extract-00000-a1/x")
                            .display()
                            .to_string(),
                        path: kept.display().to_string(),
                        rows: 1,
                        foreground: 1,
                        background: 0,
                    }],
                    skipped: vec![],
                    images: 4,
                },
            }],
        );
        let (coordinator, actions) = Coordinator::open(CoordinatorConfig::new(state)).unwrap();
        assert!(actions.is_empty(), "{actions:?}");
        assert!(kept.exists(), "a committed file stays");
        assert!(!orphan.exists(), "a file no commit names is removed");
        let status = coordinator.status(&job).unwrap();
        assert_eq!(status.stages[0].done, 1);
        // This job's plan files were never written: it cannot resume, and says why.
        assert_eq!(status.phase, proto::JobPhase::Failed as i32);
        assert!(
            status.error.contains("the plan of the job is damaged"),
            "{}",
            status.error
        );
    }

    /// With `images_per_task` unset the tar shards cut the extract tasks: a restart whose
    /// plan files give other shards than the journal recorded refuses the job, since its
    /// tasks would be cut differently. With `images_per_task` set the shards cut nothing.
    #[test]
    fn a_restart_refuses_a_plan_whose_tar_shards_are_not_the_journals() {
        for (images_per_task, refused) in [(None, true), (Some(4), false)] {
            let dir = tempfile::tempdir().unwrap();
            // The helper's coordinator has opened (restarted on) the journal.
            let job = planned_job_with(dir.path(), images_per_task, vec![0, 2]);
            let status = job.coordinator.status(&job.task.job).unwrap();
            let failed = status.phase == proto::JobPhase::Failed as i32;
            assert_eq!(failed, refused, "{images_per_task:?}: {}", status.error);
            if refused {
                assert!(
                    status.error.contains("in 0 tar shard(s), the journal 2"),
                    "{}",
                    status.error
                );
            }
        }
    }
}

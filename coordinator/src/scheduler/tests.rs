//! The scheduler driven by virtual workers on a virtual clock (no network, GPU or files), in
//! the spirit of Ballista's `SchedulerTest`: a [`Harness`] owns a [`Scheduler`], advances
//! time by hand, leases tasks to named workers and settles them with synthetic outputs as
//! its behaviour closures say. Shapley outputs are real exact sums, so the bit-identity of
//! the merged sums (and so of Φ) is checked, not assumed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hint_common::job::wire::sums_to_proto;
use hint_common::shapley::{PartialSums, PermutationBlock, Sampling};
use proto::FailureReason;

use super::records::{hex, CommittedFile};
use super::*;

/// Short leases and grace so the virtual clock moves in small steps.
const CONFIG: SchedulerConfig = SchedulerConfig {
    lease_timeout: Duration::from_secs(10),
    worker_grace: Duration::from_secs(60),
};
/// Neurons of every synthetic Shapley output.
const NEURONS: usize = 4;
/// The plan of every job: 10 images in shards of 4 (3 extract tasks, 3 region files each: 2
/// sample parts and their merge) and 3 concepts in parts of 2 (2 train tasks).
const IMAGES: u64 = 10;
const CONCEPTS: u32 = 3;

/// A small valid spec: 8 antithetic permutations per concept in blocks of 4 (2 Shapley tasks
/// per concept), 3 attempts. Paths need not exist: the scheduler never opens them.
fn spec() -> JobSpec {
    crate::test_spec::spec(
        Path::new("/none/images"),
        Path::new("/none/c.json"),
        Path::new("/none/jobs"),
    )
}

/// The marginals of one sample, a function of (concept, sample index) alone, as a real
/// sweep's are. Concept 0 is noiseless (stderr 0: a stderr rule stops it after one block);
/// the others are noisy and not dyadic, so the fixed-point rounding is exercised.
fn marginals(concept: u32, sample: u64) -> Vec<f64> {
    let (c, s) = (f64::from(concept), sample as f64);
    let marginal = |d: f64| match concept {
        0 => 0.25 * (d + 1.0),
        _ => (c * 0.37 + s * 1.13 + d * 0.71).sin(),
    };
    (0..NEURONS).map(|d| marginal(d as f64)).collect()
}

/// The sums a worker would send for permutations `first..end` of `concept`.
fn block_sums(spec: &JobSpec, concept: u32, first: u64, end: u64) -> PartialSums {
    let sampling = match spec.shapley.antithetic {
        true => Sampling::Antithetic,
        false => Sampling::Independent,
    };
    let block = PermutationBlock::new(first, end);
    let mut sums = PartialSums::new(NEURONS, sampling, block);
    for sample in block.samples(sampling).expect("aligned block") {
        sums.add_sample(&marginals(concept, sample))
            .expect("marginals in range");
    }
    sums
}

/// Every concept's sums over all of its permutations, computed in one piece.
fn reference(spec: &JobSpec) -> BTreeMap<u32, PartialSums> {
    (0..CONCEPTS)
        .map(|c| (c, block_sums(spec, c, 0, spec.shapley.permutations)))
        .collect()
}

fn failure(reason: FailureReason, retryable: bool, counted: bool) -> Failure {
    let reason = reason.as_str_name().into();
    Failure {
        reason,
        retryable,
        counted,
        message: "boom".into(),
    }
}

fn task_id(job: &JobId, stage: Stage, index: u32) -> TaskId {
    TaskId {
        job: job.clone(),
        stage,
        index,
    }
}

/// A leased attempt.
type Lease = (TaskId, u32);
/// Which of the `n` held attempts (worker order, then lease order) settles next.
type Pick = Box<dyn FnMut(usize) -> usize>;
/// How an attempt ends: None succeeds.
type Ending = Box<dyn FnMut(&Lease) -> Option<Failure>>;

/// A scheduler, a virtual clock, the journal so far, what each virtual worker holds and how
/// the workers behave.
struct Harness {
    scheduler: Scheduler,
    base: Instant,
    elapsed: Duration,
    journal: Vec<Record>,
    held: BTreeMap<WorkerId, Vec<Lease>>,
    pick: Pick,
    outcome: Ending,
}

impl Harness {
    /// A fresh scheduler, started as the coordinator starts one: from an empty journal.
    fn new() -> Self {
        Harness::recovered(vec![], Instant::now(), Duration::ZERO).0
    }

    fn recovered(journal: Vec<Record>, base: Instant, elapsed: Duration) -> (Self, Vec<Action>) {
        let (scheduler, actions) = Scheduler::recover(CONFIG, journal.clone(), base + elapsed);
        let (pick, outcome) = (Box::new(|_: usize| 0), Box::new(|_: &Lease| None));
        let held = BTreeMap::new();
        let mut h = Harness {
            scheduler,
            base,
            elapsed,
            journal,
            held,
            pick,
            outcome,
        };
        h.sync();
        (h, actions)
    }

    /// A coordinator restart: a new scheduler rebuilt from this one's journal, at the same
    /// virtual time; workers and leases are forgotten.
    fn restart(&self) -> (Self, Vec<Action>) {
        Harness::recovered(self.journal.clone(), self.base, self.elapsed)
    }

    fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    fn advance(&mut self, seconds: u64) {
        self.elapsed += Duration::from_secs(seconds);
    }

    /// Moves the outbox to the journal, as the coordinator does after every call.
    fn sync(&mut self) {
        self.journal.extend(self.scheduler.take_records());
    }

    /// Submits `spec` and applies the standard plan.
    fn start(&mut self, spec: &JobSpec) -> JobId {
        let now = self.now();
        let (job, action) = self.scheduler.submit(spec, 0.0, now);
        assert_eq!(action, Action::Plan(job.clone()));
        assert_eq!(self.job(&job).stage(), Stage::Plan);
        let planned = Planned {
            images: IMAGES,
            concepts: CONCEPTS,
            tar_shards: Vec::new(),
        };
        let actions = self.scheduler.planned(&job, planned, now);
        assert!(actions.is_empty());
        self.sync();
        job
    }

    fn job(&self, id: &JobId) -> &Job {
        self.scheduler.job(id).expect("job exists")
    }

    fn task(&self, id: &TaskId) -> &Task {
        &self.job(&id.job).tasks[id]
    }

    /// A task's (state, attempts, failures).
    fn state(&self, id: &TaskId) -> (TaskState, u32, u32) {
        let task = self.task(id);
        (task.state.clone(), task.attempts, task.failures)
    }

    /// The attempt committed for a task, if any.
    fn committed(&self, id: &TaskId) -> Option<u32> {
        match self.task(id).state {
            TaskState::Done { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// A task's last failure as (reason, retryable, counted).
    fn last_failure(&self, id: &TaskId) -> (&str, bool, bool) {
        let last = self.task(id).last_failure.as_ref().expect("a failure");
        (last.reason.as_str(), last.retryable, last.counted)
    }

    /// How the job ended (None while it plans or runs).
    fn outcome(&self, id: &JobId) -> Option<Outcome> {
        self.job(id).ending().map(|e| e.outcome)
    }

    /// A poll by a worker the scheduler no longer knows.
    fn unknown(&mut self, worker: &WorkerId) -> bool {
        let polled = self.scheduler.poll(worker, 1, &[], self.now());
        polled == Err(SchedulerError::UnknownWorker(worker.clone()))
    }

    fn register(&mut self, name: &str, slots: u32) -> WorkerId {
        let now = self.now();
        self.scheduler
            .register(name.into(), "cpu".into(), slots, now)
    }

    /// A poll reporting what the worker holds: (new leases, cancelled).
    fn poll(&mut self, worker: &WorkerId, free: u32) -> (Vec<Lease>, Vec<Lease>) {
        let now = self.now();
        let held = self.held.entry(worker.clone()).or_default();
        let running: Vec<_> = held.iter().map(|(t, a)| (t.clone(), *a, 0, 1)).collect();
        let polled = self.scheduler.poll(worker, free, &running, now);
        let (tasks, cancel) = polled.expect("registered");
        let leases: Vec<Lease> = tasks
            .iter()
            .map(|t| (t.task_id.parse().expect("task id"), t.attempt))
            .collect();
        held.retain(|lease| !cancel.contains(lease));
        held.extend(leases.iter().cloned());
        self.sync();
        (leases, cancel)
    }

    /// A poll by a worker that reports nothing it runs (it stays alive; its leases do not).
    fn heartbeat(&mut self, worker: &WorkerId) {
        let polled = self.scheduler.poll(worker, 0, &[], self.now());
        polled.expect("registered");
    }

    /// Fills the worker's free slots.
    fn fill(&mut self, worker: &WorkerId) -> Vec<Lease> {
        let holding = self.held.get(worker).map_or(0, Vec::len) as u32;
        let free = self.scheduler.workers()[worker].slots - holding;
        self.poll(worker, free).0
    }

    /// One new lease.
    fn take(&mut self, worker: &WorkerId) -> Lease {
        let (leases, _) = self.poll(worker, 1);
        assert_eq!(leases.len(), 1, "{worker} got no task");
        leases[0].clone()
    }

    /// The output a worker would send for the attempt, with committed locations.
    fn output(&self, (id, attempt): &Lease) -> Output {
        let job = self.job(&id.job);
        match &self.task(id).spec {
            TaskSpec::Extract { first, end, .. } => {
                // Three region files per shard: 9 in all, two sample parts and their merge;
                // with several layers, three per layer, in the attempt's `<layer>/`.
                let places: Vec<(PathBuf, PathBuf)> = if job.has_layers() {
                    job.spec
                        .model
                        .layers
                        .iter()
                        .map(|l| {
                            let from = job.attempt_dir(id, *attempt).join(l);
                            (from, job.layer_dir(l).join("regions"))
                        })
                        .collect()
                } else {
                    vec![(job.attempt_dir(id, *attempt), job.regions_dir())]
                };
                let files = places
                    .iter()
                    .flat_map(|(from, regions)| {
                        (0..3).map(move |k| CommittedFile {
                            from: from.join(format!("r{k}.parquet")).display().to_string(),
                            path: regions
                                .join(format!("{}-{k}.parquet", id.local_name()))
                                .display()
                                .to_string(),
                            rows: end - first,
                            foreground: end - first,
                            background: 0,
                        })
                    })
                    .collect();
                Output::Extract {
                    files,
                    skipped: vec![],
                    images: end - first,
                }
            }
            TaskSpec::Sample { .. } => Output::Sample {
                from: job.attempt_dir(id, *attempt).display().to_string(),
                dir: job.sample_part_dir(id).display().to_string(),
                rows: 0,
            },
            TaskSpec::Train { concepts, .. } => Output::Train {
                from: job.attempt_dir(id, *attempt).display().to_string(),
                dir: job.classifiers_dir(id).display().to_string(),
                trained: concepts.clone(),
            },
            TaskSpec::Shapley {
                concept,
                first,
                end,
                ..
            } => {
                let wire = sums_to_proto(&block_sums(&job.spec, *concept, *first, *end), 0.0);
                let (sum, sum_sq) = (hex(&wire.sum), hex(&wire.sum_sq));
                let (neurons, samples, antithetic) = (wire.neurons, wire.samples, wire.antithetic);
                Output::Shapley {
                    neurons,
                    samples,
                    antithetic,
                    sum,
                    sum_sq,
                }
            }
            TaskSpec::Evaluate { .. } | TaskSpec::Ablate { .. } => Output::Results {
                files: vec![MovedFile {
                    from: job
                        .attempt_dir(id, *attempt)
                        .join("x.json")
                        .display()
                        .to_string(),
                    path: job.job_dir.join("results/x.json").display().to_string(),
                }],
            },
        }
    }

    fn complete(&mut self, lease: &Lease) -> (Acceptance, Vec<Action>) {
        let output = self.output(lease);
        let result = self
            .scheduler
            .complete(&lease.0, lease.1, output, self.now());
        self.settled(lease);
        result
    }

    fn fail(&mut self, lease: &Lease, failure: Failure) -> Vec<Action> {
        let actions = self.scheduler.fail(&lease.0, lease.1, failure, self.now());
        self.settled(lease);
        actions
    }

    /// The attempt ended on its worker.
    fn settled(&mut self, lease: &Lease) {
        for held in self.held.values_mut() {
            held.retain(|l| l != lease);
        }
        self.sync();
    }

    fn tick(&mut self) -> Vec<Action> {
        let actions = self.scheduler.tick(self.now());
        self.sync();
        actions
    }

    /// One round: every worker fills its slots, one held attempt (`pick`) settles as
    /// `outcome` says, a second passes and the scheduler ticks. None when nothing was held.
    fn step(&mut self, workers: &[WorkerId]) -> Option<Vec<Action>> {
        for w in workers {
            self.fill(w);
        }
        let holding: Vec<Lease> = workers.iter().flat_map(|w| self.held[w].clone()).collect();
        if holding.is_empty() {
            return None;
        }
        let lease = holding[(self.pick)(holding.len()) % holding.len()].clone();
        let mut actions = match (self.outcome)(&lease) {
            None => {
                let (acceptance, actions) = self.complete(&lease);
                assert_eq!(acceptance, Acceptance::Accepted, "{lease:?}");
                actions
            }
            Some(failure) => self.fail(&lease, failure),
        };
        self.advance(1);
        actions.extend(self.tick());
        Some(actions)
    }

    /// Steps until `done` holds or nothing is held; the actions returned on the way.
    fn run_until(
        &mut self,
        workers: &[WorkerId],
        done: impl Fn(&Scheduler) -> bool,
    ) -> Vec<Action> {
        let mut actions = vec![];
        while !done(&self.scheduler) {
            match self.step(workers) {
                Some(more) => actions.extend(more),
                None => break,
            }
            assert!(self.elapsed.as_secs() < 10_000, "the job never settled");
        }
        actions
    }

    fn run(&mut self, workers: &[WorkerId]) -> Vec<Action> {
        self.run_until(workers, |_| false)
    }

    fn count(&self, wanted: impl Fn(&Record) -> bool) -> usize {
        self.journal.iter().filter(|r| wanted(r)).count()
    }

    fn commits(&self, id: &TaskId) -> usize {
        self.count(|r| matches!(r, Record::Committed { task, .. } if task == id))
    }
}

/// The indices of a stage's tasks.
fn indices(job: &Job, stage: Stage) -> Vec<u32> {
    job.stage_tasks(stage).map(|t| t.id.index).collect()
}

/// How many tasks of a stage of job 1 satisfy `which` (for [`Harness::run_until`]).
fn tasks_of(s: &Scheduler, stage: Stage, which: fn(&Task) -> bool) -> usize {
    let job = s.job(&JobId::numbered(1)).expect("job 1");
    job.stage_tasks(stage).filter(|t| which(t)).count()
}

fn names(stages: &[Stage]) -> Vec<&str> {
    stages.iter().map(|s| s.name()).collect()
}

fn counted(reason: FailureReason) -> Failure {
    failure(reason, true, true)
}

#[test]
fn happy_path_runs_every_stage_and_reports_once_shapley_settled() {
    let mut h = Harness::new();
    let spec = spec();
    let job = h.start(&spec);
    let workers = [h.register("a", 1), h.register("b", 1)];
    assert_eq!(workers[0].0, "w1-0001");
    let first = h.take(&workers[0]);
    assert_eq!(first, (task_id(&job, Stage::Extract, 0), 1));
    let message = h.job(&job).task_message(&first.0, 1);
    assert_eq!(h.job(&job).spec_json, spec.to_json());
    let Some(proto::task::Kind::Extract(extract)) = message.kind else {
        panic!("an extract task")
    };
    let range = (extract.shard, extract.first_image, extract.end_image);
    assert_eq!(range, (0, 0, 4));
    assert!(extract.out_dir.ends_with("attempts/extract-00000-a1"));

    let mut stages = vec![Stage::Plan, h.job(&job).stage()];
    let mut settled = 0;
    while let Some(actions) = h.step(&workers) {
        settled += 1;
        let j = h.job(&job);
        stages.push(j.stage());
        // Report exactly when the last Shapley task settled, never before.
        let shapley = tasks_of(&h.scheduler, Stage::Shapley, |_| true);
        let open = shapley - tasks_of(&h.scheduler, Stage::Shapley, Task::is_settled);
        let report = shapley > 0 && open == 0;
        let expected = Vec::from_iter(report.then(|| Action::Report(job.clone())));
        assert_eq!(actions, expected, "after {settled} settled");
    }
    stages.dedup();
    let all = ["plan", "extract", "sample", "train", "shapley", "report"];
    assert_eq!(names(&stages), all);
    let j = h.job(&job);
    assert_eq!(settled, 14);
    assert!(j.tasks.keys().all(|id| h.committed(id) == Some(1)));
    assert_eq!(indices(j, Stage::Extract), [0, 1, 2]);
    assert_eq!(indices(j, Stage::Sample), [0, 1, 2]);
    assert_eq!(indices(j, Stage::Train), [0, 1]);
    // Parts of 8 files, then the merge of the parts; train reads the merge.
    let sample = |k| &j.tasks[&task_id(&job, Stage::Sample, k)].spec;
    let TaskSpec::Sample { files, parts, .. } = sample(0) else {
        panic!("a sample task")
    };
    assert_eq!((files.len(), parts.len()), (8, 0));
    assert!(
        files[0].ends_with("regions/extract-00000-0.parquet"),
        "{files:?}"
    );
    let TaskSpec::Sample { files, .. } = sample(1) else {
        panic!("a sample task")
    };
    assert!(files.len() == 1 && files[0].ends_with("extract-00002-2.parquet"));
    let TaskSpec::Sample { files, parts, .. } = sample(2) else {
        panic!("a sample task")
    };
    assert!(files.is_empty() && parts.len() == 2, "{parts:?}");
    assert!(parts[1].ends_with("samples/sample-00001"), "{parts:?}");
    let train = j.task_message(&task_id(&job, Stage::Train, 0), 1);
    let Some(proto::task::Kind::Train(train)) = train.kind else {
        panic!("a train task")
    };
    assert!(
        train.samples_dir.ends_with("samples/sample-00002"),
        "{train:?}"
    );
    // Without a rule every block is planned at once: index = concept × 2 blocks + block, and
    // each block reads the classifiers of the train task that holds its concept.
    for task in j.stage_tasks(Stage::Shapley) {
        let TaskSpec::Shapley {
            index,
            concept,
            first,
            end,
            classifiers,
        } = &task.spec
        else {
            panic!("{task:?}")
        };
        let block = (*concept, *first, *end);
        assert_eq!(
            block,
            (
                index / 2,
                u64::from(index % 2) * 4,
                u64::from(index % 2) * 4 + 4
            )
        );
        let part = if *concept < 2 {
            "train-00000"
        } else {
            "train-00001"
        };
        assert!(classifiers.ends_with(part), "{classifiers}");
    }
    assert_eq!(indices(j, Stage::Shapley), [0, 1, 2, 3, 4, 5]);
    assert_eq!(j.sums, reference(&spec));

    let added: Vec<&[TaskSpec]> = (h.journal.iter())
        .filter_map(|r| match r {
            Record::TasksAdded { tasks, .. } => Some(tasks.as_slice()),
            _ => None,
        })
        .collect();
    let sizes: Vec<usize> = added.iter().map(|a| a.len()).collect();
    assert_eq!(sizes, [3, 2, 1, 2, 6]);
    assert!(matches!(added[0][0], TaskSpec::Extract { .. }));
    assert!(matches!(added[1][0], TaskSpec::Sample { .. }));
    assert!(matches!(added[3][0], TaskSpec::Train { .. }));
    assert_eq!(h.journal[0], Record::Started { incarnation: 1 });
    assert!(matches!(h.journal[1], Record::Submitted { .. }));
    let (images, concepts) = (IMAGES, CONCEPTS);
    let planned = Record::Planned {
        job: job.clone(),
        images,
        concepts,
        tar_shards: Vec::new(),
    };
    assert_eq!(h.journal[2], planned);
    let first_attempts = h.count(|r| matches!(r, Record::AttemptStarted { attempt: 1, .. }));
    assert_eq!(first_attempts, 14);
    assert_eq!(h.count(|r| matches!(r, Record::AttemptStarted { .. })), 14);
    assert_eq!(h.count(|r| matches!(r, Record::AttemptFailed { .. })), 0);
    assert!(h.job(&job).tasks.keys().all(|id| h.commits(id) == 1));

    h.scheduler.finish(&job, Outcome::Succeeded, None, h.now());
    h.sync();
    assert_eq!(h.outcome(&job), Some(Outcome::Succeeded));
    let outcome = Outcome::Succeeded;
    let finished = Record::Finished {
        job,
        outcome,
        error: None,
    };
    assert_eq!(h.journal.last(), Some(&finished));
}

/// Worker `a` takes extract-00000 and goes silent while `b` keeps polling; the tick after the
/// lease timeout declares `a` lost, and `b` takes attempt 2.
fn lost_worker() -> (Harness, TaskId, WorkerId) {
    let mut h = Harness::new();
    h.start(&spec());
    let (a, b) = (h.register("a", 1), h.register("b", 1));
    let id = h.take(&a).0;
    h.advance(10);
    h.heartbeat(&b);
    assert!(h.tick().is_empty());
    let running = TaskState::Running {
        worker: a.clone(),
        attempt: 1,
        deadline: h.now(),
    };
    assert_eq!(h.state(&id), (running, 1, 0), "10 s are allowed");
    h.advance(1);
    h.heartbeat(&b);
    assert!(h.tick().is_empty());
    assert_eq!(h.scheduler.workers().keys().collect::<Vec<_>>(), [&b]);
    assert_eq!(h.state(&id), (TaskState::Pending, 1, 1));
    assert_eq!(
        h.last_failure(&id),
        ("FAILURE_REASON_WORKER_LOST", true, true)
    );
    assert!(h.unknown(&a));
    assert_eq!(h.take(&b), (id.clone(), 2));
    // The lost worker's failure of its old attempt changes nothing.
    let actions = h.fail(&(id.clone(), 1), counted(FailureReason::Execution));
    assert!(actions.is_empty());
    let running = TaskState::Running {
        worker: b.clone(),
        attempt: 2,
        deadline: h.now() + CONFIG.lease_timeout,
    };
    assert_eq!(h.state(&id), (running, 2, 1));
    (h, id, b)
}

#[test]
fn a_lost_worker_is_replaced_and_its_late_completion_is_rejected() {
    let (mut h, id, _) = lost_worker();
    assert_eq!(h.complete(&(id.clone(), 2)).0, Acceptance::Accepted);
    assert_eq!(h.complete(&(id.clone(), 1)).0, Acceptance::Rejected);
    assert_eq!((h.committed(&id), h.commits(&id)), (Some(2), 1));
}

#[test]
fn a_late_completion_before_the_retry_wins_exactly_once() {
    let (mut h, id, b) = lost_worker();
    assert_eq!(h.complete(&(id.clone(), 1)).0, Acceptance::Accepted);
    // `b` is told to stop attempt 2 at its next poll; its completion is rejected anyway.
    assert_eq!(h.poll(&b, 0).1, [(id.clone(), 2)]);
    assert_eq!(h.complete(&(id.clone(), 2)).0, Acceptance::Rejected);
    assert_eq!((h.committed(&id), h.commits(&id)), (Some(1), 1));
}

#[test]
fn an_expired_lease_is_retried_and_cancelled_on_the_worker() {
    let mut h = Harness::new();
    h.start(&spec());
    let w = h.register("a", 1);
    let lease = h.take(&w);
    let id = lease.0.clone();
    // The worker keeps polling but no longer reports the task.
    for _ in 0..2 {
        h.advance(5);
        h.heartbeat(&w);
        assert!(h.tick().is_empty());
    }
    assert_eq!(
        h.task(&id).current_attempt(),
        Some(1),
        "the deadline is now"
    );
    h.advance(1);
    h.heartbeat(&w);
    assert!(h.tick().is_empty());
    assert!(
        h.scheduler.workers().contains_key(&w),
        "the worker is alive"
    );
    assert_eq!(h.state(&id), (TaskState::Pending, 1, 1));
    assert_eq!(
        h.last_failure(&id),
        ("FAILURE_REASON_WORKER_LOST", true, true)
    );
    let failure = h.task(&id).last_failure.clone().expect("a failure");
    let failed = Record::AttemptFailed {
        task: id.clone(),
        attempt: 1,
        failure,
    };
    assert_eq!(h.journal.last(), Some(&failed));
    // Reporting the stale attempt gets it cancelled; the retry is attempt 2.
    let (leases, cancel) = h.poll(&w, 1);
    assert_eq!((leases, cancel), (vec![(id, 2)], vec![lease]));
}

/// Without a part its files' rows would be missing from every sample: the job fails,
/// naming the part, and nothing is merged or trained.
#[test]
fn a_quarantined_sample_part_fails_the_job() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    let part = task_id(&job, Stage::Sample, 1);
    let lost = part.clone();
    h.outcome = Box::new(move |(id, _)| {
        (*id == lost).then(|| failure(FailureReason::BadInput, false, true))
    });
    assert!(h.run(&[w]).is_empty());
    let j = h.job(&job);
    assert_eq!(j.ending().map(|e| e.outcome), Some(Outcome::Failed));
    let error = "the job's sample could not be drawn \
                 (1 quarantined: sample-00001 (BAD_INPUT: boom))";
    assert_eq!(j.error(), Some(error));
    assert_eq!(indices(j, Stage::Sample), [0, 1]);
    assert!(!j.tasks.keys().any(|t| t.stage == Stage::Train));
    assert_eq!(j.samples_dir(), None);
}

#[test]
fn a_failing_task_is_quarantined_at_max_attempts_and_the_stage_goes_on() {
    let mut h = Harness::new();
    let spec = spec();
    let job = h.start(&spec);
    let w = h.register("a", 1);
    let id = task_id(&job, Stage::Extract, 0);
    for attempt in 1..=3 {
        let lease = h.take(&w);
        assert_eq!(lease, (id.clone(), attempt));
        assert!(h.fail(&lease, counted(FailureReason::Execution)).is_empty());
        let (state, _, failures) = h.state(&id);
        let quarantined = state == TaskState::Quarantined;
        assert_eq!((quarantined, failures), (attempt == 3, attempt));
    }
    assert_eq!(h.run(&[w]), [Action::Report(job.clone())]);
    let j = h.job(&job);
    let summary = "1 quarantined: extract-00000 (EXECUTION: boom)";
    assert_eq!(j.quarantine_summary(Stage::Extract), summary);
    assert_eq!(j.quarantine_summary(Stage::Train), "none quarantined");
    assert_eq!(j.stage(), Stage::Report);
    assert_eq!(j.sums, reference(&spec));
    let attempts = h.count(|r| matches!(r, Record::AttemptStarted { task, .. } if *task == id));
    assert_eq!(attempts, 3);
}

#[test]
fn a_job_whose_every_extract_task_is_quarantined_fails() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    h.outcome = Box::new(|_| Some(counted(FailureReason::Io)));
    assert!(h.run(&[w]).is_empty());
    let j = h.job(&job);
    assert_eq!(j.ending().map(|e| e.outcome), Some(Outcome::Failed));
    let each = |k| format!("extract-0000{k} (IO: boom)");
    let quarantined = format!("3 quarantined: {}; {}; {}", each(0), each(1), each(2));
    let error = format!("every extract task was quarantined ({quarantined})");
    assert_eq!(j.error(), Some(error.as_str()));
    assert!(!j.tasks.keys().any(|t| t.stage == Stage::Train));
    assert_eq!(h.count(|r| matches!(r, Record::AttemptStarted { .. })), 9);
}

#[test]
fn bad_input_is_quarantined_after_one_attempt() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    let lease = h.take(&w);
    h.fail(&lease, failure(FailureReason::BadInput, false, true));
    assert_eq!(h.state(&lease.0), (TaskState::Quarantined, 1, 1));
    assert!(!h.job(&job).pending.contains(&lease.0));
    assert_eq!(h.take(&w), (task_id(&job, Stage::Extract, 1), 1));
}

#[test]
fn cancelled_attempts_never_quarantine() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    let id = task_id(&job, Stage::Extract, 0);
    for attempt in 1..=10 {
        let lease = h.take(&w);
        assert_eq!(lease, (id.clone(), attempt));
        h.fail(&lease, failure(FailureReason::Cancelled, true, false));
        assert_eq!(h.state(&id), (TaskState::Pending, attempt, 0));
    }
    let lease = h.take(&w);
    assert_eq!(lease, (id.clone(), 11));
    assert_eq!(h.complete(&lease).0, Acceptance::Accepted);
    assert_eq!(h.committed(&id), Some(11));
}

#[test]
fn a_job_without_workers_fails_after_the_grace_period() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    assert_eq!(h.job(&job).no_worker_since, None);
    h.take(&w);
    h.advance(11);
    h.tick();
    assert_eq!(h.job(&job).no_worker_since, Some(h.now()));
    h.advance(59);
    h.tick();
    assert!(matches!(h.job(&job).phase, JobPhase::Running(_)));
    h.advance(1);
    h.tick();
    let j = h.job(&job);
    assert_eq!(j.ending().map(|e| e.outcome), Some(Outcome::Failed));
    let error = j.error().expect("an error");
    let reason = "no worker was seen for 60 s (the grace period)";
    assert!(error.starts_with(reason), "{error}");
    assert!(j.pending.is_empty());
    let last = h.journal.last();
    assert!(matches!(
        last,
        Some(Record::Finished {
            outcome: Outcome::Failed,
            ..
        })
    ));
}

#[test]
fn a_registering_worker_restarts_the_grace_clock() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    h.register("a", 1);
    h.advance(11);
    h.tick();
    assert!(h.scheduler.workers().is_empty());
    h.advance(30);
    let b = h.register("b", 1);
    assert_eq!(h.job(&job).no_worker_since, None);
    h.advance(29);
    h.heartbeat(&b);
    h.advance(1);
    h.tick(); // 60 s after `a` was lost, but `b` is alive
    assert!(matches!(h.job(&job).phase, JobPhase::Running(_)));
    h.advance(10);
    h.tick(); // `b` was last seen 11 s ago: lost, and the clock starts again
    assert!(h.scheduler.workers().is_empty());
    h.advance(59);
    h.tick();
    assert!(matches!(h.job(&job).phase, JobPhase::Running(_)));
    h.advance(1);
    h.tick();
    assert_eq!(h.outcome(&job), Some(Outcome::Failed));
}

#[test]
fn a_job_awaiting_its_report_needs_no_worker() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    let actions = h.run(std::slice::from_ref(&w));
    assert_eq!(actions, [Action::Report(job.clone())]);
    // The workers drain once nothing is pending, while the coordinator writes the results.
    h.scheduler.leave(&w, h.now());
    h.advance(61);
    h.tick();
    assert!(matches!(h.job(&job).phase, JobPhase::Running(_)));
    h.scheduler.finish(&job, Outcome::Succeeded, None, h.now());
    assert_eq!(h.outcome(&job), Some(Outcome::Succeeded));
}

#[test]
fn leaving_requeues_without_counting() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let (a, b) = (h.register("a", 2), h.register("b", 1));
    let leases = h.fill(&a);
    let ids = [0, 1].map(|k| task_id(&job, Stage::Extract, k));
    assert_eq!(leases, [(ids[0].clone(), 1), (ids[1].clone(), 1)]);
    assert!(h.scheduler.leave(&a, h.now()).is_empty());
    h.sync();
    for id in &ids {
        assert_eq!(h.state(id), (TaskState::Pending, 1, 0));
        assert_eq!(
            h.last_failure(id),
            ("FAILURE_REASON_CANCELLED", true, false)
        );
    }
    let failed =
        h.count(|r| matches!(r, Record::AttemptFailed { failure, .. } if !failure.counted));
    assert_eq!(failed, 2);
    assert!(h.unknown(&a));
    assert_eq!(h.job(&job).no_worker_since, None, "`b` is still there");
    assert_eq!(h.take(&b), (ids[0].clone(), 2));
}

#[test]
fn recovery_resumes_mid_shapley_with_identical_sums() {
    let spec = spec();
    let mut h = Harness::new();
    let job = h.start(&spec);
    let workers = [h.register("a", 1), h.register("b", 1)];
    h.run_until(&workers, |s| {
        tasks_of(s, Stage::Shapley, Task::is_settled) == 2
    });
    for w in &workers {
        h.fill(w);
    }
    let before = h.job(&job).clone();
    let running: Vec<Lease> = h.held.values().flatten().cloned().collect();
    assert_eq!((running.len(), before.pending.len()), (2, 2));

    let (mut r, actions) = h.restart();
    assert!(actions.is_empty());
    assert_eq!(r.journal.last(), Some(&Record::Started { incarnation: 2 }));
    for (id, old) in &before.tasks {
        let (state, attempts, failures) = r.state(id);
        assert_eq!((attempts, failures), (old.attempts, old.failures), "{id}");
        let expected = match &old.state {
            TaskState::Running { .. } => TaskState::Pending,
            other => other.clone(),
        };
        assert_eq!(state, expected, "{id}");
    }
    let after = r.job(&job);
    assert_eq!(after.sums, before.sums);
    assert_eq!(
        after.sums.values().map(PartialSums::samples).sum::<u64>(),
        4
    );
    assert!(r.unknown(&workers[0]));

    // The old incarnation's first attempt still lands; the other running task is retried.
    assert_eq!(r.complete(&running[0]).0, Acceptance::Accepted);
    let c = r.register("c", 1);
    assert_eq!(c.0, "w2-0001");
    assert_eq!(r.take(&c), (running[1].0.clone(), 2));
    assert_eq!(r.run(&[c]), [Action::Report(job.clone())]);

    let mut undisturbed = Harness::new();
    let other = undisturbed.start(&spec);
    let w = undisturbed.register("a", 1);
    undisturbed.run(&[w]);
    assert_eq!(r.job(&job).sums, undisturbed.job(&other).sums);
    assert_eq!(r.job(&job).sums, reference(&spec));
    assert!(r.job(&job).tasks.keys().all(|id| r.commits(id) == 1));
    // A restart after the last commit asks for the report again.
    assert_eq!(r.restart().1, [Action::Report(job)]);
}

/// Images in tar shards: with `images_per_task` unset, one extract task per shard, cut from
/// the `Planned` record's shard starts (so a restart cuts the same); set, the manifest is cut
/// by count as for loose files.
#[test]
fn extract_tasks_are_one_tar_shard_each_unless_images_per_task_is_set() {
    let extract_ranges = |h: &Harness, job: &JobId| -> Vec<(u64, u64)> {
        h.job(job)
            .stage_tasks(Stage::Extract)
            .map(|t| match t.spec {
                TaskSpec::Extract { first, end, .. } => (first, end),
                _ => unreachable!(),
            })
            .collect()
    };
    let mut h = Harness::new();
    let mut spec = spec();
    spec.extract.images_per_task = None;
    let now = h.now();
    let (job, _) = h.scheduler.submit(&spec, 0.0, now);
    let planned = Planned {
        images: 12,
        concepts: CONCEPTS,
        tar_shards: vec![0, 5, 7],
    };
    assert!(h.scheduler.planned(&job, planned, now).is_empty());
    h.sync();
    assert_eq!(extract_ranges(&h, &job), [(0, 5), (5, 7), (7, 12)]);
    let (r, _) = h.restart();
    assert_eq!(r.job(&job).running(), h.job(&job).running());
    assert_eq!(extract_ranges(&r, &job), [(0, 5), (5, 7), (7, 12)]);

    spec.extract.images_per_task = Some(4);
    let (other, _) = h.scheduler.submit(&spec, 0.0, now);
    let planned = Planned {
        images: 12,
        concepts: CONCEPTS,
        tar_shards: vec![0, 5, 7],
    };
    h.scheduler.planned(&other, planned, now);
    assert_eq!(extract_ranges(&h, &other), [(0, 4), (4, 8), (8, 12)]);
}

/// A job journalled before the sample stage existed (train tasks added straight after
/// extract) resumes without one: no sample task is ever added, train tasks are told no
/// sample (they stream the region files), and the sums are the undisturbed run's.
#[test]
fn a_job_journalled_before_the_sample_stage_resumes_without_one() {
    let spec = spec();
    let mut h = Harness::new();
    let job = h.start(&spec);
    let w = h.register("a", 1);
    h.run_until(&[w], |s| tasks_of(s, Stage::Train, Task::is_settled) == 1);
    let is_sample = |task: &TaskId| task.stage == Stage::Sample;
    let old: Vec<Record> = h
        .journal
        .iter()
        .filter_map(|record| match record {
            Record::TasksAdded { job, tasks } => {
                let tasks: Vec<TaskSpec> = tasks
                    .iter()
                    .filter(|t| !matches!(t, TaskSpec::Sample { .. }))
                    .cloned()
                    .collect();
                (!tasks.is_empty()).then(|| Record::TasksAdded {
                    job: job.clone(),
                    tasks,
                })
            }
            Record::AttemptStarted { task, .. }
            | Record::AttemptFailed { task, .. }
            | Record::Committed { task, .. }
                if is_sample(task) =>
            {
                None
            }
            other => Some(other.clone()),
        })
        .collect();
    assert!(
        old.len() < h.journal.len(),
        "the run had sample records to drop"
    );

    let (mut r, _) = Harness::recovered(old, h.base, h.elapsed);
    let j = r.job(&job);
    assert_eq!(indices(j, Stage::Sample), Vec::<u32>::new());
    assert_eq!(j.samples_dir(), None);
    let Some(proto::task::Kind::Train(train)) =
        j.task_message(&task_id(&job, Stage::Train, 1), 1).kind
    else {
        panic!("a train task")
    };
    assert_eq!(train.samples_dir, "", "{train:?}");
    let w = r.register("b", 1);
    assert_eq!(r.run(&[w]), [Action::Report(job.clone())]);
    assert_eq!(indices(r.job(&job), Stage::Sample), Vec::<u32>::new());
    assert_eq!(r.job(&job).sums, reference(&spec));
}

#[test]
fn a_stopping_rule_plans_blocks_only_for_concepts_that_need_them() {
    let mut spec = spec();
    spec.shapley.antithetic = false;
    spec.shapley.permutations = 40;
    spec.shapley.permutations_per_task = 10;
    spec.shapley.until_stderr = Some(0.01);
    let mut h = Harness::new();
    let job = h.start(&spec);
    let w = h.register("a", 3);
    h.run_until(std::slice::from_ref(&w), |s| {
        tasks_of(s, Stage::Shapley, |_| true) > 0
    });
    // One block per concept first; index = concept × 4 blocks + block.
    assert_eq!(indices(h.job(&job), Stage::Shapley), [0, 4, 8]);
    assert_eq!(h.poll(&w, 3).0.len(), 3);
    let lease = |k: u32| (task_id(&job, Stage::Shapley, k), 1);
    // Concept 0 is noiseless: its rule holds after one block, so nothing more is planned.
    h.complete(&lease(0));
    assert_eq!(indices(h.job(&job), Stage::Shapley), [0, 4, 8]);
    // Concept 1 is noisy: its next block opens at once, while concept 2's first is out.
    h.complete(&lease(4));
    assert_eq!(indices(h.job(&job), Stage::Shapley), [0, 4, 5, 8]);
    let block = &h.task(&task_id(&job, Stage::Shapley, 5)).spec;
    let TaskSpec::Shapley {
        concept,
        first,
        end,
        ..
    } = block
    else {
        panic!("{block:?}")
    };
    assert_eq!((*concept, *first, *end), (1, 10, 20));
    assert_eq!(h.run(&[w]), [Action::Report(job.clone())]);
    let j = h.job(&job);
    assert_eq!(indices(j, Stage::Shapley), [0, 4, 5, 6, 7, 8, 9, 10, 11]);
    let samples: Vec<u64> = j.sums.values().map(PartialSums::samples).collect();
    assert_eq!(samples, [10, 40, 40]);
    assert_eq!(j.sums[&0], block_sums(&spec, 0, 0, 10));
    assert_eq!(j.sums[&1], block_sums(&spec, 1, 0, 40));
}

/// A deterministic shuffle of which held attempt completes next (an LCG).
fn scrambled() -> Pick {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    Box::new(move |n| {
        state = state.wrapping_mul(6_364_136_223_846_793_005);
        state = state.wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % n
    })
}

#[test]
fn sums_are_bit_identical_for_any_workers_order_and_split() {
    let run = |spec: &JobSpec, slots: &[u32], pick: Pick| {
        let mut h = Harness::new();
        h.pick = pick;
        let job = h.start(spec);
        let workers: Vec<WorkerId> = slots.iter().map(|&s| h.register("w", s)).collect();
        assert_eq!(h.run(&workers), [Action::Report(job.clone())]);
        h.job(&job).sums.clone()
    };
    let spec = spec();
    let one = run(&spec, &[1], Box::new(|_| 0));
    let many = run(&spec, &[2, 2, 2], scrambled());
    let mut finer = spec.clone();
    finer.shapley.permutations_per_task = 2;
    let split = run(&finer, &[1, 3], Box::new(|n| n - 1));
    assert_eq!(one, many);
    assert_eq!(one, split);
    assert_eq!(one, reference(&spec));
    let whole = [PermutationBlock::new(0, 8)];
    assert!(one.values().all(|s| s.blocks() == whole));
}

#[test]

fn a_cancelled_job_stops_its_running_attempts() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 2);
    let leases = h.fill(&w);
    let why = Some("cancelled by a client".into());
    h.scheduler.finish(&job, Outcome::Cancelled, why, h.now());
    assert_eq!(h.poll(&w, 2), (vec![], leases.clone()));
    assert_eq!(h.complete(&leases[0]).0, Acceptance::Rejected);
}

#[test]
fn after_a_restart_a_worker_keeps_the_attempt_it_is_running() {
    let mut h = Harness::new();
    let _job = h.start(&spec());
    let w = h.register("a", 2);
    let leases = h.fill(&w);
    assert_eq!(leases.len(), 2);
    let (mut h, _) = h.restart();
    // The worker registers again and reports what it still runs: it keeps both attempts,
    // nothing is cancelled, and the next lease is another task, not a retry.
    let again = h.register("a", 3);
    h.held.insert(again.clone(), leases.clone());
    let (new, cancel) = h.poll(&again, 1);
    assert!(cancel.is_empty(), "{cancel:?}");
    assert_eq!(new.len(), 1);
    assert!(!leases.iter().any(|(task, _)| *task == new[0].0));
    for lease in &leases {
        assert_eq!(h.task(&lease.0).current_attempt(), Some(lease.1));
        assert_eq!(h.complete(lease).0, Acceptance::Accepted);
    }
    assert_eq!(h.complete(&new[0]).0, Acceptance::Accepted);
    // An attempt that failed before the restart is not taken back.
    let lost = h.take(&again);
    h.fail(&lost, counted(FailureReason::Execution));
    let (mut h, _) = h.restart();
    let w3 = h.register("b", 1);
    h.held.insert(w3.clone(), vec![lost.clone()]);
    let (new, cancel) = h.poll(&w3, 1);
    assert_eq!(cancel, vec![lost.clone()]);
    assert_eq!(new, vec![(lost.0.clone(), lost.1 + 1)]);
}

/// The spec with `[evaluate]` and `[ablate]` (paths need not exist here either).
fn assessed_spec() -> JobSpec {
    use hint_common::ablation::{AblationSelection, Removal};
    use hint_common::job::spec::{AblateSpec, EvaluateSpec};
    let mut spec = spec();
    spec.evaluate = Some(EvaluateSpec {
        annotations: "/none/annotations".into(),
        masks: None,
        fractions: vec![10],
        images_per_concept: 4,
        random_draws: 1,
        bootstrap: 100,
        images: None,
    });
    spec.ablate = Some(AblateSpec {
        images: None,
        max_images: 8,
        fractions: vec![10],
        removals: vec![Removal::Zero],
        selections: vec![AblationSelection::Random],
        random_draws: 1,
        bootstrap: 0,
    });
    spec
}

#[test]
fn evaluate_and_ablate_run_on_the_reported_phi_then_the_report_runs_again() {
    let mut h = Harness::new();
    let job = h.start(&assessed_spec());
    let w = [h.register("a", 2)];
    // Shapley settles: the report writes Φ first.
    assert_eq!(h.run(&w), [Action::Report(job.clone())]);
    assert_eq!(h.job(&job).stage(), Stage::Report);
    // A restart before the report told the scheduler reports again (the same Φ).
    assert_eq!(h.restart().1, [Action::Report(job.clone())]);

    h.scheduler.reported(&job, h.now());
    h.sync();
    assert!(matches!(h.job(&job).phase, JobPhase::Running(_)));
    assert_eq!(indices(h.job(&job), Stage::Evaluate), [0]);
    assert_eq!(indices(h.job(&job), Stage::Ablate), [0]);
    assert_eq!(h.job(&job).stage(), Stage::Evaluate);
    // Restarted now, the open tasks wait for workers: no report yet.
    let (restarted, actions) = h.restart();
    assert!(actions.is_empty());
    assert_eq!(restarted.job(&job).assessments(), Ok(Vec::new()));

    let leases = h.fill(&w[0]);
    let stages: Vec<Stage> = leases.iter().map(|(id, _)| id.stage).collect();
    assert_eq!(stages, [Stage::Evaluate, Stage::Ablate]);
    let message = h.job(&job).task_message(&leases[0].0, 1);
    let Some(proto::task::Kind::Evaluate(evaluate)) = message.kind else {
        panic!("an evaluate task")
    };
    assert!(evaluate.out_dir.ends_with("attempts/evaluate-00000-a1"));
    let (_, actions) = h.complete(&leases[1]);
    assert!(actions.is_empty(), "evaluate is still open");
    assert_eq!(h.job(&job).stage(), Stage::Evaluate);
    let (_, actions) = h.complete(&leases[0]);
    assert_eq!(actions, [Action::Report(job.clone())]);
    assert_eq!(h.job(&job).stage(), Stage::Report);
    assert_eq!(h.restart().1, [Action::Report(job.clone())]);

    // The second report finds nothing left to add: the job succeeded.
    h.scheduler.reported(&job, h.now());
    h.sync();
    assert_eq!(h.outcome(&job), Some(Outcome::Succeeded));
    let added = h.count(|r| matches!(r, Record::TasksAdded { .. }));
    assert_eq!(
        added, 6,
        "extract, sample parts, sample merge, train, shapley, then evaluate + ablate at once"
    );
}

#[test]
fn a_quarantined_evaluate_task_fails_the_job_after_phi_was_written() {
    let mut h = Harness::new();
    let job = h.start(&assessed_spec());
    let w = [h.register("a", 1)];
    assert_eq!(h.run(&w), [Action::Report(job.clone())]);
    h.scheduler.reported(&job, h.now());
    h.sync();
    h.outcome = Box::new(|(id, _): &Lease| {
        (id.stage == Stage::Evaluate).then(|| failure(FailureReason::BadInput, false, true))
    });
    let actions = h.run(&w);
    assert!(actions.is_empty());
    let j = h.job(&job);
    assert_eq!(j.ending().map(|e| e.outcome), Some(Outcome::Failed));
    let error = j.error().unwrap_or_default();
    assert!(
        error.starts_with("evaluate: 1 quarantined: evaluate-00000 (BAD_INPUT: boom)"),
        "{error}"
    );
    assert!(
        error.contains("Φ was written to /none/jobs/job-0001/results"),
        "{error}"
    );
    assert!(h.committed(&task_id(&job, Stage::Ablate, 0)).is_some());
}

#[test]
fn a_job_without_evaluate_or_ablate_succeeds_at_its_first_report() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = [h.register("a", 1)];
    assert_eq!(h.run(&w), [Action::Report(job.clone())]);
    h.scheduler.reported(&job, h.now());
    h.sync();
    assert_eq!(h.outcome(&job), Some(Outcome::Succeeded));
    assert!(!h.job(&job).tasks.keys().any(|id| id.stage > Stage::Shapley));
}

mod layers;
pub(crate) mod snapshot;

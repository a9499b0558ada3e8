//! The worker's loop: register with the coordinator, poll for tasks (the poll is the
//! heartbeat that keeps leases alive), run them on blocking threads with a [`RunTask`] (the
//! engines' [`TaskRunner`], or a stub in the runtime's own tests), and report each result
//! exactly as it came out.
//!
//! Robustness rules:
//! - The coordinator going away is normal: calls are retried with exponential backoff
//!   (tonic's channel reconnects), results wait in an outbox until they are delivered, and a
//!   coordinator that no longer knows this worker (it restarted) is registered with again —
//!   the tasks still running keep running and their results are offered as usual; the
//!   coordinator accepts the first completion of a task, whichever attempt it is.
//! - Shutdown (SIGTERM) drains: no new work is taken, running tasks may finish for the drain
//!   period, then they are cancelled and reported as such (requeued without penalty), and
//!   the worker leaves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hint_common::job::{JobSpec, PROTOCOL_VERSION};
use hint_common::proto::{self, scheduler_client::SchedulerClient};
use hint_common::transport::{self, AuthorizedChannel, ClientTransport, TransportError};
use tokio::sync::mpsc;
use tonic::Code;

use crate::tasks::{Lease, TaskFailure, TaskRunner};

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's URL (`http://host:port`, or `https://` with TLS settings).
    pub coordinator: String,
    /// A name for logs and status (host or pod name).
    pub name: String,
    /// The device, as told to the coordinator.
    pub device: String,
    /// Tasks run at once.
    pub slots: u32,
    /// How long running tasks may finish after a shutdown request.
    pub drain: Duration,
    /// Longest wait between retries of an unreachable coordinator.
    pub max_backoff: Duration,
}

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator URL is malformed, or does not go with the TLS settings.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The coordinator refused this worker for good (protocol version mismatch, a missing
    /// or wrong token…).
    #[error("the coordinator refused registration: {0}")]
    Refused(String),
}

/// What runs a leased attempt.
pub trait RunTask: Send + Sync + 'static {
    /// Runs one attempt, as [`TaskRunner::run`] documents: progress in the task's units,
    /// `cancel` read at every safe point, a failure classified.
    fn run(
        &self,
        lease: &Lease,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &AtomicBool,
    ) -> Result<proto::complete_request::Output, TaskFailure>;
}

impl RunTask for TaskRunner {
    fn run(
        &self,
        lease: &Lease,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &AtomicBool,
    ) -> Result<proto::complete_request::Output, TaskFailure> {
        TaskRunner::run(self, lease, progress, cancel)
    }
}

/// Specs kept beyond those of running tasks' jobs; older ones are forgotten (the
/// coordinator sends a forgotten spec again with the job's next task).
const KEPT_SPECS: usize = 64;

/// The job specs this worker has been sent, each parsed once: what `known_jobs` names.
#[derive(Default)]
struct Specs {
    /// By job id: the spec (or why it does not parse) and when it was last used.
    jobs: HashMap<String, (Result<Arc<JobSpec>, String>, u64)>,
    /// Counts uses, for the least recently used.
    clock: u64,
}

impl Specs {
    /// Keeps the specs a poll response brought.
    fn learn(&mut self, sent: Vec<proto::JobSpecJson>) {
        for job in sent {
            let spec = JobSpec::from_json(&job.spec_json)
                .map(Arc::new)
                .map_err(|e| format!("job {}'s spec: {e}", job.job_id));
            self.jobs.insert(job.job_id, (spec, self.clock));
        }
    }

    /// A leased task with its job's spec, or the failure to report instead of running it.
    fn lease(&mut self, task: proto::Task) -> Result<Lease, TaskFailure> {
        self.clock += 1;
        let failure = match self.jobs.get_mut(&task.job_id) {
            Some((spec, used)) => {
                *used = self.clock;
                match spec {
                    Ok(spec) => {
                        let spec = Arc::clone(spec);
                        return Ok(Lease { task, spec });
                    }
                    Err(message) => {
                        TaskFailure::new(proto::FailureReason::BadInput, message.clone())
                    }
                }
            }
            // The coordinator sends the spec of every job the poll did not name as known:
            // a peer that breaks that rule gets the attempt back, counted.
            None => TaskFailure::new(
                proto::FailureReason::Execution,
                format!(
                    "no spec was sent for job {} (a coordinator of another protocol?)",
                    task.job_id
                ),
            ),
        };
        Err(failure)
    }

    /// Forgets all but the [`KEPT_SPECS`] most recently used specs.
    fn trim(&mut self) {
        if self.jobs.len() <= KEPT_SPECS {
            return;
        }
        let mut uses: Vec<u64> = self.jobs.values().map(|(_, used)| *used).collect();
        uses.sort_unstable();
        let oldest_kept = uses[uses.len() - KEPT_SPECS];
        self.jobs.retain(|_, (_, used)| *used >= oldest_kept);
    }

    /// The job ids to name in a poll.
    fn known(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }
}

type Key = (String, u32);

struct Running {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
}

struct Finished {
    key: Key,
    result: Result<proto::complete_request::Output, TaskFailure>,
}

type Scheduler = SchedulerClient<AuthorizedChannel>;

/// Runs a worker of a coordinator on plaintext without a token (`hint run`'s loopback)
/// until `shutdown` resolves and it has drained.
pub async fn run(
    config: WorkerConfig,
    runner: Arc<dyn RunTask>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    run_with_transport(config, &ClientTransport::plain(), runner, shutdown).await
}

/// Runs a worker until `shutdown` resolves and it has drained, reaching the coordinator
/// as `transport` says (TLS, client certificate, token).
pub async fn run_with_transport(
    config: WorkerConfig,
    transport: &ClientTransport,
    runner: Arc<dyn RunTask>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let channel = transport.connect_lazy(&config.coordinator)?;
    let mut client = SchedulerClient::new(channel).max_decoding_message_size(64 << 20);
    let mut backoff = Backoff::new(config.max_backoff);
    let (mut worker_id, mut heartbeat) = register(&mut client, &config, &mut backoff).await?;
    let (finished_send, mut finished) = mpsc::unbounded_channel::<Finished>();
    let mut running: HashMap<Key, Running> = HashMap::new();
    let mut outbox: Vec<Finished> = Vec::new();
    let mut specs = Specs::default();
    let mut drain_deadline: Option<Instant> = None;
    tokio::pin!(shutdown);
    let mut next_poll = Instant::now();
    loop {
        // Wait for the next poll, a finished task, or the shutdown request.
        let wait = next_poll.saturating_duration_since(Instant::now());
        tokio::select! {
            () = &mut shutdown, if drain_deadline.is_none() => {
                tracing::info!(tasks = running.len(), "draining: no new work");
                drain_deadline = Some(Instant::now() + config.drain);
            }
            Some(done) = finished.recv() => {
                running.remove(&done.key);
                outbox.push(done);
                next_poll = Instant::now();
            }
            () = tokio::time::sleep(wait) => {}
        }
        if let Some(deadline) = drain_deadline {
            if Instant::now() >= deadline {
                for task in running.values() {
                    task.cancel.store(true, Ordering::Relaxed);
                }
            }
        }
        // Deliver results first: a slot's result should not wait behind a poll.
        let mut undelivered = Vec::new();
        for done in outbox.drain(..) {
            match deliver(&mut client, &worker_id, &done).await {
                Ok(()) => backoff.reset(),
                Err(status) => {
                    tracing::warn!(task = %done.key.0, error = transport::describe(&status), "could not report a result; will retry");
                    undelivered.push(done);
                }
            }
        }
        outbox = undelivered;
        // Past the drain period a result the coordinator cannot take is given up: its task
        // is retried elsewhere when the lease expires.
        let drained = drain_deadline.is_some_and(|deadline| {
            running.is_empty() && (outbox.is_empty() || Instant::now() >= deadline)
        });
        if drained {
            if !outbox.is_empty() {
                tracing::warn!(
                    results = outbox.len(),
                    "leaving with undelivered results; their tasks will be retried"
                );
            }
            let _ = client
                .leave(proto::LeaveRequest {
                    worker_id: worker_id.clone(),
                })
                .await;
            tracing::info!("drained; left the coordinator");
            return Ok(());
        }
        if Instant::now() < next_poll {
            continue;
        }
        let free = if drain_deadline.is_some() {
            0
        } else {
            config.slots.saturating_sub(running.len() as u32)
        };
        let request = proto::PollRequest {
            worker_id: worker_id.clone(),
            free_slots: free,
            running: running
                .iter()
                .map(|((task_id, attempt), r)| proto::TaskStatus {
                    task_id: task_id.clone(),
                    attempt: *attempt,
                    done: r.done.load(Ordering::Relaxed),
                    total: r.total.load(Ordering::Relaxed),
                })
                .collect(),
            known_jobs: specs.known(),
        };
        match client.poll(request).await {
            Ok(response) => {
                backoff.reset();
                let response = response.into_inner();
                for stop in response.cancel {
                    if let Some(task) = running.get(&(stop.task_id.clone(), stop.attempt)) {
                        tracing::info!(task = %stop.task_id, attempt = stop.attempt, "cancelled by the coordinator");
                        task.cancel.store(true, Ordering::Relaxed);
                    }
                }
                let got_work = !response.tasks.is_empty();
                let mut refused = false;
                specs.learn(response.jobs);
                for task in response.tasks {
                    let key = (task.task_id.clone(), task.attempt);
                    match specs.lease(task) {
                        Ok(lease) => {
                            running.insert(key.clone(), spawn(lease, key, &runner, &finished_send));
                        }
                        Err(failure) => {
                            tracing::warn!(task = %key.0, attempt = key.1, "{}", failure.message);
                            outbox.push(Finished {
                                key,
                                result: Err(failure),
                            });
                            refused = true;
                        }
                    }
                }
                specs.trim();
                // Idle workers ask again soon; busy ones at the heartbeat; refused tasks
                // are reported at once.
                let idle = running.is_empty() && !got_work;
                next_poll = Instant::now()
                    + if refused {
                        Duration::ZERO
                    } else if idle {
                        heartbeat.min(Duration::from_millis(200))
                    } else {
                        heartbeat
                    };
            }
            Err(status) if status.code() == Code::NotFound => {
                tracing::warn!(%status, "the coordinator does not know this worker: registering again");
                (worker_id, heartbeat) = register(&mut client, &config, &mut backoff).await?;
                // A coordinator that lost its state may reuse job ids: ask for every spec
                // again (running tasks keep theirs).
                specs = Specs::default();
                next_poll = Instant::now();
            }
            Err(status) => {
                let wait = backoff.next();
                tracing::warn!(
                    error = transport::describe(&status),
                    retry_in_ms = wait.as_millis() as u64,
                    "poll failed"
                );
                next_poll = Instant::now() + wait;
            }
        }
    }
}

fn spawn(
    lease: Lease,
    key: Key,
    runner: &Arc<dyn RunTask>,
    finished: &mpsc::UnboundedSender<Finished>,
) -> Running {
    let done = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let cancel = Arc::new(AtomicBool::new(false));
    let (runner, finished) = (Arc::clone(runner), finished.clone());
    let (d, t, c) = (Arc::clone(&done), Arc::clone(&total), Arc::clone(&cancel));
    tracing::info!(task = %key.0, attempt = key.1, "started");
    tokio::task::spawn_blocking(move || {
        let task = &lease.task;
        let span = tracing::info_span!("task", job = %task.job_id, task = %task.task_id, attempt = task.attempt);
        let _entered = span.enter();
        let start = Instant::now();
        let progress = |units_done: u64, units_total: u64| {
            d.store(units_done, Ordering::Relaxed);
            t.store(units_total, Ordering::Relaxed);
        };
        let result = runner.run(&lease, &progress, &c);
        match &result {
            Ok(_) => tracing::info!(seconds = start.elapsed().as_secs_f64(), "finished"),
            Err(failure) => {
                tracing::warn!(reason = failure.reason.as_str_name(), message = %failure.message, "failed")
            }
        }
        let _ = finished.send(Finished { key, result });
    });
    Running {
        done,
        total,
        cancel,
    }
}

async fn deliver(
    client: &mut Scheduler,
    worker_id: &str,
    done: &Finished,
) -> Result<(), tonic::Status> {
    let (task_id, attempt) = done.key.clone();
    match &done.result {
        Ok(output) => {
            let accepted = client
                .complete(proto::CompleteRequest {
                    worker_id: worker_id.to_string(),
                    task_id: task_id.clone(),
                    attempt,
                    output: Some(output.clone()),
                })
                .await?
                .into_inner()
                .accepted;
            if !accepted {
                tracing::info!(task = %task_id, attempt, "another attempt was committed first; output dropped");
            }
        }
        Err(failure) => {
            client
                .fail(proto::FailRequest {
                    worker_id: worker_id.to_string(),
                    task_id,
                    attempt,
                    reason: failure.reason as i32,
                    retryable: failure.retryable,
                    count_to_failures: failure.count_to_failures,
                    message: failure.message.clone(),
                })
                .await?;
        }
    }
    Ok(())
}

async fn register(
    client: &mut Scheduler,
    config: &WorkerConfig,
    backoff: &mut Backoff,
) -> Result<(String, Duration), WorkerError> {
    loop {
        let request = proto::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: config.name.clone(),
            device: config.device.clone(),
            device_memory: 0,
            slots: config.slots,
        };
        match client.register(request).await {
            Ok(response) => {
                let response = response.into_inner();
                backoff.reset();
                tracing::info!(worker = %response.worker_id, coordinator = %config.coordinator, "registered");
                let heartbeat = Duration::from_millis(response.heartbeat_interval_ms.max(10));
                return Ok((response.worker_id, heartbeat));
            }
            // A wrong token does not get better by retrying: stop and say so (under
            // Kubernetes the restarted pod reads the token file again).
            Err(status)
                if status.code() == Code::FailedPrecondition
                    || status.code() == Code::InvalidArgument
                    || status.code() == Code::Unauthenticated
                    || status.code() == Code::PermissionDenied =>
            {
                return Err(WorkerError::Refused(status.message().to_string()));
            }
            // Unreachable, or the TLS handshake failed (the causes say which): the
            // coordinator may be starting, or its certificate being replaced.
            Err(status) => {
                let wait = backoff.next();
                tracing::warn!(
                    error = transport::describe(&status),
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot reach the coordinator"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Exponential backoff from 100 ms to a ceiling.
struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            current: Duration::from_millis(100),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.current;
        self.current = (self.current * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.current = Duration::from_millis(100);
    }
}

#[cfg(test)]
mod tests {
    use hint_common::job::spec::{DataSpec, HierarchySpec, ModelSpec};
    use hint_common::job::JobSpec;
    use hint_common::proto::{self, FailureReason};

    use super::{Specs, KEPT_SPECS};

    fn sent(job: &str, spec_json: String) -> proto::JobSpecJson {
        proto::JobSpecJson {
            job_id: job.into(),
            spec_json,
        }
    }

    fn task(job: &str) -> proto::Task {
        proto::Task {
            task_id: format!("{job}/extract-00000"),
            job_id: job.into(),
            attempt: 1,
            ..Default::default()
        }
    }

    fn spec() -> JobSpec {
        let model = ModelSpec {
            architecture: "tiny_cnn".into(),
            weights: "/w.safetensors".into(),
            layer: "features.7".into(),
            layers: Vec::new(),
            resize: None,
            crop: None,
        };
        let data = DataSpec {
            images: "/images".into(),
            labels: None,
            hierarchy: HierarchySpec::File {
                path: "/hierarchy.yaml".into(),
            },
        };
        JobSpec::new(model, data, "/runs".into())
    }

    #[test]
    fn a_spec_sent_once_serves_every_later_task_of_its_job() {
        let mut specs = Specs::default();
        assert!(specs.known().is_empty());
        specs.learn(vec![sent("job-0001", spec().to_json())]);
        assert_eq!(specs.known(), ["job-0001"]);
        let first = specs.lease(task("job-0001")).unwrap();
        let second = specs.lease(task("job-0001")).unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first.spec, &second.spec),
            "parsed once"
        );
        assert_eq!(*first.spec, spec());
    }

    #[test]
    fn a_task_without_its_spec_or_with_a_broken_one_is_refused_with_a_reason() {
        let mut specs = Specs::default();
        let failure = specs.lease(task("job-0002")).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Execution);
        assert!(
            failure
                .message
                .contains("no spec was sent for job job-0002"),
            "{failure}"
        );

        specs.learn(vec![sent("job-0003", "{\"name\": 3}".into())]);
        assert_eq!(specs.known(), ["job-0003"], "known: not sent again");
        let failure = specs.lease(task("job-0003")).unwrap_err();
        assert_eq!(failure.reason, FailureReason::BadInput);
        assert!(
            failure.message.starts_with("job job-0003's spec: "),
            "{failure}"
        );
    }

    #[test]
    fn only_the_most_recently_used_specs_are_kept() {
        let mut specs = Specs::default();
        let json = spec().to_json();
        for job in 0..KEPT_SPECS + 2 {
            specs.learn(vec![sent(&format!("job-{job:04}"), json.clone())]);
            specs.lease(task(&format!("job-{job:04}"))).unwrap();
        }
        // The first job is used again: the second and third are the least recent.
        specs.lease(task("job-0000")).unwrap();
        specs.trim();
        let mut known = specs.known();
        known.sort();
        assert_eq!(known.len(), KEPT_SPECS);
        assert_eq!(known[0], "job-0000");
        assert_eq!(known[1], "job-0003");
    }
}

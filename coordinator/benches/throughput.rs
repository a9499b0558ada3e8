//! Coordinator throughput: task completions per second with simulated workers on loopback.
//!
//! ```text
//! cargo bench -p hint-coordinator --bench throughput -- --workers 64 --tasks 100000 \
//!     [--warmup 2000] [--state-dir DIR] [--idle-ms 2]
//! ```
//!
//! Everything on the coordinator's side is the real path: a [`Coordinator`] opened on a
//! state directory (with its background group commits and lease ticks) served by
//! [`service::serve`] on `127.0.0.1:0`. The workers are real gRPC clients, one connection
//! each, as separate worker processes would have: each registers, then loops `Poll`
//! (`free_slots = 1`, reporting the task it holds so its lease is renewed) → `Complete` of
//! the task it held, with an empty `ExtractSummary` (no region files), as fast as the
//! coordinator answers — one poll and one completion per task.
//!
//! The job is given to the coordinator without running the plan stage (which scans images):
//! the bench writes the journal first — `Submitted` with a spec whose
//! `extract.images_per_task` is 1, then `Planned` with `--tasks` images — so
//! `Coordinator::open` replays it and the scheduler opens the extract stage with that many
//! one-image tasks. A completion without files moves nothing, but the coordinator still
//! journals each extract commit and makes it durable (`fdatasync`) before answering, so the
//! number measured here includes the state directory's file system. `--state-dir` puts the
//! state elsewhere (e.g. under `/dev/shm`, where a sync costs nothing) to separate the file
//! system's share from the coordinator's own. `--idle-ms` is how long a worker with nothing
//! leased waits before polling again (only at the tail, when every task is leased).
//!
//! Printed: the time to open (replay) the journal; a progress line per tenth of the tasks
//! with the rate over that tenth (a rate that falls as tasks complete means a cost that grows
//! with the job); completions/s and polls/s measured from the `--warmup`-th completion until
//! every task is committed; p50/p99 latency of `Complete` and `Poll` calls in that window;
//! the process's peak resident memory (VmHWM: coordinator and workers together, libtorch's
//! pages included since the crate links it); the journal's size; and whether the goal
//! (≥ 5,000 completions/s) is met. Workers and coordinator share the machine's cores (each
//! on its own multi-thread Tokio runtime), so the number is a floor for a coordinator with
//! its own machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hint_common::job::spec::{
    ClassifySpec, DataSpec, ExtractSpec, HierarchySpec, ModelSpec, SchedulerSpec, ShapleySpec,
    StorageSpec,
};
use hint_common::job::{JobId, JobSpec, Stage, PROTOCOL_VERSION};
use hint_common::proto::{self, scheduler_client::SchedulerClient};
use hint_coordinator::coordinator::{Coordinator, CoordinatorConfig};
use hint_coordinator::journal::{self, Journal};
use hint_coordinator::scheduler::{Record, TaskState};
use hint_coordinator::service;
use tonic::transport::Channel;

/// The issue's goal.
const GOAL_PER_SECOND: f64 = 5000.0;

struct Options {
    workers: usize,
    tasks: u64,
    warmup: u64,
    state_dir: Option<PathBuf>,
    idle: Duration,
}

fn options() -> Options {
    let mut o = Options {
        workers: 64,
        tasks: 100_000,
        warmup: 2000,
        state_dir: None,
        idle: Duration::from_millis(2),
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<u64>().unwrap_or_else(|_| panic!("{flag} N"));
        match flag.as_str() {
            "--workers" => o.workers = number() as usize,
            "--tasks" => o.tasks = number(),
            "--warmup" => o.warmup = number(),
            "--state-dir" => o.state_dir = Some(value.into()),
            "--idle-ms" => o.idle = Duration::from_millis(number()),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(o.workers > 0, "--workers must be positive");
    assert!(
        o.warmup < o.tasks,
        "--warmup must be smaller than --tasks (the measured window starts after it)"
    );
    o
}

/// A valid spec; its paths need not exist since no task runs.
fn spec(root: &Path) -> JobSpec {
    JobSpec {
        name: "throughput-bench".into(),
        seed: 0,
        model: ModelSpec {
            architecture: "vgg16".into(),
            weights: "/data/vgg16.safetensors".into(),
            layer: "features.26".into(),
            layers: Vec::new(),
            resize: None,
            crop: None,
        },
        data: DataSpec {
            images: "/data/imagenet/train.csv".into(),
            labels: None,
            hierarchy: HierarchySpec::File {
                path: "/data/imagenet/hierarchy.yaml".into(),
            },
        },
        extract: ExtractSpec {
            batch_size: 64,
            // One task per image: `Planned { images: N }` opens N extract tasks.
            images_per_task: Some(1),
            ..ExtractSpec::default()
        },
        classify: ClassifySpec::default(),
        shapley: ShapleySpec::default(),
        storage: StorageSpec {
            root: root.to_path_buf(),
        },
        scheduler: SchedulerSpec::default(),
        evaluate: None,
        ablate: None,
    }
}

/// Writes a journal holding one submitted and planned job of `tasks` images.
fn write_journal(state_dir: &Path, storage: &Path, tasks: u64) -> JobId {
    let job = JobId::numbered(1);
    let (mut journal, records, _) = Journal::open(state_dir).expect("open the journal");
    assert!(
        records.is_empty(),
        "{} already holds a journal",
        state_dir.display()
    );
    let submitted_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    journal
        .append(&[
            Record::Submitted {
                job: job.clone(),
                spec_json: spec(storage).to_json(),
                job_dir: storage.join(&job.0).display().to_string(),
                submitted_at,
                parent: None,
            },
            Record::Planned {
                job: job.clone(),
                images: tasks,
                concepts: 1,
                tar_shards: Vec::new(),
            },
        ])
        .expect("append");
    journal.sync().expect("sync");
    job
}

/// Counters shared by the simulated workers.
struct Shared {
    tasks: u64,
    warmup: u64,
    idle: Duration,
    completed: AtomicU64,
    rejected: AtomicU64,
    polls: AtomicU64,
    /// (when, polls so far) at the warmup-th completion and at the last.
    start: OnceLock<(Instant, u64)>,
    end: OnceLock<(Instant, u64)>,
    /// Progress lines: the previous tenth's (when, completions).
    last_mark: std::sync::Mutex<(Instant, u64)>,
}

impl Shared {
    fn measuring(&self) -> bool {
        self.start.get().is_some() && self.end.get().is_none()
    }

    fn done(&self) -> bool {
        self.completed.load(Ordering::Relaxed) >= self.tasks
    }

    /// Counts an accepted completion; marks the window's start and end and prints progress.
    fn completed_one(&self) {
        let n = self.completed.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        if n == self.warmup {
            let _ = self.start.set((now, self.polls.load(Ordering::Relaxed)));
        }
        if n == self.tasks {
            let _ = self.end.set((now, self.polls.load(Ordering::Relaxed)));
        }
        let tenth = (self.tasks / 10).max(1);
        if n.is_multiple_of(tenth) {
            let mut mark = self.last_mark.lock().expect("progress");
            let rate = (n - mark.1) as f64 / now.duration_since(mark.0).as_secs_f64();
            eprintln!(
                "  {n:>9} committed: {rate:>8.0}/s over the last {}",
                n - mark.1
            );
            *mark = (now, n);
        }
    }
}

/// Latencies (µs) one worker saw in the measured window.
#[derive(Default)]
struct Latencies {
    complete: Vec<u32>,
    poll: Vec<u32>,
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// One simulated worker: register, then poll → complete until every task is committed.
async fn worker(addr: SocketAddr, number: usize, shared: Arc<Shared>) -> Latencies {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect to the coordinator");
    let mut client = SchedulerClient::new(channel);
    let worker_id = client
        .register(proto::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: format!("bench-{number:02}"),
            device: "cpu".into(),
            device_memory: 0,
            slots: 1,
        })
        .await
        .expect("register")
        .into_inner()
        .worker_id;
    let mut latencies = Latencies::default();
    let mut held: Option<proto::Task> = None;
    // The jobs whose specs this worker was sent, named in every poll as a real worker does.
    let mut known_jobs: Vec<String> = Vec::new();
    loop {
        if shared.done() {
            break;
        }
        let running = held
            .iter()
            .map(|t| proto::TaskStatus {
                task_id: t.task_id.clone(),
                attempt: t.attempt,
                done: 1,
                total: 1,
            })
            .collect();
        let measuring = shared.measuring();
        let asked = Instant::now();
        let reply = client
            .poll(proto::PollRequest {
                worker_id: worker_id.clone(),
                free_slots: 1,
                running,
                known_jobs: known_jobs.clone(),
            })
            .await
            .expect("poll")
            .into_inner();
        known_jobs.extend(reply.jobs.iter().map(|j| j.job_id.clone()));
        if measuring {
            latencies.poll.push(micros(asked));
        }
        shared.polls.fetch_add(1, Ordering::Relaxed);
        assert!(
            reply.cancel.is_empty(),
            "the coordinator cancelled {:?}",
            reply.cancel
        );
        if let Some(task) = held.take() {
            let measuring = shared.measuring();
            let asked = Instant::now();
            let accepted = client
                .complete(proto::CompleteRequest {
                    worker_id: worker_id.clone(),
                    task_id: task.task_id.clone(),
                    attempt: task.attempt,
                    output: Some(proto::complete_request::Output::Extract(
                        proto::ExtractSummary {
                            files: vec![],
                            skipped: vec![],
                            images_processed: 1,
                            seconds: 0.0,
                            stages: vec![],
                        },
                    )),
                })
                .await
                .expect("complete")
                .into_inner()
                .accepted;
            if measuring {
                latencies.complete.push(micros(asked));
            }
            if accepted {
                shared.completed_one();
            } else {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        match reply.tasks.into_iter().next() {
            // The train stage opened: every extract task is committed.
            Some(task) if !matches!(task.kind, Some(proto::task::Kind::Extract(_))) => break,
            Some(task) => held = Some(task),
            // The tail: nothing left to lease but others' tasks are still running.
            None => tokio::time::sleep(shared.idle).await,
        }
    }
    latencies
}

/// Peak resident memory so far, in MiB (Linux; None elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |m| format!("{m:.0} MiB"))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let at_start = peak_rss_mib();
    let o = options();
    let tmp = match &o.state_dir {
        Some(parent) => {
            std::fs::create_dir_all(parent).expect("create --state-dir");
            tempfile::tempdir_in(parent)
        }
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let state_dir = tmp.path().join("state");
    let storage = tmp.path().join("jobs");
    let job = write_journal(&state_dir, &storage, o.tasks);

    let coordinator_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coordinator")
        .build()
        .expect("coordinator runtime");
    let started = Instant::now();
    let (coordinator, actions) =
        Coordinator::open(CoordinatorConfig::new(state_dir.clone())).expect("open the coordinator");
    let open_seconds = started.elapsed().as_secs_f64();
    let pending = coordinator.read(|s| s.job(&job).map_or(0, |j| j.pending.len()));
    assert_eq!(
        pending as u64, o.tasks,
        "the replayed plan should open one task per image"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = coordinator_runtime.block_on(async {
        coordinator.spawn_background(actions);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let serving = Arc::clone(&coordinator);
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            service::serve(serving, listener, shutdown).await
        });
        (addr, server)
    });
    println!(
        "coordinator on {addr}: {} extract tasks replayed from the journal in {open_seconds:.2} s; \
         {} workers, warmup {} completions; state in {}",
        o.tasks,
        o.workers,
        o.warmup,
        state_dir.display()
    );

    let shared = Arc::new(Shared {
        tasks: o.tasks,
        warmup: o.warmup,
        idle: o.idle,
        completed: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        polls: AtomicU64::new(0),
        start: OnceLock::new(),
        end: OnceLock::new(),
        last_mark: std::sync::Mutex::new((Instant::now(), 0)),
    });
    let workers_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("workers")
        .build()
        .expect("workers runtime");
    let latencies: Vec<Latencies> = workers_runtime.block_on(async {
        let handles: Vec<_> = (0..o.workers)
            .map(|k| tokio::spawn(worker(addr, k, Arc::clone(&shared))))
            .collect();
        let mut all = Vec::with_capacity(handles.len());
        for handle in handles {
            all.push(handle.await.expect("worker"));
        }
        all
    });

    // Every task committed, by the coordinator's own account.
    let committed = coordinator.read(|s| {
        s.job(&job).map_or(0, |j| {
            j.stage_tasks(Stage::Extract)
                .filter(|t| matches!(t.state, TaskState::Done { .. }))
                .count()
        })
    });
    assert_eq!(
        committed as u64, o.tasks,
        "tasks committed by the coordinator"
    );
    let _ = stop.send(());
    coordinator_runtime
        .block_on(server)
        .expect("server task")
        .expect("serve");
    let journal_bytes = journal::disk_bytes(&state_dir);

    let (t0, polls0) = *shared.start.get().expect("warmup reached");
    let (t1, polls1) = *shared.end.get().expect("every task committed");
    let seconds = t1.duration_since(t0).as_secs_f64();
    let completions = (o.tasks - o.warmup) as f64 / seconds;
    let polls = (polls1 - polls0) as f64 / seconds;
    let mut complete: Vec<u32> = latencies
        .iter()
        .flat_map(|l| l.complete.iter().copied())
        .collect();
    let mut poll: Vec<u32> = latencies
        .iter()
        .flat_map(|l| l.poll.iter().copied())
        .collect();
    complete.sort_unstable();
    poll.sort_unstable();
    println!(
        "completions: {completions:.0}/s ({} in {seconds:.2} s after {} warmup; {} rejected)",
        o.tasks - o.warmup,
        o.warmup,
        shared.rejected.load(Ordering::Relaxed)
    );
    println!("polls: {polls:.0}/s");
    println!(
        "complete latency: p50 {:.2} ms, p99 {:.2} ms ({} calls)",
        percentile(&complete, 0.50),
        percentile(&complete, 0.99),
        complete.len()
    );
    println!(
        "poll latency: p50 {:.2} ms, p99 {:.2} ms ({} calls)",
        percentile(&poll, 0.50),
        percentile(&poll, 0.99),
        poll.len()
    );
    println!(
        "peak RSS {} (coordinator and workers in one process; at start {})",
        mib(peak_rss_mib()),
        mib(at_start)
    );
    println!(
        "journal: {:.1} MiB ({:.0} bytes per task)",
        journal_bytes as f64 / (1 << 20) as f64,
        journal_bytes as f64 / o.tasks as f64
    );
    let met = if completions >= GOAL_PER_SECOND {
        "met"
    } else {
        "NOT met"
    };
    println!("goal ≥ {GOAL_PER_SECOND:.0}/s: {met}");
}

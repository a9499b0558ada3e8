//! An in-process cluster: the coordinator's gRPC services on `127.0.0.1:0` and workers
//! running the real runtime (`hint_worker::runtime`: poll loop, leases, outbox, drain) with
//! stub task runners that write placeholder outputs and never touch libtorch. It tests the
//! runtime's rules in seconds, without processes; the engines' outputs, and the report that
//! reads them, are the real-process tests' business (cluster.rs).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hint_common::job::spec::{DataSpec, HierarchySpec, ModelSpec};
use hint_common::job::{JobId, JobSpec, Stage, TaskId};
use hint_common::proto::{self, complete_request::Output, task::Kind};
use hint_common::shapley::{PartialSums, PermutationBlock, Sampling};
use hint_coordinator::coordinator::{Coordinator, CoordinatorConfig};
use hint_coordinator::scheduler::TaskState;
use hint_worker::runtime::{self, RunTask, WorkerConfig};
use hint_worker::tasks::{Lease, TaskFailure};
use tokio::sync::oneshot;

/// A stub runner: placeholder outputs of the right shape, after `delay`; an extract task of
/// shard `hang_shard` instead waits until `release` (or its cancel flag) is set.
struct Stub {
    delay: Duration,
    hang_shard: Option<u32>,
    release: Arc<AtomicBool>,
}

impl Stub {
    fn quick() -> Arc<Stub> {
        Arc::new(Stub {
            delay: Duration::ZERO,
            hang_shard: None,
            release: Arc::new(AtomicBool::new(true)),
        })
    }
}

impl RunTask for Stub {
    fn run(
        &self,
        lease: &Lease,
        progress: &(dyn Fn(u64, u64) + Sync),
        cancel: &AtomicBool,
    ) -> Result<Output, TaskFailure> {
        let task = &lease.task;
        let hangs =
            matches!(&task.kind, Some(Kind::Extract(t)) if Some(t.shard) == self.hang_shard);
        while hangs && !self.release.load(Ordering::Relaxed) && !cancel.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(self.delay);
        progress(1, 1);
        Ok(match task.kind.as_ref().expect("a task kind") {
            Kind::Extract(t) => {
                let dir = PathBuf::from(&t.out_dir);
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join(format!("regions-s{:05}-00000.parquet", t.shard));
                std::fs::write(&file, b"placeholder").unwrap();
                let images = t.end_image - t.first_image;
                Output::Extract(proto::ExtractSummary {
                    files: vec![proto::RegionFile {
                        url: file.display().to_string(),
                        rows: images,
                        foreground_rows: images,
                        background_rows: 0,
                    }],
                    skipped: vec![],
                    images_processed: images,
                    // A decode-bound pipeline: decode busy 1.6 s of 2 threads × 1 s.
                    seconds: 1.0,
                    stages: [("decode", 2, 1.6), ("model", 1, 0.3)]
                        .map(|(stage, threads, busy_seconds)| proto::StageBusy {
                            stage: stage.into(),
                            threads,
                            busy_seconds,
                        })
                        .to_vec(),
                })
            }
            Kind::Sample(t) => {
                std::fs::create_dir_all(&t.out_dir).unwrap();
                Output::Sample(proto::SampleOutput {
                    dir: t.out_dir.clone(),
                    ..Default::default()
                })
            }
            Kind::Train(t) => {
                std::fs::create_dir_all(&t.out_dir).unwrap();
                Output::Train(proto::TrainOutput {
                    dir: t.out_dir.clone(),
                    trained: t.concepts.clone(),
                    seconds: 0.0,
                })
            }
            Kind::Shapley(t) => {
                let block = PermutationBlock::new(t.first_permutation, t.end_permutation);
                let mut sums = PartialSums::new(3, Sampling::Antithetic, block);
                for _ in 0..block.samples(Sampling::Antithetic).unwrap().count() {
                    sums.add_sample(&[0.0; 3]).unwrap();
                }
                Output::Shapley(hint_common::job::wire::sums_to_proto(&sums, 0.0))
            }
            other => panic!("the stub has no {other:?}"),
        })
    }
}

/// A coordinator serving on a loopback port (on a runtime of its own, so that it can be
/// stopped as a whole and started again on the same state and port), and the runtime its
/// workers run on.
struct Cluster {
    /// None only while it restarts.
    coordinator: Option<Arc<Coordinator>>,
    address: String,
    state: PathBuf,
    lease_timeout: Duration,
    /// The coordinator's service and background loop; dropping it stops them.
    serving: Option<tokio::runtime::Runtime>,
    /// The workers' runtime.
    runtime: tokio::runtime::Runtime,
}

/// A worker of the cluster: stop it gracefully (drain) or make it vanish.
struct Worker {
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), runtime::WorkerError>>,
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the coordinator on `state` and serves it on `bind` from a runtime of its own.
fn serve(
    state: &Path,
    lease_timeout: Duration,
    bind: &str,
) -> (Arc<Coordinator>, String, tokio::runtime::Runtime) {
    let mut config = CoordinatorConfig::new(state.to_path_buf());
    config.scheduler.lease_timeout = lease_timeout;
    let (coordinator, actions) = Coordinator::open(config).unwrap();
    let serving = tokio_runtime();
    let listener = serving
        .block_on(tokio::net::TcpListener::bind(bind))
        .unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let service = Arc::clone(&coordinator);
    serving.spawn(async move {
        hint_coordinator::service::serve(service, listener, std::future::pending())
            .await
            .unwrap();
    });
    {
        let _entered = serving.enter();
        coordinator.spawn_background(actions);
    }
    (coordinator, address, serving)
}

impl Cluster {
    fn start(state: &Path, lease_timeout: Duration) -> Cluster {
        let (coordinator, address, serving) = serve(state, lease_timeout, "127.0.0.1:0");
        Cluster {
            coordinator: Some(coordinator),
            address,
            state: state.to_path_buf(),
            lease_timeout,
            serving: Some(serving),
            runtime: tokio_runtime(),
        }
    }

    /// Stops the coordinator as a crash would (no goodbye to workers; what the journal
    /// holds stays), then opens it again on its state and port.
    fn restart_coordinator(&mut self, down_for: Duration) {
        if let Some(serving) = self.serving.take() {
            serving.shutdown_timeout(Duration::from_secs(5));
        }
        // The last handle: its journal (and the state directory's lock) closes with it,
        // once the stopped runtime's threads have dropped theirs.
        let coordinator = self.coordinator.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&coordinator) > 1 {
            assert!(
                Instant::now() < deadline,
                "the stopped service still holds it"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(coordinator);
        std::thread::sleep(down_for);
        let bind = self.address.trim_start_matches("http://").to_string();
        let (coordinator, _, serving) = serve(&self.state, self.lease_timeout, &bind);
        self.coordinator = Some(coordinator);
        self.serving = Some(serving);
    }

    fn coordinator(&self) -> &Arc<Coordinator> {
        self.coordinator.as_ref().expect("running")
    }

    fn worker(&self, name: &str, runner: Arc<dyn RunTask>) -> Worker {
        let config = WorkerConfig {
            coordinator: self.address.clone(),
            name: name.into(),
            device: "Cpu".into(),
            slots: 1,
            drain: Duration::from_secs(30),
            max_backoff: Duration::from_millis(200),
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let signal: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = signal.await;
        });
        let handle = self
            .runtime
            .spawn(async move { runtime::run(config, runner, signal).await });
        Worker {
            shutdown: Some(shutdown),
            handle,
        }
    }

    /// The task's state and attempts started (None before its stage opens).
    fn task(&self, task: &TaskId) -> Option<(TaskState, u32)> {
        self.coordinator().read(|s| {
            let t = s.job(&task.job)?.tasks.get(task)?;
            Some((t.state.clone(), t.attempts))
        })
    }

    fn running(&self, task: &TaskId) -> bool {
        matches!(self.task(task), Some((TaskState::Running { .. }, _)))
    }

    fn done_attempt(&self, task: &TaskId) -> Option<u32> {
        match self.task(task)? {
            (TaskState::Done { attempt, .. }, _) => Some(attempt),
            _ => None,
        }
    }

    fn live_workers(&self) -> usize {
        self.coordinator().read(|s| s.workers().len())
    }

    /// Waits (up to 20 s) until `done` holds.
    fn wait_for(&self, what: &str, done: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A job of 6 images of 3 classes (2 extract tasks of 4 images) on placeholder files: the
/// plan only lists them.
fn submit(cluster: &Cluster, dir: &Path) -> JobId {
    let images = dir.join("images");
    for (class, n) in [("cat", 2), ("dog", 3), ("car", 1)] {
        std::fs::create_dir_all(images.join(class)).unwrap();
        for i in 0..n {
            std::fs::write(images.join(class).join(format!("{class}_{i}.png")), b"").unwrap();
        }
    }
    let hierarchy = dir.join("pets.yaml");
    std::fs::write(
        &hierarchy,
        "children:\n  whole: [animal, car]\n  animal: [cat, dog]\n",
    )
    .unwrap();
    let model = ModelSpec {
        architecture: "tiny_cnn".into(),
        weights: dir.join("w.safetensors"),
        layer: "features.7".into(),
        layers: Vec::new(),
        resize: None,
        crop: None,
    };
    let data = DataSpec {
        images,
        labels: None,
        hierarchy: HierarchySpec::File { path: hierarchy },
    };
    let mut spec = JobSpec::new(model, data, dir.join("runs"));
    spec.extract.images_per_task = Some(4);
    spec.classify.concepts_per_task = 2;
    (
        spec.shapley.permutations,
        spec.shapley.permutations_per_task,
    ) = (4, 4);
    // The plan runs on the coordinator's runtime.
    let _entered = cluster.serving.as_ref().expect("running").enter();
    cluster.coordinator().submit_spec(spec).unwrap()
}

/// A worker that takes the first extract task and holds it until the returned flag is set
/// (or its attempt is cancelled); returns once the task is leased.
fn hold_first_extract_task(cluster: &Cluster, name: &str) -> (Arc<AtomicBool>, Worker) {
    let release = Arc::new(AtomicBool::new(false));
    let stub = Stub {
        delay: Duration::ZERO,
        hang_shard: Some(0),
        release: Arc::clone(&release),
    };
    let worker = cluster.worker(name, Arc::new(stub));
    let first = cluster.coordinator().read(|s| {
        let job = s.jobs().next().expect("a submitted job");
        extract_task(&job.id, 0)
    });
    cluster.wait_for("the first extract task to be leased", |c| c.running(&first));
    (release, worker)
}

fn extract_task(job: &JobId, index: u32) -> TaskId {
    TaskId {
        job: job.clone(),
        stage: Stage::Extract,
        index,
    }
}

/// A worker that vanishes (no Leave, no more polls) while it holds a task loses it when its
/// lease expires; another worker runs it as attempt 2 and the job goes on.
#[test]
fn a_vanished_workers_task_is_leased_again_when_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("state"), Duration::from_millis(600));
    let job = submit(&cluster, dir.path());
    let (release, hanging) = hold_first_extract_task(&cluster, "vanishing");
    let first = extract_task(&job, 0);
    hanging.handle.abort();
    let helper = cluster.worker("helper", Stub::quick());
    cluster.wait_for("the first extract task to be committed", |c| {
        c.done_attempt(&first).is_some()
    });
    assert_eq!(cluster.done_attempt(&first), Some(2));
    assert!(
        cluster.live_workers() == 1,
        "the vanished worker was declared lost"
    );
    cluster.wait_for("the job to reach Shapley", |c| {
        c.coordinator()
            .read(|s| s.job(&job).unwrap().stage() >= Stage::Shapley)
    });
    release.store(true, Ordering::Relaxed);
    drop(helper);
}

/// A worker told to stop (SIGTERM) finishes the task it holds, delivers it, takes nothing
/// more, leaves, and its loop returns.
#[test]
fn a_draining_worker_finishes_its_task_takes_no_more_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("state"), Duration::from_secs(30));
    let job = submit(&cluster, dir.path());
    let mut worker = cluster.worker(
        "draining",
        Arc::new(Stub {
            delay: Duration::from_millis(400),
            hang_shard: None,
            release: Arc::new(AtomicBool::new(true)),
        }),
    );
    let first = extract_task(&job, 0);
    cluster.wait_for("the first extract task to be leased", |c| c.running(&first));
    worker.shutdown.take().unwrap().send(()).unwrap();
    let returned = cluster.runtime.block_on(worker.handle).unwrap();
    assert!(returned.is_ok(), "{returned:?}");
    assert_eq!(cluster.done_attempt(&first), Some(1));
    assert_eq!(
        cluster.task(&extract_task(&job, 1)),
        Some((TaskState::Pending, 0)),
        "no new work while draining"
    );
    assert_eq!(cluster.live_workers(), 0, "it left");
}

/// The coordinator crashes while a worker runs a task and comes back on its state: the
/// worker keeps the task, its result waits in the outbox while nobody answers, it registers
/// again when the new coordinator does not know it, and the result is committed as the
/// attempt it was — not run again — and the job goes on (its spec sent again: the worker
/// forgot the specs of the coordinator it registered with).
#[test]
fn a_result_waits_in_the_outbox_through_a_coordinator_restart_and_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&dir.path().join("state"), Duration::from_secs(30));
    let job = submit(&cluster, dir.path());
    let (release, _survivor) = hold_first_extract_task(&cluster, "survivor");
    let first = extract_task(&job, 0);

    let finish_while_down = Arc::clone(&release);
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        finish_while_down.store(true, Ordering::Relaxed);
    });
    // Down for longer than the task takes to finish and the worker to fail delivering it.
    cluster.restart_coordinator(Duration::from_millis(600));
    finisher.join().unwrap();

    cluster.wait_for("the first extract task to be committed", |c| {
        c.done_attempt(&first).is_some()
    });
    assert_eq!(
        cluster.done_attempt(&first),
        Some(1),
        "committed, not rerun"
    );
    assert_eq!(cluster.task(&first).map(|(_, attempts)| attempts), Some(1));
    cluster.wait_for("the job to reach Shapley", |c| {
        c.coordinator()
            .read(|s| s.job(&job).unwrap().stage() >= Stage::Shapley)
    });
    assert_eq!(cluster.live_workers(), 1, "registered again, once");
}

/// A spec the coordinator refuses comes back with every problem and its field (the
/// Submit's status details), and `hint submit` lists them exactly as `hint check` does for
/// the same file; no job is created.
#[test]
fn a_refused_submit_lists_the_specs_problems_as_hint_check_does() {
    use crate::support::{failed, hint};
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("state"), Duration::from_secs(30));
    std::fs::write(
        dir.path().join("h.yaml"),
        "children:\n  animal: [cat, dog]\n",
    )
    .unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(
        &spec,
        "[model]\narchitecture = \"tiny_cnn\"\nweights = \"w.safetensors\"\n\
         layer = \"features.99\"\n[data]\nimages = \"nowhere\"\nhierarchy = \"h.yaml\"\n",
    )
    .unwrap();

    let submitted = failed(
        &hint(&[
            "submit".as_ref(),
            spec.as_os_str(),
            "--coordinator".as_ref(),
            cluster.address.as_ref(),
        ]),
        "hint submit of an invalid spec",
    );
    let checked = failed(&hint(&["check".as_ref(), spec.as_os_str()]), "hint check");
    assert_eq!(submitted, checked);
    assert!(submitted.contains("4 problems:"), "{submitted}");
    for field in ["model.weights", "model.layer", "data.images", "storage"] {
        assert!(submitted.contains(&format!("\n  {field}: ")), "{submitted}");
    }
    assert!(cluster.coordinator().read(|s| s.jobs().next().is_none()));
}

/// Committed extract tasks feed `/metrics`: each worker's images (by the name it
/// registered) and each pipeline stage's busy time, capacity and utilisation, from the
/// stages the tasks reported (the stub's: decode 1.6 s busy of 2 threads × 1 s, model 0.3 s).
#[test]
fn extract_commits_feed_the_pipeline_metrics_by_stage_and_worker() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("state"), Duration::from_secs(30));
    let job = submit(&cluster, dir.path());
    let _worker = cluster.worker("node-a", Stub::quick());
    cluster.wait_for("the job to reach Shapley", |c| {
        c.coordinator()
            .read(|s| s.job(&job).unwrap().stage() >= Stage::Shapley)
    });
    let text = cluster.coordinator().render_metrics();
    for line in [
        "hint_worker_images_total{worker=\"node-a\"} 6",
        "hint_extract_stage_busy_seconds_total{stage=\"decode\"} 3.200",
        "hint_extract_stage_capacity_seconds_total{stage=\"decode\"} 4.000",
        "hint_extract_stage_utilisation{stage=\"decode\"} 0.8000",
        "hint_extract_stage_utilisation{stage=\"model\"} 0.3000",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}

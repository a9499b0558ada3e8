//! Journal compaction under a running coordinator: many Shapley commits (and cancelled
//! attempts) with a small snapshot threshold keep the journal on disk bounded, and a
//! coordinator reopened on the state resumes with every task as it was and Φ's exact sums.

use std::collections::BTreeMap;

use hint_common::job::wire::sums_to_proto;
use hint_common::shapley::{PartialSums, PermutationBlock, Sampling};

use super::*;
use crate::journal::disk_bytes;

/// Neurons of the synthetic sums: a commit holds 64 · 256 = 16 KiB of hex.
const NEURONS: usize = 256;
const PERMUTATIONS: u64 = 240;
const SNAPSHOT_BYTES: u64 = 64 << 10;

/// The marginals of one sample, a function of (concept, sample) alone.
fn marginals(concept: u32, sample: u64) -> Vec<f64> {
    (0..NEURONS)
        .map(|d| (f64::from(concept) * 0.37 + sample as f64 * 1.13 + d as f64 * 0.71).sin())
        .collect()
}

fn block_sums(concept: u32, first: u64, end: u64) -> PartialSums {
    let block = PermutationBlock::new(first, end);
    let mut sums = PartialSums::new(NEURONS, Sampling::Antithetic, block);
    for sample in block.samples(Sampling::Antithetic).unwrap() {
        sums.add_sample(&marginals(concept, sample)).unwrap();
    }
    sums
}

/// A planned job (6 images, the pets hierarchy) journalled in `dir/state`, with
/// `PERMUTATIONS` permutations per concept in blocks of 4.
fn planned(dir: &Path) -> JobId {
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
    let mut spec = crate::test_spec::spec(&images, &yaml, &dir.join("runs"));
    spec.classify.concepts_per_task = 8;
    spec.shapley.permutations = PERMUTATIONS;
    let job = JobId::numbered(1);
    let job_dir = dir.join("runs").join(&job.0);
    let plan = crate::plan::plan(&spec, &job_dir).unwrap();
    let (mut journal, _, _) = Journal::open(&dir.join("state")).unwrap();
    journal
        .append(&[
            Record::Submitted {
                job: job.clone(),
                spec_json: spec.to_json(),
                job_dir: job_dir.display().to_string(),
                submitted_at: 0.0,
                parent: None,
            },
            Record::Planned {
                job: job.clone(),
                images: plan.images,
                concepts: plan.hierarchy.concepts().len() as u32,
                tar_shards: plan.tar_shards.clone(),
            },
        ])
        .unwrap();
    journal.sync().unwrap();
    job
}

/// One worker runs the job through the coordinator's calls until one Shapley task is left
/// (its commit would start the report), cancelling every fifth Shapley attempt; returns
/// the most bytes the journal took on disk after any call and the Shapley commits made.
fn run(coordinator: &Arc<Coordinator>, state: &Path) -> (u64, u64) {
    let register = proto::RegisterRequest {
        name: "w".into(),
        device: "cpu".into(),
        device_memory: 0,
        slots: 1,
        protocol_version: PROTOCOL_VERSION,
    };
    let worker_id = coordinator.register(&register).unwrap().worker_id;
    let (mut largest, mut commits, mut leases) = (0, 0, 0);
    loop {
        let poll = proto::PollRequest {
            worker_id: worker_id.clone(),
            free_slots: 1,
            running: vec![],
            known_jobs: vec![],
        };
        let Some(task) = coordinator.poll(&poll).unwrap().tasks.pop() else {
            break;
        };
        let id: TaskId = task.task_id.parse().unwrap();
        use proto::complete_request::Output as Wire;
        let output = match task.kind.unwrap() {
            proto::task::Kind::Extract(t) => {
                // The sample stage is cut over the committed region files: one each.
                std::fs::create_dir_all(&t.out_dir).unwrap();
                let file = Path::new(&t.out_dir).join(format!("r{:05}.parquet", t.shard));
                std::fs::write(&file, b"placeholder").unwrap();
                Wire::Extract(proto::ExtractSummary {
                    files: vec![proto::RegionFile {
                        url: file.display().to_string(),
                        ..Default::default()
                    }],
                    skipped: vec![],
                    images_processed: t.end_image - t.first_image,
                    seconds: 0.0,
                    stages: vec![],
                })
            }
            proto::task::Kind::Sample(t) => {
                std::fs::create_dir_all(&t.out_dir).unwrap();
                Wire::Sample(proto::SampleOutput {
                    dir: t.out_dir,
                    ..Default::default()
                })
            }
            proto::task::Kind::Train(t) => {
                std::fs::create_dir_all(&t.out_dir).unwrap();
                Wire::Train(proto::TrainOutput {
                    dir: t.out_dir,
                    trained: t.concepts,
                    seconds: 0.0,
                })
            }
            proto::task::Kind::Shapley(t) => {
                let open = coordinator.read(|s| {
                    let job = s.job(&id.job).unwrap();
                    job.stage_tasks(Stage::Shapley)
                        .filter(|t| !t.is_settled())
                        .count()
                });
                if open == 1 {
                    break;
                }
                leases += 1;
                if leases % 5 == 0 {
                    coordinator
                        .fail(&proto::FailRequest {
                            worker_id: worker_id.clone(),
                            task_id: task.task_id,
                            attempt: task.attempt,
                            reason: proto::FailureReason::Cancelled as i32,
                            retryable: true,
                            count_to_failures: false,
                            message: "drained".into(),
                        })
                        .unwrap();
                    continue;
                }
                commits += 1;
                let sums = block_sums(t.concept, t.first_permutation, t.end_permutation);
                Wire::Shapley(sums_to_proto(&sums, 0.0))
            }
            other => panic!("unexpected task {other:?}"),
        };
        let request = proto::CompleteRequest {
            worker_id: worker_id.clone(),
            task_id: task.task_id,
            attempt: task.attempt,
            output: Some(output),
        };
        assert!(coordinator.complete(request).unwrap(), "{id}");
        // As the group commit would (every 5 ms), and once the snapshot thread is done:
        // measure what the journal holds on disk.
        coordinator.sync_now();
        coordinator.wait_snapshot();
        largest = largest.max(disk_bytes(state));
    }
    (largest, commits)
}

/// Tasks as a restart sees them: (state with leases void, attempts, failures).
fn tasks(coordinator: &Coordinator, job: &JobId) -> Vec<(TaskId, TaskState, u32, u32)> {
    coordinator.read(|s| {
        let job = s.job(job).unwrap();
        job.tasks
            .values()
            .map(|t| {
                let state = match &t.state {
                    TaskState::Running { .. } => TaskState::Pending,
                    other => other.clone(),
                };
                (t.id.clone(), state, t.attempts, t.failures)
            })
            .collect()
    })
}

#[test]
fn a_long_run_keeps_the_journal_bounded_and_a_restart_resumes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let job = planned(dir.path());
    let mut config = CoordinatorConfig::new(state.clone());
    config.snapshot_bytes = SNAPSHOT_BYTES;
    let (coordinator, actions) = Coordinator::open(config.clone()).unwrap();
    assert!(actions.is_empty());
    let (largest, commits) = run(&coordinator, &state);
    let (appended, snapshot) = {
        let inner = coordinator.lock();
        (
            inner.journal.appended_bytes(),
            inner.journal.snapshot_bytes(),
        )
    };
    let concepts = coordinator.read(|s| s.job(&job).unwrap().sums.len()) as u64;
    assert_eq!(commits, concepts * PERMUTATIONS / 4 - 1);
    let before = tasks(&coordinator, &job);
    let sums = coordinator.read(|s| s.job(&job).unwrap().sums.clone());
    drop(coordinator);

    // The journal holds a snapshot and the tail since: within the snapshot and the larger of
    // the threshold and the snapshot (plus one commit), whatever the number of commits.
    let commit = 64 * NEURONS as u64 + 512;
    let bound = snapshot + SNAPSHOT_BYTES.max(snapshot) + commit;
    println!(
        "{commits} Shapley commits, {appended} bytes appended; at most {largest} bytes on \
         disk (snapshot {snapshot}, bound {bound})"
    );
    assert!(largest <= bound, "{largest} bytes on disk, bound {bound}");
    assert!(
        largest * 8 < appended,
        "{largest} on disk of {appended} appended"
    );

    let (reopened, actions) = Coordinator::open(config).unwrap();
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(tasks(&reopened, &job), before);
    let after = reopened.read(|s| s.job(&job).unwrap().sums.clone());
    assert_eq!(after, sums);
    // Φ's sums are the ones of one piece over each concept's committed blocks, bit for bit.
    let expected: BTreeMap<u32, PartialSums> = after
        .iter()
        .map(|(&concept, merged)| {
            let parts = merged
                .blocks()
                .iter()
                .map(|b| block_sums(concept, b.start, b.end));
            (concept, PartialSums::merge(parts).unwrap())
        })
        .collect();
    assert_eq!(after, expected);
    let covered: u64 = after.values().map(PartialSums::permutations).sum();
    assert_eq!(covered, commits * 4);
}

/// Starting a snapshot syncs the journal and starts a new segment: when that fails (here
/// the segment's name is taken by a directory) the coordinator stops, as for any journal
/// failure, and a restart resumes from what the journal holds.
#[test]
fn a_journal_that_cannot_start_a_segment_stops_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let job = planned(dir.path());
    let mut config = CoordinatorConfig::new(state.clone());
    config.snapshot_bytes = 1;
    let (coordinator, _) = Coordinator::open(config.clone()).unwrap();
    let blocker = crate::journal::segment_path(&state, 1);
    std::fs::create_dir(&blocker).unwrap();
    let register = proto::RegisterRequest {
        name: "w".into(),
        device: "cpu".into(),
        device_memory: 0,
        slots: 1,
        protocol_version: PROTOCOL_VERSION,
    };
    // The first change after the journal reached the threshold starts a snapshot.
    let refused = coordinator.register(&register).unwrap_err();
    assert!(matches!(refused, CoordinatorError::Stopped(_)), "{refused}");
    assert!(
        refused.to_string().contains("journal-0000000001.log"),
        "{refused}"
    );
    assert!(coordinator.register(&register).is_err(), "stopped for good");
    drop(coordinator);
    std::fs::remove_dir(&blocker).unwrap();
    let (reopened, _) = Coordinator::open(config).unwrap();
    let stage = reopened.read(|s| s.job(&job).unwrap().stage());
    assert_eq!(stage, Stage::Extract);
    // It takes work again, and compacts its journal.
    let worker_id = reopened.register(&register).unwrap().worker_id;
    let poll = proto::PollRequest {
        worker_id,
        free_slots: 1,
        running: vec![],
        known_jobs: vec![],
    };
    assert_eq!(reopened.poll(&poll).unwrap().tasks.len(), 1);
    reopened.wait_snapshot();
    assert!(crate::journal::snapshot::snapshot_path(&state, 1).exists());
}

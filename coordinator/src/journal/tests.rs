use std::time::Instant;

use super::snapshot::{snapshot_path, Step};
use super::*;
use crate::scheduler::records::Outcome;
use crate::scheduler::tests::snapshot::{fingerprint, history, replay, sums_of};
use crate::scheduler::{Failure, Scheduler, SchedulerConfig, TaskState};
use hint_common::job::JobId;

fn finished(n: u64) -> Record {
    Record::Finished {
        job: JobId::numbered(n),
        outcome: Outcome::Succeeded,
        error: None,
    }
}

/// The names in the state directory, sorted (the lock file aside).
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE)
        .collect();
    names.sort();
    names
}

#[test]
fn records_survive_reopening_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut journal, records, dropped) = Journal::open(dir.path()).unwrap();
        assert!(records.is_empty());
        assert_eq!(dropped, 0);
        journal.append(&[finished(1), finished(2)]).unwrap();
        journal.sync().unwrap();
    }
    // A crash mid-write: half a line at the end.
    let path = segment_path(dir.path(), 0);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("0badc0de {\"record\":\"fin");
    std::fs::write(&path, &text).unwrap();
    let (mut journal, records, dropped) = Journal::open(dir.path()).unwrap();
    assert_eq!(records, vec![finished(1), finished(2)]);
    assert_eq!(dropped, 23);
    journal.append(&[finished(3)]).unwrap();
    journal.sync().unwrap();
    drop(journal);
    let (_journal, records, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(records.len(), 3);
}

#[test]
fn a_corrupted_line_ends_the_intact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut journal, _, _) = Journal::open(dir.path()).unwrap();
        journal.append(&[finished(1), finished(2)]).unwrap();
        journal.sync().unwrap();
    }
    let path = segment_path(dir.path(), 0);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("job-0002", "job-0009");
    std::fs::write(&path, text).unwrap();
    let (_journal, records, dropped) = Journal::open(dir.path()).unwrap();
    assert_eq!(records, vec![finished(1)]);
    assert!(dropped > 0);
}

#[test]
fn a_second_coordinator_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_first, _, _) = Journal::open(dir.path()).unwrap();
    let error = Journal::open(dir.path()).unwrap_err();
    assert!(matches!(error, JournalError::Locked(_)), "{error}");
}

#[test]
fn the_journal_of_an_earlier_version_becomes_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join(LEGACY_JOURNAL_FILE);
    std::fs::write(&legacy, line(&finished(1)) + &line(&finished(2))).unwrap();
    let (mut journal, records, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(records, vec![finished(1), finished(2)]);
    journal.append(&[finished(3)]).unwrap();
    journal.sync().unwrap();
    drop(journal);
    assert_eq!(files(dir.path()), ["journal-0000000000.log"]);
    assert_eq!(Journal::open(dir.path()).unwrap().1.len(), 3);
}

/// Where a crash stops a snapshot.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The journal moved to a new segment; no snapshot file yet.
    Rotated,
    /// The temporary file is half written.
    TornPartial,
    /// After a step of [`snapshot::SnapshotFile::write`].
    After(Step),
}

/// A state directory whose journal holds `history` in three parts: a first snapshot after
/// `a` records (written whole), a second started after `b` and stopped by `crash`, and the
/// rest appended meanwhile to the new segment — with a torn line at its end if `torn`.
fn crashed(dir: &Path, history: &[Record], (a, b): (usize, usize), crash: Crash, torn: bool) {
    let now = Instant::now();
    let (mut journal, records, _) = Journal::open(dir).unwrap();
    assert!(records.is_empty());
    journal.append(&history[..a]).unwrap();
    let first = journal.rotate().unwrap();
    first.write(&replay(&history[..a], now).snapshot()).unwrap();
    journal.append(&history[a..b]).unwrap();
    let second = journal.rotate().unwrap();
    let state = replay(&history[..b], now).snapshot();
    match crash {
        Crash::Rotated => drop(second),
        Crash::TornPartial => {
            second.write_until(&state, Step::Written).unwrap();
            let partial = files(dir)
                .into_iter()
                .find(|n| n.ends_with(".partial"))
                .expect("a temporary snapshot");
            let partial = dir.join(partial);
            let size = std::fs::metadata(&partial).unwrap().len();
            OpenOptions::new()
                .write(true)
                .open(&partial)
                .unwrap()
                .set_len(size / 2)
                .unwrap();
        }
        Crash::After(step) => {
            second.write_until(&state, step).unwrap();
        }
    }
    // Commits go on while the snapshot is written: they land in the new segment.
    journal.append(&history[b..]).unwrap();
    journal.sync().unwrap();
    let last = journal.path.clone();
    drop(journal);
    if torn {
        let mut text = std::fs::read_to_string(&last).unwrap();
        text.push_str(&line(&finished(99))[..20]);
        std::fs::write(&last, text).unwrap();
    }
}

/// A crash after every step of a snapshot — rotated, temporary file torn or whole,
/// renamed, directory synced, old files removed — and a torn journal tail on top: reopening
/// gives the state (and Φ's exact sums) of replaying the whole journal, and leaves one
/// snapshot and the segments after it.
#[test]
fn a_crash_at_any_step_of_a_snapshot_loses_no_durable_record() {
    let history = history();
    let now = Instant::now();
    let whole = fingerprint(&replay(&history, now));
    let (a, b) = (history.len() / 3, 2 * history.len() / 3);
    let crashes = [
        Crash::Rotated,
        Crash::TornPartial,
        Crash::After(Step::Written),
        Crash::After(Step::Renamed),
        Crash::After(Step::DirSynced),
        Crash::After(Step::Removed),
    ];
    for crash in crashes {
        for torn in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            crashed(dir.path(), &history, (a, b), crash, torn);
            let new_snapshot_named = matches!(crash, Crash::After(s) if s >= Step::Renamed);
            let mut records = Vec::new();
            let (journal, replayed) =
                Journal::open_replayed(dir.path(), |r| records.push(r)).unwrap();
            let case = format!("{crash:?}, torn tail: {torn}");
            assert_eq!(fingerprint(&replay(&records, now)), whole, "{case}");
            assert_eq!(sums_of(&records, now), sums_of(&history, now), "{case}");
            assert_eq!(replayed.dropped, if torn { 20 } else { 0 }, "{case}");
            let base = if new_snapshot_named { 2 } else { 1 };
            assert_eq!(
                replayed.snapshot,
                Some(snapshot_path(dir.path(), base)),
                "{case}"
            );
            let mut expected = vec![format!("snapshot-{base:010}.jsonl")];
            expected.extend((base..=2).map(|s| format!("journal-{s:010}.log")));
            expected.sort();
            assert_eq!(files(dir.path()), expected, "{case}");
            // And the journal goes on from there.
            drop(journal);
            let (_, records, dropped) = Journal::open(dir.path()).unwrap();
            assert_eq!(
                fingerprint(&replay(&records, now)),
                whole,
                "{case}, reopened"
            );
            assert_eq!(dropped, 0);
        }
    }
}

/// A snapshot that fails its checks is skipped while the segments it would replace are
/// there, and is an error, never a silent loss, once they are gone.
#[test]
fn a_damaged_snapshot_is_never_half_used() {
    let history = history();
    let now = Instant::now();
    let whole = fingerprint(&replay(&history, now));
    let (a, b) = (history.len() / 3, 2 * history.len() / 3);
    let damage = |dir: &Path| {
        let path = snapshot_path(dir, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        // Drop the last record: the header's count no longer holds.
        let cut = text.trim_end().rfind('\n').unwrap() + 1;
        std::fs::write(&path, &text[..cut]).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    crashed(
        dir.path(),
        &history,
        (a, b),
        Crash::After(Step::DirSynced),
        false,
    );
    damage(dir.path());
    let mut records = Vec::new();
    let (_journal, replayed) = Journal::open_replayed(dir.path(), |r| records.push(r)).unwrap();
    assert_eq!(replayed.snapshot, Some(snapshot_path(dir.path(), 1)));
    assert_eq!(fingerprint(&replay(&records, now)), whole);

    let dir = tempfile::tempdir().unwrap();
    crashed(
        dir.path(),
        &history,
        (a, b),
        Crash::After(Step::Removed),
        false,
    );
    damage(dir.path());
    let error = Journal::open(dir.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no snapshot covers the journal before segment 2"),
        "{error}"
    );
}

/// A long history whose state stays small: `history()`, then a worker that drains and
/// comes back 2,000 times on a task of the running job (attempts that never count).
fn churn() -> Vec<Record> {
    let mut records = history();
    let state = replay(&records, Instant::now());
    let task = state
        .job(&JobId::numbered(2))
        .unwrap()
        .tasks
        .values()
        .find(|t| t.state == TaskState::Pending)
        .expect("a pending task");
    let (id, first) = (task.id.clone(), task.attempts + 1);
    for attempt in first..first + 2000 {
        records.push(Record::AttemptStarted {
            task: id.clone(),
            attempt,
        });
        records.push(Record::AttemptFailed {
            task: id.clone(),
            attempt,
            failure: Failure {
                reason: "FAILURE_REASON_CANCELLED".into(),
                retryable: true,
                counted: false,
                message: "the worker left (drained)".into(),
            },
        });
    }
    records
}

/// Appends with snapshots as [`Journal::snapshot_due`] asks over a long history keep the
/// journal on disk within twice the largest snapshot plus twice the trigger (the bound the
/// trigger promises), far below what was appended, and reopening gives the whole state.
#[test]
fn snapshots_keep_the_journal_to_the_state_and_the_recent_tail() {
    const MIN_BYTES: u64 = 4096;
    let history = churn();
    let now = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _, _) = Journal::open(dir.path()).unwrap();
    let mut state = Scheduler::new(SchedulerConfig::default());
    let (mut snapshots, mut largest_snapshot, mut largest) = (0, 0, 0);
    for record in &history {
        state.apply(record, now);
        journal.append(std::slice::from_ref(record)).unwrap();
        if journal.snapshot_due(MIN_BYTES) {
            let file = journal.rotate().unwrap();
            assert!(!journal.snapshot_due(0), "one snapshot at a time");
            largest_snapshot = largest_snapshot.max(file.write(&state.snapshot()).unwrap());
            snapshots += 1;
            assert_eq!(files(dir.path()).len(), 2, "{:?}", files(dir.path()));
        }
        journal.flush().unwrap();
        largest = largest.max(disk_bytes(dir.path()));
    }
    journal.sync().unwrap();
    let appended: u64 = history.iter().map(|r| line(r).len() as u64).sum();
    let bound = 2 * largest_snapshot + 2 * MIN_BYTES.max(largest_snapshot);
    println!(
        "{} records, {appended} bytes appended; {snapshots} snapshots (largest {largest_snapshot} bytes); at most {largest} bytes on disk (bound {bound})",
        history.len()
    );
    assert!(snapshots >= 20, "{snapshots}");
    assert!(largest <= bound, "{largest} bytes on disk, bound {bound}");
    assert!(
        largest * 10 < appended,
        "{largest} on disk, {appended} appended"
    );
    drop(journal);
    let (_, records, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(
        fingerprint(&replay(&records, now)),
        fingerprint(&replay(&history, now))
    );
}

/// How long a snapshot takes: the part under the coordinator's lock (rotation and the
/// state as records) and the write, for many finished jobs; and a start from it.
/// `cargo test --release -p hint-coordinator --lib snapshot_time -- --ignored --nocapture`
#[test]
#[ignore = "a measurement"]
fn snapshot_time() {
    use crate::scheduler::tests::snapshot::finished_jobs;
    for jobs in [100, 1000, 10_000] {
        let records = finished_jobs(jobs);
        let now = Instant::now();
        let state = replay(&records, now);
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _, _) = Journal::open(dir.path()).unwrap();
        journal.append(&records).unwrap();
        let started = Instant::now();
        let file = journal.rotate().unwrap();
        let snapshot = state.snapshot();
        let locked = started.elapsed();
        let bytes = file.write(&snapshot).unwrap();
        let total = started.elapsed();
        drop(journal);
        let started = Instant::now();
        let (_, replayed, _) = Journal::open(dir.path()).unwrap();
        let recovered = Scheduler::recover(SchedulerConfig::default(), replayed, now).0;
        let open = started.elapsed();
        assert_eq!(recovered.jobs().count() as u64, jobs);
        println!(
            "{jobs} finished jobs: {} journal records ({} bytes) → snapshot of {} records, \
             {bytes} bytes; under the lock {:.1} ms, written in {:.1} ms; start from it {:.1} ms",
            records.len(),
            journal_bytes(&records),
            snapshot.len(),
            locked.as_secs_f64() * 1e3,
            (total - locked).as_secs_f64() * 1e3,
            open.as_secs_f64() * 1e3,
        );
    }
}

fn journal_bytes(records: &[Record]) -> usize {
    records.iter().map(|r| line(r).len()).sum()
}

/// A snapshot that cannot be written (here its temporary name is taken by a directory)
/// is no journal failure: the journal goes on whole, the next snapshot waits until the
/// tail has doubled, and then replaces it.
#[test]
fn a_snapshot_that_cannot_be_written_leaves_the_journal_whole_and_is_tried_later() {
    let history = churn();
    let now = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _, _) = Journal::open(dir.path()).unwrap();
    let half = history.len() / 4;
    journal.append(&history[..half]).unwrap();
    let tail = journal.tail_bytes();
    let file = journal.rotate().unwrap();
    let blocker = dir.path().join(".snapshot-0000000001.jsonl.partial");
    std::fs::create_dir(&blocker).unwrap();
    assert!(file
        .write(&replay(&history[..half], now).snapshot())
        .is_err());
    assert!(
        !journal.snapshot_due(0),
        "retried only once the tail doubled"
    );
    let mut appended = half;
    while !journal.snapshot_due(0) {
        journal.append(&history[appended..=appended]).unwrap();
        appended += 1;
    }
    assert!(journal.tail_bytes() >= 2 * tail);
    std::fs::remove_dir(&blocker).unwrap();
    let file = journal.rotate().unwrap();
    file.write(&replay(&history[..appended], now).snapshot())
        .unwrap();
    journal.append(&history[appended..]).unwrap();
    journal.sync().unwrap();
    drop(journal);
    assert_eq!(
        files(dir.path()),
        ["journal-0000000002.log", "snapshot-0000000002.jsonl"]
    );
    let (_, records, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(
        fingerprint(&replay(&records, now)),
        fingerprint(&replay(&history, now))
    );
}

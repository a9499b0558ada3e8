//! Snapshots ([`Scheduler::snapshot`]): the records they hold rebuild the state the whole
//! journal rebuilds — at every point of a history with retries, a quarantine, Shapley
//! blocks committed out of order, a finished, a running and a cancelled job — and their
//! size follows the state, not the history.

use super::*;

/// The state a journal's records rebuild, as text: the incarnation and every job (its
/// tasks, counts, rounds and merged sums; the maps are ordered, so equal states print
/// alike). Replayed at one instant, so the instants in it agree too.
pub(crate) fn fingerprint(scheduler: &Scheduler) -> String {
    format!("{} {:#?}", scheduler.incarnation, scheduler.jobs)
}

/// The scheduler the records rebuild (applied as the journal's replay applies them).
pub(crate) fn replay(records: &[Record], now: Instant) -> Scheduler {
    let mut scheduler = Scheduler::new(CONFIG);
    for record in records {
        scheduler.apply(record, now);
    }
    scheduler
}

/// The merged sums of every job the records rebuild.
pub(crate) fn sums_of(records: &[Record], now: Instant) -> Vec<BTreeMap<u32, PartialSums>> {
    replay(records, now)
        .jobs()
        .map(|j| j.sums.clone())
        .collect()
}

/// A journal of three jobs: the first ran to the end through retries (a counted failure of
/// every third task's first attempt) and a quarantined extract task (bad input), with two
/// workers settling their attempts in scrambled order; the second is in the middle of its
/// Shapley stage with attempts running; the third was cancelled while extracting.
pub(crate) fn history() -> Vec<Record> {
    let spec = spec();
    let mut h = Harness::new();
    h.pick = scrambled();
    h.outcome = Box::new(|(id, attempt)| match (id.stage, id.index, attempt) {
        (Stage::Extract, 2, _) => Some(failure(FailureReason::BadInput, false, true)),
        (_, index, 1) if index % 3 == 1 => Some(counted(FailureReason::Execution)),
        _ => None,
    });
    let first = h.start(&spec);
    let workers = [h.register("a", 2), h.register("b", 1)];
    assert_eq!(h.run(&workers), [Action::Report(first.clone())]);
    // Φ's sums, exactly the undisturbed ones, until the report; an ended job keeps none.
    assert_eq!(h.job(&first).sums, reference(&spec));
    h.scheduler.reported(&first, h.now());
    assert!(h.job(&first).sums.is_empty());
    h.sync();
    assert_eq!(h.outcome(&first), Some(Outcome::Succeeded));

    let second = h.start(&spec);
    h.run_until(&workers, |s| {
        let job = s.job(&JobId::numbered(2)).expect("job 2");
        job.stage_tasks(Stage::Shapley)
            .filter(|t| t.is_settled())
            .count()
            == 3
    });
    for w in &workers {
        h.fill(w);
    }
    let third = h.start(&spec);
    h.scheduler.finish(
        &third,
        Outcome::Cancelled,
        Some("cancelled".into()),
        h.now(),
    );
    h.sync();
    assert!(h.job(&second).tasks.values().any(|t| t.attempts > 1));
    h.journal
}

#[test]
fn a_snapshot_and_the_journal_after_it_rebuild_what_the_whole_journal_rebuilds() {
    let history = history();
    let now = Instant::now();
    let whole = replay(&history, now);
    let (recovered, actions) = Scheduler::recover(CONFIG, history.clone(), now);
    let mut snapshots = 0;
    for cut in 0..=history.len() {
        let snapshot = replay(&history[..cut], now).snapshot();
        let shown = replay(&snapshot, now);
        let prefix = replay(&history[..cut], now);
        assert_eq!(fingerprint(&shown), fingerprint(&prefix), "at record {cut}");
        let mut compacted = snapshot.clone();
        compacted.extend_from_slice(&history[cut..]);
        assert_eq!(
            fingerprint(&replay(&compacted, now)),
            fingerprint(&whole),
            "a snapshot at record {cut}, then the rest"
        );
        // A restart from it resumes alike: the same actions and state.
        let (again, again_actions) = Scheduler::recover(CONFIG, compacted, now);
        assert_eq!(again_actions, actions, "at record {cut}");
        assert_eq!(
            fingerprint(&again),
            fingerprint(&recovered),
            "at record {cut}"
        );
        snapshots += 1;
    }
    assert!(snapshots > 70, "{snapshots}");
    // Φ's sums: none for the finished job (checked against the undisturbed ones before it
    // ended, in `history`), the committed blocks' for the running one.
    let sums = sums_of(&whole.snapshot(), now);
    assert!(sums[0].is_empty());
    assert_eq!(sums, sums_of(&history, now));
    assert_eq!(sums[1].values().map(PartialSums::samples).sum::<u64>(), 6);
}

#[test]
fn a_snapshot_holds_merged_sums_and_no_history() {
    let history = history();
    let state = replay(&history, Instant::now());
    let snapshot = state.snapshot();
    let count = |records: &[Record], wanted: fn(&Record) -> bool| {
        records.iter().filter(|r| wanted(r)).count()
    };
    // One set of sums per concept with Shapley commits, no per-block sums, no attempt or
    // failure records.
    // (Only the running job has sums: an ended job keeps none.)
    let concepts: usize = state.jobs().map(|j| j.sums.len()).sum();
    assert_eq!(concepts, 2);
    let shapley_commits =
        |r: &Record| matches!(r, Record::Committed { task, .. } if task.stage == Stage::Shapley);
    assert_eq!(count(&history, shapley_commits), 6 + 3);
    assert_eq!(
        count(&snapshot, |r| matches!(r, Record::SumsRestored { .. })),
        concepts
    );
    let history_only = |r: &Record| {
        matches!(
            r,
            Record::Committed { .. } | Record::AttemptStarted { .. } | Record::AttemptFailed { .. }
        )
    };
    assert_eq!(count(&snapshot, history_only), 0);
    assert!(count(&history, history_only) > 40);
    let restored_sums = snapshot.iter().filter_map(|r| match r {
        Record::TaskRestored {
            settled:
                Some(Settled::Committed {
                    output: Output::Shapley { sum, sum_sq, .. },
                    ..
                }),
            ..
        } => Some(sum.len() + sum_sq.len()),
        _ => None,
    });
    assert_eq!(restored_sums.sum::<usize>(), 0, "blocks keep no sums");
}

#[test]
fn a_snapshot_stays_the_same_size_while_the_journal_grows() {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = h.register("a", 1);
    let size = |h: &Harness| {
        let records = h.scheduler.snapshot();
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap().len())
            .sum::<usize>()
    };
    let journal_size = |h: &Harness| {
        h.journal
            .iter()
            .map(|r| serde_json::to_string(r).unwrap().len())
            .sum::<usize>()
    };
    // A worker that drains and comes back, over and over: attempts that never count.
    let mut sizes = Vec::new();
    for round in 0..400 {
        let lease = h.take(&w);
        assert_eq!(lease, (task_id(&job, Stage::Extract, 0), round + 1));
        h.fail(&lease, failure(FailureReason::Cancelled, true, false));
        if round == 9 || round == 399 {
            sizes.push((size(&h), journal_size(&h)));
        }
    }
    let [(early, early_journal), (late, late_journal)] = sizes[..] else {
        unreachable!()
    };
    assert!(late_journal > 25 * early_journal, "{sizes:?}");
    // Only the attempt numbers' digits grew.
    assert!(late <= early + 8, "{sizes:?}");
}

/// The records of `n` finished jobs, each as a job of [`spec`] run by one worker from
/// submission to its report (11 tasks, 6 Shapley commits), numbered 1 to `n`.
pub(crate) fn finished_jobs(n: u64) -> Vec<Record> {
    let mut h = Harness::new();
    let job = h.start(&spec());
    let w = [h.register("a", 1)];
    h.run(&w);
    h.scheduler.reported(&job, h.now());
    h.sync();
    let template: Vec<String> = h
        .journal
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let mut records = vec![Record::Started { incarnation: 1 }];
    for k in 1..=n {
        let id = JobId::numbered(k).0;
        records.extend(
            template
                .iter()
                .filter(|json| !json.contains(r#""record":"started""#))
                .map(|json| serde_json::from_str(&json.replace(&job.0, &id)).unwrap()),
        );
    }
    records
}

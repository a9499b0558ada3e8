//! A job with several layers (`model.layers`): its extract tasks write every layer's files
//! in one pass; then one job per layer ([`Scheduler::fork`], one [`Record::Forked`]) starts
//! from those files and runs like any job; the job reports once they have all ended, and
//! succeeds only if each did. Cancelling it cancels them; a restart (from the journal or
//! a snapshot) rebuilds the same state.

use super::snapshot::{fingerprint, replay};
use super::*;

const LAYERS: [&str; 3] = ["features.1", "features.4", "features.7"];

fn layered() -> JobSpec {
    let mut spec = spec();
    spec.model.layers = LAYERS.map(String::from).to_vec();
    spec.model.layer = LAYERS[0].into();
    spec
}

/// A harness with the layered job extracted and forked, and its worker.
fn forked() -> (Harness, JobId, WorkerId) {
    let mut h = Harness::new();
    let job = h.start(&layered());
    let w = h.register("w", 2);
    // Extraction, then nothing more to lease: the layers' jobs come next.
    assert_eq!(h.run(std::slice::from_ref(&w)), [Action::Fork(job.clone())]);
    assert_eq!(indices(h.job(&job), Stage::Extract), [0, 1, 2]);
    assert!(!h.job(&job).has_tasks(Stage::Sample));
    // A restart before the fork asks for it again.
    assert_eq!(h.restart().1, [Action::Fork(job.clone())]);
    let actions = h.scheduler.fork(&job, h.now());
    h.sync();
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(h.count(|r| matches!(r, Record::Forked { .. })), 1);
    // Forking twice changes nothing.
    assert!(h.scheduler.fork(&job, h.now()).is_empty());
    h.sync();
    assert_eq!(h.count(|r| matches!(r, Record::Forked { .. })), 1);
    (h, job, w)
}

#[test]
fn the_layers_share_one_extraction_and_then_run_as_jobs_of_their_own() {
    let (mut h, job, w) = forked();
    let children = h.job(&job).children.clone();
    let ids: Vec<String> = children.iter().map(|c| c.to_string()).collect();
    assert_eq!(ids, ["job-0001.1", "job-0001.2", "job-0001.3"]);
    for (child, layer) in children.iter().zip(LAYERS) {
        let c = h.job(child);
        assert_eq!(c.parent.as_ref(), Some(&job));
        assert_eq!(
            (c.spec.model.layer.as_str(), c.spec.model.layers.len()),
            (layer, 0)
        );
        assert_eq!(
            c.job_dir,
            Path::new("/none/jobs/job-0001/layers").join(layer)
        );
        // The job's extract tasks are its own, committed with its layer's files only.
        assert_eq!(indices(c, Stage::Extract), [0, 1, 2]);
        for task in c.stage_tasks(Stage::Extract) {
            let TaskState::Done {
                output: Output::Extract { files, .. },
                ..
            } = &task.state
            else {
                panic!("{} is not committed", task.id)
            };
            assert_eq!(files.len(), 3);
            for f in files {
                assert_eq!(f.from, f.path, "in place already");
                assert!(Path::new(&f.path).starts_with(&c.job_dir), "{}", f.path);
            }
        }
        // It goes on with its own sample stage.
        assert!(c.has_tasks(Stage::Sample) && !c.all_settled(Stage::Sample));
    }
    // The job itself leases nothing more; it waits for its layers' jobs.
    assert_eq!(h.job(&job).stage(), Stage::Report);
    assert!(h.job(&job).pending.is_empty());

    // Every layer's job runs to its report, on the same sums a job of one layer gets.
    let mut reports = h.run(std::slice::from_ref(&w));
    reports.sort_by_key(|a| format!("{a:?}"));
    let expected: Vec<Action> = children.iter().cloned().map(Action::Report).collect();
    assert_eq!(reports, expected);
    for child in &children {
        assert_eq!(h.job(child).sums, reference(&h.job(child).spec));
    }
    // The job reports once the last of them has ended.
    let mut follow = Vec::new();
    for child in &children {
        follow = h.scheduler.reported(child, h.now());
        h.sync();
        if child != children.last().unwrap() {
            assert!(follow.is_empty());
        }
    }
    assert_eq!(follow, [Action::Report(job.clone())]);
    assert!(h.scheduler.reported(&job, h.now()).is_empty());
    h.sync();
    assert_eq!(h.outcome(&job), Some(Outcome::Succeeded));

    // A restart from the journal, and one from a snapshot, rebuild the same state.
    let now = h.now();
    let from_journal = replay(&h.journal, now);
    let from_snapshot = replay(&h.scheduler.snapshot(), now);
    assert_eq!(fingerprint(&from_journal), fingerprint(&from_snapshot));
    assert_eq!(
        from_snapshot.job(&job).unwrap().children,
        children,
        "shallow to deep"
    );
    // The next submission is job 2: the layers' jobs are not numbered among submissions.
    let (next, _) = h.scheduler.submit(&spec(), 0.0, now);
    assert_eq!(next, JobId::numbered(2));
}

#[test]
fn a_snapshot_taken_while_the_layers_run_resumes_them() {
    let (mut h, job, w) = forked();
    h.run_until(std::slice::from_ref(&w), |s| {
        s.job(&JobId("job-0001.2".into()))
            .is_some_and(|c| c.all_settled(Stage::Sample))
    });
    let now = h.now();
    let snapshot = h.scheduler.snapshot();
    assert!(!snapshot.iter().any(|r| matches!(r, Record::Forked { .. })));
    assert_eq!(
        fingerprint(&replay(&h.journal, now)),
        fingerprint(&replay(&snapshot, now))
    );
    let (mut again, actions) = Harness::recovered(snapshot, h.base, h.elapsed);
    assert!(actions.is_empty(), "{actions:?}");
    let w = again.register("w", 2);
    let mut reports = again.run(&[w]);
    reports.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(reports
        .iter()
        .all(|a| matches!(a, Action::Report(c) if c.0.starts_with("job-0001."))));
    assert_eq!(again.job(&job).children.len(), 3);
}

#[test]
fn a_layer_that_fails_fails_the_job_after_the_others_end() {
    let (mut h, job, w) = forked();
    let children = h.job(&job).children.clone();
    // The middle layer's training cannot be done.
    h.outcome = Box::new(|(id, _)| {
        (id.job.0 == "job-0001.2" && id.stage == Stage::Train)
            .then(|| failure(FailureReason::BadInput, false, true))
    });
    let actions = h.run(&[w]);
    let mut reports: Vec<&Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::Report(_)))
        .collect();
    reports.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(
        reports,
        [
            &Action::Report(children[0].clone()),
            &Action::Report(children[2].clone())
        ]
    );
    assert_eq!(h.outcome(&children[1]), Some(Outcome::Failed));
    assert_eq!(h.outcome(&job), None, "the other layers still run");
    h.scheduler.reported(&children[0], h.now());
    let follow = h.scheduler.reported(&children[2], h.now());
    assert_eq!(follow, [Action::Report(job.clone())]);
    h.scheduler.reported(&job, h.now());
    h.sync();
    assert_eq!(h.outcome(&job), Some(Outcome::Failed));
    let error = h.job(&job).error().unwrap_or_default();
    assert!(error.contains("features.4: failed"), "{error}");
    assert!(!error.contains("features.1"), "{error}");
}

#[test]
fn a_layer_cancelled_by_a_client_lets_the_job_report_at_the_next_tick() {
    let (mut h, job, _) = forked();
    let children = h.job(&job).children.clone();
    for child in &children {
        h.scheduler.finish(
            child,
            Outcome::Cancelled,
            Some("by a client".into()),
            h.now(),
        );
    }
    h.sync();
    assert_eq!(h.tick(), [Action::Report(job.clone())]);
    h.scheduler.reported(&job, h.now());
    h.sync();
    assert_eq!(h.outcome(&job), Some(Outcome::Failed));
    let error = h.job(&job).error().unwrap_or_default();
    assert!(
        error.contains("features.7: cancelled (by a client)"),
        "{error}"
    );
}

#[test]
fn cancelling_the_job_cancels_its_layers() {
    let (mut h, job, _) = forked();
    h.scheduler.finish(
        &job,
        Outcome::Cancelled,
        Some("by a client".into()),
        h.now(),
    );
    h.sync();
    for child in h.job(&job).children.clone() {
        assert_eq!(h.outcome(&child), Some(Outcome::Cancelled));
        let error = h.job(&child).error().unwrap_or_default();
        assert!(error.contains("job-0001 cancelled: by a client"), "{error}");
        assert!(h.job(&child).pending.is_empty());
    }
}

//! A job's status as clients see it (`hint status`, the watch stream, `hint run`'s bars).

use hint_common::job::Stage;
use hint_common::proto;

use crate::scheduler::{Job, JobPhase, Outcome, Scheduler, TaskState};

/// The proto status of `job`.
///
/// A job with several layers counts its layers' jobs' tasks with its own (their bars are
/// its bars), and is at the earliest stage of those still running.
pub fn job_status(job: &Job, scheduler: &Scheduler) -> proto::JobStatus {
    let live_workers = scheduler.workers().len() as u32;
    let children: Vec<&Job> = job
        .children
        .iter()
        .filter_map(|c| scheduler.job(c))
        .collect();
    let stages = Stage::LEASED
        .into_iter()
        .map(|stage| {
            let mut progress = proto::StageProgress {
                stage: stage.name().into(),
                ..Default::default()
            };
            // The layers' jobs' extract tasks are the job's own, already counted.
            let layers = children.iter().copied().filter(|_| stage != Stage::Extract);
            let tasks = std::iter::once(job)
                .chain(layers)
                .flat_map(|j| j.stage_tasks(stage));
            for task in tasks {
                progress.total += 1;
                let units = task.units();
                progress.units_total += units;
                match &task.state {
                    TaskState::Pending => progress.pending += 1,
                    TaskState::Running { .. } => {
                        progress.running += 1;
                        progress.units_done += task.progress.0.min(units);
                    }
                    TaskState::Done { .. } => {
                        progress.done += 1;
                        progress.units_done += units;
                    }
                    TaskState::Quarantined => progress.quarantined += 1,
                }
            }
            progress
        })
        .collect();
    let quarantined = job
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Quarantined)
        .map(|t| proto::QuarantinedTask {
            task_id: t.id.to_string(),
            attempts: t.attempts,
            reason: t
                .last_failure
                .as_ref()
                .and_then(|f| proto::FailureReason::from_str_name(&f.reason))
                .unwrap_or(proto::FailureReason::Unspecified) as i32,
            message: t
                .last_failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default(),
        })
        .collect();
    let phase = match &job.phase {
        JobPhase::Planning => proto::JobPhase::Queued,
        JobPhase::Running(_) => proto::JobPhase::Running,
        JobPhase::Ended(ending) => match ending.outcome {
            Outcome::Succeeded => proto::JobPhase::Succeeded,
            Outcome::Failed => proto::JobPhase::Failed,
            Outcome::Cancelled => proto::JobPhase::Cancelled,
        },
    };
    proto::JobStatus {
        job_id: job.id.to_string(),
        name: job.spec.name.clone(),
        phase: phase as i32,
        stage: children
            .iter()
            .filter(|c| !c.is_finished())
            .map(|c| c.stage())
            .min()
            .unwrap_or_else(|| job.stage())
            .name()
            .into(),
        stages,
        quarantined,
        error: job.error().unwrap_or_default().to_string(),
        job_dir: job.job_dir.display().to_string(),
        live_workers,
        elapsed_seconds: job.seen_at.elapsed().as_secs_f64(),
    }
}

/// The phase's name.
pub fn phase_name(phase: i32) -> &'static str {
    match proto::JobPhase::try_from(phase).unwrap_or(proto::JobPhase::Unspecified) {
        proto::JobPhase::Queued => "queued",
        proto::JobPhase::Running => "running",
        proto::JobPhase::Succeeded => "succeeded",
        proto::JobPhase::Failed => "failed",
        proto::JobPhase::Cancelled => "cancelled",
        proto::JobPhase::Unspecified => "unknown",
    }
}

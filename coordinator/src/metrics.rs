//! What the coordinator counts, and its Prometheus text exposition (`/metrics`).
//!
//! Counters (monotonic since the process started): task completions by kind, failures by
//! reason, images extracted, permutations summed. Gauges read from the scheduler at scrape
//! time: tasks by state and kind, live workers, jobs by phase, and images/s and
//! permutations/s over the last minute (also derivable with `rate()` from the counters; the
//! gauges serve the status page and people without a Prometheus server).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hint_common::job::Stage;

use crate::scheduler::{JobPhase, Outcome, Output, Record, Scheduler, TaskState};

/// How far back the rates look.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The coordinator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    completions: BTreeMap<&'static str, u64>,
    failures: BTreeMap<String, u64>,
    images: u64,
    permutations: u64,
    /// Per extraction pipeline stage: (busy seconds, capacity = wall seconds × threads),
    /// summed over committed extract tasks.
    stages: BTreeMap<String, (f64, f64)>,
    /// Images of committed extract tasks by the worker (its registered name) that ran them.
    worker_images: BTreeMap<String, u64>,
    /// (when, images, permutations) samples for the rates.
    samples: VecDeque<(Instant, u64, u64)>,
}

/// Work units per second over the last minute.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Images extracted per second.
    pub images: f64,
    /// Permutations summed per second.
    pub permutations: f64,
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts what the records say happened: commits and failed attempts.
    pub fn observe(&self, records: &[Record]) {
        for record in records {
            match record {
                Record::Committed { task, output, .. } => {
                    let (images, permutations) = match output {
                        Output::Extract { images, .. } => (*images, 0),
                        Output::Sample { .. } | Output::Train { .. } | Output::Results { .. } => {
                            (0, 0)
                        }
                        Output::Shapley {
                            samples,
                            antithetic,
                            ..
                        } => (0, samples * if *antithetic { 2 } else { 1 }),
                    };
                    self.completed(task.stage, images, permutations);
                }
                Record::AttemptFailed { failure, .. } => self.failed(&failure.reason),
                _ => {}
            }
        }
    }

    /// A committed task of `stage` that did `images` images or `permutations` permutations.
    pub fn completed(&self, stage: Stage, images: u64, permutations: u64) {
        let mut c = self.counters();
        *c.completions.entry(stage.name()).or_default() += 1;
        c.images += images;
        c.permutations += permutations;
    }

    /// A committed extract task's pipeline, run by the worker named `worker`: its images and
    /// each stage's busy time and capacity.
    pub fn extracted(&self, worker: &str, summary: &hint_common::proto::ExtractSummary) {
        let mut c = self.counters();
        *c.worker_images.entry(worker.to_string()).or_default() += summary.images_processed;
        for stage in &summary.stages {
            let (busy, capacity) = c.stages.entry(stage.stage.clone()).or_default();
            *busy += stage.busy_seconds;
            *capacity += summary.seconds * f64::from(stage.threads.max(1));
        }
    }

    /// A failed attempt (its proto reason name).
    pub fn failed(&self, reason: &str) {
        *self
            .counters()
            .failures
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// Samples the counters for the rates (called periodically and at each scrape).
    pub fn sample(&self, now: Instant) -> Rates {
        let mut c = self.counters();
        let (images, permutations) = (c.images, c.permutations);
        c.samples.push_back((now, images, permutations));
        while c
            .samples
            .front()
            .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > RATE_WINDOW)
        {
            c.samples.pop_front();
        }
        let (t0, i0, p0) = *c.samples.front().expect("just pushed");
        let seconds = now.saturating_duration_since(t0).as_secs_f64();
        if seconds < 1e-3 {
            return Rates::default();
        }
        Rates {
            images: (images - i0) as f64 / seconds,
            permutations: (permutations - p0) as f64 / seconds,
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, scheduler: &Scheduler, now: Instant) -> String {
        let rates = self.sample(now);
        let c = self.counters();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_string()
        };
        let _ = family("hint_tasks", "gauge", "Tasks by stage and state.");
        let mut tasks: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for job in scheduler.jobs() {
            for stage in Stage::LEASED {
                for state in ["pending", "running", "done", "quarantined"] {
                    tasks.entry((stage.name(), state)).or_default();
                }
                for task in job.stage_tasks(stage) {
                    let state = match task.state {
                        TaskState::Pending => "pending",
                        TaskState::Running { .. } => "running",
                        TaskState::Done { .. } => "done",
                        TaskState::Quarantined => "quarantined",
                    };
                    *tasks.entry((stage.name(), state)).or_default() += 1;
                }
            }
        }
        let mut lines = String::new();
        for ((kind, state), n) in &tasks {
            let _ = writeln!(lines, "hint_tasks{{kind=\"{kind}\",state=\"{state}\"}} {n}");
        }
        out.push_str(&lines);
        let mut jobs: BTreeMap<&str, u64> = BTreeMap::new();
        for job in scheduler.jobs() {
            let phase = match &job.phase {
                JobPhase::Planning => "planning",
                JobPhase::Running(_) => "running",
                JobPhase::Ended(ending) => match ending.outcome {
                    Outcome::Succeeded => "succeeded",
                    Outcome::Failed => "failed",
                    Outcome::Cancelled => "cancelled",
                },
            };
            *jobs.entry(phase).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP hint_jobs Jobs by phase.\n# TYPE hint_jobs gauge"
        );
        for (phase, n) in &jobs {
            let _ = writeln!(out, "hint_jobs{{phase=\"{phase}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP hint_live_workers Registered workers that poll.\n# TYPE hint_live_workers gauge\nhint_live_workers {}",
            scheduler.workers().len()
        );
        let _ = writeln!(out, "# HELP hint_task_completions_total Committed tasks by kind.\n# TYPE hint_task_completions_total counter");
        for kind in Stage::LEASED.map(Stage::name) {
            let n = c.completions.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "hint_task_completions_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP hint_task_failures_total Failed attempts by reason.\n# TYPE hint_task_failures_total counter");
        for (reason, n) in &c.failures {
            let label = crate::scheduler::reason_label(reason).to_ascii_lowercase();
            let _ = writeln!(out, "hint_task_failures_total{{reason=\"{label}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP hint_images_total Images extracted (committed).\n# TYPE hint_images_total counter\nhint_images_total {}",
            c.images
        );
        let _ = writeln!(
            out,
            "# HELP hint_permutations_total Shapley permutations summed (committed).\n# TYPE hint_permutations_total counter\nhint_permutations_total {}",
            c.permutations
        );
        let _ = writeln!(out, "# HELP hint_worker_images_total Images of committed extract tasks by worker (rate() gives each worker's images/s).\n# TYPE hint_worker_images_total counter");
        for (worker, n) in &c.worker_images {
            let _ = writeln!(
                out,
                "hint_worker_images_total{{worker=\"{}\"}} {n}",
                label_value(worker)
            );
        }
        let _ = writeln!(out, "# HELP hint_extract_stage_busy_seconds_total Busy seconds of each extraction pipeline stage over committed extract tasks (summed over a stage's threads).\n# TYPE hint_extract_stage_busy_seconds_total counter");
        for (stage, (busy, _)) in &c.stages {
            let _ = writeln!(
                out,
                "hint_extract_stage_busy_seconds_total{{stage=\"{}\"}} {busy:.3}",
                label_value(stage)
            );
        }
        let _ = writeln!(out, "# HELP hint_extract_stage_capacity_seconds_total Wall seconds × threads of each stage over committed extract tasks: busy over capacity is its utilisation.\n# TYPE hint_extract_stage_capacity_seconds_total counter");
        for (stage, (_, capacity)) in &c.stages {
            let _ = writeln!(
                out,
                "hint_extract_stage_capacity_seconds_total{{stage=\"{}\"}} {capacity:.3}",
                label_value(stage)
            );
        }
        let _ = writeln!(out, "# HELP hint_extract_stage_utilisation Busy over capacity of each extraction pipeline stage since the coordinator started: the stage near 1 bounds extraction.\n# TYPE hint_extract_stage_utilisation gauge");
        for (stage, (busy, capacity)) in &c.stages {
            let share = if *capacity > 0.0 {
                busy / capacity
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "hint_extract_stage_utilisation{{stage=\"{}\"}} {share:.4}",
                label_value(stage)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hint_images_per_second Images extracted per second over the last minute.\n# TYPE hint_images_per_second gauge\nhint_images_per_second {:.3}",
            rates.images
        );
        let _ = writeln!(
            out,
            "# HELP hint_permutations_per_second Permutations summed per second over the last minute.\n# TYPE hint_permutations_per_second gauge\nhint_permutations_per_second {:.3}",
            rates.permutations
        );
        out
    }
}

/// A label value in the exposition format: backslash, double quote and line feed escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_rates() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        assert_eq!(metrics.sample(t0), Rates::default());
        metrics.completed(Stage::Extract, 100, 0);
        metrics.completed(Stage::Shapley, 0, 32);
        metrics.failed("FAILURE_REASON_WORKER_LOST");
        let rates = metrics.sample(t0 + Duration::from_secs(10));
        assert!((rates.images - 10.0).abs() < 1e-9, "{rates:?}");
        assert!((rates.permutations - 3.2).abs() < 1e-9, "{rates:?}");
        let scheduler = Scheduler::new(Default::default());
        let text = metrics.render(&scheduler, t0 + Duration::from_secs(10));
        for line in [
            "hint_task_completions_total{kind=\"extract\"} 1",
            "hint_task_completions_total{kind=\"shapley\"} 1",
            "hint_task_failures_total{reason=\"worker_lost\"} 1",
            "hint_images_total 100",
            "hint_permutations_total 32",
            "hint_live_workers 0",
            "# TYPE hint_tasks gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}

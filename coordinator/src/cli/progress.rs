//! Progress of a job on the terminal: one bar per stage, fed by the status stream, and the
//! closing summary. Shared by `hint run`, `hint submit --wait` and `hint status --watch`.

use hint_common::proto;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// A bar per stage (extract, train, shapley).
pub struct StageBars {
    bars: Vec<ProgressBar>,
    _multi: MultiProgress,
}

impl StageBars {
    /// Bars for the three worker stages.
    pub fn new() -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .expect("valid template");
        let bars = ["extract", "train", "shapley"]
            .iter()
            .map(|stage| {
                let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
                bar.set_prefix(*stage);
                bar.set_message("waiting");
                bar
            })
            .collect();
        StageBars {
            bars,
            _multi: multi,
        }
    }

    /// Shows a status.
    pub fn update(&self, status: &proto::JobStatus) {
        for (bar, stage) in self.bars.iter().zip(&status.stages) {
            let unit = match stage.stage.as_str() {
                "extract" => "images",
                "train" => "concepts",
                _ => "permutations",
            };
            bar.set_length(stage.units_total);
            bar.set_position(stage.units_done);
            if stage.total == 0 {
                continue;
            }
            let mut message = format!(
                "{unit} · tasks {}/{} done, {} running",
                stage.done, stage.total, stage.running
            );
            if stage.quarantined > 0 {
                message += &format!(", {} quarantined", stage.quarantined);
            }
            bar.set_message(message);
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        for bar in &self.bars {
            bar.finish_and_clear();
        }
    }
}

impl Default for StageBars {
    fn default() -> Self {
        Self::new()
    }
}

pub use hint_coordinator::status::phase_name;

/// A status as a few readable lines.
pub fn describe(status: &proto::JobStatus) -> String {
    let mut text = format!(
        "{} ({}): {} — stage {}, {} live worker(s), {:.1} s\n",
        status.job_id,
        status.name,
        phase_name(status.phase),
        status.stage,
        status.live_workers,
        status.elapsed_seconds
    );
    for s in &status.stages {
        if s.total == 0 {
            continue;
        }
        text += &format!(
            "  {:<8} tasks {}/{} done, {} running, {} pending, {} quarantined; units {}/{}\n",
            s.stage,
            s.done,
            s.total,
            s.running,
            s.pending,
            s.quarantined,
            s.units_done,
            s.units_total
        );
    }
    for q in &status.quarantined {
        let reason = proto::FailureReason::try_from(q.reason)
            .map(|r| hint_coordinator::scheduler::reason_label(r.as_str_name()))
            .unwrap_or("UNKNOWN");
        text += &format!(
            "  quarantined {} after {} attempt(s): {reason}: {}\n",
            q.task_id, q.attempts, q.message
        );
    }
    if !status.error.is_empty() {
        text += &format!("  error: {}\n", status.error);
    }
    text += &format!("  storage: {}\n", status.job_dir);
    text
}

/// A bar for a stage that reports `(done, total)`, with `message` beside it.
pub fn counting_bar(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message(message);
    bar
}

/// The `progress(done, total)` callback that moves `bar`.
pub fn advance(bar: &indicatif::ProgressBar) -> impl FnMut(usize, usize) + '_ {
    move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

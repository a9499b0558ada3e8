//! Progress of a job on the terminal: one bar per stage, fed by the status stream, and the
//! closing summary. Shared by `hint run`, `hint submit --wait` and `hint status --watch`
//! (`hint run` lives in the `hint-worker` executable, hence a library module).

use anyhow::Context;
use hint_common::proto::{self, jobs_client::JobsClient};
use hint_common::transport;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tonic::codegen::{Body, Bytes, StdError};
use tonic::Code;

use crate::service::is_ended;

/// A bar per stage: extract, train and shapley from the start; evaluate and ablate once
/// the job has their tasks.
pub struct StageBars {
    bars: std::sync::Mutex<Vec<(String, ProgressBar)>>,
    style: ProgressStyle,
    multi: MultiProgress,
}

impl StageBars {
    /// Bars for the three stages every job has.
    pub fn new() -> Self {
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .expect("valid template");
        let bars = StageBars {
            bars: Default::default(),
            style,
            multi: MultiProgress::new(),
        };
        for stage in ["extract", "train", "shapley"] {
            bars.bar(stage);
        }
        bars
    }

    fn bar(&self, stage: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, bar)) = bars.iter().find(|(name, _)| name == stage) {
            return bar.clone();
        }
        let bar = self
            .multi
            .add(ProgressBar::new(0).with_style(self.style.clone()));
        bar.set_prefix(stage.to_string());
        bar.set_message("waiting");
        bars.push((stage.to_string(), bar.clone()));
        bar
    }

    /// Shows a status.
    pub fn update(&self, status: &proto::JobStatus) {
        for stage in &status.stages {
            let unit = match stage.stage.as_str() {
                "extract" => "images",
                "train" => "concepts",
                "shapley" => "permutations",
                _ => "steps",
            };
            let always = matches!(unit, "images" | "concepts" | "permutations");
            if stage.total == 0 && !always {
                continue;
            }
            let bar = self.bar(&stage.stage);
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
        for (_, bar) in self.bars.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            bar.finish_and_clear();
        }
    }
}

impl Default for StageBars {
    fn default() -> Self {
        Self::new()
    }
}

pub use crate::status::phase_name;

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
            .map(|r| crate::scheduler::reason_label(r.as_str_name()))
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

/// The problems of a spec a coordinator refused (a Submit's INVALID_ARGUMENT details), as
/// `hint check` would list them for the same file; None for any other refusal.
pub fn spec_problems(status: &tonic::Status) -> Option<Vec<crate::spec::Problem>> {
    if status.code() != Code::InvalidArgument || status.details().is_empty() {
        return None;
    }
    let details: proto::SpecProblems = prost::Message::decode(status.details()).ok()?;
    let problems: Vec<_> = details
        .problems
        .into_iter()
        .map(|p| crate::spec::Problem {
            field: p.field,
            message: p.message,
        })
        .collect();
    (!problems.is_empty()).then_some(problems)
}

/// A refused or failed call as one line. The coordinator's own answers (a bad spec, an
/// unknown job) are its message; a refusal or a transport failure also says its code and
/// causes (a TLS failure is in the causes), and a size refusal names the flag that governs it.
pub fn refused(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::Internal => {
            anyhow::anyhow!("{}", status.message())
        }
        Code::OutOfRange if status.message().contains("too large") => anyhow::anyhow!(
            "the coordinator refused the request: {} (its --max-request-bytes)",
            transport::describe(&status)
        ),
        Code::Unauthenticated | Code::PermissionDenied => anyhow::anyhow!(
            "the coordinator refused the call: {}",
            transport::describe(&status)
        ),
        _ => anyhow::anyhow!("{}", transport::describe(&status)),
    }
}

/// Follows a job with progress bars until it ends; returns the final status. Any channel:
/// `hint run` follows its embedded coordinator over a plain one.
pub async fn follow<T>(client: &mut JobsClient<T>, job: &str) -> anyhow::Result<proto::JobStatus>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut stream = client
        .watch(proto::JobRef {
            job_id: job.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let bars = StageBars::new();
    let mut last = None;
    while let Some(status) = stream
        .message()
        .await
        .map_err(refused)
        .context("watching the job")?
    {
        bars.update(&status);
        let ended = is_ended(&status);
        last = Some(status);
        if ended {
            break;
        }
    }
    bars.finish();
    last.context("the coordinator closed the status stream before the job ended")
}

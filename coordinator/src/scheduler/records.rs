//! [`Record`]: the durable facts of the scheduler — what the journal stores and replays.
//!
//! Only facts that must survive a restart are records: a submitted job, its plan, the tasks
//! added to it, each attempt started (so attempt numbers, and the names attempts write
//! under, are never reused), each attempt that failed, each committed output, and the end of
//! a job. Leases are not records: after a restart every running task is pending again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use hint_common::job::{JobId, Stage, TaskId};
use hint_common::shapley::{PartialSums, PermutationBlock, Sampling};

/// One durable fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A coordinator process started on this state (numbers worker ids apart per start).
    Started {
        /// 1 for the first start.
        incarnation: u32,
    },
    /// A job was accepted.
    Submitted {
        /// The job.
        job: JobId,
        /// Its validated spec as JSON.
        spec_json: String,
        /// Its storage root.
        job_dir: String,
        /// Seconds since the Unix epoch.
        submitted_at: f64,
        /// For one layer's job of a job with several layers: that job (absent otherwise,
        /// and in journals written before jobs had layers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<JobId>,
    },
    /// The plan stage finished.
    Planned {
        /// The job.
        job: JobId,
        /// Images in the manifest.
        images: u64,
        /// Concepts in the hierarchy.
        concepts: u32,
        /// Where each tar shard's images begin ([`crate::plan::Plan::tar_shards`]; absent
        /// before tar shards were cut one per task, and for loose files).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tar_shards: Vec<u64>,
    },
    /// Tasks were added to a job (a stage opened, or another Shapley round).
    TasksAdded {
        /// The job.
        job: JobId,
        /// The new tasks.
        tasks: Vec<TaskSpec>,
    },
    /// An attempt was leased.
    AttemptStarted {
        /// The task.
        task: TaskId,
        /// Its attempt number (from 1).
        attempt: u32,
    },
    /// An attempt failed (or its lease expired).
    AttemptFailed {
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
        /// The classified failure.
        failure: Failure,
    },
    /// Exactly one completion of the task was accepted.
    Committed {
        /// The task.
        task: TaskId,
        /// The attempt whose output it is.
        attempt: u32,
        /// The output, with committed (final) locations.
        output: Output,
    },
    /// The job ended.
    Finished {
        /// The job.
        job: JobId,
        /// How.
        outcome: Outcome,
        /// Why it failed or was cancelled.
        error: Option<String>,
    },
    /// A job with several layers extracted them: one job per layer starts, with the
    /// committed extract tasks of this job as its own ([`Scheduler::fork`](super::Scheduler::fork)).
    /// Snapshots hold the layers' jobs' own records instead.
    Forked {
        /// The job with several layers.
        job: JobId,
    },
    /// A task as a snapshot holds it, in place of its attempt, failure and commit records
    /// (written only into snapshots; its Shapley sums are in [`Record::SumsRestored`]).
    TaskRestored {
        /// The task.
        task: TaskId,
        /// Attempts started (the last attempt's number).
        attempts: u32,
        /// Failures that count toward the limit.
        failures: u32,
        /// The last failure and its attempt.
        last_failure: Option<(u32, Failure)>,
        /// How it settled (None: it waits for a worker).
        settled: Option<Settled>,
    },
    /// A concept's committed Shapley sums, merged, as a snapshot holds them (in place of each
    /// block's [`Record::Committed`]).
    SumsRestored {
        /// The job.
        job: JobId,
        /// The concept.
        concept: u32,
        /// The merged sums.
        sums: MergedSums,
    },
}

impl Record {
    /// The committed output a record names (a commit, or a snapshot's settled task): what
    /// a restart moves into place again.
    pub fn committed_output(&self) -> Option<&Output> {
        match self {
            Record::Committed { output, .. }
            | Record::TaskRestored {
                settled: Some(Settled::Committed { output, .. }),
                ..
            } => Some(output),
            _ => None,
        }
    }
}

/// How a restored task settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum Settled {
    /// Committed: the attempt and its output (a Shapley output without its sums).
    Committed {
        /// The attempt committed.
        attempt: u32,
        /// Its output.
        output: Output,
    },
    /// Given up on.
    Quarantined,
}

/// A concept's merged exact sums (`PartialSums`) in the journal's text form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedSums {
    /// Neurons.
    pub neurons: u32,
    /// Samples summed.
    pub samples: u64,
    /// Antithetic pairs.
    pub antithetic: bool,
    /// The permutation blocks covered, sorted and disjoint, as (first, end).
    pub blocks: Vec<(u64, u64)>,
    /// Σ marginal, i128 little-endian fixed point, hex.
    pub sum: String,
    /// Σ marginal², same.
    pub sum_sq: String,
}

impl MergedSums {
    /// The text form of merged sums.
    pub fn of(sums: &PartialSums) -> Self {
        let encode = |values: &[i128]| {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            hex(&bytes)
        };
        let (sum, sum_sq) = sums.raw();
        MergedSums {
            neurons: sums.neurons() as u32,
            samples: sums.samples(),
            antithetic: sums.sampling() == Sampling::Antithetic,
            blocks: sums.blocks().iter().map(|b| (b.start, b.end)).collect(),
            sum: encode(sum),
            sum_sq: encode(sum_sq),
        }
    }

    /// The sums back, bit for bit; None when the text is not sums of its blocks.
    ///
    /// `PartialSums` is built only from one block's sums or by merging disjoint parts, so
    /// the first block carries the sums and every further block is a part of zero sums
    /// with that block's samples: merging them gives the same sums, sample count and blocks
    /// (and checks that the count fills the blocks and that they are disjoint).
    pub fn to_sums(&self) -> Option<PartialSums> {
        let sampling = if self.antithetic {
            Sampling::Antithetic
        } else {
            Sampling::Independent
        };
        let decode = |text: &str| -> Option<Vec<i128>> {
            let bytes = unhex(text)?;
            (bytes.len() == self.neurons as usize * 16).then_some(())?;
            Some(
                bytes
                    .chunks_exact(16)
                    .map(|c| i128::from_le_bytes(c.try_into().expect("16 bytes")))
                    .collect(),
            )
        };
        let (sum, sum_sq) = (decode(&self.sum)?, decode(&self.sum_sq)?);
        let neurons = sum.len();
        let mut blocks = self
            .blocks
            .iter()
            .map(|&(a, b)| PermutationBlock::new(a, b));
        let first = blocks.next()?;
        let mut parts = Vec::with_capacity(self.blocks.len());
        let mut rest = self.samples;
        for block in blocks {
            let samples = block.samples(sampling).ok()?;
            let samples = samples.end - samples.start;
            rest = rest.checked_sub(samples)?;
            parts.push(
                PartialSums::from_raw(vec![0; neurons], vec![0; neurons], samples, sampling, block)
                    .ok()?,
            );
        }
        parts.push(PartialSums::from_raw(sum, sum_sq, rest, sampling, first).ok()?);
        PartialSums::merge(parts).ok()
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Results written.
    Succeeded,
    /// Stopped with an error.
    Failed,
    /// Stopped by a client.
    Cancelled,
}

impl Outcome {
    /// Its name, as the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What a task does (the stage-specific part of a proto `Task`, without attempt-specific
/// output locations, which follow from the task id and attempt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskSpec {
    /// Images `first..end` of the manifest.
    Extract {
        /// Task index (= shard).
        index: u32,
        /// First manifest position.
        first: u64,
        /// One past the last.
        end: u64,
    },
    /// A part of the job's sample drawn from committed region files, or (with `parts`) the
    /// merge of the committed parts.
    Sample {
        /// Task index (parts first, then the merge).
        index: u32,
        /// Committed region files (a part).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        /// Committed part directories (the merge).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        parts: Vec<String>,
    },
    /// Classifiers of these concepts.
    Train {
        /// Task index (= part).
        index: u32,
        /// Concept ids.
        concepts: Vec<u32>,
    },
    /// Permutations `first..end` of one concept.
    Shapley {
        /// Task index (in planning order).
        index: u32,
        /// The concept.
        concept: u32,
        /// First permutation.
        first: u64,
        /// One past the last.
        end: u64,
        /// The committed classifier directory holding the concept.
        classifiers: String,
    },
    /// WSOL of Φ (`[evaluate]`), after a first report wrote Φ.
    Evaluate {
        /// Task index (always 0: one task).
        index: u32,
    },
    /// Causal ablation of Φ's selections (`[ablate]`), after a first report wrote Φ.
    Ablate {
        /// Task index (always 0: one task).
        index: u32,
    },
}

impl TaskSpec {
    /// The task's index within its stage.
    pub fn index(&self) -> u32 {
        match self {
            TaskSpec::Extract { index, .. }
            | TaskSpec::Sample { index, .. }
            | TaskSpec::Train { index, .. }
            | TaskSpec::Shapley { index, .. }
            | TaskSpec::Evaluate { index }
            | TaskSpec::Ablate { index } => *index,
        }
    }

    /// The stage the task belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            TaskSpec::Extract { .. } => Stage::Extract,
            TaskSpec::Sample { .. } => Stage::Sample,
            TaskSpec::Train { .. } => Stage::Train,
            TaskSpec::Shapley { .. } => Stage::Shapley,
            TaskSpec::Evaluate { .. } => Stage::Evaluate,
            TaskSpec::Ablate { .. } => Stage::Ablate,
        }
    }

    /// Work units of the task (images, region files or parts, concepts, permutations; 1 for an evaluate or
    /// ablate task, whose worker reports its own steps while it runs).
    pub fn units(&self) -> u64 {
        match self {
            TaskSpec::Extract { first, end, .. } | TaskSpec::Shapley { first, end, .. } => {
                end - first
            }
            TaskSpec::Sample { files, parts, .. } => (files.len() + parts.len()) as u64,
            TaskSpec::Train { concepts, .. } => concepts.len() as u64,
            TaskSpec::Evaluate { .. } | TaskSpec::Ablate { .. } => 1,
        }
    }
}

/// A classified failure of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// `hint_common::proto::FailureReason` as its proto name (`BAD_INPUT`, …).
    pub reason: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Whether it counts toward the attempt limit.
    pub counted: bool,
    /// The error.
    pub message: String,
}

/// A committed output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    /// Region files, moved from the attempt's directory into the job's `regions/`.
    Extract {
        /// (attempt path, committed path, rows, foreground rows, background rows).
        files: Vec<CommittedFile>,
        /// Images skipped: (path, reason).
        skipped: Vec<(String, String)>,
        /// Images run through the model.
        images: u64,
    },
    /// A sample directory, renamed from the attempt's directory.
    Sample {
        /// The attempt's directory.
        from: String,
        /// The committed directory.
        dir: String,
        /// Rows the sample holds.
        rows: u64,
    },
    /// A classifier directory, renamed from the attempt's directory.
    Train {
        /// The attempt's directory.
        from: String,
        /// The committed directory.
        dir: String,
        /// Concepts with a classifier and a usable evaluation split.
        trained: Vec<u32>,
    },
    /// Exact partial sums.
    Shapley {
        /// Neurons.
        neurons: u32,
        /// Samples summed.
        samples: u64,
        /// Antithetic pairs.
        antithetic: bool,
        /// Σ marginal, i128 little-endian fixed point, hex.
        sum: String,
        /// Σ marginal², same.
        sum_sq: String,
    },
    /// Files of an evaluate or ablate task, moved from the attempt's directory into the
    /// job's `results/`.
    Results {
        /// Each file's attempt path and committed path.
        files: Vec<MovedFile>,
    },
}

impl Output {
    /// The committed places this output alone owns: an extract task's region files, a
    /// sample task's or a train task's directory. A commit that is not taken has them removed, and
    /// so does the restart sweep when no commit names them. Results are not among them: the
    /// report rewrites what it owns there.
    pub fn owned_paths(&self) -> Vec<PathBuf> {
        match self {
            Output::Extract { files, .. } => files.iter().map(|f| PathBuf::from(&f.path)).collect(),
            Output::Sample { dir, .. } | Output::Train { dir, .. } => vec![PathBuf::from(dir)],
            Output::Shapley { .. } | Output::Results { .. } => Vec::new(),
        }
    }

    /// An extract output as one layer's job of a job with several layers holds it: the
    /// files committed under `regions` (that layer's), already in place (moved from where
    /// they are).
    pub fn of_layer(&self, regions: &std::path::Path) -> Output {
        match self {
            Output::Extract {
                files,
                skipped,
                images,
            } => Output::Extract {
                files: files
                    .iter()
                    .filter(|f| std::path::Path::new(&f.path).parent() == Some(regions))
                    .map(|f| CommittedFile {
                        from: f.path.clone(),
                        ..f.clone()
                    })
                    .collect(),
                skipped: skipped.clone(),
                images: *images,
            },
            other => other.clone(),
        }
    }
}

/// One file of a committed evaluate or ablate task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedFile {
    /// Where the attempt wrote it.
    pub from: String,
    /// Where it lives once committed.
    pub path: String,
}

/// One region file of a committed extract task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedFile {
    /// Where the attempt wrote it.
    pub from: String,
    /// Where it lives once committed.
    pub path: String,
    /// Rows.
    pub rows: u64,
    /// Foreground rows.
    pub foreground: u64,
    /// Background rows.
    pub background: u64,
}

/// Lower-case hex of bytes (the journal is text).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Inverse of [`hex`].
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

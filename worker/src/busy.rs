//! Where an extraction's time goes: each pipeline stage's busy time against the run's wall
//! time, so a user sees which stage bounds the run (`hint extract` prints it, `summary.json`
//! keeps it, an extract task logs it).
//!
//! The stages run on their own threads and overlap: decode (a pool of `decode_threads`,
//! ahead of the model), model (upload, forward and backward, ζ, choosing the kept
//! positions, launching their gather — one thread), gather (the kept activations to the
//! host — one thread), write (the rows into Arrow arrays, row groups handed to their
//! encoders and appended, the file — one thread; not its waits for encoders) and encode
//! (Parquet encoding and compression of row groups, up to
//! [`ExtractConfig::encode_threads`](crate::extract::ExtractConfig::encode_threads) threads
//! at once). A stage's
//! utilisation is its busy time over wall time × its threads: the stage near 100% is the
//! one the others wait for.

use std::time::Duration;

use serde::Serialize;

/// One stage's share of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageBusy {
    /// `decode`, `model`, `gather` or `write`.
    pub stage: &'static str,
    /// Threads the stage runs on.
    pub threads: usize,
    /// Seconds its threads were working, summed over them.
    pub busy_seconds: f64,
    /// `busy_seconds / (wall × threads)`, in [0, 1] up to timer noise.
    pub utilisation: f64,
}

/// Busy time per stage, added to by the threads that own each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineBusy {
    /// Decoding, summed over the pool's threads.
    pub decode: Duration,
    /// The model thread's work.
    pub model: Duration,
    /// Gathering activations to the host.
    pub gather: Duration,
    /// The writer thread: Arrow arrays, row groups appended, the file (not its waits for
    /// encoders).
    pub write: Duration,
    /// Encoding row groups, summed over their threads.
    pub encode: Duration,
}

impl PipelineBusy {
    /// The stages' shares of `wall` seconds, in pipeline order, for a decode pool of
    /// `decode_threads` and up to `encode_threads` row groups encoding at once.
    pub fn stages(
        &self,
        wall: f64,
        decode_threads: usize,
        encode_threads: usize,
    ) -> Vec<StageBusy> {
        [
            ("decode", decode_threads.max(1), self.decode),
            ("model", 1, self.model),
            ("gather", 1, self.gather),
            ("write", 1, self.write),
            ("encode", encode_threads.max(1), self.encode),
        ]
        .into_iter()
        .map(|(stage, threads, busy)| {
            let busy_seconds = busy.as_secs_f64();
            StageBusy {
                stage,
                threads,
                busy_seconds,
                utilisation: if wall > 0.0 {
                    busy_seconds / (wall * threads as f64)
                } else {
                    0.0
                },
            }
        })
        .collect()
    }
}

/// The stage with the highest utilisation: the one that bounds the run.
pub fn bottleneck(stages: &[StageBusy]) -> Option<&StageBusy> {
    stages
        .iter()
        .max_by(|a, b| a.utilisation.total_cmp(&b.utilisation))
}

/// One line for people: `decode 92% of 2 threads, model 41%, gather 3%, write 7%; bound by
/// decode`.
pub fn describe(stages: &[StageBusy]) -> String {
    let parts: Vec<String> = stages
        .iter()
        .map(|s| {
            let share = 100.0 * s.utilisation;
            if s.threads > 1 {
                format!("{} {share:.0}% of {} threads", s.stage, s.threads)
            } else {
                format!("{} {share:.0}%", s.stage)
            }
        })
        .collect();
    match bottleneck(stages) {
        Some(slowest) => format!("{}; bound by {}", parts.join(", "), slowest.stage),
        None => parts.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_counts_every_thread_of_a_stage() {
        let busy = PipelineBusy {
            decode: Duration::from_secs(18),
            model: Duration::from_secs(4),
            gather: Duration::from_millis(500),
            write: Duration::from_secs(1),
            encode: Duration::from_secs(8),
        };
        let stages = busy.stages(10.0, 2, 4);
        assert_eq!(stages[0].utilisation, 0.9);
        assert_eq!(stages[1].utilisation, 0.4);
        assert_eq!(stages[4].utilisation, 0.2);
        assert_eq!(bottleneck(&stages).unwrap().stage, "decode");
        assert_eq!(
            describe(&stages),
            "decode 90% of 2 threads, model 40%, gather 5%, write 10%, encode 20% of 4 threads; \
             bound by decode"
        );
        assert!(busy.stages(0.0, 2, 4).iter().all(|s| s.utilisation == 0.0));
    }
}

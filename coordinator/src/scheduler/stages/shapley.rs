//! Shapley: classifiers → exact partial sums, one task per concept and permutation block,
//! in rounds while a stopping rule asks for more.

use std::path::Path;

use hint_common::job::{wire, Stage};
use hint_common::proto;
use hint_common::shapley::PermutationBlock;

use super::{other_kind, StageRules, Wire};
use crate::scheduler::job::{decode_sums, Job, Task};
use crate::scheduler::records::{hex, Output, TaskSpec};

/// The Shapley stage.
pub struct Shapley;

impl StageRules for Shapley {
    fn stage(&self) -> Stage {
        Stage::Shapley
    }

    /// The blocks of [`Rounds`](hint_common::shapley::Rounds), one task each. Without a
    /// stopping rule every block is planned at once; with one, a concept gets its next
    /// block only when its previous ones are settled and the rule is not yet satisfied, so
    /// the decisions (and Φ) depend only on the committed sums, never on timing. Task index
    /// = concept × blocks per concept + block number. The first round covers every
    /// concept; later ones only `only`, the concept that changed.
    fn next_tasks(&self, job: &Job, only: Option<u32>) -> Result<Vec<TaskSpec>, String> {
        let only = if job.has_tasks(Stage::Shapley) {
            only
        } else {
            None
        };
        let plan = job.spec.shapley.rounds();
        let mut out = Vec::new();
        let trained = job.trained();
        let candidates = trained
            .iter()
            .filter(|(concept, _)| only.is_none_or(|c| c == *concept));
        for (concept, dir) in candidates {
            let rounds = job.rounds(*concept);
            if rounds.outstanding > 0 || rounds.stopped {
                continue;
            }
            let start = rounds.planned_end;
            // With a rule, one block at a time, decided on the sums committed so far.
            let blocks: Vec<PermutationBlock> = match plan.rule {
                None => plan.remaining(start).collect(),
                Some(_) => plan
                    .next(start, job.sums.get(concept))
                    .into_iter()
                    .collect(),
            };
            for block in blocks {
                out.push(TaskSpec::Shapley {
                    index: (u64::from(*concept) * plan.blocks() + block.start / plan.round) as u32,
                    concept: *concept,
                    first: block.start,
                    end: block.end,
                    classifiers: dir.clone(),
                });
            }
        }
        Ok(out)
    }

    /// A quarantined block leaves its concept's Φ on the blocks that were committed (the
    /// results name it); the job goes on.
    fn check_settled(&self, _job: &Job) -> Result<(), String> {
        Ok(())
    }

    fn task_kind(&self, _job: &Job, task: &Task, _out_dir: String) -> proto::task::Kind {
        let TaskSpec::Shapley {
            concept,
            first,
            end,
            classifiers,
            ..
        } = &task.spec
        else {
            unreachable!("a shapley task has a shapley spec")
        };
        proto::task::Kind::Shapley(proto::ShapleyTask {
            concept: *concept,
            first_permutation: *first,
            end_permutation: *end,
            classifiers_dir: classifiers.clone(),
        })
    }

    /// Exact sums of exactly the task's block, with the spec's sampling scheme and the
    /// neuron count of the concept's earlier blocks; they are kept in the journal (no files).
    fn output(
        &self,
        job: &Job,
        task: &Task,
        _attempt_dir: &Path,
        wire: Wire,
    ) -> Result<Output, String> {
        let (
            TaskSpec::Shapley {
                concept,
                first,
                end,
                ..
            },
            Wire::Shapley(sums),
        ) = (&task.spec, wire)
        else {
            return Err(other_kind());
        };
        let block = PermutationBlock::new(*first, *end);
        if (sums.first_permutation, sums.end_permutation) != (*first, *end) {
            return Err(format!(
                "sums of permutations {}..{}, the task is {first}..{end}",
                sums.first_permutation, sums.end_permutation
            ));
        }
        let part = wire::sums_from_proto(&sums).map_err(|e| e.to_string())?;
        if sums.antithetic != job.spec.shapley.antithetic {
            return Err("sampling scheme differs from the spec".into());
        }
        if let Some(acc) = job.sums.get(concept) {
            if acc.neurons() != part.neurons() {
                return Err(format!(
                    "{} neurons, earlier blocks had {}",
                    part.neurons(),
                    acc.neurons()
                ));
            }
        }
        let output = Output::Shapley {
            neurons: sums.neurons,
            samples: sums.samples,
            antithetic: sums.antithetic,
            sum: hex(&sums.sum),
            sum_sq: hex(&sums.sum_sq),
        };
        debug_assert!(decode_sums(&output, block).is_some());
        Ok(output)
    }
}

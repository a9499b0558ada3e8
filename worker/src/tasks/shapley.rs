//! The Shapley task: one permutation block of one concept → exact partial sums.
//!
//! Rebuilding a classifier directory's evaluation samples streams every region file of the
//! job, and a concept's permutations are cut into many blocks: [`ShapleyCache`] keeps the
//! samples of the last few directories and the engines of the last few concepts, each built
//! once even when several slots ask for it at the same moment. An engine may hold libtorch
//! tensors, which are not `Sync`: slots running blocks of one concept take turns on its
//! engine chunk by chunk (each chunk is parallel inside: rayon or libtorch).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hint_common::hierarchy::ConceptId;
use hint_common::job::spec::JobSpec;
use hint_common::job::wire::sums_to_proto;
use hint_common::proto::{ShapleySums, ShapleyTask};
use hint_common::regions::sample::ConceptSamples;
use hint_common::shapley::{PartialSums, PermutationBlock};
use hint_common::storage;
use tch::Device;

use super::failure::TaskError;
use super::{check_cancel, require, Job, TaskRunner};
use crate::classify::ClassifierDir;
use crate::shapley::{ConceptInput, Mode, ShapleyConfig, ShapleyEngine, ShapleyRunError};

/// Classifier directories whose samples are kept (each holds every trained concept's
/// evaluation regions).
const SAMPLE_DIRS: usize = 3;
/// Concept engines kept (each holds one concept's evaluation regions and game).
const ENGINES: usize = 16;
/// Permutations between two looks at the cancel flag in fixed mode: a multiple of the
/// batched sweep's group (64) and of the engine's parallel chunk, so a task's chunks are
/// whole groups wherever the task starts.
const FIXED_CHUNK: u64 = 512;

/// The Shapley settings of `spec` ([`ShapleyConfig::from_spec`], as `hint shapley` builds
/// them from the same flags); a combination that cannot run is classified `BAD_INPUT` like
/// every `ShapleyRunError::Config`.
pub(super) fn config(spec: &JobSpec, device: Device) -> Result<ShapleyConfig, TaskError> {
    Ok(ShapleyConfig::from_spec(&spec.shapley, spec.seed, device)?)
}

/// Runs the Shapley task.
pub(super) fn run(
    runner: &TaskRunner,
    job: &Job,
    task: &ShapleyTask,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<ShapleySums, TaskError> {
    let started = Instant::now();
    let config = config(job.spec, runner.device)?;
    let (first, end) = (task.first_permutation, task.end_permutation);
    if first >= end {
        return Err(TaskError::BadInput(format!(
            "permutation block {first}..{end} of concept {} is empty",
            task.concept
        )));
    }
    PermutationBlock::new(first, end)
        .samples(config.sampling)
        .map_err(ShapleyRunError::from)?;
    if task.classifiers_dir.is_empty() {
        return Err(TaskError::BadInput(
            "the task names no classifier directory".into(),
        ));
    }
    let dir = PathBuf::from(&task.classifiers_dir);
    require(&dir, "the classifier directory")?;
    progress(0, end - first);

    let concept = ConceptId(task.concept);
    let engine = runner.shapley.engine(&dir, concept, &config)?;
    let per = config.sampling.permutations_per_sample();
    let chunk = match config.mode {
        Mode::Fixed => FIXED_CHUNK,
        // A retrain permutation is D + 1 fits: look at the flag after every sample.
        Mode::Retrain => per,
    };
    // Chunk boundaries at multiples of `chunk`, whatever the block: the parts are whole
    // sweep groups, and the exact sums merge bit-identically for any split.
    let mut parts = Vec::new();
    let mut start = first;
    let fits_before = lock(&engine).retrain_fits().unwrap_or_default();
    while start < end {
        check_cancel(cancel)?;
        let stop = ((start / chunk + 1) * chunk).min(end);
        let part = lock(&engine).run_block(PermutationBlock::new(start, stop))?;
        parts.push(part);
        progress(stop - first, end - first);
        start = stop;
    }
    if let Some(warning) = lock(&engine).unconverged_warning(fits_before) {
        tracing::warn!("{warning}");
    }
    let sums = PartialSums::merge(parts).map_err(ShapleyRunError::from)?;
    Ok(sums_to_proto(&sums, started.elapsed().as_secs_f64()))
}

/// A classifier directory with the samples its classifiers were trained and evaluated on.
#[derive(Debug)]
struct PreparedDir {
    dir: ClassifierDir,
    samples: ConceptSamples,
    /// The directory's files, pinned in the cache while the runner keeps it (its
    /// classifiers are read when each concept's engine is built).
    _files: storage::Cached,
}

type EngineKey = (PathBuf, ConceptId, ShapleyConfig);

/// The runner's Shapley caches: samples by classifier directory, engines by (directory,
/// concept, settings).
#[derive(Debug)]
pub(super) struct ShapleyCache {
    dirs: Slots<PathBuf, PreparedDir>,
    engines: Slots<EngineKey, Mutex<ShapleyEngine>>,
}

impl Default for ShapleyCache {
    fn default() -> Self {
        ShapleyCache {
            dirs: Slots::new(SAMPLE_DIRS),
            engines: Slots::new(ENGINES),
        }
    }
}

impl ShapleyCache {
    /// The engine of `concept` in the classifier directory `dir`, built on first use.
    fn engine(
        &self,
        dir: &Path,
        concept: ConceptId,
        config: &ShapleyConfig,
    ) -> Result<Arc<Mutex<ShapleyEngine>>, TaskError> {
        let key = (dir.to_path_buf(), concept, *config);
        self.engines.get_or_build(&key, || {
            let prepared = self
                .dirs
                .get_or_build(&dir.to_path_buf(), || prepare(dir))?;
            build_engine(&prepared, concept, config).map(Mutex::new)
        })
    }
}

/// Reads a classifier directory and rebuilds the samples of all its trained concepts (the
/// same samples `hint shapley` rebuilds: a concept's sample does not depend on the others).
/// A directory in object storage is fetched into the worker's cache first; its samples are
/// rebuilt from the region files it names, wherever they are.
fn prepare(dir: &Path) -> Result<PreparedDir, TaskError> {
    let files = storage::fetch_dir(dir)?;
    let classifiers = ClassifierDir::open(&files)?;
    let trained = classifiers.trained();
    let samples = classifiers.rebuild_samples(None, Some(&trained), &mut |_| {})?;
    tracing::debug!(
        dir = %dir.display(),
        concepts = trained.len(),
        "rebuilt the classifiers' samples"
    );
    Ok(PreparedDir {
        dir: classifiers,
        samples,
        _files: files,
    })
}

/// One concept's game, from its classifier and its evaluation (and, for retrain, training)
/// regions — as `hint shapley` builds it.
fn build_engine(
    prepared: &PreparedDir,
    concept: ConceptId,
    config: &ShapleyConfig,
) -> Result<ShapleyEngine, TaskError> {
    let dir = &prepared.dir;
    let missing = |what: &str| {
        TaskError::BadInput(format!(
            "concept {} {what} in {}",
            concept.0,
            dir.dir.display()
        ))
    };
    if !dir.trained().contains(&concept) {
        return Err(missing("has no classifier"));
    }
    let classifier = dir.classifier(concept)?;
    let input = ConceptInput::from_samples(concept, &prepared.samples, &classifier, config.mode)
        .map_err(|no_game| missing(&no_game.to_string()))?;
    Ok(ShapleyEngine::new(&input, config)?)
}

/// A lock that survives a panic of an earlier holder (a panicking build leaves its slot
/// empty, and the next caller builds again).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The value slot of one key: filled once, by the first caller; later callers wait for it.
type Slot<V> = Arc<Mutex<Option<Arc<V>>>>;

/// A small map of values built on first use, bounded by evicting the least recently used.
/// Two threads asking for the same key build it once: the second waits on the key's slot
/// (not on the map, so other keys proceed). A failed build leaves the slot empty.
#[derive(Debug)]
struct Slots<K, V> {
    capacity: usize,
    entries: Mutex<VecDeque<(K, Slot<V>)>>,
}

impl<K: PartialEq + Clone, V> Slots<K, V> {
    fn new(capacity: usize) -> Self {
        Slots {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn get_or_build<E>(&self, key: &K, build: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        let slot = {
            let mut entries = lock(&self.entries);
            let slot = match entries.iter().position(|(k, _)| k == key) {
                Some(i) => entries.remove(i).expect("found above").1,
                None => Arc::new(Mutex::new(None)),
            };
            entries.push_back((key.clone(), slot.clone()));
            while entries.len() > self.capacity {
                entries.pop_front();
            }
            slot
        };
        let mut value = lock(&slot);
        if let Some(value) = value.as_ref() {
            return Ok(value.clone());
        }
        let built = Arc::new(build()?);
        *value = Some(built.clone());
        Ok(built)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn slots_build_once_per_key_and_evict_the_least_recently_used() {
        let slots: Slots<u32, u32> = Slots::new(2);
        let builds = AtomicUsize::new(0);
        let get = |k: u32| {
            *slots
                .get_or_build(&k, || {
                    builds.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(k * 10)
                })
                .unwrap()
        };
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| assert_eq!(get(1), 10));
            }
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(get(2), 20);
        assert_eq!(get(1), 10); // 1 is now the most recent
        assert_eq!(get(3), 30); // evicts 2
        assert_eq!(slots.len(), 2);
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        assert_eq!(get(1), 10);
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        assert_eq!(get(2), 20);
        assert_eq!(builds.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_failed_build_is_not_cached() {
        let slots: Slots<u32, u32> = Slots::new(2);
        assert_eq!(slots.get_or_build(&1, || Err("disk")), Err("disk"));
        assert_eq!(*slots.get_or_build(&1, || Ok::<_, &str>(7)).unwrap(), 7);
    }
}

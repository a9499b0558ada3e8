//! The three task kinds on a small synthetic job, against the single-machine engines.
//!
//! Each test builds its own job directory: a synthetic world (8 classes, 32×32), a randomly
//! initialised tiny CNN, `manifest.csv` and `concepts.json` as the plan stage writes them.
//! At layer `features.2` (after the first max-pool) an image has 16×16 positions of D = 16.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hint_common::hierarchy::Hierarchy;
use hint_common::job::spec::{
    ClassifySpec, DataSpec, ExtractSpec, HierarchySpec, JobSpec, ModelSpec, SchedulerSpec,
    ShapleySpec, StorageSpec,
};
use hint_common::job::wire::sums_from_proto;
use hint_common::proto::{
    self, complete_request::Output, task::Kind, ExtractSummary, FailureReason, ShapleyTask,
    TrainOutput,
};
use hint_common::regions::sample::region_files;
use hint_common::regions::{read_regions, RegionRows};
use hint_common::shapley::{PartialSums, PermutationBlock, Rounds};
use hint_common::synth::{self, SynthConfig};
use tch::Device;

use super::{Lease, TaskFailure, TaskRunner, CONCEPTS_FILE, LABELS_FILE, MANIFEST_FILE};
use crate::classify::ClassifierDir;
use crate::models::{Architecture, Backbone};
use crate::saliency::Method;
use crate::shapley::{
    estimate, ConceptInput, Mode, RetrainConfig, ShapleyConfig, ShapleyEngine, SweepBackend,
};
use hint_common::images::rows::{self, ManifestOffsets};

/// Images per class of the synthetic world (8 classes).
const PER_CLASS: usize = 4;
const IMAGES: u64 = 8 * PER_CLASS as u64;

/// A job directory with everything the plan stage leaves there.
struct Job {
    _root: tempfile::TempDir,
    dir: PathBuf,
    spec: JobSpec,
}

fn job() -> Job {
    let root = tempfile::tempdir().unwrap();
    let world = root.path().join("world");
    let mut synth_config = SynthConfig::new(&world);
    synth_config.per_class = PER_CLASS;
    synth_config.size = 32;
    synth::generate(&synth_config, &|| {}).unwrap();
    let dataset = crate::images::scan(&world.join("images")).unwrap();

    let dir = root.path().join("job-0001");
    std::fs::create_dir_all(&dir).unwrap();
    // The manifest, its row offsets (in blocks of 5 rows, so shards start mid-block) and
    // the label map, as the plan writes them: shards read only their rows.
    let mut manifest = String::from("path,label\n");
    let mut offsets = ManifestOffsets {
        stride: 5,
        ..ManifestOffsets::new()
    };
    for image in &dataset.images {
        offsets.row(manifest.len() as u64);
        manifest.push_str(&format!("{},{}\n", image.path.display(), image.label));
    }
    let offsets = offsets.finish(manifest.len() as u64);
    std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
    std::fs::write(
        rows::offsets_path(&dir.join(MANIFEST_FILE)),
        serde_json::to_vec(&offsets).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(LABELS_FILE), dataset.classes.join("\n") + "\n").unwrap();
    Hierarchy::from_custom_file(&world.join("hierarchy.yaml"), &dataset.classes)
        .unwrap()
        .write_json(&dir.join(CONCEPTS_FILE))
        .unwrap();

    tch::manual_seed(3);
    let weights = root.path().join("tiny_cnn.safetensors");
    Backbone::new(
        Architecture::TinyCnn,
        dataset.classes.len() as i64,
        Device::Cpu,
    )
    .save_safetensors(&weights)
    .unwrap();

    let spec = JobSpec {
        name: "tasks".into(),
        seed: 7,
        model: ModelSpec {
            architecture: "tiny_cnn".into(),
            weights,
            layer: "features.2".into(),
            layers: Vec::new(),
            resize: Some(32),
            crop: Some(32),
        },
        data: DataSpec {
            images: world.join("images"),
            labels: None,
            hierarchy: HierarchySpec::File {
                path: world.join("hierarchy.yaml"),
            },
        },
        extract: ExtractSpec {
            method: hint_common::settings::MethodName::Gradient,
            samples: 4,
            noise: 0.15,
            steps: 4,
            baseline: hint_common::settings::Baseline::Zero,
            aggregation: hint_common::settings::Aggregation::Norm,
            threshold: 0.5,
            background_ratio: 0.2,
            activation_type: hint_common::regions::ActivationType::F32,
            compression: hint_common::regions::Compression::Zstd,
            batch_size: 4,
            images_per_task: Some(16),
        },
        classify: ClassifySpec {
            max_per_class: 300,
            holdout: 0.25,
            negatives: hint_common::regions::sample::Negatives::Mixed,
            l2: 1e-3,
            iterations: 50,
            tolerance: 1e-10,
            concepts_per_task: 8,
        },
        shapley: ShapleySpec {
            mode: hint_common::settings::Mode::Fixed,
            quality: hint_common::shapley::Quality::LogLikelihood,
            replacement: hint_common::shapley::Replacement::Marginal,
            antithetic: true,
            permutations: 12,
            permutations_per_task: 4,
            until_stderr: None,
            until_top_k: None,
            confidence: 0.95,
            truncation: None,
            retrain_iterations: 5,
            retrain_l2: 1e-3,
            retrain_fit_regions: 4096,
            top: 5,
            sweep_on_device: false,
        },
        storage: StorageSpec {
            root: root.path().to_path_buf(),
        },
        scheduler: SchedulerSpec { max_attempts: 3 },
        evaluate: None,
        ablate: None,
    };
    Job {
        _root: root,
        dir,
        spec,
    }
}

fn task(job: &Job, spec: &JobSpec, kind: Kind) -> Lease {
    let task = proto::Task {
        task_id: "job-0001/task-00000".into(),
        job_id: "job-0001".into(),
        attempt: 1,
        job_dir: job.dir.display().to_string(),
        kind: Some(kind),
    };
    Lease {
        task,
        spec: Arc::new(spec.clone()),
    }
}

fn extract_task(job: &Job, shard: u32, images: std::ops::Range<u64>) -> Kind {
    Kind::Extract(proto::ExtractTask {
        shard,
        first_image: images.start,
        end_image: images.end,
        out_dir: attempt(job, &format!("extract-{shard:05}-a1")),
    })
}

fn attempt(job: &Job, name: &str) -> String {
    job.dir.join("attempts").join(name).display().to_string()
}

fn runner() -> TaskRunner {
    TaskRunner::new(Device::Cpu, 2)
}

/// Runs a task, recording its progress reports.
fn run(runner: &TaskRunner, task: &Lease) -> (Result<Output, TaskFailure>, Vec<(u64, u64)>) {
    let reports = Mutex::new(Vec::new());
    let result = runner.run(
        task,
        &|done, total| reports.lock().unwrap().push((done, total)),
        &AtomicBool::new(false),
    );
    (result, reports.into_inner().unwrap())
}

fn extract(
    runner: &TaskRunner,
    job: &Job,
    shard: u32,
    images: std::ops::Range<u64>,
) -> ExtractSummary {
    let (result, progress) = run(
        runner,
        &task(job, &job.spec, extract_task(job, shard, images.clone())),
    );
    let n = images.end - images.start;
    assert_eq!(progress.last(), Some(&(n, n)));
    match result.unwrap() {
        Output::Extract(summary) => summary,
        other => panic!("not an extract output: {other:?}"),
    }
}

/// The rows of `rows` whose image id is in `images`, in order.
fn rows_of(rows: &RegionRows, d: usize, images: &std::ops::Range<u64>) -> RegionRows {
    let mut out = RegionRows::default();
    for r in (0..rows.len()).filter(|&r| images.contains(&rows.image_id[r])) {
        out.image_id.push(rows.image_id[r]);
        out.label.push(rows.label[r]);
        out.y.push(rows.y[r]);
        out.x.push(rows.x[r]);
        out.saliency.push(rows.saliency[r]);
        out.foreground.push(rows.foreground[r]);
        out.activation
            .extend_from_slice(&rows.activation[r * d..(r + 1) * d]);
    }
    out
}

#[test]
fn an_extract_task_gives_the_rows_a_whole_run_gives_its_images() {
    let job = job();
    let runner = runner();
    let shard = 8..20;
    let summary = extract(&runner, &job, 1, shard.clone());

    // The whole manifest through the engine as `hint extract` runs it (same settings).
    let kind = extract_task(&job, 1, shard.clone());
    let Kind::Extract(extract_task) = &kind else {
        unreachable!()
    };
    let lease = task(&job, &job.spec, kind.clone());
    let (mut whole, _) =
        super::extract::config(&runner, &super::Job::of(&lease).unwrap(), extract_task).unwrap();
    whole.image_range = None;
    whole.file_prefix = crate::extract::DEFAULT_FILE_PREFIX.into();
    whole.images_per_file = 10_000;
    whole.out = job.dir.join("whole");
    let report = crate::extract::run(&whole, &mut |_| {}).unwrap().remove(0);
    assert_eq!(report.images_processed as u64, IMAGES);
    let (meta, all) = read_regions(&report.files[0].path).unwrap();

    assert_eq!(summary.images_processed, shard.end - shard.start);
    assert!(summary.skipped.is_empty());
    assert_eq!(summary.files.len(), 1);
    let file = &summary.files[0];
    let path = PathBuf::from(&file.url);
    assert!(path.is_absolute(), "{}", file.url);
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "regions-s00001-00000.parquet"
    );
    // The committed-region lister picks the shard's file up.
    assert_eq!(
        region_files(path.parent().unwrap()).unwrap(),
        vec![path.clone()]
    );

    let (shard_meta, rows) = read_regions(&path).unwrap();
    assert_eq!(shard_meta.labels, meta.labels);
    assert_eq!(
        (file.rows, file.foreground_rows + file.background_rows),
        (rows.len() as u64, rows.len() as u64)
    );
    let mut ids: Vec<u64> = rows.image_id.clone();
    ids.dedup();
    assert_eq!(ids, shard.clone().collect::<Vec<_>>(), "global image ids");
    assert_eq!(rows, rows_of(&all, meta.channels, &shard));
}

/// Moves a finished attempt's region files into `regions/`, as the coordinator commits them.
fn commit_regions(job: &Job, summary: &ExtractSummary) -> PathBuf {
    let regions = job.dir.join("regions");
    std::fs::create_dir_all(&regions).unwrap();
    for file in &summary.files {
        let from = Path::new(&file.url);
        std::fs::rename(from, regions.join(from.file_name().unwrap())).unwrap();
    }
    regions
}

#[test]
fn train_and_shapley_tasks_match_the_single_machine_stages() {
    let job = job();
    let runner = runner();
    let mut regions = PathBuf::new();
    for (shard, images) in [(0, 0..16), (1, 16..IMAGES)] {
        regions = commit_regions(&job, &extract(&runner, &job, shard, images));
    }

    // Train: every concept in one part.
    let hierarchy = Hierarchy::read_json(&job.dir.join(CONCEPTS_FILE)).unwrap();
    let concepts: Vec<u32> = (0..hierarchy.concepts().len() as u32).collect();
    let out_dir = attempt(&job, "train-00000-a1");
    let train = proto::TrainTask {
        part: 0,
        concepts: concepts.clone(),
        regions_dir: regions.display().to_string(),
        out_dir: out_dir.clone(),
        samples_dir: String::new(),
    };
    let (result, progress) = run(&runner, &task(&job, &job.spec, Kind::Train(train)));
    let n = concepts.len() as u64;
    assert_eq!(progress.first(), Some(&(0, n)));
    assert_eq!(progress.last(), Some(&(n, n)));
    let Output::Train(TrainOutput { dir, trained, .. }) = result.unwrap() else {
        panic!("not a train output")
    };
    assert_eq!(dir, out_dir);
    let committed = job.dir.join("classifiers").join("train-00000");
    std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
    std::fs::rename(&dir, &committed).unwrap();

    // `trained` is what `hint shapley` would not skip, judged on the rebuilt samples.
    let classifiers = ClassifierDir::open(&committed).unwrap();
    let all = classifiers.trained();
    let samples = classifiers
        .rebuild_samples(None, Some(&all), &mut |_| {})
        .unwrap();
    let usable: Vec<u32> = all
        .iter()
        .filter(|&&id| {
            let eval = samples.eval(id).unwrap();
            let pos = eval.targets.iter().filter(|&&t| t > 0.5).count();
            eval.len() >= 2 && pos > 0 && pos < eval.len()
        })
        .map(|id| id.0)
        .collect();
    assert!(usable.len() >= 3, "{usable:?} of {all:?}");
    assert_eq!(trained, usable);

    // Shapley: blocks 0..4 and 4..12 of a concept, merged, are one 0..12 run of the engine
    // `hint shapley` builds — bit for bit.
    let concept = *trained.last().unwrap();
    let block = |spec: &JobSpec, first, end| {
        let kind = Kind::Shapley(ShapleyTask {
            concept,
            first_permutation: first,
            end_permutation: end,
            classifiers_dir: committed.display().to_string(),
        });
        let (result, progress) = run(&runner, &task(&job, spec, kind));
        assert_eq!(progress.last(), Some(&(end - first, end - first)));
        let Output::Shapley(sums) = result.unwrap() else {
            panic!("not a shapley output")
        };
        assert_eq!((sums.first_permutation, sums.end_permutation), (first, end));
        sums_from_proto(&sums).unwrap()
    };
    let merged = PartialSums::merge([block(&job.spec, 4, 12), block(&job.spec, 0, 4)]).unwrap();

    let id = hint_common::hierarchy::ConceptId(concept);
    let eval = samples.eval(id).unwrap();
    let classifier = classifiers.classifier(id).unwrap();
    let input = ConceptInput {
        concept,
        eval_targets: eval.targets.iter().map(|&t| t > 0.5).collect(),
        eval_x: eval.activations,
        fit_x: Vec::new(),
        fit_targets: Vec::new(),
        weight: classifier.weight,
        bias: classifier.bias,
    };
    // `hint shapley --seed 7 --device cpu --permutations 12` with every other flag default.
    let config = ShapleyConfig {
        seed: 7,
        ..ShapleyConfig::default()
    }
    .with_device(Device::Cpu);
    let engine = ShapleyEngine::new(&input, &config).unwrap();
    let single = estimate(&engine, &Rounds::new(config.sampling, 12, 20, None), |_| {}).unwrap();
    assert_eq!(merged, single);
    assert_eq!(
        merged,
        engine.run_block(PermutationBlock::new(0, 12)).unwrap()
    );
    assert!(merged.estimates().iter().any(|e| e.phi != 0.0));

    // Retrain mode re-fits on the concept's training regions (on the runner's device).
    let mut spec = job.spec.clone();
    spec.shapley.mode = hint_common::settings::Mode::Retrain;
    spec.shapley.antithetic = false;
    let merged = PartialSums::merge([block(&spec, 0, 1), block(&spec, 1, 3)]).unwrap();
    let train = samples.train(id).unwrap();
    let input = ConceptInput {
        fit_x: train.activations,
        fit_targets: train.targets.iter().map(|&t| t > 0.5).collect(),
        ..input
    };
    let config = ShapleyConfig {
        mode: Mode::Retrain,
        sampling: hint_common::shapley::Sampling::Independent,
        seed: 7,
        retrain: RetrainConfig {
            iterations: 5,
            ..RetrainConfig::default()
        },
        ..ShapleyConfig::default()
    }
    .with_device(Device::Cpu);
    let engine = ShapleyEngine::new(&input, &config).unwrap();
    assert_eq!(
        merged,
        engine.run_block(PermutationBlock::new(0, 3)).unwrap()
    );
}

#[test]
fn the_spec_becomes_the_engines_settings() {
    let job = job();
    let runner = runner();
    let mut spec = job.spec.clone();
    spec.extract.method = hint_common::settings::MethodName::SmoothGrad;
    spec.extract.aggregation = hint_common::settings::Aggregation::AbsMax;
    spec.data.labels = Some(job.dir.join("labels.txt"));
    let kind = extract_task(&job, 3, 32..48);
    let Kind::Extract(t) = &kind else {
        unreachable!()
    };
    let lease = task(&job, &spec, kind.clone());
    let (config, _) = super::extract::config(&runner, &super::Job::of(&lease).unwrap(), t).unwrap();
    assert_eq!(
        config.method,
        Method::SmoothGrad {
            samples: 4,
            noise: 0.15
        }
    );
    assert_eq!(config.aggregation.name(), "abs_max");
    assert_eq!(
        (
            config.input.resize,
            config.input.crop,
            config.layer.as_str()
        ),
        (32, 32, "features.2")
    );
    assert_eq!((config.threshold, config.background_ratio), (0.5, 0.2));
    assert_eq!(
        (config.batch_size, config.seed, config.decode_threads),
        (4, 7, 2)
    );
    assert_eq!(config.label_map, spec.data.labels);
    assert_eq!(config.images, job.dir.join(MANIFEST_FILE));
    assert_eq!(config.out, PathBuf::from(&t.out_dir));
    assert_eq!(config.image_range, Some(32..48));
    assert_eq!(config.images_per_file, 16);
    assert_eq!(config.file_prefix, "regions-s00003");

    // Fixed mode sweeps on the CPU whatever the worker's device, unless asked otherwise.
    let cuda = Device::Cuda(0);
    let fixed = super::shapley::config(&spec, cuda).unwrap();
    assert_eq!(fixed.fixed.backend, SweepBackend::Rust);
    spec.shapley.sweep_on_device = true;
    let on_device = super::shapley::config(&spec, cuda).unwrap();
    assert_eq!(on_device.fixed.backend, SweepBackend::Torch(cuda));
    spec.shapley = ShapleySpec {
        mode: hint_common::settings::Mode::Retrain,
        quality: hint_common::shapley::Quality::Accuracy,
        replacement: hint_common::shapley::Replacement::Mean,
        antithetic: false,
        sweep_on_device: false,
        retrain_iterations: 3,
        retrain_l2: 0.5,
        retrain_fit_regions: 100,
        ..spec.shapley
    };
    let retrain = super::shapley::config(&spec, cuda).unwrap();
    assert_eq!(
        retrain,
        ShapleyConfig {
            mode: Mode::Retrain,
            quality: "accuracy".parse().unwrap(),
            replacement: "mean".parse().unwrap(),
            sampling: hint_common::shapley::Sampling::Independent,
            truncation: None,
            seed: 7,
            retrain: RetrainConfig {
                iterations: 3,
                l2: 0.5,
                fit_regions: 100,
                ..RetrainConfig::default()
            },
            ..ShapleyConfig::default()
        }
        .with_device(cuda)
    );
}

fn failure(runner: &TaskRunner, task: &Lease) -> TaskFailure {
    run(runner, task).0.expect_err("the task should fail")
}

#[test]
fn bad_inputs_are_not_retried() {
    let job = job();
    let runner = runner();
    let mut spec = job.spec.clone();
    spec.model.layer = "features.99".into();
    let f = failure(&runner, &task(&job, &spec, extract_task(&job, 0, 0..4)));
    assert_eq!(f.reason, FailureReason::BadInput, "{f}");
    assert_eq!((f.retryable, f.count_to_failures), (false, true));
    assert!(
        f.message.contains("features.99") && f.message.contains("features.7"),
        "{}",
        f.message
    );

    let mut spec = job.spec.clone();
    spec.model.weights = job.dir.join("missing.safetensors");
    let f = failure(&runner, &task(&job, &spec, extract_task(&job, 0, 0..4)));
    assert_eq!(f.reason, FailureReason::BadInput, "{f}");
    assert!(f.message.contains("missing.safetensors"), "{f}");

    for (kind, needle) in [
        (extract_task(&job, 0, 4..4), "no images"),
        (extract_task(&job, 0, 30..40), "beyond the 32 images"),
        (
            Kind::Shapley(ShapleyTask {
                concept: 0,
                first_permutation: 1,
                end_permutation: 4,
                classifiers_dir: job.dir.display().to_string(),
            }),
            "even bounds",
        ),
    ] {
        let f = failure(&runner, &task(&job, &job.spec, kind));
        assert_eq!(f.reason, FailureReason::BadInput, "{f}");
        assert!(f.message.contains(needle), "{f}");
    }

    let mut nowhere = task(&job, &job.spec, extract_task(&job, 0, 0..4));
    nowhere.task.job_dir.clear();
    let f = failure(&runner, &nowhere);
    assert_eq!(f.reason, FailureReason::BadInput);
    assert!(f.message.contains("no job directory"), "{f}");
}

/// A shard reads its rows through the plan's offsets, not the whole manifest: a label the
/// map lacks in the last row fails only the shard that holds it.
#[test]
fn an_extract_task_reads_only_its_rows_of_the_manifest() {
    let job = job();
    let runner = runner();
    let manifest = job.dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let (rest, last) = text.trim_end().rsplit_once('\n').unwrap();
    let (path, label) = last.rsplit_once(',').unwrap();
    let unknown = "z".repeat(label.len());
    std::fs::write(&manifest, format!("{rest}\n{path},{unknown}\n")).unwrap();

    let (result, _) = run(&runner, &task(&job, &job.spec, extract_task(&job, 0, 0..4)));
    assert!(result.is_ok(), "{:?}", result.err());
    let last_shard = extract_task(&job, 7, IMAGES - 4..IMAGES);
    let f = failure(&runner, &task(&job, &job.spec, last_shard));
    assert!(
        f.message
            .contains(&format!("{unknown} (not in the label map)")),
        "{f}"
    );
}

#[test]
fn a_cancelled_attempt_stops_and_does_not_count() {
    let job = job();
    let runner = runner();
    let cancel = AtomicBool::new(true);
    for kind in [
        extract_task(&job, 0, 0..4),
        Kind::Shapley(ShapleyTask {
            concept: 0,
            first_permutation: 0,
            end_permutation: 4,
            classifiers_dir: job.dir.display().to_string(),
        }),
    ] {
        let f = runner
            .run(&task(&job, &job.spec, kind), &|_, _| {}, &cancel)
            .unwrap_err();
        assert_eq!(f.reason, FailureReason::Cancelled);
        assert_eq!((f.retryable, f.count_to_failures), (true, false));
    }

    // Cancelled while running: the extraction stops after the batch in progress.
    let cancel = AtomicBool::new(false);
    let last = AtomicU64::new(0);
    let f = runner
        .run(
            &task(&job, &job.spec, extract_task(&job, 0, 0..IMAGES)),
            &|done, _| {
                last.store(done, Ordering::SeqCst);
                if done > 0 {
                    cancel.store(true, Ordering::SeqCst);
                }
            },
            &cancel,
        )
        .unwrap_err();
    assert_eq!(f.reason, FailureReason::Cancelled);
    let done = last.load(Ordering::SeqCst);
    assert!(done > 0 && done < IMAGES, "stopped after {done} images");
}

/// Runs a sample task (a part of `files`, or the merge of `parts`); returns its directory.
fn sample(runner: &TaskRunner, job: &Job, part: u32, files: &[&Path], parts: &[&str]) -> String {
    let out_dir = attempt(job, &format!("sample-{part:05}-a1"));
    let kind = Kind::Sample(proto::SampleTask {
        part,
        region_files: files.iter().map(|f| f.display().to_string()).collect(),
        parts: parts.iter().map(|p| p.to_string()).collect(),
        out_dir: out_dir.clone(),
    });
    let (result, progress) = run(runner, &task(job, &job.spec, kind));
    let Output::Sample(out) = result.unwrap() else {
        panic!("not a sample output")
    };
    assert_eq!(out.dir, out_dir);
    assert!(out.rows > 0 && out.rows <= out.rows_read, "{out:?}");
    let (done, total) = *progress.last().unwrap();
    assert_eq!(done, total);
    out_dir
}

/// Trains every concept, reading the stored sample in `samples_dir` (or, when empty,
/// streaming the region files); returns the classifier directory.
fn train_all(runner: &TaskRunner, job: &Job, name: &str, samples_dir: &str) -> (PathBuf, Vec<u32>) {
    let hierarchy = Hierarchy::read_json(&job.dir.join(CONCEPTS_FILE)).unwrap();
    let out_dir = attempt(job, name);
    let train = proto::TrainTask {
        part: 0,
        concepts: (0..hierarchy.concepts().len() as u32).collect(),
        regions_dir: job.dir.join("regions").display().to_string(),
        out_dir: out_dir.clone(),
        samples_dir: samples_dir.into(),
    };
    let (result, _) = run(runner, &task(job, &job.spec, Kind::Train(train)));
    let Output::Train(TrainOutput { dir, trained, .. }) = result.unwrap() else {
        panic!("not a train output")
    };
    (PathBuf::from(dir), trained)
}

/// The sample stage's parts and their merge give the train and Shapley tasks exactly the
/// samples they draw by streaming every region file: the same classifiers byte for byte,
/// the same rebuilt samples and the same Shapley sums.
#[test]
fn a_stored_sample_gives_the_classifiers_and_sums_of_streaming_the_regions() {
    let job = job();
    let runner = runner();
    let mut regions = PathBuf::new();
    for (shard, images) in [(0, 0..10), (1, 10..20), (2, 20..IMAGES)] {
        regions = commit_regions(&job, &extract(&runner, &job, shard, images));
    }
    let files = region_files(&regions).unwrap();
    assert_eq!(files.len(), 3);
    let first = sample(&runner, &job, 0, &[&files[0]], &[]);
    let second = sample(&runner, &job, 1, &[&files[1], &files[2]], &[]);
    let merged = sample(&runner, &job, 2, &[], &[&first, &second]);

    let (streamed, trained) = train_all(&runner, &job, "train-00000-a1", "");
    let (stored, trained_stored) = train_all(&runner, &job, "train-00001-a1", &merged);
    assert_eq!(trained, trained_stored);
    assert!(trained.len() >= 3, "{trained:?}");
    let mut names: Vec<_> = std::fs::read_dir(&streamed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in &names {
        let (a, b) = (
            std::fs::read(streamed.join(name)).unwrap(),
            std::fs::read(stored.join(name)).unwrap(),
        );
        if name == "classify.json" {
            // Equal but for the stored sample it names.
            let mut b: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let samples = b.as_object_mut().unwrap().remove("samples").unwrap();
            assert_eq!(samples, serde_json::json!(merged));
            assert_eq!(serde_json::from_slice::<serde_json::Value>(&a).unwrap(), b);
        } else {
            assert!(a == b, "{name:?} differs");
        }
    }

    // Shapley reads the sample that classify.json names: the same sums.
    let concept = *trained.last().unwrap();
    let sums = |dir: &Path| {
        let kind = Kind::Shapley(ShapleyTask {
            concept,
            first_permutation: 0,
            end_permutation: 8,
            classifiers_dir: dir.display().to_string(),
        });
        let Output::Shapley(sums) = run(&runner, &task(&job, &job.spec, kind)).0.unwrap() else {
            panic!("not a shapley output")
        };
        sums_from_proto(&sums).unwrap()
    };
    assert_eq!(sums(&streamed), sums(&stored));
}

#[test]
fn sample_tasks_that_cannot_run_say_why() {
    let job = job();
    let runner = runner();
    let kind = |files: Vec<String>, parts: Vec<String>| {
        Kind::Sample(proto::SampleTask {
            part: 3,
            region_files: files,
            parts,
            out_dir: attempt(&job, "sample-00003-a1"),
        })
    };
    let failure = run(&runner, &task(&job, &job.spec, kind(vec![], vec![])))
        .0
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::BadInput);
    assert!(failure.message.contains("neither"), "{}", failure.message);
    let missing = job.dir.join("regions/nope.parquet").display().to_string();
    let failure = run(&runner, &task(&job, &job.spec, kind(vec![missing], vec![])))
        .0
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::BadInput);
    assert!(
        failure.message.contains("nope.parquet"),
        "{}",
        failure.message
    );
    let missing = job.dir.join("samples/sample-00000").display().to_string();
    let failure = run(&runner, &task(&job, &job.spec, kind(vec![], vec![missing])))
        .0
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::BadInput);
    assert!(
        failure.message.contains("sample-00000"),
        "{}",
        failure.message
    );
}

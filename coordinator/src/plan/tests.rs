use std::fs;
use std::path::{Path, PathBuf};

use hint_common::hierarchy::Hierarchy;
use hint_common::images::{scan, LabelMap};
use hint_common::job::spec::{
    ClassifySpec, DataSpec, ExtractSpec, HierarchySpec, ModelSpec, SchedulerSpec, ShapleySpec,
    StorageSpec,
};
use hint_common::job::JobSpec;

use super::*;

/// A spec over `images` with a custom hierarchy file; only `data`, `images_per_task` and
/// `concepts_per_task` matter to the plan.
fn spec(images: &Path, hierarchy: HierarchySpec, per_shard: u64, per_part: usize) -> JobSpec {
    JobSpec {
        name: "plan-test".into(),
        seed: 0,
        model: ModelSpec {
            architecture: "tiny_cnn".into(),
            weights: "/nonexistent/tiny_cnn.safetensors".into(),
            layer: "features.3".into(),
            layers: Vec::new(),
            resize: None,
            crop: None,
        },
        data: DataSpec {
            images: images.to_path_buf(),
            labels: None,
            hierarchy,
        },
        extract: ExtractSpec {
            method: hint_common::settings::MethodName::Gradient,
            samples: 20,
            noise: 0.15,
            steps: 20,
            baseline: hint_common::settings::Baseline::Zero,
            aggregation: hint_common::settings::Aggregation::Norm,
            threshold: 0.5,
            background_ratio: 1.0,
            activation_type: hint_common::regions::ActivationType::F32,
            compression: hint_common::regions::Compression::Zstd,
            batch_size: 16,
            images_per_task: Some(per_shard),
        },
        classify: ClassifySpec {
            max_per_class: 1000,
            holdout: 0.2,
            negatives: hint_common::regions::sample::Negatives::Mixed,
            l2: 1e-3,
            iterations: 50,
            tolerance: 1e-8,
            concepts_per_task: per_part,
        },
        shapley: ShapleySpec {
            mode: hint_common::settings::Mode::Fixed,
            quality: hint_common::shapley::Quality::LogLikelihood,
            replacement: hint_common::shapley::Replacement::Marginal,
            antithetic: true,
            permutations: 64,
            permutations_per_task: 16,
            until_stderr: None,
            until_top_k: None,
            confidence: 0.95,
            truncation: None,
            retrain_iterations: 20,
            retrain_l2: 1e-3,
            retrain_fit_regions: 4096,
            top: 10,
            sweep_on_device: false,
        },
        storage: StorageSpec {
            root: "/nonexistent".into(),
        },
        scheduler: SchedulerSpec { max_attempts: 3 },
        evaluate: None,
        ablate: None,
    }
}

fn file(path: PathBuf) -> HierarchySpec {
    HierarchySpec::File { path }
}

/// Empty files with image names: the plan never decodes an image.
fn touch_images(root: &Path, classes: &[(&str, usize)]) {
    for &(class, n) in classes {
        let dir = root.join(class);
        fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            fs::write(dir.join(format!("{class}_{i:03}.png")), b"").unwrap();
        }
    }
}

const PETS: &str = "children:\n  whole: [animal, car]\n  animal: [cat, dog]\n";

/// cat ×2, dog ×3, car ×1 under PETS, in `dir`/images and `dir`/pets.yaml.
fn pets(dir: &Path) -> (PathBuf, PathBuf) {
    let images = dir.join("images");
    touch_images(&images, &[("cat", 2), ("dog", 3), ("car", 1)]);
    let yaml = dir.join("pets.yaml");
    fs::write(&yaml, PETS).unwrap();
    (images, yaml)
}

#[test]
fn shards_cover_the_images_and_the_last_is_shorter() {
    assert_eq!(shards(10, 4), vec![0..4, 4..8, 8..10]);
    assert_eq!(shards(8, 4), vec![0..4, 4..8]);
    assert_eq!(shards(3, 10), vec![0..3]);
    assert_eq!(shards(1, 1), vec![0..1]);
    assert!(shards(0, 5).is_empty());
    let big = shards(1_281_167, 10_000);
    assert_eq!(big.len(), 129);
    assert_eq!(big[128], 1_280_000..1_281_167);
    assert!(big.windows(2).all(|w| w[0].end == w[1].start));
}

#[test]
fn extract_shards_follow_tar_shards_unless_images_per_task_is_set() {
    // Tar shards of 3, 1 and 4 images.
    let starts = [0, 3, 4];
    assert_eq!(extract_shards(8, &starts, None), vec![0..3, 3..4, 4..8]);
    // Set, it cuts the manifest as for loose files (a task may straddle two shards).
    assert_eq!(extract_shards(8, &starts, Some(5)), vec![0..5, 5..8]);
    // Loose files: 1,000 images per task unless set.
    assert_eq!(extract_shards(2500, &[], None), shards(2500, 1000));
    assert_eq!(extract_shards(10, &[], Some(4)), shards(10, 4));
}

#[test]
fn tar_shard_starts_need_every_image_in_a_shard() {
    let record = |id: u64, path: &str| ImageRecord {
        id,
        path: path.into(),
        label: "cat".into(),
    };
    let members = [
        record(0, "/d/a.tar#x.png@512+1"),
        record(1, "/d/a.tar#y.png@1536+1"),
        record(2, "s3://b/c.tar#z.png@512+1"),
        record(3, "/d/a.tar#w.png@2560+1"),
    ];
    assert_eq!(tar_shard_starts(&members), [0, 2, 3]);
    let mut mixed = members.to_vec();
    mixed.push(record(4, "/d/loose.png"));
    assert!(tar_shard_starts(&mixed).is_empty());
    assert!(tar_shard_starts(&[]).is_empty());
}

#[test]
fn train_parts_chunk_concepts_in_id_order() {
    assert_eq!(train_parts(5, 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
    assert_eq!(train_parts(3, 3), vec![vec![0, 1, 2]]);
    assert_eq!(train_parts(2, 8), vec![vec![0, 1]]);
    assert!(train_parts(0, 4).is_empty());
}

#[test]
fn plan_of_a_synthetic_world_agrees_with_extracts_view() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    let mut config = hint_common::synth::SynthConfig::new(&world);
    config.per_class = 3;
    config.size = 32;
    hint_common::synth::generate(&config, &|| {}).unwrap();
    let images = world.join("images");
    let spec = spec(&images, file(world.join("hierarchy.yaml")), 5, 4);
    let job = dir.path().join("job");

    let plan = plan(&spec, &job).unwrap();
    let source = scan(&images).unwrap();
    assert_eq!(plan.images, 24);
    assert_eq!(plan.labels, source.classes);
    assert_eq!(plan.label_images, vec![3; 8]);
    assert_eq!(plan.shards, shards(24, 5));
    assert_eq!(plan.shards.last(), Some(&(20..24)));
    // whole, 2 kingdoms, 4 families, 8 classes.
    assert_eq!(plan.hierarchy.concepts().len(), 15);
    assert_eq!(plan.train_parts, train_parts(15, 4));
    assert_eq!(
        plan.hierarchy.images(plan.hierarchy.find("whole").unwrap()),
        Some(24)
    );

    // The manifest, read as an extract task reads it, lists the same images in the same
    // order (ids) with the same labels, by absolute path.
    let manifest = scan(&job.join("manifest.csv")).unwrap();
    assert_eq!(manifest, source);
    assert!(manifest.images.iter().all(|i| i.path.is_absolute()));
    // labels.txt is the label map of every extract task: the region files' labels.
    let map = LabelMap::from_file(&job.join("labels.txt")).unwrap();
    assert_eq!(map.names(), plan.labels);

    let written = Hierarchy::read_json(&job.join("concepts.json")).unwrap();
    assert_eq!(written, plan.hierarchy);
    assert_eq!(reload(&spec, &job).unwrap(), plan);
    // Nothing but the plan's files: no temporary left behind.
    let mut names: Vec<String> = fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "concepts.json",
            "labels.txt",
            "manifest.csv",
            "manifest.offsets"
        ]
    );
}

#[test]
fn an_empty_dataset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    fs::create_dir_all(images.join("cat")).unwrap();
    fs::write(dir.path().join("h.yaml"), "children:\n  whole: [cat]\n").unwrap();
    let spec = spec(&images, file(dir.path().join("h.yaml")), 4, 4);
    let err = plan(&spec, &dir.path().join("job")).unwrap_err();
    assert!(matches!(err, PlanError::Images(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("data.images: ") && text.contains("no images"),
        "{text}"
    );
    assert!(!dir.path().join("job/manifest.csv").exists());
}

#[test]
fn an_uncovered_label_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = pets(dir.path());
    let partial = dir.path().join("partial.yaml");
    fs::write(&partial, "children:\n  animal: [cat, dog]\n").unwrap();
    let spec = spec(&images, file(partial), 4, 4);
    let err = plan(&spec, &dir.path().join("job")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PlanError::Hierarchy(_)), "{err:?}");
    assert!(
        text.starts_with("data.hierarchy: ") && text.contains("no concept: car"),
        "{text}"
    );
    assert!(!dir.path().join("job/concepts.json").exists());
}

#[test]
fn wordnet_needs_wordnet_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = pets(dir.path());
    let wordnet = HierarchySpec::Wordnet {
        dir: Some(dir.path().to_path_buf()),
        roots: vec![],
        min_images: None,
        collapse: false,
        max_depth: None,
        drop_uncovered: false,
    };
    let err = plan(&spec(&images, wordnet, 4, 4), &dir.path().join("job")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data.hierarchy: label \"car\" is not a WordNet noun id (like n02084071); give a \
         custom hierarchy with source = \"file\""
    );
}

#[test]
fn a_label_map_orders_the_labels_and_must_name_every_class() {
    let dir = tempfile::tempdir().unwrap();
    let (images, yaml) = pets(dir.path());
    let mut spec = spec(&images, file(yaml), 4, 4);
    let labels = dir.path().join("labels.txt");
    fs::write(&labels, "dog\ncar\ncat\n").unwrap();
    spec.data.labels = Some(labels.clone());
    let job = dir.path().join("job");
    let plan = plan(&spec, &job).unwrap();
    assert_eq!(plan.labels, ["dog", "car", "cat"]);
    assert_eq!(plan.label_images, [3, 1, 2]);
    assert_eq!(plan.hierarchy.labels(), plan.labels);
    assert_eq!(reload(&spec, &job).unwrap(), plan);
    // Image ids stay the dataset's order whatever the label indices.
    assert_eq!(
        scan(&job.join("manifest.csv")).unwrap(),
        scan(&images).unwrap()
    );

    fs::write(&labels, "dog\ncat\n").unwrap();
    let err = super::plan(&spec, &job).unwrap_err().to_string();
    assert!(
        err.starts_with("data.labels: ") && err.ends_with("does not name 1 dataset class(es): car"),
        "{err}"
    );
    fs::write(&labels, "dog\n\ncar\ncat\n").unwrap();
    let err = super::plan(&spec, &job).unwrap_err().to_string();
    assert!(err.contains("gives no name to output(s) 1"), "{err}");
    fs::write(&labels, "dog\ncar\ndog\n").unwrap();
    let err = super::plan(&spec, &job).unwrap_err().to_string();
    assert!(
        err.starts_with("data.labels: ") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn an_empty_class_keeps_its_label_index() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = pets(dir.path());
    fs::create_dir(images.join("bus")).unwrap();
    let yaml = dir.path().join("h.yaml");
    fs::write(&yaml, format!("{PETS}  vehicle: [bus, car]\n")).unwrap();
    let spec = spec(&images, file(yaml), 4, 4);
    let job = dir.path().join("job");
    let plan = plan(&spec, &job).unwrap();
    assert_eq!(plan.labels, ["bus", "car", "cat", "dog"]);
    assert_eq!(plan.label_images, [0, 1, 2, 3]);
    // The manifest has no bus row, so its own sorted classes would shift car to 0:
    // labels.txt keeps the indices.
    assert_eq!(
        scan(&job.join("manifest.csv")).unwrap().classes,
        ["car", "cat", "dog"]
    );
    let map = LabelMap::from_file(&job.join("labels.txt")).unwrap();
    assert_eq!(map.names(), plan.labels);
    assert_eq!(reload(&spec, &job).unwrap(), plan);
}

#[test]
fn a_csv_source_keeps_its_row_order_and_awkward_paths_survive() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    fs::create_dir(&lists).unwrap();
    let csv = lists.join("train.csv");
    fs::write(
        &csv,
        "label,path\ndog,imgs/b.png\ncat,\"imgs/a, \"\"quoted\"\".png\"\ncar,/elsewhere/c d.png\n\
         dog,../up/x.jpg\n",
    )
    .unwrap();
    let yaml = dir.path().join("pets.yaml");
    fs::write(&yaml, PETS).unwrap();
    let spec = spec(&csv, file(yaml), 3, 2);
    let job = dir.path().join("job");
    let plan = plan(&spec, &job).unwrap();
    assert_eq!(plan.images, 4);
    assert_eq!(plan.shards, vec![0..3, 3..4]);
    let written = scan(&job.join("manifest.csv")).unwrap();
    assert_eq!(written, scan(&csv).unwrap());
    assert_eq!(written.images[1].path, lists.join("imgs/a, \"quoted\".png"));
    assert_eq!(written.images[2].path, PathBuf::from("/elsewhere/c d.png"));
    assert_eq!(reload(&spec, &job).unwrap(), plan);
    // Every range read through the offsets is the whole read's rows.
    for start in 0..4 {
        for end in start + 1..=4 {
            let rows = hint_common::images::rows::read_rows(&job.join("manifest.csv"), start..end);
            let rows = rows.unwrap().expect("the plan wrote the offsets");
            assert_eq!(rows, written.images[start as usize..end as usize]);
        }
    }
}

#[test]
fn a_label_with_surrounding_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    touch_images(&images, &[("cat ", 1), ("dog", 1)]);
    let yaml = dir.path().join("h.json");
    fs::write(&yaml, r#"{"children": {"whole": ["cat ", "dog"]}}"#).unwrap();
    let err = plan(&spec(&images, file(yaml), 4, 4), &dir.path().join("job"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("data.images: label \"cat \" begins or ends with whitespace"),
        "{err}"
    );
}

#[test]
fn a_concepts_json_is_a_hierarchy_source() {
    let dir = tempfile::tempdir().unwrap();
    let (images, yaml) = pets(dir.path());
    let first = plan(&spec(&images, file(yaml), 4, 4), &dir.path().join("a")).unwrap();
    // A second job over the same labels takes the first job's concepts.json as it is.
    let concepts = dir.path().join("a/concepts.json");
    let second = plan(
        &spec(&images, file(concepts.clone()), 4, 4),
        &dir.path().join("b"),
    )
    .unwrap();
    assert_eq!(second, first);
    // Over other labels it is refused, naming the difference.
    fs::create_dir(images.join("ant")).unwrap();
    fs::write(images.join("ant/a.png"), b"").unwrap();
    let err = plan(&spec(&images, file(concepts), 4, 4), &dir.path().join("c"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("data.hierarchy: ") && err.contains("it has 3 labels, the dataset 4"),
        "{err}"
    );
}

#[test]
fn reload_notices_a_damaged_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (images, yaml) = pets(dir.path());
    let spec = spec(&images, file(yaml), 4, 4);
    let job = dir.path().join("job");
    plan(&spec, &job).unwrap();
    let manifest = job.join("manifest.csv");
    let text = fs::read_to_string(&manifest).unwrap();
    let shorter: Vec<&str> = text.lines().take(5).collect();
    fs::write(&manifest, shorter.join("\n") + "\n").unwrap();
    let err = reload(&spec, &job).unwrap_err();
    assert!(matches!(err, PlanError::Damaged { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("manifest.csv: its images per label differ"),
        "{err}"
    );

    fs::remove_file(job.join("concepts.json")).unwrap();
    let err = reload(&spec, &job).unwrap_err().to_string();
    assert!(err.contains("concepts.json"), "{err}");
}

/// A tar of `(name, data)` members as `tarfile` writes them (ustar headers, padded data).
fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[156] = b'0';
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend(h);
        out.extend(*data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend([0u8; 1024]);
    out
}

#[test]
fn tar_shards_with_class_indices_plan_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    // labels.txt names index 0 car, 1 cat, 2 dog; `.cls` holds indices and one name.
    fs::write(
        dir.path().join("s-0.tar"),
        tar(&[
            ("a.png", b""),
            ("a.cls", b"1\n"),
            ("b.jpg", b""),
            ("b.cls", b"dog"),
            ("orphan.png", b""),
        ]),
    )
    .unwrap();
    fs::write(
        dir.path().join("s-1.tar"),
        tar(&[
            ("c.cls", b"0"),
            ("c.png", b""),
            ("d.png", b""),
            ("d.cls", b"2"),
        ]),
    )
    .unwrap();
    let labels = dir.path().join("labels.txt");
    fs::write(&labels, "car\ncat\ndog\n").unwrap();
    let yaml = dir.path().join("pets.yaml");
    fs::write(&yaml, PETS).unwrap();
    let mut spec = spec(&dir.path().join("s-{0..1}.tar"), file(yaml), 2, 2);
    spec.data.labels = Some(labels);
    let job = dir.path().join("job");
    let plan = plan(&spec, &job).unwrap();
    // Five images: the unlabelled one keeps its id and counts for no label.
    assert_eq!(plan.images, 5);
    assert_eq!(plan.labels, ["car", "cat", "dog"]);
    assert_eq!(plan.label_images, [1, 1, 2]);
    let manifest = fs::read_to_string(job.join("manifest.csv")).unwrap();
    let rows: Vec<(&str, &str)> = manifest
        .lines()
        .skip(1)
        .map(|l| l.rsplit_once(',').unwrap())
        .collect();
    let shard0 = dir.path().join("s-0.tar");
    assert_eq!(
        rows[0],
        (format!("{}#a.png@512+0", shard0.display()).as_str(), "cat")
    );
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ["cat", "dog", "", "car", "dog"]
    );
    assert_eq!(plan.tar_shards, [0, 3]);
    assert_eq!(plan.shards, vec![0..2, 2..4, 4..5]);
    assert_eq!(reload(&spec, &job).unwrap(), plan);

    // Unset, one extract task per shard.
    spec.extract.images_per_task = None;
    let again = super::plan(&spec, &job).unwrap();
    assert_eq!(again.shards, vec![0..3, 3..5]);
    assert_eq!(reload(&spec, &job).unwrap(), again);
}

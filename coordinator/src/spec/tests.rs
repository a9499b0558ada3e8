//! The spec reader on whole files: defaults, every kind of problem, paths.

use std::fs;
use std::path::PathBuf;

use hint_common::job::spec::{
    ClassifySpec, DataSpec, ExtractSpec, HierarchySpec, ModelSpec, SchedulerSpec, ShapleySpec,
    StorageSpec,
};
use hint_common::job::JobSpec;
use hint_common::regions::sample::Negatives;

use super::{load, parse, Problem, SpecError};

/// A directory with what a spec points at: weights, an ImageFolder, a hierarchy, labels.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("world/images/cat")).unwrap();
        fs::write(dir.path().join("tiny_cnn.safetensors"), b"weights").unwrap();
        fs::write(dir.path().join("world/hierarchy.yaml"), "children: {}\n").unwrap();
        fs::write(dir.path().join("labels.txt"), "cat\n").unwrap();
        World { dir }
    }

    /// The canonical path of `rel` under the world.
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join(rel)
    }

    fn parse(&self, text: &str) -> Result<JobSpec, SpecError> {
        parse(text, self.dir.path(), "job.toml")
    }

    /// The problems of a spec that must be invalid.
    fn problems(&self, text: &str) -> Vec<Problem> {
        match self.parse(text) {
            Err(SpecError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }
}

const MINIMAL: &str = r#"
[model]
architecture = "tiny_cnn"
weights = "tiny_cnn.safetensors"
layer = "features.7"

[data]
images = "world/images"
hierarchy = "world/hierarchy.yaml"

[storage]
root = "runs"
"#;

fn fields(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

#[test]
fn a_minimal_spec_gets_the_commands_defaults() {
    let world = World::new();
    let spec = world.parse(MINIMAL).unwrap();
    let expected = JobSpec {
        name: "job".into(),
        seed: 0,
        model: ModelSpec {
            architecture: "tiny_cnn".into(),
            weights: world.path("tiny_cnn.safetensors"),
            layer: "features.7".into(),
            layers: Vec::new(),
            resize: None,
            crop: None,
        },
        data: DataSpec {
            images: world.path("world/images"),
            labels: None,
            hierarchy: HierarchySpec::File {
                path: world.path("world/hierarchy.yaml"),
            },
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
            images_per_task: None,
        },
        classify: ClassifySpec {
            max_per_class: 20_000,
            holdout: 0.2,
            negatives: Negatives::Mixed,
            l2: 1e-3,
            iterations: 100,
            tolerance: 1e-12,
            concepts_per_task: 16,
        },
        shapley: ShapleySpec {
            mode: hint_common::settings::Mode::Fixed,
            quality: hint_common::shapley::Quality::LogLikelihood,
            replacement: hint_common::shapley::Replacement::Marginal,
            antithetic: true,
            permutations: 100,
            permutations_per_task: 20,
            until_stderr: None,
            until_top_k: None,
            confidence: 0.95,
            truncation: None,
            retrain_iterations: 10,
            retrain_l2: 1e-3,
            retrain_fit_regions: 4096,
            top: 10,
            sweep_on_device: false,
        },
        storage: StorageSpec {
            // Does not exist yet: resolved against the spec's directory all the same.
            root: world.path("runs"),
        },
        scheduler: SchedulerSpec { max_attempts: 3 },
        evaluate: None,
        ablate: None,
    };
    assert_eq!(spec, expected);
    assert_eq!(
        JobSpec::new(
            expected.model.clone(),
            expected.data.clone(),
            expected.storage.root.clone()
        ),
        spec,
        "JobSpec::new gives the TOML defaults"
    );
    assert_eq!(JobSpec::from_json(&spec.to_json()).unwrap(), spec);
}

#[test]
fn every_key_is_read() {
    let world = World::new();
    let text = r#"
[job]
name = "demo"
seed = 7

[model]
architecture = "vgg16"
weights = "tiny_cnn.safetensors"
layer = "features.26"
resize = 240
crop = 200

[data]
images = "world/images"
labels = "labels.txt"
hierarchy = "wordnet"

[data.wordnet]
dir = "world"
roots = ["animal.n.01", "n03791235"]
min_images = 50
collapse = true
max_depth = 4
drop_uncovered = true

[extract]
method = "smoothgrad"
samples = 8
noise = 0.2
steps = 5
baseline = "black"
aggregation = "abs_max"
threshold = 1
background_ratio = 0.25
activation_type = "f16"
batch_size = 64
images_per_task = 250

[classify]
max_per_class = 500
holdout = 0.3
negatives = "siblings"
l2 = 0.01
iterations = 50
tolerance = 1e-9
concepts_per_task = 4

[shapley]
mode = "retrain"
quality = "accuracy"
replacement = "mean"
antithetic = false
permutations = 30
permutations_per_task = 7
until_top_k = 5
confidence = 0.99
retrain_iterations = 3
retrain_l2 = 0.5
retrain_fit_regions = 0
top = 3
sweep_on_device = true

[storage]
root = "/tmp/hint-runs-that-do-not-exist/x"

[scheduler]
max_attempts = 5
"#;
    let spec = world.parse(text).unwrap();
    assert_eq!((spec.name.as_str(), spec.seed), ("demo", 7));
    assert_eq!((spec.model.resize, spec.model.crop), (Some(240), Some(200)));
    assert_eq!(spec.data.labels, Some(world.path("labels.txt")));
    assert_eq!(
        spec.data.hierarchy,
        HierarchySpec::Wordnet {
            dir: Some(world.path("world")),
            roots: vec!["animal.n.01".into(), "n03791235".into()],
            min_images: Some(50),
            collapse: true,
            max_depth: Some(4),
            drop_uncovered: true,
        }
    );
    let e = &spec.extract;
    assert_eq!(
        (
            e.method.name(),
            e.samples,
            e.noise,
            e.steps,
            e.baseline.to_string().as_str()
        ),
        ("smoothgrad", 8, 0.2, 5, "black")
    );
    assert_eq!(
        (e.aggregation.name(), e.threshold, e.background_ratio),
        ("abs_max", 1.0, 0.25)
    );
    assert_eq!(
        (
            e.activation_type.to_string().as_str(),
            e.batch_size,
            e.images_per_task.unwrap()
        ),
        ("f16", 64, 250)
    );
    let c = &spec.classify;
    assert_eq!(
        (c.max_per_class, c.holdout, c.l2, c.iterations, c.tolerance),
        (500, 0.3, 0.01, 50, 1e-9)
    );
    assert_eq!(c.concepts_per_task, 4);
    assert_eq!(c.negatives, Negatives::Siblings);
    let s = &spec.shapley;
    assert_eq!(
        (
            s.mode.to_string().as_str(),
            s.quality.name(),
            s.replacement.name()
        ),
        ("retrain", "accuracy", "mean")
    );
    assert_eq!(
        (s.antithetic, s.permutations, s.permutations_per_task),
        (false, 30, 7)
    );
    assert_eq!(
        (s.until_stderr, s.until_top_k, s.confidence),
        (None, Some(5), 0.99)
    );
    assert_eq!(
        (
            s.retrain_iterations,
            s.retrain_l2,
            s.retrain_fit_regions,
            s.top
        ),
        (3, 0.5, 0, 3)
    );
    assert!(s.sweep_on_device);
    // Absolute already; canonical as far as it exists (/tmp may be a link).
    let tmp = std::path::Path::new("/tmp").canonicalize().unwrap();
    assert_eq!(spec.storage.root, tmp.join("hint-runs-that-do-not-exist/x"));
    assert_eq!(spec.scheduler.max_attempts, 5);
}

#[test]
fn every_mistake_is_reported_with_its_field() {
    let world = World::new();
    let text = r#"
[model]
architecture = "tiny_cnn"
weights = "missing.safetensors"
layer = "features.99"

[data]
images = "world/images"
hierarchy = "world/hierarchy.yaml"

[extract]
method = "gradients"
treshold = 0.4
background_ratio = 1.5
batch_size = "16"

[classify]
holdout = 1.0

[shapley]
permutations = 10
permutations_per_task = 5
until_stderr = 0.01
until_top_k = 3

[storage]
root = "gs://bucket/runs"

[scheduler]
max_attempts = 0

[colour]
"#;
    let problems = world.problems(text);
    assert_eq!(
        fields(&problems),
        [
            "model.weights",
            "model.layer",
            "extract.batch_size",
            "extract.method",
            "extract.background_ratio",
            "extract.treshold",
            "classify.holdout",
            "shapley.permutations_per_task",
            "shapley.until_top_k",
            "storage.root",
            "scheduler.max_attempts",
            "colour",
        ],
        "{problems:#?}"
    );
    let text_of = |field: &str| {
        problems
            .iter()
            .find(|p| p.field == field)
            .map(|p| p.message.clone())
            .unwrap()
    };
    assert!(text_of("model.weights").starts_with("no such file: "));
    assert!(text_of("model.weights").ends_with("missing.safetensors"));
    assert_eq!(
        text_of("model.layer"),
        "no layer \"features.99\" in tiny_cnn (layers: features.0, features.1, features.2, \
         features.3, features.4, features.5, features.6, features.7)"
    );
    assert_eq!(
        text_of("extract.batch_size"),
        "expected an integer, found a string"
    );
    assert!(text_of("extract.method").contains("unknown saliency method 'gradients'"));
    assert_eq!(
        text_of("extract.treshold"),
        "unknown key (did you mean threshold?)"
    );
    assert_eq!(
        text_of("shapley.permutations_per_task"),
        "must be even with antithetic = true (a pair is never split), found 5"
    );
    assert_eq!(
        text_of("storage.root"),
        "gs:// is not supported: give a local path or an s3:// URL"
    );
    assert_eq!(
        text_of("scheduler.max_attempts"),
        "must be at least 1, found 0"
    );
    assert!(text_of("colour").starts_with("unknown section"));
}

#[test]
fn the_error_lists_one_problem_per_line() {
    let world = World::new();
    let text = MINIMAL.replace("features.7", "features.99") + "[extract]\nthreshold = \"high\"\n";
    let error = world.parse(&text).unwrap_err().to_string();
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(lines[0], "job.toml: 2 problems:");
    assert!(lines[1].starts_with("  model.layer: no layer \"features.99\" in tiny_cnn"));
    assert_eq!(
        lines[2],
        "  extract.threshold: expected a number, found a string"
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn a_syntax_error_names_its_line() {
    let world = World::new();
    let text = "[model]\narchitecture = \"tiny_cnn\"\nlayer = features.7\n";
    match world.parse(text) {
        Err(SpecError::Syntax { source, line, .. }) => {
            assert_eq!((source.as_str(), line), ("job.toml", 3));
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn missing_required_fields_and_sections() {
    let world = World::new();
    let problems = world.problems("[model]\narchitecture = \"tiny_cnn\"\n[data]\n");
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "model.weights: missing (required)",
            "model.layer: missing (required)",
            "data.images: missing (required)",
            "data.hierarchy: missing (required)",
            "storage: missing section [storage] (required: root)",
        ]
    );
}

#[test]
fn the_wordnet_section_goes_only_with_a_wordnet_hierarchy() {
    let world = World::new();
    let text = MINIMAL.to_string() + "[data.wordnet]\nroots = [\"animal.n.01\"]\ncolapse = true\n";
    let problems = world.problems(&text);
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "data.wordnet: only with hierarchy = \"wordnet\" (this spec's hierarchy is a file)",
            "data.wordnet.colapse: unknown key (did you mean collapse?)",
        ]
    );

    let wordnet = MINIMAL.replace("\"world/hierarchy.yaml\"", "\"wordnet\"");
    let spec = world.parse(&wordnet).unwrap();
    assert_eq!(
        spec.data.hierarchy,
        HierarchySpec::Wordnet {
            dir: None,
            roots: Vec::new(),
            min_images: None,
            collapse: false,
            max_depth: None,
            drop_uncovered: false,
        }
    );
}

#[test]
fn relative_paths_resolve_against_the_spec_directory() {
    let world = World::new();
    fs::create_dir_all(world.dir.path().join("specs")).unwrap();
    let text = MINIMAL
        .replace("\"tiny_cnn.safetensors\"", "\"../tiny_cnn.safetensors\"")
        .replace("\"world/", "\"../world/")
        .replace("\"runs\"", "\"../runs/new\"");
    let spec_path = world.dir.path().join("specs/cluster.toml");
    fs::write(&spec_path, text).unwrap();
    let spec = load(&spec_path).unwrap();
    assert_eq!(spec.name, "cluster");
    assert_eq!(spec.model.weights, world.path("tiny_cnn.safetensors"));
    assert_eq!(spec.data.images, world.path("world/images"));
    assert_eq!(spec.storage.root, world.path("runs/new"));
    for path in [&spec.model.weights, &spec.data.images, &spec.storage.root] {
        assert!(path.is_absolute(), "{}", path.display());
    }
}

#[test]
fn an_unreadable_file_is_a_read_error() {
    let world = World::new();
    let missing = world.dir.path().join("nope.toml");
    assert!(matches!(
        load(&missing),
        Err(SpecError::Read { path, .. }) if path == missing
    ));
}

#[test]
fn numbers_and_choices_are_checked_by_the_engines_rules() {
    let world = World::new();
    let text = MINIMAL.replace(
        "layer = \"features.7\"",
        "layer = \"features.7\"\ncrop = 80",
    ) + r#"
[extract]
aggregation = "mean"
activation_type = "f64"
baseline = "grey"
noise = -1
samples = 0
[classify]
l2 = 0
negatives = "sibling"
[shapley]
mode = "exact"
quality = "auc"
replacement = "noise"
permutations = 10
permutations_per_task = 12
confidence = 0.4
"#;
    let problems = world.problems(&text);
    assert_eq!(
        fields(&problems),
        [
            "model.crop",
            "extract.samples",
            "extract.noise",
            "extract.baseline",
            "extract.aggregation",
            "extract.activation_type",
            "classify.negatives",
            "classify.l2",
            "shapley.mode",
            "shapley.quality",
            "shapley.replacement",
            "shapley.permutations_per_task",
            "shapley.confidence",
        ],
        "{problems:#?}"
    );
    assert_eq!(
        problems[0].message,
        "crop 80 is larger than resize 64 (the resize of tiny_cnn)"
    );
    let quality = problems.iter().find(|p| p.field == "shapley.quality");
    assert_eq!(
        quality.unwrap().message,
        "unknown quality 'auc' (expected log_likelihood, balanced_log_likelihood, accuracy, \
         prediction, logit, prediction_all, logit_all)"
    );
    // The paper's sign-aware qualities are accepted as written.
    for name in ["prediction", "logit", "prediction_all", "logit_all"] {
        let text = format!("{MINIMAL}[shapley]\nquality = \"{name}\"\n");
        assert_eq!(world.parse(&text).unwrap().shapley.quality.name(), name);
    }
    assert_eq!(
        problems[6].to_string(),
        "classify.negatives: unknown negative set 'sibling' (expected mixed, background, \
         others, siblings)"
    );

    // A resize below the architecture's crop is the resize's fault.
    let vgg = MINIMAL
        .replace("\"tiny_cnn\"", "\"vgg16\"")
        .replace("features.7\"", "features.7\"\nresize = 200");
    let lines: Vec<String> = world
        .problems(&vgg)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        ["model.resize: resize 200 is smaller than crop 224 (the crop of vgg16)"]
    );
}

#[test]
fn files_and_directories_are_where_the_spec_says() {
    let world = World::new();
    let text = MINIMAL
        .replace("\"world/images\"", "\"labels.txt\"")
        .replace("\"world/hierarchy.yaml\"", "\"world\"")
        .replace("\"runs\"", "\"tiny_cnn.safetensors\"");
    let lines: Vec<String> = world
        .problems(&text)
        .iter()
        .map(ToString::to_string)
        .collect();
    let root = world.path("");
    let root = root.display().to_string();
    let root = root.trim_end_matches('/');
    assert_eq!(
        lines,
        [
            format!("data.images: {root}/labels.txt is neither a directory (ImageFolder) nor a .csv manifest"),
            format!("data.hierarchy: {root}/world is a directory, not a file"),
            format!("storage.root: {root}/tiny_cnn.safetensors is a file, not a directory"),
        ]
    );
}

#[test]
fn a_saliency_that_is_constant_at_the_layer_is_warned_about() {
    let world = World::new();
    // tiny_cnn's features.7 feeds only global average pooling: plain gradient (the default)
    // is the same at every position there.
    let warnings = super::warnings(&world.parse(MINIMAL).unwrap());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("extract.method: gradient at tiny_cnn features.7 is the same"),
        "{warnings:?}"
    );
    for method in ["guided_backprop", "smoothgrad"] {
        let text = format!("{MINIMAL}[extract]\nmethod = \"{method}\"\n");
        assert_eq!(
            super::warnings(&world.parse(&text).unwrap()).len(),
            1,
            "{method}"
        );
    }
    for method in ["gradient_x_activation", "integrated_gradients"] {
        let text = format!("{MINIMAL}[extract]\nmethod = \"{method}\"\n");
        assert!(
            super::warnings(&world.parse(&text).unwrap()).is_empty(),
            "{method}"
        );
    }
    // An earlier layer varies with position.
    let text = MINIMAL.replace("features.7", "features.4");
    assert!(super::warnings(&world.parse(&text).unwrap()).is_empty());
}

#[test]
fn guided_backprop_on_a_network_without_relu_is_a_problem_of_the_method() {
    let world = World::new();
    for (arch, layer, nonlinearity) in [
        ("efficientnet_b0", "features.4", "SiLU"),
        ("convnext_tiny", "features.5.3", "GELU"),
    ] {
        let model = MINIMAL
            .replace("tiny_cnn\"", &format!("{arch}\""))
            .replace("features.7", layer);
        let text = format!("{model}[extract]\nmethod = \"guided_backprop\"\n");
        let problems = world.problems(&text);
        assert_eq!(fields(&problems), ["extract.method"], "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains(&format!("{arch} uses {nonlinearity}")),
            "{problems:?}"
        );
        // Every other method is fine there.
        let text = format!("{model}[extract]\nmethod = \"smoothgrad\"\n");
        assert!(world.parse(&text).is_ok(), "{arch}");
    }
}

#[test]
fn several_layers_are_sorted_shallow_to_deep_and_checked() {
    let world = World::new();
    let several =
        |list: &str| MINIMAL.replace("layer = \"features.7\"", &format!("layers = [{list}]"));
    let spec = world
        .parse(&several(r#""features.7", "features.1", "features.4""#))
        .unwrap();
    assert_eq!(
        spec.model.layers,
        ["features.1", "features.4", "features.7"]
    );
    assert_eq!(spec.model.layer, "features.1", "the shallowest");
    assert_eq!(spec.model.analysed_layers(), spec.model.layers);
    // The spec as workers and the journal get it reads back the same.
    assert_eq!(JobSpec::from_json(&spec.to_json()).unwrap(), spec);
    let one = world.parse(MINIMAL).unwrap();
    assert!(one.model.layers.is_empty() && !one.to_json().contains("\"layers\""));
    assert_eq!(one.model.analysed_layers(), ["features.7"]);

    for (list, field, says) in [
        (r#""features.7""#, "model.layers", "two layers or more"),
        (
            r#""features.7", "features.9""#,
            "model.layers",
            "no layer \"features.9\"",
        ),
        (
            r#""features.7", "features.7""#,
            "model.layers",
            "the same layer",
        ),
    ] {
        let problems = world.problems(&several(list));
        assert_eq!(fields(&problems), [field], "{list}: {problems:?}");
        assert!(problems[0].message.contains(says), "{problems:?}");
    }
    // Two points of one Inception block do not share a pass.
    let inception = several(r#""Mixed_6b.branch1x1", "Mixed_6b.branch7x7_2""#)
        .replace("tiny_cnn\"", "inception_v3\"");
    let problems = world.problems(&inception);
    assert_eq!(fields(&problems), ["model.layers"], "{problems:?}");
    assert!(
        problems[0].message.contains("both inside Mixed_6b"),
        "{problems:?}"
    );
    let both = MINIMAL.replace(
        "layer = \"features.7\"",
        "layer = \"features.7\"\nlayers = [\"features.1\", \"features.4\"]",
    );
    let problems = world.problems(&both);
    assert_eq!(fields(&problems), ["model.layer"], "{problems:?}");
    assert!(problems[0].message.contains("not both"), "{problems:?}");
}

#[test]
fn a_vit_crop_must_be_a_multiple_of_its_patch() {
    let world = World::new();
    let vit = MINIMAL
        .replace("tiny_cnn\"", "vit_b_16\"")
        .replace("features.7", "encoder.layers.encoder_layer_3");
    assert!(world.parse(&vit).is_ok(), "224, its default crop");
    let text = vit.replace("[data]", "resize = 100\ncrop = 100\n\n[data]");
    let problems = world.problems(&text);
    assert_eq!(fields(&problems), ["model.crop"], "{problems:?}");
    assert!(
        problems[0].message.contains("multiple of 16"),
        "{problems:?}"
    );
}

//! Properties of the spec reader (proptest): arbitrary text and damaged specs are
//! problems, never panics; a valid spec reads as written, and reaches workers (as JSON)
//! unchanged. Few cases by default; `PROPTEST_CASES=N` runs N of each.

use std::fs;
use std::path::{Path, PathBuf};

use hint_common::ablation::{AblationSelection, Removal};
use hint_common::architecture::Architecture;
use hint_common::job::spec::{
    AblateSpec, ClassifySpec, DataSpec, EvaluateSpec, ExtractSpec, HierarchySpec, ModelSpec,
    SchedulerSpec, ShapleySpec, StorageSpec,
};
use hint_common::job::JobSpec;
use hint_common::regions::sample::Negatives;
use hint_common::regions::{ActivationType, Compression};
use hint_common::settings::{Aggregation, Baseline, MethodName, Mode};
use hint_common::shapley::{Quality, Replacement};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config;
use toml::{Table, Value};

use super::{parse, SpecError};

/// `cases` cases, unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> Config {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        Config::default()
    } else {
        Config::with_cases(cases)
    }
}

/// What a spec may point at, relative to the spec's directory.
const FILES: [&str; 4] = [
    "tiny_cnn.safetensors",
    "world/hierarchy.yaml",
    "labels.txt",
    "manifest.csv",
];
const DIRS: [&str; 4] = ["world/images", "wordnet", "annotations", "masks"];

/// A directory holding [`FILES`] and [`DIRS`].
fn world() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in DIRS {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    for f in FILES {
        fs::create_dir_all(dir.path().join(f).parent().unwrap()).unwrap();
        fs::write(dir.path().join(f), "x").unwrap();
    }
    dir
}

/// A float in `low..high`: uniform, or close to `low` by any power of two (full-precision
/// mantissas either way, the floats whose decimal spelling is longest).
fn float_in(low: f64, high: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        low..high,
        (1u64..1 << 53, 0i32..1000).prop_map(move |(m, k)| {
            low + (high - low) * (m as f64 / (1u64 << 53) as f64) * 2f64.powi(-k)
        }),
    ]
    .prop_filter("in range", move |x| (low..high).contains(x))
}

fn positive() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NORMAL, POSITIVE, SUBNORMAL};
    prop_oneof![1e-12..10.0f64, (POSITIVE | NORMAL | SUBNORMAL)]
}

/// An integer of TOML's range (i64) at least `min`.
fn at_least(min: i64) -> impl Strategy<Value = i64> {
    prop_oneof![min..min + 100, min..i64::MAX]
}

fn model() -> impl Strategy<Value = ModelSpec> {
    (
        select(Architecture::ALL.to_vec()),
        any::<Index>(),
        any::<bool>(),
        1u32..2048,
        any::<Index>(),
    )
        .prop_map(|(arch, layer, sized, resize, crop)| {
            let layers = arch.layer_names();
            let (resize, crop) = if sized {
                (Some(resize), Some(1 + crop.index(resize as usize) as u32))
            } else {
                (None, None)
            };
            ModelSpec {
                architecture: arch.name().into(),
                weights: FILES[0].into(),
                layer: layers[layer.index(layers.len())].clone(),
                layers: Vec::new(),
                resize,
                crop,
            }
        })
}

fn data() -> impl Strategy<Value = DataSpec> {
    let hierarchy = prop_oneof![
        Just(HierarchySpec::File {
            path: FILES[1].into()
        }),
        (
            any::<bool>(),
            proptest::collection::vec("[a-z0-9._ ]{1,10}", 0..3),
            proptest::option::of(1u64..i64::MAX as u64),
            any::<bool>(),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
        )
            .prop_map(
                |(dir, roots, min_images, collapse, max_depth, drop_uncovered)| {
                    HierarchySpec::Wordnet {
                        dir: dir.then(|| DIRS[1].into()),
                        roots,
                        min_images,
                        collapse,
                        max_depth,
                        drop_uncovered,
                    }
                }
            ),
    ];
    (select(vec![DIRS[0], FILES[3]]), any::<bool>(), hierarchy).prop_map(
        |(images, labels, hierarchy)| DataSpec {
            images: images.into(),
            labels: labels.then(|| FILES[2].into()),
            hierarchy,
        },
    )
}

fn extract() -> impl Strategy<Value = ExtractSpec> {
    (
        (
            select(MethodName::ALL.to_vec()),
            at_least(1),
            prop_oneof![Just(0.0), positive()],
            at_least(1),
        ),
        select(vec![Baseline::Zero, Baseline::Black]),
        select(Aggregation::ALL.to_vec()),
        float_in(0.0, 1.0),
        prop_oneof![Just(1.0), float_in(0.0, 1.0)],
        (
            select(vec![ActivationType::F32, ActivationType::F16]),
            select(vec![Compression::Zstd, Compression::Lz4]),
        ),
        at_least(1),
        proptest::option::of(at_least(1)),
    )
        .prop_map(
            |(
                (method, samples, noise, steps),
                baseline,
                aggregation,
                threshold,
                background_ratio,
                (activation_type, compression),
                batch_size,
                images_per_task,
            )| ExtractSpec {
                method,
                samples: samples as usize,
                noise,
                steps: steps as usize,
                baseline,
                aggregation,
                // The spec reads a number and keeps it as f32.
                threshold: threshold as f32,
                background_ratio,
                activation_type,
                compression,
                batch_size: batch_size as usize,
                images_per_task: images_per_task.map(|n| n as u64),
            },
        )
}

fn classify() -> impl Strategy<Value = ClassifySpec> {
    (
        1..=u32::MAX,
        float_in(0.0, 1.0).prop_filter("not 0", |h| *h > 0.0),
        select(vec![
            Negatives::Mixed,
            Negatives::Background,
            Negatives::Others,
            Negatives::Siblings,
        ]),
        positive(),
        at_least(1),
        positive(),
        at_least(1),
    )
        .prop_map(
            |(max_per_class, holdout, negatives, l2, iterations, tolerance, per_task)| {
                ClassifySpec {
                    max_per_class: max_per_class as usize,
                    holdout,
                    negatives,
                    l2,
                    iterations: iterations as usize,
                    tolerance,
                    concepts_per_task: per_task as usize,
                }
            },
        )
}

fn shapley() -> impl Strategy<Value = ShapleySpec> {
    (
        (
            select(vec![Mode::Fixed, Mode::Retrain]),
            select(Quality::ALL.to_vec()),
            select(vec![
                Replacement::Marginal,
                Replacement::Mean,
                Replacement::Zero,
            ]),
            any::<bool>(),
            1u64..1 << 40,
            any::<Index>(),
        ),
        (
            0u8..3,
            positive(),
            1usize..1 << 20,
            float_in(0.5, 1.0).prop_filter("not 0.5", |c| *c > 0.5),
            proptest::option::of(prop_oneof![Just(0.0), positive()]),
        ),
        (
            at_least(1),
            positive(),
            at_least(0),
            at_least(1),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (mode, quality, replacement, antithetic, permutations, per_task),
                (rule, stderr, top_k, confidence, truncation),
                (retrain_iterations, retrain_l2, fit_regions, top, sweep_on_device),
            )| {
                // Antithetic: whole pairs, so at least 2 permutations and an even round.
                let permutations = if antithetic {
                    permutations.max(2)
                } else {
                    permutations
                };
                let mut per_task = 1 + per_task.index(permutations as usize) as u64;
                if antithetic && per_task % 2 == 1 {
                    per_task = if per_task == permutations {
                        per_task - 1
                    } else {
                        per_task + 1
                    };
                }
                ShapleySpec {
                    mode,
                    quality,
                    replacement,
                    antithetic,
                    permutations,
                    permutations_per_task: per_task,
                    until_stderr: (rule == 1).then_some(stderr),
                    until_top_k: (rule == 2).then_some(top_k),
                    confidence,
                    truncation,
                    retrain_iterations: retrain_iterations as usize,
                    retrain_l2,
                    retrain_fit_regions: fit_regions as usize,
                    top: top as usize,
                    sweep_on_device,
                }
            },
        )
}

fn fractions() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(1u32..=100, 1..5)
}

fn evaluate() -> impl Strategy<Value = EvaluateSpec> {
    (
        any::<bool>(),
        fractions(),
        at_least(1),
        1..=u32::MAX,
        at_least(100),
        proptest::option::of(select(vec![DIRS[0], FILES[3]])),
    )
        .prop_map(
            |(masks, fractions, per_concept, random_draws, bootstrap, images)| EvaluateSpec {
                annotations: DIRS[2].into(),
                masks: masks.then(|| DIRS[3].into()),
                fractions,
                images_per_concept: per_concept as usize,
                random_draws,
                bootstrap: bootstrap as usize,
                images: images.map(PathBuf::from),
            },
        )
}

fn ablate() -> impl Strategy<Value = AblateSpec> {
    (
        proptest::option::of(select(vec![DIRS[0], FILES[3]])),
        at_least(2),
        fractions(),
        proptest::collection::vec(select(Removal::ALL.to_vec()), 1..3),
        proptest::collection::vec(select(AblationSelection::ALL.to_vec()), 0..4),
        select(AblationSelection::ALL[1..].to_vec()),
        1..=u32::MAX,
        prop_oneof![Just(0), at_least(100)],
    )
        .prop_map(
            |(
                images,
                max_images,
                fractions,
                removals,
                mut selections,
                baseline,
                random_draws,
                bootstrap,
            )| {
                selections.push(baseline);
                AblateSpec {
                    images: images.map(PathBuf::from),
                    max_images: max_images as usize,
                    fractions,
                    removals,
                    selections,
                    random_draws,
                    bootstrap: bootstrap as usize,
                }
            },
        )
}

/// A valid spec with its paths relative to the spec's directory (the reader makes them
/// absolute: [`absolute`]).
fn valid_spec() -> impl Strategy<Value = JobSpec> {
    (
        (
            "[\\PC]{1,12}".prop_filter("not blank", |s| !s.trim().is_empty()),
            0..=i64::MAX as u64,
            model(),
            data(),
        ),
        (extract(), classify(), shapley()),
        (
            select(vec!["runs", "runs/deeper", "world/images"]),
            1..=u32::MAX,
            proptest::option::of(evaluate()),
            proptest::option::of(ablate()),
        ),
    )
        .prop_map(
            |(
                (name, seed, model, data),
                (extract, classify, shapley),
                (root, max_attempts, evaluate, ablate),
            )| {
                JobSpec {
                    name,
                    seed,
                    model,
                    data,
                    extract,
                    classify,
                    shapley,
                    storage: StorageSpec { root: root.into() },
                    scheduler: SchedulerSpec { max_attempts },
                    evaluate,
                    ablate,
                }
            },
        )
        // Guided backpropagation without ReLUs, or a ViT's crop that is no multiple of its
        // patch, is a problem of the spec.
        .prop_filter("a method and crop the model can run", |spec| {
            let arch = Architecture::parse(&spec.model.architecture).expect("generated");
            let method = spec.extract.saliency().expect("generated");
            let crop = spec.model.crop.unwrap_or(arch.default_input().crop);
            method.unsupported_on(arch).is_none() && arch.crop_problem(crop).is_none()
        })
}

/// `spec` with every path joined to the (canonical) directory `base`, as the reader
/// resolves them.
fn absolute(spec: &JobSpec, base: &Path) -> JobSpec {
    let base = base.canonicalize().unwrap();
    let at = |p: &PathBuf| base.join(p);
    let mut s = spec.clone();
    s.model.weights = at(&s.model.weights);
    s.data.images = at(&s.data.images);
    s.data.labels = s.data.labels.as_ref().map(at);
    match &mut s.data.hierarchy {
        HierarchySpec::File { path } => *path = at(path),
        HierarchySpec::Wordnet { dir, .. } => *dir = dir.as_ref().map(at),
    }
    s.storage.root = at(&s.storage.root);
    if let Some(e) = &mut s.evaluate {
        e.annotations = at(&e.annotations);
        e.masks = e.masks.as_ref().map(at);
        e.images = e.images.as_ref().map(at);
    }
    if let Some(a) = &mut s.ablate {
        a.images = a.images.as_ref().map(at);
    }
    s
}

fn path_value(p: &Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

fn int(v: impl TryInto<i64>) -> Value {
    Value::Integer(v.try_into().ok().expect("generated within TOML's range"))
}

/// `spec` (paths relative) as the TOML table a user writes: every key given.
fn to_toml(spec: &JobSpec) -> Table {
    let mut root = Table::new();
    let mut section = |name: &str, pairs: Vec<(&str, Value)>| {
        let table: Table = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        root.insert(name.into(), Value::Table(table));
    };
    section(
        "job",
        vec![
            ("name", Value::String(spec.name.clone())),
            ("seed", int(spec.seed)),
        ],
    );
    let m = &spec.model;
    let mut model = vec![
        ("architecture", Value::String(m.architecture.clone())),
        ("weights", path_value(&m.weights)),
        ("layer", Value::String(m.layer.clone())),
    ];
    model.extend(m.resize.map(|r| ("resize", int(r))));
    model.extend(m.crop.map(|c| ("crop", int(c))));
    section("model", model);

    let d = &spec.data;
    let mut data = vec![("images", path_value(&d.images))];
    data.extend(d.labels.as_ref().map(|l| ("labels", path_value(l))));
    match &d.hierarchy {
        HierarchySpec::File { path } => data.push(("hierarchy", path_value(path))),
        HierarchySpec::Wordnet {
            dir,
            roots,
            min_images,
            collapse,
            max_depth,
            drop_uncovered,
        } => {
            data.push(("hierarchy", Value::String("wordnet".into())));
            let mut wordnet: Table = [
                (
                    "roots",
                    Value::Array(roots.iter().cloned().map(Value::String).collect()),
                ),
                ("collapse", Value::Boolean(*collapse)),
                ("drop_uncovered", Value::Boolean(*drop_uncovered)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if let Some(dir) = dir {
                wordnet.insert("dir".into(), path_value(dir));
            }
            if let Some(n) = min_images {
                wordnet.insert("min_images".into(), int(*n));
            }
            if let Some(n) = max_depth {
                wordnet.insert("max_depth".into(), int(*n));
            }
            data.push(("wordnet", Value::Table(wordnet)));
        }
    }
    section("data", data);

    let e = &spec.extract;
    section(
        "extract",
        vec![
            ("method", Value::String(e.method.name().into())),
            ("samples", int(e.samples)),
            ("noise", Value::Float(e.noise)),
            ("steps", int(e.steps)),
            ("baseline", Value::String(e.baseline.to_string())),
            ("aggregation", Value::String(e.aggregation.name().into())),
            ("threshold", Value::Float(f64::from(e.threshold))),
            ("background_ratio", Value::Float(e.background_ratio)),
            (
                "activation_type",
                Value::String(e.activation_type.to_string()),
            ),
            ("compression", Value::String(e.compression.to_string())),
            ("batch_size", int(e.batch_size)),
        ]
        .into_iter()
        .chain(e.images_per_task.map(|n| ("images_per_task", int(n))))
        .collect(),
    );
    let c = &spec.classify;
    section(
        "classify",
        vec![
            ("max_per_class", int(c.max_per_class)),
            ("holdout", Value::Float(c.holdout)),
            ("negatives", Value::String(c.negatives.name().into())),
            ("l2", Value::Float(c.l2)),
            ("iterations", int(c.iterations)),
            ("tolerance", Value::Float(c.tolerance)),
            ("concepts_per_task", int(c.concepts_per_task)),
        ],
    );
    let s = &spec.shapley;
    let mut shapley = vec![
        ("mode", Value::String(s.mode.to_string())),
        ("quality", Value::String(s.quality.name().into())),
        ("replacement", Value::String(s.replacement.name().into())),
        ("antithetic", Value::Boolean(s.antithetic)),
        ("permutations", int(s.permutations)),
        ("permutations_per_task", int(s.permutations_per_task)),
        ("confidence", Value::Float(s.confidence)),
        ("retrain_iterations", int(s.retrain_iterations)),
        ("retrain_l2", Value::Float(s.retrain_l2)),
        ("retrain_fit_regions", int(s.retrain_fit_regions)),
        ("top", int(s.top)),
        ("sweep_on_device", Value::Boolean(s.sweep_on_device)),
    ];
    shapley.extend(s.until_stderr.map(|v| ("until_stderr", Value::Float(v))));
    shapley.extend(s.until_top_k.map(|v| ("until_top_k", int(v))));
    shapley.extend(s.truncation.map(|v| ("truncation", Value::Float(v))));
    section("shapley", shapley);
    section("storage", vec![("root", path_value(&spec.storage.root))]);
    section(
        "scheduler",
        vec![("max_attempts", int(spec.scheduler.max_attempts))],
    );
    let ints = |v: &[u32]| Value::Array(v.iter().map(|&x| int(x)).collect());
    if let Some(e) = &spec.evaluate {
        let mut evaluate = vec![
            ("annotations", path_value(&e.annotations)),
            ("fractions", ints(&e.fractions)),
            ("images_per_concept", int(e.images_per_concept)),
            ("random_draws", int(e.random_draws)),
            ("bootstrap", int(e.bootstrap)),
        ];
        evaluate.extend(e.masks.as_ref().map(|m| ("masks", path_value(m))));
        evaluate.extend(e.images.as_ref().map(|i| ("images", path_value(i))));
        section("evaluate", evaluate);
    }
    if let Some(a) = &spec.ablate {
        let names =
            |v: Vec<&str>| Value::Array(v.into_iter().map(|n| Value::String(n.into())).collect());
        let mut ablate = vec![
            ("max_images", int(a.max_images)),
            ("fractions", ints(&a.fractions)),
            (
                "removals",
                names(a.removals.iter().map(|r| r.name()).collect()),
            ),
            (
                "selections",
                names(a.selections.iter().map(|s| s.name()).collect()),
            ),
            ("random_draws", int(a.random_draws)),
            ("bootstrap", int(a.bootstrap)),
        ];
        ablate.extend(a.images.as_ref().map(|i| ("images", path_value(i))));
        section("ablate", ablate);
    }
    root
}

/// Values of every TOML type, the edges of the ranges the reader checks, and names the
/// engines know.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        select(vec![
            "",
            "gradient",
            "smoothgrad",
            "wordnet",
            "zero",
            "f16",
            "retrain",
            "logit",
            "random",
            "world/images",
            "tiny_cnn.safetensors",
            "manifest.csv",
            "/",
            "..",
            "file:///nowhere",
            "ftp://host/x",
            "runs",
        ])
        .prop_map(|s| Value::String(s.into())),
        select(vec![
            0i64,
            1,
            2,
            3,
            -1,
            100,
            101,
            65536,
            i64::MAX,
            i64::MIN,
            4_294_967_296
        ])
        .prop_map(Value::Integer),
        select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.5,
            1.0,
            1e300,
            5e-324,
            0.4999999
        ])
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(Value::Integer),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// One change to a spec's table.
#[derive(Debug, Clone)]
enum Mutation {
    /// Set an existing key of a section (or of the root) to a value.
    Set(Index, Index, Value),
    /// Add a key (a near miss of a known one, or anything) to a section.
    Add(Index, String, Value),
    /// Remove a key of a section.
    RemoveKey(Index, Index),
    /// Remove a whole section.
    RemoveSection(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>(), any_value()).prop_map(|(s, k, v)| Mutation::Set(s, k, v)),
        1 => (
            any::<Index>(),
            prop_oneof![
                select(vec!["treshold", "method", "wordnet", "fractions", "images", "name", "model"]).prop_map(String::from),
                "[a-zA-Z_.-]{1,10}",
            ],
            any_value(),
        )
            .prop_map(|(s, k, v)| Mutation::Add(s, k, v)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(s, k)| Mutation::RemoveKey(s, k)),
        1 => any::<Index>().prop_map(Mutation::RemoveSection),
    ]
}

impl Mutation {
    fn apply(&self, root: &mut Table) {
        let nth = |t: &Table, i: &Index| {
            (!t.is_empty())
                .then(|| t.keys().nth(i.index(t.len())).cloned())
                .flatten()
        };
        let Some(name) = (match self {
            Mutation::Set(s, ..)
            | Mutation::Add(s, ..)
            | Mutation::RemoveKey(s, _)
            | Mutation::RemoveSection(s) => nth(root, s),
        }) else {
            return;
        };
        match self {
            Mutation::RemoveSection(_) => {
                root.remove(&name);
            }
            Mutation::Set(_, k, _) | Mutation::RemoveKey(_, k) => match root.get_mut(&name) {
                Some(Value::Table(t)) => {
                    if let Some(key) = nth(t, k) {
                        match self.value() {
                            Some(v) => t.insert(key, v),
                            None => t.remove(&key),
                        };
                    }
                }
                _ => {
                    match self.value() {
                        Some(v) => root.insert(name, v),
                        None => root.remove(&name),
                    };
                }
            },
            Mutation::Add(_, key, v) => match root.get_mut(&name) {
                Some(Value::Table(t)) => {
                    t.insert(key.clone(), v.clone());
                }
                _ => {
                    root.insert(key.clone(), v.clone());
                }
            },
        }
    }

    fn value(&self) -> Option<Value> {
        match self {
            Mutation::Set(_, _, v) | Mutation::Add(_, _, v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Pieces of TOML specs.
const TOML_TOKENS: &[&str] = &[
    "[model]",
    "[data]",
    "[data.wordnet]",
    "[shapley]",
    "[[model]]",
    "[evaluate]",
    "\n",
    "architecture = ",
    "\"tiny_cnn\"",
    "layer = \"features.7\"",
    " = ",
    "=",
    "\"",
    "'''",
    "\"\"\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ".",
    "1979-05-27T07:32:00Z",
    "inf",
    "nan",
    "-0.0",
    "0x10",
    "1_000",
    "9223372036854775808",
    "true",
    "#",
    "\\u0000",
    "a.b.c = 1",
];

/// Reads `text`: a syntax error on a line of the text, problems with messages, or a spec.
fn check(text: &str, base: &Path) -> Result<Option<JobSpec>, TestCaseError> {
    match parse(text, base, "job.toml") {
        Ok(spec) => Ok(Some(spec)),
        Err(SpecError::Syntax { line, message, .. }) => {
            prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}");
            prop_assert!(!message.is_empty());
            Ok(None)
        }
        Err(SpecError::Invalid { problems, .. }) => {
            prop_assert!(!problems.is_empty());
            for p in &problems {
                prop_assert!(!p.message.is_empty(), "{p:?}");
            }
            Ok(None)
        }
        Err(e @ SpecError::Read { .. }) => Err(TestCaseError::fail(format!("{e}"))),
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// A valid spec reads as written (every path made absolute), and its JSON — what
    /// workers receive — reads back equal, floats bit for bit.
    #[test]
    fn valid_specs_read_as_written_and_round_trip(spec in valid_spec()) {
        let world = world();
        let text = toml::to_string(&to_toml(&spec)).unwrap();
        let read = parse(&text, world.path(), "job.toml");
        let expected = absolute(&spec, world.path());
        prop_assert!(read.is_ok(), "{}\n{}", read.unwrap_err(), text);
        let read = read.unwrap();
        prop_assert_eq!(&read, &expected, "{}", text);
        let json = read.to_json();
        let back = JobSpec::from_json(&json);
        prop_assert_eq!(back.as_ref().ok(), Some(&read), "{:?}\n{}", back.as_ref().err(), json);
    }

    /// A valid spec with keys changed to values of any type (out of range, unknown names,
    /// NaN, missing files), keys and sections removed or added, and the text edited: a
    /// syntax error or problems, never a panic; what still reads, reads back from JSON.
    #[test]
    fn damaged_specs_are_problems_not_panics(
        spec in valid_spec(),
        mutations in proptest::collection::vec(mutation(), 1..5),
        edits in proptest::option::of(edits()),
    ) {
        let world = world();
        let mut table = to_toml(&spec);
        for m in &mutations {
            m.apply(&mut table);
        }
        let mut text = toml::to_string(&table).unwrap();
        if let Some(edits) = &edits {
            text = apply(&text, edits);
        }
        if let Some(read) = check(&text, world.path())? {
            prop_assert_eq!(JobSpec::from_json(&read.to_json()).ok(), Some(read));
        }
    }

    /// Arbitrary text and TOML token soup.
    #[test]
    fn arbitrary_text_is_problems_not_panics(
        text in any::<String>(),
        tokens in proptest::collection::vec(select(TOML_TOKENS.to_vec()), 0..40),
    ) {
        let world = world();
        check(&text, world.path())?;
        check(&tokens.concat(), world.path())?;
    }
}

/// Text edits: remove, insert (a TOML piece or anything), repeat.
fn edits() -> impl Strategy<Value = Vec<(Index, u8, String)>> {
    let insert = prop_oneof![
        3 => select(TOML_TOKENS.to_vec()).prop_map(String::from),
        1 => any::<String>(),
    ];
    proptest::collection::vec((any::<Index>(), 0u8..3, insert), 1..4)
}

fn apply(text: &str, edits: &[(Index, u8, String)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, kind, s) in edits {
        let i = at.index(chars.len() + 1);
        let end = (i + s.chars().count().max(1)).min(chars.len());
        match kind {
            0 => {
                chars.drain(i..end);
            }
            1 => {
                chars.splice(i..i, s.chars());
            }
            _ => {
                let copy = chars[i..end].to_vec();
                chars.splice(end..end, copy);
            }
        }
    }
    chars.into_iter().collect()
}

//! One function per section of the spec: read its keys (defaults as in the one-machine
//! commands' flags) and check what they mean — names through the engines' own parsers,
//! ranges, files that must exist. Every problem is recorded in the section; nothing stops.

use std::fmt::Display;
use std::path::{Component, Path, PathBuf};

use hint_common::ablation::{self, AblationSelection, Removal};
use hint_common::architecture::Architecture;
use hint_common::images::shards;
use hint_common::job::spec::{
    AblateSpec, ClassifySpec, DataSpec, EvaluateSpec, ExtractSpec, HierarchySpec, ModelSpec,
    SchedulerSpec, ShapleySpec, StorageSpec,
};
use hint_common::regions::sample::Negatives;
use hint_common::regions::{ActivationType, Compression};
use hint_common::settings::Aggregation;
use hint_common::settings::Mode;
use hint_common::settings::{Baseline, MethodName};
use hint_common::shapley::{Quality, Replacement};
use hint_common::storage;

use super::fields::Section;

/// The value of `data.hierarchy` that selects WordNet 3.0.
pub(super) const WORDNET: &str = "wordnet";

/// The message of an engine's parse error, without the worker's generic prefix.
fn message(error: impl Display) -> String {
    let text = error.to_string();
    text.strip_prefix("invalid configuration: ")
        .map(str::to_string)
        .unwrap_or(text)
}

/// Makes a spec path absolute against the spec file's directory (and canonical as far as
/// it exists, so a job does not depend on the coordinator's working directory).
pub(super) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let location = storage::location(path);
    if storage::is_remote(&location) {
        return location;
    }
    let joined = base_dir.join(location);
    // Canonicalise the longest existing ancestor and keep the rest as written: a storage
    // root need not exist yet.
    let mut rest = Vec::new();
    let mut head = joined.as_path();
    loop {
        if let Ok(canonical) = head.canonicalize() {
            return rest.iter().rev().fold(canonical, |p, c| p.join(c));
        }
        match (head.parent(), head.components().next_back()) {
            (Some(parent), Some(Component::Normal(last))) => {
                rest.push(last.to_os_string());
                head = parent;
            }
            _ => return joined,
        }
    }
}

/// A path key resolved against `base_dir`.
fn path(section: &mut Section<'_>, key: &'static str, base_dir: &Path) -> Option<PathBuf> {
    section.string(key).map(|p| resolve(base_dir, &p))
}

fn required_path(section: &mut Section<'_>, key: &'static str, base_dir: &Path) -> Option<PathBuf> {
    section.required_string(key).map(|p| resolve(base_dir, &p))
}

/// What is at a location: asked of the object store for a URL (any failure to ask is the
/// problem reported).
enum Found {
    File,
    Dir,
    Nothing,
}

fn look(path: &Path) -> Result<Found, String> {
    if storage::is_remote(path) {
        let text = path.to_string_lossy();
        let scheme = text.split("://").next().unwrap_or_default();
        if scheme != "s3" {
            return Err(format!(
                "{scheme}:// is not supported: give a local path or an s3:// URL"
            ));
        }
        if storage::exists(path).map_err(|e| e.to_string())? {
            Ok(Found::File)
        } else if storage::is_dir(path).map_err(|e| e.to_string())? {
            Ok(Found::Dir)
        } else {
            Ok(Found::Nothing)
        }
    } else if path.is_file() {
        Ok(Found::File)
    } else if path.is_dir() {
        Ok(Found::Dir)
    } else {
        Ok(Found::Nothing)
    }
}

/// A problem unless `path` is an existing regular file (or object).
fn must_be_file(section: &mut Section<'_>, key: &'static str, path: &Path) {
    match look(path) {
        Err(problem) => section.problem(key, problem),
        Ok(Found::File) => {}
        Ok(Found::Dir) => section.problem(
            key,
            format!("{} is a directory, not a file", path.display()),
        ),
        Ok(Found::Nothing) => section.problem(key, format!("no such file: {}", path.display())),
    }
}

/// `[model]`: the architecture by the worker's parser, a layer it has, existing weights.
pub(super) fn model(s: &mut Section<'_>, base_dir: &Path) -> ModelSpec {
    let architecture = s.required_string("architecture");
    let weights = required_path(s, "weights", base_dir);
    let several = s.strings("layers");
    let layer = if several.is_empty() {
        s.required_string("layer")
    } else {
        let one = s.string("layer");
        if one.is_some() {
            s.problem(
                "layer",
                "give model.layer (one layer) or model.layers (several), not both",
            );
        }
        one
    };
    let resize = s.integer::<u32>("resize", 1);
    let crop = s.integer::<u32>("crop", 1);

    let arch = architecture
        .as_deref()
        .and_then(|name| match Architecture::parse(name) {
            Ok(arch) => Some(arch),
            Err(e) => {
                s.problem("architecture", message(e));
                None
            }
        });
    if let Some(weights) = &weights {
        must_be_file(s, "weights", weights);
    }
    if let (Some(arch), Some(layer)) = (arch, &layer) {
        let layers = arch.layer_names();
        if !layers.contains(layer) {
            s.problem("layer", unknown_layer(arch, layer));
        }
    }
    let several = match arch {
        Some(arch) if !several.is_empty() => several_layers(s, arch, several),
        _ => Vec::new(),
    };
    // With several layers, `layer` holds the shallowest (where extraction's backward stops).
    let layer = several.first().cloned().or(layer);
    // The extractor needs 0 < crop ≤ resize, with the architecture's sizes for the one
    // not given.
    let defaults = arch.map(Architecture::default_input);
    let effective_resize = resize.or(defaults.map(|d| d.resize));
    let effective_crop = crop.or(defaults.map(|d| d.crop));
    if let (Some(r), Some(c)) = (effective_resize, effective_crop) {
        if c > r {
            // Blame the size the user wrote; the other one is the architecture's.
            let arch_name = arch.map_or("", Architecture::name);
            match (resize.is_some(), crop.is_some()) {
                (true, true) => s.problem("crop", format!("crop {c} is larger than resize {r}")),
                (false, true) => s.problem(
                    "crop",
                    format!("crop {c} is larger than resize {r} (the resize of {arch_name})"),
                ),
                (true, false) => s.problem(
                    "resize",
                    format!("resize {r} is smaller than crop {c} (the crop of {arch_name})"),
                ),
                (false, false) => {}
            }
        }
        if let Some(why) = arch.and_then(|a| a.crop_problem(c)) {
            s.problem("crop", why);
        }
    }
    ModelSpec {
        architecture: architecture.unwrap_or_default(),
        weights: weights.unwrap_or_default(),
        layer: layer.unwrap_or_default(),
        layers: several,
        resize,
        crop,
    }
}

/// The problem of a layer name `arch` does not have: why, where hint knows, and the names
/// it has.
fn unknown_layer(arch: Architecture, layer: &str) -> String {
    let why = arch
        .not_addressable(layer)
        .map(|w| format!("{w}; "))
        .unwrap_or_default();
    format!(
        "no layer \"{layer}\" in {arch} ({why}layers: {})",
        arch.layer_names().join(", ")
    )
}

/// `model.layers`: at least two layers of `arch`, distinct, each known; sorted shallow to
/// deep (empty when there is a problem).
fn several_layers(s: &mut Section<'_>, arch: Architecture, names: Vec<String>) -> Vec<String> {
    if names.len() < 2 {
        s.problem(
            "layers",
            "give two layers or more (one layer is model.layer)",
        );
        return Vec::new();
    }
    let mut keyed = Vec::new();
    for name in names {
        match arch.depth_of(&name) {
            Some(depth) => keyed.push((depth, name)),
            None => s.problem("layers", unknown_layer(arch, &name)),
        }
    }
    keyed.sort();
    for pair in keyed.windows(2) {
        if pair[0].0 == pair[1].0 {
            s.problem(
                "layers",
                format!("\"{}\" and \"{}\" are the same layer", pair[0].1, pair[1].1),
            );
            return Vec::new();
        }
    }
    if keyed.len() < 2 {
        return Vec::new();
    }
    let layers: Vec<String> = keyed.into_iter().map(|(_, name)| name).collect();
    if let Some(problem) = arch.pass_problem(&layers) {
        s.problem("layers", problem);
        return Vec::new();
    }
    layers
}

/// `[data]` and `[data.wordnet]`.
pub(super) fn data(s: &mut Section<'_>, base_dir: &Path) -> (DataSpec, Vec<super::Problem>) {
    let images = required_path(s, "images", base_dir);
    let labels = path(s, "labels", base_dir);
    let hierarchy = s.required_string("hierarchy");

    if let Some(images) = images.as_ref().filter(|i| shards::names_shards(i)) {
        match shards::shard_paths(images) {
            Err(problem) => s.problem("images", problem.to_string()),
            Ok(paths) => {
                let missing: Vec<String> = paths
                    .iter()
                    .filter_map(|shard| match look(shard) {
                        Ok(Found::File) => None,
                        Ok(Found::Dir) => Some(format!("{} is a directory", shard.display())),
                        Ok(Found::Nothing) => Some(format!("not found: {}", shard.display())),
                        Err(problem) => Some(problem),
                    })
                    .collect();
                if !missing.is_empty() {
                    let shown = missing.len().min(5);
                    let more = missing.len() - shown;
                    let mut problem = format!(
                        "{} of {} shard(s) unusable: {}",
                        missing.len(),
                        paths.len(),
                        missing[..shown].join("; ")
                    );
                    if more > 0 {
                        problem.push_str(&format!("; and {more} more"));
                    }
                    s.problem("images", problem);
                }
            }
        }
    } else if let Some(images) = &images {
        let is_csv = images
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        match look(images) {
            Err(problem) => s.problem("images", problem),
            Ok(Found::Nothing) => s.problem("images", format!("not found: {}", images.display())),
            Ok(Found::File) if !is_csv => s.problem(
                "images",
                format!(
                    "{} is neither a directory (ImageFolder) nor a .csv manifest",
                    images.display()
                ),
            ),
            Ok(_) => {}
        }
    }
    if let Some(labels) = &labels {
        must_be_file(s, "labels", labels);
    }

    let mut wordnet = s.section("wordnet");
    let dir = path(&mut wordnet, "dir", base_dir);
    let roots = wordnet.strings("roots");
    let min_images = wordnet.integer::<u64>("min_images", 1);
    let collapse = wordnet.bool_or("collapse", false);
    let max_depth = wordnet.integer::<u32>("max_depth", 0);
    let drop_uncovered = wordnet.bool_or("drop_uncovered", false);
    if let Some(dir) = &dir {
        if !dir.is_dir() {
            wordnet.problem("dir", format!("no such directory: {}", dir.display()));
        }
    }
    let is_wordnet = hierarchy.as_deref() == Some(WORDNET);
    if wordnet.is_present() && hierarchy.is_some() && !is_wordnet {
        wordnet.section_problem(format!(
            "only with hierarchy = \"{WORDNET}\" (this spec's hierarchy is a file)"
        ));
    }
    let wordnet_problems = wordnet.finish();

    let hierarchy = if is_wordnet {
        HierarchySpec::Wordnet {
            dir,
            roots,
            min_images,
            collapse,
            max_depth,
            drop_uncovered,
        }
    } else {
        let path = hierarchy.map(|h| resolve(base_dir, &h)).unwrap_or_default();
        if !path.as_os_str().is_empty() {
            let found = look(&path);
            if let Err(problem) = found {
                s.problem("hierarchy", problem);
            } else if let Ok(Found::File) = found {
                // Fine: the plan reads it (YAML/JSON hierarchy or concepts.json).
            } else if let Ok(Found::Dir) = found {
                s.problem(
                    "hierarchy",
                    format!("{} is a directory, not a file", path.display()),
                );
            } else {
                s.problem(
                    "hierarchy",
                    format!(
                        "no such file: {} (give a YAML/JSON hierarchy, a concepts.json, or \"{WORDNET}\")",
                        path.display()
                    ),
                );
            }
        }
        HierarchySpec::File { path }
    };
    let spec = DataSpec {
        images: images.unwrap_or_default(),
        labels,
        hierarchy,
    };
    (spec, wordnet_problems)
}

/// `[extract]`: `hint extract`'s settings, plus the shard size.
pub(super) fn extract(s: &mut Section<'_>) -> ExtractSpec {
    let d = ExtractSpec::default();
    let method = s.string_or("method", d.method.name());
    let samples = s.integer_or::<usize>("samples", d.samples, 1);
    let noise = s.number_or("noise", d.noise);
    let steps = s.integer_or::<usize>("steps", d.steps, 1);
    let baseline = s.string_or("baseline", &d.baseline.to_string());
    let aggregation = s.string_or("aggregation", d.aggregation.name());
    let threshold = s.number_or("threshold", f64::from(d.threshold));
    let background_ratio = s.number_or("background_ratio", d.background_ratio);
    let activation_type = s.string_or("activation_type", &d.activation_type.to_string());
    let compression = s.string_or("compression", &d.compression.to_string());
    let batch_size = s.integer_or::<usize>("batch_size", d.batch_size, 1);
    let images_per_task = s.integer::<u64>("images_per_task", 1);

    // The method's own parameters are checked below, field by field; here only its name.
    let method = MethodName::parse(&method)
        .map_err(|e| s.problem("method", message(e)))
        .unwrap_or(d.method);
    if !(noise.is_finite() && noise >= 0.0) {
        s.problem(
            "noise",
            format!("must be a finite number ≥ 0, found {noise}"),
        );
    }
    // A name that does not parse is reported; the default stands in so checking goes on.
    let baseline = Baseline::parse(&baseline)
        .map_err(|e| s.problem("baseline", message(e)))
        .unwrap_or(d.baseline);
    let aggregation = Aggregation::parse(&aggregation)
        .map_err(|e| s.problem("aggregation", message(e)))
        .unwrap_or(d.aggregation);
    for (key, value) in [
        ("threshold", threshold),
        ("background_ratio", background_ratio),
    ] {
        if !(0.0..=1.0).contains(&value) {
            s.problem(key, format!("must be in [0, 1], found {value}"));
        }
    }
    let activation_type = activation_type
        .parse::<ActivationType>()
        .map_err(|e| s.problem("activation_type", e))
        .unwrap_or(d.activation_type);
    let compression = compression
        .parse::<Compression>()
        .map_err(|e| s.problem("compression", e))
        .unwrap_or(d.compression);
    ExtractSpec {
        method,
        samples,
        noise,
        steps,
        baseline,
        aggregation,
        threshold: threshold as f32,
        background_ratio,
        activation_type,
        compression,
        batch_size,
        images_per_task,
    }
}

/// A problem unless `value` is a positive finite number.
fn positive(s: &mut Section<'_>, key: &'static str, value: f64) {
    if !(value > 0.0 && value.is_finite()) {
        s.problem(key, format!("must be a positive number, found {value}"));
    }
}

/// `[classify]`: `hint classify`'s settings, plus the concepts per train task.
pub(super) fn classify(s: &mut Section<'_>) -> ClassifySpec {
    // The sampler keeps per-label counts in 32 bits.
    let d = ClassifySpec::default();
    let max_per_class = s.integer_or::<u32>("max_per_class", d.max_per_class as u32, 1) as usize;
    let holdout = s.number_or("holdout", d.holdout);
    let negatives = s.string_or("negatives", d.negatives.name());
    let l2 = s.number_or("l2", d.l2);
    let iterations = s.integer_or::<usize>("iterations", d.iterations, 1);
    let tolerance = s.number_or("tolerance", d.tolerance);
    let concepts_per_task = s.integer_or::<usize>("concepts_per_task", d.concepts_per_task, 1);
    if !(holdout > 0.0 && holdout < 1.0) {
        s.problem(
            "holdout",
            format!("must be strictly between 0 and 1 (a fraction of the images), found {holdout}"),
        );
    }
    let negatives = negatives.parse::<Negatives>().unwrap_or_else(|e| {
        s.problem("negatives", e);
        d.negatives
    });
    positive(s, "l2", l2);
    positive(s, "tolerance", tolerance);
    ClassifySpec {
        max_per_class,
        holdout,
        negatives,
        l2,
        iterations,
        tolerance,
        concepts_per_task,
    }
}

/// `[shapley]`: `hint shapley`'s settings, plus the permutations per task.
pub(super) fn shapley(s: &mut Section<'_>) -> ShapleySpec {
    let d = ShapleySpec::default();
    let mode = s.string_or("mode", &d.mode.to_string());
    let quality = s.string_or("quality", d.quality.name());
    let replacement = s.string_or("replacement", d.replacement.name());
    let antithetic = s.bool_or("antithetic", d.antithetic);
    let permutations = s.integer_or::<u64>("permutations", d.permutations, 1);
    let per_task = s.integer::<u64>("permutations_per_task", 1);
    let until_stderr = s.number("until_stderr");
    let until_top_k = s.integer::<usize>("until_top_k", 1);
    let confidence = s.number_or("confidence", d.confidence);
    let truncation = s.number("truncation");
    let retrain_iterations = s.integer_or::<usize>("retrain_iterations", d.retrain_iterations, 1);
    let retrain_l2 = s.number_or("retrain_l2", d.retrain_l2);
    let retrain_fit_regions =
        s.integer_or::<usize>("retrain_fit_regions", d.retrain_fit_regions, 0);
    let top = s.integer_or::<usize>("top", d.top, 1);
    let sweep_on_device = s.bool_or("sweep_on_device", d.sweep_on_device);

    // A name that does not parse is reported; the default stands in so checking goes on.
    let mode = mode
        .parse::<Mode>()
        .map_err(|e| s.problem("mode", e))
        .unwrap_or(d.mode);
    let quality = quality
        .parse::<Quality>()
        .map_err(|e| s.problem("quality", e))
        .unwrap_or(d.quality);
    let replacement = replacement
        .parse::<Replacement>()
        .map_err(|e| s.problem("replacement", e))
        .unwrap_or(d.replacement);
    if let Some(per_task) = per_task {
        if antithetic && per_task % 2 == 1 {
            s.problem(
                "permutations_per_task",
                format!(
                    "must be even with antithetic = true (a pair is never split), found {per_task}"
                ),
            );
        }
        if per_task > permutations {
            s.problem(
                "permutations_per_task",
                format!("{per_task} is more than permutations = {permutations}"),
            );
        }
    }
    if let Some(bound) = until_stderr {
        positive(s, "until_stderr", bound);
    }
    if until_stderr.is_some() && until_top_k.is_some() {
        s.problem(
            "until_top_k",
            "give until_stderr or until_top_k, not both (one stopping rule)",
        );
    }
    if !(confidence > 0.5 && confidence < 1.0) {
        s.problem(
            "confidence",
            format!("must be in (0.5, 1), found {confidence}"),
        );
    }
    if let Some(t) = truncation {
        if !(t >= 0.0 && t.is_finite()) {
            s.problem(
                "truncation",
                format!("must be a finite number ≥ 0, found {t}"),
            );
        }
    }
    positive(s, "retrain_l2", retrain_l2);
    ShapleySpec {
        mode,
        quality,
        replacement,
        antithetic,
        permutations,
        // The default round is 20, fewer when fewer permutations are asked for, rounded up
        // to whole pairs (as the engine rounds `permutations` itself).
        permutations_per_task: per_task.unwrap_or_else(|| {
            let round = permutations.min(d.permutations_per_task);
            round + u64::from(antithetic && round % 2 == 1)
        }),
        until_stderr,
        until_top_k,
        confidence,
        truncation,
        retrain_iterations,
        retrain_l2,
        retrain_fit_regions,
        top,
        sweep_on_device,
    }
}

/// `[storage]`: a local directory (it need not exist yet; the coordinator creates it) or an
/// `s3://bucket/prefix` whose bucket must be reachable with the credentials at hand.
pub(super) fn storage(s: &mut Section<'_>, base_dir: &Path) -> StorageSpec {
    let Some(root) = s.required_string("root") else {
        return StorageSpec {
            root: PathBuf::new(),
        };
    };
    let root = resolve(base_dir, &root);
    match look(&root) {
        Err(problem) => s.problem("root", problem),
        Ok(Found::File) => s.problem(
            "root",
            format!("{} is a file, not a directory", root.display()),
        ),
        Ok(_) => {}
    }
    StorageSpec { root }
}

/// The optional `images` key of `[evaluate]` and `[ablate]`: a held-out set (an image
/// folder or a CSV manifest, local or in object storage).
fn held_out_images(s: &mut Section<'_>, base_dir: &Path) -> Option<PathBuf> {
    let images = path(s, "images", base_dir);
    if let Some(dir) = &images {
        match look(dir) {
            Ok(Found::File | Found::Dir) => {}
            Ok(Found::Nothing) => s.problem(
                "images",
                format!("no such directory or file: {}", dir.display()),
            ),
            Err(problem) => s.problem("images", problem),
        }
    }
    images
}

/// `[evaluate]` (optional): annotations (and masks) of the job's images for the evaluate
/// stage, which runs on a worker once the report wrote Φ (as `hint evaluate` would).
pub(super) fn evaluate(s: &mut Section<'_>, base_dir: &Path) -> Option<EvaluateSpec> {
    if !s.is_present() {
        return None;
    }
    let annotations = required_path(s, "annotations", base_dir);
    let masks = path(s, "masks", base_dir);
    let images = held_out_images(s, base_dir);
    let fractions = s
        .integers("fractions", 1, 100)
        .map(|f| f.into_iter().map(|n| n as u32).collect())
        .unwrap_or_else(|| EvaluateSpec::DEFAULT_FRACTIONS.to_vec());
    let images_per_concept = s.integer_or::<usize>(
        "images_per_concept",
        EvaluateSpec::DEFAULT_IMAGES_PER_CONCEPT,
        1,
    );
    // Local or in object storage (the evaluate task fetches a prefix into its cache).
    for (key, dir) in [("annotations", &annotations), ("masks", &masks)] {
        if let Some(dir) = dir {
            match look(dir) {
                Ok(Found::Dir) => {}
                Ok(_) => s.problem(key, format!("no such directory: {}", dir.display())),
                Err(problem) => s.problem(key, problem),
            }
        }
    }
    if fractions.is_empty() {
        s.problem("fractions", "give at least one percentage");
    }
    let random_draws = s.integer_or::<u32>("random_draws", EvaluateSpec::DEFAULT_RANDOM_DRAWS, 1);
    let bootstrap = s.integer_or::<usize>("bootstrap", EvaluateSpec::DEFAULT_BOOTSTRAP, 100);
    Some(EvaluateSpec {
        annotations: annotations.unwrap_or_default(),
        masks,
        fractions,
        images_per_concept,
        random_draws,
        bootstrap,
        images,
    })
}

/// `[ablate]` (optional): causal ablation of each concept's selected neurons, a stage that
/// runs on a worker once the report wrote Φ (as `hint ablate` would).
pub(super) fn ablate(s: &mut Section<'_>, base_dir: &Path) -> Option<AblateSpec> {
    if !s.is_present() {
        return None;
    }
    let images = held_out_images(s, base_dir);
    let max_images = s.integer_or::<usize>("max_images", ablation::DEFAULT_MAX_IMAGES, 2);
    let fractions = s
        .integers("fractions", 1, 100)
        .map(|f| f.into_iter().map(|n| n as u32).collect())
        .unwrap_or_else(|| ablation::DEFAULT_FRACTIONS.to_vec());
    if fractions.is_empty() {
        s.problem("fractions", "give at least one percentage");
    }
    let removals: Vec<Removal> = match s.strings("removals") {
        given if given.is_empty() => Removal::ALL.to_vec(),
        given => given
            .iter()
            .filter_map(|name| {
                Removal::parse(name)
                    .map_err(|e| s.problem("removals", e))
                    .ok()
            })
            .collect(),
    };
    let selections: Vec<AblationSelection> = match s.strings("selections") {
        given if given.is_empty() => AblationSelection::ALL.to_vec(),
        given => given
            .iter()
            .filter_map(|name| {
                AblationSelection::parse(name)
                    .map_err(|e| s.problem("selections", e))
                    .ok()
            })
            .collect(),
    };
    if !selections.iter().any(|&x| x != AblationSelection::Shapley) {
        s.problem(
            "selections",
            "name at least one baseline to compare Shapley with (weight_standardised, random, …)",
        );
    }
    let random_draws = s.integer_or::<u32>("random_draws", ablation::DEFAULT_RANDOM_DRAWS, 1);
    let bootstrap = s.integer_or::<usize>("bootstrap", ablation::DEFAULT_BOOTSTRAP_REPLICATES, 0);
    if bootstrap != 0 && bootstrap < 100 {
        s.problem(
            "bootstrap",
            "at least 100 replicates for a 95% interval, or 0 for none",
        );
    }
    Some(AblateSpec {
        images,
        max_images,
        fractions,
        removals,
        selections,
        random_draws,
        bootstrap,
    })
}

/// `[scheduler]`.
pub(super) fn scheduler(s: &mut Section<'_>) -> SchedulerSpec {
    SchedulerSpec {
        max_attempts: s.integer_or::<u32>("max_attempts", SchedulerSpec::default().max_attempts, 1),
    }
}

//! [`JobSpec`]: everything a HINT job needs, as the coordinator validated it.
//!
//! Users write a TOML file (documented field by field in `docs/job-spec.md`); the coordinator
//! parses and validates it (`hint_coordinator::spec`, which knows the worker's method and
//! layer names) and reports every problem at once. The validated spec travels to workers as
//! JSON with every path made absolute. Method, aggregation and mode names stay strings here
//! because their parsers live in the worker crate; the coordinator has checked them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::regions::sample::{Negatives, SampleConfig};

/// A validated job spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A name for people (status, report).
    pub name: String,
    /// The job seed: with image ids, concept ids and permutation indices, the only source of
    /// randomness.
    pub seed: u64,
    /// The backbone and the layer.
    pub model: ModelSpec,
    /// The images and the concept hierarchy.
    pub data: DataSpec,
    /// Responsible regions.
    pub extract: ExtractSpec,
    /// Concept classifiers.
    pub classify: ClassifySpec,
    /// Shapley values.
    pub shapley: ShapleySpec,
    /// Where outputs go.
    pub storage: StorageSpec,
    /// Retries and leases.
    pub scheduler: SchedulerSpec,
    /// Localisation of the concepts once Φ is written (`[evaluate]`, the evaluate stage; none
    /// when absent).
    #[serde(default)]
    pub evaluate: Option<EvaluateSpec>,
    /// Causal ablation of the selected neurons once Φ is written (`[ablate]`, the ablate
    /// stage; none when absent).
    #[serde(default)]
    pub ablate: Option<AblateSpec>,
}

/// `[ablate]`: remove each concept's top neurons (by Φ and by the baselines) in the network
/// and measure what breaks (`hint_common::ablation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblateSpec {
    /// Held-out images (ImageFolder or CSV with the job's labels); None: the job's own
    /// held-out split.
    pub images: Option<PathBuf>,
    /// Images evaluated, at most.
    pub max_images: usize,
    /// Percentages of the neurons removed.
    pub fractions: Vec<u32>,
    /// How removed neurons are replaced.
    pub removals: Vec<crate::ablation::Removal>,
    /// Selections compared with Shapley.
    pub selections: Vec<crate::ablation::AblationSelection>,
    /// Draws of the random selection.
    pub random_draws: u32,
    /// Bootstrap replicates of the intervals (0: none).
    pub bootstrap: usize,
}

/// `[evaluate]`: weakly supervised localisation with the job's concept classifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateSpec {
    /// Box annotations of the job's images (PASCAL VOC XML, one per image, same stems).
    pub annotations: PathBuf,
    /// Object masks (PNG, 255 = object), for mask IoU.
    pub masks: Option<PathBuf>,
    /// Percentages of the neurons kept (top by Shapley, by |weight|, at random).
    pub fractions: Vec<u32>,
    /// Images evaluated per concept.
    pub images_per_concept: usize,
    /// Independent random selections per (concept, fraction).
    #[serde(default = "EvaluateSpec::default_random_draws")]
    pub random_draws: u32,
    /// Bootstrap replicates of the intervals.
    #[serde(default = "EvaluateSpec::default_bootstrap")]
    pub bootstrap: usize,
    /// Held-out images (ImageFolder or CSV with the job's labels); None: the job's own
    /// held-out split.
    #[serde(default)]
    pub images: Option<PathBuf>,
}

impl EvaluateSpec {
    /// The fractions of the HINT paper's evaluation.
    pub const DEFAULT_FRACTIONS: [u32; 4] = [10, 20, 40, 80];
    /// Images per concept when not given.
    pub const DEFAULT_IMAGES_PER_CONCEPT: usize = 40;
    /// Random draws when not given.
    pub const DEFAULT_RANDOM_DRAWS: u32 = 5;
    /// Bootstrap replicates when not given.
    pub const DEFAULT_BOOTSTRAP: usize = 2000;

    fn default_random_draws() -> u32 {
        Self::DEFAULT_RANDOM_DRAWS
    }

    fn default_bootstrap() -> usize {
        Self::DEFAULT_BOOTSTRAP
    }
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// `tiny_cnn`, `vgg16`, `resnet50`, …
    pub architecture: String,
    /// A torchvision `state_dict` as safetensors (absolute path).
    pub weights: PathBuf,
    /// The hidden layer by torchvision module name; with [`layers`](Self::layers), the
    /// shallowest of them.
    pub layer: String,
    /// Several layers, shallow to deep (empty: the job analyses `layer` alone). One
    /// extraction pass gives every layer's regions; then each layer is a job of its own
    /// under the job (`layers/<layer>/`), and the job's results compare them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// Resize of the shorter side (None: the architecture's).
    pub resize: Option<u32>,
    /// Centre crop (None: the architecture's).
    pub crop: Option<u32>,
}

impl ModelSpec {
    /// The layers the job analyses, shallow to deep: `layers`, or `layer` alone.
    pub fn analysed_layers(&self) -> Vec<String> {
        if self.layers.is_empty() {
            vec![self.layer.clone()]
        } else {
            self.layers.clone()
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// An ImageFolder directory or a `path,label` CSV manifest (absolute path).
    pub images: PathBuf,
    /// A label → model-output map (None: sorted class names).
    pub labels: Option<PathBuf>,
    /// Where the concept hierarchy comes from.
    pub hierarchy: HierarchySpec,
}

/// The concept hierarchy: a file, or WordNet 3.0 with selection rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum HierarchySpec {
    /// A custom YAML/JSON file or a `concepts.json` (absolute path).
    File {
        /// The file.
        path: PathBuf,
    },
    /// The WordNet 3.0 closure of the labels (WordNet ids), cut by the selection rules.
    Wordnet {
        /// The WordNet database directory (None: `HINT_WORDNET` or /usr/share/wordnet).
        dir: Option<PathBuf>,
        /// Keep these concepts and what is below them (empty: every root).
        roots: Vec<String>,
        /// Remove concepts with fewer images.
        min_images: Option<u64>,
        /// Remove single-child chains.
        collapse: bool,
        /// Remove concepts deeper than this.
        max_depth: Option<u32>,
        /// Leave out labels no selected concept covers instead of failing.
        drop_uncovered: bool,
    },
}

/// `[extract]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractSpec {
    /// The saliency method; its parameters are the fields below.
    pub method: crate::settings::MethodName,
    /// SmoothGrad: noisy copies.
    pub samples: usize,
    /// SmoothGrad: noise level.
    pub noise: f64,
    /// Integrated gradients: points on the path.
    pub steps: usize,
    /// Integrated gradients: `zero` or `black`.
    pub baseline: crate::settings::Baseline,
    /// `norm`, `sum`, `filter_norm`, `max`, `abs_sum`, `abs_max`.
    pub aggregation: crate::settings::Aggregation,
    /// Threshold on the normalised saliency.
    pub threshold: f32,
    /// Fraction of background positions kept.
    pub background_ratio: f64,
    /// `f32` or `f16`.
    pub activation_type: crate::regions::ActivationType,
    /// How region files are compressed: `zstd` or `lz4`. (Absent in journals written before
    /// the setting: zstd, what they wrote.)
    #[serde(default)]
    pub compression: crate::regions::Compression,
    /// Images per model batch.
    pub batch_size: usize,
    /// Images per extract task: the plan cuts the manifest into ranges of this many. Unset
    /// (`None`), a task is one tar shard when the images are tar shards, else
    /// [`ExtractSpec::DEFAULT_IMAGES_PER_TASK`] images.
    #[serde(default)]
    pub images_per_task: Option<u64>,
}

impl ExtractSpec {
    /// Images per extract task over loose files when `images_per_task` is unset.
    pub const DEFAULT_IMAGES_PER_TASK: u64 = 1000;

    /// The saliency method: its name with the parameters beside it (`samples` and `noise`
    /// for SmoothGrad, `steps` and `baseline` for integrated gradients).
    pub fn saliency(&self) -> Result<crate::settings::Method, crate::settings::SettingError> {
        crate::settings::Method::new(
            self.method,
            self.samples,
            self.noise,
            self.steps,
            self.baseline,
        )
    }
}

/// `[classify]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifySpec {
    /// Positive regions sampled per concept (and as many negatives).
    pub max_per_class: usize,
    /// Fraction of images held out.
    pub holdout: f64,
    /// Each concept classifier's negative set. Specs stored before it existed read as
    /// `mixed`, what they ran with.
    #[serde(default)]
    pub negatives: Negatives,
    /// L2 penalty on standardised weights.
    pub l2: f64,
    /// Newton iterations at most.
    pub iterations: usize,
    /// Newton decrement tolerance.
    pub tolerance: f64,
    /// Concepts per train task.
    pub concepts_per_task: usize,
}

/// `[shapley]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapleySpec {
    /// `fixed` or `retrain`.
    pub mode: crate::settings::Mode,
    /// `log_likelihood`, `balanced_log_likelihood`, `accuracy`, `prediction`, `logit`,
    /// `prediction_all`, `logit_all`.
    pub quality: crate::shapley::Quality,
    /// `marginal`, `mean`, `zero`.
    pub replacement: crate::shapley::Replacement,
    /// Antithetic pairs (true) or independent permutations.
    pub antithetic: bool,
    /// Permutations per concept (the most, with a stopping rule).
    pub permutations: u64,
    /// Permutations per Shapley task; also the round of the stopping rule.
    pub permutations_per_task: u64,
    /// Stop a concept once every stderr is below this.
    pub until_stderr: Option<f64>,
    /// Stop a concept once its top K are separated (with `confidence`).
    pub until_top_k: Option<usize>,
    /// One-sided confidence of each top-K separation.
    pub confidence: f64,
    /// Truncate a sweep once |v(all) − v(prefix)| ≤ this (either mode).
    pub truncation: Option<f64>,
    /// Retrain mode: full Newton steps per fit (at most, on a permutation's path).
    pub retrain_iterations: usize,
    /// Retrain mode: L2 penalty.
    pub retrain_l2: f64,
    /// Retrain mode: fitting regions per concept, a seeded uniform subsample when a concept
    /// has more (0: all). Absent in specs written before it: the default.
    #[serde(default = "default_retrain_fit_regions")]
    pub retrain_fit_regions: usize,
    /// Neurons listed per concept in top_neurons.csv.
    pub top: usize,
    /// Fixed mode: sweep on the worker's device (libtorch, batched) instead of the pure-Rust
    /// CPU sweep. Faster on GPUs; Φ is then bit-identical only when every worker has the same
    /// device model. Default false: bit-identical on any mix of machines.
    pub sweep_on_device: bool,
}

impl ShapleySpec {
    /// The permutation scheme: antithetic pairs or independent permutations.
    pub fn sampling(&self) -> crate::shapley::Sampling {
        if self.antithetic {
            crate::shapley::Sampling::Antithetic
        } else {
            crate::shapley::Sampling::Independent
        }
    }

    /// How each concept's permutations are spent: `permutations` in blocks of
    /// `permutations_per_task` (one task each under a coordinator), until the stopping rule
    /// holds.
    pub fn rounds(&self) -> crate::shapley::Rounds {
        crate::shapley::Rounds::new(
            self.sampling(),
            self.permutations,
            self.permutations_per_task,
            self.stopping_rule(),
        )
    }

    /// The stopping rule, if one is set (the spec check allows at most one).
    pub fn stopping_rule(&self) -> Option<crate::shapley::StoppingRule> {
        use crate::shapley::StoppingRule;
        match (self.until_stderr, self.until_top_k) {
            (Some(bound), _) => Some(StoppingRule::StderrBelow(bound)),
            (None, Some(k)) => Some(StoppingRule::TopKSeparated {
                k,
                confidence: self.confidence,
            }),
            (None, None) => None,
        }
    }

    /// The Φ files' key/value metadata (`phi.parquet`, `shapley.json`): the settings that
    /// decide whether two runs' Φ are comparable bit for bit, with the job `seed` and the
    /// `backend` that computed the sweeps or fits. One list for `hint shapley` and the
    /// coordinator's results.
    pub fn phi_metadata(&self, seed: u64, backend: &str) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("mode", self.mode.to_string()),
            ("quality", self.quality.name().to_string()),
            ("replacement", self.replacement.name().to_string()),
            ("antithetic", self.antithetic.to_string()),
            ("seed", seed.to_string()),
            ("backend", backend.to_string()),
        ];
        if let Some(t) = self.truncation {
            pairs.push(("truncation", t.to_string()));
        }
        if self.mode == crate::settings::Mode::Retrain {
            pairs.push(("retrain_iterations", self.retrain_iterations.to_string()));
            pairs.push(("retrain_l2", self.retrain_l2.to_string()));
            pairs.push(("retrain_fit_regions", self.retrain_fit_regions.to_string()));
        }
        pairs
            .into_iter()
            .map(|(key, value)| (format!("hint.shapley.{key}"), value))
            .collect()
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageSpec {
    /// Root under which each job gets `<root>/<job-id>/` (absolute path).
    pub root: PathBuf,
}

/// `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSpec {
    /// Attempts of a task (counting failures) before it is quarantined.
    pub max_attempts: u32,
}

/// The defaults of `[extract]`: `hint extract`'s, and tasks cut as `images_per_task` says.
impl Default for ExtractSpec {
    fn default() -> Self {
        ExtractSpec {
            method: crate::settings::MethodName::Gradient,
            samples: 20,
            noise: 0.15,
            steps: 20,
            baseline: crate::settings::Baseline::Zero,
            aggregation: crate::settings::Aggregation::Norm,
            threshold: 0.5,
            background_ratio: 1.0,
            activation_type: crate::regions::ActivationType::F32,
            compression: crate::regions::Compression::Zstd,
            batch_size: 16,
            images_per_task: None,
        }
    }
}

/// The defaults of `[classify]`: `hint classify`'s (the sampling ones
/// [`SampleConfig`]'s), plus 16 concepts per task.
impl Default for ClassifySpec {
    fn default() -> Self {
        let sample = SampleConfig::default();
        ClassifySpec {
            max_per_class: sample.max_per_class,
            holdout: sample.holdout,
            negatives: sample.negatives,
            l2: 1e-3,
            iterations: 100,
            tolerance: 1e-12,
            concepts_per_task: 16,
        }
    }
}

/// The defaults of `[shapley]`: `hint shapley`'s, with 20 permutations per task (the spec
/// reader lowers it when fewer permutations are asked for).
impl Default for ShapleySpec {
    fn default() -> Self {
        ShapleySpec {
            mode: crate::settings::Mode::Fixed,
            quality: crate::shapley::Quality::LogLikelihood,
            replacement: crate::shapley::Replacement::Marginal,
            antithetic: true,
            permutations: 100,
            permutations_per_task: 20,
            until_stderr: None,
            until_top_k: None,
            confidence: 0.95,
            truncation: None,
            retrain_iterations: 10,
            retrain_l2: 1e-3,
            retrain_fit_regions: DEFAULT_RETRAIN_FIT_REGIONS,
            top: 10,
            sweep_on_device: false,
        }
    }
}

/// `retrain_fit_regions`' default: a logistic fit of D ≤ 256 weights is stable on 4,096
/// regions, and each step of a fit passes over them (ARCHITECTURE.md).
pub const DEFAULT_RETRAIN_FIT_REGIONS: usize = 4096;

fn default_retrain_fit_regions() -> usize {
    DEFAULT_RETRAIN_FIT_REGIONS
}

/// The defaults of `[scheduler]`.
impl Default for SchedulerSpec {
    fn default() -> Self {
        SchedulerSpec { max_attempts: 3 }
    }
}

impl JobSpec {
    /// A job named `job` with seed 0 running `model` on `data` under `root`, every other
    /// setting at its default: what a TOML spec with only `[model]`, `[data]` and
    /// `[storage]` gives (the spec tests hold the two equal). The way code and tests build
    /// a spec; change the fields they care about afterwards.
    pub fn new(model: ModelSpec, data: DataSpec, root: PathBuf) -> Self {
        JobSpec {
            name: "job".into(),
            seed: 0,
            model,
            data,
            extract: ExtractSpec::default(),
            classify: ClassifySpec::default(),
            shapley: ShapleySpec::default(),
            storage: StorageSpec { root },
            scheduler: SchedulerSpec::default(),
            evaluate: None,
            ablate: None,
        }
    }

    /// The spec as the JSON workers receive.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serialises")
    }

    /// Reads [`JobSpec::to_json`]'s output.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classify_section_without_negatives_reads_as_mixed() {
        let mut json = serde_json::to_value(ClassifySpec {
            negatives: Negatives::Siblings,
            ..ClassifySpec::default()
        })
        .unwrap();
        assert_eq!(json["negatives"], "siblings");
        let back: ClassifySpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.negatives, Negatives::Siblings);
        // A spec stored by a coordinator from before the setting.
        json.as_object_mut().unwrap().remove("negatives");
        let old: ClassifySpec = serde_json::from_value(json).unwrap();
        assert_eq!(old, ClassifySpec::default());
        assert_eq!(old.negatives, Negatives::Mixed);
    }

    /// Φ's metadata names every setting that changes Φ's bits: the retrain settings only in
    /// retrain mode, truncation only when set; a spec from before `retrain_fit_regions`
    /// reads with its default.
    #[test]
    fn phi_metadata_records_what_makes_two_runs_comparable() {
        let keys = |s: &ShapleySpec| -> Vec<String> {
            s.phi_metadata(7, "cpu")
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let fixed = ShapleySpec::default();
        let metadata = fixed.phi_metadata(7, "cpu");
        assert!(metadata.contains(&("hint.shapley.seed".into(), "7".into())));
        assert!(metadata.contains(&("hint.shapley.quality".into(), "log_likelihood".into())));
        assert!(!keys(&fixed)
            .iter()
            .any(|k| k.contains("retrain") || k.contains("truncation")));
        let retrain = ShapleySpec {
            mode: crate::settings::Mode::Retrain,
            truncation: Some(0.01),
            ..ShapleySpec::default()
        };
        let metadata = retrain.phi_metadata(7, "cpu");
        for (key, value) in [
            ("hint.shapley.truncation", "0.01"),
            ("hint.shapley.retrain_fit_regions", "4096"),
            ("hint.shapley.retrain_l2", "0.001"),
            ("hint.shapley.retrain_iterations", "10"),
        ] {
            assert!(metadata.contains(&(key.into(), value.into())), "{key}");
        }
        let mut json = serde_json::to_value(&retrain).unwrap();
        json.as_object_mut().unwrap().remove("retrain_fit_regions");
        let old: ShapleySpec = serde_json::from_value(json).unwrap();
        assert_eq!(old, retrain);
    }
}

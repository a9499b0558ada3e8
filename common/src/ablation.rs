//! `results/ablation.json`: causal ablation of the neurons each selection names — one type,
//! shared by the writer (`hint ablate`, the worker's engine) and its readers (the report,
//! the demo's table, the tests).
//!
//! For a concept `e`, a selection (Φ, the classifier's weights, mean activation, random)
//! ranks the layer's `D` neurons; its top `k%` are removed in the real network (replaced by
//! zero or by their mean over the evaluated images, a forward hook at the layer) and the
//! rest of the network runs unchanged. On held-out images:
//! - **on-target** (images whose label is at or under `e`): accuracy = the prediction is a
//!   leaf under `e`; probability = the summed softmax of `e`'s leaves;
//! - **off-target** (every other image): accuracy = the prediction is the image's label;
//!   probability = the softmax of its label;
//! - a **drop** is the unablated value minus the ablated one (positive: the removal hurt);
//!   **specificity** = on-target drop − off-target drop: how much more removing the
//!   neurons breaks `e` than it breaks everything else.
//!
//! Values are pooled over concepts as the mean of each concept's value (every concept
//! counts once, whatever its number of images). Shapley − each baseline carries a 95%
//! paired bootstrap interval over images (all concepts of one replicate share its image
//! resample; random selections are averaged over their draws).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stats::{Difference, Verdict};

/// The report's file name in `<job>/results/`.
pub const ABLATION_FILE: &str = "ablation.json";
/// Percentages of neurons removed when not given.
pub const DEFAULT_FRACTIONS: [u32; 6] = [1, 2, 5, 10, 20, 40];
/// Images evaluated when not given.
pub const DEFAULT_MAX_IMAGES: usize = 200;
/// Draws of the random selection when not given.
pub const DEFAULT_RANDOM_DRAWS: u32 = 5;
/// Bootstrap replicates of the intervals when not given.
pub const DEFAULT_BOOTSTRAP_REPLICATES: usize = 2000;

/// How a concept's neurons are ranked for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AblationSelection {
    /// By Φ, largest first.
    Shapley,
    /// Sign-aware Φ: neurons whose classifier weight is positive (evidence *for* the
    /// concept) by Φ, then the others by Φ.
    ShapleyPositive,
    /// By the classifier's weight on standardised features, `|w_d| · σ_d`.
    WeightStandardised,
    /// By the saved weight on raw activations, `|w_d|`.
    WeightRaw,
    /// By the mean activation over the concept's training regions (its positives).
    MeanActivation,
    /// Uniformly at random, several seeded draws.
    Random,
}

impl AblationSelection {
    /// Every selection, in report order.
    pub const ALL: [AblationSelection; 6] = [
        AblationSelection::Shapley,
        AblationSelection::ShapleyPositive,
        AblationSelection::WeightStandardised,
        AblationSelection::WeightRaw,
        AblationSelection::MeanActivation,
        AblationSelection::Random,
    ];

    /// The name in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AblationSelection::Shapley => "shapley",
            AblationSelection::ShapleyPositive => "shapley_positive",
            AblationSelection::WeightStandardised => "weight_standardised",
            AblationSelection::WeightRaw => "weight_raw",
            AblationSelection::MeanActivation => "mean_activation",
            AblationSelection::Random => "random",
        }
    }

    /// The name in printed tables.
    pub fn label(self) -> &'static str {
        match self {
            AblationSelection::Shapley => "Shapley",
            AblationSelection::ShapleyPositive => "Shapley w>0",
            AblationSelection::WeightStandardised => "|w|·σ",
            AblationSelection::WeightRaw => "raw |w|",
            AblationSelection::MeanActivation => "mean act.",
            AblationSelection::Random => "random",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown selection '{name}' (expected {})", names.join(", "))
            })
    }
}

/// What a removed neuron's activation becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Zero at every position.
    Zero,
    /// The channel's mean over every position of every evaluated image.
    Mean,
}

impl Removal {
    /// Both, in report order.
    pub const ALL: [Removal; 2] = [Removal::Zero, Removal::Mean];

    /// The name in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Removal::Zero => "zero",
            Removal::Mean => "mean",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown removal '{name}' (expected zero, mean)"))
    }
}

/// The drops of one ablation (unablated − ablated; positive = the removal hurt).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Drops {
    /// On-target accuracy drop (prediction a leaf under the concept).
    pub on_accuracy: f64,
    /// On-target drop of the summed probability of the concept's leaves.
    pub on_probability: f64,
    /// Off-target accuracy drop (prediction = the image's label).
    pub off_accuracy: f64,
    /// Off-target drop of the probability of the image's label.
    pub off_probability: f64,
    /// `on_accuracy − off_accuracy`.
    pub specificity: f64,
    /// `on_probability − off_probability`.
    pub probability_specificity: f64,
}

impl Drops {
    /// From the four drops.
    pub fn new(
        on_accuracy: f64,
        on_probability: f64,
        off_accuracy: f64,
        off_probability: f64,
    ) -> Self {
        Drops {
            on_accuracy,
            on_probability,
            off_accuracy,
            off_probability,
            specificity: on_accuracy - off_accuracy,
            probability_specificity: on_probability - off_probability,
        }
    }
}

/// One point of a curve: a selection's drops at one fraction, pooled over concepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// How the neurons were chosen.
    pub selection: AblationSelection,
    /// How they were removed.
    pub removal: Removal,
    /// Percent of the layer's neurons removed.
    pub fraction: u32,
    /// Neurons removed (`ceil(D · fraction / 100)`).
    pub neurons: usize,
    /// Draws averaged (random: several; else 1).
    pub draws: usize,
    /// The drops, mean over concepts (and draws).
    pub drops: Drops,
    /// Standard deviation of `drops.specificity` across draws (several draws only).
    pub specificity_sd: Option<f64>,
}

/// Shapley against one baseline at one (removal, fraction), pooled over concepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationComparison {
    /// The baseline.
    pub baseline: AblationSelection,
    /// How neurons were removed.
    pub removal: Removal,
    /// Percent of neurons removed.
    pub fraction: u32,
    /// Accuracy specificity, Shapley − baseline, with its interval.
    pub specificity: Difference,
    /// Probability specificity, Shapley − baseline, with its interval.
    pub probability_specificity: Difference,
    /// What the accuracy specificity's interval says.
    pub verdict: Verdict,
}

/// The neurons one selection removes from one concept at one fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuronSet {
    /// How they were chosen.
    pub selection: AblationSelection,
    /// Percent of neurons removed.
    pub fraction: u32,
    /// The draw (random), else 0.
    pub draw: u32,
    /// The neurons, ascending.
    pub neurons: Vec<usize>,
}

/// One concept's drops for one (neuron set, removal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptCell {
    /// How the neurons were chosen.
    pub selection: AblationSelection,
    /// How they were removed.
    pub removal: Removal,
    /// Percent of neurons removed.
    pub fraction: u32,
    /// The draw (random), else 0.
    pub draw: u32,
    /// The drops over this concept's images.
    pub drops: Drops,
}

/// Everything measured for one concept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptAblation {
    /// Concept id.
    pub concept: u32,
    /// Its name.
    pub name: String,
    /// Its level in the hierarchy.
    pub level: u32,
    /// Evaluated images at or under it.
    pub on_images: usize,
    /// The other evaluated images.
    pub off_images: usize,
    /// Unablated on-target accuracy (prediction a leaf under the concept).
    pub on_accuracy: f64,
    /// Unablated off-target accuracy (prediction = label).
    pub off_accuracy: f64,
    /// The neuron sets removed.
    pub sets: Vec<NeuronSet>,
    /// The drops, one per (set, removal).
    pub cells: Vec<ConceptCell>,
}

/// Bootstrap settings as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Replicates.
    pub replicates: usize,
    /// Coverage of the intervals.
    pub confidence: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

/// Something left out of the ablation, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationSkipped {
    /// The concept or image.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// `results/ablation.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationReport {
    /// Architecture of the model.
    pub model: String,
    /// The layer whose neurons are removed.
    pub layer: String,
    /// Its neurons (channels), `D`.
    pub neurons: usize,
    /// Images evaluated.
    pub images: usize,
    /// Where they come from: the job's held-out split, or a directory / manifest.
    pub image_source: String,
    /// Unablated top-1 accuracy over the evaluated images.
    pub accuracy: f64,
    /// Percentages of neurons removed.
    pub fractions: Vec<u32>,
    /// Removals measured.
    pub removals: Vec<Removal>,
    /// Selections measured (Shapley first).
    pub selections: Vec<AblationSelection>,
    /// Draws of the random selection.
    pub random_draws: u32,
    /// The bootstrap behind the intervals.
    pub bootstrap: Bootstrap,
    /// Pooled curves: one point per (selection, removal, fraction).
    pub curves: Vec<CurvePoint>,
    /// Shapley − each baseline, per (removal, fraction).
    pub comparisons: Vec<AblationComparison>,
    /// Per concept.
    pub concepts: Vec<ConceptAblation>,
    /// Concepts or images left out.
    pub skipped: Vec<AblationSkipped>,
}

impl AblationReport {
    /// Writes the report as pretty JSON (through [`crate::storage`], so `path` may be a URL).
    pub fn write(&self, path: &Path) -> Result<(), crate::storage::StorageError> {
        let text = serde_json::to_string_pretty(self).expect("plain data serialises");
        crate::storage::write(path, text.as_bytes())
    }

    /// Reads a report.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = crate::storage::read_to_string(path).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The pooled point of (selection, removal, fraction).
    pub fn point(
        &self,
        selection: AblationSelection,
        removal: Removal,
        fraction: u32,
    ) -> Option<&CurvePoint> {
        self.curves
            .iter()
            .find(|p| p.selection == selection && p.removal == removal && p.fraction == fraction)
    }

    /// The comparison of Shapley with `baseline` at (removal, fraction).
    pub fn comparison(
        &self,
        baseline: AblationSelection,
        removal: Removal,
        fraction: u32,
    ) -> Option<&AblationComparison> {
        self.comparisons
            .iter()
            .find(|c| c.baseline == baseline && c.removal == removal && c.fraction == fraction)
    }

    /// The tables the CLI and the demo print: per removal, accuracy specificity of every
    /// selection per fraction, then Shapley − each baseline with its interval and verdict.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let baselines: Vec<AblationSelection> = self
            .selections
            .iter()
            .copied()
            .filter(|&s| s != AblationSelection::Shapley)
            .collect();
        for &removal in &self.removals {
            let _ = writeln!(
                out,
                "ablation ({} removal; {} images, top-1 accuracy {:.3}): specificity = on-target \
                 accuracy drop − off-target drop, mean over {} concepts",
                removal.name(),
                self.images,
                self.accuracy,
                self.concepts.len()
            );
            let mut header = format!("  {:>8}", "removed");
            for s in &self.selections {
                let _ = write!(header, " {:>14}", s.label());
            }
            let _ = writeln!(out, "{header}");
            for &fraction in &self.fractions {
                let neurons = self
                    .point(self.selections[0], removal, fraction)
                    .map_or(0, |p| p.neurons);
                let mut line = format!("  {:>8}", format!("{fraction}% ({neurons})"));
                for &s in &self.selections {
                    let cell = match self.point(s, removal, fraction) {
                        Some(p) => match p.specificity_sd {
                            Some(sd) => format!("{:+.3}±{:.3}", p.drops.specificity, sd),
                            None => format!("{:+.3}", p.drops.specificity),
                        },
                        None => "—".into(),
                    };
                    let _ = write!(line, " {cell:>14}");
                }
                let _ = writeln!(out, "{line}");
            }
            for &b in &baselines {
                let _ = writeln!(out, "  Shapley − {}:", b.label());
                for &fraction in &self.fractions {
                    if let Some(c) = self.comparison(b, removal, fraction) {
                        let d = &c.specificity;
                        let _ = writeln!(
                            out,
                            "    {:>4}%  {:+.3} [{:+.3}, {:+.3}] {}",
                            fraction,
                            d.difference,
                            d.low,
                            d.high,
                            c.verdict.words()
                        );
                    }
                }
            }
        }
        out
    }
}

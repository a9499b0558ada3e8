//! Causal ablation: remove the neurons a selection names for a concept, in the real
//! network, and measure what breaks — for the concept and for everything else. The
//! faithfulness check of Φ that does not go through a re-fitted classifier (WSOL does).
//!
//! For every concept of a finished job with a classifier and a Φ row, every selection
//! ([`AblationSelection`]: Φ, sign-aware Φ, `|w|·σ`, raw `|w|`, mean activation on the
//! concept's regions, random draws) ranks the layer's `D` neurons; for every fraction `k%`
//! its top `k%` are replaced ([`Removal`]: zero, or the channel's mean over the evaluated
//! images) at the layer, and the rest of the network runs unchanged on the images'
//! activations, computed once ([`network`]). The drops and their bootstrap intervals are in
//! [`tally`]; the file's types and the definitions of on-target, off-target and specificity
//! in [`hint_common::ablation`].
//!
//! **Images**: the job's held-out images (those no concept classifier trained on), or an
//! image set the user gives (an ImageFolder or CSV manifest whose labels are the job's) —
//! at most [`AblateConfig::max_images`] of them, the smallest keys
//! `derive(seed, [ABLATE_TAG, IMAGE_PART, image])`.

pub mod network;
pub mod tally;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hint_common::ablation::{
    self, AblationReport, AblationSelection, AblationSkipped, Bootstrap, ConceptAblation,
    ConceptCell, NeuronSet, Removal, ABLATION_FILE,
};
use hint_common::hierarchy::ConceptId;
use hint_common::job::spec::AblateSpec;
use hint_common::regions::sample::ConceptSamples;
use hint_common::seed;
use rayon::prelude::*;
use tch::Device;

use crate::images::{self, LabelMap};
use crate::models::Backbone;
use crate::wsol::inputs::Job;
use crate::wsol::select;
use crate::wsol::WsolError;
use network::LayerActivations;
use tally::{CellDrops, Targets};

/// Errors of an ablation: the same kinds as WSOL's (files of the job, settings, the model).
pub type AblateError = WsolError;

/// Seed tag of the ablation's random streams.
pub const ABLATE_TAG: u64 = u64::from_be_bytes(*b"hintablt");
/// Identity part of the image choice, after [`ABLATE_TAG`].
pub const IMAGE_PART: u64 = 1;
/// Coverage of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// Settings of [`ablate`].
#[derive(Debug, Clone)]
pub struct AblateConfig {
    /// The finished job's directory.
    pub job_dir: PathBuf,
    /// Evaluate on these images (ImageFolder or CSV manifest with the job's labels)
    /// instead of the job's held-out images.
    pub images: Option<PathBuf>,
    /// Images evaluated, at most.
    pub max_images: usize,
    /// Percentages of neurons removed (each in 1..=100).
    pub fractions: Vec<u32>,
    /// How removed neurons are replaced.
    pub removals: Vec<Removal>,
    /// Selections compared (Shapley is always measured, first).
    pub selections: Vec<AblationSelection>,
    /// Draws of the random selection.
    pub random_draws: u32,
    /// Bootstrap replicates of the intervals (0: point estimates only).
    pub bootstrap_replicates: usize,
    /// Seed of the image choice, the random selection and the bootstrap.
    pub seed: u64,
    /// Where the network runs.
    pub device: Device,
    /// Rank `shapley` (and `shapley_positive`) by this `phi.csv` instead of the job's
    /// `results/phi.csv` — e.g. Φ of another game computed with `hint shapley`.
    pub phi: Option<PathBuf>,
    /// Write the report here instead of `<job>/results/ablation.json`.
    pub out: Option<PathBuf>,
}

impl AblateConfig {
    /// The defaults for a job directory: every selection, both removals, the default
    /// fractions, 200 images, 5 random draws, 2,000 bootstrap replicates.
    pub fn new(job_dir: PathBuf, device: Device) -> Self {
        AblateConfig {
            job_dir,
            images: None,
            max_images: ablation::DEFAULT_MAX_IMAGES,
            fractions: ablation::DEFAULT_FRACTIONS.to_vec(),
            removals: Removal::ALL.to_vec(),
            selections: AblationSelection::ALL.to_vec(),
            random_draws: ablation::DEFAULT_RANDOM_DRAWS,
            bootstrap_replicates: ablation::DEFAULT_BOOTSTRAP_REPLICATES,
            seed: 0,
            device,
            phi: None,
            out: None,
        }
    }

    /// The ablation a job's `[ablate]` section asks for, with the job's seed, written to
    /// `out` (the job's `results/ablation.json` when None).
    pub fn from_spec(
        job_dir: &Path,
        spec: &AblateSpec,
        seed: u64,
        device: Device,
        out: Option<PathBuf>,
    ) -> Self {
        AblateConfig {
            job_dir: job_dir.to_path_buf(),
            images: spec.images.clone(),
            max_images: spec.max_images,
            fractions: spec.fractions.clone(),
            removals: spec.removals.clone(),
            selections: spec.selections.clone(),
            random_draws: spec.random_draws,
            bootstrap_replicates: spec.bootstrap,
            seed,
            device,
            phi: None,
            out,
        }
    }

    /// Checks the numbers; puts Shapley first among the selections.
    pub fn validate(&mut self) -> Result<(), AblateError> {
        let bad = |m: String| Err(WsolError::Config(m));
        if self.fractions.is_empty() {
            return bad("no fractions".into());
        }
        if let Some(f) = self.fractions.iter().find(|&&f| f == 0 || f > 100) {
            return bad(format!("fraction {f}% is not between 1 and 100"));
        }
        let mut sorted = self.fractions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.fractions.len() {
            return bad("a fraction is given twice".into());
        }
        self.fractions = sorted;
        if self.removals.is_empty() {
            return bad("no removal (zero, mean)".into());
        }
        self.removals.sort_unstable();
        self.removals.dedup();
        self.selections.push(AblationSelection::Shapley);
        self.selections.sort_unstable();
        self.selections.dedup();
        if self.selections.len() < 2 {
            return bad("Shapley needs at least one baseline selection to be compared with".into());
        }
        if self.max_images < 2 {
            return bad("at least 2 images are needed".into());
        }
        if self.selections.contains(&AblationSelection::Random) && self.random_draws == 0 {
            return bad("random draws must be at least 1".into());
        }
        if self.bootstrap_replicates != 0 && self.bootstrap_replicates < 100 {
            return bad(format!(
                "{} bootstrap replicates are too few for a 95% interval (at least 100, or 0 for none)",
                self.bootstrap_replicates
            ));
        }
        Ok(())
    }
}

/// A concept under ablation: its rankings, read from the job.
struct Ranked {
    id: ConceptId,
    name: String,
    level: u32,
    /// Model outputs of its leaves.
    outputs: Vec<u32>,
    /// The neuron sets, in (fraction, selection, draw) order.
    sets: Vec<NeuronSet>,
}

/// One evaluated image.
struct Evaluated {
    /// Model output of its label.
    output: u32,
    pixels: Vec<f32>,
}

/// Runs the ablation of `config.job_dir` and writes `results/ablation.json`.
/// `progress(done, total)` counts ablations run through the network; once `cancel` is set
/// the ablation stops at the next batch with [`WsolError::Cancelled`].
pub fn ablate(
    config: &AblateConfig,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<AblationReport, AblateError> {
    let mut config = config.clone();
    config.validate()?;
    let mut job = Job::open(&config.job_dir)?;
    if let Some(phi) = &config.phi {
        job.phi = crate::wsol::inputs::read_phi(phi, &job.hierarchy)?;
    }
    let d = job.classifiers[0].settings.d;
    let outputs = Outputs::read(&job)?;
    let mut skipped = Vec::new();
    let (ranked, held_out) = rank(&job, &config, &outputs, &mut skipped)?;
    let (evaluated, image_source) =
        evaluation_images(&job, &config, &outputs, &held_out, &mut skipped)?;

    if evaluated.len() < 2 {
        return Err(WsolError::Config(format!(
            "{} usable image(s) to evaluate ({image_source}): at least 2 are needed",
            evaluated.len()
        )));
    }

    // The network: activations once, then every ablation's tail.
    let model = Backbone::from_safetensors(job.arch, &job.spec.model.weights, config.device)?;
    model.check_input(job.preprocess.crop)?;
    let layer = model.layer(&job.spec.model.layer)?;
    let n = evaluated.len();
    let truth: Vec<u32> = evaluated.iter().map(|e| e.output).collect();
    // One batch buffer, each image's pixels freed as they are moved in.
    let pixels: Vec<f32> = evaluated.into_iter().flat_map(|e| e.pixels).collect();
    let acts = LayerActivations::compute(
        &model,
        layer,
        &pixels,
        i64::from(job.preprocess.crop),
        job.spec.extract.batch_size.max(1),
        config.device,
    )?;
    drop(pixels);
    if acts.channels() != d {
        return Err(WsolError::Config(format!(
            "layer {} has {} channels, the classifiers {d}",
            job.spec.model.layer,
            acts.channels()
        )));
    }
    let classes = model.num_classes() as usize;
    let base = acts.probabilities(&model, layer)?;
    let accuracy = (0..n)
        .filter(|&i| argmax(&base[i * classes..(i + 1) * classes]) == truth[i] as usize)
        .count() as f64
        / n as f64;
    let targets = Targets {
        on: ranked
            .iter()
            .map(|r| truth.iter().map(|t| r.outputs.contains(t)).collect())
            .collect(),
    };
    let measure = |concept: usize, probs: &[f32]| -> (Vec<f32>, Vec<f32>) {
        let r = &ranked[concept];
        (0..n)
            .map(|i| {
                let p = &probs[i * classes..(i + 1) * classes];
                if targets.on[concept][i] {
                    let pred = argmax(p) as u32;
                    let acc = f32::from(u8::from(r.outputs.contains(&pred)));
                    (acc, r.outputs.iter().map(|&o| p[o as usize]).sum::<f32>())
                } else {
                    let acc = f32::from(u8::from(argmax(p) == truth[i] as usize));
                    (acc, p[truth[i] as usize])
                }
            })
            .unzip()
    };
    let baseline: Vec<(Vec<f32>, Vec<f32>)> =
        (0..ranked.len()).map(|c| measure(c, &base)).collect();

    let jobs: Vec<(usize, usize, Removal)> = ranked
        .iter()
        .enumerate()
        .flat_map(|(c, r)| {
            let removals = &config.removals;
            (0..r.sets.len()).flat_map(move |s| removals.iter().map(move |&m| (c, s, m)))
        })
        .collect();
    let total = jobs.len();
    progress(0, total);
    let mut cells: Vec<CellDrops> = Vec::with_capacity(total);
    // Chunks bound the host memory of the probabilities (N × C floats per ablation) and are
    // at most one stacked batch through the network, so progress (and a cancel) comes after
    // every batch; the batches start at multiples of the group, as in one long chunk.
    let chunk = ((64usize << 20) / (n * classes * 4).max(1)).min(acts.stack_group());
    for part in jobs.chunks(chunk.max(1)) {
        let ablations: Vec<(&[usize], Removal)> = part
            .iter()
            .map(|&(c, s, m)| (ranked[c].sets[s].neurons.as_slice(), m))
            .collect();
        let probs = acts.ablated_probabilities(&model, layer, &ablations)?;
        for (k, &(c, s, removal)) in part.iter().enumerate() {
            let (acc, prob) = measure(c, &probs[k * n * classes..(k + 1) * n * classes]);
            let set = &ranked[c].sets[s];
            let (base_acc, base_prob) = &baseline[c];
            cells.push(CellDrops {
                concept: c,
                selection: set.selection,
                removal,
                fraction: set.fraction,
                draw: set.draw,
                accuracy: base_acc.iter().zip(&acc).map(|(b, a)| b - a).collect(),
                probability: base_prob.iter().zip(&prob).map(|(b, a)| b - a).collect(),
            });
        }
        crate::wsol::step(progress, cancel, cells.len(), total)?;
    }

    let bootstrap = Bootstrap {
        replicates: config.bootstrap_replicates,
        confidence: CONFIDENCE,
        seed: config.seed,
    };
    let baselines: Vec<AblationSelection> = config
        .selections
        .iter()
        .copied()
        .filter(|&s| s != AblationSelection::Shapley)
        .collect();
    let concepts = concept_rows(&ranked, &targets, &baseline, &cells);
    for c in &concepts {
        let side = match (c.on_images, c.off_images) {
            (0, _) => "no evaluated image at or under it",
            (_, 0) => "every evaluated image is under it (no off-target images)",
            _ => continue,
        };
        skipped.push(AblationSkipped {
            what: c.name.clone(),
            reason: format!("{side}: no drops, left out of the pooled numbers"),
        });
    }
    let report = AblationReport {
        model: job.arch.name().to_string(),
        layer: job.spec.model.layer.clone(),
        neurons: d,
        images: n,
        image_source,
        accuracy,
        curves: tally::curves(
            &targets,
            &cells,
            &config.selections,
            &config.removals,
            &config.fractions,
            |f| select::neurons_kept(d, f),
        ),
        comparisons: tally::compare(
            &targets,
            &cells,
            &baselines,
            &config.removals,
            &config.fractions,
            n,
            &bootstrap,
        ),
        fractions: config.fractions.clone(),
        removals: config.removals.clone(),
        selections: config.selections.clone(),
        random_draws: config.random_draws,
        bootstrap,
        concepts,
        skipped,
    };
    let path = config
        .out
        .clone()
        .unwrap_or_else(|| job.dir.join("results").join(ABLATION_FILE));
    report
        .write(&path)
        .map_err(|e| WsolError::other(&path, e.message))?;
    Ok(report)
}

/// Each concept's numbers for `ablation.json`: image counts, unablated accuracies, its
/// neuron sets and the drops of each of its cells.
fn concept_rows(
    ranked: &[Ranked],
    targets: &Targets,
    baseline: &[(Vec<f32>, Vec<f32>)],
    cells: &[CellDrops],
) -> Vec<ConceptAblation> {
    ranked
        .iter()
        .enumerate()
        .map(|(c, r)| {
            let on = targets.on[c].iter().filter(|&&o| o).count();
            let mean = |v: &[f32], on_side: bool| {
                let (sum, count) = v
                    .iter()
                    .zip(&targets.on[c])
                    .filter(|(_, &o)| o == on_side)
                    .fold((0f64, 0usize), |(s, k), (x, _)| (s + f64::from(*x), k + 1));
                if count == 0 {
                    0.0
                } else {
                    sum / count as f64
                }
            };
            ConceptAblation {
                concept: r.id.0,
                name: r.name.clone(),
                level: r.level,
                on_images: on,
                off_images: targets.on[c].len() - on,
                on_accuracy: mean(&baseline[c].0, true),
                off_accuracy: mean(&baseline[c].0, false),
                sets: r.sets.clone(),
                cells: cells
                    .iter()
                    .filter(|x| x.concept == c)
                    .filter_map(|x| {
                        Some(ConceptCell {
                            selection: x.selection,
                            removal: x.removal,
                            fraction: x.fraction,
                            draw: x.draw,
                            drops: targets.drops(x, None)?,
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Every concept with a classifier and a complete Φ row, with its neuron sets; and the
/// samples of the first classifier group (whose split says which images are held out).
fn rank(
    job: &Job,
    config: &AblateConfig,
    outputs: &Outputs,
    skipped: &mut Vec<AblationSkipped>,
) -> Result<(Vec<Ranked>, ConceptSamples), AblateError> {
    let d = job.classifiers[0].settings.d;
    // Concepts with a classifier and a complete Φ row, grouped by sample settings.
    let mut by_settings: BTreeMap<String, Vec<ConceptId>> = BTreeMap::new();
    for (&id, &dir) in &job.classifier_of {
        match job.phi.get(&id) {
            Some(phi) if phi.len() == d => {
                let key = serde_json::to_string(&job.classifiers[dir].settings.sample)
                    .expect("plain data serialises");
                by_settings.entry(key).or_default().push(id);
            }
            _ => skipped.push(AblationSkipped {
                what: job.hierarchy.concept(id).name.clone(),
                reason: "no complete Φ row".into(),
            }),
        }
    }
    let mut ranked: Vec<Ranked> = Vec::new();
    let mut held_out: Option<ConceptSamples> = None;
    for ids in by_settings.into_values() {
        let dir = &job.classifiers[job.classifier_of[&ids[0]]];
        let samples = dir.rebuild_job_samples(&job.dir, Some(&ids))?;
        for &id in &ids {
            let concept = job.hierarchy.concept(id);
            let full = job.classifiers[job.classifier_of[&id]].classifier(id)?;
            let sample = samples.concept(id).expect("built for this concept");
            let scores = Scores {
                phi: &job.phi[&id],
                weight: &full.weight,
                standardised: select::standardised_weight(&full, &samples, &sample.train),
                raw: select::raw_weight(&full),
                mean_activation: mean_positive_activation(&samples, &sample.train),
            };
            let mut sets = Vec::new();
            for &fraction in &config.fractions {
                let k = select::neurons_kept(d, fraction);
                for &selection in &config.selections {
                    let draws = if selection == AblationSelection::Random {
                        config.random_draws
                    } else {
                        1
                    };
                    for draw in 0..draws {
                        let neurons = scores.top(selection, k, config.seed, id, fraction, draw);
                        sets.push(NeuronSet {
                            selection,
                            fraction,
                            draw,
                            neurons,
                        });
                    }
                }
            }
            let outputs = concept
                .labels
                .iter()
                .map(|&l| outputs.of(&job.hierarchy.labels()[l as usize]))
                .collect::<Result<Vec<_>, _>>()?;
            ranked.push(Ranked {
                id,
                name: concept.name.clone(),
                level: concept.level,
                outputs,
                sets,
            });
        }
        held_out.get_or_insert(samples);
    }
    ranked.sort_by_key(|r| r.id);
    match held_out {
        Some(samples) if !ranked.is_empty() => Ok((ranked, samples)),
        _ => Err(WsolError::Config(
            "no concept has both a classifier and a Φ row".into(),
        )),
    }
}

/// The evaluated images, decoded (the user's set or the job's held-out split; at most
/// `max_images`, the smallest seeded keys), and where they come from.
fn evaluation_images(
    job: &Job,
    config: &AblateConfig,
    outputs: &Outputs,
    held_out: &ConceptSamples,
    skipped: &mut Vec<AblationSkipped>,
) -> Result<(Vec<Evaluated>, String), AblateError> {
    // The images: the user's set, or the job's held-out split (every classifier directory
    // of one job shares the split: one spec).
    let (candidates, image_source) = match &config.images {
        Some(path) => {
            let mut out = Vec::new();
            for img in job.image_set(path)? {
                let output = outputs.of(&img.label)?;
                out.push((img.id, img.path, output));
            }
            (out, path.display().to_string())
        }
        None => {
            let samples = held_out;
            let labels = job.label_index();
            let mut out = Vec::new();
            for img in &job.images {
                let Some(&label) = labels.get(img.label.as_str()) else {
                    continue;
                };
                if samples.is_held_out(label, img.id) {
                    out.push((img.id, img.path.clone(), outputs.of(&img.label)?));
                }
            }
            (out, "the job's held-out images".to_string())
        }
    };
    let mut keyed: Vec<(u64, u64, PathBuf, u32)> = candidates
        .into_iter()
        .map(|(id, path, output)| {
            let key = seed::derive(config.seed, &[ABLATE_TAG, IMAGE_PART, id]);
            (key, id, path, output)
        })
        .collect();
    keyed.sort_unstable_by_key(|k| (k.0, k.1));
    keyed.truncate(config.max_images);
    keyed.sort_unstable_by_key(|k| k.1);
    let decoded: Vec<(PathBuf, Result<Vec<f32>, String>, u32)> = keyed
        .into_par_iter()
        .map(|(_, _, path, output)| {
            let pixels = images::decode::load(&path, &job.preprocess);
            (path, pixels, output)
        })
        .collect();
    let mut evaluated = Vec::new();
    for (path, pixels, output) in decoded {
        match pixels {
            Ok(pixels) => evaluated.push(Evaluated { output, pixels }),
            Err(reason) => skipped.push(AblationSkipped {
                what: path.display().to_string(),
                reason,
            }),
        }
    }
    Ok((evaluated, image_source))
}

/// The job's label map (`labels.txt`): label name → model output.
struct Outputs {
    map: LabelMap,
    path: PathBuf,
}

impl Outputs {
    fn read(job: &Job) -> Result<Self, AblateError> {
        let path = job.dir.join("labels.txt");
        Ok(Outputs {
            map: LabelMap::from_file(&path)?,
            path,
        })
    }

    fn of(&self, name: &str) -> Result<u32, AblateError> {
        self.map.index(name).ok_or_else(|| WsolError::Input {
            path: self.path.clone(),
            problem: format!("label '{name}' has no model output"),
        })
    }
}

/// A concept's neuron scores under every selection.
struct Scores<'a> {
    phi: &'a [f64],
    weight: &'a [f32],
    standardised: Vec<f64>,
    raw: Vec<f64>,
    mean_activation: Vec<f64>,
}

impl Scores<'_> {
    /// The `k` neurons `selection` removes first, ascending.
    fn top(
        &self,
        selection: AblationSelection,
        k: usize,
        seed: u64,
        id: ConceptId,
        fraction: u32,
        draw: u32,
    ) -> Vec<usize> {
        match selection {
            AblationSelection::Shapley => select::top_k(self.phi, k),
            AblationSelection::ShapleyPositive => {
                // Positive-weight neurons outrank the others; Φ orders within each group.
                let mut order: Vec<usize> = (0..self.phi.len()).collect();
                order.sort_by(|&a, &b| {
                    (self.weight[b] > 0.0)
                        .cmp(&(self.weight[a] > 0.0))
                        .then(self.phi[b].total_cmp(&self.phi[a]))
                        .then(a.cmp(&b))
                });
                order.truncate(k);
                order.sort_unstable();
                order
            }
            AblationSelection::WeightStandardised => select::top_k(&self.standardised, k),
            AblationSelection::WeightRaw => select::top_k(&self.raw, k),
            AblationSelection::MeanActivation => select::top_k(&self.mean_activation, k),
            AblationSelection::Random => {
                select::random_k(self.phi.len(), k, seed, id, fraction, draw)
            }
        }
    }
}

/// Mean activation of each neuron over a split's positive rows (the concept's regions).
fn mean_positive_activation(
    samples: &ConceptSamples,
    split: &hint_common::regions::sample::ConceptSplit,
) -> Vec<f64> {
    let d = samples.d();
    let store = samples.activations();
    let mut sum = vec![0f64; d];
    let mut count = 0usize;
    for (&row, &t) in split.rows.iter().zip(&split.targets) {
        if t > 0.5 {
            let r = &store[row as usize * d..(row as usize + 1) * d];
            for (s, &v) in sum.iter_mut().zip(r) {
                *s += f64::from(v);
            }
            count += 1;
        }
    }
    sum.iter().map(|s| s / count.max(1) as f64).collect()
}

/// Index of the largest value (the first on ties).
fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked_and_shapley_comes_first() {
        let mut c = AblateConfig::new("j".into(), Device::Cpu);
        c.selections = vec![AblationSelection::Random, AblationSelection::WeightRaw];
        c.validate().unwrap();
        assert_eq!(
            c.selections,
            vec![
                AblationSelection::Shapley,
                AblationSelection::WeightRaw,
                AblationSelection::Random
            ]
        );
        let fails = |f: &dyn Fn(&mut AblateConfig), needle: &str| {
            let mut c = AblateConfig::new("j".into(), Device::Cpu);
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        fails(&|c| c.fractions = vec![0], "between 1 and 100");
        fails(&|c| c.fractions = vec![5, 5], "twice");
        fails(&|c| c.removals.clear(), "no removal");
        fails(
            &|c| c.selections = vec![AblationSelection::Shapley],
            "baseline",
        );
        fails(&|c| c.random_draws = 0, "random draws");
        fails(&|c| c.bootstrap_replicates = 10, "too few");
        fails(&|c| c.max_images = 1, "at least 2");
    }

    #[test]
    fn sign_aware_ranking_puts_positive_weights_first() {
        let phi = [0.9, 0.8, 0.1, 0.5];
        let weight = [-1.0, 2.0, 0.5, 1.0];
        let s = Scores {
            phi: &phi,
            weight: &weight,
            standardised: vec![0.0; 4],
            raw: vec![0.0; 4],
            mean_activation: vec![0.0; 4],
        };
        let top = |k| {
            s.top(
                AblationSelection::ShapleyPositive,
                k,
                0,
                ConceptId(0),
                10,
                0,
            )
        };
        assert_eq!(top(1), vec![1]);
        assert_eq!(top(2), vec![1, 3]);
        assert_eq!(top(3), vec![1, 2, 3]);
        assert_eq!(top(4), vec![0, 1, 2, 3]);
        assert_eq!(
            s.top(AblationSelection::Shapley, 2, 0, ConceptId(0), 10, 0),
            vec![0, 1]
        );
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    }
}

//! `hint shapley`: classifiers + regions → Φ on one machine. Flags → [`ShapleyConfig`] and
//! the [`Rounds`] a job's Shapley stage would run; the evaluation (and, for retrain, training) regions of every concept are
//! rebuilt from `classify.json` by the classifier stage's sampling API, so they are exactly
//! the held-out split the classifiers were scored on.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hint_common::job::spec::ShapleySpec;
use hint_common::shapley::phi::{
    multimodal, top_neurons, write_multimodal_csv, write_phi_csv, write_phi_parquet, write_top_csv,
    ConceptPhi, ShapleySkipped, ShapleySummary, ShapleySummaryConcept, SHAPLEY_SUMMARY_FILE,
};
use hint_common::shapley::{Quality, Replacement, Rounds};
use hint_worker::classify::ClassifierDir;
use hint_worker::shapley::{
    estimate, ConceptInput, Mode, NoGame, ShapleyConfig, ShapleyEngine, SweepBackend,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `hint shapley`.
#[derive(Args, Debug)]
pub struct ShapleyArgs {
    /// The classifier directory written by `hint classify`.
    #[arg(long)]
    classifiers: PathBuf,
    /// The region directory (default: the one recorded in the classifiers' classify.json).
    #[arg(long)]
    regions: Option<PathBuf>,
    /// Output directory: phi.parquet, phi.csv, top_neurons.csv, multimodal.csv,
    /// concepts.json, shapley.json.
    #[arg(long)]
    out: PathBuf,
    /// Replace the Φ files left in --out by an earlier run.
    #[arg(long)]
    overwrite: bool,
    /// Permutations per concept (the most, when a stopping rule is given).
    #[arg(long, default_value_t = ShapleySpec::default().permutations)]
    permutations: u64,
    /// Stop a concept once every neuron's standard error is below this.
    #[arg(long)]
    until_stderr: Option<f64>,
    /// Stop a concept once its top-K neurons are separated from the rest (with --confidence).
    #[arg(long)]
    until_top_k: Option<usize>,
    /// One-sided confidence of each top-K separation.
    #[arg(long, default_value_t = ShapleySpec::default().confidence)]
    confidence: f64,
    /// Permutations between two checks of the stopping rule.
    #[arg(long, default_value_t = ShapleySpec::default().permutations_per_task)]
    round: u64,
    /// Value mode: fixed (the trained classifier) or retrain (a fit per coalition).
    #[arg(long, value_enum, default_value_t = ShapleySpec::default().mode)]
    mode: Mode,
    /// What replaces neurons outside a coalition: marginal, mean or zero.
    #[arg(long, default_value_t = ShapleySpec::default().replacement)]
    replacement: Replacement,
    /// Quality measure. Of the true labels: log_likelihood, balanced_log_likelihood, accuracy.
    /// Of the concept's prediction (the paper's sign-aware value): prediction, logit (mean over
    /// the positives), prediction_all, logit_all (mean over all evaluation regions).
    #[arg(long, default_value_t = ShapleySpec::default().quality)]
    quality: Quality,
    /// Independent permutations instead of antithetic pairs.
    #[arg(long)]
    no_antithetic: bool,
    /// Stop a sweep once |v(all) − v(prefix)| ≤ this (retrain mode: the remaining fits too).
    #[arg(long)]
    truncation: Option<f64>,
    /// Seed of the permutations and the replacement rows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu, cuda, cuda:N, or auto. Fixed mode on cpu is the pure-Rust sweep
    /// (bit-identical on every machine); on a GPU, permutations are swept in batches by
    /// libtorch (Φ agrees with cpu to float tolerance, not bits). Retrain fits run there too.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
    /// Retrain mode: full Newton steps per fit (at most: a fit on a permutation's path,
    /// warm-started from the previous coalition, stops once converged).
    #[arg(long, default_value_t = ShapleySpec::default().retrain_iterations)]
    retrain_iterations: usize,
    /// Retrain mode: fitting regions per concept; a concept with more is fitted on a seeded
    /// uniform subsample of this many (0: all of its training regions).
    #[arg(long, default_value_t = ShapleySpec::default().retrain_fit_regions)]
    retrain_fit_regions: usize,
    /// Retrain mode: L2 penalty on the raw weights.
    #[arg(long, default_value_t = ShapleySpec::default().retrain_l2)]
    l2: f64,
    /// Neurons listed per concept in top_neurons.csv (and the multimodal rule).
    #[arg(long, default_value_t = ShapleySpec::default().top)]
    top: usize,
    /// Only these concepts (key or name; repeat the flag). Default: every trained concept.
    #[arg(long = "concept")]
    concepts: Vec<String>,
}

impl ShapleyArgs {
    fn config(&self) -> anyhow::Result<(ShapleyConfig, Rounds)> {
        anyhow::ensure!(
            self.until_stderr.is_none() || self.until_top_k.is_none(),
            "give --until-stderr or --until-top-k, not both"
        );
        anyhow::ensure!(
            self.until_top_k.is_none() || (self.confidence > 0.5 && self.confidence < 1.0),
            "--confidence must be in (0.5, 1)"
        );
        let section = self.section();
        let device = hint_worker::device::parse(&self.device)?;
        let config = ShapleyConfig::from_spec(&section, self.seed, device)?;
        anyhow::ensure!(self.permutations > 0, "--permutations must be at least 1");
        Ok((config, section.rounds()))
    }

    /// The flags as a `[shapley]` section, so they become a config (and the Φ files'
    /// metadata) the way a job's do.
    fn section(&self) -> ShapleySpec {
        ShapleySpec {
            mode: self.mode,
            quality: self.quality,
            replacement: self.replacement,
            antithetic: !self.no_antithetic,
            permutations: self.permutations,
            permutations_per_task: self.round.max(1),
            until_stderr: self.until_stderr,
            until_top_k: self.until_top_k,
            confidence: self.confidence,
            truncation: self.truncation,
            retrain_iterations: self.retrain_iterations,
            retrain_l2: self.l2,
            retrain_fit_regions: self.retrain_fit_regions,
            top: self.top,
            // A device named on the command line sweeps fixed mode there too.
            sweep_on_device: true,
        }
    }
}

/// What happened to one concept.
struct ConceptRun {
    phi: ConceptPhi,
    eval_regions: usize,
    seconds: f64,
    stopped_early: bool,
}

/// Runs `hint shapley`.
pub fn run(args: ShapleyArgs) -> anyhow::Result<()> {
    let (config, rounds) = args.config()?;
    let dir = ClassifierDir::open(&args.classifiers)
        .with_context(|| format!("reading classifiers in {}", args.classifiers.display()))?;
    let hierarchy = &dir.hierarchy;
    let mut ids = dir.trained();
    if !args.concepts.is_empty() {
        let mut wanted = Vec::new();
        for name in &args.concepts {
            let id = hierarchy
                .find(name)
                .with_context(|| format!("--concept {name}: not in the hierarchy"))?;
            anyhow::ensure!(ids.contains(&id), "--concept {name}: has no classifier");
            wanted.push(id);
        }
        ids = wanted;
    }
    // Like every stage, never replace an earlier run's results silently.
    let earlier = args.out.join("phi.parquet");
    anyhow::ensure!(
        args.overwrite || !earlier.exists(),
        "{} exists from an earlier run: pass --overwrite to replace it, or choose another --out",
        earlier.display()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} shapley [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message("reading regions");
    let samples = dir
        .rebuild_samples(args.regions.as_deref(), Some(&ids), &mut |p| {
            bar.set_length(p.rows_total);
            bar.set_position(p.rows_done);
        })
        .context("rebuilding the classifiers' evaluation regions")?;
    bar.set_length(ids.len() as u64 * rounds.max);
    bar.set_position(0);

    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for &id in &ids {
        let concept = hierarchy.concept(id);
        bar.set_message(format!("permutations · {}", concept.name));
        let classifier = dir.classifier(id)?;
        let input = match ConceptInput::from_samples(id, &samples, &classifier, config.mode) {
            Ok(input) => input,
            Err(NoGame::NoSamples) => anyhow::bail!("concept {} missing from the samples", id.0),
            Err(no_game) => {
                skipped.push(ShapleySkipped {
                    concept: id.0,
                    name: concept.name.clone(),
                    reason: no_game.to_string(),
                });
                continue;
            }
        };
        let start = Instant::now();
        let engine = ShapleyEngine::new(&input, &config)
            .with_context(|| format!("concept {} ({})", concept.name, id.0))?;
        let base = bar.position();
        let sums = estimate(&engine, &rounds, |s| {
            bar.set_position(base + s.permutations())
        })
        .with_context(|| format!("concept {} ({})", concept.name, id.0))?;
        if let Some(warning) = engine.unconverged_warning((0, 0)) {
            bar.suspend(|| eprintln!("warning: {warning} ({})", concept.name));
        }
        runs.push(ConceptRun {
            stopped_early: sums.permutations() < rounds.max,
            phi: ConceptPhi {
                concept: id.0,
                name: concept.name.clone(),
                level: concept.level,
                estimates: sums.estimates(),
            },
            eval_regions: input.eval_targets.len(),
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    bar.finish_and_clear();
    write_outputs(&args, &config, &rounds, &dir, &runs, &skipped)?;
    print_summary(&args, &config, &runs, &skipped);
    Ok(())
}

/// The Φ files' metadata: the section's ([`ShapleySpec::phi_metadata`]), with the backend
/// that ran (Φ is bit-identical only between runs on the same backend and, for a device,
/// the same kind of device and group size) and the classifier directory.
fn settings(args: &ShapleyArgs, config: &ShapleyConfig) -> Vec<(String, String)> {
    let mut pairs = args.section().phi_metadata(config.seed, &backend(config));
    pairs.push((
        "hint.shapley.classifiers".into(),
        args.classifiers.display().to_string(),
    ));
    pairs
}

/// What computed the sweeps or fits: `cpu` (the pure-Rust sweep) or the libtorch device
/// with its batching.
fn backend(config: &ShapleyConfig) -> String {
    match (config.mode, config.fixed.backend) {
        (Mode::Retrain, _) => format!("retrain on {:?}", config.retrain.device),
        (Mode::Fixed, SweepBackend::Rust) => "cpu".into(),
        (Mode::Fixed, SweepBackend::Torch(device)) => {
            format!("{device:?}, group {}", config.fixed.group)
        }
    }
}

fn write_outputs(
    args: &ShapleyArgs,
    config: &ShapleyConfig,
    rounds: &Rounds,
    dir: &ClassifierDir,
    runs: &[ConceptRun],
    skipped: &[ShapleySkipped],
) -> anyhow::Result<()> {
    let phis: Vec<ConceptPhi> = runs.iter().map(|r| r.phi.clone()).collect();
    let out = &args.out;
    write_phi_parquet(&out.join("phi.parquet"), &phis, &settings(args, config))?;
    write_phi_csv(&out.join("phi.csv"), &phis)?;
    write_top_csv(&out.join("top_neurons.csv"), &top_neurons(&phis, args.top))?;
    write_multimodal_csv(&out.join("multimodal.csv"), &multimodal(&phis, args.top))?;
    dir.hierarchy.write_json(&out.join("concepts.json"))?;
    let summary = ShapleySummary {
        concepts: runs
            .iter()
            .map(|r| ShapleySummaryConcept {
                concept: r.phi.concept,
                eval_regions: r.eval_regions,
                level: r.phi.level,
                n_permutations: r.phi.estimates.first().map_or(0, |e| e.n_permutations),
                name: r.phi.name.clone(),
                seconds: r.seconds,
                stopped_by_rule: r.stopped_early,
            })
            .collect(),
        max_permutations: args.permutations,
        rule: rounds.rule.map(|r| format!("{r:?}")),
        settings: settings(args, config).into_iter().collect(),
        skipped: skipped.to_vec(),
        top: args.top,
    };
    summary.write(&out.join(SHAPLEY_SUMMARY_FILE))?;
    Ok(())
}

fn print_summary(
    args: &ShapleyArgs,
    config: &ShapleyConfig,
    runs: &[ConceptRun],
    skipped: &[ShapleySkipped],
) {
    let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
    let permutations: u64 = runs
        .iter()
        .map(|r| r.phi.estimates.first().map_or(0, |e| e.n_permutations))
        .sum();
    println!(
        "Shapley values of {} concept(s): {permutations} permutations in {seconds:.1} s \
         (mode {}, quality {}, replacement {}, seed {})",
        runs.len(),
        config.mode,
        config.quality,
        config.replacement,
        config.seed
    );
    let shown = args.top.min(5);
    let mut levels: Vec<u32> = runs.iter().map(|r| r.phi.level).collect();
    levels.sort_unstable();
    levels.dedup();
    for level in levels {
        println!("  level {level}:");
        for r in runs.iter().filter(|r| r.phi.level == level) {
            let top: Vec<String> = r
                .phi
                .ranking()
                .into_iter()
                .take(shown)
                .map(|d| {
                    let e = r.phi.estimates[d as usize];
                    format!("{d} ({:.4}±{:.4})", e.phi, e.stderr)
                })
                .collect();
            println!(
                "    {:<24} {} regions, {} perms: {}",
                r.phi.name,
                r.eval_regions,
                r.phi.estimates.first().map_or(0, |e| e.n_permutations),
                top.join(", ")
            );
        }
    }
    let phis: Vec<ConceptPhi> = runs.iter().map(|r| r.phi.clone()).collect();
    let multi = multimodal(&phis, args.top);
    let unexplained = multi.iter().filter(|m| m.max_same_level >= 2).count();
    println!(
        "  multimodal neurons (top-{} of ≥ 2 concepts): {} ({unexplained} across concepts of one level)",
        args.top,
        multi.len()
    );
    for m in multi.iter().filter(|m| m.max_same_level >= 2).take(10) {
        let names: Vec<&str> = m.concepts.iter().map(|c| c.1.as_str()).collect();
        println!("    neuron {}: {}", m.neuron, names.join(", "));
    }
    for s in skipped {
        println!("  skipped {}: {}", s.name, s.reason);
    }
    println!("  output: {}", args.out.display());
}

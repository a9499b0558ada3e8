//! `hint check JOB.toml`: validates a job spec and summarises it, or lists every problem.
//! Reads only: nothing is written, nothing is contacted.

use std::path::PathBuf;

use clap::Args;
use hint_common::architecture::Architecture;
use hint_common::images::shards;
use hint_common::job::spec::{ExtractSpec, HierarchySpec, JobSpec};
use hint_common::settings::MethodName;
use hint_coordinator::spec;

/// Flags of `hint check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The job spec (TOML; see docs/job-spec.md).
    spec: PathBuf,
    /// Print the validated spec as the JSON workers receive (absolute paths, defaults filled
    /// in) instead of the summary.
    #[arg(long)]
    json: bool,
}

/// Runs `hint check`: exit status 0 when the spec is valid; otherwise the error lists every
/// problem with its field.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let spec = spec::load(&args.spec)?;
    if args.json {
        println!("{}", spec.to_json());
    } else {
        println!("{}: valid", args.spec.display());
        print!("{}", summary(&spec));
    }
    for warning in spec::warnings(&spec) {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// The spec in a few lines, stage by stage.
fn summary(spec: &JobSpec) -> String {
    let mut lines = Vec::new();
    let mut line = |what: &str, text: String| lines.push(format!("  {what:<10} {text}"));
    line("job", format!("{} (seed {})", spec.name, spec.seed));

    let m = &spec.model;
    let input = Architecture::parse(&m.architecture)
        .map(|a| a.default_input())
        .ok();
    let resize = m.resize.or(input.map(|i| i.resize));
    let crop = m.crop.or(input.map(|i| i.crop));
    line(
        "model",
        format!(
            "{}, {}, input resize {} crop {}",
            m.architecture,
            if m.layers.is_empty() {
                format!("layer {}", m.layer)
            } else {
                format!(
                    "layers {} (one extraction pass, then a job per layer)",
                    m.layers.join(", ")
                )
            },
            resize.map_or("?".into(), |r| r.to_string()),
            crop.map_or("?".into(), |c| c.to_string())
        ),
    );
    line("weights", m.weights.display().to_string());

    let d = &spec.data;
    line("images", d.images.display().to_string());
    line(
        "labels",
        d.labels.as_ref().map_or_else(
            || "sorted class names (ImageFolder order)".into(),
            |l| l.display().to_string(),
        ),
    );
    line("hierarchy", hierarchy(&d.hierarchy));

    let e = &spec.extract;
    let parameters = match e.method {
        MethodName::SmoothGrad => format!(" ({} samples, noise {})", e.samples, e.noise),
        MethodName::IntegratedGradients => {
            format!(" ({} steps, baseline {})", e.steps, e.baseline)
        }
        _ => String::new(),
    };
    line(
        "extract",
        format!(
            "{}{parameters}, aggregation {}, threshold {}, background ratio {}, {} activations, \
             {} files, batch {}, {}",
            e.method,
            e.aggregation,
            e.threshold,
            e.background_ratio,
            e.activation_type,
            e.compression,
            e.batch_size,
            match e.images_per_task {
                Some(n) => format!("{n} images per task"),
                None if shards::names_shards(&spec.data.images) => {
                    "one tar shard per task".to_string()
                }
                None => format!("{} images per task", ExtractSpec::DEFAULT_IMAGES_PER_TASK),
            }
        ),
    );

    let c = &spec.classify;
    line(
        "classify",
        format!(
            "at most {} positives per concept, negatives {}, holdout {}, l2 {}, {} iterations \
             (tolerance {}), {} concepts per task",
            c.max_per_class,
            c.negatives,
            c.holdout,
            number(c.l2),
            c.iterations,
            number(c.tolerance),
            c.concepts_per_task
        ),
    );

    let s = &spec.shapley;
    let rule = match (s.until_stderr, s.until_top_k) {
        (Some(bound), _) => format!(", until every stderr < {}", number(bound)),
        (_, Some(k)) => format!(
            ", until the top {k} are separated (confidence {})",
            s.confidence
        ),
        _ => String::new(),
    };
    let truncation = s
        .truncation
        .map_or(String::new(), |t| format!(", truncation {t}"));
    let mode = match s.mode {
        hint_common::settings::Mode::Retrain => format!(
            "retrain (at most {} Newton steps per fit, l2 {}, {}{truncation})",
            s.retrain_iterations,
            number(s.retrain_l2),
            match s.retrain_fit_regions {
                0 => "all training regions".to_string(),
                n => format!("at most {n} fitting regions per concept"),
            }
        ),
        hint_common::settings::Mode::Fixed => format!(
            "fixed{truncation}{}",
            if s.sweep_on_device {
                ", sweep on the device"
            } else {
                ", CPU sweep"
            }
        ),
    };
    let sampling = if s.antithetic {
        "antithetic pairs"
    } else {
        "independent"
    };
    line(
        "shapley",
        format!(
            "{mode}, quality {}, replacement {}; permutations ({sampling}): at most {}, \
             {} per task{rule}; top {}",
            s.quality, s.replacement, s.permutations, s.permutations_per_task, s.top
        ),
    );
    let held_out = |images: &Option<std::path::PathBuf>| {
        images.as_ref().map_or_else(
            || "the job's held-out split".to_string(),
            |p| p.display().to_string(),
        )
    };
    if let Some(v) = &spec.evaluate {
        line(
            "evaluate",
            format!(
                "WSOL once Φ is written (a stage on a worker): {}% of the neurons kept, {} images per \
                 concept from {}, {} random draws, {} bootstrap replicates",
                join(&v.fractions),
                v.images_per_concept,
                held_out(&v.images),
                v.random_draws,
                v.bootstrap
            ),
        );
    }
    if let Some(a) = &spec.ablate {
        let names = |n: Vec<&str>| n.join(", ");
        line(
            "ablate",
            format!(
                "ablation once Φ is written (a stage on a worker): {}% removed ({}), selections {}, \
                 {} images from {}, {} random draws, {} bootstrap replicates",
                join(&a.fractions),
                names(a.removals.iter().map(|r| r.name()).collect()),
                names(a.selections.iter().map(|s| s.name()).collect()),
                a.max_images,
                held_out(&a.images),
                a.random_draws,
                a.bootstrap
            ),
        );
    }
    line(
        "storage",
        format!("{}/<job-id>/", spec.storage.root.display()),
    );
    line(
        "scheduler",
        format!("{} attempts per task", spec.scheduler.max_attempts),
    );
    lines.join("\n") + "\n"
}

fn hierarchy(h: &HierarchySpec) -> String {
    match h {
        HierarchySpec::File { path } => path.display().to_string(),
        HierarchySpec::Wordnet {
            dir,
            roots,
            min_images,
            collapse,
            max_depth,
            drop_uncovered,
        } => {
            let mut rules = vec![match dir {
                Some(dir) => format!("from {}", dir.display()),
                None => "from HINT_WORDNET or the default directory".into(),
            }];
            rules.push(if roots.is_empty() {
                "every root".into()
            } else {
                format!("roots {}", roots.join(", "))
            });
            if let Some(n) = min_images {
                rules.push(format!("at least {n} images"));
            }
            if *collapse {
                rules.push("single-child chains collapsed".into());
            }
            if let Some(depth) = max_depth {
                rules.push(format!("depth ≤ {depth}"));
            }
            if *drop_uncovered {
                rules.push("uncovered labels dropped".into());
            }
            format!("WordNet 3.0 ({})", rules.join(", "))
        }
    }
}

/// Percentages as a list: `10, 20, 40`.
fn join(fractions: &[u32]) -> String {
    fractions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A setting as a person writes it: `1e-12`, not `0.000000000001`.
fn number(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

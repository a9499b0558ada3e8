//! `hint run job.toml --workers N`: the embedded default — a coordinator and N workers in
//! this process, talking gRPC over loopback (the cluster's code paths), the state and the
//! results under the spec's storage root. Killed and started again with the same spec, it
//! resumes the unfinished job instead of starting over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hint_common::ablation::{AblationReport, ABLATION_FILE};
use hint_common::job::JobId;
use hint_common::proto::{self, jobs_client::JobsClient};
use hint_common::storage;
use hint_coordinator::coordinator::{Coordinator, CoordinatorConfig};
use hint_coordinator::job_file::{JobSummary, JOB_FILE};
use hint_coordinator::report::depth::{DepthFile, DEPTH_HTML, DEPTH_JSON};
use hint_coordinator::{results, service, spec};
use hint_worker::runtime::{self, WorkerConfig};
use hint_worker::tasks::TaskRunner;
use hint_worker::wsol::{WsolReport, WSOL_FILE};

use hint_coordinator::progress::follow;
use hint_coordinator::progress::{describe, phase_name};

/// Flags of `hint run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The job spec (TOML); see docs/job-spec.md.
    spec: PathBuf,
    /// Workers in this process.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// State directory: the coordinator's journal (default: <storage.root>/state; required
    /// when the storage root is an s3:// URL, since the journal is a local file).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Device of the workers: cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
}

/// Runs `hint run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let spec = spec::load(&args.spec)?;
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    for warning in spec::warnings(&spec) {
        eprintln!("warning: {warning}");
    }
    let state = match &args.state {
        Some(state) => state.clone(),
        None if storage::is_remote(&spec.storage.root) => anyhow::bail!(
            "the storage root {} is in object storage: give --state DIR, a local directory \
             for the coordinator's journal",
            spec.storage.root.display()
        ),
        None => spec.storage.root.join("state"),
    };
    let device = hint_worker::device::parse(&args.device)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (coordinator, actions) = Coordinator::open(CoordinatorConfig::new(state.clone()))
            .with_context(|| format!("opening the state in {}", state.display()))?;
        coordinator.spawn_background(actions);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|&s| s).await;
        };
        let server = tokio::spawn(service::serve(
            Arc::clone(&coordinator),
            listener,
            until_stopped(stopped.clone()),
        ));
        let mut workers = Vec::new();
        for k in 0..args.workers {
            let config = WorkerConfig {
                coordinator: url.clone(),
                name: format!("embedded-{k}"),
                device: format!("{device:?}"),
                slots: 1,
                drain: Duration::ZERO,
                max_backoff: Duration::from_secs(1),
            };
            let runner = Arc::new(TaskRunner::new(
                device,
                (cores / args.workers as usize).max(1),
            ));
            workers.push(tokio::spawn(runtime::run(
                config,
                runner,
                until_stopped(stopped.clone()),
            )));
        }
        let json = spec.to_json();
        let unfinished = coordinator.read(|s| {
            s.jobs()
                .find(|j| !j.is_finished() && j.spec_json == json)
                .map(|j| j.id.clone())
        });
        let job = match unfinished {
            Some(job) => {
                println!("resuming {job} from {}", state.display());
                job
            }
            None => coordinator
                .submit_spec(spec)
                .context("submitting the job")?,
        };
        let mut client = JobsClient::connect(url.clone()).await?;
        // Fail-stop: a journal that cannot be written ends the run with its reason (the
        // state stays what the journal holds; running again resumes it).
        let status = tokio::select! {
            status = follow(&mut client, &job.0) => status?,
            reason = coordinator.journal_failure() => {
                let _ = stop.send(true);
                anyhow::bail!("{reason}");
            }
        };
        let _ = stop.send(true);
        for worker in workers {
            worker.await??;
        }
        server.await??;
        print_summary(&coordinator, &job, &status, args.workers);
        anyhow::ensure!(
            status.phase == proto::JobPhase::Succeeded as i32,
            "job {job} {}{}",
            phase_name(status.phase),
            if status.error.is_empty() {
                String::new()
            } else {
                format!(": {}", status.error)
            }
        );
        let job_dir = coordinator
            .read(|s| s.job(&job).map(|j| j.job_dir.clone()))
            .context("the job vanished")?;
        if results::results_dir(&job_dir)
            .join(results::LAYERS_FILE)
            .is_file()
        {
            return print_layers(&job_dir);
        }
        print_assessments(&results::results_dir(&job_dir))?;
        println!(
            "  report: {}",
            results::results_dir(&job_dir).join("report.html").display()
        );
        Ok(())
    })
}

/// A job with several layers: the depth view's table and each layer's report.
fn print_layers(job_dir: &Path) -> anyhow::Result<()> {
    let results = results::results_dir(job_dir);
    let layers = results.join(results::LAYERS_FILE);
    let text = std::fs::read_to_string(&layers)
        .with_context(|| format!("reading {}", layers.display()))?;
    let layers: Vec<results::LayerJob> =
        serde_json::from_str(&text).with_context(|| format!("reading {}", layers.display()))?;
    // The report wrote the comparison: its figures, not the layers' results read again.
    let depth = DepthFile::read(&results.join(DEPTH_JSON))?;
    println!("  layers, shallow to deep:");
    for line in depth.table().lines() {
        println!("    {line}");
    }
    for layer in &layers {
        println!(
            "  {} ({}): {}",
            layer.layer,
            layer.job,
            results::results_dir(&layer.job_dir)
                .join("report.html")
                .display()
        );
    }
    println!("  depth view: {}", results.join(DEPTH_HTML).display());
    Ok(())
}

/// The tables of the evaluate and ablate stages, where the job ran them.
fn print_assessments(results: &Path) -> anyhow::Result<()> {
    let wsol = results.join(WSOL_FILE);
    if wsol.is_file() {
        let report = WsolReport::read(&wsol).map_err(anyhow::Error::msg)?;
        println!(
            "  localisation (WSOL, {} neurons, seed {}): {}",
            report.neurons,
            report.seed,
            wsol.display()
        );
        super::evaluate::print_results(&report);
    }
    let ablation = results.join(ABLATION_FILE);
    if ablation.is_file() {
        let report = AblationReport::read(&ablation).map_err(anyhow::Error::msg)?;
        println!(
            "  ablation ({} images, {} at {}): {}",
            report.images,
            report.model,
            report.layer,
            ablation.display()
        );
        super::ablate::print_results(&report);
    }
    Ok(())
}

/// The five largest φ of every concept, level by level, from the job's `top_neurons.csv`
/// (an ended job's Shapley sums are in its files only, not in the coordinator's memory).
fn print_top_neurons(results: &Path) {
    let Ok(text) = storage::read_to_string(&results.join("top_neurons.csv")) else {
        return;
    };
    // concept, concept_name, level, rank, neuron, phi, stderr; rows by concept, then rank.
    let mut concepts: Vec<(u32, String, Vec<String>)> = Vec::new();
    for row in csv::Reader::from_reader(text.as_bytes())
        .records()
        .flatten()
    {
        let field = |i: usize| row.get(i).unwrap_or_default();
        let (Ok(level), Ok(rank)) = (field(2).parse::<u32>(), field(3).parse::<u32>()) else {
            continue;
        };
        let (phi, stderr) = (
            field(5).parse().unwrap_or(f64::NAN),
            field(6).parse().unwrap_or(f64::NAN),
        );
        let neuron = format!("{} ({phi:.4}±{stderr:.4})", field(4));
        match concepts.last_mut() {
            Some((_, name, top)) if name == field(1) && rank > 1 => {
                if top.len() < 5 {
                    top.push(neuron);
                }
            }
            _ => concepts.push((level, field(1).to_string(), vec![neuron])),
        }
    }
    let mut levels: Vec<u32> = concepts.iter().map(|c| c.0).collect();
    levels.sort_unstable();
    levels.dedup();
    println!("  top neurons (φ ± stderr) per concept:");
    for level in levels {
        println!("    level {level}:");
        for (_, name, top) in concepts.iter().filter(|c| c.0 == level) {
            println!("      {name:<22} {}", top.join(", "));
        }
    }
}

fn print_summary(coordinator: &Coordinator, id: &JobId, status: &proto::JobStatus, workers: u32) {
    print!("{}", describe(status));
    let Some(job) = coordinator.read(|s| s.job(id).cloned()) else {
        return;
    };
    let dir = results::results_dir(&job.job_dir);
    // No results (a failed job): the status above is all there is.
    let Ok(text) = storage::read_to_string(&dir.join(JOB_FILE)) else {
        return;
    };
    let summary: JobSummary = serde_json::from_str(&text).unwrap_or_default();
    println!(
        "  {} workers; {} of {} images → {} region rows in {} files; {} image(s) skipped",
        workers,
        summary.images_processed,
        summary.images,
        summary.region_rows,
        summary.region_files,
        summary.skipped_images.len()
    );
    if let Some(quality) = &summary.region_quality {
        println!("  regions: {}", quality.line());
        for warning in &quality.warnings {
            println!("  warning: {warning}");
        }
    }
    print_top_neurons(&dir);
    println!("  results: {}", dir.display());
}

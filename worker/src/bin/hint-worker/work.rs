//! `hint-worker` without a subcommand: a GPU (or CPU) worker of a hint coordinator.
//!
//! ```sh
//! hint-worker --coordinator http://coordinator:50051 [--device auto] [--slots 1]
//! hint-worker --coordinator https://coordinator:50051 --tls-ca ca.pem \
//!     [--tls-cert worker.pem --tls-key worker.key] [--token-file token]
//! ```
//!
//! Registers, polls for tasks, runs them, reports results; reconnects with backoff when the
//! coordinator is away; on SIGTERM or Ctrl-C stops taking work, lets running tasks finish for
//! `--drain-seconds`, then hands back what is left and leaves.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hint_common::storage;
use hint_common::transport::{ClientSettings, ClientTransport};
use hint_worker::runtime::{self, WorkerConfig};
use hint_worker::tasks::TaskRunner;

/// The worker's flags (`--coordinator` is required unless a subcommand is given).
#[derive(Args, Debug)]
pub struct WorkArgs {
    /// The coordinator's URL.
    // Required, but an `Option`: with a subcommand there is none to build the struct from.
    #[arg(long, env = "HINT_COORDINATOR", required = true)]
    coordinator: Option<String>,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto", env = "HINT_DEVICE")]
    device: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Image decoding threads of an extract task (default, or 0: the cores the model
    /// leaves, at least 1: all cores minus libtorch's intra-op threads on a CPU device,
    /// minus the one model thread on a GPU).
    #[arg(long)]
    decode_threads: Option<usize>,
    /// Row groups of an extract task's region file encoded at once, each on a thread of its
    /// own (default, or 0: the cores less two, 4 to 24; each holds about 32 MB).
    #[arg(long)]
    encode_threads: Option<usize>,
    /// A name in the coordinator's logs and status (default: the host name and process id).
    #[arg(long, env = "HINT_WORKER_NAME")]
    name: Option<String>,
    /// Seconds running tasks may finish after SIGTERM before they are handed back.
    #[arg(long, default_value_t = 60.0)]
    drain_seconds: f64,
    /// The most bytes of downloaded objects the cache ($HINT_CACHE_DIR) keeps, least
    /// recently used out first (e.g. 250GiB; default: $HINT_CACHE_LIMIT, else no limit).
    /// Files a task is reading are never removed.
    #[arg(long, value_parser = storage::parse_bytes)]
    cache_limit: Option<u64>,
    #[command(flatten)]
    transport: ClientSettings,
}

/// Registers with the coordinator and runs its tasks until SIGTERM or Ctrl-C.
pub fn run(args: WorkArgs) -> anyhow::Result<()> {
    // Before loading anything heavy: a wrong file fails now, naming it.
    let transport = ClientTransport::load(&args.transport)?;
    let device = hint_worker::device::parse(&args.device)?;
    // The flag over the environment, which every process's cache reads (a malformed
    // value fails now, naming it).
    if let Some(limit) = args.cache_limit {
        storage::set_cache_limit(Some(limit));
    }
    storage::cache()?;
    let decode_threads = args
        .decode_threads
        .filter(|&threads| threads > 0)
        .unwrap_or_else(|| hint_worker::extract::default_decode_threads(device));
    let name = args.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "worker".into());
        format!("{}-{}", host.trim(), std::process::id())
    });
    let config = WorkerConfig {
        coordinator: args
            .coordinator
            .context("--coordinator (or HINT_COORDINATOR) is required")?,
        name,
        device: format!("{device:?}"),
        slots: args.slots.max(1),
        drain: Duration::from_secs_f64(args.drain_seconds.max(0.0)),
        max_backoff: Duration::from_secs(5),
    };
    let runner = Arc::new(
        TaskRunner::new(device, decode_threads)
            .with_encode_threads(args.encode_threads.unwrap_or(0)),
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(runtime::run_with_transport(
        config,
        &transport,
        runner,
        shutdown_signal(),
    ))?;
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

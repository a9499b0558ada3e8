//! `hint coordinator`: the coordinator of a cluster — the gRPC services on a port, metrics
//! and a status page over HTTP on another, the state in a directory (a restart on the same directory resumes every unfinished job).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hint_coordinator::coordinator::{Coordinator, CoordinatorConfig};
use hint_coordinator::{http, service};

/// Flags of `hint coordinator`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; see --address-file).
    #[arg(long, default_value = "127.0.0.1:50051", env = "HINT_LISTEN")]
    listen: String,
    /// State directory: the journal of every job (resumed on restart).
    #[arg(long, env = "HINT_STATE")]
    state: PathBuf,
    /// Seconds a lease lives without a heartbeat (and a quiet worker is declared lost).
    #[arg(long, default_value_t = 30.0)]
    lease_timeout_seconds: f64,
    /// Seconds a running job may have no worker at all before it fails.
    #[arg(long, default_value_t = 600.0)]
    worker_grace_seconds: f64,
    /// Write the bound address (`http://IP:PORT`) to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// Address of the HTTP side: Prometheus `/metrics`, a status page at `/`, `/healthz`.
    #[arg(long, default_value = "127.0.0.1:9464", env = "HINT_HTTP_LISTEN")]
    http_listen: String,
    /// Write the HTTP side's bound address to this file once listening.
    #[arg(long)]
    http_address_file: Option<PathBuf>,
}

/// Writes `text` to `path` atomically (a reader never sees half an address).
fn write_atomically(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

impl ServeArgs {
    /// The coordinator's settings.
    pub fn config(&self) -> CoordinatorConfig {
        let mut config = CoordinatorConfig::new(self.state.clone());
        config.scheduler.lease_timeout =
            Duration::from_secs_f64(self.lease_timeout_seconds.max(0.05));
        config.scheduler.worker_grace = Duration::from_secs_f64(self.worker_grace_seconds.max(0.0));
        config
    }
}

/// Runs `hint coordinator` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (coordinator, actions) = Coordinator::open(args.config())
            .with_context(|| format!("opening the state in {}", args.state.display()))?;
        coordinator.spawn_background(actions);
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = format!("http://{}", listener.local_addr()?);
        let http_listener = tokio::net::TcpListener::bind(&args.http_listen)
            .await
            .with_context(|| format!("listening on {} (--http-listen)", args.http_listen))?;
        let http_address = format!("http://{}", http_listener.local_addr()?);
        tokio::spawn(http::serve(
            Arc::clone(&coordinator),
            http_listener,
            shutdown_signal(),
        ));
        if let Some(path) = &args.http_address_file {
            write_atomically(path, &http_address)?;
        }
        if let Some(path) = &args.address_file {
            write_atomically(path, &address)?;
        }
        println!(
            "hint coordinator listening on {address} (gRPC) and {http_address} (metrics, status page), state in {}",
            args.state.display()
        );
        service::serve(coordinator, listener, shutdown_signal())
            .await
            .context("serving gRPC")?;
        Ok(())
    })
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

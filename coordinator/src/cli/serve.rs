//! `hint coordinator`: the coordinator of a cluster — the gRPC services on a port, metrics
//! and a status page over HTTP on another, the state in a directory (a restart on the same directory resumes every unfinished job).
//!
//! **Exposure rule.** On a loopback address anything goes. On any other address the gRPC
//! port must authenticate its callers: mutual TLS (`--tls-client-ca`), or TLS with a
//! bearer token (`--tls-cert/--tls-key` + `--token-file`). TLS alone is not
//! authentication (anyone may connect), and a token over plaintext would travel in clear;
//! both, like no protection at all, need `--allow-insecure-remote` (for a network that is
//! protected otherwise: a service mesh's mTLS, a NetworkPolicy).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hint_common::transport::Token;
use hint_coordinator::coordinator::{Coordinator, CoordinatorConfig, DEFAULT_SNAPSHOT_BYTES};
use hint_coordinator::service::{ServerSecurity, ServerTls, DEFAULT_MAX_REQUEST_BYTES};
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
    /// Serve gRPC over TLS with this certificate (PEM; a chain may follow it).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Every gRPC call must carry `authorization: Bearer <token>`, the token being this
    /// file's content, trimmed (the health service answers without it).
    #[arg(long, value_name = "FILE", env = "HINT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve a non-loopback --listen address without authentication (neither TLS with a
    /// token nor mutual TLS): only where the network itself is protected.
    #[arg(long)]
    allow_insecure_remote: bool,
    /// Largest gRPC request decoded, in bytes; a larger one is refused.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// Compact the journal into a snapshot once the journal since the last snapshot holds
    /// this many bytes (and at least as many as that snapshot).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SNAPSHOT_BYTES)]
    snapshot_bytes: u64,
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
        config.snapshot_bytes = self.snapshot_bytes;
        config
    }

    /// The gRPC port's protection: the files the flags name, read and checked.
    pub fn security(&self) -> anyhow::Result<ServerSecurity> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(ServerTls::load(cert, key, self.tls_client_ca.as_deref())?)
            }
            _ => None,
        };
        let token = self.token_file.as_deref().map(Token::read).transpose()?;
        anyhow::ensure!(
            self.max_request_bytes >= 1024,
            "--max-request-bytes {} is too small for any request (at least 1024)",
            self.max_request_bytes
        );
        Ok(ServerSecurity {
            tls,
            token,
            max_request_bytes: self.max_request_bytes,
        })
    }
}

/// Whether serving on `address` as `security` says is allowed (see the module's rule);
/// the refusal names the address and the flags that would make it safe.
fn check_exposure(
    address: SocketAddr,
    security: &ServerSecurity,
    allow_insecure_remote: bool,
) -> anyhow::Result<()> {
    let tls = security.tls.is_some();
    let mutual = security.tls.as_ref().is_some_and(|t| t.mutual);
    let token = security.token.is_some();
    if address.ip().is_loopback() || mutual || (tls && token) {
        return Ok(());
    }
    let problem = if token {
        "the bearer token would travel in clear (no TLS)"
    } else if tls {
        "TLS without a token or client certificates lets anyone call it"
    } else {
        "no TLS and no authentication"
    };
    if allow_insecure_remote {
        tracing::warn!(
            %address,
            "serving gRPC on a non-loopback address with {problem} (--allow-insecure-remote)"
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve gRPC on {address}, which is not a loopback address, with {problem}: \
         add --tls-cert FILE --tls-key FILE with --token-file FILE (TLS and a bearer token), \
         or --tls-cert FILE --tls-key FILE --tls-client-ca FILE (mutual TLS); or pass \
         --allow-insecure-remote if the network is protected otherwise"
    )
}

/// Runs `hint coordinator` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let security = args.security()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // The exposure rule is judged on the bound address (a host name may resolve to
        // anything), before the state is opened and locked.
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let bound = listener.local_addr()?;
        check_exposure(bound, &security, args.allow_insecure_remote)?;
        let scheme = if security.tls.is_some() { "https" } else { "http" };
        let address = format!("{scheme}://{bound}");
        let (coordinator, actions) = Coordinator::open(args.config())
            .with_context(|| format!("opening the state in {}", args.state.display()))?;
        coordinator.spawn_background(actions);
        let http_listener = tokio::net::TcpListener::bind(&args.http_listen)
            .await
            .with_context(|| format!("listening on {} (--http-listen)", args.http_listen))?;
        let http_bound = http_listener.local_addr()?;
        if !http_bound.ip().is_loopback() {
            // Prometheus scrapes it; it has no authentication of its own.
            tracing::warn!(
                address = %http_bound,
                "the metrics and status page are served without authentication: restrict \
                 who can reach this port (a NetworkPolicy)"
            );
        }
        let http_address = format!("http://{http_bound}");
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
            "hint coordinator listening on {address} (gRPC{}) and {http_address} (metrics, status page), state in {}",
            describe(&security),
            args.state.display()
        );
        // Fail-stop: a journal that cannot be written ends the process with its reason.
        let failing = Arc::clone(&coordinator);
        let journal_failed = async move { failing.journal_failure().await };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = service::serve_secured(coordinator, listener, &security, async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stop_rx => {}
            }
        });
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => served?,
            reason = journal_failed => {
                let _ = stop.send(());
                let _ = server.await;
                anyhow::bail!("{reason}");
            }
        }
        Ok(())
    })
}

/// The protection in force, for the start-up line.
fn describe(security: &ServerSecurity) -> String {
    let mut parts = Vec::new();
    match &security.tls {
        Some(tls) if tls.mutual => parts.push("mutual TLS"),
        Some(_) => parts.push("TLS"),
        None => {}
    }
    if security.token.is_some() {
        parts.push("bearer token");
    }
    parts.iter().map(|p| format!(", {p}")).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn security(tls: Option<bool>, token: bool) -> ServerSecurity {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "t0ken").unwrap();
        ServerSecurity {
            tls: tls.map(|mutual| test_tls(dir.path(), mutual)),
            token: token.then(|| Token::read(&token_file).unwrap()),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    /// `ServerTls` only checks that the files hold PEM blocks; the handshake is tested
    /// end to end (tests/hint/security.rs).
    fn test_tls(dir: &std::path::Path, mutual: bool) -> ServerTls {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        ServerTls::load(&cert, &key, mutual.then_some(cert.as_path())).unwrap()
    }

    #[test]
    fn a_remote_address_needs_a_token_over_tls_or_client_certificates() {
        let remote: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:50051".parse().unwrap();
        for (tls, token, safe) in [
            (None, false, false),
            (None, true, false),
            (Some(false), false, false),
            (Some(false), true, true),
            (Some(true), false, true),
            (Some(true), true, true),
        ] {
            let security = security(tls, token);
            assert!(check_exposure(loopback, &security, false).is_ok());
            assert!(check_exposure(v6_loopback, &security, false).is_ok());
            assert!(check_exposure(remote, &security, true).is_ok());
            let verdict = check_exposure(remote, &security, false);
            assert_eq!(verdict.is_ok(), safe, "tls {tls:?}, token {token}");
            if let Err(error) = verdict {
                let text = error.to_string();
                for needed in [
                    "0.0.0.0:50051",
                    "--token-file",
                    "--tls-client-ca",
                    "--allow-insecure-remote",
                ] {
                    assert!(text.contains(needed), "{needed} missing from: {text}");
                }
            }
        }
    }
}

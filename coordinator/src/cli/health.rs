//! `hint health`: is the coordinator serving? `grpc.health.v1.Health/Check` for the whole
//! server ("") and for `hint.v1.Scheduler`; exit status 0 when both are SERVING, 1 with a
//! one-line reason otherwise — a Kubernetes exec probe. The health service needs no token,
//! but over TLS the probe needs the same TLS flags as any client.

use std::time::Duration;

use clap::Args;
use hint_common::proto::scheduler_server::SERVICE_NAME as SCHEDULER;
use hint_common::transport::{self, ClientTransport};

use super::client::Connection;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// Flags of `hint health`.
#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    connection: Connection,
    /// Give up after this many seconds (connecting included).
    #[arg(long, default_value_t = 5.0)]
    timeout_seconds: f64,
}

/// Runs `hint health`: prints `SERVING` or fails with why not.
pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(args.timeout_seconds.max(0.1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let verdict = runtime.block_on(async {
        match tokio::time::timeout(timeout, check(&args)).await {
            Ok(verdict) => verdict,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    });
    match verdict {
        Ok(()) => {
            println!("SERVING");
            Ok(())
        }
        // One line, no cause chain below it: probes keep the first line of the output.
        Err(reason) => anyhow::bail!("{} is not healthy: {reason}", args.connection.coordinator),
    }
}

/// Checks the whole server and the scheduler; the reason when either is not serving.
async fn check(args: &HealthArgs) -> Result<(), String> {
    let transport =
        ClientTransport::load(&args.connection.transport).map_err(|e| format!("{e:#}"))?;
    let channel = transport
        .connect(&args.connection.coordinator)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = HealthClient::new(channel);
    for service in ["", SCHEDULER] {
        let response = client
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .map_err(|status| transport::describe(&status))?
            .into_inner();
        let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
        if status != ServingStatus::Serving {
            let name = if service.is_empty() {
                "the server"
            } else {
                service
            };
            return Err(format!("{name} is {}", status.as_str_name()));
        }
    }
    Ok(())
}

//! `hint submit`, `hint status`, `hint results`, `hint cancel`: a client of a running
//! coordinator. Their TLS and token flags are `hint_common::transport::ClientSettings`, shared
//! with `hint health` and `hint-worker`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hint_common::proto::{self, jobs_client::JobsClient};
use hint_common::transport::{AuthorizedChannel, ClientSettings, ClientTransport};

use hint_coordinator::progress::{describe, follow, phase_name, refused, spec_problems};
use hint_coordinator::spec::SpecError;

/// Where the coordinator is and how to reach it: the flags every client command shares.
#[derive(Args, Debug)]
pub struct Connection {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "HINT_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    #[command(flatten)]
    pub transport: ClientSettings,
}

/// Flags of `hint submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The job spec (TOML). Relative paths in it are resolved against its directory.
    spec: PathBuf,
    #[command(flatten)]
    connection: Connection,
    /// Follow the job with progress bars until it ends (exit status: the job's).
    #[arg(long)]
    wait: bool,
}

/// Flags of `hint status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The job (default: every job).
    job: Option<String>,
    #[command(flatten)]
    connection: Connection,
    /// Follow the job until it ends.
    #[arg(long)]
    watch: bool,
}

/// Flags of `hint results`.
#[derive(Args, Debug)]
pub struct ResultsArgs {
    /// The job.
    job: String,
    #[command(flatten)]
    connection: Connection,
}

/// Flags of `hint cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The job.
    job: String,
    #[command(flatten)]
    connection: Connection,
}

type Client = JobsClient<AuthorizedChannel>;

async fn connect(to: &Connection) -> anyhow::Result<Client> {
    let channel = ClientTransport::load(&to.transport)?
        .connect(&to.coordinator)
        .await?;
    Ok(JobsClient::new(channel))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs `hint submit`.
pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("reading {}", args.spec.display()))?;
    let base = std::fs::canonicalize(&args.spec)
        .with_context(|| format!("resolving {}", args.spec.display()))?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    runtime()?.block_on(async {
        let mut client = connect(&args.connection).await?;
        let response = match client
            .submit(proto::SubmitRequest {
                spec_toml: text,
                base_dir: base.display().to_string(),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            // Listed as `hint check` lists them for this file.
            Err(status) => match spec_problems(&status) {
                Some(problems) => Err(SpecError::Invalid {
                    source: args.spec.display().to_string(),
                    problems,
                })?,
                None => Err(refused(status))
                    .with_context(|| format!("submitting {}", args.spec.display()))?,
            },
        };
        println!("{}", response.job_id);
        if args.wait {
            let status = follow(&mut client, &response.job_id).await?;
            print!("{}", describe(&status));
            anyhow::ensure!(
                status.phase == proto::JobPhase::Succeeded as i32,
                "job {} {}",
                status.job_id,
                phase_name(status.phase)
            );
        }
        Ok(())
    })
}

/// Runs `hint status`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut client = connect(&args.connection).await?;
        match args.job {
            Some(job) if args.watch => {
                let status = follow(&mut client, &job).await?;
                print!("{}", describe(&status));
            }
            Some(job) => {
                let status = client
                    .status(proto::JobRef { job_id: job })
                    .await
                    .map_err(refused)?
                    .into_inner();
                print!("{}", describe(&status));
            }
            None => {
                let jobs = client
                    .list(proto::ListJobsRequest {})
                    .await
                    .map_err(refused)?
                    .into_inner()
                    .jobs;
                if jobs.is_empty() {
                    println!("no jobs");
                }
                for status in jobs {
                    print!("{}", describe(&status));
                }
            }
        }
        Ok(())
    })
}

/// Runs `hint results`.
pub fn results(args: ResultsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut client = connect(&args.connection).await?;
        let response = client
            .results(proto::JobRef {
                job_id: args.job.clone(),
            })
            .await
            .map_err(refused)?
            .into_inner();
        anyhow::ensure!(
            response.phase == proto::JobPhase::Succeeded as i32,
            "job {} has no results: it is {}",
            args.job,
            phase_name(response.phase)
        );
        for file in &response.files {
            println!("{:<18} {:>12} bytes  {}", file.name, file.bytes, file.url);
        }
        Ok(())
    })
}

/// Runs `hint cancel`: the job ends now; its workers drop its tasks at their next poll.
pub fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let mut client = connect(&args.connection).await?;
        client
            .cancel(proto::JobRef {
                job_id: args.job.clone(),
            })
            .await
            .map_err(refused)?;
        println!("{} cancelled", args.job);
        Ok(())
    })
}

//! The gRPC services: `hint.v1.Scheduler` for workers and `hint.v1.Jobs` for clients, both
//! on one port, thin over [`Coordinator`], beside `grpc.health.v1.Health` for probes.
//! Domain errors map to status codes in one place (`impl From<CoordinatorError> for Status`).
//!
//! [`ServerSecurity`] says how the port is protected: TLS, client certificates signed by a
//! client CA (mutual TLS), a bearer token, and the largest request either service decodes.
//! The health service answers any caller (probes carry neither a token nor a client
//! certificate, and it tells nothing but "serving") — over TLS when TLS is on; `Jobs` and
//! `Scheduler` check every call for the token and, under mutual TLS, for a client
//! certificate (a certificate that is presented is verified against the CA in the
//! handshake, so one from another CA never gets that far).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hint_common::job::JobId;
use hint_common::proto::{self, jobs_server, scheduler_server};
use hint_common::transport::{self, Token, TransportError};
use tokio_stream::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status};

use crate::coordinator::{Coordinator, CoordinatorError};
use crate::scheduler::SchedulerError;
use crate::spec::SpecError;

/// Largest request decoded by default (`--max-request-bytes`): a Shapley completion
/// carries 32 bytes per neuron, a spec is a few kilobytes.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;

/// How the gRPC port is protected.
#[derive(Debug, Clone)]
pub struct ServerSecurity {
    /// TLS, and whether client certificates are required.
    pub tls: Option<ServerTls>,
    /// The bearer token every call of `Jobs` and `Scheduler` must carry.
    pub token: Option<Token>,
    /// Largest request `Jobs` and `Scheduler` decode; a larger one is refused
    /// (`OutOfRange`) before it reaches the coordinator.
    pub max_request_bytes: usize,
}

impl Default for ServerSecurity {
    /// Plaintext, no token: loopback only (`hint run`, tests, benches).
    fn default() -> Self {
        ServerSecurity {
            tls: None,
            token: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// The coordinator's TLS settings, files read and checked.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: ServerTlsConfig,
    /// Whether clients must present a certificate signed by the client CA.
    pub mutual: bool,
}

impl ServerTls {
    /// TLS with the certificate and key in `cert` and `key` (PEM); with `client_ca`,
    /// clients must present a certificate it signed (mutual TLS).
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TransportError> {
        let identity = transport::read_identity(cert, "--tls-cert", key, "--tls-key")?;
        let mut config = ServerTlsConfig::new()
            .identity(identity)
            // A client that connects and says nothing must not hold a connection forever.
            .timeout(transport::CONNECT_TIMEOUT);
        if let Some(ca) = client_ca {
            // Optional in the handshake so that probes without a certificate reach the
            // health service; `Gate` requires one on every call of the other services. A
            // certificate that is presented must still be the CA's.
            config = config
                .client_ca_root(transport::read_certificate(ca, "--tls-client-ca")?)
                .client_auth_optional(true);
        }
        Ok(ServerTls {
            config,
            mutual: client_ca.is_some(),
        })
    }
}

/// What a call of `Jobs` or `Scheduler` must carry: the coordinator's token, and under
/// mutual TLS a client certificate (verified in the handshake).
#[derive(Clone)]
struct Gate {
    token: Option<Arc<Token>>,
    client_certificate: bool,
}

impl Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let verdict = if self.client_certificate
            && request.peer_certs().is_none_or(|certs| certs.is_empty())
        {
            Err(Status::unauthenticated(
                "this coordinator requires a client certificate signed by its CA (mutual \
                 TLS) and the connection presented none: pass --tls-cert and --tls-key",
            ))
        } else if let Some(token) = &self.token {
            token.check(request.metadata())
        } else {
            Ok(())
        };
        match verdict {
            Ok(()) => Ok(request),
            Err(status) => {
                let peer = request.remote_addr();
                tracing::warn!(?peer, reason = status.message(), "refused a call");
                Err(status)
            }
        }
    }
}

/// Errors of [`serve_secured`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS settings were refused (a certificate or key tonic could not use).
    #[error("TLS settings (--tls-cert, --tls-key, --tls-client-ca): {}", transport::chain(.0))]
    Tls(tonic::transport::Error),
    /// Serving failed.
    #[error("serving gRPC: {}", transport::chain(.0))]
    Serve(tonic::transport::Error),
}

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Self {
        let message = error.to_string();
        match error {
            CoordinatorError::Spec(SpecError::Invalid { problems, .. }) => {
                let details = proto::SpecProblems {
                    problems: problems
                        .into_iter()
                        .map(|p| proto::SpecProblem {
                            field: p.field,
                            message: p.message,
                        })
                        .collect(),
                };
                Status::with_details(
                    tonic::Code::InvalidArgument,
                    message,
                    prost::Message::encode_to_vec(&details).into(),
                )
            }
            CoordinatorError::Spec(_) | CoordinatorError::BadRequest(_) => {
                Status::invalid_argument(message)
            }
            CoordinatorError::Protocol { .. } => Status::failed_precondition(message),
            CoordinatorError::Scheduler(SchedulerError::UnknownWorker(_)) => {
                Status::not_found(message)
            }
            CoordinatorError::Scheduler(_) => Status::not_found(message),
            CoordinatorError::Journal(_) | CoordinatorError::Io { .. } => Status::internal(message),
            // Workers back off and retry: a restarted coordinator answers again.
            CoordinatorError::Stopped(_) => Status::unavailable(message),
        }
    }
}

/// `hint.v1.Scheduler`.
pub struct SchedulerApi(pub Arc<Coordinator>);

#[tonic::async_trait]
impl scheduler_server::Scheduler for SchedulerApi {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        Ok(Response::new(self.0.register(request.get_ref())?))
    }

    async fn poll(
        &self,
        request: Request<proto::PollRequest>,
    ) -> Result<Response<proto::PollResponse>, Status> {
        Ok(Response::new(self.0.poll(request.get_ref())?))
    }

    async fn complete(
        &self,
        request: Request<proto::CompleteRequest>,
    ) -> Result<Response<proto::CompleteResponse>, Status> {
        // A commit waits for the journal's fsync, shared with concurrent commits: off the
        // async threads, so many commits can wait on one sync at once.
        let coordinator = Arc::clone(&self.0);
        let accepted =
            tokio::task::spawn_blocking(move || coordinator.complete(request.into_inner()))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(proto::CompleteResponse { accepted }))
    }

    async fn fail(
        &self,
        request: Request<proto::FailRequest>,
    ) -> Result<Response<proto::FailResponse>, Status> {
        self.0.fail(request.get_ref())?;
        Ok(Response::new(proto::FailResponse {}))
    }

    async fn leave(
        &self,
        request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::LeaveResponse>, Status> {
        self.0.leave(&request.get_ref().worker_id);
        Ok(Response::new(proto::LeaveResponse {}))
    }
}

/// `hint.v1.Jobs`.
pub struct JobsApi(pub Arc<Coordinator>);

type StatusStream = Pin<Box<dyn Stream<Item = Result<proto::JobStatus, Status>> + Send>>;

#[tonic::async_trait]
impl jobs_server::Jobs for JobsApi {
    async fn submit(
        &self,
        request: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        let request = request.into_inner();
        let coordinator = Arc::clone(&self.0);
        // Validation reads files (weights, images): off the async threads.
        let id = tokio::task::spawn_blocking(move || {
            coordinator.submit(&request.spec_toml, std::path::Path::new(&request.base_dir))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(proto::SubmitResponse { job_id: id.0 }))
    }

    async fn status(
        &self,
        request: Request<proto::JobRef>,
    ) -> Result<Response<proto::JobStatus>, Status> {
        Ok(Response::new(
            self.0.status(&JobId(request.into_inner().job_id))?,
        ))
    }

    async fn list(
        &self,
        _: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        Ok(Response::new(proto::ListJobsResponse {
            jobs: self.0.list(),
        }))
    }

    type WatchStream = StatusStream;

    async fn watch(
        &self,
        request: Request<proto::JobRef>,
    ) -> Result<Response<StatusStream>, Status> {
        let id = JobId(request.into_inner().job_id);
        let first = self.0.status(&id)?;
        let coordinator = Arc::clone(&self.0);
        let (send, receive) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut changes = coordinator.subscribe();
            let mut status = first;
            loop {
                let ended = is_ended(&status);
                if send.send(Ok(status)).await.is_err() || ended {
                    return;
                }
                // At most ten updates a second, however busy the job.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if changes.changed().await.is_err() {
                    return;
                }
                status = match coordinator.status(&id) {
                    Ok(status) => status,
                    Err(error) => {
                        let _ = send.send(Err(error.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receive),
        )))
    }

    async fn cancel(
        &self,
        request: Request<proto::JobRef>,
    ) -> Result<Response<proto::CancelResponse>, Status> {
        self.0.cancel(&JobId(request.into_inner().job_id))?;
        Ok(Response::new(proto::CancelResponse {}))
    }

    async fn results(
        &self,
        request: Request<proto::JobRef>,
    ) -> Result<Response<proto::ResultsResponse>, Status> {
        let id = JobId(request.into_inner().job_id);
        let status = self.0.status(&id)?;
        let dir = crate::results::results_dir(std::path::Path::new(&status.job_dir));
        let mut files = Vec::new();
        if status.phase == proto::JobPhase::Succeeded as i32 {
            // A listing of object storage is a blocking call.
            let listed = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || hint_common::storage::list(&dir)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
            // The files of results/ itself (the WSOL heatmaps below it are the report's).
            for entry in listed.into_iter().filter(|e| e.path.parent() == Some(&dir)) {
                files.push(proto::ResultFile {
                    name: entry
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    url: entry.path.display().to_string(),
                    bytes: entry.size,
                });
            }
            files.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(Response::new(proto::ResultsResponse {
            job_id: id.0,
            phase: status.phase,
            files,
        }))
    }
}

/// Whether a status is final.
pub fn is_ended(status: &proto::JobStatus) -> bool {
    [
        proto::JobPhase::Succeeded,
        proto::JobPhase::Failed,
        proto::JobPhase::Cancelled,
    ]
    .iter()
    .any(|&p| status.phase == p as i32)
}

/// Serves both services on `listener` until `shutdown` resolves: plaintext, no token
/// (loopback: `hint run`, benches).
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_secured(coordinator, listener, &ServerSecurity::default(), shutdown).await
}

/// Serves both services and the health service on `listener`, protected as `security`
/// says, until `shutdown` resolves.
pub async fn serve_secured(
    coordinator: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    security: &ServerSecurity,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &security.tls {
        builder = builder
            .tls_config(tls.config.clone())
            .map_err(ServeError::Tls)?;
    }
    let require = Gate {
        token: security.token.clone().map(Arc::new),
        client_certificate: security.tls.as_ref().is_some_and(|tls| tls.mutual),
    };
    let limit = security.max_request_bytes;
    let scheduler = scheduler_server::SchedulerServer::new(SchedulerApi(Arc::clone(&coordinator)))
        .max_decoding_message_size(limit);
    let jobs = jobs_server::JobsServer::new(JobsApi(coordinator)).max_decoding_message_size(limit);
    // The coordinator serves once its state is open, so "serving" is true from here on;
    // "" is the whole server, as the health protocol defines it.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<scheduler_server::SchedulerServer<SchedulerApi>>()
        .await;
    health
        .set_serving::<jobs_server::JobsServer<JobsApi>>()
        .await;
    builder
        .add_service(health_service)
        .add_service(InterceptedService::new(scheduler, require.clone()))
        .add_service(InterceptedService::new(jobs, require))
        // TCP_NODELAY: a response split in two segments would otherwise wait for the
        // client's delayed ACK (~40 ms a call); the builder's setting does not reach an
        // incoming stream passed in.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(ServeError::Serve)
}

//! The gRPC services: `hint.v1.Scheduler` for workers and `hint.v1.Jobs` for clients, both
//! on one port, thin over [`Coordinator`]. Domain errors map to status codes in one place
//! (`impl From<CoordinatorError> for Status`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hint_common::job::JobId;
use hint_common::proto::{self, jobs_server, scheduler_server};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::coordinator::{Coordinator, CoordinatorError};
use crate::scheduler::SchedulerError;

/// Largest message accepted: a Shapley completion carries 32 bytes per neuron.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

impl From<CoordinatorError> for Status {
    fn from(error: CoordinatorError) -> Self {
        let message = error.to_string();
        match error {
            CoordinatorError::Spec(_) | CoordinatorError::BadRequest(_) => {
                Status::invalid_argument(message)
            }
            CoordinatorError::Protocol { .. } => Status::failed_precondition(message),
            CoordinatorError::Scheduler(SchedulerError::UnknownWorker(_)) => {
                Status::not_found(message)
            }
            CoordinatorError::Scheduler(_) => Status::not_found(message),
            CoordinatorError::Journal(_) | CoordinatorError::Io { .. } => Status::internal(message),
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
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Status::internal(format!("{}: {e}", dir.display())))?;
            for entry in entries.flatten() {
                let meta = entry
                    .metadata()
                    .map_err(|e| Status::internal(e.to_string()))?;
                if meta.is_file() {
                    files.push(proto::ResultFile {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        url: entry.path().display().to_string(),
                        bytes: meta.len(),
                    });
                }
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

/// Serves both services on `listener` until `shutdown` resolves.
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(
            scheduler_server::SchedulerServer::new(SchedulerApi(Arc::clone(&coordinator)))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(jobs_server::JobsServer::new(JobsApi(coordinator)))
        // TCP_NODELAY: a response split in two segments would otherwise wait for the
        // client's delayed ACK (~40 ms a call); the builder's setting does not reach an
        // incoming stream passed in.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

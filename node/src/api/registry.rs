//! Keel's native Registry service (`keel.v1.Registry`): validate, propose or read through the
//! `registry` view, map the error, answer.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use keel_client::registry::Service;
use keel_proto::v1 as pb;
use keel_proto::v1::registry_server::Registry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::lease::new_lease_id;
use super::status::to_status;
use crate::command::{
    Command, CommandResponse, DeleteRangeRequest, RangeRequest, RegisterRequest, RequestOp, TxnRequest,
};
use crate::error::ServerError;
use crate::member::Member;
use crate::mvcc::MvccError;
use crate::registry::{self, RegistryError};
use crate::watch::{CreateWatch, Session, WatchInput, WatchOutput};

/// Watch responses queued for a client slow to read them.
const WATCH_QUEUE_MAX: usize = 64;

pub struct RegistryService {
    member: Arc<Member>,
}

impl RegistryService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    async fn register(&self, service: &Service, ttl_secs: i64) -> Result<pb::RegisterResponse, ServerError> {
        registry::validate_registration(service, ttl_secs)?;
        if !crate::lease::ttl_is_allowed(ttl_secs) {
            return Err(ServerError::RegisterTtlTooLarge);
        }
        let ttl_secs = if ttl_secs == 0 { 0 } else { ttl_secs.max(self.member.lease_ttl_min_secs) };
        let puts = registry::registration_puts(service)?;
        let propose = |lease_id| {
            let request = RegisterRequest { lease_id, ttl_secs, puts: puts.clone() };
            self.member.propose(Command::Register(request))
        };
        let response = match propose(new_lease_id()).await {
            Err(ServerError::Mvcc(MvccError::LeaseExists)) => propose(new_lease_id()).await,
            response => response,
        }?;
        let CommandResponse::Register(response) = response else { return Err(ServerError::Mismatched) };
        if response.reused {
            // Registering again is also a sign of life: renew the lease on the leader's clock.
            self.member.lease_keep_alive(response.lease_id).await?;
        }
        Ok(pb::RegisterResponse { lease_id: response.lease_id, revision: response.header_revision })
    }

    async fn deregister(&self, service: &Service) -> Result<pb::DeregisterResponse, ServerError> {
        registry::validate_deregistration(service)?;
        let deletes = service
            .nodes
            .iter()
            .map(|node| {
                let key = registry::node_key(&service.name, &node.id);
                RequestOp::DeleteRange(DeleteRangeRequest { key, ..DeleteRangeRequest::default() })
            })
            .collect();
        let command = Command::Txn(TxnRequest { compare: Vec::new(), success: deletes, failure: Vec::new() });
        match self.member.propose(command).await? {
            CommandResponse::Txn(response) => Ok(pb::DeregisterResponse { revision: response.header_revision }),
            _ => Err(ServerError::Mismatched),
        }
    }

    /// Every registration under `prefix`, grouped, at a linearizable point.
    async fn read(&self, prefix: Vec<u8>) -> Result<(Vec<Service>, i64), ServerError> {
        self.member.read_barrier().await?;
        let range_end = registry::prefix_end(&prefix);
        let request = RangeRequest { key: prefix, range_end, ..RangeRequest::default() };
        let response = self.member.shared().mvcc().range(&request)?;
        let services = registry::group(response.kvs.iter().filter_map(|kv| registry::decode(&kv.value)));
        Ok((services, response.header_revision))
    }
}

fn service_of(service: Option<pb::Service>) -> Service {
    service.map(Service::from).unwrap_or_default()
}

fn status(error: ServerError) -> Status {
    to_status(&error)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let request = request.into_inner();
        let service = service_of(request.service);
        self.register(&service, request.ttl_seconds).await.map(Response::new).map_err(status)
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        let service = service_of(request.into_inner().service);
        self.deregister(&service).await.map(Response::new).map_err(status)
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::GetServiceResponse>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(status(RegistryError::EmptyName.into()));
        }
        let (services, revision) = self.read(registry::service_prefix(&name)).await.map_err(status)?;
        if services.is_empty() {
            return Err(status(RegistryError::NotFound.into()));
        }
        let services = services.into_iter().map(pb::Service::from).collect();
        Ok(Response::new(pb::GetServiceResponse { services, revision }))
    }

    async fn list_services(
        &self,
        _request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let (services, revision) = self.read(registry::PREFIX.as_bytes().to_vec()).await.map_err(status)?;
        let services = services.into_iter().map(pb::Service::from).collect();
        Ok(Response::new(pb::ListServicesResponse { services, revision }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let request = request.into_inner();
        if request.start_revision < 0 {
            return Err(Status::invalid_argument("registry: start_revision must not be negative"));
        }
        let prefix = match request.service.as_str() {
            "" => registry::PREFIX.as_bytes().to_vec(),
            name => registry::service_prefix(name),
        };
        let create = CreateWatch {
            range_end: registry::prefix_end(&prefix),
            key: prefix,
            start_revision: request.start_revision,
            prev_kv: true,
            ..CreateWatch::default()
        };
        if request.start_revision == 0 {
            // "From now" means after every change acknowledged before the call, even on a
            // follower that is behind.
            self.member.read_barrier().await.map_err(status)?;
        }
        let (input_tx, input_rx) = mpsc::channel(1);
        let (output_tx, output_rx) = mpsc::channel(WATCH_QUEUE_MAX);
        let session = Session::new(self.member.shared_state(), self.member.watch_limits(), output_tx);
        input_tx.send(WatchInput::Create(create)).await.map_err(|_| Status::unavailable("watch stopped"))?;
        tokio::spawn(async move {
            // Holds the input open for as long as the session runs.
            let _input = input_tx;
            session.run(input_rx).await;
        });
        let start_revision = request.start_revision;
        let responses = ReceiverStream::new(output_rx)
            .filter_map(move |output| async move { watch_response(output, start_revision) });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// One session output as a registry watch response; `None` for outputs a registry watcher has
/// no use for (progress).
fn watch_response(output: WatchOutput, start_revision: i64) -> Option<Result<pb::WatchResponse, Status>> {
    match output {
        WatchOutput::Created { refused: Some(reason), .. } => Some(Err(Status::resource_exhausted(reason))),
        WatchOutput::Created { revision, .. } => {
            let revision = if start_revision > 0 { start_revision - 1 } else { revision };
            Some(Ok(pb::WatchResponse { results: Vec::new(), revision }))
        }
        WatchOutput::Events { revision, events, .. } => {
            let timestamp = unix_now_secs();
            let results = events
                .iter()
                .filter_map(|watched| {
                    let previous = watched.prev_kv.as_ref().map(|kv| kv.value.as_slice());
                    let (action, service) = registry::watch_result(&watched.event, previous)?;
                    Some(pb::Result {
                        action: action.as_str().to_string(),
                        service: Some(service.into()),
                        timestamp,
                        revision: watched.event.revision(),
                    })
                })
                .collect();
            Some(Ok(pb::WatchResponse { results, revision }))
        }
        WatchOutput::Canceled { compact_revision, .. } if compact_revision != 0 => {
            Some(Err(to_status(&ServerError::Mvcc(MvccError::Compacted { compact_revision }))))
        }
        WatchOutput::Canceled { reason, .. } => Some(Err(Status::internal(reason))),
        WatchOutput::Progress { .. } => None,
    }
}

fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

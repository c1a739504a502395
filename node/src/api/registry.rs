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

use super::status::to_status;
use crate::command::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, RangeRequest, RegisterRequest, RequestOp, TxnRequest,
};
use crate::error::ServerError;
use crate::keys;
use crate::limits::REGISTRY_WATCH_QUEUE_MAX;
use crate::member::Member;
use crate::mvcc::MvccError;
use crate::registry::{self, RegistryError};
use crate::watch::{CreateWatch, Session, WatchInput, WatchOutput};

/// Rounds of read-then-delete one Deregister makes. A round fails only when a node it is
/// removing changed between its read and its delete (registered again, by go-micro perhaps);
/// three such races in a row mean the keys change faster than a deregistration can land, and
/// the caller is told to retry (the call is idempotent).
const DEREGISTER_ROUNDS_MAX: usize = 3;

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
        self.refuse_to_overwrite_others(service).await?;
        // Lease id 0: the leader chooses one if a lease is granted, and renews a reused one on
        // its clock (registering again is a sign of life), all in this one proposal.
        let response = self.member.propose(RegisterRequest { lease_id: 0, ttl_secs, puts }).await?;
        Ok(pb::RegisterResponse { lease_id: response.lease_id, revision: response.header_revision })
    }

    /// Refuses a registration whose key holds another one (go-micro's service `a/b` lives
    /// under the key of `a-b`, its node `n/1` under the key of `n-1`). Linearizable: no
    /// registration acknowledged before this call is overwritten. One written after this read
    /// and before the Register applies still can be (Register has no compare); that takes a
    /// go-micro service and a Keel one choosing colliding names and the same node id at once.
    async fn refuse_to_overwrite_others(&self, service: &Service) -> Result<(), ServerError> {
        self.member.read_barrier().await?;
        for node in &service.nodes {
            let key = registry::node_key(&service.name, &node.id);
            let stored = self.read_key(&key)?;
            if let Some(kv) = stored.kvs.first() {
                registry::holds_only(&kv.value, &key, &service.name, &node.id)?;
            }
        }
        Ok(())
    }

    /// Deletes the keys of the nodes named, but only those holding that very node's
    /// registration: a key shared with go-micro's `a/b` (or node `n/1`) is left alone. Each
    /// delete compares the key's revision with the one read, so a node registered again in
    /// between is not removed by mistake.
    async fn deregister(&self, service: &Service) -> Result<pb::DeregisterResponse, ServerError> {
        registry::validate_deregistration(service)?;
        for _ in 0..DEREGISTER_ROUNDS_MAX {
            self.member.read_barrier().await?;
            let mut compare = Vec::new();
            let mut deletes = Vec::new();
            let mut revision = 0;
            for node in &service.nodes {
                let key = registry::node_key(&service.name, &node.id);
                let stored = self.read_key(&key)?;
                revision = stored.header_revision;
                let Some(kv) = stored.kvs.first() else { continue };
                let own = registry::decode(&kv.value).is_some_and(|held| {
                    registry::is_of(&held, &service.name) && held.nodes.iter().any(|held| held.id == node.id)
                });
                if !own {
                    continue;
                }
                let target = CompareTarget::Mod(kv.mod_revision);
                compare.push(Compare { result: CompareResult::Equal, target, key: key.clone(), range_end: Vec::new() });
                deletes.push(RequestOp::DeleteRange(DeleteRangeRequest { key, ..DeleteRangeRequest::default() }));
            }
            if deletes.is_empty() {
                return Ok(pb::DeregisterResponse { revision });
            }
            let response = self.member.propose(TxnRequest { compare, success: deletes, failure: Vec::new() }).await?;
            if response.succeeded {
                return Ok(pb::DeregisterResponse { revision: response.header_revision });
            }
            // A node changed since the read: read again.
        }
        Err(ServerError::Timeout)
    }

    /// One key as this member has it (callers pass the read barrier first).
    fn read_key(&self, key: &[u8]) -> Result<crate::command::RangeResponse, ServerError> {
        let request = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
        Ok(self.member.shared().range(&request)?)
    }

    /// Every registration under `prefix` (of the service `name` only, when given: go-micro's
    /// `a/b` shares the prefix of `a-b`), grouped, at a linearizable point.
    async fn read(&self, prefix: Vec<u8>, name: Option<&str>) -> Result<(Vec<Service>, i64), ServerError> {
        self.member.read_barrier().await?;
        let range_end = keys::prefix_range_end(&prefix);
        let request = RangeRequest { key: prefix, range_end, ..RangeRequest::default() };
        let response = self.member.shared().range(&request)?;
        let registrations = response
            .kvs
            .iter()
            .filter_map(|kv| registry::decode(&kv.value))
            .filter(|registration| name.is_none_or(|name| registry::is_of(registration, name)));
        Ok((registry::group(registrations), response.header_revision))
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
        registry::validate_lookup(&name).map_err(|error| status(error.into()))?;
        let (services, revision) = self.read(registry::service_prefix(&name), Some(&name)).await.map_err(status)?;
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
        let (services, revision) = self.read(registry::PREFIX.as_bytes().to_vec(), None).await.map_err(status)?;
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
            name => {
                registry::validate_lookup(name).map_err(|error| status(error.into()))?;
                registry::service_prefix(name)
            }
        };
        let create = CreateWatch {
            range_end: keys::prefix_range_end(&prefix),
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
        let (output_tx, output_rx) = mpsc::channel(REGISTRY_WATCH_QUEUE_MAX);
        let session = Session::new(self.member.shared_state(), self.member.watch_limits(), output_tx);
        input_tx.send(WatchInput::Create(create)).await.map_err(|_| Status::unavailable("watch stopped"))?;
        tokio::spawn(async move {
            // Holds the input open for as long as the session runs.
            let _input = input_tx;
            session.run(input_rx).await;
        });
        let start_revision = request.start_revision;
        // Arc: each response's filter needs the name, and the stream outlives this call.
        let service: Option<Arc<str>> = (!request.service.is_empty()).then(|| Arc::from(request.service));
        let responses = ReceiverStream::new(output_rx).filter_map(move |output| {
            let service = service.clone();
            async move { watch_response(output, start_revision, service.as_deref()) }
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// One session output as a registry watch response; `None` for outputs a registry watcher has
/// no use for (progress). A watch of one service keeps only its results: its key prefix also
/// holds go-micro's registrations of the name with `/` for `-` (and the other way round).
fn watch_response(
    output: WatchOutput,
    start_revision: i64,
    service: Option<&str>,
) -> Option<Result<pb::WatchResponse, Status>> {
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
                    let (action, changed) = registry::watch_result(&watched.event, previous)?;
                    if !service.is_none_or(|name| registry::is_of(&changed, name)) {
                        return None;
                    }
                    Some(pb::Result {
                        action: action.as_str().to_string(),
                        service: Some(changed.into()),
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

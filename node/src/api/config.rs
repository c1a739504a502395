//! Keel's native Config service (`keel.v1.Config`): validate, seal secrets on this member,
//! propose or read through the `dynamic_config` view, map the error, answer.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use keel_proto::v1 as pb;
use keel_proto::v1::config_server::Config;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::command::{RangeRequest, SecretKey, TxnRequest};
use crate::dynamic_config::{self as view, secret, ConfigError, ConfigPath, Secrets};
use crate::error::ServerError;
use crate::keys::prefix_range_end;
use crate::limits::CONFIG_WATCH_QUEUE_MAX;
use crate::member::micro_auth::MicroPrincipal;
use crate::member::Member;
use crate::watch::{CreateWatch, Session, WatchInput, WatchOutput};
use keel_model::auth::rules::Resource;

pub struct ConfigService {
    member: Arc<Member>,
}

impl ConfigService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// The cluster's secret key, after catching up with the log if this member has not
    /// applied it yet.
    async fn secret_key(&self) -> Result<SecretKey, ServerError> {
        if let Some(key) = self.member.shared().secret_key() {
            return Ok(key);
        }
        self.member.read_barrier().await?;
        self.member.shared().secret_key().ok_or_else(|| ConfigError::SecretUnavailable.into())
    }

    /// A micro account reads secrets in clear only where a rule also grants it
    /// `service:keel.v1.Config:Config.Secrets` (root, and everyone while auth is off, always may).
    fn check_secrets<T>(&self, request: &Request<T>, secrets: bool) -> Result<(), Status> {
        match request.extensions().get::<MicroPrincipal>() {
            Some(principal) if secrets => {
                let resource = Resource {
                    r#type: "service".into(),
                    name: "keel.v1.Config".into(),
                    endpoint: "Config.Secrets".into(),
                };
                self.member.micro_allows(principal, &resource).map_err(|e| to_status(&e))
            }
            _ => Ok(()),
        }
    }

    async fn set(&self, request: pb::SetRequest) -> Result<pb::SetResponse, ServerError> {
        let path = ConfigPath::parse(&request.namespace, &request.path)?;
        let value = view::parse_value(&request.value)?;
        let replace = !value.is_object();
        if replace && path.segments.is_empty() {
            return Err(ConfigError::RootNotObject.into());
        }
        let mut leaves = view::leaves(&path, &value)?;
        if request.secret {
            let key = self.secret_key().await?;
            for (_, leaf) in &mut leaves {
                *leaf = secret::seal(&key, leaf)?;
            }
        }
        self.commit(view::set_ops(&path, &leaves, replace)).await.map(|revision| pb::SetResponse { revision })
    }

    async fn delete(&self, request: pb::DeleteConfigRequest) -> Result<pb::DeleteConfigResponse, ServerError> {
        let path = ConfigPath::parse(&request.namespace, &request.path)?;
        self.commit(view::delete_ops(&path)).await.map(|revision| pb::DeleteConfigResponse { revision })
    }

    async fn commit(&self, ops: Vec<crate::command::RequestOp>) -> Result<i64, ServerError> {
        let txn = TxnRequest { compare: Vec::new(), success: ops, failure: Vec::new() };
        Ok(self.member.propose(txn).await?.header_revision)
    }

    async fn get(&self, request: pb::GetRequest) -> Result<pb::GetResponse, ServerError> {
        let path = ConfigPath::parse(&request.namespace, &request.path)?;
        self.member.read_barrier().await?;
        let key = if request.secrets { Some(self.secret_key().await?) } else { None };
        let (value, revision) = read_document(&self.member, &path, request.revision, key.as_ref())?;
        let value = value.ok_or_else(|| ConfigError::NotFound(request.path.clone()))?;
        Ok(pb::GetResponse { value: value.to_string(), revision })
    }
}

/// The document at `path` as of `revision` (0 = now) from `member`'s keyspace, its secrets
/// opened with `key` or masked without one; and the revision it was read at.
pub(crate) fn read_document(
    member: &Member,
    path: &ConfigPath,
    revision: i64,
    key: Option<&SecretKey>,
) -> Result<(Option<Value>, i64), ServerError> {
    let request = RangeRequest {
        key: path.key(),
        range_end: prefix_range_end(&path.children_prefix()),
        revision,
        ..RangeRequest::default()
    };
    let response = member.shared().range(&request)?;
    let secrets = key.map_or(Secrets::Masked, Secrets::Revealed);
    let value = view::assemble(path, &response.kvs, secrets)?;
    Ok((value, response.header_revision))
}

fn status(error: ServerError) -> Status {
    to_status(&error)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchConfigResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Config for ConfigService {
    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.check_secrets(&request, request.get_ref().secrets)?;
        self.get(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn set(&self, request: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        self.set(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteConfigRequest>,
    ) -> Result<Response<pb::DeleteConfigResponse>, Status> {
        self.delete(request.into_inner()).await.map(Response::new).map_err(status)
    }

    type WatchStream = WatchStream;

    /// A watch over the path's leaf and subtree; after each change that touches them, the
    /// document at the path as of that change's revision.
    async fn watch(&self, request: Request<pb::WatchConfigRequest>) -> Result<Response<WatchStream>, Status> {
        self.check_secrets(&request, request.get_ref().secrets)?;
        let request = request.into_inner();
        let path = ConfigPath::parse(&request.namespace, &request.path).map_err(|e| status(e.into()))?;
        let key = if request.secrets { Some(self.secret_key().await.map_err(status)?) } else { None };
        // The first value is read locally: catch up first, so it reflects every change
        // acknowledged before the watch began (a follower may be behind).
        self.member.read_barrier().await.map_err(status)?;
        let create = CreateWatch {
            key: path.key(),
            range_end: prefix_range_end(&path.children_prefix()),
            ..CreateWatch::default()
        };
        let (input_tx, input_rx) = mpsc::channel(1);
        let (output_tx, output_rx) = mpsc::channel(CONFIG_WATCH_QUEUE_MAX);
        let session = Session::new(self.member.shared_state(), self.member.watch_limits(), output_tx);
        input_tx.send(WatchInput::Create(create)).await.map_err(|_| Status::unavailable("watch stopped"))?;
        tokio::spawn(async move {
            let _input = input_tx;
            session.run(input_rx).await;
        });
        let service = ConfigService { member: self.member.clone() };
        let responses = ReceiverStream::new(output_rx).filter_map(move |output| {
            let answer = watch_answer(&service, &path, key.as_ref(), output);
            async move { answer }
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// One session output as a config watch response: the document after the watch started or
/// after a change at or below the path; `None` for outputs that change nothing there.
fn watch_answer(
    service: &ConfigService,
    path: &ConfigPath,
    key: Option<&SecretKey>,
    output: WatchOutput,
) -> Option<Result<pb::WatchConfigResponse, Status>> {
    let revision = match output {
        WatchOutput::Created { revision, refused: None, .. } => revision,
        WatchOutput::Events { revision, events, .. } => {
            events.iter().any(|watched| path.relative(&watched.event.kv.key).is_some()).then_some(revision)?
        }
        WatchOutput::Created { refused: Some(reason), .. } => return Some(Err(Status::resource_exhausted(reason))),
        WatchOutput::Canceled { reason, .. } => return Some(Err(Status::aborted(reason))),
        WatchOutput::Progress { .. } => return None,
    };
    Some(match read_document(&service.member, path, revision, key) {
        Ok((value, revision)) => {
            Ok(pb::WatchConfigResponse { value: value.unwrap_or(Value::Null).to_string(), revision })
        }
        Err(error) => Err(status(error)),
    })
}

//! etcd's Election service (`v3electionpb.Election`, what `etcdctl elect` uses): campaigners are
//! contender keys under `<name>/` on their leases (`concurrency`); the one created first leads.
//! Campaign answers once the caller leads; Proclaim changes the leader's value while it still
//! leads (its key's create revision unchanged); Resign deletes the leader's key; Leader and
//! Observe read the first contender. Errors are etcd's plain texts (`election: not leader`).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_model::auth::etcd::Caller;
use keel_proto::etcd_election::election_server::Election;
use keel_proto::etcd_election::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use tonic::{Request, Response, Status};

use super::concurrency::{self, GiveUp};
use super::{caller, convert, header, status::to_status};
use crate::command::{
    As, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use crate::member::Member;

pub struct ElectionService {
    member: Arc<Member>,
}

impl ElectionService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// `op` on the leader's key if it still leads (its key's create revision is `rev`); answers
    /// whether it did, and the revision.
    async fn while_leading(
        &self,
        caller: Option<Caller>,
        leader: &LeaderKey,
        op: RequestOp,
    ) -> Result<(bool, i64), Status> {
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(leader.rev),
                key: leader.key.clone(),
                range_end: Vec::new(),
            }],
            success: vec![op],
            failure: Vec::new(),
        };
        let response = self.member.propose(As::new(caller, txn)).await.map_err(|e| to_status(&e))?;
        Ok((response.succeeded, response.header_revision))
    }
}

/// etcd's `concurrency.ErrElectionNotLeader`, as its server answers it.
fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

type Observation = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let CampaignRequest { name, lease, value } = request.into_inner();
        let key = concurrency::contender_key(&name, lease);
        let mine = concurrency::create_or_get(&self.member, caller.clone(), key, value.clone(), lease).await?;
        let give_up = GiveUp::new(self.member.clone(), caller.clone(), mine.key.clone());
        let leader = LeaderKey { name: name.clone(), key: mine.key.clone(), rev: mine.create_revision, lease };
        if mine.existing_value.as_ref().is_some_and(|existing| *existing != value) {
            let put = RequestOp::Put(PutRequest {
                key: leader.key.clone(),
                value,
                ignore_lease: true,
                ..PutRequest::default()
            });
            if !self.while_leading(caller.clone(), &leader, put).await?.0 {
                return Err(not_leader());
            }
        }
        let prefix = concurrency::prefix(&name);
        let revision =
            concurrency::wait_deletes(&self.member, caller.as_ref(), &prefix, mine.create_revision - 1).await?;
        give_up.disarm();
        Ok(Response::new(CampaignResponse { header: header(&self.member, revision), leader: Some(leader) }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let ProclaimRequest { leader, value } = request.into_inner();
        let leader = leader.ok_or_else(missing_leader)?;
        let put =
            RequestOp::Put(PutRequest { key: leader.key.clone(), value, ignore_lease: true, ..PutRequest::default() });
        let (led, revision) = self.while_leading(caller, &leader, put).await?;
        if !led {
            return Err(not_leader());
        }
        Ok(Response::new(ProclaimResponse { header: header(&self.member, revision) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        let prefix = concurrency::prefix(&request.get_ref().name);
        let (first, revision) = concurrency::first_contender(&self.member, caller.as_ref(), &prefix)?;
        let kv = first.ok_or_else(|| Status::unknown("election: no leader"))?;
        Ok(Response::new(LeaderResponse { header: header(&self.member, revision), kv: Some(convert::key_value(kv)) }))
    }

    type ObserveStream = Observation;

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Observation>, Status> {
        let caller = caller(&self.member, &request).await?;
        let prefix = concurrency::prefix(&request.get_ref().name);
        let member = self.member.clone();
        let mut changes = member.shared().hub().subscribe();
        member.read_barrier().await.map_err(|e| to_status(&e))?;
        let observed = async_stream_of(move |sender| async move {
            let mut last_sent: Option<(Vec<u8>, i64)> = None;
            loop {
                let (first, revision) = concurrency::first_contender(&member, caller.as_ref(), &prefix)?;
                if let Some(kv) = first {
                    let seen = (kv.key.clone(), kv.mod_revision);
                    if last_sent.as_ref() != Some(&seen) {
                        let response =
                            LeaderResponse { header: header(&member, revision), kv: Some(convert::key_value(kv)) };
                        if sender.send(Ok(response)).await.is_err() {
                            return Ok(());
                        }
                        last_sent = Some(seen);
                    }
                }
                let changed =
                    concurrency::wait_for_change(&mut changes, &member, |batch| concurrency::touches(batch, &prefix));
                tokio::select! {
                    changed = changed => changed?,
                    // The observer went away: nothing more to watch for.
                    _ = sender.closed() => return Ok(()),
                }
            }
        });
        Ok(Response::new(observed))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let leader = request.into_inner().leader.ok_or_else(missing_leader)?;
        let delete =
            RequestOp::DeleteRange(DeleteRangeRequest { key: leader.key.clone(), ..DeleteRangeRequest::default() });
        let (_, revision) = self.while_leading(caller, &leader, delete).await?;
        Ok(Response::new(ResignResponse { header: header(&self.member, revision) }))
    }
}

/// A stream fed by `produce` through a small channel; `produce`'s error, if any, ends it.
fn async_stream_of<F, Fut>(produce: F) -> Observation
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<LeaderResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let task = produce(sender.clone());
    tokio::spawn(async move {
        if let Err(status) = task.await {
            let _ = sender.send(Err(status)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

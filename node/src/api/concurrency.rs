//! What etcd's Lock and Election services build on (etcd's `clientv3/concurrency`, run inside
//! the member as etcd runs it inside its server): a key per contender, `<name>/<lease in hex>`,
//! created on the contender's lease unless it exists; the contender whose key was created first
//! holds the lock or leads; the others wait until every key created before theirs is deleted.
//!
//! Every write is the caller's own (`As`: checked against its permissions at apply), every read
//! is checked against them too. A contender that gives up while waiting (the client went away)
//! has its key deleted, as etcd's `Mutex.Lock` and `Election.Campaign` do.

use std::sync::Arc;

use keel_model::auth::etcd::{Access, Caller};
use tokio::sync::broadcast;
use tonic::Status;

use super::status::to_status;
use crate::command::{
    As, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest,
};
use crate::member::Member;
use crate::watch::EventBatch;

/// A contender's key: `<name>/<lease in lowercase hex>`, as etcd's concurrency package makes it.
pub fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix(name);
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// The prefix every contender of `name` shares: `<name>/`.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// A key created (or found) for a contender.
pub struct Contender {
    pub key: Vec<u8>,
    pub create_revision: i64,
    /// The value it held when it already existed.
    pub existing_value: Option<Vec<u8>>,
    pub header_revision: i64,
}

/// Creates `key` with `value` on `lease` unless it exists (etcd: `If(CreateRevision(key) = 0)
/// .Then(Put).Else(Get)`).
pub async fn create_or_get(
    member: &Member,
    caller: Option<Caller>,
    key: Vec<u8>,
    value: Vec<u8>,
    lease: i64,
) -> Result<Contender, Status> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
            key: key.clone(),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp::Put(PutRequest { key: key.clone(), value, lease, ..PutRequest::default() })],
        failure: vec![RequestOp::Range(RangeRequest { key: key.clone(), ..RangeRequest::default() })],
    };
    let response = member.propose(As::new(caller, txn)).await.map_err(|e| to_status(&e))?;
    let header_revision = response.header_revision;
    if response.succeeded {
        return Ok(Contender { key, create_revision: header_revision, existing_value: None, header_revision });
    }
    let existing = match response.responses.into_iter().next() {
        Some(ResponseOp::Range(range)) => range.kvs.into_iter().next(),
        _ => None,
    };
    // Deleted between the compare and the get cannot happen inside one txn: the key exists.
    let existing = existing.ok_or_else(|| Status::internal("keel: a contender's key vanished inside its txn"))?;
    Ok(Contender {
        key,
        create_revision: existing.create_revision,
        existing_value: Some(existing.value),
        header_revision,
    })
}

/// Waits until no key under `prefix` created at or before `max_create_revision` is left (etcd's
/// `waitDeletes`); answers the revision of the last check. Reads this member's own state after
/// one read barrier, so it sees at least every key created before the caller's.
pub async fn wait_deletes(
    member: &Member,
    caller: Option<&Caller>,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<i64, Status> {
    let mut changes = member.shared().hub().subscribe();
    member.read_barrier().await.map_err(|e| to_status(&e))?;
    loop {
        let newest_before = RangeRequest {
            key: prefix.to_vec(),
            range_end: crate::keys::prefix_end(prefix).unwrap_or_else(|| vec![0]),
            limit: 1,
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Create,
            max_create_revision,
            ..RangeRequest::default()
        };
        let (found, revision) = range_one(member, caller, &newest_before)?;
        let Some(blocker) = found else { return Ok(revision) };
        wait_for_change(&mut changes, member, |batch| deletes(batch, &blocker.key)).await?;
    }
}

/// The first contender of `prefix` by creation: the lock holder, or the leader.
pub fn first_contender(
    member: &Member,
    caller: Option<&Caller>,
    prefix: &[u8],
) -> Result<(Option<KeyValue>, i64), Status> {
    let oldest = RangeRequest {
        key: prefix.to_vec(),
        range_end: crate::keys::prefix_end(prefix).unwrap_or_else(|| vec![0]),
        limit: 1,
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        ..RangeRequest::default()
    };
    range_one(member, caller, &oldest)
}

/// One key of `request` from this member's state, checked against the caller's permissions.
fn range_one(
    member: &Member,
    caller: Option<&Caller>,
    request: &RangeRequest,
) -> Result<(Option<KeyValue>, i64), Status> {
    member.check_read(caller, &[Access::read(&request.key, &request.range_end)]).map_err(|e| to_status(&e))?;
    let response = member.shared().range(request).map_err(|e| to_status(&e.into()))?;
    Ok((response.kvs.into_iter().next(), response.header_revision))
}

/// Waits for an applied batch `matters` says may have changed the answer (or one that cannot
/// say: a replaced keyspace, or batches missed).
pub async fn wait_for_change(
    changes: &mut broadcast::Receiver<Arc<EventBatch>>,
    member: &Member,
    matters: impl Fn(&EventBatch) -> bool,
) -> Result<(), Status> {
    loop {
        tokio::select! {
            batch = changes.recv() => match batch {
                Ok(batch) if !batch.complete || matters(&batch) => return Ok(()),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                Err(broadcast::error::RecvError::Closed) => return Err(stopped()),
            },
            _ = member.shared().hub().stopped() => return Err(stopped()),
        }
    }
}

fn stopped() -> Status {
    to_status(&crate::error::ServerError::Stopped)
}

fn deletes(batch: &EventBatch, key: &[u8]) -> bool {
    batch.events.iter().any(|event| event.kind == crate::mvcc::EventKind::Delete && event.kv.key == key)
}

/// Whether `batch` changed a key under `prefix`.
pub fn touches(batch: &EventBatch, prefix: &[u8]) -> bool {
    batch.events.iter().any(|event| event.kv.key.starts_with(prefix))
}

/// Deletes `key` as `caller`; answers the revision.
pub async fn delete(member: &Member, caller: Option<Caller>, key: Vec<u8>) -> Result<i64, Status> {
    let delete = DeleteRangeRequest { key, range_end: Vec::new(), prev_kv: false };
    let response = member.propose(As::new(caller, delete)).await.map_err(|e| to_status(&e))?;
    Ok(response.header_revision)
}

/// Deletes a contender's key if its wait is abandoned (the client went away): dropped before
/// `disarm`, it deletes the key in the background.
pub struct GiveUp {
    member: Arc<Member>,
    caller: Option<Caller>,
    key: Option<Vec<u8>>,
}

impl GiveUp {
    pub fn new(member: Arc<Member>, caller: Option<Caller>, key: Vec<u8>) -> GiveUp {
        GiveUp { member, caller, key: Some(key) }
    }

    /// The wait ended as it should: the key stays.
    pub fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for GiveUp {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let (member, caller) = (self.member.clone(), self.caller.clone());
        tokio::spawn(async move {
            if let Err(status) = delete(&member, caller, key).await {
                tracing::debug!("deleting an abandoned contender's key: {status}");
            }
        });
    }
}

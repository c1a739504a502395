//! etcd's Lock service (`v3lockpb.Lock`, what `etcdctl lock` uses): a lock is a contender key
//! under `<name>/` on the caller's lease (`concurrency`); Lock answers once every key created
//! before the caller's is gone, Unlock deletes the key. The key's create revision is the lock's
//! fencing token: a holder that paused past its lease's TTL no longer holds the lock, however
//! sure it is, so writes it guards must compare it (see keel-client's `Lock`).

use std::sync::Arc;

use keel_proto::etcd_lock::lock_server::Lock;
use keel_proto::etcd_lock::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::concurrency::{self, GiveUp};
use super::{caller, header};
use crate::member::Member;

pub struct LockService {
    member: Arc<Member>,
}

impl LockService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let LockRequest { name, lease } = request.into_inner();
        let key = concurrency::contender_key(&name, lease);
        let mine = concurrency::create_or_get(&self.member, caller.clone(), key, Vec::new(), lease).await?;
        let give_up = GiveUp::new(self.member.clone(), caller.clone(), mine.key.clone());
        let prefix = concurrency::prefix(&name);
        let revision =
            concurrency::wait_deletes(&self.member, caller.as_ref(), &prefix, mine.create_revision - 1).await?;
        give_up.disarm();
        let revision = revision.max(mine.header_revision);
        Ok(Response::new(LockResponse { header: header(&self.member, revision), key: mine.key }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let revision = concurrency::delete(&self.member, caller, request.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header: header(&self.member, revision) }))
    }
}

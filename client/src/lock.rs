//! Distributed locks and leader election for services, on etcd's Lock and Election services
//! (what `etcdctl lock` and `etcdctl elect` use), each on a [`Session`]: a lease this client
//! keeps alive in the background and revokes when the session ends.
//!
//! # A lock is not mutual exclusion on its own
//!
//! A holder that pauses (a GC pause, a stopped VM, a partition) longer than its session's TTL
//! loses the lock without knowing it, and another holder gets it meanwhile: for a while two
//! processes both believe they hold it. So every write the lock guards must carry the lock's
//! [`LockGuard::fencing_token`] — the revision at which the holder's key was created, which only
//! grows from holder to holder — and the resource must refuse a token lower than the highest it
//! has seen. For writes to Keel itself, [`LockGuard::still_held`] is a compare to put in the same
//! txn: the write happens only if the key still exists with the same create revision.
//!
//! ```no_run
//! # async fn example() -> keel_client::Result<()> {
//! use std::time::Duration;
//! use keel_client::lock::Coordination;
//!
//! let coordination = Coordination::connect(&["http://127.0.0.1:2379".to_string()]).await?;
//! let guard = coordination.lock("jobs/nightly", Duration::from_secs(10)).await?;
//! // ... write with guard.fencing_token() ...
//! guard.unlock().await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use keel_proto::etcd_election::election_client::ElectionClient;
use keel_proto::etcd_election::{CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest};
use keel_proto::etcd_lock::lock_client::LockClient;
use keel_proto::etcd_lock::{LockRequest, UnlockRequest};
use tokio::sync::watch;

use crate::cluster::{self, Cluster};
use crate::connect::ConnectOptions;
use crate::error::{Error, Result};
use crate::lease::{keep_alive, LeaseLost};
use crate::registry::ttl_seconds;

/// Locks and elections on one cluster.
#[derive(Clone)]
pub struct Coordination {
    cluster: Arc<Cluster>,
}

impl Coordination {
    /// Prepares connections to the cluster's members; nothing is contacted yet.
    pub async fn connect(endpoints: &[String]) -> Result<Coordination> {
        Self::connect_with(endpoints, &ConnectOptions::default()).await
    }

    /// As [`Self::connect`], with TLS and an account's token.
    pub async fn connect_with(endpoints: &[String], options: &ConnectOptions) -> Result<Coordination> {
        Ok(Coordination { cluster: Arc::new(Cluster::new(endpoints, options)?) })
    }

    /// A new session: a lease of `ttl` (at least a second) kept alive until it is dropped.
    pub async fn session(&self, ttl: Duration) -> Result<Session> {
        Session::start(self.cluster.clone(), ttl).await
    }

    /// Waits until this client holds the lock `name`, on a session of its own with `ttl`.
    /// Waits as long as it takes: bound it with `tokio::time::timeout` (a wait given up leaves
    /// no key behind).
    pub async fn lock(&self, name: &str, ttl: Duration) -> Result<LockGuard> {
        let session = self.session(ttl).await?;
        self.lock_in(name, session).await
    }

    /// Waits until `session` holds the lock `name`.
    pub async fn lock_in(&self, name: &str, session: Session) -> Result<LockGuard> {
        check_name(name)?;
        let request = LockRequest { name: name.as_bytes().to_vec(), lease: session.lease };
        let locked = self
            .cluster
            .call_waiting("lock", |channel| {
                let request = request.clone();
                async move { LockClient::new(channel).lock(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        let fencing_token = locked.header.as_ref().map_or(0, |header| header.revision);
        let key = locked.key;
        let created = self.create_revision(&key).await?;
        Ok(LockGuard { coordination: self.clone(), key, fencing_token: created.unwrap_or(fencing_token), session })
    }

    /// Waits until `session` leads the election `name`, proclaiming `value`.
    pub async fn campaign(&self, name: &str, value: &[u8], session: Session) -> Result<Leadership> {
        check_name(name)?;
        let request = CampaignRequest { name: name.as_bytes().to_vec(), lease: session.lease, value: value.to_vec() };
        let campaigned = self
            .cluster
            .call_waiting("campaign", |channel| {
                let request = request.clone();
                async move { ElectionClient::new(channel).campaign(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        let leader =
            campaigned.leader.ok_or_else(|| Error::InvalidResponse("a campaign answered no leader key".into()))?;
        Ok(Leadership { coordination: self.clone(), leader, session })
    }

    /// The current leader of `name`: its value, `None` if nobody leads.
    pub async fn leader(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        let request = LeaderRequest { name: name.as_bytes().to_vec() };
        let answer = self
            .cluster
            .call("read the leader", |channel| {
                let request = request.clone();
                async move { ElectionClient::new(channel).leader(request).await.map(|r| r.into_inner()) }
            })
            .await;
        match answer {
            Ok(response) => Ok(response.kv.map(|kv| kv.value)),
            Err(Error::Other { message, .. }) if message == "election: no leader" => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The leader's value now (if any) and after every change: `changes.recv()` gives the
    /// next one. The stream follows one member; when it breaks, `recv` answers the error and a
    /// new `observe` resumes.
    pub async fn observe(&self, name: &str) -> Result<Observer> {
        check_name(name)?;
        let request = LeaderRequest { name: name.as_bytes().to_vec() };
        let stream = self
            .cluster
            .call("observe", |channel| {
                let request = request.clone();
                async move { ElectionClient::new(channel).observe(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(Observer { stream })
    }

    async fn create_revision(&self, key: &[u8]) -> Result<Option<i64>> {
        let key = key.to_vec();
        on_some_member(&self.cluster, "read the lock's key", |mut etcd| {
            let key = key.clone();
            async move { etcd.get(key, None).await.map(|found| found.kvs().first().map(|kv| kv.create_revision())) }
        })
        .await
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("a lock or election needs a name".into()));
    }
    Ok(())
}

/// A lease kept alive in the background: what a lock holder or a leader holds on to. When the
/// cluster says the lease is gone (it expired: this client was cut off longer than its TTL),
/// [`Session::is_lost`] says so and every lock or leadership on it is gone too.
pub struct Session {
    cluster: Arc<Cluster>,
    lease: i64,
    lost: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn start(cluster: Arc<Cluster>, ttl: Duration) -> Result<Session> {
        let ttl = ttl.max(Duration::from_secs(1));
        let seconds = ttl_seconds(ttl);
        let lease = on_some_member(&cluster, "grant a session lease", |mut etcd| async move {
            etcd.lease_grant(seconds, None).await.map(|granted| granted.id())
        })
        .await?;
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(hold(cluster.clone(), lease, ttl, lost_tx));
        Ok(Session { cluster, lease, lost, keeper })
    }

    /// The session's lease.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Whether the lease is known to be gone: locks and leadership on it are lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is known to be gone.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Ends the session: stops the keep-alives and revokes the lease (deleting its keys).
    pub async fn close(self) -> Result<()> {
        self.keeper.abort();
        let lease = self.lease;
        let revoked = on_some_member(&self.cluster, "revoke a session lease", |mut etcd| async move {
            etcd.lease_revoke(lease).await.map(|_| ())
        })
        .await;
        match revoked {
            // Gone already (expired): what revoking wanted.
            Err(Error::Other { message, .. }) if message.contains("requested lease not found") => Ok(()),
            other => other,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Runs `request` with etcd's client on the current member, then on each other one while
/// members fail (unreachable, no leader).
async fn on_some_member<T, F, Fut>(cluster: &Cluster, what: &str, request: F) -> Result<T>
where
    F: Fn(etcd_client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut failures = Vec::new();
    for _ in 0..cluster.members() {
        let member = cluster.current();
        let answer = match cluster.etcd(member).await {
            Ok(etcd) => request(etcd).await,
            Err(error) => {
                failures.push(error.to_string());
                cluster.fail_over_from(member);
                continue;
            }
        };
        match answer {
            Ok(value) => return Ok(value),
            Err(etcd_client::Error::GRpcStatus(status)) if !cluster::is_member_failure(&status) => {
                return Err(cluster::from_status(status))
            }
            Err(error) => {
                failures.push(format!("{}: {error}", cluster.url(member)));
                cluster.fail_over_from(member);
            }
        }
    }
    Err(Error::Unavailable(format!("could not {what}: {}", failures.join("; "))))
}

/// Keeps `lease` alive, failing over between members, until the cluster says it is gone.
async fn hold(cluster: Arc<Cluster>, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    loop {
        let member = cluster.current();
        match keep_alive(&cluster, member, lease, ttl).await {
            LeaseLost::Expired(message) => {
                tracing::warn!(lease, "session lost: {message}");
                let _ = lost.send(true);
                return;
            }
            LeaseLost::Broken(message) => {
                tracing::debug!(lease, "keep-alive broke ({message}); trying the next member");
                cluster.fail_over_from(member);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A held lock. Dropping it without [`LockGuard::unlock`] keeps the lock until the session's
/// lease expires.
pub struct LockGuard {
    coordination: Coordination,
    key: Vec<u8>,
    fencing_token: i64,
    session: Session,
}

impl LockGuard {
    /// The key that holds the lock (`<name>/<lease in hex>`).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The revision at which this holder's key was created: larger for every later holder.
    /// Send it with each write the lock guards; the resource refuses tokens below the highest
    /// it has seen, so a holder that lost the lock while paused cannot write over its successor.
    pub fn fencing_token(&self) -> i64 {
        self.fencing_token
    }

    /// A compare that holds only while this guard holds the lock: put it in the txn of writes
    /// to Keel that the lock guards.
    pub fn still_held(&self) -> etcd_client::Compare {
        etcd_client::Compare::create_revision(self.key.clone(), etcd_client::CompareOp::Equal, self.fencing_token)
    }

    /// Whether the session is known to be lost (then so is the lock).
    pub fn is_lost(&self) -> bool {
        self.session.is_lost()
    }

    /// The session's lease, on which the lock's key lives.
    pub fn lease(&self) -> i64 {
        self.session.lease()
    }

    /// Releases the lock and ends its session.
    pub async fn unlock(self) -> Result<()> {
        let request = UnlockRequest { key: self.key.clone() };
        self.coordination
            .cluster
            .call("unlock", |channel| {
                let request = request.clone();
                async move { LockClient::new(channel).unlock(request).await.map(|_| ()) }
            })
            .await?;
        self.session.close().await
    }
}

/// Leadership of an election, held while its session lives.
pub struct Leadership {
    coordination: Coordination,
    leader: LeaderKey,
    session: Session,
}

impl Leadership {
    /// The leader's key; its create revision (`revision`) is the leadership's fencing token.
    pub fn key(&self) -> &[u8] {
        &self.leader.key
    }

    pub fn revision(&self) -> i64 {
        self.leader.rev
    }

    pub fn is_lost(&self) -> bool {
        self.session.is_lost()
    }

    /// Announces a new value while still leading; `Err` once leadership was lost.
    pub async fn proclaim(&self, value: &[u8]) -> Result<()> {
        let request = ProclaimRequest { leader: Some(self.leader.clone()), value: value.to_vec() };
        self.coordination
            .cluster
            .call("proclaim", |channel| {
                let request = request.clone();
                async move { ElectionClient::new(channel).proclaim(request).await.map(|_| ()) }
            })
            .await
    }

    /// Steps down: the next campaigner leads. Ends the session.
    pub async fn resign(self) -> Result<()> {
        let request = ResignRequest { leader: Some(self.leader.clone()) };
        self.coordination
            .cluster
            .call("resign", |channel| {
                let request = request.clone();
                async move { ElectionClient::new(channel).resign(request).await.map(|_| ()) }
            })
            .await?;
        self.session.close().await
    }
}

/// The changes of an election's leader.
pub struct Observer {
    stream: tonic::Streaming<keel_proto::etcd_election::LeaderResponse>,
}

impl Observer {
    /// The next leader value (the current one first); `Ok(None)` when the stream ended.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        match self.stream.message().await {
            Ok(Some(response)) => Ok(Some(response.kv.map(|kv| kv.value).unwrap_or_default())),
            Ok(None) => Ok(None),
            Err(status) => Err(cluster::from_status(status)),
        }
    }
}

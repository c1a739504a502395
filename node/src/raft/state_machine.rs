//! The state-machine adapter: applies committed entries to the MVCC keyspace and records, in
//! the same atomic batch, the log id they were applied up to. Builds and installs snapshots.
//!
//! Readers (the API layer) share the keyspace through `SharedState`; they take its lock only
//! between applied batches, so they always see a whole number of entries applied.
//!
//! A member that cannot apply an entry (its storage fails, a stored record does not decode)
//! stops: `apply` returns the error to openraft, whose core then stops, and `keel` exits
//! (`RunningMember::failed`). No entry of the batch is answered and nothing of it is written.
//! Only etcd's rules answer with a refusal (`CommandResponse::Rejected`), the same on every
//! member.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, TryStreamExt};
use keel_model::auth::etcd::TokenChange;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::codec::{decode, encode};
use super::snapshot::{self, SnapshotFile};
use super::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::auth::simple::SimpleTokens;
use crate::command::{Command, CommandResponse, MemberAttributes, RangeRequest, RangeResponse, SecretKey};
use crate::mvcc::{self, KvHash, MvccStore, ReadError, StateHash};
use crate::storage::{Durability, Engine, StorageError, Table, WriteBatch};
use crate::watch::Hub;

pub(crate) const APPLIED_KEY: &[u8] = b"raft/applied";
pub(crate) const MEMBERSHIP_KEY: &[u8] = b"raft/membership";
const MEMBER_PREFIX: &[u8] = b"members/";
/// The cluster's key for config secrets (in `StateMeta`, never in the KV keyspace, so no
/// client API can read it).
pub(crate) const SECRET_KEY_KEY: &[u8] = b"secrets/cluster_key";
/// Set (in the log's table, which snapshots do not touch) while a snapshot is being installed:
/// found at start-up, it means the state machine is half-replaced and the snapshot must be
/// installed again before anything reads it.
pub(crate) const INSTALLING_KEY: &[u8] = b"installing_snapshot";

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// What the API layer reads: the keyspace, the members' published attributes, and the
/// changes as they are applied.
pub struct SharedState {
    mvcc: RwLock<MvccStore>,
    members: RwLock<BTreeMap<u64, MemberAttributes>>,
    secret_key: RwLock<Option<SecretKey>>,
    hub: Hub,
    /// etcd's simple tokens, learnt from applied `Authenticate`s (member-local, not replicated
    /// state: etcd keeps them in memory too).
    simple_tokens: SimpleTokens,
}

impl SharedState {
    /// std RwLock: held only for synchronous work, never across an await. A poisoned lock
    /// means an apply panicked half-way; the state is then unknown, so we stop the member.
    pub fn mvcc(&self) -> RwLockReadGuard<'_, MvccStore> {
        self.mvcc.read().unwrap_or_else(|_| fatal("keyspace lock poisoned"))
    }

    /// A client's Range: the keyspace lock is held only while the index is read, not while
    /// the values are (see `mvcc::range_unlocked`).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, ReadError> {
        mvcc::range_unlocked(self.mvcc(), request)
    }

    /// etcd's HashKV at `revision` (0 = current); see `mvcc::hash`. Blocking: call it off the
    /// async threads.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, ReadError> {
        mvcc::hash_kv(self.mvcc(), revision)
    }

    /// etcd's Hash: the whole replicated state but how far this member has applied it.
    pub fn hash_state(&self) -> Result<StateHash, StorageError> {
        mvcc::hash_state(self.mvcc(), &[APPLIED_KEY])
    }

    /// Writes a snapshot file of the replicated state at `path` (Maintenance.Snapshot's backup):
    /// the point in time is taken while no applied batch is being written, so the file holds
    /// whole batches only, and its header names the log id and membership they reached.
    /// Blocking: call it off the async threads.
    pub fn backup(&self, path: &Path) -> io::Result<SnapshotMeta> {
        let mvcc = self.mvcc();
        let engine = mvcc.engine_handle();
        let last_log_id = get_meta::<Option<LogId>>(&engine, APPLIED_KEY)?.flatten();
        let last_membership = get_meta::<StoredMembership>(&engine, MEMBERSHIP_KEY)?.unwrap_or_default();
        let meta = SnapshotMeta { last_log_id, last_membership };
        let mut held = Some(mvcc);
        snapshot::write(&engine, &meta, path, &mut || drop(held.take()))?;
        Ok(meta)
    }

    /// Every applied batch of changes, in revision order, for watchers.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The simple tokens this member knows.
    pub fn simple_tokens(&self) -> &SimpleTokens {
        &self.simple_tokens
    }

    /// The cluster's key for config secrets, once the bootstrap proposal is applied.
    pub fn secret_key(&self) -> Option<SecretKey> {
        self.secret_key.read().unwrap_or_else(|_| fatal("secret key lock poisoned")).clone()
    }

    pub fn members(&self) -> BTreeMap<u64, MemberAttributes> {
        self.members.read().unwrap_or_else(|_| fatal("members lock poisoned")).clone()
    }

    fn mvcc_mut(&self) -> RwLockWriteGuard<'_, MvccStore> {
        self.mvcc.write().unwrap_or_else(|_| fatal("keyspace lock poisoned"))
    }
}

fn fatal(what: &str) -> ! {
    tracing::error!("{what}: stopping this member");
    std::process::abort()
}

pub struct StateMachine {
    engine: Arc<dyn Engine>,
    shared: Arc<SharedState>,
    snapshot_dir: PathBuf,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// TEST ONLY (`--unsafe-diverge-versions`): this member stores Puts one version higher.
    unsafe_version_skew: i64,
}

impl StateMachine {
    pub fn open(engine: Arc<dyn Engine>, snapshot_dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(snapshot_dir)?;
        if let Some(name) = engine.get(Table::RaftMeta, INSTALLING_KEY).map_err(io::Error::other)? {
            let path = snapshot_dir.join(String::from_utf8_lossy(&name).as_ref());
            tracing::warn!(path = %path.display(), "finishing an interrupted snapshot install");
            finish_install(&engine, &path)?;
        }
        let applied = get_meta::<Option<LogId>>(&engine, APPLIED_KEY)?.flatten();
        let membership = get_meta::<StoredMembership>(&engine, MEMBERSHIP_KEY)?.unwrap_or_default();
        let shared = Arc::new(SharedState {
            mvcc: RwLock::new(MvccStore::open(engine.clone()).map_err(io::Error::other)?),
            members: RwLock::new(load_members(&engine)?),
            secret_key: RwLock::new(get_meta::<SecretKey>(&engine, SECRET_KEY_KEY)?),
            hub: Hub::default(),
            simple_tokens: SimpleTokens::default(),
        });
        Ok(Self {
            engine,
            shared,
            snapshot_dir: snapshot_dir.to_path_buf(),
            applied,
            membership,
            unsafe_version_skew: 0,
        })
    }

    /// TEST ONLY: from now on this member applies every Put one version higher than the
    /// others, a divergence that reads of values do not show and HashKV does.
    pub fn unsafe_diverge_versions(&mut self) {
        self.unsafe_version_skew = 1;
        self.shared.mvcc_mut().unsafe_skew_versions(1);
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    fn apply_one(
        &mut self,
        mvcc: &mut MvccStore,
        payload: EntryPayload<Command, u64, super::MemberNode>,
        log_id: LogId,
        extra: &mut WriteBatch,
    ) -> io::Result<CommandResponse> {
        assert!(self.applied.is_none_or(|applied| log_id.index > applied.index), "log applied out of order");
        self.applied = Some(log_id);
        match payload {
            EntryPayload::Blank => Ok(CommandResponse::None),
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(log_id), membership);
                Ok(CommandResponse::None)
            }
            EntryPayload::Normal(Command::PublishMember(attributes)) => {
                extra.put(Table::StateMeta, member_key(attributes.member_id), encode(&attributes)?);
                self.shared
                    .members
                    .write()
                    .unwrap_or_else(|_| fatal("members lock poisoned"))
                    .insert(attributes.member_id, attributes);
                Ok(CommandResponse::None)
            }
            EntryPayload::Normal(Command::InitSecretKey(key)) => {
                let mut current = self.shared.secret_key.write().unwrap_or_else(|_| fatal("secret key lock poisoned"));
                // The first key applied wins: secrets already encrypted with it stay readable.
                if current.is_none() {
                    extra.put(Table::StateMeta, SECRET_KEY_KEY, encode(&key)?);
                    *current = Some(key);
                }
                Ok(CommandResponse::None)
            }
            EntryPayload::Normal(command) => mvcc.apply(&command).map_err(|error| {
                tracing::error!(index = log_id.index, %command, "cannot apply a committed entry: {error}; stopping");
                io::Error::other(error)
            }),
        }
    }
}

/// Removes every snapshot file in `dir` but `keep`.
fn remove_snapshots_except(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep && path.extension().is_some_and(|e| e == "snap") {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "cannot remove old snapshot: {e}");
            }
        }
    }
}

pub(crate) fn member_key(member_id: u64) -> Vec<u8> {
    let mut key = MEMBER_PREFIX.to_vec();
    key.extend_from_slice(&member_id.to_be_bytes());
    key
}

fn get_meta<T: serde::de::DeserializeOwned>(engine: &Arc<dyn Engine>, key: &[u8]) -> io::Result<Option<T>> {
    let bytes = engine.get(Table::StateMeta, key).map_err(io::Error::other)?;
    bytes.map(|b| decode(&b)).transpose()
}

fn load_members(engine: &Arc<dyn Engine>) -> io::Result<BTreeMap<u64, MemberAttributes>> {
    let mut members = BTreeMap::new();
    let mut decode_err = None;
    engine
        .scan_prefix(Table::StateMeta, MEMBER_PREFIX, &mut |_, value| match decode::<MemberAttributes>(value) {
            Ok(attributes) => {
                members.insert(attributes.member_id, attributes);
                true
            }
            Err(e) => {
                decode_err = Some(e);
                false
            }
        })
        .map_err(io::Error::other)?;
    match decode_err {
        Some(e) => Err(e),
        None => Ok(members),
    }
}

/// Removes what ties an installed state to the cluster it came from (how far that cluster's log
/// was applied, its membership, its members' published attributes), so that it can start a new
/// cluster: a restored backup. Every other record (keys, leases, auth, topics, the secret key)
/// stays as it was.
pub(crate) fn forget_cluster(engine: &Arc<dyn Engine>) -> io::Result<()> {
    let mut batch = WriteBatch::new();
    batch.delete(Table::StateMeta, APPLIED_KEY);
    batch.delete(Table::StateMeta, MEMBERSHIP_KEY);
    engine
        .scan_prefix(Table::StateMeta, MEMBER_PREFIX, &mut |key, _| {
            batch.delete(Table::StateMeta, key.to_vec());
            true
        })
        .map_err(io::Error::other)?;
    engine.write(batch, Durability::Sync).map_err(io::Error::other)
}

/// Installs the snapshot at `path` and records its position, clearing the in-progress marker.
fn finish_install(engine: &Arc<dyn Engine>, path: &Path) -> io::Result<SnapshotMeta> {
    let meta = snapshot::install(engine, path)?;
    let mut batch = WriteBatch::new();
    batch.put(Table::StateMeta, APPLIED_KEY, encode(&meta.last_log_id)?);
    batch.put(Table::StateMeta, MEMBERSHIP_KEY, encode(&meta.last_membership)?);
    batch.delete(Table::RaftMeta, INSTALLING_KEY);
    engine.write(batch, Durability::Sync).map_err(io::Error::other)?;
    Ok(meta)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut pending = Vec::new();
        while let Some(entry_responder) = entries.try_next().await? {
            pending.push(entry_responder);
        }
        let mut responses = Vec::with_capacity(pending.len());
        {
            let shared = self.shared.clone();
            let mut mvcc = shared.mvcc_mut();
            let mut extra = WriteBatch::new();
            let revision_before = mvcc.current_revision();
            for (entry, responder) in pending {
                let response = self.apply_one(&mut mvcc, entry.payload, entry.log_id, &mut extra)?;
                responses.push((responder, response));
            }
            extra.put(Table::StateMeta, APPLIED_KEY, encode(&self.applied)?);
            extra.put(Table::StateMeta, MEMBERSHIP_KEY, encode(&self.membership)?);
            // One atomic batch: the keyspace and the log id it reflects never disagree on disk.
            let written = mvcc.take_changes().and_then(|mut batch| {
                batch.ops.extend(extra.ops);
                let started = std::time::Instant::now();
                let written = self.engine.write(batch, Durability::Buffered);
                crate::telemetry::telemetry().backend_commit(started.elapsed());
                written
            });
            written.map_err(|error| {
                tracing::error!(applied = ?self.applied, "cannot write applied entries: {error}; stopping");
                io::Error::other(error)
            })?;
            // Published under the write lock: watchers reading history see either this batch
            // or a keyspace that already contains it, never neither.
            let revision_after = mvcc.current_revision();
            if revision_after > revision_before {
                shared.hub.publish_applied(revision_before + 1, revision_after, mvcc.take_events());
            }
            let now = std::time::Instant::now();
            for change in mvcc.take_token_changes() {
                shared.simple_tokens.apply(change, now);
            }
        }
        for (responder, response) in responses {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The dump reads the tables as of one point in time taken here, while the state-machine
        // worker waits, so the snapshot is exactly the state at `self.applied`. Only taking
        // that point is waited for: the dump itself runs while entries go on being applied
        // (waiting for all of it stalled every write for a second or more on a large keyspace).
        let meta = SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone() };
        let path = self.snapshot_dir.join(snapshot::file_name(&meta));
        let (engine, dump_path, dump_meta) = (self.engine.clone(), path.clone(), meta.clone());
        let (fixed_tx, fixed_rx) = tokio::sync::oneshot::channel::<()>();
        let dump = tokio::task::spawn_blocking(move || {
            let mut fixed_tx = Some(fixed_tx);
            let mut fixed = || {
                if let Some(tx) = fixed_tx.take() {
                    let _ = tx.send(());
                }
            };
            snapshot::write(&engine, &dump_meta, &dump_path, &mut fixed)
        });
        // An error before the point was taken drops the sender: the builder reports it.
        let _ = fixed_rx.await;
        SnapshotBuilder { dump: Some(dump), meta, path, snapshot_dir: self.snapshot_dir.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), io::Error> {
        let name = snapshot::file_name(meta);
        let path = self.snapshot_dir.join(&name);
        if snapshot.path != path {
            std::fs::rename(&snapshot.path, &path)?;
        }
        let mut marker = WriteBatch::new();
        marker.put(Table::RaftMeta, INSTALLING_KEY, name.into_bytes());
        self.engine.write(marker, Durability::Sync).map_err(io::Error::other)?;
        let engine = self.engine.clone();
        let install_path = path.clone();
        let installed = tokio::task::spawn_blocking(move || finish_install(&engine, &install_path))
            .await
            .map_err(io::Error::other)??;
        {
            let mut mvcc = self.shared.mvcc_mut();
            let revision_before = mvcc.current_revision();
            *mvcc = MvccStore::open(self.engine.clone()).map_err(io::Error::other)?;
            mvcc.unsafe_skew_versions(self.unsafe_version_skew);
            // Watchers cannot be told what changed: they re-read it from the new history.
            self.shared.hub.publish_replaced(revision_before + 1, mvcc.current_revision());
            // Users may be gone or changed in the new state: clients authenticate again.
            self.shared.simple_tokens.apply(TokenChange::EndAll, std::time::Instant::now());
        }
        *self.shared.members.write().unwrap_or_else(|_| fatal("members lock poisoned")) = load_members(&self.engine)?;
        *self.shared.secret_key.write().unwrap_or_else(|_| fatal("secret key lock poisoned")) =
            get_meta::<SecretKey>(&self.engine, SECRET_KEY_KEY)?;
        self.applied = installed.last_log_id;
        self.membership = installed.last_membership;
        remove_snapshots_except(&self.snapshot_dir, &path);
        tracing::info!(applied = ?self.applied, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let mut newest: Option<PathBuf> = None;
        for entry in std::fs::read_dir(&self.snapshot_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "snap") && newest.as_ref().is_none_or(|n| path > *n) {
                newest = Some(path);
            }
        }
        let Some(path) = newest else { return Ok(None) };
        let meta = snapshot::read_meta(&path)?;
        Ok(Some(Snapshot { meta, snapshot: SnapshotFile { path } }))
    }
}

/// A snapshot being written from the point in time `get_snapshot_builder` took; building waits
/// for the file, then removes the older ones.
pub struct SnapshotBuilder {
    dump: Option<tokio::task::JoinHandle<io::Result<()>>>,
    meta: SnapshotMeta,
    path: PathBuf,
    snapshot_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let dump = self.dump.take().ok_or_else(|| io::Error::other("snapshot builder used twice"))?;
        dump.await.map_err(io::Error::other)??;
        remove_snapshots_except(&self.snapshot_dir, &self.path);
        Ok(Snapshot { meta: self.meta.clone(), snapshot: SnapshotFile { path: self.path.clone() } })
    }
}

#[cfg(test)]
mod tests {
    //! A member that cannot apply an entry stops: `apply` returns the failure to openraft (whose
    //! core then stops, and `keel` exits) and nothing of the batch is written. Responders are
    //! only sent to after the batch is written, so none of its entries is answered either.
    //! Member records at the edges of the id space survive a reload.

    use futures::stream;
    use keel_model::group::GroupOptions;
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::command::{GroupClaimRequest, GroupJoinRequest, GroupSettleRequest, NewEvent, PublishRequest};
    use crate::raft::Entry;
    use crate::storage::{FaultyEngine, MemoryEngine};

    fn entry(index: u64, command: Command) -> Entry {
        let leader = openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(1, 1);
        Entry::new_normal(LogId::new(leader, index), command)
    }

    /// Applies `entries` as openraft does for a follower: no client waits on them.
    async fn apply(state_machine: &mut StateMachine, entries: Vec<Entry>) -> io::Result<()> {
        state_machine.apply(stream::iter(entries.into_iter().map(|entry| Ok((entry, None))))).await
    }

    /// The index of the last entry whose changes reached the engine.
    fn applied_on_disk(engine: &FaultyEngine) -> Option<u64> {
        engine.heal();
        let bytes = engine.get(Table::StateMeta, APPLIED_KEY).expect("get").expect("an applied log id");
        decode::<Option<LogId>>(&bytes).expect("decode").map(|log_id| log_id.index)
    }

    fn publish(topic: &str) -> Command {
        let events = vec![NewEvent { payload: b"e".to_vec(), ..NewEvent::default() }];
        Command::Publish(PublishRequest { topic: topic.into(), events, timestamp_ms: 1_000 })
    }

    fn claim(now_ms: i64) -> Command {
        let request = GroupClaimRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer: "c".into(),
            max: 1,
            auto_ack: false,
            now_ms,
        };
        Command::GroupClaim(request)
    }

    #[tokio::test]
    async fn a_member_that_cannot_read_while_applying_stops_instead_of_answering() {
        let (engine, dir) = (Arc::new(FaultyEngine::new()), tempfile::tempdir().expect("tempdir"));
        let mut state_machine = StateMachine::open(engine.clone(), dir.path()).expect("open");
        // An event out of delivery attempts: the next claim copies it to the dead-letter topic,
        // reading it from the engine.
        let options = GroupOptions { ack_wait_ms: 1_000, retry_limit: Some(0), max_in_flight: 10 };
        let join = GroupJoinRequest { topic: "t".into(), group: "g".into(), start: 0, options };
        let nack = GroupSettleRequest { topic: "t".into(), group: "g".into(), acks: vec![], nacks: vec![0], now_ms: 0 };
        let setup = vec![entry(1, publish("t")), entry(2, Command::GroupJoin(join)), entry(3, claim(1_000))];
        apply(&mut state_machine, setup).await.expect("apply");
        apply(&mut state_machine, vec![entry(4, Command::GroupSettle(nack))]).await.expect("apply");

        engine.fail_reads();
        let outcome = apply(&mut state_machine, vec![entry(5, publish("u")), entry(6, claim(1_001))]).await;
        assert!(outcome.is_err(), "the read failure reaches openraft");
        assert_eq!(applied_on_disk(&engine), Some(4), "nothing of the failed batch is written");
    }

    #[tokio::test]
    async fn a_member_that_cannot_write_an_applied_batch_stops() {
        let (engine, dir) = (Arc::new(FaultyEngine::new()), tempfile::tempdir().expect("tempdir"));
        let mut state_machine = StateMachine::open(engine.clone(), dir.path()).expect("open");
        apply(&mut state_machine, vec![entry(1, publish("t"))]).await.expect("apply");

        engine.fail_writes();
        let outcome = apply(&mut state_machine, vec![entry(2, publish("t"))]).await;
        assert!(outcome.is_err(), "the write failure reaches openraft");
        assert_eq!(applied_on_disk(&engine), Some(1));
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(openraft::vote::leader_id_adv::LeaderId { term: 1, node_id: 1 }, index)
    }

    /// Applies a PublishMember for each id the way `apply` does: one batch with the keyspace.
    fn publish_members(state_machine: &mut StateMachine, member_ids: &[u64]) {
        let shared = state_machine.shared();
        let mut mvcc = shared.mvcc_mut();
        let mut extra = WriteBatch::new();
        for (index, member_id) in (1..).zip(member_ids) {
            let attributes = MemberAttributes {
                member_id: *member_id,
                name: format!("m{member_id:x}"),
                client_urls: vec![format!("http://127.0.0.1:{index}")],
            };
            let payload = EntryPayload::Normal(Command::PublishMember(attributes));
            state_machine.apply_one(&mut mvcc, payload, log_id(index), &mut extra).expect("apply");
        }
        mvcc.commit(extra).expect("commit");
    }

    /// Member ids are hashes: about one in 256 starts with 0xff, which a scan ending at
    /// `prefix + 0xff` lost on every restart (the member's name and client URLs with it).
    #[test]
    fn members_with_ids_at_the_edges_survive_a_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let ids = [0, 1, 0xfeff_ffff_ffff_ffff, 0xff00_0000_0000_0000, 0xffff_ffff_ffff_fffe, u64::MAX];
        let mut state_machine = StateMachine::open(engine.clone(), dir.path()).expect("open");
        publish_members(&mut state_machine, &ids);
        let published = state_machine.shared().members();
        assert_eq!(published.keys().copied().collect::<Vec<_>>(), ids.to_vec());

        let reloaded = StateMachine::open(engine, dir.path()).expect("reopen");
        assert_eq!(reloaded.shared().members(), published);
    }
}

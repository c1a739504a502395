//! Starting a member: bind its ports, open and check its data dir, derive or read its identity,
//! start Raft and both servers, bootstrap a new cluster; and stopping it again. Everything here
//! runs once per process; the running member is `Member` (`mod.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::accept::accepted;
use super::{
    alarms, auto_compact, background, backup, disk_reserve, format, forward_writes, join, leader_batches,
    listen_report, quota, read_barrier, restore, ForwardCounts, Identity, Member, IDENTITY_KEY,
};
use crate::config::{self, MemberConfig};
use crate::lease;
use crate::limits::{
    GRPC_OVERHEAD_BYTES, PEER_MESSAGE_BYTES_MAX, PEER_PENDING_RESET_STREAMS_MAX, PEER_RESPONSE_BYTES_MAX,
};
use crate::raft::join::{JoinGate, JoinService};
use crate::raft::watermark::{self, Mark, Watermark};
use crate::raft::{
    self, AckPolicy, CheckError, Config, LeaseAuthority, LogDamage, LogStore, MemberId, MemberNode, NetworkFactory,
    PeerClients, PeerCredentials, PeerGate, PeerSecret, PeerService, Raft, SnapshotPolicy, StateMachine,
};
use crate::storage::{Direction, Durability, Engine, KeyRange, OpenError, RocksEngine, Table, WriteBatch};
use crate::tls::accept_tls;
use crate::watch::SessionLimits;

/// How long a stopping member lets its connections finish before it drops them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a stopping leader waits for the member it hands its leadership to (normally a
/// round trip or two): past it, the others elect one themselves.
const HAND_OVER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// A started member and its servers. Dropping it does not stop them: call `shutdown`.
pub struct RunningMember {
    pub member: Arc<Member>,
    pub client_addrs: Vec<SocketAddr>,
    pub peer_addrs: Vec<SocketAddr>,
    stop_tx: watch::Sender<bool>,
    servers: JoinSet<Result<(), tonic::transport::Error>>,
}

/// A start-up failure, with a message fit for one line on stderr.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| StartError(format!("listen tcp {addr}: bind: {e}")))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The opened engine, once the data dir's format is one this binary reads, and the write-ahead
/// log file the previous process was writing (found before RocksDB replays and replaces it),
/// for damage messages.
fn open_engine(config: &MemberConfig) -> Result<(Arc<dyn Engine>, Option<PathBuf>), StartError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StartError(format!("cannot access data directory {}: {e}", data_dir.display())))?;
    let path = data_dir.join("db");
    check_format(config, &path)?;
    let live_wal = crate::storage::newest_write_ahead_log(&path);
    let engine = if config.unsafe_ack_before_fsync {
        RocksEngine::open_unsafe_volatile(&path)
    } else {
        RocksEngine::open(&path)
    }
    .map_err(|e| match e {
        OpenError::Damaged { detail, .. } => damaged(config, &detail),
        OpenError::Failed(e) => StartError(format!("cannot open data directory {}: {e}", data_dir.display())),
    })?;
    Ok((Arc::new(engine), live_wal))
}

/// Refuses a data dir whose format this binary does not read, before anything opens it
/// (`format.rs`), and records the format of one that has none yet.
fn check_format(config: &MemberConfig, database: &Path) -> Result<(), StartError> {
    let data_dir = &config.data_dir;
    match format::check(data_dir, database) {
        Ok(format::Found::Recorded(_) | format::Found::New) => Ok(()),
        Ok(format::Found::BeforeTheFile) => {
            tracing::info!(data_dir = %data_dir.display(), "data directory from before format versions: recorded as format 1");
            Ok(())
        }
        Err(e @ format::FormatError::Damaged { .. }) => Err(damaged(config, &e.to_string())),
        Err(e) => Err(StartError(format!("data directory {}: {e}", data_dir.display()))),
    }
}

/// The refusal to start on a damaged data dir: what is wrong, why starting would be unsafe,
/// and how to recover.
fn damaged(config: &MemberConfig, what: &str) -> StartError {
    let data_dir = config.data_dir.display();
    StartError(format!(
        "data directory {data_dir} is damaged: {what}. Refusing to start: serving from it could lose \
         acknowledged writes or break Raft's promises to the other members. To recover, restore this member \
         from the others: remove {data_dir} and start the member again with --initial-cluster-state existing, \
         so that it copies everything from the leader (a single-member cluster has no other copy: restore \
         the directory from a backup)"
    ))
}

/// Refuses a data dir that lost its identity record but still holds Raft state: the identity
/// is written first, before anything else, so it can only be missing through damage, and
/// making up a new one from the flags could give the member another's id.
fn check_identity_present(
    engine: &Arc<dyn Engine>,
    config: &MemberConfig,
    recorded: Option<Mark>,
) -> Result<(), StartError> {
    let unreadable =
        |e: crate::storage::StorageError| StartError(format!("data directory {}: {e}", config.data_dir.display()));
    if engine.get(Table::RaftMeta, IDENTITY_KEY).map_err(unreadable)?.is_some() {
        return Ok(());
    }
    let mut holds_state = recorded.is_some_and(|mark| mark != Mark::default());
    for table in Table::ALL {
        if holds_state {
            break;
        }
        engine
            .scan(table, KeyRange::all(), Direction::Forward, &mut |_, _| {
                // Any key at all: the identity, the only one that could be first, is missing.
                holds_state = true;
                false
            })
            .map_err(unreadable)?;
    }
    if holds_state {
        let database = config.data_dir.join("db");
        return Err(damaged(
            config,
            &format!(
                "the member identity record (raft_meta/identity in the RocksDB database {}) is missing although \
                 the directory holds Raft state",
                database.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a log or vote that is behind what this member made durable before (see
/// `raft::watermark`), naming the file that most likely lost it.
fn check_log_intact(
    engine: &Arc<dyn Engine>,
    recorded: Option<Mark>,
    watermark_path: &Path,
    config: &MemberConfig,
    live_wal: Option<&Path>,
) -> Result<(), StartError> {
    match raft::check_intact(engine.as_ref(), recorded, watermark_path) {
        Ok(()) => Ok(()),
        Err(CheckError::Unreadable(e)) => {
            Err(StartError(format!("data directory {}: raft log: {e}", config.data_dir.display())))
        }
        Err(CheckError::Damaged(damage)) => {
            let database = config.data_dir.join("db");
            let culprit = match (&damage, live_wal) {
                (LogDamage::LogEndsEarly { .. }, Some(wal)) => format!(
                    "the write-ahead log {} most likely lost its end (cut short, or its last block damaged)",
                    wal.display()
                ),
                _ => format!("the RocksDB database {} lost records", database.display()),
            };
            Err(damaged(config, &format!("{damage}; {culprit}")))
        }
    }
}

/// The member's identity: read back from its data dir, or made on first start: for a new
/// cluster, the member ID from its peer URLs and the cluster token and the cluster ID from the
/// initial members; joining an existing one, both asked of the members already running (the ID
/// MemberAdd gave its peer URLs).
async fn identity(
    engine: &Arc<dyn Engine>,
    config: &MemberConfig,
    secret: &PeerSecret,
    peer_tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<(Identity, bool), StartError> {
    let storage_err = |e: std::io::Error| StartError(format!("data directory {}: {e}", config.data_dir.display()));
    if let Some(bytes) = engine.get(Table::RaftMeta, IDENTITY_KEY).map_err(|e| StartError(e.to_string()))? {
        let identity: Identity = raft::decode(&bytes).map_err(storage_err)?;
        return Ok((identity, false));
    }
    let (member_id, cluster_id) = if config.initial_cluster_state_new {
        let member_ids: Vec<u64> = config
            .initial_cluster
            .iter()
            .map(|(_, urls)| config::member_id(urls, &config.initial_cluster_token))
            .collect();
        let member_id = config::member_id(&config.advertise_peer_urls, &config.initial_cluster_token);
        (member_id, config::cluster_id(&member_ids))
    } else {
        join::discover_cluster(config, secret, peer_tls).await?
    };
    let identity = Identity { member_id, cluster_id, name: config.name.clone() };
    let mut batch = WriteBatch::new();
    batch.put(Table::RaftMeta, IDENTITY_KEY, raft::encode(&identity).map_err(storage_err)?);
    engine.write(batch, Durability::Sync).map_err(|e| StartError(e.to_string()))?;
    Ok((identity, true))
}

/// Whether the data dir is a restored backup (`keelctl snapshot restore`) whose member has not
/// bootstrapped Raft yet. It starts a new cluster, as etcd's restored members do.
fn restored_awaiting_bootstrap(engine: &Arc<dyn Engine>, config: &MemberConfig) -> Result<bool, StartError> {
    let marked = engine.get(Table::RaftMeta, restore::RESTORED_KEY).map_err(|e| StartError(e.to_string()))?;
    if marked.is_some() && !config.initial_cluster_state_new {
        return Err(StartError(format!(
            "data directory {} holds a restored backup, which starts a new cluster: start it with \
             --initial-cluster-state new (the default)",
            config.data_dir.display()
        )));
    }
    Ok(marked.is_some())
}

fn raft_config(config: &MemberConfig) -> Result<Arc<Config>, StartError> {
    let election_ms = config.election_timeout.as_millis() as u64;
    let raft_config = Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        // etcd randomises each election timeout in [timeout, 2 x timeout).
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        // Entries kept after a snapshot so a briefly lagging member catches up from the log
        // rather than a whole snapshot (etcd's SnapshotCatchUpEntries).
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
        // Replicate an entry as soon as it is written locally, in parallel with the leader's own
        // fsync, rather than after it: one fsync less on the critical path of every write.
        // Commit still needs a majority of fsyncs, the leader's own counted only once done.
        broadcast_submitted_on_append: Some(true),
        // A follower whose log went back (its damaged data dir removed, as the refusal to start
        // tells the operator to do) is replicated to again from scratch. openraft's default
        // treats that as a bug: a debug build's leader panics, a release build's retries the
        // same conflict for ever, so one member's disk could stop the leader or never heal.
        // Start-up checks refuse every reverted log they can see, so a reversion reaching the
        // leader is an operator's deliberate recovery.
        allow_log_reversion: Some(true),
        ..Default::default()
    };
    raft_config.validate().map(Arc::new).map_err(|e| StartError(format!("raft configuration: {e}")))
}

/// Starts a member: binds its ports (failing fast if one is taken), opens its data dir, starts
/// Raft and both servers, and bootstraps the cluster on the first start of a new one.
pub async fn start(config: MemberConfig) -> Result<RunningMember, StartError> {
    let peer_listeners = bind_all(&config.listen_peer).await?;
    let client_listeners = bind_all(&config.listen_client).await?;
    let peer_addrs = bound_addrs(&peer_listeners)?;
    let client_addrs = bound_addrs(&client_listeners)?;
    // Before the identity is derived: a port-0 peer URL must become the real one first.
    let config = config.with_bound_ports(&client_addrs, &peer_addrs);
    let (engine, live_wal) = open_engine(&config)?;
    let watermark_path = config.data_dir.join(watermark::FILE_NAME);
    let recorded = watermark::read(&watermark_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => damaged(&config, &e.to_string()),
        _ => StartError(format!("cannot read {}: {e}", watermark_path.display())),
    })?;
    check_identity_present(&engine, &config, recorded)?;
    let secret = PeerSecret::load(&config.peer_secret, &config.data_dir).map_err(StartError)?;
    let peer_client_tls =
        config.peer_tls.as_ref().map(crate::tls::peer_client_config).transpose().map_err(StartError)?;
    let (identity, first_start) = identity(&engine, &config, &secret, peer_client_tls.clone()).await?;
    let restored = restored_awaiting_bootstrap(&engine, &config)?;
    if identity.name != config.name {
        tracing::warn!(stored = %identity.name, flag = %config.name, "data dir belongs to another name; keeping the stored one");
    }
    if config.unsafe_stale_reads || config.unsafe_ack_before_fsync || config.unsafe_diverge_versions {
        tracing::warn!(
            stale_reads = config.unsafe_stale_reads,
            ack_before_fsync = config.unsafe_ack_before_fsync,
            diverge_versions = config.unsafe_diverge_versions,
            "UNSAFE test-only sabotage enabled: this member can lose or misreport data"
        );
    }
    let ack = if config.unsafe_ack_before_fsync { AckPolicy::UnsafeBeforeFsync } else { AckPolicy::AfterFsync };
    check_log_intact(&engine, recorded, &watermark_path, &config, live_wal.as_deref())?;
    let watermark = Watermark::open(&watermark_path, recorded.unwrap_or_default())
        .map_err(|e| StartError(format!("cannot write {}: {e}", watermark_path.display())))?;
    let log_store =
        LogStore::open(engine.clone(), ack, Arc::new(watermark)).map_err(|e| StartError(format!("raft log: {e}")))?;
    raft::remove_incoming(&config.data_dir.join("snapshots"));
    let backup_dir = backup::dir(&config.data_dir);
    backup::clear(&backup_dir).map_err(|e| StartError(format!("cannot clear {}: {e}", backup_dir.display())))?;
    let mut state_machine = StateMachine::open(engine.clone(), &config.data_dir.join("snapshots"))
        .map_err(|e| StartError(format!("state machine: {e}")))?;
    if config.unsafe_diverge_versions {
        state_machine.unsafe_diverge_versions();
    }
    let shared = state_machine.shared();
    // Before Raft starts: a key file that cannot be read stops the member with nothing begun.
    let tokens = super::auth::Tokens::new(&config.auth_token, config.bcrypt_cost)
        .map_err(|e| StartError(format!("--auth-token: {e}")))?;
    let credentials = PeerCredentials::new(&secret, identity.member_id, identity.cluster_id);
    let servers_tls = ServersTls::load(&config)?;
    let peers = PeerClients::new(credentials, peer_client_tls, config.unsafe_peer_source_address);
    let raft = Raft::new(
        identity.member_id,
        raft_config(&config)?,
        NetworkFactory::new(peers.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| StartError(format!("raft: {e}")))?;
    let leases = LeaseAuthority::new(raft.clone(), shared.clone());
    let member = Arc::new_cyclic(|me| Member {
        id: identity.member_id,
        cluster_id: identity.cluster_id,
        name: identity.name.clone(),
        max_request_bytes: config.max_request_bytes,
        lease_ttl_min_secs: lease::ttl_min_secs(config.election_timeout),
        watch_limits: SessionLimits { progress_interval: config.watch_progress_notify_interval },
        unsafe_stale_reads: config.unsafe_stale_reads,
        raft: raft.clone(),
        shared,
        leases: leases.clone(),
        engine,
        peers,
        me: me.clone(),
        read_rounds: read_barrier::ReadRounds::default(),
        write_batches: forward_writes::write_batches(),
        leader_batches: leader_batches::leader_batches(),
        forward_links: Default::default(),
        forwarded: ForwardCounts::default(),
        counters: Default::default(),
        tokens,
        client_cert_auth: config.client_tls.as_ref().is_some_and(|tls| tls.client_cert_auth),
        quota: quota::Quota::new(config.quota_backend_bytes),
        disk_reserve: disk_reserve::DiskReserve::new(&config.data_dir, config.min_free_disk_bytes),
        backup_dir: backup_dir.clone(),
        cluster_token: config.initial_cluster_token.clone(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let gate = PeerGate::new(&secret, identity.member_id, identity.cluster_id, raft.clone());
    for listener in peer_listeners {
        let service = PeerService::new(member.clone(), config.data_dir.join("snapshots"));
        let server = keel_proto::peer::peer_server::PeerServer::new(service)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_RESPONSE_BYTES_MAX);
        let router = tonic::transport::Server::builder()
            .http2_max_pending_accept_reset_streams(Some(PEER_PENDING_RESET_STREAMS_MAX))
            // The gate sees each request's headers before its body is read.
            .add_service(tonic::service::interceptor::InterceptedService::new(server, gate.clone()))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                keel_proto::peer::join_server::JoinServer::new(JoinService::new(raft.clone(), identity.cluster_id)),
                JoinGate::new(&secret),
            ));
        let stopped = stopped(stop_rx.clone());
        match &servers_tls.peer {
            Some(tls) => {
                servers.spawn(router.serve_with_incoming_shutdown(accept_tls(accepted(listener), tls.clone()), stopped))
            }
            None => servers.spawn(router.serve_with_incoming_shutdown(accepted(listener), stopped)),
        };
    }
    let decoding_limit = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    for listener in client_listeners {
        let router = crate::api::client_router(member.clone(), decoding_limit, config.max_concurrent_streams);
        let stopped = stopped(stop_rx.clone());
        // The authority shim reads decrypted HTTP/2: it wraps the TLS stream, not the TCP one.
        match &servers_tls.client {
            Some(tls) => {
                let connections =
                    accept_tls(accepted(listener), tls.clone()).map(|s| s.map(crate::api::AuthorityFix::new));
                servers.spawn(router.serve_with_incoming_shutdown(connections, stopped))
            }
            None => {
                let connections = accepted(listener).map(|stream| stream.map(crate::api::AuthorityFix::new));
                servers.spawn(router.serve_with_incoming_shutdown(connections, stopped))
            }
        };
    }

    if first_start && config.initial_cluster_state_new {
        bootstrap(&raft, &config).await?;
    }
    if restored {
        // A restored backup: Raft starts a new cluster on top of the restored state.
        bootstrap(&raft, &config).await?;
        let mut batch = WriteBatch::new();
        batch.delete(Table::RaftMeta, restore::RESTORED_KEY);
        let written = member.engine.write(batch, Durability::Sync);
        written.map_err(|e| StartError(format!("recording the restore: {e}")))?;
        tracing::info!("started a new cluster from a restored backup");
    }
    tokio::spawn(background::publish_attributes(member.clone(), config.advertise_client_urls.clone(), stop_rx.clone()));
    tokio::spawn(background::ensure_secret_key(member.clone(), stop_rx.clone()));
    tokio::spawn(super::counters::count_leader_changes(member.clone(), stop_rx.clone()));
    tokio::spawn(background::expire_leases(member.clone(), stop_rx.clone()));
    tokio::spawn(alarms::raise_when_full(member.clone(), stop_rx.clone()));
    if let Some(mode) = config.auto_compaction {
        tokio::spawn(auto_compact::run(member.clone(), mode, stop_rx.clone()));
    }
    tokio::spawn(background::enforce_retention(member.clone(), stop_rx));
    if let Some(path) = &config.listen_addresses_file {
        listen_report::write(path, &client_addrs, &peer_addrs)
            .map_err(|e| StartError(format!("cannot write the listen addresses file {}: {e}", path.display())))?;
    }
    // The advertised URLs only now: a member that fails to start says one thing, its error.
    tracing::info!(
        member_id = %format!("{:x}", member.id),
        cluster_id = %format!("{:x}", member.cluster_id),
        client = %config.advertise_client_urls.join(","),
        peer = %config.advertise_peer_urls.join(","),
        "member started"
    );
    Ok(RunningMember { member, client_addrs, peer_addrs, stop_tx, servers })
}

/// The rustls configurations of the member's TLS listeners, read before anything starts.
struct ServersTls {
    client: Option<Arc<rustls::ServerConfig>>,
    peer: Option<Arc<rustls::ServerConfig>>,
}

impl ServersTls {
    fn load(config: &MemberConfig) -> Result<ServersTls, StartError> {
        let server = |files: &crate::tls::TlsFiles, kind: &str| {
            crate::tls::server_config(files).map_err(|e| StartError(format!("{kind} TLS: {e}")))
        };
        let client = config.client_tls.as_ref().map(|files| server(files, "client")).transpose()?;
        let peer = match (&config.peer_tls, config.listen_peer_https) {
            (Some(files), true) => Some(server(files, "peer")?),
            _ => None,
        };
        Ok(ServersTls { client, peer })
    }
}

/// The address each listener got (its port when the listen URL asked for port 0).
fn bound_addrs(listeners: &[TcpListener]) -> Result<Vec<SocketAddr>, StartError> {
    listeners
        .iter()
        .map(|listener| listener.local_addr().map_err(|e| StartError(format!("address of a bound listener: {e}"))))
        .collect()
}

async fn stopped(mut stop_rx: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop_rx.wait_for(|stop| *stop).await;
}

/// Every member of a new cluster initialises Raft with the same membership: openraft allows
/// this, and the vote then elects exactly one leader.
async fn bootstrap(raft: &Raft, config: &MemberConfig) -> Result<(), StartError> {
    let members: BTreeMap<MemberId, MemberNode> = config
        .initial_cluster
        .iter()
        .map(|(name, urls)| {
            (
                config::member_id(urls, &config.initial_cluster_token),
                MemberNode { name: name.clone(), peer_urls: urls.clone() },
            )
        })
        .collect();
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(openraft::errors::RaftError::APIError(e)) => {
            tracing::info!("cluster already initialised: {e}");
            Ok(())
        }
        Err(e) => Err(StartError(format!("bootstrap: {e}"))),
    }
}

impl RunningMember {
    /// Hands the leadership over (on a leader), stops serving, then stops Raft. In-flight
    /// requests finish or fail; nothing acknowledged is lost because everything acknowledged
    /// is already on disk. Connections
    /// get [`SHUTDOWN_GRACE`] to finish (HTTP/2 GOAWAY, streams ended); whatever a client still
    /// holds open then is dropped, as etcd closes its connections, so SIGTERM always ends the
    /// process.
    pub async fn shutdown(mut self) {
        // While everything still serves: a leader hands over first, so that the others elect
        // no one after an election timeout and requests in flight are forwarded, not failed.
        self.member.hand_over_leadership(HAND_OVER_PATIENCE).await;
        // Proposals in flight (a former leader's among them) are answered before the servers
        // are told to stop: their clients get an answer, not a closed connection.
        self.member.wait_for_proposals(SHUTDOWN_GRACE).await;
        let _ = self.stop_tx.send(true);
        self.member.shared.hub().stop();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(result) = self.servers.join_next().await {
                if let Ok(Err(e)) = result {
                    tracing::warn!("server stopped with error: {e}");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::info!("client connections still open {SHUTDOWN_GRACE:?} after the stop; closing them");
            self.servers.abort_all();
            while self.servers.join_next().await.is_some() {}
        }
        if let Err(e) = self.member.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        if let Err(e) = self.member.engine.close() {
            tracing::warn!("closing storage: {e}");
        }
    }

    /// Resolves when the member cannot go on: a server stopped on its own, or the Raft core
    /// stopped (a storage failure such as a full disk, or a panic). openraft never restarts a
    /// stopped core, so the member would stay up answering nothing: the caller exits instead
    /// and a supervisor restarts it, as etcd does.
    /// Resolves once this member has been removed from the cluster (MemberRemove): it has
    /// nothing left to serve, and stops, as etcd's removed members do.
    pub fn removed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let member = self.member.clone();
        async move { super::membership::removed(&member).await }
    }

    pub async fn failed(&mut self) -> String {
        let raft = self.member.raft.clone();
        tokio::select! {
            failure = first_server_failure(&mut self.servers) => failure,
            failure = raft_core_stopped(&raft) => format!("raft stopped: {failure}"),
        }
    }
}

async fn first_server_failure(servers: &mut JoinSet<Result<(), tonic::transport::Error>>) -> String {
    match servers.join_next().await {
        Some(Ok(Err(e))) => format!("server failed: {e}"),
        Some(Err(e)) => format!("server task failed: {e}"),
        Some(Ok(Ok(()))) => "server stopped".into(),
        None => std::future::pending().await,
    }
}

/// Resolves when openraft reports its core stopped (`running_state`), or its task ended
/// without saying so (the metrics sender dropped, as on a panic).
async fn raft_core_stopped(raft: &Raft) -> String {
    let stopped = || match &raft.metrics().borrow_watched().running_state {
        Err(fatal) => Some(fatal.to_string()),
        Ok(()) => None,
    };
    // Woken by the server metrics, which change with roles and memberships only (the full
    // metrics change with every write), and whose sender the core drops when it ends.
    let mut server = raft.server_metrics();
    loop {
        if let Some(fatal) = stopped() {
            return fatal;
        }
        if server.changed().await.is_err() {
            return stopped().unwrap_or_else(|| "the Raft core task ended".into());
        }
    }
}

//! Backups: what a backup file holds (`status`), and etcd's `snapshot restore`: a new data dir
//! for one member of a new cluster, holding every key, lease, user, topic and the secret key of
//! the file, with the membership and identity the flags give. The member then starts with
//! `--initial-cluster-state new` and bootstraps Raft as a fresh member would (`start.rs` sees the
//! `RESTORED_KEY` mark), on top of the restored state.
//!
//! A backup file is a Raft snapshot file (`raft::snapshot`: a SHA-256 trailer over everything)
//! in etcd's framing (`member::backup`), written by `Maintenance.Snapshot`; a bare snapshot file
//! is accepted too. It is verified whole before anything is written, and a restore that fails
//! half-way removes the directory it made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config;
use crate::mvcc::MvccStore;
use crate::raft::{self, snapshot};
use crate::storage::{Durability, Engine, RocksEngine, Table, WriteBatch};

use super::{backup, format, Identity, IDENTITY_KEY};

/// Set in a restored data dir until its member has bootstrapped Raft.
pub(crate) const RESTORED_KEY: &[u8] = b"restored";

/// etcd's `snapshot restore` flags.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    /// Default: `<name>.keel`, as `keel`'s own default.
    pub data_dir: Option<PathBuf>,
}

/// What a restore made.
#[derive(Clone, Debug)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub member_id: u64,
    pub cluster_id: u64,
    pub revision: i64,
}

/// What a backup file holds (etcd's `snapshot status`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupStatus {
    /// The first 32 bits of the snapshot's SHA-256, in hex: two files are the same backup when
    /// they agree.
    pub hash: String,
    pub revision: i64,
    /// Records of every table (revisions of keys, leases, users, …), as etcd counts its keys.
    pub total_keys: u64,
    pub total_size: u64,
}

/// Verifies the backup at `file` and reads what it holds; the file is only read.
pub fn status(file: &Path) -> Result<BackupStatus, String> {
    let described = |e: std::io::Error| format!("snapshot file {}: {e}", file.display());
    let length = backup::snapshot_length(file).map_err(described)?;
    snapshot::verify_prefix(file, length).map_err(described)?;
    let summary = snapshot::summarize(file, length).map_err(described)?;
    Ok(BackupStatus {
        hash: summary.digest.iter().take(4).map(|byte| format!("{byte:02x}")).collect(),
        revision: summary.revision,
        total_keys: summary.records,
        total_size: std::fs::metadata(file).map_err(described)?.len(),
    })
}

/// Restores the backup at `file` into a new data dir for the member `options` names.
pub fn restore(file: &Path, options: &RestoreOptions) -> Result<Restored, String> {
    let described = |e: std::io::Error| format!("snapshot file {}: {e}", file.display());
    let length = backup::snapshot_length(file).map_err(described)?;
    snapshot::verify_prefix(file, length).map_err(described)?;
    let identity = identity(options)?;
    let data_dir = options.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.keel", options.name)));
    if data_dir.exists() {
        return Err(format!("data-dir {:?} exists", data_dir.display().to_string()));
    }
    let restored = fill(file, length, &data_dir, &identity);
    if restored.is_err() {
        // Never a half-restored directory that a member could start from.
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let revision = restored?;
    Ok(Restored { data_dir, member_id: identity.member_id, cluster_id: identity.cluster_id, revision })
}

/// The member's identity from the flags, derived exactly as `keel` derives it on a first start.
fn identity(options: &RestoreOptions) -> Result<Identity, String> {
    let initial_cluster = config::parse_initial_cluster(&options.initial_cluster)?;
    let own_urls = config::split_urls("--initial-advertise-peer-urls", &options.initial_advertise_peer_urls)?;
    let Some((_, listed)) = initial_cluster.iter().find(|(name, _)| *name == options.name) else {
        return Err(format!(
            "couldn't find local name {:?} in the initial cluster configuration (--initial-cluster)",
            options.name
        ));
    };
    let (mut listed, mut own) = (listed.clone(), own_urls.clone());
    listed.sort();
    own.sort();
    if listed != own {
        return Err(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
            options.name,
            listed.join(","),
            own_urls.join(",")
        ));
    }
    let token = &options.initial_cluster_token;
    let member_ids: Vec<u64> = initial_cluster.iter().map(|(_, urls)| config::member_id(urls, token)).collect();
    Ok(Identity {
        member_id: config::member_id(&own_urls, token),
        cluster_id: config::cluster_id(&member_ids),
        name: options.name.clone(),
    })
}

/// Makes `data_dir` and fills it: the file's state without its old cluster, the new identity
/// and the restored mark. Answers the restored revision.
fn fill(file: &Path, length: u64, data_dir: &Path, identity: &Identity) -> Result<i64, String> {
    let in_dir = |e: &dyn std::fmt::Display| format!("data-dir {}: {e}", data_dir.display());
    std::fs::create_dir_all(data_dir).map_err(|e| in_dir(&e))?;
    let database = data_dir.join("db");
    format::check(data_dir, &database).map_err(|e| in_dir(&e))?;
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(&database).map_err(|e| in_dir(&e))?);
    let filled = (|| -> Result<i64, String> {
        let installed = snapshot::install_prefix(&engine, file, length);
        installed.map_err(|e| format!("snapshot file {}: {e}", file.display()))?;
        raft::forget_cluster(&engine).map_err(|e| in_dir(&e))?;
        let mut batch = WriteBatch::new();
        batch.put(Table::RaftMeta, IDENTITY_KEY, raft::encode(identity).map_err(|e| in_dir(&e))?);
        batch.put(Table::RaftMeta, RESTORED_KEY, Vec::new());
        engine.write(batch, Durability::Sync).map_err(|e| in_dir(&e))?;
        let revision = MvccStore::open(engine.clone()).map_err(|e| in_dir(&e))?.current_revision();
        Ok(revision)
    })();
    let closed = engine.close().map_err(|e| in_dir(&e));
    let revision = filled?;
    closed?;
    Ok(revision)
}

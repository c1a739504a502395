//! Who may speak on the peer port: current members of this cluster, and nobody else.
//!
//! Every member holds the cluster's peer secret (`--peer-secret-file`, or for a single member a
//! secret it made itself in its data dir). Each peer RPC carries, in its metadata, a token derived
//! from that secret, the sender's member id and the cluster id. The peer server checks them in an
//! interceptor, which runs on the request's headers before its body is read, so a stranger can
//! neither make a member decode a message nor reach openraft: no vote, no append, no forwarded
//! write, no snapshot. The secret itself never travels and is never logged.
//!
//! What this does not do: encrypt. Without TLS, someone who can read loopback or network traffic
//! can read the token; peer TLS (`--peer-cert-file`, …) is the answer to that.
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use sha2::{Digest, Sha256};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Status};

use super::{MemberId, Raft};
use crate::config::PeerSecretSource;

/// The file a single member without `--peer-secret-file` keeps its own secret in.
pub const DATA_DIR_SECRET_FILE: &str = "peer-secret";

/// A shorter secret is refused: it could be guessed.
const SECRET_BYTES_MIN: usize = 16;
/// A longer file is refused: it is not a secret file (and we would read all of it).
const SECRET_BYTES_MAX: usize = 64 * 1024;
/// What a member generates for itself.
const GENERATED_SECRET_BYTES: usize = 32;

pub(super) const TOKEN_HEADER: &str = "keel-peer-token";
const MEMBER_HEADER: &str = "keel-member-id";
const CLUSTER_HEADER: &str = "keel-cluster-id";

/// The cluster's peer secret, reduced to the token members present. Debug never shows it.
#[derive(Clone)]
pub struct PeerSecret {
    /// Lowercase hex of SHA-256("keel peer token v1" ‖ secret): 64 ASCII bytes.
    token: String,
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret([redacted])")
    }
}

impl PeerSecret {
    pub fn from_bytes(secret: &[u8]) -> PeerSecret {
        let mut hasher = Sha256::new();
        hasher.update(b"keel peer token v1\0");
        hasher.update(secret);
        let token = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        PeerSecret { token }
    }

    /// Whether `metadata` carries this secret's token (the check every peer RPC passes first).
    pub fn admits(&self, metadata: &MetadataMap) -> bool {
        super::join::has_token(&self.token, metadata)
    }

    /// Reads the secret from where the configuration says, making a member's own on its first
    /// start when it has no `--peer-secret-file`.
    pub fn load(source: &PeerSecretSource, data_dir: &Path) -> Result<PeerSecret, String> {
        match source {
            PeerSecretSource::File(path) => read_secret_file(path),
            PeerSecretSource::DataDir => {
                let path = data_dir.join(DATA_DIR_SECRET_FILE);
                if !path.exists() {
                    create_secret_file(&path)?;
                    tracing::info!(path = %path.display(), "made this member's peer secret: give this file (--peer-secret-file) to members you add");
                }
                read_secret_file(&path)
            }
        }
    }
}

fn read_secret_file(path: &Path) -> Result<PeerSecret, String> {
    let named = |e: std::io::Error| format!("--peer-secret-file {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(named)?.len();
    if size > SECRET_BYTES_MAX as u64 {
        return Err(format!("--peer-secret-file {}: larger than {SECRET_BYTES_MAX} bytes", path.display()));
    }
    let bytes = std::fs::read(path).map_err(named)?;
    // A trailing newline from `echo` or an editor is not part of the secret.
    let secret = bytes.trim_ascii_end();
    if secret.len() < SECRET_BYTES_MIN {
        return Err(format!(
            "--peer-secret-file {}: the secret is {} bytes, at least {SECRET_BYTES_MIN} are needed",
            path.display(),
            secret.len()
        ));
    }
    Ok(PeerSecret::from_bytes(secret))
}

/// Writes a new random secret readable by this user only; never overwrites one.
fn create_secret_file(path: &Path) -> Result<(), String> {
    let named = |e: std::io::Error| format!("cannot create the peer secret {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(named)?;
    }
    let secret: [u8; GENERATED_SECRET_BYTES] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(named)?;
    file.write_all(hex.as_bytes()).and_then(|()| file.sync_all()).map_err(named)
}

/// What a member attaches to every peer RPC it sends (a tonic client interceptor).
#[derive(Clone)]
pub struct PeerCredentials {
    token: AsciiMetadataValue,
    member_id: AsciiMetadataValue,
    cluster_id: AsciiMetadataValue,
}

impl PeerCredentials {
    pub fn new(secret: &PeerSecret, member_id: MemberId, cluster_id: u64) -> PeerCredentials {
        PeerCredentials {
            token: ascii(&secret.token),
            member_id: ascii(&format!("{member_id:x}")),
            cluster_id: ascii(&format!("{cluster_id:x}")),
        }
    }
}

fn ascii(text: &str) -> AsciiMetadataValue {
    // Hex digits only: always a valid header value.
    AsciiMetadataValue::try_from(text).unwrap_or_else(|_| AsciiMetadataValue::from_static("invalid"))
}

impl tonic::service::Interceptor for PeerCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert(TOKEN_HEADER, self.token.clone());
        metadata.insert(MEMBER_HEADER, self.member_id.clone());
        metadata.insert(CLUSTER_HEADER, self.cluster_id.clone());
        Ok(request)
    }
}

/// The authenticated sender of a peer RPC, put in the request's extensions by `PeerGate`:
/// its ID, and whether it is a member in this member's view of the membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSender {
    pub id: MemberId,
    pub known: bool,
}

/// The peer server's interceptor: admits current members of this cluster that present the
/// cluster's token, and refuses everyone else with `UNAUTHENTICATED` before the body is read.
#[derive(Clone)]
pub struct PeerGate {
    token: String,
    member_id: MemberId,
    cluster_id: u64,
    raft: Raft,
    refusals: std::sync::Arc<RefusalLog>,
}

impl PeerGate {
    pub fn new(secret: &PeerSecret, member_id: MemberId, cluster_id: u64, raft: Raft) -> PeerGate {
        PeerGate { token: secret.token.clone(), member_id, cluster_id, raft, refusals: std::sync::Arc::default() }
    }

    /// The sender, if it holds the cluster's secret and names this cluster, and whether it is
    /// a member as far as this member knows (the handlers decide what a sender that is not may
    /// do: a leader newer than what this member has applied may be one it never heard of).
    fn admit(&self, metadata: &MetadataMap) -> Result<PeerSender, Refusal> {
        if !super::join::has_token(&self.token, metadata) {
            return Err(Refusal::Token);
        }
        let cluster_id = hex_header(metadata, CLUSTER_HEADER).ok_or(Refusal::Malformed)?;
        if cluster_id != self.cluster_id {
            return Err(Refusal::Cluster(cluster_id));
        }
        let sender = hex_header(metadata, MEMBER_HEADER).ok_or(Refusal::Malformed)?;
        if sender == self.member_id {
            return Err(Refusal::NotMember(sender));
        }
        Ok(PeerSender { id: sender, known: is_member(&self.raft, sender) })
    }
}

/// Whether `sender` is a member as far as this member knows. A member that joins an existing
/// cluster knows no membership until the leader's first entries reach it: until then any holder
/// of the cluster's secret may speak to it.
fn is_member(raft: &Raft, sender: MemberId) -> bool {
    let metrics = raft.metrics();
    let membership = metrics.borrow_watched().membership_config.clone();
    let membership = membership.membership();
    membership.nodes().next().is_none() || membership.get_node(&sender).is_some()
}

/// Refuses, on a stream the gate admitted it to, a sender that is no longer a member: the gate
/// sees a stream's headers once, and a member removed meanwhile must be refused from then on,
/// as each of its new calls is.
pub fn check_still_member(raft: &Raft, sender: MemberId) -> Result<(), Status> {
    match is_member(raft, sender) {
        true => Ok(()),
        false => Err(not_a_member(sender)),
    }
}

fn hex_header(metadata: &MetadataMap, name: &str) -> Option<u64> {
    let text = metadata.get(name)?.to_str().ok()?;
    u64::from_str_radix(text, 16).ok()
}

/// How a refusal names a sender that is not (or no longer) a member: a removed member learns
/// of its removal from these words (`network::PeerClients::note_refusal`).
pub(crate) const NOT_A_MEMBER: &str = "is not a member of this cluster";

/// Why a peer RPC was refused; the message goes back to the caller and into our log.
#[derive(Debug)]
enum Refusal {
    Token,
    Malformed,
    Cluster(u64),
    NotMember(MemberId),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Token => {
                f.write_str("missing or wrong peer token (is --peer-secret-file the same on every member?)")
            }
            Refusal::Malformed => f.write_str("malformed peer identity"),
            Refusal::Cluster(id) => write!(f, "request cluster ID mismatch (got {id:x})"),
            Refusal::NotMember(id) => write!(f, "{id:x} {NOT_A_MEMBER}"),
        }
    }
}

impl tonic::service::Interceptor for PeerGate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.admit(request.metadata()) {
            Ok(sender) => {
                request.extensions_mut().insert(sender);
                Ok(request)
            }
            Err(refusal) => {
                let peer = request.remote_addr();
                self.refusals.note(&refusal, peer);
                Err(Status::unauthenticated(format!("keel: peer refused: {refusal}")))
            }
        }
    }
}

/// Logs refused peers at most once per `REFUSAL_LOG_INTERVAL_SECS`, with a count: a stranger
/// flooding the peer port must not flood the log too.
#[derive(Default)]
struct RefusalLog {
    last_logged_secs: AtomicU64,
    suppressed: AtomicU64,
}

const REFUSAL_LOG_INTERVAL_SECS: u64 = 10;

impl RefusalLog {
    fn note(&self, refusal: &Refusal, peer: Option<std::net::SocketAddr>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_logged_secs.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REFUSAL_LOG_INTERVAL_SECS
            || self.last_logged_secs.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(?peer, suppressed, "refused a peer RPC: {refusal}");
    }
}

/// The authenticated sender of `request`; every peer handler calls this first.
pub fn sender<T>(request: &Request<T>) -> Result<MemberId, Status> {
    claimed_sender(request)?.as_member()
}

/// Who the gate admitted, before the handler decides what it may do.
pub fn claimed_sender<T>(request: &Request<T>) -> Result<PeerSender, Status> {
    request
        .extensions()
        .get::<PeerSender>()
        .copied()
        .ok_or_else(|| Status::unauthenticated("keel: peer refused: no peer identity"))
}

impl PeerSender {
    /// A member this member knows: votes and forwarded requests come only from those.
    pub fn as_member(self) -> Result<MemberId, Status> {
        if !self.known {
            return Err(not_a_member(self.id));
        }
        Ok(self.id)
    }

    /// The sender of a leader's message (AppendEntries, a snapshot, a leadership transfer) at
    /// `term`: a member this member knows, or one leading at a term at least this member's
    /// (`current_term`), which it cannot know yet when it is behind on membership changes (it
    /// was down while members were replaced). Without the second, a lagging member would refuse
    /// the only messages that could bring it up to date. An older term's stranger is a removed
    /// member: refused.
    pub fn as_leader(self, term: u64, current_term: u64) -> Result<MemberId, Status> {
        if !self.known && term < current_term {
            return Err(not_a_member(self.id));
        }
        Ok(self.id)
    }
}

fn not_a_member(id: MemberId) -> Status {
    Status::unauthenticated(format!("keel: peer refused: {}", Refusal::NotMember(id)))
}

/// The peer secret file of a member that made its own.
pub fn data_dir_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATA_DIR_SECRET_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_whole_secret_and_never_show_it() {
        let a = PeerSecret::from_bytes(b"0123456789abcdef");
        let b = PeerSecret::from_bytes(b"0123456789abcdeg");
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 64);
        assert!(!format!("{a:?}").contains("0123"));
    }

    #[test]
    fn secret_files_are_checked_and_generated_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let short = dir.path().join("short");
        std::fs::write(&short, "tiny\n").expect("write");
        let err = PeerSecret::load(&PeerSecretSource::File(short), dir.path()).expect_err("too short");
        assert!(err.contains("at least 16"), "{err}");
        let missing = PeerSecret::load(&PeerSecretSource::File(dir.path().join("nope")), dir.path());
        assert!(missing.expect_err("missing").contains("nope"));

        let first = PeerSecret::load(&PeerSecretSource::DataDir, dir.path()).expect("generated");
        let again = PeerSecret::load(&PeerSecretSource::DataDir, dir.path()).expect("read back");
        assert_eq!(first.token, again.token);
        let mode = std::fs::metadata(data_dir_secret_path(dir.path())).expect("file").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        // The generated file works as --peer-secret-file for a member added later.
        let shared = PeerSecret::load(&PeerSecretSource::File(data_dir_secret_path(dir.path())), dir.path());
        assert_eq!(shared.expect("shared").token, first.token);
    }
}

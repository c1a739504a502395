//! Raft, through openraft. The only module that names openraft types: the type configuration,
//! the RocksDB-backed log store and its durability watermark, the state-machine adapter over
//! the MVCC keyspace, the peer network over tonic and snapshot streaming.
//!
//! Nothing here interprets etcd requests: commands arrive as `Command`s and leave as
//! `CommandResponse`s. The peer port admits current members only (`peer_auth`) and checks
//! what they send before openraft sees it (`peer_checks`).

mod append_stream;
mod codec;
mod forward_stream;
pub mod join;
mod lease_authority;
mod log_store;
mod network;
pub mod peer_auth;
pub mod peer_checks;
mod peer_service;
mod recent_entries;
pub mod snapshot;
mod state_machine;
pub mod watermark;

use serde::{Deserialize, Serialize};

pub use codec::{decode, decode_entry, encode, encode_entry, LOG_ENTRY_VERSION};
pub use forward_stream::{decode_request as decode_forwarded_request, Delivery, ForwardLinks};
pub use lease_authority::{LeaseAuthority, LeaseTime};
pub use log_store::{check_intact, AckPolicy, CheckError, LogDamage, LogStore};
pub use network::{peer_url, NetworkFactory, PeerClient, PeerClients};
pub use peer_auth::{PeerCredentials, PeerGate, PeerSecret};
pub use peer_service::{remove_incoming, ForwardError, ForwardRequest, ForwardResponse, PeerService, Refusal};
pub(crate) use state_machine::forget_cluster;
pub use state_machine::{SharedState, StateMachine};

/// The keys this module stores records under, for the golden-bytes tests (`crate::golden`).
#[cfg(test)]
pub(crate) mod stored {
    pub(crate) use super::log_store::{index_key, COMMITTED_KEY, PURGED_KEY, VOTE_KEY};
    pub(crate) use super::state_machine::{member_key, APPLIED_KEY, INSTALLING_KEY, MEMBERSHIP_KEY, SECRET_KEY_KEY};
}

use crate::command::{Command, CommandResponse};

/// A member's identity as Raft replicates it in the membership config: its name and the URL
/// its peers reach it on. Client URLs are published separately through the state machine,
/// as etcd does, because a member learns its peers' client URLs only once they start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

openraft::declare_raft_types!(
    /// Keel's openraft type configuration: the one place the generic parameters are fixed.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = MemberNode,
);

pub type MemberId = u64;
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
pub type ForwardToLeader = openraft::errors::ForwardToLeader<TypeConfig>;
pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
pub type LinearizableReadError = openraft::errors::LinearizableReadError<TypeConfig>;
pub type RaftError<E = std::convert::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
pub use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};

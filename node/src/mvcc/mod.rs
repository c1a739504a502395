//! MVCC keyspace with etcd v3.4's semantics: a cluster-wide revision that every change
//! increments, per-key create/mod revision, version and lease, ranges at past revisions,
//! transactions and compaction — and the apply-time rules of etcd's `apply.go` on top, so that a
//! response is byte-for-byte what etcd would have answered.
//!
//! Pure and synchronous: it never awaits, reads a clock or touches the network, and knows nothing
//! of Raft or gRPC. Its only I/O is through the storage `Engine`: records in `Table::Kv` keyed by
//! revision, and two `mvcc/`-prefixed keys in `Table::StateMeta`. Applying the same commands in
//! the same order gives the same state and the same responses on every member.
//!
//! # Layout
//!
//! The commands that change this state are in `crate::apply`, one file each; this module is
//! the state they change and the primitives they use (write transactions, `put_key`,
//! `delete_span`, reads at a revision, compaction).
//!
//! - `store`: [`MvccStore`], the replicated state: the keyspace and the sub-stores, open, the
//!   changes to write (`take_changes`), and the narrow interface commands use.
//! - `keyspace`: the etcd keyspace, MVCC only: the staged overlay, the in-memory key index,
//!   write transactions.
//! - `revision`: `(main, sub)` revisions and their engine-key encoding.
//! - `key_index`: one key's generations (etcd's `keyIndex`), including compaction of them.
//! - `range`: etcd's Range (range_end rules, limit, count, sorting, revision filters).
//! - `compaction`: compacting the keyspace's history.
//! - `event`: the changes each write makes, for watchers, and reading them back from history.
//! - Sub-stores, each owning its `Table::StateMeta` prefix and staging its own records:
//!   `lease` (leases and the keys attached to them, `mvcc/lease/`), `events` (topics: offsets,
//!   time, de-duplication ids, `mvcc/topic/` and `mvcc/topic-id/`), `groups` (consumer groups'
//!   positions, `mvcc/group/`), `auth` (etcd's users, roles, auth revision and enabled flag,
//!   `mvcc/auth/`; simple tokens are handed to the member, not stored), `alarms` (etcd's
//!   active alarms, `mvcc/alarm/`).
//! - `retention`: where the leader would trim a topic now.
//! - `hash`: etcd's Hash and HashKV, to compare replicas.
//! - `error`: [`MvccError`] (etcd's rules refuse: a replicated answer) and [`ReadError`]; a
//!   failure of this member's storage is a `StorageError`, which apply never turns into an answer.
//!
//! Tests: `tests` (etcd's rules, table-driven) and `model_tests` (a property test of every
//! command against a naive model, with restarts and snapshot installs in the sequence, on the
//! memory engine and on RocksDB).

mod alarms;
mod auth;
mod compaction;
mod error;
mod event;
pub mod events;
mod groups;
mod hash;
mod key_index;
mod keyspace;
mod lease;
mod micro_auth;
mod range;
mod retention;
mod revision;
mod store;
mod tree;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub(crate) use alarms::ALARMS_MAX;
pub(crate) use auth::OpOutcome as AuthOutcome;
pub use error::{MvccError, ReadError};
pub use event::{Event, EventKind, HistoryPage};
pub use hash::{hash_kv, hash_state, KvHash, StateHash};
pub(crate) use keyspace::{current_revision_record, WriteTxn};
pub use lease::Lease;
pub use range::range_unlocked;
pub(crate) use range::KeySpan;
pub use retention::TRIM_STEP_MAX;
pub use store::MvccStore;
pub(crate) use store::OpError;
pub use tree::{TreeChild, TreePage, TREE_DELIMITER};

/// The records this module stores and their keys, for the golden-bytes tests (`crate::golden`).
#[cfg(test)]
pub(crate) mod stored {
    pub(crate) use super::alarms::record_key as alarm_key;
    pub(crate) use super::auth::{role_key, user_key, AuthMeta, AUTH_META_KEY};
    pub(crate) use super::events::{id_key, topic_key, RememberedId};
    pub(crate) use super::groups::group_key;
    pub(crate) use super::keyspace::{COMPACT_REVISION_KEY, CURRENT_REVISION_KEY};
    pub(crate) use super::lease::{record_key as lease_key, LeaseRecord};
    pub(crate) use super::micro_auth::{account_key, rule_key, MicroMeta, MICRO_META_KEY};
    pub(crate) use super::revision::{RecordKind, Revision};
}

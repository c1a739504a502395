//! Keel's replicated model, shared by the node (`keel-node`) and the client (`keel-client`):
//!
//! - [`command`]: the commands in the Raft log and what applying each answers;
//! - [`error`]: the refusals by etcd's rules, a replicated answer;
//! - [`stored`]: the records the state machine stores;
//! - [`group`]: consumer groups' rules (claim, settle, redelivery, dead letters), applied by the
//!   node's state machine and by the client's in-memory implementation alike;
//! - [`events`]: topics' shared limits and the metadata of dead letters;
//! - [`auth`]: who may do what: micro's rules and etcd's key permissions.
//!
//! No I/O, no async, no clock: time is an argument. These encodings are formats (log entries,
//! snapshots, the data dir): change them only with a format version (see the node's
//! ARCHITECTURE "Formats" and its golden bytes).

pub mod auth;
pub mod command;
pub mod error;
pub mod events;
pub mod group;
mod nesting;
pub mod stored;

//! Watch: every change of the keyspace, delivered to the watchers whose range it touches, in
//! revision order, with no gap and no duplicate.
//!
//! Writers never wait for watchers. Each applied batch of changes is broadcast once through a
//! bounded ring (`Hub`); a watch stream that falls behind the ring, starts in the past, or sees a
//! snapshot replace the keyspace reads the missing revisions back from the keyspace's history
//! instead. A slow client therefore costs only its own stream, never the cluster.
//!
//! Knows the keyspace and tokio, nothing of gRPC or Raft: `api::watch` converts to etcd's
//! messages.
//!
//! # Layout
//!
//! - `hub`: the broadcast of applied batches.
//! - `session`: one client stream: its watchers, catch-up from history, progress notifications.

mod hub;
mod session;

pub use hub::{EventBatch, Hub};
pub use session::{CreateWatch, Session, SessionLimits, WatchInput, WatchOutput, WatchedEvent, INVALID_WATCH_ID};

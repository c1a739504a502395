//! Dynamic configuration in go-micro's mould: one JSON document per namespace, read and written
//! at dotted paths (`app.db.host`), watched for live changes without a restart, with secret
//! leaves that read as `"[secret]"` unless asked for in clear.
//!
//! [`Config`] is the contract; [`GrpcConfig`] talks to a Keel cluster and [`MemoryConfig`]
//! keeps everything in the process for unit tests. Both pass the same [`conformance`] suite.
//! Values come back as a [`Value`] with typed accessors. This module knows nothing of etcd's KV
//! API: the cluster stores one JSON leaf per key.

use async_trait::async_trait;

use crate::error::Result;

#[doc(hidden)]
pub mod conformance;
mod grpc;
mod memory;
mod tree;
mod value;

pub use grpc::GrpcConfig;
pub use memory::{MemoryConfig, HISTORY_REVISIONS_MAX, WATCH_EVENTS_MAX};
pub use tree::{
    check_depth, insert_leaf, nesting, relative, value_leaves, DEFAULT_NAMESPACE, DEPTH_MAX, LEAF_BYTES_MAX,
    LEAVES_PER_SET_MAX, SECRET_MASK, SEGMENT_BYTES_MAX,
};
pub use value::{parse_go_duration, Value};

/// Dynamic configuration. Object-safe: hold it as `Arc<dyn Config>`.
///
/// Every operation is idempotent (setting the same value twice leaves the same document), so
/// implementations may retry them on another cluster member.
#[async_trait]
pub trait Config: Send + Sync {
    /// The value at `path` in the default namespace: a leaf, or the object assembled from the
    /// leaves below it; the empty path is the whole namespace. Secrets read `"[secret]"`.
    /// [`Error::NotFound`](crate::Error::NotFound) when nothing is there.
    async fn get(&self, path: &str) -> Result<Value> {
        self.get_with(path, GetOptions::default()).await
    }

    /// [`Config::get`] in another namespace, with secrets in clear, or as of a past revision.
    async fn get_with(&self, path: &str, options: GetOptions) -> Result<Value>;

    /// Sets `path` to `value`. An object merges leaf by leaf into what is there (an empty
    /// object changes nothing); any other value replaces what is at `path`, subtree included.
    /// The namespace root (the empty path) only takes an object. Returns the revision of the
    /// change.
    async fn set(&self, path: &str, value: serde_json::Value, options: SetOptions) -> Result<i64>;

    /// Removes `path` and everything below it (nothing there is not an error). Returns the
    /// cluster's revision after it.
    async fn delete(&self, path: &str, options: DeleteOptions) -> Result<i64>;

    /// The value at `path` now, then after every change at or below it.
    async fn watch(&self, path: &str, options: WatchOptions) -> Result<Box<dyn ConfigWatcher>>;
}

/// The values at one path, as they change.
#[async_trait]
pub trait ConfigWatcher: Send {
    /// The first call: the value when the watch started. Then the value after each change at
    /// or below the path, in order; a value that does not [`Value::exists`] after a delete.
    /// Waits for a change. After [`Error::WatchStopped`](crate::Error::WatchStopped) the
    /// watcher is done.
    async fn next(&mut self) -> Result<Value>;

    /// Stops watching: the next call to `next` returns `WatchStopped`.
    fn stop(&mut self);
}

/// Options of [`Config::get_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Empty: [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Show secret leaves in clear rather than as `"[secret]"`.
    pub secrets: bool,
    /// The value as of this revision (see [`Value::revision`]); `None`: now.
    pub revision: Option<i64>,
}

/// Options of [`Config::set`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Empty: [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Store every leaf of the value as a secret: encrypted by the cluster, read as
    /// `"[secret]"` unless asked for in clear.
    pub secret: bool,
}

/// Options of [`Config::delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Empty: [`DEFAULT_NAMESPACE`].
    pub namespace: String,
}

/// Options of [`Config::watch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Empty: [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Show secret leaves in clear rather than as `"[secret]"`.
    pub secrets: bool,
}

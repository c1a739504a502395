//! Dynamic configuration as a typed view over the keyspace: one JSON document per namespace,
//! stored as one JSON leaf per key under `/micro/config/<namespace>/<a>/<b>/...`, the tree
//! go-micro's etcd config source reads. Paths are dotted (`app.db.host`).
//!
//! Pure: paths, the keys a Set writes and deletes, assembling a document from leaves, and
//! secrets. The API layer proposes and reads.

pub mod secret;

use serde_json::Value;

use crate::command::{DeleteRangeRequest, KeyValue, PutRequest, RequestOp};

pub const PREFIX: &str = "/micro/config/";
pub const DEFAULT_NAMESPACE: &str = keel_client::config::DEFAULT_NAMESPACE;

/// Leaves one Set may write: an object larger than this is more likely a mistake than
/// configuration, and every leaf is one key of one atomic command.
pub const LEAVES_PER_SET_MAX: usize = keel_client::config::LEAVES_PER_SET_MAX;

/// A path segment or namespace longer than this is refused: they are key segments that
/// watchers match against.
pub const SEGMENT_BYTES_MAX: usize = keel_client::config::SEGMENT_BYTES_MAX;

/// One leaf's JSON may be at most this large: configuration, not data (use the Store).
pub const LEAF_BYTES_MAX: usize = keel_client::config::LEAF_BYTES_MAX;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config: path {0:?} has an empty segment (use dotted paths like app.db.host)")]
    EmptySegment(String),
    #[error("config: {what} {name:?} must not contain '/'")]
    Slash { what: &'static str, name: String },
    #[error("config: a path segment or namespace is longer than {SEGMENT_BYTES_MAX} bytes")]
    SegmentTooLong,
    #[error("config: the value is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("config: the value has more than {LEAVES_PER_SET_MAX} leaves")]
    TooManyLeaves,
    #[error("config: a leaf is larger than {LEAF_BYTES_MAX} bytes")]
    LeafTooLarge,
    #[error("config: the namespace root can only be set to an object")]
    RootNotObject,
    #[error("config: nothing at {0:?}")]
    NotFound(String),
    #[error("config: the cluster's secret key is not available yet; retry")]
    SecretUnavailable,
    #[error("config: a stored secret cannot be decrypted")]
    CorruptSecret,
}

/// A namespace and the segments of a dotted path in it (empty = the whole namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPath {
    pub namespace: String,
    pub segments: Vec<String>,
}

impl ConfigPath {
    pub fn parse(namespace: &str, path: &str) -> Result<ConfigPath, ConfigError> {
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        check_segment("namespace", namespace)?;
        let segments: Vec<String> =
            if path.is_empty() { Vec::new() } else { path.split('.').map(str::to_string).collect() };
        for segment in &segments {
            if segment.is_empty() {
                return Err(ConfigError::EmptySegment(path.to_string()));
            }
            check_segment("path segment", segment)?;
        }
        Ok(ConfigPath { namespace: namespace.to_string(), segments })
    }

    /// The key of the leaf at this path (for the namespace root: the namespace's prefix
    /// without its trailing '/').
    pub fn key(&self) -> Vec<u8> {
        let mut key = format!("{PREFIX}{}", self.namespace);
        for segment in &self.segments {
            key.push('/');
            key.push_str(segment);
        }
        key.into_bytes()
    }

    /// The prefix of every leaf below this path.
    pub fn children_prefix(&self) -> Vec<u8> {
        let mut prefix = self.key();
        prefix.push(b'/');
        prefix
    }

    fn child(&self, segment: &str) -> ConfigPath {
        let mut segments = self.segments.clone();
        segments.push(segment.to_string());
        ConfigPath { namespace: self.namespace.clone(), segments }
    }

    /// The segments of `key` below this path, if it is this path's leaf or below it.
    pub fn relative<'k>(&self, key: &'k [u8]) -> Option<Vec<&'k str>> {
        let own = self.key();
        let rest = key.strip_prefix(own.as_slice())?;
        let rest = std::str::from_utf8(rest).ok()?;
        if rest.is_empty() {
            return Some(Vec::new());
        }
        Some(rest.strip_prefix('/')?.split('/').collect())
    }
}

fn check_segment(what: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.contains('/') {
        return Err(ConfigError::Slash { what, name: name.to_string() });
    }
    if name.len() > SEGMENT_BYTES_MAX {
        return Err(ConfigError::SegmentTooLong);
    }
    Ok(())
}

/// Parses a Set's JSON text.
pub fn parse_value(text: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(text).map_err(|e| ConfigError::InvalidJson(e.to_string()))
}

/// The leaves of `value` placed at `path`: objects recurse (an empty object writes nothing),
/// everything else is a leaf.
pub fn leaves(path: &ConfigPath, value: &Value) -> Result<Vec<(ConfigPath, Value)>, ConfigError> {
    let mut out = Vec::new();
    collect_leaves(path, value, &mut out)?;
    Ok(out)
}

fn collect_leaves(path: &ConfigPath, value: &Value, out: &mut Vec<(ConfigPath, Value)>) -> Result<(), ConfigError> {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                if name.is_empty() {
                    return Err(ConfigError::EmptySegment(name.clone()));
                }
                check_segment("object key", name)?;
                collect_leaves(&path.child(name), child, out)?;
            }
        }
        leaf => {
            if out.len() >= LEAVES_PER_SET_MAX {
                return Err(ConfigError::TooManyLeaves);
            }
            if leaf.to_string().len() > LEAF_BYTES_MAX {
                return Err(ConfigError::LeafTooLarge);
            }
            out.push((path.clone(), leaf.clone()));
        }
    }
    Ok(())
}

/// The ops of one Set: for each leaf, the leaves on its ancestors (they become objects) and
/// everything below it (it becomes a leaf) are deleted, then the leaf is put. A non-object
/// value also replaces whatever was below `path`.
pub fn set_ops(path: &ConfigPath, leaves: &[(ConfigPath, Value)], replace_subtree: bool) -> Vec<RequestOp> {
    let mut ops = Vec::new();
    let mut deleted_ancestors = std::collections::BTreeSet::new();
    if replace_subtree {
        ops.push(delete_prefix(path.children_prefix()));
    }
    for (leaf_path, value) in leaves {
        for depth in 0..leaf_path.segments.len() {
            let ancestor =
                ConfigPath { namespace: leaf_path.namespace.clone(), segments: leaf_path.segments[..depth].to_vec() };
            if !ancestor.segments.is_empty() && deleted_ancestors.insert(ancestor.key()) {
                ops.push(RequestOp::DeleteRange(DeleteRangeRequest { key: ancestor.key(), ..Default::default() }));
            }
        }
        if !replace_subtree || leaf_path != path {
            ops.push(delete_prefix(leaf_path.children_prefix()));
        }
        let put = PutRequest { key: leaf_path.key(), value: value.to_string().into_bytes(), ..Default::default() };
        ops.push(RequestOp::Put(put));
    }
    ops
}

/// Deleting `path`: its leaf and everything below it.
pub fn delete_ops(path: &ConfigPath) -> Vec<RequestOp> {
    let mut ops = vec![delete_prefix(path.children_prefix())];
    if !path.segments.is_empty() {
        ops.push(RequestOp::DeleteRange(DeleteRangeRequest { key: path.key(), ..Default::default() }));
    }
    ops
}

fn delete_prefix(prefix: Vec<u8>) -> RequestOp {
    let range_end = crate::registry::prefix_end(&prefix);
    RequestOp::DeleteRange(DeleteRangeRequest { key: prefix, range_end, prev_kv: false })
}

/// How secret leaves read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets<'k> {
    Masked,
    Revealed(&'k crate::command::SecretKey),
}

/// The document at `path` assembled from the key-values at or below it (`None` when there
/// are none). A leaf at `path` itself with nothing below is returned as it is.
pub fn assemble(path: &ConfigPath, kvs: &[KeyValue], secrets: Secrets<'_>) -> Result<Option<Value>, ConfigError> {
    let mut root: Option<Value> = None;
    for kv in kvs {
        let Some(relative) = path.relative(&kv.key) else { continue };
        let Ok(mut leaf) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        if secret::is_sealed(&leaf) {
            leaf = match secrets {
                Secrets::Masked => Value::String(secret::MASK.to_string()),
                Secrets::Revealed(key) => secret::open(key, &leaf)?,
            };
        }
        keel_client::config::insert_leaf(&mut root, &relative, leaf);
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> ConfigPath {
        ConfigPath::parse("", p).expect("valid path")
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue { key: key.into(), value: value.into(), ..KeyValue::default() }
    }

    #[test]
    fn paths_map_to_keys_and_refuse_empty_segments() {
        assert_eq!(path("app.db.host").key(), b"/micro/config/micro/app/db/host".to_vec());
        assert_eq!(path("").key(), b"/micro/config/micro".to_vec());
        for bad in ["a..b", ".a", "a.", "."] {
            assert!(matches!(ConfigPath::parse("", bad), Err(ConfigError::EmptySegment(_))), "{bad}");
        }
        assert!(matches!(ConfigPath::parse("ns/x", "a"), Err(ConfigError::Slash { .. })));
    }

    #[test]
    fn documents_assemble_from_leaves_at_and_below_the_path() {
        let kvs = [kv("/micro/config/micro/app/db/host", "\"db1\""), kv("/micro/config/micro/app/db/port", "5432")];
        assert_eq!(assemble(&path("app.db"), &kvs, Secrets::Masked), Ok(Some(json!({"host": "db1", "port": 5432}))));
        assert_eq!(
            assemble(&path("app"), &kvs, Secrets::Masked),
            Ok(Some(json!({"db": {"host": "db1", "port": 5432}})))
        );
        assert_eq!(assemble(&path("app.db.host"), &kvs[..1], Secrets::Masked), Ok(Some(json!("db1"))));
        assert_eq!(assemble(&path("other"), &kvs, Secrets::Masked), Ok(None));
    }

    #[test]
    fn an_object_set_merges_and_a_leaf_set_replaces() {
        let leaves = leaves(&path("app.db"), &json!({"port": 5432})).expect("leaves");
        let ops = set_ops(&path("app.db"), &leaves, false);
        let puts: Vec<&[u8]> = ops
            .iter()
            .filter_map(|op| match op {
                RequestOp::Put(p) => Some(p.key.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(puts, vec![b"/micro/config/micro/app/db/port".as_slice()]);
        // The leaves on the ancestors app and app.db are deleted, not the sibling app.db.host.
        assert!(ops.iter().any(|op| matches!(op, RequestOp::DeleteRange(d) if d.key == b"/micro/config/micro/app/db" && d.range_end.is_empty())));
        let replace = set_ops(&path("app.db"), &[(path("app.db"), json!("x"))], true);
        assert!(matches!(&replace[0], RequestOp::DeleteRange(d) if d.key == b"/micro/config/micro/app/db/"));
    }

    #[test]
    fn secrets_are_masked_unless_revealed() {
        let key = secret::new_key();
        let sealed = secret::seal(&key, &json!("pw")).expect("seal").to_string();
        let kvs = [kv("/micro/config/micro/db/password", &sealed)];
        assert_eq!(assemble(&path("db"), &kvs, Secrets::Masked), Ok(Some(json!({"password": "[secret]"}))));
        assert_eq!(assemble(&path("db"), &kvs, Secrets::Revealed(&key)), Ok(Some(json!({"password": "pw"}))));
    }
}

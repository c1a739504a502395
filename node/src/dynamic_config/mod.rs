//! Dynamic configuration as a typed view over the keyspace: one JSON document per namespace,
//! stored as one JSON leaf per key under `/micro/config/<namespace>/<a>/<b>/...`, the tree
//! go-micro's etcd config source reads. Paths are dotted (`app.db.host`).
//!
//! Pure: paths, the keys a Set writes and deletes, assembling a document from leaves, and
//! secrets. The API layer proposes and reads.

pub mod secret;

use keel_client::names::{self, NameError};
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

/// The deepest a document nests, path segments included (see `keel_client::config::DEPTH_MAX`):
/// a Set deeper is refused, and a leaf deeper (only the etcd API can write one) is left out of
/// every document.
pub const DEPTH_MAX: usize = keel_client::config::DEPTH_MAX;

/// The longest value text a Set parses: etcd's request limit, checked before anything is
/// parsed or expanded into leaves.
pub const VALUE_TEXT_BYTES_MAX: usize = crate::limits::REQUEST_BYTES_MAX;

/// One leaf's JSON may be at most this large: configuration, not data (use the Store).
pub const LEAF_BYTES_MAX: usize = keel_client::config::LEAF_BYTES_MAX;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config: path {0:?} has an empty segment (use dotted paths like app.db.host)")]
    EmptySegment(String),
    /// A namespace, path segment or object key that breaks the one rule of `keel_client::names`.
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("config: a path has more than {DEPTH_MAX} segments")]
    TooManySegments,
    #[error("config: the value is larger than {VALUE_TEXT_BYTES_MAX} bytes")]
    ValueTooLarge,
    #[error("config: the value is not valid JSON: {0}")]
    InvalidJson(String),
    /// A value that breaks the tree's rules (`keel_client::config::value_leaves`: too many or
    /// too large leaves, too deep, a bad object key), in its words.
    #[error("{0}")]
    BadValue(String),
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
        names::CONFIG_NAMESPACE.check(namespace)?;
        if path.is_empty() {
            return Ok(ConfigPath { namespace: namespace.to_string(), segments: Vec::new() });
        }
        // Counted before anything is split or copied: a 20,000-segment path costs one scan.
        if path.bytes().filter(|byte| *byte == b'.').count() >= DEPTH_MAX {
            return Err(ConfigError::TooManySegments);
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        for segment in &segments {
            if segment.is_empty() {
                return Err(ConfigError::EmptySegment(path.to_string()));
            }
            names::CONFIG_SEGMENT.check(segment)?;
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

    /// The segments of `key` below this path, if it is this path's leaf or below it, and at
    /// most [`DEPTH_MAX`] segments below it (see `keel_client::config::relative`).
    pub fn relative<'k>(&self, key: &'k [u8]) -> Option<Vec<&'k str>> {
        let own = self.key();
        let rest = key.strip_prefix(own.as_slice())?;
        let rest = std::str::from_utf8(rest).ok()?;
        keel_client::config::relative("", rest)
    }
}

/// Parses a Set's JSON text, after checking its size (serde_json bounds the nesting at 128).
pub fn parse_value(text: &str) -> Result<Value, ConfigError> {
    if text.len() > VALUE_TEXT_BYTES_MAX {
        return Err(ConfigError::ValueTooLarge);
    }
    serde_json::from_str(text).map_err(|e| ConfigError::InvalidJson(e.to_string()))
}

/// The leaves of `value` placed at `path`, with the client's rules (one walker, iterative,
/// every bound checked before a leaf is copied): objects are walked (an empty object writes
/// nothing), everything else is a leaf.
pub fn leaves(path: &ConfigPath, value: &Value) -> Result<Vec<(ConfigPath, Value)>, ConfigError> {
    let leaves = keel_client::config::value_leaves(path.segments.len(), value).map_err(|error| match error {
        keel_client::Error::InvalidArgument(message) => ConfigError::BadValue(message),
        other => ConfigError::BadValue(other.to_string()),
    })?;
    Ok(leaves
        .into_iter()
        .map(|(segments, leaf)| {
            let mut leaf_path = path.clone();
            leaf_path.segments.extend(segments.into_iter().map(str::to_string));
            (leaf_path, leaf.clone())
        })
        .collect())
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
    let range_end = crate::keys::prefix_range_end(&prefix);
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
///
/// Keys written through the etcd API may have any shape: a leaf whose value is not JSON, or
/// that nests deeper than [`DEPTH_MAX`] (its key's segments included), is left out of the
/// document (counted in a warning), never an error: one such key must not make a whole
/// namespace unreadable, and nothing here recurses deeper than `DEPTH_MAX`.
pub fn assemble(path: &ConfigPath, kvs: &[KeyValue], secrets: Secrets<'_>) -> Result<Option<Value>, ConfigError> {
    let mut root: Option<Value> = None;
    let children = path.children_prefix();
    let mut left_out = 0_usize;
    for kv in kvs {
        let Some(relative) = path.relative(&kv.key) else {
            left_out += usize::from(kv.key.starts_with(&children));
            continue;
        };
        let depth = path.segments.len().saturating_add(relative.len());
        let Ok(mut leaf) = serde_json::from_slice::<Value>(&kv.value) else {
            left_out += 1;
            continue;
        };
        if keel_client::config::check_depth(depth, &leaf).is_err() {
            left_out += 1;
            continue;
        }
        if secret::is_sealed(&leaf) {
            leaf = match secrets {
                Secrets::Masked => Value::String(secret::MASK.to_string()),
                Secrets::Revealed(key) => secret::open(key, &leaf)?,
            };
        }
        keel_client::config::insert_leaf(&mut root, &relative, leaf);
    }
    if left_out > 0 {
        tracing::warn!(
            namespace = %path.namespace,
            left_out,
            "config: leaves that are not JSON or nest deeper than {DEPTH_MAX} levels were left out of a document"
        );
    }
    Ok(root)
}

/// Fuzz entry point for the leaves the etcd API can write under `/micro/config/`: `data` is
/// read as (key, value) pairs separated by 0xff bytes, assembled into documents at the root
/// and at a path, which are then serialised. Must never panic, overflow the stack or grow
/// without bound, whatever the keys' depth and the values' JSON.
#[doc(hidden)]
pub fn fuzz_assemble(data: &[u8]) {
    let mut parts = data.split(|byte| *byte == 0xff);
    let mut kvs = Vec::new();
    while let (Some(key), Some(value)) = (parts.next(), parts.next()) {
        let mut full = format!("{PREFIX}{DEFAULT_NAMESPACE}").into_bytes();
        full.extend_from_slice(key);
        kvs.push(KeyValue { key: full, value: value.to_vec(), ..KeyValue::default() });
    }
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    for path in ["", "a", "a.b"] {
        let Ok(path) = ConfigPath::parse("", path) else { continue };
        if let Ok(Some(document)) = assemble(&path, &kvs, Secrets::Masked) {
            let _ = document.to_string();
        }
    }
}

/// Fuzz entry point for a native Set: `data` is split at its first two NUL bytes into
/// namespace, dotted path and JSON value text, checked and expanded into the ops of one Set
/// as the Config service does. Must never panic, and its work must stay linear in the input.
#[doc(hidden)]
pub fn fuzz_set(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let (namespace, path, value) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Ok(path) = ConfigPath::parse(namespace, path) else { return };
    let Ok(value) = parse_value(value) else { return };
    let Ok(leaves) = leaves(&path, &value) else { return };
    let _ = set_ops(&path, &leaves, !value.is_object());
    let _ = delete_ops(&path);
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
        assert!(matches!(ConfigPath::parse("ns/x", "a"), Err(ConfigError::Name(_))));
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
    fn paths_are_bounded_before_they_are_split() {
        let deepest = vec!["a"; DEPTH_MAX].join(".");
        assert_eq!(ConfigPath::parse("", &deepest).map(|p| p.segments.len()), Ok(DEPTH_MAX));
        let deeper = format!("{deepest}.a");
        assert_eq!(ConfigPath::parse("", &deeper), Err(ConfigError::TooManySegments));
        // The probe's 20,000 segments: refused at once, whatever they hold.
        assert_eq!(ConfigPath::parse("", &vec!["x"; 20_000].join(".")), Err(ConfigError::TooManySegments));
        for bad in ["a\0b", "a/b", "a\u{1b}b"] {
            assert!(matches!(ConfigPath::parse("", bad), Err(ConfigError::Name(_))), "{bad:?}");
            assert!(matches!(ConfigPath::parse(bad, "a"), Err(ConfigError::Name(_))), "namespace {bad:?}");
        }
        assert!(ConfigPath::parse("go.micro.config", "app.db").is_ok(), "dotted namespaces are fine");
    }

    #[test]
    fn a_set_counts_path_and_value_nesting_together() {
        let nest = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!({ "k": inner }));
        assert_eq!(leaves(&path("a.b"), &nest(DEPTH_MAX - 2)).map(|l| l.len()), Ok(1));
        assert!(matches!(leaves(&path("a.b"), &nest(DEPTH_MAX - 1)), Err(ConfigError::BadValue(_))));
        let arrays = (0..DEPTH_MAX).fold(json!(1), |inner, _| json!([inner]));
        assert!(matches!(leaves(&path("a"), &arrays), Err(ConfigError::BadValue(_))), "arrays nest too");
        assert!(matches!(leaves(&path("a"), &json!({"x\u{0}y": 1})), Err(ConfigError::BadValue(_))));
        assert_eq!(leaves(&path("svc"), &json!({"go.micro.srv.greeter": 1})).map(|l| l.len()), Ok(1));
        let text = format!("\"{}\"", "x".repeat(VALUE_TEXT_BYTES_MAX));
        assert_eq!(parse_value(&text), Err(ConfigError::ValueTooLarge));
    }

    #[test]
    fn etcd_written_keys_of_any_depth_never_reach_a_document() {
        // 10,000 segments: what overflowed the stack of every Get and watcher of the namespace.
        let deep_key = format!("/micro/config/micro/{}", vec!["s"; 10_000].join("/"));
        let deep_value = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let kvs = [
            kv("/micro/config/micro/app/name", "\"shop\""),
            kv(&deep_key, "1"),
            kv("/micro/config/micro/app/deep", &deep_value),
            kv(&format!("/micro/config/micro/{}", vec!["s"; DEPTH_MAX].join("/")), "2"),
        ];
        let mut sorted = kvs.to_vec();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let document = assemble(&path(""), &sorted, Secrets::Masked).expect("assembles").expect("a document");
        assert_eq!(document["app"], json!({"name": "shop"}), "too deep leaves are left out");
        let text = document.to_string();
        let reparsed: Value = serde_json::from_str(&text).expect("any client can parse it");
        assert_eq!(keel_client::config::nesting(&reparsed, DEPTH_MAX), Some(DEPTH_MAX), "the deepest allowed is kept");
        assert_eq!(assemble(&path("s.s"), &sorted, Secrets::Masked).map(|d| d.is_some()), Ok(true));
    }

    #[test]
    fn secrets_are_masked_unless_revealed() {
        let key = secret::new_key();
        let sealed = secret::seal(&key, &json!("pw")).expect("seal").to_string();
        let kvs = [kv("/micro/config/micro/db/password", &sealed)];
        assert_eq!(assemble(&path("db"), &kvs, Secrets::Masked), Ok(Some(json!({"password": "[secret]"}))));
        assert_eq!(assemble(&path("db"), &kvs, Secrets::Revealed(&key)), Ok(Some(json!({"password": "pw"}))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn fuzz_assemble_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            fuzz_assemble(&data);
        }

        #[test]
        fn fuzz_assemble_survives_mutated_samples(
            depth in 0..200_usize,
            nesting in 0..130_usize,
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..8),
        ) {
            let mut data = format!("/{}", vec!["s"; depth].join("/")).into_bytes();
            data.push(0xff);
            data.extend(format!("{}1{}", "[".repeat(nesting), "]".repeat(nesting)).into_bytes());
            data.extend_from_slice(b"\xff/app/db\xff{\"host\":\"db1\"}");
            for (at, byte) in flips {
                let at = at % data.len();
                data[at] = byte;
            }
            fuzz_assemble(&data);
        }

        #[test]
        fn fuzz_set_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            fuzz_set(&data);
        }

        #[test]
        fn fuzz_set_survives_mutated_samples(
            segments in 0..100_usize,
            nesting in 0..130_usize,
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..8),
        ) {
            let mut data = format!("ns\0{}\0", vec!["a"; segments].join(".")).into_bytes();
            data.extend(format!("{}{{\"k\":[1,\"v\"]}}{}", "{\"o\":".repeat(nesting), "}".repeat(nesting)).into_bytes());
            for (at, byte) in flips {
                let at = at % data.len();
                data[at] = byte;
            }
            fuzz_set(&data);
        }
    }
}

//! The cluster's configuration rules, for [`super::MemoryConfig`]: paths and their checks (with
//! the cluster's words), the leaves a Set writes and the keys it deletes, and the document
//! assembled from leaves. Pure: no clock, no I/O, no locking.
//!
//! Keys are the cluster's without its `/micro/config/` prefix: `<namespace>/<a>/<b>`, compared
//! as bytes, so documents assemble in the same order as on the cluster.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::names;

/// The namespace an empty name stands for, as in micro.
pub const DEFAULT_NAMESPACE: &str = "micro";
/// Leaves one Set may write: more is more likely a mistake than configuration, and every leaf
/// is one key of one atomic command.
pub const LEAVES_PER_SET_MAX: usize = 1000;
/// The longest path segment or namespace: they are key segments watchers match against (the
/// one rule of [`crate::names`]).
pub const SEGMENT_BYTES_MAX: usize = crate::names::NAME_BYTES_MAX;
/// The deepest a document nests: the segments of a leaf's path plus the nesting of the value
/// set there (each array or object one level). Configuration is a few levels deep; the bound
/// keeps a Set's work linear (each leaf rewrites its ancestors), and every document far under
/// serde_json's recursion limit of 128, so any client can parse what it reads and nothing
/// recurses deep on the cluster.
pub const DEPTH_MAX: usize = 64;
/// The largest leaf's JSON: configuration, not data (use the Store for data).
pub const LEAF_BYTES_MAX: usize = 64 * 1024;
/// What a secret leaf reads as unless asked for in clear.
pub const SECRET_MASK: &str = "[secret]";

/// One stored leaf.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Leaf {
    pub(crate) json: Value,
    pub(crate) secret: bool,
}

/// Every leaf, by key.
pub(crate) type Leaves = BTreeMap<String, Leaf>;

/// A namespace and the segments of a dotted path in it (none: the whole namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    namespace: String,
    segments: Vec<String>,
}

impl Path {
    pub(crate) fn parse(namespace: &str, path: &str) -> Result<Path> {
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        names::CONFIG_NAMESPACE.check(namespace)?;
        if path.is_empty() {
            return Ok(Path { namespace: namespace.to_string(), segments: Vec::new() });
        }
        // Counted before anything is split or copied.
        if segment_count(path) > DEPTH_MAX {
            return Err(invalid(format!("config: a path has more than {DEPTH_MAX} segments")));
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        for segment in &segments {
            if segment.is_empty() {
                return Err(invalid(format!(
                    "config: path {path:?} has an empty segment (use dotted paths like app.db.host)"
                )));
            }
            names::CONFIG_SEGMENT.check(segment)?;
        }
        Ok(Path { namespace: namespace.to_string(), segments })
    }

    pub(crate) fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The key of the leaf at this path (for the root, the namespace's name).
    pub(crate) fn key(&self) -> String {
        let mut key = self.namespace.clone();
        for segment in &self.segments {
            key.push('/');
            key.push_str(segment);
        }
        key
    }

    fn children_prefix(&self) -> String {
        format!("{}/", self.key())
    }

    /// The segments of `key` below this path, if it is this path's leaf or below it.
    pub(crate) fn relative<'k>(&self, key: &'k str) -> Option<Vec<&'k str>> {
        relative(&self.key(), key)
    }

    /// How deep below the namespace this path is.
    pub(crate) fn depth(&self) -> usize {
        self.segments.len()
    }
}

/// The segments of `key` below the key `own` (a path's), if it is that leaf or below it and
/// at most [`DEPTH_MAX`] segments below it: a deeper key (only the etcd API can write one) is
/// never part of a document, and no more of it than that is split.
pub fn relative<'k>(own: &str, key: &'k str) -> Option<Vec<&'k str>> {
    let rest = key.strip_prefix(own)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let segments: Vec<&str> = rest.strip_prefix('/')?.splitn(DEPTH_MAX + 1, '/').collect();
    // The last of DEPTH_MAX + 1 pieces holds every segment past DEPTH_MAX.
    (segments.len() <= DEPTH_MAX).then_some(segments)
}

/// The segments of a dotted path, counted without splitting it.
fn segment_count(path: &str) -> usize {
    path.bytes().filter(|byte| *byte == b'.').count().saturating_add(1)
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// What one change did: the previous leaf of every key it changed (to undo it), and every key
/// it wrote or deleted (what watchers match).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) undo: Vec<(String, Option<Leaf>)>,
    pub(crate) touched: Vec<String>,
}

impl Changes {
    fn put(&mut self, leaves: &mut Leaves, key: String, leaf: Leaf) {
        let previous = leaves.insert(key.clone(), leaf);
        self.undo.push((key.clone(), previous));
        // A put is a change even when the value is the same, as on the cluster.
        self.touched.push(key);
    }

    fn delete(&mut self, leaves: &mut Leaves, key: &str) {
        if let Some(previous) = leaves.remove(key) {
            self.undo.push((key.to_string(), Some(previous)));
            self.touched.push(key.to_string());
        }
    }

    fn delete_prefix(&mut self, leaves: &mut Leaves, prefix: &str) {
        let keys: Vec<String> = leaves
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.delete(leaves, &key);
        }
    }
}

/// Sets `path` to `value` in `leaves` as the cluster does: an object merges leaf by leaf (each
/// leaf turns the leaves on its ancestors into objects and replaces what was below it), any
/// other value replaces the whole subtree at `path`.
pub(crate) fn set(leaves: &mut Leaves, path: &Path, value: &Value, secret: bool) -> Result<Changes> {
    let replace = !value.is_object();
    if replace && path.is_root() {
        return Err(invalid("config: the namespace root can only be set to an object".into()));
    }
    let mut new_leaves = Vec::new();
    collect_leaves(path, value, &mut new_leaves)?;
    let mut changes = Changes::default();
    if replace {
        changes.delete_prefix(leaves, &path.children_prefix());
    }
    for (leaf_path, json) in new_leaves {
        for depth in 1..leaf_path.segments.len() {
            let ancestor =
                Path { namespace: leaf_path.namespace.clone(), segments: leaf_path.segments[..depth].to_vec() };
            changes.delete(leaves, &ancestor.key());
        }
        changes.delete_prefix(leaves, &leaf_path.children_prefix());
        changes.put(leaves, leaf_path.key(), Leaf { json, secret });
    }
    Ok(changes)
}

/// Removes `path` and everything below it.
pub(crate) fn delete(leaves: &mut Leaves, path: &Path) -> Changes {
    let mut changes = Changes::default();
    changes.delete_prefix(leaves, &path.children_prefix());
    if !path.is_root() {
        changes.delete(leaves, &path.key());
    }
    changes
}

fn collect_leaves(path: &Path, value: &Value, out: &mut Vec<(Path, Value)>) -> Result<()> {
    for (segments, leaf) in value_leaves(path.depth(), value)? {
        let mut leaf_path = path.clone();
        leaf_path.segments.extend(segments.into_iter().map(str::to_string));
        out.push((leaf_path, leaf.clone()));
    }
    Ok(())
}

/// The leaves of `value` when it is set at a path `depth` segments below its namespace: each
/// leaf's segments below that path, in document order. Objects are walked (an empty object has
/// no leaf), everything else is a leaf. Iterative, and every bound (object keys, leaf count,
/// leaf size, [`DEPTH_MAX`]) is checked before anything is copied, so neither a deep nor a
/// wide value costs more than its own size. The cluster uses it too.
pub fn value_leaves(depth: usize, value: &Value) -> Result<Vec<(Vec<&str>, &Value)>> {
    let mut leaves = Vec::new();
    // Children are pushed last-first, so they come off in the map's order.
    let mut stack: Vec<(Vec<&str>, &Value)> = vec![(Vec::new(), value)];
    while let Some((segments, value)) = stack.pop() {
        let leaf_depth = depth.saturating_add(segments.len());
        let Value::Object(map) = value else {
            if leaves.len() >= LEAVES_PER_SET_MAX {
                return Err(invalid(format!("config: the value has more than {LEAVES_PER_SET_MAX} leaves")));
            }
            check_depth(leaf_depth, value)?;
            if serialised_len(value) > LEAF_BYTES_MAX {
                return Err(invalid(format!("config: a leaf is larger than {LEAF_BYTES_MAX} bytes")));
            }
            leaves.push((segments, value));
            continue;
        };
        if !map.is_empty() && leaf_depth >= DEPTH_MAX {
            return Err(too_deep());
        }
        for (name, child) in map.iter().rev() {
            if name.is_empty() {
                return Err(invalid(format!(
                    "config: path {name:?} has an empty segment (use dotted paths like app.db.host)"
                )));
            }
            names::CONFIG_OBJECT_KEY.check(name)?;
            let mut child_segments = segments.clone();
            child_segments.push(name.as_str());
            stack.push((child_segments, child));
        }
    }
    Ok(leaves)
}

/// `Ok` when a leaf `value` at `depth` segments below its namespace stays within [`DEPTH_MAX`].
pub fn check_depth(depth: usize, value: &Value) -> Result<()> {
    match nesting(value, DEPTH_MAX.saturating_sub(depth)) {
        Some(_) => Ok(()),
        None => Err(too_deep()),
    }
}

fn too_deep() -> Error {
    invalid(format!("config: the value nests more than {DEPTH_MAX} levels deep (path segments included)"))
}

/// How many levels of arrays and objects `value` nests (0 for a scalar), if at most `max`.
/// Iterative, and it stops at the first level past `max`.
pub fn nesting(value: &Value, max: usize) -> Option<usize> {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > max {
            return None;
        }
        deepest = deepest.max(depth);
        stack.extend(children.into_iter().map(|child| (child, depth)));
    }
    Some(deepest)
}

/// The length of `value`'s JSON text, without building the text.
fn serialised_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The leaves at or below `path`, in key order.
pub(crate) fn subtree(leaves: &Leaves, path: &Path) -> Leaves {
    let own = path.key();
    leaves
        .range(own.clone()..)
        .take_while(|(key, _)| key.starts_with(&own))
        .filter(|(key, _)| path.relative(key).is_some())
        .map(|(key, leaf)| (key.clone(), leaf.clone()))
        .collect()
}

/// The document at `path` assembled from `leaves` (its subtree), secrets masked unless
/// `secrets`; `None` when there is no leaf.
pub(crate) fn assemble(path: &Path, leaves: &Leaves, secrets: bool) -> Option<Value> {
    let mut root = None;
    for (key, leaf) in leaves {
        let Some(relative) = path.relative(key) else { continue };
        if check_depth(path.depth().saturating_add(relative.len()), &leaf.json).is_err() {
            continue;
        }
        let json = if leaf.secret && !secrets { Value::String(SECRET_MASK.into()) } else { leaf.json.clone() };
        insert_leaf(&mut root, &relative, json);
    }
    root
}

/// Places `leaf` at `segments` below `root`, turning leaves on the way into objects; a place
/// already taken keeps what it has. How a configuration document is assembled from its leaves,
/// here and on the server. Iterative: no key is deep enough to exhaust the stack.
pub fn insert_leaf(root: &mut Option<Value>, segments: &[&str], leaf: Value) {
    let Some((last, parents)) = segments.split_last() else {
        if root.is_none() {
            *root = Some(leaf);
        }
        return;
    };
    let mut node = root.get_or_insert_with(|| Value::Object(Map::new()));
    for segment in parents {
        let Some(map) = object(node) else { return };
        node = map.entry(segment.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = object(node) {
        map.entry(last.to_string()).or_insert(leaf);
    }
}

/// `node`'s map, after turning it into an empty object if it was anything else (so always
/// `Some`).
fn object(node: &mut Value) -> Option<&mut Map<String, Value>> {
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    node.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> Path {
        Path::parse("", text).expect("valid path")
    }

    fn document(leaves: &Leaves, at: &str) -> Option<Value> {
        assemble(&path(at), &subtree(leaves, &path(at)), false)
    }

    #[test]
    fn paths_are_checked_with_the_clusters_words() {
        assert_eq!(path("app.db.host").key(), "micro/app/db/host");
        assert_eq!(path("").key(), "micro");
        for bad in ["a..b", ".a", "a.", "."] {
            let error = Path::parse("", bad).expect_err(bad);
            assert!(error.to_string().contains("has an empty segment"), "{bad}: {error}");
        }
        assert!(Path::parse("ns/x", "a").is_err());
        assert!(Path::parse("", &"x".repeat(SEGMENT_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn objects_merge_and_other_values_replace() {
        let mut leaves = Leaves::new();
        set(&mut leaves, &path("app"), &json!({"db": {"host": "a"}, "name": "shop"}), false).expect("set");
        set(&mut leaves, &path("app.db"), &json!({"port": 5432}), false).expect("merge");
        assert_eq!(document(&leaves, "app"), Some(json!({"db": {"host": "a", "port": 5432}, "name": "shop"})));
        set(&mut leaves, &path("app.db"), &json!("x"), false).expect("replace");
        assert_eq!(document(&leaves, "app"), Some(json!({"db": "x", "name": "shop"})));
        let changes = set(&mut leaves, &path("app.db.host"), &json!("b"), false).expect("leaf to object");
        assert_eq!(changes.touched, ["micro/app/db", "micro/app/db/host"]);
        assert_eq!(document(&leaves, "app.db"), Some(json!({"host": "b"})));
        assert_eq!(document(&leaves, "app.db.host"), Some(json!("b")));
        assert_eq!(document(&leaves, "ap"), None, "a key prefix is not a path prefix");
        assert!(set(&mut leaves, &path(""), &json!(1), false).is_err(), "the root takes only objects");
        assert!(set(&mut leaves, &path("a"), &json!({"": 1}), false).is_err(), "empty object key");
    }

    #[test]
    fn deletes_remove_the_subtree_and_secrets_are_masked() {
        let mut leaves = Leaves::new();
        set(&mut leaves, &path("db"), &json!({"user": "admin"}), false).expect("set");
        set(&mut leaves, &path("db.password"), &json!("pw"), true).expect("set secret");
        assert_eq!(document(&leaves, "db"), Some(json!({"user": "admin", "password": SECRET_MASK})));
        let revealed = assemble(&path("db"), &subtree(&leaves, &path("db")), true);
        assert_eq!(revealed, Some(json!({"user": "admin", "password": "pw"})));
        let changes = delete(&mut leaves, &path("db"));
        assert_eq!(changes.touched.len(), 2);
        assert!(leaves.is_empty());
        assert!(delete(&mut leaves, &path("db")).touched.is_empty(), "deleting nothing changes nothing");
    }
}

//! The cluster's configuration rules, for [`super::MemoryConfig`]: paths and their checks (with
//! the cluster's words), the leaves a Set writes and the keys it deletes, and the document
//! assembled from leaves. Pure: no clock, no I/O, no locking.
//!
//! Keys are the cluster's without its `/micro/config/` prefix: `<namespace>/<a>/<b>`, compared
//! as bytes, so documents assemble in the same order as on the cluster.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The namespace an empty name stands for, as in micro.
pub const DEFAULT_NAMESPACE: &str = "micro";
/// Leaves one Set may write: more is more likely a mistake than configuration, and every leaf
/// is one key of one atomic command.
pub const LEAVES_PER_SET_MAX: usize = 1000;
/// The longest path segment or namespace: they are key segments watchers match against.
pub const SEGMENT_BYTES_MAX: usize = 256;
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
        check_segment("namespace", namespace)?;
        let segments: Vec<String> =
            if path.is_empty() { Vec::new() } else { path.split('.').map(str::to_string).collect() };
        for segment in &segments {
            if segment.is_empty() {
                return Err(invalid(format!(
                    "config: path {path:?} has an empty segment (use dotted paths like app.db.host)"
                )));
            }
            check_segment("path segment", segment)?;
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

    fn child(&self, segment: &str) -> Path {
        let mut segments = self.segments.clone();
        segments.push(segment.to_string());
        Path { namespace: self.namespace.clone(), segments }
    }

    /// The segments of `key` below this path, if it is this path's leaf or below it.
    pub(crate) fn relative<'k>(&self, key: &'k str) -> Option<Vec<&'k str>> {
        let rest = key.strip_prefix(self.key().as_str())?;
        if rest.is_empty() {
            return Some(Vec::new());
        }
        Some(rest.strip_prefix('/')?.split('/').collect())
    }
}

fn check_segment(what: &str, name: &str) -> Result<()> {
    if name.contains('/') {
        return Err(invalid(format!("config: {what} {name:?} must not contain '/'")));
    }
    if name.len() > SEGMENT_BYTES_MAX {
        return Err(invalid(format!("config: a path segment or namespace is longer than {SEGMENT_BYTES_MAX} bytes")));
    }
    Ok(())
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
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                if name.is_empty() {
                    return Err(invalid(format!(
                        "config: path {name:?} has an empty segment (use dotted paths like app.db.host)"
                    )));
                }
                check_segment("object key", name)?;
                collect_leaves(&path.child(name), child, out)?;
            }
        }
        leaf => {
            if out.len() >= LEAVES_PER_SET_MAX {
                return Err(invalid(format!("config: the value has more than {LEAVES_PER_SET_MAX} leaves")));
            }
            if leaf.to_string().len() > LEAF_BYTES_MAX {
                return Err(invalid(format!("config: a leaf is larger than {LEAF_BYTES_MAX} bytes")));
            }
            out.push((path.clone(), leaf.clone()));
        }
    }
    Ok(())
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
        let json = if leaf.secret && !secrets { Value::String(SECRET_MASK.into()) } else { leaf.json.clone() };
        insert_leaf(&mut root, &relative, json);
    }
    root
}

/// Places `leaf` at `segments` below `root`, turning leaves on the way into objects: how a
/// configuration document is assembled from its leaves, here and on the server.
pub fn insert_leaf(root: &mut Option<Value>, segments: &[&str], leaf: Value) {
    let Some((first, rest)) = segments.split_first() else {
        if root.is_none() {
            *root = Some(leaf);
        }
        return;
    };
    let node = root.get_or_insert_with(|| Value::Object(Map::new()));
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        let mut child = map.remove(*first);
        insert_leaf(&mut child, rest, leaf);
        if let Some(child) = child {
            map.insert(first.to_string(), child);
        }
    }
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

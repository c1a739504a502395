//! The keyspace as a tree, for the dashboard's Keys page: the distinct next path segments under a
//! prefix, found by seeking past each child's keys in the in-memory index (one seek per child), so
//! a page of a large keyspace costs its page, not the keyspace.

use std::ops::Bound;

use super::keyspace::Keyspace;
use super::store::MvccStore;
use crate::keys::prefix_end;

/// The byte that separates a key's path segments (go-micro's and most etcd users' `/`).
pub const TREE_DELIMITER: u8 = b'/';

/// Keys a listing passes over that no longer exist (deleted, their history kept until a
/// compaction) before it stops with what it found: bounds the work of one page.
const DEAD_KEYS_SKIPPED_MAX: usize = 100_000;

/// One entry under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeChild {
    /// The prefix followed by the child's segment; a branch's ends with the delimiter.
    pub path: Vec<u8>,
    /// More keys continue below `path` (it ends with the delimiter).
    pub is_branch: bool,
    /// A key with exactly this path exists.
    pub is_key: bool,
}

/// A page of children, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreePage {
    pub children: Vec<TreeChild>,
    /// More children follow the last one (pass its path as `after`).
    pub more: bool,
    /// The page stopped early after passing over this many deleted keys.
    pub stopped_on_dead_keys: bool,
}

impl MvccStore {
    /// Up to `limit` children of `prefix` that come after the child `after` (a path an earlier
    /// page returned), as the keyspace is now.
    pub fn tree_children(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> TreePage {
        self.keyspace.tree_children(prefix, after, limit)
    }
}

impl Keyspace {
    fn tree_children(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> TreePage {
        let mut page = TreePage::default();
        let mut lower = match after {
            Some(after) if after.starts_with(prefix) => match past_child(prefix, after) {
                Some(bound) => bound,
                None => return page,
            },
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut skipped = 0;
        loop {
            let Some(key) = self.next_live_key(prefix, &lower, &mut skipped) else {
                page.stopped_on_dead_keys = skipped > DEAD_KEYS_SKIPPED_MAX;
                return page;
            };
            if page.children.len() == limit {
                page.more = true;
                return page;
            }
            let child = self.child_of(prefix, key);
            let next = past_child(prefix, &child.path);
            page.children.push(child);
            match next {
                Some(bound) => lower = bound,
                None => return page,
            }
        }
    }

    /// The first live key under `prefix` from `lower` on, passing over deleted ones (counted in
    /// `skipped`, up to the bound).
    fn next_live_key(&self, prefix: &[u8], lower: &Bound<Vec<u8>>, skipped: &mut usize) -> Option<&[u8]> {
        let lower = match lower {
            Bound::Included(key) => Bound::Included(key.as_slice()),
            Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        for (key, index) in self.index.range::<[u8], _>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                return None;
            }
            if index.live().is_some() {
                return Some(key);
            }
            *skipped += 1;
            if *skipped > DEAD_KEYS_SKIPPED_MAX {
                return None;
            }
        }
        None
    }

    /// The child of `prefix` that the live key `key` lies in.
    fn child_of(&self, prefix: &[u8], key: &[u8]) -> TreeChild {
        let rest = key.get(prefix.len()..).unwrap_or_default();
        match rest.iter().position(|&byte| byte == TREE_DELIMITER) {
            Some(at) => {
                let path = key.get(..prefix.len() + at + 1).unwrap_or(key).to_vec();
                let is_key = self.index.get(path.as_slice()).is_some_and(|index| index.live().is_some());
                TreeChild { path, is_branch: true, is_key }
            }
            None => TreeChild { path: key.to_vec(), is_branch: false, is_key: true },
        }
    }
}

/// Where the children of `prefix` after the child `path` start: past every key below a branch,
/// just past a leaf. A branch is longer than the prefix and ends with the delimiter; the key
/// equal to the prefix itself is a leaf, whatever it ends with. `None` when nothing can follow
/// (a branch of 0xff bytes).
fn past_child(prefix: &[u8], path: &[u8]) -> Option<Bound<Vec<u8>>> {
    if path.len() > prefix.len() && path.last() == Some(&TREE_DELIMITER) {
        prefix_end(path).map(Bound::Included)
    } else {
        Some(Bound::Excluded(path.to_vec()))
    }
}

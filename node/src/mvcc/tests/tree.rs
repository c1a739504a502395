//! The keyspace as a tree (the dashboard's Keys page): children listed once, in key order, paged.

use super::{delete, new_store, put};
use crate::mvcc::tree::TreePage;
use crate::mvcc::MvccStore;

fn store_with(keys: &[&str], deleted: &[&str]) -> MvccStore {
    let (_engine, mut store) = new_store();
    for key in keys {
        put(&mut store, key, "v");
    }
    for key in deleted {
        delete(&mut store, key, "");
    }
    store
}

fn paths(page: &TreePage) -> Vec<String> {
    page.children.iter().map(|c| String::from_utf8_lossy(&c.path).into_owned()).collect()
}

#[test]
fn lists_each_child_once_in_key_order() {
    let store = store_with(&["/a/1", "/a/2", "/a/b/3", "/b", "/b/", "/c/d/e", "x"], &[]);
    let page = store.tree_children(b"/", None, 10);
    assert_eq!(paths(&page), ["/a/", "/b", "/b/", "/c/"]);
    assert!(!page.more);
    let b_dir = &page.children[2];
    assert!(b_dir.is_branch && b_dir.is_key, "{b_dir:?}");
    assert_eq!(paths(&store.tree_children(b"/a/", None, 10)), ["/a/1", "/a/2", "/a/b/"]);
    assert_eq!(paths(&store.tree_children(b"", None, 10)), ["/", "x"]);
}

#[test]
fn pages_continue_after_the_last_child() {
    let store = store_with(&["/a/1", "/a/2", "/b/1", "/c", "/d/x/y"], &[]);
    let first = store.tree_children(b"/", None, 2);
    assert_eq!(paths(&first), ["/a/", "/b/"]);
    assert!(first.more);
    let second = store.tree_children(b"/", Some(b"/b/"), 2);
    assert_eq!(paths(&second), ["/c", "/d/"]);
    assert!(!second.more);
}

#[test]
fn deleted_keys_are_not_children() {
    let store = store_with(&["/a/1", "/b/1", "/c"], &["/b/1", "/c"]);
    assert_eq!(paths(&store.tree_children(b"/", None, 10)), ["/a/"]);
}

/// The children of `prefix` as a naive reading of every live key would list them.
fn naive_children(live: &std::collections::BTreeSet<String>, prefix: &str) -> Vec<(String, bool, bool)> {
    let mut children: Vec<(String, bool, bool)> = Vec::new();
    for key in live.iter().filter(|key| key.starts_with(prefix)) {
        let rest = &key[prefix.len()..];
        let child = match rest.find('/') {
            Some(at) => {
                let path = format!("{prefix}{}", &rest[..=at]);
                let is_key = live.contains(&path);
                (path, true, is_key)
            }
            None => (key.clone(), false, true),
        };
        if children.last() != Some(&child) {
            children.push(child);
        }
    }
    children
}

proptest::proptest! {
    /// Every page of children, read one after another, is what a naive scan of the live keys
    /// gives, whatever was put and deleted.
    #[test]
    fn pages_of_children_are_the_naive_listing(
        keys in proptest::collection::vec("[ab/]{0,5}", 0..40),
        deleted in proptest::collection::vec(0usize..40, 0..10),
        prefix in "[ab/]{0,3}",
        limit in 1usize..5,
    ) {
        let keys: Vec<String> = keys.into_iter().filter(|key| !key.is_empty()).collect();
        let gone: Vec<&str> = deleted.iter().filter_map(|&i| keys.get(i)).map(String::as_str).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let store = store_with(&key_refs, &gone);
        let live: std::collections::BTreeSet<String> =
            keys.iter().filter(|key| !gone.contains(&key.as_str())).cloned().collect();
        let mut listed = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.tree_children(prefix.as_bytes(), after.as_deref(), limit);
            proptest::prop_assert!(page.children.len() <= limit);
            listed.extend(page.children.iter().map(|c| (String::from_utf8_lossy(&c.path).into_owned(), c.is_branch, c.is_key)));
            if !page.more {
                break;
            }
            after = page.children.last().map(|c| c.path.clone());
        }
        proptest::prop_assert_eq!(listed, naive_children(&live, &prefix));
    }
}

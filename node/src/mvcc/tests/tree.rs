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

//! etcd's Range rules: range_end, revisions, limit, sorting and filters.

use super::*;

#[test]
fn range_end_rules() {
    let (_, mut store) = new_store();
    for key in ["a", "ab", "abc", "b", "c"] {
        put(&mut store, key, "v");
    }
    let check = |key: &[u8], range_end: &[u8], expect: &[&str]| {
        let response = store.range(&span(key, range_end)).expect("range");
        assert_eq!(keys(&response), expect, "{key:?}..{range_end:?}");
        assert_eq!(response.count, expect.len() as i64);
    };
    check(b"a", b"", &["a"]);
    check(b"zz", b"", &[]);
    check(b"ab", b"ac", &["ab", "abc"]);
    check(b"a", b"c", &["a", "ab", "abc", "b"]);
    check(b"ab", b"\0", &["ab", "abc", "b", "c"]);
    check(b"\0", b"\0", &["a", "ab", "abc", "b", "c"]);
    check(b"", b"\0", &["a", "ab", "abc", "b", "c"]);
    check(b"c", b"a", &[]);
    check(b"b", b"b", &[]);
    check(b"", b"\xff", &["a", "ab", "abc", "b", "c"]);
}

#[test]
fn range_revision_rules() {
    let (_, mut store) = new_store();
    for value in ["1", "2", "3", "4"] {
        put(&mut store, "k", value);
    }
    assert!(matches!(compact(&mut store, 3), CommandResponse::Compact(_)));
    let check = |revision: i64, expect: Result<&str, MvccError>| {
        let response = store.range(&RangeRequest { revision, ..get("k") }).map_err(ReadError::rejected);
        let got = response.map(|response| String::from_utf8_lossy(&response.kvs[0].value).into_owned());
        assert_eq!(got, expect.map(str::to_owned), "revision {revision}");
    };
    check(0, Ok("4"));
    check(-3, Ok("4"));
    check(5, Ok("4"));
    check(6, Err(MvccError::FutureRevision { current_revision: 5 }));
    check(3, Ok("2"));
    check(2, Err(MvccError::Compacted { compact_revision: 3 }));
    check(1, Err(MvccError::Compacted { compact_revision: 3 }));
}

#[test]
fn range_limit_sort_and_filters_follow_etcd_3_4() {
    let (_, mut store) = new_store();
    // a@2 (value z), b@3 (value y), c@4 (value x), then a again @5: a has version 2, mod 5.
    put(&mut store, "a", "z");
    put(&mut store, "b", "y");
    put(&mut store, "c", "x");
    put(&mut store, "a", "w");
    let all = span(b"a", b"\0");
    struct Case {
        request: RangeRequest,
        keys: &'static [&'static str],
        more: bool,
        count: i64,
    }
    let cases = [
        Case { request: RangeRequest { limit: 2, ..all.clone() }, keys: &["a", "b"], more: true, count: 3 },
        Case { request: RangeRequest { limit: 3, ..all.clone() }, keys: &["a", "b", "c"], more: false, count: 3 },
        Case { request: RangeRequest { limit: -1, ..all.clone() }, keys: &["a", "b", "c"], more: false, count: 3 },
        // Descending by key.
        Case {
            request: RangeRequest { limit: 2, sort_order: SortOrder::Descend, ..all.clone() },
            keys: &["c", "b"],
            more: true,
            count: 3,
        },
        // A non-key target with no order sorts ascending.
        Case {
            request: RangeRequest { sort_target: SortTarget::Value, ..all.clone() },
            keys: &["a", "c", "b"],
            more: false,
            count: 3,
        },
        Case {
            request: RangeRequest {
                sort_target: SortTarget::Mod,
                sort_order: SortOrder::Descend,
                limit: 1,
                ..all.clone()
            },
            keys: &["a"],
            more: true,
            count: 3,
        },
        // Ties keep key order.
        Case {
            request: RangeRequest { sort_target: SortTarget::Version, sort_order: SortOrder::Ascend, ..all.clone() },
            keys: &["b", "c", "a"],
            more: false,
            count: 3,
        },
        // Filters do not change count; `more` is about what the limit cut after filtering.
        Case {
            request: RangeRequest { min_mod_revision: 4, limit: 1, ..all.clone() },
            keys: &["a"],
            more: true,
            count: 3,
        },
        Case {
            request: RangeRequest { max_create_revision: 3, min_create_revision: 3, limit: 1, ..all.clone() },
            keys: &["b"],
            more: false,
            count: 3,
        },
        Case { request: RangeRequest { max_mod_revision: 3, ..all.clone() }, keys: &["b"], more: false, count: 3 },
        Case { request: RangeRequest { count_only: true, limit: 1, ..all.clone() }, keys: &[], more: false, count: 3 },
    ];
    for case in cases {
        let response = store.range(&case.request).expect("range");
        assert_eq!(
            (keys(&response), response.more, response.count),
            (case.keys.iter().map(|key| key.to_string()).collect::<Vec<_>>(), case.more, case.count),
            "{:?}",
            case.request
        );
        assert_eq!(response.header_revision, 5);
    }
    let keys_only = store.range(&RangeRequest { keys_only: true, ..get("a") }).expect("range");
    assert_eq!(keys_only.kvs, vec![KeyValue { value: Vec::new(), ..kv("a", "", 2, 5, 2) }]);
}

#[test]
fn sorting_with_no_order_sorts_only_what_the_limit_read() {
    // etcd 3.4 reads everything only when an order (or a filter) is requested; a non-key target
    // with no order is sorted after reading the first limit + 1 keys.
    let (_, mut store) = new_store();
    for (key, value) in [("a", "z"), ("b", "y"), ("c", "x")] {
        put(&mut store, key, value);
    }
    let by_value = |sort_order: SortOrder| RangeRequest {
        sort_target: SortTarget::Value,
        sort_order,
        limit: 1,
        ..span(b"a", b"\0")
    };
    let check = |sort_order: SortOrder, expect: &str| {
        let response = store.range(&by_value(sort_order)).expect("range");
        assert_eq!((keys(&response), response.more, response.count), (vec![expect.to_string()], true, 3));
    };
    check(SortOrder::None, "b");
    check(SortOrder::Ascend, "c");
    check(SortOrder::Descend, "a");
}

/// A client's Range reads its values after the keyspace lock is released (from an engine point
/// taken under it): same answers as the locked read, for every kind of request, on RocksDB.
#[test]
fn unlocked_ranges_answer_as_locked_ones() {
    use std::sync::RwLock;

    use crate::mvcc::range_unlocked;
    use crate::storage::RocksEngine;

    let dir = tempfile::tempdir().expect("temp dir");
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).expect("open rocksdb"));
    let mut store = MvccStore::open(engine).expect("open");
    for round in 0..3 {
        for key in ["a", "b", "c", "d", "e"] {
            put(&mut store, key, &format!("{key}{round}"));
        }
    }
    delete(&mut store, "c", "");
    store.commit(WriteBatch::new()).expect("commit");
    let store = RwLock::new(store);
    let requests = [
        RangeRequest { key: "a".into(), ..RangeRequest::default() },
        RangeRequest { key: "a".into(), range_end: vec![0], ..RangeRequest::default() },
        RangeRequest { key: "a".into(), range_end: "z".into(), limit: 2, ..RangeRequest::default() },
        RangeRequest { key: "a".into(), range_end: "z".into(), revision: 8, ..RangeRequest::default() },
        RangeRequest { key: "a".into(), range_end: "z".into(), count_only: true, ..RangeRequest::default() },
        RangeRequest { key: "a".into(), range_end: "z".into(), keys_only: true, ..RangeRequest::default() },
        RangeRequest {
            key: "a".into(),
            range_end: "z".into(),
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Value,
            limit: 3,
            ..RangeRequest::default()
        },
        RangeRequest { key: "a".into(), revision: 99, ..RangeRequest::default() },
    ];
    for request in &requests {
        let locked = store.read().expect("lock").range(request);
        let unlocked = range_unlocked(store.read().expect("lock"), request);
        assert_eq!(unlocked.map_err(ReadError::rejected), locked.map_err(ReadError::rejected), "{request:?}");
    }
    // Writes and a compaction after it leave a range at a kept revision answering.
    let request = RangeRequest { key: "a".into(), range_end: "z".into(), revision: 8, ..RangeRequest::default() };
    let before = range_unlocked(store.read().expect("lock"), &request).map_err(ReadError::rejected);
    {
        let mut writer = store.write().expect("lock");
        put(&mut writer, "a", "later");
        apply(&mut writer, Command::Compact(CompactRequest { revision: 9, physical: false }));
        writer.commit(WriteBatch::new()).expect("commit");
    }
    let at_nine = RangeRequest { revision: 9, ..request };
    let after = range_unlocked(store.read().expect("lock"), &at_nine).map_err(ReadError::rejected);
    assert!(before.is_ok() && after.is_ok(), "{before:?} {after:?}");
}

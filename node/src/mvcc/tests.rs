//! Unit tests of etcd's rules, one table per rule where it reads better.

use std::sync::Arc;

use crate::command::{
    Command, CommandResponse, CompactRequest, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use crate::storage::{Direction, Engine, KeyRange, MemoryEngine, Table, WriteBatch};

use super::{MvccError, MvccStore};

fn new_store() -> (Arc<MemoryEngine>, MvccStore) {
    let engine = Arc::new(MemoryEngine::new());
    let store = MvccStore::open(engine.clone()).expect("open");
    (engine, store)
}

fn apply(store: &mut MvccStore, command: Command) -> CommandResponse {
    store.apply(&command).expect("apply")
}

fn put(store: &mut MvccStore, key: &str, value: &str) -> PutResponse {
    let request = PutRequest {
        key: key.into(),
        value: value.into(),
        prev_kv: true,
        ..PutRequest::default()
    };
    match apply(store, Command::Put(request)) {
        CommandResponse::Put(response) => response,
        other => panic!("put {key}: {other:?}"),
    }
}

fn delete(store: &mut MvccStore, key: &str, range_end: &str) -> DeleteRangeResponse {
    let request = DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: true,
    };
    match apply(store, Command::DeleteRange(request)) {
        CommandResponse::DeleteRange(response) => response,
        other => panic!("delete {key}: {other:?}"),
    }
}

fn txn(store: &mut MvccStore, request: TxnRequest) -> Result<TxnResponse, MvccError> {
    match apply(store, Command::Txn(request)) {
        CommandResponse::Txn(response) => Ok(response),
        CommandResponse::Rejected(error) => Err(error),
        other => panic!("txn: {other:?}"),
    }
}

fn compact(store: &mut MvccStore, revision: i64) -> CommandResponse {
    apply(
        store,
        Command::Compact(CompactRequest {
            revision,
            physical: false,
        }),
    )
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..RangeRequest::default()
    }
}

fn span(key: &[u8], range_end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        ..RangeRequest::default()
    }
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    })
}

fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        result,
        target,
        key: key.into(),
        range_end: Vec::new(),
    }
}

#[test]
fn empty_store_starts_at_revision_one() {
    let (_, store) = new_store();
    assert_eq!(
        (
            store.current_revision(),
            store.compact_revision(),
            store.key_count()
        ),
        (1, 0, 0)
    );
    let response = store.range(&span(b"\0", b"\0")).expect("range");
    assert_eq!(
        (response.header_revision, response.count, response.kvs.len()),
        (1, 0, 0)
    );
}

#[test]
fn puts_and_deletes_keep_etcd_revisions_and_versions() {
    let (_, mut store) = new_store();
    assert_eq!(
        put(&mut store, "a", "1"),
        PutResponse {
            header_revision: 2,
            prev_kv: None
        }
    );
    let second = put(&mut store, "a", "2");
    assert_eq!(
        second,
        PutResponse {
            header_revision: 3,
            prev_kv: Some(kv("a", "1", 2, 2, 1))
        }
    );
    assert_eq!(
        store.range(&get("a")).expect("range").kvs,
        vec![kv("a", "2", 2, 3, 2)]
    );

    // Deleting nothing does not move the revision.
    let nothing = delete(&mut store, "zzz", "");
    assert_eq!((nothing.header_revision, nothing.deleted), (3, 0));
    assert_eq!(store.current_revision(), 3);

    let deleted = delete(&mut store, "a", "");
    assert_eq!(
        deleted,
        DeleteRangeResponse {
            header_revision: 4,
            deleted: 1,
            prev_kvs: vec![kv("a", "2", 2, 3, 2)]
        }
    );
    assert_eq!(store.key_count(), 0);

    // A new generation: version 1, new create revision.
    put(&mut store, "a", "3");
    assert_eq!(
        store.range(&get("a")).expect("range").kvs,
        vec![kv("a", "3", 5, 5, 1)]
    );
    // The past stays readable.
    let at_three = RangeRequest {
        revision: 3,
        ..get("a")
    };
    assert_eq!(
        store.range(&at_three).expect("range").kvs,
        vec![kv("a", "2", 2, 3, 2)]
    );
    let at_four = RangeRequest {
        revision: 4,
        ..get("a")
    };
    assert_eq!(store.range(&at_four).expect("range").kvs, vec![]);
}

#[test]
fn put_ignore_value_and_lease_keep_the_previous_ones() {
    let (_, mut store) = new_store();
    let first = PutRequest {
        key: "k".into(),
        value: "v".into(),
        lease: 7,
        ..PutRequest::default()
    };
    apply(&mut store, Command::Put(first));
    let keep_value = PutRequest {
        key: "k".into(),
        ignore_value: true,
        lease: 8,
        ..PutRequest::default()
    };
    apply(&mut store, Command::Put(keep_value));
    let kv_now = &store.range(&get("k")).expect("range").kvs[0];
    assert_eq!(
        (kv_now.value.as_slice(), kv_now.lease),
        (b"v".as_slice(), 8)
    );
    let keep_lease = PutRequest {
        key: "k".into(),
        value: "w".into(),
        ignore_lease: true,
        ..PutRequest::default()
    };
    apply(&mut store, Command::Put(keep_lease));
    let kv_now = &store.range(&get("k")).expect("range").kvs[0];
    assert_eq!(
        (kv_now.value.as_slice(), kv_now.lease),
        (b"w".as_slice(), 8)
    );

    let missing = PutRequest {
        key: "missing".into(),
        ignore_value: true,
        ..PutRequest::default()
    };
    let revision = store.current_revision();
    assert_eq!(
        apply(&mut store, Command::Put(missing)),
        CommandResponse::Rejected(MvccError::KeyNotFound)
    );
    assert_eq!(store.current_revision(), revision);
    assert_eq!(
        MvccError::KeyNotFound.to_string(),
        "etcdserver: key not found"
    );
}

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
    assert!(matches!(
        compact(&mut store, 3),
        CommandResponse::Compact(_)
    ));
    let check = |revision: i64, expect: Result<&str, MvccError>| {
        let response = store.range(&RangeRequest {
            revision,
            ..get("k")
        });
        let got =
            response.map(|response| String::from_utf8_lossy(&response.kvs[0].value).into_owned());
        assert_eq!(got, expect.map(str::to_owned), "revision {revision}");
    };
    check(0, Ok("4"));
    check(-3, Ok("4"));
    check(5, Ok("4"));
    check(
        6,
        Err(MvccError::FutureRevision {
            current_revision: 5,
        }),
    );
    check(3, Ok("2"));
    check(
        2,
        Err(MvccError::Compacted {
            compact_revision: 3,
        }),
    );
    check(
        1,
        Err(MvccError::Compacted {
            compact_revision: 3,
        }),
    );
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
        Case {
            request: RangeRequest {
                limit: 2,
                ..all.clone()
            },
            keys: &["a", "b"],
            more: true,
            count: 3,
        },
        Case {
            request: RangeRequest {
                limit: 3,
                ..all.clone()
            },
            keys: &["a", "b", "c"],
            more: false,
            count: 3,
        },
        Case {
            request: RangeRequest {
                limit: -1,
                ..all.clone()
            },
            keys: &["a", "b", "c"],
            more: false,
            count: 3,
        },
        // Descending by key.
        Case {
            request: RangeRequest {
                limit: 2,
                sort_order: SortOrder::Descend,
                ..all.clone()
            },
            keys: &["c", "b"],
            more: true,
            count: 3,
        },
        // A non-key target with no order sorts ascending.
        Case {
            request: RangeRequest {
                sort_target: SortTarget::Value,
                ..all.clone()
            },
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
            request: RangeRequest {
                sort_target: SortTarget::Version,
                sort_order: SortOrder::Ascend,
                ..all.clone()
            },
            keys: &["b", "c", "a"],
            more: false,
            count: 3,
        },
        // Filters do not change count; `more` is about what the limit cut after filtering.
        Case {
            request: RangeRequest {
                min_mod_revision: 4,
                limit: 1,
                ..all.clone()
            },
            keys: &["a"],
            more: true,
            count: 3,
        },
        Case {
            request: RangeRequest {
                max_create_revision: 3,
                min_create_revision: 3,
                limit: 1,
                ..all.clone()
            },
            keys: &["b"],
            more: false,
            count: 3,
        },
        Case {
            request: RangeRequest {
                max_mod_revision: 3,
                ..all.clone()
            },
            keys: &["b"],
            more: false,
            count: 3,
        },
        Case {
            request: RangeRequest {
                count_only: true,
                limit: 1,
                ..all.clone()
            },
            keys: &[],
            more: false,
            count: 3,
        },
    ];
    for case in cases {
        let response = store.range(&case.request).expect("range");
        assert_eq!(
            (keys(&response), response.more, response.count),
            (
                case.keys
                    .iter()
                    .map(|key| key.to_string())
                    .collect::<Vec<_>>(),
                case.more,
                case.count
            ),
            "{:?}",
            case.request
        );
        assert_eq!(response.header_revision, 5);
    }
    let keys_only = store
        .range(&RangeRequest {
            keys_only: true,
            ..get("a")
        })
        .expect("range");
    assert_eq!(
        keys_only.kvs,
        vec![KeyValue {
            value: Vec::new(),
            ..kv("a", "", 2, 5, 2)
        }]
    );
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
        assert_eq!(
            (keys(&response), response.more, response.count),
            (vec![expect.to_string()], true, 3)
        );
    };
    check(SortOrder::None, "b");
    check(SortOrder::Ascend, "c");
    check(SortOrder::Descend, "a");
}

#[test]
fn compares_follow_etcd_apply_compare() {
    let (_, mut store) = new_store();
    put(&mut store, "a", "1"); // rev 2
    put(&mut store, "b", "2"); // rev 3
    let holds = |store: &mut MvccStore, compare: Compare| {
        txn(
            store,
            TxnRequest {
                compare: vec![compare],
                ..TxnRequest::default()
            },
        )
        .expect("txn")
        .succeeded
    };
    let cases = [
        (
            compare("a", CompareResult::Equal, CompareTarget::Value("1".into())),
            true,
        ),
        (
            compare(
                "a",
                CompareResult::Greater,
                CompareTarget::Value("0".into()),
            ),
            true,
        ),
        (
            compare("a", CompareResult::Equal, CompareTarget::Create(2)),
            true,
        ),
        (
            compare("a", CompareResult::Less, CompareTarget::Mod(3)),
            true,
        ),
        (
            compare("a", CompareResult::Equal, CompareTarget::Version(1)),
            true,
        ),
        (
            compare("a", CompareResult::NotEqual, CompareTarget::Lease(0)),
            false,
        ),
        // A missing key compares as zeros, except that a value compare always fails.
        (
            compare("missing", CompareResult::Equal, CompareTarget::Version(0)),
            true,
        ),
        (
            compare("missing", CompareResult::Equal, CompareTarget::Create(0)),
            true,
        ),
        (
            compare(
                "missing",
                CompareResult::NotEqual,
                CompareTarget::Value("x".into()),
            ),
            false,
        ),
        (
            compare(
                "missing",
                CompareResult::Equal,
                CompareTarget::Value("".into()),
            ),
            false,
        ),
        // A range holds when every key in it does.
        (
            Compare {
                range_end: "c".into(),
                ..compare("a", CompareResult::Greater, CompareTarget::Mod(1))
            },
            true,
        ),
        (
            Compare {
                range_end: "c".into(),
                ..compare("a", CompareResult::Greater, CompareTarget::Mod(2))
            },
            false,
        ),
        (
            Compare {
                range_end: "\0".into(),
                ..compare("b", CompareResult::Equal, CompareTarget::Mod(3))
            },
            true,
        ),
        (
            Compare {
                range_end: "y".into(),
                ..compare("x", CompareResult::Equal, CompareTarget::Lease(0))
            },
            true,
        ),
    ];
    for (compare, expect) in cases {
        assert_eq!(holds(&mut store, compare.clone()), expect, "{compare:?}");
    }
    assert_eq!(
        store.current_revision(),
        3,
        "read-only txns do not move the revision"
    );
}

#[test]
fn txn_revisions_and_nested_rules() {
    let (_, mut store) = new_store();
    put(&mut store, "x", "0"); // rev 2
    let request = TxnRequest {
        compare: vec![compare(
            "x",
            CompareResult::Equal,
            CompareTarget::Value("0".into()),
        )],
        success: vec![
            RequestOp::Range(get("k")),
            put_op("k", "1"),
            put_op("k", "2"),
            RequestOp::Range(get("k")),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "nothing".into(),
                ..DeleteRangeRequest::default()
            }),
            // Nested compares see the state before the outer txn: "k" does not exist yet.
            RequestOp::Txn(TxnRequest {
                compare: vec![compare(
                    "k",
                    CompareResult::Equal,
                    CompareTarget::Version(0),
                )],
                success: vec![put_op("x", "nested")],
                failure: vec![],
            }),
        ],
        failure: vec![],
    };
    let response = txn(&mut store, request).expect("txn");
    assert_eq!(response.header_revision, 3);
    assert!(response.succeeded);
    let expect = vec![
        ResponseOp::Range(RangeResponse {
            header_revision: 2,
            ..RangeResponse::default()
        }),
        ResponseOp::Put(PutResponse {
            header_revision: 3,
            prev_kv: None,
        }),
        ResponseOp::Put(PutResponse {
            header_revision: 3,
            prev_kv: None,
        }),
        ResponseOp::Range(RangeResponse {
            header_revision: 3,
            kvs: vec![kv("k", "2", 3, 3, 2)],
            more: false,
            count: 1,
        }),
        ResponseOp::DeleteRange(DeleteRangeResponse {
            header_revision: 3,
            deleted: 0,
            prev_kvs: vec![],
        }),
        ResponseOp::Txn(TxnResponse {
            header_revision: 0,
            succeeded: true,
            responses: vec![ResponseOp::Put(PutResponse {
                header_revision: 3,
                prev_kv: None,
            })],
        }),
    ];
    assert_eq!(response.responses, expect);
    assert_eq!(
        store.range(&get("x")).expect("range").kvs,
        vec![kv("x", "nested", 2, 3, 2)]
    );

    // A write txn that changes nothing leaves the revision alone.
    let nothing = TxnRequest {
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: "nothing".into(),
            ..DeleteRangeRequest::default()
        })],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, nothing).expect("txn").header_revision, 3);

    // Delete then put of one key in one txn: a new generation at the same main revision.
    let recreate = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "k".into(),
                ..DeleteRangeRequest::default()
            }),
            put_op("k", "new"),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, recreate).expect("txn").header_revision, 4);
    assert_eq!(
        store.range(&get("k")).expect("range").kvs,
        vec![kv("k", "new", 4, 4, 1)]
    );
}

#[test]
fn txn_checks_reject_before_any_write() {
    let (_, mut store) = new_store();
    put(&mut store, "a", "1"); // rev 2
    put(&mut store, "a", "2"); // rev 3
    assert!(matches!(
        compact(&mut store, 3),
        CommandResponse::Compact(_)
    ));
    let with_range_at = |revision: i64| TxnRequest {
        success: vec![
            put_op("b", "1"),
            RequestOp::Range(RangeRequest {
                revision,
                ..get("a")
            }),
        ],
        failure: vec![RequestOp::Range(RangeRequest {
            revision: 100,
            ..get("a")
        })],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(&mut store, with_range_at(4)),
        Err(MvccError::FutureRevision {
            current_revision: 3
        })
    );
    assert_eq!(
        txn(&mut store, with_range_at(2)),
        Err(MvccError::Compacted {
            compact_revision: 3
        })
    );
    assert_eq!(store.current_revision(), 3);
    assert!(txn(&mut store, with_range_at(3)).is_ok());
    assert_eq!(store.current_revision(), 4);

    // ignore_value on a key missing before the txn: KeyNotFound, even if the txn creates it.
    let create_then_ignore = TxnRequest {
        success: vec![
            put_op("new", "1"),
            RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Put(PutRequest {
                    key: "new".into(),
                    ignore_value: true,
                    ..PutRequest::default()
                })],
                ..TxnRequest::default()
            }),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(
        txn(&mut store, create_then_ignore),
        Err(MvccError::KeyNotFound)
    );
    assert_eq!(store.range(&get("new")).expect("range").count, 0);

    // Deleted earlier in the same txn (etcd panics): the request's own value is used.
    let delete_then_ignore = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: "a".into(),
                ..DeleteRangeRequest::default()
            }),
            RequestOp::Put(PutRequest {
                key: "a".into(),
                ignore_value: true,
                lease: 5,
                ..PutRequest::default()
            }),
        ],
        ..TxnRequest::default()
    };
    txn(&mut store, delete_then_ignore).expect("txn");
    assert_eq!(
        store.range(&get("a")).expect("range").kvs,
        vec![KeyValue {
            lease: 5,
            ..kv("a", "", 5, 5, 1)
        }]
    );
}

#[test]
fn compaction_rules_and_records() {
    let (engine, mut store) = new_store();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "a", "2"); // 3
    put(&mut store, "b", "1"); // 4
    delete(&mut store, "b", ""); // 5
    put(&mut store, "c", "1"); // 6
    store.commit(WriteBatch::new()).expect("commit");
    assert_eq!(record_count(engine.as_ref()), 5);

    assert_eq!(
        compact(&mut store, 7),
        CommandResponse::Rejected(MvccError::FutureRevision {
            current_revision: 6
        })
    );
    assert_eq!(
        compact(&mut store, 5),
        CommandResponse::Compact(crate::command::CompactResponse { header_revision: 6 })
    );
    assert_eq!(
        compact(&mut store, 5),
        CommandResponse::Rejected(MvccError::Compacted {
            compact_revision: 5
        })
    );
    assert_eq!(
        compact(&mut store, 4),
        CommandResponse::Rejected(MvccError::Compacted {
            compact_revision: 5
        })
    );
    store.commit(WriteBatch::new()).expect("commit");
    // Left: a@3 and c@6. b's generation ended at 5 <= 5 and is gone, tombstone included.
    assert_eq!(record_count(engine.as_ref()), 2);
    let all = store.range(&span(b"\0", b"\0")).expect("range");
    assert_eq!(all.kvs, vec![kv("a", "2", 2, 3, 2), kv("c", "1", 6, 6, 1)]);
    let at_five = store
        .range(&RangeRequest {
            revision: 5,
            ..span(b"\0", b"\0")
        })
        .expect("range");
    assert_eq!(keys(&at_five), vec!["a"]);

    // Reopening gives the same answers, and versions keep counting.
    let mut reopened = MvccStore::open(engine.clone()).expect("reopen");
    assert_eq!(
        (reopened.current_revision(), reopened.compact_revision()),
        (6, 5)
    );
    assert_eq!(reopened.range(&span(b"\0", b"\0")).expect("range"), all);
    put(&mut reopened, "a", "3");
    assert_eq!(
        reopened.range(&get("a")).expect("range").kvs,
        vec![kv("a", "3", 2, 7, 3)]
    );
}

#[test]
fn first_compaction_may_be_at_revision_zero_as_in_etcd() {
    let (_, mut store) = new_store();
    assert!(matches!(
        compact(&mut store, 0),
        CommandResponse::Compact(_)
    ));
    assert_eq!(
        compact(&mut store, 0),
        CommandResponse::Rejected(MvccError::Compacted {
            compact_revision: 0
        })
    );
    assert_eq!(
        compact(&mut store, -1),
        CommandResponse::Rejected(MvccError::Compacted {
            compact_revision: 0
        })
    );
}

#[test]
fn revisions_survive_reopen_when_every_record_is_gone() {
    let (engine, mut store) = new_store();
    put(&mut store, "a", "1");
    delete(&mut store, "a", "");
    compact(&mut store, 3);
    let mut extra = WriteBatch::new();
    extra.put(Table::StateMeta, b"applied".as_slice(), b"42".as_slice());
    store.commit(extra).expect("commit");
    assert_eq!(record_count(engine.as_ref()), 0);
    assert_eq!(
        engine.get(Table::StateMeta, b"applied").expect("get"),
        Some(b"42".to_vec())
    );
    let reopened = MvccStore::open(engine).expect("reopen");
    assert_eq!(
        (
            reopened.current_revision(),
            reopened.compact_revision(),
            reopened.key_count()
        ),
        (3, 3, 0)
    );
}

#[test]
fn nothing_reaches_the_engine_before_commit() {
    let (engine, mut store) = new_store();
    put(&mut store, "a", "1");
    assert_eq!(record_count(engine.as_ref()), 0);
    assert_eq!(
        MvccStore::open(engine.clone())
            .expect("open")
            .current_revision(),
        1
    );
    store.commit(WriteBatch::new()).expect("commit");
    assert_eq!(record_count(engine.as_ref()), 1);
    assert_eq!(MvccStore::open(engine).expect("open").current_revision(), 2);
}

#[test]
fn publish_member_changes_nothing() {
    let (_, mut store) = new_store();
    let command = Command::PublishMember(crate::command::MemberAttributes::default());
    assert_eq!(apply(&mut store, command), CommandResponse::None);
    assert_eq!(store.current_revision(), 1);
}

fn record_count(engine: &dyn Engine) -> usize {
    let mut count = 0;
    engine
        .scan(
            Table::Kv,
            KeyRange::all(),
            Direction::Forward,
            &mut |_, _| {
                count += 1;
                true
            },
        )
        .expect("scan");
    count
}

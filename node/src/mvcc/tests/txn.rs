//! etcd's compares and transactions: revisions, nesting, apply-time checks.

use super::*;

#[test]
fn compares_follow_etcd_apply_compare() {
    let (_, mut store) = new_store();
    put(&mut store, "a", "1"); // rev 2
    put(&mut store, "b", "2"); // rev 3
    let holds = |store: &mut MvccStore, compare: Compare| {
        txn(store, TxnRequest { compare: vec![compare], ..TxnRequest::default() }).expect("txn").succeeded
    };
    let cases = [
        (compare("a", CompareResult::Equal, CompareTarget::Value("1".into())), true),
        (compare("a", CompareResult::Greater, CompareTarget::Value("0".into())), true),
        (compare("a", CompareResult::Equal, CompareTarget::Create(2)), true),
        (compare("a", CompareResult::Less, CompareTarget::Mod(3)), true),
        (compare("a", CompareResult::Equal, CompareTarget::Version(1)), true),
        (compare("a", CompareResult::NotEqual, CompareTarget::Lease(0)), false),
        // A missing key compares as zeros, except that a value compare always fails.
        (compare("missing", CompareResult::Equal, CompareTarget::Version(0)), true),
        (compare("missing", CompareResult::Equal, CompareTarget::Create(0)), true),
        (compare("missing", CompareResult::NotEqual, CompareTarget::Value("x".into())), false),
        (compare("missing", CompareResult::Equal, CompareTarget::Value("".into())), false),
        // A range holds when every key in it does.
        (Compare { range_end: "c".into(), ..compare("a", CompareResult::Greater, CompareTarget::Mod(1)) }, true),
        (Compare { range_end: "c".into(), ..compare("a", CompareResult::Greater, CompareTarget::Mod(2)) }, false),
        (Compare { range_end: "\0".into(), ..compare("b", CompareResult::Equal, CompareTarget::Mod(3)) }, true),
        (Compare { range_end: "y".into(), ..compare("x", CompareResult::Equal, CompareTarget::Lease(0)) }, true),
    ];
    for (compare, expect) in cases {
        assert_eq!(holds(&mut store, compare.clone()), expect, "{compare:?}");
    }
    assert_eq!(store.current_revision(), 3, "read-only txns do not move the revision");
}

#[test]
fn txn_revisions_and_nested_rules() {
    let (_, mut store) = new_store();
    put(&mut store, "x", "0"); // rev 2
    let request = TxnRequest {
        compare: vec![compare("x", CompareResult::Equal, CompareTarget::Value("0".into()))],
        success: vec![
            RequestOp::Range(get("k")),
            put_op("k", "1"),
            put_op("k", "2"),
            RequestOp::Range(get("k")),
            RequestOp::DeleteRange(DeleteRangeRequest { key: "nothing".into(), ..DeleteRangeRequest::default() }),
            // Nested compares see the state before the outer txn: "k" does not exist yet.
            RequestOp::Txn(TxnRequest {
                compare: vec![compare("k", CompareResult::Equal, CompareTarget::Version(0))],
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
        ResponseOp::Range(RangeResponse { header_revision: 2, ..RangeResponse::default() }),
        ResponseOp::Put(PutResponse { header_revision: 3, prev_kv: None }),
        ResponseOp::Put(PutResponse { header_revision: 3, prev_kv: None }),
        ResponseOp::Range(RangeResponse {
            header_revision: 3,
            kvs: vec![kv("k", "2", 3, 3, 2)],
            more: false,
            count: 1,
        }),
        ResponseOp::DeleteRange(DeleteRangeResponse { header_revision: 3, deleted: 0, prev_kvs: vec![] }),
        ResponseOp::Txn(TxnResponse {
            header_revision: 0,
            succeeded: true,
            responses: vec![ResponseOp::Put(PutResponse { header_revision: 3, prev_kv: None })],
        }),
    ];
    assert_eq!(response.responses, expect);
    assert_eq!(store.range(&get("x")).expect("range").kvs, vec![kv("x", "nested", 2, 3, 2)]);

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
            RequestOp::DeleteRange(DeleteRangeRequest { key: "k".into(), ..DeleteRangeRequest::default() }),
            put_op("k", "new"),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, recreate).expect("txn").header_revision, 4);
    assert_eq!(store.range(&get("k")).expect("range").kvs, vec![kv("k", "new", 4, 4, 1)]);
}

#[test]
fn txn_checks_reject_before_any_write() {
    let (_, mut store) = new_store();
    put(&mut store, "a", "1"); // rev 2
    put(&mut store, "a", "2"); // rev 3
    assert!(matches!(compact(&mut store, 3), CommandResponse::Compact(_)));
    let with_range_at = |revision: i64| TxnRequest {
        success: vec![put_op("b", "1"), RequestOp::Range(RangeRequest { revision, ..get("a") })],
        failure: vec![RequestOp::Range(RangeRequest { revision: 100, ..get("a") })],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, with_range_at(4)), Err(MvccError::FutureRevision { current_revision: 3 }));
    assert_eq!(txn(&mut store, with_range_at(2)), Err(MvccError::Compacted { compact_revision: 3 }));
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
    assert_eq!(txn(&mut store, create_then_ignore), Err(MvccError::KeyNotFound));
    assert_eq!(store.range(&get("new")).expect("range").count, 0);

    // Deleted earlier in the same txn (etcd panics): the request's own value is used.
    super::grant(&mut store, 5);
    let delete_then_ignore = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest { key: "a".into(), ..DeleteRangeRequest::default() }),
            RequestOp::Put(PutRequest { key: "a".into(), ignore_value: true, lease: 5, ..PutRequest::default() }),
        ],
        ..TxnRequest::default()
    };
    txn(&mut store, delete_then_ignore).expect("txn");
    assert_eq!(store.range(&get("a")).expect("range").kvs, vec![KeyValue { lease: 5, ..kv("a", "", 5, 5, 1) }]);
}

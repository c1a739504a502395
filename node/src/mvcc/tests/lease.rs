//! Leases in the keyspace: grants, keys attached by puts, revokes deleting them at one revision,
//! registrations reusing leases, the change events, and everything surviving a reopen.

use super::*;
use crate::command::{LeaseGrantRequest, LeaseRevokeRequest, RegisterRequest};
use crate::mvcc::EventKind;

fn grant_ttl(store: &mut MvccStore, id: i64, ttl_secs: i64) -> CommandResponse {
    apply(store, Command::LeaseGrant(LeaseGrantRequest { id, ttl_secs }))
}

fn revoke(store: &mut MvccStore, id: i64) -> CommandResponse {
    apply(store, Command::LeaseRevoke(LeaseRevokeRequest { id }))
}

fn put_leased(store: &mut MvccStore, key: &str, lease: i64) -> CommandResponse {
    let request = PutRequest { key: key.into(), value: b"v".to_vec(), lease, ..PutRequest::default() };
    apply(store, Command::Put(request))
}

fn register(store: &mut MvccStore, lease_id: i64, ttl_secs: i64, keys: &[&str], value: &str) -> CommandResponse {
    let puts = keys.iter().map(|key| (key.as_bytes().to_vec(), value.as_bytes().to_vec())).collect();
    apply(store, Command::Register(RegisterRequest { lease_id, ttl_secs, puts }))
}

fn lease_keys(store: &MvccStore, id: i64) -> Vec<String> {
    store
        .lease(id)
        .map(|lease| lease.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn a_put_with_an_unknown_lease_is_refused_and_changes_nothing() {
    let (_, mut store) = new_store();
    assert_eq!(put_leased(&mut store, "a", 7), CommandResponse::Rejected(MvccError::LeaseNotFound));
    assert_eq!(store.current_revision(), 1);
    let request = TxnRequest {
        success: vec![RequestOp::Put(PutRequest { key: "a".into(), lease: 7, ..PutRequest::default() })],
        ..TxnRequest::default()
    };
    assert_eq!(txn(&mut store, request), Err(MvccError::LeaseNotFound));
}

#[test]
fn granting_an_existing_id_is_refused() {
    let (_, mut store) = new_store();
    assert!(matches!(grant_ttl(&mut store, 7, 10), CommandResponse::LeaseGrant(_)));
    assert_eq!(grant_ttl(&mut store, 7, 10), CommandResponse::Rejected(MvccError::LeaseExists));
    assert_eq!(store.current_revision(), 1, "grants do not change the revision, as in etcd");
}

#[test]
fn revoke_deletes_the_keys_at_one_revision_in_key_order() {
    let (_, mut store) = new_store();
    grant_ttl(&mut store, 7, 10);
    put_leased(&mut store, "b", 7);
    put_leased(&mut store, "a", 7);
    put(&mut store, "c", "unleased");
    store.take_events();
    assert_eq!(lease_keys(&store, 7), vec!["a", "b"]);
    assert!(matches!(revoke(&mut store, 7), CommandResponse::LeaseRevoke(r) if r.header_revision == 5));
    let events: Vec<(EventKind, String, i64)> = store
        .take_events()
        .into_iter()
        .map(|e| (e.kind, String::from_utf8_lossy(&e.kv.key).into_owned(), e.kv.mod_revision))
        .collect();
    assert_eq!(events, vec![(EventKind::Delete, "a".into(), 5), (EventKind::Delete, "b".into(), 5)]);
    assert!(store.lease(7).is_none());
    assert_eq!(keys(&store.range(&span(b"a", b"z")).expect("range")), vec!["c"]);
    assert_eq!(revoke(&mut store, 7), CommandResponse::Rejected(MvccError::LeaseNotFound));
}

#[test]
fn a_key_moves_between_leases_and_leaves_on_delete() {
    let (_, mut store) = new_store();
    grant_ttl(&mut store, 1, 10);
    grant_ttl(&mut store, 2, 10);
    put_leased(&mut store, "k", 1);
    put_leased(&mut store, "k", 2);
    assert_eq!((lease_keys(&store, 1), lease_keys(&store, 2)), (vec![], vec!["k".to_string()]));
    delete(&mut store, "k", "");
    assert!(lease_keys(&store, 2).is_empty());
}

#[test]
fn leases_and_their_keys_survive_a_reopen() {
    let (engine, mut store) = new_store();
    grant_ttl(&mut store, 7, 30);
    put_leased(&mut store, "a", 7);
    put_leased(&mut store, "b", 7);
    delete(&mut store, "b", "");
    store.commit(WriteBatch::new()).expect("commit");
    let reopened = MvccStore::open(engine).expect("reopen");
    assert_eq!(reopened.leases(), vec![(7, 30)]);
    assert_eq!(lease_keys(&reopened, 7), vec!["a"]);
}

/// Lease ids at the edges of i64. Negative ids (etcd lets clients choose them) are stored
/// big-endian with a first byte of 0xff, which a scan ending at `prefix + 0xff` lost.
const EDGE_LEASE_IDS: [i64; 5] = [i64::MIN, -5, -1, 1, i64::MAX];

#[test]
fn leases_with_ids_at_the_edges_survive_a_reopen_and_revoke_their_keys() {
    let (engine, mut store) = new_store();
    for id in EDGE_LEASE_IDS {
        assert!(matches!(grant_ttl(&mut store, id, 30), CommandResponse::LeaseGrant(_)), "grant {id}");
        assert!(matches!(put_leased(&mut store, &format!("k{id}"), id), CommandResponse::Put(_)), "put on {id}");
    }
    store.commit(WriteBatch::new()).expect("commit");
    let mut reopened = MvccStore::open(engine).expect("reopen");
    let expected: Vec<(i64, i64)> = EDGE_LEASE_IDS.iter().map(|id| (*id, 30)).collect();
    assert_eq!(reopened.leases(), expected);
    for id in EDGE_LEASE_IDS {
        assert_eq!(lease_keys(&reopened, id), vec![format!("k{id}")], "keys of lease {id}");
        assert!(matches!(revoke(&mut reopened, id), CommandResponse::LeaseRevoke(_)), "revoke {id}");
        assert_eq!(reopened.range(&get(&format!("k{id}"))).expect("range").count, 0, "key of lease {id}");
    }
}

#[test]
fn registering_again_reuses_the_lease_and_writes_nothing_when_unchanged() {
    let (_, mut store) = new_store();
    let first = register(&mut store, 11, 10, &["/r/a"], "v1");
    assert!(matches!(first, CommandResponse::Register(ref r) if r.lease_id == 11 && !r.reused));
    let revision = store.current_revision();
    let again = register(&mut store, 12, 10, &["/r/a"], "v1");
    assert!(matches!(again, CommandResponse::Register(ref r) if r.lease_id == 11 && r.reused));
    assert_eq!(store.current_revision(), revision, "an unchanged registration writes nothing");
    let changed = register(&mut store, 13, 10, &["/r/a"], "v2");
    assert!(matches!(changed, CommandResponse::Register(ref r) if r.lease_id == 11 && r.reused));
    assert_eq!(store.current_revision(), revision + 1);
    // Another TTL gets a new lease; the old one, left without keys, is forgotten.
    let new_ttl = register(&mut store, 14, 20, &["/r/a"], "v2");
    assert!(matches!(new_ttl, CommandResponse::Register(ref r) if r.lease_id == 14 && !r.reused));
    assert_eq!(store.leases(), vec![(14, 20)]);
}

#[test]
fn history_returns_whole_revisions_and_refuses_compacted_starts() {
    let (_, mut store) = new_store();
    put(&mut store, "a", "1");
    let request = TxnRequest { success: vec![put_op("b", "2"), put_op("c", "3")], ..TxnRequest::default() };
    txn(&mut store, request).expect("txn");
    delete(&mut store, "a", "");
    store.commit(WriteBatch::new()).expect("commit");
    let page = store.history(2, 4, 2).expect("history");
    let revisions: Vec<i64> = page.events.iter().map(|e| e.revision()).collect();
    assert_eq!(revisions, vec![2, 3, 3], "the page ends after a whole revision");
    assert_eq!(page.next_revision, 4);
    let rest = store.history(page.next_revision, 4, 2).expect("history");
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0].kind, EventKind::Delete);
    assert_eq!(rest.next_revision, 5);
    compact(&mut store, 3);
    store.commit(WriteBatch::new()).expect("commit");
    assert_eq!(
        store.history(2, 4, 10).map(|_| ()).map_err(ReadError::rejected),
        Err(MvccError::Compacted { compact_revision: 3 })
    );
}

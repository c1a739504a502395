//! A member whose own storage is broken stops; it never answers. Engine failures while applying
//! come out of `apply` as `StorageError` (the state machine hands that to openraft, which stops
//! the member), never as `CommandResponse::Rejected`, which is a replicated answer every member
//! must give alike.

use super::groups::{claim, join, publish, settle};
use super::*;
use crate::command::{GroupClaimRequest, LeaseGrantRequest, TrimTopicRequest};
use crate::storage::FaultyEngine;

fn faulty_store() -> (Arc<FaultyEngine>, MvccStore) {
    let engine = Arc::new(FaultyEngine::new());
    let store = MvccStore::open(engine.clone()).expect("open");
    (engine, store)
}

#[test]
fn an_engine_failure_while_dead_lettering_is_fatal_not_a_rejection() {
    let (engine, mut store) = faulty_store();
    publish(&mut store, "t", 1, 1_000);
    join(&mut store, "g", 0, Some(0));
    assert_eq!(claim(&mut store, "g", 1, 1_000), [0]);
    settle(&mut store, "g", &[], &[0]);
    // Committed, so the dead letter reads the event from the engine, not from the staged changes.
    store.commit(WriteBatch::new()).expect("commit");

    engine.fail_reads();
    let request = GroupClaimRequest {
        topic: "t".into(),
        group: "g".into(),
        consumer: "c".into(),
        max: 1,
        auto_ack: false,
        now_ms: 1_001,
    };
    let outcome = store.apply(&Command::GroupClaim(request));
    assert!(outcome.is_err(), "the claim must stop this member, not answer: {outcome:?}");
}

#[test]
fn an_engine_failure_while_trimming_is_fatal_not_a_rejection() {
    let (engine, mut store) = faulty_store();
    publish(&mut store, "t", 3, 1_000);
    store.commit(WriteBatch::new()).expect("commit");

    engine.fail_reads();
    let outcome = store.apply(&Command::TrimTopic(TrimTopicRequest { topic: "t".into(), before: 2 }));
    assert!(outcome.is_err(), "the trim must stop this member, not answer: {outcome:?}");
}

#[test]
fn a_rule_refusal_is_still_an_answer() {
    // The other side of the boundary: what etcd's rules refuse, every member refuses alike.
    let (_, mut store) = faulty_store();
    let grant = Command::LeaseGrant(LeaseGrantRequest { id: 7, ttl_secs: 60 });
    apply(&mut store, grant.clone());
    assert_eq!(apply(&mut store, grant), CommandResponse::Rejected(MvccError::LeaseExists));
}

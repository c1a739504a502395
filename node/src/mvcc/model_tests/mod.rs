//! Property test: `MvccStore` against a deliberately naive model of every command it applies.
//!
//! The model (`model` for etcd's keyspace and leases, `events` for topics and groups) keeps a
//! full copy of the keyspace for every revision and re-derives each answer from those
//! snapshots, sharing no code with the store. Random command sequences (`strategies`) over small
//! alphabets of keys, lease ids (the edges of i64 and arbitrary ones), topics and groups run on
//! both. Every response and every change a write reports for watchers must be identical; after a
//! reopen of the store from its engine, a snapshot install into another engine, and at the end,
//! the whole observable state must be too: every readable revision, leases and their keys,
//! topics, groups, and the history of changes.
//!
//! etcd writes under a reserved prefix (`command::check_reserved`) are refused before they are
//! proposed and never reach apply, so they are not applied here either.

use std::sync::{Arc, RwLock};

use proptest::prelude::*;

use crate::command::{Command, CompactRequest, RangeRequest, TrimTopicRequest};
use crate::raft::snapshot;
use crate::storage::{Engine, MemoryEngine, RocksEngine, WriteBatch};

use super::{hash_state, MvccStore, ReadError};

mod events;
mod model;
mod strategies;

use model::Model;
use strategies::Mix;

#[derive(Clone, Debug)]
enum Step {
    Apply(Command),
    /// Compact to `current - back`.
    Compact {
        back: i64,
    },
    /// Range at `current - back` (`None`: revision 0).
    Range {
        request: RangeRequest,
        back: Option<i64>,
    },
    /// The leader's retention decision for `topic` at `now_ms`, then its TrimTopic if it cuts.
    RetentionTrim {
        topic: String,
        now_ms: i64,
    },
    Commit,
    /// A restart: the store opened again from its engine.
    Reopen,
    /// A lagging member catching up: the engine written to a snapshot file and installed into
    /// a fresh engine, or into the one left by the previous install (stale state to replace).
    Install {
        into_stale: bool,
    },
}

// ---- running both ----

fn all_keys_at(revision: i64) -> RangeRequest {
    RangeRequest { key: Vec::new(), range_end: vec![0], revision, ..RangeRequest::default() }
}

/// Every answer that depends on the state: revisions, all keys at every readable revision,
/// leases and their keys, topics and their groups.
fn assert_same_state(store: &MvccStore, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.current_revision(), model.current());
    prop_assert_eq!(store.compact_revision(), model.compacted.max(0));
    prop_assert_eq!(store.key_count(), model.at(model.current()).len());
    let store_leases: Vec<(i64, i64)> = store.leases();
    let model_leases: Vec<(i64, i64)> = model.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect();
    prop_assert_eq!(store_leases, model_leases);
    for (id, keys) in model.lease_keys() {
        let store_keys: Vec<Vec<u8>> = store.lease(id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default();
        prop_assert_eq!(store_keys, keys, "keys of lease {}", id);
    }
    for revision in model.compacted.max(1) - 1..=model.current() + 1 {
        prop_assert_eq!(
            store.range(&all_keys_at(revision)).map_err(ReadError::rejected),
            model.top_range(&all_keys_at(revision)),
            "revision {}",
            revision
        );
    }
    prop_assert_eq!(store.topics(), model.topic_states());
    for topic in model.topics.keys().map(String::as_str).chain(strategies::TOPICS) {
        prop_assert_eq!(store.groups(topic), model.group_states(topic), "groups of {}", topic);
    }
    Ok(())
}

/// The changes the engine holds above the compaction point, read back as for a watcher that
/// starts in the past. Only committed changes are there: the caller commits first.
fn assert_same_history(store: &MvccStore, model: &Model) -> Result<(), TestCaseError> {
    let from = model.compacted + 1;
    let page = store.history(from, model.current(), usize::MAX).expect("history");
    let expect: Vec<_> = model.changes.iter().filter(|change| change.revision() >= from).cloned().collect();
    prop_assert_eq!(page.events, expect, "history from {}", from);
    prop_assert_eq!(page.next_revision, model.current() + 1);
    Ok(())
}

/// Whether the proposal gate refuses `command` for writing under a reserved prefix. Asked of
/// that check alone: `validate` may answer an earlier refusal first (an empty key), and the
/// gate's other refusals are of requests the store still answers deterministically, which this
/// test keeps applying.
fn refused_before_proposal(command: &Command) -> bool {
    crate::command::check_reserved(command).is_err()
}

/// Applies `command` to both: the answers, and the changes reported for watchers, must agree.
fn apply(store: &mut MvccStore, model: &mut Model, command: &Command) -> Result<(), TestCaseError> {
    if refused_before_proposal(command) {
        return Ok(());
    }
    let expect = model.apply(command);
    prop_assert_eq!(store.apply(command).expect("apply"), expect, "{:?}", command);
    prop_assert_eq!(store.take_events(), model.take_changes(), "changes of {:?}", command);
    Ok(())
}

/// Writes `source`'s snapshot file, installs it into `target` and opens a store there, as a
/// member that receives a snapshot does; both engines must hash alike (etcd's Hash).
fn install(
    store: MvccStore,
    source: &Arc<dyn Engine>,
    target: &Arc<dyn Engine>,
    dir: &std::path::Path,
) -> Result<MvccStore, TestCaseError> {
    let meta = crate::raft::SnapshotMeta { last_log_id: None, last_membership: Default::default() };
    let path = dir.join("state.snap");
    snapshot::write(source, &meta, &path, &mut || {}).expect("write the snapshot");
    snapshot::install(target, &path).expect("install the snapshot");
    let hash = |store: MvccStore| {
        let lock = RwLock::new(store);
        let hash = hash_state(lock.read().expect("lock"), &[]).expect("hash");
        (hash, lock.into_inner().expect("lock"))
    };
    let (source_hash, _) = hash(store);
    let (target_hash, installed) = hash(MvccStore::open(target.clone()).expect("open the installed state"));
    prop_assert_eq!(source_hash, target_hash);
    Ok(installed)
}

/// Runs `steps` on the model and on a store over an engine from `new_engine`.
fn run(steps: &[Step], mut new_engine: impl FnMut() -> Arc<dyn Engine>) -> Result<(), TestCaseError> {
    let snapshots = tempfile::tempdir().expect("tempdir");
    let mut engine = new_engine();
    // The engine the last install moved away from: a member whose state is behind.
    let mut stale: Option<Arc<dyn Engine>> = None;
    let mut store = MvccStore::open(engine.clone()).expect("open");
    let mut model = Model::new();
    for step in steps {
        match step {
            Step::Apply(command) => apply(&mut store, &mut model, command)?,
            Step::Compact { back } => {
                let command = Command::Compact(CompactRequest { revision: model.current() - back, physical: true });
                apply(&mut store, &mut model, &command)?;
            }
            Step::Range { request, back } => {
                let revision = back.map_or(0, |back| model.current() - back);
                let request = RangeRequest { revision, ..request.clone() };
                prop_assert_eq!(
                    store.range(&request).map_err(ReadError::rejected),
                    model.top_range(&request),
                    "{:?}",
                    request
                );
            }
            Step::RetentionTrim { topic, now_ms } => {
                let cut = store.retention_cut(topic, *now_ms).expect("retention cut");
                prop_assert_eq!(cut, model.retention_cut(topic, *now_ms), "cut of {} at {}", topic, now_ms);
                if let Some(before) = cut {
                    let trim = Command::TrimTopic(TrimTopicRequest { topic: topic.clone(), before });
                    apply(&mut store, &mut model, &trim)?;
                }
            }
            Step::Commit => store.commit(WriteBatch::new()).expect("commit"),
            Step::Reopen => {
                store.commit(WriteBatch::new()).expect("commit");
                store = MvccStore::open(engine.clone()).expect("reopen");
                assert_same_state(&store, &model)?;
                assert_same_history(&store, &model)?;
            }
            Step::Install { into_stale } => {
                store.commit(WriteBatch::new()).expect("commit");
                let target = match stale.take() {
                    Some(stale) if *into_stale => stale,
                    _ => new_engine(),
                };
                store = install(store, &engine, &target, snapshots.path())?;
                stale = Some(std::mem::replace(&mut engine, target));
                assert_same_state(&store, &model)?;
                assert_same_history(&store, &model)?;
            }
        }
        prop_assert_eq!(store.current_revision(), model.current());
    }
    assert_same_state(&store, &model)?;
    store.commit(WriteBatch::new()).expect("commit");
    assert_same_history(&store, &model)?;
    assert_same_state(&MvccStore::open(engine).expect("reopen"), &model)
}

fn on_memory(steps: &[Step]) -> Result<(), TestCaseError> {
    run(steps, || Arc::new(MemoryEngine::new()))
}

fn on_rocksdb(steps: &[Step]) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().expect("tempdir");
    let mut engines = 0;
    run(steps, || {
        engines += 1;
        Arc::new(RocksEngine::open(&root.path().join(engines.to_string())).expect("open"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn keyspace_on_memory_matches_model(steps in strategies::steps(Mix::Keyspace, 1..60)) {
        on_memory(&steps)?;
    }

    #[test]
    fn events_on_memory_match_model(steps in strategies::steps(Mix::Events, 1..80)) {
        on_memory(&steps)?;
    }
}

proptest! {
    // RocksDB opens cost more: fewer cases, the same steps.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn keyspace_on_rocksdb_matches_model(steps in strategies::steps(Mix::Keyspace, 1..60)) {
        on_rocksdb(&steps)?;
    }

    #[test]
    fn events_on_rocksdb_match_model(steps in strategies::steps(Mix::Events, 1..80)) {
        on_rocksdb(&steps)?;
    }
}

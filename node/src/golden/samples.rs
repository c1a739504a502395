//! The golden samples' values: representative ones, every field away from its default, and
//! how this build writes and reads each (the same functions the member uses, wherever the
//! member has one). Here the stored records (log, Raft and state metadata, keyspace values)
//! and the data dir's files; the commands are in `command_samples.rs`, auth's in
//! `auth_samples.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use keel_model::group::{Claim, GroupState};
use openraft::{EntryPayload, Membership};

use super::command_samples::{command_name, commands, group_options, member_attributes, put, retention, secret_key};
use super::{json_decode, json_encode, postcard_decode, postcard_encode, Sample};
use crate::command::*;
use crate::member::format;
use crate::member::{Identity, IDENTITY_KEY};
use crate::mvcc::events::{event_key, StoredEvent, TopicState};
use crate::mvcc::stored::*;
use crate::raft::stored::*;
use crate::raft::watermark::{self, Mark, Watermark};
use crate::raft::{self, snapshot, Entry, LogId, MemberNode, SnapshotMeta, StoredMembership, Vote};
use crate::storage::{Direction, Durability, Engine, KeyRange, MemoryEngine, Table, WriteBatch};

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId::new(openraft::vote::leader_id_adv::LeaderId { term, node_id }, index)
}

/// Three voters and a learner.
fn membership() -> Membership<u64, MemberNode> {
    let node =
        |name: &str, port: u16| MemberNode { name: name.into(), peer_urls: vec![format!("http://127.0.0.1:{port}")] };
    let nodes: BTreeMap<u64, MemberNode> = [
        (1, node("m1", 2381)),
        (2, node("m2", 2382)),
        (0xff00_0000_0000_0003, node("m3", 2383)),
        (4, node("m4", 2384)),
    ]
    .into_iter()
    .collect();
    let voters: BTreeSet<u64> = [1, 2, 0xff00_0000_0000_0003].into_iter().collect();
    Membership::new(vec![voters], nodes).expect("a valid membership")
}

fn put_entry() -> Entry {
    Entry { log_id: log_id(3, 0x1234_5678, 42), payload: EntryPayload::Normal(Command::Put(put())) }
}

fn log_samples() -> Vec<Sample> {
    let membership = Entry { log_id: log_id(1, 1, 1), payload: EntryPayload::Membership(membership()) };
    let blank = Entry { log_id: log_id(2, 2, 2), payload: EntryPayload::Blank };
    vec![
        Sample::new(
            "log-entry-normal",
            "a Raft log entry holding a command, in table `log` at its big-endian index",
            Some(index_key(42).to_vec()),
            put_entry(),
            raft::encode_entry,
            raft::decode_entry,
        ),
        Sample::new(
            "log-entry-membership",
            "a Raft log entry holding a membership of three voters and a learner",
            Some(index_key(1).to_vec()),
            membership,
            raft::encode_entry,
            raft::decode_entry,
        ),
        Sample::new(
            "log-entry-blank",
            "a Raft log entry with no payload (a new leader's first)",
            Some(index_key(2).to_vec()),
            blank,
            raft::encode_entry,
            raft::decode_entry,
        ),
        Sample::older(
            "log-entry-before-versions",
            "a Raft log entry as Keel wrote them before entries named their version: the bare postcard",
            Some(index_key(42).to_vec()),
            raft::encode(&put_entry()).expect("encode"),
            put_entry(),
            raft::decode_entry,
        ),
    ]
}

fn raft_meta_samples() -> Vec<Sample> {
    let identity = Identity { member_id: 0xff00_0000_0000_0001, cluster_id: 0x0123_4567_89ab_cdef, name: "m0".into() };
    let meta = SnapshotMeta { last_log_id: Some(log_id(3, 1, 42)), last_membership: Default::default() };
    vec![
        Sample::new(
            "raft-meta-identity",
            "the member's identity, fixed when its data dir was created (table `raft_meta`)",
            Some(IDENTITY_KEY.to_vec()),
            identity,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "raft-meta-vote",
            "the vote (table `raft_meta`)",
            Some(VOTE_KEY.to_vec()),
            Vote::new_committed(5, 0xff00_0000_0000_0001),
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "raft-meta-committed",
            "the committed log id (table `raft_meta`)",
            Some(COMMITTED_KEY.to_vec()),
            Some(log_id(3, 1, 41)),
            postcard_encode,
            postcard_decode::<Option<LogId>>,
        ),
        Sample::new(
            "raft-meta-purged",
            "the last purged log id (table `raft_meta`)",
            Some(PURGED_KEY.to_vec()),
            log_id(2, 1, 10),
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "raft-meta-installing-snapshot",
            "the name of the snapshot file being installed (table `raft_meta`)",
            Some(INSTALLING_KEY.to_vec()),
            snapshot::file_name(&meta),
            |name: &String| Ok(name.clone().into_bytes()),
            |bytes| String::from_utf8(bytes.to_vec()).map_err(io::Error::other),
        ),
    ]
}

fn state_meta_samples() -> Vec<Sample> {
    let topic = TopicState {
        next_offset: 1_000,
        last_timestamp_ms: 1_700_000_000_123,
        first_offset: 500,
        bytes: 65_536,
        retention: retention(),
    };
    let remembered =
        RememberedId { topic: "orders".into(), id: "e-1".into(), offset: 999, timestamp_ms: 1_700_000_000_123 };
    let mut pending = BTreeMap::new();
    pending.insert(7, Claim { consumer: "billing-1".into(), deadline_ms: 1_700_000_030_000, deliveries: 2 });
    pending.insert(9, Claim { consumer: "billing-2".into(), deadline_ms: 1_700_000_031_000, deliveries: 1 });
    let group = GroupState { cursor: 10, pending, options: group_options() };
    let lease = LeaseRecord { id: -5, ttl_secs: 60 };
    let alarm = AlarmMember { member_id: 0x8e9e_05c5_2164_694d, alarm: AlarmType::Corrupt };
    vec![
        Sample::new(
            "state-applied",
            "the log id the state machine has applied up to (table `state_meta`)",
            Some(APPLIED_KEY.to_vec()),
            Some(log_id(3, 1, 42)),
            postcard_encode,
            postcard_decode::<Option<LogId>>,
        ),
        Sample::new(
            "state-membership",
            "the last applied membership (table `state_meta`)",
            Some(MEMBERSHIP_KEY.to_vec()),
            StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "state-member-attributes",
            "a member's published name and client URLs, keyed by its id (table `state_meta`)",
            Some(member_key(member_attributes().member_id)),
            member_attributes(),
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "state-secret-key",
            "the cluster's key for config secrets (table `state_meta`)",
            Some(SECRET_KEY_KEY.to_vec()),
            secret_key(),
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-current-revision",
            "the keyspace's current revision, big-endian (table `state_meta`)",
            Some(CURRENT_REVISION_KEY.to_vec()),
            1_234_567_i64,
            |revision| Ok(revision.to_be_bytes().to_vec()),
            |bytes| <[u8; 8]>::try_from(bytes).map(i64::from_be_bytes).map_err(io::Error::other),
        ),
        Sample::new(
            "mvcc-compact-revision",
            "the keyspace's compact revision, big-endian (table `state_meta`)",
            Some(COMPACT_REVISION_KEY.to_vec()),
            1_000_i64,
            |revision| Ok(revision.to_be_bytes().to_vec()),
            |bytes| <[u8; 8]>::try_from(bytes).map(i64::from_be_bytes).map_err(io::Error::other),
        ),
        Sample::new(
            "mvcc-lease",
            "a lease, keyed by its big-endian id: a negative one starts with 0xff (table `state_meta`)",
            Some(lease_key(lease.id)),
            lease,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-topic",
            "a topic's offsets, time, size and retention (table `state_meta`)",
            Some(topic_key("orders")),
            topic,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-topic-id",
            "an event id remembered for de-duplication (table `state_meta`)",
            Some(id_key("orders", "e-1")),
            remembered,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-group",
            "a consumer group's cursor, pending deliveries and options (table `state_meta`)",
            Some(group_key("orders", "billing")),
            group,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-alarm",
            "an active alarm, keyed by its member's id in hex and its type (table `state_meta`)",
            Some(alarm_key(alarm)),
            alarm,
            postcard_encode,
            postcard_decode,
        ),
    ]
}

fn kv_samples() -> Vec<Sample> {
    let record = KeyValue {
        key: b"/app/db/host".to_vec(),
        create_revision: 5,
        mod_revision: 7,
        version: 3,
        value: vec![0x00, 0xff, b'v'],
        lease: -5,
    };
    let tombstone = KeyValue { key: b"/app/db/host".to_vec(), mod_revision: 8, ..KeyValue::default() };
    vec![
        Sample::new(
            "kv-record",
            "a key's value at one revision, keyed by (main, sub) revision (table `kv`)",
            Some(Revision::new(7, 1).engine_key(RecordKind::Value)),
            record,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "kv-tombstone",
            "a key's deletion, keyed by its revision and a `t` (table `kv`)",
            Some(Revision::new(8, 0).engine_key(RecordKind::Tombstone)),
            tombstone,
            postcard_encode,
            postcard_decode,
        ),
    ]
}

/// Values Keel itself writes into the etcd keyspace, which etcd clients read too.
fn keyspace_value_samples() -> Vec<Sample> {
    let mut metadata = BTreeMap::new();
    metadata.insert("trace".to_string(), "abc".to_string());
    let event = StoredEvent {
        topic: "orders".into(),
        offset: 42,
        id: "e-1".into(),
        timestamp_ms: 1_700_000_000_123,
        metadata: metadata.clone(),
        payload: "AQID/w==".into(),
    };
    let table = crate::store::Table::new("db", "t").expect("a valid table");
    let record =
        crate::store::Record { key: "k".into(), value: vec![1, 2, 3, 0xff], metadata, expiry_ms: 4_102_444_800_000 };
    vec![
        Sample::new(
            "keyspace-event",
            "an event of a topic, JSON at its offset's key",
            Some(event_key("orders", 42)),
            event,
            json_encode,
            json_decode,
        ),
        Sample::new(
            "keyspace-store-record",
            "a Store record's JSON envelope at its key",
            Some(table.record_key("k")),
            record,
            |record| Ok(crate::store::encode(&record.value, record.metadata.clone(), record.expiry_ms)),
            |bytes| {
                let table = crate::store::Table::new("db", "t").map_err(io::Error::other)?;
                let kv = KeyValue { key: table.record_key("k"), value: bytes.to_vec(), ..KeyValue::default() };
                crate::store::decode(&table, &kv, 0).ok_or_else(|| io::Error::other("not a live store record"))
            },
        ),
        Sample::new(
            "keyspace-config-secret",
            "a sealed config secret leaf: JSON envelope of AES-256-GCM under the cluster key",
            None,
            serde_json::json!({"password": "hunter2", "port": 5432}),
            |leaf| {
                let sealed = crate::dynamic_config::secret::seal_with_nonce(&secret_key(), leaf, [7; 12])
                    .map_err(io::Error::other)?;
                json_encode(&sealed)
            },
            |bytes| {
                let envelope: serde_json::Value = json_decode(bytes)?;
                crate::dynamic_config::secret::open(&secret_key(), &envelope).map_err(io::Error::other)
            },
        ),
    ]
}

/// A snapshot's metadata and its records, by table.
type SnapshotContent = (SnapshotMeta, Vec<(Table, Vec<u8>, Vec<u8>)>);

fn snapshot_content() -> SnapshotContent {
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(3, 1, 42)),
        last_membership: StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
    };
    let records = vec![
        (Table::Kv, Revision::new(2, 0).engine_key(RecordKind::Value), b"record".to_vec()),
        (Table::Kv, vec![0xff; 3], Vec::new()),
        (Table::StateMeta, CURRENT_REVISION_KEY.to_vec(), 2_i64.to_be_bytes().to_vec()),
        (Table::StateMeta, lease_key(-5), b"lease".to_vec()),
    ];
    (meta, records)
}

/// The snapshot file of `content`, as `snapshot::write` writes it.
fn write_snapshot((meta, records): &SnapshotContent) -> io::Result<Vec<u8>> {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let mut batch = WriteBatch::new();
    for (table, key, value) in records {
        batch.put(*table, key.clone(), value.clone());
    }
    engine.write(batch, Durability::Sync).map_err(io::Error::other)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sample.snap");
    snapshot::write(&engine, meta, &path, &mut || {})?;
    std::fs::read(path)
}

/// The content a snapshot file installs, as `snapshot::install` installs it.
fn install_snapshot(bytes: &[u8]) -> io::Result<SnapshotContent> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sample.snap");
    std::fs::write(&path, bytes)?;
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let meta = snapshot::install(&engine, &path)?;
    let mut records = Vec::new();
    for table in Table::ALL {
        engine
            .scan(table, KeyRange::all(), Direction::Forward, &mut |key, value| {
                records.push((table, key.to_vec(), value.to_vec()));
                true
            })
            .map_err(io::Error::other)?;
    }
    Ok((meta, records))
}

fn file_samples() -> Vec<Sample> {
    let trailed = write_snapshot(&snapshot_content()).expect("a snapshot");
    // Version 1, written before the trailer: the same body under its own magic, no trailer.
    let mut untrailed = trailed.clone();
    untrailed.truncate(trailed.len() - 40);
    untrailed[..8].copy_from_slice(b"KEELSNP1");
    vec![
        Sample::new(
            "file-keel-format",
            "the data dir's format version file, <data-dir>/keel-format",
            None,
            format::CURRENT,
            |version| Ok(format::encode(*version)),
            |bytes| format::parse(bytes).ok_or_else(|| io::Error::other("not a version")),
        ),
        Sample::new(
            "file-raft-watermark",
            "the durability watermark file, <data-dir>/raft-watermark",
            None,
            Mark { log_end: 43, vote_term: 5 },
            |mark| {
                let dir = tempfile::tempdir()?;
                let path = dir.path().join(watermark::FILE_NAME);
                Watermark::open(&path, *mark)?;
                std::fs::read(path)
            },
            |bytes| {
                let dir = tempfile::tempdir()?;
                let path = dir.path().join(watermark::FILE_NAME);
                std::fs::write(&path, bytes)?;
                watermark::read(&path)?.ok_or_else(|| io::Error::other("an empty watermark"))
            },
        ),
        Sample::new(
            "file-snapshot",
            "a snapshot file (version 2: SHA-256 trailer), <data-dir>/snapshots/<index>.snap",
            None,
            snapshot_content(),
            write_snapshot,
            install_snapshot,
        ),
        Sample::older(
            "file-snapshot-before-trailer",
            "a snapshot file of version 1, written before the trailer existed",
            None,
            untrailed,
            snapshot_content(),
            install_snapshot,
        ),
    ]
}

/// Every sample, in the order of the tables and files they live in.
pub(super) fn all_samples() -> Vec<Sample> {
    let commands = commands().into_iter().chain(super::auth_samples::commands()).map(|command| {
        Sample::new(
            command_name(&command),
            "a command, as log entries and forwarded writes carry it",
            None,
            command,
            postcard_encode,
            postcard_decode,
        )
    });
    commands
        .chain(log_samples())
        .chain(raft_meta_samples())
        .chain(state_meta_samples())
        .chain(super::auth_samples::state_meta_samples())
        .chain(kv_samples())
        .chain(keyspace_value_samples())
        .chain(file_samples())
        .collect()
}

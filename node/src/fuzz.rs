//! Entry points for fuzzing: one function per decoder of bytes that reach a member from outside
//! (peers, its own disk, clients). The peer and disk ones are here; the others live beside
//! their decoders and are listed in `TARGETS`. Each must return normally on every input; a panic, an abort,
//! a stack overflow or a hang is a bug. `node/fuzz/` runs them under libFuzzer (`cargo fuzz`,
//! long runs); the property tests below run each on random bytes and on mutations of valid
//! samples in the normal test suite (short runs).
//!
//! Nothing here is used by the member itself.

use std::io::Cursor;

use openraft::raft::{AppendEntriesRequest, VoteRequest};

use crate::command::{self, Command, Origin};
use crate::raft::{self, Entry, ForwardRequest, SnapshotMeta, TypeConfig, Vote};

/// An AppendEntries from a peer: decoded, then checked as the peer service checks it.
pub fn peer_append_entries(data: &[u8]) {
    if let Ok(rpc) = raft::decode::<AppendEntriesRequest<TypeConfig>>(data) {
        let _ = raft::peer_checks::append_entries(&rpc, 1);
        for entry in &rpc.entries {
            if let openraft::EntryPayload::Normal(command) = &entry.payload {
                let _ = command::validate(command, Origin::Member(1), crate::limits::REQUEST_BYTES_MAX);
            }
        }
    }
}

/// An answer from a peer, as each of the member's peer calls reads one: an append stream's
/// result, a unary AppendEntries', a vote's, a snapshot's, a transfer's, a forwarded request's.
pub fn peer_answer(data: &[u8]) {
    let _ = raft::decode::<openraft::raft::StreamAppendResult<TypeConfig>>(data);
    let _ = raft::decode::<openraft::raft::AppendEntriesResponse<TypeConfig>>(data);
    let _ = raft::decode::<openraft::raft::VoteResponse<TypeConfig>>(data);
    let _ = raft::decode::<openraft::raft::SnapshotResponse<TypeConfig>>(data);
    let _ = raft::decode::<openraft::raft::TransferLeaderResponse<TypeConfig>>(data);
    let _ = raft::decode::<raft::ForwardResponse>(data);
    let _ = raft::decode::<(u64, raft::ForwardResponse)>(data);
}

/// A vote request from a peer.
pub fn peer_vote(data: &[u8]) {
    if let Ok(rpc) = raft::decode::<VoteRequest<TypeConfig>>(data) {
        let _ = raft::peer_checks::vote(&rpc, 1);
    }
}

/// A leader's request to hand its leadership over.
pub fn peer_transfer_leader(data: &[u8]) {
    if let Ok(rpc) = raft::decode::<openraft::raft::TransferLeaderRequest<TypeConfig>>(data) {
        let _ = raft::peer_checks::transfer_leader(&rpc, 1);
    }
}

/// A request a follower forwards, unary or on a forward stream (after its id), with the checks
/// the leader runs on its writes.
pub fn peer_forward(data: &[u8]) {
    if let Ok((_id, request)) = raft::decode_forwarded_request(data) {
        check_forwarded(request);
    }
    if let Ok(request) = raft::decode::<ForwardRequest>(data) {
        check_forwarded(request);
    }
}

fn check_forwarded(request: ForwardRequest) {
    let commands = match request {
        ForwardRequest::Write(command) => vec![command],
        ForwardRequest::Writes(commands) => commands,
        _ => return,
    };
    for command in &commands {
        let _ = command::validate(command, Origin::Member(1), crate::limits::REQUEST_BYTES_MAX);
    }
}

/// The first chunk's header of a streamed snapshot.
pub fn peer_snapshot_header(data: &[u8]) {
    if let Ok((vote, meta)) = raft::decode::<(Vote, SnapshotMeta)>(data) {
        let _ = raft::peer_checks::snapshot(&vote, &meta, 1);
    }
}

/// A Raft log entry read back from the member's disk.
pub fn log_entry(data: &[u8]) {
    if let Ok(entry) = raft::decode_entry(data) {
        if let openraft::EntryPayload::Normal(command) = &entry.payload {
            let _ = command.to_string();
        }
    }
}

/// A command, as a log entry or a forwarded write carries it, and its checks.
pub fn command(data: &[u8]) {
    if let Ok(command) = raft::decode::<Command>(data) {
        let _ = command::validate(&command, Origin::Member(1), crate::limits::REQUEST_BYTES_MAX);
    }
}

/// A snapshot file, received from a peer or found on disk: its verification.
pub fn snapshot_file(data: &[u8]) {
    let _ = raft::snapshot::verify_from(Cursor::new(data), data.len() as u64);
}

/// Every entry point, by name: what `node/fuzz/` and the tests below iterate over.
/// A fuzz target: its name and its entry point.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("peer_append_entries", peer_append_entries),
    ("peer_vote", peer_vote),
    ("peer_answer", peer_answer),
    ("peer_transfer_leader", peer_transfer_leader),
    ("peer_forward", peer_forward),
    ("peer_snapshot_header", peer_snapshot_header),
    ("log_entry", log_entry),
    ("command", command),
    ("snapshot_file", snapshot_file),
    ("backup_file", crate::member::backup::fuzz_backup_file),
    ("client_authority_fix", crate::api::fuzz_authority_fix),
    ("client_hpack", crate::api::fuzz_hpack_decode),
    ("client_grpc_call_labels", crate::api::fuzz_call_labels),
    ("raft_watermark", crate::raft::watermark::fuzz_watermark),
    ("data_dir_format", crate::member::format::fuzz_parse),
    ("rocksdb_open_error", crate::storage::fuzz_open_error_text),
    ("config_assemble", crate::dynamic_config::fuzz_assemble),
    ("config_set", crate::dynamic_config::fuzz_set),
    ("store_record", crate::store::fuzz_decode),
    ("registry_registration", keel_client::registry::fuzz_registration),
    ("client_auth_token", crate::auth::jwt::fuzz_verify),
    ("client_micro_token", crate::auth::micro_token::fuzz_verify),
    ("config_file", crate::config::fuzz_config_file),
    ("client_certificate_cn", crate::tls::fuzz_common_name),
    ("gateway_request", crate::gateway::http::fuzz_request),
    ("gateway_reflection_answer", crate::gateway::schema::fuzz_reflection_answer),
    ("ui_key_param", crate::ui::fuzz_key_param),
];

/// Runs the target named `name` on `data` (what each libFuzzer target calls); an unknown name
/// is a bug in the fuzz crate.
pub fn run(name: &str, data: &[u8]) {
    match TARGETS.iter().find(|(target, _)| *target == name) {
        Some((_, target)) => target(data),
        None => panic!("no fuzz target named {name}"),
    }
}

/// Valid encodings for each target, which the tests (and a fuzzer's corpus) mutate.
pub fn samples(target: &str) -> Vec<Vec<u8>> {
    use crate::command::{PutRequest, RequestOp, TxnRequest};
    let put = Command::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..PutRequest::default() });
    let inner = TxnRequest { success: vec![RequestOp::Put(PutRequest::default())], ..TxnRequest::default() };
    let txn = Command::Txn(TxnRequest { success: vec![RequestOp::Txn(inner)], ..TxnRequest::default() });
    let encoded = |value: Result<Vec<u8>, std::io::Error>| value.unwrap_or_default();
    let leader = openraft::vote::leader_id_adv::LeaderId { term: 3, node_id: 1 };
    let entry = Entry { log_id: raft::LogId::new(leader, 42), payload: openraft::EntryPayload::Normal(txn.clone()) };
    match target {
        // As the log store writes it, and as it was written before entries named their version.
        "log_entry" => vec![encoded(raft::encode_entry(&entry)), encoded(raft::encode(&entry))],
        "command" => vec![encoded(raft::encode(&put)), encoded(raft::encode(&txn))],
        "peer_forward" => vec![
            encoded(raft::encode(&ForwardRequest::Write(put.clone()))),
            encoded(raft::encode(&ForwardRequest::Writes(vec![put.clone(), txn.clone()]))),
            encoded(raft::encode(&(7u64, ForwardRequest::Writes(vec![put, txn])))),
        ],
        "peer_answer" => {
            let matched: openraft::raft::StreamAppendResult<TypeConfig> = Ok(Some(entry.log_id));
            let conflict: openraft::raft::StreamAppendResult<TypeConfig> =
                Err(openraft::raft::StreamAppendError::Conflict(entry.log_id));
            vec![encoded(raft::encode(&matched)), encoded(raft::encode(&conflict))]
        }
        "snapshot_file" => vec![raft::snapshot::sample_file()],
        "backup_file" => vec![crate::member::backup::sample_backup()],
        "data_dir_format" => vec![crate::member::format::encode(crate::member::format::CURRENT)],
        "gateway_request" => vec![b"/greeter/say/hello\n{\"name\":\"Ada\"}".to_vec(), b"/v1/a/b\n{}".to_vec()],
        "gateway_reflection_answer" => vec![crate::gateway::schema::sample_reflection_answer()],
        "client_grpc_call_labels" => vec![b"/etcdserverpb.KV/Put\x000".to_vec(), b"/etcdserverpb.Watch/Watch".to_vec()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A sample with a few bytes flipped, cut or inserted.
    fn mutated(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let samples = if samples.is_empty() { vec![vec![0u8; 8]] } else { samples };
        (
            prop::sample::select(samples),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
        )
            .prop_map(|(mut bytes, edits)| {
                for (at, byte, kind) in edits {
                    if bytes.is_empty() {
                        bytes.push(byte);
                        continue;
                    }
                    let at = at.index(bytes.len());
                    match kind {
                        0 => bytes[at] ^= byte | 1,
                        1 => bytes.truncate(at),
                        _ => bytes.insert(at, byte),
                    }
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn decoders_of_outside_bytes_never_panic_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..4096)) {
            for (_, run) in TARGETS {
                run(&data);
            }
        }

        #[test]
        fn decoders_of_outside_bytes_never_panic_on_mutated_samples(
            (run, data) in prop::sample::select(TARGETS.to_vec())
                .prop_flat_map(|(name, run)| mutated(samples(name)).prop_map(move |data| (run, data)))
        ) {
            run(&data);
        }
    }

    #[test]
    fn the_fuzz_crate_has_one_target_per_entry_point() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("node/fuzz/fuzz_targets")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        files.sort();
        let mut names: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
        names.sort();
        assert_eq!(files, names);
    }

    #[test]
    fn samples_are_whole() {
        let file = raft::snapshot::sample_file();
        assert!(raft::snapshot::verify_from(Cursor::new(&file), file.len() as u64).is_ok());
        for (name, run) in TARGETS {
            for sample in samples(name) {
                assert!(!sample.is_empty(), "{name}");
                run(&sample);
            }
        }
    }
}

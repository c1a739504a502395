//! The peer port: strangers without the cluster's credentials, forged Raft messages, oversized
//! and deeply nested peer messages, aborted snapshot streams. Each attack comes from this test
//! process, on loopback, as the probe's did; then the cluster must still elect, write, keep
//! every acknowledged write and agree with itself, also after every member restarted.

use std::time::Duration;

use keel_node::command::{Command, PutRequest};
use keel_node::raft::{self as keel_raft, ForwardRequest, PeerCredentials, PeerSecret};
use keel_proto::peer::peer_client::PeerClient;
use keel_proto::peer::{RaftMessage, SnapshotChunk};
use keel_tests::{wait_for, Server, TestCluster, READY_TIMEOUT};
use openraft::raft::VoteRequest;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type Vote = keel_node::raft::Vote;

/// A peer client that presents no credentials at all: a stranger on the host.
async fn stranger(peer_url: &str) -> PeerClient<Channel> {
    PeerClient::new(keel_tests::grpc_channel(peer_url).await)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20)
}

/// A peer client that holds the cluster's secret and claims to be member `member_id`.
async fn insider(
    cluster: &TestCluster,
    peer_url: &str,
    member_id: u64,
) -> PeerClient<InterceptedService<Channel, PeerCredentials>> {
    let secret = std::fs::read(cluster.peer_secret_path()).expect("peer secret");
    let secret = PeerSecret::from_bytes(secret.trim_ascii_end());
    let credentials = PeerCredentials::new(&secret, member_id, cluster_id(cluster).await);
    PeerClient::with_interceptor(keel_tests::grpc_channel(peer_url).await, credentials)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(64 << 20)
}

async fn cluster_id(cluster: &TestCluster) -> u64 {
    let mut client = cluster.client().await;
    client.status().await.expect("status").header().expect("header").cluster_id()
}

/// The members' ids, in the order of `cluster.members`.
async fn member_ids(cluster: &TestCluster) -> Vec<u64> {
    let mut client = cluster.client().await;
    let members = client.member_list().await.expect("member list");
    cluster
        .members
        .iter()
        .map(|m| members.members().iter().find(|info| info.peer_urls().contains(&m.peer_url)).expect("listed").id())
        .collect()
}

fn message<T: serde::Serialize>(value: &T) -> RaftMessage {
    RaftMessage { data: keel_raft::encode(value).expect("encode") }
}

fn vote_request(term: u64, candidate: u64) -> VoteRequest<keel_node::raft::TypeConfig> {
    VoteRequest::new(Vote::new(term, candidate), None)
}

/// Writes `count` keys under `prefix` and answers them: the acknowledged writes that must
/// survive whatever comes next.
async fn write_keys(cluster: &TestCluster, prefix: &str, count: usize) -> Vec<String> {
    let mut client = cluster.client().await;
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}{i}");
        client.put(key.clone(), "v", None).await.expect("put");
        keys.push(key);
    }
    keys
}

/// Every member serves every key in `keys` from its own state, and all agree on the revision.
async fn all_members_hold(cluster: &TestCluster, keys: &[String]) {
    let mut revisions = Vec::new();
    for i in 0..cluster.members.len() {
        let mut client = cluster.member_client(i).await;
        for key in keys {
            let found = client.get(key.as_str(), None).await.expect("get");
            assert_eq!(found.kvs().len(), 1, "{} lost {key}\n{}", cluster.members[i].name, cluster.all_logs());
        }
        let serializable = etcd_client::GetOptions::new().with_serializable();
        let response = client.get("any", Some(serializable)).await.expect("get");
        revisions.push(response.header().expect("header").revision());
    }
    // A serializable read may trail by the writes in flight; none are, so they agree.
    assert!(revisions.windows(2).all(|w| w[0] == w[1]), "members disagree on the revision: {revisions:?}");
}

/// Restarts every member (SIGTERM, then start) and waits for the cluster: a poisoned vote or a
/// forged entry saved on disk would show here.
async fn restart_all(cluster: &mut TestCluster) {
    for i in 0..cluster.members.len() {
        cluster.terminate(i);
    }
    for i in 0..cluster.members.len() {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_can_neither_vote_append_forward_nor_send_snapshots() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let keys = write_keys(&cluster, "before/", 5).await;
    let ids = member_ids(&cluster).await;
    let target = &cluster.members[0].peer_url.clone();
    let mut peer = stranger(target).await;

    // The probe's killer: one vote with term u64::MAX, granted and saved, panicked openraft on
    // every start.
    let status = peer.vote(message(&vote_request(u64::MAX, ids[1]))).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // A forwarded put of any key.
    let put = Command::Put(PutRequest { key: b"stranger".to_vec(), value: b"x".to_vec(), ..PutRequest::default() });
    let status = peer.forward(message(&ForwardRequest::Write(put))).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    // A renamed member with a false client URL.
    let rename = Command::PublishMember(keel_node::command::MemberAttributes {
        member_id: ids[0],
        name: "evil".into(),
        client_urls: vec!["http://127.0.0.1:1".into()],
    });
    let status = peer.forward(message(&ForwardRequest::Write(rename))).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    // An AppendEntries as a fake leader.
    let append = openraft::raft::AppendEntriesRequest::<keel_node::raft::TypeConfig> {
        vote: Vote::new_committed(1_000, ids[1]),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let status = peer.append_entries(message(&append)).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    // The same on the append stream, refused before the stream opens.
    let status = peer.append_stream(futures::stream::iter(vec![message(&append)])).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The same on the forward stream.
    let put = Command::Put(PutRequest { key: b"stranger".to_vec(), value: b"x".to_vec(), ..PutRequest::default() });
    let requests = futures::stream::iter(vec![message(&(1u64, ForwardRequest::Write(put)))]);
    let status = peer.forward_stream(requests).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // A snapshot stream, which used to leave its .part file behind.
    let chunks = futures::stream::iter(vec![SnapshotChunk { header: vec![1, 2, 3], data: vec![0; 1 << 20] }]);
    let status = peer.install_snapshot(chunks).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    // The member is unharmed, now and after every member restarted.
    let mut client = cluster.client().await;
    assert!(client.get("stranger", None).await.expect("get").kvs().is_empty(), "the stranger's put was applied");
    let members = client.member_list().await.expect("members");
    assert!(members.members().iter().all(|m| m.name() != "evil"), "a stranger renamed a member");
    restart_all(&mut cluster).await;
    all_members_hold(&cluster, &keys).await;
    assert!(incoming_files(&cluster).is_empty(), "snapshot parts left: {:?}", incoming_files(&cluster));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_message_from_a_stranger_is_refused_before_it_is_read() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let pid = cluster.members[0].pid().expect("running");
    let rss_before = rss_kib(pid);
    let mut peer = stranger(&cluster.members[0].peer_url).await;
    // 256 MiB of junk: refused on its headers; the body is never buffered.
    let status = peer.vote(RaftMessage { data: vec![7; 256 << 20] }).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "the member grew by {grown} KiB");
    write_keys(&cluster, "after/", 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vote_flood_from_a_stranger_does_not_stall_writes() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let ids = member_ids(&cluster).await;
    let peers: Vec<String> = cluster.members.iter().map(|m| m.peer_url.clone()).collect();
    let flood = tokio::spawn(async move {
        let mut term = 10;
        loop {
            for url in &peers {
                let mut peer = stranger(url).await;
                let _ = peer.vote(message(&vote_request(term, ids[0]))).await;
            }
            term += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Before the fix: 1 write in 15 s. Now every write goes through while the flood runs.
    let started = std::time::Instant::now();
    let keys = write_keys(&cluster, "flood/", 200).await;
    flood.abort();
    assert!(started.elapsed() < Duration::from_secs(60), "200 writes took {:?}", started.elapsed());
    all_members_hold(&cluster, &keys).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insider_cannot_forge_votes_impersonate_or_bypass_the_write_checks() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let keys = write_keys(&cluster, "before/", 5).await;
    let ids = member_ids(&cluster).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;

    // Holding the secret but not a member: refused at the door.
    let mut outsider = insider(&cluster, &cluster.members[leader].peer_url, 0xdead_beef).await;
    let status = outsider.vote(message(&vote_request(5, 0xdead_beef))).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("not a member"), "{status:?}");

    // A member's credentials: messages must still be sound.
    let other = (follower + 1) % 3;
    let mut member = insider(&cluster, &cluster.members[follower].peer_url, ids[other]).await;
    let status = member.vote(message(&vote_request(u64::MAX, ids[other]))).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("term"), "{status:?}");
    let status = member.vote(message(&vote_request(7, ids[leader]))).await.expect_err("impersonation");
    assert!(status.message().contains("in the name of"), "{status:?}");

    // Forwarded writes pass the same checks as a client's, on the leader.
    let mut to_leader = insider(&cluster, &cluster.members[leader].peer_url, ids[follower]).await;
    let forward = |command: Command| message(&ForwardRequest::Write(command));
    let huge = Command::Put(PutRequest { key: b"huge".to_vec(), value: vec![b'x'; 20 << 20], ..PutRequest::default() });
    let rename = Command::PublishMember(keel_node::command::MemberAttributes {
        member_id: ids[leader],
        name: "evil".into(),
        client_urls: vec!["http://127.0.0.1:1".into()],
    });
    let secret_key = Command::InitSecretKey(keel_node::command::SecretKey(vec![0; 32]));
    for (what, command) in
        [("a 20 MiB value", huge), ("another member's attributes", rename), ("a secret key", secret_key)]
    {
        let response = to_leader.forward(forward(command)).await.expect("answered");
        let response: keel_node::raft::ForwardResponse =
            keel_raft::decode(&response.into_inner().data).expect("decodes");
        assert!(
            matches!(response, keel_node::raft::ForwardResponse::Write(Err(keel_node::raft::ForwardError::Refused(_)))),
            "{what}: {response:?}"
        );
    }
    // In a forwarded batch, each write is checked on its own: the sound ones are written.
    let put = |key: &str, bytes: usize| {
        Command::Put(PutRequest { key: key.as_bytes().to_vec(), value: vec![b'v'; bytes], ..PutRequest::default() })
    };
    let batch = vec![put("batch/a", 1), put("batch/huge", 2 << 20), put("batch/b", 1), put("", 1)];
    let answers = forward_to_the_leader(&cluster, &ids, &ForwardRequest::Writes(batch)).await;
    let refused: Vec<bool> =
        answers.iter().map(|a| matches!(a, Err(keel_node::raft::ForwardError::Refused(_)))).collect();
    assert_eq!(refused, [false, true, false, true], "{answers:?}");
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    // A txn nested far past any client's, hand-encoded: refused when decoded, no stack overflow.
    let mut nested = vec![0u8]; // ForwardRequest::Write
    nested.push(2); // Command::Txn
    for _ in 0..5_000 {
        nested.extend_from_slice(&[0, 1, 3]);
    }
    let status = to_leader.forward(RaftMessage { data: nested }).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // A peer message past the peer limit, from a member: refused by size.
    let status = to_leader.forward(RaftMessage { data: vec![0; 80 << 20] }).await.expect_err("too large");
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");

    let mut client = cluster.client().await;
    assert!(client.get("huge", None).await.expect("get").kvs().is_empty());
    assert!(client.get("batch/huge", None).await.expect("get").kvs().is_empty());
    assert_eq!(
        client.get("batch/", Some(etcd_client::GetOptions::new().with_prefix())).await.expect("get").kvs().len(),
        2
    );
    let members = client.member_list().await.expect("members");
    assert!(members.members().iter().all(|m| m.name() != "evil"));
    restart_all(&mut cluster).await;
    all_members_hold(&cluster, &keys).await;
}

type Written = Result<(keel_node::command::CommandResponse, u64), keel_node::raft::ForwardError>;

/// The leader's answers to a batch of forwarded writes, sent in another member's name and sent
/// again, as a follower does, while a write meets a leader that no longer leads (a debug-build
/// cluster on two cores may elect again while the test runs).
async fn forward_to_the_leader(cluster: &TestCluster, ids: &[u64], request: &ForwardRequest) -> Vec<Written> {
    use keel_node::raft::{ForwardError, ForwardResponse};
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let leader = cluster.leader().await;
        let sender = ids[(leader + 1) % ids.len()];
        let mut to_leader = insider(cluster, &cluster.members[leader].peer_url, sender).await;
        let response = to_leader.forward(message(request)).await.expect("answered");
        let response: ForwardResponse = keel_raft::decode(&response.into_inner().data).expect("decodes");
        let ForwardResponse::Writes(answers) = response else { panic!("not a batch's answers: {response:?}") };
        let moved = answers.iter().any(|a| matches!(a, Err(ForwardError::NotLeader { .. })));
        if !moved || tokio::time::Instant::now() > deadline {
            return answers;
        }
    }
}

/// The answers, by id, of the leader to `requests` sent on one forward stream in another
/// member's name, sent again while a write meets a leader that no longer leads.
async fn forward_stream_answers(
    cluster: &TestCluster,
    ids: &[u64],
    requests: &[(u64, ForwardRequest)],
) -> std::collections::HashMap<u64, keel_node::raft::ForwardResponse> {
    use keel_node::raft::{ForwardError, ForwardResponse};
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let leader = cluster.leader().await;
        let mut to_leader = insider(cluster, &cluster.members[leader].peer_url, ids[(leader + 1) % ids.len()]).await;
        let messages: Vec<RaftMessage> = requests.iter().map(message).collect();
        let opened = to_leader.forward_stream(futures::stream::iter(messages)).await.expect("opened");
        let mut answers = opened.into_inner();
        let mut by_id = std::collections::HashMap::new();
        while let Some(answer) = answers.message().await.expect("answered") {
            let (id, response): (u64, ForwardResponse) = keel_raft::decode(&answer.data).expect("decodes");
            assert!(by_id.insert(id, response).is_none(), "request {id} answered twice");
        }
        let moved = by_id.values().any(|r| matches!(r, ForwardResponse::Write(Err(ForwardError::NotLeader { .. }))));
        if !moved || tokio::time::Instant::now() > deadline {
            return by_id;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forward_stream_answers_each_request_as_a_forward_would_and_ends_at_junk() {
    use keel_node::raft::{ForwardError, ForwardResponse, Refusal};
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let ids = member_ids(&cluster).await;
    let put = |key: &str, bytes: usize| {
        Command::Put(PutRequest { key: key.as_bytes().to_vec(), value: vec![b'v'; bytes], ..PutRequest::default() })
    };
    let requests = [
        (1, ForwardRequest::Write(put("stream/a", 1))),
        (2, ForwardRequest::Write(put("stream/huge", 2 << 20))),
        (3, ForwardRequest::ReadIndex),
        (u64::MAX, ForwardRequest::Writes(vec![put("stream/b", 1), put("", 1)])),
    ];
    let answers = forward_stream_answers(&cluster, &ids, &requests).await;
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(matches!(answers[&1], ForwardResponse::Write(Ok(_))), "{answers:?}");
    let too_large = ForwardResponse::Write(Err(ForwardError::Refused(Refusal::TooLarge)));
    assert_eq!(format!("{:?}", answers[&2]), format!("{too_large:?}"));
    assert!(matches!(answers[&3], ForwardResponse::ReadIndex(Ok(_))), "{answers:?}");
    let ForwardResponse::Writes(batch) = &answers[&u64::MAX] else { panic!("{answers:?}") };
    assert!(batch[0].is_ok() && matches!(batch[1], Err(ForwardError::Refused(_))), "{batch:?}");

    // Junk, a txn nested far past any client's, and a message past the peer limit each end the
    // stream with the error a unary forward gets.
    let leader = cluster.leader().await;
    let mut member = insider(&cluster, &cluster.members[leader].peer_url, ids[(leader + 1) % 3]).await;
    let mut nested = vec![7u8, 0, 2]; // id 7, ForwardRequest::Write, Command::Txn
    for _ in 0..5_000 {
        nested.extend_from_slice(&[0, 1, 3]);
    }
    for (what, data, codes) in [
        ("junk", vec![0xff; 64], &[Code::InvalidArgument][..]),
        ("a deep txn", nested, &[Code::InvalidArgument][..]),
        ("80 MiB", vec![0; 80 << 20], &[Code::OutOfRange, Code::ResourceExhausted][..]),
    ] {
        let opened = member.forward_stream(futures::stream::iter(vec![RaftMessage { data }])).await;
        let status = match opened {
            Ok(answers) => answers.into_inner().message().await.expect_err(what),
            Err(status) => status,
        };
        assert!(codes.contains(&status.code()), "{what}: {status:?}");
    }

    let mut client = cluster.client().await;
    let written = client.get("stream/", Some(etcd_client::GetOptions::new().with_prefix())).await.expect("get");
    let mut keys: Vec<&[u8]> = written.kvs().iter().map(|kv| kv.key()).collect();
    keys.sort();
    assert_eq!(keys, [&b"stream/a"[..], b"stream/b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_removed_while_its_forward_stream_is_open_is_refused_on_it() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let ids = member_ids(&cluster).await;
    let receiver = cluster.leader().await;
    let removed = (receiver + 1) % 3;
    let mut as_removed = insider(&cluster, &cluster.members[receiver].peer_url, ids[removed]).await;
    let (requests, queued) = tokio::sync::mpsc::channel(4);
    let opened = as_removed.forward_stream(tokio_stream::wrappers::ReceiverStream::new(queued)).await;
    let mut answers = opened.expect("opened").into_inner();
    let read_index = |id: u64| message(&(id, ForwardRequest::ReadIndex));
    requests.send(read_index(1)).await.expect("sent");
    answers.message().await.expect("a member is answered").expect("an answer");

    let mut client = cluster.client().await;
    client.member_remove(ids[removed]).await.expect("member remove");
    // The receiver learns of the removal through the log: ask until it refuses.
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut id = 2;
    let refusal = loop {
        requests.send(read_index(id)).await.expect("sent");
        match answers.message().await {
            Err(status) => break status,
            Ok(answer) => assert!(answer.is_some(), "the stream ended without a refusal"),
        }
        assert!(tokio::time::Instant::now() < deadline, "a removed member is still answered");
        id += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refusal.code(), Code::Unauthenticated, "{refusal:?}");
    assert!(refusal.message().contains("not a member"), "{refusal:?}");
}

/// What a member answers first on an append stream that sends `messages`.
async fn first_append_answer(
    peer: &mut PeerClient<InterceptedService<Channel, PeerCredentials>>,
    messages: Vec<RaftMessage>,
) -> Result<RaftMessage, tonic::Status> {
    let mut answers = peer.append_stream(futures::stream::iter(messages)).await?.into_inner();
    answers.message().await?.ok_or_else(|| tonic::Status::unknown("the stream ended unanswered"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_append_stream_takes_only_sound_appends_in_its_senders_name() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let keys = write_keys(&cluster, "before/", 5).await;
    let ids = member_ids(&cluster).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (follower + 1) % 3;
    let mut member = insider(&cluster, &cluster.members[follower].peer_url, ids[other]).await;
    let append = |term: u64, leader: u64| openraft::raft::AppendEntriesRequest::<keel_node::raft::TypeConfig> {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };

    let junk = first_append_answer(&mut member, vec![RaftMessage { data: vec![0xff; 64] }]).await;
    assert_eq!(junk.expect_err("junk refused").code(), Code::InvalidArgument);
    // In the leader's name, from another member: the stream ends with the refusal.
    let forged = vec![message(&append(1_000, ids[leader])), message(&append(1_001, ids[leader]))];
    let status = first_append_answer(&mut member, forged).await.expect_err("impersonation refused");
    assert!(status.message().contains("in the name of"), "{status:?}");
    // A term past any real one.
    let status = first_append_answer(&mut member, vec![message(&append(u64::MAX, ids[other]))]).await;
    assert_eq!(status.expect_err("term refused").code(), Code::InvalidArgument);
    // Past the peer message limit.
    let huge = first_append_answer(&mut member, vec![RaftMessage { data: vec![0; 80 << 20] }]).await;
    let status = huge.expect_err("too large");
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");

    // Nothing moved: the same leader, every write there, and writes go on.
    assert_eq!(cluster.leader().await, leader, "a forged append moved the leadership");
    let after = write_keys(&cluster, "after/", 5).await;
    all_members_hold(&cluster, &keys).await;
    all_members_hold(&cluster, &after).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_streams_cut_short_leave_nothing_behind_and_install_nothing() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let keys = write_keys(&cluster, "before/", 5).await;
    let ids = member_ids(&cluster).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let term = {
        let mut client = cluster.member_client(leader).await;
        client.status().await.expect("status").raft_term()
    };
    let mut as_leader = insider(&cluster, &cluster.members[follower].peer_url, ids[leader]).await;

    // A snapshot file cut short (its trailer and last records missing), sent whole as a stream.
    let header = keel_raft::encode(&(
        Vote::new_committed(term, ids[leader]),
        keel_node::raft::SnapshotMeta { last_log_id: None, last_membership: Default::default() },
    ))
    .expect("encode");
    let file = keel_node::raft::snapshot::sample_file();
    let cut = file[..file.len() - 45].to_vec();
    let chunks = futures::stream::iter(vec![SnapshotChunk { header, data: cut }]);
    let status = as_leader.install_snapshot(chunks).await.expect_err("refused");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");

    // A stream abandoned half-way: the client goes away after the first chunk.
    let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(1);
    let header = keel_raft::encode(&(
        Vote::new_committed(term, ids[leader]),
        keel_node::raft::SnapshotMeta { last_log_id: None, last_membership: Default::default() },
    ))
    .expect("encode");
    tx.send(SnapshotChunk { header, data: vec![0; 1 << 20] }).await.expect("send");
    let call = tokio::spawn(async move {
        let _ = as_leader.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    });
    wait_for(READY_TIMEOUT, "the snapshot being received", || async { !incoming_files(&cluster).is_empty() })
        .await
        .expect("a part file while the stream is open");
    call.abort();
    drop(tx);
    wait_for(READY_TIMEOUT, "no snapshot part left behind", || async { incoming_files(&cluster).is_empty() })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", incoming_files(&cluster)));

    // A part file left by a crash mid-stream is removed at the next start.
    let snapshots = cluster.members[follower].data_dir.join("snapshots");
    std::fs::write(snapshots.join("incoming-42.part"), vec![0; 4096]).expect("plant a part file");
    cluster.kill9(follower);
    cluster.start_member(follower);
    cluster.wait_ready().await;
    assert!(incoming_files(&cluster).is_empty(), "{:?}", incoming_files(&cluster));
    all_members_hold(&cluster, &keys).await;
}

/// Every `incoming-*.part` file in any member's snapshot dir.
fn incoming_files(cluster: &TestCluster) -> Vec<std::path::PathBuf> {
    cluster
        .members
        .iter()
        .filter_map(|m| std::fs::read_dir(m.data_dir.join("snapshots")).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|path| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("incoming-")))
        .collect()
}

/// A process's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

//! Sanity checks on Raft messages from peers, before openraft sees them. openraft trusts its
//! peers: a term of `u64::MAX` overflows its arithmetic (a panic, saved with the vote, on every
//! start), and entries that do not follow their `prev_log_id` trip its assertions. Even from an
//! authenticated member, such a message is a bug or a forgery; it is refused here with a reason
//! instead.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};

use super::{LogId, MemberId, SnapshotMeta, TypeConfig, Vote};

/// The largest term accepted. Terms grow by one per election: at a thousand elections a second
/// a cluster reaches 2^48 in about 8,900 years, so a larger term is forged or corrupt, and
/// everything openraft computes from a term (term + 1) stays far from overflow.
pub const TERM_MAX: u64 = 1 << 48;

/// The largest log index accepted: a million entries a second for 140,000 years.
pub const INDEX_MAX: u64 = 1 << 62;

/// Why a message was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsound {
    #[error("keel: peer {sender:x} sent a message in the name of {named:x}")]
    Impersonation { sender: MemberId, named: MemberId },
    #[error("keel: term {0} is out of range")]
    Term(u64),
    #[error("keel: log index {0} is out of range")]
    Index(u64),
    #[error("keel: log entries do not follow each other at index {0}")]
    NotConsecutive(u64),
    #[error("keel: a log id's term is newer than its leader's vote")]
    FromTheFuture,
}

/// A candidate asks for votes in its own name only.
pub fn vote(rpc: &VoteRequest<TypeConfig>, sender: MemberId) -> Result<(), Unsound> {
    check_vote(&rpc.vote, sender)?;
    check_log_id(rpc.last_log_id.as_ref(), &rpc.vote)
}

/// A leader hands over its leadership in its own name, with a log id of its term at most.
pub fn transfer_leader(rpc: &TransferLeaderRequest<TypeConfig>, sender: MemberId) -> Result<(), Unsound> {
    check_vote(rpc.from_leader(), sender)?;
    check_log_id(rpc.last_log_id(), rpc.from_leader())
}

/// A leader appends in its own name, entries that continue `prev_log_id` one index at a time,
/// none of a term after its own.
pub fn append_entries(rpc: &AppendEntriesRequest<TypeConfig>, sender: MemberId) -> Result<(), Unsound> {
    check_vote(&rpc.vote, sender)?;
    check_log_id(rpc.prev_log_id.as_ref(), &rpc.vote)?;
    check_log_id(rpc.leader_commit.as_ref(), &rpc.vote)?;
    let mut previous = rpc.prev_log_id;
    for entry in &rpc.entries {
        check_log_id(Some(&entry.log_id), &rpc.vote)?;
        if let Some(previous) = &previous {
            let next = previous.index.checked_add(1);
            if next != Some(entry.log_id.index) || entry.log_id.leader_id.term < previous.leader_id.term {
                return Err(Unsound::NotConsecutive(entry.log_id.index));
            }
        }
        previous = Some(entry.log_id);
    }
    Ok(())
}

/// A snapshot comes from the leader named in its vote, and its log id is not of a later term.
pub fn snapshot(vote: &Vote, meta: &SnapshotMeta, sender: MemberId) -> Result<(), Unsound> {
    check_vote(vote, sender)?;
    check_log_id(meta.last_log_id.as_ref(), vote)?;
    check_log_id(meta.last_membership.log_id().as_ref(), vote)
}

fn check_vote(vote: &Vote, sender: MemberId) -> Result<(), Unsound> {
    if vote.leader_id.node_id != sender {
        return Err(Unsound::Impersonation { sender, named: vote.leader_id.node_id });
    }
    if vote.leader_id.term > TERM_MAX {
        return Err(Unsound::Term(vote.leader_id.term));
    }
    Ok(())
}

fn check_log_id(log_id: Option<&LogId>, vote: &Vote) -> Result<(), Unsound> {
    let Some(log_id) = log_id else { return Ok(()) };
    if log_id.index > INDEX_MAX {
        return Err(Unsound::Index(log_id.index));
    }
    if log_id.leader_id.term > vote.leader_id.term {
        return Err(Unsound::FromTheFuture);
    }
    Ok(())
}

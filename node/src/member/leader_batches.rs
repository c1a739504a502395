//! The leader's proposals, batched: every write the leader path takes (a client's on the
//! leader, a follower's forwarded batch) joins one queue, and at most
//! [`LEADER_BATCHES_IN_FLIGHT`] batches are proposed to openraft at once, each in one message
//! (`client_write_many`). A lone write goes at once (no timer); under load, the writes that
//! arrive while those batches are being appended, replicated and applied become the next batch,
//! so one append, one fsync, one AppendEntries per follower and one apply serve many writes.
//!
//! Proposed as they came, one message each, the core's merging (openraft merges consecutive
//! ClientWrite messages it finds queued) seldom met them: at 64 clients the leader's appends and
//! AppendEntries held one entry at the median.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::batch_queue::{BatchBounds, BatchQueue, Batched};
use super::leader_write::Written;
use super::Member;
use crate::command::Command;
use crate::limits::{LEADER_BATCHES_IN_FLIGHT, LEADER_BATCH_BYTES_MAX, LEADER_BATCH_WRITES_MAX};
use crate::raft::ForwardError;

/// A write waiting to be proposed: the command as checked (not yet stamped), its encoded size,
/// and where its answer goes.
pub(super) struct Pending {
    pub command: Command,
    pub size: usize,
    pub answer: oneshot::Sender<Result<Written, ForwardError>>,
}

impl Batched for Pending {
    fn size(&self) -> usize {
        self.size
    }
}

/// Writes waiting for the leader to propose them. The queue itself is unbounded: a member caps
/// its own proposals in flight (`PROPOSALS_PENDING_MAX`) and each follower its forwarded
/// batches (`FORWARD_BATCHES_IN_FLIGHT` × `FORWARD_BATCH_*`).
pub(super) fn leader_batches() -> BatchQueue<Pending> {
    BatchQueue::new(BatchBounds {
        batch_writes: LEADER_BATCH_WRITES_MAX,
        batch_bytes: LEADER_BATCH_BYTES_MAX,
        queue_writes: usize::MAX,
        queue_bytes: usize::MAX,
        in_flight: LEADER_BATCHES_IN_FLIGHT,
    })
}

impl Member {
    /// Proposes `writes` (already checked) in the leader's next batches and answers each, in
    /// order, once applied (or refused: `NotLeader` when this member does not lead).
    pub(super) async fn propose_batched(&self, writes: Vec<(Command, usize)>) -> Vec<Result<Written, ForwardError>> {
        let Some(member) = self.me.upgrade() else {
            return writes.iter().map(|_| Err(ForwardError::Failed("the member is stopping".into()))).collect();
        };
        let (pending, answers): (Vec<Pending>, Vec<_>) = writes
            .into_iter()
            .map(|(command, size)| {
                let (answer, answered) = oneshot::channel();
                (Pending { command, size, answer }, answered)
            })
            .unzip();
        match self.leader_batches.join(pending) {
            Ok(true) => drop(tokio::spawn(async move {
                member.leader_batches.send_while_waiting(|batch| member.clone().propose_batch(batch)).await
            })),
            Ok(false) => {}
            // Unbounded (above): never, but answered as a full queue would be.
            Err(refused) => {
                return refused.iter().map(|_| Err(ForwardError::Failed("the leader's queue is full".into()))).collect()
            }
        }
        let mut results = Vec::with_capacity(answers.len());
        for answered in answers {
            // The sender dropped the write unanswered only if the runtime is stopping.
            results.push(
                answered.await.unwrap_or_else(|_| Err(ForwardError::Indeterminate("the proposer stopped".into()))),
            );
        }
        results
    }

    async fn propose_batch(self: Arc<Self>, batch: Vec<Pending>) {
        let (commands, answers): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.answer)).unzip();
        let results = self.propose_now(commands).await;
        for (answer, result) in answers.into_iter().zip(results) {
            let _ = answer.send(result);
        }
    }
}

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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Semaphore};

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

/// Writes waiting for the leader to propose them, and the permits for batches in flight.
pub(super) struct LeaderBatches {
    /// std Mutex: held only to push or take, never across an await.
    state: Mutex<Queue>,
    in_flight: Arc<Semaphore>,
}

impl Default for LeaderBatches {
    fn default() -> Self {
        LeaderBatches { state: Mutex::default(), in_flight: Arc::new(Semaphore::new(LEADER_BATCHES_IN_FLIGHT)) }
    }
}

/// Unbounded by itself: a member caps its own proposals in flight (`PROPOSALS_PENDING_MAX`) and
/// each follower its forwarded batches (`FORWARD_BATCHES_IN_FLIGHT` × `FORWARD_BATCH_*`).
#[derive(Default)]
struct Queue {
    /// A sender task is running.
    running: bool,
    waiting: VecDeque<Pending>,
}

impl LeaderBatches {
    /// Queues writes; `true` when the caller must start the sender task.
    fn join(&self, writes: impl IntoIterator<Item = Pending>) -> bool {
        let mut queue = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.waiting.extend(writes);
        !queue.waiting.is_empty() && !std::mem::replace(&mut queue.running, true)
    }

    /// The next batch: the oldest writes within the batch bounds (a write larger than
    /// [`LEADER_BATCH_BYTES_MAX`] goes alone). `None` (and the sender stops) when nothing waits.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut queue = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(first) = queue.waiting.pop_front() else {
            queue.running = false;
            return None;
        };
        let mut bytes = first.size;
        let mut batch = vec![first];
        while let Some(next) = queue.waiting.front() {
            if batch.len() >= LEADER_BATCH_WRITES_MAX || bytes.saturating_add(next.size) > LEADER_BATCH_BYTES_MAX {
                break;
            }
            bytes += next.size;
            batch.extend(queue.waiting.pop_front());
        }
        Some(batch)
    }
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
        if self.leader_batches.join(pending) {
            drop(tokio::spawn(member.send_leader_batches()));
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

    /// Proposes batches while writes wait, each as soon as a batch slot is free.
    async fn send_leader_batches(self: Arc<Self>) {
        loop {
            let Ok(permit) = self.leader_batches.in_flight.clone().acquire_owned().await else { return };
            let Some(batch) = self.leader_batches.next_batch() else { return };
            let member = self.clone();
            tokio::spawn(async move {
                let (commands, answers): (Vec<Command>, Vec<_>) =
                    batch.into_iter().map(|p| (p.command, p.answer)).unzip();
                let results = member.propose_now(commands).await;
                drop(permit);
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::PutRequest;

    fn pending(size: usize) -> Pending {
        let (answer, _) = oneshot::channel();
        Pending { command: Command::Put(PutRequest::default()), size, answer }
    }

    #[test]
    fn a_batch_takes_the_oldest_writes_within_its_bounds_and_a_large_write_goes_alone() {
        let batches = LeaderBatches::default();
        assert!(batches.join([pending(1)]), "the first write starts the sender");
        assert!(!batches.join((0..LEADER_BATCH_WRITES_MAX).map(|_| pending(1))), "the sender runs");
        assert_eq!(batches.next_batch().map(|b| b.len()), Some(LEADER_BATCH_WRITES_MAX));
        assert_eq!(batches.next_batch().map(|b| b.len()), Some(1));
        assert!(batches.next_batch().is_none(), "nothing waits: the sender stops");
        assert!(batches.join([pending(LEADER_BATCH_BYTES_MAX + 1), pending(1)]), "a stopped sender is started again");
        assert_eq!(batches.next_batch().map(|b| b.len()), Some(1), "past the bytes bound alone");
        assert_eq!(batches.next_batch().map(|b| b.len()), Some(1));
    }
}

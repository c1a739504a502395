//! Writes a follower forwards to the leader, batched: one forwarded request carries every write
//! waiting when it is sent, and the leader proposes them concurrently, so they share its group
//! commit.
//! A forward RPC per write cost the follower and the leader an HTTP/2 stream each, which under
//! 64 clients was a visible part of both members' CPU.
//!
//! Batches go out as soon as there is room (`batch_queue`): up to [`FORWARD_BATCHES_IN_FLIGHT`]
//! at once, so a lone write is sent at once (no added latency), and under load the queue that
//! builds while those are in flight becomes the next batch. Each write keeps its own deadline
//! and its own outcome (done, indeterminate, or "nothing proposed: retry"), exactly as a
//! forward of its own would.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::batch_queue::{BatchBounds, BatchQueue, Batched};
use super::{Attempt, Member};
use crate::command::{Command, CommandResponse};
use crate::error::ServerError;
use crate::limits::{
    FORWARD_BATCHES_IN_FLIGHT, FORWARD_BATCH_BYTES_MAX, FORWARD_BATCH_WRITES_MAX, FORWARD_QUEUE_BYTES_MAX,
    FORWARD_QUEUE_WRITES_MAX,
};
use crate::raft::{ForwardError, ForwardRequest, ForwardResponse, MemberId, Refusal};

pub(super) struct Pending {
    leader: MemberId,
    command: Command,
    size: usize,
    deadline: Instant,
    answer: oneshot::Sender<Attempt<CommandResponse>>,
}

impl Batched for Pending {
    fn size(&self) -> usize {
        self.size
    }

    /// One batch goes to one leader.
    fn may_follow(&self, first: &Self) -> bool {
        self.leader == first.leader
    }
}

/// Writes waiting to be forwarded (`limits::FORWARD_*`).
pub(super) fn write_batches() -> BatchQueue<Pending> {
    BatchQueue::new(BatchBounds {
        batch_writes: FORWARD_BATCH_WRITES_MAX,
        batch_bytes: FORWARD_BATCH_BYTES_MAX,
        queue_writes: FORWARD_QUEUE_WRITES_MAX,
        queue_bytes: FORWARD_QUEUE_BYTES_MAX,
        in_flight: FORWARD_BATCHES_IN_FLIGHT,
    })
}

impl Member {
    /// Forwards `command` (of encoded `size`) to `leader` in the next batch.
    pub(super) async fn write_forwarded(
        &self,
        leader: MemberId,
        command: Command,
        size: usize,
        deadline: Instant,
    ) -> Attempt<CommandResponse> {
        let Some(member) = self.me.upgrade() else { return Attempt::Done(Err(ServerError::Stopped)) };
        let (answer, answered) = oneshot::channel();
        match self.write_batches.join(vec![Pending { leader, command, size, deadline, answer }]) {
            Ok(true) => drop(tokio::spawn(async move {
                member.write_batches.send_while_waiting(|batch| member.clone().send_write_batch(batch)).await
            })),
            Ok(false) => {}
            Err(_full) => return Attempt::Done(Err(ServerError::TooManyRequests)),
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(attempt)) => attempt,
            // Sent or not, nobody can say any more: indeterminate.
            Ok(Err(_)) | Err(_) => Attempt::Done(Err(ServerError::Timeout)),
        }
    }

    async fn send_write_batch(self: Arc<Self>, batch: Vec<Pending>) {
        let leader = batch[0].leader;
        let deadline = batch.iter().map(|p| p.deadline).max().unwrap_or_else(Instant::now);
        let (commands, answers): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.answer)).unzip();
        let count = commands.len();
        let request = match <[Command; 1]>::try_from(commands) {
            Ok([command]) => ForwardRequest::Write(command),
            Err(commands) => ForwardRequest::Writes(commands),
        };
        let outcomes: Vec<Attempt<CommandResponse>> = match self.forward(leader, request, deadline).await {
            Attempt::Done(Ok(ForwardResponse::Write(result))) if count == 1 => vec![write_outcome(result)],
            Attempt::Done(Ok(ForwardResponse::Writes(results))) if results.len() == count => {
                results.into_iter().map(write_outcome).collect()
            }
            // Proposed but not known to be applied, or a reply we cannot read: indeterminate.
            Attempt::Done(Ok(_)) => (0..count).map(|_| Attempt::Done(Err(ServerError::Timeout))).collect(),
            Attempt::Done(Err(e)) => (0..count).map(|_| Attempt::Done(Err(e.clone()))).collect(),
            Attempt::Retry => (0..count).map(|_| Attempt::Retry).collect(),
        };
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            let _ = answer.send(outcome);
        }
    }
}

/// What one forwarded write's result means to its caller.
fn write_outcome(result: Result<(CommandResponse, u64), ForwardError>) -> Attempt<CommandResponse> {
    match result {
        Ok((response, _term)) => Attempt::Done(Ok(response)),
        // The receiver was not the leader: nothing was proposed.
        Err(ForwardError::NotLeader { .. }) => Attempt::Retry,
        // The leader's checks refused it: nothing was proposed, and it would be refused again.
        Err(ForwardError::Refused(Refusal::TooLarge)) => Attempt::Done(Err(ServerError::RequestTooLarge)),
        Err(ForwardError::Refused(Refusal::Invalid(reason))) => Attempt::Done(Err(ServerError::LeaderRefused(reason))),
        Err(_) => Attempt::Done(Err(ServerError::Timeout)),
    }
}

//! Writes a follower forwards to the leader, batched: one peer RPC carries every write waiting
//! when it is sent, and the leader proposes them concurrently, so they share its group commit.
//! A forward RPC per write cost the follower and the leader an HTTP/2 stream each, which under
//! 64 clients was a visible part of both members' CPU.
//!
//! Batches go out as soon as there is room: up to [`FORWARD_BATCHES_IN_FLIGHT`] at once, so a lone
//! write is sent at once (no added latency), and under load the queue that builds while those
//! are in flight becomes the next batch. Each write keeps its own deadline and its own outcome
//! (done, indeterminate, or "nothing proposed: retry"), exactly as a forward of its own would.

use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;

use super::{Attempt, Member};
use crate::command::{Command, CommandResponse};
use crate::error::ServerError;
use crate::limits::{
    FORWARD_BATCHES_IN_FLIGHT, FORWARD_BATCH_BYTES_MAX, FORWARD_BATCH_WRITES_MAX, FORWARD_QUEUE_BYTES_MAX,
    FORWARD_QUEUE_WRITES_MAX,
};
use crate::raft::{ForwardError, ForwardRequest, ForwardResponse, MemberId, Refusal};

struct Pending {
    leader: MemberId,
    command: Command,
    size: usize,
    deadline: Instant,
    answer: oneshot::Sender<Attempt<CommandResponse>>,
}

/// Writes waiting to be forwarded, and the permits for batches in flight.
pub(super) struct WriteBatches {
    /// std Mutex: held only to push or take, never across an await.
    state: Mutex<Queue>,
    in_flight: Arc<Semaphore>,
}

impl Default for WriteBatches {
    fn default() -> Self {
        WriteBatches { state: Mutex::default(), in_flight: Arc::new(Semaphore::new(FORWARD_BATCHES_IN_FLIGHT)) }
    }
}

#[derive(Default)]
struct Queue {
    /// A sender task is running.
    running: bool,
    waiting: std::collections::VecDeque<Pending>,
    /// The encoded bytes of the writes in `waiting`.
    waiting_bytes: usize,
}

impl WriteBatches {
    /// Queues a write; `Ok(true)` when the caller must start the sender task, `Err` with the
    /// write when the queue is full (`limits::FORWARD_QUEUE_*`).
    fn join(&self, pending: Pending) -> Result<bool, Box<Pending>> {
        let mut queue = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = queue.waiting_bytes.saturating_add(pending.size);
        if queue.waiting.len() >= FORWARD_QUEUE_WRITES_MAX || bytes > FORWARD_QUEUE_BYTES_MAX {
            return Err(Box::new(pending));
        }
        queue.waiting_bytes = bytes;
        queue.waiting.push_back(pending);
        Ok(!std::mem::replace(&mut queue.running, true))
    }

    /// The next batch: the oldest write and those behind it for the same leader, within the
    /// batch bounds. `None` (and the sender stops) when nothing waits.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut queue = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(first) = queue.waiting.pop_front() else {
            queue.running = false;
            return None;
        };
        let (leader, mut bytes) = (first.leader, first.size);
        let mut batch = vec![first];
        while let Some(next) = queue.waiting.front() {
            if next.leader != leader
                || batch.len() >= FORWARD_BATCH_WRITES_MAX
                || bytes + next.size > FORWARD_BATCH_BYTES_MAX
            {
                break;
            }
            bytes += next.size;
            batch.extend(queue.waiting.pop_front());
        }
        queue.waiting_bytes = queue.waiting_bytes.saturating_sub(bytes);
        Some(batch)
    }
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
        match self.write_batches.join(Pending { leader, command, size, deadline, answer }) {
            Ok(true) => drop(tokio::spawn(member.send_write_batches())),
            Ok(false) => {}
            Err(_full) => return Attempt::Done(Err(ServerError::TooManyRequests)),
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(attempt)) => attempt,
            // Sent or not, nobody can say any more: indeterminate.
            Ok(Err(_)) | Err(_) => Attempt::Done(Err(ServerError::Timeout)),
        }
    }

    /// Sends batches while writes wait, each as soon as a batch slot is free.
    async fn send_write_batches(self: Arc<Self>) {
        loop {
            let Ok(permit) = self.write_batches.in_flight.clone().acquire_owned().await else { return };
            let Some(batch) = self.write_batches.next_batch() else { return };
            let member = self.clone();
            tokio::spawn(async move {
                member.send_write_batch(batch).await;
                drop(permit);
            });
        }
    }

    async fn send_write_batch(&self, batch: Vec<Pending>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::PutRequest;

    fn pending(size: usize) -> Pending {
        let (answer, _) = oneshot::channel();
        let command = Command::Put(PutRequest::default());
        Pending { leader: 1, command, size, deadline: Instant::now(), answer }
    }

    #[test]
    fn the_queue_refuses_writes_past_its_count_and_its_bytes_and_frees_what_batches_take() {
        let batches = WriteBatches::default();
        assert_eq!(batches.join(pending(1)).ok(), Some(true), "the first write starts the sender");
        for _ in 1..FORWARD_QUEUE_WRITES_MAX {
            assert_eq!(batches.join(pending(1)).ok(), Some(false));
        }
        assert!(batches.join(pending(1)).is_err(), "full by count");
        let batch = batches.next_batch().expect("a batch");
        assert_eq!(batch.len(), FORWARD_BATCH_WRITES_MAX);
        assert!(batches.join(pending(1)).is_ok(), "a batch taken makes room");

        let by_bytes = WriteBatches::default();
        assert!(by_bytes.join(pending(FORWARD_QUEUE_BYTES_MAX)).is_ok());
        assert!(by_bytes.join(pending(1)).is_err(), "full by bytes");
        assert_eq!(by_bytes.next_batch().map(|batch| batch.len()), Some(1));
        assert!(by_bytes.join(pending(FORWARD_QUEUE_BYTES_MAX)).is_ok(), "its bytes are freed");
    }
}

//! Linearizable read barriers, shared: concurrent readers on a member wait for one ReadIndex
//! round instead of one each. A round takes every reader waiting when it starts and runs one
//! barrier (ReadIndex on the leader, or asked of the leader by a follower, then waiting until
//! this member applied up to it); readers that arrive meanwhile wait for the next round. Each
//! reader's round therefore starts after the reader arrived, which is all linearizability
//! needs, and under load one round serves many reads: the leader answers one ReadIndex (one
//! heartbeat to the followers) per round, and a follower forwards one per round.
//!
//! Rounds run on their own task, so a reader that gives up (a timeout around the call) never
//! strands the others.

use std::sync::Mutex;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Attempt, Member};
use crate::error::ServerError;
use crate::limits::READ_BARRIER_WAITERS_MAX;
use crate::raft::{ForwardRequest, ForwardResponse, MemberId, ReadPolicy};

type Waiter = oneshot::Sender<Result<(), ServerError>>;

/// Readers waiting for the next round, and whether a round task is running.
#[derive(Default)]
pub(super) struct ReadRounds {
    /// std Mutex: held only to push or take, never across an await.
    state: Mutex<Rounds>,
}

#[derive(Default)]
struct Rounds {
    running: bool,
    waiting: Vec<Waiter>,
}

impl ReadRounds {
    /// Queues `waiter` for the next round; `Some(true)` when the caller must start the round
    /// task, `None` when too many wait already (`limits::READ_BARRIER_WAITERS_MAX`).
    fn join(&self, waiter: Waiter) -> Option<bool> {
        let mut rounds = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if rounds.waiting.len() >= READ_BARRIER_WAITERS_MAX {
            return None;
        }
        rounds.waiting.push(waiter);
        Some(!std::mem::replace(&mut rounds.running, true))
    }

    /// The readers of the next round, or `None` (and the task stops) when nobody waits.
    fn next_round(&self) -> Option<Vec<Waiter>> {
        let mut rounds = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if rounds.waiting.is_empty() {
            rounds.running = false;
            return None;
        }
        Some(std::mem::take(&mut rounds.waiting))
    }
}

impl Member {
    /// Waits until this member has applied everything committed before the call (ReadIndex
    /// through the leader), so that a read that follows is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ServerError> {
        if self.unsafe_stale_reads {
            return Ok(());
        }
        let member = self.me.upgrade().ok_or(ServerError::Stopped)?;
        let (waiter, answer) = oneshot::channel();
        let start_rounds = self.read_rounds.join(waiter).ok_or(ServerError::TooManyRequests)?;
        if start_rounds {
            tokio::spawn(async move {
                while let Some(readers) = member.read_rounds.next_round() {
                    let result = member.read_barrier_round().await;
                    for reader in readers {
                        let _ = reader.send(result.clone());
                    }
                }
            });
        }
        answer.await.unwrap_or(Err(ServerError::Stopped))
    }

    /// One barrier, through whoever leads now.
    async fn read_barrier_round(&self) -> Result<(), ServerError> {
        self.through_leader(|leader, deadline| async move {
            if leader == self.id {
                self.read_barrier_local(deadline).await
            } else {
                self.read_barrier_forwarded(leader, deadline).await
            }
        })
        .await
    }

    async fn read_barrier_local(&self, deadline: Instant) -> Attempt<()> {
        let barrier = tokio::time::timeout_at(deadline, self.raft.ensure_linearizable(ReadPolicy::ReadIndex));
        match barrier.await {
            Err(_) => Attempt::Done(Err(ServerError::Timeout)),
            Ok(Ok(_)) => Attempt::Done(Ok(())),
            Ok(Err(e)) if e.fatal().is_some() => Attempt::Done(Err(ServerError::Stopped)),
            // Not the leader any more, or no quorum answered yet: nothing was read, try again.
            Ok(Err(_)) => Attempt::Retry,
        }
    }

    async fn read_barrier_forwarded(&self, leader: MemberId, deadline: Instant) -> Attempt<()> {
        match self.forward(leader, ForwardRequest::ReadIndex, deadline).await {
            Attempt::Done(Ok(ForwardResponse::ReadIndex(Ok(index)))) => self.wait_applied(index, deadline).await,
            // Nothing was read: asking again is always safe.
            Attempt::Done(Ok(_)) => Attempt::Retry,
            Attempt::Done(Err(e)) => Attempt::Done(Err(e)),
            Attempt::Retry => Attempt::Retry,
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Attempt<()> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read barrier").await {
            Ok(_) => Attempt::Done(Ok(())),
            Err(openraft::metrics::WaitError::ShuttingDown) => Attempt::Done(Err(ServerError::Stopped)),
            Err(_) => Attempt::Done(Err(ServerError::Timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_past_the_bound_are_refused_until_a_round_takes_them() {
        let rounds = ReadRounds::default();
        let mut answers = Vec::new();
        for index in 0..READ_BARRIER_WAITERS_MAX {
            let (waiter, answer) = oneshot::channel();
            answers.push(answer);
            assert_eq!(rounds.join(waiter), Some(index == 0));
        }
        assert_eq!(rounds.join(oneshot::channel().0), None, "full");
        assert_eq!(rounds.next_round().map(|round| round.len()), Some(READ_BARRIER_WAITERS_MAX));
        assert!(rounds.join(oneshot::channel().0).is_some(), "a round taken makes room");
    }
}

//! The leader's write path: the one way a write reaches Raft, whether a client proposed it on
//! the leader or a follower forwarded it (`raft::PeerService::forward`, batched by
//! `forward_writes`). In order: stamp the command with what only the leader decides (its clock;
//! the id of a lease the command asks the leader to choose), propose it to this member's own
//! Raft, choose the lease id again once if it was taken, and, when a Register reused its lease,
//! renew that lease on this leader's `Lessor` (registering again is a sign of life).
//!
//! A command asks the leader to choose a lease id by leaving it 0, as etcd's LeaseGrant with ID
//! 0 does: `LeaseGrantRequest::id`, `RegisterRequest::lease_id` (with a TTL),
//! `LeasedPutRequest::grant_id`. What is replicated always names the id, so apply stays
//! deterministic and the log encoding is unchanged.
//!
//! Writes are proposed in the leader's batches (`leader_batches`): many writes, one message to
//! openraft's core, one append. It must not forward: a member that is not the leader answers
//! `NotLeader`, having proposed nothing, and the caller tries the next leader. It answers only
//! once the entry is committed and applied.

use tokio::time::Instant;

use super::{Attempt, Member};
use crate::command::{self, Command, CommandResponse, Origin, RegisterResponse};
use crate::error::ServerError;
use crate::mvcc::MvccError;
use crate::raft::{ClientWriteError, ForwardError, MemberId, Refusal};

/// A committed write: the state machine's answer and the term the entry was committed in.
pub(crate) type Written = (CommandResponse, u64);

impl Member {
    /// A write a follower forwarded on a client's behalf: the checks a local write passes, with
    /// this member's limits, then the leader write path.
    pub(crate) async fn write_for_follower(&self, sender: MemberId, command: Command) -> Result<Written, ForwardError> {
        let size = self.check_forwarded(sender, &command)?;
        let _in_flight = self.counters.serving_forwarded();
        self.write_as_leader(command, size).await
    }

    /// The checks a local write passes, with this member's limits; the command's encoded size.
    fn check_forwarded(&self, sender: MemberId, command: &Command) -> Result<usize, ForwardError> {
        match command::validate(command, Origin::Member(sender), self.max_request_bytes) {
            Ok(size) => Ok(size),
            Err(ServerError::RequestTooLarge) => Err(ForwardError::Refused(Refusal::TooLarge)),
            Err(error) => Err(ForwardError::Refused(Refusal::Invalid(error.to_string()))),
        }
    }

    /// A batch of writes a follower forwarded: each checked as `write_for_follower` checks one,
    /// then those that pass join the leader's batches together. Answers in order.
    pub(crate) async fn writes_for_follower(
        &self,
        sender: MemberId,
        commands: Vec<Command>,
    ) -> Vec<Result<Written, ForwardError>> {
        let _in_flight = self.counters.serving_forwarded();
        let mut valid = Vec::with_capacity(commands.len());
        let slots: Vec<Result<(), ForwardError>> = commands
            .into_iter()
            .map(|command| {
                let size = self.check_forwarded(sender, &command)?;
                valid.push((command, size));
                Ok(())
            })
            .collect();
        let mut proposed = self.propose_batched(valid).await.into_iter();
        slots
            .into_iter()
            .map(|slot| {
                slot?;
                proposed.next().unwrap_or_else(|| Err(ForwardError::Indeterminate("the batch ended early".into())))
            })
            .collect()
    }

    /// The leader write path for a command proposed on this member (already checked, of encoded
    /// `size`), bounded by `deadline`.
    pub(super) async fn write_local(
        &self,
        command: Command,
        size: usize,
        deadline: Instant,
    ) -> Attempt<CommandResponse> {
        match tokio::time::timeout_at(deadline, self.write_as_leader(command, size)).await {
            Err(_) => Attempt::Done(Err(ServerError::Timeout)),
            Ok(Ok((response, _term))) => Attempt::Done(Ok(response)),
            Ok(Err(ForwardError::NotLeader { .. })) => Attempt::Retry,
            Ok(Err(ForwardError::Failed(_))) => Attempt::Done(Err(ServerError::Stopped)),
            Ok(Err(_)) => Attempt::Done(Err(ServerError::Timeout)),
        }
    }

    /// The one leader write path (see the module's doc), through the leader's batches.
    /// `NotLeader`: nothing was proposed, or only a grant refused for its taken id, which
    /// changed nothing; `Failed`: Raft has stopped; `Indeterminate`: it may have been applied.
    async fn write_as_leader(&self, command: Command, size: usize) -> Result<Written, ForwardError> {
        let answer = self.propose_batched(vec![(command, size)]).await.pop();
        answer.unwrap_or_else(|| Err(ForwardError::Indeterminate("the batch ended early".into())))
    }

    /// Proposes `commands`, stamped, in one message to this member's own Raft and answers each
    /// in order once applied: a grant whose chosen lease id was taken is proposed again with
    /// another, and a lease a Register reused is renewed on this leader's clock.
    pub(super) async fn propose_now(&self, commands: Vec<Command>) -> Vec<Result<Written, ForwardError>> {
        // Kept only when the leader chooses an id, to choose again if it was taken.
        let unstamped: Vec<Option<Command>> =
            commands.iter().map(|command| chooses_lease(command).then(|| command.clone())).collect();
        let proposed = self.propose_many(commands).await;
        let mut answers = Vec::with_capacity(proposed.len());
        for (written, unstamped) in proposed.into_iter().zip(unstamped) {
            let answer = match (written, unstamped) {
                // An id already taken, astronomically unlikely: the grant changed nothing, so
                // choosing again once is safe.
                (Ok((CommandResponse::Rejected(MvccError::LeaseExists), _)), Some(unstamped)) => {
                    self.propose_to_raft(stamp(unstamped, Stamp::now())).await
                }
                (written, _) => written,
            };
            if let Ok((CommandResponse::Register(RegisterResponse { reused: true, lease_id, .. }), _)) = &answer {
                self.renew_reused_lease(*lease_id);
            }
            answers.push(answer);
        }
        answers
    }

    /// Proposes `commands`, stamped, in one message to this member's own Raft and waits until
    /// each is applied; the answers come in order, one per command.
    async fn propose_many(&self, commands: Vec<Command>) -> Vec<Result<Written, ForwardError>> {
        let count = commands.len();
        if count == 0 {
            return Vec::new();
        }
        let stamped: Vec<Command> = commands.into_iter().map(|command| stamp(command, Stamp::now())).collect();
        let mut results = match self.raft.client_write_many(stamped).await {
            Ok(results) => results,
            Err(fatal) => return (0..count).map(|_| Err(ForwardError::Failed(fatal.to_string()))).collect(),
        };
        let mut answers = Vec::with_capacity(count);
        while let Some(result) = futures::StreamExt::next(&mut results).await {
            answers.push(match result {
                Ok(Ok(written)) => Ok((written.response, written.log_id.leader_id.term)),
                Ok(Err(refused)) => Err(unwritten(refused)),
                Err(fatal) => Err(ForwardError::Failed(fatal.to_string())),
            });
        }
        while answers.len() < count {
            answers.push(Err(ForwardError::Failed("raft stopped".into())));
        }
        answers
    }

    /// Renews a lease a Register reused on this leader's clock. Failing to is harmless: only a
    /// member that no longer leads refuses, and a new leader starts every lease's full TTL.
    fn renew_reused_lease(&self, lease_id: i64) {
        if let Err(e) = self.leases.keep_alive(lease_id) {
            tracing::debug!(lease_id, "renewing a re-registered lease: {e:?}");
        }
    }

    /// Proposes `command` to this member's own Raft and waits until it is applied.
    async fn propose_to_raft(&self, command: Command) -> Result<Written, ForwardError> {
        match self.raft.client_write(command).await {
            Ok(written) => Ok((written.data, written.log_id.leader_id.term)),
            Err(openraft::errors::RaftError::APIError(refused)) => Err(unwritten(refused)),
            Err(openraft::errors::RaftError::Fatal(fatal)) => Err(ForwardError::Failed(fatal.to_string())),
        }
    }
}

/// What a write openraft did not take means to its proposer. `NotLeader`: nothing was
/// proposed; anything else: it may have been applied.
fn unwritten(error: ClientWriteError) -> ForwardError {
    match error {
        ClientWriteError::ForwardToLeader(forward) => ForwardError::NotLeader { leader: forward.leader_id },
        error => ForwardError::Indeterminate(error.to_string()),
    }
}

/// What the leader decides for a command and its proposer cannot: the time, and the id of a
/// new lease.
struct Stamp {
    now_ms: i64,
    lease_id: i64,
}

impl Stamp {
    fn now() -> Stamp {
        Stamp { now_ms: crate::store::now_unix_ms(), lease_id: new_lease_id() }
    }
}

/// A fresh lease id: positive, never 0 (etcd's "no lease").
fn new_lease_id() -> i64 {
    (rand::random::<u64>() >> 1).max(1) as i64
}

/// Whether `command` leaves the id of a lease it may grant to the leader (0).
fn chooses_lease(command: &Command) -> bool {
    match command.inner() {
        Command::LeaseGrant(grant) => grant.id == 0,
        // Without a TTL a registration has no lease.
        Command::Register(register) => register.lease_id == 0 && register.ttl_secs != 0,
        Command::LeasedPut(put) => put.grant_id == 0,
        _ => false,
    }
}

/// The command as the leader proposes it: time-dependent commands carry the leader's clock, and
/// a lease id left to the leader is `stamp.lease_id`.
fn stamp(command: Command, stamp: Stamp) -> Command {
    if let Command::Authorized(authorized) = command {
        let inner = self::stamp(*authorized.command, stamp);
        return Command::Authorized(command::Authorized { command: Box::new(inner), ..authorized });
    }
    let Stamp { now_ms, lease_id } = stamp;
    let chosen = chooses_lease(&command);
    match command {
        Command::Publish(request) => Command::Publish(command::PublishRequest { timestamp_ms: now_ms, ..request }),
        Command::GroupClaim(request) => Command::GroupClaim(command::GroupClaimRequest { now_ms, ..request }),
        Command::GroupSettle(request) => Command::GroupSettle(command::GroupSettleRequest { now_ms, ..request }),
        Command::LeaseGrant(request) if chosen => {
            Command::LeaseGrant(command::LeaseGrantRequest { id: lease_id, ..request })
        }
        Command::Register(request) if chosen => Command::Register(command::RegisterRequest { lease_id, ..request }),
        Command::LeasedPut(request) if chosen => {
            Command::LeasedPut(command::LeasedPutRequest { grant_id: lease_id, ..request })
        }
        command => command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{LeaseGrantRequest, LeasedPutRequest, PublishRequest, PutRequest, RegisterRequest};

    fn at(now_ms: i64, lease_id: i64) -> Stamp {
        Stamp { now_ms, lease_id }
    }

    #[test]
    fn the_leader_chooses_the_lease_ids_left_to_it_and_keeps_those_named() {
        let check = |command: Command, expected: Command| assert_eq!(stamp(command, at(0, 7)), expected);
        let grant = |id| Command::LeaseGrant(LeaseGrantRequest { id, ttl_secs: 5 });
        check(grant(0), grant(7));
        check(grant(3), grant(3));
        check(grant(-3), grant(-3));
        let register = |lease_id, ttl_secs| Command::Register(RegisterRequest { lease_id, ttl_secs, puts: Vec::new() });
        check(register(0, 5), register(7, 5));
        check(register(3, 5), register(3, 5));
        check(register(0, 0), register(0, 0));
        let leased_put = |grant_id| Command::LeasedPut(LeasedPutRequest { reuse: 9, grant_id, ..Default::default() });
        check(leased_put(0), leased_put(7));
        check(leased_put(3), leased_put(3));
        let put = Command::Put(PutRequest { lease: 0, ..PutRequest::default() });
        check(put.clone(), put);
    }

    #[test]
    fn a_clients_command_is_stamped_inside_its_wrapper() {
        let wrapped = |id| {
            Command::Authorized(command::Authorized {
                caller: None,
                command: Box::new(Command::LeaseGrant(LeaseGrantRequest { id, ttl_secs: 5 })),
            })
        };
        assert!(chooses_lease(&wrapped(0)));
        assert_eq!(stamp(wrapped(0), at(0, 7)), wrapped(7));
    }

    #[test]
    fn time_dependent_commands_carry_the_leaders_clock() {
        let publish = |timestamp_ms| Command::Publish(PublishRequest { timestamp_ms, ..PublishRequest::default() });
        assert_eq!(stamp(publish(0), at(1_700_000_000_000, 7)), publish(1_700_000_000_000));
        assert_eq!(stamp(publish(5), at(6, 7)), publish(6), "a proposer's own time is replaced");
    }

    #[test]
    fn a_chosen_lease_id_is_positive() {
        for _ in 0..1000 {
            assert!(new_lease_id() > 0);
        }
    }
}

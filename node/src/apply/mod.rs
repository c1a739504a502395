//! The replicated commands, one file each. A file holds the command's checks of the request
//! alone (done before it is proposed, on whichever member proposes it; see
//! `command::validate`) and its deterministic apply to the replicated state (`MvccStore`: the
//! keyspace and its lease, topic and group sub-stores).
//!
//! Adding a command: its request and response types and one `Command` variant (`command/`),
//! its file here implementing [`Apply`], and one line in `commands!` below, which gives it its
//! typed proposal (`Member::propose(request)` answers its response type), its dispatch in
//! [`apply`] and its checks in [`check`].
//!
//! Pure and synchronous, as `mvcc` is: no clock, no await, no network. Time, lease ids and
//! offsets come in the command, chosen by the proposer.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use crate::command::*;
use crate::error::ServerError;
use crate::mvcc::{MvccStore, OpError};
use crate::storage::StorageError;
use keel_model::auth::etcd::AuthCommand;

mod alarm;
pub(crate) use alarm::adds_data;
mod auth;
mod authorized;
mod compact;
mod delete_range;
mod group_claim;
mod group_join;
mod group_settle;
mod lease_grant;
mod lease_revoke;
mod leased_put;
mod publish;
mod put;
mod register;
mod set_retention;
mod trim_topic;
mod txn;

/// A replicated command: what it checks before it is proposed, and how it changes the state.
pub(crate) trait Apply: Proposal {
    /// The checks of the request alone, etcd's where etcd has them. Most commands have none.
    fn check(&self) -> Result<(), ServerError> {
        Ok(())
    }

    /// Applies the command. `Rejected` is the rules refusing it (the same answer on every
    /// member, nothing changed); `Storage` is this member's storage failing (fatal).
    fn apply(&self, state: &mut MvccStore) -> Result<Self::Response, OpError>;
}

/// Each command's request type, its `Command` variant, and the `CommandResponse` variant (and
/// type) it is answered with.
macro_rules! commands {
    ($($request:ident => $command:ident answered $answer:ident($response:ident);)*) => {
        $(
            impl Proposal for $request {
                type Response = $response;

                fn response(response: CommandResponse) -> Option<$response> {
                    match response {
                        CommandResponse::$answer(answer) => Some(answer),
                        _ => None,
                    }
                }
            }
        )*

        /// Applies one command; see [`MvccStore::apply`] for the two kinds of failure.
        pub(crate) fn apply(state: &mut MvccStore, command: &Command) -> Result<CommandResponse, StorageError> {
            match apply_op(state, command) {
                Ok(response) => Ok(response),
                Err(OpError::Rejected(error)) => Ok(CommandResponse::Rejected(error)),
                Err(OpError::Storage(error)) => Err(error),
            }
        }

        fn apply_op(state: &mut MvccStore, command: &Command) -> Result<CommandResponse, OpError> {
            alarm::gate(state, command)?;
            match command {
                $(Command::$command(request) => request.apply(state).map(CommandResponse::$answer),)*
                Command::Authorized(authorized) => authorized::apply(state, authorized),
                // Not commands on this state: the state machine applies them.
                Command::PublishMember(_) | Command::InitSecretKey(_) => Ok(CommandResponse::None),
            }
        }

        /// The command's own checks of its request ([`Apply::check`]).
        pub(crate) fn check(command: &Command) -> Result<(), ServerError> {
            match command {
                $(Command::$command(request) => request.check(),)*
                Command::Authorized(authorized) => match authorized.command.as_ref() {
                    Command::Authorized(_) => Err(ServerError::InvalidCommand("an authorized command inside another")),
                    command => check(command),
                },
                Command::PublishMember(_) | Command::InitSecretKey(_) => Ok(()),
            }
        }
    };
}

commands! {
    PutRequest => Put answered Put(PutResponse);
    DeleteRangeRequest => DeleteRange answered DeleteRange(DeleteRangeResponse);
    TxnRequest => Txn answered Txn(TxnResponse);
    CompactRequest => Compact answered Compact(CompactResponse);
    LeaseGrantRequest => LeaseGrant answered LeaseGrant(LeaseGrantResponse);
    LeaseRevokeRequest => LeaseRevoke answered LeaseRevoke(LeaseRevokeResponse);
    RegisterRequest => Register answered Register(RegisterResponse);
    LeasedPutRequest => LeasedPut answered LeasedPut(LeasedPutResponse);
    PublishRequest => Publish answered Publish(PublishResponse);
    GroupJoinRequest => GroupJoin answered GroupJoin(GroupJoinResponse);
    GroupClaimRequest => GroupClaim answered GroupClaim(GroupClaimResponse);
    GroupSettleRequest => GroupSettle answered GroupSettle(GroupSettleResponse);
    SetRetentionRequest => SetRetention answered Topic(TopicResponse);
    TrimTopicRequest => TrimTopic answered Topic(TopicResponse);
    AuthCommand => Auth answered Auth(AuthResponse);
    AlarmRequest => Alarm answered Alarm(AlarmResponse);
}

/// The checks of a lease TTL a command carries.
fn check_ttl(ttl_secs: i64) -> Result<(), ServerError> {
    if !crate::lease::ttl_is_allowed(ttl_secs) {
        return Err(ServerError::LeaseTtlTooLarge);
    }
    Ok(())
}

/// The events API's name rules (`keel_client::names`), for commands that did not come through it.
fn check_topic(topic: &str) -> Result<(), ServerError> {
    Ok(crate::api::check_topic(topic)?)
}

fn check_group(topic: &str, group: &str) -> Result<(), ServerError> {
    check_topic(topic)?;
    Ok(keel_client::names::GROUP.check(group).map_err(crate::api::EventsError::from)?)
}

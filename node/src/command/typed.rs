//! Typed proposals: each request type names the command it becomes and the response it is
//! answered with, so `Member::propose(put)` returns a `PutResponse` and no caller recovers a
//! type by matching on `CommandResponse`. A new command is one line in `proposals!`.

use super::*;

/// A request proposed as one [`Command`] and answered with one response type.
pub trait Proposal: Into<Command> {
    type Response;

    /// This command's answer out of the state machine's, or `None` if the state machine
    /// answered with another kind (a bug: the caller reports `ServerError::Mismatched`).
    fn response(response: CommandResponse) -> Option<Self::Response>;
}

macro_rules! proposals {
    ($($request:ident => $command:ident answered $answer:ident($response:ident);)*) => {$(
        impl From<$request> for Command {
            fn from(request: $request) -> Command {
                Command::$command(request)
            }
        }

        impl Proposal for $request {
            type Response = $response;

            fn response(response: CommandResponse) -> Option<$response> {
                match response {
                    CommandResponse::$answer(answer) => Some(answer),
                    _ => None,
                }
            }
        }
    )*};
}

proposals! {
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
}

/// The answer of commands that answer nothing (`CommandResponse::None`): the members' own
/// announcements and the cluster's secret key.
pub struct Unanswered;

macro_rules! unanswered {
    ($($request:ident => $command:ident;)*) => {$(
        impl From<$request> for Command {
            fn from(request: $request) -> Command {
                Command::$command(request)
            }
        }

        impl Proposal for $request {
            type Response = Unanswered;

            fn response(response: CommandResponse) -> Option<Unanswered> {
                matches!(response, CommandResponse::None).then_some(Unanswered)
            }
        }
    )*};
}

unanswered! {
    MemberAttributes => PublishMember;
    SecretKey => InitSecretKey;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_finds_its_own_answer_and_no_other() {
        let put = CommandResponse::Put(PutResponse::default());
        assert!(PutRequest::response(put.clone()).is_some());
        assert!(DeleteRangeRequest::response(put).is_none());
        let topic = CommandResponse::Topic(TopicResponse::default());
        assert!(SetRetentionRequest::response(topic.clone()).is_some());
        assert!(TrimTopicRequest::response(topic).is_some());
        assert!(MemberAttributes::response(CommandResponse::None).is_some());
        assert_eq!(Command::from(CompactRequest::default()), Command::Compact(CompactRequest::default()));
    }
}

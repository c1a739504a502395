//! The ONE table from domain errors to gRPC statuses, with etcd's codes and exact message
//! texts: clients match on these strings (e.g. "etcdserver: requested lease not found").

use tonic::{Code, Status};

use keel_model::auth::etcd::AuthError;
use keel_model::auth::micro::MicroError;

use crate::dynamic_config::ConfigError;
use crate::error::ServerError;
use crate::mvcc::MvccError;
use crate::registry::RegistryError;
use crate::store::StoreError;

pub fn to_status(error: &ServerError) -> Status {
    let (code, message) = match error {
        ServerError::Mvcc(MvccError::Compacted { .. }) => {
            (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
        }
        ServerError::Mvcc(MvccError::FutureRevision { .. }) => {
            (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
        }
        ServerError::Mvcc(MvccError::KeyNotFound) => (Code::InvalidArgument, "etcdserver: key not found"),
        ServerError::Mvcc(MvccError::LeaseNotFound) => (Code::NotFound, "etcdserver: requested lease not found"),
        ServerError::Mvcc(MvccError::LeaseExists) => (Code::FailedPrecondition, "etcdserver: lease already exists"),
        ServerError::Mvcc(MvccError::Auth(error)) | ServerError::Auth(error) => return auth_status(error),
        ServerError::Mvcc(MvccError::NoSpace) => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        ServerError::Mvcc(MvccError::Corrupt) => (Code::DataLoss, "etcdserver: corrupt cluster"),
        ServerError::Mvcc(MvccError::TooManyAlarms) => (Code::ResourceExhausted, "etcdserver: too many alarms"),
        ServerError::MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
        ServerError::NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
        ServerError::PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        ServerError::NotSupportedForLearner => (Code::Unavailable, "etcdserver: rpc not supported for learner"),
        ServerError::TooManyLearners => (Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
        ServerError::MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
        ServerError::LearnerNotReady => {
            (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        ServerError::NotEnoughStartedMembers => {
            (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
        }
        ServerError::UnhealthyCluster => (Code::Unavailable, "etcdserver: unhealthy cluster"),
        // etcd's text alone, as etcd answers; the reason goes to the member's log.
        ServerError::InvalidPeerUrl(_) => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
        ServerError::MembershipFailed(_) => return Status::unavailable(format!("keel: {error}")),
        ServerError::BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
        ServerError::LeaderTransferTimeout => {
            (Code::Unavailable, "etcdserver: request timed out, leader transfer took too long")
        }
        ServerError::Storage(_) => return Status::internal(error.to_string()),
        ServerError::Registry(RegistryError::NotFound) => return Status::not_found(error.to_string()),
        ServerError::Registry(RegistryError::KeyHeld { .. }) => return Status::failed_precondition(error.to_string()),
        ServerError::Registry(_) => return Status::invalid_argument(error.to_string()),
        ServerError::Store(StoreError::NotFound) => return Status::not_found(error.to_string()),
        ServerError::Store(_) => return Status::invalid_argument(error.to_string()),
        ServerError::Config(ConfigError::NotFound(_)) => return Status::not_found(error.to_string()),
        ServerError::Config(ConfigError::SecretUnavailable) => return Status::unavailable(error.to_string()),
        ServerError::Config(ConfigError::CorruptSecret) => return Status::data_loss(error.to_string()),
        ServerError::Config(_) => return Status::invalid_argument(error.to_string()),
        ServerError::Events(crate::api::EventsError::NoSuchTopic) => return Status::not_found(error.to_string()),
        ServerError::Events(_) => return Status::invalid_argument(error.to_string()),
        ServerError::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
        ServerError::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        ServerError::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        ServerError::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        ServerError::TooManyTxnOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        ServerError::TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
        ServerError::DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        ServerError::InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
        ServerError::RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
        ServerError::LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
        ServerError::LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        // etcd has no such error: its code and prefix, so etcd clients show it as one of theirs.
        ServerError::ReservedKey(_) => return Status::invalid_argument(format!("etcdserver: {error}")),
        ServerError::RegisterTtlTooLarge => return Status::invalid_argument(error.to_string()),
        ServerError::Mismatched => return Status::internal(format!("keel: {error}")),
        ServerError::NoLeader => (Code::Unavailable, "etcdserver: no leader"),
        ServerError::Timeout => (Code::Unavailable, "etcdserver: request timed out"),
        ServerError::Stopped => (Code::Unavailable, "etcdserver: server stopped"),
        ServerError::InvalidCommand(_) | ServerError::LeaderRefused(_) => {
            return Status::invalid_argument(format!("keel: {error}"))
        }
        ServerError::Unimplemented(what) => {
            return Status::unimplemented(format!("keel: {what} is not implemented yet"))
        }
    };
    Status::new(code, message)
}

/// How grpc-go prints a status (`status.Error(...).Error()`): etcd puts this text, not the bare
/// message, in the `cancel_reason` of a watch it refuses.
pub fn go_error_text(status: &Status) -> String {
    let code = match status.code() {
        Code::Cancelled => "Canceled".to_string(),
        code => format!("{code:?}"),
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}

/// etcd's codes for its auth errors (`rpctypes`); the texts are the errors' own.
fn auth_status(error: &AuthError) -> Status {
    let code = match error {
        AuthError::UserEmpty
        | AuthError::RoleEmpty
        | AuthError::AuthFailed
        | AuthError::InvalidAuthMgmt
        | AuthError::AuthOldRevision
        | AuthError::TooLarge(_) => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidAuthToken => Code::Unauthenticated,
        // Retried by the member that checked the password; reaching a client means it kept
        // changing: a retry of its own will do.
        AuthError::StaleAuthenticate => Code::Unavailable,
        AuthError::Micro(error) => match error {
            MicroError::AccountExists(_) | MicroError::Invalid(_) => Code::InvalidArgument,
            MicroError::AccountNotFound | MicroError::RuleNotFound => Code::NotFound,
            MicroError::Unauthenticated => Code::Unauthenticated,
            MicroError::Forbidden => Code::PermissionDenied,
        },
        AuthError::RootUserNotExist
        | AuthError::RootRoleNotExist
        | AuthError::UserAlreadyExist
        | AuthError::UserNotFound
        | AuthError::RoleAlreadyExist
        | AuthError::RoleNotFound
        | AuthError::RoleNotGranted
        | AuthError::PermissionNotGranted
        | AuthError::AuthNotEnabled => Code::FailedPrecondition,
    };
    Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_etcds() {
        let cases = [
            (
                ServerError::Mvcc(MvccError::Compacted { compact_revision: 3 }),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (ServerError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (ServerError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (ServerError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
        ];
        for (error, code, message) in cases {
            let status = to_status(&error);
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }

    #[test]
    fn go_error_text_is_grpc_gos() {
        let status = to_status(&ServerError::Auth(AuthError::PermissionDenied));
        assert_eq!(go_error_text(&status), "rpc error: code = PermissionDenied desc = etcdserver: permission denied");
        assert_eq!(go_error_text(&Status::cancelled("x")), "rpc error: code = Canceled desc = x");
    }

    #[test]
    fn a_reserved_key_is_an_invalid_argument_naming_the_prefix() {
        let status = to_status(&ServerError::ReservedKey(crate::command::RESERVED_PREFIXES[0]));
        let expected = "etcdserver: key is reserved for keel events: /micro/events/";
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, expected));
    }
}

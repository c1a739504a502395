//! The golden samples of etcd's auth: every `AuthCommand` (inside `Command::Auth`), a client's
//! command with its sender (`Command::Authorized`), and the auth sub-store's records.

use keel_model::auth::etcd::{AuthCommand, Caller, Role, User};
use keel_model::auth::permissions::{Permission, PermissionKind};

use super::{postcard_decode, postcard_encode, Sample};
use crate::command::*;
use crate::mvcc::stored::{role_key, user_key, AuthMeta, AUTH_META_KEY};

/// The sample's name for an auth command. No wildcard, as for `Command`.
pub(super) fn auth_command_name(command: &AuthCommand) -> &'static str {
    match command {
        AuthCommand::Enable => "command-auth-enable",
        AuthCommand::Disable => "command-auth-disable",
        AuthCommand::UserAdd { .. } => "command-auth-user-add",
        AuthCommand::UserDelete { .. } => "command-auth-user-delete",
        AuthCommand::UserChangePassword { .. } => "command-auth-user-change-password",
        AuthCommand::UserGrantRole { .. } => "command-auth-user-grant-role",
        AuthCommand::UserRevokeRole { .. } => "command-auth-user-revoke-role",
        AuthCommand::RoleAdd { .. } => "command-auth-role-add",
        AuthCommand::RoleDelete { .. } => "command-auth-role-delete",
        AuthCommand::RoleGrantPermission { .. } => "command-auth-role-grant-permission",
        AuthCommand::RoleRevokePermission { .. } => "command-auth-role-revoke-permission",
        AuthCommand::Authenticate { .. } => "command-auth-authenticate",
    }
}

/// A bcrypt hash's shape (of no password anyone uses).
const HASH: &str = "$2b$10$abcdefghijklmnopqrstuuJd0Xo8y9Qw3r1xN7sD9wOe5a6b7c8d9e";

fn permission() -> Permission {
    Permission { kind: PermissionKind::ReadWrite, key: b"/app/".to_vec(), range_end: b"/app0".to_vec() }
}

/// One command of each kind that only auth has.
pub(super) fn commands() -> Vec<Command> {
    let auth = [
        AuthCommand::Enable,
        AuthCommand::Disable,
        AuthCommand::UserAdd { name: "alice".into(), password_hash: HASH.into(), no_password: true },
        AuthCommand::UserDelete { name: "alice".into() },
        AuthCommand::UserChangePassword { name: "alice".into(), password_hash: HASH.into() },
        AuthCommand::UserGrantRole { user: "alice".into(), role: "app".into() },
        AuthCommand::UserRevokeRole { user: "alice".into(), role: "app".into() },
        AuthCommand::RoleAdd { name: "app".into() },
        AuthCommand::RoleDelete { name: "app".into() },
        AuthCommand::RoleGrantPermission { role: "app".into(), permission: permission() },
        AuthCommand::RoleRevokePermission { role: "app".into(), key: b"/app/".to_vec(), range_end: b"/app0".to_vec() },
        AuthCommand::Authenticate { name: "alice".into(), token: "abcdefghijklmnop.42".into(), checked_revision: 7 },
    ];
    let put = PutRequest { key: b"/app/k".to_vec(), value: b"v".to_vec(), ..PutRequest::default() };
    let authorized = Authorized {
        caller: Some(Caller { user: "alice".into(), auth_revision: 7 }),
        command: Box::new(Command::Put(put)),
    };
    auth.into_iter().map(Command::Auth).chain([Command::Authorized(authorized)]).collect()
}

/// The auth sub-store's records (table `state_meta`).
pub(super) fn state_meta_samples() -> Vec<Sample> {
    let user = User { name: "alice".into(), password_hash: HASH.into(), no_password: false, roles: vec!["app".into()] };
    let role = Role { name: "app".into(), permissions: vec![permission()] };
    vec![
        Sample::new(
            "mvcc-auth-meta",
            "whether etcd's auth is on, and the auth revision (table `state_meta`)",
            Some(AUTH_META_KEY.to_vec()),
            AuthMeta { enabled: true, revision: 7 },
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-auth-user",
            "an etcd user: bcrypt hash, roles (table `state_meta`)",
            Some(user_key("alice")),
            user,
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-auth-role",
            "an etcd role and its key permissions (table `state_meta`)",
            Some(role_key("app")),
            role,
            postcard_encode,
            postcard_decode,
        ),
    ]
}

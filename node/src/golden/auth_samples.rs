//! The golden samples of auth: every `AuthCommand` (inside `Command::Auth`; micro's commands
//! inside `AuthCommand::Micro`), a client's command with its sender (`Command::Authorized`),
//! and the auth sub-store's records, etcd's and micro's.

use keel_model::auth::etcd::{AuthCommand, Caller, Role, User};
use keel_model::auth::micro::{MicroCommand, StoredAccount, StoredRule};
use keel_model::auth::permissions::{Permission, PermissionKind};
use keel_model::auth::rules::{Access, Resource, Rule};

use super::{postcard_decode, postcard_encode, Sample};
use crate::command::*;
use crate::mvcc::stored::{
    account_key, role_key, rule_key, user_key, AuthMeta, MicroMeta, AUTH_META_KEY, MICRO_META_KEY,
};

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
        AuthCommand::Micro(command) => match command {
            MicroCommand::Generate(_) => "command-auth-micro-generate",
            MicroCommand::DeleteAccount { .. } => "command-auth-micro-delete-account",
            MicroCommand::ChangeSecret { .. } => "command-auth-micro-change-secret",
            MicroCommand::Grant(_) => "command-auth-micro-grant",
            MicroCommand::Revoke { .. } => "command-auth-micro-revoke",
            MicroCommand::IssueRefresh { .. } => "command-auth-micro-issue-refresh",
            MicroCommand::RotateRefresh { .. } => "command-auth-micro-rotate-refresh",
        },
    }
}

fn micro_account() -> StoredAccount {
    StoredAccount {
        id: "svc-billing".into(),
        r#type: "service".into(),
        scopes: vec!["billing".into()],
        metadata: [("team".to_string(), "payments".to_string())].into(),
        provider: "basic".into(),
        secret_hash: HASH.into(),
        generation: 3,
        refresh_ids: vec!["AAECAwQFBgcICQoLDA0ODw".into()],
    }
}

fn micro_rule() -> Rule {
    Rule {
        id: "billing-reads".into(),
        scope: "billing".into(),
        resource: Resource { r#type: "service".into(), name: "keel.v1.Store".into(), endpoint: "Store.Read".into() },
        access: Access::Granted,
        priority: 10,
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
        AuthCommand::Micro(MicroCommand::Generate(micro_account())),
        AuthCommand::Micro(MicroCommand::DeleteAccount { id: "svc-billing".into() }),
        AuthCommand::Micro(MicroCommand::ChangeSecret {
            id: "svc-billing".into(),
            secret_hash: HASH.into(),
            checked_generation: 3,
        }),
        AuthCommand::Micro(MicroCommand::Grant(micro_rule())),
        AuthCommand::Micro(MicroCommand::Revoke { id: "billing-reads".into() }),
        AuthCommand::Micro(MicroCommand::IssueRefresh {
            id: "svc-billing".into(),
            generation: 3,
            refresh_id: "AAECAwQFBgcICQoLDA0ODw".into(),
        }),
        AuthCommand::Micro(MicroCommand::RotateRefresh {
            id: "svc-billing".into(),
            generation: 3,
            used: "AAECAwQFBgcICQoLDA0ODw".into(),
            refresh_id: "EBESExQVFhcYGRobHB0eHw".into(),
        }),
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
        Sample::new(
            "mvcc-auth-micro-meta",
            "micro auth's counters: the next account generation and rule position (table `state_meta`)",
            Some(MICRO_META_KEY.to_vec()),
            MicroMeta { next_generation: 4, next_rule_seq: 2 },
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-auth-micro-account",
            "a micro account: bcrypt hash of its secret, generation, live refresh token ids (table `state_meta`)",
            Some(account_key("svc-billing")),
            micro_account(),
            postcard_encode,
            postcard_decode,
        ),
        Sample::new(
            "mvcc-auth-micro-rule",
            "a micro rule and its place in Verify's order (table `state_meta`)",
            Some(rule_key("billing-reads")),
            StoredRule { seq: 1, rule: micro_rule() },
            postcard_encode,
            postcard_decode,
        ),
    ]
}

use super::*;
use crate::auth::permissions::PermissionKind;

fn user_add(name: &str) -> AuthCommand {
    AuthCommand::UserAdd { name: name.into(), password_hash: "$2b$04$hash".into(), no_password: false }
}

fn grant_role(user: &str, role: &str) -> AuthCommand {
    AuthCommand::UserGrantRole { user: user.into(), role: role.into() }
}

fn grant(role: &str, kind: PermissionKind, key: &str, range_end: &str) -> AuthCommand {
    AuthCommand::RoleGrantPermission {
        role: role.into(),
        permission: Permission { kind, key: key.into(), range_end: range_end.into() },
    }
}

fn caller(user: &str, auth_revision: u64) -> Caller {
    Caller { user: user.into(), auth_revision }
}

/// root with the root role, alice with role `reader` (READ on `a` .. `b`), auth on.
fn locked_down() -> AuthState {
    let mut state = AuthState::default();
    for command in [
        user_add(ROOT),
        grant_role(ROOT, ROOT),
        user_add("alice"),
        AuthCommand::RoleAdd { name: "reader".into() },
        grant("reader", PermissionKind::Read, "a", "b"),
        grant_role("alice", "reader"),
        AuthCommand::Enable,
    ] {
        state.apply(&command).expect("as expected");
    }
    state
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let mut state = AuthState::default();
    assert_eq!(state.apply(&AuthCommand::Enable), Err(AuthError::RootUserNotExist));
    state.apply(&user_add(ROOT)).expect("as expected");
    assert_eq!(state.apply(&AuthCommand::Enable), Err(AuthError::RootRoleNotExist));
    // The root role is granted without existing, as in etcd.
    state.apply(&grant_role(ROOT, ROOT)).expect("as expected");
    let revision = state.revision;
    state.apply(&AuthCommand::Enable).expect("as expected");
    assert!(state.enabled);
    assert_eq!(state.revision, revision, "enabling does not raise the revision");
    assert_eq!(state.apply(&AuthCommand::Enable), Ok(Touched::default()), "enabling twice is ignored");
}

#[test]
fn every_change_raises_the_revision_and_refusals_change_nothing() {
    let mut state = locked_down();
    let before = state.clone();
    for refused in [
        user_add("alice"),
        user_add(""),
        AuthCommand::UserDelete { name: ROOT.into() },
        AuthCommand::UserDelete { name: "nobody".into() },
        AuthCommand::UserRevokeRole { user: ROOT.into(), role: ROOT.into() },
        AuthCommand::UserRevokeRole { user: "alice".into(), role: "writer".into() },
        grant_role("alice", "missing"),
        grant_role("nobody", "reader"),
        AuthCommand::RoleAdd { name: "reader".into() },
        AuthCommand::RoleAdd { name: String::new() },
        AuthCommand::RoleDelete { name: ROOT.into() },
        AuthCommand::RoleRevokePermission { role: "reader".into(), key: b"a".to_vec(), range_end: Vec::new() },
        grant("missing", PermissionKind::Read, "a", ""),
        user_add(&"x".repeat(NAME_BYTES_MAX + 1)),
    ] {
        assert!(state.apply(&refused).is_err(), "{refused}");
        assert_eq!(state, before, "{refused} changed the state");
    }
    state.apply(&grant_role("alice", "reader")).expect("as expected");
    assert_eq!(state, before, "granting a role twice is ignored");
    state.apply(&user_add("bob")).expect("as expected");
    assert_eq!(state.revision, before.revision + 1);
    state.apply(&AuthCommand::Disable).expect("as expected");
    assert_eq!(state.revision, before.revision + 2);
    assert!(!state.enabled);
}

#[test]
fn deleting_a_role_takes_it_from_every_user() {
    let mut state = locked_down();
    let touched = state.apply(&AuthCommand::RoleDelete { name: "reader".into() }).expect("as expected");
    assert!(state.users["alice"].roles.is_empty());
    assert!(touched.users.contains("alice") && touched.roles.contains("reader"));
}

#[test]
fn permissions_are_kept_sorted_and_a_second_grant_changes_the_kind() {
    let mut state = locked_down();
    state.apply(&grant("reader", PermissionKind::Write, "0", "")).expect("as expected");
    state.apply(&grant("reader", PermissionKind::ReadWrite, "a", "b")).expect("as expected");
    let keys: Vec<(&[u8], PermissionKind)> =
        state.roles["reader"].permissions.iter().map(|p| (p.key.as_slice(), p.kind)).collect();
    assert_eq!(keys, [(&b"0"[..], PermissionKind::Write), (&b"a"[..], PermissionKind::ReadWrite)]);
}

#[test]
fn access_is_etcds_is_op_permitted() {
    let state = locked_down();
    let rev = state.revision;
    let read_a = [Access::read(b"a1", b"")];
    assert_eq!(state.check_access(None, &read_a), Err(AuthError::UserEmpty));
    assert_eq!(state.check_access(Some(&caller("alice", rev)), &read_a), Ok(()));
    assert_eq!(state.check_access(Some(&caller("alice", rev - 1)), &read_a), Err(AuthError::AuthOldRevision));
    assert_eq!(
        state.check_access(Some(&caller("alice", rev)), &[Access::write(b"a1", b"")]),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        state.check_access(Some(&caller("alice", rev)), &[Access::read(b"a", b"c")]),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(state.check_access(Some(&caller("gone", rev)), &read_a), Err(AuthError::PermissionDenied));
    assert_eq!(state.check_access(Some(&caller(ROOT, rev)), &[Access::write(b"\0", b"\0")]), Ok(()));
    assert_eq!(AuthState::default().check_access(None, &read_a), Ok(()), "anyone while auth is off");
}

#[test]
fn admin_is_etcds_is_admin_permitted() {
    let state = locked_down();
    assert_eq!(state.check_admin(None), Err(AuthError::UserEmpty));
    assert_eq!(state.check_admin(Some(&caller("alice", 1))), Err(AuthError::PermissionDenied));
    assert_eq!(state.check_admin(Some(&caller("gone", 1))), Err(AuthError::UserNotFound));
    assert_eq!(state.check_admin(Some(&caller(ROOT, 1))), Ok(()));
}

#[test]
fn authenticate_assigns_a_token_only_for_a_fresh_check_of_a_user_with_a_password() {
    let mut state = locked_down();
    let authenticate = |name: &str, checked_revision| AuthCommand::Authenticate {
        name: name.into(),
        token: "tok.9".into(),
        checked_revision,
    };
    let rev = state.revision;
    let touched = state.apply(&authenticate("alice", rev)).expect("as expected");
    assert_eq!(touched.tokens, Some(TokenChange::Assign("alice".into(), "tok.9".into())));
    assert!(!touched.meta && touched.users.is_empty(), "a token is not replicated state");
    assert_eq!(state.apply(&authenticate("alice", rev - 1)), Err(AuthError::StaleAuthenticate));
    assert_eq!(state.apply(&authenticate("nobody", rev)), Err(AuthError::AuthFailed));
    state
        .apply(&AuthCommand::UserAdd { name: "np".into(), password_hash: String::new(), no_password: true })
        .expect("as expected");
    assert_eq!(state.apply(&authenticate("np", state.revision)), Err(AuthError::AuthFailed));
    state.apply(&AuthCommand::Disable).expect("as expected");
    assert_eq!(state.apply(&authenticate("alice", state.revision)), Err(AuthError::AuthNotEnabled));
}

#[test]
fn debug_and_display_never_show_hashes_or_tokens() {
    let add = user_add("alice");
    let token = AuthCommand::Authenticate { name: "alice".into(), token: "secret-token".into(), checked_revision: 1 };
    for text in [format!("{add:?}"), format!("{add}"), format!("{token:?}"), format!("{:?}", locked_down())] {
        assert!(!text.contains("$2b$") && !text.contains("secret-token"), "{text}");
    }
}

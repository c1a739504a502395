//! etcd's auth store as replicated state: whether auth is on, the auth revision, users (bcrypt
//! hashes, never passwords) and roles with their key permissions; the commands that change it;
//! and who may do what, decided as etcd 3.4 decides it (`auth/store.go`, `apply_auth.go`).
//!
//! Pure: the node hashes passwords and makes tokens on the member that receives the request, and
//! stores what [`AuthState::apply`] says it touched.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::micro::{MicroCommand, MicroError, MicroState, MicroTouched};
use super::permissions::{Need, Permission, UserPermissions};

/// etcd's superuser and its role: a user with the `root` role may do anything.
pub const ROOT: &str = "root";

/// Longest user or role name, in bytes. etcd has no limit; names are keys of the replicated
/// state and appear in every token and log line, so Keel bounds them.
pub const NAME_BYTES_MAX: usize = 256;

/// Most permissions one role may hold: a role is read whole on every permission check.
pub const ROLE_PERMISSIONS_MAX: usize = 1_000;

/// A user, as etcd's `authpb.User`: roles sorted, no duplicates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// A bcrypt hash (`$2b$…`); empty for a user added without a password.
    pub password_hash: String,
    pub no_password: bool,
    pub roles: Vec<String>,
}

/// Debug never shows the hash.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("no_password", &self.no_password)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A role, as etcd's `authpb.Role`: permissions sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
}

/// Who sent a request, as the member that received it established: the user its token names
/// and the auth revision the token (JWT) or the member's state (simple token, TLS name) was at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user: String,
    pub auth_revision: u64,
}

/// A change to the auth state: etcd's auth RPCs that write, and `Authenticate`, which assigns a
/// simple token through the log as etcd does.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthCommand {
    Enable,
    Disable,
    UserAdd {
        name: String,
        password_hash: String,
        no_password: bool,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password_hash: String,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        user: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    RoleGrantPermission {
        role: String,
        permission: Permission,
    },
    RoleRevokePermission {
        role: String,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        range_end: Vec<u8>,
    },
    /// `token` for `name`, whose password the receiving member checked against the state at
    /// `checked_revision`; refused as stale if the state changed since (the member checks again).
    Authenticate {
        name: String,
        token: String,
        checked_revision: u64,
    },
    /// A change to micro's accounts or rules: the same state and the same checks at apply
    /// (root while auth is on), but never etcd's auth revision, so etcd users' tokens live on.
    Micro(MicroCommand),
}

/// Debug never shows a hash or a token.
impl std::fmt::Debug for AuthCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Short, for logs: never a hash or a token.
impl std::fmt::Display for AuthCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthCommand::Enable => write!(f, "auth enable"),
            AuthCommand::Disable => write!(f, "auth disable"),
            AuthCommand::UserAdd { name, .. } => write!(f, "user add {name:?}"),
            AuthCommand::UserDelete { name } => write!(f, "user delete {name:?}"),
            AuthCommand::UserChangePassword { name, .. } => write!(f, "user change password {name:?}"),
            AuthCommand::UserGrantRole { user, role } => write!(f, "user {user:?} grant role {role:?}"),
            AuthCommand::UserRevokeRole { user, role } => write!(f, "user {user:?} revoke role {role:?}"),
            AuthCommand::RoleAdd { name } => write!(f, "role add {name:?}"),
            AuthCommand::RoleDelete { name } => write!(f, "role delete {name:?}"),
            AuthCommand::RoleGrantPermission { role, .. } => write!(f, "role {role:?} grant permission"),
            AuthCommand::RoleRevokePermission { role, .. } => write!(f, "role {role:?} revoke permission"),
            AuthCommand::Authenticate { name, .. } => write!(f, "authenticate {name:?}"),
            AuthCommand::Micro(command) => write!(f, "micro {command:?}"),
        }
    }
}

impl AuthCommand {
    /// The user and role names it carries.
    pub fn names(&self) -> Vec<&str> {
        match self {
            AuthCommand::Enable | AuthCommand::Disable | AuthCommand::Micro(_) => Vec::new(),
            AuthCommand::UserAdd { name, .. }
            | AuthCommand::UserDelete { name }
            | AuthCommand::UserChangePassword { name, .. }
            | AuthCommand::RoleAdd { name }
            | AuthCommand::RoleDelete { name }
            | AuthCommand::Authenticate { name, .. } => vec![name],
            AuthCommand::UserGrantRole { user, role } | AuthCommand::UserRevokeRole { user, role } => vec![user, role],
            AuthCommand::RoleGrantPermission { role, .. } | AuthCommand::RoleRevokePermission { role, .. } => {
                vec![role]
            }
        }
    }
}

/// etcd's auth refusals. Display texts are etcd's (`rpctypes`), since clients match on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AuthError {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// Keel's: a name past [`NAME_BYTES_MAX`] or a role past [`ROLE_PERMISSIONS_MAX`].
    #[error("etcdserver: {0}")]
    TooLarge(String),
    /// The state changed between the password check and the token's assignment: the receiving
    /// member checks again (never reaches a client).
    #[error("etcdserver: auth state changed while authenticating")]
    StaleAuthenticate,
    /// micro's Auth refusing (its own texts: micro's clients are not etcd's).
    #[error(transparent)]
    Micro(#[from] MicroError),
}

/// What an applied command touched: the records to store again (or delete, if gone) and a
/// simple token assigned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub users: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    /// Whether `enabled` or `revision` changed.
    pub meta: bool,
    /// What the member's simple tokens must learn.
    pub tokens: Option<TokenChange>,
    /// micro's records.
    pub micro: MicroTouched,
}

/// A change to the simple tokens each member keeps (not replicated state: etcd keeps them in
/// memory too, assigned through the log so every member knows them).
#[derive(Clone, PartialEq, Eq)]
pub enum TokenChange {
    /// (user, token)
    Assign(String, String),
    /// A user deleted or its password changed: its tokens end.
    EndUser(String),
    /// Auth disabled: every token ends.
    EndAll,
}

impl std::fmt::Debug for TokenChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenChange::Assign(user, _) => write!(f, "Assign({user:?}, [redacted])"),
            TokenChange::EndUser(user) => write!(f, "EndUser({user:?})"),
            TokenChange::EndAll => write!(f, "EndAll"),
        }
    }
}

/// The whole auth state. A fresh cluster's: auth disabled, revision 0, nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthState {
    pub enabled: bool,
    /// etcd's auth revision: raised by every change to users and roles and by disabling.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    /// micro's accounts and rules.
    pub micro: MicroState,
}

impl AuthState {
    /// Applies `command` as etcd's auth store does. A refusal changes nothing.
    pub fn apply(&mut self, command: &AuthCommand) -> Result<Touched, AuthError> {
        check_sizes(command)?;
        let mut touched = Touched::default();
        match command {
            AuthCommand::Enable => self.enable(&mut touched)?,
            AuthCommand::Micro(command) => touched.micro = self.micro.apply(command)?,
            AuthCommand::Disable => {
                if self.enabled {
                    self.enabled = false;
                    self.commit_revision(&mut touched);
                    touched.tokens = Some(TokenChange::EndAll);
                }
            }
            AuthCommand::UserAdd { name, password_hash, no_password } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let user = User {
                    name: name.clone(),
                    password_hash: if *no_password { String::new() } else { password_hash.clone() },
                    no_password: *no_password,
                    roles: Vec::new(),
                };
                self.put_user(user, &mut touched);
            }
            AuthCommand::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                if self.users.remove(name).is_none() {
                    return Err(AuthError::UserNotFound);
                }
                touched.users.insert(name.clone());
                self.commit_revision(&mut touched);
                touched.tokens = Some(TokenChange::EndUser(name.clone()));
            }
            AuthCommand::UserChangePassword { name, password_hash } => {
                let mut user = self.users.get(name).cloned().ok_or(AuthError::UserNotFound)?;
                user.password_hash = password_hash.clone();
                self.put_user(user, &mut touched);
                touched.tokens = Some(TokenChange::EndUser(name.clone()));
            }
            AuthCommand::UserGrantRole { user, role } => self.grant_role(user, role, &mut touched)?,
            AuthCommand::UserRevokeRole { user, role } => self.revoke_role(user, role, &mut touched)?,
            AuthCommand::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.put_role(Role { name: name.clone(), permissions: Vec::new() }, &mut touched);
            }
            AuthCommand::RoleDelete { name } => self.delete_role(name, &mut touched)?,
            AuthCommand::RoleGrantPermission { role, permission } => {
                let mut role = self.roles.get(role).cloned().ok_or(AuthError::RoleNotFound)?;
                grant(&mut role.permissions, permission)?;
                self.put_role(role, &mut touched);
            }
            AuthCommand::RoleRevokePermission { role, key, range_end } => {
                let mut role = self.roles.get(role).cloned().ok_or(AuthError::RoleNotFound)?;
                let before = role.permissions.len();
                role.permissions.retain(|p| p.key != *key || p.range_end != *range_end);
                if role.permissions.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                self.put_role(role, &mut touched);
            }
            AuthCommand::Authenticate { name, token, checked_revision } => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
                if user.no_password {
                    return Err(AuthError::AuthFailed);
                }
                if *checked_revision != self.revision {
                    return Err(AuthError::StaleAuthenticate);
                }
                touched.tokens = Some(TokenChange::Assign(name.clone(), token.clone()));
            }
        }
        Ok(touched)
    }

    fn enable(&mut self, touched: &mut Touched) -> Result<(), AuthError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(AuthError::RootRoleNotExist);
        }
        // etcd does not raise the revision on enable.
        self.enabled = true;
        touched.meta = true;
        Ok(())
    }

    fn grant_role(&mut self, user: &str, role: &str, touched: &mut Touched) -> Result<(), AuthError> {
        let mut record = self.users.get(user).cloned().ok_or(AuthError::UserNotFound)?;
        // The root role need not exist to be granted, as in etcd.
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(AuthError::RoleNotFound);
        }
        let Err(at) = record.roles.binary_search_by(|r| r.as_str().cmp(role)) else {
            return Ok(()); // already granted: etcd ignores it
        };
        record.roles.insert(at, role.to_string());
        self.put_user(record, touched);
        Ok(())
    }

    fn revoke_role(&mut self, user: &str, role: &str, touched: &mut Touched) -> Result<(), AuthError> {
        if self.enabled && user == ROOT && role == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let mut record = self.users.get(user).cloned().ok_or(AuthError::UserNotFound)?;
        let before = record.roles.len();
        record.roles.retain(|r| r != role);
        if record.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.put_user(record, touched);
        Ok(())
    }

    fn delete_role(&mut self, name: &str, touched: &mut Touched) -> Result<(), AuthError> {
        if self.enabled && name == ROOT {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(AuthError::RoleNotFound);
        }
        touched.roles.insert(name.to_string());
        for user in self.users.values_mut() {
            let before = user.roles.len();
            user.roles.retain(|r| r != name);
            if user.roles.len() != before {
                touched.users.insert(user.name.clone());
            }
        }
        self.commit_revision(touched);
        Ok(())
    }

    fn put_user(&mut self, user: User, touched: &mut Touched) {
        touched.users.insert(user.name.clone());
        self.users.insert(user.name.clone(), user);
        self.commit_revision(touched);
    }

    fn put_role(&mut self, role: Role, touched: &mut Touched) {
        touched.roles.insert(role.name.clone());
        self.roles.insert(role.name.clone(), role);
        self.commit_revision(touched);
    }

    fn commit_revision(&mut self, touched: &mut Touched) {
        self.revision = self.revision.saturating_add(1);
        touched.meta = true;
    }

    // ---- who may do what ----

    /// etcd's `IsAdminPermitted`: anyone while auth is off; then a known user with the root role.
    pub fn check_admin(&self, caller: Option<&Caller>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let caller = caller.filter(|c| !c.user.is_empty()).ok_or(AuthError::UserEmpty)?;
        let user = self.users.get(&caller.user).ok_or(AuthError::UserNotFound)?;
        if !has_root_role(user) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's `isOpPermitted` for every `(need, key, range_end)` of one request: anyone while
    /// auth is off; then a caller whose token is not older than the state, and a user who is
    /// root or whose roles cover each range.
    pub fn check_access(&self, caller: Option<&Caller>, needs: &[Access<'_>]) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let caller = caller.filter(|c| c.auth_revision != 0).ok_or(AuthError::UserEmpty)?;
        if caller.auth_revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self.users.get(&caller.user).ok_or(AuthError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        let permissions = self.permissions_of(user);
        if needs.iter().all(|access| permissions.allows(access.need, access.key, access.range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// A user's permissions merged over its roles.
    pub fn permissions_of(&self, user: &User) -> UserPermissions {
        UserPermissions::new(
            user.roles.iter().filter_map(|role| self.roles.get(role)).flat_map(|role| role.permissions.iter()),
        )
    }

    /// Whether `user` holds `role` (etcd lets a user read its own roles without root).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}

/// One range a request touches and what it needs there (`range_end` as in etcd's requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access<'a> {
    pub need: Need,
    pub key: &'a [u8],
    pub range_end: &'a [u8],
}

impl<'a> Access<'a> {
    pub fn read(key: &'a [u8], range_end: &'a [u8]) -> Access<'a> {
        Access { need: Need::Read, key, range_end }
    }

    pub fn write(key: &'a [u8], range_end: &'a [u8]) -> Access<'a> {
        Access { need: Need::Write, key, range_end }
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT)
}

/// Grants `permission`, or changes the kind of the one on the same key and range (etcd keeps
/// the role's permissions sorted by key).
fn grant(permissions: &mut Vec<Permission>, permission: &Permission) -> Result<(), AuthError> {
    if let Some(existing) =
        permissions.iter_mut().find(|p| p.key == permission.key && p.range_end == permission.range_end)
    {
        existing.kind = permission.kind;
        return Ok(());
    }
    if permissions.len() >= ROLE_PERMISSIONS_MAX {
        return Err(AuthError::TooLarge(format!("a role holds at most {ROLE_PERMISSIONS_MAX} permissions")));
    }
    let at = permissions.partition_point(|p| p.key <= permission.key);
    permissions.insert(at, permission.clone());
    Ok(())
}

/// Names past [`NAME_BYTES_MAX`] are refused before anything is looked up.
fn check_sizes(command: &AuthCommand) -> Result<(), AuthError> {
    check_names(command.names())
}

/// The name limit, for the member to apply before proposing too.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), AuthError> {
    for name in names {
        if name.len() > NAME_BYTES_MAX {
            return Err(AuthError::TooLarge(format!("user and role names are at most {NAME_BYTES_MAX} bytes")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

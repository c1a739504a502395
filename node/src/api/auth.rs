//! etcd's Auth service: users, roles, permissions, enable/disable, Authenticate.
//!
//! Changes are proposed `As` their sender and checked at apply (root only, `apply::authorized`);
//! this member checks root first too, so that nobody else makes it hash a password. Reads (get,
//! list, status) are served from this member's state after a read barrier, with etcd's checks:
//! root, or a user reading itself or one of its own roles.

use std::sync::Arc;

use keel_model::auth::etcd::{AuthCommand, AuthError, Caller};
use keel_model::auth::permissions::{Permission, PermissionKind};
use keel_proto::etcd::PbResponseHeader;
use keel_proto::etcd_auth::authpb;
use keel_proto::etcd_auth::etcdserverpb::auth_server::Auth;
use keel_proto::etcd_auth::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::{caller, header, status::to_status};
use crate::command::As;
use crate::error::ServerError;
use crate::member::Member;

pub struct AuthService {
    member: Arc<Member>,
}

type Answer<T> = Result<Response<T>, Status>;

impl AuthService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// Proposes `command` as `caller`; answers the header of the revision it was applied at.
    async fn change(&self, caller: Option<Caller>, command: AuthCommand) -> Result<Option<PbResponseHeader>, Status> {
        let applied = self.member.propose(As::new(caller, command)).await.map_err(|e| to_status(&e))?;
        Ok(header(&self.member, applied.header_revision))
    }

    /// The sender of `request`, allowed to change the auth state (checked again at apply).
    async fn admin<T>(&self, request: &Request<T>) -> Result<Option<Caller>, Status> {
        let caller = caller(&self.member, request).await?;
        self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        Ok(caller)
    }

    /// A linearizable read of the auth state by the sender of `request`.
    async fn reader<T>(&self, request: &Request<T>) -> Result<Option<Caller>, Status> {
        let caller = caller(&self.member, request).await?;
        self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        Ok(caller)
    }

    fn current_header(&self) -> Option<PbResponseHeader> {
        header(&self.member, self.member.shared().mvcc().current_revision())
    }
}

fn refuse(error: AuthError) -> Status {
    to_status(&ServerError::Auth(error))
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Answer<AuthEnableResponse> {
        let caller = caller(&self.member, &request).await?;
        Ok(Response::new(AuthEnableResponse { header: self.change(caller, AuthCommand::Enable).await? }))
    }

    async fn auth_disable(&self, request: Request<AuthDisableRequest>) -> Answer<AuthDisableResponse> {
        let caller = caller(&self.member, &request).await?;
        Ok(Response::new(AuthDisableResponse { header: self.change(caller, AuthCommand::Disable).await? }))
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Answer<AuthStatusResponse> {
        let caller = self.reader(&request).await?;
        self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        let (enabled, auth_revision) = self.member.read_auth(|auth| (auth.enabled, auth.revision));
        Ok(Response::new(AuthStatusResponse { header: self.current_header(), enabled, auth_revision }))
    }

    async fn authenticate(&self, request: Request<AuthenticateRequest>) -> Answer<AuthenticateResponse> {
        let AuthenticateRequest { name, password } = request.into_inner();
        let token = self.member.authenticate(&name, &password).await.map_err(|e| {
            if matches!(e, ServerError::Auth(AuthError::AuthFailed)) {
                tracing::info!(user = %name, "authentication failed");
            }
            to_status(&e)
        })?;
        Ok(Response::new(AuthenticateResponse { header: self.current_header(), token }))
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Answer<AuthUserAddResponse> {
        let caller = self.admin(&request).await?;
        let AuthUserAddRequest { name, password, options, hashed_password } = request.into_inner();
        if name.is_empty() {
            return Err(refuse(AuthError::UserEmpty));
        }
        let no_password = options.is_some_and(|o| o.no_password);
        let password_hash = match (no_password, hashed_password.is_empty()) {
            (true, _) => String::new(),
            (false, true) => self.member.hash_password(&password).await.map_err(|e| to_status(&e))?,
            (false, false) => checked_hash(hashed_password)?,
        };
        let header = self.change(caller, AuthCommand::UserAdd { name, password_hash, no_password }).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Answer<AuthUserGetResponse> {
        let caller = self.reader(&request).await?;
        let name = request.into_inner().name;
        let myself = caller.as_ref().is_some_and(|c| c.user == name);
        if !myself {
            self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        }
        let roles = self.member.read_auth(|auth| auth.users.get(&name).map(|user| user.roles.clone()));
        let roles = roles.ok_or_else(|| refuse(AuthError::UserNotFound))?;
        Ok(Response::new(AuthUserGetResponse { header: self.current_header(), roles }))
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Answer<AuthUserListResponse> {
        let caller = self.reader(&request).await?;
        self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        let users = self.member.read_auth(|auth| auth.users.keys().cloned().collect());
        Ok(Response::new(AuthUserListResponse { header: self.current_header(), users }))
    }

    async fn user_delete(&self, request: Request<AuthUserDeleteRequest>) -> Answer<AuthUserDeleteResponse> {
        let caller = caller(&self.member, &request).await?;
        let name = request.into_inner().name;
        Ok(Response::new(AuthUserDeleteResponse {
            header: self.change(caller, AuthCommand::UserDelete { name }).await?,
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Answer<AuthUserChangePasswordResponse> {
        let caller = self.admin(&request).await?;
        let AuthUserChangePasswordRequest { name, password, hashed_password } = request.into_inner();
        let password_hash = match hashed_password.is_empty() {
            true => self.member.hash_password(&password).await.map_err(|e| to_status(&e))?,
            false => checked_hash(hashed_password)?,
        };
        let header = self.change(caller, AuthCommand::UserChangePassword { name, password_hash }).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(&self, request: Request<AuthUserGrantRoleRequest>) -> Answer<AuthUserGrantRoleResponse> {
        let caller = caller(&self.member, &request).await?;
        let AuthUserGrantRoleRequest { user, role } = request.into_inner();
        let header = self.change(caller, AuthCommand::UserGrantRole { user, role }).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Answer<AuthUserRevokeRoleResponse> {
        let caller = caller(&self.member, &request).await?;
        let AuthUserRevokeRoleRequest { name, role } = request.into_inner();
        let header = self.change(caller, AuthCommand::UserRevokeRole { user: name, role }).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Answer<AuthRoleAddResponse> {
        let caller = caller(&self.member, &request).await?;
        let name = request.into_inner().name;
        Ok(Response::new(AuthRoleAddResponse { header: self.change(caller, AuthCommand::RoleAdd { name }).await? }))
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Answer<AuthRoleGetResponse> {
        let caller = self.reader(&request).await?;
        let role = request.into_inner().role;
        let own_role = caller.as_ref().is_some_and(|c| self.member.read_auth(|auth| auth.has_role(&c.user, &role)));
        if !own_role {
            self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        }
        let permissions = self.member.read_auth(|auth| auth.roles.get(&role).map(|r| r.permissions.clone()));
        let perm = permissions.ok_or_else(|| refuse(AuthError::RoleNotFound))?.into_iter().map(to_pb).collect();
        Ok(Response::new(AuthRoleGetResponse { header: self.current_header(), perm }))
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Answer<AuthRoleListResponse> {
        let caller = self.reader(&request).await?;
        self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        let roles = self.member.read_auth(|auth| auth.roles.keys().cloned().collect());
        Ok(Response::new(AuthRoleListResponse { header: self.current_header(), roles }))
    }

    async fn role_delete(&self, request: Request<AuthRoleDeleteRequest>) -> Answer<AuthRoleDeleteResponse> {
        let caller = caller(&self.member, &request).await?;
        let name = request.into_inner().role;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: self.change(caller, AuthCommand::RoleDelete { name }).await?,
        }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Answer<AuthRoleGrantPermissionResponse> {
        let caller = caller(&self.member, &request).await?;
        let AuthRoleGrantPermissionRequest { name, perm } = request.into_inner();
        let perm = perm.ok_or_else(|| Status::invalid_argument("etcdserver: permission is not provided"))?;
        let permission = from_pb(perm)?;
        let header = self.change(caller, AuthCommand::RoleGrantPermission { role: name, permission }).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Answer<AuthRoleRevokePermissionResponse> {
        let caller = caller(&self.member, &request).await?;
        let AuthRoleRevokePermissionRequest { role, key, range_end } = request.into_inner();
        let header = self.change(caller, AuthCommand::RoleRevokePermission { role, key, range_end }).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}

/// A hash an etcd 3.5+ client computed itself: it must be a bcrypt hash, or nobody could log in.
fn checked_hash(hash: String) -> Result<String, Status> {
    let shaped = hash.len() == 60 && hash.starts_with('$') && hash.is_ascii();
    if !shaped {
        return Err(Status::invalid_argument("etcdserver: hashedPassword is not a bcrypt hash"));
    }
    Ok(hash)
}

fn from_pb(perm: authpb::Permission) -> Result<Permission, Status> {
    let kind = match authpb::permission::Type::try_from(perm.perm_type) {
        Ok(authpb::permission::Type::Read) => PermissionKind::Read,
        Ok(authpb::permission::Type::Write) => PermissionKind::Write,
        Ok(authpb::permission::Type::Readwrite) => PermissionKind::ReadWrite,
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid permission type")),
    };
    Ok(Permission { kind, key: perm.key, range_end: perm.range_end })
}

fn to_pb(permission: Permission) -> authpb::Permission {
    let perm_type = match permission.kind {
        PermissionKind::Read => authpb::permission::Type::Read,
        PermissionKind::Write => authpb::permission::Type::Write,
        PermissionKind::ReadWrite => authpb::permission::Type::Readwrite,
    };
    authpb::Permission { perm_type: perm_type.into(), key: permission.key, range_end: permission.range_end }
}

//! Keel's native Auth service (`keel.v1.Auth`), micro's interface: accounts, tokens, rules and
//! Verify. Changes to accounts and rules are proposed as their sender and checked at apply
//! (root while etcd auth is on, `apply::authorized`); lists are root's too. Token, Inspect and
//! Verify are open: a token is the proof, and Verify only reads the rules. Secrets are hashed
//! and checked on this member (`member/micro_auth.rs`), never in apply.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use keel_client::auth::convert::{resource_from_pb, rule_from_pb, rule_to_pb};
use keel_model::auth::micro::{MicroError, StoredAccount};
use keel_model::auth::rules::{self, Caller};
use keel_proto::v1 as pb;
use keel_proto::v1::auth_server::Auth;
use tonic::{Request, Response, Status};

use super::{caller, status::to_status};
use crate::error::ServerError;
use crate::member::micro_auth::{AccountFields, TokenGrant};
use crate::member::Member;

/// How long an access token lasts when the request names no expiry (micro's default).
const TOKEN_EXPIRY_DEFAULT: Duration = Duration::from_secs(60);
/// The longest an access token may last: a token cannot be recalled from a service that
/// verifies it offline, so its life stays short; the refresh token is what lasts.
const TOKEN_EXPIRY_MAX: Duration = Duration::from_secs(24 * 60 * 60);

type Answer<T> = Result<Response<T>, Status>;

pub struct MicroAuthService {
    member: Arc<Member>,
}

impl MicroAuthService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// The sender of `request`, allowed to change accounts and rules (checked again at apply).
    async fn admin<T>(&self, request: &Request<T>) -> Result<Option<keel_model::auth::etcd::Caller>, Status> {
        let caller = caller(&self.member, request).await?;
        self.member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))?;
        Ok(caller)
    }
}

fn invalid(message: impl Into<String>) -> Status {
    to_status(&ServerError::from(keel_model::auth::etcd::AuthError::Micro(MicroError::Invalid(message.into()))))
}

#[tonic::async_trait]
impl Auth for MicroAuthService {
    async fn generate(&self, request: Request<pb::GenerateRequest>) -> Answer<pb::GenerateResponse> {
        let caller = self.admin(&request).await?;
        let request = request.into_inner();
        let fields = AccountFields {
            id: request.id,
            r#type: request.r#type,
            scopes: request.scopes,
            metadata: request.metadata.into_iter().collect(),
            provider: request.provider,
        };
        let secret = (!request.secret.is_empty()).then_some(request.secret);
        let (account, secret) = self.member.micro_generate(caller, fields, secret).await.map_err(|e| to_status(&e))?;
        let mut account = account_to_pb(&account);
        account.secret = secret;
        Ok(Response::new(pb::GenerateResponse { account: Some(account) }))
    }

    async fn token(&self, request: Request<pb::TokenRequest>) -> Answer<pb::TokenResponse> {
        let request = request.into_inner();
        let expiry = match request.token_expiry_secs {
            0 => TOKEN_EXPIRY_DEFAULT,
            secs => match u64::try_from(secs).map(Duration::from_secs) {
                Ok(expiry) if expiry <= TOKEN_EXPIRY_MAX => expiry,
                _ => {
                    return Err(invalid(format!(
                        "a token's expiry must be more than zero and at most {} s",
                        TOKEN_EXPIRY_MAX.as_secs()
                    )))
                }
            },
        };
        let grant = if request.refresh_token.is_empty() {
            TokenGrant::Secret { id: request.id, secret: request.secret }
        } else {
            TokenGrant::Refresh(request.refresh_token)
        };
        let issued = self.member.micro_token(grant, expiry).await.map_err(|e| to_status(&e))?;
        let unix = |at: std::time::SystemTime| {
            at.duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
        };
        Ok(Response::new(pb::TokenResponse {
            token: Some(pb::Token {
                access_token: issued.access_token,
                refresh_token: issued.refresh_token,
                created: unix(issued.created),
                expiry: unix(issued.expiry),
            }),
        }))
    }

    async fn inspect(&self, request: Request<pb::InspectRequest>) -> Answer<pb::InspectResponse> {
        let account = self.member.micro_inspect(&request.into_inner().token).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::InspectResponse { account: Some(account_to_pb(&account)) }))
    }

    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Answer<pb::VerifyResponse> {
        let request = request.into_inner();
        let resource = resource_from_pb(request.resource.unwrap_or_default());
        let rules = self.member.micro_rules().await.map_err(|e| to_status(&e))?;
        let scopes = request.account.map(|account| account.scopes);
        let caller = scopes.as_deref().map(|scopes| Caller { scopes });
        match rules::verify(&rules, caller, &resource) {
            Ok(()) => Ok(Response::new(pb::VerifyResponse {})),
            Err(forbidden) => Err(Status::permission_denied(forbidden.to_string())),
        }
    }

    async fn create_rule(&self, request: Request<pb::CreateRuleRequest>) -> Answer<pb::CreateRuleResponse> {
        let caller = self.admin(&request).await?;
        let rule = request.into_inner().rule.ok_or_else(|| invalid("no rule given"))?;
        self.member.micro_grant(caller, rule_from_pb(rule).map_err(invalid)?).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::CreateRuleResponse {}))
    }

    async fn delete_rule(&self, request: Request<pb::DeleteRuleRequest>) -> Answer<pb::DeleteRuleResponse> {
        let caller = self.admin(&request).await?;
        self.member.micro_revoke(caller, request.into_inner().id).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn list_rules(&self, request: Request<pb::ListRulesRequest>) -> Answer<pb::ListRulesResponse> {
        self.admin(&request).await?;
        let rules = self.member.micro_rules().await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListRulesResponse { rules: rules.iter().map(rule_to_pb).collect() }))
    }

    async fn list_accounts(&self, request: Request<pb::ListAccountsRequest>) -> Answer<pb::ListAccountsResponse> {
        self.admin(&request).await?;
        let accounts = self.member.micro_accounts().await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ListAccountsResponse { accounts: accounts.iter().map(account_to_pb).collect() }))
    }

    async fn delete_account(&self, request: Request<pb::DeleteAccountRequest>) -> Answer<pb::DeleteAccountResponse> {
        let caller = self.admin(&request).await?;
        self.member.micro_delete_account(caller, request.into_inner().id).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn change_secret(&self, request: Request<pb::ChangeSecretRequest>) -> Answer<pb::ChangeSecretResponse> {
        let request = request.into_inner();
        self.member
            .micro_change_secret(&request.id, &request.old_secret, &request.new_secret)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ChangeSecretResponse {}))
    }
}

fn account_to_pb(account: &StoredAccount) -> pb::Account {
    pb::Account {
        id: account.id.clone(),
        r#type: account.r#type.clone(),
        scopes: account.scopes.clone(),
        metadata: account.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        provider: account.provider.clone(),
        secret: String::new(),
    }
}

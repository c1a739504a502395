//! [`GrpcAuth`]: micro's Auth on a Keel cluster, over its `keel.v1.Auth` gRPC API, with
//! failover between members (see [`crate::cluster`]). Requests are checked here with the same
//! limits the cluster applies, so a bad one fails without a round trip; the cluster checks
//! them again. Changes that must not be applied twice (creating or deleting an account,
//! revoking a rule, changing a secret) are never sent again blindly.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::auth_client::AuthClient;

use super::convert::{account_from_pb, account_to_pb, resource_to_pb, rule_from_pb, rule_to_pb};
use super::{check_account, check_expiry, check_rule, check_secret, Account, Auth, Credentials};
use super::{GenerateOptions, Resource, Rule, Token, TokenOptions};
use crate::cluster::Cluster;
use crate::connect::ConnectOptions;
use crate::error::{Error, Result};

/// An [`Auth`] backed by a Keel cluster. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct GrpcAuth {
    cluster: Arc<Cluster>,
}

impl GrpcAuth {
    /// Prepares connections to the cluster's members, e.g. `["http://127.0.0.1:2379"]`.
    /// Nothing is contacted yet. Fails only on a malformed endpoint list.
    pub async fn connect(endpoints: &[String]) -> Result<GrpcAuth> {
        Self::connect_with(endpoints, &ConnectOptions::default()).await
    }

    /// As [`Self::connect`], with TLS for `https://` endpoints.
    pub async fn connect_with(endpoints: &[String], options: &ConnectOptions) -> Result<GrpcAuth> {
        Ok(GrpcAuth { cluster: Arc::new(Cluster::new(endpoints, options)?) })
    }
}

#[async_trait]
impl Auth for GrpcAuth {
    async fn generate(&self, id: &str, options: GenerateOptions) -> Result<Account> {
        check_account(id, &options)?;
        let request = pb::GenerateRequest {
            id: id.to_string(),
            r#type: options.r#type,
            scopes: options.scopes,
            metadata: options.metadata.into_iter().collect(),
            provider: options.provider,
            secret: options.secret.unwrap_or_default(),
        };
        let response = self
            .cluster
            .call_once("create an account", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).generate(request).await }
            })
            .await?
            .into_inner();
        let account = response.account.ok_or_else(|| missing("account"))?;
        let secret = Some(account.secret.clone());
        Ok(Account { secret, ..account_from_pb(account) })
    }

    async fn token(&self, options: TokenOptions) -> Result<Token> {
        check_expiry(options.expiry)?;
        let token_expiry_secs = i64::try_from(options.expiry.as_secs()).unwrap_or(i64::MAX).max(1);
        let request = match options.credentials {
            Credentials::Secret { id, secret } => {
                pb::TokenRequest { id, secret, refresh_token: String::new(), token_expiry_secs }
            }
            Credentials::Refresh(refresh_token) => {
                pb::TokenRequest { id: String::new(), secret: String::new(), refresh_token, token_expiry_secs }
            }
        };
        // A refresh token is good once: a refresh is never sent again blindly.
        let response = self
            .cluster
            .call_once("get a token", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).token(request).await }
            })
            .await?
            .into_inner();
        let token = response.token.ok_or_else(|| missing("token"))?;
        let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        Ok(Token {
            access_token: token.access_token,
            refresh_token: token.refresh_token,
            created: at(token.created),
            expiry: at(token.expiry),
        })
    }

    async fn inspect(&self, access_token: &str) -> Result<Account> {
        let request = pb::InspectRequest { token: access_token.to_string() };
        let response = self
            .cluster
            .call("inspect a token", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).inspect(request).await }
            })
            .await?
            .into_inner();
        Ok(account_from_pb(response.account.ok_or_else(|| missing("account"))?))
    }

    async fn verify(&self, account: Option<&Account>, resource: &Resource) -> Result<()> {
        let request =
            pb::VerifyRequest { account: account.map(account_to_pb), resource: Some(resource_to_pb(resource)) };
        self.cluster
            .call("verify access", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).verify(request).await }
            })
            .await?;
        Ok(())
    }

    async fn grant(&self, rule: Rule) -> Result<()> {
        check_rule(&rule).map_err(Error::InvalidArgument)?;
        // Granting the same rule twice leaves it as once: safe to send again.
        let request = pb::CreateRuleRequest { rule: Some(rule_to_pb(&rule)) };
        self.cluster
            .call("create a rule", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).create_rule(request).await }
            })
            .await?;
        Ok(())
    }

    async fn revoke(&self, rule_id: &str) -> Result<()> {
        let request = pb::DeleteRuleRequest { id: rule_id.to_string() };
        self.cluster
            .call_once("delete a rule", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).delete_rule(request).await }
            })
            .await?;
        Ok(())
    }

    async fn rules(&self) -> Result<Vec<Rule>> {
        let response =
            self.cluster
                .call("list rules", |channel| async move {
                    AuthClient::new(channel).list_rules(pb::ListRulesRequest {}).await
                })
                .await?
                .into_inner();
        let rule = |rule| rule_from_pb(rule).map_err(|e| Error::InvalidResponse(format!("the cluster's answer: {e}")));
        response.rules.into_iter().map(rule).collect()
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let response = self
            .cluster
            .call("list accounts", |channel| async move {
                AuthClient::new(channel).list_accounts(pb::ListAccountsRequest {}).await
            })
            .await?
            .into_inner();
        Ok(response.accounts.into_iter().map(account_from_pb).collect())
    }

    async fn delete_account(&self, id: &str) -> Result<()> {
        let request = pb::DeleteAccountRequest { id: id.to_string() };
        self.cluster
            .call_once("delete an account", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).delete_account(request).await }
            })
            .await?;
        Ok(())
    }

    async fn change_secret(&self, id: &str, old_secret: &str, new_secret: &str) -> Result<()> {
        check_secret(new_secret)?;
        let request = pb::ChangeSecretRequest {
            id: id.to_string(),
            old_secret: old_secret.to_string(),
            new_secret: new_secret.to_string(),
        };
        self.cluster
            .call_once("change a secret", |channel| {
                let request = request.clone();
                async move { AuthClient::new(channel).change_secret(request).await }
            })
            .await?;
        Ok(())
    }
}

fn missing(what: &str) -> Error {
    Error::InvalidResponse(format!("the cluster's answer has no {what}"))
}

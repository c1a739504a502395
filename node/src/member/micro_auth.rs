//! A member's side of micro's Auth: secrets hashed and checked here (bcrypt, on the same
//! bounded blocking threads as etcd's passwords), tokens signed and verified here with the
//! cluster's key, and accounts and rules read from this member's state after a read barrier.
//! Changes are proposed as their sender and checked at apply, as etcd's auth changes are.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use keel_model::auth::etcd::{AuthCommand, AuthError, Caller};
use keel_model::auth::micro::{self, MicroCommand, MicroError, StoredAccount};
use keel_model::auth::rules::{self, Resource, Rule};
use rand::RngCore;

use super::Member;
use crate::auth::micro_token::{IssuedTokens, Kind, MicroTokens};
use crate::auth::password;
use crate::command::As;
use crate::dynamic_config::ConfigError;
use crate::error::ServerError;

/// Bytes of randomness in a generated secret (base64url, 43 characters).
const GENERATED_SECRET_BYTES: usize = 32;
/// How long a member waits for a new cluster's key: rounds of `KEY_WAIT_ROUND`.
const KEY_WAIT_ROUNDS: usize = 30;
const KEY_WAIT_ROUND: Duration = Duration::from_millis(100);
/// The account type and provider when the request gives none (micro's defaults).
const ACCOUNT_TYPE_DEFAULT: &str = "user";
const PROVIDER_DEFAULT: &str = "basic";

/// An account's fields as a Generate request gives them.
#[derive(Clone, Debug, Default)]
pub struct AccountFields {
    pub id: String,
    pub r#type: String,
    pub scopes: Vec<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub provider: String,
}

/// A micro account a native call was let in for (in the call's extensions): services that
/// check more than the endpoint (Config's secrets) read its scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroPrincipal {
    pub account: String,
    pub scopes: Vec<String>,
}

impl Member {
    /// Whether `principal` may also reach `resource` (a second check inside one call).
    pub fn micro_allows(&self, principal: &MicroPrincipal, resource: &Resource) -> Result<(), ServerError> {
        let caller = rules::Caller { scopes: &principal.scopes };
        self.read_micro(|state| rules::verify(state.rules_in_order(), Some(caller), resource))
            .map_err(|_| refuse(MicroError::Forbidden))
    }
}

/// What a token is asked for with.
pub enum TokenGrant {
    Secret { id: String, secret: String },
    Refresh(String),
}

fn refuse(error: MicroError) -> ServerError {
    ServerError::Auth(AuthError::Micro(error))
}

impl Member {
    /// Creates an account, hashing its secret (or a generated one, returned) here.
    pub async fn micro_generate(
        &self,
        caller: Option<Caller>,
        fields: AccountFields,
        secret: Option<String>,
    ) -> Result<(StoredAccount, String), ServerError> {
        let r#type = if fields.r#type.is_empty() { ACCOUNT_TYPE_DEFAULT.to_string() } else { fields.r#type };
        let provider = if fields.provider.is_empty() { PROVIDER_DEFAULT.to_string() } else { fields.provider };
        let mut account = StoredAccount {
            id: fields.id,
            r#type,
            scopes: fields.scopes,
            metadata: fields.metadata,
            provider,
            secret_hash: String::new(),
            generation: 0,
            refresh_ids: Vec::new(),
        };
        micro::check_command(&MicroCommand::Generate(account.clone())).map_err(refuse)?;
        let secret = match secret {
            Some(secret) => secret,
            None => generated_secret(),
        };
        micro::check_secret(&secret).map_err(|e| refuse(MicroError::Invalid(e)))?;
        account.secret_hash = self.hash_password(&secret).await?;
        self.propose(As::new(caller, AuthCommand::Micro(MicroCommand::Generate(account.clone())))).await?;
        Ok((account, secret))
    }

    /// Access and refresh tokens for an id and secret, or a refresh token. The refresh token is
    /// recorded through the log (a refresh token is good once), the access token is not.
    pub async fn micro_token(&self, grant: TokenGrant, expiry: Duration) -> Result<IssuedTokens, ServerError> {
        self.read_barrier().await?;
        let tokens = self.micro_tokens().await?;
        let sign = |id: &str, generation: u64| {
            tokens.issue(id, generation, expiry, SystemTime::now()).map_err(|e| {
                tracing::warn!("cannot sign a token: {e}");
                refuse(MicroError::Unauthenticated)
            })
        };
        let (issued, record) = match grant {
            TokenGrant::Secret { id, secret } => {
                let (hash, generation) = self
                    .read_micro(|state| state.accounts.get(&id).map(|a| (a.secret_hash.clone(), a.generation)))
                    .ok_or(refuse(MicroError::Unauthenticated))?;
                if !self.hashing(move || password::matches(&secret, &hash)).await? {
                    return Err(refuse(MicroError::Unauthenticated));
                }
                let issued = sign(&id, generation)?;
                let refresh_id = issued.refresh_id.clone();
                (issued, MicroCommand::IssueRefresh { id, generation, refresh_id })
            }
            TokenGrant::Refresh(token) => {
                let claims = tokens
                    .verify(&token, Kind::Refresh, SystemTime::now())
                    .map_err(|_| refuse(MicroError::Unauthenticated))?;
                let issued = sign(&claims.account, claims.generation)?;
                let (id, generation, used, refresh_id) =
                    (claims.account, claims.generation, claims.id, issued.refresh_id.clone());
                (issued, MicroCommand::RotateRefresh { id, generation, used, refresh_id })
            }
        };
        // The secret or the refresh token is the proof: the cluster's own change, not a user's.
        self.propose(AuthCommand::Micro(record)).await?;
        Ok(issued)
    }

    /// The account an access token speaks for, as it is now.
    pub async fn micro_inspect(&self, token: &str) -> Result<StoredAccount, ServerError> {
        let tokens = self.micro_tokens().await?;
        let claims =
            tokens.verify(token, Kind::Access, SystemTime::now()).map_err(|_| refuse(MicroError::Unauthenticated))?;
        self.read_barrier().await?;
        self.current_generation(&claims.account, claims.generation)
    }

    /// Whether the account an access token speaks for may reach `resource` under the rules:
    /// Keel's own services as micro resources. Read from this member's state without a read
    /// barrier (a check per call): a revocation reaches a lagging follower when it applies it.
    pub fn micro_authorize(&self, token: &str, resource: &Resource) -> Result<MicroPrincipal, ServerError> {
        let key = self.shared().secret_key().ok_or(refuse(MicroError::Unauthenticated))?;
        let tokens = MicroTokens::from_cluster_key(&key.0).map_err(|_| refuse(MicroError::Unauthenticated))?;
        let claims =
            tokens.verify(token, Kind::Access, SystemTime::now()).map_err(|_| refuse(MicroError::Unauthenticated))?;
        self.read_micro(|state| {
            let account = state
                .accounts
                .get(&claims.account)
                .filter(|account| account.generation == claims.generation)
                .ok_or(refuse(MicroError::Unauthenticated))?;
            let caller = rules::Caller { scopes: &account.scopes };
            rules::verify(state.rules_in_order(), Some(caller), resource).map_err(|_| refuse(MicroError::Forbidden))?;
            Ok(MicroPrincipal { account: account.id.clone(), scopes: account.scopes.clone() })
        })
    }

    /// A new secret for an account, given its current one.
    pub async fn micro_change_secret(&self, id: &str, old_secret: &str, new_secret: &str) -> Result<(), ServerError> {
        micro::check_secret(new_secret).map_err(|e| refuse(MicroError::Invalid(e)))?;
        self.read_barrier().await?;
        let (hash, checked_generation) = self
            .read_micro(|state| state.accounts.get(id).map(|a| (a.secret_hash.clone(), a.generation)))
            .ok_or(refuse(MicroError::Unauthenticated))?;
        let old = old_secret.to_string();
        if !self.hashing(move || password::matches(&old, &hash)).await? {
            return Err(refuse(MicroError::Unauthenticated));
        }
        let secret_hash = self.hash_password(new_secret).await?;
        // The old secret is the proof: proposed as the cluster's own change, not as a user's.
        let change = MicroCommand::ChangeSecret { id: id.to_string(), secret_hash, checked_generation };
        self.propose(AuthCommand::Micro(change)).await?;
        Ok(())
    }

    pub async fn micro_delete_account(&self, caller: Option<Caller>, id: String) -> Result<(), ServerError> {
        self.propose(As::new(caller, AuthCommand::Micro(MicroCommand::DeleteAccount { id }))).await?;
        Ok(())
    }

    pub async fn micro_grant(&self, caller: Option<Caller>, rule: Rule) -> Result<(), ServerError> {
        self.propose(As::new(caller, AuthCommand::Micro(MicroCommand::Grant(rule)))).await?;
        Ok(())
    }

    pub async fn micro_revoke(&self, caller: Option<Caller>, id: String) -> Result<(), ServerError> {
        self.propose(As::new(caller, AuthCommand::Micro(MicroCommand::Revoke { id }))).await?;
        Ok(())
    }

    /// Every rule, in `Verify`'s order, as of a read barrier.
    pub async fn micro_rules(&self) -> Result<Vec<Rule>, ServerError> {
        self.read_barrier().await?;
        Ok(self.read_micro(|state| state.ordered_rules()))
    }

    /// Every account (with its hash: callers must not send it on), as of a read barrier.
    pub async fn micro_accounts(&self) -> Result<Vec<StoredAccount>, ServerError> {
        self.read_barrier().await?;
        Ok(self.read_micro(|state| state.accounts.values().cloned().collect()))
    }

    fn read_micro<T>(&self, read: impl FnOnce(&micro::MicroState) -> T) -> T {
        self.read_auth(|auth| read(&auth.micro))
    }

    /// The account `id` if it still has `generation`: deleted, re-created or re-secreted
    /// accounts end the tokens issued before.
    fn current_generation(&self, id: &str, generation: u64) -> Result<StoredAccount, ServerError> {
        self.read_micro(|state| state.accounts.get(id).filter(|a| a.generation == generation).cloned())
            .ok_or(refuse(MicroError::Unauthenticated))
    }

    /// The token signer, from the cluster's secret key.
    async fn micro_tokens(&self) -> Result<MicroTokens, ServerError> {
        let key = self.cluster_key().await?;
        MicroTokens::from_cluster_key(&key.0).map_err(|e| {
            tracing::warn!("{e}");
            refuse(MicroError::Unauthenticated)
        })
    }
}

impl Member {
    /// The cluster's secret key. A cluster seconds old may not have applied it yet (the
    /// leader proposes it once elected): the leader proposes one now, the first applied wins;
    /// another member waits for it, a few seconds at most.
    async fn cluster_key(&self) -> Result<crate::command::SecretKey, ServerError> {
        for _ in 0..KEY_WAIT_ROUNDS {
            if let Some(key) = self.shared().secret_key() {
                return Ok(key);
            }
            if self.metrics().current_leader == Some(self.id) {
                if let Err(e) = self.propose_as_leader(crate::dynamic_config::secret::new_key()).await {
                    tracing::debug!("creating the cluster's secret key: {e}");
                }
            } else {
                tokio::time::sleep(KEY_WAIT_ROUND).await;
            }
            self.read_barrier().await?;
        }
        self.shared().secret_key().ok_or(ServerError::Config(ConfigError::SecretUnavailable))
    }
}

fn generated_secret() -> String {
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

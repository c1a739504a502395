//! Auth in go-micro's mould: accounts with secrets, short-lived access tokens and refresh
//! tokens, and rules that say which accounts (by scope) may reach which resources.
//!
//! The rules' meaning is micro's `Verify`, implemented once in [`keel_model::auth::rules`] and
//! shared with the cluster, so a rule means the same to every implementation. This module
//! states the contract (the [`Auth`] trait, its types and limits); `grpc.rs` implements it on
//! a cluster (`keel.v1.Auth`), `memory.rs` in-process, and `conformance.rs` checks any
//! implementation against it.

pub mod convert;
mod grpc;
pub mod layers;
mod memory;

#[doc(hidden)]
pub mod conformance;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
pub use grpc::GrpcAuth;
pub use keel_model::auth::rules::{
    check_rule, Access, Resource, Rule, RULES_MAX, RULE_FIELD_BYTES_MAX, SCOPE_ANY_ACCOUNT, SCOPE_PUBLIC, WILDCARD,
};
pub use memory::MemoryAuth;

use crate::error::{Error, Result};

/// The cluster's limits, the same here: the longest account id, type, provider, scope or
/// metadata entry; the most scopes or metadata entries one account holds (both travel in every
/// token); the longest secret (bcrypt, which the cluster hashes secrets with, reads 72 bytes).
pub use keel_model::auth::micro::{ACCOUNT_ENTRIES_MAX, ACCOUNT_FIELD_BYTES_MAX, SECRET_BYTES_MAX};
/// The shortest secret the implementations generate for an account created without one.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// How long an access token lasts unless the caller asks otherwise (micro's default).
pub const TOKEN_EXPIRY_DEFAULT: Duration = Duration::from_secs(60);
/// The longest an access token may last: a token cannot be recalled from a service that
/// verifies it offline, so its life stays short; the refresh token is what lasts.
pub const TOKEN_EXPIRY_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// The account type when the caller gives none (micro's default).
pub const ACCOUNT_TYPE_DEFAULT: &str = "user";

/// An identity: a user or a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    /// `user`, `service`, …
    pub r#type: String,
    /// What rules look at: a rule with a named scope applies to accounts holding it.
    pub scopes: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Who vouched for the account (`basic` for id and secret).
    pub provider: String,
    /// Only in the answer to [`Auth::generate`]: the secret to sign in with. Never stored in
    /// clear and never returned again.
    pub secret: Option<String>,
}

/// How to create an account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Empty: [`ACCOUNT_TYPE_DEFAULT`].
    pub r#type: String,
    pub scopes: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Empty: `basic`.
    pub provider: String,
    /// `None`: one is generated and returned in [`Account::secret`].
    pub secret: Option<String>,
}

/// What a token is asked for with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// An account's id and secret.
    Secret { id: String, secret: String },
    /// A refresh token from an earlier [`Token`].
    Refresh(String),
}

/// A request for a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOptions {
    pub credentials: Credentials,
    /// How long the access token lasts; at most [`TOKEN_EXPIRY_MAX`].
    pub expiry: Duration,
}

impl TokenOptions {
    pub fn with_secret(id: impl Into<String>, secret: impl Into<String>) -> TokenOptions {
        TokenOptions {
            credentials: Credentials::Secret { id: id.into(), secret: secret.into() },
            expiry: TOKEN_EXPIRY_DEFAULT,
        }
    }

    pub fn with_refresh_token(refresh_token: impl Into<String>) -> TokenOptions {
        TokenOptions { credentials: Credentials::Refresh(refresh_token.into()), expiry: TOKEN_EXPIRY_DEFAULT }
    }
}

/// An access token (sent with every call) and the refresh token that gets the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    pub refresh_token: String,
    pub created: SystemTime,
    /// When the access token stops being accepted.
    pub expiry: SystemTime,
}

/// Accounts, tokens and rules. Object-safe: `Arc<dyn Auth>`.
///
/// Errors: a wrong secret, an unknown account and a bad, expired or revoked token are all
/// [`Error::Unauthenticated`] with one message (a caller cannot tell which accounts exist);
/// a rule that does not let the caller in is [`Error::Forbidden`]; malformed input is
/// [`Error::InvalidArgument`].
#[async_trait]
pub trait Auth: Send + Sync {
    /// Creates an account; an id already in use is [`Error::InvalidArgument`].
    async fn generate(&self, id: &str, options: GenerateOptions) -> Result<Account>;
    /// A token for an account's credentials or for a refresh token.
    async fn token(&self, options: TokenOptions) -> Result<Token>;
    /// The account an access token was issued to (without its secret).
    async fn inspect(&self, access_token: &str) -> Result<Account>;
    /// Whether `account` (`None`: nobody signed in) may reach `resource`; micro's `Verify`.
    async fn verify(&self, account: Option<&Account>, resource: &Resource) -> Result<()>;
    /// Adds a rule, or replaces the rule with the same id where it stands.
    async fn grant(&self, rule: Rule) -> Result<()>;
    /// Removes a rule; an unknown id is [`Error::NotFound`].
    async fn revoke(&self, rule_id: &str) -> Result<()>;
    /// Every rule, in the order `verify` breaks ties between equal priorities (creation order).
    async fn rules(&self) -> Result<Vec<Rule>>;
    /// Every account, by id, without secrets.
    async fn accounts(&self) -> Result<Vec<Account>>;
    /// Deletes an account; its tokens stop working. An unknown id is [`Error::NotFound`].
    async fn delete_account(&self, id: &str) -> Result<()>;
    /// Changes an account's secret, given the current one; tokens issued before stop working.
    async fn change_secret(&self, id: &str, old_secret: &str, new_secret: &str) -> Result<()>;
}

/// The one message for every failed sign-in or rejected token, so that a caller learns nothing
/// about which accounts exist.
pub(crate) const UNAUTHENTICATED: &str = "invalid credentials or token";

/// Checks an account id and the options to create it with, against the limits above.
pub(crate) fn check_account(id: &str, options: &GenerateOptions) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidArgument("an account needs an id".into()));
    }
    let fields = [("id", id), ("type", options.r#type.as_str()), ("provider", options.provider.as_str())];
    let scopes = options.scopes.iter().map(|scope| ("scope", scope.as_str()));
    let metadata =
        options.metadata.iter().flat_map(|(k, v)| [("metadata key", k.as_str()), ("metadata value", v.as_str())]);
    for (what, value) in fields.into_iter().chain(scopes).chain(metadata) {
        if value.len() > ACCOUNT_FIELD_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "the account's {what} is longer than {ACCOUNT_FIELD_BYTES_MAX} bytes"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!("the account's {what} holds a control character")));
        }
    }
    if options.scopes.len() > ACCOUNT_ENTRIES_MAX || options.metadata.len() > ACCOUNT_ENTRIES_MAX {
        return Err(Error::InvalidArgument(format!(
            "an account holds at most {ACCOUNT_ENTRIES_MAX} scopes and metadata entries"
        )));
    }
    if let Some(secret) = &options.secret {
        check_secret(secret)?;
    }
    Ok(())
}

pub(crate) fn check_secret(secret: &str) -> Result<()> {
    if secret.is_empty() {
        return Err(Error::InvalidArgument("a secret may not be empty".into()));
    }
    if secret.len() > SECRET_BYTES_MAX {
        return Err(Error::InvalidArgument(format!("a secret is at most {SECRET_BYTES_MAX} bytes")));
    }
    Ok(())
}

pub(crate) fn check_expiry(expiry: Duration) -> Result<()> {
    if expiry.is_zero() || expiry > TOKEN_EXPIRY_MAX {
        return Err(Error::InvalidArgument(format!(
            "a token's expiry must be more than zero and at most {} s",
            TOKEN_EXPIRY_MAX.as_secs()
        )));
    }
    Ok(())
}

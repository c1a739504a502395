//! A member's side of etcd's auth: who sent a request (its token), whether a read may be
//! served to it, and the password work etcd does on the receiving member (checking a password on
//! Authenticate, hashing one for UserAdd and UserChangePassword) — off the async threads and at
//! most a few at a time, so failed logins cannot stall the member or the log.
//!
//! Writes are not checked here: they are proposed `As` their sender and checked at apply, against
//! the auth state of their point in the log (`apply::authorized`).

use std::time::{Instant, SystemTime};

use keel_model::auth::etcd::{Access, AuthCommand, AuthError, AuthState, Caller};
use tokio::sync::Semaphore;

use super::Member;
use crate::auth::jwt::{JwtTokens, TOKEN_BYTES_MAX};
use crate::auth::options::AuthTokenOptions;
use crate::auth::password;
use crate::auth::simple::new_simple_token;
use crate::error::ServerError;

/// What a request presents as its sender: etcd's token, and with `--client-cert-auth` the CN of
/// its verified client certificate (etcd's `AuthInfoFromTLS`), used when there is no token.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub certificate_user: Option<String>,
}

/// How often Authenticate checks the password again when the auth state changed meanwhile.
const AUTHENTICATE_ATTEMPTS: usize = 3;

/// How clients' tokens are made and checked, and the bcrypt work in flight.
pub(crate) struct Tokens {
    jwt: Option<JwtTokens>,
    bcrypt_cost: u32,
    /// bcrypt is slow on purpose: at most this many hashes at once, the rest wait their turn.
    hashing: Semaphore,
}

impl Tokens {
    pub fn new(options: &AuthTokenOptions, bcrypt_cost: u32) -> Result<Tokens, String> {
        let jwt = match options {
            AuthTokenOptions::Simple => None,
            AuthTokenOptions::Jwt(options) => Some(JwtTokens::load(options)?),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Tokens { jwt, bcrypt_cost, hashing: Semaphore::new((cores / 2).max(1)) })
    }
}

impl Member {
    /// Who sent a request presenting `credentials`; `None` for nobody. A token wins over a
    /// certificate, as in etcd. A simple token assigned through another member and not yet
    /// applied here is looked up again once this member has caught up.
    pub async fn caller(&self, credentials: &Credentials) -> Result<Option<Caller>, ServerError> {
        let Some(token) = credentials.token.as_deref() else {
            let auth_revision = self.shared.mvcc().auth().revision;
            return Ok(credentials.certificate_user.clone().map(|user| Caller { user, auth_revision }));
        };
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::InvalidAuthToken.into());
        }
        if let Some(jwt) = &self.tokens.jwt {
            let info = jwt.verify(token).map_err(|_| AuthError::InvalidAuthToken)?;
            return Ok(Some(Caller { user: info.username, auth_revision: info.revision }));
        }
        if let Some(caller) = self.simple_caller(token) {
            return Ok(Some(caller));
        }
        self.read_barrier().await?;
        self.simple_caller(token).map(Some).ok_or(AuthError::InvalidAuthToken.into())
    }

    /// The user a verified client certificate chain names (its first certificate's CN), when
    /// this member was started with `--client-cert-auth`; `None` otherwise.
    pub fn certificate_user(&self, chain: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Option<String> {
        if !self.client_cert_auth {
            return None;
        }
        crate::tls::common_name(chain?.first()?)
    }

    /// A simple token speaks for its user at the current auth revision, as in etcd.
    fn simple_caller(&self, token: &str) -> Option<Caller> {
        let user = self.shared.simple_tokens().user(token, Instant::now())?;
        Some(Caller { user, auth_revision: self.shared.mvcc().auth().revision })
    }

    /// Whether `caller` may read every range of `needs` now (etcd's `IsRangePermitted`).
    pub fn check_read(&self, caller: Option<&Caller>, needs: &[Access<'_>]) -> Result<(), ServerError> {
        Ok(self.shared.mvcc().auth().check_access(caller, needs)?)
    }

    /// etcd's `IsAdminPermitted` on this member's state.
    pub fn check_admin(&self, caller: Option<&Caller>) -> Result<(), ServerError> {
        Ok(self.shared.mvcc().auth().check_admin(caller)?)
    }

    /// Reads this member's auth state (after a read barrier, for linearizable answers).
    pub fn read_auth<T>(&self, read: impl FnOnce(&AuthState) -> T) -> T {
        read(self.shared.mvcc().auth())
    }

    /// etcd's Authenticate: the password checked here, then a token: a JWT signed here, or a
    /// simple token assigned through the log (and applied here before it is answered).
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<String, ServerError> {
        self.read_barrier().await?;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let (checked_revision, hash) = self.read_auth(|auth| {
                if !auth.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                match auth.users.get(name) {
                    Some(user) if !user.no_password => Ok((auth.revision, user.password_hash.clone())),
                    _ => Err(AuthError::AuthFailed),
                }
            })?;
            let password = password.to_string();
            if !self.hashing(move || password::matches(&password, &hash)).await? {
                return Err(AuthError::AuthFailed.into());
            }
            if let Some(jwt) = &self.tokens.jwt {
                return jwt.issue(name, checked_revision, SystemTime::now()).map_err(|e| {
                    tracing::warn!("cannot issue a token: {e}");
                    ServerError::Auth(AuthError::AuthFailed)
                });
            }
            let token = new_simple_token();
            let assign = AuthCommand::Authenticate { name: name.to_string(), token: token.clone(), checked_revision };
            match self.propose(assign).await {
                Ok(_) => {
                    // Proposed through the leader: applied there, maybe not here yet.
                    self.read_barrier().await?;
                    return Ok(token);
                }
                Err(ServerError::Mvcc(crate::mvcc::MvccError::Auth(AuthError::StaleAuthenticate))) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(AuthError::StaleAuthenticate.into())
    }

    /// The bcrypt hash of a new password, or "" for a user without one.
    pub async fn hash_password(&self, password: &str) -> Result<String, ServerError> {
        let (password, cost) = (password.to_string(), self.tokens.bcrypt_cost);
        self.hashing(move || password::hash(&password, cost))
            .await?
            .map_err(|e| ServerError::Auth(AuthError::TooLarge(e.to_string())))
    }

    /// Runs `work` (bcrypt) on a blocking thread once a hashing slot is free.
    pub(super) async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServerError> {
        let _slot = self.tokens.hashing.acquire().await.map_err(|_| ServerError::Stopped)?;
        tokio::task::spawn_blocking(work).await.map_err(|_| ServerError::Stopped)
    }
}

//! etcd's JWT tokens: `{"username", "revision", "exp"}` signed with the cluster's key, so that
//! every member verifies a token on its own, after a leader change too. The revision is the
//! auth revision the token was issued at: a later change to users or roles outdates it (the
//! caller compares; this module only proves the token is genuine and unexpired).
//!
//! Refused, each as the same [`InvalidToken`]: a token over [`TOKEN_BYTES_MAX`], a bad
//! signature (forged, tampered, another cluster's key), an algorithm other than the configured
//! one (`alg: none` included), an expired token, missing or mistyped claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::options::JwtOptions;

/// The longest token accepted: claims are a user name and two numbers, so a real token is a
/// few hundred bytes; anything far larger is not decoded at all.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

/// etcd's claims, with etcd's names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    /// Seconds since the Unix epoch.
    exp: u64,
}

/// Who a genuine, unexpired token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub username: String,
    pub revision: u64,
}

/// etcd's answer to every bad token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("etcdserver: invalid auth token")]
pub struct InvalidToken;

/// Why the member cannot issue a token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("this member has no private key (--auth-token without priv-key) and only verifies tokens")]
    VerifyOnly,
    #[error("signing the token: {0}")]
    Sign(String),
}

/// The member's JWT signer and verifier, built once from `--auth-token`.
pub struct JwtTokens {
    algorithm: Algorithm,
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens").field("algorithm", &self.algorithm).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl JwtTokens {
    /// Reads the key files; a missing, unreadable or malformed key is an error naming the file.
    pub fn load(options: &JwtOptions) -> Result<JwtTokens, String> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("--auth-token: cannot read the key file {}: {e}", path.display()))
        };
        let private = options.private_key.as_deref().map(read).transpose()?;
        let public = options.public_key.as_deref().map(read).transpose()?;
        JwtTokens::from_pem(options.sign_method, private.as_deref(), public.as_deref(), options.ttl)
    }

    /// From key bytes: PEM for RSA, EC and EdDSA; the raw shared secret for HMAC (taken from
    /// `private`, as etcd does).
    pub fn from_pem(
        algorithm: Algorithm,
        private: Option<&[u8]>,
        public: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<JwtTokens, String> {
        let bad = |which: &str, e: jsonwebtoken::errors::Error| {
            format!("--auth-token: the {which} key is not usable for {algorithm:?}: {e}")
        };
        let (signing, verifying) = match algorithm.family() {
            AlgorithmFamily::Hmac => {
                let secret = private.ok_or("--auth-token: an HMAC sign-method needs priv-key")?;
                if secret.is_empty() {
                    return Err("--auth-token: the HMAC secret file is empty".into());
                }
                let signing = EncodingKey::from_secret(secret).map_err(|e| bad("private", e))?;
                (Some(signing), DecodingKey::from_secret(secret).map_err(|e| bad("private", e))?)
            }
            family => {
                let public = public.ok_or("--auth-token: jwt needs pub-key")?;
                let (encode, decode): (EncodeFn, DecodeFn) = match family {
                    AlgorithmFamily::Rsa => (EncodingKey::from_rsa_pem, DecodingKey::from_rsa_pem),
                    AlgorithmFamily::Ec => (EncodingKey::from_ec_pem, DecodingKey::from_ec_pem),
                    _ => (EncodingKey::from_ed_pem, DecodingKey::from_ed_pem),
                };
                let signing = private.map(encode).transpose().map_err(|e| bad("private", e))?;
                (signing, decode(public).map_err(|e| bad("public", e))?)
            }
        };
        Ok(JwtTokens { algorithm, signing, verifying, ttl })
    }

    /// A token for `username` at auth `revision`, valid for the configured ttl from `now`.
    pub fn issue(&self, username: &str, revision: u64, now: SystemTime) -> Result<String, IssueError> {
        let signing = self.signing.as_ref().ok_or(IssueError::VerifyOnly)?;
        let exp =
            now.checked_add(self.ttl).map(unix_secs).ok_or_else(|| IssueError::Sign("expiry out of range".into()))?;
        let claims = Claims { username: username.to_string(), revision, exp };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, signing)
            .map_err(|e| IssueError::Sign(e.to_string()))
    }

    /// Who `token` speaks for, if it is genuine, of the configured algorithm and unexpired.
    pub fn verify(&self, token: &str) -> Result<TokenInfo, InvalidToken> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(InvalidToken);
        }
        let mut validation = Validation::new(self.algorithm);
        // etcd's jwt-go checks `exp` exactly; there is no audience.
        validation.leeway = 0;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).map_err(|_| InvalidToken)?;
        Ok(TokenInfo { username: data.claims.username, revision: data.claims.revision })
    }
}

type EncodeFn = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
type DecodeFn = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests;

/// Fuzz entry point (see `crate::fuzz`): a token from a client, verified by an HMAC member and
/// read as `--auth-token` text. Must never panic.
#[doc(hidden)]
pub fn fuzz_verify(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(tokens) = JwtTokens::from_pem(Algorithm::HS256, Some(b"fuzz"), None, Duration::from_secs(60)) {
        let _ = tokens.verify(&text);
    }
    let _ = text.parse::<super::options::AuthTokenOptions>();
}

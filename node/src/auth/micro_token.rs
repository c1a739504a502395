//! micro's tokens: short-lived access tokens and longer refresh tokens, JWTs (HS256) signed
//! with a key derived from the cluster's secret key, so every member issues and verifies them
//! on its own and they survive restarts and leader changes. A token names its account and the
//! account's generation: deleting the account or changing its secret ends every token issued
//! before (the caller compares the generation with the replicated state).
//!
//! Refused, each as the same [`InvalidToken`]: a token over [`TOKEN_BYTES_MAX`], a bad
//! signature, another algorithm (`alg: none` included), an expired token, the other kind of
//! token (a refresh token used as an access token), missing or mistyped claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest token accepted; a real one is a few hundred bytes.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;
/// How long a refresh token lasts: signing in again is needed after a month of silence.
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Who issues the tokens (`iss`), so no other JWT of the cluster passes for one.
const ISSUER: &str = "keel.v1.Auth";
const DERIVATION_LABEL: &[u8] = b"keel micro auth token signing key v1";

/// Which of the two a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Access,
    Refresh,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// The account id.
    sub: String,
    typ: Kind,
    /// The account's generation when the token was issued.
    generation: u64,
    /// Random: tells two tokens issued in the same second apart, and names a refresh token in
    /// the account's list of live ones.
    jti: String,
    iat: u64,
    exp: u64,
}

/// What a genuine, unexpired token of the expected kind names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub account: String,
    pub generation: u64,
    /// The token's id (`jti`).
    pub id: String,
}

/// An access and a refresh token, issued together.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// The refresh token's id, for the account's list of live ones.
    pub refresh_id: String,
    pub created: SystemTime,
    pub expiry: SystemTime,
}

/// The one answer to every bad token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid credentials or token")]
pub struct InvalidToken;

/// Signs and verifies micro's tokens with one cluster's key.
pub struct MicroTokens {
    signing: EncodingKey,
    verifying: DecodingKey,
}

impl std::fmt::Debug for MicroTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MicroTokens([redacted])")
    }
}

impl MicroTokens {
    /// From the cluster's secret key (the one config secrets are sealed with), through a
    /// labelled hash, so a token key never doubles as a sealing key.
    pub fn from_cluster_key(cluster_key: &[u8]) -> Result<MicroTokens, String> {
        let key: [u8; 32] = Sha256::new().chain_update(DERIVATION_LABEL).chain_update(cluster_key).finalize().into();
        let signing = EncodingKey::from_secret(&key).map_err(|e| format!("micro token key: {e}"))?;
        let verifying = DecodingKey::from_secret(&key).map_err(|e| format!("micro token key: {e}"))?;
        Ok(MicroTokens { signing, verifying })
    }

    /// An access token lasting `expiry` and a refresh token, for `account` at `generation`.
    pub fn issue(
        &self,
        account: &str,
        generation: u64,
        expiry: Duration,
        now: SystemTime,
    ) -> Result<IssuedTokens, String> {
        let iat = unix_secs(now);
        let access_exp = iat.saturating_add(expiry.as_secs());
        let access = self.sign(account, generation, Kind::Access, (iat, access_exp), new_token_id())?;
        let refresh_exp = iat.saturating_add(REFRESH_TOKEN_LIFETIME.as_secs());
        let refresh_id = new_token_id();
        let refresh = self.sign(account, generation, Kind::Refresh, (iat, refresh_exp), refresh_id.clone())?;
        Ok(IssuedTokens {
            access_token: access,
            refresh_token: refresh,
            refresh_id,
            created: UNIX_EPOCH + Duration::from_secs(iat),
            expiry: UNIX_EPOCH + Duration::from_secs(iat.saturating_add(expiry.as_secs())),
        })
    }

    /// The claims of `token` if it is genuine, of `kind`, and unexpired at `now`.
    pub fn verify(&self, token: &str, kind: Kind, now: SystemTime) -> Result<TokenClaims, InvalidToken> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(InvalidToken);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is checked below against `now`, to the second, with no leeway.
        validation.validate_exp = false;
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).map_err(|_| InvalidToken)?.claims;
        if claims.typ != kind || claims.exp <= unix_secs(now) {
            return Err(InvalidToken);
        }
        Ok(TokenClaims { account: claims.sub, generation: claims.generation, id: claims.jti })
    }

    fn sign(
        &self,
        account: &str,
        generation: u64,
        typ: Kind,
        (iat, exp): (u64, u64),
        jti: String,
    ) -> Result<String, String> {
        let claims = Claims { iss: ISSUER.to_string(), sub: account.to_string(), typ, generation, jti, iat, exp };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing).map_err(|e| e.to_string())
    }
}

/// 128 random bits, base64url.
fn new_token_id() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Fuzz target: arbitrary bytes as an access token.
pub fn fuzz_verify(data: &[u8]) {
    let Ok(tokens) = MicroTokens::from_cluster_key(b"fuzz") else { return };
    let _ = tokens.verify(&String::from_utf8_lossy(data), Kind::Access, SystemTime::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn now() -> SystemTime {
        UNIX_EPOCH + NOW
    }

    #[test]
    fn a_token_names_its_account_and_generation_until_it_expires() {
        let tokens = MicroTokens::from_cluster_key(b"cluster key").expect("key");
        let issued = tokens.issue("alice", 7, Duration::from_secs(60), now()).expect("issue");
        let claims = tokens.verify(&issued.access_token, Kind::Access, now()).expect("valid");
        assert_eq!((claims.account.as_str(), claims.generation), ("alice", 7));
        let again = tokens.issue("alice", 7, Duration::from_secs(60), now()).expect("issue");
        assert_ne!(again.access_token, issued.access_token, "two tokens of one second differ");
        assert_eq!(
            tokens.verify(&issued.access_token, Kind::Access, now() + Duration::from_secs(60)),
            Err(InvalidToken)
        );
        assert_eq!(issued.expiry, now() + Duration::from_secs(60));
        let refresh = tokens.verify(&issued.refresh_token, Kind::Refresh, now() + Duration::from_secs(3600));
        assert_eq!(refresh.map(|claims| (claims.generation, claims.id)), Ok((7, issued.refresh_id.clone())));
    }

    #[test]
    fn the_wrong_kind_another_key_tampering_and_garbage_are_refused() {
        let tokens = MicroTokens::from_cluster_key(b"cluster key").expect("key");
        let issued = tokens.issue("alice", 1, Duration::from_secs(60), now()).expect("issue");
        assert_eq!(tokens.verify(&issued.refresh_token, Kind::Access, now()), Err(InvalidToken));
        assert_eq!(tokens.verify(&issued.access_token, Kind::Refresh, now()), Err(InvalidToken));
        let other = MicroTokens::from_cluster_key(b"another cluster").expect("key");
        assert_eq!(other.verify(&issued.access_token, Kind::Access, now()), Err(InvalidToken));
        let mut tampered = issued.access_token.clone().into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(tokens.verify(&tampered, Kind::Access, now()), Err(InvalidToken));
        assert_eq!(tokens.verify("", Kind::Access, now()), Err(InvalidToken));
        assert_eq!(tokens.verify(&"a".repeat(TOKEN_BYTES_MAX + 1), Kind::Access, now()), Err(InvalidToken));
        let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", issued.access_token.split('.').nth(1).unwrap_or(""));
        assert_eq!(tokens.verify(&unsigned, Kind::Access, now()), Err(InvalidToken));
    }
}

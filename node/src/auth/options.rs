//! `--auth-token`, as etcd reads it: `simple` (the default), or
//! `jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG,ttl=DURATION`.
//!
//! A member given only `pub-key` verifies tokens but cannot issue them (etcd's read-only JWT
//! member). HMAC methods (`HS256`…) take their shared secret from `priv-key`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// etcd's JWT lifetime when `ttl` is not given.
pub const JWT_TTL_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// The longest JWT lifetime accepted: a JWT cannot be recalled before it expires (only the
/// auth revision in it can outdate it), so its life stays bounded.
pub const JWT_TTL_MAX: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Which tokens the member hands out on Authenticate and accepts after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthTokenOptions {
    /// etcd's default: random tokens every member learns through the log.
    Simple,
    Jwt(JwtOptions),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtOptions {
    pub sign_method: Algorithm,
    /// For RSA, EC and EdDSA: the PEM public key every member verifies with.
    pub public_key: Option<PathBuf>,
    /// The PEM private key (or, for HMAC, the shared secret's file); without it the member only
    /// verifies.
    pub private_key: Option<PathBuf>,
    pub ttl: Duration,
}

impl FromStr for AuthTokenOptions {
    type Err = String;

    fn from_str(text: &str) -> Result<AuthTokenOptions, String> {
        let mut parts = text.split(',');
        match parts.next().unwrap_or_default() {
            "simple" => match parts.next() {
                None => Ok(AuthTokenOptions::Simple),
                Some(extra) => Err(format!("--auth-token: simple takes no options, got {extra:?}")),
            },
            "jwt" => jwt_options(parts).map(AuthTokenOptions::Jwt),
            other => Err(format!("--auth-token: unknown token type {other:?} (expected simple or jwt,…)")),
        }
    }
}

fn jwt_options<'a>(parts: impl Iterator<Item = &'a str>) -> Result<JwtOptions, String> {
    let (mut public_key, mut private_key, mut sign_method, mut ttl) = (None, None, None, None);
    for part in parts {
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("--auth-token: {part:?} is not name=value"));
        };
        let slot_taken = match name {
            "pub-key" => public_key.replace(PathBuf::from(value)).is_some(),
            "priv-key" => private_key.replace(PathBuf::from(value)).is_some(),
            "sign-method" => sign_method.replace(parse_sign_method(value)?).is_some(),
            "ttl" => ttl.replace(parse_go_duration(value)?).is_some(),
            _ => {
                return Err(format!("--auth-token: unknown jwt option {name:?} (pub-key, priv-key, sign-method, ttl)"))
            }
        };
        if slot_taken {
            return Err(format!("--auth-token: {name} given twice"));
        }
    }
    let sign_method = sign_method.ok_or("--auth-token: jwt needs sign-method=…")?;
    let ttl = ttl.unwrap_or(JWT_TTL_DEFAULT);
    if ttl.is_zero() || ttl > JWT_TTL_MAX {
        return Err(format!("--auth-token: ttl must be more than zero and at most {} h", JWT_TTL_MAX.as_secs() / 3600));
    }
    let hmac = sign_method.family() == AlgorithmFamily::Hmac;
    if hmac && private_key.is_none() {
        return Err("--auth-token: an HMAC sign-method needs priv-key=… (the shared secret's file)".into());
    }
    if !hmac && public_key.is_none() {
        return Err("--auth-token: jwt needs pub-key=… to verify tokens".into());
    }
    Ok(JwtOptions { sign_method, public_key, private_key, ttl })
}

fn parse_sign_method(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name).map_err(|_| {
        format!("--auth-token: unknown sign-method {name:?} (RS256/384/512, PS256/384/512, ES256/384, HS256/384/512, EdDSA)")
    })
}

/// A duration as Go's `time.ParseDuration` writes the common ones: `300s`, `5m`, `1h30m`,
/// `1500ms`. Checked: an absurd number is an error, never an overflow.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("--auth-token: ttl {text:?} is not a duration such as 5m, 300s or 1h30m");
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let number: u64 = rest.get(..digits).and_then(|n| n.parse().ok()).ok_or_else(invalid)?;
        rest = rest.get(digits..).unwrap_or_default();
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: u64 = match rest.get(..unit_len).unwrap_or_default() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(invalid()),
        };
        rest = rest.get(unit_len..).unwrap_or_default();
        let part = number.checked_mul(unit_ms).map(Duration::from_millis).ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_and_jwt_as_etcd_writes_them() {
        assert_eq!("simple".parse(), Ok(AuthTokenOptions::Simple));
        let parsed: AuthTokenOptions =
            "jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS256,ttl=10m".parse().expect("etcd's example");
        assert_eq!(
            parsed,
            AuthTokenOptions::Jwt(JwtOptions {
                sign_method: Algorithm::RS256,
                public_key: Some("/k.pub".into()),
                private_key: Some("/k".into()),
                ttl: Duration::from_secs(600),
            })
        );
        let verify_only: AuthTokenOptions = "jwt,pub-key=/k.pub,sign-method=ES256".parse().expect("verify only");
        assert!(matches!(
            verify_only,
            AuthTokenOptions::Jwt(JwtOptions { private_key: None, ttl: JWT_TTL_DEFAULT, .. })
        ));
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        let cases = [
            ("", "unknown token type"),
            ("opaque", "unknown token type"),
            ("simple,ttl=5m", "simple takes no options"),
            ("jwt,pub-key=/k", "needs sign-method"),
            ("jwt,sign-method=RS256", "needs pub-key"),
            ("jwt,sign-method=HS256", "needs priv-key"),
            ("jwt,pub-key=/k,sign-method=none", "unknown sign-method"),
            ("jwt,pub-key=/k,sign-method=RS256,color=blue", "unknown jwt option"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl", "not name=value"),
            ("jwt,pub-key=/k,pub-key=/j,sign-method=RS256", "given twice"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl=0s", "more than zero"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl=100000h", "at most"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl=99999999999999999999h", "not a duration"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl=5", "not a duration"),
            ("jwt,pub-key=/k,sign-method=RS256,ttl=5d", "not a duration"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<AuthTokenOptions>().expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("300s"), Ok(Duration::from_secs(300)));
        assert!(parse_go_duration("18446744073709551615h").is_err());
    }
}

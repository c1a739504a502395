use base64::Engine as _;

use super::*;

const SECRET: &[u8] = b"a shared secret of the test cluster";
const HOUR: Duration = Duration::from_secs(3600);

fn tokens(secret: &[u8]) -> JwtTokens {
    JwtTokens::from_pem(Algorithm::HS256, Some(secret), None, HOUR).expect("an HMAC key")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_token_names_its_user_and_revision_on_every_member() {
    let issuer = tokens(SECRET);
    let token = issuer.issue("alice", 7, SystemTime::now()).expect("issue");
    // Another member with the same key: no shared memory, same answer.
    let other = tokens(SECRET);
    assert_eq!(other.verify(&token), Ok(TokenInfo { username: "alice".into(), revision: 7 }));
    // etcd's claim names, readable by etcd's own clients and tools.
    let payload = token.split('.').nth(1).expect("three parts");
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims");
    assert_eq!((claims["username"].as_str(), claims["revision"].as_u64()), (Some("alice"), Some(7)));
    assert!(claims["exp"].as_u64().is_some());
}

#[test]
fn an_expired_token_is_invalid() {
    let issuer = tokens(SECRET);
    let two_hours_ago = SystemTime::now() - 2 * HOUR;
    let token = issuer.issue("alice", 1, two_hours_ago).expect("issue");
    assert_eq!(issuer.verify(&token), Err(InvalidToken));
}

#[test]
fn forged_tampered_and_foreign_tokens_are_invalid() {
    let issuer = tokens(SECRET);
    let token = issuer.issue("alice", 1, SystemTime::now()).expect("issue");
    let parts: Vec<&str> = token.split('.').collect();

    // Another cluster's key.
    let foreign = tokens(b"another cluster's secret").issue("alice", 1, SystemTime::now()).expect("issue");
    assert_eq!(issuer.verify(&foreign), Err(InvalidToken));
    // The payload changed (root instead of alice), the signature kept.
    let exp = SystemTime::now().checked_add(HOUR).map(unix_secs).expect("exp");
    let forged_claims = format!(r#"{{"username":"root","revision":1,"exp":{exp}}}"#);
    let tampered = format!("{}.{}.{}", parts[0], b64(forged_claims.as_bytes()), parts[2]);
    assert_eq!(issuer.verify(&tampered), Err(InvalidToken));
    // alg none, no signature.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(forged_claims.as_bytes()));
    assert_eq!(issuer.verify(&none), Err(InvalidToken));
    // Another algorithm of the same key (HS384 where HS256 is configured).
    let hs384 = JwtTokens::from_pem(Algorithm::HS384, Some(SECRET), None, HOUR).expect("key");
    let other_alg = hs384.issue("alice", 1, SystemTime::now()).expect("issue");
    assert_eq!(issuer.verify(&other_alg), Err(InvalidToken));
    // Garbage of every shape, and a huge token that is not even decoded.
    for garbage in ["", ".", "..", "a.b.c", "not a token", &"x".repeat(TOKEN_BYTES_MAX + 1)] {
        assert_eq!(issuer.verify(garbage), Err(InvalidToken), "{garbage:.20}");
    }
}

#[test]
fn claims_of_the_wrong_shape_are_invalid() {
    let issuer = tokens(SECRET);
    let key = EncodingKey::from_secret(SECRET).expect("key");
    let exp = SystemTime::now().checked_add(HOUR).map(unix_secs).expect("exp");
    let shapes = [
        serde_json::json!({"username": "alice", "exp": exp}),
        serde_json::json!({"username": "alice", "revision": -1, "exp": exp}),
        serde_json::json!({"username": 5, "revision": 1, "exp": exp}),
        serde_json::json!({"username": "alice", "revision": 1}),
    ];
    for claims in shapes {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("encode");
        assert_eq!(issuer.verify(&token), Err(InvalidToken), "{claims}");
    }
}

#[test]
fn keys_that_cannot_be_used_are_clear_errors() {
    let no_secret = JwtTokens::from_pem(Algorithm::HS256, Some(b""), None, HOUR).expect_err("empty secret");
    assert!(no_secret.contains("empty"), "{no_secret}");
    let garbage = JwtTokens::from_pem(Algorithm::RS256, None, Some(b"not a PEM key"), HOUR).expect_err("garbage");
    assert!(garbage.contains("public key is not usable for RS256"), "{garbage}");
    let missing = JwtOptions {
        sign_method: Algorithm::ES256,
        public_key: Some("/nonexistent/keel-test.pub".into()),
        private_key: None,
        ttl: HOUR,
    };
    let error = JwtTokens::load(&missing).expect_err("missing file");
    assert!(error.contains("/nonexistent/keel-test.pub"), "{error}");
}

#[test]
fn the_debug_form_shows_no_key() {
    let shown = format!("{:?}", tokens(SECRET));
    assert!(!shown.contains("shared secret"), "{shown}");
}

//! Config secrets: each secret leaf is sealed with AES-256-GCM under the cluster's key on the
//! member that receives the Set, before anything is proposed, so its plaintext never reaches
//! the Raft log, RocksDB or a snapshot. The stored leaf is a JSON envelope:
//! `{"keel_secret":{"v":1,"nonce":"<base64>","ciphertext":"<base64>"}}`.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::ConfigError;
use crate::command::SecretKey;

/// What a secret leaf reads as when the caller did not ask for secrets.
pub const MASK: &str = keel_client::config::SECRET_MASK;

const ENVELOPE_FIELD: &str = "keel_secret";
const ENVELOPE_VERSION: u64 = 1;
const NONCE_BYTES: usize = 12;
pub const KEY_BYTES: usize = 32;

/// A fresh random cluster key.
pub fn new_key() -> SecretKey {
    SecretKey(rand::random::<[u8; KEY_BYTES]>().to_vec())
}

fn cipher(key: &SecretKey) -> Result<Aes256Gcm, ConfigError> {
    Aes256Gcm::new_from_slice(&key.0).map_err(|_| ConfigError::SecretUnavailable)
}

/// Seals one leaf (its JSON text) into an envelope.
pub fn seal(key: &SecretKey, leaf: &Value) -> Result<Value, ConfigError> {
    seal_with_nonce(key, leaf, rand::random())
}

/// `seal` with a nonce chosen by the caller: a nonce must never repeat under one key, so only
/// `seal` and the golden-bytes tests (which need the same bytes every time) call it.
pub(crate) fn seal_with_nonce(
    key: &SecretKey,
    leaf: &Value,
    nonce_bytes: [u8; NONCE_BYTES],
) -> Result<Value, ConfigError> {
    let plaintext = leaf.to_string();
    let ciphertext = cipher(key)?
        .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
        .map_err(|_| ConfigError::SecretUnavailable)?;
    Ok(json!({ ENVELOPE_FIELD: {
        "v": ENVELOPE_VERSION,
        "nonce": BASE64.encode(nonce_bytes),
        "ciphertext": BASE64.encode(ciphertext),
    }}))
}

/// Whether a stored leaf is a sealed secret.
pub fn is_sealed(leaf: &Value) -> bool {
    leaf.get(ENVELOPE_FIELD).is_some_and(Value::is_object) && leaf.as_object().is_some_and(|o| o.len() == 1)
}

/// Opens an envelope back into the leaf it sealed.
pub fn open(key: &SecretKey, envelope: &Value) -> Result<Value, ConfigError> {
    let sealed = &envelope[ENVELOPE_FIELD];
    let field = |name: &str| -> Result<Vec<u8>, ConfigError> {
        let text = sealed[name].as_str().ok_or(ConfigError::CorruptSecret)?;
        BASE64.decode(text).map_err(|_| ConfigError::CorruptSecret)
    };
    let nonce = field("nonce")?;
    if nonce.len() != NONCE_BYTES {
        return Err(ConfigError::CorruptSecret);
    }
    let plaintext = cipher(key)?
        .decrypt(Nonce::from_slice(&nonce), field("ciphertext")?.as_slice())
        .map_err(|_| ConfigError::CorruptSecret)?;
    serde_json::from_slice(&plaintext).map_err(|_| ConfigError::CorruptSecret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_leaves_open_with_the_key_only_and_hide_their_plaintext() {
        let key = new_key();
        let leaf = json!("hunter2-s3cr3t");
        let sealed = seal(&key, &leaf).expect("seal");
        assert!(is_sealed(&sealed));
        assert!(!sealed.to_string().contains("hunter2"));
        assert_eq!(open(&key, &sealed).expect("open"), leaf);
        assert_eq!(open(&new_key(), &sealed), Err(ConfigError::CorruptSecret));
        assert!(!is_sealed(&json!({"keel_secret": {}, "other": 1})));
        assert!(!is_sealed(&json!("plain")));
    }
}

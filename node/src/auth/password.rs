//! Passwords, hashed with bcrypt as etcd hashes them (`--bcrypt-cost`, default 10), so a
//! stolen data dir or snapshot yields no password. Called on the member that receives the
//! request, outside apply: the replicated command carries the hash.

/// etcd's default `--bcrypt-cost`.
pub const BCRYPT_COST_DEFAULT: u32 = 10;
/// bcrypt's own bounds on the cost.
pub const BCRYPT_COST_MIN: u32 = 4;
pub const BCRYPT_COST_MAX: u32 = 31;
/// bcrypt reads at most 72 bytes; a longer password would be silently cut, so it is refused.
pub const PASSWORD_BYTES_MAX: usize = 72;

/// Why a password cannot be hashed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password is at most {PASSWORD_BYTES_MAX} bytes")]
    TooLong,
    #[error("bcrypt: {0}")]
    Hash(String),
}

/// The bcrypt hash of `password` at `cost`.
pub fn hash(password: &str, cost: u32) -> Result<String, PasswordError> {
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(PasswordError::TooLong);
    }
    bcrypt::hash(password, cost).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored` (a bcrypt hash). A malformed hash matches nothing.
pub fn matches(password: &str, stored: &str) -> bool {
    password.len() <= PASSWORD_BYTES_MAX && bcrypt::verify(password, stored).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let stored = hash("correct horse", BCRYPT_COST_MIN).expect("hash");
        assert!(!stored.contains("correct horse"));
        assert!(matches("correct horse", &stored));
        assert!(!matches("correct horsE", &stored));
        assert!(!matches("correct horse", "not a bcrypt hash"));
        assert!(!matches("", ""));
    }

    #[test]
    fn a_password_bcrypt_would_cut_is_refused() {
        assert_eq!(hash(&"p".repeat(PASSWORD_BYTES_MAX + 1), BCRYPT_COST_MIN), Err(PasswordError::TooLong));
        let stored = hash(&"p".repeat(PASSWORD_BYTES_MAX), BCRYPT_COST_MIN).expect("hash");
        assert!(!matches(&"p".repeat(PASSWORD_BYTES_MAX + 1), &stored));
    }

    #[test]
    fn a_cost_out_of_range_is_an_error() {
        assert!(matches!(hash("pw", BCRYPT_COST_MAX + 1), Err(PasswordError::Hash(_))));
    }
}

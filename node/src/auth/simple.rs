//! etcd's simple tokens: random strings assigned through the log (`AuthCommand::Authenticate`),
//! so every member knows every token, kept in memory only and forgotten after
//! [`SIMPLE_TOKEN_TTL`] without use (each use renews it), as etcd's `simpleTokenTTLKeeper` does.
//! A user's tokens end when it is deleted or its password changes; all end when auth is
//! disabled. A restart forgets them: clients authenticate again on `invalid auth token`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keel_model::auth::etcd::TokenChange;
use rand::Rng;

/// etcd's `simpleTokenTTLDefault`.
pub const SIMPLE_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Most live tokens a member keeps: past it, the least recently used goes. Every Authenticate
/// makes one, and a client that never logs out must not grow a member without bound.
pub const SIMPLE_TOKENS_MAX: usize = 100_000;

/// etcd's token: 16 letters, then `.` and a number (etcd's is the log index; any will do, since
/// clients never read inside a token).
pub fn new_simple_token() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let prefix: String = (0..16).map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())])).collect();
    format!("{prefix}.{}", rng.random_range(1..u32::MAX))
}

/// The simple tokens this member knows.
#[derive(Debug, Default)]
pub struct SimpleTokens {
    tokens: Mutex<HashMap<String, Live>>,
}

#[derive(Debug)]
struct Live {
    user: String,
    deadline: Instant,
}

impl SimpleTokens {
    /// Applies what an applied auth command said about tokens.
    pub fn apply(&self, change: TokenChange, now: Instant) {
        let mut tokens = self.lock();
        match change {
            TokenChange::Assign(user, token) => {
                if tokens.len() >= SIMPLE_TOKENS_MAX {
                    evict(&mut tokens, now);
                }
                tokens.insert(token, Live { user, deadline: now + SIMPLE_TOKEN_TTL });
            }
            TokenChange::EndUser(user) => tokens.retain(|_, live| live.user != user),
            TokenChange::EndAll => tokens.clear(),
        }
    }

    /// The user `token` speaks for, renewing it; `None` if unknown or expired.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let mut tokens = self.lock();
        let live = tokens.get_mut(token)?;
        if live.deadline <= now {
            tokens.remove(token);
            return None;
        }
        live.deadline = now + SIMPLE_TOKEN_TTL;
        Some(live.user.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        // Nothing under this lock can leave the map half-changed.
        self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops the expired tokens, and if none were, the one closest to expiring.
fn evict(tokens: &mut HashMap<String, Live>, now: Instant) {
    tokens.retain(|_, live| live.deadline > now);
    if tokens.len() < SIMPLE_TOKENS_MAX {
        return;
    }
    let oldest = tokens.iter().min_by_key(|(_, live)| live.deadline).map(|(token, _)| token.clone());
    if let Some(token) = oldest {
        tokens.remove(&token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_while_used_and_ends_with_its_user_or_auth() {
        let tokens = SimpleTokens::default();
        let start = Instant::now();
        tokens.apply(TokenChange::Assign("alice".into(), "a.1".into()), start);
        tokens.apply(TokenChange::Assign("bob".into(), "b.1".into()), start);
        assert_eq!(tokens.user("a.1", start + SIMPLE_TOKEN_TTL / 2).as_deref(), Some("alice"));
        // Renewed by that use: still alive past the first deadline.
        assert_eq!(tokens.user("a.1", start + SIMPLE_TOKEN_TTL).as_deref(), Some("alice"));
        assert_eq!(tokens.user("b.1", start + SIMPLE_TOKEN_TTL), None, "expired unused");
        assert_eq!(tokens.user("nope", start), None);
        tokens.apply(TokenChange::EndUser("alice".into()), start);
        assert_eq!(tokens.user("a.1", start), None);
        tokens.apply(TokenChange::Assign("bob".into(), "b.2".into()), start);
        tokens.apply(TokenChange::EndAll, start);
        assert_eq!(tokens.user("b.2", start), None);
    }

    #[test]
    fn tokens_are_random_and_shaped_like_etcds() {
        let (a, b) = (new_simple_token(), new_simple_token());
        assert_ne!(a, b);
        let (prefix, index) = a.split_once('.').expect("as expected");
        assert_eq!(prefix.len(), 16);
        assert!(prefix.chars().all(|c| c.is_ascii_alphabetic()) && index.parse::<u32>().is_ok());
    }
}

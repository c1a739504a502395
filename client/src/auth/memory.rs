//! [`MemoryAuth`]: the auth contract in-process, for tests and single-process programs.
//! Tokens are random strings it remembers; expiry runs on tokio's clock, so tests can
//! `tokio::time::pause()` and advance past it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use keel_model::auth::rules::{verify, Caller};
use rand::Rng;
use tokio::time::Instant;

use super::{
    check_account, check_expiry, check_rule, check_secret, Account, Auth, Credentials, GenerateOptions, Resource, Rule,
    Token, TokenOptions, ACCOUNT_TYPE_DEFAULT, GENERATED_SECRET_BYTES, RULES_MAX, UNAUTHENTICATED,
};
use crate::error::{Error, Result};

/// Refresh tokens one account may hold at once; signing in again past this forgets the oldest.
const REFRESH_TOKENS_PER_ACCOUNT_MAX: usize = 64;
/// Access tokens held at once across accounts; expired ones are dropped first, then the ones
/// that would expire soonest.
const ACCESS_TOKENS_MAX: usize = 100_000;

/// Accounts, tokens and rules in memory. Secrets are held as given: this never leaves the
/// process (the cluster keeps only bcrypt hashes).
#[derive(Default)]
pub struct MemoryAuth {
    // std Mutex: never held across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    accounts: BTreeMap<String, Stored>,
    /// access token → who it was issued to, and until when.
    access: HashMap<String, Issued>,
    /// refresh token → who it was issued to.
    refresh: HashMap<String, (String, u64)>,
    rules: Vec<Rule>,
    /// Tells one account's secret (or one account of a reused id) from the next: tokens carry
    /// the generation they were issued under and die with it.
    next_generation: u64,
}

struct Stored {
    account: Account,
    secret: String,
    generation: u64,
    refresh_tokens: VecDeque<String>,
}

struct Issued {
    id: String,
    generation: u64,
    deadline: Instant,
}

impl MemoryAuth {
    pub fn new() -> MemoryAuth {
        MemoryAuth::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough for
        // a test double; keep serving rather than poison every later call.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unauthenticated() -> Error {
    Error::Unauthenticated(UNAUTHENTICATED.into())
}

/// `N` random bytes as `2 * N` hex digits.
fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_token() -> String {
    random_hex::<32>()
}

fn generated_secret() -> String {
    random_hex::<{ GENERATED_SECRET_BYTES / 2 }>()
}

impl State {
    fn new_generation(&mut self) -> u64 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    /// The stored account a token of `generation` for `id` still speaks for.
    fn current(&self, id: &str, generation: u64) -> Option<&Stored> {
        self.accounts.get(id).filter(|stored| stored.generation == generation)
    }

    fn issue(&mut self, id: &str, options: &TokenOptions) -> Result<Token> {
        let now = Instant::now();
        let Some(stored) = self.accounts.get_mut(id) else { return Err(unauthenticated()) };
        let generation = stored.generation;
        let refresh_token = random_token();
        stored.refresh_tokens.push_back(refresh_token.clone());
        if stored.refresh_tokens.len() > REFRESH_TOKENS_PER_ACCOUNT_MAX {
            if let Some(oldest) = stored.refresh_tokens.pop_front() {
                self.refresh.remove(&oldest);
            }
        }
        self.refresh.insert(refresh_token.clone(), (id.to_string(), generation));
        self.access.retain(|_, issued| issued.deadline > now);
        while self.access.len() >= ACCESS_TOKENS_MAX {
            let soonest = self.access.iter().min_by_key(|(_, issued)| issued.deadline).map(|(token, _)| token.clone());
            let Some(soonest) = soonest else { break };
            self.access.remove(&soonest);
        }
        let access_token = random_token();
        self.access
            .insert(access_token.clone(), Issued { id: id.to_string(), generation, deadline: now + options.expiry });
        let created = SystemTime::now();
        Ok(Token { access_token, refresh_token, created, expiry: created + options.expiry })
    }
}

#[async_trait]
impl Auth for MemoryAuth {
    async fn generate(&self, id: &str, options: GenerateOptions) -> Result<Account> {
        check_account(id, &options)?;
        let mut state = self.state();
        if state.accounts.contains_key(id) {
            return Err(Error::InvalidArgument(format!("an account with id {id:?} already exists")));
        }
        let secret = options.secret.unwrap_or_else(generated_secret);
        let account = Account {
            id: id.to_string(),
            r#type: if options.r#type.is_empty() { ACCOUNT_TYPE_DEFAULT.into() } else { options.r#type },
            scopes: options.scopes,
            metadata: options.metadata,
            provider: if options.provider.is_empty() { "basic".into() } else { options.provider },
            secret: None,
        };
        let generation = state.new_generation();
        let stored =
            Stored { account: account.clone(), secret: secret.clone(), generation, refresh_tokens: VecDeque::new() };
        state.accounts.insert(id.to_string(), stored);
        Ok(Account { secret: Some(secret), ..account })
    }

    async fn token(&self, options: TokenOptions) -> Result<Token> {
        check_expiry(options.expiry)?;
        let mut state = self.state();
        let id = match &options.credentials {
            Credentials::Secret { id, secret } => {
                let known = state.accounts.get(id).is_some_and(|stored| stored.secret == *secret);
                if !known {
                    return Err(unauthenticated());
                }
                id.clone()
            }
            Credentials::Refresh(refresh_token) => {
                // A refresh token is used once: the answer carries the next one.
                let Some((id, generation)) = state.refresh.remove(refresh_token) else { return Err(unauthenticated()) };
                let Some(stored) = state.accounts.get_mut(&id).filter(|stored| stored.generation == generation) else {
                    return Err(unauthenticated());
                };
                stored.refresh_tokens.retain(|token| token != refresh_token);
                id
            }
        };
        state.issue(&id, &options)
    }

    async fn inspect(&self, access_token: &str) -> Result<Account> {
        let state = self.state();
        let issued = state.access.get(access_token).filter(|issued| issued.deadline > Instant::now());
        let stored = issued.and_then(|issued| state.current(&issued.id, issued.generation));
        stored.map(|stored| stored.account.clone()).ok_or_else(unauthenticated)
    }

    async fn verify(&self, account: Option<&Account>, resource: &Resource) -> Result<()> {
        let state = self.state();
        let caller = account.map(|account| Caller { scopes: &account.scopes });
        verify(&state.rules, caller, resource).map_err(|forbidden| {
            Error::Forbidden(format!("{forbidden}: {}:{}:{}", resource.r#type, resource.name, resource.endpoint))
        })
    }

    async fn grant(&self, rule: Rule) -> Result<()> {
        check_rule(&rule).map_err(Error::InvalidArgument)?;
        let mut state = self.state();
        if let Some(existing) = state.rules.iter_mut().find(|existing| existing.id == rule.id) {
            *existing = rule;
            return Ok(());
        }
        if state.rules.len() >= RULES_MAX {
            return Err(Error::InvalidArgument(format!("there are {RULES_MAX} rules already, the most there may be")));
        }
        state.rules.push(rule);
        Ok(())
    }

    async fn revoke(&self, rule_id: &str) -> Result<()> {
        let mut state = self.state();
        let before = state.rules.len();
        state.rules.retain(|rule| rule.id != rule_id);
        if state.rules.len() == before {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    async fn rules(&self) -> Result<Vec<Rule>> {
        Ok(self.state().rules.clone())
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        Ok(self.state().accounts.values().map(|stored| stored.account.clone()).collect())
    }

    async fn delete_account(&self, id: &str) -> Result<()> {
        let mut state = self.state();
        let stored = state.accounts.remove(id).ok_or(Error::NotFound)?;
        for token in stored.refresh_tokens {
            state.refresh.remove(&token);
        }
        Ok(())
    }

    async fn change_secret(&self, id: &str, old_secret: &str, new_secret: &str) -> Result<()> {
        check_secret(new_secret)?;
        let mut state = self.state();
        let generation = state.new_generation();
        let Some(stored) = state.accounts.get_mut(id).filter(|stored| stored.secret == old_secret) else {
            return Err(unauthenticated());
        };
        stored.secret = new_secret.to_string();
        stored.generation = generation;
        let revoked: Vec<String> = stored.refresh_tokens.drain(..).collect();
        for token in revoked {
            state.refresh.remove(&token);
        }
        Ok(())
    }
}

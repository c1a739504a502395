//! micro's accounts and rules as replicated state: accounts (bcrypt hashes of their secrets,
//! never the secrets), the rules `Verify` reads in their stored order, and the commands that
//! change them. An account's `generation` changes with its secret, and a reused id gets a new
//! one: a token names the generation it was issued under and dies with it.
//!
//! Pure: the member hashes secrets and signs tokens; what is decided here is what the state
//! holds after a command.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::rules::{check_rule, Rule, RULES_MAX};

/// The longest account id, type, provider, scope or metadata entry.
pub const ACCOUNT_FIELD_BYTES_MAX: usize = 512;
/// The most scopes or metadata entries one account holds: both travel in every token.
pub const ACCOUNT_ENTRIES_MAX: usize = 64;
/// The longest secret; bcrypt reads at most 72 bytes.
pub const SECRET_BYTES_MAX: usize = 72;
/// The most accounts a cluster holds: each is read on every token check.
pub const ACCOUNTS_MAX: usize = 100_000;
/// Refresh tokens one account holds at once: signing in again past this forgets the oldest.
pub const REFRESH_TOKENS_PER_ACCOUNT_MAX: usize = 64;
/// The longest refresh token id the cluster keeps.
pub const REFRESH_ID_BYTES_MAX: usize = 64;

/// An account as the cluster stores it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    pub id: String,
    pub r#type: String,
    pub scopes: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub provider: String,
    /// bcrypt (`$2b$…`).
    pub secret_hash: String,
    /// Assigned at apply; see the module docs.
    pub generation: u64,
    /// The ids of its refresh tokens still unused, oldest first: a refresh token is good once.
    pub refresh_ids: Vec<String>,
}

/// Debug never shows the hash.
impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("id", &self.id)
            .field("type", &self.r#type)
            .field("scopes", &self.scopes)
            .field("provider", &self.provider)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A rule and its place in the order `Verify` breaks ties by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    pub seq: u64,
    pub rule: Rule,
}

/// A change to accounts or rules.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MicroCommand {
    /// A new account (its `generation` is assigned at apply); an id in use is refused.
    Generate(StoredAccount),
    DeleteAccount {
        id: String,
    },
    /// A new secret, whose old one the receiving member checked against `checked_generation`;
    /// refused if the account changed since.
    ChangeSecret {
        id: String,
        secret_hash: String,
        checked_generation: u64,
    },
    /// Adds a rule, or replaces the one with its id where it stands.
    Grant(Rule),
    Revoke {
        id: String,
    },
    /// A sign-in: a refresh token with id `refresh_id` for the account at `generation`.
    IssueRefresh {
        id: String,
        generation: u64,
        refresh_id: String,
    },
    /// A refresh: `used` is spent and `refresh_id` takes its place; refused if `used` is not
    /// live (spent already, forgotten, or of another generation).
    RotateRefresh {
        id: String,
        generation: u64,
        used: String,
        refresh_id: String,
    },
}

/// Short, for logs: never a hash.
impl std::fmt::Debug for MicroCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MicroCommand::Generate(account) => write!(f, "generate account {:?}", account.id),
            MicroCommand::DeleteAccount { id } => write!(f, "delete account {id:?}"),
            MicroCommand::ChangeSecret { id, .. } => write!(f, "change the secret of account {id:?}"),
            MicroCommand::Grant(rule) => write!(f, "grant rule {:?}", rule.id),
            MicroCommand::Revoke { id } => write!(f, "revoke rule {id:?}"),
            MicroCommand::IssueRefresh { id, .. } => write!(f, "sign in account {id:?}"),
            MicroCommand::RotateRefresh { id, .. } => write!(f, "refresh account {id:?}"),
        }
    }
}

/// micro's refusals of a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MicroError {
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("account not found")]
    AccountNotFound,
    #[error("rule not found")]
    RuleNotFound,
    /// A wrong id, secret or token, or an account whose secret changed (or that was deleted and
    /// made again) between the check of its old secret and the change: one message for all, so
    /// a caller learns nothing about which accounts exist.
    #[error("invalid credentials or token")]
    Unauthenticated,
    #[error("{0}")]
    Invalid(String),
    /// micro's `ErrForbidden`: no rule lets the account reach the resource.
    #[error("access to the resource is forbidden")]
    Forbidden,
}

/// What an applied command touched: the records to store again (or delete, if gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MicroTouched {
    pub accounts: BTreeSet<String>,
    pub rules: BTreeSet<String>,
    /// Whether the counters changed.
    pub meta: bool,
}

/// Accounts, rules (in `seq` order) and the counters that order them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MicroState {
    pub accounts: BTreeMap<String, StoredAccount>,
    pub rules: Vec<StoredRule>,
    pub next_generation: u64,
    pub next_rule_seq: u64,
}

impl MicroState {
    pub fn apply(&mut self, command: &MicroCommand) -> Result<MicroTouched, MicroError> {
        check_command(command)?;
        let mut touched = MicroTouched::default();
        match command {
            MicroCommand::Generate(account) => {
                if self.accounts.contains_key(&account.id) {
                    return Err(MicroError::AccountExists(account.id.clone()));
                }
                if self.accounts.len() >= ACCOUNTS_MAX {
                    return Err(MicroError::Invalid(format!("a cluster holds at most {ACCOUNTS_MAX} accounts")));
                }
                let generation = self.take_generation();
                let stored = StoredAccount { generation, refresh_ids: Vec::new(), ..account.clone() };
                self.accounts.insert(account.id.clone(), stored);
                touched.accounts.insert(account.id.clone());
            }
            MicroCommand::DeleteAccount { id } => {
                self.accounts.remove(id).ok_or(MicroError::AccountNotFound)?;
                touched.accounts.insert(id.clone());
            }
            MicroCommand::ChangeSecret { id, secret_hash, checked_generation } => {
                let current = self.accounts.get(id).map(|account| account.generation);
                if current != Some(*checked_generation) {
                    return Err(MicroError::Unauthenticated);
                }
                let generation = self.take_generation();
                if let Some(account) = self.accounts.get_mut(id) {
                    account.secret_hash.clone_from(secret_hash);
                    account.generation = generation;
                    account.refresh_ids.clear();
                }
                touched.accounts.insert(id.clone());
            }
            MicroCommand::IssueRefresh { id, generation, refresh_id } => {
                let account = self.live_account(id, *generation)?;
                if account.refresh_ids.len() >= REFRESH_TOKENS_PER_ACCOUNT_MAX {
                    account.refresh_ids.remove(0);
                }
                account.refresh_ids.push(refresh_id.clone());
                touched.accounts.insert(id.clone());
                return Ok(touched);
            }
            MicroCommand::RotateRefresh { id, generation, used, refresh_id } => {
                let account = self.live_account(id, *generation)?;
                let index =
                    account.refresh_ids.iter().position(|live| live == used).ok_or(MicroError::Unauthenticated)?;
                account.refresh_ids.remove(index);
                account.refresh_ids.push(refresh_id.clone());
                touched.accounts.insert(id.clone());
                return Ok(touched);
            }
            MicroCommand::Grant(rule) => {
                let held = self.rules.len();
                match self.rules.iter_mut().find(|stored| stored.rule.id == rule.id) {
                    Some(stored) => stored.rule = rule.clone(),
                    None if held >= RULES_MAX => {
                        return Err(MicroError::Invalid(format!("a cluster holds at most {RULES_MAX} rules")))
                    }
                    None => {
                        let seq = self.next_rule_seq;
                        self.next_rule_seq = seq.saturating_add(1);
                        self.rules.push(StoredRule { seq, rule: rule.clone() });
                    }
                }
                touched.rules.insert(rule.id.clone());
            }
            MicroCommand::Revoke { id } => {
                let index =
                    self.rules.iter().position(|stored| stored.rule.id == *id).ok_or(MicroError::RuleNotFound)?;
                self.rules.remove(index);
                touched.rules.insert(id.clone());
            }
        }
        touched.meta = true;
        Ok(touched)
    }

    /// The rules in the order `rules::verify` reads them.
    pub fn ordered_rules(&self) -> Vec<Rule> {
        self.rules.iter().map(|stored| stored.rule.clone()).collect()
    }

    /// The rules in `Verify`'s order, borrowed: what a check per call reads.
    pub fn rules_in_order(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|stored| &stored.rule)
    }

    /// The stored rule with `id`.
    pub fn rule(&self, id: &str) -> Option<&StoredRule> {
        self.rules.iter().find(|stored| stored.rule.id == id)
    }

    /// The account `id` if it still has `generation`.
    fn live_account(&mut self, id: &str, generation: u64) -> Result<&mut StoredAccount, MicroError> {
        self.accounts.get_mut(id).filter(|account| account.generation == generation).ok_or(MicroError::Unauthenticated)
    }

    fn take_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation = generation.saturating_add(1);
        generation
    }
}

/// The checks of a command alone (before it is proposed, and again at apply).
pub fn check_command(command: &MicroCommand) -> Result<(), MicroError> {
    match command {
        MicroCommand::Generate(account) => check_account(
            &account.id,
            [account.r#type.as_str(), account.provider.as_str()],
            &account.scopes,
            &account.metadata,
        )
        .map_err(MicroError::Invalid),
        MicroCommand::DeleteAccount { id } | MicroCommand::ChangeSecret { id, .. } => {
            check_field("id", id).map_err(MicroError::Invalid)
        }
        MicroCommand::Grant(rule) => check_rule(rule).map_err(MicroError::Invalid),
        MicroCommand::Revoke { id } => check_field("rule id", id).map_err(MicroError::Invalid),
        MicroCommand::IssueRefresh { id, refresh_id, .. } => check_refresh(id, [refresh_id]),
        MicroCommand::RotateRefresh { id, used, refresh_id, .. } => check_refresh(id, [used, refresh_id]),
    }
}

fn check_refresh<'a>(id: &str, refresh_ids: impl IntoIterator<Item = &'a String>) -> Result<(), MicroError> {
    check_field("id", id).map_err(MicroError::Invalid)?;
    if refresh_ids.into_iter().any(|refresh_id| refresh_id.len() > REFRESH_ID_BYTES_MAX) {
        return Err(MicroError::Unauthenticated);
    }
    Ok(())
}

/// An account's id and fields against the limits above.
pub fn check_account<'a>(
    id: &str,
    fields: impl IntoIterator<Item = &'a str>,
    scopes: &[String],
    metadata: &BTreeMap<String, String>,
) -> Result<(), String> {
    if id.is_empty() {
        return Err("an account needs an id".into());
    }
    check_field("id", id)?;
    for value in fields {
        check_field("type or provider", value)?;
    }
    for scope in scopes {
        check_field("scope", scope)?;
    }
    for (key, value) in metadata {
        check_field("metadata key", key)?;
        check_field("metadata value", value)?;
    }
    if scopes.len() > ACCOUNT_ENTRIES_MAX || metadata.len() > ACCOUNT_ENTRIES_MAX {
        return Err(format!("an account holds at most {ACCOUNT_ENTRIES_MAX} scopes and metadata entries"));
    }
    Ok(())
}

/// A secret: not empty, at most [`SECRET_BYTES_MAX`].
pub fn check_secret(secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err("a secret may not be empty".into());
    }
    if secret.len() > SECRET_BYTES_MAX {
        return Err(format!("a secret is at most {SECRET_BYTES_MAX} bytes"));
    }
    Ok(())
}

fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.len() > ACCOUNT_FIELD_BYTES_MAX {
        return Err(format!("the account's {what} is longer than {ACCOUNT_FIELD_BYTES_MAX} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("the account's {what} holds a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::rules::{Access, Resource};
    use super::*;

    fn account(id: &str) -> StoredAccount {
        StoredAccount {
            id: id.into(),
            r#type: "user".into(),
            scopes: vec!["reader".into()],
            metadata: BTreeMap::new(),
            provider: "basic".into(),
            secret_hash: "$2b$04$x".into(),
            generation: 99,
            refresh_ids: vec!["smuggled".into()],
        }
    }

    fn rule(id: &str, priority: i32) -> Rule {
        let resource = Resource { r#type: "service".into(), name: "greeter".into(), endpoint: "*".into() };
        Rule { id: id.into(), scope: "*".into(), resource, access: Access::Granted, priority }
    }

    #[test]
    fn generations_come_from_the_state_and_end_old_secrets_and_refresh_tokens() {
        let mut state = MicroState::default();
        state.apply(&MicroCommand::Generate(account("a"))).expect("generate");
        let stored = &state.accounts["a"];
        assert_eq!((stored.generation, stored.refresh_ids.len()), (0, 0), "the command's own values are ignored");
        assert_eq!(state.apply(&MicroCommand::Generate(account("a"))), Err(MicroError::AccountExists("a".into())));

        let issue = |generation, refresh_id: &str| MicroCommand::IssueRefresh {
            id: "a".into(),
            generation,
            refresh_id: refresh_id.into(),
        };
        state.apply(&issue(0, "r1")).expect("sign in");
        let rotate = |used: &str, refresh_id: &str| MicroCommand::RotateRefresh {
            id: "a".into(),
            generation: 0,
            used: used.into(),
            refresh_id: refresh_id.into(),
        };
        state.apply(&rotate("r1", "r2")).expect("refresh");
        assert_eq!(state.apply(&rotate("r1", "r3")), Err(MicroError::Unauthenticated), "a refresh token is good once");

        let change = |checked_generation| MicroCommand::ChangeSecret {
            id: "a".into(),
            secret_hash: "$2b$04$y".into(),
            checked_generation,
        };
        assert_eq!(state.apply(&change(5)), Err(MicroError::Unauthenticated), "checked against another generation");
        state.apply(&change(0)).expect("change");
        assert_eq!(state.accounts["a"].generation, 1);
        assert_eq!(state.apply(&rotate("r2", "r4")), Err(MicroError::Unauthenticated), "old refresh tokens end");
        assert_eq!(
            state.apply(&issue(0, "r5")),
            Err(MicroError::Unauthenticated),
            "a sign-in checked before the change"
        );

        state.apply(&MicroCommand::DeleteAccount { id: "a".into() }).expect("delete");
        state.apply(&MicroCommand::Generate(account("a"))).expect("the id again");
        assert_eq!(state.accounts["a"].generation, 2, "a reused id is a new generation");
    }

    #[test]
    fn refresh_tokens_per_account_are_bounded_oldest_first() {
        let mut state = MicroState::default();
        state.apply(&MicroCommand::Generate(account("a"))).expect("generate");
        for n in 0..=REFRESH_TOKENS_PER_ACCOUNT_MAX {
            let refresh_id = format!("r{n}");
            state.apply(&MicroCommand::IssueRefresh { id: "a".into(), generation: 0, refresh_id }).expect("sign in");
        }
        let live = &state.accounts["a"].refresh_ids;
        assert_eq!(live.len(), REFRESH_TOKENS_PER_ACCOUNT_MAX);
        assert_eq!(live.first().map(String::as_str), Some("r1"), "the oldest is forgotten");
    }

    #[test]
    fn rules_keep_their_place_when_replaced_and_are_bounded() {
        let mut state = MicroState::default();
        for id in ["a", "b", "c"] {
            state.apply(&MicroCommand::Grant(rule(id, 0))).expect("grant");
        }
        state.apply(&MicroCommand::Grant(rule("a", 5))).expect("replace");
        let order: Vec<(String, i32)> = state.ordered_rules().into_iter().map(|r| (r.id, r.priority)).collect();
        assert_eq!(order, [("a".to_string(), 5), ("b".to_string(), 0), ("c".to_string(), 0)]);
        state.apply(&MicroCommand::Revoke { id: "b".into() }).expect("revoke");
        assert_eq!(state.apply(&MicroCommand::Revoke { id: "b".into() }), Err(MicroError::RuleNotFound));
        let bad = Rule { id: String::new(), ..rule("x", 0) };
        assert!(matches!(state.apply(&MicroCommand::Grant(bad)), Err(MicroError::Invalid(_))));
        assert_eq!(state.rules.len(), 2, "a refusal changes nothing");
    }

    #[test]
    fn oversized_and_control_character_fields_are_refused() {
        let mut huge = account(&"i".repeat(ACCOUNT_FIELD_BYTES_MAX + 1));
        assert!(matches!(
            MicroState::default().apply(&MicroCommand::Generate(huge.clone())),
            Err(MicroError::Invalid(_))
        ));
        huge.id = "ok".into();
        huge.scopes = vec!["a\nb".into()];
        assert!(matches!(check_command(&MicroCommand::Generate(huge)), Err(MicroError::Invalid(_))));
        let long_refresh = "r".repeat(REFRESH_ID_BYTES_MAX + 1);
        let issue = MicroCommand::IssueRefresh { id: "a".into(), generation: 0, refresh_id: long_refresh };
        assert_eq!(check_command(&issue), Err(MicroError::Unauthenticated));
        assert_eq!(check_secret(""), Err("a secret may not be empty".to_string()));
        assert!(check_secret(&"s".repeat(SECRET_BYTES_MAX + 1)).is_err());
    }
}

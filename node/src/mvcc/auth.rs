//! The auth sub-store: etcd's auth state (`keel_model::auth::etcd::AuthState`: on or off, the
//! auth revision, users with bcrypt hashes, roles with key permissions). It owns the
//! `mvcc/auth/` records of `Table::StateMeta` — never keys of the KV keyspace, which clients can
//! read — and stages its own changes to them. Simple tokens are not stored: what an applied
//! command says about them is handed to the member (`take_token_changes`), as etcd keeps them
//! in memory. micro's accounts and rules live here too (`micro_auth.rs`: their records).

use std::collections::BTreeMap;

use keel_model::auth::etcd::{AuthCommand, AuthError, AuthState, Role, TokenChange, Touched, User};
use serde::{Deserialize, Serialize};

use crate::storage::{Engine, StorageError, Table, WriteBatch};

use super::events::{encode, name_in_key, scan_meta};
use super::keyspace::decode_record;

const META_KEY: &[u8] = b"mvcc/auth/meta";
const USER_PREFIX: &[u8] = b"mvcc/auth/user/";
const ROLE_PREFIX: &[u8] = b"mvcc/auth/role/";

/// Whether auth is on and the auth revision, in one record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuthMeta {
    pub enabled: bool,
    pub revision: u64,
}

/// The auth state, the records changed since the last commit (`None`: delete), and the token
/// changes the member has not taken yet.
#[derive(Debug, Default)]
pub(crate) struct AuthStore {
    state: AuthState,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    token_changes: Vec<TokenChange>,
}

impl AuthStore {
    /// Loads the auth state. A record that does not read back exactly means this member's storage
    /// is damaged: the load fails rather than skip it (a skipped user could be a skipped refusal).
    pub fn load(engine: &dyn Engine) -> Result<Self, StorageError> {
        let mut state = AuthState::default();
        if let Some(bytes) = engine.get(Table::StateMeta, META_KEY)? {
            let meta: AuthMeta = decode_record(&bytes, format_args!("auth meta record"))?;
            state.enabled = meta.enabled;
            state.revision = meta.revision;
        }
        for (key, value) in scan_meta(engine, USER_PREFIX)? {
            let name = name_in_key(&key, USER_PREFIX)?;
            let user: User = decode_record(&value, format_args!("auth user record {name:?}"))?;
            check_name(&key, name, &user.name)?;
            state.users.insert(user.name.clone(), user);
        }
        for (key, value) in scan_meta(engine, ROLE_PREFIX)? {
            let name = name_in_key(&key, ROLE_PREFIX)?;
            let role: Role = decode_record(&value, format_args!("auth role record {name:?}"))?;
            check_name(&key, name, &role.name)?;
            state.roles.insert(role.name.clone(), role);
        }
        state.micro = super::micro_auth::load(engine)?;
        Ok(AuthStore { state, ..AuthStore::default() })
    }

    pub fn state(&self) -> &AuthState {
        &self.state
    }

    /// Applies `command` to the state and stages the records it touched. A refusal changes and
    /// stages nothing.
    pub fn apply(&mut self, command: &AuthCommand) -> Result<(), OpOutcome> {
        let touched = self.state.apply(command).map_err(OpOutcome::Rejected)?;
        self.stage(touched).map_err(OpOutcome::Storage)
    }

    fn stage(&mut self, touched: Touched) -> Result<(), StorageError> {
        let Touched { users, roles, meta, tokens, micro } = touched;
        super::micro_auth::stage(&self.state.micro, micro, &mut self.staged)?;
        for name in users {
            let record = self.state.users.get(&name).map(encode).transpose()?;
            self.staged.insert(record_key(USER_PREFIX, &name), record);
        }
        for name in roles {
            let record = self.state.roles.get(&name).map(encode).transpose()?;
            self.staged.insert(record_key(ROLE_PREFIX, &name), record);
        }
        if meta {
            let meta = AuthMeta { enabled: self.state.enabled, revision: self.state.revision };
            self.staged.insert(META_KEY.to_vec(), Some(encode(&meta)?));
        }
        self.token_changes.extend(tokens);
        Ok(())
    }

    /// Moves the records staged since the last call into `batch`.
    pub fn take_staged(&mut self, batch: &mut WriteBatch) {
        for (key, record) in std::mem::take(&mut self.staged) {
            match record {
                Some(value) => batch.put(Table::StateMeta, key, value),
                None => batch.delete(Table::StateMeta, key),
            }
        }
    }

    /// The token changes applied since the last call, in order.
    pub fn take_token_changes(&mut self) -> Vec<TokenChange> {
        std::mem::take(&mut self.token_changes)
    }
}

/// An auth command's two ways to fail (see `OpError`).
#[derive(Debug)]
pub(crate) enum OpOutcome {
    Rejected(AuthError),
    Storage(StorageError),
}

/// The `StateMeta` key of a user's or a role's record.
pub(crate) fn record_key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

#[cfg(test)]
pub(crate) fn user_key(name: &str) -> Vec<u8> {
    record_key(USER_PREFIX, name)
}

#[cfg(test)]
pub(crate) fn role_key(name: &str) -> Vec<u8> {
    record_key(ROLE_PREFIX, name)
}

#[cfg(test)]
pub(crate) const AUTH_META_KEY: &[u8] = META_KEY;

fn check_name(key: &[u8], in_key: &str, in_record: &str) -> Result<(), StorageError> {
    if in_key != in_record {
        return Err(StorageError(format!("mvcc: corrupt auth record {key:?}: it names {in_record:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keel_model::auth::etcd::ROOT;

    use super::*;
    use crate::storage::{Durability, MemoryEngine};

    #[test]
    fn the_auth_state_reads_back_as_it_was_applied_and_deletes_are_stored() {
        let engine = MemoryEngine::default();
        let mut store = AuthStore::load(&engine).expect("as expected");
        let add = |name: &str| AuthCommand::UserAdd {
            name: name.into(),
            password_hash: "$2b$04$x".into(),
            no_password: false,
        };
        for command in [
            add(ROOT),
            AuthCommand::UserGrantRole { user: ROOT.into(), role: ROOT.into() },
            add("gone"),
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::Enable,
            AuthCommand::UserDelete { name: "gone".into() },
        ] {
            store.apply(&command).expect("as expected");
            let mut batch = WriteBatch::new();
            store.take_staged(&mut batch);
            engine.write(batch, Durability::Buffered).expect("as expected");
        }
        assert!(matches!(store.apply(&add(ROOT)), Err(OpOutcome::Rejected(AuthError::UserAlreadyExist))));
        let reloaded = AuthStore::load(&engine).expect("as expected");
        assert_eq!(reloaded.state(), store.state());
        assert!(!reloaded.state().users.contains_key("gone"));
        assert_eq!(store.take_token_changes(), vec![TokenChange::EndUser("gone".into())]);
    }

    #[test]
    fn micro_accounts_and_rules_read_back_in_their_order() {
        use keel_model::auth::micro::{MicroCommand, StoredAccount};
        use keel_model::auth::rules::{Access, Resource, Rule};
        let engine = MemoryEngine::default();
        let mut store = AuthStore::load(&engine).expect("as expected");
        let account = |id: &str| StoredAccount {
            id: id.into(),
            r#type: "service".into(),
            scopes: vec!["billing".into()],
            metadata: [("team".to_string(), "blue".to_string())].into(),
            provider: "basic".into(),
            secret_hash: "$2b$04$x".into(),
            generation: 0,
            refresh_ids: Vec::new(),
        };
        let rule = |id: &str| Rule {
            id: id.into(),
            scope: "*".into(),
            resource: Resource { r#type: "service".into(), name: "greeter".into(), endpoint: "*".into() },
            access: Access::Granted,
            priority: 0,
        };
        // "z" is granted first, so it must come back first whatever its key's order.
        for command in [
            MicroCommand::Generate(account("kept")),
            MicroCommand::Generate(account("gone")),
            MicroCommand::IssueRefresh { id: "kept".into(), generation: 0, refresh_id: "r1".into() },
            MicroCommand::Grant(rule("z")),
            MicroCommand::Grant(rule("a")),
            MicroCommand::Grant(rule("revoked")),
            MicroCommand::Revoke { id: "revoked".into() },
            MicroCommand::DeleteAccount { id: "gone".into() },
        ] {
            store.apply(&AuthCommand::Micro(command)).expect("as expected");
            let mut batch = WriteBatch::new();
            store.take_staged(&mut batch);
            engine.write(batch, Durability::Buffered).expect("as expected");
        }
        let reloaded = AuthStore::load(&engine).expect("as expected");
        assert_eq!(reloaded.state(), store.state());
        let order: Vec<String> = reloaded.state().micro.ordered_rules().into_iter().map(|rule| rule.id).collect();
        assert_eq!(order, ["z", "a"]);
        assert_eq!(reloaded.state().micro.accounts.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(reloaded.state().micro.accounts["kept"].refresh_ids, ["r1"]);
        assert_eq!(reloaded.state().revision, 0, "micro changes leave etcd's auth revision alone");
    }
}

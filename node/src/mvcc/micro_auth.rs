//! micro's accounts and rules in the auth sub-store's records: one `StateMeta` record per
//! account and per rule (a rule carries its place in `Verify`'s order), and the counters in
//! one more. Loaded with etcd's auth state and staged with it (`auth.rs`).

use std::collections::BTreeMap;

use keel_model::auth::micro::{MicroState, MicroTouched, StoredAccount, StoredRule};
use serde::{Deserialize, Serialize};

use super::events::{encode, name_in_key, scan_meta};
use super::keyspace::decode_record;
use crate::storage::{Engine, StorageError, Table};

const META_KEY: &[u8] = b"mvcc/auth/micro/meta";
const ACCOUNT_PREFIX: &[u8] = b"mvcc/auth/micro/account/";
const RULE_PREFIX: &[u8] = b"mvcc/auth/micro/rule/";

/// The counters that give generations and rule order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MicroMeta {
    pub next_generation: u64,
    pub next_rule_seq: u64,
}

/// Reads micro's state; a record that does not read back exactly fails the load.
pub(super) fn load(engine: &dyn Engine) -> Result<MicroState, StorageError> {
    let mut state = MicroState::default();
    if let Some(bytes) = engine.get(Table::StateMeta, META_KEY)? {
        let meta: MicroMeta = decode_record(&bytes, format_args!("micro auth meta record"))?;
        state.next_generation = meta.next_generation;
        state.next_rule_seq = meta.next_rule_seq;
    }
    for (key, value) in scan_meta(engine, ACCOUNT_PREFIX)? {
        let id = name_in_key(&key, ACCOUNT_PREFIX)?;
        let account: StoredAccount = decode_record(&value, format_args!("micro account record {id:?}"))?;
        check_id(&key, id, &account.id)?;
        state.accounts.insert(account.id.clone(), account);
    }
    for (key, value) in scan_meta(engine, RULE_PREFIX)? {
        let id = name_in_key(&key, RULE_PREFIX)?;
        let rule: StoredRule = decode_record(&value, format_args!("micro rule record {id:?}"))?;
        check_id(&key, id, &rule.rule.id)?;
        state.rules.push(rule);
    }
    state.rules.sort_by_key(|stored| stored.seq);
    Ok(state)
}

/// Stages the records `touched` names (`None`: delete) into `staged`.
pub(super) fn stage(
    state: &MicroState,
    touched: MicroTouched,
    staged: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) -> Result<(), StorageError> {
    for id in touched.accounts {
        let record = state.accounts.get(&id).map(encode).transpose()?;
        staged.insert(record_key(ACCOUNT_PREFIX, &id), record);
    }
    for id in touched.rules {
        let record = state.rule(&id).map(encode).transpose()?;
        staged.insert(record_key(RULE_PREFIX, &id), record);
    }
    if touched.meta {
        let meta = MicroMeta { next_generation: state.next_generation, next_rule_seq: state.next_rule_seq };
        staged.insert(META_KEY.to_vec(), Some(encode(&meta)?));
    }
    Ok(())
}

fn record_key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
pub(crate) fn account_key(id: &str) -> Vec<u8> {
    record_key(ACCOUNT_PREFIX, id)
}

#[cfg(test)]
pub(crate) fn rule_key(id: &str) -> Vec<u8> {
    record_key(RULE_PREFIX, id)
}

#[cfg(test)]
pub(crate) const MICRO_META_KEY: &[u8] = META_KEY;

fn check_id(key: &[u8], in_key: &str, in_record: &str) -> Result<(), StorageError> {
    if in_key != in_record {
        return Err(StorageError(format!("mvcc: corrupt micro auth record {key:?}: it names {in_record:?}")));
    }
    Ok(())
}

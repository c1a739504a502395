//! The consumer-groups sub-store: each (topic, group) has a [`GroupState`] (cursor and pending
//! deliveries, see `keel_model::group` for the rules). It owns the `mvcc/group/`
//! records of `Table::StateMeta` and stages its own changes to them; joining, claiming and
//! settling are commands (`crate::apply::group_*`), so a group's position survives reconnects,
//! restarts and leader changes, and two members never hand the same event to two consumers of
//! one group at once.

use std::collections::BTreeMap;

use keel_model::group::GroupState;

use crate::storage::{Engine, StorageError, Table, WriteBatch};

use super::events::{encode, name_in_key, scan_meta};
use super::keyspace::decode_record;
use super::store::MvccStore;

const GROUP_PREFIX: &[u8] = b"mvcc/group/";

/// Every consumer group by (topic, group), and the records changed since the last commit.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    states: BTreeMap<(String, String), GroupState>,
    /// `StateMeta` records written since the last commit (groups are never deleted).
    staged: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Groups {
    /// Loads every group. A record that does not read back exactly (its key or its value) means
    /// this member's storage is damaged: the load fails rather than skip it.
    pub fn load(engine: &dyn Engine) -> Result<Self, StorageError> {
        let mut groups = Groups::default();
        for (key, value) in scan_meta(engine, GROUP_PREFIX)? {
            let name = name_in_key(&key, GROUP_PREFIX)?;
            // Groups never held NUL (always refused), topics did before names had one rule:
            // the last NUL is the separator, and `group_key` always writes one.
            let (topic, group) = name
                .rsplit_once('\0')
                .ok_or_else(|| StorageError(format!("mvcc: corrupt group key {key:?}: no topic/group separator")))?;
            let state = decode_record(&value, format_args!("group record {key:?}"))?;
            groups.states.insert((topic.to_string(), group.to_string()), state);
        }
        Ok(groups)
    }

    pub fn get(&self, topic: &str, group: &str) -> Option<&GroupState> {
        self.states.get(&(topic.to_string(), group.to_string()))
    }

    /// Stages `state` as the group's and keeps it in memory.
    pub fn save(&mut self, topic: &str, group: &str, state: GroupState) -> Result<(), StorageError> {
        self.staged.insert(group_key(topic, group), encode(&state)?);
        self.states.insert((topic.to_string(), group.to_string()), state);
        Ok(())
    }

    /// Moves the records staged since the last call into `batch`.
    pub fn take_staged(&mut self, batch: &mut WriteBatch) {
        for (key, value) in std::mem::take(&mut self.staged) {
            batch.put(Table::StateMeta, key, value);
        }
    }
}

/// The `StateMeta` key of a group's state.
pub(crate) fn group_key(topic: &str, group: &str) -> Vec<u8> {
    let mut key = GROUP_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(group.as_bytes());
    key
}

impl MvccStore {
    /// The state of `group` on `topic`, if it exists.
    pub fn group(&self, topic: &str, group: &str) -> Option<&GroupState> {
        self.groups.get(topic, group)
    }

    /// Every group of `topic`, by name.
    pub fn groups(&self, topic: &str) -> Vec<(String, GroupState)> {
        self.groups
            .states
            .range((topic.to_string(), String::new())..)
            .take_while(|((t, _), _)| t == topic)
            .map(|((_, group), state)| (group.clone(), state.clone()))
            .collect()
    }
}

//! The alarm sub-store: etcd's active alarms, each a (member, type) pair, in the
//! `mvcc/alarm/` records of `Table::StateMeta`. They are replicated state, so every member
//! refuses the same writes while one is active (`apply::alarm::gate`).

use std::collections::{BTreeMap, BTreeSet};

use crate::command::{AlarmMember, AlarmType};
use crate::storage::{Engine, StorageError, Table, WriteBatch};

use super::events::{encode, scan_meta};
use super::keyspace::decode_record;

const ALARM_PREFIX: &[u8] = b"mvcc/alarm/";

/// The most alarms the state keeps: one of each type per member of a large cluster. The API
/// only raises alarms of current members; this bounds the state whatever reaches the log.
pub(crate) const ALARMS_MAX: usize = 64;

/// The active alarms and the records changed since the last commit (`None`: delete).
#[derive(Debug, Default)]
pub(crate) struct Alarms {
    active: BTreeSet<AlarmMember>,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Alarms {
    /// Loads the active alarms; a record whose key and value disagree is damaged storage.
    pub fn load(engine: &dyn Engine) -> Result<Self, StorageError> {
        let mut active = BTreeSet::new();
        for (key, value) in scan_meta(engine, ALARM_PREFIX)? {
            let alarm: AlarmMember = decode_record(&value, format_args!("alarm record {key:?}"))?;
            if record_key(alarm) != key {
                return Err(StorageError(format!("mvcc: corrupt alarm record {key:?}: it names {alarm:?}")));
            }
            active.insert(alarm);
        }
        Ok(Alarms { active, staged: BTreeMap::new() })
    }

    /// The active alarms of `alarm`'s type, every type for `AlarmType::None`, in (member, type) order.
    pub fn get(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.active.iter().filter(|a| alarm == AlarmType::None || a.alarm == alarm).copied().collect()
    }

    /// Whether an alarm of this type is active on any member.
    pub fn is_active(&self, alarm: AlarmType) -> bool {
        self.active.iter().any(|a| a.alarm == alarm)
    }

    pub fn contains(&self, alarm: AlarmMember) -> bool {
        self.active.contains(&alarm)
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Raises `alarm`; false if it was already active.
    pub fn activate(&mut self, alarm: AlarmMember) -> Result<bool, StorageError> {
        if !self.active.insert(alarm) {
            return Ok(false);
        }
        self.staged.insert(record_key(alarm), Some(encode(&alarm)?));
        Ok(true)
    }

    /// Clears `alarm`; false if it was not active.
    pub fn deactivate(&mut self, alarm: AlarmMember) -> bool {
        if !self.active.remove(&alarm) {
            return false;
        }
        self.staged.insert(record_key(alarm), None);
        true
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
}

/// `mvcc/alarm/<member id, 16 hex digits>/<type>`: readable, and in (member, type) order.
pub(crate) fn record_key(alarm: AlarmMember) -> Vec<u8> {
    format!("mvcc/alarm/{:016x}/{}", alarm.member_id, alarm.alarm.name()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Durability, MemoryEngine};

    fn commit(alarms: &mut Alarms, engine: &MemoryEngine) {
        let mut batch = WriteBatch::new();
        alarms.take_staged(&mut batch);
        engine.write(batch, Durability::Buffered).expect("write");
    }

    #[test]
    fn alarms_read_back_as_raised_and_cleared() {
        let engine = MemoryEngine::default();
        let mut alarms = Alarms::load(&engine).expect("load");
        let space = |member_id| AlarmMember { member_id, alarm: AlarmType::NoSpace };
        let corrupt = AlarmMember { member_id: 7, alarm: AlarmType::Corrupt };
        assert!(alarms.activate(space(9)).expect("activate"));
        assert!(!alarms.activate(space(9)).expect("activate again"));
        assert!(alarms.activate(space(3)).expect("activate"));
        assert!(alarms.activate(corrupt).expect("activate"));
        commit(&mut alarms, &engine);
        assert!(alarms.deactivate(space(9)));
        assert!(!alarms.deactivate(space(9)));
        commit(&mut alarms, &engine);
        let reloaded = Alarms::load(&engine).expect("reload");
        assert_eq!(reloaded.get(AlarmType::None), vec![space(3), corrupt]);
        assert_eq!(reloaded.get(AlarmType::Corrupt), vec![corrupt]);
        assert!(reloaded.is_active(AlarmType::NoSpace));
    }

    #[test]
    fn a_record_under_the_wrong_key_is_damaged_storage() {
        let engine = MemoryEngine::default();
        let alarm = AlarmMember { member_id: 1, alarm: AlarmType::NoSpace };
        let mut batch = WriteBatch::new();
        batch.put(Table::StateMeta, b"mvcc/alarm/0000000000000002/NOSPACE".to_vec(), encode(&alarm).expect("encode"));
        engine.write(batch, Durability::Buffered).expect("write");
        let error = Alarms::load(&engine).expect_err("a mismatched record");
        assert!(error.0.contains("corrupt alarm record"), "{error}");
    }
}

//! Changes as watchers see them (etcd's `mvccpb.Event`): produced by every write as it is
//! applied, and read back from history for watchers that start in the past or fell behind.

use crate::command::KeyValue;
use crate::storage::{Direction, KeyRange, StorageError, Table};

use super::keyspace::{decode_record, Keyspace};
use super::revision::{RecordKind, Revision};
use super::{MvccError, ReadError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key. For a delete, `kv` holds the key and the deletion's `mod_revision`
/// only, as etcd sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// Events read from history, and where the next read should start.
#[derive(Debug)]
pub struct HistoryPage {
    pub events: Vec<Event>,
    /// The first revision not covered: every change below it (and from the requested start) is
    /// in `events`.
    pub next_revision: i64,
}

impl Keyspace {
    /// The changes of revisions `from..=to`, in revision order, whole revisions only, stopping
    /// after the revision where `events_max` is reached. Refused with `Compacted` when `from`
    /// is below the compaction point, where history is no longer complete.
    pub fn history(&self, from: i64, to: i64, events_max: usize) -> Result<HistoryPage, ReadError> {
        if from < self.compacted {
            return Err(ReadError::Rejected(MvccError::Compacted { compact_revision: self.compact_revision() }));
        }
        let to = to.min(self.current_revision);
        if from > to {
            return Ok(HistoryPage { events: Vec::new(), next_revision: from.max(to + 1) });
        }
        let start = Revision::new(from, 0).engine_key(RecordKind::Value);
        let end = Revision::new(to + 1, 0).engine_key(RecordKind::Value);
        let mut events = Vec::new();
        let mut next_revision = to + 1;
        let mut failure = None;
        let range = KeyRange { from: &start, to: Some(&end) };
        self.engine()
            .scan(Table::Kv, range, Direction::Forward, &mut |key, value| {
                let Some((revision, kind)) = Revision::from_engine_key(key) else {
                    failure = Some(StorageError(format!("mvcc: corrupt record key {key:?}")));
                    return false;
                };
                if events.len() >= events_max && events.last().is_some_and(|e: &Event| e.revision() < revision.main) {
                    next_revision = revision.main;
                    return false;
                }
                match decode_record::<KeyValue>(value, format_args!("record at revision {revision:?}")) {
                    Ok(kv) => {
                        let kind = if kind == RecordKind::Tombstone { EventKind::Delete } else { EventKind::Put };
                        events.push(Event { kind, kv });
                        true
                    }
                    Err(error) => {
                        failure = Some(error);
                        false
                    }
                }
            })
            .map_err(ReadError::Storage)?;
        if let Some(error) = failure {
            return Err(ReadError::Storage(error));
        }
        Ok(HistoryPage { events, next_revision })
    }
}

//! Compaction of the keyspace: forget history no read at or above the compaction point can see.

use super::keyspace::Keyspace;
use super::MvccError;

impl Keyspace {
    /// etcd's `compactMainRev`: `-1` until the first compaction (a first compaction to revision
    /// 0 is accepted, a second is not), which `compact_revision` reports as 0.
    pub(crate) fn compact_main_revision(&self) -> i64 {
        self.compacted
    }

    /// etcd's `updateCompactRev` + `scheduleCompaction`, done at once: the index forgets what is
    /// compacted and the deletion of those records is staged for the next commit.
    pub(crate) fn compact(&mut self, revision: i64) -> Result<(), MvccError> {
        if revision <= self.compacted {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision() });
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision { current_revision: self.current_revision });
        }
        let mut removed = Vec::new();
        self.index.retain(|_, history| {
            history.compact(revision, &mut removed);
            !history.is_empty()
        });
        for (removed_revision, kind) in removed {
            self.stage_removal(removed_revision, kind);
        }
        self.compacted = revision;
        Ok(())
    }
}

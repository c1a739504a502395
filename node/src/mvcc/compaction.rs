//! The Compact command: forget history no read at or above the compaction point can see.

use crate::command::{CompactRequest, CompactResponse};

use super::store::{MvccStore, OpError};
use super::MvccError;

impl MvccStore {
    /// etcd's `updateCompactRev` + `scheduleCompaction`, done at once: the index forgets what is
    /// compacted and the deletion of those records is staged for the next commit. `physical`
    /// changes nothing here (etcd uses it only to wait for the background deletion).
    pub(super) fn apply_compact(&mut self, request: &CompactRequest) -> Result<CompactResponse, OpError> {
        let revision = request.revision;
        if revision <= self.compacted {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision() }.into());
        }
        if revision > self.current_revision {
            return Err(MvccError::FutureRevision { current_revision: self.current_revision }.into());
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
        Ok(CompactResponse { header_revision: self.current_revision })
    }
}

//! Compact: forget history no read at or above the compaction point can see.

use crate::command::{CompactRequest, CompactResponse};
use crate::mvcc::{MvccStore, OpError};

use super::Apply;

impl Apply for CompactRequest {
    /// etcd's `updateCompactRev` + `scheduleCompaction`, done at once (see
    /// `MvccStore::compact`). `physical` changes nothing here: etcd uses it only to wait for
    /// its background deletion.
    fn apply(&self, state: &mut MvccStore) -> Result<CompactResponse, OpError> {
        state.compact(self.revision)?;
        Ok(CompactResponse { header_revision: state.current_revision() })
    }
}

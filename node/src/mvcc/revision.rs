//! Revisions and their encoding as engine keys.
//!
//! A change is identified by the cluster-wide main revision of the command that made it and a
//! sub-revision counting the changes within that command (a Txn makes several). Engine keys are
//! the big-endian encoding, so the `Kv` table is ordered by revision.

/// `(main, sub)`: ordered by main revision, then sub-revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Bytes of an encoded revision: two big-endian i64.
pub const REVISION_BYTES: usize = 16;

/// Appended to the key of a deletion record, as etcd marks tombstones.
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The `Kv` engine key of the record written at this revision. Revisions are positive, so
    /// big-endian bytes sort as the numbers do.
    pub fn engine_key(self, kind: RecordKind) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(REVISION_BYTES + 1);
        bytes.extend_from_slice(&self.main.to_be_bytes());
        bytes.extend_from_slice(&self.sub.to_be_bytes());
        if kind == RecordKind::Tombstone {
            bytes.push(TOMBSTONE_MARK);
        }
        bytes
    }

    /// Parses an engine key; `None` if it is not one this module wrote.
    pub fn from_engine_key(bytes: &[u8]) -> Option<(Revision, RecordKind)> {
        let kind = match bytes.len() {
            REVISION_BYTES => RecordKind::Value,
            len if len == REVISION_BYTES + 1 && bytes[REVISION_BYTES] == TOMBSTONE_MARK => RecordKind::Tombstone,
            _ => return None,
        };
        let main = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(bytes[8..REVISION_BYTES].try_into().ok()?);
        Some((Revision { main, sub }, kind))
    }
}

/// Whether a record holds a value or marks a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Value,
    Tombstone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_keys_round_trip_and_sort_by_revision() {
        let revisions = [Revision::new(1, 0), Revision::new(2, 0), Revision::new(2, 1), Revision::new(256, 0)];
        let keys: Vec<Vec<u8>> = revisions.iter().map(|r| r.engine_key(RecordKind::Value)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for revision in revisions {
            for kind in [RecordKind::Value, RecordKind::Tombstone] {
                assert_eq!(Revision::from_engine_key(&revision.engine_key(kind)), Some((revision, kind)));
            }
        }
        assert_eq!(Revision::from_engine_key(b"short"), None);
        assert_eq!(Revision::from_engine_key(&[0; 17]), None);
    }
}

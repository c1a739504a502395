//! The history of one key: its generations, as etcd's `keyIndex`.
//!
//! A generation is the life of a key from its creation to its deletion (the tombstone, the last
//! revision of every generation but the newest). Only revisions live here; values stay in the
//! engine. Nothing here does I/O.
//!
//! Every key of the keyspace has one of these in memory, so its size is the member's memory per
//! key: the common case (one generation, one revision) is stored inline, with no allocation of its
//! own (48 bytes instead of 48 + two heap blocks).

use smallvec::SmallVec;

use super::revision::{RecordKind, Revision};

/// All remembered revisions of one key.
///
/// Invariant: `generations` is never empty; every generation but the last is closed (non-empty,
/// ending with its tombstone); the last is empty exactly when the key is currently deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    generations: SmallVec<[Generation; 1]>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Generation {
    /// Main revision of the put that created the key in this generation.
    created: i64,
    /// Version of the newest revision (survives compaction, which drops older revisions).
    version: i64,
    revisions: SmallVec<[Revision; 1]>,
}

/// The newest value of a live key, as a put needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub revision: Revision,
    pub created: i64,
    pub version: i64,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex { generations: smallvec::smallvec![Generation::default()] }
    }
}

impl KeyIndex {
    /// Records a put at `revision`; returns the create revision and version it gives the key.
    pub fn put(&mut self, revision: Revision) -> Live {
        let generation = self.newest_mut();
        if let Some(&last) = generation.revisions.last() {
            assert!(last < revision, "revisions of a key must increase: {last:?} then {revision:?}");
        } else {
            generation.created = revision.main;
            generation.version = 0;
        }
        generation.version += 1;
        generation.revisions.push(revision);
        Live { revision, created: generation.created, version: generation.version }
    }

    /// Records a put read back from the engine, whose record carries create revision and version
    /// (earlier revisions of its generation may have been compacted away).
    pub fn restore_put(&mut self, revision: Revision, created: i64, version: i64) {
        let generation = self.newest_mut();
        if generation.revisions.is_empty() {
            generation.created = created;
        }
        generation.version = version;
        generation.revisions.push(revision);
    }

    /// Records the deletion of a live key at `revision`.
    pub fn tombstone(&mut self, revision: Revision) {
        let generation = self.newest_mut();
        assert!(
            generation.revisions.last().is_some_and(|&last| last < revision),
            "tombstone {revision:?} on a deleted key or below its newest revision"
        );
        generation.revisions.push(revision);
        self.generations.push(Generation::default());
    }

    /// The newest revision if the key currently exists.
    pub fn live(&self) -> Option<Live> {
        let generation = self.generations.last()?;
        let &revision = generation.revisions.last()?;
        Some(Live { revision, created: generation.created, version: generation.version })
    }

    /// The revision holding the key's value as of main revision `at`, if it existed then.
    pub fn get(&self, at: i64) -> Option<Revision> {
        let newest = self.generations.len() - 1;
        for (index, generation) in self.generations.iter().enumerate().rev() {
            let below = generation.revisions.partition_point(|revision| revision.main <= at);
            if below == 0 {
                continue;
            }
            let closed_by_tombstone = index != newest && below == generation.revisions.len();
            return (!closed_by_tombstone).then(|| generation.revisions[below - 1]);
        }
        None
    }

    /// True when nothing is left to remember: the key is deleted and has no history.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revisions.is_empty()
    }

    /// Forgets what no read at a revision >= `at` can see, exactly as etcd's
    /// `keyIndex.compact`: for each generation, keep the newest revision <= `at` and everything
    /// after it; drop generations whose tombstone is <= `at`. Pushes each forgotten revision
    /// (with whether it was a tombstone) to `removed`, so that the caller deletes its record.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<(Revision, RecordKind)>) {
        let newest = self.generations.len() - 1;
        let mut first_kept = 0;
        while first_kept < newest {
            let tombstone = self.generations[first_kept].revisions.last().map_or(i64::MIN, |r| r.main);
            if tombstone > at {
                break;
            }
            first_kept += 1;
        }
        for generation in self.generations.drain(..first_kept) {
            push_removed(&generation.revisions, true, removed);
        }
        let newest = self.generations.len() - 1;
        let generation = &mut self.generations[0];
        let below = generation.revisions.partition_point(|revision| revision.main <= at);
        if below > 1 {
            let dropped: SmallVec<[Revision; 4]> = generation.revisions.drain(..below - 1).collect();
            push_removed(&dropped, false, removed);
        }
        // etcd's "remove any tombstone": a closed generation reduced to its tombstone alone.
        if newest != 0 && generation.revisions.len() == 1 {
            push_removed(&generation.revisions, true, removed);
            self.generations.remove(0);
        }
    }

    fn newest_mut(&mut self) -> &mut Generation {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let newest = self.generations.len() - 1;
        &mut self.generations[newest]
    }
}

/// Pushes `revisions` to `removed`; the last one is a tombstone when `ends_with_tombstone`.
fn push_removed(revisions: &[Revision], ends_with_tombstone: bool, removed: &mut Vec<(Revision, RecordKind)>) {
    for (index, &revision) in revisions.iter().enumerate() {
        let is_tombstone = ends_with_tombstone && index + 1 == revisions.len();
        let kind = if is_tombstone { RecordKind::Tombstone } else { RecordKind::Value };
        removed.push((revision, kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// Puts at each positive number, tombstones at each negative one.
    fn build(history: &[i64]) -> KeyIndex {
        let mut index = KeyIndex::default();
        for &step in history {
            if step > 0 {
                index.put(r(step));
            } else {
                index.tombstone(r(-step));
            }
        }
        index
    }

    #[test]
    fn a_key_written_once_keeps_its_history_inline() {
        // One of these per key in the keyspace: the common case must not allocate.
        assert!(std::mem::size_of::<KeyIndex>() <= 48, "{} bytes", std::mem::size_of::<KeyIndex>());
        let index = build(&[2]);
        assert!(!index.generations.spilled() && !index.generations[0].revisions.spilled());
        // A history that grows moves to the heap and reads the same.
        let grown = build(&[2, 3, -4, 5]);
        assert!(grown.generations.spilled());
        assert_eq!(grown.get(3), Some(r(3)));
        assert_eq!(grown.get(4), None);
    }

    #[test]
    fn get_sees_the_newest_revision_at_or_below_and_not_tombstones() {
        let index = build(&[2, 4, -6, 8]);
        let check = |at: i64, expect: Option<i64>| assert_eq!(index.get(at), expect.map(r), "at {at}");
        check(1, None);
        check(2, Some(2));
        check(3, Some(2));
        check(5, Some(4));
        check(6, None);
        check(7, None);
        check(8, Some(8));
        check(100, Some(8));
    }

    #[test]
    fn put_counts_versions_per_generation() {
        let mut index = build(&[2, 3, -4]);
        assert_eq!(index.live(), None);
        let live = index.put(r(5));
        assert_eq!((live.created, live.version), (5, 1));
        let live = index.put(r(7));
        assert_eq!((live.created, live.version), (5, 2));
    }

    #[test]
    fn compact_follows_etcd() {
        struct Case {
            history: &'static [i64],
            at: i64,
            removed: &'static [i64],
            empty: bool,
        }
        let cases = [
            // Keep the newest revision <= at.
            Case { history: &[2, 3, 4], at: 3, removed: &[2], empty: false },
            Case { history: &[2, 3, 4], at: 1, removed: &[], empty: false },
            // A generation closed at or below `at` goes entirely, tombstone included.
            Case { history: &[2, 3, -4], at: 4, removed: &[2, 3, -4], empty: true },
            Case { history: &[2, 3, -4], at: 3, removed: &[2], empty: false },
            Case { history: &[2, -3, 5, 6], at: 5, removed: &[2, -3], empty: false },
            Case { history: &[2, -3, 5, -6, 7], at: 10, removed: &[2, -3, 5, -6], empty: false },
        ];
        for case in cases {
            let mut index = build(case.history);
            let mut removed = Vec::new();
            index.compact(case.at, &mut removed);
            let expect: Vec<(Revision, RecordKind)> = case
                .removed
                .iter()
                .map(|&step| if step > 0 { (r(step), RecordKind::Value) } else { (r(-step), RecordKind::Tombstone) })
                .collect();
            assert_eq!(removed, expect, "{:?} at {}", case.history, case.at);
            assert_eq!(index.is_empty(), case.empty, "{:?} at {}", case.history, case.at);
            // Reads at or above the compaction point are unchanged.
            let original = build(case.history);
            for at in case.at..12 {
                assert_eq!(index.get(at), original.get(at), "{:?} read at {at}", case.history);
            }
        }
    }
}

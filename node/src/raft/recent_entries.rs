//! The newest log entries, kept in memory beside the engine so that the reads which follow an
//! append at once (each follower's replication, then the state machine's apply) do not open an
//! engine iterator and decode every entry again. On a leader under load those reads were about
//! 7% of its CPU (`perf`, issue 17's note).
//!
//! The cache only ever mirrors what the engine holds: it is filled by `append` after the engine
//! write, cut by `truncate_after` and `purge` as the engine is, and emptied whenever an append
//! does not continue it (after a snapshot install, a conflict). A read it cannot serve whole
//! goes to the engine, so a miss costs what every read cost before.

use std::collections::VecDeque;

use super::Entry;

/// A contiguous run of the log's newest entries, bounded by count and by encoded bytes.
pub(super) struct RecentEntries {
    /// Entries `first..first + entries.len()`, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    first: u64,
    bytes: usize,
    entries_max: usize,
    bytes_max: usize,
}

impl RecentEntries {
    pub(super) fn new(entries_max: usize, bytes_max: usize) -> Self {
        RecentEntries { entries: VecDeque::new(), first: 0, bytes: 0, entries_max, bytes_max }
    }

    /// One past the newest cached index.
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Records entries just written to the engine, `(entry, encoded size)` in index order.
    pub(super) fn appended(&mut self, appended: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in appended {
            let index = entry.log_id.index;
            if self.entries.is_empty() || index != self.end() {
                self.clear();
                self.first = index;
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
            self.trim_to_bounds();
        }
    }

    /// Forgets entries from `index` on (the engine deleted them).
    pub(super) fn truncated_from(&mut self, index: u64) {
        while self.end() > index.max(self.first) {
            match self.entries.pop_back() {
                Some((_, size)) => self.bytes -= size,
                None => break,
            }
        }
    }

    /// Forgets entries up to and including `index` (purged from the engine).
    pub(super) fn purged_through(&mut self, index: u64) {
        while !self.entries.is_empty() && self.first <= index {
            self.pop_front();
        }
    }

    /// Entries `from..to`, if every one of them is cached.
    pub(super) fn get(&self, from: u64, to: u64) -> Option<Vec<Entry>> {
        if from < self.first || to > self.end() || from > to {
            return None;
        }
        let skip = usize::try_from(from - self.first).ok()?;
        let take = usize::try_from(to - from).ok()?;
        Some(self.entries.iter().skip(skip).take(take).map(|(entry, _)| entry.clone()).collect())
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
            self.first += 1;
        }
    }

    fn trim_to_bounds(&mut self) {
        while self.entries.len() > self.entries_max || (self.bytes > self.bytes_max && !self.entries.is_empty()) {
            self.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::raft::LogId;

    fn blank(index: u64) -> Entry {
        let leader = openraft::vote::leader_id_adv::LeaderId { term: 1, node_id: 1 };
        Entry { log_id: LogId::new(leader, index), payload: openraft::EntryPayload::Blank }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.log_id.index).collect()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append {
            count: u64,
            size: usize,
        },
        /// Truncate after `back` entries from the end.
        Truncate {
            back: u64,
        },
        Purge {
            forward: u64,
        },
        /// A snapshot install: the log restarts further on.
        Jump {
            ahead: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..8u64, 1..50usize).prop_map(|(count, size)| Op::Append { count, size }),
            1 => (0..6u64).prop_map(|back| Op::Truncate { back }),
            1 => (0..6u64).prop_map(|forward| Op::Purge { forward }),
            1 => (1..20u64).prop_map(|ahead| Op::Jump { ahead }),
        ]
    }

    proptest! {
        /// Whatever the cache answers equals the log a naive model holds, it stays within its
        /// bounds, and after plain appends it holds the newest entries.
        #[test]
        fn the_cache_answers_only_what_the_log_holds(ops in proptest::collection::vec(op(), 1..60)) {
            let mut cache = RecentEntries::new(16, 200);
            // The model: the log's live indexes, purged..end.
            let (mut purged, mut end) = (0u64, 1u64);
            for op in ops {
                match op {
                    Op::Append { count, size } => {
                        cache.appended((end..end + count).map(|i| (blank(i), size)));
                        end += count;
                        prop_assert!(cache.get(end - 1, end).is_some(), "the newest entry is cached");
                    }
                    Op::Truncate { back } => {
                        let from = end.saturating_sub(back).max(purged + 1);
                        cache.truncated_from(from);
                        end = from;
                    }
                    Op::Purge { forward } => {
                        let through = (purged + forward).min(end - 1);
                        cache.purged_through(through);
                        purged = through;
                    }
                    Op::Jump { ahead } => {
                        purged = end - 1 + ahead;
                        cache.purged_through(purged);
                        end = purged + 1;
                    }
                }
                prop_assert!(cache.entries.len() <= 16 && cache.bytes <= 200);
                prop_assert_eq!(cache.bytes, cache.entries.iter().map(|(_, size)| size).sum::<usize>());
                for from in purged + 1..=end {
                    for to in from..=end {
                        if let Some(found) = cache.get(from, to) {
                            prop_assert_eq!(indexes(&found), (from..to).collect::<Vec<_>>());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_read_past_either_end_or_across_a_gap_is_a_miss() {
        let mut cache = RecentEntries::new(4, 1_000);
        cache.appended((1..=6).map(|i| (blank(i), 10)));
        assert_eq!(cache.get(3, 7).as_deref().map(indexes), Some(vec![3, 4, 5, 6]), "the newest four stay");
        assert!(cache.get(2, 4).is_none(), "2 was pushed out by the count bound");
        assert!(cache.get(5, 8).is_none(), "7 is not in the log yet");
        cache.appended([(blank(9), 10)]);
        assert!(cache.get(6, 7).is_none(), "an append that skips indexes starts the cache again");
        assert_eq!(cache.get(9, 10).as_deref().map(indexes), Some(vec![9]));
    }

    #[test]
    fn an_entry_larger_than_the_byte_bound_is_not_kept() {
        let mut cache = RecentEntries::new(4, 100);
        cache.appended([(blank(1), 40), (blank(2), 40), (blank(3), 500)]);
        assert!(cache.get(3, 4).is_none());
        assert!(cache.get(1, 2).is_none());
        assert_eq!(cache.bytes, 0);
    }
}

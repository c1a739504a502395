//! etcd's key permissions and how etcd 3.4 checks them.
//!
//! A role holds permissions, each READ, WRITE or READWRITE over one key (`range_end` empty),
//! a range `[key, range_end)`, or every key from `key` on (`range_end` = `"\0"`). A user's
//! permissions are the union over its roles. A request on one key needs a permitted range that
//! holds the key; a request on a range needs the whole range covered by the union of the
//! permitted ranges (adjacent and overlapping ranges join, as in etcd's interval tree), so a
//! user permitted `[a, c)` and `[c, e)` may read `[b, d)`, and one permitted `[a, c)` may not
//! read `[b, d)`.

use serde::{Deserialize, Serialize};

/// READ, WRITE or both, as etcd's `authpb.Permission.Type` (READ = 0, WRITE = 1, READWRITE = 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PermissionKind {
    Read,
    Write,
    ReadWrite,
}

impl PermissionKind {
    fn grants(self, need: Need) -> bool {
        matches!(
            (self, need),
            (PermissionKind::ReadWrite, _) | (PermissionKind::Read, Need::Read) | (PermissionKind::Write, Need::Write)
        )
    }
}

/// What a request needs on its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

/// One permission of a role, as etcd's `authpb.Permission`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permission {
    pub kind: PermissionKind,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

/// The end of a half-open key range; `Unbounded` is etcd's `range_end` of `"\0"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Before(Vec<u8>),
    Unbounded,
}

/// `[begin, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interval {
    begin: Vec<u8>,
    end: End,
}

impl Interval {
    /// The keys a permission, or a request, names: etcd's reading of `key` and `range_end`.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            [] => End::Before(successor(key)),
            [0] => End::Unbounded,
            end => End::Before(end.to_vec()),
        };
        Interval { begin: key.to_vec(), end }
    }

    fn is_empty(&self) -> bool {
        match &self.end {
            End::Before(end) => *end <= self.begin,
            End::Unbounded => false,
        }
    }

    fn holds(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && End::Before(key.to_vec()) < self.end
    }
}

/// The smallest key after `key`: `key` followed by a zero byte.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len().saturating_add(1));
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// A user's permissions, merged over its roles, ready to check requests against.
#[derive(Clone, Debug, Default)]
pub struct UserPermissions {
    /// Sorted by `begin`.
    read: Vec<Interval>,
    /// Sorted by `begin`.
    write: Vec<Interval>,
}

impl UserPermissions {
    pub fn new<'a>(permissions: impl IntoIterator<Item = &'a Permission>) -> UserPermissions {
        let mut merged = UserPermissions::default();
        for permission in permissions {
            let interval = Interval::of(&permission.key, &permission.range_end);
            if interval.is_empty() {
                // `range_end` at or before `key` grants nothing. etcd keeps such a range in its
                // tree, where it can split a covered range in two depending on the tree's shape.
                continue;
            }
            if permission.kind.grants(Need::Read) {
                merged.read.push(interval.clone());
            }
            if permission.kind.grants(Need::Write) {
                merged.write.push(interval);
            }
        }
        merged.read.sort_by(|a, b| a.begin.cmp(&b.begin));
        merged.write.sort_by(|a, b| a.begin.cmp(&b.begin));
        merged
    }

    /// Whether a request for `need` on `key` (`range_end` empty) or on the range from `key` to
    /// `range_end` (`"\0"`: every key from `key` on) is permitted.
    pub fn allows(&self, need: Need, key: &[u8], range_end: &[u8]) -> bool {
        let intervals = match need {
            Need::Read => &self.read,
            Need::Write => &self.write,
        };
        if range_end.is_empty() {
            return intervals.iter().any(|interval| interval.holds(key));
        }
        covers(intervals, &Interval::of(key, range_end))
    }
}

/// Whether `intervals` (sorted by begin) cover `wanted`, decided as etcd 3.4's
/// `IntervalTree.Contains` decides it: visit, in order of begin, the intervals that overlap
/// `wanted` by etcd's `Interval.Compare`; refuse on a gap between them; then require the first
/// to begin at or before `wanted` and the furthest end to reach its end. For a proper range this
/// is "the union covers it"; for an empty or inverted one it is etcd's answer, whatever that is.
fn covers(intervals: &[Interval], wanted: &Interval) -> bool {
    let mut visited = intervals.iter().filter(|interval| overlaps(interval, wanted));
    let Some(first) = visited.next() else { return false };
    let mut covered_to = &first.end;
    for interval in visited {
        if *covered_to < End::Before(interval.begin.clone()) {
            return false;
        }
        if interval.end > *covered_to {
            covered_to = &interval.end;
        }
    }
    first.begin <= wanted.begin && *covered_to >= wanted.end
}

/// etcd's `Interval.Compare(wanted) == 0`: `interval` is neither left of `wanted` (begins
/// before it and ends at or before its begin) nor right of it (begins at or after its end).
fn overlaps(interval: &Interval, wanted: &Interval) -> bool {
    let left = interval.begin < wanted.begin && interval.end <= End::Before(wanted.begin.clone());
    let right = End::Before(interval.begin.clone()) >= wanted.end;
    !left && !right
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn permission(kind: PermissionKind, key: &str, range_end: &str) -> Permission {
        Permission { kind, key: key.as_bytes().to_vec(), range_end: range_end.as_bytes().to_vec() }
    }

    #[test]
    fn one_key_a_range_and_everything_from_a_key() {
        let user = UserPermissions::new(&[
            permission(PermissionKind::Read, "k", ""),
            permission(PermissionKind::ReadWrite, "a/", "a0"),
            permission(PermissionKind::Write, "z", "\0"),
        ]);
        assert!(user.allows(Need::Read, b"k", b""));
        assert!(!user.allows(Need::Write, b"k", b""));
        assert!(!user.allows(Need::Read, b"k2", b""));
        assert!(!user.allows(Need::Read, b"k", b"l"), "one key does not cover a range");
        assert!(user.allows(Need::Read, b"k", b"k\0"), "but covers the range of itself");
        assert!(user.allows(Need::Write, b"a/x", b""));
        assert!(user.allows(Need::Read, b"a/", b"a0"));
        assert!(!user.allows(Need::Read, b"a", b"a0"));
        assert!(user.allows(Need::Write, b"zzz", b"\0"));
        assert!(user.allows(Need::Write, b"\xff\xff", b""));
        assert!(!user.allows(Need::Read, b"zzz", b""));
        assert!(!user.allows(Need::Write, b"y", b"\0"));
    }

    #[test]
    fn adjacent_and_overlapping_ranges_join_and_gaps_do_not() {
        let joined = UserPermissions::new(&[
            permission(PermissionKind::Read, "c", "e"),
            permission(PermissionKind::Read, "a", "c"),
            permission(PermissionKind::Read, "d", "g"),
        ]);
        assert!(joined.allows(Need::Read, b"b", b"f"));
        assert!(joined.allows(Need::Read, b"a", b"g"));
        assert!(!joined.allows(Need::Read, b"a", b"h"));
        let gap = UserPermissions::new(&[
            permission(PermissionKind::Read, "a", "c"),
            permission(PermissionKind::Read, "d", "g"),
        ]);
        assert!(!gap.allows(Need::Read, b"b", b"e"));
        assert!(!gap.allows(Need::Read, b"c", b""));
    }

    #[test]
    fn empty_and_inverted_ranges_get_etcds_answers() {
        let all = UserPermissions::new(&[permission(PermissionKind::ReadWrite, "\0", "\0")]);
        assert!(all.allows(Need::Read, b"\0", b"\0"));
        // [a, a): a permission that begins before `a` and ends after it overlaps it in etcd's
        // tree and covers it; one that begins at `a` does not overlap it at all.
        assert!(all.allows(Need::Read, b"a", b"a"));
        let from_a = UserPermissions::new(&[permission(PermissionKind::Read, "a", "\0")]);
        assert!(!from_a.allows(Need::Read, b"a", b"a"));
        assert!(!UserPermissions::new(&[]).allows(Need::Read, b"b", b"a"));
    }

    /// Coverage by the union, the way a person would check it: merge the intervals, then see
    /// whether one merged piece holds all of `wanted`.
    fn union_covers(intervals: &[Interval], wanted: &Interval) -> bool {
        let mut merged: Vec<Interval> = Vec::new();
        for interval in intervals.iter().filter(|i| !i.is_empty()) {
            match merged.last_mut() {
                Some(last) if End::Before(interval.begin.clone()) <= last.end => {
                    if interval.end > last.end {
                        last.end = interval.end.clone();
                    }
                }
                _ => merged.push(interval.clone()),
            }
        }
        merged.iter().any(|piece| piece.begin <= wanted.begin && piece.end >= wanted.end)
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xffu8)], 0..3)
    }

    fn range_end() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![Just(Vec::new()), Just(vec![0u8]), key()]
    }

    proptest! {
        #[test]
        fn range_checks_agree_with_etcds_interval_tree(
            granted in prop::collection::vec((key(), range_end()), 0..6),
            (first, second) in (key(), key()),
            unbounded in any::<bool>(),
        ) {
            // A proper range: etcd's answers on empty and inverted ones are its own (see `covers`).
            let (key, range_end) = match first.cmp(&second) {
                _ if unbounded => (first, vec![0]),
                std::cmp::Ordering::Less => (first, second),
                std::cmp::Ordering::Greater => (second, first),
                std::cmp::Ordering::Equal => (first, vec![0]),
            };
            let wanted = Interval::of(&key, &range_end);
            prop_assume!(!range_end.is_empty() && !wanted.is_empty());
            let permissions: Vec<Permission> = granted
                .into_iter()
                .map(|(key, range_end)| Permission { kind: PermissionKind::Read, key, range_end })
                .collect();
            let user = UserPermissions::new(&permissions);
            prop_assert_eq!(user.allows(Need::Read, &key, &range_end), union_covers(&user.read, &wanted));
            prop_assert!(!user.allows(Need::Write, &key, &range_end));
        }
    }
}

//! When leases expire. Only the leader decides, and only for the leadership it holds: deadlines
//! live in this member's memory, never in the replicated state, and are thrown away whenever
//! leadership changes, so a new leader gives every lease its full TTL again (etcd's rule) and
//! no lease expires early because of a failover. Expiry itself is a `LeaseRevoke` the leader
//! proposes; the keyspace applies it like a client's revoke.
//!
//! Pure: the caller passes the time and the leader's term, so the rules are tested without
//! clocks or clusters.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::{Duration, Instant};

use crate::limits::LEASE_REVOKES_PER_CHECK_MAX;

/// etcd's `MaxLeaseTTL`: a grant above it is refused ("etcdserver: too large lease TTL"), and
/// so is a registration or a store record that would need a longer lease.
pub const LEASE_TTL_MAX_SECS: i64 = 9_000_000_000;
const _: () = assert!(LEASE_TTL_MAX_SECS == keel_client::registry::TTL_MAX_SECS);

/// How often the leader looks for expired leases (etcd: 500 ms).
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// etcd's minimum TTL: a lease must outlive an election, or a failover alone could expire it.
/// `ceil(1.5 × election timeout)` in seconds (2 s with the default 1 s election timeout).
pub fn ttl_min_secs(election_timeout: Duration) -> i64 {
    let millis = election_timeout.as_millis().saturating_mul(3) / 2;
    i64::try_from(millis.div_ceil(1000)).unwrap_or(i64::MAX).max(1)
}

/// When a lease expires: `None` when its TTL reaches past what an `Instant` can hold, so it
/// never expires in this leadership. Every API refuses TTLs above [`LEASE_TTL_MAX_SECS`], but
/// a data dir written before they did (or a command from an older member) may hold any `i64`,
/// and the expiry of every other lease must not depend on that.
type Deadline = Option<Instant>;

/// The deadline of a lease of `ttl_secs` renewed at `now` (checked: never panics).
fn deadline(now: Instant, ttl_secs: i64) -> Deadline {
    now.checked_add(secs(ttl_secs))
}

fn has_passed(deadline: Deadline, now: Instant) -> bool {
    deadline.is_some_and(|deadline| deadline <= now)
}

/// The deadlines of one leadership.
#[derive(Debug, Default)]
struct Deadlines {
    /// The term these deadlines belong to; `None` while not leader.
    term: Option<u64>,
    by_lease: HashMap<i64, Deadline>,
}

/// What a member may decide about lease time, from its Raft state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// It leads `term` and a quorum acknowledged it within the shortest election timeout: no
    /// other leader can exist yet.
    Fresh(u64),
    /// It believes it leads, but no quorum acknowledged it lately: a new leader may exist.
    Unconfirmed,
    /// It does not lead.
    Follower,
}

#[derive(Debug, Default)]
pub struct Lessor {
    // std Mutex: held for map operations only, never across an await.
    deadlines: Mutex<Deadlines>,
}

impl Lessor {
    /// Renews lease `id` (granted with `ttl_secs`, `None` if it does not exist) for the leader of
    /// `term`; answers the TTL granted, or 0 when the lease is unknown or already expired (its
    /// revoke is on its way), as etcd does.
    pub fn keep_alive(&self, term: u64, id: i64, ttl_secs: Option<i64>, now: Instant) -> i64 {
        let Some(ttl_secs) = ttl_secs else { return 0 };
        let mut deadlines = self.for_term(term);
        let current = *deadlines.by_lease.entry(id).or_insert_with(|| deadline(now, ttl_secs));
        if has_passed(current, now) {
            return 0;
        }
        deadlines.by_lease.insert(id, deadline(now, ttl_secs));
        ttl_secs
    }

    /// Seconds left on lease `id` for the leader of `term`, rounded down as etcd reports them.
    pub fn remaining_secs(&self, term: u64, id: i64, ttl_secs: i64, now: Instant) -> i64 {
        let mut deadlines = self.for_term(term);
        match *deadlines.by_lease.entry(id).or_insert_with(|| deadline(now, ttl_secs)) {
            Some(deadline) => i64::try_from(deadline.saturating_duration_since(now).as_secs()).unwrap_or(i64::MAX),
            // Beyond any clock: the whole TTL is left.
            None => ttl_secs,
        }
    }

    /// The leases (`(id, ttl_secs)`, every lease that exists) whose deadline has passed, at most
    /// `LEASE_REVOKES_PER_CHECK_MAX`. A lease seen for the first time in this leadership starts its
    /// full TTL now.
    pub fn expired(&self, term: u64, leases: &[(i64, i64)], now: Instant) -> Vec<i64> {
        let mut deadlines = self.for_term(term);
        let existing: std::collections::HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
        deadlines.by_lease.retain(|id, _| existing.contains(id));
        let mut expired = Vec::new();
        for (id, ttl_secs) in leases {
            let current = *deadlines.by_lease.entry(*id).or_insert_with(|| deadline(now, *ttl_secs));
            if has_passed(current, now) && expired.len() < LEASE_REVOKES_PER_CHECK_MAX {
                expired.push(*id);
            }
        }
        expired
    }

    /// The leases to revoke now (`leases` lists every lease that exists, read only when
    /// needed). A follower forgets every deadline. A leader that has not heard from a quorum
    /// lately revokes nothing but keeps its deadlines: forgetting them at every such moment
    /// would restart each lease's TTL, and a leader whose acknowledgements come late now and
    /// then (a loaded machine) would never expire a short lease at all. Its deadlines die with
    /// its term.
    pub fn due(&self, leadership: Leadership, leases: impl FnOnce() -> Vec<(i64, i64)>, now: Instant) -> Vec<i64> {
        match leadership {
            Leadership::Fresh(term) => self.expired(term, &leases(), now),
            Leadership::Unconfirmed => Vec::new(),
            Leadership::Follower => {
                self.step_down();
                Vec::new()
            }
        }
    }

    /// This member is not the leader: forget every deadline, so that a later leadership
    /// starts every lease afresh.
    pub fn step_down(&self) {
        let mut deadlines = self.lock();
        deadlines.term = None;
        deadlines.by_lease.clear();
    }

    fn for_term(&self, term: u64) -> std::sync::MutexGuard<'_, Deadlines> {
        let mut deadlines = self.lock();
        if deadlines.term != Some(term) {
            deadlines.term = Some(term);
            deadlines.by_lease.clear();
        }
        deadlines
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        // A poisoned lock only means a panic elsewhere mid-update of plain deadlines; the map
        // is still usable and worst case a lease gets a fresh TTL.
        self.deadlines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A TTL as a duration; a negative one (never granted, but readable from any data dir) as 0.
fn secs(ttl_secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0))
}

/// Whether `ttl_secs` may be granted: etcd's MaxLeaseTTL. Every API that makes a lease
/// (LeaseGrant, Register, the Store's expiring writes) checks it before proposing.
pub fn ttl_is_allowed(ttl_secs: i64) -> bool {
    ttl_secs <= LEASE_TTL_MAX_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: u64 = 3;

    #[test]
    fn minimum_ttl_is_one_and_a_half_elections_rounded_up() {
        assert_eq!(ttl_min_secs(Duration::from_millis(1000)), 2);
        assert_eq!(ttl_min_secs(Duration::from_millis(500)), 1);
        assert_eq!(ttl_min_secs(Duration::from_millis(2500)), 4);
    }

    #[test]
    fn a_lease_expires_after_its_ttl_unless_kept_alive() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = [(7, 5)];
        assert!(lessor.expired(TERM, &leases, start).is_empty());
        assert_eq!(lessor.keep_alive(TERM, 7, Some(5), start + secs(4)), 5);
        assert!(lessor.expired(TERM, &leases, start + secs(8)).is_empty());
        assert_eq!(lessor.expired(TERM, &leases, start + secs(9)), vec![7]);
        assert_eq!(lessor.keep_alive(TERM, 7, Some(5), start + secs(9)), 0, "expired leases are not renewed");
    }

    #[test]
    fn a_new_leadership_gives_every_lease_its_full_ttl() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = [(7, 5)];
        lessor.expired(TERM, &leases, start);
        lessor.step_down();
        // Re-elected 4 s later: the lease starts over rather than expiring at start + 5 s.
        assert!(lessor.expired(TERM + 1, &leases, start + secs(4)).is_empty());
        assert!(lessor.expired(TERM + 1, &leases, start + secs(8)).is_empty());
        assert_eq!(lessor.expired(TERM + 1, &leases, start + secs(9)), vec![7]);
    }

    #[test]
    fn a_leader_unconfirmed_for_a_moment_keeps_its_deadlines() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = || vec![(7, 2)];
        assert!(lessor.due(Leadership::Fresh(TERM), leases, start).is_empty());
        // Acknowledgements late at every other check: the lease still expires on time.
        for half_seconds in 1..4 {
            let now = start + Duration::from_millis(500 * half_seconds);
            let leadership = if half_seconds % 2 == 1 { Leadership::Unconfirmed } else { Leadership::Fresh(TERM) };
            assert!(lessor.due(leadership, leases, now).is_empty(), "nothing revoked before the TTL");
        }
        assert!(lessor.due(Leadership::Unconfirmed, leases, start + secs(2)).is_empty(), "nothing revoked unconfirmed");
        assert_eq!(lessor.due(Leadership::Fresh(TERM), leases, start + secs(2)), vec![7]);
        // A follower forgets: leading again later starts the TTL over.
        assert!(lessor.due(Leadership::Follower, leases, start + secs(3)).is_empty());
        assert!(lessor.due(Leadership::Fresh(TERM), leases, start + secs(3)).is_empty());
    }

    #[test]
    fn a_lease_too_long_for_the_clock_never_expires_and_stops_nothing_else() {
        let lessor = Lessor::default();
        let start = Instant::now();
        // As a data dir written before the API refused them may hold: any i64, negative too.
        let leases = [(1, i64::MAX), (2, LEASE_TTL_MAX_SECS), (3, 5), (4, i64::MIN)];
        assert_eq!(lessor.expired(TERM, &leases, start), vec![4], "a negative TTL counts as 0");
        assert_eq!(lessor.keep_alive(TERM, 1, Some(i64::MAX), start + secs(1)), i64::MAX);
        assert_eq!(lessor.remaining_secs(TERM, 1, i64::MAX, start + secs(1)), i64::MAX);
        assert_eq!(lessor.remaining_secs(TERM, 2, LEASE_TTL_MAX_SECS, start), LEASE_TTL_MAX_SECS);
        assert_eq!(lessor.expired(TERM, &leases[..3], start + secs(5)), vec![3], "the short lease still expires");
        assert!(ttl_is_allowed(LEASE_TTL_MAX_SECS) && !ttl_is_allowed(LEASE_TTL_MAX_SECS + 1));
    }

    #[test]
    fn unknown_leases_answer_zero_and_revoked_ones_are_forgotten() {
        let lessor = Lessor::default();
        let start = Instant::now();
        assert_eq!(lessor.keep_alive(TERM, 9, None, start), 0);
        lessor.expired(TERM, &[(7, 5)], start);
        assert!(lessor.expired(TERM, &[], start + secs(10)).is_empty());
        assert_eq!(lessor.remaining_secs(TERM, 7, 5, start + secs(10)), 5, "a re-granted id starts afresh");
    }
}

//! A consumer group's position in one topic: which offsets it has handed out, to whom, until
//! when and how often, and how far it has read. Pure and deterministic — time is an argument —
//! so the cluster's state machine (where the position is replicated state) and the client's
//! in-memory `MemoryEvents`
//! apply the same rules.
//!
//! Every offset below `cursor` is either acknowledged or pending; the group's acknowledged
//! position (its "ack floor") is the lowest pending offset, or `cursor` when none is pending.
//! A pending offset whose deadline has passed (its ack wait ran out, or it was nacked) is handed
//! out again before any new one; after `1 + retry_limit` deliveries it goes to the dead-letter
//! topic instead.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a delivered event waits for its ack before it is delivered again, when the consumer
/// does not say (NATS JetStream's default).
pub const ACK_WAIT_DEFAULT: Duration = Duration::from_secs(30);
/// Unacknowledged events a group may have out at once, when the consumer does not say
/// (JetStream's `MaxAckPending` default).
pub const IN_FLIGHT_DEFAULT: u32 = 1000;
/// The most a consumer may ask for: bounds the group's replicated state.
pub const IN_FLIGHT_MAX: u32 = 10_000;
/// The suffix of the topic an event goes to after its last delivery attempt.
pub const DEAD_LETTER_SUFFIX: &str = ".dead-letter";

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// How a group delivers; set when it is created and replaced by each consumer that joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOptions {
    pub ack_wait_ms: u64,
    /// Deliveries after the first; `None`: deliver until acknowledged.
    pub retry_limit: Option<u32>,
    /// Pending (delivered, unacknowledged) events at most.
    pub max_in_flight: u32,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            ack_wait_ms: ACK_WAIT_DEFAULT.as_millis() as u64,
            retry_limit: None,
            max_in_flight: IN_FLIGHT_DEFAULT,
        }
    }
}

/// One delivered, unacknowledged event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Who has it (for topic info only: any consumer may ack it).
    pub consumer: String,
    /// Deliverable again from this time (Unix ms).
    pub deadline_ms: i64,
    /// Times delivered so far.
    pub deliveries: u32,
}

/// An offset handed out by [`GroupState::claim`], and how many times it has been delivered
/// now (1 the first time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub offset: u64,
    pub deliveries: u32,
}

/// What one claim decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimOutcome {
    /// To send to the consumer, in offset order of each kind (redeliveries first).
    pub delivered: Vec<Delivery>,
    /// Out of attempts: to append to the dead-letter topic. They are settled.
    pub dead: Vec<Delivery>,
}

/// The first offset still kept and the offset the next event will get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    pub first: u64,
    pub next: u64,
}

/// One group's position in one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The next offset never handed out.
    pub cursor: u64,
    pub pending: BTreeMap<u64, Claim>,
    pub options: GroupOptions,
}

impl GroupState {
    /// A group that starts reading at `start`.
    pub fn new(start: u64, options: GroupOptions) -> GroupState {
        GroupState { cursor: start, pending: BTreeMap::new(), options }
    }

    /// Every offset below this is acknowledged (or dead-lettered, or trimmed away).
    pub fn ack_floor(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.cursor)
    }

    /// Events not yet acknowledged: pending ones plus those never handed out.
    pub fn lag(&self, log: LogBounds) -> u64 {
        self.pending.len() as u64 + log.next.saturating_sub(self.cursor.max(log.first))
    }

    /// Whether a claim at `now_ms` would hand anything out (a cheap test before proposing one).
    pub fn has_work(&self, now_ms: i64, log: LogBounds) -> bool {
        let fresh = self.cursor.max(log.first) < log.next && self.pending.len() < self.options.max_in_flight as usize;
        fresh || self.pending.values().any(|claim| claim.deadline_ms <= now_ms)
    }

    /// The earliest time a pending event becomes deliverable again.
    pub fn next_deadline(&self) -> Option<i64> {
        self.pending.values().map(|claim| claim.deadline_ms).min()
    }

    /// Hands out up to `max` events to `consumer`: expired pending ones first (or to the dead
    /// letters when out of attempts), then new ones from the cursor, within the group's
    /// in-flight bound. With `auto_ack` nothing handed out stays pending.
    pub fn claim(&mut self, consumer: &str, max: u32, auto_ack: bool, now_ms: i64, log: LogBounds) -> ClaimOutcome {
        self.forget_trimmed(log.first);
        let max = max as usize;
        let ack_wait_ms = self.ack_wait_ms();
        let mut outcome = ClaimOutcome::default();
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, claim)| claim.deadline_ms <= now_ms).map(|(offset, _)| *offset).collect();
        for offset in expired {
            let Some(claim) = self.pending.get_mut(&offset) else { continue };
            // Out of attempts: dead-lettered whether or not this claim has room.
            if self.options.retry_limit.is_some_and(|limit| claim.deliveries > limit) {
                outcome.dead.push(Delivery { offset, deliveries: claim.deliveries });
                self.pending.remove(&offset);
                continue;
            }
            if outcome.delivered.len() >= max {
                continue;
            }
            claim.deliveries = claim.deliveries.saturating_add(1);
            claim.consumer = consumer.to_string();
            claim.deadline_ms = now_ms.saturating_add(ack_wait_ms);
            outcome.delivered.push(Delivery { offset, deliveries: claim.deliveries });
            if auto_ack {
                self.pending.remove(&offset);
            }
        }
        while outcome.delivered.len() < max
            && self.cursor < log.next
            && (auto_ack || self.pending.len() < self.options.max_in_flight as usize)
        {
            let offset = self.cursor;
            self.cursor += 1;
            outcome.delivered.push(Delivery { offset, deliveries: 1 });
            if !auto_ack {
                let deadline_ms = now_ms.saturating_add(ack_wait_ms);
                self.pending.insert(offset, Claim { consumer: consumer.to_string(), deadline_ms, deliveries: 1 });
            }
        }
        outcome
    }

    /// Acknowledges `acks` (they are never delivered again) and makes `nacks` deliverable again
    /// at once. Offsets not pending are ignored (already acknowledged): settling is idempotent.
    /// Answers the offsets this call acknowledged.
    pub fn settle(&mut self, acks: &[u64], nacks: &[u64], now_ms: i64) -> Vec<u64> {
        let acked = acks.iter().filter(|offset| self.pending.remove(offset).is_some()).copied().collect();
        for offset in nacks {
            if let Some(claim) = self.pending.get_mut(offset) {
                claim.deadline_ms = claim.deadline_ms.min(now_ms);
            }
        }
        acked
    }

    /// Events below `first` were removed by retention: nothing is owed for them.
    pub fn forget_trimmed(&mut self, first: u64) {
        self.cursor = self.cursor.max(first);
        self.pending = self.pending.split_off(&first);
    }

    fn ack_wait_ms(&self) -> i64 {
        i64::try_from(self.options.ack_wait_ms).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: LogBounds = LogBounds { first: 0, next: 10 };

    fn group(retry_limit: Option<u32>, max_in_flight: u32) -> GroupState {
        GroupState::new(0, GroupOptions { ack_wait_ms: 1000, retry_limit, max_in_flight })
    }

    fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
        deliveries.iter().map(|d| d.offset).collect()
    }

    #[test]
    fn claims_hand_out_each_new_offset_once_within_the_in_flight_bound() {
        let mut g = group(None, 4);
        assert_eq!(offsets(&g.claim("a", 3, false, 0, LOG).delivered), [0, 1, 2]);
        assert_eq!(offsets(&g.claim("b", 3, false, 0, LOG).delivered), [3], "in-flight bound of 4");
        assert!(!g.has_work(0, LOG));
        assert_eq!(g.settle(&[0, 1, 7], &[], 0), [0, 1], "7 was never pending");
        assert_eq!(g.ack_floor(), 2);
        assert_eq!(offsets(&g.claim("b", 5, false, 0, LOG).delivered), [4, 5]);
        assert_eq!(g.lag(LOG), 8);
    }

    #[test]
    fn expired_and_nacked_offsets_come_back_first_then_go_to_the_dead_letters() {
        let mut g = group(Some(1), 100);
        assert_eq!(offsets(&g.claim("a", 2, false, 0, LOG).delivered), [0, 1]);
        g.settle(&[], &[1], 10);
        let again = g.claim("b", 1, false, 10, LOG);
        assert_eq!(again.delivered, [Delivery { offset: 1, deliveries: 2 }], "the nacked one, before anything new");
        // Offset 0's ack wait ran out at 1000; offset 1 has had its one retry.
        g.settle(&[], &[1], 20);
        let later = g.claim("b", 1, false, 1000, LOG);
        assert_eq!(later.delivered, [Delivery { offset: 0, deliveries: 2 }]);
        assert_eq!(later.dead, [Delivery { offset: 1, deliveries: 2 }]);
        assert_eq!(g.settle(&[0], &[], 1000), [0]);
        assert_eq!(g.ack_floor(), 2);
    }

    #[test]
    fn auto_ack_leaves_nothing_pending_and_acks_are_idempotent() {
        let mut g = group(None, 2);
        assert_eq!(offsets(&g.claim("a", 5, true, 0, LOG).delivered), [0, 1, 2, 3, 4], "no in-flight bound");
        assert!(g.pending.is_empty());
        assert_eq!(g.ack_floor(), 5);
        assert!(g.settle(&[3], &[3], 0).is_empty());
    }

    #[test]
    fn trimmed_offsets_are_owed_to_nobody() {
        let mut g = group(None, 100);
        g.claim("a", 4, false, 0, LOG);
        let log = LogBounds { first: 2, next: 10 };
        assert_eq!(offsets(&g.claim("a", 1, false, 1000, log).delivered), [2], "0 and 1 are gone");
        assert_eq!(g.pending.keys().copied().collect::<Vec<_>>(), [2, 3]);
        let mut late = group(None, 100);
        assert_eq!(offsets(&late.claim("a", 1, false, 0, log).delivered), [2]);
        assert_eq!(late.lag(log), 8);
    }

    #[test]
    fn a_group_at_the_end_waits_for_the_next_event_or_deadline() {
        let mut g = group(None, 100);
        g.claim("a", 100, false, 0, LOG);
        assert!(!g.has_work(999, LOG));
        assert_eq!(g.next_deadline(), Some(1000));
        assert!(g.has_work(1000, LOG));
        assert!(g.has_work(0, LogBounds { first: 0, next: 11 }));
    }
}

//! The model of topics and consumer groups, written from their documented rules (`mvcc::events`,
//! `mvcc::groups`, `mvcc::retention`, `keel_model::group`) without calling them: a topic
//! is a map of kept events by offset beside the keyspace, a group a cursor and a map of pending
//! claims. Event keys and their JSON values are built here by hand, so a change to the stored
//! format shows as a divergence.

use std::collections::BTreeMap;

use base64::Engine as _;

use keel_model::group::{Claim, ClaimOutcome, Delivery, GroupOptions, GroupState};

use crate::command::{
    GroupClaimRequest, GroupClaimResponse, GroupJoinRequest, GroupJoinResponse, GroupSettleRequest,
    GroupSettleResponse, NewEvent, PublishRequest, PublishResponse, Published, Retention, SetRetentionRequest,
    TopicResponse, TrimTopicRequest,
};
use crate::mvcc::events::TopicState;
use crate::mvcc::TRIM_STEP_MAX;

use super::model::{Model, ModelTxn};

/// A publish id is a duplicate for this long after its first publish (by command time).
const DEDUP_WINDOW_MS: i64 = 120_000;

/// One topic: its bounds, clock, size and retention, the events it keeps and the ids it
/// remembers.
#[derive(Clone, Debug, Default)]
pub(super) struct Topic {
    next: u64,
    first: u64,
    last_timestamp_ms: i64,
    bytes: u64,
    retention: Retention,
    events: BTreeMap<u64, ModelEvent>,
    /// Ids published within the window: id → (offset, timestamp).
    ids: BTreeMap<String, (u64, i64)>,
}

#[derive(Clone, Debug)]
struct ModelEvent {
    timestamp_ms: i64,
    metadata: BTreeMap<String, String>,
    payload: Vec<u8>,
    /// The size of the stored value.
    bytes: u64,
}

/// One group: the next offset never handed out, and what is out.
#[derive(Clone, Debug)]
pub(super) struct Group {
    cursor: u64,
    /// offset → (consumer, deliverable again at, deliveries so far).
    pending: BTreeMap<u64, (String, i64, u32)>,
    options: GroupOptions,
}

impl Group {
    fn ack_floor(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.cursor)
    }

    /// Nothing is owed below the topic's first offset.
    fn forget_below(&mut self, first: u64) {
        self.cursor = self.cursor.max(first);
        self.pending.retain(|offset, _| *offset >= first);
    }
}

/// The key of event `offset` of `topic`.
fn event_key(topic: &str, offset: u64) -> Vec<u8> {
    format!("/micro/events/{topic}/{offset:020}").into_bytes()
}

/// The stored value of an event: JSON, fields in this order, payload in base64.
fn event_value(topic: &str, offset: u64, id: &str, timestamp_ms: i64, event: &NewEvent) -> Vec<u8> {
    let text = |text: &str| serde_json::to_string(text).expect("a string encodes");
    let metadata: Vec<String> = event.metadata.iter().map(|(k, v)| format!("{}:{}", text(k), text(v))).collect();
    let payload = base64::engine::general_purpose::STANDARD.encode(&event.payload);
    format!(
        "{{\"topic\":{},\"offset\":{offset},\"id\":{},\"timestamp_ms\":{timestamp_ms},\"metadata\":{{{}}},\"payload\":{}}}",
        text(topic),
        text(id),
        metadata.join(","),
        text(&payload)
    )
    .into_bytes()
}

impl Model {
    /// Every topic's state as the store reports it.
    pub(super) fn topic_states(&self) -> Vec<(String, TopicState)> {
        let state = |topic: &Topic| TopicState {
            next_offset: topic.next,
            last_timestamp_ms: topic.last_timestamp_ms,
            first_offset: topic.first,
            bytes: topic.bytes,
            retention: topic.retention,
        };
        self.topics.iter().map(|(name, topic)| (name.clone(), state(topic))).collect()
    }

    /// Every group of `topic` as the store reports it.
    pub(super) fn group_states(&self, topic: &str) -> Vec<(String, GroupState)> {
        let state = |group: &Group| GroupState {
            cursor: group.cursor,
            pending: group
                .pending
                .iter()
                .map(|(offset, (consumer, deadline_ms, deliveries))| {
                    let claim =
                        Claim { consumer: consumer.clone(), deadline_ms: *deadline_ms, deliveries: *deliveries };
                    (*offset, claim)
                })
                .collect(),
            options: group.options.clone(),
        };
        let of_topic = self.groups.iter().filter(|((t, _), _)| t == topic);
        of_topic.map(|((_, name), group)| (name.clone(), state(group))).collect()
    }

    /// Appends `events` to `topic` at `timestamp_ms`: an id it remembers is answered with its
    /// first offset, anything else goes at the next offset.
    fn append(
        &self,
        txn: &mut ModelTxn,
        name: &str,
        topic: &mut Topic,
        events: &[NewEvent],
        timestamp_ms: i64,
    ) -> Vec<Published> {
        let mut results = Vec::new();
        for event in events {
            if let Some((offset, _)) = topic.ids.get(&event.id).filter(|_| !event.id.is_empty()) {
                results.push(Published { offset: *offset, duplicate: true });
                continue;
            }
            let offset = topic.next;
            topic.next += 1;
            let value = event_value(name, offset, &event.id, timestamp_ms, event);
            let bytes = value.len() as u64;
            topic.bytes += bytes;
            self.put_value(txn, &event_key(name, offset), value, 0);
            let kept =
                ModelEvent { timestamp_ms, metadata: event.metadata.clone(), payload: event.payload.clone(), bytes };
            topic.events.insert(offset, kept);
            if !event.id.is_empty() {
                topic.ids.insert(event.id.clone(), (offset, timestamp_ms));
            }
            results.push(Published { offset, duplicate: false });
        }
        topic.last_timestamp_ms = timestamp_ms;
        results
    }

    /// A publish: the topic's time never goes back, and ids older than the window are forgotten
    /// first. Creates the topic, even with no event.
    pub(super) fn publish(&mut self, request: &PublishRequest) -> PublishResponse {
        let mut topic = self.topics.remove(&request.topic).unwrap_or_default();
        let timestamp_ms = request.timestamp_ms.max(topic.last_timestamp_ms);
        topic.ids.retain(|_, (_, at_ms)| timestamp_ms.saturating_sub(*at_ms) <= DEDUP_WINDOW_MS);
        let mut txn = self.begin();
        let results = self.append(&mut txn, &request.topic, &mut topic, &request.events, timestamp_ms);
        self.end(txn);
        self.topics.insert(request.topic.clone(), topic);
        PublishResponse { header_revision: self.current(), timestamp_ms, results }
    }

    /// A join creates the topic if new; a new group starts at `start` within the topic's bounds,
    /// an existing one keeps its position and takes the options.
    pub(super) fn group_join(&mut self, request: &GroupJoinRequest) -> GroupJoinResponse {
        let header_revision = self.current();
        let topic = self.topics.entry(request.topic.clone()).or_default();
        let (first, next) = (topic.first, topic.next);
        let key = (request.topic.clone(), request.group.clone());
        let fresh = Group {
            cursor: request.start.max(first).min(next),
            pending: BTreeMap::new(),
            options: request.options.clone(),
        };
        let group = self.groups.entry(key).or_insert(fresh);
        group.options = request.options.clone();
        group.forget_below(first);
        GroupJoinResponse { header_revision, ack_floor: group.ack_floor(), cursor: group.cursor }
    }

    /// A claim hands out, in this order: pending offsets past their deadline (each to the dead
    /// letters instead once it has had `1 + retry_limit` deliveries, room or not), then new
    /// offsets from the cursor while fewer than `max_in_flight` are pending (no bound with
    /// `auto_ack`, where nothing handed out stays pending). Nothing for an unknown group.
    pub(super) fn group_claim(&mut self, request: &GroupClaimRequest) -> GroupClaimResponse {
        let key = (request.topic.clone(), request.group.clone());
        let (Some(topic), Some(mut group)) = (self.topics.get(&request.topic), self.groups.get(&key).cloned()) else {
            return GroupClaimResponse { header_revision: self.current(), outcome: ClaimOutcome::default() };
        };
        group.forget_below(topic.first);
        let max = request.max as usize;
        let deadline_ms = request.now_ms.saturating_add(i64::try_from(group.options.ack_wait_ms).unwrap_or(i64::MAX));
        let mut outcome = ClaimOutcome::default();
        let due: Vec<u64> = group.pending.iter().filter(|(_, p)| p.1 <= request.now_ms).map(|(o, _)| *o).collect();
        for offset in due {
            let deliveries = group.pending[&offset].2;
            if group.options.retry_limit.is_some_and(|retries| deliveries > retries) {
                group.pending.remove(&offset);
                outcome.dead.push(Delivery { offset, deliveries });
            } else if outcome.delivered.len() < max {
                outcome.delivered.push(Delivery { offset, deliveries: deliveries + 1 });
                group.pending.insert(offset, (request.consumer.clone(), deadline_ms, deliveries + 1));
                if request.auto_ack {
                    group.pending.remove(&offset);
                }
            }
        }
        let in_flight_max = group.options.max_in_flight as usize;
        while outcome.delivered.len() < max
            && group.cursor < topic.next
            && (request.auto_ack || group.pending.len() < in_flight_max)
        {
            outcome.delivered.push(Delivery { offset: group.cursor, deliveries: 1 });
            if !request.auto_ack {
                group.pending.insert(group.cursor, (request.consumer.clone(), deadline_ms, 1));
            }
            group.cursor += 1;
        }
        self.dead_letter(&request.topic, &request.group, &outcome.dead, request.now_ms);
        self.groups.insert(key, group);
        GroupClaimResponse { header_revision: self.current(), outcome }
    }

    /// Copies the events at `dead` to `<topic>.dead-letter`, with metadata saying where from.
    fn dead_letter(&mut self, name: &str, group: &str, dead: &[Delivery], now_ms: i64) {
        let topic = &self.topics[name];
        let letters: Vec<NewEvent> = dead
            .iter()
            .filter_map(|delivery| {
                let event = topic.events.get(&delivery.offset)?;
                let mut metadata = event.metadata.clone();
                metadata.insert("dead-letter-topic".into(), name.to_string());
                metadata.insert("dead-letter-group".into(), group.to_string());
                metadata.insert("dead-letter-offset".into(), delivery.offset.to_string());
                metadata.insert("dead-letter-deliveries".into(), delivery.deliveries.to_string());
                Some(NewEvent { id: String::new(), metadata, payload: event.payload.clone() })
            })
            .collect();
        if letters.is_empty() {
            return;
        }
        let dead_name = format!("{name}.dead-letter");
        let mut dead_topic = self.topics.remove(&dead_name).unwrap_or_default();
        let timestamp_ms = now_ms.max(dead_topic.last_timestamp_ms);
        let mut txn = self.begin();
        self.append(&mut txn, &dead_name, &mut dead_topic, &letters, timestamp_ms);
        self.end(txn);
        self.topics.insert(dead_name, dead_topic);
    }

    /// Acks remove pending offsets (answering those that were pending), nacks make them due now.
    pub(super) fn group_settle(&mut self, request: &GroupSettleRequest) -> GroupSettleResponse {
        let header_revision = self.current();
        let Some(group) = self.groups.get_mut(&(request.topic.clone(), request.group.clone())) else {
            return GroupSettleResponse { header_revision, acked: Vec::new() };
        };
        let acked = request.acks.iter().filter(|offset| group.pending.remove(offset).is_some()).copied().collect();
        for offset in &request.nacks {
            if let Some((_, deadline_ms, _)) = group.pending.get_mut(offset) {
                *deadline_ms = (*deadline_ms).min(request.now_ms);
            }
        }
        GroupSettleResponse { header_revision, acked }
    }

    /// Sets the topic's limits, creating it if new.
    pub(super) fn set_retention(&mut self, request: &SetRetentionRequest) -> TopicResponse {
        let topic = self.topics.entry(request.topic.clone()).or_default();
        topic.retention = request.retention;
        let first_offset = topic.first;
        TopicResponse { header_revision: self.current(), first_offset }
    }

    /// Deletes the events below `before` (at most up to the topic's end, and `TRIM_STEP_MAX` of
    /// them), all at one revision. Groups forget them only when next joined or claimed.
    pub(super) fn trim_topic(&mut self, request: &TrimTopicRequest) -> TopicResponse {
        let header_revision = self.current();
        let Some(mut topic) = self.topics.remove(&request.topic) else {
            return TopicResponse { header_revision, first_offset: 0 };
        };
        let before = request.before.min(topic.next).min(topic.first.saturating_add(TRIM_STEP_MAX));
        if before > topic.first {
            let mut txn = self.begin();
            for offset in topic.first..before {
                Self::remove_key(&mut txn, &event_key(&request.topic, offset));
                let removed = topic.events.remove(&offset).expect("events below next are kept");
                topic.bytes -= removed.bytes;
            }
            self.end(txn);
            topic.first = before;
        }
        let first_offset = topic.first;
        self.topics.insert(request.topic.clone(), topic);
        TopicResponse { header_revision: self.current(), first_offset }
    }

    /// Where the leader would trim `topic` at `now_ms`: past the newest `max_events`, past every
    /// event older than `max_age` or needed to fit `max_bytes` (oldest first, stopping at the
    /// first event neither), by `TRIM_STEP_MAX` at most.
    pub(super) fn retention_cut(&self, name: &str, now_ms: i64) -> Option<u64> {
        let topic = self.topics.get(name)?;
        let limits = topic.retention;
        let mut cut = topic.first;
        if let Some(max_events) = limits.max_events {
            cut = cut.max(topic.next.saturating_sub(max_events));
        }
        let oldest_kept_ms = limits.max_age.map(|age| now_ms.saturating_sub(age.as_millis() as i64));
        let mut excess = limits.max_bytes.map_or(0, |max| topic.bytes.saturating_sub(max));
        for (offset, event) in topic.events.range(cut..) {
            let too_old = oldest_kept_ms.is_some_and(|oldest_ms| event.timestamp_ms < oldest_ms);
            if !too_old && excess == 0 {
                break;
            }
            excess = excess.saturating_sub(event.bytes);
            cut = offset + 1;
        }
        let cut = cut.min(topic.first + TRIM_STEP_MAX);
        (cut > topic.first).then_some(cut)
    }
}

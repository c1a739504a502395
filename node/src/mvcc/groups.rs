//! Consumer groups as replicated state: each (topic, group) has a [`GroupState`] (cursor and
//! pending deliveries, see `keel_client::events::group` for the rules) kept in `StateMeta`.
//! Joining, claiming and settling are commands, so a group's position survives reconnects,
//! restarts and leader changes, and two members never hand the same event to two consumers of
//! one group at once. Events out of delivery attempts are appended to the topic's dead-letter
//! topic in the same command.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use keel_client::events::group::{dead_letter_topic, Delivery, GroupState};

use crate::command::{
    GroupClaimRequest, GroupClaimResponse, GroupJoinRequest, GroupJoinResponse, GroupSettleRequest,
    GroupSettleResponse, NewEvent,
};
use crate::storage::StorageError;

use super::events::{encode, event_key, group_key, StoredEvent};
use super::range::KeySpan;
use super::store::{MvccStore, OpError};

impl MvccStore {
    /// The state of `group` on `topic`, if it exists.
    pub fn group(&self, topic: &str, group: &str) -> Option<&GroupState> {
        self.topics.groups.get(&(topic.to_string(), group.to_string()))
    }

    /// Every group of `topic`, by name.
    pub fn groups(&self, topic: &str) -> Vec<(String, GroupState)> {
        self.topics
            .groups
            .range((topic.to_string(), String::new())..)
            .take_while(|((t, _), _)| t == topic)
            .map(|((_, group), state)| (group.clone(), state.clone()))
            .collect()
    }

    pub(super) fn apply_group_join(&mut self, request: &GroupJoinRequest) -> Result<GroupJoinResponse, OpError> {
        let topic = self.topic(&request.topic).cloned().unwrap_or_default();
        if self.topic(&request.topic).is_none() {
            self.save_topic(&request.topic, topic.clone())?;
        }
        let mut group = match self.group(&request.topic, &request.group) {
            Some(existing) => GroupState { options: request.options.clone(), ..existing.clone() },
            None => {
                GroupState::new(request.start.clamp(topic.first_offset, topic.next_offset), request.options.clone())
            }
        };
        group.forget_trimmed(topic.first_offset);
        let response = GroupJoinResponse {
            header_revision: self.current_revision,
            ack_floor: group.ack_floor(),
            cursor: group.cursor,
        };
        self.save_group(&request.topic, &request.group, group)?;
        Ok(response)
    }

    pub(super) fn apply_group_claim(&mut self, request: &GroupClaimRequest) -> Result<GroupClaimResponse, OpError> {
        let (Some(topic), Some(group)) = (self.topic(&request.topic), self.group(&request.topic, &request.group))
        else {
            // A claim for a group that does not exist (it is only ever proposed after a join):
            // nothing to hand out.
            return Ok(GroupClaimResponse { header_revision: self.current_revision, ..Default::default() });
        };
        let (bounds, mut group) = (topic.bounds(), group.clone());
        let outcome = group.claim(&request.consumer, request.max, request.auto_ack, request.now_ms, bounds);
        if !outcome.dead.is_empty() {
            self.dead_letter(&request.topic, &request.group, &outcome.dead, request.now_ms)?;
        }
        self.save_group(&request.topic, &request.group, group)?;
        Ok(GroupClaimResponse { header_revision: self.current_revision, outcome })
    }

    pub(super) fn apply_group_settle(&mut self, request: &GroupSettleRequest) -> Result<GroupSettleResponse, OpError> {
        let Some(group) = self.group(&request.topic, &request.group) else {
            return Ok(GroupSettleResponse { header_revision: self.current_revision, acked: Vec::new() });
        };
        let mut group = group.clone();
        let acked = group.settle(&request.acks, &request.nacks, request.now_ms);
        self.save_group(&request.topic, &request.group, group)?;
        Ok(GroupSettleResponse { header_revision: self.current_revision, acked })
    }

    /// Copies the events at `dead` to the dead-letter topic, saying where they came from.
    /// Nothing here is a rule that can refuse: an error is this member's storage failing.
    fn dead_letter(&mut self, topic: &str, group: &str, dead: &[Delivery], now_ms: i64) -> Result<(), StorageError> {
        let mut letters = Vec::with_capacity(dead.len());
        for delivery in dead {
            let key = event_key(topic, delivery.offset);
            let Some(kv) = self.kvs_at(KeySpan::Single(&key), self.current_revision)?.pop() else { continue };
            // Not a damaged member: the value is replicated keyspace data that an etcd client may
            // have overwritten with anything (`/micro/events/` takes etcd writes), so every member
            // reads the same bytes and skips the same letter. Stopping here would stop every
            // member on the same entry, again on each restart.
            let Ok(stored) = serde_json::from_slice::<StoredEvent>(&kv.value) else { continue };
            let mut metadata = stored.metadata;
            metadata.insert("dead-letter-topic".into(), topic.to_string());
            metadata.insert("dead-letter-group".into(), group.to_string());
            metadata.insert("dead-letter-offset".into(), delivery.offset.to_string());
            metadata.insert("dead-letter-deliveries".into(), delivery.deliveries.to_string());
            use base64::Engine as _;
            // As above: the same bytes on every member, so the same (empty) payload.
            let payload = base64::engine::general_purpose::STANDARD.decode(stored.payload).unwrap_or_default();
            letters.push(NewEvent { id: String::new(), metadata, payload });
        }
        if letters.is_empty() {
            return Ok(());
        }
        let dead_topic = dead_letter_topic(topic);
        let mut state = self.topic(&dead_topic).cloned().unwrap_or_default();
        let timestamp_ms = now_ms.max(state.last_timestamp_ms);
        let mut txn = self.begin_write();
        let outcome = self.append_events(&mut txn, &dead_topic, &mut state, &letters, timestamp_ms);
        self.end_write(txn);
        outcome?;
        self.save_topic(&dead_topic, state)?;
        Ok(())
    }

    fn save_group(&mut self, topic: &str, group: &str, state: GroupState) -> Result<(), StorageError> {
        self.stage_meta(group_key(topic, group), Some(encode(&state)?));
        self.topics.groups.insert((topic.to_string(), group.to_string()), state);
        Ok(())
    }
}

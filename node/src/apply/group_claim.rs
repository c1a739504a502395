//! GroupClaim: events handed to one consumer of a group, and those out of delivery attempts
//! moved to the topic's dead-letter topic in the same command.

use keel_client::names;
use keel_model::events::{
    DEAD_LETTER_DELIVERIES_KEY, DEAD_LETTER_GROUP_KEY, DEAD_LETTER_OFFSET_KEY, DEAD_LETTER_TOPIC_KEY,
};
use keel_model::group::{dead_letter_topic, Delivery};

use crate::api::EventsError;
use crate::command::{GroupClaimRequest, GroupClaimResponse, NewEvent};
use crate::error::ServerError;
use crate::mvcc::events::{event_key, StoredEvent};
use crate::mvcc::{KeySpan, MvccStore, OpError};
use crate::storage::StorageError;

use super::{check_group, publish, Apply};

impl Apply for GroupClaimRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_group(&self.topic, &self.group)?;
        Ok(names::CONSUMER.check(&self.consumer).map_err(EventsError::from)?)
    }

    fn apply(&self, state: &mut MvccStore) -> Result<GroupClaimResponse, OpError> {
        let (Some(topic), Some(group)) = (state.topics.get(&self.topic), state.groups.get(&self.topic, &self.group))
        else {
            // A claim for a group that does not exist (it is only ever proposed after a join):
            // nothing to hand out.
            return Ok(GroupClaimResponse { header_revision: state.current_revision(), ..Default::default() });
        };
        let (bounds, mut group) = (topic.bounds(), group.clone());
        let outcome = group.claim(&self.consumer, self.max, self.auto_ack, self.now_ms, bounds);
        if !outcome.dead.is_empty() {
            dead_letter(state, &self.topic, &self.group, &outcome.dead, self.now_ms)?;
        }
        state.groups.save(&self.topic, &self.group, group)?;
        Ok(GroupClaimResponse { header_revision: state.current_revision(), outcome })
    }
}

/// Copies the events at `dead` to the dead-letter topic, saying where they came from.
/// Nothing here is a rule that can refuse: an error is this member's storage failing.
fn dead_letter(
    state: &mut MvccStore,
    topic: &str,
    group: &str,
    dead: &[Delivery],
    now_ms: i64,
) -> Result<(), StorageError> {
    let mut letters = Vec::with_capacity(dead.len());
    for delivery in dead {
        let key = event_key(topic, delivery.offset);
        let Some(kv) = state.kvs_at(KeySpan::Single(&key), state.current_revision())?.pop() else { continue };
        // Not a damaged member: the value is replicated keyspace data that every member reads
        // the same, so every member skips the same letter. Stopping here would stop every
        // member on the same entry, again on each restart.
        let Ok(stored) = serde_json::from_slice::<StoredEvent>(&kv.value) else { continue };
        let mut metadata = stored.metadata;
        metadata.insert(DEAD_LETTER_TOPIC_KEY.into(), topic.to_string());
        metadata.insert(DEAD_LETTER_GROUP_KEY.into(), group.to_string());
        metadata.insert(DEAD_LETTER_OFFSET_KEY.into(), delivery.offset.to_string());
        metadata.insert(DEAD_LETTER_DELIVERIES_KEY.into(), delivery.deliveries.to_string());
        use base64::Engine as _;
        // As above: the same bytes on every member, so the same (empty) payload.
        let payload = base64::engine::general_purpose::STANDARD.decode(stored.payload).unwrap_or_default();
        letters.push(NewEvent { id: String::new(), metadata, payload });
    }
    if letters.is_empty() {
        return Ok(());
    }
    let dead_topic = dead_letter_topic(topic);
    let mut dead_state = state.topics.get(&dead_topic).cloned().unwrap_or_default();
    let timestamp_ms = now_ms.max(dead_state.last_timestamp_ms);
    publish::append(state, &dead_topic, &mut dead_state, &letters, timestamp_ms)?;
    state.topics.save(&dead_topic, dead_state)?;
    Ok(())
}

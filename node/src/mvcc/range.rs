//! etcd's Range, as `apply.go` serves it on top of the MVCC `rangeKeys`.

use std::cmp::Ordering;
use std::sync::RwLockReadGuard;

use crate::command::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::storage::{StorageError, Table};

use super::keyspace::{Keyspace, RangeRevisions};
use super::revision::RecordKind;
use super::store::{MvccStore, OpError};
use super::{MvccError, ReadError};

/// The keys a request names, after etcd's `range_end` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// `range_end` empty: exactly `key`.
    Single(&'a [u8]),
    /// `[from, to)`; `to: None` = every key >= `from` (`range_end == [0]`). Empty when
    /// `to <= from`.
    Range { from: &'a [u8], to: Option<&'a [u8]> },
}

impl<'a> KeySpan<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::Range { from: key, to: None },
            _ => KeySpan::Range { from: key, to: Some(range_end) },
        }
    }
}

impl Keyspace {
    /// etcd 3.4 `applierV3backend.Range` in a view whose current revision is `current`.
    ///
    /// Its quirks, kept on purpose: `count` is the number of keys in range before the limit AND
    /// before the min/max filters; with sorting or a filter everything is read, filtered, sorted,
    /// then cut to `limit`; `more` says whether that cut removed anything.
    pub(crate) fn range_in_view(&self, request: &RangeRequest, current: i64) -> Result<RangeResponse, OpError> {
        let found = self.range_plan(request, current)?;
        let kvs = found.revisions.iter().map(|revision| self.fetch(*revision)).collect::<Result<_, _>>()?;
        Ok(finish(request, current, kvs, found.count))
    }

    /// Which revisions `request` reads: everything when sorting or filtering, else one more than
    /// the limit (to know whether there are more).
    fn range_plan(&self, request: &RangeRequest, current: i64) -> Result<RangeRevisions, MvccError> {
        let span = KeySpan::new(&request.key, &request.range_end);
        let read_everything = request.sort_order != SortOrder::None
            || request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        let read_limit = match request.limit {
            _ if read_everything => 0,
            limit if limit > 0 => limit.saturating_add(1),
            limit => limit,
        };
        self.range_revisions(span, request.revision, current, read_limit, request.count_only)
    }
}

/// A client's Range (see [`MvccStore::range`]), holding the keyspace lock only while the
/// in-memory index is read: the values are read from the engine as of the point taken under the
/// lock, after it is released, so a large range does not stall writes. Records of a revision
/// never change, and compaction's removals come after that point, so the answer is the one the
/// lock would have given.
pub fn range_unlocked(
    store: RwLockReadGuard<'_, MvccStore>,
    request: &RangeRequest,
) -> Result<RangeResponse, ReadError> {
    if store.keyspace.has_staged() {
        // Only a member whose commit failed has staged changes outside apply; read them too.
        return store.range(request);
    }
    let current = store.current_revision();
    let found = store.keyspace.range_plan(request, current).map_err(ReadError::Rejected)?;
    let keys: Vec<Vec<u8>> = found.revisions.iter().map(|revision| revision.engine_key(RecordKind::Value)).collect();
    let engine = store.keyspace.engine_handle();
    let mut store = Some(store);
    let mut kvs = Vec::with_capacity(keys.len());
    let mut failure = None;
    engine
        .get_many_as_of_now(Table::Kv, &keys, &mut || drop(store.take()), &mut |key, value| {
            let decoded = match value {
                Some(bytes) => postcard::from_bytes::<KeyValue>(bytes)
                    .map_err(|error| StorageError(format!("mvcc: corrupt record {key:?}: {error}"))),
                None => Err(StorageError(format!("mvcc: record {key:?} is missing"))),
            };
            match decoded {
                Ok(kv) => kvs.push(kv),
                Err(error) => failure = Some(error),
            }
            failure.is_none()
        })
        .map_err(ReadError::Storage)?;
    if let Some(error) = failure {
        return Err(ReadError::Storage(error));
    }
    Ok(finish(request, current, kvs, found.count))
}

/// Filters, sorts, cuts to the limit and strips values, as etcd does after reading.
fn finish(request: &RangeRequest, current: i64, mut kvs: Vec<KeyValue>, count: i64) -> RangeResponse {
    kvs.retain(|kv| passes_filters(request, kv));
    sort(&mut kvs, request.sort_order, request.sort_target);
    let mut more = false;
    if let Ok(limit) = usize::try_from(request.limit) {
        if limit > 0 && kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse { header_revision: current, kvs, more, count }
}

/// The min/max mod/create revision filters; 0 = no bound.
fn passes_filters(request: &RangeRequest, kv: &KeyValue) -> bool {
    let within = |value: i64, min: i64, max: i64| (min == 0 || value >= min) && (max == 0 || value <= max);
    within(kv.mod_revision, request.min_mod_revision, request.max_mod_revision)
        && within(kv.create_revision, request.min_create_revision, request.max_create_revision)
}

/// etcd sorts ascending by default when the target is not the key (results come in key order
/// already). etcd uses Go's unstable `sort.Sort`; a stable sort gives the same answer for up to
/// 12 results (Go's insertion-sort cut-off) and a deterministic one (ties in key order) beyond.
fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let compare = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| compare(b, a)),
        _ => kvs.sort_by(compare),
    }
}

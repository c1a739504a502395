//! etcd's Range, as `apply.go` serves it on top of the MVCC `rangeKeys`.

use std::cmp::Ordering;

use crate::command::{KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};

use super::store::{MvccStore, OpError};

/// The keys a request names, after etcd's `range_end` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeySpan<'a> {
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

impl MvccStore {
    /// etcd 3.4 `applierV3backend.Range` in a view whose current revision is `current`.
    ///
    /// Its quirks, kept on purpose: `count` is the number of keys in range before the limit AND
    /// before the min/max filters; with sorting or a filter everything is read, filtered, sorted,
    /// then cut to `limit`; `more` says whether that cut removed anything.
    pub(super) fn range_in_view(&self, request: &RangeRequest, current: i64) -> Result<RangeResponse, OpError> {
        let span = KeySpan::new(&request.key, &request.range_end);
        let read_everything = request.sort_order != SortOrder::None
            || request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        let read_limit = match request.limit {
            _ if read_everything => 0,
            // One more than asked, to know whether there are more.
            limit if limit > 0 => limit.saturating_add(1),
            limit => limit,
        };
        let result = self.range_keys(span, request.revision, current, read_limit, request.count_only)?;

        let mut kvs = result.kvs;
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
        Ok(RangeResponse { header_revision: current, kvs, more, count: result.count })
    }
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

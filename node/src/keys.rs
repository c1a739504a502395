//! Byte-key ranges: the one rule for "every key that starts with a prefix", used by every
//! prefix scan in the node, of engine tables and of the etcd keyspace alike.
//!
//! Keys compare as unsigned bytes, so the keys that start with `p` run from `p` up to, not
//! including, `p` cut after its last byte below 0xff, that byte incremented. The shortcut of
//! appending 0xff to `p` misses every key whose next byte is 0xff: a negative lease id (stored
//! big-endian, so its first byte is 0xff) or a member id from 0xff00… up. A prefix with no
//! byte below 0xff (empty, or all 0xff) has no such end: its keys run to the end.
//! Pure: no I/O, no knowledge of what the keys mean.

/// The least key above every key that starts with `prefix`, or `None` when no key is (the
/// prefix is empty or all 0xff): the keys with that prefix then run to the end of the table.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return Some(end);
        }
    }
    None
}

/// etcd's `GetPrefixRangeEnd`: the `range_end` of a request for every key that starts with
/// `prefix`, which is etcd's `"\0"` ("to the end of the keyspace") when [`prefix_end`] has none.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    prefix_end(prefix).unwrap_or_else(|| vec![0])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ends_at_the_edges() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (b"/micro/registry/", Some(b"/micro/registry0")),
            (b"a", Some(b"b")),
            (b"a\xff", Some(b"b")),
            (b"a\xff\xff", Some(b"b")),
            (b"\xfe\xff", Some(b"\xff")),
            (b"", None),
            (b"\xff", None),
            (b"\xff\xff\xff", None),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_end(prefix).as_deref(), end, "prefix {prefix:?}");
        }
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), [0], "etcd's to-the-end");
        assert_eq!(prefix_range_end(b""), [0]);
    }

    /// Bytes at the edges (0, 1, 0xfe, 0xff) and one in the middle, so that prefixes ending in
    /// 0xff, all 0xff, and empty turn up often.
    fn edgy_bytes(len_max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xfe, 0xff]), 0..=len_max)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// A key is in `[prefix, prefix_end)` exactly when it starts with the prefix.
        #[test]
        fn the_range_holds_exactly_the_keys_with_the_prefix(prefix in edgy_bytes(4), key in edgy_bytes(6)) {
            let end = prefix_end(&prefix);
            let in_range = key >= prefix && end.as_ref().is_none_or(|end| key < *end);
            prop_assert_eq!(in_range, key.starts_with(&prefix), "prefix {:?} end {:?}", prefix, end);
        }
    }
}

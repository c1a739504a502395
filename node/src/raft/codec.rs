//! The compact binary encoding of everything Raft persists or sends: log entries, votes,
//! snapshot headers and peer messages. postcard: varint-packed, no field names, no schema
//! negotiation; both ends are the same build of Keel.
//!
//! Log entries stay on disk across upgrades, so each one names its format version: a header
//! `ENTRY_HEADER` and a version byte, then the postcard of the entry. Entries written before
//! the header existed have no header and are version 1, which is the same postcard: they are
//! told apart by their first two bytes (see `ENTRY_HEADER`).
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use serde::{de::DeserializeOwned, Serialize};

use super::Entry;

/// The format version of the log entries this build writes, and the only one it reads.
pub const LOG_ENTRY_VERSION: u8 = 1;

/// Starts every log entry that names its version; the version byte follows. No entry written
/// before the header existed starts with these bytes: it is the postcard of an `Entry`, whose
/// first field (the term, a u64) is a LEB128 varint written in its shortest form, and in a
/// shortest form a byte with the continuation bit (0x80) is never followed by a zero byte.
const ENTRY_HEADER: [u8; 2] = [0x80, 0x00];

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    postcard::to_stdvec(value).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    postcard::from_bytes(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A log entry as the log store writes it: header, `LOG_ENTRY_VERSION`, postcard.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, std::io::Error> {
    let mut bytes = Vec::from(ENTRY_HEADER);
    bytes.push(LOG_ENTRY_VERSION);
    postcard::to_io(entry, &mut bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(bytes)
}

/// A log entry as the log store reads it: with a header naming a version this build reads, or
/// without one (written before the header existed: version 1). Any other version is an error
/// that says so, never a guess.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, std::io::Error> {
    let Some(versioned) = bytes.strip_prefix(&ENTRY_HEADER) else {
        return decode(bytes);
    };
    match versioned.split_first() {
        Some((&LOG_ENTRY_VERSION, entry)) => decode(entry),
        Some((version, _)) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "log entry format version {version} is not one this keel reads (it reads version \
                 {LOG_ENTRY_VERSION}): the entry was written by another version of Keel"
            ),
        )),
        None => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "log entry cut short in its header")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::command::{Command, PutRequest};
    use crate::raft::LogId;

    fn entry(term: u64, index: u64) -> Entry {
        let leader = openraft::vote::leader_id_adv::LeaderId { term, node_id: 7 };
        let put = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..PutRequest::default() };
        Entry { log_id: LogId::new(leader, index), payload: openraft::EntryPayload::Normal(Command::Put(put)) }
    }

    #[test]
    fn an_entry_names_its_version_and_round_trips() {
        let written = encode_entry(&entry(3, 42)).expect("encode");
        assert_eq!(written[..3], [0x80, 0x00, LOG_ENTRY_VERSION]);
        assert_eq!(decode_entry(&written).expect("decode"), entry(3, 42));
    }

    #[test]
    fn an_unknown_version_or_a_cut_header_is_a_clear_error() {
        let mut written = encode_entry(&entry(3, 42)).expect("encode");
        written[2] = LOG_ENTRY_VERSION + 1;
        let error = decode_entry(&written).expect_err("unknown version");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains(&format!("format version {}", LOG_ENTRY_VERSION + 1)), "{error}");
        assert!(error.to_string().contains(&format!("reads version {LOG_ENTRY_VERSION}")), "{error}");
        assert!(decode_entry(&ENTRY_HEADER).expect_err("cut").to_string().contains("header"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Entries from before the header, of any term, still read as themselves: none starts
        /// with the header.
        #[test]
        fn entries_without_a_header_are_version_1(term in any::<u64>(), index in any::<u64>()) {
            let bare = encode(&entry(term, index)).expect("encode");
            prop_assert!(!bare.starts_with(&ENTRY_HEADER));
            prop_assert_eq!(decode_entry(&bare).expect("decode"), entry(term, index));
        }
    }
}

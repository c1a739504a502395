//! HPACK (RFC 7541) decoding for the client port's authority shim (`h2_authority`), and the
//! one stateless encoding it writes back. It exists because the shim must read header blocks
//! that any client can send, and the libraries at hand panic on some malformed blocks and put
//! no bound on what a block can decode to.
//!
//! It must never panic or allocate past its bounds on any input: every read is checked, every
//! integer is bounded before it is used, the dynamic table never exceeds the size the HTTP/2
//! server advertises, and a block never decodes to more than `HEADER_LIST_BYTES_MAX`. A block
//! it cannot decode is an error, never a partial answer.
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::VecDeque;

use huffman::huffman_decode;

// ---- limits ----

/// The dynamic table size the client may use: HTTP/2's default SETTINGS_HEADER_TABLE_SIZE,
/// which the server under the shim (h2, through tonic) advertises and enforces. A size update
/// above it is a COMPRESSION_ERROR for h2 too.
pub const DYNAMIC_TABLE_BYTES_MAX: usize = 4_096;

/// The largest header list a block may decode to, counted as HTTP/2 does (name + value + 32
/// per field): hyper's default SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB), which tonic keeps, so a
/// larger list would be refused by the server anyway. Bounds what indexed references (one
/// byte naming a 4 KiB table entry) can make one block expand to.
pub const HEADER_LIST_BYTES_MAX: usize = 16 * 1024;

/// HPACK integers above this are refused: nothing a valid block carries (an index, a table
/// size, a string length) comes near it, and it keeps every sum below overflow.
const INTEGER_MAX: usize = u32::MAX as usize;

/// What RFC 7541 counts for each entry besides its name and value (section 4.1).
const ENTRY_OVERHEAD_BYTES: usize = 32;

/// One header field: name and value as the client sent them.
pub type Field = (Vec<u8>, Vec<u8>);

/// Why a header block could not be decoded. HTTP/2 treats each as a COMPRESSION_ERROR, a
/// connection error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("HPACK block truncated")]
    Truncated,
    #[error("HPACK integer too large")]
    IntegerTooLarge,
    #[error("HPACK index {0} is not in the table")]
    BadIndex(usize),
    #[error("HPACK dynamic table size update to {0} bytes exceeds the allowed {DYNAMIC_TABLE_BYTES_MAX}")]
    TableSizeTooLarge(usize),
    #[error("HPACK dynamic table size update after a header field")]
    LateTableSizeUpdate,
    #[error("HPACK Huffman string contains EOS")]
    HuffmanEos,
    #[error("HPACK Huffman string has invalid padding")]
    HuffmanPadding,
    #[error("HPACK header list exceeds {HEADER_LIST_BYTES_MAX} bytes")]
    ListTooLarge,
}

/// A decoder for one connection's header blocks, in order: it keeps the dynamic table the
/// client's encoder fills.
#[derive(Debug)]
pub struct Decoder {
    /// Newest entry first, as HPACK indexes them.
    table: VecDeque<Field>,
    /// The sum of the entries' sizes (name + value + 32 each).
    table_bytes: usize,
    /// The size the client last set; never above `DYNAMIC_TABLE_BYTES_MAX`.
    table_bytes_max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { table: VecDeque::new(), table_bytes: 0, table_bytes_max: DYNAMIC_TABLE_BYTES_MAX }
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one complete header block (HEADERS and its CONTINUATIONs joined). After an
    /// error the table may be part-way updated: the connection must end, as HTTP/2 requires.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut input = Input { bytes: block };
        let mut fields = Vec::new();
        let mut list_bytes = 0usize;
        while let Some(&first) = input.bytes.first() {
            let field = if first & 0x80 != 0 {
                // Indexed field (6.1).
                let index = input.integer(7)?;
                self.entry(index)?
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (6.2.1).
                let field = self.literal(&mut input, 6)?;
                self.insert(field.clone());
                field
            } else if first & 0x20 != 0 {
                // Dynamic table size update (6.3): only before the first field of a block.
                if !fields.is_empty() {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = input.integer(5)?;
                if size > DYNAMIC_TABLE_BYTES_MAX {
                    return Err(HpackError::TableSizeTooLarge(size));
                }
                self.table_bytes_max = size;
                self.evict_to(size);
                continue;
            } else {
                // Literal without indexing (6.2.2) or never indexed (6.2.3): 4-bit prefix.
                self.literal(&mut input, 4)?
            };
            list_bytes = field_bytes(&field)
                .and_then(|bytes| list_bytes.checked_add(bytes))
                .filter(|total| *total <= HEADER_LIST_BYTES_MAX)
                .ok_or(HpackError::ListTooLarge)?;
            fields.push(field);
        }
        Ok(fields)
    }

    /// A literal field whose name is an index (`prefix_bits` wide) or, when that is 0, a
    /// string; then the value string.
    fn literal(&self, input: &mut Input<'_>, prefix_bits: u8) -> Result<Field, HpackError> {
        let index = input.integer(prefix_bits)?;
        let name = if index == 0 { input.string()? } else { self.entry(index)?.0.clone() };
        let value = input.string()?;
        Ok((name, value))
    }

    /// The entry at `index` of the static table followed by the dynamic one (2.3.3).
    fn entry(&self, index: usize) -> Result<Field, HpackError> {
        let found = match index.checked_sub(1) {
            None => None,
            Some(at) if at < STATIC_TABLE.len() => {
                STATIC_TABLE.get(at).map(|(name, value)| (name.to_vec(), value.to_vec()))
            }
            Some(at) => at.checked_sub(STATIC_TABLE.len()).and_then(|at| self.table.get(at)).cloned(),
        };
        found.ok_or(HpackError::BadIndex(index))
    }

    /// Adds a field to the dynamic table, evicting the oldest entries to make room; a field
    /// larger than the whole table empties it and is not added (4.4).
    fn insert(&mut self, field: Field) {
        let Some(size) = field_bytes(&field).filter(|size| *size <= self.table_bytes_max) else {
            self.evict_to(0);
            return;
        };
        self.evict_to(self.table_bytes_max - size); // size <= table_bytes_max: checked above
        self.table_bytes += size; // <= table_bytes_max after the eviction
        self.table.push_front(field);
    }

    fn evict_to(&mut self, bytes_max: usize) {
        while self.table_bytes > bytes_max {
            let Some(oldest) = self.table.pop_back() else {
                self.table_bytes = 0;
                return;
            };
            self.table_bytes = self.table_bytes.saturating_sub(field_bytes(&oldest).unwrap_or(usize::MAX));
        }
    }
}

/// A field's size as HPACK and HTTP/2 count it; `None` only past `usize`.
fn field_bytes((name, value): &Field) -> Option<usize> {
    name.len().checked_add(value.len())?.checked_add(ENTRY_OVERHEAD_BYTES)
}

/// The unread rest of a block.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], HpackError> {
        if count > self.bytes.len() {
            return Err(HpackError::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, HpackError> {
        let (&byte, rest) = self.bytes.split_first().ok_or(HpackError::Truncated)?;
        self.bytes = rest;
        Ok(byte)
    }

    /// An integer with an N-bit prefix (5.1), at most `INTEGER_MAX`.
    fn integer(&mut self, prefix_bits: u8) -> Result<usize, HpackError> {
        let mask = u8::MAX >> (8 - prefix_bits.clamp(1, 8));
        let mut value = u64::from(self.byte()? & mask);
        if value < u64::from(mask) {
            return Ok(value as usize); // < 255
        }
        // Five continuation bytes hold 35 bits, more than any integer a valid block carries;
        // a sixth is refused. The sum stays below 2^36: no overflow in u64.
        for shift in [0, 7, 14, 21, 28] {
            let byte = self.byte()?;
            value += u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value)
                    .ok()
                    .filter(|value| *value <= INTEGER_MAX)
                    .ok_or(HpackError::IntegerTooLarge);
            }
        }
        Err(HpackError::IntegerTooLarge)
    }

    /// A string literal (5.2): raw or Huffman-coded.
    fn string(&mut self) -> Result<Vec<u8>, HpackError> {
        let huffman = self.bytes.first().is_some_and(|first| first & 0x80 != 0);
        let length = self.integer(7)?;
        let bytes = self.take(length)?;
        if huffman {
            huffman_decode(bytes)
        } else {
            Ok(bytes.to_vec())
        }
    }
}

/// Appends `fields` to `out` as one header block that needs no decoder state: every field a
/// literal without indexing with a literal name, no Huffman. The server's dynamic table then
/// stays empty whatever the client's holds.
pub fn encode_plain(fields: &[Field], out: &mut Vec<u8>) {
    for (name, value) in fields {
        out.push(0x00);
        encode_string(name, out);
        encode_string(value, out);
    }
}

fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer(bytes.len(), 7, 0x00, out);
    out.extend_from_slice(bytes);
}

/// An integer with an N-bit prefix (5.1); `flags` fills the bits above the prefix.
fn encode_integer(mut value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    let mask = u8::MAX >> (8 - prefix_bits.clamp(1, 8));
    if value < usize::from(mask) {
        out.push(flags | value as u8); // < mask <= 255
        return;
    }
    out.push(flags | mask);
    value -= usize::from(mask);
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8); // < 0x80
}

/// The static table (Appendix A): indexes 1 to 61.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Fuzzing entry point: `data` decoded as a sequence of header blocks on one connection (the
/// first byte says where the first block ends). Must never panic; checks the list bound.
#[doc(hidden)]
pub fn fuzz_hpack_decode(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let (first, second) = rest.split_at(usize::from(split).min(rest.len()));
    let mut decoder = Decoder::new();
    for block in [first, second] {
        let Ok(fields) = decoder.decode(block) else { return };
        let total: usize = fields.iter().filter_map(field_bytes).sum();
        assert!(total <= HEADER_LIST_BYTES_MAX, "a block decoded to {total} bytes");
        assert!(decoder.table_bytes <= decoder.table_bytes_max, "the table outgrew its size");
    }
}

mod huffman;
#[cfg(test)]
mod tests;

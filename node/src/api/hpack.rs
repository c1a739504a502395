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

// ---- Huffman (5.2, Appendix B) ----

/// A child in the decoding tree: another node's index, or `LEAF | symbol`.
const LEAF: u16 = 0x8000;
/// A child not filled in yet while building the tree (none is left once it is built).
const UNSET: u16 = u16::MAX;
/// The end-of-string symbol, which may never appear inside a string.
const EOS: u16 = 256;
/// A binary tree over 257 leaves has 256 inner nodes.
const HUFFMAN_NODES: usize = 256;

/// The decoding tree of `HUFFMAN_CODES`, built at compile time: a bad table fails the build.
static HUFFMAN_TREE: [[u16; 2]; HUFFMAN_NODES] = huffman_tree();

// Runs only at compile time over a static table: an index out of range fails the build.
#[allow(clippy::indexing_slicing)]
const fn huffman_tree() -> [[u16; 2]; HUFFMAN_NODES] {
    let mut nodes = [[UNSET; 2]; HUFFMAN_NODES];
    let mut used = 1; // node 0 is the root
    let mut symbol = 0;
    while symbol < HUFFMAN_CODES.len() {
        let (code, bits) = HUFFMAN_CODES[symbol];
        let mut node = 0;
        let mut bit = bits;
        while bit > 1 {
            bit -= 1;
            let branch = ((code >> bit) & 1) as usize;
            if nodes[node][branch] == UNSET {
                nodes[node][branch] = used as u16;
                used += 1;
            }
            assert!(nodes[node][branch] & LEAF == 0, "a code is a prefix of another");
            node = nodes[node][branch] as usize;
        }
        let branch = (code & 1) as usize;
        assert!(nodes[node][branch] == UNSET, "two codes are equal");
        nodes[node][branch] = LEAF | symbol as u16;
        symbol += 1;
    }
    let mut node = 0;
    while node < HUFFMAN_NODES {
        assert!(nodes[node][0] != UNSET && nodes[node][1] != UNSET, "the code is not complete");
        node += 1;
    }
    nodes
}

/// Decodes a Huffman-coded string. The padding must be fewer than 8 bits, all ones (the
/// start of EOS), as 5.2 requires.
fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
    // The shortest code is 5 bits, so a string decodes to at most 8/5 of its length.
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(8) / 5);
    let mut node = 0usize;
    let mut pending_bits = 0u32;
    let mut pending_all_ones = true;
    for &byte in bytes {
        for shift in (0..8).rev() {
            let bit = (byte >> shift) & 1;
            // Every child of every node is set (checked when the tree is built) and names a
            // node below HUFFMAN_NODES or a leaf, so the lookup cannot miss; `?` only in case.
            let child =
                *HUFFMAN_TREE.get(node).and_then(|n| n.get(usize::from(bit))).ok_or(HpackError::HuffmanPadding)?;
            pending_bits += 1;
            pending_all_ones &= bit == 1;
            if child & LEAF == 0 {
                node = usize::from(child);
                continue;
            }
            let symbol = child & !LEAF;
            if symbol == EOS {
                return Err(HpackError::HuffmanEos);
            }
            out.push(symbol as u8); // < 256: EOS excluded above
            node = 0;
            pending_bits = 0;
            pending_all_ones = true;
        }
    }
    if pending_bits > 7 || !pending_all_ones {
        return Err(HpackError::HuffmanPadding);
    }
    Ok(out)
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

/// The Huffman code (Appendix B): (code, length in bits) of each symbol, 0 to 255 and EOS.
const HUFFMAN_CODES: [(u32, u32); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(name: &str, value: &str) -> Field {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
            .collect()
    }

    /// Huffman-codes `bytes` (for tests: the decoder's counterpart).
    fn huffman_encode(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut bits, mut count) = (0u64, 0u32);
        for &byte in bytes {
            let (code, length) = HUFFMAN_CODES[usize::from(byte)];
            bits = (bits << length) | u64::from(code);
            count += length;
            while count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        if count > 0 {
            // Pad with the most significant bits of EOS: ones.
            out.push(((bits << (8 - count)) | ((1 << (8 - count)) - 1)) as u8);
        }
        out
    }

    #[test]
    fn decodes_the_rfc_examples_with_their_dynamic_table() {
        // RFC 7541 C.3 (raw strings) and C.4 (Huffman): three requests on one connection.
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut decoder = Decoder::new();
            let first = decoder.decode(&hex(blocks[0])).expect("first");
            assert_eq!(
                first,
                vec![
                    field(":method", "GET"),
                    field(":scheme", "http"),
                    field(":path", "/"),
                    field(":authority", "www.example.com")
                ]
            );
            let second = decoder.decode(&hex(blocks[1])).expect("second");
            assert_eq!(second.last(), Some(&field("cache-control", "no-cache")));
            assert_eq!(second.get(3), Some(&field(":authority", "www.example.com")));
            let third = decoder.decode(&hex(blocks[2])).expect("third");
            assert_eq!(
                third,
                vec![
                    field(":method", "GET"),
                    field(":scheme", "https"),
                    field(":path", "/index.html"),
                    field(":authority", "www.example.com"),
                    field("custom-key", "custom-value")
                ]
            );
            assert_eq!(decoder.table_bytes, 164, "the RFC's table size after C.3.3 / C.4.3");
        }
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let big_value = "v".repeat(4000);
        let mut fill = vec![0x40, 0x01, b'x'];
        fill.extend(encode_string_for_test(big_value.as_bytes()));
        let cases: Vec<(&str, Vec<u8>, HpackError)> = vec![
            ("index 0", vec![0x80], HpackError::BadIndex(0)),
            ("index past both tables", vec![0xbe], HpackError::BadIndex(62)),
            ("index past the static table, huge", vec![0xff, 0xff, 0x7f], HpackError::BadIndex(16_510)),
            ("truncated integer", vec![0xff], HpackError::Truncated),
            ("truncated size update", vec![0x3f], HpackError::Truncated),
            (
                "integer with too many bytes",
                vec![0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                HpackError::IntegerTooLarge,
            ),
            ("integer past u32", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], HpackError::IntegerTooLarge),
            ("size update past the allowed", vec![0x3f, 0xe2, 0x1f], HpackError::TableSizeTooLarge(4_097)),
            ("size update of 2^28", vec![0x3f, 0xe1, 0xff, 0xff, 0x7f], HpackError::TableSizeTooLarge(268_435_456)),
            ("size update after a field", vec![0x82, 0x20], HpackError::LateTableSizeUpdate),
            ("string past the block", vec![0x00, 0x05, b'a'], HpackError::Truncated),
            ("literal without a value", vec![0x00, 0x01, b'a'], HpackError::Truncated),
            ("Huffman padding of zeros", vec![0x00, 0x81, 0x00, 0x00], HpackError::HuffmanPadding),
            ("Huffman padding of 8 bits", vec![0x00, 0x82, 0x1f, 0xff, 0x00], HpackError::HuffmanPadding),
            ("Huffman EOS", vec![0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00], HpackError::HuffmanEos),
            ("list too large", [fill, vec![0xbe; 4]].concat(), HpackError::ListTooLarge),
        ];
        for (what, block, expected) in cases {
            assert_eq!(Decoder::new().decode(&block), Err(expected), "{what}");
        }
    }

    fn encode_string_for_test(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_string(bytes, &mut out);
        out
    }

    #[test]
    fn the_table_evicts_oldest_first_and_follows_size_updates() {
        let mut decoder = Decoder::new();
        // Two entries of 32 + 1 + 1 bytes; then shrink to fit one: the oldest goes.
        decoder.decode(&[0x40, 0x01, b'a', 0x01, b'1', 0x40, 0x01, b'b', 0x01, b'2']).expect("adds");
        assert_eq!(decoder.decode(&[0x3f, 0x03, 0xbe]).expect("size 34"), vec![field("b", "2")]);
        assert_eq!(decoder.decode(&[0xbf]), Err(HpackError::BadIndex(63)));
        // An entry larger than the table empties it.
        let mut big = vec![0x20, 0x40, 0x01, b'c'];
        big.extend(encode_string_for_test(&[b'v'; 10]));
        assert_eq!(decoder.decode(&big).expect("too big to keep"), vec![(b"c".to_vec(), vec![b'v'; 10])]);
        assert_eq!(decoder.table_bytes, 0);
    }

    #[test]
    fn the_huffman_tree_decodes_every_symbol() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)), Ok(all));
    }

    #[test]
    fn plain_encoding_is_read_back_by_an_independent_decoder() {
        let fields = vec![field(":authority", "127.0.0.1:2379"), (vec![b'k'; 200], vec![0xff; 300])];
        let mut encoded = Vec::new();
        encode_plain(&fields, &mut encoded);
        assert_eq!(fluke_hpack::Decoder::new().decode(&encoded).expect("decodes"), fields);
        assert_eq!(Decoder::new().decode(&encoded), Ok(fields));
    }

    fn header_lists() -> impl Strategy<Value = Vec<Vec<Field>>> {
        let name = prop_oneof![
            Just(b":authority".to_vec()),
            Just(b":path".to_vec()),
            Just(b"content-type".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20),
        ];
        let value = proptest::collection::vec(any::<u8>(), 0..300);
        proptest::collection::vec(proptest::collection::vec((name, value), 0..8), 1..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn decodes_what_an_independent_encoder_wrote(lists in header_lists()) {
            let mut encoder = fluke_hpack::Encoder::new();
            let mut decoder = Decoder::new();
            for list in lists {
                let block = encoder.encode(list.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
                prop_assert_eq!(decoder.decode(&block), Ok(list));
            }
        }

        #[test]
        fn huffman_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(huffman_decode(&huffman_encode(&bytes)), Ok(bytes));
        }

        #[test]
        fn never_panics_on_random_blocks(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_hpack_decode(&data);
        }

        #[test]
        fn never_panics_on_mutated_valid_blocks(
            lists in header_lists(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut encoder = fluke_hpack::Encoder::new();
            let mut blocks: Vec<u8> = Vec::new();
            let mut first_len = 0;
            for (i, list) in lists.iter().enumerate() {
                blocks.extend(encoder.encode(list.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))));
                if i == 0 {
                    first_len = blocks.len().min(255);
                }
            }
            let mut data = vec![first_len as u8];
            data.extend(blocks);
            for (index, byte) in flips {
                let at = index.index(data.len());
                data[at] ^= byte;
            }
            fuzz_hpack_decode(&data);
        }
    }
}

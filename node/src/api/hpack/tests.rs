use super::huffman::HUFFMAN_CODES;
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
        ("integer with too many bytes", vec![0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], HpackError::IntegerTooLarge),
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

use super::*;
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn preface() -> Vec<u8> {
    PREFACE.to_vec()
}

async fn rewrite(input: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut fix = AuthorityFix::new(&input[..]);
    let mut out = Vec::new();
    fix.read_to_end(&mut out).await?;
    Ok(out)
}

/// What the shim hands the server for `input` fed in reads of `size` bytes.
fn rewrite_in_reads(input: &[u8], size: usize) -> io::Result<Vec<u8>> {
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    for chunk in input.chunks(size.max(1)) {
        rewriter.input.extend_from_slice(chunk);
        while !rewriter.input.is_empty() {
            rewriter.process()?;
            out.extend_from_slice(&rewriter.out);
            rewriter.out.clear();
        }
    }
    Ok(out)
}

/// Decodes the header blocks of `out` (after the preface) with a fresh decoder, as the
/// server does; frames other than HEADERS are skipped.
fn server_view(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut server = fluke_hpack::Decoder::new();
    let mut at = PREFACE.len();
    let mut blocks = Vec::new();
    while at < out.len() {
        let length = (usize::from(out[at]) << 16) | (usize::from(out[at + 1]) << 8) | usize::from(out[at + 2]);
        let (kind, flags, _, payload) = split_frame(&out[at..at + FRAME_HEADER_BYTES + length]).expect("frame");
        if kind == FRAME_HEADERS {
            let (_, fragment) = headers_fragment(flags, payload).expect("padding and priority fit");
            blocks.push(server.decode(fragment).expect("server decodes"));
        }
        at += FRAME_HEADER_BYTES + length;
    }
    blocks
}

#[tokio::test]
async fn strips_the_scheme_from_authority_and_keeps_other_frames() {
    let mut client = fluke_hpack::Encoder::new();
    let headers: Vec<(&[u8], &[u8])> =
        vec![(b":method", b"POST"), (b":authority", b"http://127.0.0.1:2379"), (b":path", b"/x")];
    let block = client.encode(headers);
    let mut input = preface();
    input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    input.extend(frame(FRAME_HEADERS, FLAG_END_STREAM, 1, &block[..3]));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &block[3..]));
    input.extend(frame(0x0, FLAG_END_STREAM, 1, b"data"));
    let out = rewrite(input).await.expect("valid input");
    assert_eq!(&out[..24], PREFACE);
    assert_eq!(&out[24..33], &frame(0x4, 0, 0, &[])[..]);
    let headers_len = (usize::from(out[34]) << 8) | usize::from(out[35]);
    assert_eq!(out[36], FRAME_HEADERS);
    assert_eq!(out[37], FLAG_END_STREAM | FLAG_END_HEADERS);
    let decoded = fluke_hpack::Decoder::new().decode(&out[42..42 + headers_len]).expect("decodes");
    assert!(decoded.contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())), "{decoded:?}");
    assert_eq!(&out[42 + headers_len..], &frame(0x0, FLAG_END_STREAM, 1, b"data")[..]);
}

#[tokio::test]
async fn a_client_with_a_valid_authority_passes_through_byte_for_byte() {
    let mut client = fluke_hpack::Encoder::new();
    let headers: Vec<(&[u8], &[u8])> =
        vec![(b":method", b"POST"), (b":authority", b"127.0.0.1:2379"), (b":path", b"/etcdserverpb.KV/Put")];
    let mut input = preface();
    input.extend(frame(0x4, 0, 0, &[]));
    // The second block refers to the dynamic table the first one filled.
    for stream in [1, 3] {
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, &client.encode(headers.clone())));
        input.extend(frame(0x0, FLAG_END_STREAM, stream, b"data"));
    }
    assert_eq!(rewrite(input.clone()).await.expect("valid input"), input);
}

#[tokio::test]
async fn a_client_with_schemes_in_its_authority_is_rewritten_on_every_stream() {
    let mut client = fluke_hpack::Encoder::new();
    let headers: Vec<(&[u8], &[u8])> = vec![(b":authority", b"http://127.0.0.1:2379"), (b":path", b"/x")];
    let mut input = preface();
    for stream in [1, 3] {
        let block = client.encode(headers.clone());
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, &block));
    }
    let out = rewrite(input).await.expect("valid input");
    let blocks = server_view(&out);
    assert_eq!(blocks.len(), 2);
    for decoded in blocks {
        assert!(decoded.contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())), "{decoded:?}");
    }
}

#[tokio::test]
async fn http1_passes_through_untouched() {
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(rewrite(request.clone()).await.expect("passes"), request);
    assert_eq!(rewrite(b"GET /".to_vec()).await.expect("short request passes"), b"GET /");
    // A prefix of the preface, then something else.
    assert_eq!(rewrite(b"PRI * HTTP/1.1\r\n".to_vec()).await.expect("passes"), b"PRI * HTTP/1.1\r\n");
}

#[test]
fn frames_split_at_every_point_give_the_same_output() {
    let mut client = fluke_hpack::Encoder::new();
    let headers: Vec<(&[u8], &[u8])> = vec![(b":authority", b"http://127.0.0.1:2379"), (b":path", b"/x")];
    let mut input = preface();
    input.extend(frame(0x4, 0, 0, &[]));
    input.extend(frame(0x0, 0, 1, &[]));
    let block = client.encode(headers.clone());
    input.extend(frame(
        FRAME_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY,
        1,
        &[[2].as_slice(), &[0; 5], &block[..2], &[0, 0]].concat(),
    ));
    input.extend(frame(FRAME_CONTINUATION, 0, 1, &[]));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &block[2..]));
    input.extend(frame(0x0, FLAG_END_STREAM, 1, &[7; 100]));
    let whole = rewrite_in_reads(&input, input.len()).expect("valid input");
    for size in 1..40 {
        assert_eq!(rewrite_in_reads(&input, size).expect("valid input"), whole, "reads of {size}");
    }
    let blocks = server_view(&whole);
    assert_eq!(
        blocks,
        vec![vec![(b":authority".to_vec(), b"127.0.0.1:2379".to_vec()), (b":path".to_vec(), b"/x".to_vec())]]
    );
}

#[test]
fn a_huge_frame_streams_through_without_being_held() {
    let mut input = preface();
    input.extend_from_slice(&[0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1]); // DATA of 16 MiB
    input.extend(vec![0u8; 100_000]);
    let mut rewriter = Rewriter::new();
    for chunk in input.chunks(READ_CHUNK_BYTES) {
        rewriter.input.extend_from_slice(chunk);
        rewriter.process().expect("streams");
        assert!(rewriter.input.is_empty());
        assert!(rewriter.out.len() <= READ_CHUNK_BYTES);
        rewriter.out.clear();
    }
    assert_eq!(rewriter.state, State::Forward { remaining: (1 << 24) - 1 - 100_000 });
}

#[test]
fn small_blocks_that_expand_are_taken_one_at_a_time() {
    // The first block puts a 4 000-byte entry in the table; each later 4-byte block names
    // it four times: 16 KiB for the server from 13 bytes of the client's.
    let mut first = vec![0x41, 0x0b];
    first.extend_from_slice(b"http://a:1/");
    first.extend_from_slice(&[0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e]);
    first.extend(vec![b'v'; 4000]);
    let mut input = frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first);
    for stream in 0..500u32 {
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3 + 2 * stream, &[0xbe; 4]));
    }
    let mut rewriter = Rewriter::new();
    rewriter.input.extend_from_slice(PREFACE);
    rewriter.process().expect("preface");
    rewriter.out.clear();
    rewriter.input.extend_from_slice(&input);
    let mut blocks = 0;
    while !rewriter.input.is_empty() {
        rewriter.process().expect("valid input");
        let waiting = rewriter.out.len();
        assert!(waiting <= OUT_PAUSE_BYTES + hpack::HEADER_LIST_BYTES_MAX, "{waiting} bytes waiting");
        blocks += server_view(&[PREFACE.as_slice(), &rewriter.out].concat()).len();
        rewriter.out.clear();
    }
    assert_eq!(blocks, 501);
}

#[test]
fn a_header_frame_over_the_bound_goes_to_the_server_unheld() {
    let mut input = preface();
    input.extend_from_slice(&[0xff, 0xff, 0xff, FRAME_HEADERS, 0x0, 0, 0, 0, 1]); // HEADERS of 16 MiB
    input.extend(vec![0u8; 1000]);
    let out = rewrite_in_reads(&input, 10).expect("stepped aside");
    assert_eq!(out, input, "h2 judges it, byte for byte");
}

#[test]
fn an_undecodable_first_block_goes_to_the_server_as_sent() {
    for block in [&[0xbf_u8][..], &[0x3f], &[0x3f, 0xe1, 0xff, 0xff, 0x0f], &[0x00, 0x81, 0xff, 0x00]] {
        let mut input = preface();
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, block));
        input.extend(frame(0x0, 0, 1, b"after"));
        assert_eq!(rewrite_in_reads(&input, 3).expect("stepped aside"), input, "{block:x?}");
    }
}

#[test]
fn malformed_input_after_rewriting_began_ends_the_connection() {
    let mut client = fluke_hpack::Encoder::new();
    let headers: Vec<(&[u8], &[u8])> = vec![(b":authority", b"http://127.0.0.1:2379")];
    let mut start = preface();
    start.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &client.encode(headers)));
    let cases: Vec<Vec<u8>> = vec![
        frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0xbf]), // bad index
        frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0x3f]), // truncated integer
        frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0x3f, 0xe1, 0xff, 0x03]), // table size over 4096
        frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0x00, 0x81, 0xff, 0x00]), // bad Huffman padding
        frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 3, &[200, 1, 2]), // padding past the frame
        frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, &[0x82]), // CONTINUATION alone
        [frame(FRAME_HEADERS, 0, 3, &[0x82]), frame(0x0, 0, 3, b"x")].concat(), // DATA inside a block
    ];
    for case in cases {
        let input = [start.clone(), case.clone()].concat();
        assert!(rewrite_in_reads(&input, 5).is_err(), "{case:x?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_shim_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let with_preface = [&[17u8][..], PREFACE, &data].concat();
        fuzz_authority_fix(&with_preface);
        fuzz_authority_fix(&data);
    }

    #[test]
    fn the_shim_never_panics_on_mutated_valid_streams(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        seed in any::<u8>(),
    ) {
        let mut client = fluke_hpack::Encoder::new();
        let headers: Vec<(&[u8], &[u8])> = vec![(b":authority", b"http://127.0.0.1:2379"), (b":path", b"/etcdserverpb.KV/Range")];
        let mut input = vec![seed];
        input.extend_from_slice(PREFACE);
        input.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
        for stream in [1, 3] {
            let block = client.encode(headers.clone());
            input.extend(frame(FRAME_HEADERS, FLAG_PRIORITY, stream, &[&[0; 5][..], &block[..1]].concat()));
            input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, stream, &block[1..]));
            input.extend(frame(0x0, FLAG_END_STREAM, stream, b"\0\0\0\0\x02\x0a\x00"));
        }
        for (index, byte) in flips {
            let at = index.index(input.len());
            input[at] ^= byte;
        }
        fuzz_authority_fix(&input);
    }
}

//! A compatibility shim under the client port's HTTP/2: etcdctl 3.4 (grpc-go with a
//! `passthrough:///http://host:port` target) sends `:authority: http://host:port`, which is not
//! a valid authority. grpc-go servers (etcd) ignore it; the `h2` crate under tonic resets the
//! stream with PROTOCOL_ERROR, so `etcdctl endpoint status` against http:// endpoints fails.
//!
//! `AuthorityFix` wraps an accepted connection and looks, on the read side only, at the first
//! header block the client sends. A client whose first `:authority` is valid (every client but
//! etcdctl 3.4) gets that block and everything after it passed through untouched: decoding
//! every block cost about 6% of a member's CPU under load. A client whose first authority is
//! `scheme://host:port` (grpc-go sets it once per connection) gets every header block
//! rewritten: HPACK-decoded with the client's table (`hpack`), the scheme stripped, and
//! re-encoded without indexing, so the server's decoder needs no table of ours. The write
//! side always passes through untouched.
//!
//! What it must not do: hold more than it needs, or let input crash it. Frames stream through
//! as they arrive (a frame announcing 16 MiB costs nothing here: h2 rejects it from its
//! header); only a header block is collected, at most `HEADER_BLOCK_BYTES_MAX`. While the shim
//! is still deciding, anything it does not understand (a block it cannot decode or that is too
//! big, frames out of order) is handed to h2 exactly as the client sent it, and h2, which
//! enforces HTTP/2, answers it; once it rewrites, such input ends the connection with an I/O
//! error (HTTP/2 makes every one of them a connection error anyway).
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hpack;

// ---- limits ----

/// The most one header block may take here, its frames' headers included: twice the largest
/// header list the server accepts (`hpack::HEADER_LIST_BYTES_MAX`), which is more than any
/// encoding of such a list needs. A larger block is not ours to judge (see the module doc).
pub const HEADER_BLOCK_BYTES_MAX: usize = 2 * hpack::HEADER_LIST_BYTES_MAX;

/// How much one read takes from the socket: HTTP/2's default frame size, and the most that
/// waits in the output besides one header block.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The shim stops taking client bytes while this much waits for the server: one header block
/// can decode to 16 KiB from a few bytes (indexed references), so many small blocks in one
/// read must not all be expanded at once.
const OUT_PAUSE_BYTES: usize = READ_CHUNK_BYTES;

/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which the server (tonic) keeps: frames we emit
/// never exceed it.
const FRAME_PAYLOAD_MAX: usize = 16_384;

const _: () = assert!(HEADER_BLOCK_BYTES_MAX >= hpack::HEADER_LIST_BYTES_MAX);

// ---- HTTP/2 framing (RFC 9113 section 4 and 6) ----

/// Every HTTP/2 connection starts with this; anything else (HTTP/1.1 for /health and
/// /metrics) is passed through untouched.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_BYTES: usize = 5;

pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, rewriter: Rewriter::new() }
    }
}

/// The shim without the socket: client bytes in, bytes for the HTTP/2 server out.
/// Synchronous, so that it can be fuzzed and tested without I/O.
struct Rewriter {
    state: State,
    /// Whether the first header block showed a client that sends `scheme://` authorities.
    rewriting: bool,
    /// The header block being collected, if one is.
    block: Option<HeaderBlock>,
    /// The client's HPACK table, kept until the shim stops looking.
    decoder: Option<hpack::Decoder>,
    /// Client bytes read from the socket and not looked at yet: at most one read's worth
    /// (the socket is read only once this is empty).
    input: BytesMut,
    /// Bytes for the server not read by it yet: at most `OUT_PAUSE_BYTES` plus one step's
    /// worth (a read, or one header block).
    out: BytesMut,
}

/// Where the shim is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Comparing the first bytes with the HTTP/2 preface; this many matched so far.
    Preface { matched: usize },
    /// Between frames: collecting the 9-byte header of the next one.
    FrameHeader { header: [u8; FRAME_HEADER_BYTES], filled: usize },
    /// Inside a frame the shim does not look at: this many payload bytes still go straight through.
    Forward { remaining: usize },
    /// Inside a HEADERS or CONTINUATION frame, whose payload is being collected.
    HeaderFrame { remaining: usize },
    /// The shim has stopped looking: every byte goes through as it is.
    Passthrough,
}

/// A header block (HEADERS and its CONTINUATIONs) being collected.
#[derive(Default)]
struct HeaderBlock {
    /// The block's frames as the client sent them, headers included: what the server gets if
    /// the shim leaves the block alone. At most `HEADER_BLOCK_BYTES_MAX`.
    raw: Vec<u8>,
    /// Where the frame being collected starts in `raw`.
    frame_start: usize,
    /// From the HEADERS frame, once it is complete.
    first: Option<FirstFrame>,
    /// The HPACK fragments of the complete frames, joined.
    fragments: Vec<u8>,
}

#[derive(Clone, Copy)]
struct FirstFrame {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; PRIORITY_BYTES]>,
}

/// Why the shim cannot go on with a connection.
enum Anomaly {
    /// Input the shim does not understand: h2 judges it, if the shim can still step aside.
    Unexpected(&'static str),
    /// A header block that does not decode.
    Hpack(hpack::HpackError),
}

impl Rewriter {
    fn new() -> Self {
        Self {
            state: State::Preface { matched: 0 },
            rewriting: false,
            block: None,
            decoder: Some(hpack::Decoder::new()),
            input: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    /// Moves client bytes from `input` to `out` (what the server should read), until `out`
    /// holds `OUT_PAUSE_BYTES`: one step adds at most one header block, so a client cannot
    /// make many small blocks expand at once. An error ends the connection.
    fn process(&mut self) -> io::Result<()> {
        let mut input = std::mem::take(&mut self.input);
        let mut at = 0;
        let result = loop {
            let Some(rest) = input.get(at..).filter(|rest| !rest.is_empty()) else { break Ok(()) };
            if self.out.len() >= OUT_PAUSE_BYTES {
                break Ok(());
            }
            match self.step(rest) {
                Ok(consumed) => at += consumed,
                Err(e) => break Err(e),
            }
        };
        input.advance(at.min(input.len()));
        self.input = input;
        result
    }

    /// Takes what it can of `input` (not empty) in the current state; returns how much.
    fn step(&mut self, input: &[u8]) -> io::Result<usize> {
        match self.state {
            State::Passthrough => {
                self.out.extend_from_slice(input);
                Ok(input.len())
            }
            State::Preface { matched } => {
                let wanted = PREFACE.get(matched..).unwrap_or_default();
                let count = wanted.len().min(input.len());
                let head = input.get(..count).unwrap_or_default();
                if head != wanted.get(..count).unwrap_or_default() {
                    // Not HTTP/2 (HTTP/1.1 for /health): give back what matched so far.
                    self.out.extend_from_slice(PREFACE.get(..matched).unwrap_or_default());
                    self.pass_through();
                    return Ok(0);
                }
                self.out.extend_from_slice(head);
                let matched = matched + count;
                self.state = if matched == PREFACE.len() { next_frame() } else { State::Preface { matched } };
                Ok(count)
            }
            State::FrameHeader { mut header, filled } => {
                let count = (FRAME_HEADER_BYTES - filled).min(input.len());
                if let (Some(slot), Some(head)) = (header.get_mut(filled..filled + count), input.get(..count)) {
                    slot.copy_from_slice(head);
                }
                if filled + count < FRAME_HEADER_BYTES {
                    self.state = State::FrameHeader { header, filled: filled + count };
                } else {
                    self.on_frame_header(header)?;
                }
                Ok(count)
            }
            State::Forward { remaining } => {
                let count = remaining.min(input.len());
                self.out.extend_from_slice(input.get(..count).unwrap_or_default());
                self.state = after_payload(remaining - count, |remaining| State::Forward { remaining });
                Ok(count)
            }
            State::HeaderFrame { remaining } => {
                let count = remaining.min(input.len());
                if let Some(block) = self.block.as_mut() {
                    block.raw.extend_from_slice(input.get(..count).unwrap_or_default());
                }
                if remaining > count {
                    self.state = State::HeaderFrame { remaining: remaining - count };
                } else {
                    self.state = next_frame();
                    self.on_header_frame()?;
                }
                Ok(count)
            }
        }
    }

    fn on_frame_header(&mut self, header: [u8; FRAME_HEADER_BYTES]) -> io::Result<()> {
        let [l0, l1, l2, kind, ..] = header;
        let length = (usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2);
        if kind != FRAME_HEADERS && kind != FRAME_CONTINUATION {
            if self.block.is_some() {
                return self.give_up(&header, Anomaly::Unexpected("a frame inside a header block"));
            }
            self.out.extend_from_slice(&header);
            self.state = after_payload(length, |remaining| State::Forward { remaining });
            return Ok(());
        }
        let block = self.block.get_or_insert_with(HeaderBlock::default);
        let fits =
            block.raw.len().checked_add(FRAME_HEADER_BYTES + length).is_some_and(|n| n <= HEADER_BLOCK_BYTES_MAX);
        if !fits {
            return self.give_up(&header, Anomaly::Unexpected("header block too large"));
        }
        block.frame_start = block.raw.len();
        block.raw.extend_from_slice(&header);
        if length == 0 {
            self.state = next_frame();
            return self.on_header_frame();
        }
        self.state = State::HeaderFrame { remaining: length };
        Ok(())
    }

    /// A HEADERS or CONTINUATION frame is complete in `block.raw`: take its fragment, and
    /// finish the block if it was the last frame.
    fn on_header_frame(&mut self) -> io::Result<()> {
        let Some(block) = self.block.as_mut() else { return Ok(()) };
        let frame = block.raw.get(block.frame_start..).unwrap_or_default();
        let Some((kind, flags, stream_id, payload)) = split_frame(frame) else {
            return self.give_up(&[], Anomaly::Unexpected("short frame"));
        };
        let fragment = match (kind, block.first) {
            (FRAME_HEADERS, None) => match headers_fragment(flags, payload) {
                Some((priority, fragment)) => {
                    block.first = Some(FirstFrame { stream_id, flags, priority });
                    fragment
                }
                None => return self.give_up(&[], Anomaly::Unexpected("bad padding or priority")),
            },
            (FRAME_CONTINUATION, Some(first)) if first.stream_id == stream_id => payload,
            _ => return self.give_up(&[], Anomaly::Unexpected("CONTINUATION out of place")),
        };
        block.fragments.extend_from_slice(fragment);
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        let Some(block) = self.block.take() else { return Ok(()) };
        self.on_header_block(block)
    }

    /// Decodes a complete block, fixes `:authority`, and writes the block on; or, for the
    /// first block of a client that needs no fix, writes it unchanged and steps aside.
    fn on_header_block(&mut self, block: HeaderBlock) -> io::Result<()> {
        let Some(first) = block.first else { return Ok(()) };
        let Some(decoder) = self.decoder.as_mut() else { return Ok(()) };
        let mut fields = match decoder.decode(&block.fragments) {
            Ok(fields) => fields,
            Err(e) => {
                self.block = Some(block);
                return self.give_up(&[], Anomaly::Hpack(e));
            }
        };
        let mut fixed = false;
        for (name, value) in fields.iter_mut() {
            if name.as_slice() == b":authority" {
                if let Some(at) = value.windows(3).position(|w| w == b"://") {
                    value.drain(..at + 3);
                    fixed = true;
                }
            }
        }
        if !fixed && !self.rewriting {
            // The server's decoder sees exactly the client's blocks from the first one on, so
            // their tables agree without us in between.
            self.out.extend_from_slice(&block.raw);
            self.pass_through();
            return Ok(());
        }
        self.rewriting = true;
        let mut encoded = Vec::new();
        hpack::encode_plain(&fields, &mut encoded);
        self.write_block(first, &encoded);
        Ok(())
    }

    /// Input the shim cannot handle. Still deciding: the client's bytes (the block so far and
    /// `pending`, a frame header not yet written) go to h2 as they are, and the shim steps
    /// aside. Rewriting: the server's view of the stream no longer matches the client's, so
    /// the connection ends.
    fn give_up(&mut self, pending: &[u8], anomaly: Anomaly) -> io::Result<()> {
        if self.rewriting {
            let what = match anomaly {
                Anomaly::Unexpected(what) => what.to_string(),
                Anomaly::Hpack(e) => e.to_string(),
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP/2 from client: {what}")));
        }
        if let Some(block) = self.block.take() {
            self.out.extend_from_slice(&block.raw);
        }
        self.out.extend_from_slice(pending);
        // A frame header just handed over is followed by its payload: it goes through too.
        self.pass_through();
        Ok(())
    }

    /// From here on every byte goes through untouched; the shim's buffers are freed.
    fn pass_through(&mut self) {
        self.state = State::Passthrough;
        self.block = None;
        self.decoder = None;
    }

    /// Writes a header block as HEADERS (+ CONTINUATION) frames within the frame size.
    fn write_block(&mut self, first: FirstFrame, encoded: &[u8]) {
        let mut payload = Vec::with_capacity(PRIORITY_BYTES + encoded.len().min(FRAME_PAYLOAD_MAX));
        if let Some(fields) = first.priority {
            payload.extend_from_slice(&fields);
        }
        let room = FRAME_PAYLOAD_MAX - payload.len();
        let (head, mut rest) = encoded.split_at(encoded.len().min(room));
        payload.extend_from_slice(head);
        let mut flags = first.flags & (FLAG_END_STREAM | FLAG_PRIORITY);
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        self.write_frame(FRAME_HEADERS, flags, first.stream_id, &payload);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX));
            rest = tail;
            let end = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
            self.write_frame(FRAME_CONTINUATION, end, first.stream_id, chunk);
        }
    }

    fn write_frame(&mut self, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
        // <= FRAME_PAYLOAD_MAX by construction, so it fits HTTP/2's 24-bit length.
        let length = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes();
        self.out.extend_from_slice(&length[1..]);
        self.out.extend_from_slice(&[kind, flags]);
        self.out.extend_from_slice(&stream_id.to_be_bytes());
        self.out.extend_from_slice(payload);
    }
}

/// The state after a frame's payload of `remaining` bytes: more payload, or the next frame.
fn after_payload(remaining: usize, more: impl FnOnce(usize) -> State) -> State {
    if remaining == 0 {
        next_frame()
    } else {
        more(remaining)
    }
}

fn next_frame() -> State {
    State::FrameHeader { header: [0; FRAME_HEADER_BYTES], filled: 0 }
}

/// A whole frame: (type, flags, stream id, payload).
fn split_frame(frame: &[u8]) -> Option<(u8, u8, u32, &[u8])> {
    let (header, payload) = frame.split_at_checked(FRAME_HEADER_BYTES)?;
    let [_, _, _, kind, flags, s0, s1, s2, s3] = *header else { return None };
    let stream_id = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
    Some((kind, flags, stream_id, payload))
}

/// A HEADERS frame's priority fields and HPACK fragment, without its padding; `None` when the
/// padding or priority does not fit the frame.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; PRIORITY_BYTES]>, &[u8])> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&pad_length, rest) = body.split_first()?;
        pad = usize::from(pad_length);
        body = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (fields, rest) = body.split_first_chunk::<PRIORITY_BYTES>()?;
        priority = Some(*fields);
        body = rest;
    }
    let fragment = body.get(..body.len().checked_sub(pad)?)?;
    Some((priority, fragment))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let rewriter = &mut this.rewriter;
        loop {
            if !rewriter.out.is_empty() {
                let count = rewriter.out.len().min(buf.remaining());
                buf.put_slice(rewriter.out.get(..count).unwrap_or_default());
                rewriter.out.advance(count);
                if rewriter.out.is_empty() {
                    // Give back the memory of a burst (a flushed header block).
                    rewriter.out = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if !rewriter.input.is_empty() {
                rewriter.process()?;
                continue;
            }
            if rewriter.state == State::Passthrough {
                rewriter.input = BytesMut::new();
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
            let filled = chunk_buf.filled();
            if filled.is_empty() {
                // EOF: whatever is left is an incomplete frame; the server sees the close.
                return Poll::Ready(Ok(()));
            }
            rewriter.input.extend_from_slice(filled);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Fuzzing entry point: the shim fed `data` as a client's bytes, in reads of sizes taken from
/// the data itself. Must never panic; checks that the shim never holds more than its bounds.
#[doc(hidden)]
pub fn fuzz_authority_fix(data: &[u8]) {
    let Some((&seed, mut rest)) = data.split_first() else { return };
    let mut rewriter = Rewriter::new();
    let mut read = 0usize;
    while !rest.is_empty() {
        // Read sizes vary with the seed and the read's number, so frames split at every point.
        let size = (usize::from(seed).wrapping_mul(read.wrapping_add(7)) % READ_CHUNK_BYTES).max(1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        read = read.wrapping_add(1);
        rewriter.input.extend_from_slice(chunk);
        while !rewriter.input.is_empty() {
            if rewriter.process().is_err() {
                return;
            }
            let held = rewriter.block.as_ref().map_or(0, |block| block.raw.len());
            assert!(held <= HEADER_BLOCK_BYTES_MAX, "held a header block of {held} bytes");
            let waiting = rewriter.out.len();
            assert!(
                waiting <= OUT_PAUSE_BYTES + HEADER_BLOCK_BYTES_MAX + READ_CHUNK_BYTES,
                "{waiting} bytes for the server"
            );
            rewriter.out.clear();
        }
    }
}

#[cfg(test)]
mod tests;

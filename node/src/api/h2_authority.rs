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
//! rewritten: HPACK-decoded with the client's table, the scheme stripped, and re-encoded with
//! our own table (the server's decoder then follows ours). All other frames and the whole
//! write side pass through untouched. It never panics on input: a malformed frame or header
//! block ends the connection with an I/O error, which is what h2 would do.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which the server (tonic) keeps: frames we emit
/// never exceed it.
const FRAME_PAYLOAD_MAX: usize = 16_384;
/// A header block larger than this (across CONTINUATION frames) ends the connection: bounds
/// what one client can make us buffer.
const HEADER_BLOCK_BYTES_MAX: usize = 1 << 20;
/// Largest frame we accept from a client; h2 would refuse larger ones anyway.
const FRAME_BYTES_MAX: usize = 1 << 24;

/// A header block split over HEADERS and CONTINUATION frames, still being collected.
struct PendingHeaders {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

pub struct AuthorityFix<S> {
    inner: S,
    /// Bytes read from the socket, not yet parsed into frames.
    raw: BytesMut,
    /// Frames ready for the HTTP/2 server.
    out: BytesMut,
    preface_seen: bool,
    /// Not HTTP/2, or a client whose authority needs no fix: every byte goes through as it is.
    passthrough: bool,
    /// Set once the first header block showed this client sends `scheme://` authorities.
    rewriting: bool,
    /// A HEADERS frame waiting for its CONTINUATION frames.
    pending: Option<PendingHeaders>,
    decoder: fluke_hpack::Decoder<'static>,
    encoder: fluke_hpack::Encoder<'static>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            raw: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::new(),
            preface_seen: false,
            passthrough: false,
            rewriting: false,
            pending: None,
            decoder: fluke_hpack::Decoder::new(),
            encoder: fluke_hpack::Encoder::new(),
        }
    }

    /// Moves every complete frame from `raw` to `out`, rewriting header blocks.
    fn process(&mut self) -> io::Result<()> {
        if !self.preface_seen && !self.passthrough {
            let seen = self.raw.len().min(PREFACE.len());
            if self.raw[..seen] != PREFACE[..seen] {
                self.passthrough = true;
            } else if seen < PREFACE.len() {
                return Ok(());
            } else {
                self.out.extend_from_slice(&self.raw.split_to(PREFACE.len()));
                self.preface_seen = true;
            }
        }
        if self.passthrough {
            let all = self.raw.split();
            self.out.extend_from_slice(&all);
            return Ok(());
        }
        while self.raw.len() >= FRAME_HEADER_BYTES {
            if self.passthrough {
                // Decided on the first header block: the rest goes through untouched.
                let rest = self.raw.split();
                self.out.extend_from_slice(&rest);
                return Ok(());
            }
            let length = (usize::from(self.raw[0]) << 16) | (usize::from(self.raw[1]) << 8) | usize::from(self.raw[2]);
            if length > FRAME_BYTES_MAX {
                return Err(malformed("frame too large"));
            }
            if self.raw.len() < FRAME_HEADER_BYTES + length {
                return Ok(());
            }
            let frame = self.raw.split_to(FRAME_HEADER_BYTES + length);
            let (kind, flags) = (frame[3], frame[4]);
            let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            let payload = &frame[FRAME_HEADER_BYTES..];
            match kind {
                FRAME_HEADERS => self.on_headers(stream_id, flags, payload)?,
                FRAME_CONTINUATION => self.on_continuation(stream_id, flags, payload)?,
                _ if self.pending.is_some() => return Err(malformed("frame interleaved with a header block")),
                _ => self.out.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn on_headers(&mut self, stream_id: u32, flags: u8, payload: &[u8]) -> io::Result<()> {
        if self.pending.is_some() {
            return Err(malformed("HEADERS inside a header block"));
        }
        let mut body = payload;
        let mut pad = 0usize;
        if flags & FLAG_PADDED != 0 {
            let (&pad_len, rest) = body.split_first().ok_or_else(|| malformed("missing pad length"))?;
            pad = usize::from(pad_len);
            body = rest;
        }
        let mut priority = None;
        if flags & FLAG_PRIORITY != 0 {
            let fields: [u8; 5] =
                body.get(..5).and_then(|p| p.try_into().ok()).ok_or_else(|| malformed("short priority"))?;
            priority = Some(fields);
            body = &body[5..];
        }
        let block_len = body.len().checked_sub(pad).ok_or_else(|| malformed("padding exceeds frame"))?;
        let block = body[..block_len].to_vec();
        if flags & FLAG_END_HEADERS != 0 {
            self.emit_headers(stream_id, flags, priority, &block)
        } else {
            self.pending = Some(PendingHeaders { stream_id, flags, priority, block });
            Ok(())
        }
    }

    fn on_continuation(&mut self, stream_id: u32, flags: u8, payload: &[u8]) -> io::Result<()> {
        let Some(PendingHeaders { stream_id: pending_stream, flags: header_flags, priority, mut block }) =
            self.pending.take()
        else {
            return Err(malformed("CONTINUATION without HEADERS"));
        };
        if pending_stream != stream_id {
            return Err(malformed("CONTINUATION on another stream"));
        }
        block.extend_from_slice(payload);
        if block.len() > HEADER_BLOCK_BYTES_MAX {
            return Err(malformed("header block too large"));
        }
        if flags & FLAG_END_HEADERS != 0 {
            self.emit_headers(stream_id, header_flags, priority, &block)
        } else {
            self.pending = Some(PendingHeaders { stream_id, flags: header_flags, priority, block });
            Ok(())
        }
    }

    /// Decodes `block`, fixes `:authority`, re-encodes it and writes HEADERS (+ CONTINUATION);
    /// or, for the first block of a client that needs no fix, writes it unchanged and lets the
    /// rest of the connection through.
    fn emit_headers(&mut self, stream_id: u32, flags: u8, priority: Option<[u8; 5]>, block: &[u8]) -> io::Result<()> {
        let mut headers = self.decoder.decode(block).map_err(|e| malformed(&format!("HPACK: {e:?}")))?;
        let mut fixed = false;
        for (name, value) in headers.iter_mut() {
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
            self.write_block(stream_id, flags, priority, block);
            self.passthrough = true;
            return Ok(());
        }
        self.rewriting = true;
        let encoded = self.encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        self.write_block(stream_id, flags, priority, &encoded);
        Ok(())
    }

    /// Writes a header block as HEADERS (+ CONTINUATION) frames within the frame size.
    fn write_block(&mut self, stream_id: u32, flags: u8, priority: Option<[u8; 5]>, encoded: &[u8]) {
        let mut first = Vec::with_capacity(5 + encoded.len().min(FRAME_PAYLOAD_MAX));
        if let Some(fields) = priority {
            first.extend_from_slice(&fields);
        }
        let first_room = FRAME_PAYLOAD_MAX - first.len();
        let (head, mut rest) = encoded.split_at(encoded.len().min(first_room));
        first.extend_from_slice(head);
        let mut header_flags = flags & (FLAG_END_STREAM | FLAG_PRIORITY);
        if rest.is_empty() {
            header_flags |= FLAG_END_HEADERS;
        }
        self.write_frame(FRAME_HEADERS, header_flags, stream_id, &first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX));
            rest = tail;
            let end = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
            self.write_frame(FRAME_CONTINUATION, end, stream_id, chunk);
        }
    }

    fn write_frame(&mut self, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
        let length = payload.len() as u32; // <= FRAME_PAYLOAD_MAX by construction
        self.out.put_slice(&length.to_be_bytes()[1..]);
        self.out.put_u8(kind);
        self.out.put_u8(flags);
        self.out.put_u32(stream_id);
        self.out.put_slice(payload);
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP/2 from client: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
            let filled = chunk_buf.filled();
            if filled.is_empty() {
                // EOF: whatever is left is an incomplete frame; the server sees the close.
                return Poll::Ready(Ok(()));
            }
            this.raw.extend_from_slice(filled);
            this.process()?;
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

impl tonic::transport::server::Connected for AuthorityFix<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream_id.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    async fn rewrite(input: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut fix = AuthorityFix::new(&input[..]);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn strips_the_scheme_from_authority_and_keeps_other_frames() {
        let mut client = fluke_hpack::Encoder::new();
        let headers: Vec<(&[u8], &[u8])> =
            vec![(b":method", b"POST"), (b":authority", b"http://127.0.0.1:2379"), (b":path", b"/x")];
        let block = client.encode(headers);
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(FRAME_HEADERS, FLAG_END_STREAM, 1, &block[..3]));
        input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &block[3..]));
        input.extend(frame(0x0, FLAG_END_STREAM, 1, b"data"));
        let out = rewrite(input).await.expect("valid input");
        assert_eq!(&out[..24], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
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
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
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
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for stream in [1, 3] {
            input.extend(frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                stream,
                &client.encode(headers.clone()),
            ));
        }
        let out = rewrite(input).await.expect("valid input");
        let mut server = fluke_hpack::Decoder::new();
        let mut at = 24;
        for _ in [1, 3] {
            let length = (usize::from(out[at + 1]) << 8) | usize::from(out[at + 2]);
            let decoded = server.decode(&out[at + 9..at + 9 + length]).expect("decodes");
            assert!(decoded.contains(&(b":authority".to_vec(), b"127.0.0.1:2379".to_vec())), "{decoded:?}");
            at += 9 + length;
        }
        assert_eq!(at, out.len());
    }

    #[tokio::test]
    async fn http1_passes_through_untouched() {
        let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(rewrite(request.clone()).await.expect("passes"), request);
        assert_eq!(rewrite(b"GET /".to_vec()).await.expect("short request passes"), b"GET /");
    }

    #[tokio::test]
    async fn garbage_ends_the_connection_without_panicking() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 1, &[200, 1, 2]));
        assert!(rewrite(input).await.is_err());
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]));
        assert!(rewrite(input).await.is_err());
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[1]));
        assert!(rewrite(input).await.is_err());
    }
}

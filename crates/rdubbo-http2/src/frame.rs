//! HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte header, parsing a payload into a
//! [`Frame`] and writing frames into an output buffer.

use bytes::{BufMut, Bytes};

/// The connection preface a client sends first.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Size of a frame header.
pub const HEADER_LEN: usize = 9;
/// The default and smallest SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest window (2^31 - 1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The initial window of every stream and of the connection before SETTINGS.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Frame types.
pub mod kind {
    /// DATA
    pub const DATA: u8 = 0x0;
    /// HEADERS
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING
    pub const PING: u8 = 0x6;
    /// GOAWAY
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS)
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING)
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION)
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS)
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS)
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS identifiers.
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_INITIAL_WINDOW_SIZE
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// An HTTP/2 error code (RFC 9113 section 7).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    /// NO_ERROR
    pub const NO_ERROR: Reason = Reason(0x0);
    /// PROTOCOL_ERROR
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    /// INTERNAL_ERROR
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    /// FLOW_CONTROL_ERROR
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    /// SETTINGS_TIMEOUT
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    /// STREAM_CLOSED
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    /// FRAME_SIZE_ERROR
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    /// REFUSED_STREAM
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    /// CANCEL
    pub const CANCEL: Reason = Reason(0x8);
    /// COMPRESSION_ERROR
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    /// CONNECT_ERROR
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    /// ENHANCE_YOUR_CALM
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    /// INADEQUATE_SECURITY
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    /// HTTP_1_1_REQUIRED
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    /// The code's name, if it is one RFC 9113 defines.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

impl std::fmt::Debug for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "error code {:#x}", self.0),
        }
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length.
    pub len: u32,
    /// Frame type ([`kind`]).
    pub kind: u8,
    /// Flags ([`flag`]).
    pub flags: u8,
    /// Stream identifier (reserved bit cleared).
    pub stream: u32,
}

impl FrameHeader {
    /// Parses the first 9 bytes of `b` (`None` if shorter).
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }
}

/// Why a frame is malformed: always a connection error with `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct FrameError {
    /// The GOAWAY code.
    pub reason: Reason,
    /// What was wrong.
    pub message: &'static str,
}

fn err(reason: Reason, message: &'static str) -> FrameError {
    FrameError { reason, message }
}

/// A parsed frame. Payload bytes share the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA. `flow_len` is the whole payload length (padding included) that counts
    /// against flow control.
    Data {
        /// Stream.
        stream: u32,
        /// The data, without padding.
        data: Bytes,
        /// END_STREAM.
        end_stream: bool,
        /// Length counted by flow control.
        flow_len: u32,
    },
    /// HEADERS (the header block fragment, without padding or priority).
    Headers {
        /// Stream.
        stream: u32,
        /// The header block fragment.
        block: Bytes,
        /// END_STREAM.
        end_stream: bool,
        /// END_HEADERS.
        end_headers: bool,
    },
    /// PRIORITY (ignored, RFC 9113 deprecates it).
    Priority {
        /// Stream.
        stream: u32,
    },
    /// RST_STREAM.
    RstStream {
        /// Stream.
        stream: u32,
        /// Error code.
        reason: Reason,
    },
    /// SETTINGS (`params` holds the raw 6-byte entries; see [`settings_iter`]).
    Settings {
        /// ACK flag.
        ack: bool,
        /// The entries.
        params: Bytes,
    },
    /// PUSH_PROMISE (refused: push is disabled).
    PushPromise {
        /// Stream.
        stream: u32,
    },
    /// PING.
    Ping {
        /// ACK flag.
        ack: bool,
        /// Opaque data.
        payload: [u8; 8],
    },
    /// GOAWAY.
    GoAway {
        /// Last stream the sender processed.
        last_stream: u32,
        /// Error code.
        reason: Reason,
        /// Debug data.
        debug: Bytes,
    },
    /// WINDOW_UPDATE.
    WindowUpdate {
        /// Stream (0: the connection).
        stream: u32,
        /// Increment (may be 0: the caller decides, it is a stream or connection error).
        increment: u32,
    },
    /// CONTINUATION.
    Continuation {
        /// Stream.
        stream: u32,
        /// The header block fragment.
        block: Bytes,
        /// END_HEADERS.
        end_headers: bool,
    },
    /// A frame of an unknown type (ignored, RFC 9113 section 4.1).
    Unknown {
        /// Its type.
        kind: u8,
    },
}

/// Strips padding from a PADDED payload.
fn unpad(flags: u8, mut payload: Bytes) -> Result<Bytes, FrameError> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let Some(&pad) = payload.first() else {
        return Err(err(
            Reason::FRAME_SIZE_ERROR,
            "padded frame without pad length",
        ));
    };
    let pad = pad as usize;
    if pad + 1 > payload.len() {
        return Err(err(
            Reason::PROTOCOL_ERROR,
            "padding longer than the payload",
        ));
    }
    let end = payload.len() - pad;
    payload.truncate(end);
    Ok(payload.slice(1..))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Frame {
    /// Parses a frame from its header and its whole payload (`payload.len() == h.len`).
    pub fn parse(h: FrameHeader, payload: Bytes) -> Result<Frame, FrameError> {
        let need_stream = |s: u32| {
            if s == 0 {
                Err(err(Reason::PROTOCOL_ERROR, "frame needs a stream"))
            } else {
                Ok(s)
            }
        };
        let no_stream = |s: u32| {
            if s != 0 {
                Err(err(Reason::PROTOCOL_ERROR, "connection frame on a stream"))
            } else {
                Ok(())
            }
        };
        Ok(match h.kind {
            kind::DATA => {
                let stream = need_stream(h.stream)?;
                Frame::Data {
                    stream,
                    flow_len: h.len,
                    data: unpad(h.flags, payload)?,
                    end_stream: h.flags & flag::END_STREAM != 0,
                }
            }
            kind::HEADERS => {
                let stream = need_stream(h.stream)?;
                let mut block = unpad(h.flags, payload)?;
                if h.flags & flag::PRIORITY != 0 {
                    if block.len() < 5 {
                        return Err(err(Reason::FRAME_SIZE_ERROR, "HEADERS priority truncated"));
                    }
                    if u32_at(&block, 0) & 0x7fff_ffff == stream {
                        return Err(err(Reason::PROTOCOL_ERROR, "stream depends on itself"));
                    }
                    block = block.slice(5..);
                }
                Frame::Headers {
                    stream,
                    block,
                    end_stream: h.flags & flag::END_STREAM != 0,
                    end_headers: h.flags & flag::END_HEADERS != 0,
                }
            }
            kind::PRIORITY => {
                let stream = need_stream(h.stream)?;
                if payload.len() != 5 {
                    return Err(err(Reason::FRAME_SIZE_ERROR, "PRIORITY is 5 bytes"));
                }
                Frame::Priority { stream }
            }
            kind::RST_STREAM => {
                let stream = need_stream(h.stream)?;
                if payload.len() != 4 {
                    return Err(err(Reason::FRAME_SIZE_ERROR, "RST_STREAM is 4 bytes"));
                }
                Frame::RstStream {
                    stream,
                    reason: Reason(u32_at(&payload, 0)),
                }
            }
            kind::SETTINGS => {
                no_stream(h.stream)?;
                let ack = h.flags & flag::ACK != 0;
                if ack && !payload.is_empty() {
                    return Err(err(Reason::FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
                }
                if payload.len() % 6 != 0 {
                    return Err(err(
                        Reason::FRAME_SIZE_ERROR,
                        "SETTINGS not a multiple of 6",
                    ));
                }
                Frame::Settings {
                    ack,
                    params: payload,
                }
            }
            kind::PUSH_PROMISE => Frame::PushPromise {
                stream: need_stream(h.stream)?,
            },
            kind::PING => {
                no_stream(h.stream)?;
                let payload: [u8; 8] = payload[..]
                    .try_into()
                    .map_err(|_| err(Reason::FRAME_SIZE_ERROR, "PING is 8 bytes"))?;
                Frame::Ping {
                    ack: h.flags & flag::ACK != 0,
                    payload,
                }
            }
            kind::GOAWAY => {
                no_stream(h.stream)?;
                if payload.len() < 8 {
                    return Err(err(Reason::FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes"));
                }
                Frame::GoAway {
                    last_stream: u32_at(&payload, 0) & 0x7fff_ffff,
                    reason: Reason(u32_at(&payload, 4)),
                    debug: payload.slice(8..),
                }
            }
            kind::WINDOW_UPDATE => {
                if payload.len() != 4 {
                    return Err(err(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE is 4 bytes"));
                }
                Frame::WindowUpdate {
                    stream: h.stream,
                    increment: u32_at(&payload, 0) & 0x7fff_ffff,
                }
            }
            kind::CONTINUATION => Frame::Continuation {
                stream: need_stream(h.stream)?,
                block: payload,
                end_headers: h.flags & flag::END_HEADERS != 0,
            },
            kind => Frame::Unknown { kind },
        })
    }
}

/// The (identifier, value) entries of a SETTINGS payload.
pub fn settings_iter(params: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    params
        .chunks_exact(6)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32_at(c, 2)))
}

/// Appends a frame header.
pub fn put_header(dst: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    dst.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    dst.put_u32(stream & 0x7fff_ffff);
}

/// Appends a SETTINGS frame.
pub fn put_settings(dst: &mut Vec<u8>, params: &[(u16, u32)]) {
    put_header(dst, params.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, v) in params {
        dst.put_u16(id);
        dst.put_u32(v);
    }
}

/// Appends a SETTINGS ACK.
pub fn put_settings_ack(dst: &mut Vec<u8>) {
    put_header(dst, 0, kind::SETTINGS, flag::ACK, 0);
}

/// Appends a PING (or its ACK).
pub fn put_ping(dst: &mut Vec<u8>, ack: bool, payload: [u8; 8]) {
    put_header(dst, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    dst.extend_from_slice(&payload);
}

/// Appends a WINDOW_UPDATE.
pub fn put_window_update(dst: &mut Vec<u8>, stream: u32, increment: u32) {
    put_header(dst, 4, kind::WINDOW_UPDATE, 0, stream);
    dst.put_u32(increment);
}

/// Appends a RST_STREAM.
pub fn put_rst(dst: &mut Vec<u8>, stream: u32, reason: Reason) {
    put_header(dst, 4, kind::RST_STREAM, 0, stream);
    dst.put_u32(reason.0);
}

/// Appends a GOAWAY.
pub fn put_goaway(dst: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &[u8]) {
    put_header(dst, 8 + debug.len(), kind::GOAWAY, 0, 0);
    dst.put_u32(last_stream);
    dst.put_u32(reason.0);
    dst.extend_from_slice(debug);
}

/// Appends DATA frames carrying `data` (split at `max_frame`); the last one carries
/// END_STREAM when `end_stream`. Empty `data` gives one empty frame.
pub fn put_data(dst: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = data.chunks(max_frame.max(1)).peekable();
    if chunks.peek().is_none() {
        put_header(
            dst,
            0,
            kind::DATA,
            if end_stream { flag::END_STREAM } else { 0 },
            stream,
        );
        return;
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags = if last && end_stream {
            flag::END_STREAM
        } else {
            0
        };
        put_header(dst, c.len(), kind::DATA, flags, stream);
        dst.extend_from_slice(c);
    }
}

/// Appends a HEADERS frame (and CONTINUATION frames past `max_frame`) carrying `block`.
pub fn put_headers(
    dst: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let mut chunks = block.chunks(max_frame.max(1)).peekable();
    let mut first = true;
    if chunks.peek().is_none() {
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        put_header(dst, 0, kind::HEADERS, flags, stream);
        return;
    }
    while let Some(c) = chunks.next() {
        let mut flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        let kind = if first {
            if end_stream {
                flags |= flag::END_STREAM;
            }
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        first = false;
        put_header(dst, c.len(), kind, flags, stream);
        dst.extend_from_slice(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_split_into_continuations() {
        let mut out = Vec::new();
        put_headers(&mut out, 3, &[7u8; 40], true, 16);
        let h = FrameHeader::parse(&out).unwrap();
        assert_eq!(
            (h.kind, h.flags, h.len, h.stream),
            (kind::HEADERS, flag::END_STREAM, 16, 3)
        );
        let h2 = FrameHeader::parse(&out[25..]).unwrap();
        assert_eq!((h2.kind, h2.flags), (kind::CONTINUATION, 0));
        let h3 = FrameHeader::parse(&out[50..]).unwrap();
        assert_eq!(
            (h3.kind, h3.flags, h3.len),
            (kind::CONTINUATION, flag::END_HEADERS, 8)
        );
    }

    #[test]
    fn padding_is_checked() {
        let h = FrameHeader {
            len: 3,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert!(Frame::parse(h, Bytes::from_static(&[5, 1, 2])).is_err());
        let Frame::Data { data, flow_len, .. } =
            Frame::parse(h, Bytes::from_static(&[1, 9, 0])).unwrap()
        else {
            panic!("not data")
        };
        assert_eq!((&data[..], flow_len), (&[9u8][..], 3));
    }

    proptest! {
        /// Any bytes: parsing never panics and returns payload slices, never copies.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = Bytes::from(bytes);
            while let Some(h) = FrameHeader::parse(&buf) {
                let end = HEADER_LEN + h.len as usize;
                if end > buf.len() {
                    break;
                }
                let payload = buf.slice(HEADER_LEN..end);
                if let Ok(Frame::Settings { params, .. }) = Frame::parse(h, payload) {
                    prop_assert!(settings_iter(&params).count() * 6 == params.len());
                }
                buf = buf.slice(end..);
            }
        }

        #[test]
        fn data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100), max in 1usize..40, end: bool) {
            let mut out = Vec::new();
            put_data(&mut out, 5, &data, end, max);
            let mut buf = Bytes::from(out);
            let mut got = Vec::new();
            let mut ended = false;
            while let Some(h) = FrameHeader::parse(&buf) {
                let payload = buf.slice(HEADER_LEN..HEADER_LEN + h.len as usize);
                buf = buf.slice(HEADER_LEN + h.len as usize..);
                let Frame::Data { data, end_stream, stream, .. } = Frame::parse(h, payload).unwrap() else { panic!() };
                prop_assert_eq!(stream, 5);
                prop_assert!(!ended);
                ended = end_stream;
                got.extend_from_slice(&data);
            }
            prop_assert_eq!(got, data);
            prop_assert_eq!(ended, end);
        }
    }
}

//! The pure codec: the 16-byte header, request and response bodies, events, and the
//! generic (`$invoke`) form of values.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::{Deref, Range};

mod request;
mod response;
#[cfg(test)]
mod tests;

pub use request::{decode_request_body, encode_request_body, parse_descriptor, RequestBody};
pub(crate) use request::{encode_request, static_descriptor};
pub(crate) use response::decode_response;
pub use response::{
    decode_response_body, encode_response_body, generalize, realize, supports_response_attachments,
    ResponseBody,
};

/// Magic bytes that open every frame.
pub const MAGIC: [u8; 2] = [0xda, 0xbb];
/// Header length.
pub const HEADER_LEN: usize = 16;
/// Flag: the frame is a request.
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag: the request expects a response.
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag: the frame is an event (heartbeat, readonly).
pub const FLAG_EVENT: u8 = 0x20;
/// Mask of the serialization id in the flags byte.
pub const SERIALIZATION_MASK: u8 = 0x1f;
/// Serialization id of Hessian2.
pub const HESSIAN2: u8 = 2;
/// Default limit of a frame body (8 MiB), as Java Dubbo's `payload`.
pub const DEFAULT_PAYLOAD: usize = 8 * 1024 * 1024;
/// The Dubbo protocol version this implementation speaks.
pub const DUBBO_VERSION: &str = "2.0.2";
/// Body of the readonly event a provider sends when it starts shutting down.
pub const READONLY_EVENT: &str = "R";

/// Response status codes.
pub mod status {
    /// OK.
    pub const OK: u8 = 20;
    /// Serialization not supported.
    pub const SERIALIZATION_ERROR: u8 = 25;
    /// Client-side timeout.
    pub const CLIENT_TIMEOUT: u8 = 30;
    /// Server-side timeout.
    pub const SERVER_TIMEOUT: u8 = 31;
    /// Channel inactive.
    pub const CHANNEL_INACTIVE: u8 = 35;
    /// Request format error.
    pub const BAD_REQUEST: u8 = 40;
    /// Response format error.
    pub const BAD_RESPONSE: u8 = 50;
    /// Service not found.
    pub const SERVICE_NOT_FOUND: u8 = 60;
    /// Service error.
    pub const SERVICE_ERROR: u8 = 70;
    /// Internal server error.
    pub const SERVER_ERROR: u8 = 80;
    /// Client error.
    pub const CLIENT_ERROR: u8 = 90;
    /// The provider's thread pool (here: its pending-request limit) is exhausted.
    pub const SERVER_THREADPOOL_EXHAUSTED_ERROR: u8 = 100;
}

/// Response body flags.
pub mod response_flag {
    /// The body holds an exception.
    pub const EXCEPTION: i32 = 0;
    /// The body holds a value.
    pub const VALUE: i32 = 1;
    /// The result is null.
    pub const NULL_VALUE: i32 = 2;
    /// Exception, then attachments.
    pub const EXCEPTION_WITH_ATTACHMENTS: i32 = 3;
    /// Value, then attachments.
    pub const VALUE_WITH_ATTACHMENTS: i32 = 4;
    /// Null, then attachments.
    pub const NULL_VALUE_WITH_ATTACHMENTS: i32 = 5;
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flags byte: request/two-way/event bits and the serialization id.
    pub flags: u8,
    /// Status (responses).
    pub status: u8,
    /// Request id.
    pub id: i64,
    /// Body length.
    pub len: usize,
}

/// Why a header is refused. A bad header means the stream is out of sync: the connection
/// is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The first two bytes are not `0xdabb`.
    BadMagic([u8; 2]),
    /// A negative body length.
    NegativeLength(i32),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::BadMagic(m) => {
                write!(f, "bad magic 0x{:02x}{:02x} (want 0xdabb)", m[0], m[1])
            }
            HeaderError::NegativeLength(n) => write!(f, "negative body length {n}"),
        }
    }
}

impl Header {
    /// Parses a header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        if b[..2] != MAGIC {
            return Err(HeaderError::BadMagic([b[0], b[1]]));
        }
        let len = i32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        if len < 0 {
            return Err(HeaderError::NegativeLength(len));
        }
        Ok(Header {
            flags: b[2],
            status: b[3],
            id: i64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]),
            len: len as usize,
        })
    }

    /// Writes the header.
    pub fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&MAGIC);
        out[2] = self.flags;
        out[3] = self.status;
        out[4..12].copy_from_slice(&self.id.to_be_bytes());
        out[12..16].copy_from_slice(&(self.len as u32).to_be_bytes());
    }

    /// A request.
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }
    /// A two-way request.
    pub fn is_two_way(&self) -> bool {
        self.flags & FLAG_TWO_WAY != 0
    }
    /// An event.
    pub fn is_event(&self) -> bool {
        self.flags & FLAG_EVENT != 0
    }
    /// The serialization id.
    pub fn serialization(&self) -> u8 {
        self.flags & SERIALIZATION_MASK
    }
}

/// Starts a frame in `out`: a header with a zero length, to be fixed by [`finish_frame`].
pub fn begin_frame(out: &mut Vec<u8>, flags: u8, status: u8, id: i64) -> usize {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    Header {
        flags,
        status,
        id,
        len: 0,
    }
    .write(&mut out[start..]);
    start
}

/// Writes the body length of the frame that starts at `start`; the body is everything
/// after its header. Returns the body length.
pub fn finish_frame(out: &mut [u8], start: usize) -> usize {
    let len = out.len() - start - HEADER_LEN;
    out[start + 12..start + 16].copy_from_slice(&(len as u32).to_be_bytes());
    len
}

/// A heartbeat: a two-way event request whose body is Hessian null.
pub fn heartbeat_request(id: i64) -> Vec<u8> {
    null_event(FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2, 0, id)
}

/// The answer to the heartbeat (or other two-way event) `id`.
pub fn heartbeat_response(id: i64) -> Vec<u8> {
    null_event(FLAG_EVENT | HESSIAN2, status::OK, id)
}

fn null_event(flags: u8, status: u8, id: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 1);
    let start = begin_frame(&mut out, flags, status, id);
    out.push(b'N');
    finish_frame(&mut out, start);
    out
}

/// Text of a request body: borrowed from the body when it is one chunk of ASCII (as
/// names, versions, descriptors and most attachments are), else decoded into a string of
/// its own. Reads as a `&str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as a string of its own.
    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }

    /// Part `range` of the text (which must fall on character boundaries).
    fn slice(&self, range: Range<usize>) -> Text<'a> {
        match &self.0 {
            Cow::Borrowed(s) => Text(Cow::Borrowed(&s[range])),
            Cow::Owned(s) => Text(Cow::Owned(s[range].to_string())),
        }
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> From<Cow<'a, str>> for Text<'a> {
    fn from(s: Cow<'a, str>) -> Text<'a> {
        Text(s)
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Text<'a> {
        Text(Cow::Borrowed(s))
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text(Cow::Owned(s))
    }
}

impl From<Text<'_>> for String {
    fn from(t: Text<'_>) -> String {
        t.into_owned()
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Text<'_> {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

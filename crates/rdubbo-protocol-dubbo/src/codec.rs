//! The pure codec: the 16-byte header, request and response bodies, events, and the
//! generic (`$invoke`) form of values.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::{Deref, Range};

use bytes::Bytes;
use rdubbo_core::{Args, HessianArgs, Reply};
use rdubbo_hessian::{Decoder, Encoder, Map, Value as HValue};

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

/// A decoded request body. Its texts borrow from the body they were decoded from.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody<'a> {
    /// Dubbo protocol version of the caller (`2.0.2`).
    pub dubbo_version: Text<'a>,
    /// Service path (interface name).
    pub path: Text<'a>,
    /// Service version (None for none, empty or `0.0.0`).
    pub version: Option<Text<'a>>,
    /// Method name.
    pub method: String,
    /// Parameter types, JVM descriptors.
    pub parameter_types: Vec<Text<'a>>,
    /// Arguments, still in Hessian2 (decoded by whoever serves the call).
    pub args: Args,
    /// Attachments, values as text.
    pub attachments: Vec<(Text<'a>, Text<'a>)>,
}

impl RequestBody<'_> {
    /// The attachment `key`.
    pub fn attachment(&self, key: &str) -> Option<&str> {
        self.attachments
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The service path: the `interface` attachment when present, else the path field.
    pub fn service(&self) -> &str {
        self.attachment("interface")
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.path)
    }
}

/// Calls `each` with the range of every parameter descriptor of a JVM method descriptor's
/// parameter list (`Ljava/lang/String;I[J`).
fn split_descriptor(desc: &str, mut each: impl FnMut(Range<usize>)) -> Result<(), String> {
    let b = desc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] == b'[' {
            i += 1;
        }
        match b.get(i) {
            Some(b'Z' | b'B' | b'C' | b'S' | b'I' | b'J' | b'F' | b'D' | b'V') => i += 1,
            Some(b'L') => match desc[i..].find(';') {
                Some(end) => i += end + 1,
                None => return Err(format!("unterminated class name in descriptor `{desc}`")),
            },
            _ => return Err(format!("bad parameter descriptor `{desc}` at {start}")),
        }
        each(start..i);
    }
    Ok(())
}

/// Splits a JVM method descriptor's parameter list (`Ljava/lang/String;I[J`) into one
/// descriptor per parameter.
pub fn parse_descriptor(desc: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    split_descriptor(desc, |r| out.push(desc[r].to_string()))?;
    Ok(out)
}

/// A parameter descriptor as an invocation carries it: the common ones (primitives, boxes,
/// strings, collections, dates, decimals) without an allocation.
pub(crate) fn static_descriptor(d: &str) -> Cow<'static, str> {
    const COMMON: &[&str] = &[
        "Ljava/lang/String;",
        "J",
        "I",
        "Z",
        "D",
        "Ljava/lang/Long;",
        "Ljava/lang/Integer;",
        "Ljava/lang/Object;",
        "Ljava/util/Map;",
        "Ljava/util/List;",
        "Ljava/lang/Boolean;",
        "Ljava/lang/Double;",
        "[Ljava/lang/String;",
        "[Ljava/lang/Object;",
        "Ljava/util/Set;",
        "Ljava/util/Collection;",
        "Ljava/util/Date;",
        "Ljava/math/BigDecimal;",
        "Ljava/math/BigInteger;",
        "[B",
        "B",
        "S",
        "C",
        "F",
        "Ljava/lang/Float;",
        "Ljava/lang/Short;",
        "Ljava/lang/Byte;",
        "Ljava/lang/Character;",
    ];
    match COMMON.iter().find(|c| **c == d) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(d.to_string()),
    }
}

fn text_of(v: &HValue) -> String {
    match v {
        HValue::String(s) => s.clone(),
        HValue::Null => String::new(),
        HValue::Bool(b) => b.to_string(),
        HValue::Int(i) => i.to_string(),
        HValue::Long(l) => l.to_string(),
        HValue::Double(d) => d.to_string(),
        other => rdubbo_core::json::from_value(other).to_string(),
    }
}

/// An attachment key or value: a string as it is (borrowed when it can be), anything else
/// as text.
fn read_text<'a>(d: &mut Decoder<'a>) -> Result<Text<'a>, String> {
    match d.try_read_str().map_err(|e| e.to_string())? {
        Some(s) => Ok(Text(s)),
        None => Ok(Text(Cow::Owned(text_of(
            &d.read_value().map_err(|e| e.to_string())?,
        )))),
    }
}

/// Reads the attachments map (absent or null: none).
fn read_attachments<'a>(d: &mut Decoder<'a>) -> Result<Vec<(Text<'a>, Text<'a>)>, String> {
    if d.is_at_end() {
        return Ok(Vec::new());
    }
    if let Some(map) = d.begin_map().map_err(|e| e.to_string())? {
        let mut out = Vec::with_capacity(8);
        while !d.end_map(&map).map_err(|e| e.to_string())? {
            let k = read_text(d)?;
            let v = read_text(d)?;
            out.push((k, v));
        }
        return Ok(out);
    }
    match d.read_value().map_err(|e| e.to_string())? {
        HValue::Null => Ok(Vec::new()),
        other => Err(format!("attachments are not a map: {other:?}")),
    }
}

/// Steps over the attachments map (absent or null: none), checking it as
/// [`read_attachments`] does.
fn skip_attachments(d: &mut Decoder<'_>) -> Result<(), String> {
    if d.is_at_end() {
        return Ok(());
    }
    if let Some(map) = d.begin_map().map_err(|e| e.to_string())? {
        while !d.end_map(&map).map_err(|e| e.to_string())? {
            d.skip_value().map_err(|e| e.to_string())?;
            d.skip_value().map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    match d.read_value().map_err(|e| e.to_string())? {
        HValue::Null => Ok(()),
        other => Err(format!("attachments are not a map: {other:?}")),
    }
}

/// Decodes a request body (Hessian2). The arguments are only stepped over, to reach the
/// attachments: they stay in `body` for the service to decode into its own types. Texts
/// borrow from `body`.
pub fn decode_request_body(body: &Bytes) -> Result<RequestBody<'_>, String> {
    let mut d = Decoder::new(body);
    fn text<'a>(d: &mut Decoder<'a>, what: &str) -> Result<Text<'a>, String> {
        if let Some(s) = d.try_read_str().map_err(|e| format!("{what}: {e}"))? {
            return Ok(Text(s));
        }
        match d.read_value().map_err(|e| format!("{what}: {e}"))? {
            HValue::Null => Ok(Text::default()),
            other => Err(format!("{what} is not a string: {other:?}")),
        }
    }
    let dubbo_version = text(&mut d, "dubbo version")?;
    let path = text(&mut d, "service path")?;
    let version = text(&mut d, "service version")?;
    let method = text(&mut d, "method name")?.into_owned();
    let desc = text(&mut d, "parameter types")?;
    let mut parameter_types = Vec::new();
    split_descriptor(&desc, |r| parameter_types.push(desc.slice(r)))?;
    let start = d.position();
    for i in 0..parameter_types.len() {
        d.skip_value().map_err(|e| format!("argument {i}: {e}"))?;
    }
    let end = d.position();
    let attachments = read_attachments(&mut d)?;
    let count = parameter_types.len();
    let args = Args::Hessian(HessianArgs {
        body: body.clone(),
        start,
        end,
        count,
    });
    Ok(RequestBody {
        dubbo_version,
        path,
        version: Some(version).filter(|v| !v.is_empty() && *v != "0.0.0"),
        method,
        parameter_types,
        args,
        attachments,
    })
}

/// Writes a request body. `parameter_types` are JVM descriptors, one per argument.
pub fn encode_request_body<T: AsRef<str>>(
    e: &mut Encoder,
    path: &str,
    version: Option<&str>,
    method: &str,
    parameter_types: &[T],
    args: &Args,
    attachments: &[(&str, &str)],
) -> Result<(), String> {
    encode_request(
        e,
        path,
        version,
        method,
        parameter_types,
        args,
        attachments.iter().copied(),
    )
}

/// [`encode_request_body`] with the attachments as they come.
pub(crate) fn encode_request<'a, T: AsRef<str>>(
    e: &mut Encoder,
    path: &str,
    version: Option<&str>,
    method: &str,
    parameter_types: &[T],
    args: &Args,
    attachments: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    e.write_str(DUBBO_VERSION);
    e.write_str(path);
    e.write_str(version.unwrap_or("0.0.0"));
    e.write_str(method);
    // The descriptors as one string, assembled on the stack when it fits.
    let mut stack = [0u8; 256];
    let total: usize = parameter_types.iter().map(|t| t.as_ref().len()).sum();
    if total <= stack.len() {
        let mut at = 0;
        for t in parameter_types {
            let t = t.as_ref().as_bytes();
            stack[at..at + t.len()].copy_from_slice(t);
            at += t.len();
        }
        // Whole strings one after the other: valid UTF-8.
        e.write_str(std::str::from_utf8(&stack[..at]).map_err(|e| e.to_string())?);
    } else {
        let desc: String = parameter_types.iter().map(AsRef::as_ref).collect();
        e.write_str(&desc);
    }
    args.write_hessian(e)?;
    e.write_map_begin(None);
    for (k, v) in attachments {
        e.write_str(k);
        e.write_str(v);
    }
    e.write_end();
    Ok(())
}

/// A response body (status OK).
#[derive(Debug)]
pub enum ResponseBody {
    /// A value (or null).
    Value(Reply),
    /// An exception object.
    Exception(HValue),
}

/// Decodes the body of a response with status OK; the result stays in `body` for the
/// caller to decode into its own type. Bytes after the last value are ignored (dubbo-go
/// appends a null).
pub fn decode_response_body(body: Bytes) -> Result<(ResponseBody, Vec<(String, String)>), String> {
    decode_response(body, true)
}

/// [`decode_response_body`]; the attachments are only checked, not kept, unless `keep`.
pub(crate) fn decode_response(
    body: Bytes,
    keep: bool,
) -> Result<(ResponseBody, Vec<(String, String)>), String> {
    let mut d = Decoder::new(&body);
    let flag = d.read_int().map_err(|e| format!("response flag: {e}"))?;
    // The result of a value response is the body itself from `start` on: taken below,
    // once the attachments are read.
    let mut start = 0;
    let (result, with_attachments) = match flag {
        response_flag::NULL_VALUE | response_flag::NULL_VALUE_WITH_ATTACHMENTS => (
            Some(ResponseBody::Value(Reply::Value(HValue::Null))),
            flag == response_flag::NULL_VALUE_WITH_ATTACHMENTS,
        ),
        response_flag::VALUE | response_flag::VALUE_WITH_ATTACHMENTS => {
            start = d.position();
            d.skip_value().map_err(|e| format!("result: {e}"))?;
            (None, flag == response_flag::VALUE_WITH_ATTACHMENTS)
        }
        response_flag::EXCEPTION | response_flag::EXCEPTION_WITH_ATTACHMENTS => (
            Some(ResponseBody::Exception(
                d.read_value().map_err(|e| format!("exception: {e}"))?,
            )),
            flag == response_flag::EXCEPTION_WITH_ATTACHMENTS,
        ),
        other => return Err(format!("unknown response flag {other}")),
    };
    let attachments = match (with_attachments, keep) {
        (true, true) => read_attachments(&mut d)?
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        (true, false) => {
            skip_attachments(&mut d)?;
            Vec::new()
        }
        (false, _) => Vec::new(),
    };
    drop(d);
    let result = result.unwrap_or(ResponseBody::Value(Reply::Hessian { body, start }));
    Ok((result, attachments))
}

/// Whether a caller of this Dubbo protocol version understands responses with
/// attachments: 2.0.2 up to 2.0.99, as Java Dubbo decides (older clients send their
/// release, e.g. `2.6.2` or `2.4.10`, in this field and expect the plain flags).
pub fn supports_response_attachments(dubbo_version: &str) -> bool {
    let mut parts = dubbo_version
        .split('.')
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    let v = [
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ];
    ([2, 0, 2]..=[2, 0, 99]).contains(&v)
}

/// Writes a response body with status OK. `attachments`: `None` for a caller that does
/// not understand response attachments, else the pairs to send (`dubbo` is added).
pub fn encode_response_body(
    e: &mut Encoder,
    result: &ResponseBody,
    attachments: Option<&[(String, String)]>,
) -> Result<(), String> {
    let flag = match result {
        ResponseBody::Value(Reply::Value(HValue::Null)) => response_flag::NULL_VALUE,
        ResponseBody::Value(_) => response_flag::VALUE,
        ResponseBody::Exception(_) => response_flag::EXCEPTION,
    };
    e.write_int(if attachments.is_some() {
        flag + 3
    } else {
        flag
    });
    match result {
        ResponseBody::Value(Reply::Value(HValue::Null)) => {}
        ResponseBody::Value(r) => r.write_hessian(e)?,
        ResponseBody::Exception(x) => e.write_value(x),
    }
    if let Some(pairs) = attachments {
        e.write_map_begin(None);
        e.write_str("dubbo");
        e.write_str(DUBBO_VERSION);
        for (k, v) in pairs {
            if k != "dubbo" {
                e.write_str(k);
                e.write_str(v);
            }
        }
        e.write_end();
    }
    Ok(())
}

/// A value in Java's generic form (`PojoUtils.generalize`, what a `$invoke` caller gets):
/// objects become maps with a `class` entry, enum constants their name, `BigDecimal` and
/// `BigInteger` their text, other values stay as they are.
pub fn generalize(v: HValue) -> HValue {
    match v {
        HValue::Object(o) => {
            if let Some(text) = rdubbo_core::json::decimal_text(&o) {
                return HValue::String(text);
            }
            if let [(name, HValue::String(_))] = o.fields.as_slice() {
                if name == "name" {
                    return o
                        .fields
                        .into_iter()
                        .next()
                        .map(|(_, v)| v)
                        .unwrap_or_default();
                }
            }
            let mut entries = Vec::with_capacity(o.fields.len() + 1);
            entries.push((HValue::from("class"), HValue::String(o.class)));
            for (k, v) in o.fields {
                entries.push((HValue::String(k), generalize(v)));
            }
            HValue::Map(Map {
                type_name: None,
                entries,
            })
        }
        HValue::List(mut l) => {
            l.items = l.items.into_iter().map(generalize).collect();
            HValue::List(l)
        }
        HValue::Map(mut m) => {
            m.entries = m
                .entries
                .into_iter()
                .map(|(k, v)| (generalize(k), generalize(v)))
                .collect();
            HValue::Map(m)
        }
        other => other,
    }
}

/// A generic caller's argument (a map with a `class` entry for a POJO, as
/// `PojoUtils.realize` reads it) as the object it stands for.
pub fn realize(v: HValue) -> HValue {
    match v {
        HValue::Map(m) => {
            let class = m
                .entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("class"))
                .and_then(|(_, v)| v.as_str().map(str::to_string));
            match class {
                Some(class) if !class.starts_with("java.util.") => {
                    HValue::Object(rdubbo_hessian::Object {
                        class,
                        fields: m
                            .entries
                            .into_iter()
                            .filter(|(k, _)| k.as_str() != Some("class"))
                            .filter_map(|(k, v)| match k {
                                HValue::String(k) => Some((k, realize(v))),
                                _ => None,
                            })
                            .collect(),
                    })
                }
                _ => HValue::Map(Map {
                    type_name: m.type_name,
                    entries: m
                        .entries
                        .into_iter()
                        .map(|(k, v)| (realize(k), realize(v)))
                        .collect(),
                }),
            }
        }
        HValue::List(mut l) => {
            l.items = l.items.into_iter().map(realize).collect();
            HValue::List(l)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_attachments_by_caller_version() {
        assert!(supports_response_attachments("2.0.2"));
        assert!(supports_response_attachments("2.0.10"));
        assert!(!supports_response_attachments("2.0.1"));
        assert!(!supports_response_attachments("2.6.2"));
        assert!(!supports_response_attachments("2.4.10"));
        assert!(!supports_response_attachments(""));
    }

    #[test]
    fn descriptors_split() {
        assert_eq!(
            parse_descriptor("Ljava/lang/String;I[Ljava/lang/Object;[[J").unwrap(),
            vec!["Ljava/lang/String;", "I", "[Ljava/lang/Object;", "[[J"]
        );
        assert!(parse_descriptor("").unwrap().is_empty());
        assert!(parse_descriptor("Ljava/lang/String").is_err());
        assert!(parse_descriptor("Q").is_err());
    }

    #[test]
    fn request_body_round_trip() {
        let mut e = Encoder::new();
        encode_request_body(
            &mut e,
            "com.example.Echo",
            Some("1.0"),
            "echo",
            &["Ljava/lang/String;", "J"],
            &Args::Values(vec![HValue::from("hi"), HValue::Long(5)]),
            &[("path", "com.example.Echo"), ("timeout", "3000")],
        )
        .unwrap();
        let bytes = Bytes::from(e.into_bytes());
        let body = decode_request_body(&bytes).unwrap();
        assert_eq!(body.path, "com.example.Echo");
        assert_eq!(body.version.as_deref(), Some("1.0"));
        assert_eq!(body.method, "echo");
        assert_eq!(
            body.args.to_values().unwrap(),
            vec![HValue::from("hi"), HValue::Long(5)]
        );
        let mut d = body.args.decoder();
        assert_eq!(d.read::<String>().unwrap(), "hi");
        assert_eq!(d.read::<i64>().unwrap(), 5);
        assert_eq!(body.attachment("timeout"), Some("3000"));
    }

    #[test]
    fn request_texts_borrow_plain_strings_and_convert_the_rest() {
        // Written by hand: a typed attachments map holding a long, a null, a non-ASCII
        // key and a value in two chunks, as other peers may send.
        let mut e = Encoder::new();
        e.write_str("2.0.2");
        e.write_str("com.example.Échos");
        e.write_str("1.0");
        e.write_str("echo");
        e.write_str("Ljava/lang/String;J");
        e.write_str("hi");
        e.write_long(5);
        e.write_map_begin(Some("java.util.HashMap"));
        e.write_str("timeout");
        e.write_long(3000);
        e.write_str("nothing");
        e.write_null();
        e.write_str("clé");
        e.write_str("valeur");
        e.write_str("long");
        e.write_str(&"x".repeat(0x9000));
        e.write_end();
        let bytes = Bytes::from(e.into_bytes());
        let body = decode_request_body(&bytes).unwrap();
        assert_eq!(body.path, "com.example.Échos");
        assert!(matches!(body.path.0, Cow::Owned(_)));
        assert!(matches!(body.dubbo_version.0, Cow::Borrowed(_)));
        assert_eq!(body.parameter_types, ["Ljava/lang/String;", "J"]);
        assert!(body
            .parameter_types
            .iter()
            .all(|t| matches!(t.0, Cow::Borrowed(_))));
        assert_eq!(body.attachment("timeout"), Some("3000"));
        assert_eq!(body.attachment("nothing"), Some(""));
        assert_eq!(body.attachment("clé"), Some("valeur"));
        assert_eq!(body.attachment("long").map(str::len), Some(0x9000));
        let mut d = body.args.decoder();
        assert_eq!(d.read::<String>().unwrap(), "hi");
        assert_eq!(d.read::<i64>().unwrap(), 5);
        assert!(decode_request_body(&Bytes::from_static(&[0x05, b'2'])).is_err());
    }

    #[test]
    fn response_attachments_are_checked_even_when_not_kept() {
        let mut e = Encoder::new();
        e.write_int(response_flag::VALUE_WITH_ATTACHMENTS);
        e.write_str("x");
        e.write_str("not a map");
        let bytes = Bytes::from(e.into_bytes());
        assert!(decode_response(bytes.clone(), true).is_err());
        assert!(decode_response(bytes, false).is_err());
        let mut e = Encoder::new();
        // The flag in a long form: the value starts after it, wherever that is.
        e.write_raw(&[b'I', 0, 0, 0, 4]);
        e.write_str("x");
        e.write_null();
        let (r, att) = decode_response(Bytes::from(e.into_bytes()), false).unwrap();
        let ResponseBody::Value(r) = r else { panic!() };
        assert_eq!(r.decode::<String>().unwrap(), "x");
        assert!(att.is_empty());
    }

    #[test]
    fn response_flags_and_trailing_bytes() {
        for with in [false, true] {
            let mut e = Encoder::new();
            let pairs = [("k".to_string(), "v".to_string())];
            encode_response_body(
                &mut e,
                &ResponseBody::Value(Reply::typed("x")),
                with.then_some(&pairs[..]),
            )
            .unwrap();
            let mut bytes = e.into_bytes();
            assert_eq!(bytes[0], if with { 0x94 } else { 0x91 });
            bytes.push(b'N'); // dubbo-go's trailing null
            let (r, att) = decode_response_body(Bytes::from(bytes)).unwrap();
            let ResponseBody::Value(r) = r else { panic!() };
            assert_eq!(r.decode::<String>().unwrap(), "x");
            assert_eq!(att.is_empty(), !with);
            if with {
                assert!(att.contains(&("k".to_string(), "v".to_string())));
            }
        }
        assert!(decode_response_body(Bytes::from_static(&[0x99])).is_err());
    }

    #[test]
    fn generic_form_of_objects() {
        let user = HValue::object(
            "com.example.User",
            vec![
                ("name", "ann".into()),
                (
                    "level",
                    HValue::object("com.example.Level", vec![("name", "GOLD".into())]),
                ),
            ],
        );
        let g = generalize(user.clone());
        assert_eq!(
            g,
            HValue::map(vec![
                ("class".into(), "com.example.User".into()),
                ("name".into(), "ann".into()),
                ("level".into(), "GOLD".into()),
            ])
        );
        let back = realize(g);
        let HValue::Object(o) = back else { panic!() };
        assert_eq!(o.class, "com.example.User");
        assert_eq!(o.field("name"), Some(&HValue::from("ann")));
    }
}

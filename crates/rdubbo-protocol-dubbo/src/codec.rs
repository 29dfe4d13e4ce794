//! The pure codec: the 16-byte header, request and response bodies, events, and the
//! generic (`$invoke`) form of values.

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

/// A decoded request body.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody {
    /// Dubbo protocol version of the caller (`2.0.2`).
    pub dubbo_version: String,
    /// Service path (interface name).
    pub path: String,
    /// Service version (None for none, empty or `0.0.0`).
    pub version: Option<String>,
    /// Method name.
    pub method: String,
    /// Parameter types, JVM descriptors.
    pub parameter_types: Vec<String>,
    /// Arguments, still in Hessian2 (decoded by whoever serves the call).
    pub args: Args,
    /// Attachments, values as text.
    pub attachments: Vec<(String, String)>,
}

impl RequestBody {
    /// The attachment `key`.
    pub fn attachment(&self, key: &str) -> Option<&str> {
        self.attachments
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The service path: the `interface` attachment when present, else the path field.
    pub fn service(&self) -> &str {
        self.attachment("interface")
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.path)
    }
}

/// Splits a JVM method descriptor's parameter list (`Ljava/lang/String;I[J`) into one
/// descriptor per parameter.
pub fn parse_descriptor(desc: &str) -> Result<Vec<String>, String> {
    let b = desc.as_bytes();
    let mut out = Vec::new();
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
        out.push(desc[start..i].to_string());
    }
    Ok(out)
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

fn read_attachments(d: &mut Decoder<'_>) -> Result<Vec<(String, String)>, String> {
    if d.is_at_end() {
        return Ok(Vec::new());
    }
    match d.read_value().map_err(|e| e.to_string())? {
        HValue::Map(m) => Ok(m
            .entries
            .iter()
            .map(|(k, v)| (text_of(k), text_of(v)))
            .collect()),
        HValue::Null => Ok(Vec::new()),
        other => Err(format!("attachments are not a map: {other:?}")),
    }
}

/// Decodes a request body (Hessian2). The arguments are only stepped over, to reach the
/// attachments: they stay in `body` for the service to decode into its own types.
pub fn decode_request_body(body: Bytes) -> Result<RequestBody, String> {
    let mut d = Decoder::new(&body);
    let string = |d: &mut Decoder<'_>, what: &str| -> Result<String, String> {
        match d.read_value().map_err(|e| format!("{what}: {e}"))? {
            HValue::String(s) => Ok(s),
            HValue::Null => Ok(String::new()),
            other => Err(format!("{what} is not a string: {other:?}")),
        }
    };
    let dubbo_version = string(&mut d, "dubbo version")?;
    let path = string(&mut d, "service path")?;
    let version = string(&mut d, "service version")?;
    let method = string(&mut d, "method name")?;
    let desc = string(&mut d, "parameter types")?;
    let parameter_types = parse_descriptor(&desc)?;
    let start = d.position();
    for i in 0..parameter_types.len() {
        d.skip_value().map_err(|e| format!("argument {i}: {e}"))?;
    }
    let end = d.position();
    let attachments = read_attachments(&mut d)?;
    let count = parameter_types.len();
    drop(d);
    let args = Args::Hessian(HessianArgs {
        body,
        start,
        end,
        count,
    });
    Ok(RequestBody {
        dubbo_version,
        path,
        version: Some(version).filter(|v| !v.is_empty() && v != "0.0.0"),
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
    e.write_str(DUBBO_VERSION);
    e.write_str(path);
    e.write_str(version.unwrap_or("0.0.0"));
    e.write_str(method);
    let mut desc = String::new();
    for t in parameter_types {
        desc.push_str(t.as_ref());
    }
    e.write_str(&desc);
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
    let mut d = Decoder::new(&body);
    let flag = d.read_int().map_err(|e| format!("response flag: {e}"))?;
    let (result, with_attachments) = match flag {
        response_flag::NULL_VALUE | response_flag::NULL_VALUE_WITH_ATTACHMENTS => (
            ResponseBody::Value(Reply::Value(HValue::Null)),
            flag == response_flag::NULL_VALUE_WITH_ATTACHMENTS,
        ),
        response_flag::VALUE | response_flag::VALUE_WITH_ATTACHMENTS => {
            let start = d.position();
            d.skip_value().map_err(|e| format!("result: {e}"))?;
            (
                ResponseBody::Value(Reply::Hessian {
                    body: body.clone(),
                    start,
                }),
                flag == response_flag::VALUE_WITH_ATTACHMENTS,
            )
        }
        response_flag::EXCEPTION | response_flag::EXCEPTION_WITH_ATTACHMENTS => (
            ResponseBody::Exception(d.read_value().map_err(|e| format!("exception: {e}"))?),
            flag == response_flag::EXCEPTION_WITH_ATTACHMENTS,
        ),
        other => return Err(format!("unknown response flag {other}")),
    };
    let attachments = if with_attachments {
        read_attachments(&mut d)?
    } else {
        Vec::new()
    };
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
        let body = decode_request_body(Bytes::from(e.into_bytes())).unwrap();
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

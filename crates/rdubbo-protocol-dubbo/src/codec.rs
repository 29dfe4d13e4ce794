//! The pure codec: the 16-byte header, request and response bodies, events, and the
//! mapping between JSON arguments and Hessian values.

use rdubbo_hessian::{Decoder, Encoder, List, Map, Object, Throwable, Value as HValue};
use serde_json::Value as JValue;

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
    /// Arguments.
    pub args: Vec<HValue>,
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
        other => hessian_to_json(other).to_string(),
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

/// Decodes a request body (Hessian2).
pub fn decode_request_body(body: &[u8]) -> Result<RequestBody, String> {
    let mut d = Decoder::new(body);
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
    let mut args = Vec::with_capacity(parameter_types.len().min(body.len()));
    for i in 0..parameter_types.len() {
        args.push(d.read_value().map_err(|e| format!("argument {i}: {e}"))?);
    }
    let attachments = read_attachments(&mut d)?;
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

/// Writes a request body.
pub fn encode_request_body(
    e: &mut Encoder,
    path: &str,
    version: Option<&str>,
    method: &str,
    parameter_types: &[String],
    args: &[HValue],
    attachments: &[(&str, &str)],
) {
    e.write_str(DUBBO_VERSION);
    e.write_str(path);
    e.write_str(version.unwrap_or("0.0.0"));
    e.write_str(method);
    e.write_str(&parameter_types.concat());
    for a in args {
        e.write_value(a);
    }
    e.write_map_begin(None);
    for (k, v) in attachments {
        e.write_str(k);
        e.write_str(v);
    }
    e.write_end();
}

/// A decoded response body (status OK).
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    /// A value (or null).
    Value(HValue),
    /// An exception object.
    Exception(HValue),
}

/// Decodes the body of a response with status OK. Bytes after the last value are ignored
/// (dubbo-go appends a null).
pub fn decode_response_body(body: &[u8]) -> Result<(ResponseBody, Vec<(String, String)>), String> {
    let mut d = Decoder::new(body);
    let flag = d.read_int().map_err(|e| format!("response flag: {e}"))?;
    let (result, with_attachments) = match flag {
        response_flag::NULL_VALUE | response_flag::NULL_VALUE_WITH_ATTACHMENTS => (
            ResponseBody::Value(HValue::Null),
            flag == response_flag::NULL_VALUE_WITH_ATTACHMENTS,
        ),
        response_flag::VALUE | response_flag::VALUE_WITH_ATTACHMENTS => (
            ResponseBody::Value(d.read_value().map_err(|e| format!("result: {e}"))?),
            flag == response_flag::VALUE_WITH_ATTACHMENTS,
        ),
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

/// Writes a response body with status OK.
pub fn encode_response_body(e: &mut Encoder, result: &ResponseBody, attachments: bool) {
    let (flag, value) = match result {
        ResponseBody::Value(HValue::Null) => (response_flag::NULL_VALUE, None),
        ResponseBody::Value(v) => (response_flag::VALUE, Some(v)),
        ResponseBody::Exception(x) => (response_flag::EXCEPTION, Some(x)),
    };
    e.write_int(if attachments { flag + 3 } else { flag });
    if let Some(v) = value {
        e.write_value(v);
    }
    if attachments {
        e.write_map_begin(None);
        e.write_str("dubbo");
        e.write_str(DUBBO_VERSION);
        e.write_end();
    }
}

/// A Hessian value as JSON: objects become JSON objects with their fields plus a `class`
/// key (Dubbo's generic form); Java enum constants their name; `BigDecimal` its text;
/// dates milliseconds; binary an array of numbers; cyclic references null.
pub fn hessian_to_json(v: &HValue) -> JValue {
    match v {
        HValue::Null | HValue::Ref(_) => JValue::Null,
        HValue::Bool(b) => JValue::Bool(*b),
        HValue::Int(i) => JValue::from(*i),
        HValue::Long(l) => JValue::from(*l),
        HValue::Double(d) => serde_json::Number::from_f64(*d).map_or(JValue::Null, JValue::Number),
        HValue::String(s) => JValue::String(s.clone()),
        HValue::Binary(b) => JValue::Array(b.iter().map(|x| JValue::from(*x)).collect()),
        HValue::Date(ms) => JValue::from(*ms),
        HValue::List(l) => JValue::Array(l.items.iter().map(hessian_to_json).collect()),
        HValue::Map(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in &m.entries {
                let key = match k {
                    HValue::String(s) => s.clone(),
                    other => text_of(other),
                };
                o.insert(key, hessian_to_json(v));
            }
            JValue::Object(o)
        }
        HValue::Object(o) => object_to_json(o),
    }
}

fn object_to_json(o: &Object) -> JValue {
    if o.class == "java.math.BigDecimal" || o.class == "java.math.BigInteger" {
        if let Some(HValue::String(s)) = o.field("value") {
            return JValue::String(s.clone());
        }
    }
    if o.fields.len() == 1 && o.fields[0].0 == "name" {
        if let HValue::String(s) = &o.fields[0].1 {
            // A Java enum constant.
            return JValue::String(s.clone());
        }
    }
    if let Some(t) = Throwable::from_value(&HValue::Object(o.clone())) {
        return serde_json::json!({"class": t.class, "message": t.message});
    }
    let mut m = serde_json::Map::new();
    for (k, v) in &o.fields {
        m.insert(k.clone(), hessian_to_json(v));
    }
    m.insert("class".into(), JValue::String(o.class.clone()));
    JValue::Object(m)
}

/// The JVM descriptor Java Dubbo would declare for an argument of this JSON shape.
pub fn infer_descriptor(v: &JValue) -> String {
    match v {
        JValue::Bool(_) => "Z".into(),
        JValue::Number(n) if n.is_i64() || n.is_u64() => {
            if n.as_i64().and_then(|i| i32::try_from(i).ok()).is_some() {
                "I".into()
            } else {
                "J".into()
            }
        }
        JValue::Number(_) => "D".into(),
        JValue::String(_) => "Ljava/lang/String;".into(),
        JValue::Array(_) => "Ljava/util/List;".into(),
        JValue::Object(o) => match o.get("class").and_then(JValue::as_str) {
            Some(c) => format!("L{};", c.replace('.', "/")),
            None => "Ljava/util/Map;".into(),
        },
        JValue::Null => "Ljava/lang/Object;".into(),
    }
}

/// A JSON argument as the Hessian value a parameter of type `desc` expects (`J` → long,
/// `D` → double, `Ljava/util/Date;` → date, `[B` → binary, `Ljava/math/BigDecimal;` →
/// BigDecimal …). Without a type, or for other types, the value's own shape decides:
/// integers that fit 32 bits are ints, objects with a `class` key objects of that class
/// (unless `generic`, where they stay maps as Dubbo's generic calls expect).
pub fn json_to_hessian(v: &JValue, desc: Option<&str>, generic: bool) -> HValue {
    let as_i64 = || v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
    match (desc, v) {
        (_, JValue::Null) => HValue::Null,
        (Some("J" | "Ljava/lang/Long;"), _) if as_i64().is_some() => {
            HValue::Long(as_i64().unwrap_or_default())
        }
        (
            Some(
                "I" | "S" | "B" | "Ljava/lang/Integer;" | "Ljava/lang/Short;" | "Ljava/lang/Byte;",
            ),
            _,
        ) if as_i64().is_some() => HValue::Int(as_i64().unwrap_or_default() as i32),
        (Some("D" | "F" | "Ljava/lang/Double;" | "Ljava/lang/Float;"), JValue::Number(n)) => {
            HValue::Double(n.as_f64().unwrap_or_default())
        }
        (Some("Ljava/util/Date;"), JValue::Number(n)) => {
            HValue::Date(n.as_i64().unwrap_or_default())
        }
        (Some("[B"), JValue::Array(items)) => HValue::Binary(
            items
                .iter()
                .map(|x| x.as_i64().unwrap_or_default() as u8)
                .collect(),
        ),
        (Some("[B"), JValue::String(s)) => HValue::Binary(s.as_bytes().to_vec()),
        (Some("Ljava/math/BigDecimal;"), JValue::Number(_) | JValue::String(_)) => {
            let text = match v {
                JValue::String(s) => s.clone(),
                other => other.to_string(),
            };
            HValue::object(
                "java.math.BigDecimal",
                vec![("value", HValue::String(text))],
            )
        }
        (_, JValue::Bool(b)) => HValue::Bool(*b),
        (_, JValue::Number(n)) => match n.as_i64() {
            Some(i) => match i32::try_from(i) {
                Ok(i) => HValue::Int(i),
                Err(_) => HValue::Long(i),
            },
            None => match n.as_u64() {
                Some(u) => HValue::Long(u as i64),
                None => HValue::Double(n.as_f64().unwrap_or_default()),
            },
        },
        (_, JValue::String(s)) => HValue::String(s.clone()),
        (d, JValue::Array(items)) => {
            let element = d.and_then(|d| d.strip_prefix('['));
            let type_name = d.and_then(array_type_name);
            HValue::List(List {
                type_name,
                items: items
                    .iter()
                    .map(|x| json_to_hessian(x, element, generic))
                    .collect(),
            })
        }
        (_, JValue::Object(o)) => match o.get("class").and_then(JValue::as_str) {
            Some(class) if !generic => HValue::Object(Object {
                class: class.to_string(),
                fields: o
                    .iter()
                    .filter(|(k, _)| k.as_str() != "class")
                    .map(|(k, v)| (k.clone(), json_to_hessian(v, None, generic)))
                    .collect(),
            }),
            _ => HValue::Map(Map {
                type_name: None,
                entries: o
                    .iter()
                    .map(|(k, v)| (HValue::String(k.clone()), json_to_hessian(v, None, generic)))
                    .collect(),
            }),
        },
    }
}

/// The Hessian list type Java writes for an array descriptor (`[I` → `[int`).
fn array_type_name(desc: &str) -> Option<String> {
    let element = desc.strip_prefix('[')?;
    Some(match element {
        "I" => "[int".into(),
        "J" => "[long".into(),
        "D" => "[double".into(),
        "F" => "[float".into(),
        "Z" => "[boolean".into(),
        "S" => "[short".into(),
        "C" => "[char".into(),
        "Ljava/lang/String;" => "[string".into(),
        "Ljava/lang/Object;" => "[object".into(),
        other => format!(
            "[{}",
            other
                .strip_prefix('L')
                .and_then(|c| c.strip_suffix(';'))
                .unwrap_or(other)
                .replace('/', ".")
        ),
    })
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
            &["Ljava/lang/String;".into(), "J".into()],
            &[HValue::from("hi"), HValue::Long(5)],
            &[("path", "com.example.Echo"), ("timeout", "3000")],
        );
        let body = decode_request_body(e.as_bytes()).unwrap();
        assert_eq!(body.path, "com.example.Echo");
        assert_eq!(body.version.as_deref(), Some("1.0"));
        assert_eq!(body.method, "echo");
        assert_eq!(body.args, vec![HValue::from("hi"), HValue::Long(5)]);
        assert_eq!(body.attachment("timeout"), Some("3000"));
    }

    #[test]
    fn response_flags_and_trailing_bytes() {
        for with in [false, true] {
            let mut e = Encoder::new();
            encode_response_body(&mut e, &ResponseBody::Value(HValue::from("x")), with);
            let mut bytes = e.into_bytes();
            assert_eq!(bytes[0], if with { 0x94 } else { 0x91 });
            bytes.push(b'N'); // dubbo-go's trailing null
            let (r, att) = decode_response_body(&bytes).unwrap();
            assert_eq!(r, ResponseBody::Value(HValue::from("x")));
            assert_eq!(att.is_empty(), !with);
        }
        assert!(decode_response_body(&[0x99]).is_err());
    }

    #[test]
    fn json_arguments_follow_descriptors() {
        let v = serde_json::json!(5);
        assert_eq!(json_to_hessian(&v, Some("J"), false), HValue::Long(5));
        assert_eq!(json_to_hessian(&v, None, false), HValue::Int(5));
        assert_eq!(json_to_hessian(&v, Some("D"), false), HValue::Double(5.0));
        let arr = serde_json::json!([1, 2]);
        assert_eq!(
            json_to_hessian(&arr, Some("[I"), false),
            HValue::List(List {
                type_name: Some("[int".into()),
                items: vec![HValue::Int(1), HValue::Int(2)]
            })
        );
        let obj = serde_json::json!({"class": "com.example.User", "age": 42, "name": "ann"});
        let h = json_to_hessian(&obj, None, false);
        assert_eq!(
            h,
            HValue::object(
                "com.example.User",
                vec![("age", 42.into()), ("name", "ann".into())]
            )
        );
        // An object with one field `name` is a Java enum constant.
        let kind = HValue::object("com.example.Kind", vec![("name", "GOLD".into())]);
        assert_eq!(hessian_to_json(&kind), serde_json::json!("GOLD"));
        assert_eq!(hessian_to_json(&h), obj);
        assert_eq!(infer_descriptor(&obj), "Lcom/example/User;");
        assert_eq!(infer_descriptor(&serde_json::json!(1u64 << 40)), "J");
    }
}

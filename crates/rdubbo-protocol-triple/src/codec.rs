//! The pure parts of Triple: gRPC message framing, gzip, `grpc-timeout`, status codes and
//! their Dubbo mapping, Java's protobuf wrapper around Hessian2 for interface services.
//! No I/O.

use std::io::Read;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rdubbo_core::{error::codes, Args, HessianArgs, RpcError};
use rdubbo_hessian::{Decoder, Encoder, Throwable, Value};

/// The serialization name Java 3.3 writes into the wrapper for Hessian2.
pub const HESSIAN4: &str = "hessian4";
/// The name dubbo-go writes (Java accepts both).
pub const HESSIAN2: &str = "hessian2";

/// Largest message accepted or sent by default (8 MiB, as the other protocols).
pub const DEFAULT_MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// Length of the gRPC message prefix (compressed flag + 4-byte length).
pub const PREFIX_LEN: usize = 5;

/// `TripleRequestWrapper` (`org.apache.dubbo.triple`): a call's arguments, each one
/// complete Hessian2 value, with their Java class names.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TripleRequestWrapper {
    /// `hessian4` (Java) or `hessian2` (dubbo-go).
    #[prost(string, tag = "1")]
    pub serialize_type: String,
    /// One Hessian2 stream per argument.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub args: Vec<Bytes>,
    /// Java class names of the declared parameter types (`java.lang.String`, `long`).
    #[prost(string, repeated, tag = "3")]
    pub arg_types: Vec<String>,
}

/// `TripleResponseWrapper`: the result (or the exception, see `tri-exception-code`) as one
/// Hessian2 value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TripleResponseWrapper {
    /// The request's serialization name, echoed.
    #[prost(string, tag = "1")]
    pub serialize_type: String,
    /// The Hessian2 value.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    /// Java class name of the declared return type.
    #[prost(string, tag = "3")]
    pub r#type: String,
}

/// gRPC status codes.
pub mod grpc {
    /// Success.
    pub const OK: u32 = 0;
    /// Cancelled by the caller.
    pub const CANCELLED: u32 = 1;
    /// Unknown error (what an IDL service's exception is answered with).
    pub const UNKNOWN: u32 = 2;
    /// Bad argument.
    pub const INVALID_ARGUMENT: u32 = 3;
    /// Deadline passed.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// Not found.
    pub const NOT_FOUND: u32 = 5;
    /// Permission denied.
    pub const PERMISSION_DENIED: u32 = 7;
    /// A limit was hit (message size).
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// No such service or method, or an unsupported encoding.
    pub const UNIMPLEMENTED: u32 = 12;
    /// Internal error (serialization).
    pub const INTERNAL: u32 = 13;
    /// Try again (elsewhere): busy or shutting down.
    pub const UNAVAILABLE: u32 = 14;
    /// Unauthenticated.
    pub const UNAUTHENTICATED: u32 = 16;
}

/// Why bytes could not be read as gRPC messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the prefix or its length says.
    Truncated,
    /// A message longer than the limit.
    TooLarge(usize),
    /// The compressed flag is set but the stream has no (known) encoding.
    Compression(String),
    /// More than one message where one was expected.
    Trailing,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("truncated gRPC message"),
            FrameError::TooLarge(n) => write!(f, "gRPC message larger than {n} bytes"),
            FrameError::Compression(m) => f.write_str(m),
            FrameError::Trailing => f.write_str("more than one gRPC message in a unary call"),
        }
    }
}

/// The message encodings this implementation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// None.
    Identity,
    /// gzip.
    Gzip,
}

impl Encoding {
    /// The encoding a `grpc-encoding` header names (`None`: not supported).
    pub fn parse(name: Option<&str>) -> Option<Encoding> {
        match name.map(str::trim) {
            None | Some("") | Some("identity") => Some(Encoding::Identity),
            Some("gzip") => Some(Encoding::Gzip),
            Some(_) => None,
        }
    }

    /// Whether a `grpc-accept-encoding` list names gzip.
    pub fn accepts_gzip(list: Option<&str>) -> bool {
        list.is_some_and(|l| l.split(',').any(|e| e.trim() == "gzip"))
    }
}

/// Frames one message: the 5-byte prefix, then the message, gzip-compressed when asked.
pub fn encode_message(message: &[u8], encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Identity => {
            let mut out = BytesMut::with_capacity(PREFIX_LEN + message.len());
            out.put_u8(0);
            out.put_u32(message.len() as u32);
            out.put_slice(message);
            out.freeze()
        }
        Encoding::Gzip => {
            let compressed = gzip(message);
            let mut out = BytesMut::with_capacity(PREFIX_LEN + compressed.len());
            out.put_u8(1);
            out.put_u32(compressed.len() as u32);
            out.put_slice(&compressed);
            out.freeze()
        }
    }
}

/// Frames a protobuf message as [`encode_message`] does, encoding it straight after its
/// prefix (one buffer, no copy) when it is not compressed.
pub fn encode_framed(message: &impl prost::Message, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Identity => {
            let len = message.encoded_len();
            let mut out = Vec::with_capacity(PREFIX_LEN + len);
            out.push(0);
            out.extend_from_slice(&(len as u32).to_be_bytes());
            // A Vec grows as needed: encoding into it cannot fail.
            let _ = message.encode(&mut out);
            Bytes::from(out)
        }
        Encoding::Gzip => encode_message(&message.encode_to_vec(), encoding),
    }
}

/// Appends one framed message to `out` (see [`encode_message`]).
pub fn put_message(out: &mut BytesMut, message: &[u8], encoding: Encoding) {
    match encoding {
        Encoding::Identity => {
            out.reserve(PREFIX_LEN + message.len());
            out.put_u8(0);
            out.put_u32(message.len() as u32);
            out.put_slice(message);
        }
        Encoding::Gzip => {
            let compressed = gzip(message);
            out.reserve(PREFIX_LEN + compressed.len());
            out.put_u8(1);
            out.put_u32(compressed.len() as u32);
            out.put_slice(&compressed);
        }
    }
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 32),
        flate2::Compression::fast(),
    );
    let _ = std::io::Write::write_all(&mut gz, data);
    gz.finish().unwrap_or_default()
}

/// Inflates gzip `data`, refusing to produce more than `max` bytes (a small input may not
/// expand without bound).
pub fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(2).min(max));
    let mut gz = flate2::read::GzDecoder::new(data).take(max as u64 + 1);
    gz.read_to_end(&mut out)
        .map_err(|e| FrameError::Compression(format!("bad gzip message: {e}")))?;
    if out.len() > max {
        return Err(FrameError::TooLarge(max));
    }
    Ok(out)
}

/// Reads the one message of a unary call's body (the bytes of all DATA frames), inflating
/// it with `encoding` when its flag says so. A body with no message reads as empty.
pub fn decode_unary(body: &Bytes, encoding: Encoding, max: usize) -> Result<Bytes, FrameError> {
    if body.is_empty() {
        return Ok(Bytes::new());
    }
    if body.len() < PREFIX_LEN {
        return Err(FrameError::Truncated);
    }
    let flag = body[0];
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge(max));
    }
    let end = PREFIX_LEN + len;
    if body.len() < end {
        return Err(FrameError::Truncated);
    }
    if body.len() > end {
        return Err(FrameError::Trailing);
    }
    let message = body.slice(PREFIX_LEN..end);
    match (flag, encoding) {
        (0, _) => Ok(message),
        (1, Encoding::Gzip) => gunzip(&message, max).map(Bytes::from),
        (1, Encoding::Identity) => Err(FrameError::Compression(
            "compressed message without grpc-encoding".into(),
        )),
        (f, _) => Err(FrameError::Compression(format!("bad compressed flag {f}"))),
    }
}

/// Parses `grpc-timeout` (`<1–8 digits><unit>`, unit one of `H M S m u n`).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a timeout for `grpc-timeout` as Java does (`<ms>m`), in a coarser unit when the
/// milliseconds need more than 8 digits.
pub fn format_timeout(t: Duration) -> String {
    let ms = t.as_millis();
    if ms < 100_000_000 {
        format!("{}m", ms.max(1))
    } else if t.as_secs() < 100_000_000 {
        format!("{}S", t.as_secs())
    } else {
        format!("{}H", (t.as_secs() / 3600).min(99_999_999))
    }
}

/// Percent-encodes `grpc-message` as the gRPC spec (and Java's `TriRpcStatus`) does.
pub fn encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes [`encode_grpc_message`] (invalid escapes are kept as they are).
pub fn decode_grpc_message(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gRPC status a provider-side error is answered with, as Java's
/// `TriRpcStatus.dubboCodeToTriCode` maps Dubbo's codes.
pub fn status_of(e: &RpcError) -> u32 {
    if let RpcError::Remote { data: Some(d), .. } = e {
        if let Some(s) = d.get("grpc-status").and_then(|s| s.as_u64()) {
            if s <= 16 {
                return s as u32;
            }
        }
    }
    match e {
        RpcError::Timeout(_) => grpc::DEADLINE_EXCEEDED,
        RpcError::Limit(_) => grpc::RESOURCE_EXHAUSTED,
        RpcError::Codec(_) => grpc::INTERNAL,
        RpcError::Invalid(_) => grpc::INVALID_ARGUMENT,
        RpcError::NoProvider(_) | RpcError::Connect { .. } | RpcError::Transport { .. } => {
            grpc::UNAVAILABLE
        }
        RpcError::Remote { code, .. } => match *code {
            codes::SERVER_TIMEOUT => grpc::DEADLINE_EXCEEDED,
            codes::SERVER_BUSY | codes::SHUTTING_DOWN => grpc::UNAVAILABLE,
            codes::METHOD_NOT_FOUND => grpc::UNIMPLEMENTED,
            codes::INVALID_PARAMS | codes::INVALID_REQUEST | codes::PARSE_ERROR => {
                grpc::INVALID_ARGUMENT
            }
            codes::INTERNAL_ERROR => grpc::INTERNAL,
            _ => grpc::UNKNOWN,
        },
        _ => grpc::UNKNOWN,
    }
}

/// An error answered with exactly the gRPC `status` (see [`grpc`]) and `message`, for
/// services that speak gRPC statuses (IDL services, health): it travels as
/// [`RpcError::Remote`] with `{"grpc-status": status}` in `data`, which [`status_of`]
/// honours; its Dubbo code is the one [`error_of_status`] gives.
///
/// ```
/// use rdubbo_protocol_triple::codec::{grpc, grpc_error, status_of};
///
/// let e = grpc_error(grpc::NOT_FOUND, "no such user");
/// assert_eq!(status_of(&e), grpc::NOT_FOUND);
/// assert_eq!(e.message(), "no such user");
/// ```
pub fn grpc_error(status: u32, message: impl Into<String>) -> RpcError {
    error_of_status(status, message.into())
}

/// The error a consumer sees for a non-OK gRPC status (Java's `triCodeToDubboCode`, in
/// rdubbo's codes): deadline → server timeout, unavailable → busy (retryable), no such
/// service or method → method not found.
pub fn error_of_status(status: u32, message: String) -> RpcError {
    let code = match status {
        grpc::DEADLINE_EXCEEDED => codes::SERVER_TIMEOUT,
        grpc::UNAVAILABLE if message.contains("shutting down") => codes::SHUTTING_DOWN,
        grpc::UNAVAILABLE => codes::SERVER_BUSY,
        grpc::UNIMPLEMENTED | grpc::NOT_FOUND => codes::METHOD_NOT_FOUND,
        grpc::INVALID_ARGUMENT => codes::INVALID_PARAMS,
        grpc::RESOURCE_EXHAUSTED => return RpcError::Limit(message),
        grpc::UNKNOWN => codes::SERVICE_ERROR,
        _ => codes::INTERNAL_ERROR,
    };
    RpcError::Remote {
        code,
        message,
        data: Some(serde_json::json!({ "grpc-status": status })),
    }
}

/// The Java exception a provider-side service error travels as.
pub fn exception_of(e: &RpcError) -> Throwable {
    match e {
        RpcError::Remote {
            code,
            message,
            data,
        } => {
            let class = data
                .as_ref()
                .and_then(|d| d.get("exception").or_else(|| d.get("class")))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if *code == codes::SERVICE_ERROR {
                        "java.lang.RuntimeException".into()
                    } else {
                        "org.apache.dubbo.rpc.RpcException".into()
                    }
                });
            Throwable::new(class, message.clone())
        }
        other => Throwable::new("org.apache.dubbo.rpc.RpcException", other.to_string()),
    }
}

/// The error a Java exception object becomes: a service error whose `data` names the
/// exception class and carries its stack (as the dubbo protocol reports them).
pub fn exception_error(x: &Value) -> RpcError {
    match Throwable::from_value(x) {
        Some(t) => RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: t.message.clone().unwrap_or_else(|| t.class.clone()),
            data: Some(serde_json::json!({
                "exception": t.class,
                "stackTrace": t.stack_trace.iter().map(|f| format!(
                    "{}.{}({}:{})",
                    f.declaring_class,
                    f.method_name,
                    f.file_name.as_deref().unwrap_or("Unknown Source"),
                    f.line_number
                )).collect::<Vec<_>>(),
            })),
        },
        None => RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: format!(
                "provider answered with an exception: {}",
                rdubbo_core::json::from_value(x)
            ),
            data: None,
        },
    }
}

/// A JVM descriptor (`Ljava/lang/String;`, `J`, `[Ljava/lang/String;`) as `Class.getName()`
/// spells it (`java.lang.String`, `long`, `[Ljava.lang.String;`): the wrapper's `argTypes`.
pub fn class_name(descriptor: &str) -> String {
    rdubbo_core::json::java_name(descriptor)
}

/// A `Class.getName()` (or a descriptor) as a JVM descriptor.
pub fn descriptor(class_name: &str) -> String {
    if class_name.starts_with('[') {
        return class_name.replace('.', "/");
    }
    rdubbo_core::json::descriptor_from_name(class_name)
}

/// Whether a Hessian2 value starting with `tag` is self-contained: it neither defines nor
/// uses class definitions, type names or back-references, so it reads the same in a
/// stream of its own and after other values.
fn self_contained(tag: u8) -> bool {
    !matches!(
        tag,
        b'C' | b'O' | 0x60..=0x6f | b'Q' | 0x55..=0x58 | 0x70..=0x7f | b'H' | b'M'
    )
}

/// The Java class name a dynamic value is declared as, for the wrapper's `type`.
fn type_of(v: &Value) -> &str {
    match v {
        Value::String(_) => "java.lang.String",
        Value::Int(_) => "java.lang.Integer",
        Value::Long(_) => "java.lang.Long",
        Value::Double(_) => "java.lang.Double",
        Value::Bool(_) => "java.lang.Boolean",
        Value::Object(o) => &o.class,
        _ => "java.lang.Object",
    }
}

/// Each argument as a Hessian2 stream of its own (Java reads every one with a fresh
/// input), with the Java class names of the parameter types (from the call's descriptors,
/// or the values' own classes).
pub fn encode_args(
    args: &Args,
    descriptors: &[impl AsRef<str>],
) -> Result<TripleRequestWrapper, String> {
    let mut parts: Vec<Bytes> = Vec::with_capacity(args.len());
    let mut values: Option<Vec<Value>> = None;
    match args {
        Args::Message(_) | Args::Stream(_) => {
            return Err(
                "a protobuf message or stream is not wrapped: it goes as the gRPC body itself"
                    .into(),
            )
        }
        Args::Values(v) => {
            for x in v {
                let mut e = Encoder::new();
                e.write_value(x);
                parts.push(Bytes::from(e.into_bytes()));
            }
            values = Some(v.clone());
        }
        Args::Typed(_) | Args::Hessian(_) => {
            let mut e = Encoder::new();
            args.write_hessian(&mut e)?;
            let raw = e.into_bytes();
            let mut d = Decoder::new(&raw);
            let mut ends = Vec::new();
            let mut start = 0;
            let mut split = true;
            for i in 0..args.len() {
                if i > 0 && raw.get(start).is_some_and(|t| !self_contained(*t)) {
                    split = false;
                    break;
                }
                d.skip_value().map_err(|e| format!("argument {i}: {e}"))?;
                start = d.position();
                if args.len() > 1 {
                    ends.push(start);
                }
            }
            if split && args.len() == 1 {
                // The usual one argument: the stream is its part as it is (no copy, and
                // no shared handle allocated to slice it).
                let mut raw = raw;
                raw.truncate(start);
                parts.push(Bytes::from(raw));
            } else if split {
                let stream = Bytes::from(raw);
                let mut from = 0;
                for end in ends {
                    parts.push(stream.slice(from..end));
                    from = end;
                }
            } else {
                parts.clear();
                let v = args.to_values()?;
                for x in &v {
                    let mut e = Encoder::new();
                    e.write_value(x);
                    parts.push(Bytes::from(e.into_bytes()));
                }
                values = Some(v);
            }
        }
        Args::Json(_) => {
            let v = args.to_values()?;
            for x in &v {
                let mut e = Encoder::new();
                e.write_value(x);
                parts.push(Bytes::from(e.into_bytes()));
            }
            values = Some(v);
        }
    }
    let arg_types = if descriptors.len() == parts.len() {
        descriptors.iter().map(|d| class_name(d.as_ref())).collect()
    } else {
        let v = match values {
            Some(v) => v,
            None => args.to_values()?,
        };
        v.iter().map(|x| type_of(x).to_string()).collect()
    };
    Ok(TripleRequestWrapper {
        serialize_type: HESSIAN4.into(),
        args: parts,
        arg_types,
    })
}

/// Most arguments a request may carry (a Java method has at most 255 parameters).
pub const MAX_ARGS: usize = 255;

/// Decodes a `TripleRequestWrapper`, first counting its repeated fields so that a small
/// message of many empty entries cannot make a large vector (each entry costs 32 bytes in
/// memory for 2 on the wire): more than [`MAX_ARGS`] arguments or types are refused.
pub fn decode_request(message: Bytes) -> Result<TripleRequestWrapper, String> {
    let (args, types) = count_repeated(&message)?;
    if args > MAX_ARGS || types > MAX_ARGS {
        return Err(format!(
            "{args} arguments and {types} types, at most {MAX_ARGS} each"
        ));
    }
    <TripleRequestWrapper as prost::Message>::decode(message).map_err(|e| e.to_string())
}

/// Occurrences of fields 2 and 3 in a protobuf message (wire format walked, not decoded).
fn count_repeated(mut buf: &[u8]) -> Result<(usize, usize), String> {
    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let (mut f2, mut f3) = (0, 0);
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match key >> 3 {
            2 => f2 += 1,
            3 => f3 += 1,
            _ => {}
        }
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..).ok_or("truncated fixed64")?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| "length too large")?;
                buf = buf.get(len..).ok_or("truncated length-delimited field")?;
            }
            5 => buf = buf.get(4..).ok_or("truncated fixed32")?,
            w => return Err(format!("wire type {w} not supported")),
        }
    }
    Ok((f2, f3))
}

/// How many JSON values a document holds at most, counted on its bytes (commas, brackets
/// and colons outside strings, plus one): what parsing it into `serde_json::Value`s costs,
/// at some 32–80 bytes of memory per value whatever the bytes per value on the wire.
pub fn json_value_count(doc: &[u8]) -> usize {
    let mut n = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &b in doc {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' | b'[' | b'{' | b':' => n += 1,
            _ => {}
        }
    }
    n
}

/// A request wrapper's arguments as the dispatcher takes them: the Hessian2 bytes as they
/// arrived when they can be read as one stream (always for one argument), each decoded on
/// its own otherwise.
pub fn decode_args(wrapper: &TripleRequestWrapper) -> Result<Args, String> {
    let count = wrapper.args.len();
    match count {
        0 => Ok(Args::Hessian(HessianArgs {
            body: Bytes::new(),
            start: 0,
            end: 0,
            count: 0,
        })),
        1 => {
            let body = wrapper.args[0].clone();
            let end = body.len();
            Ok(Args::Hessian(HessianArgs {
                body,
                start: 0,
                end,
                count: 1,
            }))
        }
        _ if wrapper.args[1..]
            .iter()
            .all(|a| a.first().is_none_or(|t| self_contained(*t))) =>
        {
            let total = wrapper.args.iter().map(Bytes::len).sum();
            let mut body = BytesMut::with_capacity(total);
            for a in &wrapper.args {
                body.put_slice(a);
            }
            Ok(Args::Hessian(HessianArgs {
                body: body.freeze(),
                start: 0,
                end: total,
                count,
            }))
        }
        _ => {
            let mut values = Vec::with_capacity(count);
            for (i, a) in wrapper.args.iter().enumerate() {
                let mut d = Decoder::new(a);
                values.push(d.read_value().map_err(|e| format!("argument {i}: {e}"))?);
            }
            Ok(Args::Values(values))
        }
    }
}

/// The wrapper's `type` for a reply.
pub fn reply_type(reply: &rdubbo_core::Reply) -> String {
    match reply {
        rdubbo_core::Reply::Value(v) => type_of(v).to_string(),
        _ => "java.lang.Object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn wrapper_matches_the_capture() {
        // DemoService.sayHello("x0") from the Java 3.3.1 consumer (triple-captures.md).
        let wire = hex("0a086865737369616e3412030278301a106a6176612e6c616e672e537472696e67");
        let w = TripleRequestWrapper::decode(Bytes::from(wire.clone())).unwrap();
        assert_eq!(w.serialize_type, "hessian4");
        assert_eq!(w.args, vec![Bytes::from_static(b"\x02x0")]);
        assert_eq!(w.arg_types, vec!["java.lang.String"]);
        let args = decode_args(&w).unwrap();
        assert_eq!(args.to_values().unwrap(), vec![Value::from("x0")]);
        let again = encode_args(&args, &["Ljava/lang/String;"]).unwrap();
        assert_eq!(again, w);
        let resp = hex("0a086865737369616e341227302548656c6c6f2078302c20726573706f6e73652066726f6d206a6176612070726f76696465721a106a6176612e6c616e672e537472696e67");
        let r = TripleResponseWrapper::decode(Bytes::from(resp)).unwrap();
        assert_eq!(r.r#type, "java.lang.String");
        assert_eq!(
            rdubbo_hessian::decode_value(&r.data).unwrap(),
            Value::from("Hello x0, response from java provider")
        );
    }

    #[test]
    fn pojo_arguments_split_into_streams_of_their_own() {
        let user = Value::object("com.example.User", vec![("name", "ann".into())]);
        let args = Args::Values(vec![user.clone(), user.clone(), 5.into()]);
        let w = encode_args(&args, &[] as &[&str]).unwrap();
        assert_eq!(w.args.len(), 3);
        assert_eq!(
            w.arg_types,
            vec!["com.example.User", "com.example.User", "java.lang.Integer"]
        );
        for a in &w.args[..2] {
            assert_eq!(rdubbo_hessian::decode_value(a).unwrap(), user);
        }
        let back = decode_args(&w).unwrap();
        assert_eq!(
            back.to_values().unwrap(),
            vec![user.clone(), user, 5.into()]
        );
        // Typed arguments sharing a class definition are re-encoded one by one.
        let typed = Args::typed((1_i64, String::from("s")));
        let w = encode_args(&typed, &["J", "Ljava/lang/String;"]).unwrap();
        assert_eq!(w.arg_types, vec!["long", "java.lang.String"]);
        assert_eq!(
            decode_args(&w).unwrap().to_values().unwrap(),
            vec![Value::Long(1), "s".into()]
        );
    }

    #[test]
    fn many_empty_arguments_are_refused_before_decoding() {
        let ok = TripleRequestWrapper {
            serialize_type: HESSIAN4.into(),
            args: vec![Bytes::new(); 3],
            arg_types: vec![String::new(); 3],
        };
        assert_eq!(decode_request(Bytes::from(ok.encode_to_vec())).unwrap(), ok);
        // 2 bytes per empty argument on the wire.
        let many = [0x12u8, 0x00].repeat(100_000);
        let e = decode_request(Bytes::from(many)).unwrap_err();
        assert!(e.contains("100000 arguments"), "{e}");
        assert!(decode_request(Bytes::from_static(&[0x12, 0x05, 1])).is_err());
    }

    #[test]
    fn json_values_are_counted_outside_strings() {
        assert_eq!(json_value_count(br#"[]"#), 2);
        assert_eq!(json_value_count(br#"[1,2,3]"#), 4);
        assert_eq!(json_value_count(br#"["a,b:[{", {"k": 1}]"#), 5);
        assert_eq!(json_value_count(br#"["x\",y"]"#), 2);
    }

    #[test]
    fn framing_and_gzip() {
        let m = encode_message(b"hello", Encoding::Identity);
        assert_eq!(&m[..], b"\0\0\0\0\x05hello");
        assert_eq!(
            decode_unary(&m, Encoding::Identity, 100).unwrap(),
            &b"hello"[..]
        );
        let big = vec![b'a'; 10_000];
        let z = encode_message(&big, Encoding::Gzip);
        assert_eq!(z[0], 1);
        assert!(z.len() < 200);
        assert_eq!(decode_unary(&z, Encoding::Gzip, 20_000).unwrap(), &big[..]);
        // A small input does not inflate past the limit.
        assert_eq!(
            decode_unary(&z, Encoding::Gzip, 5_000),
            Err(FrameError::TooLarge(5_000))
        );
        assert_eq!(
            decode_unary(&z, Encoding::Identity, 20_000),
            Err(FrameError::Compression(
                "compressed message without grpc-encoding".into()
            ))
        );
        assert_eq!(
            decode_unary(&Bytes::from_static(b"\0\0\0"), Encoding::Identity, 9),
            Err(FrameError::Truncated)
        );
        assert_eq!(
            decode_unary(&Bytes::from_static(b"\0\0\0\x01\0"), Encoding::Identity, 9),
            Err(FrameError::TooLarge(9))
        );
    }

    #[test]
    fn timeouts_and_messages() {
        assert_eq!(parse_timeout("3000m"), Some(Duration::from_millis(3000)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("123456789m"), None);
        assert_eq!(parse_timeout("m"), None);
        assert_eq!(parse_timeout("-1m"), None);
        assert_eq!(format_timeout(Duration::from_millis(3000)), "3000m");
        let m = "bad name: 100% ünïcode\n";
        let e = encode_grpc_message(m);
        assert!(e.is_ascii());
        assert_eq!(decode_grpc_message(&e), m);
        assert_eq!(decode_grpc_message("50%"), "50%");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

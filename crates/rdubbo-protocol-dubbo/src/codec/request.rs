//! Request bodies: the invocation's names, descriptors, arguments and attachments.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use rdubbo_core::{Args, HessianArgs};
use rdubbo_hessian::{Decoder, Encoder, Value as HValue};

use super::{Text, DUBBO_VERSION};

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
pub(super) fn read_attachments<'a>(
    d: &mut Decoder<'a>,
) -> Result<Vec<(Text<'a>, Text<'a>)>, String> {
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
pub(super) fn skip_attachments(d: &mut Decoder<'_>) -> Result<(), String> {
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

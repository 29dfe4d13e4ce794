//! Response bodies (status OK), and the generic (`$invoke`) form of values.

use bytes::Bytes;
use rdubbo_core::Reply;
use rdubbo_hessian::{Decoder, Encoder, Map, Value as HValue};

use super::request::{read_attachments, skip_attachments};
use super::{response_flag, DUBBO_VERSION};

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

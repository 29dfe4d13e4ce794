//! The JSON-RPC 2.0 codec: bytes ↔ requests and responses. Pure, no I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use rdubbo_core::error::codes;

/// A request id: a number or a string (or null), echoed back as it came.
pub type Id = Value;

/// A request as it arrives, borrowed from the body where possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` for a notification (no `id` member).
    pub id: Option<Id>,
    /// The method name.
    pub method: String,
    /// Positional parameters.
    pub params: Vec<Value>,
}

/// A request that could not be read, answered with this error (and the id, if one was read).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    /// The id of the request, if it could be read.
    pub id: Option<Id>,
    /// The JSON-RPC error code.
    pub code: i64,
    /// What was wrong.
    pub message: String,
}

/// One entry of a body: a readable request or an error to answer.
pub type Entry = Result<Request, RequestError>;

/// A decoded body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One request object.
    Single(Entry),
    /// A batch (non-empty array).
    Batch(Vec<Entry>),
}

/// The whole body could not be read: answered with one error response and id null.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyError {
    /// -32700 or -32600.
    pub code: i64,
    /// What was wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
}

/// A request in the common well-formed shape, read in one pass.
#[derive(Deserialize)]
struct FastRequest<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    method: String,
    #[serde(default)]
    params: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
}

impl FastRequest<'_> {
    /// The request, if nothing in it needs the slow path's diagnosis.
    fn into_request(self) -> Option<Request> {
        let version_ok = self.jsonrpc.as_deref().is_none_or(|v| v == "2.0");
        let id_ok = self
            .id
            .as_ref()
            .is_none_or(|id| id.is_number() || id.is_string() || id.is_null());
        if !version_ok || !id_ok || self.method.is_empty() || self.method.len() > MAX_METHOD {
            return None;
        }
        Some(Request {
            id: self.id,
            method: self.method,
            params: self.params.unwrap_or_default(),
        })
    }
}

/// Distinguishes an absent `id` (notification) from `"id": null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Decodes a request body: one request object or a batch.
pub fn decode_body(body: &[u8]) -> Result<Body, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(parse_error)?;
            if items.is_empty() {
                return Err(BodyError {
                    code: codes::INVALID_REQUEST,
                    message: "empty batch".into(),
                });
            }
            Ok(Body::Batch(
                items
                    .into_iter()
                    .map(|raw| decode_entry(raw.get()))
                    .collect(),
            ))
        }
        Some(_) => {
            // Fast path: a well-formed request parses in one pass.
            if let Ok(fast) = serde_json::from_slice::<FastRequest<'_>>(body) {
                if let Some(request) = fast.into_request() {
                    return Ok(Body::Single(Ok(request)));
                }
            }
            // Slow path, to say exactly what is wrong. Validate the JSON first so that invalid
            // JSON is -32700, not -32600.
            let raw: &RawValue = serde_json::from_slice(body).map_err(parse_error)?;
            Ok(Body::Single(decode_entry(raw.get())))
        }
        None => Err(BodyError {
            code: codes::PARSE_ERROR,
            message: "empty body".into(),
        }),
    }
}

fn parse_error(e: serde_json::Error) -> BodyError {
    BodyError {
        code: codes::PARSE_ERROR,
        message: format!("parse error: {e}"),
    }
}

/// The longest method name taken.
pub const MAX_METHOD: usize = 256;

/// Input quoted in an error message, cut to a few dozen characters (an error never echoes a
/// large request back).
pub fn short(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}… ({} bytes)", &text[..i], text.len()),
        None => text.to_string(),
    }
}

fn invalid(id: Option<Id>, message: impl Into<String>) -> RequestError {
    RequestError {
        id,
        code: codes::INVALID_REQUEST,
        message: message.into(),
    }
}

/// Decodes one request object (already known to be valid JSON).
fn decode_entry(json: &str) -> Entry {
    let probe: Probe<'_> = match serde_json::from_str(json) {
        Ok(p) => p,
        Err(_) => return Err(invalid(None, "invalid request: not a JSON object")),
    };
    let id = probe.id;
    if let Some(id) = &id {
        if !(id.is_number() || id.is_string() || id.is_null()) {
            return Err(invalid(
                None,
                "invalid request: id must be a number, a string or null",
            ));
        }
    }
    match probe.jsonrpc.map(|r| r.get()) {
        Some("\"2.0\"") | None => {}
        Some(other) => {
            return Err(invalid(
                id,
                format!(
                    "invalid request: jsonrpc must be \"2.0\", got {}",
                    short(other)
                ),
            ))
        }
    }
    let method: String = match probe
        .method
        .map(|r| serde_json::from_str::<String>(r.get()))
    {
        Some(Ok(m)) if m.len() > MAX_METHOD => {
            return Err(invalid(
                id,
                format!(
                    "invalid request: method name of {} bytes is too long",
                    m.len()
                ),
            ))
        }
        Some(Ok(m)) if !m.is_empty() => m,
        Some(Ok(_)) => return Err(invalid(id, "invalid request: method is empty")),
        Some(Err(_)) => return Err(invalid(id, "invalid request: method must be a string")),
        None => return Err(invalid(id, "invalid request: method is missing")),
    };
    let params = match probe.params.map(|r| serde_json::from_str::<Value>(r.get())) {
        None => Vec::new(),
        Some(Ok(Value::Array(items))) => items,
        Some(Ok(Value::Null)) => Vec::new(),
        Some(Ok(_)) => {
            return Err(RequestError {
                id,
                code: codes::INVALID_PARAMS,
                message: format!(
                    "invalid params for {}: params must be an array (positional)",
                    short(&method)
                ),
            })
        }
        Some(Err(e)) => return Err(invalid(id, format!("invalid request: {e}"))),
    };
    Ok(Request { id, method, params })
}

/// An error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// Code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// Extra data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Serialize)]
struct ResultOut<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: &'a Value,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: &'a ErrorObject,
}

/// Appends a success response `{"jsonrpc":"2.0","id":…,"result":…}` to `out`.
pub fn encode_result(out: &mut Vec<u8>, id: &Value, result: &Value) {
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(
        out,
        &ResultOut {
            jsonrpc: "2.0",
            id,
            result,
        },
    );
}

/// Appends a success response whose result is a call's [`rdubbo_core::Reply`], written
/// straight from what it holds (a typed result is serialized once, into `out`).
pub fn encode_reply(
    out: &mut Vec<u8>,
    id: &Value,
    reply: &rdubbo_core::Reply,
) -> Result<(), String> {
    let mark = out.len();
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    let _ = serde_json::to_writer(&mut *out, id);
    out.extend_from_slice(b",\"result\":");
    if let Err(e) = reply.write_json(out) {
        out.truncate(mark);
        return Err(e);
    }
    out.push(b'}');
    Ok(())
}

/// Appends an error response `{"jsonrpc":"2.0","id":…,"error":{…}}` to `out`.
pub fn encode_error(out: &mut Vec<u8>, id: &Value, error: &ErrorObject) {
    let _ = serde_json::to_writer(
        out,
        &ErrorOut {
            jsonrpc: "2.0",
            id,
            error,
        },
    );
}

#[derive(Serialize)]
struct RequestOut<'a> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a [Value],
    id: u32,
}

/// Appends a request `{"jsonrpc":"2.0","method":…,"params":[…],"id":N}` to `out`.
pub fn encode_request(
    out: &mut Vec<u8>,
    method: &str,
    params: &[Value],
    id: u32,
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(
        out,
        &RequestOut {
            jsonrpc: "2.0",
            method,
            params,
            id,
        },
    )
}

/// Appends a request whose params are a call's [`rdubbo_core::Args`], written straight
/// from what they hold.
pub fn encode_request_args(
    out: &mut Vec<u8>,
    method: &str,
    args: &rdubbo_core::Args,
    id: u32,
) -> Result<(), String> {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":");
    serde_json::to_writer(&mut *out, method).map_err(|e| e.to_string())?;
    out.extend_from_slice(b",\"params\":");
    args.write_json(out)?;
    out.extend_from_slice(b",\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.push(b'}');
    Ok(())
}

/// A response as the client reads it.
#[derive(Debug, Deserialize)]
pub struct Response {
    /// The id.
    #[serde(default)]
    pub id: Value,
    /// The result, on success.
    #[serde(default, deserialize_with = "present")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default)]
    pub error: Option<ErrorObject>,
}

/// Decodes a response body.
pub fn decode_response(body: &[u8]) -> Result<Response, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn single(body: &str) -> Entry {
        match decode_body(body.as_bytes()).unwrap() {
            Body::Single(e) => e,
            Body::Batch(_) => panic!("batch"),
        }
    }

    #[test]
    fn reads_the_captured_request() {
        let r = single(r#"{"jsonrpc":"2.0","method":"Echo","params":["Hello, World!"],"id":0}"#)
            .unwrap();
        assert_eq!(r.id, Some(json!(0)));
        assert_eq!(r.method, "Echo");
        assert_eq!(r.params, vec![json!("Hello, World!")]);
        let mut out = Vec::new();
        encode_result(&mut out, &json!(0), &json!("Hello, World!"));
        assert_eq!(out, br#"{"jsonrpc":"2.0","id":0,"result":"Hello, World!"}"#);
    }

    #[test]
    fn classifies_bad_requests() {
        assert_eq!(decode_body(b"{").unwrap_err().code, codes::PARSE_ERROR);
        assert_eq!(decode_body(b"").unwrap_err().code, codes::PARSE_ERROR);
        assert_eq!(decode_body(b"[]").unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(single("1").unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(
            single(r#"{"id":1}"#).unwrap_err().code,
            codes::INVALID_REQUEST
        );
        let e = single(r#"{"method":5,"id":"a"}"#).unwrap_err();
        assert_eq!((e.code, e.id), (codes::INVALID_REQUEST, Some(json!("a"))));
        let e = single(r#"{"jsonrpc":"1.0","method":"m","id":1}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REQUEST);
        let e = single(r#"{"method":"m","params":{"a":1},"id":1}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAMS);
        let e = single(r#"{"method":"m","id":[1]}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REQUEST);
    }

    #[test]
    fn notifications_and_batches() {
        let n = single(r#"{"jsonrpc":"2.0","method":"m"}"#).unwrap();
        assert_eq!(n.id, None);
        let nul = single(r#"{"jsonrpc":"2.0","method":"m","id":null}"#).unwrap();
        assert_eq!(nul.id, Some(Value::Null));
        match decode_body(br#"[{"method":"a","id":1}, 5, {"method":"b"}]"#).unwrap() {
            Body::Batch(items) => {
                assert_eq!(items.len(), 3);
                assert!(items[0].is_ok());
                assert!(items[1].is_err());
                assert_eq!(items[2].as_ref().unwrap().id, None);
            }
            Body::Single(_) => panic!("single"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_body(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn requests_round_trip(method in "[A-Za-z$_][A-Za-z0-9_]{0,20}", id in any::<u32>(), s in ".*", n in any::<i64>()) {
            let params = vec![json!(s), json!(n), json!({"k": [s.clone()]})];
            let mut body = Vec::new();
            encode_request(&mut body, &method, &params, id).unwrap();
            let r = match decode_body(&body).unwrap() { Body::Single(e) => e.unwrap(), _ => unreachable!() };
            prop_assert_eq!(r.method, method);
            prop_assert_eq!(r.params, params);
            prop_assert_eq!(r.id, Some(json!(id)));
        }

        #[test]
        fn arbitrary_json_is_classified(v in arb_json()) {
            let body = serde_json::to_vec(&v).unwrap();
            match decode_body(&body) {
                Ok(Body::Single(Ok(r))) => prop_assert!(!r.method.is_empty()),
                Ok(Body::Single(Err(e))) => prop_assert!(e.code == codes::INVALID_REQUEST || e.code == codes::INVALID_PARAMS),
                Ok(Body::Batch(items)) => prop_assert!(!items.is_empty()),
                Err(e) => prop_assert_eq!(e.code, codes::INVALID_REQUEST),
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("jsonrpc".to_owned()),
                        Just("method".to_owned()),
                        Just("params".to_owned()),
                        Just("id".to_owned()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

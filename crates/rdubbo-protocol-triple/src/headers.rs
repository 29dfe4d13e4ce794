//! Attachments ↔ HTTP headers as Java's `StreamUtils` maps them, and the one-message body
//! both sides send.

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use rdubbo_core::Attachments;

/// `tri-service-version`.
pub const SERVICE_VERSION: &str = "tri-service-version";
/// `tri-service-group`.
pub const SERVICE_GROUP: &str = "tri-service-group";
/// `tri-service-timeout` (ms; HTTP/1 mode).
pub const SERVICE_TIMEOUT: &str = "tri-service-timeout";
/// `tri-consumer-appname`.
pub const CONSUMER_APPNAME: &str = "tri-consumer-appname";
/// `tri-exception-code`: the body holds an exception, not the result.
pub const EXCEPTION_CODE: &str = "tri-exception-code";
/// `tri-header-convert`: percent-encoded JSON `{"lowercase":"OriginalCase"}` restoring the
/// case of attachment keys (HTTP/2 header names are lower-case).
pub const HEADER_CONVERT: &str = "tri-header-convert";
/// `grpc-timeout`.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// `grpc-encoding`.
pub const GRPC_ENCODING: &str = "grpc-encoding";
/// `grpc-accept-encoding`.
pub const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";
/// `grpc-status`.
pub const GRPC_STATUS: &str = "grpc-status";
/// `grpc-message`.
pub const GRPC_MESSAGE: &str = "grpc-message";

/// Headers that are the protocol's own (or HTTP's) and never attachments.
fn reserved(name: &str) -> bool {
    name.starts_with("grpc-")
        || name.starts_with("tri-")
        || name.starts_with("rest-service-")
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "te"
                | "host"
                | "user-agent"
                | "accept"
                | "accept-encoding"
                | "connection"
                | "transfer-encoding"
                | "keep-alive"
                | "upgrade"
                | "alt-svc"
                | "timeout"
                | "triple-protocol-version"
                | "triple-timeout-ms"
                | "path"
                | "interface"
                | "group"
                | "version"
                | "application"
                | "remote.application"
                | "serialization"
                | "generic"
        )
}

/// Writes attachments as headers: keys lower-cased, a value that is not a valid header
/// value as `<key>-bin` with base64 (no padding) of its UTF-8 bytes; reserved and invalid
/// keys are left out.
pub fn put_attachments<'a>(
    headers: &mut HeaderMap,
    attachments: impl Iterator<Item = (&'a str, &'a str)>,
) {
    let mut converts = serde_json::Map::new();
    for (k, v) in attachments {
        let key = k.to_ascii_lowercase();
        if reserved(&key) {
            continue;
        }
        if key != k {
            converts.insert(key.clone(), serde_json::Value::from(k));
        }
        let plain = HeaderValue::from_str(v)
            .ok()
            .filter(|_| !key.ends_with("-bin") && v.bytes().all(|b| (0x20..0x7f).contains(&b)));
        match plain {
            Some(value) => {
                if let Ok(name) = HeaderName::from_bytes(key.as_bytes()) {
                    headers.append(name, value);
                }
            }
            None => {
                let key = if key.ends_with("-bin") {
                    key
                } else {
                    format!("{key}-bin")
                };
                let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(v.as_bytes());
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(key.as_bytes()),
                    HeaderValue::from_str(&encoded),
                ) {
                    headers.append(name, value);
                }
            }
        }
    }
    if !converts.is_empty() {
        let json = serde_json::Value::Object(converts).to_string();
        if let Ok(v) = HeaderValue::from_str(&crate::codec::encode_grpc_message(&json)) {
            headers.insert(HEADER_CONVERT, v);
        }
    }
}

/// Reads the attachments among headers: every header not reserved, `*-bin` ones
/// base64-decoded (padding optional) under the name without `-bin` when they are UTF-8.
pub fn read_attachments(headers: &HeaderMap, into: &mut Attachments) {
    read_fields(headers, into)
}

/// A header list read by name: an `http::HeaderMap` (HTTP/1.1) or an HTTP/2 header list
/// as received (no map built for it).
pub(crate) trait Fields {
    /// The text of the first field named `name` (visible ASCII only, as
    /// `HeaderValue::to_str`).
    fn text(&self, name: &str) -> Option<&str>;
    /// Calls `f` on every regular field (pseudo-headers left out), in order.
    fn each(&self, f: &mut dyn FnMut(&str, &[u8]));
}

impl Fields for HeaderMap {
    fn text(&self, name: &str) -> Option<&str> {
        text(self, name)
    }

    fn each(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self {
            f(name.as_str(), value.as_bytes());
        }
    }
}

impl Fields for rdubbo_http2::Headers {
    fn text(&self, name: &str) -> Option<&str> {
        visible(self.get(name)?)
    }

    fn each(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.iter() {
            if name.first() == Some(&b':') {
                continue;
            }
            if let Ok(name) = std::str::from_utf8(name) {
                f(name, value);
            }
        }
    }
}

/// `value` as text if it is visible ASCII (or tabs), as `HeaderValue::to_str` accepts.
fn visible(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// [`read_attachments`] over any header list.
pub(crate) fn read_fields(headers: &dyn Fields, into: &mut Attachments) {
    let converts: Option<serde_json::Map<String, serde_json::Value>> = headers
        .text(HEADER_CONVERT)
        .and_then(|c| serde_json::from_str(&crate::codec::decode_grpc_message(c)).ok());
    let original = |key: &'_ str| -> String {
        converts
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(serde_json::Value::as_str)
            .filter(|o| o.eq_ignore_ascii_case(key))
            .unwrap_or(key)
            .to_string()
    };
    headers.each(&mut |key, value| {
        if reserved(key) {
            return;
        }
        if let Some(base) = key.strip_suffix("-bin") {
            let text = visible(value).unwrap_or_default().trim_end_matches('=');
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded {
                Some(s) => into.insert(original(base), s),
                None => into.insert(key, text),
            }
            return;
        }
        if let Some(v) = visible(value) {
            into.insert(original(key), v);
        }
    });
}

/// The text of a header.
pub fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The regular fields of an HTTP/2 header list as a `HeaderMap` (pseudo-headers and
/// fields that are not valid HTTP left out).
pub(crate) fn to_map(fields: &rdubbo_http2::Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields.iter() {
        if name.first() == Some(&b':') {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(value.clone()),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// Names and values every answer carries, shared rather than copied.
const COMMON: &[&str] = &[
    "content-type",
    "application/grpc",
    "application/json",
    GRPC_STATUS,
    GRPC_MESSAGE,
    GRPC_ENCODING,
    GRPC_ACCEPT_ENCODING,
    EXCEPTION_CODE,
    "gzip",
    "gzip,identity",
    "identity",
    "0",
    "3",
];

fn shared_bytes(b: &[u8]) -> Bytes {
    match COMMON.iter().find(|c| c.as_bytes() == b) {
        Some(c) => Bytes::from_static(c.as_bytes()),
        None => Bytes::copy_from_slice(b),
    }
}

/// Appends every field of `map` to an HTTP/2 header list.
pub(crate) fn append_fields(dst: &mut rdubbo_http2::Headers, map: &HeaderMap) {
    for (name, value) in map {
        dst.push(
            shared_bytes(name.as_str().as_bytes()),
            shared_bytes(value.as_bytes()),
        );
    }
}

/// A body of at most one chunk, then optional trailers: every message either side sends.
#[derive(Debug, Default)]
pub struct OneBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    /// A gRPC answer whose usual headers are described, not yet built.
    grpc_ok: Option<GrpcOk>,
}

/// The usual headers of a gRPC answer of one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcOk {
    /// `grpc-encoding: gzip`.
    pub gzip: bool,
    /// `tri-exception-code: 3`.
    pub exception: bool,
}

impl OneBody {
    /// A gRPC answer of one message, its headers described: `extra` holds the trailers
    /// after `grpc-status: 0`.
    pub(crate) fn grpc_ok(
        data: Bytes,
        gzip: bool,
        exception: bool,
        extra: Option<HeaderMap>,
    ) -> OneBody {
        OneBody {
            data: (!data.is_empty()).then_some(data),
            trailers: extra,
            grpc_ok: Some(GrpcOk { gzip, exception }),
        }
    }

    /// The described headers of a gRPC answer, taken.
    pub(crate) fn take_grpc_ok(&mut self) -> Option<GrpcOk> {
        self.grpc_ok.take()
    }

    /// The trailers, taken.
    pub(crate) fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// Sets the trailers.
    pub(crate) fn set_trailers(&mut self, trailers: HeaderMap) {
        self.trailers = Some(trailers);
    }

    /// A body of `data`, then `trailers`.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> OneBody {
        OneBody {
            data: (!data.is_empty()).then_some(data),
            trailers,
            grpc_ok: None,
        }
    }

    /// An empty body.
    pub fn empty() -> OneBody {
        OneBody::default()
    }

    /// The chunk and the trailers.
    pub fn into_parts(self) -> (Option<Bytes>, Option<HeaderMap>) {
        (self.data, self.trailers)
    }
}

impl Body for OneBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = self.data.as_ref().map_or(0, |d| d.len() as u64);
        if self.trailers.is_some() {
            // No `content-length` on a gRPC answer: trailers follow.
            let mut hint = SizeHint::new();
            hint.set_lower(len);
            hint
        } else {
            SizeHint::with_exact(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip() {
        let mut a = Attachments::new();
        a.insert("Caller", "rust");
        a.insert("note", "héllo\nworld");
        a.insert("raw-bin", "x");
        a.insert("tri-service-version", "9");
        a.insert("bad key", "v");
        let mut h = HeaderMap::new();
        put_attachments(&mut h, a.iter());
        assert_eq!(text(&h, "caller"), Some("rust"));
        assert_eq!(text(&h, "note-bin"), Some("aMOpbGxvCndvcmxk"));
        assert_eq!(text(&h, "raw-bin"), Some("eA"));
        assert!(h.get("tri-service-version").is_none());
        let mut back = Attachments::new();
        read_attachments(&h, &mut back);
        assert_eq!(back.get("caller"), Some("rust"));
        assert_eq!(back.get("note"), Some("héllo\nworld"));
        assert_eq!(back.get("raw"), Some("x"));
        assert_eq!(back.len(), 3);
        // Upper-case keys travel lower-cased, restored through tri-header-convert.
        assert_eq!(text(&h, HEADER_CONVERT), Some("{\"caller\":\"Caller\"}"));
        assert_eq!(back.iter().next(), Some(("Caller", "rust")));
    }
}

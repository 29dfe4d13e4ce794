//! One call: routing by path, bodies under the budget, gRPC and JSON answers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prost::Message;
use rdubbo_core::{Args, Attachments, Invocation, Invoker, Reply, ReplySink};
use rdubbo_hessian::Encoder;

use crate::codec::{self, grpc, Encoding, TripleResponseWrapper};
use crate::headers::{self, Fields, OneBody};

use super::*;

/// A request's body, from hyper (HTTP/1.1) or rdubbo-http2.
pub(super) enum ReqBody {
    Http1(Incoming),
    H2(rdubbo_http2::RecvStream),
}

/// What a request is: gRPC or the JSON mode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Grpc,
    Json,
}

pub(super) type HttpResponse = Response<OneBody>;

/// What a request's head says, whichever HTTP carried it.
pub(super) struct Head<'a> {
    /// `POST`, `GET`…
    pub(super) method: &'a str,
    /// The path (query left out).
    pub(super) path: &'a str,
    /// Whether HTTP/1.x carried it.
    pub(super) http1: bool,
    /// The header fields.
    pub(super) fields: &'a (dyn Fields + Sync),
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    head: Head<'_>,
    body: ReqBody,
) -> Result<HttpResponse, Infallible> {
    let _busy = Busy::new(&shared, &conn);
    let content_type = head.fields.text("content-type").unwrap_or("");
    let mode = if content_type.starts_with("application/grpc") {
        Mode::Grpc
    } else {
        Mode::Json
    };
    let http1 = head.http1;
    let Some((interface, method)) = split_path(head.path) else {
        return Ok(not_found(mode, &shared, http1, "Invoker not found"));
    };
    if head.method != "POST" && !(mode == Mode::Json && head.method == "GET") {
        return Ok(match mode {
            Mode::Grpc => trailers_only(grpc::UNIMPLEMENTED, "only POST is served", None),
            Mode::Json => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is served",
                &shared,
                http1,
            ),
        });
    }
    let timeout = request_timeout(head.fields).map_or(shared.config.default_timeout, |t| {
        t.min(shared.config.default_timeout)
    });
    let mut call = std::pin::pin!(serve_call(
        &shared,
        &conn,
        mode,
        http1,
        interface,
        method,
        head.fields,
        body,
        timeout,
    ));
    // Most calls finish on their first poll (the body is in, the service answers at once):
    // only the others get a timer.
    if let Poll::Ready(r) = call
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
    {
        return Ok(r);
    }
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => Ok(r),
        Err(_) => {
            let msg =
                format!("Server side timeout: the call of {method} took longer than {timeout:?}");
            Ok(match mode {
                Mode::Grpc => trailers_only(grpc::DEADLINE_EXCEEDED, &msg, None),
                Mode::Json => json_error(StatusCode::GATEWAY_TIMEOUT, &msg, &shared, http1),
            })
        }
    }
}

/// `/<interface>/<method>` or `/<context path>/<interface>/<method>`.
pub(super) fn split_path(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_start_matches('/').trim_end_matches('/');
    let (rest, method) = path.rsplit_once('/')?;
    let interface = rest.rsplit('/').next().unwrap_or(rest);
    (!interface.is_empty() && !method.is_empty()).then_some((interface, method))
}

pub(super) fn request_timeout(h: &dyn Fields) -> Option<Duration> {
    if let Some(t) = h.text(headers::GRPC_TIMEOUT).and_then(codec::parse_timeout) {
        return Some(t);
    }
    [headers::SERVICE_TIMEOUT, "triple-timeout-ms", "timeout"]
        .iter()
        .find_map(|n| h.text(n)?.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Why a body could not be read.
pub(super) enum BodyError {
    /// Over the message size limit.
    TooLarge,
    /// Broken off by the peer.
    Broken,
}

/// Reads a body up to `max` bytes. Before it is buffered past its first bytes, the body
/// takes its whole size — the gRPC message length from its prefix, else `content-length`,
/// else `max` — from the server's budget of buffered request bytes, waiting while the
/// budget is spent (the peer is not read meanwhile: HTTP/2 flow control and TCP push
/// back). Taken whole, never bit by bit, so bodies waiting for budget cannot hold parts of
/// it and starve each other. Given back when the returned permit is dropped.
pub(super) async fn read_body<'s>(
    shared: &'s Shared,
    mut body: ReqBody,
    max: usize,
    grpc_mode: bool,
    content_length: Option<usize>,
) -> Result<(Bytes, tokio::sync::SemaphorePermit<'s>), BodyError> {
    // The usual body is one chunk: kept as it came (a slice of the connection's read
    // buffer), copied into `more` only when a second chunk follows.
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut held: Option<tokio::sync::SemaphorePermit<'s>> = None;
    let mut expected = max;
    loop {
        let Some(chunk) = next_chunk(&mut body).await? else {
            break;
        };
        let have = first.as_ref().map_or(0, Bytes::len) + more.len();
        if have + chunk.len() > expected {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if more.is_empty() => first = Some(chunk),
            None => more.extend_from_slice(&chunk),
            Some(f) => {
                more.reserve(f.len() + chunk.len());
                more.extend_from_slice(&f);
                more.extend_from_slice(&chunk);
            }
        }
        if held.is_none() {
            let out: &[u8] = first.as_deref().unwrap_or(&more);
            let declared = if grpc_mode {
                if out.len() < codec::PREFIX_LEN {
                    continue;
                }
                let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
                Some(codec::PREFIX_LEN.saturating_add(len))
            } else {
                content_length
            };
            expected = declared.unwrap_or(max);
            if expected > max || out.len() > expected {
                return Err(BodyError::TooLarge);
            }
            held = Some(budget(shared, expected).await?);
        }
    }
    let out = first.unwrap_or_else(|| more.freeze());
    let held = match held {
        Some(h) => h,
        None => budget(shared, out.len()).await?,
    };
    Ok((out, held))
}

/// The next chunk of data of a body (trailers and other frames skipped); capacity is
/// handed back to the peer at once, the size being bounded by the budget taken.
pub(super) async fn next_chunk(body: &mut ReqBody) -> Result<Option<Bytes>, BodyError> {
    match body {
        ReqBody::Http1(b) => {
            while let Some(frame) = b.frame().await {
                let frame = frame.map_err(|_| BodyError::Broken)?;
                if let Ok(chunk) = frame.into_data() {
                    return Ok(Some(chunk));
                }
            }
            Ok(None)
        }
        ReqBody::H2(b) => match b.data().await {
            Some(chunk) => Ok(Some(chunk.map_err(|_| BodyError::Broken)?)),
            None => Ok(None),
        },
    }
}

/// `len` bytes of the buffered-request budget (in KiB, rounded up).
pub(super) async fn budget(
    shared: &Shared,
    len: usize,
) -> Result<tokio::sync::SemaphorePermit<'_>, BodyError> {
    let kib = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
    shared
        .body_budget
        .acquire_many(kib)
        .await
        .map_err(|_| BodyError::Broken)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_call(
    shared: &Arc<Shared>,
    conn: &ConnState,
    mode: Mode,
    http1: bool,
    interface: &str,
    method: &str,
    h: &(dyn Fields + Sync),
    body: ReqBody,
    timeout: Duration,
) -> HttpResponse {
    let version = h
        .text(headers::SERVICE_VERSION)
        .or_else(|| h.text("rest-service-version"))
        .filter(|v| !v.is_empty());
    let group = h
        .text(headers::SERVICE_GROUP)
        .or_else(|| h.text("rest-service-group"))
        .filter(|g| !g.is_empty());
    if shared.draining.load(Ordering::SeqCst) {
        let msg = "provider is shutting down; retry on another provider";
        return match mode {
            Mode::Grpc => trailers_only(grpc::UNAVAILABLE, msg, None),
            Mode::Json => json_error(StatusCode::SERVICE_UNAVAILABLE, msg, shared, http1),
        };
    }
    // The request is read whole first (bounded by the size limit and the deadline):
    // answering before the client has sent it makes some clients (curl) see a reset
    // stream instead of the answer.
    let max = shared.config.max_message_size;
    let content_length = h.text("content-length").and_then(|l| l.trim().parse().ok());
    let (raw, _budget) = match read_body(
        shared,
        body,
        max + codec::PREFIX_LEN,
        mode == Mode::Grpc,
        content_length,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let too_large = matches!(e, BodyError::TooLarge);
            let msg = if too_large {
                format!("request larger than {max} bytes")
            } else {
                "request body broken off".to_string()
            };
            return match mode {
                Mode::Grpc => trailers_only(grpc::RESOURCE_EXHAUSTED, &msg, None),
                Mode::Json if too_large => {
                    json_error(StatusCode::PAYLOAD_TOO_LARGE, &msg, shared, http1)
                }
                Mode::Json => json_error(StatusCode::BAD_REQUEST, &msg, shared, http1),
            };
        }
    };
    let Some(export) = shared.find(interface, group, version) else {
        let msg = format!(
            "Not found exported service: {} (from {})",
            rdubbo_core::url::service_key(group, interface, version),
            conn.peer
        );
        return not_found(mode, shared, http1, &msg);
    };
    if !export.methods.is_empty() && !export.methods.contains(method) {
        let msg = format!("Method {method} not found in {}", export.interface);
        return not_found(mode, shared, http1, &msg);
    }
    let encoding = match Encoding::parse(h.text(headers::GRPC_ENCODING)) {
        Some(e) => e,
        None if mode == Mode::Grpc => {
            let mut extra = HeaderMap::new();
            extra.insert(
                headers::GRPC_ACCEPT_ENCODING,
                HeaderValue::from_static("gzip,identity"),
            );
            return trailers_only(
                grpc::UNIMPLEMENTED,
                "unsupported grpc-encoding",
                Some(extra),
            );
        }
        None => Encoding::Identity,
    };
    let mut attachments = Attachments::new();
    headers::read_fields(h, &mut attachments);
    if let Some(app) = h.text(headers::CONSUMER_APPNAME) {
        attachments.insert("remote.application", app);
    }
    let mut inv = Invocation {
        interface: export.interface.clone(),
        group: export.group.clone(),
        version: export.version.clone(),
        method: export.method(method),
        args: Args::default(),
        attachments,
        timeout: Some(timeout),
        parameter_types: std::borrow::Cow::Borrowed(&[]),
        reply_attachments: ReplySink::new(),
    };
    match mode {
        Mode::Grpc => grpc_call(export, inv, raw, encoding, max).await,
        Mode::Json
            if export.info.idl
                || !export.info.streams.is_empty()
                    && export.info.method_kind(method) != rdubbo_core::MethodKind::Unary =>
        {
            let msg = format!(
                "{}.{method} takes protobuf messages or streams: call it over gRPC (the JSON mode serves interface services)",
                export.interface
            );
            json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg, shared, http1)
        }
        Mode::Json => {
            // Parsed JSON takes some 32–80 bytes per value: a body of many tiny values
            // (`[0,0,0,…]`) is refused rather than expanded 16-fold or more.
            let values = codec::json_value_count(&raw);
            let allowed = (shared.config.max_message_size / 32).max(1024);
            if values > allowed {
                let msg = format!("JSON body of {values} values, at most {allowed}");
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, &msg, shared, http1);
            }
            let args = if raw.iter().all(u8::is_ascii_whitespace) {
                Vec::new()
            } else {
                match serde_json::from_slice::<serde_json::Value>(&raw) {
                    Ok(serde_json::Value::Array(a)) => a,
                    Ok(one) => vec![one],
                    Err(e) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            &format!("bad JSON body: {e}"),
                            shared,
                            http1,
                        )
                    }
                }
            };
            inv.args = Args::Json(args);
            json_call(shared, export, inv, http1).await
        }
    }
}

pub(super) async fn grpc_call(
    export: &Export,
    mut inv: Invocation,
    raw: Bytes,
    encoding: Encoding,
    max: usize,
) -> HttpResponse {
    let message = match codec::decode_unary(&raw, encoding, max) {
        Ok(m) => m,
        Err(codec::FrameError::TooLarge(n)) => {
            return trailers_only(
                grpc::RESOURCE_EXHAUSTED,
                &format!("request message larger than {n} bytes"),
                None,
            )
        }
        Err(e) => return trailers_only(grpc::INTERNAL, &e.to_string(), None),
    };
    if export.info.method_kind(&inv.method) != rdubbo_core::MethodKind::Unary {
        return trailers_only(
            grpc::UNIMPLEMENTED,
            &format!("{} is a streaming method: call it over HTTP/2", inv.method),
            None,
        );
    }
    if export.info.idl {
        inv.args = Args::Message(message);
        return message_call(export, inv, encoding, max).await;
    }
    let mut wrapper = match codec::decode_request(message) {
        Ok(w) => w,
        Err(e) => {
            return trailers_only(
                grpc::INTERNAL,
                &format!(
                "bad TripleRequestWrapper (only interface services with Hessian2 are served): {e}"
            ),
                None,
            )
        }
    };
    // Taken (the arguments are read without it), not copied.
    let serialize_type = std::mem::take(&mut wrapper.serialize_type);
    if serialize_type != codec::HESSIAN4 && serialize_type != codec::HESSIAN2 {
        return trailers_only(
            grpc::UNIMPLEMENTED,
            &format!("serialization `{serialize_type}` is not supported, only hessian2 (hessian4)"),
            None,
        );
    }
    inv.args = match codec::decode_args(&wrapper) {
        Ok(a) => a,
        Err(e) => return trailers_only(grpc::INTERNAL, &format!("bad arguments: {e}"), None),
    };
    if wrapper.arg_types.len() == inv.args.len() {
        inv.parameter_types = wrapper
            .arg_types
            .iter()
            .map(|t| std::borrow::Cow::Owned(codec::descriptor(t)))
            .collect();
    }
    let method = inv.method.clone();
    let sink = inv.reply_attachments.clone();
    let result = export.invoker.invoke(inv).await;
    let (data, r#type, exception) = match result {
        Ok(reply) => {
            let mut e = Encoder::new();
            if let Err(msg) = reply.write_hessian(&mut e) {
                tracing::warn!(%msg, "cannot encode the result of {method}");
                return trailers_only(
                    grpc::INTERNAL,
                    &format!("cannot encode the result of {method}: {msg}"),
                    None,
                );
            }
            (e.into_bytes(), codec::reply_type(&reply), false)
        }
        Err(err) if codec::status_of(&err) == grpc::UNKNOWN => {
            let t = codec::exception_of(&err);
            let mut e = Encoder::new();
            e.write_value(&t.to_value());
            (e.into_bytes(), t.class, true)
        }
        Err(err) => {
            return trailers_only(codec::status_of(&err), &err.message(), None);
        }
    };
    let out = TripleResponseWrapper {
        serialize_type,
        data: Bytes::from(data),
        r#type,
    };
    if out.encoded_len() > max {
        let msg = format!("response of {method} larger than {max} bytes");
        tracing::warn!(%msg, "response over the message limit");
        return trailers_only(grpc::RESOURCE_EXHAUSTED, &msg, None);
    }
    let frame = codec::encode_framed(&out, encoding);
    grpc_answer(frame, encoding, exception, &sink)
}

/// A gRPC answer of one message: `content-type`, `grpc-encoding`, `grpc-accept-encoding`
/// (and `tri-exception-code: 3` for an exception), then trailers `grpc-status: 0` and the
/// reply attachments. The headers are left described ([`OneBody::grpc_ok`]): HTTP/2
/// writes them straight into its header list, HTTP/1 makes them `http` headers
/// ([`http_headers`]).
fn grpc_answer(
    frame: Bytes,
    encoding: Encoding,
    exception: bool,
    sink: &ReplySink,
) -> HttpResponse {
    let attachments = sink.get();
    let extra = (attachments.iter().next().is_some()).then(|| {
        let mut t = HeaderMap::new();
        headers::put_attachments(&mut t, attachments.iter());
        t
    });
    Response::new(OneBody::grpc_ok(
        frame,
        encoding == Encoding::Gzip,
        exception,
        extra,
    ))
}

/// Makes the headers a gRPC answer left described ([`grpc_answer`]) `http` headers and
/// trailers (HTTP/1.1, through hyper).
pub(super) fn http_headers(mut resp: HttpResponse) -> HttpResponse {
    let Some(ok) = resp.body_mut().take_grpc_ok() else {
        return resp;
    };
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    if ok.gzip {
        h.insert(headers::GRPC_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        headers::GRPC_ACCEPT_ENCODING,
        HeaderValue::from_static("gzip"),
    );
    if ok.exception {
        h.insert(headers::EXCEPTION_CODE, HeaderValue::from_static("3"));
    }
    let mut trailers = HeaderMap::new();
    trailers.insert(headers::GRPC_STATUS, HeaderValue::from_static("0"));
    if let Some(extra) = resp.body_mut().take_trailers() {
        for (name, value) in &extra {
            trailers.append(name, value.clone());
        }
    }
    resp.body_mut().set_trailers(trailers);
    resp
}

/// A unary call of an IDL service: one protobuf message each way, untouched; errors as
/// gRPC statuses (trailers-only).
async fn message_call(
    export: &Export,
    inv: Invocation,
    encoding: Encoding,
    max: usize,
) -> HttpResponse {
    let method = inv.method.clone();
    let sink = inv.reply_attachments.clone();
    let out = match export.invoker.invoke(inv).await {
        Ok(Reply::Message(m)) => m,
        Ok(Reply::Stream(s)) => match Reply::Stream(s).into_message().await {
            Ok(m) => m,
            Err(e) => return trailers_only(codec::status_of(&e), &e.message(), None),
        },
        Ok(other) => {
            let msg = format!("{method} of an IDL service answered {other:?}, not a message");
            return trailers_only(grpc::INTERNAL, &msg, None);
        }
        Err(e) => return trailers_only(codec::status_of(&e), &e.message(), None),
    };
    if out.len() > max {
        let msg = format!("response of {method} larger than {max} bytes");
        return trailers_only(grpc::RESOURCE_EXHAUSTED, &msg, None);
    }
    let frame = codec::encode_message(&out, encoding);
    grpc_answer(frame, encoding, false, &sink)
}

pub(super) async fn json_call(
    shared: &Shared,
    export: &Export,
    inv: Invocation,
    http1: bool,
) -> HttpResponse {
    let method = inv.method.clone();
    let sink = inv.reply_attachments.clone();
    match export.invoker.invoke(inv).await {
        Ok(reply) => {
            let mut out = Vec::with_capacity(128);
            if let Err(msg) = reply.write_json(&mut out) {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode the result of {method}: {msg}"),
                    shared,
                    http1,
                );
            }
            if out.len() > shared.config.max_message_size {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!(
                        "response of {method} larger than {} bytes",
                        shared.config.max_message_size
                    ),
                    shared,
                    http1,
                );
            }
            let mut resp = Response::new(OneBody::new(Bytes::from(out), None));
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            headers::put_attachments(h, sink.get().iter());
            if http1 {
                h.insert("alt-svc", shared.alt_svc.clone());
            }
            resp
        }
        Err(e) => {
            let status = match codec::status_of(&e) {
                grpc::UNIMPLEMENTED => StatusCode::NOT_FOUND,
                grpc::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
                grpc::INVALID_ARGUMENT => StatusCode::BAD_REQUEST,
                grpc::DEADLINE_EXCEEDED => StatusCode::GATEWAY_TIMEOUT,
                grpc::RESOURCE_EXHAUSTED => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json_error(status, &e.message(), shared, http1)
        }
    }
}

pub(super) fn not_found(mode: Mode, shared: &Shared, http1: bool, msg: &str) -> HttpResponse {
    match mode {
        Mode::Grpc => trailers_only(grpc::UNIMPLEMENTED, msg, None),
        Mode::Json => json_error(StatusCode::NOT_FOUND, "Invoker not found", shared, http1),
    }
}

/// A gRPC answer with no message: status and message in the headers.
pub(super) fn trailers_only(status: u32, message: &str, extra: Option<HeaderMap>) -> HttpResponse {
    let mut resp = Response::new(OneBody::empty());
    let h = resp.headers_mut();
    if let Some(extra) = extra {
        h.extend(extra);
    }
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert(headers::GRPC_STATUS, HeaderValue::from(status));
    if let Ok(v) = HeaderValue::from_str(&codec::encode_grpc_message(message)) {
        h.insert(headers::GRPC_MESSAGE, v);
    }
    resp
}

/// Java's error body `{"status":"<http status>","message":"…"}`.
pub(super) fn json_error(
    status: StatusCode,
    message: &str,
    shared: &Shared,
    http1: bool,
) -> HttpResponse {
    let body = serde_json::json!({ "status": status.as_u16().to_string(), "message": message });
    let mut resp = Response::new(OneBody::new(Bytes::from(body.to_string()), None));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if http1 {
        h.insert("alt-svc", shared.alt_svc.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(split_path("/a.B/m"), Some(("a.B", "m")));
        assert_eq!(split_path("/ctx/a.B/m/"), Some(("a.B", "m")));
        assert_eq!(split_path("/a.B"), None);
        assert_eq!(split_path("//m"), None);
    }

    #[test]
    fn timeouts_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("timeout", HeaderValue::from_static("250"));
        assert_eq!(request_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", HeaderValue::from_static("2S"));
        assert_eq!(request_timeout(&h), Some(Duration::from_secs(2)));
    }
}

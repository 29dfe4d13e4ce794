//! Answering one HTTP request: routing it to an export, reading the JSON-RPC body (single
//! or batch) within the limits, calling the invoker under its deadline, and writing the
//! JSON-RPC and HTTP responses.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rdubbo_core::error::codes;
use rdubbo_core::{Attachments, Invocation, Invoker, RpcError};
use serde_json::Value;

use crate::codec::{self, Body, Entry, ErrorObject};
use crate::timeout::parse_timeout_header;

use super::{ConnState, Export, Shared};

type HttpResponse = Response<Full<Bytes>>;

pub(super) fn error_body(id: &Value, code: i64, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len());
    codec::encode_error(
        &mut out,
        id,
        &ErrorObject {
            code,
            message: message.to_owned(),
            data: None,
        },
    );
    out
}

fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(status: StatusCode, code: i64, message: &str) -> HttpResponse {
    json_response(status, error_body(&Value::Null, code, message))
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    conn.active_ms.store(shared.now_ms(), Ordering::Relaxed);
    let resp = handle_inner(&shared, &conn, req).await;
    conn.active_ms.store(shared.now_ms(), Ordering::Relaxed);
    Ok(resp)
}

/// Marks a connection as serving a call while alive.
struct Busy<'a>(&'a ConnState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle_inner(shared: &Shared, conn: &ConnState, req: Request<Incoming>) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        let mut resp = Response::new(Full::new(Bytes::new()));
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return resp;
    }
    if req.method() != Method::POST {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::INVALID_REQUEST,
            &format!(
                "method {} not allowed: JSON-RPC is served by POST",
                req.method()
            ),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return resp;
    }
    let path = req.uri().path().trim_start_matches('/');
    let Some(exports) = shared.routes.get(path) else {
        return error_response(
            StatusCode::NOT_FOUND,
            codes::METHOD_NOT_FOUND,
            &format!("no service at /{}", codec::short(path)),
        );
    };
    if shared.draining.load(Ordering::Relaxed) {
        let mut resp = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "provider is shutting down",
        );
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let Ok(_permit) = shared.limiter.try_acquire() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SERVER_BUSY,
            &format!(
                "too many concurrent requests (limit {})",
                shared.config.max_concurrent_requests
            ),
        );
    };
    let headers = req.headers();
    let Some(export) = select_export(exports, headers) else {
        return error_response(
            StatusCode::NOT_FOUND,
            codes::METHOD_NOT_FOUND,
            &format!(
                "no service at /{} with version {:?} and group {:?}",
                codec::short(path),
                header_str(headers, "version").unwrap_or(""),
                header_str(headers, "group").unwrap_or("")
            ),
        );
    };
    let timeout = header_str(headers, "timeout")
        .and_then(parse_timeout_header)
        .map(|t| t.min(shared.config.default_timeout))
        .unwrap_or(shared.config.default_timeout);
    let attachments = attachments_from(headers);

    let max = shared.config.max_body_size;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(max);
    }
    let read = Limited::new(req.into_body(), max).collect();
    let Ok(read) = tokio::time::timeout(shared.config.body_read_timeout, read).await else {
        let mut resp = error_response(
            StatusCode::REQUEST_TIMEOUT,
            codes::INVALID_REQUEST,
            &format!(
                "request body not received within {:?}",
                shared.config.body_read_timeout
            ),
        );
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return resp;
    };
    conn.busy.fetch_add(1, Ordering::Relaxed);
    let _busy = Busy(conn);
    let body = match read {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(max),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                codes::PARSE_ERROR,
                &format!("cannot read request body: {e}"),
            )
        }
    };

    let call = |request: codec::Request| {
        let inv = Invocation {
            interface: export.interface.clone(),
            group: export.group.clone(),
            version: export.version.clone(),
            method: Arc::from(request.method),
            args: rdubbo_core::Args::Json(request.params),
            attachments: attachments.clone(),
            timeout: Some(timeout),
            parameter_types: std::borrow::Cow::Borrowed(&[]),
            reply_attachments: rdubbo_core::ReplySink::default(),
        };
        let invoker = export.invoker.clone();
        async move {
            let method = inv.method.clone();
            let iface = inv.interface.clone();
            // Most calls finish on their first poll: only the others get a timer.
            let mut call = invoker.invoke(inv);
            let first = call
                .as_mut()
                .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
            if let std::task::Poll::Ready(r) = first {
                return r;
            }
            match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(RpcError::remote(
                    codes::SERVER_TIMEOUT,
                    format!("{iface}.{method} did not finish within {timeout:?} on the provider"),
                )),
            }
        }
    };

    match codec::decode_body(&body) {
        Err(e) => json_response(StatusCode::OK, error_body(&Value::Null, e.code, &e.message)),
        Ok(Body::Single(entry)) => {
            let mut out = Vec::with_capacity(128);
            if answer(&mut out, entry, &call).await {
                if out.len() > shared.config.max_response_size {
                    out = error_body(
                        &Value::Null,
                        codes::INTERNAL_ERROR,
                        &format!(
                            "response of {} bytes exceeds the limit of {}",
                            out.len(),
                            shared.config.max_response_size
                        ),
                    );
                }
                json_response(StatusCode::OK, out)
            } else {
                no_content()
            }
        }
        Ok(Body::Batch(entries)) if entries.len() > shared.config.max_batch => json_response(
            StatusCode::OK,
            error_body(
                &Value::Null,
                codes::INVALID_REQUEST,
                &format!(
                    "batch of {} requests exceeds the limit of {}",
                    entries.len(),
                    shared.config.max_batch
                ),
            ),
        ),
        Ok(Body::Batch(entries)) => {
            let mut out = Vec::with_capacity(128 * entries.len());
            out.push(b'[');
            let mut any = false;
            for entry in entries {
                let mark = out.len();
                if any {
                    out.push(b',');
                }
                let id = match &entry {
                    Ok(r) => r.id.clone(),
                    Err(e) => e.id.clone(),
                };
                if answer(&mut out, entry, &call).await {
                    any = true;
                    if out.len() > shared.config.max_response_size {
                        // This entry's result does not fit: an error in its place.
                        out.truncate(mark);
                        if mark > 1 {
                            out.push(b',');
                        }
                        codec::encode_error(
                            &mut out,
                            &id.unwrap_or(Value::Null),
                            &ErrorObject {
                                code: codes::INTERNAL_ERROR,
                                message: format!(
                                    "response exceeds the limit of {} bytes",
                                    shared.config.max_response_size
                                ),
                                data: None,
                            },
                        );
                    }
                } else {
                    out.truncate(mark);
                }
            }
            out.push(b']');
            if any {
                json_response(StatusCode::OK, out)
            } else {
                no_content()
            }
        }
    }
}

/// Serves one entry, appending its response; returns false for a notification.
async fn answer<F, Fut>(out: &mut Vec<u8>, entry: Entry, call: &F) -> bool
where
    F: Fn(codec::Request) -> Fut,
    Fut: std::future::Future<Output = Result<rdubbo_core::Reply, RpcError>>,
{
    match entry {
        Err(e) => {
            let id = e.id.unwrap_or(Value::Null);
            codec::encode_error(
                out,
                &id,
                &ErrorObject {
                    code: e.code,
                    message: e.message,
                    data: None,
                },
            );
            true
        }
        Ok(request) => {
            let id = request.id.clone();
            let result = call(request).await;
            let Some(id) = id else {
                return false;
            };
            let result = match result {
                Ok(v) => codec::encode_reply(out, &id, &v).map_err(|e| {
                    RpcError::remote(
                        codes::INTERNAL_ERROR,
                        format!("cannot encode the result: {e}"),
                    )
                }),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(e) => {
                    let data = match &e {
                        RpcError::Remote { data, .. } => data.clone(),
                        _ => None,
                    };
                    codec::encode_error(
                        out,
                        &id,
                        &ErrorObject {
                            code: e.code(),
                            message: e.message(),
                            data,
                        },
                    )
                }
            }
            true
        }
    }
}

fn no_content() -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn too_large(max: usize) -> HttpResponse {
    let mut resp = error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::INVALID_REQUEST,
        &format!("request body exceeds the limit of {max} bytes"),
    );
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn select_export<'a>(exports: &'a [Export], headers: &HeaderMap) -> Option<&'a Export> {
    let version = header_str(headers, "version").filter(|v| !v.is_empty());
    let group = header_str(headers, "group").filter(|g| !g.is_empty());
    let matching = |e: &&Export| e.version.as_deref() == version && e.group.as_deref() == group;
    if let Some(e) = exports.iter().find(matching) {
        return Some(e);
    }
    match (version, exports) {
        // A caller that names no version is served by the only export there is.
        (None, [only]) if group.is_none() || only.group.as_deref() == group => Some(only),
        _ => None,
    }
}

/// Headers that are HTTP's own or the protocol's, not call attachments.
const NOT_ATTACHMENTS: &[&str] = &[
    "timeout",
    "x-method",
    "x-services",
    "x-proxy-id",
    "version",
    "group",
    "host",
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "connection",
    "keep-alive",
    "user-agent",
    "transfer-encoding",
    "te",
    "expect",
    "upgrade",
];

fn attachments_from(headers: &HeaderMap) -> Attachments {
    let mut a = Attachments::new();
    for (name, value) in headers {
        let n = name.as_str();
        if NOT_ATTACHMENTS.contains(&n) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            a.insert(n, v);
        }
    }
    a
}

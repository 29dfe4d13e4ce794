//! Streaming calls (server-, client- and bidirectional streaming) of IDL services over
//! HTTP/2: requests handed to the service as they are read, answers sent as the peer's
//! window allows, the deadline over the whole call, cancellation both ways.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, HeaderValue, Request, Response};
use rdubbo_core::{
    Args, Attachments, Invocation, MessageStream, MethodKind, Reply, ReplySink, RpcError,
};
use rdubbo_http2::{RecvStream, SendStream};

use crate::codec::{self, grpc, Encoding};
use crate::headers::{self, Fields};
use crate::stream::{pump, unwrap_request, wrap_response, End, Incoming, Map, Pumped, Stop};

use super::*;

/// The export and kind of a streaming method a request names, if it names one.
pub(super) fn streaming_route(
    shared: &Shared,
    path: &str,
    h: &dyn Fields,
) -> Option<(Arc<Export>, MethodKind)> {
    let (interface, method) = split_path(path)?;
    let export = shared.find(interface, group_of(h), version_of(h))?;
    let kind = export.info.method_kind(method);
    (kind != MethodKind::Unary).then(|| (export.clone(), kind))
}

pub(super) fn version_of(h: &dyn Fields) -> Option<&str> {
    h.text(headers::SERVICE_VERSION)
        .or_else(|| h.text("rest-service-version"))
        .filter(|v| !v.is_empty())
}

pub(super) fn group_of(h: &dyn Fields) -> Option<&str> {
    h.text(headers::SERVICE_GROUP)
        .or_else(|| h.text("rest-service-group"))
        .filter(|g| !g.is_empty())
}

/// Answers with a gRPC status only (no message).
async fn refuse(respond: &mut SendStream, status: u32, message: &str, extra: Option<HeaderMap>) {
    super::conn::send_response(respond, trailers_only(status, message, extra)).await;
}

fn status_trailers(status: u32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(headers::GRPC_STATUS, HeaderValue::from(status));
    if status != grpc::OK {
        if let Ok(v) = HeaderValue::from_str(&codec::encode_grpc_message(message)) {
            t.insert(headers::GRPC_MESSAGE, v);
        }
    }
    t
}

/// Serves one streaming call.
pub(super) async fn serve_stream(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    export: Arc<Export>,
    kind: MethodKind,
    req: Request<RecvStream>,
    mut respond: SendStream,
) {
    let _busy = Busy::new(&shared, &conn);
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if !headers::text(h, "content-type").is_some_and(|c| c.starts_with("application/grpc")) {
        return refuse(
            &mut respond,
            grpc::UNIMPLEMENTED,
            "streaming methods are served over gRPC only",
            None,
        )
        .await;
    }
    if shared.draining.load(Ordering::SeqCst) {
        return refuse(
            &mut respond,
            grpc::UNAVAILABLE,
            "provider is shutting down; retry on another provider",
            None,
        )
        .await;
    }
    let Some(encoding) = Encoding::parse(headers::text(h, headers::GRPC_ENCODING)) else {
        let mut extra = HeaderMap::new();
        extra.insert(
            headers::GRPC_ACCEPT_ENCODING,
            HeaderValue::from_static("gzip,identity"),
        );
        return refuse(
            &mut respond,
            grpc::UNIMPLEMENTED,
            "unsupported grpc-encoding",
            Some(extra),
        )
        .await;
    };
    let timeout = request_timeout(h).map_or(shared.config.default_timeout, |t| {
        t.min(shared.config.default_timeout)
    });
    let deadline = tokio::time::Instant::now() + timeout;
    let method = split_path(parts.uri.path()).map_or("", |(_, m)| m);
    let mut attachments = Attachments::new();
    headers::read_attachments(h, &mut attachments);
    if let Some(app) = headers::text(h, headers::CONSUMER_APPNAME) {
        attachments.insert("remote.application", app);
    }
    let max = shared.config.max_message_size;
    let peer = conn.peer.to_string();
    let mut incoming = Incoming::new(body, encoding, max, End::Plain, peer)
        .with_deadline(deadline, RpcError::Timeout(timeout))
        .with_budget(shared.body_budget.clone());
    let method_name = export.method(method);
    let mut inv = Invocation {
        interface: export.interface.clone(),
        group: export.group.clone(),
        version: export.version.clone(),
        method: method_name.clone(),
        args: Args::default(),
        attachments,
        timeout: Some(timeout),
        parameter_types: std::borrow::Cow::Borrowed(&[]),
        reply_attachments: ReplySink::new(),
    };
    let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
    // An interface service (Java's `StreamObserver` methods): every message is a wrapper
    // around one Hessian2 value, the service sees the values.
    let idl = export.info.idl;
    if kind.client_streams() {
        inv.args = Args::Stream(if idl {
            MessageStream::new(incoming)
        } else {
            MessageStream::new(Map::new(incoming, unwrap_request))
        });
    } else {
        // Server streaming: the one request first.
        match std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx)).await {
            Some(Ok(m)) if idl => inv.args = Args::Message(m),
            Some(Ok(m)) => {
                let args = codec::decode_request(m).and_then(|w| codec::decode_args(&w));
                match args {
                    Ok(a) => inv.args = a,
                    Err(e) => {
                        let msg = format!("bad TripleRequestWrapper: {e}");
                        return refuse(&mut respond, grpc::INTERNAL, &msg, None).await;
                    }
                }
            }
            Some(Err(e)) => {
                return refuse(&mut respond, codec::status_of(&e), &e.message(), None).await;
            }
            None => {
                return refuse(
                    &mut respond,
                    grpc::INTERNAL,
                    "the request ended without a message",
                    None,
                )
                .await
            }
        }
    }
    let sink = inv.reply_attachments.clone();
    let invoked = {
        let call = export.invoker.invoke(inv);
        tokio::pin!(call);
        std::future::poll_fn(|cx| {
            if respond.poll_reset(cx).is_ready() {
                return Poll::Ready(Err(Stop::Reset));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Stop::Deadline));
            }
            call.as_mut().poll(cx).map(Ok)
        })
        .await
    };
    let reply = match invoked {
        Err(Stop::Reset) => return,
        Err(Stop::Deadline) => {
            let msg = format!(
                "Server side timeout: the call of {method_name} took longer than {timeout:?}"
            );
            return refuse(&mut respond, grpc::DEADLINE_EXCEEDED, &msg, None).await;
        }
        Ok(Err(e)) => return refuse(&mut respond, codec::status_of(&e), &e.message(), None).await,
        Ok(Ok(reply)) => reply,
    };
    let messages = match reply {
        Reply::Message(m) => MessageStream::once(m),
        Reply::Stream(s) => s,
        other if !idl => {
            let mut e = rdubbo_hessian::Encoder::new();
            match other.write_hessian(&mut e) {
                Ok(()) => MessageStream::once(Bytes::from(e.into_bytes())),
                Err(msg) => return refuse(&mut respond, grpc::INTERNAL, &msg, None).await,
            }
        }
        other => {
            let msg = format!(
                "{method_name} is a streaming method of an IDL service; it answered {other:?}, not messages"
            );
            return refuse(&mut respond, grpc::INTERNAL, &msg, None).await;
        }
    };
    let messages = match messages.take() {
        Ok(m) if idl => m.into_inner(),
        Ok(m) => Box::pin(Map::new(m, |v| Ok(wrap_response(v)))),
        Err(e) => return refuse(&mut respond, grpc::INTERNAL, &e.message(), None).await,
    };
    let Ok(mut messages) = MessageStream::boxed(messages).take() else {
        return;
    };
    let mut resp = Response::new(crate::headers::OneBody::empty());
    let rh = resp.headers_mut();
    rh.insert("content-type", HeaderValue::from_static("application/grpc"));
    if encoding == Encoding::Gzip {
        rh.insert(headers::GRPC_ENCODING, HeaderValue::from_static("gzip"));
    }
    rh.insert(
        headers::GRPC_ACCEPT_ENCODING,
        HeaderValue::from_static("gzip"),
    );
    headers::put_attachments(rh, sink.get().iter());
    let (parts, _) = resp.into_parts();
    let mut head = rdubbo_http2::Headers::with_capacity(parts.headers.len() + 1);
    head.push_static(":status", "200");
    crate::headers::append_fields(&mut head, &parts.headers);
    let mut send = respond;
    // The headers go at once: a peer may wait for them before it sends more.
    if send.send_headers(&head, false).await.is_err() || send.flush().await.is_err() {
        return;
    }
    let limit = if kind.server_streams() { usize::MAX } else { 1 };
    let late = || {
        let msg = format!(
            "Server side timeout: the stream of {method_name} lasted longer than {timeout:?}"
        );
        status_trailers(grpc::DEADLINE_EXCEEDED, &msg)
    };
    let trailers = match pump(&mut messages, &mut send, &mut sleep, encoding, max, limit).await {
        Pumped::Reset => return,
        Pumped::Deadline => late(),
        Pumped::Done => status_trailers(grpc::OK, ""),
        Pumped::Failed(e) => status_trailers(codec::status_of(&e), &e.message()),
        Pumped::TooLarge => {
            let msg = format!("a message of {method_name} is larger than {max} bytes");
            status_trailers(grpc::RESOURCE_EXHAUSTED, &msg)
        }
    };
    // Dropped before the trailers go: the service's producer learns nobody reads.
    drop(messages);
    let mut trailers = trailers;
    headers::put_attachments(&mut trailers, sink.get().iter());
    let mut t = rdubbo_http2::Headers::with_capacity(trailers.len());
    crate::headers::append_fields(&mut t, &trailers);
    let _ = send.send_trailers(&t).await;
}

/// Whether any export has streaming methods (only then are requests looked at before
/// the unary path).
pub(super) fn any_streams<'a>(infos: impl IntoIterator<Item = &'a ServiceInfo>) -> bool {
    infos.into_iter().any(|i| !i.streams.is_empty())
}

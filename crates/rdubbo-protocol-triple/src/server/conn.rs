//! One connection: HTTP/2 or HTTP/1.1 told apart by the first bytes (or by ALPN over TLS),
//! idle checks.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;

/// The HTTP/2 connection preface.
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection starts with the HTTP/2 preface (`None`: it closed, or sent
/// nothing in time). Peeked, not read: the bytes stay for the protocol's own reader.
pub(super) async fn detect_h2(stream: &TcpStream, within: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != PREFACE[..n] {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        // Part of the preface so far (rare: it is one small write): look again shortly.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// When an idle connection should be closed: `None` if it is busy or not idle long enough
/// (with the time to look again).
pub(super) fn idle_check(shared: &Shared, state: &ConnState) -> Result<(), Duration> {
    let idle = shared.config.idle_timeout;
    if state.busy.load(Ordering::SeqCst) > 0 {
        return Err(idle);
    }
    let last = state.last_ms.load(Ordering::Relaxed);
    let since = Duration::from_millis(shared.now_ms().saturating_sub(last));
    if since >= idle {
        Ok(())
    } else {
        Err(idle.saturating_sub(since).max(Duration::from_millis(10)))
    }
}

/// HTTP/2 over rdubbo-http2: a call whose answer is ready on its first poll (the body
/// arrived with the headers, the service answered at once) is answered from the
/// connection's task, with no task of its own and its frames written with the others of
/// the batch; the others get a task. The engine closes an idle connection (GOAWAY) and
/// one whose peer stops reading (write deadline).
pub(super) async fn serve_h2<R, W>(
    read: R,
    write: W,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let config = &shared.config;
    let engine = rdubbo_http2::Config {
        max_concurrent_streams: config.max_concurrent_streams,
        max_header_list_size: config.max_header_list_size,
        // What a peer may send unread: 1 MiB per stream, 4 MiB per connection.
        initial_stream_window: 1 << 20,
        connection_window: 4 << 20,
        max_write_buffer: 1 << 20,
        handshake_timeout: Some(config.header_read_timeout),
        idle_timeout: Some(config.idle_timeout),
        ..rdubbo_http2::Config::default()
    };
    let handler = {
        let shared = shared.clone();
        let state = state.clone();
        move |req: rdubbo_http2::Request| respond_h2(shared.clone(), state.clone(), req)
    };
    let (handle, conn) = rdubbo_http2::serve_io(read, write, engine, handler);
    tokio::pin!(conn);
    let peer = state.peer;
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
            }
        }
        changed = stop.changed() => {
            let drain = match changed { Ok(()) => (*stop.borrow()).unwrap_or_default(), Err(_) => Duration::ZERO };
            handle.graceful_shutdown();
            // Dropped (closed) when the drain time is over.
            let _ = tokio::time::timeout(drain, conn).await;
        }
    }
}

/// A status line value without allocating for the usual ones.
fn status_value(status: http::StatusCode) -> Bytes {
    match status.as_u16() {
        200 => Bytes::from_static(b"200"),
        _ => Bytes::copy_from_slice(status.as_str().as_bytes()),
    }
}

/// The header and trailer lists of the usual gRPC answer of one message (status 200, not
/// compressed, no exception, no extra fields), built once: the same fields as
/// [`send_response`] builds for any other.
fn usual_grpc_ok() -> &'static (rdubbo_http2::Headers, rdubbo_http2::Headers) {
    static LISTS: std::sync::OnceLock<(rdubbo_http2::Headers, rdubbo_http2::Headers)> =
        std::sync::OnceLock::new();
    LISTS.get_or_init(|| {
        let mut h = rdubbo_http2::Headers::with_capacity(3);
        h.push_static(":status", "200");
        h.push_static("content-type", "application/grpc");
        h.push_static(crate::headers::GRPC_ACCEPT_ENCODING, "gzip");
        let mut t = rdubbo_http2::Headers::with_capacity(1);
        t.push_static(crate::headers::GRPC_STATUS, "0");
        (h, t)
    })
}

/// Sends an answer (headers, message, trailers) on `send`.
pub(super) async fn send_response(send: &mut rdubbo_http2::SendStream, resp: HttpResponse) {
    let (parts, mut body) = resp.into_parts();
    let grpc_ok = body.take_grpc_ok();
    let (data, trailers) = body.into_parts();
    if let (Some(ok), Some(d)) = (grpc_ok, &data) {
        if !ok.gzip
            && !ok.exception
            && parts.status == http::StatusCode::OK
            && parts.headers.is_empty()
        {
            // The usual answer: its header and trailer lists are built once.
            let (h, t) = usual_grpc_ok();
            if send.send_headers(h, false).await.is_err() {
                return;
            }
            let _ = match &trailers {
                None => send.send_data_and_trailers(d, t).await,
                Some(extra) => {
                    let mut t = t.clone();
                    crate::headers::append_fields(&mut t, extra);
                    send.send_data_and_trailers(d, &t).await
                }
            };
            return;
        }
    }
    let mut h = rdubbo_http2::Headers::with_capacity(parts.headers.len() + 5);
    h.push(Bytes::from_static(b":status"), status_value(parts.status));
    crate::headers::append_fields(&mut h, &parts.headers);
    if let Some(ok) = grpc_ok {
        // A gRPC answer of one message: its usual fields, no `http` map built.
        h.push_static("content-type", "application/grpc");
        if ok.gzip {
            h.push_static(crate::headers::GRPC_ENCODING, "gzip");
        }
        h.push_static(crate::headers::GRPC_ACCEPT_ENCODING, "gzip");
        if ok.exception {
            h.push_static(crate::headers::EXCEPTION_CODE, "3");
        }
        let mut t = rdubbo_http2::Headers::with_capacity(1);
        t.push_static(crate::headers::GRPC_STATUS, "0");
        if let Some(extra) = &trailers {
            crate::headers::append_fields(&mut t, extra);
        }
        let _ = match data {
            Some(d) => {
                if send.send_headers(&h, false).await.is_err() {
                    return;
                }
                send.send_data_and_trailers(&d, &t).await
            }
            None => {
                h.push_static(crate::headers::GRPC_STATUS, "0");
                send.send_headers(&h, true).await
            }
        };
        return;
    }
    let end = data.is_none() && trailers.is_none();
    if send.send_headers(&h, end).await.is_err() || end {
        return;
    }
    let trailers = trailers.map(|t| {
        let mut l = rdubbo_http2::Headers::with_capacity(t.len());
        crate::headers::append_fields(&mut l, &t);
        l
    });
    let _ = match (data, trailers) {
        (Some(d), Some(t)) => send.send_data_and_trailers(&d, &t).await,
        (Some(d), None) => send.send_data(&d, true).await,
        (None, Some(t)) => send.send_trailers(&t).await,
        (None, None) => Ok(()),
    };
}

/// Serves one HTTP/2 request and sends its answer (headers, message, trailers).
pub(super) async fn respond_h2(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    req: rdubbo_http2::Request,
) {
    let rdubbo_http2::Request {
        headers: fields,
        body,
        mut send,
    } = req;
    let (mut method, mut path) = (None, None);
    for (name, value) in fields.iter() {
        match name.as_ref() {
            b":method" => method = std::str::from_utf8(value).ok(),
            b":path" => path = std::str::from_utf8(value).ok(),
            n if n.first() != Some(&b':') => break,
            _ => {}
        }
    }
    let (Some(method), Some(path)) = (method, path) else {
        send.reset(rdubbo_http2::Reason::PROTOCOL_ERROR);
        return;
    };
    // The path without its query.
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if shared.streams {
        if let Some((export, kind)) = super::stream::streaming_route(&shared, path, &fields) {
            let Ok(uri) = http::Uri::try_from(path) else {
                send.reset(rdubbo_http2::Reason::PROTOCOL_ERROR);
                return;
            };
            let mut req = Request::new(body);
            *req.uri_mut() = uri;
            *req.version_mut() = http::Version::HTTP_2;
            *req.headers_mut() = crate::headers::to_map(&fields);
            return super::stream::serve_stream(shared, state, export, kind, req, send).await;
        }
    }
    let head = Head {
        method,
        path,
        http1: false,
        fields: &fields,
    };
    let Ok(resp) = handle(shared, state, head, ReqBody::H2(body)).await;
    send_response(&mut send, resp).await;
}

/// HTTP/1.1 (the JSON mode, curl) through hyper.
pub(super) async fn serve_http1<S>(
    stream: S,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = state.peer;
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        let state = svc_state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let head = Head {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                http1: parts.version < http::Version::HTTP_2,
                fields: &parts.headers,
            };
            handle(shared, state, head, ReqBody::Http1(body))
                .await
                .map(http_headers)
        }
    });
    let conn = shared.http1.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle_timer = tokio::time::sleep(shared.config.idle_timeout);
    tokio::pin!(idle_timer);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = &mut idle_timer => {
                if closing {
                    break;
                }
                match idle_check(shared, state) {
                    Ok(()) => {
                        tracing::debug!(%peer, "idle connection closed");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                        idle_timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    Err(left) => idle_timer.as_mut().reset(tokio::time::Instant::now() + left),
                }
            }
            changed = stop.changed(), if !closing => {
                let drain = match changed { Ok(()) => (*stop.borrow()).unwrap_or_default(), Err(_) => Duration::ZERO };
                closing = true;
                conn.as_mut().graceful_shutdown();
                idle_timer.as_mut().reset(tokio::time::Instant::now() + drain);
            }
        }
    }
}

/// A TLS connection: the handshake (within its deadline, abandoned when the server stops),
/// then HTTP/2 or HTTP/1.1 as ALPN picked, or as the first bytes tell when it picked
/// neither.
pub(super) async fn serve_tls(
    stream: TcpStream,
    tls: ServerTls,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) {
    let peer = state.peer;
    let session = tokio::select! {
        r = tls.accept(stream) => match r {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed; closing");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    if shared.draining.load(Ordering::SeqCst) {
        return;
    }
    let alpn = session.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let mut stream = Prefixed {
        prefix: Bytes::new(),
        inner: session,
    };
    let h2 = match alpn.as_deref() {
        Some(b"h2") => true,
        Some(b"http/1.1") => false,
        _ => match sniff_h2(&mut stream, shared.config.header_read_timeout).await {
            Some(h2) => h2,
            None => return,
        },
    };
    if h2 {
        let (read, write) = tokio::io::split(stream);
        serve_h2(read, write, shared, state, stop).await
    } else {
        serve_http1(stream, shared, state, stop).await
    }
}

/// Whether a stream that cannot be peeked starts with the HTTP/2 preface: the bytes read
/// to tell are kept in front of the stream.
async fn sniff_h2<S>(stream: &mut Prefixed<S>, within: Duration) -> Option<bool>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(PREFACE.len());
    let deadline = tokio::time::Instant::now() + within;
    let answer = loop {
        let mut chunk = [0u8; 24];
        let want = PREFACE.len() - buf.len();
        let n = tokio::time::timeout_at(deadline, stream.inner.read(&mut chunk[..want]))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf[..] != PREFACE[..buf.len()] {
            break false;
        }
        if buf.len() == PREFACE.len() {
            break true;
        }
    };
    stream.prefix = Bytes::from(buf);
    Some(answer)
}

/// A stream with bytes already read from it put back in front.
pub(super) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

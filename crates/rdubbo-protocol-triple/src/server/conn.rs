//! One connection: HTTP/2 or HTTP/1.1 told apart by the first bytes, idle checks.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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

/// HTTP/2 over h2 directly: a call whose answer is ready on its first poll (the body
/// arrived with the headers, the service answered at once) is answered from the
/// connection's task, with no task of its own; the others get one.
pub(super) async fn serve_h2(
    stream: TcpStream,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) {
    let config = &shared.config;
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_list_size)
        // What a peer may send unread: 1 MiB per stream, 4 MiB per connection.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_send_buffer_size(1 << 20)
        .max_pending_accept_reset_streams(64)
        .handshake::<_, Bytes>(stream);
    let peer = state.peer;
    let mut conn = match tokio::time::timeout(config.header_read_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let idle_timer = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle_timer);
    let mut closing = false;
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    let mut call = Box::pin(respond_h2(shared.clone(), state.clone(), req, respond));
                    if call
                        .as_mut()
                        .poll(&mut Context::from_waker(std::task::Waker::noop()))
                        .is_pending()
                    {
                        tokio::spawn(call);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
                    break;
                }
                None => break,
            },
            () = &mut idle_timer => {
                if closing {
                    break;
                }
                match idle_check(shared, state) {
                    Ok(()) => {
                        tracing::debug!(%peer, "idle connection closed");
                        closing = true;
                        conn.graceful_shutdown();
                        // A peer that does not close goes anyway.
                        idle_timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    Err(left) => idle_timer.as_mut().reset(tokio::time::Instant::now() + left),
                }
            }
            changed = stop.changed(), if !closing => {
                let drain = match changed { Ok(()) => (*stop.borrow()).unwrap_or_default(), Err(_) => Duration::ZERO };
                closing = true;
                conn.graceful_shutdown();
                idle_timer.as_mut().reset(tokio::time::Instant::now() + drain);
            }
        }
    }
}

/// Serves one HTTP/2 request and sends its answer (headers, message, trailers).
pub(super) async fn respond_h2(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    if shared.streams {
        if let Some((export, kind)) = super::stream::streaming_route(&shared, &req) {
            return super::stream::serve_stream(shared, state, export, kind, req, respond).await;
        }
    }
    let Ok(resp) = handle(shared, state, req.map(ReqBody::H2)).await;
    let (parts, body) = resp.into_parts();
    let (data, trailers) = body.into_parts();
    let end = data.is_none() && trailers.is_none();
    let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), end) else {
        return;
    };
    if let Some(d) = data {
        if send.send_data(d, trailers.is_none()).is_err() {
            return;
        }
    }
    if let Some(t) = trailers {
        let _ = send.send_trailers(t);
    }
}

/// HTTP/1.1 (the JSON mode, curl) through hyper.
pub(super) async fn serve_http1(
    stream: TcpStream,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) {
    let peer = state.peer;
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(
            svc_shared.clone(),
            svc_state.clone(),
            req.map(ReqBody::Http1),
        )
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

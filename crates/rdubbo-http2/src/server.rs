//! The server side: HTTP/2 with prior knowledge (the client preface first).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::conn::{self, Reader, Shared};
use crate::frame::Reason;
use crate::stream::{RecvStream, SendStream};
use crate::{Config, Error, Headers};

/// A request the peer opened: its headers, its body and the stream to answer on.
#[derive(Debug)]
pub struct Request {
    /// The request headers (`:method`, `:path`, … first).
    pub headers: Headers,
    /// The request body and trailers.
    pub body: RecvStream,
    /// Where the response goes.
    pub send: SendStream,
}

/// Asks a served connection to stop: GOAWAY (NO_ERROR), then it ends once the streams
/// already open are done.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle").finish_non_exhaustive()
    }
}

impl ShutdownHandle {
    /// Sends GOAWAY and lets the open streams finish.
    pub fn graceful_shutdown(&self) {
        self.shared.go_away(Reason::NO_ERROR, "shutting down");
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake_reader.notify_one();
        self.shared.flush_soon.notify_one();
    }

    /// Streams open on the connection.
    pub fn active_streams(&self) -> usize {
        self.shared.state().active
    }
}

/// Serves one TCP connection (TCP_NODELAY is set) until it ends. See [`serve_io`].
pub fn serve<H, F>(
    stream: TcpStream,
    config: Config,
    handler: H,
) -> (
    ShutdownHandle,
    impl Future<Output = Result<(), Error>> + Send,
)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    serve_io(r, w, config, handler)
}

/// Serves one connection given as its two halves: reads the client preface, then calls
/// `handler` for every stream the client opens.
///
/// The handler's future is first polled inline by the connection task (a handler that
/// answers without waiting costs no task and no write of its own: its frames leave with the
/// connection's write after the batch of requests read); one that waits is spawned.
///
/// Returns a handle for a graceful shutdown and the future serving the connection (it
/// ends with `Ok` when the peer or a shutdown closed it cleanly).
pub fn serve_io<R, W, H, F>(
    read: R,
    write: W,
    config: Config,
    handler: H,
) -> (
    ShutdownHandle,
    impl Future<Output = Result<(), Error>> + Send,
)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let reader = Reader::new(read, &config);
    let shared = Arc::new(Shared::new(Box::new(write), config, false));
    let handle = ShutdownHandle {
        shared: shared.clone(),
    };
    (handle, run(shared, reader, handler))
}

async fn run<R, H, F>(shared: Arc<Shared>, mut reader: Reader<R>, handler: H) -> Result<(), Error>
where
    R: AsyncRead + Unpin,
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let _close = conn::CloseOnDrop(shared.clone());
    let preface = match shared.config.handshake_timeout {
        Some(t) => tokio::time::timeout(t, reader.preface())
            .await
            .unwrap_or_else(|_| {
                Err(conn::ConnError {
                    reason: Reason::PROTOCOL_ERROR,
                    message: format!("no connection preface within {t:?}"),
                })
            }),
        None => reader.preface().await,
    };
    if let Err(e) = preface {
        conn::fail_connection(&shared, e).await;
        return Err(shared
            .state()
            .check()
            .err()
            .unwrap_or(Error::Io("no preface".into())));
    }
    tokio::spawn(conn::flusher(shared.clone()));
    shared.flush().await?;
    let mut opened = Vec::new();
    // The box of the last handler that finished on its first poll, kept for the next.
    let mut spare: Option<std::pin::Pin<Box<F>>> = None;
    let mut timers = conn::Timers::new(&shared.config);
    loop {
        if let Some(e) = shared.state().error.clone() {
            return Err(e);
        }
        if shared.closing.load(Ordering::SeqCst) && shared.state().active == 0 {
            shared.close_write().await;
            conn::lost(&shared, "the server closed the connection".into());
            return Ok(());
        }
        if !reader.has_frame(shared.config.max_frame_size) {
            let read = tokio::select! {
                r = reader.fill(shared.config.max_frame_size) => r,
                () = shared.wake_reader.notified() => continue,
                () = shared.all_closed(), if shared.closing.load(Ordering::SeqCst) => continue,
                () = timers.due() => {
                    match timers.fire(&shared) {
                        conn::Tick::Nothing => {}
                        conn::Tick::Idle => {
                            tracing::debug!("idle connection closed");
                            shared.go_away(Reason::NO_ERROR, "idle");
                            shared.closing.store(true, Ordering::SeqCst);
                        }
                        conn::Tick::Dead => {
                            conn::lost(&shared, "keepalive PING unanswered".into());
                            return Err(Error::Io("keepalive PING unanswered".into()));
                        }
                    }
                    continue;
                }
            };
            match read {
                Ok(true) => timers.read = true,
                Ok(false) => {
                    let partial = reader.has_partial();
                    conn::lost(&shared, "closed by the client".into());
                    return if partial {
                        Err(Error::Io("closed by the client inside a frame".into()))
                    } else {
                        Ok(())
                    };
                }
                Err(e) => {
                    conn::lost(&shared, e.to_string());
                    return Err(Error::Io(e.to_string()));
                }
            }
        }
        let processed = reader.process(&shared, &mut opened);
        for o in opened.drain(..) {
            let req = Request {
                headers: o.headers,
                body: RecvStream::new(shared.clone(), o.id),
                send: SendStream::new(shared.clone(), o.id),
            };
            // The box of a handler that finished inline is used again for the next one.
            let mut fut = match spare.take() {
                Some(mut done) => {
                    done.as_mut().set(handler(req));
                    done
                }
                None => Box::pin(handler(req)),
            };
            if conn::poll_inline(&shared, fut.as_mut()) {
                spare = Some(fut);
            } else {
                tokio::spawn(fut);
            }
        }
        if let Err(e) = processed {
            let error = Error::GoAway {
                reason: e.reason,
                remote: false,
                message: e.message.clone(),
            };
            conn::fail_connection(&shared, e).await;
            return Err(error);
        }
        let queued = shared.state().wbuf.len();
        if queued > 0 {
            if queued > shared.config.max_write_buffer {
                shared.flush_wait().await?;
            } else {
                shared.flush().await?;
            }
        }
        if let Some(e) = shared.state().error.clone() {
            return Err(e);
        }
    }
}

//! The client side: HTTP/2 with prior knowledge over one connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::conn::{self, Reader, Shared};
use crate::stream::{RecvStream, ResponseFuture, SendStream};
use crate::{Config, Error, Headers};

/// A client connection. Cheap to clone; the connection closes (GOAWAY) once every clone
/// is dropped and its streams are done.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

struct ClientInner {
    shared: Arc<Shared>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake_reader.notify_one();
    }
}

impl Client {
    /// Starts HTTP/2 on a connected TCP stream (TCP_NODELAY is set).
    pub fn new(stream: TcpStream, config: Config) -> Client {
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Client::with_io(r, w, config)
    }

    /// Starts HTTP/2 on the two halves of a connection (TLS streams included). Spawns the
    /// connection's reading and flushing tasks on the current tokio runtime.
    pub fn with_io<R, W>(read: R, write: W, config: Config) -> Client
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let reader = Reader::new(read, &config);
        let shared = Arc::new(Shared::new(Box::new(write), config, true));
        tokio::spawn(conn::flusher(shared.clone()));
        tokio::spawn(read_loop(shared.clone(), reader));
        Client {
            inner: Arc::new(ClientInner { shared }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Opens a stream with the request `headers` (`:method`, `:scheme`, `:path`,
    /// `:authority` first). Without `end_stream` the HEADERS frame is written with the
    /// first data sent on the returned [`SendStream`]. Waits while the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS streams are open.
    pub async fn send_request(
        &self,
        headers: &Headers,
        end_stream: bool,
    ) -> Result<(ResponseFuture, SendStream), Error> {
        let shared = self.shared();
        let id = std::future::poll_fn(|cx| {
            let mut st = shared.state();
            st.check()?;
            if headers.list_size() > st.peer.max_header_list as usize {
                return std::task::Poll::Ready(Err(Error::User(format!(
                    "header list of {} bytes over the server's limit of {}",
                    headers.list_size(),
                    st.peer.max_header_list
                ))));
            }
            if !st.has_slot() {
                st.waiters.push(cx.waker().clone());
                return std::task::Poll::Pending;
            }
            let id = st.next_stream_id()?;
            st.queue_headers(id, headers, end_stream);
            let window = shared.config.initial_stream_window;
            st.insert_stream(id, window, false, end_stream);
            std::task::Poll::Ready(Ok(id))
        })
        .await?;
        let send = SendStream::new(shared.clone(), id);
        let recv = RecvStream::new(shared.clone(), id);
        if end_stream {
            shared.flush_or_defer().await?;
        }
        Ok((ResponseFuture::new(recv), send))
    }

    /// A unary exchange: sends `headers` and `body` (one write on an idle connection),
    /// then returns the response headers, the body (at most `limit` bytes) and the
    /// trailers.
    pub async fn unary(
        &self,
        headers: &Headers,
        body: &[u8],
        limit: usize,
    ) -> Result<(Headers, Bytes, Option<Headers>), Error> {
        let (response, mut send) = self.send_request(headers, false).await?;
        send.send_data(body, true).await?;
        let mut response = response.await?;
        let (body, trailers) = response.body.collect(limit).await?;
        Ok((response.headers, body, trailers))
    }

    /// Whether the connection is done (closed, failed, or the server sent GOAWAY).
    pub fn is_closed(&self) -> bool {
        let st = self.shared().state();
        st.error.is_some() || st.goaway_received()
    }

    /// Streams open on the connection.
    pub fn active_streams(&self) -> usize {
        self.shared().state().active
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut reader: Reader<R>) {
    // However reading ends (a GOAWAY with an error code returns from the loop with nothing
    // else to tell the flusher), the flusher ends too and lets the socket go.
    let _close = conn::CloseOnDrop(shared.clone());
    if let Err(e) = shared.flush().await {
        conn::lost(&shared, e.to_string());
        return;
    }
    let mut opened = Vec::new();
    let mut timers = conn::Timers::new(&shared.config);
    loop {
        if shared.state().error.is_some() {
            return;
        }
        if shared.closing.load(Ordering::SeqCst) && shared.state().active == 0 {
            shared.go_away(crate::frame::Reason::NO_ERROR, "");
            shared.close_write().await;
            conn::lost(&shared, "the client closed the connection".into());
            return;
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
                            shared.closing.store(true, Ordering::SeqCst);
                        }
                        conn::Tick::Dead => {
                            conn::lost(&shared, "keepalive PING unanswered".into());
                            return;
                        }
                    }
                    continue;
                }
            };
            match read {
                Ok(true) => timers.read = true,
                Ok(false) => {
                    conn::lost(&shared, "closed by the server".into());
                    return;
                }
                Err(e) => {
                    conn::lost(&shared, e.to_string());
                    return;
                }
            }
        }
        if let Err(e) = reader.process(&shared, &mut opened) {
            conn::fail_connection(&shared, e).await;
            return;
        }
        let queued = shared.state().wbuf.len();
        if queued > 0 {
            let flushed = if queued > shared.config.max_write_buffer {
                shared.flush_wait().await
            } else {
                shared.flush().await
            };
            if flushed.is_err() {
                return;
            }
        }
        if shared.state().error.is_some() {
            return;
        }
    }
}

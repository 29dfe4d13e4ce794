//! Stream handles: the send side ([`SendStream`]) and the receive side ([`RecvStream`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::conn::Shared;
use crate::frame;
use crate::{Error, Headers};

/// Most bytes of DATA queued by one send before the queue is checked against the
/// write-buffer limit.
const SEND_CHUNK: usize = 256 * 1024;

/// The send side of a stream: response headers, data and trailers (server), or the request
/// body and its end (client).
///
/// Frames are queued and written together: HEADERS alone wait for the next data, trailers
/// or [`SendStream::flush`]; data and trailers are written at once (or, with several
/// streams in flight, by the connection's next combined write, a moment later). A server
/// handler that answers without waiting writes nothing itself: its frames leave with the
/// connection's write after the batch of requests it read.
pub struct SendStream {
    shared: Arc<Shared>,
    id: u32,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl SendStream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32) -> SendStream {
        SendStream { shared, id }
    }

    /// The stream identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn check(&self, st: &crate::conn::State) -> Result<(), Error> {
        st.check()?;
        let s = st
            .streams
            .get(&self.id)
            .ok_or_else(|| Error::User("stream closed".into()))?;
        if let Some(e) = &s.error {
            return Err(e.clone());
        }
        if s.send_end {
            return Err(Error::User("the stream's send side already ended".into()));
        }
        Ok(())
    }

    /// Queues a HEADERS frame (response headers, or trailers-only with `end_stream`). It is
    /// written with what follows, or at once when it ends the stream.
    pub async fn send_headers(&mut self, headers: &Headers, end_stream: bool) -> Result<(), Error> {
        self.queue_headers(headers, end_stream)?;
        if end_stream {
            self.shared.flush_or_defer().await?;
        }
        Ok(())
    }

    fn queue_headers(&mut self, headers: &Headers, end_stream: bool) -> Result<(), Error> {
        let id = self.id;
        self.shared.with(|st, wakers| {
            self.check(st)?;
            if headers.list_size() > st.peer.max_header_list as usize {
                return Err(Error::User(format!(
                    "header list of {} bytes over the peer's limit of {}",
                    headers.list_size(),
                    st.peer.max_header_list
                )));
            }
            st.queue_headers(id, headers, end_stream);
            if end_stream {
                if let Some(s) = st.streams.get_mut(&id) {
                    s.send_end = true;
                }
                st.settle(id, wakers);
            }
            Ok(())
        })
    }

    /// Sends `data` (split into frames as flow control and the peer's frame size allow,
    /// waiting for window when the peer has not read), ending the stream if `end_stream`.
    pub async fn send_data(&mut self, data: &[u8], end_stream: bool) -> Result<(), Error> {
        self.data(data, end_stream).await?;
        self.shared.flush_or_defer().await
    }

    /// Sends `data` then the trailers, ending the stream: the last message of a gRPC
    /// response and its status leave in one write even from a handler that was spawned.
    pub async fn send_data_and_trailers(
        &mut self,
        data: &[u8],
        trailers: &Headers,
    ) -> Result<(), Error> {
        self.data(data, false).await?;
        self.queue_headers(trailers, true)?;
        self.shared.flush_or_defer().await
    }

    /// Queues `data`, waiting for window as needed (what was queued before a wait is
    /// written first); the last frames are left queued.
    async fn data(&mut self, data: &[u8], end_stream: bool) -> Result<(), Error> {
        let mut off = 0;
        loop {
            // Queue what the windows allow.
            let done = self.shared.with(|st, wakers| {
                self.check(st)?;
                let max_frame = st.peer.max_frame_size as usize;
                let s = &st.streams[&self.id];
                let cap = st.send_capacity(s);
                let n = cap.min(data.len() - off).min(SEND_CHUNK);
                let last = off + n == data.len();
                if n == 0 && !last {
                    return Ok(false);
                }
                frame::put_data(
                    &mut st.wbuf,
                    self.id,
                    &data[off..off + n],
                    end_stream && last,
                    max_frame,
                );
                st.consume_send(n);
                let id = self.id;
                if let Some(s) = st.streams.get_mut(&id) {
                    s.send_window -= n as i64;
                    if last && end_stream {
                        s.send_end = true;
                    }
                }
                off += n;
                if last && end_stream {
                    st.settle(id, wakers);
                }
                Ok::<bool, Error>(last)
            })?;
            if done {
                return Ok(());
            }
            // Write what is queued, then wait for the peer to open its windows or to read.
            self.shared.flush().await?;
            self.shared.room().await?;
            std::future::poll_fn(|cx| {
                let mut st = self.shared.state();
                self.check(&st)?;
                let cap = st.send_capacity(&st.streams[&self.id]);
                if cap > 0 || off == data.len() {
                    return Poll::Ready(Ok::<(), Error>(()));
                }
                if let Some(s) = st.streams.get_mut(&self.id) {
                    s.send_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            })
            .await?;
        }
    }

    /// Sends the trailers and ends the stream.
    pub async fn send_trailers(&mut self, trailers: &Headers) -> Result<(), Error> {
        self.queue_headers(trailers, true)?;
        self.shared.flush_or_defer().await
    }

    /// Writes what is queued on the connection now.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.shared.flush().await
    }

    /// Resets the stream (RST_STREAM with `reason`).
    pub fn reset(&mut self, reason: frame::Reason) {
        let id = self.id;
        self.shared.with(|st, wakers| {
            if st.streams.get(&id).is_some_and(|s| s.error.is_none()) {
                st.reset_local(id, reason, wakers);
            }
        });
        self.shared.flush_soon.notify_one();
    }

    /// Resolves with the error once the stream is reset (by either side) or its
    /// connection fails; stays pending while the stream may still be sent on. Watches
    /// for a peer's cancellation while nothing is being sent.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        let mut st = self.shared.state();
        if let Some(e) = &st.error {
            return Poll::Ready(e.clone());
        }
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Error::User("stream closed".into()));
        };
        if let Some(e) = &s.error {
            return Poll::Ready(e.clone());
        }
        if !s
            .send_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            s.send_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The send window currently available (stream and connection), in bytes.
    pub fn capacity(&self) -> usize {
        let st = self.shared.state();
        st.streams.get(&self.id).map_or(0, |s| st.send_capacity(s))
    }
}

fn drop_handle(shared: &Shared, id: u32) {
    let queued = shared.with(|st, wakers| {
        let before = st.wbuf.len();
        st.drop_ref(id, wakers);
        st.wbuf.len() > before
    });
    if queued {
        shared.flush_soon.notify_one();
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        drop_handle(&self.shared, self.id);
    }
}

/// The receive side of a stream: data chunks, then trailers.
///
/// Reading gives the window back to the peer (WINDOW_UPDATE past half of the window):
/// a receiver that does not read stops the peer once the window is used up.
pub struct RecvStream {
    shared: Arc<Shared>,
    id: u32,
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl RecvStream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32) -> RecvStream {
        RecvStream { shared, id }
    }

    /// The stream identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next chunk of data; `None` at the end of the stream.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        let mut st = self.shared.state();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(None);
        };
        if let Some(chunk) = s.recv.pop_front() {
            let queued = st.release(self.id, chunk.len() as u32, &self.shared.config);
            drop(st);
            if queued {
                self.shared.flush_soon.notify_one();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(e) = &s.error {
            return Poll::Ready(Some(Err(e.clone())));
        }
        if s.recv_end {
            return Poll::Ready(None);
        }
        if !s
            .recv_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            s.recv_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next chunk of data; `None` at the end of the stream.
    pub async fn data(&mut self) -> Option<Result<Bytes, Error>> {
        std::future::poll_fn(|cx| self.poll_data(cx)).await
    }

    /// Waits for the end of the stream (skipping data not read) and returns the trailers,
    /// if the peer sent some.
    pub async fn trailers(&mut self) -> Result<Option<Headers>, Error> {
        std::future::poll_fn(|cx| self.poll_trailers(cx)).await
    }

    /// The trailers, once the stream ended (data not read is skipped); see
    /// [`RecvStream::trailers`].
    pub fn poll_trailers(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Headers>, Error>> {
        {
            let mut st = self.shared.state();
            let Some(s) = st.streams.get_mut(&self.id) else {
                return Poll::Ready(Ok(None));
            };
            if s.recv_end {
                let t = s.trailers.take();
                let unread = s.recv.clear();
                st.release(self.id, unread as u32, &self.shared.config);
                return Poll::Ready(Ok(t));
            }
            if let Some(e) = &s.error {
                return Poll::Ready(Err(e.clone()));
            }
            // Data not read is dropped: it gives its window back.
            let unread = s.recv.clear();
            s.recv_waker = Some(cx.waker().clone());
            if unread > 0 && st.release(self.id, unread as u32, &self.shared.config) {
                self.shared.flush_soon.notify_one();
            }
            Poll::Pending
        }
    }

    /// Reads the whole body (at most `limit` bytes) and the trailers: the shape of a unary
    /// gRPC message. One chunk is returned without copying.
    pub async fn collect(&mut self, limit: usize) -> Result<(Bytes, Option<Headers>), Error> {
        let mut first: Option<Bytes> = None;
        let mut more: Vec<u8> = Vec::new();
        while let Some(chunk) = self.data().await {
            let chunk = chunk?;
            let len = first.as_ref().map_or(0, |f| f.len()) + more.len() + chunk.len();
            if len > limit {
                return Err(Error::User(format!("body over {limit} bytes")));
            }
            match &first {
                None => first = Some(chunk),
                Some(f) => {
                    if more.is_empty() {
                        more.extend_from_slice(f);
                    }
                    more.extend_from_slice(&chunk);
                }
            }
        }
        let body = if more.is_empty() {
            first.unwrap_or_default()
        } else {
            Bytes::from(more)
        };
        let trailers = self.trailers().await?;
        Ok((body, trailers))
    }

    /// Whether the peer ended the stream and every chunk was read.
    pub fn is_end_stream(&self) -> bool {
        let st = self.shared.state();
        st.streams
            .get(&self.id)
            .is_none_or(|s| s.recv_end && s.recv.is_empty())
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        drop_handle(&self.shared, self.id);
    }
}

/// A response on its way (client side): resolves to its headers and body.
pub struct ResponseFuture {
    recv: Option<RecvStream>,
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish()
    }
}

impl ResponseFuture {
    pub(crate) fn new(recv: RecvStream) -> ResponseFuture {
        ResponseFuture { recv: Some(recv) }
    }
}

/// A response: its headers (`:status` included) and its body.
#[derive(Debug)]
pub struct Response {
    /// The response headers.
    pub headers: Headers,
    /// The body and trailers.
    pub body: RecvStream,
}

impl Future for ResponseFuture {
    type Output = Result<Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(recv) = self.recv.as_ref() else {
            return Poll::Ready(Err(Error::User("response already taken".into())));
        };
        let headers = {
            let mut st = recv.shared.state();
            let Some(s) = st.streams.get_mut(&recv.id) else {
                return Poll::Ready(Err(Error::User("stream closed".into())));
            };
            match s.headers.take() {
                Some(h) => h,
                None => {
                    if let Some(e) = &s.error {
                        return Poll::Ready(Err(e.clone()));
                    }
                    if s.recv_end {
                        return Poll::Ready(Err(Error::User(
                            "the stream ended without response headers".into(),
                        )));
                    }
                    if !s
                        .recv_waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        s.recv_waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        };
        let Some(body) = self.recv.take() else {
            return Poll::Ready(Err(Error::User("response already taken".into())));
        };
        Poll::Ready(Ok(Response { headers, body }))
    }
}

//! Streams of encoded messages: what a streaming call carries ([`crate::Args::Stream`],
//! [`crate::Reply::Stream`]).
//!
//! A [`MessageStream`] is a cheap, clonable handle to a stream that can be taken once
//! ([`MessageStream::take`]): an invocation may be cloned (filters, retries), but its
//! messages are read by one party only. [`MessageStream::channel`] makes a bounded pair:
//! the [`MessageSink`] waits while `capacity` messages are queued (back-pressure), and
//! learns when the reader has gone (cancellation).
//!
//! ```
//! use bytes::Bytes;
//! use rdubbo_core::MessageStream;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (sink, stream) = MessageStream::channel(2);
//! tokio::spawn(async move {
//!     for i in 0..3u8 {
//!         if sink.send(Bytes::from(vec![i])).await.is_err() {
//!             return; // the reader went away
//!         }
//!     }
//!     sink.finish();
//! });
//! let mut messages = stream.take().unwrap();
//! let mut seen = Vec::new();
//! while let Some(m) = messages.next().await {
//!     seen.push(m.unwrap()[0]);
//! }
//! assert_eq!(seen, vec![0, 1, 2]);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::error::codes;
use crate::{RpcError, RpcResult};

/// A boxed stream of encoded messages; after an `Err` item it is over.
pub type BoxMessageStream = Pin<Box<dyn Stream<Item = RpcResult<Bytes>> + Send + 'static>>;

/// A clonable handle to a stream of encoded messages that can be taken once.
#[derive(Clone)]
pub struct MessageStream {
    slot: Arc<Mutex<Option<BoxMessageStream>>>,
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_taken() { "taken" } else { "ready" };
        write!(f, "MessageStream({state})")
    }
}

impl MessageStream {
    /// A handle to `stream`.
    pub fn new<S>(stream: S) -> MessageStream
    where
        S: Stream<Item = RpcResult<Bytes>> + Send + 'static,
    {
        MessageStream::boxed(Box::pin(stream))
    }

    /// A handle to a stream already boxed.
    pub fn boxed(stream: BoxMessageStream) -> MessageStream {
        MessageStream {
            slot: Arc::new(Mutex::new(Some(stream))),
        }
    }

    /// A stream of one message.
    pub fn once(message: Bytes) -> MessageStream {
        MessageStream::iter([message])
    }

    /// A stream of the given messages.
    pub fn iter<I>(messages: I) -> MessageStream
    where
        I: IntoIterator<Item = Bytes>,
        I::IntoIter: Send + 'static,
    {
        MessageStream::new(Iter(messages.into_iter()))
    }

    /// A stream that yields only `error`.
    pub fn failed(error: RpcError) -> MessageStream {
        MessageStream::new(Iter(std::iter::once(Err(error))))
    }

    /// A bounded channel: the sink's [`MessageSink::send`] waits while `capacity` (at
    /// least 1) messages are queued and not yet read.
    pub fn channel(capacity: usize) -> (MessageSink, MessageStream) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let done = Arc::new(AtomicBool::new(false));
        let sink = MessageSink {
            tx,
            done: done.clone(),
        };
        let stream = MessageStream::new(ChannelStream {
            rx,
            done,
            over: false,
        });
        (sink, stream)
    }

    /// Takes the stream; the first taker gets it, later ones an error.
    pub fn take(&self) -> RpcResult<Messages> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.take()
            .map(|inner| Messages { inner })
            .ok_or_else(|| RpcError::Invalid("the message stream was already taken".into()))
    }

    /// Whether it was taken.
    pub fn is_taken(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// A taken message stream: read it with [`Messages::next`] or as a [`Stream`].
/// Dropping it tells the producer (a [`MessageSink`], a peer) that nobody reads any more.
pub struct Messages {
    inner: BoxMessageStream,
}

impl fmt::Debug for Messages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Messages")
    }
}

impl Messages {
    /// The next message; `None` at the end. After an `Err` the stream is over.
    pub async fn next(&mut self) -> Option<RpcResult<Bytes>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }

    /// The boxed stream.
    pub fn into_inner(self) -> BoxMessageStream {
        self.inner
    }
}

impl Stream for Messages {
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The producing end of [`MessageStream::channel`].
///
/// End it with [`MessageSink::finish`] (a normal end) or [`MessageSink::fail`]; a sink
/// dropped without either ends the stream with an error, so a producer that crashed is
/// never mistaken for one that completed.
pub struct MessageSink {
    tx: mpsc::Sender<RpcResult<Bytes>>,
    done: Arc<AtomicBool>,
}

impl fmt::Debug for MessageSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSink")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl MessageSink {
    /// Queues `message`, waiting while the channel is full. Fails with a
    /// [`cancelled`] error once the reader has gone.
    pub async fn send(&self, message: Bytes) -> RpcResult<()> {
        self.tx
            .send(Ok(message))
            .await
            .map_err(|_| cancelled("the reader of the stream has gone"))
    }

    /// Ends the stream normally.
    pub fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
    }

    /// Ends the stream with `error` (after the messages already queued).
    pub async fn fail(self, error: RpcError) {
        let _ = self.tx.send(Err(error)).await;
        self.done.store(true, Ordering::SeqCst);
    }

    /// Resolves when the reader has gone (dropped, cancelled by the peer, past its
    /// deadline).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The error a cancelled stream yields (the peer reset it, the reader went away, or the
/// producer was dropped unfinished); gRPC status `CANCELLED`.
pub fn cancelled(reason: impl Into<String>) -> RpcError {
    RpcError::Remote {
        code: codes::INTERNAL_ERROR,
        message: reason.into(),
        data: Some(serde_json::json!({ "grpc-status": 1, "cancelled": true })),
    }
}

/// Whether `error` is a cancellation (see [`cancelled`]).
pub fn is_cancelled(error: &RpcError) -> bool {
    match error {
        RpcError::Remote { data: Some(d), .. } => {
            d.get("cancelled").and_then(|c| c.as_bool()) == Some(true)
                || d.get("grpc-status").and_then(|s| s.as_u64()) == Some(1)
        }
        _ => false,
    }
}

struct Iter<I>(I);

// Never pinned structurally: the iterator is only reached through `&mut`.
impl<I> Unpin for Iter<I> {}

impl<I, T> Stream for Iter<I>
where
    I: Iterator<Item = T>,
    T: Into<RpcResultItem>,
{
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(|t| t.into().0))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// An item of [`Iter`]: a message or a result.
struct RpcResultItem(RpcResult<Bytes>);

impl From<Bytes> for RpcResultItem {
    fn from(b: Bytes) -> Self {
        RpcResultItem(Ok(b))
    }
}

impl From<RpcResult<Bytes>> for RpcResultItem {
    fn from(r: RpcResult<Bytes>) -> Self {
        RpcResultItem(r)
    }
}

struct ChannelStream {
    rx: mpsc::Receiver<RpcResult<Bytes>>,
    done: Arc<AtomicBool>,
    over: bool,
}

impl Stream for ChannelStream {
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.over {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(m))) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Some(Err(e))) => {
                self.over = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.over = true;
                if self.done.load(Ordering::SeqCst) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(cancelled(
                        "the producer of the stream ended without finishing it",
                    ))))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_once_and_iter() {
        let s = MessageStream::iter(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        let copy = s.clone();
        let mut m = s.take().unwrap();
        assert!(copy.is_taken());
        assert!(copy.take().is_err());
        assert_eq!(m.next().await.unwrap().unwrap(), "a");
        assert_eq!(m.next().await.unwrap().unwrap(), "b");
        assert!(m.next().await.is_none());
    }

    #[tokio::test]
    async fn dropped_sink_is_an_error_and_fail_carries_the_error() {
        let (sink, s) = MessageStream::channel(1);
        sink.send(Bytes::from_static(b"x")).await.unwrap();
        drop(sink);
        let mut m = s.take().unwrap();
        assert!(m.next().await.unwrap().is_ok());
        assert!(is_cancelled(&m.next().await.unwrap().unwrap_err()));
        assert!(m.next().await.is_none());

        let (sink, s) = MessageStream::channel(1);
        let task = tokio::spawn(sink.fail(RpcError::service("boom")));
        let mut m = s.take().unwrap();
        assert_eq!(
            m.next().await.unwrap().unwrap_err(),
            RpcError::service("boom")
        );
        task.await.unwrap();
        assert!(m.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sink_waits_while_full_and_sees_the_reader_go() {
        let (sink, s) = MessageStream::channel(2);
        sink.send(Bytes::from_static(b"1")).await.unwrap();
        sink.send(Bytes::from_static(b"2")).await.unwrap();
        let third = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            sink.send(Bytes::from_static(b"3")),
        )
        .await;
        assert!(third.is_err(), "a full channel makes the sender wait");
        let m = s.take().unwrap();
        drop(m);
        sink.closed().await;
        assert!(is_cancelled(
            &sink.send(Bytes::from_static(b"4")).await.unwrap_err()
        ));
    }
}

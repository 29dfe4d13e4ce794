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

    /// A handle to the same messages that calls `f` once, when the stream ends: read to
    /// its end, ended by an error, or dropped by its reader before the end (see
    /// [`StreamEnd`]). Middleware uses it to see a streamed answer to its end (a log line,
    /// a duration, a concurrency slot held until then) and hands on the new handle in place
    /// of this one, which is taken.
    ///
    /// A stream already taken cannot be followed: then `f` is called at once with
    /// [`StreamEnd::Failed`] (the error of [`MessageStream::take`]) and this handle is
    /// returned as it is.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use rdubbo_core::stream::StreamEnd;
    /// use rdubbo_core::MessageStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let stream = MessageStream::iter([Bytes::from_static(b"a"), Bytes::from_static(b"b")])
    ///     .on_end(move |end| tx.send(end).unwrap());
    /// let mut messages = stream.take().unwrap();
    /// while let Some(m) = messages.next().await {
    ///     m.unwrap();
    /// }
    /// assert_eq!(rx.try_recv().unwrap(), StreamEnd::Finished { messages: 2 });
    /// # }
    /// ```
    pub fn on_end(self, f: impl FnOnce(StreamEnd) + Send + 'static) -> MessageStream {
        self.observe(|_| {}, f)
    }

    /// As [`MessageStream::on_end`], also calling `on_message` with each message as it is
    /// read (a live count, a size).
    pub fn observe(
        self,
        on_message: impl FnMut(&Bytes) + Send + 'static,
        on_end: impl FnOnce(StreamEnd) + Send + 'static,
    ) -> MessageStream {
        match self.take() {
            Ok(inner) => MessageStream::new(Observed {
                inner,
                messages: 0,
                on_message,
                on_end: Some(on_end),
            }),
            Err(error) => {
                on_end(StreamEnd::Failed { error, messages: 0 });
                self
            }
        }
    }
}

/// How a stream ended, as told by [`MessageStream::on_end`]; each case says how many
/// messages were read before.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// Read to its end.
    Finished {
        /// Messages read.
        messages: u64,
    },
    /// Ended with `error`, the last item read. A stream the peer cancelled ends so too,
    /// with an error for which [`is_cancelled`] holds.
    Failed {
        /// The error that ended it.
        error: RpcError,
        /// Messages read before it.
        messages: u64,
    },
    /// Dropped by its reader before its end (the caller went away, the peer reset the
    /// call and the server stopped reading).
    Cancelled {
        /// Messages read before.
        messages: u64,
    },
}

impl StreamEnd {
    /// Messages read before the end.
    pub fn messages(&self) -> u64 {
        match self {
            StreamEnd::Finished { messages }
            | StreamEnd::Failed { messages, .. }
            | StreamEnd::Cancelled { messages } => *messages,
        }
    }

    /// The error that ended it, for [`StreamEnd::Failed`].
    pub fn error(&self) -> Option<&RpcError> {
        match self {
            StreamEnd::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// `finished`, `failed` or `cancelled` (for logs and span fields).
    pub fn outcome(&self) -> &'static str {
        match self {
            StreamEnd::Finished { .. } => "finished",
            StreamEnd::Failed { .. } => "failed",
            StreamEnd::Cancelled { .. } => "cancelled",
        }
    }
}

/// The stream of [`MessageStream::observe`].
struct Observed<M, E>
where
    M: FnMut(&Bytes),
    E: FnOnce(StreamEnd),
{
    inner: Messages,
    messages: u64,
    on_message: M,
    /// `None` once ended.
    on_end: Option<E>,
}

// Never pinned structurally: the fields are only reached through `&mut`.
impl<M, E> Unpin for Observed<M, E>
where
    M: FnMut(&Bytes),
    E: FnOnce(StreamEnd),
{
}

impl<M, E> Observed<M, E>
where
    M: FnMut(&Bytes),
    E: FnOnce(StreamEnd),
{
    fn end(&mut self, end: impl FnOnce(u64) -> StreamEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(end(self.messages));
        }
    }
}

impl<M, E> Stream for Observed<M, E>
where
    M: FnMut(&Bytes),
    E: FnOnce(StreamEnd),
{
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.on_end.is_none() {
            // Over (after an error nothing more is read).
            return Poll::Ready(None);
        }
        let next = Pin::new(&mut this.inner).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(m))) => {
                this.messages += 1;
                (this.on_message)(m);
            }
            Poll::Ready(Some(Err(e))) => this.end(|messages| StreamEnd::Failed {
                error: e.clone(),
                messages,
            }),
            Poll::Ready(None) => this.end(|messages| StreamEnd::Finished { messages }),
            Poll::Pending => {}
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.on_end.is_none() {
            (0, Some(0))
        } else {
            self.inner.size_hint()
        }
    }
}

impl<M, E> Drop for Observed<M, E>
where
    M: FnMut(&Bytes),
    E: FnOnce(StreamEnd),
{
    fn drop(&mut self) {
        self.end(|messages| StreamEnd::Cancelled { messages });
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

    /// Messages seen one by one, and the ends told.
    type Seen = Arc<Mutex<(u64, Vec<StreamEnd>)>>;

    /// `observe` on `stream`: the messages seen one by one, and the end once it comes.
    fn observed(stream: MessageStream) -> (MessageStream, Seen) {
        let seen = Arc::new(Mutex::new((0, Vec::new())));
        let (a, b) = (seen.clone(), seen.clone());
        let stream = stream.observe(
            move |_| a.lock().unwrap().0 += 1,
            move |end| b.lock().unwrap().1.push(end),
        );
        (stream, seen)
    }

    #[tokio::test]
    async fn on_end_tells_each_way_a_stream_ends_once() {
        let two = || MessageStream::iter(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);

        // Read to its end; polling past the end tells nothing more.
        let (s, seen) = observed(two());
        let mut m = s.take().unwrap();
        assert!(m.next().await.unwrap().is_ok());
        assert_eq!(seen.lock().unwrap().0, 1, "counted as read");
        assert!(seen.lock().unwrap().1.is_empty(), "not over yet");
        assert!(m.next().await.unwrap().is_ok());
        assert!(m.next().await.is_none());
        assert!(m.next().await.is_none());
        drop(m);
        assert_eq!(
            *seen.lock().unwrap(),
            (2, vec![StreamEnd::Finished { messages: 2 }])
        );

        // Ended by an error: nothing is read after it.
        let (sink, s) = MessageStream::channel(1);
        let (s, seen) = observed(s);
        let producer = tokio::spawn(async move {
            sink.send(Bytes::from_static(b"x")).await.unwrap();
            sink.fail(RpcError::service("boom")).await;
        });
        let mut m = s.take().unwrap();
        assert!(m.next().await.unwrap().is_ok());
        assert!(m.next().await.unwrap().is_err());
        assert!(m.next().await.is_none());
        producer.await.unwrap();
        let end = seen.lock().unwrap().1.clone();
        assert_eq!(
            end,
            vec![StreamEnd::Failed {
                error: RpcError::service("boom"),
                messages: 1
            }]
        );
        assert_eq!(end[0].outcome(), "failed");
        assert_eq!(end[0].error(), Some(&RpcError::service("boom")));

        // Dropped by its reader before the end, read or not: cancelled, and the producer
        // sees the reader go.
        let (s, seen) = observed(two());
        let mut m = s.take().unwrap();
        m.next().await.unwrap().unwrap();
        drop(m);
        assert_eq!(
            seen.lock().unwrap().1,
            [StreamEnd::Cancelled { messages: 1 }]
        );
        let (sink, s) = MessageStream::channel(1);
        let (s, seen) = observed(s);
        drop(s);
        sink.closed().await;
        let end = seen.lock().unwrap().1.clone();
        assert_eq!(end, [StreamEnd::Cancelled { messages: 0 }]);
        assert_eq!((end[0].outcome(), end[0].messages()), ("cancelled", 0));
    }

    #[tokio::test]
    async fn on_end_of_a_taken_stream_tells_at_once() {
        let s = MessageStream::once(Bytes::from_static(b"a"));
        let _reader = s.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let same = s.clone().on_end(move |end| tx.send(end).unwrap());
        assert!(same.is_taken());
        match rx.try_recv().unwrap() {
            StreamEnd::Failed { error, messages: 0 } => {
                assert!(matches!(error, RpcError::Invalid(_)), "{error}")
            }
            other => panic!("{other:?}"),
        }
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

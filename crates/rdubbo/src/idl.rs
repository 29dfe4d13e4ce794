//! IDL services: what the code that `rdubbo-build` generates from `.proto` files uses.
//!
//! A protobuf service becomes a trait, a server (`XxxServer`, an [`Invoker`](crate::Invoker)
//! exported over `tri`) and a client (`XxxClient`), as `#[rdubbo::service]` makes them for
//! a Rust trait (see the `rdubbo-build` crate). Messages travel encoded
//! ([`Args::Message`], [`Reply::Message`]); streaming methods take and return a
//! [`Streaming`] of typed messages, carried as a [`MessageStream`] of encoded ones.
//!
//! ```
//! use rdubbo::idl::{prost, Streaming};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! #[prost(prost_path = "::rdubbo::idl::prost")]
//! struct Note {
//!     #[prost(string, tag = "1")]
//!     text: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> rdubbo::RpcResult<()> {
//! // A producer in its own task, with back-pressure: `send` waits while 4 are queued.
//! let (tx, notes) = Streaming::<Note>::channel(4);
//! tokio::spawn(async move {
//!     for i in 0..3 {
//!         if tx.send(&Note { text: format!("note {i}") }).await.is_err() {
//!             return; // the reader has gone (the peer cancelled)
//!         }
//!     }
//!     tx.finish();
//! });
//! let all = notes.collect_all().await?;
//! assert_eq!(all.len(), 3);
//! assert_eq!(all[2].text, "note 2");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::error::codes;
use crate::{Args, MessageSink, MessageStream, Messages, Reply, RpcError, RpcResult};

pub use prost;
pub use prost_types;

/// A typed message, as prost generates them.
pub trait IdlMessage: prost::Message + Default + Send + 'static {}

impl<T: prost::Message + Default + Send + 'static> IdlMessage for T {}

/// A boxed stream of typed messages.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = RpcResult<T>> + Send + 'static>>;

/// A stream of typed messages: what a streaming method takes or returns.
///
/// Received from the wire it decodes each message as it is read (and gives HTTP/2
/// credit back as it goes, so a slow reader slows the sender); made by a service or a
/// caller it is [`channel`](Self::channel) (a producer task with back-pressure),
/// [`iter`](Self::iter) or any `Stream` of results ([`new`](Self::new)). After an `Err`
/// item the stream is over: the error is the call's status.
pub struct Streaming<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    /// Encoded messages, decoded when read; taken on first read.
    Wire {
        stream: Option<MessageStream>,
        messages: Option<Messages>,
        over: bool,
    },
    /// Typed messages.
    Typed(BoxStream<T>),
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Wire { .. } => f.write_str("Streaming(encoded)"),
            Inner::Typed(_) => f.write_str("Streaming(typed)"),
        }
    }
}

impl<T: IdlMessage> Streaming<T> {
    /// A stream of the results `stream` yields.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = RpcResult<T>> + Send + 'static,
    {
        Streaming {
            inner: Inner::Typed(Box::pin(stream)),
        }
    }

    /// A stream of the given messages.
    pub fn iter<I>(messages: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Streaming::new(IterStream(messages.into_iter()))
    }

    /// A stream that fails at once with `error`.
    pub fn failed(error: RpcError) -> Self {
        Streaming::from_messages(MessageStream::failed(error))
    }

    /// A bounded channel: [`Sender::send`] waits while `capacity` (at least 1) messages
    /// are queued and unread, and fails once the reader has gone.
    pub fn channel(capacity: usize) -> (Sender<T>, Streaming<T>) {
        let (sink, stream) = MessageStream::channel(capacity);
        (
            Sender {
                sink,
                _type: PhantomData,
            },
            Streaming::from_messages(stream),
        )
    }

    /// Typed view of a stream of encoded messages (decoded as they are read).
    pub fn from_messages(stream: MessageStream) -> Self {
        Streaming {
            inner: Inner::Wire {
                stream: Some(stream),
                messages: None,
                over: false,
            },
        }
    }

    /// The stream of encoded messages (as is when it came encoded; typed items encoded
    /// as they are read).
    pub fn into_message_stream(self) -> MessageStream {
        match self.inner {
            Inner::Wire {
                stream: Some(stream),
                ..
            } => stream,
            Inner::Wire {
                messages: Some(messages),
                ..
            } => MessageStream::boxed(messages.into_inner()),
            Inner::Wire { .. } => MessageStream::iter(Vec::new()),
            Inner::Typed(typed) => MessageStream::new(Encode(typed)),
        }
    }

    /// The next message: `Ok(None)` at the end, `Err` when the stream failed (the
    /// call's status: a service error, a cancellation, a deadline).
    pub async fn message(&mut self) -> RpcResult<Option<T>> {
        self.next().await.transpose()
    }

    /// The next item: `None` at the end.
    pub async fn next(&mut self) -> Option<RpcResult<T>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Reads the stream to its end.
    pub async fn collect_all(mut self) -> RpcResult<Vec<T>> {
        let mut out = Vec::new();
        while let Some(m) = self.message().await? {
            out.push(m);
        }
        Ok(out)
    }
}

impl<T: IdlMessage> From<Vec<T>> for Streaming<T> {
    fn from(messages: Vec<T>) -> Self {
        Streaming::iter(messages)
    }
}

impl<T: IdlMessage> Stream for Streaming<T> {
    type Item = RpcResult<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Typed(s) => s.as_mut().poll_next(cx),
            Inner::Wire {
                stream,
                messages,
                over,
            } => {
                if *over {
                    return Poll::Ready(None);
                }
                if messages.is_none() {
                    match stream.take().map(|s| s.take()) {
                        Some(Ok(m)) => *messages = Some(m),
                        Some(Err(e)) => {
                            *over = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                        None => {
                            *over = true;
                            return Poll::Ready(None);
                        }
                    }
                }
                let Some(m) = messages.as_mut() else {
                    return Poll::Ready(None);
                };
                match Pin::new(m).poll_next(cx) {
                    Poll::Ready(Some(Ok(bytes))) => match T::decode(bytes) {
                        Ok(t) => Poll::Ready(Some(Ok(t))),
                        Err(e) => {
                            *over = true;
                            Poll::Ready(Some(Err(decode_error(std::any::type_name::<T>(), &e))))
                        }
                    },
                    Poll::Ready(Some(Err(e))) => {
                        *over = true;
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Ready(None) => {
                        *over = true;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// The producing end of [`Streaming::channel`]: end it with [`finish`](Self::finish) or
/// [`fail`](Self::fail); dropped without either, the stream ends with an error (the
/// peer sees a failed call, never a clean end).
pub struct Sender<T> {
    sink: MessageSink,
    _type: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("sink", &self.sink).finish()
    }
}

impl<T: prost::Message> Sender<T> {
    /// Sends `message`, waiting while the channel is full; fails (a cancellation) once
    /// the reader has gone.
    pub async fn send(&self, message: &T) -> RpcResult<()> {
        self.sink.send(Bytes::from(message.encode_to_vec())).await
    }

    /// Ends the stream normally (gRPC status OK).
    pub fn finish(self) {
        self.sink.finish();
    }

    /// Ends the stream with `error` after the messages already sent.
    pub async fn fail(self, error: RpcError) {
        self.sink.fail(error).await;
    }

    /// Resolves when the reader has gone (the peer cancelled, the deadline passed).
    pub async fn closed(&self) {
        self.sink.closed().await;
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.sink.is_closed()
    }
}

struct IterStream<I>(I);

// The iterator is never pinned: it is only called through `&mut`.
impl<I> Unpin for IterStream<I> {}

impl<I: Iterator> Stream for IterStream<I> {
    type Item = RpcResult<I::Item>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// Typed items encoded as they are read.
struct Encode<T>(BoxStream<T>);

impl<T: prost::Message> Stream for Encode<T> {
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(|m| Bytes::from(m.encode_to_vec()))))
    }
}

fn decode_error(what: &str, e: &prost::DecodeError) -> RpcError {
    RpcError::remote(
        codes::INVALID_PARAMS,
        format!("cannot decode a {what} message: {e}"),
    )
}

static DESCRIPTOR_SETS: Mutex<Vec<&'static [u8]>> = Mutex::new(Vec::new());

/// Makes an encoded `FileDescriptorSet` known to server reflection (generated servers
/// register theirs when made; registering the same set again does nothing).
pub fn register_file_descriptor_set(set: &'static [u8]) {
    let mut sets = DESCRIPTOR_SETS.lock().unwrap_or_else(|p| p.into_inner());
    if !sets.iter().any(|s| std::ptr::eq(*s, set) || *s == set) {
        sets.push(set);
    }
}

/// The encoded descriptor sets registered so far.
pub fn file_descriptor_sets() -> Vec<&'static [u8]> {
    DESCRIPTOR_SETS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Support for the code `rdubbo-build` generates; not a public API.
#[doc(hidden)]
pub mod codegen {
    use super::*;
    pub use crate::context::{incoming, outgoing, scoped};

    /// The error for a method the service does not have.
    pub fn method_not_found(interface: &str, method: &str) -> RpcError {
        crate::__private::method_not_found(interface, method)
    }

    fn encode<M: prost::Message>(m: &M) -> Bytes {
        Bytes::from(m.encode_to_vec())
    }

    /// The one request message of a unary or server-streaming call.
    pub async fn request<M: IdlMessage>(interface: &str, method: &str, args: Args) -> RpcResult<M> {
        let bytes = match args {
            Args::Message(b) => b,
            Args::Stream(s) => match s.take()?.next().await {
                Some(r) => r?,
                None => {
                    return Err(RpcError::remote(
                        codes::INVALID_PARAMS,
                        format!("{interface}/{method}: no request message"),
                    ))
                }
            },
            other => {
                return Err(RpcError::remote(
                    codes::INVALID_PARAMS,
                    format!(
                        "{interface}/{method} takes a protobuf message, not {}",
                        form(&other)
                    ),
                ))
            }
        };
        M::decode(bytes).map_err(|e| decode_error(std::any::type_name::<M>(), &e))
    }

    fn form(args: &Args) -> &'static str {
        match args {
            Args::Json(_) => "JSON",
            Args::Hessian(_) => "Hessian2 values",
            _ => "dynamic values",
        }
    }

    /// The request stream of a client-streaming or bidirectional call.
    pub fn requests<M: IdlMessage>(args: Args) -> RpcResult<Streaming<M>> {
        Ok(Streaming::from_messages(args.into_stream()?))
    }

    /// A unary answer.
    pub fn reply<M: prost::Message>(m: &M) -> Reply {
        Reply::Message(encode(m))
    }

    /// A streamed answer.
    pub fn replies<M: IdlMessage>(s: Streaming<M>) -> Reply {
        Reply::Stream(s.into_message_stream())
    }

    /// The arguments of a unary call.
    pub fn message_args<M: prost::Message>(m: &M) -> Args {
        Args::Message(encode(m))
    }

    /// The arguments of a server-streaming call: a stream of one message.
    pub fn stream_args<M: prost::Message>(m: &M) -> Args {
        Args::Stream(MessageStream::once(encode(m)))
    }

    /// The arguments of a client-streaming or bidirectional call.
    pub fn streaming_args<M: IdlMessage>(s: Streaming<M>) -> Args {
        Args::Stream(s.into_message_stream())
    }

    /// The one response message of a unary or client-streaming call; a streamed reply
    /// is read to its end, so that a status sent after the message is not missed.
    pub async fn response<M: IdlMessage>(
        interface: &str,
        method: &str,
        reply: Reply,
    ) -> RpcResult<M> {
        let bytes = match reply {
            Reply::Message(b) => b,
            Reply::Stream(s) => {
                let mut messages = s.take()?;
                let first = messages.next().await;
                while let Some(next) = messages.next().await {
                    next?;
                }
                match first {
                    Some(r) => r?,
                    None => {
                        return Err(RpcError::Codec(format!(
                            "{interface}/{method}: the answer had no message"
                        )))
                    }
                }
            }
            other => {
                return Err(RpcError::Codec(format!(
                    "{interface}/{method}: expected a protobuf message, got {other:?}"
                )))
            }
        };
        M::decode(bytes).map_err(|e| {
            RpcError::Codec(format!(
                "{interface}/{method}: cannot decode the answer: {e}"
            ))
        })
    }

    /// The response stream of a server-streaming or bidirectional call.
    pub fn responses<M: IdlMessage>(reply: Reply) -> RpcResult<Streaming<M>> {
        Ok(Streaming::from_messages(reply.into_stream()?))
    }
}

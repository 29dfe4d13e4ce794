//! Streams of gRPC messages over an HTTP/2 stream (rdubbo-http2), both ways, with flow control tied to
//! consumption: a received message's bytes are handed back to the peer (HTTP/2 window)
//! only when the reader asks for more than it has, and a message is sent only when the
//! peer's window has room for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream as _;
use http::HeaderMap;
use rdubbo_core::stream::cancelled;
use rdubbo_core::{Messages, RpcError, RpcResult};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::codec::{self, grpc, Encoding, FrameError};
use crate::headers;

/// Splits received bytes into gRPC messages: messages wholly inside a received chunk are
/// slices of it (no copy); only a message split over chunks is gathered.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    /// The rest of the last chunk, when nothing is being gathered.
    head: Bytes,
    /// A message being gathered over chunks (and what followed it).
    partial: BytesMut,
}

fn declared_len(b: &[u8]) -> Option<usize> {
    (b.len() >= codec::PREFIX_LEN).then(|| {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        codec::PREFIX_LEN.saturating_add(len)
    })
}

impl FrameDecoder {
    /// Adds received bytes.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if self.partial.is_empty() {
            if self.head.is_empty() {
                self.head = chunk;
                return;
            }
            // The head ends with part of a message: gather it, room for all of it.
            let want = declared_len(&self.head).unwrap_or(0);
            self.partial
                .reserve(want.max(self.head.len() + chunk.len()));
            self.partial.extend_from_slice(&self.head);
            self.head = Bytes::new();
        }
        self.partial.extend_from_slice(&chunk);
    }

    /// Bytes held.
    pub(crate) fn buffered(&self) -> usize {
        self.head.len() + self.partial.len()
    }

    /// The whole size (prefix included) of the message being received, once its prefix is.
    pub(crate) fn declared(&self) -> Option<usize> {
        if self.partial.is_empty() {
            declared_len(&self.head)
        } else {
            declared_len(&self.partial)
        }
    }

    /// The next complete message (inflated), if one is buffered.
    pub(crate) fn next_message(
        &mut self,
        encoding: Encoding,
        max: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        let gathering = !self.partial.is_empty();
        let bytes: &[u8] = if gathering { &self.partial } else { &self.head };
        let Some(total) = declared_len(bytes) else {
            return Ok(None);
        };
        let flag = bytes[0];
        if total - codec::PREFIX_LEN > max {
            return Err(FrameError::TooLarge(max));
        }
        if bytes.len() < total {
            return Ok(None);
        }
        let message = if gathering {
            self.partial.advance(codec::PREFIX_LEN);
            let m = self.partial.split_to(total - codec::PREFIX_LEN).freeze();
            // What followed the message is read from in place again.
            self.head = self.partial.split().freeze();
            m
        } else {
            let m = self.head.slice(codec::PREFIX_LEN..total);
            self.head.advance(total);
            m
        };
        match (flag, encoding) {
            (0, _) => Ok(Some(message)),
            (1, Encoding::Gzip) => codec::gunzip(&message, max).map(|m| Some(Bytes::from(m))),
            (1, Encoding::Identity) => Err(FrameError::Compression(
                "compressed message without grpc-encoding".into(),
            )),
            (f, _) => Err(FrameError::Compression(format!("bad compressed flag {f}"))),
        }
    }
}

/// What ends a stream of received messages.
pub(crate) enum End {
    /// The peer ended its side: nothing to check (a request).
    Plain,
    /// The peer ended its side with trailers holding the gRPC status (a response).
    Trailers,
}

/// Received messages of one HTTP/2 stream.
pub(crate) struct Incoming {
    body: rdubbo_http2::RecvStream,
    decoder: FrameDecoder,
    /// Bytes of the message being received taken off the stream (their window goes back
    /// to the peer as they are taken, past half of the stream's window).
    unreleased: usize,
    encoding: Encoding,
    max: usize,
    end: End,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// What to say when the deadline passes.
    deadline_error: RpcError,
    /// Held while reading (the client's request pump, aborted when this is dropped).
    guard: Option<AbortOnDrop>,
    /// Where the stream is from (for errors).
    peer: String,
    over: bool,
    /// The server's budget of buffered request bytes (KiB): a message larger than what
    /// the window let in takes its whole size from it before more is asked for.
    budget: Option<Arc<Semaphore>>,
    acquiring: Option<Acquire>,
    held: Option<OwnedSemaphorePermit>,
}

type Acquire =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + 'static>>;

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Incoming {
    pub(crate) fn new(
        body: rdubbo_http2::RecvStream,
        encoding: Encoding,
        max: usize,
        end: End,
        peer: String,
    ) -> Incoming {
        Incoming {
            body,
            decoder: FrameDecoder::default(),
            unreleased: 0,
            encoding,
            max,
            end,
            deadline: None,
            deadline_error: RpcError::Timeout(std::time::Duration::ZERO),
            guard: None,
            peer,
            over: false,
            budget: None,
            acquiring: None,
            held: None,
        }
    }

    /// Takes a message's size from `budget` before its bytes are asked for past the window.
    pub(crate) fn with_budget(mut self, budget: Arc<Semaphore>) -> Incoming {
        self.budget = Some(budget);
        self
    }

    /// Ends the stream with `error` when `at` passes.
    pub(crate) fn with_deadline(mut self, at: tokio::time::Instant, error: RpcError) -> Incoming {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
        self.deadline_error = error;
        self
    }

    /// Keeps `guard` alive as long as this stream.
    pub(crate) fn with_guard(mut self, guard: AbortOnDrop) -> Incoming {
        self.guard = Some(guard);
        self
    }

    fn fail(&mut self, e: RpcError) -> Poll<Option<RpcResult<Bytes>>> {
        self.over = true;
        self.guard = None;
        Poll::Ready(Some(Err(e)))
    }

    fn frame_error(&self, e: FrameError) -> RpcError {
        match e {
            FrameError::TooLarge(n) => {
                RpcError::Limit(format!("message from {} larger than {n} bytes", self.peer))
            }
            e => RpcError::Codec(format!("bad message from {}: {e}", self.peer)),
        }
    }

    fn broken(&self, e: &rdubbo_http2::Error) -> RpcError {
        if matches!(e, rdubbo_http2::Error::Reset { .. }) {
            cancelled(format!("the stream was reset by {}: {e}", self.peer))
        } else {
            RpcError::Transport {
                addr: self.peer.clone(),
                reason: e.to_string(),
            }
        }
    }
}

impl futures_core::Stream for Incoming {
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.over {
            return Poll::Ready(None);
        }
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                let e = this.deadline_error.clone();
                return this.fail(e);
            }
        }
        loop {
            match this.decoder.next_message(this.encoding, this.max) {
                Ok(Some(m)) => {
                    this.held = None;
                    return Poll::Ready(Some(Ok(m)));
                }
                Ok(None) => {}
                Err(e) => {
                    let e = this.frame_error(e);
                    return this.fail(e);
                }
            }
            // A message is partly in: its whole size comes from the budget before the
            // peer is given room for the rest.
            if let (Some(budget), None, Some(size)) =
                (&this.budget, &this.held, this.decoder.declared())
            {
                if this.unreleased > 0 {
                    let acquiring = this.acquiring.get_or_insert_with(|| {
                        let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
                        Box::pin(budget.clone().acquire_many_owned(kib))
                    });
                    match acquiring.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(permit)) => {
                            this.held = Some(permit);
                            this.acquiring = None;
                        }
                        Poll::Ready(Err(_)) => {
                            let e = cancelled("the server is shutting down");
                            return this.fail(e);
                        }
                    }
                }
            }
            // The reader wants more than is buffered: what is taken next gives the peer
            // room for more.
            this.unreleased = 0;
            // (Not skipped when the stream looks ended: a reset ends it too, and only
            // `poll_data` tells the two apart.)
            match this.body.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.unreleased += chunk.len();
                    this.decoder.push(chunk);
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    let e = this.broken(&e);
                    return this.fail(e);
                }
                Poll::Ready(None) => {}
            }
            // The peer's side is over.
            if this.decoder.buffered() > 0 {
                let e = this.frame_error(FrameError::Truncated);
                return this.fail(e);
            }
            return match this.end {
                End::Plain => {
                    this.over = true;
                    Poll::Ready(None)
                }
                End::Trailers => match this.body.poll_trailers(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        let e = this.broken(&e);
                        this.fail(e)
                    }
                    Poll::Ready(Ok(trailers)) => {
                        let trailers = trailers.map(|t| headers::to_map(&t)).unwrap_or_default();
                        match headers::text(&trailers, headers::GRPC_STATUS)
                            .map(|s| s.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN))
                        {
                            Some(grpc::OK) => {
                                this.over = true;
                                Poll::Ready(None)
                            }
                            Some(s) => {
                                let e = status_error(s, &trailers);
                                this.fail(e)
                            }
                            None => {
                                let e = RpcError::Transport {
                                    addr: this.peer.clone(),
                                    reason: "the stream ended without grpc-status".into(),
                                };
                                this.fail(e)
                            }
                        }
                    }
                },
            };
        }
    }
}

/// The error a non-OK gRPC status in `h` stands for.
pub(crate) fn status_error(status: u32, h: &HeaderMap) -> RpcError {
    let message = headers::text(h, headers::GRPC_MESSAGE)
        .map(codec::decode_grpc_message)
        .unwrap_or_else(|| format!("grpc-status {status}"));
    codec::error_of_status(status, message)
}

/// Why sending stopped.
pub(crate) enum Stop {
    /// The peer reset the stream (or the connection went).
    Reset,
    /// The deadline passed.
    Deadline,
}

/// Sends one framed message as the peer's window allows, watching for the deadline (a
/// reset fails the send).
pub(crate) async fn send_frame(
    send: &mut rdubbo_http2::SendStream,
    frame: Bytes,
    deadline: &mut Pin<Box<tokio::time::Sleep>>,
) -> Result<(), Stop> {
    tokio::select! {
        biased;
        r = send.send_data(&frame, false) => r.map_err(|_| Stop::Reset),
        () = deadline.as_mut() => Err(Stop::Deadline),
    }
}

/// The next message of `messages`, watching for a reset of `send` and the deadline.
pub(crate) async fn next_message(
    messages: &mut Messages,
    send: &mut rdubbo_http2::SendStream,
    deadline: &mut Pin<Box<tokio::time::Sleep>>,
) -> Result<Option<RpcResult<Bytes>>, Stop> {
    std::future::poll_fn(|cx| {
        if send.poll_reset(cx).is_ready() {
            return Poll::Ready(Err(Stop::Reset));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Stop::Deadline));
        }
        Pin::new(&mut *messages).poll_next(cx).map(Ok)
    })
    .await
}

/// A message stream with each message mapped (an error ends it).
pub(crate) struct Map<S, F> {
    inner: S,
    f: F,
    over: bool,
}

impl<S, F> Map<S, F> {
    pub(crate) fn new(inner: S, f: F) -> Map<S, F> {
        Map {
            inner,
            f,
            over: false,
        }
    }
}

impl<S, F> futures_core::Stream for Map<S, F>
where
    S: futures_core::Stream<Item = RpcResult<Bytes>> + Unpin,
    F: FnMut(Bytes) -> RpcResult<Bytes> + Unpin,
{
    type Item = RpcResult<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.over {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(m))) => {
                let mapped = (this.f)(m);
                this.over = mapped.is_err();
                Poll::Ready(Some(mapped))
            }
            Poll::Ready(Some(Err(e))) => {
                this.over = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.over = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The one Hessian2 value a stream message of an interface service carries: Java wraps
/// each in a `TripleRequestWrapper` of one argument.
pub(crate) fn unwrap_request(message: Bytes) -> RpcResult<Bytes> {
    let w = codec::decode_request(message)
        .map_err(|e| RpcError::Codec(format!("bad TripleRequestWrapper in a stream: {e}")))?;
    w.args
        .into_iter()
        .next()
        .ok_or_else(|| RpcError::Codec("a stream message without its value".into()))
}

/// One Hessian2 value as Java sends a stream message of an interface service.
pub(crate) fn wrap_request(value: Bytes, class: &str) -> Bytes {
    use prost::Message;
    Bytes::from(
        codec::TripleRequestWrapper {
            serialize_type: codec::HESSIAN4.into(),
            args: vec![value],
            arg_types: vec![class.to_string()],
        }
        .encode_to_vec(),
    )
}

/// One Hessian2 value as Java answers in a stream of an interface service.
pub(crate) fn wrap_response(value: Bytes) -> Bytes {
    use prost::Message;
    Bytes::from(
        codec::TripleResponseWrapper {
            serialize_type: codec::HESSIAN4.into(),
            data: value,
            r#type: "java.lang.Object".into(),
        }
        .encode_to_vec(),
    )
}

/// The Hessian2 value of a `TripleResponseWrapper` in a stream (an exception as an error).
pub(crate) fn unwrap_response(message: Bytes) -> RpcResult<Bytes> {
    use prost::Message;
    let w = codec::TripleResponseWrapper::decode(message)
        .map_err(|e| RpcError::Codec(format!("bad TripleResponseWrapper in a stream: {e}")))?;
    if w.r#type == "java.lang.Exception" {
        let value = rdubbo_hessian::decode_value(&w.data)
            .map_err(|e| RpcError::Codec(format!("bad exception in a stream: {e}")))?;
        return Err(codec::exception_error(&value));
    }
    Ok(w.data)
}

/// How sending a stream of messages ended.
pub(crate) enum Pumped {
    /// The producer ended (or `limit` messages were sent).
    Done,
    /// The producer failed with this error.
    Failed(RpcError),
    /// A message over the size limit.
    TooLarge,
    /// The peer reset the stream.
    Reset,
    /// The deadline passed.
    Deadline,
}

/// Bytes of messages gathered into one DATA frame at most.
const BATCH: usize = 32 * 1024;

/// Sends `messages` (at most `limit`) as the peer's window allows. Messages the producer
/// has ready are gathered and sent together (one DATA frame for many small messages);
/// the gathered bytes go as soon as the producer has nothing more ready.
pub(crate) async fn pump(
    messages: &mut Messages,
    send: &mut rdubbo_http2::SendStream,
    deadline: &mut Pin<Box<tokio::time::Sleep>>,
    encoding: Encoding,
    max: usize,
    limit: usize,
) -> Pumped {
    let mut batch = BytesMut::new();
    let mut sent = 0usize;
    let end = loop {
        if sent == limit {
            break Pumped::Done;
        }
        let next = if batch.is_empty() {
            match next_message(messages, send, deadline).await {
                Ok(next) => next,
                Err(Stop::Reset) => return Pumped::Reset,
                Err(Stop::Deadline) => break Pumped::Deadline,
            }
        } else {
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *messages).poll_next(cx)))
                .await
            {
                Poll::Ready(next) => next,
                Poll::Pending => match send_frame(send, batch.split().freeze(), deadline).await {
                    Ok(()) => continue,
                    Err(Stop::Reset) => return Pumped::Reset,
                    Err(Stop::Deadline) => break Pumped::Deadline,
                },
            }
        };
        match next {
            None => break Pumped::Done,
            Some(Err(e)) => break Pumped::Failed(e),
            Some(Ok(m)) if m.len() > max => break Pumped::TooLarge,
            Some(Ok(m)) => {
                codec::put_message(&mut batch, &m, encoding);
                sent += 1;
                if batch.len() >= BATCH {
                    match send_frame(send, batch.split().freeze(), deadline).await {
                        Ok(()) => {}
                        Err(Stop::Reset) => return Pumped::Reset,
                        Err(Stop::Deadline) => break Pumped::Deadline,
                    }
                }
            }
        }
    };
    // What was gathered goes before the end.
    if !batch.is_empty() && !matches!(end, Pumped::Deadline) {
        match send_frame(send, batch.freeze(), deadline).await {
            Ok(()) => {}
            Err(Stop::Reset) => return Pumped::Reset,
            Err(Stop::Deadline) => return Pumped::Deadline,
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere_come_out_whole() {
        let mut wire = BytesMut::new();
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) * 7]).collect();
        for m in &messages {
            codec::put_message(&mut wire, m, Encoding::Identity);
        }
        let wire = wire.freeze();
        for step in [1, 2, 5, 13, 64, 1000, wire.len()] {
            let mut d = FrameDecoder::default();
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let end = (at + step).min(wire.len());
                d.push(wire.slice(at..end));
                at = end;
                while let Some(m) = d.next_message(Encoding::Identity, 1 << 20).unwrap() {
                    got.push(m.to_vec());
                }
            }
            assert_eq!(got, messages, "chunks of {step}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_prefix() {
        let mut d = FrameDecoder::default();
        d.push(Bytes::from_static(&[0, 0, 1, 0, 0]));
        assert_eq!(d.declared(), Some(5 + 65536));
        assert_eq!(
            d.next_message(Encoding::Identity, 1024),
            Err(FrameError::TooLarge(1024))
        );
    }
}

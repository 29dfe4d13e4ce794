//! The connection engine shared by the client and the server: the state under one lock
//! (streams, windows, HPACK encoder, the queue of frames to write), the combining writer
//! and the processing of what is read.
//!
//! Writing: frames are appended to one queue under the state lock; whoever finds the
//! socket free writes the whole queue in one system call (the others return at once: the
//! writer in charge re-checks the queue before letting go). With several streams in
//! flight, a send queues and wakes the connection's flusher, which first lets every ready
//! task run, so the frames of concurrent calls go out in one write. A server handler
//! polled inline by the connection task does not write at all: the connection task
//! writes once after the batch of frames it read.
//!
//! Reading: one task per connection reads into one buffer, parses every complete frame of
//! it under one lock and wakes the streams concerned only after the whole batch (so a
//! unary response's HEADERS, DATA and trailers reach the waiting caller with one wakeup).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::frame::{self, setting, Frame, FrameHeader, Reason, HEADER_LEN, MAX_WINDOW};
use crate::hpack::{Decoder, Encoder};
use crate::{Config, Error, Headers};

/// The boxed write half of a connection.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

thread_local! {
    /// The connection whose server handlers the current thread is polling inline: their
    /// writes wait for the connection task's write after the batch.
    static DISPATCHING: Cell<usize> = const { Cell::new(0) };
}

/// Sets [`DISPATCHING`] for the life of the guard.
pub(crate) struct Dispatching(usize);

impl Dispatching {
    pub(crate) fn enter(shared: &Shared) -> Dispatching {
        let prev = DISPATCHING.with(|d| d.replace(shared as *const Shared as usize));
        Dispatching(prev)
    }
}

impl Drop for Dispatching {
    fn drop(&mut self) {
        DISPATCHING.with(|d| d.set(self.0));
    }
}

/// Hashes stream identifiers for the stream table: one multiplication with a key drawn
/// per connection (SipHash costs more than the rest of a lookup; the key keeps a peer from
/// choosing identifiers that collide, and the table holds at most a few thousand streams).
#[derive(Clone, Copy)]
pub(crate) struct StreamIds {
    key: u64,
}

impl StreamIds {
    fn new() -> StreamIds {
        use std::hash::BuildHasher;
        StreamIds {
            key: std::collections::hash_map::RandomState::new().hash_one(0u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for StreamIds {
    type Hasher = StreamIdHasher;

    fn build_hasher(&self) -> StreamIdHasher {
        StreamIdHasher {
            key: self.key,
            hash: 0,
        }
    }
}

/// The hasher of [`StreamIds`].
pub(crate) struct StreamIdHasher {
    key: u64,
    hash: u64,
}

impl std::hash::Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, v: u64) {
        let x = (self.hash ^ v ^ self.key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.hash = x ^ (x >> 29);
    }
}

/// The peer's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerSettings {
    pub max_frame_size: u32,
    pub initial_window: u32,
    pub max_concurrent: u32,
    pub max_header_list: u32,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            max_frame_size: frame::DEFAULT_MAX_FRAME,
            initial_window: frame::DEFAULT_WINDOW,
            max_concurrent: u32::MAX,
            max_header_list: u32::MAX,
        }
    }
}

/// One stream's state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// Received data not yet taken by the receive handle.
    pub recv: VecDeque<Bytes>,
    /// Received response headers not yet taken (client side).
    pub headers: Option<Headers>,
    /// Received trailers not yet taken.
    pub trailers: Option<Headers>,
    pub recv_end: bool,
    pub send_end: bool,
    /// Set when the stream was reset, or failed with its connection.
    pub error: Option<Error>,
    pub recv_waker: Option<Waker>,
    pub send_waker: Option<Waker>,
    pub send_window: i64,
    pub recv_window: i64,
    /// Data taken by the handle and not yet given back with WINDOW_UPDATE.
    pub recv_unacked: u32,
    /// Handles alive (send, receive).
    pub refs: u8,
    /// Whether the stream counts among the active ones (not yet closed).
    pub active: bool,
    /// Whether the first HEADERS (response headers) arrived (client side).
    pub headers_received: bool,
}

impl Stream {
    fn closed(&self) -> bool {
        self.error.is_some() || (self.recv_end && self.send_end)
    }

    fn wake(&mut self, wakers: &mut Vec<Waker>) {
        if let Some(w) = self.recv_waker.take() {
            wakers.push(w);
        }
        if let Some(w) = self.send_waker.take() {
            wakers.push(w);
        }
    }
}

/// What the peer may still do before it has to stop (abuse budgets per second).
#[derive(Debug)]
struct Budget {
    since: Instant,
    control: u32,
    resets: u32,
}

/// Everything under the connection lock.
pub(crate) struct State {
    /// Frames queued for the next write.
    pub wbuf: Vec<u8>,
    /// The buffer swapped with `wbuf` while a batch is written.
    spare: Vec<u8>,
    /// Scratch for header blocks.
    hbuf: Vec<u8>,
    encoder: Encoder,
    pub streams: HashMap<u32, Stream, StreamIds>,
    /// Client: the next stream id to open.
    next_id: u32,
    /// Server: the highest stream id the peer opened.
    last_peer_id: u32,
    /// Streams not yet closed.
    pub active: usize,
    pub peer: PeerSettings,
    /// Connection send window.
    send_window: i64,
    /// Connection receive window (what the peer may still send).
    recv_window: i64,
    recv_unacked: u32,
    /// The connection window we keep open (WINDOW_UPDATE past half of it).
    conn_window: u32,
    /// Set when the connection is done: every stream fails with it.
    pub error: Option<Error>,
    /// The peer's GOAWAY (its last stream id).
    goaway_recv: Option<u32>,
    goaway_sent: bool,
    /// Tasks waiting for a stream slot, for room in `wbuf`, or for the end of all streams.
    pub waiters: Vec<Waker>,
    budget: Budget,
    /// Since when no stream is open (the idle timeout counts from it).
    pub idle_since: tokio::time::Instant,
}

impl State {
    /// Fails if the connection is done.
    pub fn check(&self) -> Result<(), Error> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Queues a header block on `stream`.
    pub fn queue_headers(&mut self, stream: u32, headers: &Headers, end_stream: bool) {
        self.hbuf.clear();
        self.encoder.encode(headers, &mut self.hbuf);
        let max = self.peer.max_frame_size as usize;
        frame::put_headers(&mut self.wbuf, stream, &self.hbuf, end_stream, max);
    }

    /// Opens a stream in the map (its handles count as `refs`).
    pub fn insert_stream(&mut self, id: u32, recv_window: u32, recv_end: bool, send_end: bool) {
        self.active += 1;
        self.streams.insert(
            id,
            Stream {
                send_window: i64::from(self.peer.initial_window),
                recv_window: i64::from(recv_window),
                recv_end,
                send_end,
                refs: 2,
                active: true,
                ..Stream::default()
            },
        );
    }

    /// Client: allocates the next stream id.
    pub fn next_stream_id(&mut self) -> Result<u32, Error> {
        if let Some(last) = self.goaway_recv {
            return Err(Error::GoAway {
                reason: Reason::NO_ERROR,
                remote: true,
                message: format!("the server is going away (last stream {last})"),
            });
        }
        let id = self.next_id;
        if id > i32::MAX as u32 {
            return Err(Error::User(
                "stream identifiers exhausted on this connection: open another".into(),
            ));
        }
        self.next_id += 2;
        Ok(id)
    }

    /// Whether the peer sent GOAWAY.
    pub fn goaway_received(&self) -> bool {
        self.goaway_recv.is_some()
    }

    /// Whether a client may open another stream now.
    pub fn has_slot(&self) -> bool {
        self.active < self.peer.max_concurrent as usize
    }

    /// The send window available to `stream` (0 when either window is empty).
    pub fn send_capacity(&self, stream: &Stream) -> usize {
        stream.send_window.min(self.send_window).max(0) as usize
    }

    /// Takes `n` bytes off the connection send window (the stream's is taken by the caller).
    pub fn consume_send(&mut self, n: usize) {
        self.send_window -= n as i64;
    }

    /// Closes, and removes once its handles are gone, the stream if it is done.
    pub fn settle(&mut self, id: u32, wakers: &mut Vec<Waker>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.active && s.closed() {
            s.active = false;
            self.active -= 1;
            if self.active == 0 {
                self.idle_since = tokio::time::Instant::now();
            }
            wakers.append(&mut self.waiters);
        }
        if s.refs == 0 && !s.active {
            if let Some(s) = self.streams.remove(&id) {
                // Data never read still gives its room back to the connection.
                let unread: usize = s.recv.iter().map(|b| b.len()).sum();
                self.release_conn(unread as u32);
                self.conn_update();
            }
        }
    }

    /// Resets `id` from this side (RST_STREAM queued) and wakes its handles.
    pub fn reset_local(&mut self, id: u32, reason: Reason, wakers: &mut Vec<Waker>) {
        frame::put_rst(&mut self.wbuf, id, reason);
        if let Some(s) = self.streams.get_mut(&id) {
            if s.error.is_none() {
                s.error = Some(Error::Reset {
                    reason,
                    remote: false,
                });
            }
            s.wake(wakers);
        }
        self.settle(id, wakers);
    }

    /// A handle of `id` was dropped: when both are gone before the stream finished, the
    /// stream is reset (CANCEL, or NO_ERROR when our side finished).
    pub fn drop_ref(&mut self, id: u32, wakers: &mut Vec<Waker>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.refs = s.refs.saturating_sub(1);
        if s.refs > 0 {
            return;
        }
        if !s.closed() && self.error.is_none() {
            let reason = if s.send_end {
                Reason::NO_ERROR
            } else {
                Reason::CANCEL
            };
            self.reset_local(id, reason, wakers);
        } else {
            self.settle(id, wakers);
        }
    }

    fn release_conn(&mut self, n: u32) {
        self.recv_unacked = self.recv_unacked.saturating_add(n);
    }

    /// Gives back `n` bytes read by the handle of `id`; queues WINDOW_UPDATEs past half
    /// of each window. Returns whether a frame was queued.
    pub fn release(&mut self, id: u32, n: u32, config: &Config) -> bool {
        let mut queued = false;
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv_unacked = s.recv_unacked.saturating_add(n);
            if !s.recv_end && s.recv_unacked >= config.initial_stream_window / 2 {
                frame::put_window_update(&mut self.wbuf, id, s.recv_unacked);
                s.recv_window += i64::from(s.recv_unacked);
                s.recv_unacked = 0;
                queued = true;
            }
        }
        self.recv_unacked = self.recv_unacked.saturating_add(n);
        queued | self.conn_update()
    }

    fn conn_update(&mut self) -> bool {
        if self.recv_unacked >= self.conn_window / 2 {
            frame::put_window_update(&mut self.wbuf, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
            return true;
        }
        false
    }

    /// Ends the connection with `error`, failing every stream.
    pub fn fail(&mut self, error: Error, wakers: &mut Vec<Waker>) {
        if self.error.is_none() {
            self.error = Some(error.clone());
        }
        for s in self.streams.values_mut() {
            if s.error.is_none() && !(s.recv_end && s.send_end) {
                s.error = Some(error.clone());
            }
            s.wake(wakers);
        }
        wakers.append(&mut self.waiters);
    }
}

/// A connection: state, write half and the flusher's signal.
pub(crate) struct Shared {
    state: Mutex<State>,
    socket: tokio::sync::Mutex<WriteHalf>,
    /// Wakes the flusher task.
    pub flush_soon: Notify,
    /// Wakes the reading task (closing, shutdown).
    pub wake_reader: Notify,
    pub config: Config,
    pub is_client: bool,
    /// Set when the last client handle is gone, or a server shuts down gracefully.
    pub closing: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(write: WriteHalf, config: Config, is_client: bool) -> Shared {
        let mut wbuf = Vec::with_capacity(16 * 1024);
        if is_client {
            wbuf.extend_from_slice(frame::PREFACE);
        }
        let mut params = vec![
            (
                setting::MAX_CONCURRENT_STREAMS,
                config.max_concurrent_streams,
            ),
            (setting::INITIAL_WINDOW_SIZE, config.initial_stream_window),
            (setting::MAX_FRAME_SIZE, config.max_frame_size),
            (setting::MAX_HEADER_LIST_SIZE, config.max_header_list_size),
        ];
        if config.header_table_size != 4096 {
            params.push((setting::HEADER_TABLE_SIZE, config.header_table_size));
        }
        if is_client {
            params.push((setting::ENABLE_PUSH, 0));
        }
        frame::put_settings(&mut wbuf, &params);
        let mut recv_window = i64::from(frame::DEFAULT_WINDOW);
        if config.connection_window > frame::DEFAULT_WINDOW {
            frame::put_window_update(
                &mut wbuf,
                0,
                config.connection_window - frame::DEFAULT_WINDOW,
            );
            recv_window = i64::from(config.connection_window);
        }
        Shared {
            state: Mutex::new(State {
                wbuf,
                spare: Vec::with_capacity(16 * 1024),
                hbuf: Vec::with_capacity(512),
                encoder: Encoder::new(),
                streams: HashMap::with_hasher(StreamIds::new()),
                next_id: 1,
                last_peer_id: 0,
                active: 0,
                peer: PeerSettings::default(),
                send_window: i64::from(frame::DEFAULT_WINDOW),
                recv_window,
                recv_unacked: 0,
                conn_window: config.connection_window.max(frame::DEFAULT_WINDOW),
                error: None,
                goaway_recv: None,
                goaway_sent: false,
                waiters: Vec::new(),
                budget: Budget {
                    since: Instant::now(),
                    control: 0,
                    resets: 0,
                },
                idle_since: tokio::time::Instant::now(),
            }),
            socket: tokio::sync::Mutex::new(write),
            flush_soon: Notify::new(),
            wake_reader: Notify::new(),
            config,
            is_client,
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The state, under its lock.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deferred(&self) -> bool {
        DISPATCHING.with(|d| d.get() == self as *const Shared as usize)
    }

    /// Writes what is queued, unless another task is writing (it writes it) or this is a
    /// handler polled inline by the connection task (which writes after the batch).
    pub(crate) async fn flush(&self) -> Result<(), Error> {
        if self.deferred() {
            return Ok(());
        }
        loop {
            let Ok(mut socket) = self.socket.try_lock() else {
                return self.state().check();
            };
            self.write_queue(&mut socket).await?;
            drop(socket);
            // Another task may have queued and returned while we held the socket.
            if self.state().wbuf.is_empty() {
                return Ok(());
            }
        }
    }

    /// As [`Shared::flush`], but waits for the socket when another task holds it: used by
    /// the reading task to stop reading while the peer does not take what it is sent.
    pub(crate) async fn flush_wait(&self) -> Result<(), Error> {
        let mut socket = self.socket.lock().await;
        self.write_queue(&mut socket).await
    }

    /// Writes what is queued and shuts the write half down.
    pub(crate) async fn close_write(&self) {
        let mut socket = self.socket.lock().await;
        let _ = self.write_queue(&mut socket).await;
        let bound = self.config.write_timeout.unwrap_or(Duration::from_secs(30));
        let _ = tokio::time::timeout(bound, socket.shutdown()).await;
    }

    /// Flushes now if this stream is alone, else leaves it to the flusher task (which lets
    /// the other ready tasks queue theirs first).
    pub(crate) async fn flush_or_defer(&self) -> Result<(), Error> {
        if self.deferred() {
            return Ok(());
        }
        let alone = self.state().active <= 1;
        if alone {
            self.flush().await
        } else {
            self.flush_soon.notify_one();
            Ok(())
        }
    }

    async fn write_queue(&self, socket: &mut WriteHalf) -> Result<(), Error> {
        loop {
            let mut batch = {
                let mut st = self.state();
                if st.wbuf.is_empty() {
                    return Ok(());
                }
                let mut batch = std::mem::take(&mut st.spare);
                std::mem::swap(&mut batch, &mut st.wbuf);
                batch
            };
            let result = write_bounded(socket, &batch, self.config.write_timeout).await;
            batch.clear();
            let mut wakers = Vec::new();
            {
                let mut st = self.state();
                if batch.capacity() <= 4 << 20 && st.spare.capacity() == 0 {
                    st.spare = batch;
                }
                match &result {
                    Ok(()) => wakers.append(&mut st.waiters),
                    Err(e) => st.fail(Error::Io(e.to_string()), &mut wakers),
                }
            }
            wakers.into_iter().for_each(Waker::wake);
            if result.is_err() {
                self.wake_reader.notify_one();
                self.flush_soon.notify_one();
                return self.state().check();
            }
        }
    }

    /// Waits until the queue is under the write-buffer limit (the peer reads).
    pub(crate) async fn room(&self) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            let mut st = self.state();
            st.check()?;
            if st.wbuf.len() <= self.config.max_write_buffer {
                return Poll::Ready(Ok(()));
            }
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Resolves once no stream is open (woken as streams close).
    pub(crate) async fn all_closed(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.state();
            if st.active == 0 || st.error.is_some() {
                return Poll::Ready(());
            }
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Runs `f` on the state, then wakes the wakers it collected.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State, &mut Vec<Waker>) -> R) -> R {
        let mut wakers = Vec::new();
        let r = f(&mut self.state(), &mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        r
    }

    /// Sends GOAWAY (once) and stops new streams: `last` is the last peer stream processed.
    pub(crate) fn go_away(&self, reason: Reason, message: &str) {
        let mut st = self.state();
        if st.goaway_sent {
            return;
        }
        st.goaway_sent = true;
        let last = st.last_peer_id;
        frame::put_goaway(&mut st.wbuf, last, reason, message.as_bytes());
    }
}

/// Writes `batch` whole and flushes; fails when the peer takes no byte for `timeout`.
async fn write_bounded(
    socket: &mut WriteHalf,
    batch: &[u8],
    timeout: Option<Duration>,
) -> std::io::Result<()> {
    let Some(timeout) = timeout else {
        socket.write_all(batch).await?;
        return socket.flush().await;
    };
    let stalled = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer took nothing written for {timeout:?}"),
        )
    };
    let mut off = 0;
    while off < batch.len() {
        let n = tokio::time::timeout(timeout, socket.write(&batch[off..]))
            .await
            .map_err(|_| stalled())??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        off += n;
    }
    tokio::time::timeout(timeout, socket.flush())
        .await
        .map_err(|_| stalled())?
}

/// Writes what the flusher is told to, after letting every ready task queue its frames;
/// ends with the connection.
pub(crate) async fn flusher(shared: std::sync::Arc<Shared>) {
    loop {
        shared.flush_soon.notified().await;
        if shared.state().error.is_some() {
            return;
        }
        tokio::task::yield_now().await;
        if shared.flush().await.is_err() {
            return;
        }
    }
}

/// A connection-level error: GOAWAY with this code.
#[derive(Debug)]
pub(crate) struct ConnError {
    pub reason: Reason,
    pub message: String,
}

fn conn_err(reason: Reason, message: impl Into<String>) -> ConnError {
    ConnError {
        reason,
        message: message.into(),
    }
}

/// A stream the peer opened (server side).
pub(crate) struct Opened {
    pub id: u32,
    pub headers: Headers,
}

/// A header block being received over CONTINUATION frames.
struct Pending {
    stream: u32,
    end_stream: bool,
    block: BytesMut,
    frames: u32,
}

/// The reading side of a connection.
pub(crate) struct Reader<R> {
    read: R,
    buf: BytesMut,
    decoder: Decoder,
    pending: Option<Pending>,
    /// Wakers collected during a batch (kept for its allocation).
    wakers: Vec<Waker>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(read: R, config: &Config) -> Reader<R> {
        Reader {
            read,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::new(config.header_table_size as usize),
            pending: None,
            wakers: Vec::new(),
        }
    }

    /// Reads the client preface (server side).
    pub(crate) async fn preface(&mut self) -> Result<(), ConnError> {
        while self.buf.len() < frame::PREFACE.len() {
            let n = self.read.read_buf(&mut self.buf).await.map_err(|e| {
                conn_err(Reason::PROTOCOL_ERROR, format!("reading the preface: {e}"))
            })?;
            if n == 0 {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "closed before the preface",
                ));
            }
            if !frame::PREFACE.starts_with(&self.buf[..self.buf.len().min(24)]) {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "not the HTTP/2 connection preface (prior knowledge expected)",
                ));
            }
        }
        let _ = self.buf.split_to(frame::PREFACE.len());
        Ok(())
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    pub(crate) async fn fill(&mut self, max_frame: u32) -> std::io::Result<bool> {
        // Room for at least one whole frame of the size we accept.
        let want = (HEADER_LEN + max_frame as usize).min(64 * 1024);
        if self.buf.capacity() - self.buf.len() < want / 4 {
            self.buf.reserve(want);
        }
        Ok(self.read.read_buf(&mut self.buf).await? > 0)
    }

    /// Whether a whole frame (or a frame header over `max_frame`) is buffered.
    pub(crate) fn has_frame(&self, max_frame: u32) -> bool {
        FrameHeader::parse(&self.buf)
            .is_some_and(|h| h.len > max_frame || self.buf.len() >= HEADER_LEN + h.len as usize)
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Parses and applies every complete frame buffered; streams the peer opened are
    /// appended to `opened`. Wakes the streams concerned at the end.
    pub(crate) fn process(
        &mut self,
        shared: &Shared,
        opened: &mut Vec<Opened>,
    ) -> Result<(), ConnError> {
        let mut st = shared.state();
        let now = Instant::now();
        if now.duration_since(st.budget.since) >= Duration::from_secs(1) {
            st.budget = Budget {
                since: now,
                control: 0,
                resets: 0,
            };
        }
        let mut result = Ok(());
        while let Some(h) = FrameHeader::parse(&self.buf) {
            if h.len > shared.config.max_frame_size {
                result = Err(conn_err(
                    Reason::FRAME_SIZE_ERROR,
                    format!(
                        "frame of {} bytes over SETTINGS_MAX_FRAME_SIZE {}",
                        h.len, shared.config.max_frame_size
                    ),
                ));
                break;
            }
            let total = HEADER_LEN + h.len as usize;
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                break;
            }
            let mut bytes = self.buf.split_to(total).freeze();
            let payload = bytes.split_off(HEADER_LEN);
            let frame = match Frame::parse(h, payload) {
                Ok(f) => f,
                Err(e) => {
                    result = Err(conn_err(e.reason, e.message));
                    break;
                }
            };
            if let Err(e) = self.apply(&mut st, shared, frame, opened) {
                result = Err(e);
                break;
            }
        }
        let wakers_needed = !self.wakers.is_empty();
        drop(st);
        if wakers_needed {
            self.wakers.drain(..).for_each(Waker::wake);
        }
        result
    }

    fn control(st: &mut State, config: &Config) -> Result<(), ConnError> {
        st.budget.control += 1;
        if st.budget.control > config.max_control_frames_per_sec {
            return Err(conn_err(
                Reason::ENHANCE_YOUR_CALM,
                format!(
                    "more than {} control frames (SETTINGS, PING, PRIORITY, empty or unknown frames) in a second",
                    config.max_control_frames_per_sec
                ),
            ));
        }
        Ok(())
    }

    fn reset_budget(st: &mut State, config: &Config) -> Result<(), ConnError> {
        st.budget.resets += 1;
        if st.budget.resets > config.max_resets_per_sec {
            return Err(conn_err(
                Reason::ENHANCE_YOUR_CALM,
                format!(
                    "more than {} streams reset or refused in a second (rapid reset)",
                    config.max_resets_per_sec
                ),
            ));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        st: &mut State,
        shared: &Shared,
        frame: Frame,
        opened: &mut Vec<Opened>,
    ) -> Result<(), ConnError> {
        let config = &shared.config;
        if let Some(p) = &mut self.pending {
            let Frame::Continuation {
                stream,
                block,
                end_headers,
            } = frame
            else {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "expected CONTINUATION of a header block",
                ));
            };
            if stream != p.stream {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION on another stream",
                ));
            }
            p.frames += 1;
            if p.frames > config.max_continuation_frames
                || p.block.len() + block.len() > config.max_header_list_size as usize + 1024
            {
                return Err(conn_err(
                    Reason::ENHANCE_YOUR_CALM,
                    format!(
                        "header block over {} CONTINUATION frames or {} bytes",
                        config.max_continuation_frames,
                        config.max_header_list_size as usize + 1024
                    ),
                ));
            }
            p.block.extend_from_slice(&block);
            if end_headers {
                let Some(p) = self.pending.take() else {
                    return Ok(());
                };
                return self.headers(st, shared, p.stream, p.block.freeze(), p.end_stream, opened);
            }
            return Ok(());
        }
        match frame {
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_len,
            } => {
                if i64::from(flow_len) > st.recv_window {
                    return Err(conn_err(
                        Reason::FLOW_CONTROL_ERROR,
                        "DATA beyond the connection window",
                    ));
                }
                st.recv_window -= i64::from(flow_len);
                if data.is_empty() && !end_stream {
                    Self::control(st, config)?;
                }
                let padding = flow_len - data.len() as u32;
                let Some(s) = st
                    .streams
                    .get_mut(&stream)
                    .filter(|s| !s.recv_end && s.error.is_none())
                else {
                    if self.idle(st, shared, stream) {
                        return Err(conn_err(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
                    }
                    // A stream closed or reset: its data only gives the window back.
                    st.release_conn(flow_len);
                    st.conn_update();
                    return Ok(());
                };
                s.recv_window -= i64::from(flow_len);
                if s.recv_window < 0 {
                    st.release_conn(flow_len);
                    st.reset_local(stream, Reason::FLOW_CONTROL_ERROR, &mut self.wakers);
                    return Ok(());
                }
                if !data.is_empty() {
                    s.recv.push_back(data);
                }
                if end_stream {
                    s.recv_end = true;
                }
                s.wake(&mut self.wakers);
                if padding > 0 {
                    st.release_conn(padding);
                }
                if end_stream {
                    st.settle(stream, &mut self.wakers);
                }
                st.conn_update();
            }
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
            } => {
                if block.is_empty() && !end_headers {
                    Self::control(st, config)?;
                }
                if !end_headers {
                    if block.len() > config.max_header_list_size as usize + 1024 {
                        return Err(conn_err(
                            Reason::ENHANCE_YOUR_CALM,
                            "header block too large",
                        ));
                    }
                    self.pending = Some(Pending {
                        stream,
                        end_stream,
                        block: BytesMut::from(&block[..]),
                        frames: 0,
                    });
                    return Ok(());
                }
                return self.headers(st, shared, stream, block, end_stream, opened);
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Self::control(st, config)?,
            Frame::RstStream { stream, reason } => {
                if self.idle(st, shared, stream) {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "RST_STREAM on an idle stream",
                    ));
                }
                if let Some(s) = st.streams.get_mut(&stream) {
                    if s.active && !shared.is_client {
                        Self::reset_budget(st, config)?;
                    }
                    let Some(s) = st.streams.get_mut(&stream) else {
                        return Ok(());
                    };
                    if s.error.is_none() {
                        s.error = Some(Error::Reset {
                            reason,
                            remote: true,
                        });
                    }
                    s.wake(&mut self.wakers);
                    st.settle(stream, &mut self.wakers);
                }
            }
            Frame::Settings { ack, params } => {
                if ack {
                    return Ok(());
                }
                Self::control(st, config)?;
                for (id, value) in frame::settings_iter(&params) {
                    match id {
                        setting::HEADER_TABLE_SIZE => st.encoder.set_max_table_size(value as usize),
                        setting::ENABLE_PUSH if value > 1 => {
                            return Err(conn_err(Reason::PROTOCOL_ERROR, "ENABLE_PUSH above 1"))
                        }
                        setting::MAX_CONCURRENT_STREAMS => {
                            st.peer.max_concurrent = value;
                            self.wakers.append(&mut st.waiters);
                        }
                        setting::INITIAL_WINDOW_SIZE => {
                            if i64::from(value) > MAX_WINDOW {
                                return Err(conn_err(
                                    Reason::FLOW_CONTROL_ERROR,
                                    "INITIAL_WINDOW_SIZE above 2^31-1",
                                ));
                            }
                            let delta = i64::from(value) - i64::from(st.peer.initial_window);
                            st.peer.initial_window = value;
                            for s in st.streams.values_mut() {
                                s.send_window += delta;
                                if s.send_window > MAX_WINDOW {
                                    return Err(conn_err(
                                        Reason::FLOW_CONTROL_ERROR,
                                        "a stream window above 2^31-1",
                                    ));
                                }
                                if delta > 0 {
                                    if let Some(w) = s.send_waker.take() {
                                        self.wakers.push(w);
                                    }
                                }
                            }
                        }
                        setting::MAX_FRAME_SIZE => {
                            if !(frame::DEFAULT_MAX_FRAME..=(1 << 24) - 1).contains(&value) {
                                return Err(conn_err(
                                    Reason::PROTOCOL_ERROR,
                                    "MAX_FRAME_SIZE out of range",
                                ));
                            }
                            st.peer.max_frame_size = value;
                        }
                        setting::MAX_HEADER_LIST_SIZE => st.peer.max_header_list = value,
                        _ => {}
                    }
                }
                frame::put_settings_ack(&mut st.wbuf);
            }
            Frame::PushPromise { .. } => {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "PUSH_PROMISE while push is disabled",
                ))
            }
            Frame::Ping { ack, payload } => {
                if !ack {
                    Self::control(st, config)?;
                    frame::put_ping(&mut st.wbuf, true, payload);
                }
            }
            Frame::GoAway {
                last_stream,
                reason,
                debug,
            } => {
                st.goaway_recv = Some(last_stream);
                let message = String::from_utf8_lossy(&debug).into_owned();
                if reason != Reason::NO_ERROR {
                    tracing::debug!(%reason, %message, "GOAWAY received");
                }
                let refused: Vec<u32> = st
                    .streams
                    .keys()
                    .copied()
                    .filter(|&id| shared.is_client && id > last_stream)
                    .collect();
                for id in refused {
                    if let Some(s) = st.streams.get_mut(&id) {
                        if s.error.is_none() {
                            s.error = Some(Error::Reset {
                                reason: Reason::REFUSED_STREAM,
                                remote: true,
                            });
                        }
                        s.wake(&mut self.wakers);
                    }
                    st.settle(id, &mut self.wakers);
                }
                if reason != Reason::NO_ERROR {
                    let error = Error::GoAway {
                        reason,
                        remote: true,
                        message,
                    };
                    st.fail(error, &mut self.wakers);
                }
                self.wakers.append(&mut st.waiters);
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream == 0 {
                    if increment == 0 {
                        return Err(conn_err(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
                    }
                    st.send_window += i64::from(increment);
                    if st.send_window > MAX_WINDOW {
                        return Err(conn_err(
                            Reason::FLOW_CONTROL_ERROR,
                            "connection window above 2^31-1",
                        ));
                    }
                    for s in st.streams.values_mut() {
                        if let Some(w) = s.send_waker.take() {
                            self.wakers.push(w);
                        }
                    }
                } else if let Some(s) = st.streams.get_mut(&stream) {
                    if increment == 0 {
                        st.reset_local(stream, Reason::PROTOCOL_ERROR, &mut self.wakers);
                        return Ok(());
                    }
                    s.send_window += i64::from(increment);
                    if s.send_window > MAX_WINDOW {
                        st.reset_local(stream, Reason::FLOW_CONTROL_ERROR, &mut self.wakers);
                        return Ok(());
                    }
                    if let Some(w) = s.send_waker.take() {
                        self.wakers.push(w);
                    }
                } else if self.idle(st, shared, stream) {
                    return Err(conn_err(
                        Reason::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
            }
            Frame::Continuation { .. } => {
                return Err(conn_err(
                    Reason::PROTOCOL_ERROR,
                    "CONTINUATION without HEADERS",
                ))
            }
        }
        Ok(())
    }

    /// Whether `stream` was never opened (a peer referring to it errs).
    fn idle(&self, st: &State, shared: &Shared, stream: u32) -> bool {
        if shared.is_client {
            stream % 2 == 1 && stream >= st.next_id
        } else {
            stream % 2 == 1 && stream > st.last_peer_id
        }
    }

    fn headers(
        &mut self,
        st: &mut State,
        shared: &Shared,
        stream: u32,
        block: Bytes,
        end_stream: bool,
        opened: &mut Vec<Opened>,
    ) -> Result<(), ConnError> {
        let config = &shared.config;
        let mut headers = Headers::new();
        let fits = self
            .decoder
            .decode(&block, config.max_header_list_size as usize, &mut headers)
            .map_err(|e| conn_err(Reason::COMPRESSION_ERROR, e.to_string()))?;
        if let Some(s) = st.streams.get_mut(&stream) {
            // Response headers (client), or trailers (either side).
            if s.recv_end || s.error.is_some() {
                if s.error.is_none() {
                    st.reset_local(stream, Reason::STREAM_CLOSED, &mut self.wakers);
                }
                return Ok(());
            }
            if !fits {
                s.error = Some(Error::User(format!(
                    "the peer's header list is over {} bytes",
                    config.max_header_list_size
                )));
                st.reset_local(stream, Reason::PROTOCOL_ERROR, &mut self.wakers);
                return Ok(());
            }
            let informational = shared.is_client
                && !s.headers_received
                && headers
                    .get(":status")
                    .is_some_and(|v| v.first() == Some(&b'1'));
            if informational {
                return Ok(());
            }
            let first = shared.is_client && !s.headers_received;
            let trailers_without_end = !first && !end_stream;
            if trailers_without_end {
                st.reset_local(stream, Reason::PROTOCOL_ERROR, &mut self.wakers);
                return Ok(());
            }
            if first {
                s.headers_received = true;
                s.headers = Some(headers);
            } else {
                s.trailers = Some(headers);
            }
            if end_stream {
                s.recv_end = true;
            }
            s.wake(&mut self.wakers);
            if end_stream {
                st.settle(stream, &mut self.wakers);
            }
            return Ok(());
        }
        if shared.is_client {
            // A stream we reset or dropped: nothing to do (the block was decoded).
            return Ok(());
        }
        if stream % 2 == 0 {
            return Err(conn_err(
                Reason::PROTOCOL_ERROR,
                "client opened an even stream",
            ));
        }
        if stream <= st.last_peer_id {
            // A closed stream.
            frame::put_rst(&mut st.wbuf, stream, Reason::STREAM_CLOSED);
            return Ok(());
        }
        st.last_peer_id = stream;
        if st.goaway_sent {
            frame::put_rst(&mut st.wbuf, stream, Reason::REFUSED_STREAM);
            return Ok(());
        }
        if st.active >= config.max_concurrent_streams as usize
            || st.streams.len() >= 2 * config.max_concurrent_streams as usize
        {
            Self::reset_budget(st, config)?;
            frame::put_rst(&mut st.wbuf, stream, Reason::REFUSED_STREAM);
            return Ok(());
        }
        if !fits {
            let mut answer = Headers::new();
            answer.push_static(":status", "431");
            st.queue_headers(stream, &answer, true);
            if !end_stream {
                frame::put_rst(&mut st.wbuf, stream, Reason::NO_ERROR);
            }
            return Ok(());
        }
        if let Some(why) = malformed_request(&headers) {
            tracing::debug!(stream, why, "malformed request");
            Self::reset_budget(st, config)?;
            frame::put_rst(&mut st.wbuf, stream, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        st.insert_stream(stream, config.initial_stream_window, end_stream, false);
        opened.push(Opened {
            id: stream,
            headers,
        });
        Ok(())
    }
}

/// Why a request's header list is malformed (RFC 9113 section 8.2 and 8.3), if it is:
/// upper-case names, pseudo-headers after regular ones or unknown, connection-specific
/// fields, or a request without `:method` or `:path`.
fn malformed_request(headers: &Headers) -> Option<&'static str> {
    let mut regular = false;
    let (mut method, mut path) = (false, false);
    for (name, value) in headers.iter() {
        if name.iter().any(|b| b.is_ascii_uppercase()) {
            return Some("upper-case header name");
        }
        if name.first() == Some(&b':') {
            if regular {
                return Some("pseudo-header after a regular header");
            }
            match name.as_ref() {
                b":method" => method = true,
                b":path" => path = !value.is_empty(),
                b":scheme" | b":authority" | b":protocol" => {}
                _ => return Some("unknown pseudo-header"),
            }
        } else {
            regular = true;
            if matches!(
                name.as_ref(),
                b"connection"
                    | b"keep-alive"
                    | b"proxy-connection"
                    | b"transfer-encoding"
                    | b"upgrade"
            ) || (name.as_ref() == b"te" && value.as_ref() != b"trailers")
            {
                return Some("connection-specific header");
            }
        }
    }
    if !(method && path) {
        return Some("request without :method or :path");
    }
    None
}

/// Ends a connection that failed with `e`: GOAWAY to the peer, every stream failed.
pub(crate) async fn fail_connection(shared: &Shared, e: ConnError) {
    tracing::debug!(reason = %e.reason, message = %e.message, "closing the connection");
    shared.go_away(e.reason, &e.message);
    let error = Error::GoAway {
        reason: e.reason,
        remote: false,
        message: e.message,
    };
    // Best effort: the GOAWAY may not get through a peer that does not read.
    let _ = tokio::time::timeout(Duration::from_secs(1), shared.flush_wait()).await;
    shared.with(|st, wakers| st.fail(error, wakers));
    shared.flush_soon.notify_one();
}

/// The connection ended (the peer closed it or reading failed): fails every stream.
pub(crate) fn lost(shared: &Shared, message: String) {
    shared.with(|st, wakers| st.fail(Error::Io(message), wakers));
    shared.flush_soon.notify_one();
}

/// What a connection's timers decided.
pub(crate) enum Tick {
    /// Nothing to do (a PING may have been queued).
    Nothing,
    /// No stream open for the idle timeout: close gracefully.
    Idle,
    /// Nothing read for two keepalive periods, a PING unanswered: the peer is gone.
    Dead,
}

/// The idle timeout and the keepalive PING of a connection: one timer, re-armed lazily
/// (nothing is done per frame but noting that something was read).
pub(crate) struct Timers {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    idle_at: Option<tokio::time::Instant>,
    ping_at: Option<tokio::time::Instant>,
    /// Something was read since the last keepalive tick.
    pub read: bool,
    ping_out: bool,
}

impl Timers {
    pub(crate) fn new(config: &Config) -> Timers {
        let now = tokio::time::Instant::now();
        let idle_at = config.idle_timeout.map(|d| now + d);
        let ping_at = config.keepalive.map(|d| now + d);
        let first = match (idle_at, ping_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Timers {
            sleep: first.map(|at| Box::pin(tokio::time::sleep_until(at))),
            idle_at,
            ping_at,
            read: false,
            ping_out: false,
        }
    }

    /// Resolves when a timer is due (never when none is set).
    pub(crate) async fn due(&mut self) {
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Runs the timers that are due and re-arms.
    pub(crate) fn fire(&mut self, shared: &Shared) -> Tick {
        let now = tokio::time::Instant::now();
        let config = &shared.config;
        if let (Some(at), Some(period)) = (self.ping_at, config.keepalive) {
            if now >= at {
                if self.read {
                    self.read = false;
                    self.ping_out = false;
                } else if self.ping_out {
                    return Tick::Dead;
                } else {
                    self.ping_out = true;
                    frame::put_ping(&mut shared.state().wbuf, false, *b"rdubbo\0\0");
                    shared.flush_soon.notify_one();
                }
                self.ping_at = Some(now + period);
            }
        }
        if let (Some(at), Some(idle)) = (self.idle_at, config.idle_timeout) {
            if now >= at {
                let st = shared.state();
                let next = if st.active > 0 {
                    now + idle
                } else {
                    let since = st.idle_since;
                    if since + idle <= now {
                        return Tick::Idle;
                    }
                    since + idle
                };
                self.idle_at = Some(next);
            }
        }
        let next = match (self.idle_at, self.ping_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(s), Some(at)) = (self.sleep.as_mut(), next) {
            s.as_mut().reset(at);
        }
        Tick::Nothing
    }
}

/// Fails the connection when the future serving it is dropped (a server that stops
/// waiting for it), so that its tasks end and the socket closes.
pub(crate) struct CloseOnDrop(pub std::sync::Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if self.0.state().error.is_none() {
            lost(&self.0, "the connection was dropped".into());
        }
        // The flusher ends on the error, letting the write half go.
        self.0.flush_soon.notify_one();
        self.0.wake_reader.notify_one();
    }
}

/// A boxed future of a server handler.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Polls `fut` once inline with writes deferred to the caller; `Some` if it is not done.
pub(crate) fn poll_inline(shared: &Shared, mut fut: BoxFuture) -> Option<BoxFuture> {
    let _guard = Dispatching::enter(shared);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(()) => None,
        Poll::Pending => Some(fut),
    }
}

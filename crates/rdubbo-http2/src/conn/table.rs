//! The stream table and everything else under the connection lock: streams, windows,
//! the HPACK encoder, the queue of frames to write, abuse budgets.

use super::*;

/// Hashes stream identifiers for the stream table: one multiplication with a key drawn
/// per connection (SipHash costs more than the rest of a lookup; the key keeps a peer from
/// choosing identifiers that collide, and the table holds at most a few thousand streams).
#[derive(Clone, Copy)]
pub(crate) struct StreamIds {
    key: u64,
}

impl StreamIds {
    pub(super) fn new() -> StreamIds {
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

/// Received data chunks in order: the first held inline, so the usual stream of one chunk
/// (a unary request or answer) allocates no queue.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Chunks {
    /// Appends a chunk.
    pub fn push_back(&mut self, chunk: Bytes) {
        if self.is_empty() {
            self.first = Some(chunk);
        } else {
            self.rest.push_back(chunk);
        }
    }

    /// Takes the oldest chunk.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    /// Drops every chunk; their total length.
    pub fn clear(&mut self) -> usize {
        let first = self.first.take().map_or(0, |b| b.len());
        first + self.rest.drain(..).map(|b| b.len()).sum::<usize>()
    }

    /// Whether no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// The total length of the chunks.
    pub fn len_bytes(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.iter().map(Bytes::len).sum::<usize>()
    }
}

/// One stream's state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// Received data not yet taken by the receive handle.
    pub recv: Chunks,
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
    pub(super) fn closed(&self) -> bool {
        self.error.is_some() || (self.recv_end && self.send_end)
    }

    pub(super) fn wake(&mut self, wakers: &mut Vec<Waker>) {
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
pub(super) struct Budget {
    pub(super) since: Instant,
    pub(super) control: u32,
    pub(super) resets: u32,
}

/// Everything under the connection lock.
pub(crate) struct State {
    /// Frames queued for the next write.
    pub wbuf: Vec<u8>,
    /// The buffer swapped with `wbuf` while a batch is written.
    pub(super) spare: Vec<u8>,
    /// Scratch for header blocks.
    pub(super) hbuf: Vec<u8>,
    pub(super) encoder: Encoder,
    pub streams: HashMap<u32, Stream, StreamIds>,
    /// Client: the next stream id to open.
    pub(super) next_id: u32,
    /// Server: the highest stream id the peer opened.
    pub(super) last_peer_id: u32,
    /// Streams not yet closed.
    pub active: usize,
    pub peer: PeerSettings,
    /// Connection send window.
    pub(super) send_window: i64,
    /// Connection receive window (what the peer may still send).
    pub(super) recv_window: i64,
    pub(super) recv_unacked: u32,
    /// The connection window we keep open (WINDOW_UPDATE past half of it).
    pub(super) conn_window: u32,
    /// Set when the connection is done: every stream fails with it.
    pub error: Option<Error>,
    /// The peer's GOAWAY (its last stream id).
    pub(super) goaway_recv: Option<u32>,
    pub(super) goaway_sent: bool,
    /// Tasks waiting for a stream slot, for room in `wbuf`, or for the end of all streams.
    pub waiters: Vec<Waker>,
    pub(super) budget: Budget,
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
                let unread = s.recv.len_bytes();
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

    pub(super) fn release_conn(&mut self, n: u32) {
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

    pub(super) fn conn_update(&mut self) -> bool {
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

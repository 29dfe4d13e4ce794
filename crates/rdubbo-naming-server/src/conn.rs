//! Connection slots against slow and idle clients.
//!
//! Every connection has a state the server watches: when the current request's first byte
//! came (a whole request, headers and body, must arrive within the request timeout), since
//! when it has been idle between requests (idle timeout), since when a write of the answer
//! has been stuck (the request timeout again). A reaper closes connections past their
//! deadline. At the connection limit, a new connection takes the slot of the slowest sender
//! (then of a stuck reader, then of the longest idle connection); only when there is none
//! is the new one refused with 503.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A monotonic clock in milliseconds since the server started (never 0: 0 means unset).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }

    pub fn instant(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms.saturating_sub(1))
    }
}

/// What the server knows of one connection.
pub(crate) struct ConnState {
    /// When the first byte of the request being received came; 0 between requests.
    request_start: AtomicU64,
    /// Whether the next bytes read start a request.
    armed: AtomicBool,
    /// Since when the connection has waited for a request.
    idle_since: AtomicU64,
    /// Since when a write has been waiting for the peer to read; 0 when none.
    write_stalled: AtomicU64,
    /// A request is being handled (its body read by the handler, or its answer built).
    busy: AtomicBool,
    /// Since when a config long poll has been parked on this connection; 0 when none.
    parked_since: AtomicU64,
    killed: AtomicBool,
    kill: Notify,
}

impl ConnState {
    fn new(now: u64) -> ConnState {
        ConnState {
            request_start: AtomicU64::new(0),
            armed: AtomicBool::new(true),
            idle_since: AtomicU64::new(now),
            write_stalled: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            parked_since: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        }
    }

    /// A handler starts: returns when the request's first byte came (or `now`).
    pub fn begin_request(&self, now: u64) -> u64 {
        self.busy.store(true, Ordering::Relaxed);
        match self.request_start.load(Ordering::Relaxed) {
            0 => now,
            t => t,
        }
    }

    /// The request (headers and body) is in: the next bytes start another request.
    pub fn request_received(&self) {
        self.request_start.store(0, Ordering::Relaxed);
        self.armed.store(true, Ordering::Relaxed);
    }

    /// The handler has answered.
    pub fn end_request(&self, now: u64) {
        self.idle_since.store(now, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }

    /// A config long poll parks on this connection (`now`) or stops waiting (`0`): while
    /// parked, the connection may make room at the connection limit as an idle one does
    /// (its client polls again).
    pub fn set_parked(&self, now: u64) {
        self.parked_since.store(now, Ordering::Relaxed);
    }

    /// Closes the connection.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill.notify_one();
    }

    pub async fn killed(&self) {
        self.kill.notified().await
    }

    /// When this connection is past its deadline, and whether it was in a request then.
    fn deadline(&self, request_timeout: u64, idle_timeout: u64) -> Option<(u64, bool)> {
        let busy = self.busy.load(Ordering::Relaxed);
        let rs = self.request_start.load(Ordering::Relaxed);
        if rs != 0 {
            // While a handler reads the body it answers 408 at the deadline itself; the
            // reaper only steps in a moment later.
            let grace = if busy { 1000 } else { 0 };
            return Some((rs + request_timeout + grace, true));
        }
        let ws = self.write_stalled.load(Ordering::Relaxed);
        if ws != 0 {
            return Some((ws + request_timeout, true));
        }
        if busy {
            return None;
        }
        Some((
            self.idle_since.load(Ordering::Relaxed) + idle_timeout,
            false,
        ))
    }

    /// How good a victim this connection is at the connection limit, if at all: the
    /// lowest (class, since) goes first. Slow senders first (a request under way and not
    /// yet whole: live clients send theirs at once), then stuck readers, then idle
    /// keep-alive connections (and new ones that have sent nothing yet) idle for at least
    /// `idle_min_age`.
    fn victim_rank(&self, now: u64, idle_min_age: u64) -> Option<(u8, u64)> {
        if self.killed.load(Ordering::Relaxed) {
            return None;
        }
        let busy = self.busy.load(Ordering::Relaxed);
        let rs = self.request_start.load(Ordering::Relaxed);
        // Headers or body still arriving (a handler may be waiting for the body), for a
        // millisecond at least: a request that came whole is handled at once.
        if rs != 0 && now > rs {
            return Some((0, rs));
        }
        let ws = self.write_stalled.load(Ordering::Relaxed);
        if ws != 0 && now > ws {
            return Some((1, ws));
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        if !busy && rs == 0 && now.saturating_sub(idle) >= idle_min_age {
            return Some((2, idle));
        }
        // A parked long poll waits for nothing but a change: as good as idle.
        let parked = self.parked_since.load(Ordering::Relaxed);
        if busy && parked != 0 && now.saturating_sub(parked) >= idle_min_age {
            return Some((2, parked));
        }
        None
    }
}

/// Open connections.
pub(crate) struct Conns {
    table: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
}

/// What admitting a connection did.
pub(crate) enum Admit {
    /// A slot, free or taken from another connection (`Some(true)`: one with a request or
    /// an answer under way; `Some(false)`: an idle one).
    Yes(u64, Arc<ConnState>, Option<bool>),
    /// No slot.
    Full,
}

impl Conns {
    pub fn new() -> Conns {
        Conns {
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// A slot for a new connection: a free one, or (with `evict_idle_after`) that of the
    /// best victim (see [`ConnState::victim_rank`]).
    pub fn admit(&self, now: u64, max: usize, evict_idle_after: Option<u64>) -> Admit {
        let mut table = self.table();
        let live = if table.len() < max {
            table.len()
        } else {
            // Closed connections leave the table a moment later.
            table
                .values()
                .filter(|s| !s.killed.load(Ordering::Relaxed))
                .count()
        };
        let mut evicted = None;
        if live >= max {
            let Some(idle_min_age) = evict_idle_after else {
                return Admit::Full;
            };
            let victim = table
                .values()
                .filter_map(|s| s.victim_rank(now, idle_min_age).map(|r| (r, s)))
                .min_by_key(|(r, _)| *r);
            match victim {
                Some(((class, _), s)) => {
                    s.kill();
                    evicted = Some(class < 2);
                }
                None => return Admit::Full,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(now));
        table.insert(id, state.clone());
        Admit::Yes(id, state, evicted)
    }

    pub fn remove(&self, id: u64) {
        self.table().remove(&id);
    }

    /// Closes connections past their deadline; returns how many.
    pub fn reap(&self, now: u64, request_timeout: u64, idle_timeout: u64) -> usize {
        let table = self.table();
        let mut n = 0;
        for s in table.values() {
            if s.killed.load(Ordering::Relaxed) {
                continue;
            }
            if let Some((deadline, _)) = s.deadline(request_timeout, idle_timeout) {
                if now >= deadline {
                    s.kill();
                    n += 1;
                }
            }
        }
        n
    }
}

/// A TCP stream that tells its [`ConnState`] when a request starts and when writes stall.
pub(crate) struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    clock: Clock,
}

impl Watched {
    pub fn new(inner: TcpStream, state: Arc<ConnState>, clock: Clock) -> Watched {
        Watched {
            inner,
            state,
            clock,
        }
    }

    fn wrote<T>(&self, r: &Poll<io::Result<T>>) {
        match r {
            Poll::Pending => {
                if self.state.write_stalled.load(Ordering::Relaxed) == 0 {
                    self.state
                        .write_stalled
                        .store(self.clock.now(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => self.state.write_stalled.store(0, Ordering::Relaxed),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.state.armed.swap(false, Ordering::Relaxed)
        {
            this.state
                .request_start
                .store(this.clock.now(), Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(&r);
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Bytes of large answers alive at once (built and not yet written or dropped).
#[derive(Default)]
pub(crate) struct LargeAnswers(AtomicU64);

impl LargeAnswers {
    pub fn in_flight(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A large answer, counted in [`LargeAnswers`] while it is alive (shared by every response
/// that sends it, and by the list cache).
pub(crate) struct LargeAnswer {
    bytes: Bytes,
    counter: Arc<LargeAnswers>,
}

impl LargeAnswer {
    pub fn new(bytes: Vec<u8>, counter: Arc<LargeAnswers>) -> LargeAnswer {
        counter.0.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        LargeAnswer {
            bytes: Bytes::from(bytes),
            counter,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Drop for LargeAnswer {
    fn drop(&mut self) {
        self.counter
            .0
            .fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
    }
}

/// An answer body: small ones whole, large ones in slices of a shared buffer (kept alive,
/// and counted, until the last slice is taken).
pub(crate) enum ResponseBody {
    Whole(Option<Bytes>),
    Large(Arc<LargeAnswer>, usize),
}

const SLICE: usize = 256 * 1024;

impl ResponseBody {
    pub fn whole(b: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Whole(Some(b.into()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Whole(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Large(answer, pos) => {
                if *pos >= answer.len() {
                    return Poll::Ready(None);
                }
                let end = (*pos + SLICE).min(answer.len());
                let chunk = answer.bytes.slice(*pos..end);
                *pos = end;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Whole(b) => b.is_none(),
            ResponseBody::Large(a, pos) => *pos >= a.len(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Whole(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Large(a, pos) => SizeHint::with_exact((a.len() - *pos) as u64),
        }
    }
}

//! Shared connection plumbing: a combining writer (whoever finds the socket free writes
//! every frame queued so far in one system call; the others just queue) and frame reading
//! through a read buffer.
//!
//! The writer counts the bytes queued and being written, so that a connection whose peer
//! does not read can be stopped from queueing more ([`Writer::writable`],
//! [`Writer::send_bounded`]), and gives each batch a deadline: a peer that takes nothing
//! for that long fails the connection.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::tls::{TlsRead, TlsWrite};

use crate::codec::{Header, HeaderError, HEADER_LEN};

/// A batch buffer larger than this is not kept for the next batch.
const KEEP_CAPACITY: usize = 1 << 20;

/// The write side of a connection: a plain TCP socket or a TLS session.
pub(crate) enum WriteSocket {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS.
    Tls(TlsWrite),
}

impl From<OwnedWriteHalf> for WriteSocket {
    fn from(w: OwnedWriteHalf) -> WriteSocket {
        WriteSocket::Tcp(w)
    }
}

impl tokio::io::AsyncWrite for WriteSocket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteSocket::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            WriteSocket::Tls(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteSocket::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            WriteSocket::Tls(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteSocket::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            WriteSocket::Tls(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The write side of a connection.
pub(crate) struct Writer {
    queued: Mutex<Vec<u8>>,
    /// Bytes queued or being written (added under the `queued` lock, taken off once
    /// written).
    bytes: AtomicUsize,
    /// The buffer the queue is swapped with while a batch is written (used only by the task
    /// that holds `socket`), so that neither is ever allocated again.
    spare: Mutex<Vec<u8>>,
    socket: tokio::sync::Mutex<WriteSocket>,
    failed: AtomicBool,
    /// Tasks waiting for the queue to go down ([`Writer::writable`]); `written` is
    /// signalled after a batch only when there are some.
    waiters: AtomicUsize,
    written: Notify,
    /// How long one batch may take to be written.
    timeout: Duration,
}

impl Writer {
    /// A writer whose batches must each be written within `timeout`.
    pub(crate) fn new(socket: impl Into<WriteSocket>, timeout: Duration) -> Writer {
        Writer {
            queued: Mutex::new(Vec::with_capacity(16 * 1024)),
            bytes: AtomicUsize::new(0),
            spare: Mutex::new(Vec::new()),
            socket: tokio::sync::Mutex::new(socket.into()),
            failed: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            written: Notify::new(),
            timeout,
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes queued or being written.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Whether writing failed (an error or the batch deadline): the connection is done.
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Queues `frame` for the next [`Writer::flush`].
    pub(crate) fn queue(&self, frame: &[u8]) {
        let mut q = self.queued();
        q.extend_from_slice(frame);
        self.bytes.fetch_add(frame.len(), Ordering::Relaxed);
    }

    /// Queues `frame` and writes, unless another task is writing: that one writes it.
    /// Returns false once the connection failed.
    ///
    /// With nothing queued and the socket free, `frame` is written from where it is (no
    /// copy into the queue, which on a connection among many is memory out of the cache).
    pub(crate) async fn send(&self, frame: &[u8]) -> bool {
        if let Ok(mut socket) = self.socket.try_lock() {
            if !self.is_failed() && self.queued().is_empty() {
                // Frames queued from now on go after this one: the socket is held.
                self.bytes.fetch_add(frame.len(), Ordering::Relaxed);
                if !self.write_out(&mut socket, frame).await {
                    return false;
                }
                drop(socket);
                return self.queued().is_empty() || self.flush().await;
            }
        }
        self.queue(frame);
        self.flush().await
    }

    /// As [`Writer::send`], but first waits while `limit` bytes or more are queued or being
    /// written: the queue stays under `limit` plus one frame, and a frame larger than
    /// `limit` still gets its turn.
    pub(crate) async fn send_bounded(&self, frame: &[u8], limit: usize) -> bool {
        loop {
            let notified = self.written.notified();
            tokio::pin!(notified);
            let _waiting = Waiting::new(self);
            notified.as_mut().enable();
            {
                let mut q = self.queued();
                if self.is_failed() {
                    return false;
                }
                let pending = self.bytes.load(Ordering::SeqCst);
                if pending == 0 || pending < limit {
                    q.extend_from_slice(frame);
                    self.bytes.fetch_add(frame.len(), Ordering::Relaxed);
                    break;
                }
            }
            // Full: write the queue if no one is, else wait for the writer's next batch.
            if !self.flush().await {
                return false;
            }
            notified.await;
        }
        self.flush().await
    }

    /// Waits until at most `limit` bytes are queued or being written; false when the
    /// connection failed first. Someone must be writing: call [`Writer::flush`] first.
    pub(crate) async fn writable(&self, limit: usize) -> bool {
        loop {
            let notified = self.written.notified();
            tokio::pin!(notified);
            let _waiting = Waiting::new(self);
            notified.as_mut().enable();
            if self.is_failed() {
                return false;
            }
            if self.pending_bytes() <= limit {
                return true;
            }
            notified.await;
        }
    }

    /// Writes what is queued, if no other task is writing.
    pub(crate) async fn flush(&self) -> bool {
        loop {
            if self.is_failed() {
                return false;
            }
            let Ok(mut socket) = self.socket.try_lock() else {
                // The writer in charge re-checks the queue after it lets go.
                return true;
            };
            let batch = {
                let mut queued = self.queued();
                if queued.is_empty() {
                    Vec::new()
                } else {
                    let spare = std::mem::take(&mut *self.spare());
                    std::mem::replace(&mut *queued, spare)
                }
            };
            if !batch.is_empty() {
                let written = self.write_out(&mut socket, &batch).await;
                let mut batch = batch;
                batch.clear();
                if batch.capacity() <= KEEP_CAPACITY {
                    *self.spare() = batch;
                }
                if !written {
                    return false;
                }
            }
            drop(socket);
            if self.queued().is_empty() {
                return true;
            }
        }
    }

    /// Writes what is queued within `within`, then closes the write side. `stop` is called
    /// once the socket is held (so no batch is being written), or when `within` passed.
    pub(crate) async fn finish(&self, stop: impl FnOnce(), within: Duration) {
        let mut stop = Some(stop);
        let _ = tokio::time::timeout(within, async {
            let mut socket = self.socket.lock().await;
            if let Some(stop) = stop.take() {
                stop();
            }
            let batch = std::mem::take(&mut *self.queued());
            if !self.is_failed() && !batch.is_empty() {
                let _ = socket.write_all(&batch).await;
                let _ = socket.flush().await;
            }
            self.failed.store(true, Ordering::SeqCst);
            let _ = socket.shutdown().await;
        })
        .await;
        if let Some(stop) = stop.take() {
            stop();
        }
        self.written.notify_waiters();
    }

    /// Writes one batch: at once when the socket takes it (no timer then), else within the
    /// batch deadline.
    async fn write_batch(&self, socket: &mut WriteSocket, batch: &[u8]) -> Result<(), String> {
        // TLS keeps records in its own buffer until flushed; plain TCP flushes at once.
        let mut write = std::pin::pin!(async {
            socket.write_all(batch).await?;
            socket.flush().await
        });
        let first = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        let result = match first {
            Poll::Ready(r) => r,
            Poll::Pending => match tokio::time::timeout(self.timeout, write).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(format!(
                        "writing {} bytes took longer than {:?} (the peer does not read)",
                        batch.len(),
                        self.timeout
                    ))
                }
            },
        };
        result.map_err(|e| e.to_string())
    }

    /// Writes `batch` (counted in `bytes`) on the held socket and takes it off the count;
    /// false when the connection is done (the write failed).
    async fn write_out(&self, socket: &mut WriteSocket, batch: &[u8]) -> bool {
        let written = self.write_batch(socket, batch).await;
        self.bytes.fetch_sub(batch.len(), Ordering::SeqCst);
        if let Err(reason) = written {
            tracing::debug!(%reason, "write failed; the connection is done");
            self.failed.store(true, Ordering::SeqCst);
            self.written.notify_waiters();
            return false;
        }
        self.wake_waiters();
        true
    }

    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.written.notify_waiters();
        }
    }
}

/// Counts a task waiting on [`Writer::written`] for as long as it lives.
struct Waiting<'a>(&'a Writer);

impl<'a> Waiting<'a> {
    fn new(w: &'a Writer) -> Waiting<'a> {
        w.waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(w)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What reading a frame gave.
pub(crate) enum Read {
    /// A header and its body.
    Frame(Header, Vec<u8>),
    /// A header whose body is over the limit; the body was skipped.
    TooLarge(Header),
    /// The peer closed the connection between frames.
    Closed,
}

/// Why reading failed.
pub(crate) enum ReadError {
    /// The bytes are not a frame: the connection must close.
    Bad(HeaderError),
    /// The connection failed.
    Io(std::io::Error),
}

/// The read side of a connection: a plain TCP socket, or a TLS session with the socket it
/// runs on (to wait for readiness).
pub(crate) enum ReadSocket {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS.
    Tls {
        /// The session's read half.
        tls: TlsRead,
        /// Its socket.
        tcp: Arc<TcpStream>,
    },
}

impl From<OwnedReadHalf> for ReadSocket {
    fn from(r: OwnedReadHalf) -> ReadSocket {
        ReadSocket::Tcp(r)
    }
}

/// What a reader waits on to know there may be bytes to read.
#[derive(Clone)]
pub(crate) enum Readiness {
    Tcp(Arc<OwnedReadHalf>),
    Tls(Arc<TcpStream>),
}

impl Readiness {
    /// Waits until the socket may be read.
    ///
    /// On plain TCP this waits in the socket's one read slot
    /// ([`TcpStream::poll_read_ready`]): only the task that waited last is woken. A
    /// connection's readers take turns in that slot (see the dubbo client's connection),
    /// so bytes wake the one reader that will read them. On TLS any number of tasks may
    /// wait; all are woken.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Readiness::Tcp(s) => std::future::poll_fn(|cx| tcp_of(s).poll_read_ready(cx)).await,
            Readiness::Tls(s) => s.readable().await,
        }
    }

    /// The plain TCP socket, whose read slot wakes one task (`None` on TLS).
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Readiness::Tcp(s) => Some(tcp_of(s)),
            Readiness::Tls(_) => None,
        }
    }
}

fn tcp_of(half: &OwnedReadHalf) -> &TcpStream {
    half.as_ref()
}

/// Reads frames from a connection. [`FrameReader::next`] is cancel-safe: every byte read
/// stays in the reader's own buffer, so a caller may stop waiting (a timeout, another
/// reader taking over) without losing part of a frame.
pub(crate) struct FrameReader {
    socket: Readiness,
    /// The TLS session read from, if the connection is TLS (else `socket` is read).
    tls: Option<TlsRead>,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
    /// A header over the payload limit whose body is being skipped, and how much is left.
    skipping: Option<(Header, usize)>,
    payload: usize,
}

const READ_CHUNK: usize = 64 * 1024;

/// A read buffer larger than this is not kept for other connections.
const KEEP_READ: usize = 256 * 1024;

thread_local! {
    /// The read buffer last let go of on this thread: connections that hold no partial
    /// frame keep none of their own, and the next read on any of them reads into this one,
    /// still in the cache (rather than into one of a thousand connections' buffers).
    static SPARE_READ: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl FrameReader {
    pub(crate) fn new(socket: impl Into<ReadSocket>, payload: usize) -> FrameReader {
        let (socket, tls) = match socket.into() {
            ReadSocket::Tcp(s) => (Readiness::Tcp(Arc::new(s)), None),
            ReadSocket::Tls { tls, tcp } => (Readiness::Tls(tcp), Some(tls)),
        };
        FrameReader {
            socket,
            tls,
            buf: Vec::new(),
            start: 0,
            skipping: None,
            payload,
        }
    }

    /// The socket, to wait for it to become readable without holding the reader.
    pub(crate) fn socket(&self) -> Readiness {
        self.socket.clone()
    }

    /// Whether unread bytes are buffered (a next frame may be complete without a read).
    pub(crate) fn has_buffered(&self) -> bool {
        self.start < self.buf.len()
    }

    /// The next frame. Bodies over the payload limit are skipped without being buffered.
    pub(crate) async fn next(&mut self) -> Result<Read, ReadError> {
        loop {
            if let Some(read) = self.try_next()? {
                return Ok(read);
            }
            self.socket.readable().await.map_err(ReadError::Io)?;
        }
    }

    /// The next frame if it can be had without waiting: from the buffer, or from what the
    /// socket has ready. `None` when the socket has nothing more for now.
    pub(crate) fn try_next(&mut self) -> Result<Option<Read>, ReadError> {
        loop {
            if let Some(read) = self.parse()? {
                return Ok(Some(read));
            }
            // Make room: move the unread tail to the front, then make sure a read fits the
            // rest of the frame under way (its length was checked against the limit by
            // parse()), and at least a chunk.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let rest = match (&self.skipping, self.buf.first_chunk::<HEADER_LEN>()) {
                (None, Some(head)) => Header::parse(head)
                    .map(|h| (HEADER_LEN + h.len).saturating_sub(self.buf.len()))
                    .unwrap_or(0),
                _ => 0,
            };
            let want = rest.max(READ_CHUNK);
            if self.buf.capacity() == 0 {
                self.buf = SPARE_READ.with(std::cell::Cell::take);
            }
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want);
            }
            let read = match (&self.socket, &mut self.tls) {
                (Readiness::Tcp(s), _) => try_read_tcp(s, &mut self.buf),
                (Readiness::Tls(_), tls) => try_read_tls(tls, &mut self.buf),
            };
            match read {
                Ok(0) => {
                    return if self.buf.is_empty() && self.skipping.is_none() {
                        Ok(Some(Read::Closed))
                    } else {
                        Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.release_if_empty();
                    return Ok(None);
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// A complete frame from the buffer, if there is one.
    fn parse(&mut self) -> Result<Option<Read>, ReadError> {
        if let Some((header, left)) = &mut self.skipping {
            let n = (self.buf.len() - self.start).min(*left);
            self.start += n;
            *left -= n;
            if *left > 0 {
                return Ok(None);
            }
            let header = *header;
            self.skipping = None;
            return Ok(Some(Read::TooLarge(header)));
        }
        let unread = &self.buf[self.start..];
        let Some(head) = unread.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::parse(head).map_err(ReadError::Bad)?;
        if header.len > self.payload {
            self.start += HEADER_LEN;
            self.skipping = Some((header, header.len));
            return self.parse();
        }
        if unread.len() < HEADER_LEN + header.len {
            return Ok(None);
        }
        let body = unread[HEADER_LEN..HEADER_LEN + header.len].to_vec();
        self.start += HEADER_LEN + header.len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.release_if_empty();
        }
        Ok(Some(Read::Frame(header, body)))
    }

    /// Gives the read buffer to the next reader on this thread when it holds nothing.
    fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.skipping.is_none() && self.buf.capacity() > 0 {
            let buf = std::mem::take(&mut self.buf);
            if buf.capacity() <= KEEP_READ {
                SPARE_READ.with(|spare| spare.set(buf));
            }
        }
    }
}

/// Reads what `socket` has ready into `buf` without waiting. A read that leaves room in
/// `buf` took all the kernel had, so the socket's readiness is cleared as a `WouldBlock`
/// would clear it (through `try_io`, which keeps a readiness that arrived meanwhile): the
/// next try costs no system call that would find nothing — one read less per answer on a
/// connection that carries one call at a time, and per batch on a busy one. (Tokio's
/// `poll_read` does the same on Linux; its `try_read_buf`, which the cancel-safe reader
/// needs, does not.)
fn try_read_tcp(socket: &OwnedReadHalf, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut short = 0;
    let tcp: &TcpStream = socket.as_ref();
    let read = tcp.try_io(tokio::io::Interest::READABLE, || {
        // The half's own read: a `WouldBlock` from it has cleared the same readiness.
        let n = socket.try_read_buf(buf)?;
        if n == 0 || n >= room {
            return Ok(n);
        }
        short = n;
        Err(std::io::ErrorKind::WouldBlock.into())
    });
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && short > 0 => Ok(short),
        other => other,
    }
}

/// Reads what a TLS session has ready without waiting: `WouldBlock` when it has nothing
/// (its socket's readiness is then cleared, so waiting on [`Readiness`] is right). A close
/// without TLS' close_notify counts as a close.
fn try_read_tls(tls: &mut Option<TlsRead>, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let Some(tls) = tls else {
        return Err(std::io::ErrorKind::NotConnected.into());
    };
    let mut read = std::pin::pin!(tls.read_buf(buf));
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Poll::Ready(r) => r,
        Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(payload: usize) -> (FrameReader, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, _write) = server.into_split();
        (FrameReader::new(read, payload), client)
    }

    fn frame(id: i64, body_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let start = codec::begin_frame(&mut out, codec::FLAG_REQUEST | codec::HESSIAN2, 0, id);
        out.extend(std::iter::repeat_n(0x4e, body_len));
        codec::finish_frame(&mut out, start);
        out
    }

    /// Readers on one thread share the buffer of the one that let go last, never one that
    /// holds part of a frame: frames split across reads on two connections, interleaved,
    /// arrive whole and each on its own connection.
    #[tokio::test]
    async fn interleaved_partial_frames_on_two_connections_stay_apart() {
        let (mut a, mut peer_a) = pair(1 << 20).await;
        let (mut b, mut peer_b) = pair(1 << 20).await;
        for round in 0..20i64 {
            let (fa, fb) = (frame(round, 300 + round as usize), frame(100 + round, 5));
            let cut = 3 + round as usize % 20;
            peer_a.write_all(&fa[..cut]).await.unwrap();
            peer_b.write_all(&fb).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            // a holds part of its frame; b reads (and lets go of) a whole one.
            assert!(matches!(a.try_next(), Ok(None)));
            match b.next().await {
                Ok(Read::Frame(h, body)) => assert_eq!((h.id, body.len()), (100 + round, 5)),
                _ => panic!("not the frame sent"),
            }
            peer_a.write_all(&fa[cut..]).await.unwrap();
            let whole = tokio::time::timeout(Duration::from_secs(5), a.next()).await;
            match whole.expect("the first connection's frame never completed") {
                Ok(Read::Frame(h, body)) => {
                    assert_eq!((h.id, body.len()), (round, 300 + round as usize));
                    assert!(body.iter().all(|x| *x == 0x4e));
                }
                _ => panic!("not the frame sent"),
            }
        }
    }

    /// A reader dropped between the pieces of a frame loses nothing: the next `next()`
    /// returns the whole frame. The client relies on this when a caller stops reading.
    #[tokio::test]
    async fn abandoned_reads_lose_no_bytes() {
        let (mut reader, mut peer) = pair(1 << 20).await;
        let f = frame(7, 100_000);
        let mut given_up = 0;
        for piece in [&f[..5], &f[5..20], &f[20..70_000], &f[70_000..]] {
            peer.write_all(piece).await.unwrap();
            peer.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if piece.as_ptr() != f[70_000..].as_ptr() {
                let early = tokio::time::timeout(Duration::from_millis(2), reader.next()).await;
                assert!(early.is_err(), "no frame before its last byte");
                given_up += 1;
            }
        }
        assert_eq!(given_up, 3);
        match reader.next().await {
            Ok(Read::Frame(h, body)) => {
                assert_eq!(h.id, 7);
                assert_eq!(body.len(), 100_000);
                assert!(body.iter().all(|b| *b == 0x4e));
            }
            _ => panic!("expected the frame"),
        }
    }

    #[tokio::test]
    async fn over_limit_bodies_are_skipped_and_the_next_frame_is_read() {
        let (mut reader, mut peer) = pair(1000).await;
        let mut bytes = frame(1, 5000);
        bytes.extend(frame(2, 10));
        peer.write_all(&bytes).await.unwrap();
        drop(peer);
        assert!(matches!(reader.next().await, Ok(Read::TooLarge(h)) if h.id == 1 && h.len == 5000));
        assert!(matches!(reader.next().await, Ok(Read::Frame(h, b)) if h.id == 2 && b.len() == 10));
        assert!(matches!(reader.next().await, Ok(Read::Closed)));
    }

    #[tokio::test]
    async fn a_close_inside_a_frame_is_an_error_and_bad_magic_is_reported() {
        let (mut reader, mut peer) = pair(1000).await;
        peer.write_all(&frame(3, 50)[..30]).await.unwrap();
        drop(peer);
        assert!(
            matches!(reader.next().await, Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );

        let (mut reader, mut peer) = pair(1000).await;
        peer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(reader.next().await, Err(ReadError::Bad(_))));
    }
}

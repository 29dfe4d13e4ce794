//! Shared connection plumbing: a combining writer (whoever finds the socket free writes
//! every frame queued so far in one system call; the others just queue) and frame reading
//! through a read buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::codec::{Header, HeaderError, HEADER_LEN};

/// The write side of a connection.
pub(crate) struct Writer {
    queued: Mutex<Vec<u8>>,
    /// The buffer the queue is swapped with while a batch is written (used only by the task
    /// that holds `socket`), so that neither is ever allocated again.
    spare: Mutex<Vec<u8>>,
    socket: tokio::sync::Mutex<OwnedWriteHalf>,
    failed: AtomicBool,
}

impl Writer {
    pub(crate) fn new(socket: OwnedWriteHalf) -> Writer {
        Writer {
            queued: Mutex::new(Vec::with_capacity(16 * 1024)),
            spare: Mutex::new(Vec::new()),
            socket: tokio::sync::Mutex::new(socket),
            failed: AtomicBool::new(false),
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` for the next [`Writer::flush`].
    pub(crate) fn queue(&self, frame: &[u8]) {
        self.queued().extend_from_slice(frame);
    }

    /// Queues `frame` and writes, unless another task is writing: that one writes it.
    /// Returns false once the connection failed.
    pub(crate) async fn send(&self, frame: &[u8]) -> bool {
        self.queue(frame);
        self.flush().await
    }

    /// Writes what is queued, if no other task is writing.
    pub(crate) async fn flush(&self) -> bool {
        loop {
            if self.failed.load(Ordering::Relaxed) {
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
                let written = socket.write_all(&batch).await;
                let mut batch = batch;
                batch.clear();
                *self.spare() = batch;
                if written.is_err() {
                    self.failed.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            drop(socket);
            if self.queued().is_empty() {
                return true;
            }
        }
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

/// Reads frames from a connection. [`FrameReader::next`] is cancel-safe: every byte read
/// stays in the reader's own buffer, so a caller may stop waiting (a timeout, another
/// reader taking over) without losing part of a frame.
pub(crate) struct FrameReader {
    socket: Arc<OwnedReadHalf>,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
    /// A header over the payload limit whose body is being skipped, and how much is left.
    skipping: Option<(Header, usize)>,
    payload: usize,
}

const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    pub(crate) fn new(socket: OwnedReadHalf, payload: usize) -> FrameReader {
        FrameReader {
            socket: Arc::new(socket),
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            skipping: None,
            payload,
        }
    }

    /// The socket, to wait for it to become readable without holding the reader.
    pub(crate) fn socket(&self) -> Arc<OwnedReadHalf> {
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
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want);
            }
            match self.socket.try_read_buf(&mut self.buf) {
                Ok(0) => {
                    return if self.buf.is_empty() && self.skipping.is_none() {
                        Ok(Some(Read::Closed))
                    } else {
                        Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
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
        }
        Ok(Some(Read::Frame(header, body)))
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

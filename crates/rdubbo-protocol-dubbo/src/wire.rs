//! Shared connection plumbing: a combining writer (whoever finds the socket free writes
//! every frame queued so far in one system call; the others just queue) and frame reading
//! through a read buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::codec::{Header, HeaderError, HEADER_LEN};

/// The write side of a connection.
pub(crate) struct Writer {
    queued: Mutex<Vec<u8>>,
    socket: tokio::sync::Mutex<OwnedWriteHalf>,
    failed: AtomicBool,
}

impl Writer {
    pub(crate) fn new(socket: OwnedWriteHalf) -> Writer {
        Writer {
            queued: Mutex::new(Vec::with_capacity(16 * 1024)),
            socket: tokio::sync::Mutex::new(socket),
            failed: AtomicBool::new(false),
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut spare = Vec::new();
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return false;
            }
            let Ok(mut socket) = self.socket.try_lock() else {
                // The writer in charge re-checks the queue after it lets go.
                return true;
            };
            let batch = std::mem::replace(&mut *self.queued(), std::mem::take(&mut spare));
            if !batch.is_empty() {
                if socket.write_all(&batch).await.is_err() {
                    self.failed.store(true, Ordering::Relaxed);
                    return false;
                }
                spare = batch;
                spare.clear();
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

/// Reads the next frame; bodies over `payload` are skipped without being buffered.
pub(crate) async fn read_frame(
    r: &mut BufReader<OwnedReadHalf>,
    payload: usize,
) -> Result<Read, ReadError> {
    let mut head = [0u8; HEADER_LEN];
    if r.fill_buf().await.map_err(ReadError::Io)?.is_empty() {
        return Ok(Read::Closed);
    }
    r.read_exact(&mut head).await.map_err(ReadError::Io)?;
    let header = Header::parse(&head).map_err(ReadError::Bad)?;
    if header.len > payload {
        let mut left = header.len as u64;
        while left > 0 {
            let buf = r.fill_buf().await.map_err(ReadError::Io)?;
            if buf.is_empty() {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let n = buf.len().min(left as usize);
            r.consume(n);
            left -= n as u64;
        }
        return Ok(Read::TooLarge(header));
    }
    let mut body = vec![0u8; header.len];
    r.read_exact(&mut body).await.map_err(ReadError::Io)?;
    Ok(Read::Frame(header, body))
}

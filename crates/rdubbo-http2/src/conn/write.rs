//! Writing: the combining writer (whoever finds the socket free writes the whole
//! queue), its deadline, and the flusher task.

use super::*;

impl Shared {
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
/// ends with the connection, shutting its write half down: the peer sees the end now, not
/// when the last handle, stream or handler holding the connection lets go of it.
pub(crate) async fn flusher(shared: std::sync::Arc<Shared>) {
    loop {
        shared.flush_soon.notified().await;
        if shared.state().error.is_some() {
            break;
        }
        tokio::task::yield_now().await;
        if shared.flush().await.is_err() {
            break;
        }
    }
    let mut socket = shared.socket.lock().await;
    let bound = shared
        .config
        .write_timeout
        .unwrap_or(Duration::from_secs(30));
    let _ = tokio::time::timeout(bound, socket.shutdown()).await;
}

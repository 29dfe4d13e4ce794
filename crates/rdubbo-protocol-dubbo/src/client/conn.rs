//! What runs on one connection besides the callers: the flusher writing queued requests,
//! reading and routing answers (by a caller or the background reader), heartbeats, and
//! failing every waiting call when the connection closes.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rdubbo_core::RpcError;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::codec;
use crate::wire::{Read, ReadError};

use super::{ConnShared, Frame};

/// Bytes queued to the provider past which answers to its heartbeats wait.
const EVENT_ANSWERS: usize = 1 << 20;

/// Why a call failed when its request could not be written.
pub(super) const WRITE_FAILED: &str = "writing the request failed";

/// Writes the requests queued by calls made while others were in flight: after being
/// signalled it lets every task that is ready run first (they are mostly callers about to
/// queue a request of their own), then writes the whole queue at once.
pub(super) async fn flusher(st: Arc<ConnShared>) {
    loop {
        st.flush_soon.notified().await;
        tokio::task::yield_now().await;
        if !st.writer.flush().await {
            st.close(WRITE_FAILED);
            return;
        }
    }
}

/// Whose turn it is to wait for the connection's bytes.
#[derive(Default)]
pub(super) struct Turns {
    /// A caller holds the reader and reads.
    leading: bool,
    /// The background reader's waker, once it has waited.
    background: Option<Waker>,
    /// A caller let go of the reader with bytes of other answers in its buffer (or
    /// without knowing): the background reader reads without waiting for the socket.
    buffered: bool,
}

impl ConnShared {
    pub(super) fn turns(&self) -> std::sync::MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The background reader's wait on plain TCP: in the socket's read slot while no
    /// caller reads; while one does, nowhere (the caller re-arms it when it lets go), so
    /// an answer wakes only the caller that reads it.
    fn poll_background(&self, tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut turns = self.turns();
        if !turns
            .background
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            turns.background = Some(cx.waker().clone());
        }
        if turns.leading {
            return Poll::Pending;
        }
        if std::mem::take(&mut turns.buffered) {
            return Poll::Ready(Ok(()));
        }
        tcp.poll_read_ready(cx)
    }

    pub(super) fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<Frame>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the connection closed and fails every call waiting on it.
    fn close(&self, reason: &str) {
        // Say why the calls still waiting were not answered, when the provider said.
        let reason = if self.readonly.load(Ordering::Relaxed) {
            format!("{reason} (the provider is shutting down; retry on another provider)")
        } else {
            reason.to_string()
        };
        if !self.closed.swap(true, Ordering::Relaxed) {
            tracing::debug!(provider = %self.addr, %reason, "connection closed");
        }
        fail_all(&self.pending, &self.addr, &reason);
    }

    /// Waits for the answer `rx` stands for. A call that is `alone` on the connection reads
    /// the connection itself; others wait for the reader to hand them their answer (with
    /// many calls in flight, one reader serving all is cheaper than passing the reader
    /// around). `None` when the connection closed first.
    pub(super) async fn wait_reply(
        &self,
        mut rx: oneshot::Receiver<Frame>,
        alone: bool,
    ) -> Option<Frame> {
        if !alone {
            return rx.await.ok();
        }
        let done: LeaderDone<'_>;
        let mut reader = tokio::select! {
            biased;
            reply = &mut rx => return reply.ok(),
            reader = self.reader.lock() => reader,
        };
        self.turns().leading = true;
        done = LeaderDone {
            st: self,
            buffered: Cell::new(true),
        };
        loop {
            let reply = match rx.try_recv() {
                Ok(reply) => Some(reply),
                Err(oneshot::error::TryRecvError::Closed) => None,
                Err(oneshot::error::TryRecvError::Empty) => {
                    let read = reader.next().await;
                    if let Err(reason) = self.dispatch(read).await {
                        self.close(&reason);
                    }
                    continue;
                }
            };
            // Answers to other calls read with this one are for the background reader.
            done.buffered.set(reader.has_buffered());
            return reply;
        }
    }

    /// Acts on one frame read from the provider; `Err` (the reason) when the connection
    /// must close.
    async fn dispatch(&self, read: Result<Read, ReadError>) -> Result<(), String> {
        self.last_read
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        let (header, body) = match read {
            Ok(Read::Frame(h, b)) => (h, b),
            Ok(Read::Closed) if !self.answered.load(Ordering::Relaxed) => {
                return Err(
                    "closed by the provider before answering anything (it may be at \
                     its connection limit)"
                        .to_string(),
                )
            }
            Ok(Read::Closed) => return Err("closed by the provider".to_string()),
            Ok(Read::TooLarge(header)) => {
                if let Some(w) = self.pending().remove(&header.id) {
                    let _ = w.send(Err(RpcError::Limit(format!(
                        "Data length too large: {}, max payload: {} (response dropped)",
                        header.len, self.payload
                    ))));
                }
                return Ok(());
            }
            Err(ReadError::Bad(e)) => return Err(format!("bad frame from provider: {e}")),
            Err(ReadError::Io(e)) => return Err(format!("connection lost: {e}")),
        };
        if !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
        if header.is_request() {
            if header.is_event() {
                let readonly = rdubbo_hessian::decode_value(&body)
                    .ok()
                    .is_some_and(|v| v.as_str() == Some(codec::READONLY_EVENT));
                if readonly {
                    tracing::info!(provider = %self.addr, "provider is shutting down (readonly event)");
                    self.readonly.store(true, Ordering::Relaxed);
                    self.any_readonly.store(true, Ordering::Relaxed);
                }
                if header.is_two_way() {
                    // Bounded: a provider that sends heartbeats and never reads the answers
                    // stops being read (TCP pushes back) instead of growing the queue.
                    self.writer
                        .send_bounded(&codec::heartbeat_response(header.id), EVENT_ANSWERS)
                        .await;
                }
            }
            return Ok(());
        }
        if header.is_event() {
            return Ok(()); // heartbeat answer
        }
        if let Some(w) = self.pending().remove(&header.id) {
            let _ = w.send(Ok((header, body)));
        }
        Ok(())
    }
}

fn fail_all(pending: &Mutex<HashMap<i64, oneshot::Sender<Frame>>>, addr: &str, reason: &str) {
    let waiting: Vec<_> = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (_, tx) in waiting {
        let _ = tx.send(Err(RpcError::Transport {
            addr: addr.to_string(),
            reason: reason.to_string(),
        }));
    }
}

/// Marks the end of a caller's turn as reader (after the reader itself is released) and
/// hands the wait back to the background reader.
struct LeaderDone<'a> {
    st: &'a ConnShared,
    /// Whether the reader may hold bytes of answers to other calls.
    buffered: Cell<bool>,
}

impl Drop for LeaderDone<'_> {
    fn drop(&mut self) {
        let st = self.st;
        let mut turns = st.turns();
        turns.leading = false;
        let buffered = self.buffered.get();
        turns.buffered = buffered;
        match (st.socket.tcp(), &turns.background) {
            // Back into the socket's read slot with the background reader's waker, without
            // waking it unless there is something to read.
            (Some(tcp), Some(waker)) => {
                if buffered
                    || tcp
                        .poll_read_ready(&mut Context::from_waker(waker))
                        .is_ready()
                {
                    waker.wake_by_ref();
                }
            }
            // Not waited yet: it looks at `leading` and `buffered` before it does.
            (Some(_), None) => {}
            (None, _) => {
                drop(turns);
                st.leader_done.notify_waiters();
            }
        }
    }
}

/// Reads the connection while no caller does (see [`ConnShared`]).
pub(super) async fn background_reader(st: Arc<ConnShared>) {
    let socket = st.socket.clone();
    loop {
        if st.closed.load(Ordering::Relaxed) {
            return;
        }
        let ready = match socket.tcp() {
            Some(tcp) => std::future::poll_fn(|cx| st.poll_background(tcp, cx)).await,
            None => {
                // TLS: every waiter is woken, so wait for the reading caller to let go.
                let done = st.leader_done.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                if st.turns().leading {
                    done.await;
                    continue;
                }
                socket.readable().await
            }
        };
        if let Err(e) = ready {
            st.close(&format!("connection lost: {e}"));
            return;
        }
        let mut reader = st.reader.lock().await;
        loop {
            let read = match reader.try_next() {
                Ok(None) => break,
                Ok(Some(read)) => Ok(read),
                Err(e) => Err(e),
            };
            if let Err(reason) = st.dispatch(read).await {
                st.close(&reason);
                return;
            }
        }
    }
}

pub(super) async fn heartbeat_loop(period: Duration, st: Arc<ConnShared>) {
    let tick = (period / 4).max(Duration::from_millis(10));
    let mut last_sent = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        if st.closed.load(Ordering::Relaxed) {
            return;
        }
        let now = st.born.elapsed();
        let idle = now.saturating_sub(Duration::from_millis(st.last_read.load(Ordering::Relaxed)));
        if idle >= period * 3 {
            tracing::warn!(provider = %st.addr, ?idle, "no answer to three heartbeats; closing");
            st.close("heartbeat timeout");
            return;
        }
        if idle >= period && now.saturating_sub(last_sent) >= period {
            let id = super::next_id();
            st.writer.send(&codec::heartbeat_request(id)).await;
            last_sent = now;
        }
    }
}

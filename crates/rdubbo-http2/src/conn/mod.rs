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

mod read;
mod table;
mod timers;
mod write;

pub(crate) use read::{fail_connection, lost, ConnError, Reader};
pub(crate) use table::State;
use table::{Budget, PeerSettings, StreamIds};
pub(crate) use timers::{Tick, Timers};
pub(crate) use write::flusher;

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

/// Fails the connection when the future reading it ends or is dropped (a server that
/// stops waiting for it, a client's reader done), so that its tasks end and the socket
/// closes.
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

/// Polls `fut` once inline with writes deferred to the caller; whether it is done.
pub(crate) fn poll_inline(shared: &Shared, fut: Pin<&mut dyn Future<Output = ()>>) -> bool {
    let _guard = Dispatching::enter(shared);
    fut.poll(&mut Context::from_waker(Waker::noop())).is_ready()
}

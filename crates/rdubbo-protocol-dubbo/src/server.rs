//! The provider side: one task per connection reads frames, each request is served in its
//! own task unless it completes at once (at most `max_pending` per connection: past that
//! the connection is simply not read, so TCP pushes back), and answers go out through the
//! connection's combining writer. Answers waiting to be written are bounded per connection
//! too (`max_queued_bytes`): a peer that does not read its answers is not read either, and
//! one that takes nothing for three heartbeat periods is closed.
//!
//! At the connection limit the connection idle the longest makes room (one that never sent
//! a request first; one serving a call never); when every connection is serving, a new one
//! has its requests answered with a "connection limit" refusal and is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdubbo_core::{Invoker, ServiceInfo};
use rdubbo_hessian::Encoder;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::tls::ServerTls;
use crate::wire::{FrameReader, Read, ReadError, ReadSocket, Writer};

use crate::codec::{self, status, FLAG_EVENT, HEADER_LEN, HESSIAN2};

mod accept;
mod dispatch;
mod token;

use accept::accept_loop;
use dispatch::{error_frame, handle};
pub use token::{random_token, TokenLayer};

/// Limits and timings of a [`DubboServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at most; more are closed at once (default 4096).
    pub max_connections: usize,
    /// Requests in progress per connection; past it the connection is not read until one
    /// finishes (default 1024).
    pub max_pending: usize,
    /// Largest frame body accepted or sent (default 8 MiB).
    pub payload: usize,
    /// A connection with no traffic for three times this long is closed (default 60 s);
    /// so is one whose peer takes none of its answers for three times this long.
    pub heartbeat: Duration,
    /// Time given to a call when the request carries no `timeout` (default 30 s).
    pub default_timeout: Duration,
    /// Bytes of answers waiting to be written on one connection at most (default 4 MiB):
    /// past it the connection is not read until its peer has taken half of them, so a
    /// client that sends calls without reading the answers is pushed back by TCP instead
    /// of filling the provider's memory. A single answer larger than this still goes out.
    pub max_queued_bytes: usize,
    /// Serve TLS with this certificate (and, for mutual TLS, client CA) instead of plain
    /// TCP (default: none). A connection counts against `max_connections` from its accept,
    /// and one that has not finished its handshake within the TLS handshake deadline
    /// (10 s by default) is closed, as is a plaintext client. The provider URL should then
    /// carry [`SSL_ENABLED`](crate::SSL_ENABLED)`=true` so that consumers use TLS.
    pub tls: Option<ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_pending: 1024,
            payload: codec::DEFAULT_PAYLOAD,
            heartbeat: Duration::from_secs(60),
            default_timeout: Duration::from_secs(30),
            max_queued_bytes: 4 << 20,
            tls: None,
        }
    }
}

struct Export {
    info: ServiceInfo,
    invoker: Arc<dyn Invoker>,
    names: Names,
}

/// The names of an export as an invocation carries them, made once (not per call).
struct Names {
    interface: Arc<str>,
    group: Option<Arc<str>>,
    version: Option<Arc<str>>,
    methods: std::collections::HashSet<Arc<str>>,
}

impl Names {
    fn of(info: &ServiceInfo) -> Names {
        Names {
            interface: Arc::from(info.interface.as_str()),
            group: info.group.as_deref().map(Arc::from),
            version: info.version.as_deref().map(Arc::from),
            methods: info.methods.iter().map(|m| Arc::from(m.as_str())).collect(),
        }
    }

    /// The method name `m`, shared when the service declares it.
    fn method(&self, m: &str) -> Arc<str> {
        self.methods.get(m).cloned().unwrap_or_else(|| Arc::from(m))
    }
}

struct Shared {
    exports: HashMap<String, Export>,
    local_addr: SocketAddr,
    config: ServerConfig,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// The open connections: to send the readonly event and close them on shutdown, and to
    /// make room at the connection limit.
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_conn: AtomicU64,
    bad_frames: AtomicU64,
    /// Connections being refused (answered "connection limit", then closed).
    refusing: AtomicUsize,
    /// Connections closed to make room for new ones.
    evicted: AtomicU64,
    epoch: Instant,
}

/// What the server knows of one open connection.
struct ConnState {
    writer: Arc<Writer>,
    /// Permits for calls in progress (`max_pending` of them).
    pending: Arc<Semaphore>,
    /// When its last frame arrived (ms since the server started).
    last_ms: AtomicU64,
    /// Whether it ever sent a request (heartbeats do not count).
    requested: AtomicBool,
    /// Stops its task.
    abort: OnceLock<AbortHandle>,
}

impl ConnState {
    fn stop(&self) {
        if let Some(a) = self.abort.get() {
            a.abort();
        }
    }
}

/// Keeps a connection counted and listed while its task (or its unstarted future) lives.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.open().remove(&self.id);
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At the connection limit, makes room by closing the connection that has waited the
    /// longest for a frame among those serving no call (one that never sent a request
    /// before any other); false when every connection is serving a call.
    fn evict_one(&self) -> bool {
        let open = self.open();
        let max_pending = self.config.max_pending;
        let victim = open
            .values()
            .filter(|c| c.pending.available_permits() >= max_pending)
            .min_by_key(|c| {
                (
                    c.requested.load(Ordering::Relaxed),
                    c.last_ms.load(Ordering::Relaxed),
                )
            });
        let Some(victim) = victim.cloned() else {
            return false;
        };
        drop(open);
        // So that the next eviction picks another one while this one closes.
        victim.requested.store(true, Ordering::Relaxed);
        victim.last_ms.store(u64::MAX, Ordering::Relaxed);
        victim.stop();
        self.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// Builds a [`DubboServer`].
#[derive(Default)]
pub struct ServerBuilder {
    config: ServerConfig,
    exports: Vec<(ServiceInfo, Arc<dyn Invoker>)>,
}

impl ServerBuilder {
    /// Sets limits and timings.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves `invoker` as the service `info` (matched by group, interface, version).
    pub fn export(mut self, info: ServiceInfo, invoker: Arc<dyn Invoker>) -> Self {
        self.exports.push((info, invoker));
        self
    }

    /// Binds and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<DubboServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let exports = self
            .exports
            .into_iter()
            .map(|(info, invoker)| {
                let names = Names::of(&info);
                (
                    info.service_key(),
                    Export {
                        info,
                        invoker,
                        names,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            exports,
            local_addr,
            config: self.config,
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            refusing: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (stop_tx, stop_rx) = watch::channel(None);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(DubboServer {
            local_addr,
            shared,
            stop_tx,
            task,
        })
    }
}

/// A running Dubbo protocol server.
pub struct DubboServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl DubboServer {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Frames refused as malformed since the start (each closed its connection).
    pub fn bad_frames(&self) -> u64 {
        self.shared.bad_frames.load(Ordering::Relaxed)
    }

    /// Bytes of answers waiting to be written, over all connections (bounded by
    /// [`ServerConfig::max_queued_bytes`] per connection).
    pub fn queued_bytes(&self) -> usize {
        self.shared
            .open()
            .values()
            .map(|c| c.writer.pending_bytes())
            .sum()
    }

    /// Connections closed since the start to make room for new ones at the connection
    /// limit.
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }

    /// Stops gracefully: sends the readonly event to every consumer, stops accepting,
    /// answers requests that arrive meanwhile with a retryable "shutting down" status, lets
    /// in-flight calls finish for up to `drain`, then writes every answer still queued and
    /// closes every connection.
    pub async fn shutdown(self, drain: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let writers: Vec<_> = self
            .shared
            .open()
            .values()
            .map(|c| c.writer.clone())
            .collect();
        // Queued for every connection; written now where the socket is free, else by the
        // task writing (a peer that does not read does not hold up the others).
        let event = readonly_event();
        for w in writers {
            w.queue(&event);
            tokio::spawn(async move { w.flush().await });
        }
        let _ = self.stop_tx.send(Some(drain));
        let _ = self.task.await;
    }
}

fn readonly_event() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2);
    let start = codec::begin_frame(&mut out, codec::FLAG_REQUEST | FLAG_EVENT | HESSIAN2, 0, 0);
    let mut e = Encoder::with_buffer(out);
    e.write_str(codec::READONLY_EVENT);
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

/// After the calls in flight are done, how long a stopping server goes on reading, to
/// answer "shutting down" to requests sent before the readonly event reached their client.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(100);

/// How long a refused connection is read for requests to answer with the refusal.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Refused connections handled at once at most (more are closed without an answer).
const MAX_REFUSING: usize = 256;

async fn serve_connection(
    read: ReadSocket,
    state: Arc<ConnState>,
    conn: Conn,
    registered: Registered,
) {
    let shared = registered.shared.clone();
    let reader = FrameReader::new(read, shared.config.payload);
    if let Err(reason) = read_loop(reader, &state, shared, conn).await {
        tracing::warn!(peer = %conn.peer, %reason, "closing connection");
    }
    drop(registered);
}

/// The two ends of a connection, for error texts.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
}

async fn read_loop(
    mut reader: FrameReader,
    state: &ConnState,
    shared: Arc<Shared>,
    conn: Conn,
) -> Result<(), String> {
    let writer = &state.writer;
    let pending = &state.pending;
    let max_queued = shared.config.max_queued_bytes;
    let idle = shared.config.heartbeat * 3;
    // The idle timer is re-armed only when it fires, from the time of the last frame, so
    // reading a frame costs no timer work.
    let mut last_frame = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut requested = false;
    loop {
        // Answers found ready are queued; they go out when no more input is buffered.
        if !reader.has_buffered() && !writer.flush().await {
            return Err("writing answers failed".into());
        }
        // Back-pressure on answers: while too many wait to be written, the peer is not
        // read (TCP pushes back on it) until it has taken half of them.
        if writer.pending_bytes() > max_queued
            && !(writer.flush().await && writer.writable(max_queued / 2).await)
        {
            return Err(format!(
                "the peer does not read its answers ({} bytes waiting)",
                writer.pending_bytes()
            ));
        }
        let read = tokio::select! {
            biased;
            read = reader.next() => read,
            () = &mut idle_timer => {
                if last_frame.elapsed() >= idle {
                    return Err(format!("no traffic for {idle:?}"));
                }
                idle_timer.as_mut().reset(last_frame + idle);
                continue;
            }
        };
        last_frame = Instant::now();
        state.last_ms.store(
            last_frame.duration_since(shared.epoch).as_millis() as u64,
            Ordering::Relaxed,
        );
        let (header, body) = match read {
            Ok(Read::Closed) => return Ok(()),
            Ok(Read::Frame(h, b)) => (h, b),
            Ok(Read::TooLarge(header)) => {
                if header.is_request() && header.is_two_way() {
                    let msg = format!(
                        "Data length too large: {}, max payload: {}",
                        header.len, shared.config.payload
                    );
                    writer.queue(&error_frame(header, status::BAD_REQUEST, &msg));
                }
                continue;
            }
            Err(ReadError::Bad(e)) => {
                shared.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(format!("bad frame: {e}"));
            }
            Err(ReadError::Io(e)) => return Err(e.to_string()),
        };
        if !header.is_request() {
            // A response to our heartbeat, or to the readonly event: nothing to do.
            continue;
        }
        if header.is_event() {
            if header.is_two_way() {
                writer.queue(&codec::heartbeat_response(header.id));
            }
            continue;
        }
        if !requested {
            requested = true;
            state.requested.store(true, Ordering::Relaxed);
        }
        if header.serialization() != HESSIAN2 {
            if header.is_two_way() {
                let msg = format!(
                    "serialization id {} is not supported, only hessian2 (2)",
                    header.serialization()
                );
                writer.queue(&error_frame(header, status::SERIALIZATION_ERROR, &msg));
            }
            continue;
        }
        // Back-pressure: at the limit, stop reading this connection until a call ends.
        let permit = match pending.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !writer.flush().await {
                    return Err("writing answers failed".into());
                }
                pending
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| "closed".to_string())?
            }
        };
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut call = Box::pin(handle(shared.clone(), header, body, conn));
        // Calls that complete at once are answered from here, without a task of their own.
        let first_poll = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        match first_poll {
            Poll::Ready(answer) => {
                if let Some(frame) = answer {
                    writer.queue(&frame);
                }
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            }
            Poll::Pending => {
                let shared = shared.clone();
                let writer = writer.clone();
                tokio::spawn(async move {
                    if let Some(frame) = call.await {
                        // The call stays counted (its permit held) until its answer is
                        // queued, and it is queued only below the limit.
                        writer.send_bounded(&frame, max_queued).await;
                    }
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                });
            }
        }
    }
}

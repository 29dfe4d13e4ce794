//! The provider side: one task per connection reads frames, each request is served in its
//! own task (at most `max_pending` per connection: past that the connection is simply not
//! read, so TCP pushes back), one writer task per connection batches the responses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo_core::{Invoker, ServiceInfo};
use rdubbo_hessian::Encoder;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::wire::{FrameReader, Read, ReadError, Writer};

use crate::codec::{self, status, FLAG_EVENT, HEADER_LEN, HESSIAN2};

mod dispatch;

use dispatch::{error_frame, handle};

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
    /// A connection with no traffic for three times this long is closed (default 60 s).
    pub heartbeat: Duration,
    /// Time given to a call when the request carries no `timeout` (default 30 s).
    pub default_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_pending: 1024,
            payload: codec::DEFAULT_PAYLOAD,
            heartbeat: Duration::from_secs(60),
            default_timeout: Duration::from_secs(30),
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
    /// Writers of the open connections, to send the readonly event on shutdown.
    writers: Mutex<HashMap<u64, Arc<Writer>>>,
    next_conn: AtomicU64,
    bad_frames: AtomicU64,
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
            writers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
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

    /// Stops gracefully: sends the readonly event to every consumer, stops accepting,
    /// answers requests that arrive meanwhile with a retryable "shutting down" status, lets
    /// in-flight calls finish for up to `drain`, then closes every connection.
    pub async fn shutdown(self, drain: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let writers: Vec<_> = self
            .shared
            .writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let event = readonly_event();
        for w in writers {
            w.send(&event).await;
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut conns = JoinSet::new();
    let drain = loop {
        tokio::select! {
            changed = stop.changed() => match (changed, *stop.borrow()) {
                (Ok(()), Some(d)) => break d,
                (Err(_), _) => break Duration::ZERO,
                _ => continue,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections {
                        tracing::warn!(%peer, limit = shared.config.max_connections, "too many connections; closing the new one");
                        drop(stream);
                        continue;
                    }
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(serve_connection(stream, peer, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    drop(listener);
    let deadline = tokio::time::Instant::now() + drain;
    while shared.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if shared.in_flight.load(Ordering::SeqCst) > 0 {
        tracing::warn!(
            in_flight = shared.in_flight.load(Ordering::SeqCst),
            "drain deadline passed; closing connections"
        );
    }
    // Let the writers flush the last responses, then close.
    tokio::time::sleep(Duration::from_millis(20)).await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Receiver<Option<Duration>>,
) {
    let local = stream.local_addr().unwrap_or(shared.local_addr);
    let (read, write) = stream.into_split();
    let writer = Arc::new(Writer::new(write));
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    shared
        .writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(conn_id, writer.clone());
    let reader = FrameReader::new(read, shared.config.payload);
    let conn = Conn { peer, local };
    if let Err(reason) = read_loop(reader, writer, shared.clone(), conn).await {
        tracing::warn!(%peer, %reason, "closing connection");
    }
    shared
        .writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&conn_id);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The two ends of a connection, for error texts.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
}

async fn read_loop(
    mut reader: FrameReader,
    writer: Arc<Writer>,
    shared: Arc<Shared>,
    conn: Conn,
) -> Result<(), String> {
    let pending = Arc::new(Semaphore::new(shared.config.max_pending));
    let idle = shared.config.heartbeat * 3;
    // The idle timer is re-armed only when it fires, from the time of the last frame, so
    // reading a frame costs no timer work.
    let mut last_frame = tokio::time::Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        // Answers found ready are queued; they go out when no more input is buffered.
        if !reader.has_buffered() && !writer.flush().await {
            return Err("write failed".into());
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
        last_frame = tokio::time::Instant::now();
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
                    return Err("write failed".into());
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
                        writer.send(&frame).await;
                    }
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                });
            }
        }
    }
}

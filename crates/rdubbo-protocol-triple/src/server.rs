//! The provider side: one port speaking HTTP/2 cleartext (prior knowledge) and HTTP/1.1,
//! told apart by the connection's first bytes (HTTP/2 over rdubbo-http2, HTTP/1.1 over
//! hyper), or by ALPN over TLS; gRPC calls with Java's Hessian2 wrapper, and the HTTP/1 (or HTTP/2)
//! JSON mode.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper_util::rt::TokioTimer;
use rdubbo_core::{Invoker, ServiceInfo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::codec;
use crate::ServerTls;

/// Limits and timings of a [`TripleServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at most; more are closed at once (default 4096).
    pub max_connections: usize,
    /// Largest request or response message (gRPC message, after gzip inflation, or JSON
    /// body) in bytes (default 8 MiB); larger requests are answered `RESOURCE_EXHAUSTED`
    /// (HTTP 413 in JSON mode).
    pub max_message_size: usize,
    /// HTTP/2 streams one connection may have open at once (default 1024).
    pub max_concurrent_streams: u32,
    /// Largest header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`, HTTP/1 header buffer)
    /// in bytes (default 32 KiB, as Java).
    pub max_header_list_size: u32,
    /// A connection with no call in progress and no request for this long is closed
    /// (HTTP/2 with GOAWAY) (default 180 s).
    pub idle_timeout: Duration,
    /// Time a call gets when the request names none (`grpc-timeout`,
    /// `tri-service-timeout`, `timeout`), and the cap on what it names; reading the request
    /// counts (default 30 s).
    pub default_timeout: Duration,
    /// Time an HTTP/1 client gets to send a request's headers (default 10 s).
    pub header_read_timeout: Duration,
    /// Request bytes buffered at once over all connections (bodies being read and calls
    /// being served); past it, reading bodies waits (default 256 MiB, at least
    /// `max_message_size`).
    pub max_buffered_bytes: usize,
    /// Serve TLS only (default: none). The server offers ALPN `h2` and `http/1.1` and
    /// serves what the handshake picked (the first bytes tell when the client named
    /// neither); the handshake runs within [`ServerTls::handshake_timeout`] and its
    /// connection counts against `max_connections` from the accept. Registered provider
    /// URLs should say [`SSL_ENABLED`](crate::SSL_ENABLED)`=true`.
    pub tls: Option<ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_message_size: codec::DEFAULT_MAX_MESSAGE,
            max_concurrent_streams: 1024,
            max_header_list_size: 32 * 1024,
            idle_timeout: Duration::from_secs(180),
            default_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_buffered_bytes: 256 * 1024 * 1024,
            tls: None,
        }
    }
}

/// FNV-1a for the export and method tables: they are fixed when the server starts, so a
/// request's path cannot make their lookups slow, and SipHash's cost is not paid per call.
type FixedKeys = fnv::FnvBuildHasher;

struct Export {
    info: ServiceInfo,
    invoker: Arc<dyn Invoker>,
    interface: Arc<str>,
    group: Option<Arc<str>>,
    version: Option<Arc<str>>,
    methods: std::collections::HashSet<Arc<str>, FixedKeys>,
}

impl Export {
    fn method(&self, m: &str) -> Arc<str> {
        self.methods.get(m).cloned().unwrap_or_else(|| Arc::from(m))
    }
}

struct Shared {
    exports: HashMap<String, Arc<Export>, FixedKeys>,
    config: ServerConfig,
    local_addr: SocketAddr,
    alt_svc: HeaderValue,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Whether any export has streaming methods.
    streams: bool,
    epoch: Instant,
    /// The budget of buffered request bytes, in KiB.
    body_budget: Arc<tokio::sync::Semaphore>,
    http1: hyper::server::conn::http1::Builder,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The export a call names: exactly by group, interface and version; otherwise, as
    /// Java 3.3's path resolver falls back to the bare interface name, the interface's
    /// export when it has only one.
    fn find(
        &self,
        interface: &str,
        group: Option<&str>,
        version: Option<&str>,
    ) -> Option<&Arc<Export>> {
        let plain = group.is_none_or(str::is_empty) && version.is_none_or(str::is_empty);
        // (Without group and version the key is the interface: no key to build.)
        let exact = if plain {
            self.exports.get(interface)
        } else {
            self.exports
                .get(&rdubbo_core::url::service_key(group, interface, version))
        };
        if let Some(e) = exact {
            return Some(e);
        }
        let mut same = self.exports.values().filter(|e| &*e.interface == interface);
        let first = same.next()?;
        same.next().is_none().then_some(first)
    }
}

/// Builds a [`TripleServer`].
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

    /// Serves `invoker` as the service `info` (path `/<interface>/<method>`, group and
    /// version from `tri-service-group` / `tri-service-version`).
    pub fn export(mut self, info: ServiceInfo, invoker: Arc<dyn Invoker>) -> Self {
        self.exports.push((info, invoker));
        self
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<TripleServer> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener)
    }

    /// Serves on a listener already bound.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<TripleServer> {
        let local_addr = listener.local_addr()?;
        let mut config = self.config;
        config.tls = config
            .tls
            .take()
            .map(|tls| tls.with_alpn(&[b"h2", b"http/1.1"]));
        let streams = stream::any_streams(self.exports.iter().map(|(info, _)| info));
        let exports = self
            .exports
            .into_iter()
            .map(|(info, invoker)| {
                let export = Export {
                    interface: Arc::from(info.interface.as_str()),
                    group: info
                        .group
                        .as_deref()
                        .filter(|g| !g.is_empty())
                        .map(Arc::from),
                    version: info
                        .version
                        .as_deref()
                        .filter(|v| !v.is_empty())
                        .map(Arc::from),
                    methods: info.methods.iter().map(|m| Arc::from(m.as_str())).collect(),
                    info,
                    invoker,
                };
                (export.info.service_key(), Arc::new(export))
            })
            .collect();
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .keep_alive(true)
            .max_buf_size((config.max_header_list_size as usize).max(8192));
        // At least one whole message fits, or a message at the limit could never be read.
        let budget_kib = (config
            .max_buffered_bytes
            .max(config.max_message_size + codec::PREFIX_LEN)
            / 1024
            + 1)
        .min(tokio::sync::Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            exports,
            alt_svc: HeaderValue::from_str(&format!("h2=\":{}\"", local_addr.port()))
                .unwrap_or(HeaderValue::from_static("h2")),
            config,
            local_addr,
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            streams,
            epoch: Instant::now(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(budget_kib)),
            http1,
        });
        let (stop_tx, stop_rx) = watch::channel(None);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(TripleServer {
            shared,
            stop_tx,
            task,
        })
    }
}

/// A running Triple server.
///
/// ```
/// use rdubbo_protocol_triple::TripleServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = TripleServer::builder().bind("127.0.0.1:0".parse().unwrap()).await?;
/// assert_eq!(server.connections(), 0);
/// server.shutdown(std::time::Duration::ZERO).await;
/// # Ok(()) }
/// ```
pub struct TripleServer {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl TripleServer {
    /// A builder with default limits.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Calls being served right now.
    pub fn calls_in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Stops gracefully: stops accepting, answers calls that arrive meanwhile with the
    /// retryable `UNAVAILABLE` ("shutting down"), sends HTTP/2 GOAWAY, lets in-flight calls
    /// finish for up to `drain`, then closes every connection.
    pub async fn shutdown(self, drain: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.stop_tx.send(Some(drain));
        let _ = self.task.await;
    }
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
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "drain deadline passed; closing connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// What a connection's idle watch knows.
struct ConnState {
    busy: AtomicUsize,
    last_ms: AtomicU64,
    peer: SocketAddr,
}

/// Counts a call as in progress on its connection and on the server while alive.
struct Busy {
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
}

impl Busy {
    fn new(shared: &Arc<Shared>, conn: &Arc<ConnState>) -> Busy {
        // (A busy connection is never idle: its time is taken when the call ends.)
        conn.busy.fetch_add(1, Ordering::SeqCst);
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy {
            shared: shared.clone(),
            conn: conn.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .last_ms
            .store(self.shared.now_ms(), Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::SeqCst);
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let state = Arc::new(ConnState {
        busy: AtomicUsize::new(0),
        last_ms: AtomicU64::new(shared.now_ms()),
        peer,
    });
    if let Some(tls) = shared.config.tls.clone() {
        serve_tls(stream, tls, &shared, &state, &mut stop).await;
        shared.connections.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    match detect_h2(&stream, shared.config.header_read_timeout).await {
        Some(true) => {
            let (read, write) = stream.into_split();
            serve_h2(read, write, &shared, &state, &mut stop).await
        }
        Some(false) => serve_http1(stream, &shared, &state, &mut stop).await,
        None => {}
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

mod call;
mod conn;
mod stream;
use call::*;
use conn::*;

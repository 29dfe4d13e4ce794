//! The JSON-RPC provider: an HTTP/1.1 server with limits and a graceful stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use rdubbo_core::error::codes;
use rdubbo_core::{Invoker, ServiceInfo};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

mod handle;

use handle::{error_body, handle};

/// Limits and defaults of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at once; more are answered 503 and closed. Default 1024.
    pub max_connections: usize,
    /// Largest request body in bytes; larger ones are answered 413. Default 8 MiB.
    pub max_body_size: usize,
    /// Requests being served at once; more are answered 503 (retryable). Default 4096.
    pub max_concurrent_requests: usize,
    /// Time a client gets to send a request's headers (slowloris guard). Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest time a call may run when the request sends no `Timeout`, and the cap on any
    /// `Timeout` it sends. Default 60 s.
    pub default_timeout: Duration,
    /// Time a client gets to send a request's body once its headers arrived (slow bodies);
    /// past it the request is answered 408 and the connection closed. Default 10 s.
    pub body_read_timeout: Duration,
    /// Requests in one batch; a larger batch is answered with one error. Default 256.
    pub max_batch: usize,
    /// Largest response body; a batch's entries past it are answered with an error each,
    /// a single result past it with an error. Default 8 MiB.
    pub max_response_size: usize,
    /// Serve HTTPS with this certificate (and, for mutual TLS, client CA) instead of plain
    /// HTTP (default: none). A connection counts against `max_connections` from its accept;
    /// one that has not finished its handshake within the TLS handshake deadline (10 s by
    /// default) is closed, as is a plaintext client. The provider URL should then carry
    /// [`SSL_ENABLED`](crate::SSL_ENABLED)`=true` so that consumers use TLS.
    pub tls: Option<rdubbo_tls::ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 1024,
            max_body_size: 8 * 1024 * 1024,
            max_concurrent_requests: 4096,
            header_read_timeout: Duration::from_secs(10),
            default_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            max_batch: 256,
            max_response_size: 8 * 1024 * 1024,
            tls: None,
        }
    }
}

/// One exported service.
#[derive(Clone)]
struct Export {
    info: ServiceInfo,
    interface: Arc<str>,
    version: Option<Arc<str>>,
    group: Option<Arc<str>>,
    invoker: Arc<dyn Invoker>,
}

/// Builds a [`JsonRpcServer`].
#[derive(Default)]
pub struct ServerBuilder {
    config: ServerConfig,
    routes: HashMap<String, Vec<Export>>,
}

impl ServerBuilder {
    /// Sets [`ServerConfig::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }
    /// Sets [`ServerConfig::max_body_size`].
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.config.max_body_size = bytes;
        self
    }
    /// Sets [`ServerConfig::max_concurrent_requests`].
    pub fn max_concurrent_requests(mut self, n: usize) -> Self {
        self.config.max_concurrent_requests = n;
        self
    }
    /// Sets [`ServerConfig::header_read_timeout`].
    pub fn header_read_timeout(mut self, t: Duration) -> Self {
        self.config.header_read_timeout = t;
        self
    }
    /// Sets [`ServerConfig::default_timeout`].
    pub fn default_timeout(mut self, t: Duration) -> Self {
        self.config.default_timeout = t;
        self
    }
    /// Adjusts the configuration in place.
    pub fn config_with(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(&mut self.config);
        self
    }
    /// Replaces the whole configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }
    /// Exports a service at `POST /<path>`. Several services may share a path if they differ
    /// by version or group; requests choose with `version`/`group` headers.
    pub fn export(mut self, path: &str, info: ServiceInfo, invoker: Arc<dyn Invoker>) -> Self {
        let export = Export {
            interface: Arc::from(info.interface.as_str()),
            version: info
                .version
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(Arc::from),
            group: info
                .group
                .as_deref()
                .filter(|g| !g.is_empty())
                .map(Arc::from),
            info,
            invoker,
        };
        self.routes
            .entry(path.trim_start_matches('/').to_owned())
            .or_default()
            .push(export);
        self
    }
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<JsonRpcServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut config = self.config;
        // Offered to clients that negotiate (curl does): the only protocol served.
        config.tls = config.tls.map(|t| t.with_alpn(&[b"http/1.1"]));
        let shared = Arc::new(Shared {
            limiter: Semaphore::new(config.max_concurrent_requests),
            config,
            routes: self.routes,
            draining: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(JsonRpcServer {
            local_addr,
            shared,
            stop_tx,
            task,
        })
    }
}

struct Shared {
    config: ServerConfig,
    routes: HashMap<String, Vec<Export>>,
    limiter: Semaphore,
    draining: AtomicBool,
    connections: AtomicUsize,
    /// Open connections by id, for eviction at the connection limit.
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_conn: AtomicU64,
    epoch: Instant,
}

/// How long a stopping server goes on reading kept-alive connections, answering what
/// arrives with the retryable "shutting down".
const SHUTDOWN_LINGER: Duration = Duration::from_millis(500);

/// What the server knows of one open connection.
struct ConnState {
    /// Calls being served on it (a connection serving one is never evicted).
    busy: AtomicUsize,
    /// When it last began or finished a request (ms since the server started).
    active_ms: AtomicU64,
    /// Closes it.
    evict: tokio::sync::Notify,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// At the connection limit, makes room for a new connection by closing the open one
    /// that has been idle or reading a request the longest (a keep-alive connection no
    /// one uses, a client sending its body a few bytes a second); returns false when every
    /// connection is serving a call.
    fn evict_one(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let victim = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.active_ms.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                // Refreshed so that the next eviction picks another connection.
                c.active_ms.store(u64::MAX, Ordering::Relaxed);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A running JSON-RPC server.
pub struct JsonRpcServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl JsonRpcServer {
    /// A builder with default limits.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    /// The exported services with the path each is served at.
    pub fn exports(&self) -> Vec<(String, ServiceInfo)> {
        let mut v: Vec<(String, ServiceInfo)> = self
            .shared
            .routes
            .iter()
            .flat_map(|(p, es)| es.iter().map(move |e| (p.clone(), e.info.clone())))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1.version).cmp(&(&b.0, &b.1.version)));
        v
    }
    /// Open connections right now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }
    /// Stops gracefully: stops accepting at once, answers requests that arrive meanwhile with a
    /// retryable "shutting down" error, lets in-flight calls finish for up to `drain`, then
    /// closes every connection.
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
            changed = stop.changed() => {
                match (changed, *stop.borrow()) {
                    (Ok(()), Some(d)) => break d,
                    (Err(_), _) => break Duration::ZERO,
                    _ => continue,
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let open = shared.connections.load(Ordering::Relaxed);
                    // At the limit an idle or slow connection makes room; a little slack
                    // covers the ones still closing.
                    if open >= shared.config.max_connections
                        && (open > shared.config.max_connections + shared.config.max_connections / 8
                            || !shared.evict_one())
                    {
                        let limit = shared.config.max_connections;
                        match shared.config.tls.clone() {
                            None => {
                                conns.spawn(reject_connection(stream, limit));
                            }
                            // The 503 goes over TLS (the handshake within a second).
                            Some(tls) => {
                                conns.spawn(async move {
                                    let tls = tls.with_handshake_timeout(Duration::from_secs(1));
                                    if let Ok(session) = tls.accept(stream).await {
                                        reject_connection(session, limit).await;
                                    }
                                });
                            }
                        }
                        continue;
                    }
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    match shared.config.tls.clone() {
                        None => {
                            conns.spawn(serve_connection(stream, shared.clone(), stop.clone()));
                        }
                        Some(tls) => {
                            conns.spawn(tls_connection(tls, stream, shared.clone(), stop.clone()));
                        }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have, try again soon.
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
            "drain deadline passed; closing remaining connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

async fn reject_connection<S>(mut stream: S, limit: usize)
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let body = error_body(
        &Value::Null,
        codes::SERVER_BUSY,
        &format!("too many connections (limit {limit})"),
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    })
    .await;
}

/// A TLS connection, counted since its accept: the handshake within its deadline, then
/// the same serving as a plain connection.
async fn tls_connection(
    tls: rdubbo_tls::ServerTls,
    stream: TcpStream,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) {
    /// Uncounts the connection if the handshake fails or the task is stopped during it.
    struct Counted(Option<Arc<Shared>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            if let Some(s) = &self.0 {
                s.connections.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    let mut counted = Counted(Some(shared.clone()));
    let peer = stream.peer_addr().ok();
    match tls.accept(stream).await {
        Ok(session) => {
            counted.0 = None;
            serve_connection(session, shared, stop).await;
        }
        Err(e) => tracing::debug!(?peer, error = %e, "TLS handshake failed; closing"),
    }
}

async fn serve_connection<S>(
    stream: S,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let state = Arc::new(ConnState {
        busy: AtomicUsize::new(0),
        active_ms: AtomicU64::new(shared.now_ms()),
        evict: tokio::sync::Notify::new(),
    });
    shared
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, state.clone());
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let service =
        hyper::service::service_fn(move |req| handle(svc_shared.clone(), svc_state.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            // For a moment, go on reading: a request a client sends now is answered with
            // the retryable "shutting down" and `Connection: close` instead of meeting a
            // closed connection; then close what is left once its calls are done.
            let drain = (*stop.borrow()).unwrap_or_default();
            if tokio::time::timeout(SHUTDOWN_LINGER.min(drain), conn.as_mut()).await.is_err() {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
            }
        }
        _ = state.evict.notified() => {
            tracing::debug!("connection closed to make room for a new one");
        }
    }
    shared
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

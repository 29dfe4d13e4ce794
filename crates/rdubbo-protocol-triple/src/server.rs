//! The provider side: one port speaking HTTP/2 cleartext (prior knowledge) and HTTP/1.1,
//! told apart by the connection's first bytes (HTTP/2 over h2, HTTP/1.1 over hyper); gRPC calls with
//! Java's Hessian2 wrapper, and the HTTP/1 (or HTTP/2) JSON mode.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prost::Message;
use rdubbo_core::{Args, Attachments, Invocation, Invoker, ReplySink, ServiceInfo};
use rdubbo_hessian::Encoder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::codec::{self, grpc, Encoding, TripleResponseWrapper};
use crate::headers::{self, OneBody};

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
        }
    }
}

struct Export {
    info: ServiceInfo,
    invoker: Arc<dyn Invoker>,
    interface: Arc<str>,
    group: Option<Arc<str>>,
    version: Option<Arc<str>>,
    methods: std::collections::HashSet<Arc<str>>,
}

impl Export {
    fn method(&self, m: &str) -> Arc<str> {
        self.methods.get(m).cloned().unwrap_or_else(|| Arc::from(m))
    }
}

struct Shared {
    exports: HashMap<String, Arc<Export>>,
    config: ServerConfig,
    local_addr: SocketAddr,
    alt_svc: HeaderValue,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    epoch: Instant,
    /// The budget of buffered request bytes, in KiB.
    body_budget: tokio::sync::Semaphore,
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
        let key = rdubbo_core::url::service_key(group, interface, version);
        if let Some(e) = self.exports.get(&key) {
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
        let config = self.config;
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
            epoch: Instant::now(),
            body_budget: tokio::sync::Semaphore::new(budget_kib),
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
    match detect_h2(&stream, shared.config.header_read_timeout).await {
        Some(true) => serve_h2(stream, &shared, &state, &mut stop).await,
        Some(false) => serve_http1(stream, &shared, &state, &mut stop).await,
        None => {}
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The HTTP/2 connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection starts with the HTTP/2 preface (`None`: it closed, or sent
/// nothing in time). Peeked, not read: the bytes stay for the protocol's own reader.
async fn detect_h2(stream: &TcpStream, within: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != PREFACE[..n] {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        // Part of the preface so far (rare: it is one small write): look again shortly.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// When an idle connection should be closed: `None` if it is busy or not idle long enough
/// (with the time to look again).
fn idle_check(shared: &Shared, state: &ConnState) -> Result<(), Duration> {
    let idle = shared.config.idle_timeout;
    if state.busy.load(Ordering::SeqCst) > 0 {
        return Err(idle);
    }
    let last = state.last_ms.load(Ordering::Relaxed);
    let since = Duration::from_millis(shared.now_ms().saturating_sub(last));
    if since >= idle {
        Ok(())
    } else {
        Err(idle.saturating_sub(since).max(Duration::from_millis(10)))
    }
}

/// HTTP/2 over h2 directly: a call whose answer is ready on its first poll (the body
/// arrived with the headers, the service answered at once) is answered from the
/// connection's task, with no task of its own; the others get one.
async fn serve_h2(
    stream: TcpStream,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) {
    let config = &shared.config;
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_list_size)
        // What a peer may send unread: 1 MiB per stream, 4 MiB per connection.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_send_buffer_size(1 << 20)
        .max_pending_accept_reset_streams(64)
        .handshake::<_, Bytes>(stream);
    let peer = state.peer;
    let mut conn = match tokio::time::timeout(config.header_read_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let idle_timer = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle_timer);
    let mut closing = false;
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    let mut call = Box::pin(respond_h2(shared.clone(), state.clone(), req, respond));
                    if call
                        .as_mut()
                        .poll(&mut Context::from_waker(std::task::Waker::noop()))
                        .is_pending()
                    {
                        tokio::spawn(call);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
                    break;
                }
                None => break,
            },
            () = &mut idle_timer => {
                if closing {
                    break;
                }
                match idle_check(shared, state) {
                    Ok(()) => {
                        tracing::debug!(%peer, "idle connection closed");
                        closing = true;
                        conn.graceful_shutdown();
                        // A peer that does not close goes anyway.
                        idle_timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    Err(left) => idle_timer.as_mut().reset(tokio::time::Instant::now() + left),
                }
            }
            changed = stop.changed(), if !closing => {
                let drain = match changed { Ok(()) => (*stop.borrow()).unwrap_or_default(), Err(_) => Duration::ZERO };
                closing = true;
                conn.graceful_shutdown();
                idle_timer.as_mut().reset(tokio::time::Instant::now() + drain);
            }
        }
    }
}

/// Serves one HTTP/2 request and sends its answer (headers, message, trailers).
async fn respond_h2(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let Ok(resp) = handle(shared, state, req.map(ReqBody::H2)).await;
    let (parts, body) = resp.into_parts();
    let (data, trailers) = body.into_parts();
    let end = data.is_none() && trailers.is_none();
    let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), end) else {
        return;
    };
    if let Some(d) = data {
        if send.send_data(d, trailers.is_none()).is_err() {
            return;
        }
    }
    if let Some(t) = trailers {
        let _ = send.send_trailers(t);
    }
}

/// HTTP/1.1 (the JSON mode, curl) through hyper.
async fn serve_http1(
    stream: TcpStream,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    stop: &mut watch::Receiver<Option<Duration>>,
) {
    let peer = state.peer;
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(
            svc_shared.clone(),
            svc_state.clone(),
            req.map(ReqBody::Http1),
        )
    });
    let conn = shared.http1.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle_timer = tokio::time::sleep(shared.config.idle_timeout);
    tokio::pin!(idle_timer);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            () = &mut idle_timer => {
                if closing {
                    break;
                }
                match idle_check(shared, state) {
                    Ok(()) => {
                        tracing::debug!(%peer, "idle connection closed");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                        idle_timer.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    Err(left) => idle_timer.as_mut().reset(tokio::time::Instant::now() + left),
                }
            }
            changed = stop.changed(), if !closing => {
                let drain = match changed { Ok(()) => (*stop.borrow()).unwrap_or_default(), Err(_) => Duration::ZERO };
                closing = true;
                conn.as_mut().graceful_shutdown();
                idle_timer.as_mut().reset(tokio::time::Instant::now() + drain);
            }
        }
    }
}

/// A request's body, from hyper (HTTP/1.1) or h2.
enum ReqBody {
    Http1(Incoming),
    H2(h2::RecvStream),
}

/// What a request is: gRPC or the JSON mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Grpc,
    Json,
}

type HttpResponse = Response<OneBody>;

async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    req: Request<ReqBody>,
) -> Result<HttpResponse, Infallible> {
    let _busy = Busy::new(&shared, &conn);
    let (parts, body) = req.into_parts();
    let content_type = headers::text(&parts.headers, "content-type").unwrap_or("");
    let mode = if content_type.starts_with("application/grpc") {
        Mode::Grpc
    } else {
        Mode::Json
    };
    let http1 = parts.version < http::Version::HTTP_2;
    let Some((interface, method)) = split_path(parts.uri.path()) else {
        return Ok(not_found(mode, &shared, http1, "Invoker not found"));
    };
    if parts.method != Method::POST && !(mode == Mode::Json && parts.method == Method::GET) {
        return Ok(match mode {
            Mode::Grpc => trailers_only(grpc::UNIMPLEMENTED, "only POST is served", None),
            Mode::Json => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is served",
                &shared,
                http1,
            ),
        });
    }
    let timeout = request_timeout(&parts.headers).map_or(shared.config.default_timeout, |t| {
        t.min(shared.config.default_timeout)
    });
    let mut call = std::pin::pin!(serve_call(
        &shared,
        &conn,
        mode,
        http1,
        interface,
        method,
        &parts.headers,
        body,
        timeout,
    ));
    // Most calls finish on their first poll (the body is in, the service answers at once):
    // only the others get a timer.
    if let Poll::Ready(r) = call
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
    {
        return Ok(r);
    }
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => Ok(r),
        Err(_) => {
            let msg =
                format!("Server side timeout: the call of {method} took longer than {timeout:?}");
            Ok(match mode {
                Mode::Grpc => trailers_only(grpc::DEADLINE_EXCEEDED, &msg, None),
                Mode::Json => json_error(StatusCode::GATEWAY_TIMEOUT, &msg, &shared, http1),
            })
        }
    }
}

/// `/<interface>/<method>` or `/<context path>/<interface>/<method>`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_start_matches('/').trim_end_matches('/');
    let (rest, method) = path.rsplit_once('/')?;
    let interface = rest.rsplit('/').next().unwrap_or(rest);
    (!interface.is_empty() && !method.is_empty()).then_some((interface, method))
}

fn request_timeout(h: &HeaderMap) -> Option<Duration> {
    if let Some(t) = headers::text(h, headers::GRPC_TIMEOUT).and_then(codec::parse_timeout) {
        return Some(t);
    }
    [headers::SERVICE_TIMEOUT, "triple-timeout-ms", "timeout"]
        .iter()
        .find_map(|n| headers::text(h, n)?.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Why a body could not be read.
enum BodyError {
    /// Over the message size limit.
    TooLarge,
    /// Broken off by the peer.
    Broken,
}

/// Reads a body up to `max` bytes. Before it is buffered past its first bytes, the body
/// takes its whole size — the gRPC message length from its prefix, else `content-length`,
/// else `max` — from the server's budget of buffered request bytes, waiting while the
/// budget is spent (the peer is not read meanwhile: HTTP/2 flow control and TCP push
/// back). Taken whole, never bit by bit, so bodies waiting for budget cannot hold parts of
/// it and starve each other. Given back when the returned permit is dropped.
async fn read_body<'s>(
    shared: &'s Shared,
    mut body: ReqBody,
    max: usize,
    grpc_mode: bool,
    content_length: Option<usize>,
) -> Result<(Bytes, tokio::sync::SemaphorePermit<'s>), BodyError> {
    let mut out = BytesMut::new();
    let mut held: Option<tokio::sync::SemaphorePermit<'s>> = None;
    let mut expected = max;
    loop {
        let Some(chunk) = next_chunk(&mut body).await? else {
            break;
        };
        if out.len() + chunk.len() > expected {
            return Err(BodyError::TooLarge);
        }
        if out.is_empty() {
            out = BytesMut::from(chunk);
        } else {
            out.extend_from_slice(&chunk);
        }
        if held.is_none() {
            let declared = if grpc_mode {
                if out.len() < codec::PREFIX_LEN {
                    continue;
                }
                let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
                Some(codec::PREFIX_LEN.saturating_add(len))
            } else {
                content_length
            };
            expected = declared.unwrap_or(max);
            if expected > max || out.len() > expected {
                return Err(BodyError::TooLarge);
            }
            held = Some(budget(shared, expected).await?);
        }
    }
    let held = match held {
        Some(h) => h,
        None => budget(shared, out.len()).await?,
    };
    Ok((out.freeze(), held))
}

/// The next chunk of data of a body (trailers and other frames skipped); capacity is
/// handed back to the peer at once, the size being bounded by the budget taken.
async fn next_chunk(body: &mut ReqBody) -> Result<Option<Bytes>, BodyError> {
    match body {
        ReqBody::Http1(b) => {
            while let Some(frame) = b.frame().await {
                let frame = frame.map_err(|_| BodyError::Broken)?;
                if let Ok(chunk) = frame.into_data() {
                    return Ok(Some(chunk));
                }
            }
            Ok(None)
        }
        ReqBody::H2(b) => match b.data().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|_| BodyError::Broken)?;
                let _ = b.flow_control().release_capacity(chunk.len());
                Ok(Some(chunk))
            }
            None => Ok(None),
        },
    }
}

/// `len` bytes of the buffered-request budget (in KiB, rounded up).
async fn budget(
    shared: &Shared,
    len: usize,
) -> Result<tokio::sync::SemaphorePermit<'_>, BodyError> {
    let kib = u32::try_from(len.div_ceil(1024)).unwrap_or(u32::MAX);
    shared
        .body_budget
        .acquire_many(kib)
        .await
        .map_err(|_| BodyError::Broken)
}

#[allow(clippy::too_many_arguments)]
async fn serve_call(
    shared: &Arc<Shared>,
    conn: &ConnState,
    mode: Mode,
    http1: bool,
    interface: &str,
    method: &str,
    h: &HeaderMap,
    body: ReqBody,
    timeout: Duration,
) -> HttpResponse {
    let version = headers::text(h, headers::SERVICE_VERSION)
        .or_else(|| headers::text(h, "rest-service-version"))
        .filter(|v| !v.is_empty());
    let group = headers::text(h, headers::SERVICE_GROUP)
        .or_else(|| headers::text(h, "rest-service-group"))
        .filter(|g| !g.is_empty());
    if shared.draining.load(Ordering::SeqCst) {
        let msg = "provider is shutting down; retry on another provider";
        return match mode {
            Mode::Grpc => trailers_only(grpc::UNAVAILABLE, msg, None),
            Mode::Json => json_error(StatusCode::SERVICE_UNAVAILABLE, msg, shared, http1),
        };
    }
    // The request is read whole first (bounded by the size limit and the deadline):
    // answering before the client has sent it makes some clients (curl) see a reset
    // stream instead of the answer.
    let max = shared.config.max_message_size;
    let content_length = headers::text(h, "content-length").and_then(|l| l.trim().parse().ok());
    let (raw, _budget) = match read_body(
        shared,
        body,
        max + codec::PREFIX_LEN,
        mode == Mode::Grpc,
        content_length,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            let too_large = matches!(e, BodyError::TooLarge);
            let msg = if too_large {
                format!("request larger than {max} bytes")
            } else {
                "request body broken off".to_string()
            };
            return match mode {
                Mode::Grpc => trailers_only(grpc::RESOURCE_EXHAUSTED, &msg, None),
                Mode::Json if too_large => {
                    json_error(StatusCode::PAYLOAD_TOO_LARGE, &msg, shared, http1)
                }
                Mode::Json => json_error(StatusCode::BAD_REQUEST, &msg, shared, http1),
            };
        }
    };
    let Some(export) = shared.find(interface, group, version) else {
        let msg = format!(
            "Not found exported service: {} (from {})",
            rdubbo_core::url::service_key(group, interface, version),
            conn.peer
        );
        return not_found(mode, shared, http1, &msg);
    };
    if !export.methods.is_empty() && !export.methods.contains(method) {
        let msg = format!("Method {method} not found in {}", export.interface);
        return not_found(mode, shared, http1, &msg);
    }
    let encoding = match Encoding::parse(headers::text(h, headers::GRPC_ENCODING)) {
        Some(e) => e,
        None if mode == Mode::Grpc => {
            let mut extra = HeaderMap::new();
            extra.insert(
                headers::GRPC_ACCEPT_ENCODING,
                HeaderValue::from_static("gzip,identity"),
            );
            return trailers_only(
                grpc::UNIMPLEMENTED,
                "unsupported grpc-encoding",
                Some(extra),
            );
        }
        None => Encoding::Identity,
    };
    let mut attachments = Attachments::new();
    headers::read_attachments(h, &mut attachments);
    if let Some(app) = headers::text(h, headers::CONSUMER_APPNAME) {
        attachments.insert("remote.application", app);
    }
    let mut inv = Invocation {
        interface: export.interface.clone(),
        group: export.group.clone(),
        version: export.version.clone(),
        method: export.method(method),
        args: Args::default(),
        attachments,
        timeout: Some(timeout),
        parameter_types: std::borrow::Cow::Borrowed(&[]),
        reply_attachments: ReplySink::new(),
    };
    match mode {
        Mode::Grpc => grpc_call(export, inv, raw, encoding, max).await,
        Mode::Json => {
            // Parsed JSON takes some 32–80 bytes per value: a body of many tiny values
            // (`[0,0,0,…]`) is refused rather than expanded 16-fold or more.
            let values = codec::json_value_count(&raw);
            let allowed = (shared.config.max_message_size / 32).max(1024);
            if values > allowed {
                let msg = format!("JSON body of {values} values, at most {allowed}");
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, &msg, shared, http1);
            }
            let args = if raw.iter().all(u8::is_ascii_whitespace) {
                Vec::new()
            } else {
                match serde_json::from_slice::<serde_json::Value>(&raw) {
                    Ok(serde_json::Value::Array(a)) => a,
                    Ok(one) => vec![one],
                    Err(e) => {
                        return json_error(
                            StatusCode::BAD_REQUEST,
                            &format!("bad JSON body: {e}"),
                            shared,
                            http1,
                        )
                    }
                }
            };
            inv.args = Args::Json(args);
            json_call(shared, export, inv, http1).await
        }
    }
}

async fn grpc_call(
    export: &Export,
    mut inv: Invocation,
    raw: Bytes,
    encoding: Encoding,
    max: usize,
) -> HttpResponse {
    let message = match codec::decode_unary(&raw, encoding, max) {
        Ok(m) => m,
        Err(codec::FrameError::TooLarge(n)) => {
            return trailers_only(
                grpc::RESOURCE_EXHAUSTED,
                &format!("request message larger than {n} bytes"),
                None,
            )
        }
        Err(e) => return trailers_only(grpc::INTERNAL, &e.to_string(), None),
    };
    let wrapper = match codec::decode_request(message) {
        Ok(w) => w,
        Err(e) => {
            return trailers_only(
                grpc::INTERNAL,
                &format!(
                "bad TripleRequestWrapper (only interface services with Hessian2 are served): {e}"
            ),
                None,
            )
        }
    };
    let serialize_type = wrapper.serialize_type.clone();
    if serialize_type != codec::HESSIAN4 && serialize_type != codec::HESSIAN2 {
        return trailers_only(
            grpc::UNIMPLEMENTED,
            &format!("serialization `{serialize_type}` is not supported, only hessian2 (hessian4)"),
            None,
        );
    }
    inv.args = match codec::decode_args(&wrapper) {
        Ok(a) => a,
        Err(e) => return trailers_only(grpc::INTERNAL, &format!("bad arguments: {e}"), None),
    };
    if wrapper.arg_types.len() == inv.args.len() {
        inv.parameter_types = wrapper
            .arg_types
            .iter()
            .map(|t| std::borrow::Cow::Owned(codec::descriptor(t)))
            .collect();
    }
    let method = inv.method.clone();
    let sink = inv.reply_attachments.clone();
    let result = export.invoker.invoke(inv).await;
    let mut trailers = HeaderMap::new();
    trailers.insert(headers::GRPC_STATUS, HeaderValue::from_static("0"));
    headers::put_attachments(&mut trailers, sink.get().iter());
    let (data, r#type, exception) = match result {
        Ok(reply) => {
            let mut e = Encoder::new();
            if let Err(msg) = reply.write_hessian(&mut e) {
                tracing::warn!(%msg, "cannot encode the result of {method}");
                return trailers_only(
                    grpc::INTERNAL,
                    &format!("cannot encode the result of {method}: {msg}"),
                    None,
                );
            }
            (e.into_bytes(), codec::reply_type(&reply), false)
        }
        Err(err) if codec::status_of(&err) == grpc::UNKNOWN => {
            let t = codec::exception_of(&err);
            let mut e = Encoder::new();
            e.write_value(&t.to_value());
            (e.into_bytes(), t.class, true)
        }
        Err(err) => {
            return trailers_only(codec::status_of(&err), &err.message(), None);
        }
    };
    let out = TripleResponseWrapper {
        serialize_type,
        data: Bytes::from(data),
        r#type,
    }
    .encode_to_vec();
    if out.len() > max {
        let msg = format!("response of {method} larger than {max} bytes");
        tracing::warn!(%msg, "response over the message limit");
        return trailers_only(grpc::RESOURCE_EXHAUSTED, &msg, None);
    }
    let frame = codec::encode_message(&out, encoding);
    let mut resp = Response::new(OneBody::new(frame, Some(trailers)));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    if encoding == Encoding::Gzip {
        h.insert(headers::GRPC_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        headers::GRPC_ACCEPT_ENCODING,
        HeaderValue::from_static("gzip"),
    );
    if exception {
        h.insert(headers::EXCEPTION_CODE, HeaderValue::from_static("3"));
    }
    resp
}

async fn json_call(shared: &Shared, export: &Export, inv: Invocation, http1: bool) -> HttpResponse {
    let method = inv.method.clone();
    let sink = inv.reply_attachments.clone();
    match export.invoker.invoke(inv).await {
        Ok(reply) => {
            let mut out = Vec::with_capacity(128);
            if let Err(msg) = reply.write_json(&mut out) {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode the result of {method}: {msg}"),
                    shared,
                    http1,
                );
            }
            if out.len() > shared.config.max_message_size {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!(
                        "response of {method} larger than {} bytes",
                        shared.config.max_message_size
                    ),
                    shared,
                    http1,
                );
            }
            let mut resp = Response::new(OneBody::new(Bytes::from(out), None));
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            headers::put_attachments(h, sink.get().iter());
            if http1 {
                h.insert("alt-svc", shared.alt_svc.clone());
            }
            resp
        }
        Err(e) => {
            let status = match codec::status_of(&e) {
                grpc::UNIMPLEMENTED => StatusCode::NOT_FOUND,
                grpc::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
                grpc::INVALID_ARGUMENT => StatusCode::BAD_REQUEST,
                grpc::DEADLINE_EXCEEDED => StatusCode::GATEWAY_TIMEOUT,
                grpc::RESOURCE_EXHAUSTED => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json_error(status, &e.message(), shared, http1)
        }
    }
}

fn not_found(mode: Mode, shared: &Shared, http1: bool, msg: &str) -> HttpResponse {
    match mode {
        Mode::Grpc => trailers_only(grpc::UNIMPLEMENTED, msg, None),
        Mode::Json => json_error(StatusCode::NOT_FOUND, "Invoker not found", shared, http1),
    }
}

/// A gRPC answer with no message: status and message in the headers.
fn trailers_only(status: u32, message: &str, extra: Option<HeaderMap>) -> HttpResponse {
    let mut resp = Response::new(OneBody::empty());
    let h = resp.headers_mut();
    if let Some(extra) = extra {
        h.extend(extra);
    }
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert(headers::GRPC_STATUS, HeaderValue::from(status));
    if let Ok(v) = HeaderValue::from_str(&codec::encode_grpc_message(message)) {
        h.insert(headers::GRPC_MESSAGE, v);
    }
    resp
}

/// Java's error body `{"status":"<http status>","message":"…"}`.
fn json_error(status: StatusCode, message: &str, shared: &Shared, http1: bool) -> HttpResponse {
    let body = serde_json::json!({ "status": status.as_u16().to_string(), "message": message });
    let mut resp = Response::new(OneBody::new(Bytes::from(body.to_string()), None));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if http1 {
        h.insert("alt-svc", shared.alt_svc.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(split_path("/a.B/m"), Some(("a.B", "m")));
        assert_eq!(split_path("/ctx/a.B/m/"), Some(("a.B", "m")));
        assert_eq!(split_path("/a.B"), None);
        assert_eq!(split_path("//m"), None);
    }

    #[test]
    fn timeouts_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("timeout", HeaderValue::from_static("250"));
        assert_eq!(request_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", HeaderValue::from_static("2S"));
        assert_eq!(request_timeout(&h), Some(Duration::from_secs(2)));
    }
}

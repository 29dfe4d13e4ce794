//! An embedded naming server: the Nacos Open API v1 naming calls, single node. `rdubbo
//! registry` and `rdubbo demo` run it; any Nacos v1 client (rdubbo's `nacos://` registry,
//! Java Dubbo's) registers and subscribes on it. Its own crate, so that a `nacos://` client
//! does not compile it (the `rdubbo` facade re-exports it as `rdubbo::nacos::server` with
//! the `naming-server` feature).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo_naming_server::{NamingServer, NamingServerConfig};
//! let server = NamingServer::start(NamingServerConfig {
//!     listen: "127.0.0.1:8848".parse()?,
//!     ..Default::default()
//! })
//! .await?;
//! println!("registry on nacos://{}", server.local_addr());
//! # Ok(()) }
//! ```
//!
//! Model (as Nacos): namespace → `group@@service` → cluster → instances. Ephemeral instances
//! live by client beats (no beat for 15 s → unhealthy, 30 s → removed; metadata
//! `preserved.heart.beat.timeout` / `preserved.ip.delete.timeout` override per instance).
//! Persistent instances (`ephemeral=false`) are stored in `<data-dir>/naming.redb` and
//! checked by the server with a TCP connect. A list query that carries `udpPort` subscribes
//! the address the query came from to UDP pushes (never the `clientIP` it reports).
//!
//! Hostile clients: a whole request (headers and body) must arrive within
//! [`NamingServerConfig::request_timeout`], idle keep-alive connections close after
//! [`NamingServerConfig::idle_timeout`], and at the connection limit a new connection takes
//! the slot of the slowest sender (else of a stuck reader, else of the longest idle
//! connection). The silence of ephemeral instances counts from their last beat or from the
//! server's last refusal (503 at the limit, or a connection closed to make room), whichever
//! is later: no instance expires because the server refused its beats.
//! Writes to disk are committed by a thread of their own, outside the store lock. Large list
//! answers are encoded once per change, off the runtime threads, within a memory budget;
//! services have an instance limit. Pushes go to at most
//! [`NamingServerConfig::max_push_ports_per_ip`] ports of one address per service. Tokens
//! are signed (HS256 JWTs) and stored nowhere; failed logins are throttled per address.

mod auth;
mod conn;
mod encode;
mod push;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rdubbo_registry_nacos::model::{
    self, BEAT_OK, BEAT_UNKNOWN_INSTANCE, DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use auth::Auth;
use conn::{Admit, Clock, ConnState, Conns, LargeAnswer, LargeAnswers, ResponseBody, Watched};
use encode::ListExtras;
use push::Pushes;
use store::{Beat, Instance, ServiceKey, Store, Timing};

/// Services with at least this many instances get the large-answer treatment: encoded off
/// the runtime threads, one or two at a time, cached until the service changes.
const LARGE_SERVICE: usize = 1_000;
/// A cached large answer nobody asked for this long is dropped (and its memory returned).
const ANSWER_CACHE_TTL: Duration = Duration::from_secs(30);
/// Services with more instances than this are never pushed (their answer cannot fit in a
/// datagram); their subscribers poll.
const PUSH_MAX_HOSTS: usize = 5_000;
/// Connections waiting for a slot or being refused (503) at once; beyond, new connections
/// found at the limit are just closed.
const MAX_REJECTING: usize = 1_024;
/// How long a connection found at the limit waits for a slot before its 503.
const SLOT_WAIT: Duration = Duration::from_millis(200);

/// Settings of a [`NamingServer`].
#[derive(Debug, Clone)]
pub struct NamingServerConfig {
    /// HTTP address; pushes leave from a UDP socket on the same IP. Default 127.0.0.1:8848.
    pub listen: SocketAddr,
    /// Where persistent instances are stored; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Time without beats after which an ephemeral instance is unhealthy. Default 15 s.
    pub beat_timeout: Duration,
    /// Time without beats after which an ephemeral instance is removed. Default 30 s.
    pub delete_timeout: Duration,
    /// How often beats are checked. Default 1 s.
    pub check_interval: Duration,
    /// How often persistent instances are checked with a TCP connect. Default 5 s.
    pub health_check_interval: Duration,
    /// Largest request body (and query string) in bytes. Default 64 KiB.
    pub max_body_size: usize,
    /// Largest `metadata` parameter in bytes. Default 16 KiB.
    pub max_metadata_size: usize,
    /// Open connections at once. Default 4096.
    pub max_connections: usize,
    /// Time for a whole request to arrive, headers and body, from its first byte; also the
    /// longest a write of an answer may wait for the peer to read. Default 10 s.
    pub request_timeout: Duration,
    /// Idle keep-alive connections are closed after this long. Default 20 s.
    pub idle_timeout: Duration,
    /// At the connection limit, close a connection to make room for the new one instead of
    /// refusing the new one: the slowest sender of a request (longest under way), else the
    /// longest-stuck write, else the connection idle for longest (at least 1/100 of the
    /// request timeout, at most 100 ms). Default true.
    pub evict_when_full: bool,
    /// Instances in all. Default 1,000,000.
    pub max_instances: usize,
    /// Instances of one service; registrations beyond are refused (HTTP 400). Default
    /// 100,000.
    pub max_instances_per_service: usize,
    /// Bytes of large list answers held at once (being written, or cached: at most half);
    /// a query that would need more is answered 503 until some are written. Default 256 MiB
    /// (a service of 100,000 instances with Dubbo's metadata answers about 80 MB).
    pub max_large_answer_bytes: usize,
    /// Push subscriptions in all. Default 100,000.
    pub max_subscribers: usize,
    /// Push subscriptions of one service from one IP address (its ports); queries from
    /// more ports are answered but not subscribed (those clients poll). Default 16.
    pub max_push_ports_per_ip: usize,
    /// A subscriber that has not queried for this long gets no more pushes. Default 30 s.
    pub subscriber_ttl: Duration,
    /// Time to wait for a push ack before sending again. Default 1 s.
    pub push_ack_timeout: Duration,
    /// Sends of one push in all (first + re-sends). Default 3.
    pub push_attempts: u32,
    /// Username and password; when set, every naming call needs a token from
    /// `/nacos/v1/auth/login` (or the credentials as parameters).
    pub auth: Option<(String, String)>,
    /// Lifetime of a login token. Default 5 h (as Nacos).
    pub token_ttl: Duration,
    /// Failed credential checks (login, or username/password parameters) one address may
    /// make at once; then [`login_failures_per_sec`](Self::login_failures_per_sec), the
    /// others answered 429. Default 10.
    pub login_failures_burst: u32,
    /// Failed credential checks per second one address may make after its burst. Default 1.
    pub login_failures_per_sec: f64,
}

impl Default for NamingServerConfig {
    fn default() -> Self {
        NamingServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8848)),
            data_dir: None,
            beat_timeout: Duration::from_millis(model::DEFAULT_BEAT_TIMEOUT_MS),
            delete_timeout: Duration::from_millis(model::DEFAULT_DELETE_TIMEOUT_MS),
            check_interval: Duration::from_secs(1),
            health_check_interval: Duration::from_secs(5),
            max_body_size: 64 * 1024,
            max_metadata_size: 16 * 1024,
            max_connections: 4096,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            evict_when_full: true,
            max_instances: 1_000_000,
            max_instances_per_service: 100_000,
            max_large_answer_bytes: 256 * 1024 * 1024,
            max_subscribers: 100_000,
            max_push_ports_per_ip: 16,
            subscriber_ttl: Duration::from_secs(30),
            push_ack_timeout: Duration::from_secs(1),
            push_attempts: 3,
            auth: None,
            token_ttl: Duration::from_secs(18_000),
            login_failures_burst: 10,
            login_failures_per_sec: 1.0,
        }
    }
}

/// Counters of a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Services with at least one instance.
    pub services: usize,
    /// Instances in all.
    pub instances: usize,
    /// Push subscriptions.
    pub subscribers: usize,
    /// HTTP requests answered.
    pub requests: u64,
    /// Beats received.
    pub beats: u64,
    /// Registrations received.
    pub registrations: u64,
    /// Pushes sent (first sends).
    pub pushes_sent: u64,
    /// Pushes acknowledged.
    pub pushes_acked: u64,
    /// Pushes sent again for want of an ack.
    pub pushes_resent: u64,
    /// Successful logins.
    pub logins: u64,
    /// Credential checks refused (429) because their address failed too often.
    pub logins_throttled: u64,
    /// Open connections.
    pub connections: usize,
    /// Connections refused at the connection limit (503), or that could not be accepted.
    pub connections_refused: u64,
    /// Connections closed to make room for a new one at the connection limit.
    pub connections_evicted: u64,
    /// Connections closed because a request, a write or an idle period took too long.
    pub connections_timed_out: u64,
    /// Push subscriptions refused because their address had its share of ports.
    pub push_subscriptions_limited: u64,
}

/// A cached large list answer: the service's change time it was built at, the bytes, and
/// when it was last asked for.
type CachedAnswer = (u64, Arc<LargeAnswer>, Instant);
/// Service, clusters asked for, healthy only, cache millis.
type AnswerKey = (ServiceKey, String, bool, u64);

struct Shared {
    config: NamingServerConfig,
    store: Mutex<Store>,
    pushes: Pushes,
    udp: UdpSocket,
    push_wake: Notify,
    auth: Auth,
    clock: Clock,
    conns: Conns,
    rejecting: AtomicUsize,
    /// When the server last refused a connection or a request of its own accord (clock
    /// ms; 0 = never).
    last_refusal: AtomicU64,
    large: Arc<LargeAnswers>,
    answers: Mutex<HashMap<AnswerKey, CachedAnswer>>,
    encoders: Semaphore,
    requests: AtomicU64,
    beats: AtomicU64,
    registrations: AtomicU64,
    logins: AtomicU64,
    logins_throttled: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server refused work of its own accord: ephemeral instances do not expire for a
    /// while (their beats may have been refused).
    fn refusal(&self) {
        self.last_refusal.store(self.clock.now(), Ordering::Relaxed);
    }

    fn refused_at(&self) -> Option<Instant> {
        match self.last_refusal.load(Ordering::Relaxed) {
            0 => None,
            t => Some(self.clock.instant(t)),
        }
    }

    fn answers(&self) -> MutexGuard<'_, HashMap<AnswerKey, CachedAnswer>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self, key: ServiceKey) {
        self.pushes
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        self.push_wake.notify_one();
    }
}

/// A running embedded naming server. Dropping it stops it.
pub struct NamingServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for NamingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamingServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The data directory or database could not be opened.
    #[error("{0}")]
    Storage(String),
}

impl NamingServer {
    /// Opens the store, binds the HTTP and UDP sockets and starts serving.
    pub async fn start(config: NamingServerConfig) -> Result<NamingServer, StartError> {
        let store = Store::open(config.data_dir.as_deref()).map_err(StartError::Storage)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let udp_bind = SocketAddr::new(addr.ip(), 0);
        let udp = UdpSocket::bind(udp_bind)
            .await
            .map_err(|e| StartError::Bind(udp_bind, e))?;
        let (user, password) = config.auth.clone().unwrap_or_default();
        let auth = Auth::new(
            user,
            password,
            config.token_ttl,
            config.login_failures_burst,
            config.login_failures_per_sec,
        );
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store),
            pushes: Pushes::new(),
            udp,
            push_wake: Notify::new(),
            auth,
            clock: Clock::new(),
            conns: Conns::new(),
            rejecting: AtomicUsize::new(0),
            last_refusal: AtomicU64::new(0),
            large: Arc::new(LargeAnswers::default()),
            answers: Mutex::new(HashMap::new()),
            encoders: Semaphore::new(2),
            requests: AtomicU64::new(0),
            beats: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            logins_throttled: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(listener, shared.clone())),
            tokio::spawn(reaper_loop(shared.clone())),
            tokio::spawn(push_loop(shared.clone())),
            tokio::spawn(udp_loop(shared.clone())),
            tokio::spawn(expiry_loop(shared.clone())),
            tokio::spawn(health_loop(shared.clone())),
        ];
        tracing::info!(%addr, "naming server listening");
        Ok(NamingServer {
            shared,
            addr,
            tasks,
        })
    }

    /// The HTTP address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address pushes are sent from.
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.shared.udp.local_addr().ok()
    }

    /// The registry URL clients use: `nacos://host:port`.
    pub fn registry_url(&self) -> String {
        format!("nacos://{}", self.addr)
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        let (services, instances) = self.shared.store().counts();
        let p = &self.shared.pushes;
        ServerStats {
            services,
            instances,
            subscribers: p.subscriber_count(),
            requests: self.shared.requests.load(Ordering::Relaxed),
            beats: self.shared.beats.load(Ordering::Relaxed),
            registrations: self.shared.registrations.load(Ordering::Relaxed),
            pushes_sent: p.sent.load(Ordering::Relaxed),
            pushes_acked: p.acked.load(Ordering::Relaxed),
            pushes_resent: p.resent.load(Ordering::Relaxed),
            logins: self.shared.logins.load(Ordering::Relaxed),
            logins_throttled: self.shared.logins_throttled.load(Ordering::Relaxed),
            connections: self.shared.conns.len(),
            connections_refused: self.shared.refused.load(Ordering::Relaxed),
            connections_evicted: self.shared.evicted.load(Ordering::Relaxed),
            connections_timed_out: self.shared.timed_out.load(Ordering::Relaxed),
            push_subscriptions_limited: p.limited.load(Ordering::Relaxed),
        }
    }

    /// Stops serving: closes the sockets and every connection, and waits until every
    /// accepted write of persistent instances is on disk (and the database closed).
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        let writer = self.shared.store().close();
        if let Some(t) = writer {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for NamingServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    let config = &shared.config;
    // An idle connection (or a new one that has sent nothing yet) must have waited at least
    // this long to lose its slot; slow senders go first anyway.
    let evict_after = config.evict_when_full.then(|| {
        (config.request_timeout / 100)
            .min(Duration::from_millis(100))
            .as_millis() as u64
    });
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let now = shared.clock.now();
                    match shared.conns.admit(now, config.max_connections, evict_after) {
                        Admit::Yes(id, state, evicted) => {
                            if evicted.is_some() {
                                // Even an idle connection may have had a request on its
                                // way: a refusal, as far as expiry goes.
                                shared.evicted.fetch_add(1, Ordering::Relaxed);
                                shared.refusal();
                            }
                            conns.spawn(serve_connection(stream, peer, id, state, shared.clone()));
                        }
                        Admit::Full => {
                            // No victim right now (every connection busy or just opened): wait
                            // a moment for a slot, then refuse.
                            if shared.rejecting.load(Ordering::Relaxed) < MAX_REJECTING {
                                shared.rejecting.fetch_add(1, Ordering::Relaxed);
                                conns.spawn(wait_for_slot(stream, peer, evict_after, shared.clone()));
                            } else {
                                shared.refusal();
                                shared.refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(e) => {
                    // Out of descriptors, most likely: clients are refused.
                    shared.refusal();
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A connection that found every slot taken: it gets the first slot that frees up within
/// [`SLOT_WAIT`], or a 503.
async fn wait_for_slot(
    stream: TcpStream,
    peer: SocketAddr,
    evict_after: Option<u64>,
    shared: Arc<Shared>,
) {
    let until = Instant::now() + SLOT_WAIT;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = shared.clock.now();
        if let Admit::Yes(id, state, evicted) =
            shared
                .conns
                .admit(now, shared.config.max_connections, evict_after)
        {
            shared.rejecting.fetch_sub(1, Ordering::Relaxed);
            if evicted.is_some() {
                shared.evicted.fetch_add(1, Ordering::Relaxed);
                shared.refusal();
            }
            serve_connection(stream, peer, id, state, shared).await;
            return;
        }
    }
    shared.refusal();
    shared.refused.fetch_add(1, Ordering::Relaxed);
    reject_connection(stream, &shared).await;
    shared.rejecting.fetch_sub(1, Ordering::Relaxed);
}

async fn reject_connection(mut stream: TcpStream, shared: &Shared) {
    let body = format!(
        "caused: too many connections (limit {});",
        shared.config.max_connections
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Closes connections past their deadline (see [`conn`]).
async fn reaper_loop(shared: Arc<Shared>) {
    let config = &shared.config;
    let request = config.request_timeout.as_millis() as u64;
    let idle = config.idle_timeout.as_millis() as u64;
    let period = (config.request_timeout.min(config.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = shared.conns.reap(shared.clock.now(), request, idle);
        if n > 0 {
            shared.timed_out.fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(connections = n, "closed slow or idle connections");
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    state: Arc<ConnState>,
    shared: Arc<Shared>,
) {
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let state = svc_state.clone();
        async move {
            let start = state.begin_request(shared.clock.now());
            let response = handle(&shared, &state, start, peer, req).await;
            state.end_request(shared.clock.now());
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(Watched::new(stream, state.clone(), shared.clock));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Deadlines are the reaper's (hyper's header timer would also close idle
        // keep-alive connections early).
        .header_read_timeout(None)
        .max_buf_size(shared.config.max_body_size.max(8192) + 8192)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = state.killed() => {}
    }
    shared.conns.remove(id);
}

type HttpResponse = Response<ResponseBody>;

fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = Response::new(ResponseBody::whole(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    r
}

fn json_bytes(body: ResponseBody) -> HttpResponse {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn json_response(value: &impl serde::Serialize) -> HttpResponse {
    json_bytes(ResponseBody::whole(
        serde_json::to_vec(value).unwrap_or_default(),
    ))
}

/// A refused request: status and body.
struct Reject(StatusCode, String);

fn reject(status: StatusCode, body: impl Into<String>) -> Reject {
    Reject(status, body.into())
}

/// A Nacos-style client error: HTTP 400, `caused: <message>;`.
fn bad(message: impl std::fmt::Display) -> Reject {
    Reject(StatusCode::BAD_REQUEST, format!("caused: {message};"))
}

/// Request parameters: the query string, then a form body.
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, key: &str) -> Result<&str, Reject> {
        self.get(key)
            .ok_or_else(|| bad(format!("Param '{key}' is required.")))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, Reject> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(bad(format!(
                "Param '{key}' must be true or false, not {v:?}"
            ))),
        }
    }

    fn port(&self, key: &str) -> Result<u16, Reject> {
        let v = self.required(key)?;
        v.trim().parse::<u16>().map_err(|_| {
            bad(format!(
                "Param '{key}' must be a port number (0-65535), not {v:?}"
            ))
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._:-/$*".contains(c))
}

fn valid_cluster(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn valid_ip(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok()
        || (!ip.is_empty()
            && ip.len() <= 253
            && ip
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)))
}

/// (key, group, plain service name) of a request.
fn service_of(p: &Params) -> Result<(ServiceKey, String, String), Reject> {
    let namespace = p.get("namespaceId").unwrap_or(DEFAULT_NAMESPACE).to_owned();
    let name = p.required("serviceName")?;
    let default_group = p.get("groupName").unwrap_or(DEFAULT_GROUP);
    let (group, service) = model::split_grouped(name, default_group);
    if !valid_name(&group) || !valid_name(&service) || service.contains(model::GROUP_SEPARATOR) {
        return Err(bad(format!("Param 'serviceName' is illegal: {name:?}")));
    }
    if namespace.len() > 128 || !valid_name(&namespace) {
        return Err(bad(format!(
            "Param 'namespaceId' is illegal: {namespace:?}"
        )));
    }
    Ok((
        ServiceKey {
            namespace,
            grouped: model::grouped(&group, &service),
        },
        group,
        service,
    ))
}

fn cluster_of(p: &Params, key: &str) -> Result<String, Reject> {
    let c = p.get(key).unwrap_or(DEFAULT_CLUSTER);
    if !valid_cluster(c) {
        return Err(bad(format!("Param '{key}' is illegal: {c:?}")));
    }
    Ok(c.to_owned())
}

/// The instance a request names: (service, cluster, ip, port). The cluster comes from
/// `cluster_key` (`clusterName`, or `cluster` on the one-instance call).
fn instance_of(p: &Params, cluster_key: &str) -> Result<(ServiceKey, String, String, u16), Reject> {
    let (key, _, _) = service_of(p)?;
    let ip = ip_of(p)?;
    let port = p.port("port")?;
    let cluster = cluster_of(p, cluster_key)?;
    Ok((key, cluster, ip, port))
}

fn storage_error(e: String) -> Reject {
    reject(StatusCode::INTERNAL_SERVER_ERROR, format!("caused: {e};"))
}

fn ip_of(p: &Params) -> Result<String, Reject> {
    let ip = p.required("ip")?;
    if !valid_ip(ip) {
        return Err(bad(format!("Param 'ip' is illegal: {ip:?}")));
    }
    Ok(ip.to_owned())
}

fn weight_of(p: &Params, default: f64) -> Result<f64, Reject> {
    match p.get("weight") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(w) if w.is_finite() && w >= 0.0 => Ok(w.min(10_000.0)),
            _ => Err(bad(format!(
                "Param 'weight' must be a number from 0 to 10000, not {v:?}"
            ))),
        },
    }
}

fn metadata_of(
    shared: &Shared,
    raw: Option<&str>,
) -> Result<Option<BTreeMap<String, String>>, Reject> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > shared.config.max_metadata_size {
        return Err(bad(format!(
            "metadata too large ({} bytes, limit {})",
            raw.len(),
            shared.config.max_metadata_size
        )));
    }
    model::parse_metadata(raw).map(Some).map_err(bad)
}

async fn handle(
    shared: &Shared,
    state: &ConnState,
    start: u64,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> HttpResponse {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get("accessToken")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    if query.len() > shared.config.max_body_size {
        return text(
            StatusCode::URI_TOO_LONG,
            format!(
                "caused: query string too large (limit {} bytes);",
                shared.config.max_body_size
            ),
        );
    }
    // One deadline for the whole request, from its first byte: the headers are in, the
    // body must follow in what is left.
    let deadline = shared.clock.instant(start) + shared.config.request_timeout;
    let collect = Limited::new(req.into_body(), shared.config.max_body_size).collect();
    let body = match tokio::time::timeout_at(deadline.into(), collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "caused: request body too large (limit {} bytes);",
                    shared.config.max_body_size
                ),
            )
        }
        Ok(Err(e)) => {
            return closing(text(
                StatusCode::BAD_REQUEST,
                format!("caused: request body not received: {e};"),
            ))
        }
        Err(_) => {
            shared.timed_out.fetch_add(1, Ordering::Relaxed);
            return closing(text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "caused: request not received within {} ms;",
                    shared.config.request_timeout.as_millis()
                ),
            ));
        }
    };
    state.request_received();
    let mut params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if !body.is_empty() {
        for (k, v) in form_urlencoded::parse(&body).into_owned() {
            params.entry(k).or_insert(v);
        }
    }
    let p = Params(params);
    let path = path.trim_end_matches('/');
    if path.starts_with("/nacos/v1/ns") {
        if let Err(r) = authorize(shared, peer, &p, bearer.as_deref()) {
            return text(r.0, r.1);
        }
    }
    let result = match (&method, path) {
        (&Method::POST, "/nacos/v1/ns/instance") => register(shared, &p).await,
        (&Method::DELETE, "/nacos/v1/ns/instance") => deregister(shared, &p).await,
        (&Method::PUT, "/nacos/v1/ns/instance") => update(shared, &p).await,
        (&Method::GET, "/nacos/v1/ns/instance") => one_instance(shared, &p),
        (&Method::PUT, "/nacos/v1/ns/instance/beat") => beat(shared, &p),
        (&Method::GET, "/nacos/v1/ns/instance/list") => list(shared, peer, &p).await,
        (&Method::GET, "/nacos/v1/ns/service/list") => service_list(shared, &p),
        (&Method::GET, "/nacos/v1/ns/service") => service_detail(shared, &p),
        (&Method::GET, "/nacos/v1/ns/operator/metrics") => Ok(metrics(shared)),
        (&Method::POST, "/nacos/v1/auth/login" | "/nacos/v1/auth/users/login") => {
            login(shared, peer, &p)
        }
        (&Method::GET, "" | "/index.html" | "/nacos") => Ok(console_page()),
        (&Method::GET, "/rdubbo/console/api") => {
            if let Err(r) = authorize(shared, peer, &p, bearer.as_deref()) {
                return text(r.0, r.1);
            }
            Ok(console_data(shared))
        }
        (_, p) if p.starts_with("/nacos/") => Err(reject(
            StatusCode::NOT_FOUND,
            format!("caused: no such API: {method} {p};"),
        )),
        _ => Err(reject(StatusCode::NOT_FOUND, "not found")),
    };
    result.unwrap_or_else(|r| text(r.0, r.1))
}

/// The answer, and the connection closes after it.
fn closing(mut r: HttpResponse) -> HttpResponse {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

fn authorize(
    shared: &Shared,
    peer: SocketAddr,
    p: &Params,
    bearer: Option<&str>,
) -> Result<(), Reject> {
    if shared.config.auth.is_none() {
        return Ok(());
    }
    if let Some(token) = p.get("accessToken").or(bearer) {
        return shared
            .auth
            .verify(token)
            .map_err(|e| reject(StatusCode::FORBIDDEN, e.message()));
    }
    match (p.get("username"), p.get("password")) {
        (Some(u), Some(pw)) => check_credentials(shared, peer, u, pw),
        (Some(_), None) => Err(reject(StatusCode::FORBIDDEN, "unknown user!")),
        _ => Err(reject(
            StatusCode::FORBIDDEN,
            "no accessToken: log in at /nacos/v1/auth/login first",
        )),
    }
}

/// Checks credentials from `peer`, throttling the addresses that fail too often.
fn check_credentials(
    shared: &Shared,
    peer: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(), Reject> {
    if let Err(wait) = shared.auth.may_try(peer.ip()) {
        shared.logins_throttled.fetch_add(1, Ordering::Relaxed);
        return Err(reject(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "caused: too many failed logins from {}; retry in {wait} s;",
                peer.ip()
            ),
        ));
    }
    if shared.auth.credentials_match(user, password) {
        Ok(())
    } else {
        shared.auth.failed(peer.ip());
        Err(reject(StatusCode::FORBIDDEN, "unknown user!"))
    }
}

fn login(shared: &Shared, peer: SocketAddr, p: &Params) -> Result<HttpResponse, Reject> {
    let user = p.required("username")?;
    let pass = p.required("password")?;
    if shared.config.auth.is_some() {
        check_credentials(shared, peer, user, pass)?;
    }
    // Signed, with its expiry inside: nothing is stored, so logins cannot fill anything.
    let token = shared.auth.issue();
    shared.logins.fetch_add(1, Ordering::Relaxed);
    Ok(json_response(&json!({
        "accessToken": token,
        "tokenTtl": shared.config.token_ttl.as_secs(),
        "globalAdmin": true,
    })))
}

/// Whether one more instance fits, in all and in `key`'s service.
fn room_for_one(shared: &Shared, store: &Store, key: &ServiceKey) -> Result<(), Reject> {
    if store.counts().1 >= shared.config.max_instances {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many instances (limit {});",
                shared.config.max_instances
            ),
        ));
    }
    let limit = shared.config.max_instances_per_service;
    if store.service_instance_count(key) >= limit {
        return Err(bad(format!(
            "too many instances in service {} (limit {limit})",
            key.grouped
        )));
    }
    Ok(())
}

async fn register(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    shared.registrations.fetch_add(1, Ordering::Relaxed);
    let (key, _, _) = service_of(p)?;
    let inst = Instance {
        ip: ip_of(p)?,
        port: p.port("port")?,
        weight: weight_of(p, 1.0)?,
        healthy: p.bool("healthy", true)?,
        enabled: match p.get("enabled") {
            Some(_) => p.bool("enabled", true)?,
            None => p.bool("enable", true)?,
        },
        ephemeral: p.bool("ephemeral", true)?,
        cluster: cluster_of(p, "clusterName")?,
        metadata: Arc::new(metadata_of(shared, p.get("metadata"))?.unwrap_or_default()),
        last_beat: None,
        last_beat_ms: 0,
    };
    let change = {
        let mut store = shared.store();
        let exists = store
            .instance(&key, &inst.cluster, &inst.ip, inst.port)
            .is_some();
        if !exists {
            room_for_one(shared, &store, &key)?;
        }
        store.register(&key, inst).map_err(storage_error)?
    };
    if change.changed {
        shared.changed(key);
    }
    // A persistent instance: answered once it is on disk (written outside the lock).
    change.flushed().await.map_err(storage_error)?;
    Ok(text(StatusCode::OK, "ok"))
}

async fn deregister(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, cluster, ip, port) = instance_of(p, "clusterName")?;
    let change = shared
        .store()
        .deregister(&key, &cluster, &ip, port)
        .map_err(storage_error)?;
    if change.changed {
        shared.changed(key);
    }
    change.flushed().await.map_err(storage_error)?;
    Ok(text(StatusCode::OK, "ok"))
}

async fn update(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, cluster, ip, port) = instance_of(p, "clusterName")?;
    let metadata = metadata_of(shared, p.get("metadata"))?;
    let change = {
        let mut store = shared.store();
        let Some(old) = store.instance(&key, &cluster, &ip, port).cloned() else {
            return Err(bad(format!(
                "instance not found: {ip}:{port} in {cluster} of {}",
                key.grouped
            )));
        };
        let inst = Instance {
            weight: weight_of(p, old.weight)?,
            enabled: match p.get("enabled") {
                Some(_) => p.bool("enabled", old.enabled)?,
                None => p.bool("enable", old.enabled)?,
            },
            healthy: p.bool("healthy", old.healthy)?,
            metadata: metadata
                .map(Arc::new)
                .unwrap_or_else(|| old.metadata.clone()),
            ..old
        };
        store.register(&key, inst).map_err(storage_error)?
    };
    if change.changed {
        shared.changed(key);
    }
    change.flushed().await.map_err(storage_error)?;
    Ok(text(StatusCode::OK, "ok"))
}

#[derive(serde::Deserialize)]
struct BeatInfo {
    ip: String,
    port: u16,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
}

fn beat(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    shared.beats.fetch_add(1, Ordering::Relaxed);
    let (key, _, _) = service_of(p)?;
    let info = match p.get("beat") {
        Some(raw) => {
            if raw.len() > shared.config.max_metadata_size + 1024 {
                return Err(bad("Param 'beat' is too large"));
            }
            Some(
                serde_json::from_str::<BeatInfo>(raw)
                    .map_err(|e| bad(format!("Param 'beat' is not a beat: {e}")))?,
            )
        }
        None => None,
    };
    let (ip, port, cluster) = match &info {
        Some(b) => {
            if !valid_ip(&b.ip) {
                return Err(bad(format!("beat ip is illegal: {:?}", b.ip)));
            }
            let cluster = b
                .cluster
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
            if !valid_cluster(&cluster) {
                return Err(bad(format!("beat cluster is illegal: {cluster:?}")));
            }
            (b.ip.clone(), b.port, cluster)
        }
        None => (ip_of(p)?, p.port("port")?, cluster_of(p, "clusterName")?),
    };
    let mut store = shared.store();
    let (mut outcome, mut changed) = store.beat(&key, &cluster, &ip, port);
    if outcome == Beat::Unknown {
        if let Some(b) = info {
            // As Nacos: a full beat for an unknown instance registers it again.
            let metadata = b
                .metadata
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
            let inst = Instance {
                ip: ip.clone(),
                port,
                weight: b
                    .weight
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .unwrap_or(1.0),
                healthy: true,
                enabled: true,
                ephemeral: true,
                cluster: cluster.clone(),
                metadata: Arc::new(metadata),
                last_beat: None,
                last_beat_ms: 0,
            };
            if room_for_one(shared, &store, &key).is_ok() {
                let interval = inst.beat_interval();
                // Ephemeral: nothing to write to disk.
                changed = store.register(&key, inst).is_ok_and(|c| c.changed);
                outcome = Beat::Ok(interval);
            }
        }
    }
    drop(store);
    if changed {
        shared.changed(key);
    }
    Ok(match outcome {
        Beat::Ok(interval) => json_response(&json!({
            "clientBeatInterval": interval.as_millis() as u64,
            "code": BEAT_OK,
            "lightBeatEnabled": true,
        })),
        Beat::Unknown => json_response(&json!({
            "clientBeatInterval": model::DEFAULT_BEAT_INTERVAL_MS,
            "code": BEAT_UNKNOWN_INSTANCE,
            "lightBeatEnabled": true,
        })),
    })
}

async fn list(shared: &Shared, peer: SocketAddr, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, group, _) = service_of(p)?;
    let clusters = p.get("clusters").unwrap_or("").to_owned();
    if clusters
        .split(',')
        .any(|c| !c.is_empty() && !valid_cluster(c))
    {
        return Err(bad(format!("Param 'clusters' is illegal: {clusters:?}")));
    }
    let healthy_only = p.bool("healthyOnly", false)?;
    let udp_port = match p.get("udpPort") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<u16>()
            .map_err(|_| bad(format!("Param 'udpPort' must be a port number, not {v:?}")))?,
    };
    let mut cache_millis = 3_000;
    if udp_port > 0 {
        // Pushes go to the address the query came from, whatever `clientIP` says.
        let target = SocketAddr::new(peer.ip(), udp_port);
        if shared.pushes.subscribe(
            &key,
            target,
            &clusters,
            shared.config.max_subscribers,
            shared.config.max_push_ports_per_ip,
        ) {
            cache_millis = 10_000;
        }
    }
    let extras = ListExtras {
        beat_interval_ms: model::DEFAULT_BEAT_INTERVAL_MS,
        beat_timeout_ms: shared.config.beat_timeout.as_millis() as u64,
        delete_timeout_ms: shared.config.delete_timeout.as_millis() as u64,
    };
    let large = {
        let store = shared.store();
        if store.service_instance_count(&key) < LARGE_SERVICE {
            let snap = store.snapshot(&key, &clusters, healthy_only);
            drop(store);
            let body =
                encode::service_json(&snap, &key, &group, &clusters, cache_millis, Some(&extras));
            return Ok(json_bytes(ResponseBody::whole(body)));
        }
        store.last_ref_time(&key)
    };
    let answer_key = (key, clusters, healthy_only, cache_millis);
    if let Some(hit) = cached_answer(shared, &answer_key, large) {
        return Ok(json_bytes(ResponseBody::Large(hit, 0)));
    }
    // A large service: encoded one or two at a time, off the runtime threads, within the
    // memory budget, and kept until the service changes.
    let busy = || {
        reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many large answers in flight (limit {} bytes); retry later;",
                shared.config.max_large_answer_bytes
            ),
        )
    };
    if shared.large.in_flight() >= shared.config.max_large_answer_bytes as u64 {
        return Err(busy());
    }
    let _permit = shared
        .encoders
        .acquire()
        .await
        .map_err(|_| reject(StatusCode::SERVICE_UNAVAILABLE, "caused: stopping;"))?;
    let (version, snap) = {
        let store = shared.store();
        let version = store.last_ref_time(&answer_key.0);
        (
            version,
            store.snapshot(&answer_key.0, &answer_key.1, healthy_only),
        )
    };
    if let Some(hit) = cached_answer(shared, &answer_key, version) {
        return Ok(json_bytes(ResponseBody::Large(hit, 0)));
    }
    if shared.large.in_flight() >= shared.config.max_large_answer_bytes as u64 {
        return Err(busy());
    }
    let key = answer_key.0.clone();
    let clusters = answer_key.1.clone();
    let body = tokio::task::spawn_blocking(move || {
        encode::service_json(&snap, &key, &group, &clusters, cache_millis, Some(&extras))
    })
    .await
    .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, format!("caused: {e};")))?;
    let answer = Arc::new(LargeAnswer::new(body, shared.large.clone()));
    // Kept for the next queries, within half the budget.
    let cache_limit = shared.config.max_large_answer_bytes / 2;
    if version != 0 && answer.len() <= cache_limit {
        let mut answers = shared.answers();
        let cached: usize = answers.values().map(|(_, a, _)| a.len()).sum();
        if cached + answer.len() > cache_limit {
            answers.clear();
        }
        answers.insert(answer_key, (version, answer.clone(), Instant::now()));
    }
    Ok(json_bytes(ResponseBody::Large(answer, 0)))
}

/// The cached answer for `key` if it was built at the service's current change time.
fn cached_answer(shared: &Shared, key: &AnswerKey, version: u64) -> Option<Arc<LargeAnswer>> {
    if version == 0 {
        return None;
    }
    let mut answers = shared.answers();
    match answers.get_mut(key) {
        Some((v, a, used)) if *v == version => {
            *used = Instant::now();
            Some(a.clone())
        }
        Some(_) => {
            // Stale: free it now.
            answers.remove(key);
            None
        }
        None => None,
    }
}

fn one_instance(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let cluster_key = if p.get("cluster").is_some() {
        "cluster"
    } else {
        "clusterName"
    };
    let (key, cluster, ip, port) = instance_of(p, cluster_key)?;
    let healthy_only = p.bool("healthyOnly", false)?;
    let store = shared.store();
    match store.instance(&key, &cluster, &ip, port) {
        Some(inst) if !healthy_only || inst.healthy => {
            let h = inst.host(&key.grouped);
            Ok(json_response(&json!({
                "service": key.grouped,
                "ip": h.ip,
                "port": h.port,
                "clusterName": h.cluster_name,
                "weight": h.weight,
                "healthy": h.healthy,
                "enabled": h.enabled,
                "ephemeral": h.ephemeral,
                "instanceId": h.instance_id,
                "metadata": h.metadata,
            })))
        }
        _ => Err(reject(
            StatusCode::NOT_FOUND,
            format!(
                "caused: no ips found for cluster {cluster} in service {};",
                key.grouped
            ),
        )),
    }
}

fn service_list(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let namespace = p.get("namespaceId").unwrap_or(DEFAULT_NAMESPACE);
    let group = p.get("groupName").unwrap_or(DEFAULT_GROUP);
    let page_no: usize = match p.get("pageNo") {
        None => 1,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(format!("Param 'pageNo' must be a number >= 1, not {v:?}")))?,
    };
    let page_size: usize = match p.get("pageSize") {
        None => 100,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "Param 'pageSize' must be a number from 1 to 100000, not {v:?}"
                ))
            })?,
    };
    let prefix = format!("{group}{}", model::GROUP_SEPARATOR);
    let store = shared.store();
    // Only the page is copied; the count walks the group's names in place.
    let mut count = 0usize;
    let skip = (page_no - 1).saturating_mul(page_size);
    let mut page: Vec<&str> = Vec::new();
    for k in store.service_names(namespace, &prefix) {
        if count >= skip && page.len() < page_size {
            page.push(&k.grouped[prefix.len()..]);
        }
        count += 1;
    }
    let answer = json_response(&json!({"count": count, "doms": page}));
    drop(store);
    Ok(answer)
}

fn service_detail(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, group, service) = service_of(p)?;
    let store = shared.store();
    let Some(svc) = store.services.get(&key) else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!("caused: service not found: {};", key.grouped),
        ));
    };
    let clusters: Vec<_> = svc
        .clusters
        .keys()
        .map(|c| json!({"name": c, "healthChecker": {"type": "TCP"}, "metadata": {}}))
        .collect();
    Ok(json_response(&json!({
        "namespaceId": key.namespace,
        "groupName": group,
        "name": service,
        "protectThreshold": 0.0,
        "metadata": {},
        "selector": {"type": "none"},
        "clusters": clusters,
    })))
}

fn metrics(shared: &Shared) -> HttpResponse {
    let (services, instances) = shared.store().counts();
    json_response(&json!({
        "status": "UP",
        "serviceCount": services,
        "instanceCount": instances,
        "subscribeCount": shared.pushes.subscriber_count(),
        "responsibleServiceCount": services,
        "responsibleInstanceCount": instances,
        "clientBeatCount": shared.beats.load(Ordering::Relaxed),
        "cpu": 0.0,
        "load": 0.0,
        "mem": 0.0,
    }))
}

fn console_page() -> HttpResponse {
    let mut r = Response::new(ResponseBody::whole(bytes::Bytes::from_static(
        include_str!("console.html").as_bytes(),
    )));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

/// What the console shows at most: services, instances of one service, instances in all.
const CONSOLE_SERVICES: usize = 500;
const CONSOLE_SERVICE_INSTANCES: usize = 100;
const CONSOLE_INSTANCES: usize = 5_000;

fn console_data(shared: &Shared) -> HttpResponse {
    let now = store::now_ms();
    let store = shared.store();
    let mut namespaces: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut shown_services = 0;
    let mut shown_instances = 0;
    for (key, svc) in &store.services {
        if shown_services >= CONSOLE_SERVICES || shown_instances >= CONSOLE_INSTANCES {
            break;
        }
        shown_services += 1;
        let (group, name) = model::split_grouped(&key.grouped, DEFAULT_GROUP);
        let mut instances = Vec::new();
        'clusters: for (cluster, c) in &svc.clusters {
            for inst in c.values() {
                if instances.len() >= CONSOLE_SERVICE_INSTANCES
                    || shown_instances >= CONSOLE_INSTANCES
                {
                    break 'clusters;
                }
                shown_instances += 1;
                instances.push(json!({
                    "cluster": cluster,
                    "ip": inst.ip,
                    "port": inst.port,
                    "weight": inst.weight,
                    "healthy": inst.healthy,
                    "enabled": inst.enabled,
                    "ephemeral": inst.ephemeral,
                    "metadata": inst.metadata.as_ref(),
                    "lastBeatAgoMs": now.saturating_sub(inst.last_beat_ms),
                }));
            }
        }
        let subscribers = shared.pushes.subscriber_count_of(key);
        namespaces
            .entry(key.namespace.clone())
            .or_default()
            .push(json!({
                "group": group,
                "name": name,
                "instances": instances,
                "instanceCount": svc.instance_count(),
                "subscribers": subscribers,
            }));
    }
    let (services, instance_count) = store.counts();
    drop(store);
    json_response(&json!({
        "namespaces": namespaces,
        "services": services,
        "instances": instance_count,
        "shownServices": shown_services,
        "truncated": shown_services < services,
        "subscribers": shared.pushes.subscriber_count(),
        "beats": shared.beats.load(Ordering::Relaxed),
        "time": now,
    }))
}

async fn push_loop(shared: Arc<Shared>) {
    loop {
        shared.push_wake.notified().await;
        let keys: Vec<ServiceKey> = shared
            .pushes
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for key in keys {
            let subscribers = shared.pushes.subscribers(&key);
            if subscribers.is_empty() {
                continue;
            }
            let (group, _) = model::split_grouped(&key.grouped, DEFAULT_GROUP);
            // One encoding per cluster selection, and at most the per-address share of
            // ports of any one address per change.
            let mut data: HashMap<String, Option<String>> = HashMap::new();
            let mut per_ip: HashMap<std::net::IpAddr, usize> = HashMap::new();
            for (target, clusters) in subscribers {
                let n = per_ip.entry(target.ip()).or_default();
                if *n >= shared.config.max_push_ports_per_ip {
                    continue;
                }
                *n += 1;
                let payload = data.entry(clusters.clone()).or_insert_with(|| {
                    let snap = shared.store().snapshot(&key, &clusters, false);
                    if snap.host_count() > PUSH_MAX_HOSTS {
                        tracing::debug!(service = %key.grouped, hosts = snap.host_count(),
                            "service too large to push; clients poll");
                        return None;
                    }
                    let json = encode::service_json(&snap, &key, &group, &clusters, 10_000, None);
                    Some(String::from_utf8(json).unwrap_or_default())
                });
                let Some(payload) = payload else { continue };
                shared
                    .pushes
                    .send(
                        &shared.udp,
                        &key,
                        target,
                        payload,
                        shared.config.max_subscribers,
                    )
                    .await;
            }
        }
    }
}

async fn udp_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut resend = tokio::time::interval(shared.config.push_ack_timeout / 2);
    loop {
        tokio::select! {
            r = shared.udp.recv_from(&mut buf) => match r {
                Ok((n, _from)) => shared.pushes.on_datagram(&buf[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = resend.tick() => {
                shared.pushes.resend(&shared.udp, shared.config.push_ack_timeout, shared.config.push_attempts).await;
            }
        }
    }
}

async fn expiry_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timing = Timing {
        beat_timeout: shared.config.beat_timeout,
        delete_timeout: shared.config.delete_timeout,
    };
    loop {
        tick.tick().await;
        let refused_at = shared.refused_at();
        let changed = shared.store().expire(timing, Instant::now(), refused_at);
        for key in changed {
            shared.changed(key);
        }
        shared.pushes.expire_clients(shared.config.subscriber_ttl);
        shared
            .answers()
            .retain(|_, (_, _, used)| used.elapsed() < ANSWER_CACHE_TTL);
    }
}

async fn health_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.health_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets = shared.store().persistent();
        let checks = targets
            .into_iter()
            .map(|(key, cluster, ip, port)| async move {
                let ok = tokio::time::timeout(
                    Duration::from_secs(2),
                    TcpStream::connect((ip.as_str(), port)),
                )
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false);
                (key, cluster, ip, port, ok)
            });
        for (key, cluster, ip, port, ok) in futures::future::join_all(checks).await {
            let changed = shared.store().set_health(&key, &cluster, &ip, port, ok);
            if changed {
                tracing::info!(service = %key.grouped, %ip, port, healthy = ok, "persistent instance health changed");
                shared.changed(key);
            }
        }
    }
}

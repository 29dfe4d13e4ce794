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
//! Besides naming, the config API v1 (`/nacos/v1/cs/configs`: publish, get, delete, and
//! listener long polling with `Listening-Configs`) that Dubbo's config center and metadata
//! report use (governance rules, the interface → application mapping); configs are kept
//! in `<data-dir>/config.redb`.
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
mod config;
mod configs;
mod conn;
mod console;
mod encode;
mod http;
mod instances;
mod listen;
mod push;
mod query;
mod routes;
mod store;
mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use auth::Auth;
use configs::{ConfigKey, Configs};
use conn::{Clock, Conns, LargeAnswer, LargeAnswers};
use push::Pushes;
use store::{ServiceKey, Store};

pub use config::{NamingServerConfig, ServerStats};

/// A cached large list answer: the service's change time it was built at, the bytes, and
/// when it was last asked for.
type CachedAnswer = (u64, Arc<LargeAnswer>, Instant);
/// Service, clusters asked for, healthy only, cache millis.
type AnswerKey = (ServiceKey, String, bool, u64);

struct Shared {
    config: NamingServerConfig,
    store: Mutex<Store>,
    configs: Mutex<Configs>,
    /// Bumped on every config change; parked long polls wait on it.
    config_version: watch::Sender<u64>,
    /// Long polls parked now.
    config_polls: AtomicUsize,
    /// Long polls refused at the limit.
    config_polls_refused: AtomicU64,
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
    fn configs(&self) -> MutexGuard<'_, Configs> {
        self.configs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A config changed: parked long polls look again.
    fn config_changed(&self, key: &ConfigKey) {
        tracing::debug!(data_id = %key.data_id, group = %key.group, tenant = %key.tenant, "config changed");
        self.config_version.send_modify(|v| *v += 1);
    }

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
        let configs = Configs::open(config.data_dir.as_deref()).map_err(StartError::Storage)?;
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
            configs: Mutex::new(configs),
            config_version: watch::channel(0).0,
            config_polls: AtomicUsize::new(0),
            config_polls_refused: AtomicU64::new(0),
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
            tokio::spawn(listen::accept_loop(listener, shared.clone())),
            tokio::spawn(listen::reaper_loop(shared.clone())),
            tokio::spawn(tasks::push_loop(shared.clone())),
            tokio::spawn(tasks::udp_loop(shared.clone())),
            tokio::spawn(tasks::expiry_loop(shared.clone())),
            tokio::spawn(tasks::health_loop(shared.clone())),
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
        let configs = self.shared.configs().items.len();
        ServerStats {
            configs,
            config_long_polls: self.shared.config_polls.load(Ordering::Relaxed),
            config_long_polls_refused: self.shared.config_polls_refused.load(Ordering::Relaxed),
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
        let writers = [self.shared.store().close(), self.shared.configs().close()];
        for t in writers.into_iter().flatten() {
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

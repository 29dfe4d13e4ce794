//! The embedded naming server: the Nacos Open API v1 naming calls, single node.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo_registry_nacos::server::{NamingServer, NamingServerConfig};
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

mod push;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::model::{
    self, BEAT_OK, BEAT_UNKNOWN_INSTANCE, DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE,
};
use push::Pushes;
use store::{Beat, Instance, ServiceKey, Store, Timing};

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
    /// Instances in all. Default 1,000,000.
    pub max_instances: usize,
    /// Push subscriptions in all. Default 100,000.
    pub max_subscribers: usize,
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
            max_instances: 1_000_000,
            max_subscribers: 100_000,
            subscriber_ttl: Duration::from_secs(30),
            push_ack_timeout: Duration::from_secs(1),
            push_attempts: 3,
            auth: None,
            token_ttl: Duration::from_secs(18_000),
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
}

struct Shared {
    config: NamingServerConfig,
    store: Mutex<Store>,
    pushes: Pushes,
    udp: UdpSocket,
    push_wake: Notify,
    tokens: Mutex<HashMap<String, Instant>>,
    connections: AtomicUsize,
    requests: AtomicU64,
    beats: AtomicU64,
    registrations: AtomicU64,
    logins: AtomicU64,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
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
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store),
            pushes: Pushes::new(),
            udp,
            push_wake: Notify::new(),
            tokens: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            beats: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            logins: AtomicU64::new(0),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(listener, shared.clone())),
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
        }
    }

    /// Stops serving: closes the sockets and every connection. Persistent instances are
    /// already on disk.
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
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
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections {
                        conns.spawn(reject_connection(stream, shared.config.max_connections));
                        continue;
                    }
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(serve_connection(stream, peer, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn reject_connection(mut stream: TcpStream, limit: usize) {
    let body = format!("caused: too many connections (limit {limit});");
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

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
    });
    let res = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(shared.config.max_body_size.max(8192) + 8192)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

type HttpResponse = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    r
}

fn json_response(value: &impl serde::Serialize) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
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

async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> HttpResponse {
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
    let body = match Limited::new(req.into_body(), shared.config.max_body_size)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "caused: request body too large (limit {} bytes);",
                    shared.config.max_body_size
                ),
            )
        }
    };
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
        if let Err(r) = authorize(shared, &p, bearer.as_deref()) {
            return text(r.0, r.1);
        }
    }
    let result = match (&method, path) {
        (&Method::POST, "/nacos/v1/ns/instance") => register(shared, &p),
        (&Method::DELETE, "/nacos/v1/ns/instance") => deregister(shared, &p),
        (&Method::PUT, "/nacos/v1/ns/instance") => update(shared, &p),
        (&Method::GET, "/nacos/v1/ns/instance") => one_instance(shared, &p),
        (&Method::PUT, "/nacos/v1/ns/instance/beat") => beat(shared, &p),
        (&Method::GET, "/nacos/v1/ns/instance/list") => list(shared, peer, &p),
        (&Method::GET, "/nacos/v1/ns/service/list") => service_list(shared, &p),
        (&Method::GET, "/nacos/v1/ns/service") => service_detail(shared, &p),
        (&Method::GET, "/nacos/v1/ns/operator/metrics") => Ok(metrics(shared)),
        (&Method::POST, "/nacos/v1/auth/login" | "/nacos/v1/auth/users/login") => login(shared, &p),
        (&Method::GET, "" | "/index.html" | "/nacos") => Ok(console_page()),
        (&Method::GET, "/rdubbo/console/api") => {
            if let Err(r) = authorize(shared, &p, bearer.as_deref()) {
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

fn authorize(shared: &Shared, p: &Params, bearer: Option<&str>) -> Result<(), Reject> {
    let Some((user, pass)) = &shared.config.auth else {
        return Ok(());
    };
    if let Some(token) = p.get("accessToken").or(bearer) {
        let tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        return match tokens.get(token) {
            Some(expiry) if *expiry > Instant::now() => Ok(()),
            Some(_) => Err(reject(StatusCode::FORBIDDEN, "token expired!")),
            None => Err(reject(StatusCode::FORBIDDEN, "token invalid!")),
        };
    }
    match (p.get("username"), p.get("password")) {
        (Some(u), Some(pw)) if u == user && pw == pass => Ok(()),
        (Some(_), _) => Err(reject(StatusCode::FORBIDDEN, "unknown user!")),
        _ => Err(reject(
            StatusCode::FORBIDDEN,
            "no accessToken: log in at /nacos/v1/auth/login first",
        )),
    }
}

fn login(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let user = p.required("username")?;
    let pass = p.required("password")?;
    if let Some((u, pw)) = &shared.config.auth {
        if user != u || pass != pw {
            return Err(reject(StatusCode::FORBIDDEN, "unknown user!"));
        }
    }
    let token = format!("{:032x}", fastrand::u128(..));
    let ttl = shared.config.token_ttl;
    {
        let mut tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, exp| *exp > now);
        if tokens.len() >= 100_000 {
            return Err(reject(StatusCode::SERVICE_UNAVAILABLE, "too many sessions"));
        }
        tokens.insert(token.clone(), now + ttl);
    }
    shared.logins.fetch_add(1, Ordering::Relaxed);
    Ok(json_response(&json!({
        "accessToken": token,
        "tokenTtl": ttl.as_secs(),
        "globalAdmin": true,
    })))
}

fn register(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
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
        metadata: metadata_of(shared, p.get("metadata"))?.unwrap_or_default(),
        last_beat: None,
        last_beat_ms: 0,
    };
    let mut store = shared.store();
    let exists = store
        .instance(&key, &inst.cluster, &inst.ip, inst.port)
        .is_some();
    if !exists && store.counts().1 >= shared.config.max_instances {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many instances (limit {});",
                shared.config.max_instances
            ),
        ));
    }
    let changed = store.register(&key, inst).map_err(storage_error)?;
    drop(store);
    if changed {
        shared.changed(key);
    }
    Ok(text(StatusCode::OK, "ok"))
}

fn deregister(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, cluster, ip, port) = instance_of(p, "clusterName")?;
    let removed = shared
        .store()
        .deregister(&key, &cluster, &ip, port)
        .map_err(storage_error)?;
    if removed {
        shared.changed(key);
    }
    Ok(text(StatusCode::OK, "ok"))
}

fn update(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, cluster, ip, port) = instance_of(p, "clusterName")?;
    let metadata = metadata_of(shared, p.get("metadata"))?;
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
        metadata: metadata.unwrap_or_else(|| old.metadata.clone()),
        ..old
    };
    let changed = store.register(&key, inst).map_err(storage_error)?;
    drop(store);
    if changed {
        shared.changed(key);
    }
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
                metadata,
                last_beat: None,
                last_beat_ms: 0,
            };
            if store.counts().1 < shared.config.max_instances {
                let interval = inst.beat_interval();
                changed = store.register(&key, inst).unwrap_or(false);
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

fn list(shared: &Shared, peer: SocketAddr, p: &Params) -> Result<HttpResponse, Reject> {
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
        if shared
            .pushes
            .subscribe(&key, target, &clusters, shared.config.max_subscribers)
        {
            cache_millis = 10_000;
        }
    }
    let info = shared
        .store()
        .service_info(&key, &group, &clusters, healthy_only, cache_millis);
    let mut value = serde_json::to_value(&info).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("allIPs".into(), json!(false));
        obj.insert("reachProtectionThreshold".into(), json!(false));
        obj.insert("valid".into(), json!(true));
        obj.insert("env".into(), json!(""));
        obj.insert("metadata".into(), json!({}));
        if let Some(hosts) = obj.get_mut("hosts").and_then(|h| h.as_array_mut()) {
            for h in hosts {
                if let Some(h) = h.as_object_mut() {
                    h.insert(
                        "instanceHeartBeatInterval".into(),
                        json!(model::DEFAULT_BEAT_INTERVAL_MS),
                    );
                    h.insert(
                        "instanceHeartBeatTimeOut".into(),
                        json!(shared.config.beat_timeout.as_millis() as u64),
                    );
                    h.insert(
                        "ipDeleteTimeout".into(),
                        json!(shared.config.delete_timeout.as_millis() as u64),
                    );
                    h.insert("instanceIdGenerator".into(), json!("simple"));
                }
            }
        }
    }
    Ok(json_response(&value))
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
    let names: Vec<String> = store
        .service_names(namespace)
        .filter_map(|k| k.grouped.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    let count = names.len();
    let page: Vec<String> = names
        .into_iter()
        .skip((page_no - 1).saturating_mul(page_size))
        .take(page_size)
        .collect();
    Ok(json_response(&json!({"count": count, "doms": page})))
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
    let mut r = Response::new(Full::new(Bytes::from_static(
        include_str!("console.html").as_bytes(),
    )));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

fn console_data(shared: &Shared) -> HttpResponse {
    let now = store::now_ms();
    let store = shared.store();
    let mut namespaces: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (key, svc) in &store.services {
        let (group, name) = model::split_grouped(&key.grouped, DEFAULT_GROUP);
        let mut instances = Vec::new();
        for (cluster, c) in &svc.clusters {
            for inst in c.values() {
                instances.push(json!({
                    "cluster": cluster,
                    "ip": inst.ip,
                    "port": inst.port,
                    "weight": inst.weight,
                    "healthy": inst.healthy,
                    "enabled": inst.enabled,
                    "ephemeral": inst.ephemeral,
                    "metadata": inst.metadata,
                    "lastBeatAgoMs": now.saturating_sub(inst.last_beat_ms),
                }));
            }
        }
        let subscribers = shared.pushes.subscribers(key).len();
        namespaces
            .entry(key.namespace.clone())
            .or_default()
            .push(json!({
                "group": group,
                "name": name,
                "instances": instances,
                "subscribers": subscribers,
            }));
    }
    let (services, instance_count) = store.counts();
    drop(store);
    json_response(&json!({
        "namespaces": namespaces,
        "services": services,
        "instances": instance_count,
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
            for (target, clusters) in subscribers {
                let info = shared
                    .store()
                    .service_info(&key, &group, &clusters, false, 10_000);
                let data = serde_json::to_string(&info).unwrap_or_default();
                shared
                    .pushes
                    .send(&shared.udp, target, &data, shared.config.max_subscribers)
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
        let changed = shared.store().expire(timing, Instant::now());
        for key in changed {
            shared.changed(key);
        }
        shared.pushes.expire_clients(shared.config.subscriber_ttl);
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

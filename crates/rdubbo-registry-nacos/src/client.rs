//! The Nacos registry client (Open API v1 over HTTP, UDP pushes).
//!
//! Registry URL: `nacos://[user:password@]host:port?backup=h2:p2,h3:p3&namespace=…&group=…`
//! with optional `clusterName` (default `DEFAULT`), `timeout` (ms per request, default
//! 3000), `retry.period` (ms between retries of a failed registration, default 5000),
//! `poll` (ms between list queries of a subscription; default the server's `cacheMillis`),
//! `push=false` (no UDP push subscription: polling only), `username`/`password` (or in the
//! URL's user info), `check`, `file` (the cache file, see
//! [`RegistryCache::for_registry`]).
//!
//! Dubbo URLs map to Nacos instances as Java Dubbo maps them: service
//! `providers:<interface>:<version>:<group>` in the registry's group, instance address =
//! the URL's host and port, metadata = every URL parameter plus `category`, `protocol` and
//! `path`. Subscriptions read both that name and the older one without empty trailing parts
//! (`providers:<interface>`), and notify enabled, healthy instances with a weight above 0.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{select_all, BoxFuture};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdubbo_core::registry::{empty_url, is_empty_url, subscribed_categories, RegistryCache};
use rdubbo_core::url::keys;
use rdubbo_core::{NotifyListener, Registry, RegistryError, RegistryResult, Url};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{
    self, Host, ServiceInfo, BEAT_UNKNOWN_INSTANCE, DEFAULT_CLUSTER, DEFAULT_GROUP,
    DEFAULT_NAMESPACE, META_BEAT_INTERVAL,
};

const INSTANCE: &str = "/nacos/v1/ns/instance";
const BEAT: &str = "/nacos/v1/ns/instance/beat";
const LIST: &str = "/nacos/v1/ns/instance/list";
const SERVICES: &str = "/nacos/v1/ns/service/list";
const LOGIN: &str = "/nacos/v1/auth/login";

/// A registry backed by a Nacos server (or `rdubbo registry`).
#[derive(Clone)]
pub struct NacosRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NacosRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NacosRegistry")
            .field("servers", &self.inner.servers)
            .field("namespace", &self.inner.namespace)
            .field("group", &self.inner.group)
            .finish()
    }
}

struct Registered {
    url: Url,
    task: JoinHandle<()>,
}

struct Subscription {
    url: Url,
    listener: Arc<dyn NotifyListener>,
    tasks: Vec<JoinHandle<()>>,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

struct Inner {
    url: Url,
    servers: Vec<String>,
    namespace: String,
    group: String,
    cluster: String,
    credentials: Option<(String, String)>,
    token: tokio::sync::Mutex<Option<Token>>,
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    retry_period: Duration,
    poll: Option<Duration>,
    udp: Option<Arc<UdpSocket>>,
    udp_task: Mutex<Option<JoinHandle<()>>>,
    watches: Mutex<HashMap<String, watch::Sender<Option<ServiceInfo>>>>,
    registered: Mutex<HashMap<String, Registered>>,
    subscriptions: Mutex<Vec<Subscription>>,
    available: AtomicBool,
    closed: AtomicBool,
    cache: RegistryCache,
    last_error_log: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failed request.
enum ApiError {
    /// No server could be reached (or all answered 5xx).
    Unreachable(String),
    /// A server answered with a client error.
    Rejected(StatusCode, String),
}

impl From<ApiError> for RegistryError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unreachable(m) => RegistryError::Unavailable(m),
            ApiError::Rejected(s, m) => {
                RegistryError::Backend(format!("nacos answered {}: {}", s.as_u16(), m.trim()))
            }
        }
    }
}

impl NacosRegistry {
    /// Connects to the servers of `url`. With `check=true` the first server round trip must
    /// succeed; otherwise an unreachable server is retried in the background.
    pub async fn connect(url: &Url) -> RegistryResult<NacosRegistry> {
        let registry = NacosRegistry::new(url).await?;
        if url.param_bool("check", false) {
            registry
                .inner
                .request(Method::GET, "/nacos/v1/ns/operator/metrics", Vec::new())
                .await
                .map_err(RegistryError::from)?;
        }
        Ok(registry)
    }

    /// Builds the client without contacting the server.
    pub async fn new(url: &Url) -> RegistryResult<NacosRegistry> {
        let mut servers = Vec::new();
        if !url.host().is_empty() {
            servers.push(format!("{}:{}", url.host(), url.port().unwrap_or(8848)));
        }
        if let Some(backup) = url.param_non_empty("backup") {
            for s in backup.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if s.contains(':') {
                    servers.push(s.to_owned());
                } else {
                    servers.push(format!("{s}:8848"));
                }
            }
        }
        if servers.is_empty() {
            return Err(RegistryError::Invalid(format!(
                "nacos registry URL {url} names no server"
            )));
        }
        let credentials = match (
            url.username().or(url.param_non_empty("username")),
            url.password().or(url.param_non_empty("password")),
        ) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            (Some(u), None) => Some((u.to_owned(), String::new())),
            _ => None,
        };
        let ms = |key: &str, default: u64| Duration::from_millis(url.param_or(key, default).max(1));
        let push = url.param_bool("push", true);
        let udp = if push {
            // Pushes come from the server's IP; listen on loopback when the servers are
            // local, on every interface otherwise.
            let local = servers.iter().all(|s| {
                s.starts_with("127.") || s.starts_with("localhost") || s.starts_with("[::1]")
            });
            let bind: SocketAddr = if local {
                ([127, 0, 0, 1], 0).into()
            } else {
                ([0, 0, 0, 0], 0).into()
            };
            match UdpSocket::bind(bind).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the UDP push socket; polling only");
                    None
                }
            }
        } else {
            None
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let inner = Arc::new(Inner {
            url: url.clone(),
            servers,
            namespace: url
                .param_non_empty("namespace")
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_owned(),
            group: url
                .param_non_empty("group")
                .unwrap_or(DEFAULT_GROUP)
                .to_owned(),
            cluster: url
                .param_non_empty("clusterName")
                .unwrap_or(DEFAULT_CLUSTER)
                .to_owned(),
            credentials,
            token: tokio::sync::Mutex::new(None),
            http,
            timeout: ms("timeout", 3000),
            retry_period: ms("retry.period", 5000),
            poll: url
                .param_non_empty("poll")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| Duration::from_millis(v.max(100))),
            udp,
            udp_task: Mutex::new(None),
            watches: Mutex::new(HashMap::new()),
            registered: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(Vec::new()),
            available: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            cache: RegistryCache::for_registry(url),
            last_error_log: Mutex::new(None),
        });
        if let Some(sock) = inner.udp.clone() {
            let weak = Arc::downgrade(&inner);
            *lock(&inner.udp_task) = Some(tokio::spawn(receive_pushes(sock, weak)));
        }
        Ok(NacosRegistry { inner })
    }

    /// The UDP port pushes are received on (`None` when polling only).
    pub fn push_port(&self) -> Option<u16> {
        self.inner
            .udp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
    }

    /// The namespace this client works in.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The Nacos group this client registers in.
    pub fn group(&self) -> &str {
        &self.inner.group
    }
}

/// Nacos service name and instance of a Dubbo URL.
fn instance_params(inner: &Inner, url: &Url) -> (String, Vec<(&'static str, String)>, bool) {
    let category = url.category().to_owned();
    let name = model::dubbo_service_name(
        &category,
        url.interface(),
        url.version().unwrap_or(""),
        url.group().unwrap_or(""),
    );
    let mut metadata: BTreeMap<String, String> = url
        .params()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    metadata.insert(keys::CATEGORY.to_owned(), category);
    metadata.insert("protocol".to_owned(), url.protocol().to_owned());
    metadata.insert("path".to_owned(), url.path().to_owned());
    let weight = url
        .param_non_empty("nacos.weight")
        .and_then(|w| w.parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w >= 0.0)
        .unwrap_or(1.0);
    let ephemeral = url.param_bool("ephemeral", url.param_bool("dynamic", true));
    let enabled = url.param_bool("enabled", true);
    let params = vec![
        ("serviceName", name),
        ("groupName", inner.group.clone()),
        ("clusterName", inner.cluster.clone()),
        ("ip", url.host().to_owned()),
        ("port", url.port().unwrap_or(0).to_string()),
        ("weight", weight.to_string()),
        ("enabled", enabled.to_string()),
        ("healthy", "true".to_owned()),
        ("ephemeral", ephemeral.to_string()),
        (
            "metadata",
            serde_json::to_string(&metadata).unwrap_or_default(),
        ),
    ];
    (params[0].1.clone(), params, ephemeral)
}

/// The Dubbo URL of a Nacos instance (as Java Dubbo's `NacosRegistry.buildURL`).
pub fn instance_url(host: &Host) -> Url {
    let protocol = host
        .metadata
        .get("protocol")
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or("dubbo");
    let path = host
        .metadata
        .get("path")
        .or_else(|| host.metadata.get(keys::INTERFACE))
        .map(String::as_str)
        .unwrap_or("");
    let mut url = Url::new(protocol, &host.ip, Some(host.port), path);
    for (k, v) in &host.metadata {
        if k == "protocol" || k == "path" {
            continue;
        }
        url.set_param(k, v.clone());
    }
    url
}

impl Inner {
    fn log_unreachable(&self, what: &str, err: &str) {
        let mut last = lock(&self.last_error_log);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(servers = ?self.servers, error = %err, "nacos unreachable ({what}); retrying");
        }
    }

    /// A valid token, logging in (again) when there is none or it is due for refresh.
    async fn token(&self, force: bool) -> Result<Option<String>, ApiError> {
        let Some((user, pass)) = &self.credentials else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref() {
            if !force && Instant::now() < t.refresh_at {
                return Ok(Some(t.value.clone()));
            }
        }
        let body = self
            .send_any(
                Method::POST,
                LOGIN,
                &[("username", user.clone()), ("password", pass.clone())],
                None,
            )
            .await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Login {
            access_token: String,
            #[serde(default)]
            token_ttl: u64,
        }
        let login: Login = serde_json::from_str(&body).map_err(|e| {
            ApiError::Rejected(StatusCode::OK, format!("unreadable login answer: {e}"))
        })?;
        let ttl = Duration::from_secs(login.token_ttl.max(1));
        // Refresh when a tenth of the lifetime is left, as Nacos clients do.
        let refresh_at = Instant::now() + ttl - ttl / 10;
        tracing::debug!(ttl = ?ttl, "logged in to nacos");
        *token = Some(Token {
            value: login.access_token.clone(),
            refresh_at,
        });
        Ok(Some(login.access_token))
    }

    /// Sends to the servers in turn from a random start, as the seed's `reqAPI` does.
    async fn send_any(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        token: Option<&str>,
    ) -> Result<String, ApiError> {
        let n = self.servers.len();
        let start = fastrand::usize(..n);
        let mut last = String::new();
        for i in 0..n {
            let server = &self.servers[(start + i) % n];
            match self.send_one(server, &method, path, params, token).await {
                Ok(body) => {
                    self.available.store(true, Ordering::Relaxed);
                    return Ok(body);
                }
                Err(ApiError::Unreachable(e)) => {
                    tracing::debug!(%server, error = %e, "nacos server failed; trying the next");
                    last = format!("{server}: {e}");
                }
                Err(rejected) => {
                    self.available.store(true, Ordering::Relaxed);
                    return Err(rejected);
                }
            }
        }
        self.available.store(false, Ordering::Relaxed);
        Err(ApiError::Unreachable(format!(
            "no nacos server answered {path} (last: {last})"
        )))
    }

    async fn send_one(
        &self,
        server: &str,
        method: &Method,
        path: &str,
        params: &[(&str, String)],
        token: Option<&str>,
    ) -> Result<String, ApiError> {
        let encoded = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            if path != LOGIN {
                form.append_pair("namespaceId", &self.namespace);
            }
            for (k, v) in params {
                form.append_pair(k, v);
            }
            if let Some(t) = token {
                form.append_pair("accessToken", t);
            }
            form.finish()
        };
        let (uri, body) = if *method == Method::GET {
            (format!("http://{server}{path}?{encoded}"), Bytes::new())
        } else {
            (format!("http://{server}{path}"), Bytes::from(encoded))
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("User-Agent", concat!("rdubbo/", env!("CARGO_PKG_VERSION")))
            .header(
                "Client-Version",
                concat!("rdubbo/", env!("CARGO_PKG_VERSION")),
            );
        if *method != Method::GET {
            req = req.header("Content-Type", "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ApiError::Unreachable(format!("bad request for {uri}: {e}")))?;
        let resp = tokio::time::timeout(self.timeout, async {
            let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), 16 * 1024 * 1024)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| ApiError::Unreachable(format!("timed out after {:?}", self.timeout)))?
        .map_err(ApiError::Unreachable)?;
        let (status, body) = resp;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(text)
        } else if status.is_server_error() {
            Err(ApiError::Unreachable(format!(
                "HTTP {status}: {}",
                text.trim()
            )))
        } else {
            Err(ApiError::Rejected(status, text))
        }
    }

    /// One API call with the login token; a 403 logs in again once.
    async fn request(
        &self,
        method: Method,
        path: &str,
        params: Vec<(&str, String)>,
    ) -> Result<String, ApiError> {
        let token = self.token(false).await?;
        match self
            .send_any(method.clone(), path, &params, token.as_deref())
            .await
        {
            Err(ApiError::Rejected(StatusCode::FORBIDDEN, _)) if self.credentials.is_some() => {
                let token = self.token(true).await?;
                self.send_any(method, path, &params, token.as_deref()).await
            }
            other => other,
        }
    }

    async fn register_instance(&self, url: &Url) -> Result<(), ApiError> {
        let (_, params, _) = instance_params(self, url);
        self.request(Method::POST, INSTANCE, params)
            .await
            .map(|_| ())
    }

    async fn deregister_instance(&self, url: &Url) -> Result<(), ApiError> {
        let (_, params, ephemeral) = instance_params(self, url);
        let keep = ["serviceName", "groupName", "clusterName", "ip", "port"];
        let mut params: Vec<_> = params
            .into_iter()
            .filter(|(k, _)| keep.contains(k))
            .collect();
        params.push(("ephemeral", ephemeral.to_string()));
        self.request(Method::DELETE, INSTANCE, params)
            .await
            .map(|_| ())
    }

    /// One beat; returns (interval to the next, whether the server knows the instance).
    async fn beat(&self, url: &Url, light: bool) -> Result<(Duration, bool, bool), ApiError> {
        let (name, params, _) = instance_params(self, url);
        let grouped = model::grouped(&self.group, &name);
        let mut p: Vec<(&str, String)> = vec![
            ("serviceName", grouped.clone()),
            ("groupName", self.group.clone()),
        ];
        if light {
            p.push(("clusterName", self.cluster.clone()));
            p.push(("ip", url.host().to_owned()));
            p.push(("port", url.port().unwrap_or(0).to_string()));
        } else {
            let metadata: serde_json::Value = params
                .iter()
                .find(|(k, _)| *k == "metadata")
                .and_then(|(_, v)| serde_json::from_str(v).ok())
                .unwrap_or_default();
            let beat = serde_json::json!({
                "serviceName": grouped,
                "cluster": self.cluster,
                "ip": url.host(),
                "port": url.port().unwrap_or(0),
                "weight": 1.0,
                "metadata": metadata,
                "scheduled": false,
            });
            p.push(("beat", beat.to_string()));
        }
        let body = self.request(Method::PUT, BEAT, p).await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct BeatAnswer {
            #[serde(default)]
            client_beat_interval: u64,
            #[serde(default)]
            code: i64,
            #[serde(default)]
            light_beat_enabled: bool,
        }
        let answer: BeatAnswer = serde_json::from_str(&body).unwrap_or(BeatAnswer {
            client_beat_interval: 0,
            code: 0,
            light_beat_enabled: false,
        });
        let interval = if answer.client_beat_interval > 0 {
            Duration::from_millis(answer.client_beat_interval.clamp(100, 60_000))
        } else {
            default_beat_interval(url)
        };
        Ok((
            interval,
            answer.code != BEAT_UNKNOWN_INSTANCE,
            answer.light_beat_enabled,
        ))
    }

    /// Reads a service's instances, subscribing to pushes on our UDP port.
    async fn query(&self, name: &str) -> Result<ServiceInfo, ApiError> {
        let mut params = vec![
            ("serviceName", model::grouped(&self.group, name)),
            ("groupName", self.group.clone()),
            ("clusters", String::new()),
            ("healthyOnly", "false".to_owned()),
        ];
        if let Some(port) = self
            .udp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
        {
            params.push(("udpPort", port.to_string()));
        }
        let body = self.request(Method::GET, LIST, params).await?;
        serde_json::from_str(&body).map_err(|e| {
            ApiError::Rejected(StatusCode::OK, format!("unreadable instance list: {e}"))
        })
    }

    fn watch(&self, grouped: &str) -> watch::Receiver<Option<ServiceInfo>> {
        let mut watches = lock(&self.watches);
        watches
            .entry(grouped.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Stores a newer answer for a service and wakes its subscriptions.
    fn update(&self, info: ServiceInfo) {
        let watches = lock(&self.watches);
        let Some(tx) = watches.get(&info.name) else {
            return;
        };
        tx.send_if_modified(|cur| {
            let newer = match cur {
                Some(old) => {
                    info.last_ref_time >= old.last_ref_time
                        && (old.hosts != info.hosts || old.checksum != info.checksum)
                }
                None => true,
            };
            if newer {
                *cur = Some(info);
            }
            newer
        });
    }

    /// Every service name of the group (all pages).
    async fn service_names(&self) -> Result<Vec<String>, ApiError> {
        let mut names = Vec::new();
        let page_size = 1000;
        for page in 1.. {
            let body = self
                .request(
                    Method::GET,
                    SERVICES,
                    vec![
                        ("pageNo", page.to_string()),
                        ("pageSize", page_size.to_string()),
                        ("groupName", self.group.clone()),
                    ],
                )
                .await?;
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                count: usize,
                #[serde(default)]
                doms: Vec<String>,
            }
            let p: Page = serde_json::from_str(&body).map_err(|e| {
                ApiError::Rejected(StatusCode::OK, format!("unreadable service list: {e}"))
            })?;
            let got = p.doms.len();
            names.extend(p.doms);
            if got < page_size || names.len() >= p.count || page > 10_000 {
                break;
            }
        }
        Ok(names)
    }
}

fn default_beat_interval(url: &Url) -> Duration {
    Duration::from_millis(
        url.param_or(META_BEAT_INTERVAL, model::DEFAULT_BEAT_INTERVAL_MS)
            .clamp(100, 60_000),
    )
}

/// Names a subscription reads for one category: the full Dubbo name and, when it differs,
/// the older one without empty trailing parts.
fn names_for(url: &Url, category: &str) -> Vec<String> {
    let version = url.version().filter(|v| *v != "*").unwrap_or("");
    let group = url.group().filter(|g| *g != "*").unwrap_or("");
    let full = model::dubbo_service_name(category, url.interface(), version, group);
    let legacy = model::legacy_dubbo_service_name(category, url.interface(), version, group);
    if legacy == full {
        vec![full]
    } else {
        vec![full, legacy]
    }
}

/// Dubbo URLs of a subscription from the answers of its names.
fn urls_of(subscriber: &Url, infos: &[Option<ServiceInfo>]) -> Vec<Url> {
    let mut seen = std::collections::HashSet::new();
    let mut urls = Vec::new();
    for info in infos.iter().flatten() {
        for host in &info.hosts {
            if !host.enabled || !host.healthy || host.weight <= 0.0 {
                continue;
            }
            let url = instance_url(host);
            if !subscriber.matches_provider(&url) && subscriber.category() != "consumers" {
                continue;
            }
            if seen.insert(url.to_string()) {
                urls.push(url);
            }
        }
    }
    urls.sort_by_key(|u| u.to_string());
    urls
}

/// Keeps one registration alive: registers (retrying), then beats; registers again when
/// the server no longer knows the instance.
async fn keep_registered(inner: std::sync::Weak<Inner>, url: Url, mut registered: bool) {
    let ephemeral = url.param_bool("ephemeral", url.param_bool("dynamic", true));
    let mut interval = default_beat_interval(&url);
    let mut light = false;
    loop {
        let Some(i) = inner.upgrade() else { return };
        if !registered {
            match i.register_instance(&url).await {
                Ok(()) => {
                    tracing::info!(%url, "registered in nacos");
                    registered = true;
                    light = false;
                    if !ephemeral {
                        return;
                    }
                }
                Err(e) => {
                    let e = RegistryError::from(e);
                    i.log_unreachable("register", &e.to_string());
                    let wait = i.retry_period;
                    drop(i);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
        }
        if !ephemeral {
            return;
        }
        drop(i);
        tokio::time::sleep(interval).await;
        let Some(i) = inner.upgrade() else { return };
        match i.beat(&url, light).await {
            Ok((next, known, light_ok)) => {
                interval = next;
                light = light_ok;
                if !known {
                    tracing::info!(%url, "nacos no longer knows this instance; registering again");
                    registered = false;
                }
            }
            Err(ApiError::Unreachable(e)) => i.log_unreachable("beat", &e),
            Err(e) => {
                tracing::warn!(%url, error = %RegistryError::from(e), "beat refused");
                light = false;
            }
        }
    }
}

/// Receives pushes, acknowledges them and hands the service data to its subscriptions.
async fn receive_pushes(sock: Arc<UdpSocket>, inner: std::sync::Weak<Inner>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "push receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        match decode_push(&buf[..n]) {
            Ok(push) => {
                let ack = serde_json::json!({
                    "type": if push.kind == "dom" { "push-ack" } else { "unknown-ack" },
                    "lastRefTime": push.last_ref_time,
                    "data": "",
                });
                let _ = sock.send_to(ack.to_string().as_bytes(), from).await;
                if push.kind == "dom" {
                    match serde_json::from_str::<ServiceInfo>(&push.data) {
                        Ok(info) => inner.update(info),
                        Err(e) => tracing::debug!(error = %e, "unreadable pushed service"),
                    }
                }
            }
            Err(e) => tracing::debug!(%from, error = %e, "ignoring a datagram that is not a push"),
        }
    }
}

/// A push packet.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushPacket {
    /// `dom` for a service update.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service JSON.
    #[serde(default)]
    pub data: String,
    /// Identifies the push; echoed in the ack.
    #[serde(default)]
    pub last_ref_time: u64,
}

/// Decodes a push datagram (plain or gzip-compressed JSON). Never panics; a datagram of
/// more than 64 KiB (uncompressed more than 4 MiB) is refused.
pub fn decode_push(datagram: &[u8]) -> Result<PushPacket, String> {
    use std::io::Read;
    let mut plain;
    let bytes = if datagram.starts_with(&[0x1f, 0x8b]) {
        plain = Vec::new();
        flate2::read::GzDecoder::new(datagram)
            .take(4 * 1024 * 1024 + 1)
            .read_to_end(&mut plain)
            .map_err(|e| format!("bad gzip: {e}"))?;
        if plain.len() > 4 * 1024 * 1024 {
            return Err("push larger than 4 MiB".into());
        }
        &plain[..]
    } else {
        datagram
    };
    serde_json::from_slice(bytes).map_err(|e| format!("bad push JSON: {e}"))
}

/// Follows one category of a subscription.
async fn follow(
    inner: std::sync::Weak<Inner>,
    sub_url: Url,
    category: String,
    listener: Arc<dyn NotifyListener>,
) {
    let names = names_for(&sub_url, &category);
    let mut receivers: Vec<_> = {
        let Some(i) = inner.upgrade() else { return };
        names
            .iter()
            .map(|n| i.watch(&model::grouped(&i.group, n)))
            .collect()
    };
    let mut last: Option<Vec<Url>> = None;
    let mut next_poll = tokio::time::Instant::now();
    let mut interval = Duration::from_secs(10);
    loop {
        if tokio::time::Instant::now() >= next_poll {
            let Some(i) = inner.upgrade() else { return };
            let mut ok = true;
            for name in &names {
                match i.query(name).await {
                    Ok(info) => {
                        if info.cache_millis > 0 {
                            interval = Duration::from_millis(info.cache_millis.clamp(500, 60_000));
                        }
                        i.update(info);
                    }
                    Err(e) => {
                        ok = false;
                        let e = RegistryError::from(e);
                        i.log_unreachable("subscribe", &e.to_string());
                    }
                }
            }
            if let Some(p) = i.poll {
                interval = p;
            }
            if !ok && last.is_none() {
                // Nothing known yet and the server is away: answer from the cache file.
                let cached: Vec<Url> = i
                    .cache
                    .get(&sub_url.service_key())
                    .into_iter()
                    .filter(|u| u.category() == category && !is_empty_url(u))
                    .collect();
                if !cached.is_empty() {
                    tracing::info!(service = %sub_url.service_key(), count = cached.len(), "nacos unreachable; using the cached list");
                    last = Some(cached.clone());
                    listener.notify(cached);
                }
            }
            next_poll = tokio::time::Instant::now()
                + if ok {
                    interval
                } else {
                    i.retry_period.min(interval)
                };
        }
        let infos: Vec<Option<ServiceInfo>> = receivers
            .iter_mut()
            .map(|r| r.borrow_and_update().clone())
            .collect();
        if infos.iter().any(Option::is_some) {
            let urls = urls_of(&sub_url, &infos);
            if last.as_ref() != Some(&urls) {
                last = Some(urls.clone());
                if let Some(i) = inner.upgrade() {
                    i.cache.put(&sub_url.service_key(), &category, &urls);
                }
                if urls.is_empty() {
                    listener.notify(vec![empty_url(&sub_url, &category)]);
                } else {
                    listener.notify(urls);
                }
            }
        }
        let changed = select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
        tokio::select! {
            (res, _, _) = changed => {
                if res.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_poll) => {}
        }
    }
}

impl Registry for NacosRegistry {
    fn url(&self) -> &Url {
        &self.inner.url
    }

    fn is_available(&self) -> bool {
        self.inner.available.load(Ordering::Relaxed)
    }

    fn register(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            if inner.closed.load(Ordering::Relaxed) {
                return Err(RegistryError::Closed);
            }
            if url.host().is_empty() {
                return Err(RegistryError::Invalid(format!("{url} has no host")));
            }
            let first = inner.register_instance(&url).await;
            let (done, result) = match first {
                Ok(()) => (true, Ok(())),
                Err(ApiError::Unreachable(e)) => (false, Err(RegistryError::Unavailable(e))),
                Err(e) => return Err(e.into()),
            };
            let task = tokio::spawn(keep_registered(Arc::downgrade(inner), url.clone(), done));
            let key = url.to_string();
            if let Some(old) = lock(&inner.registered).insert(key, Registered { url, task }) {
                old.task.abort();
            }
            result
        })
    }

    fn unregister(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            if let Some(r) = lock(&self.inner.registered).remove(&url.to_string()) {
                r.task.abort();
            }
            self.inner
                .deregister_instance(&url)
                .await
                .map_err(RegistryError::from)
        })
    }

    fn subscribe(
        &self,
        url: &Url,
        listener: Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            if inner.closed.load(Ordering::Relaxed) {
                return Err(RegistryError::Closed);
            }
            if url.interface() == keys::ANY {
                return Err(RegistryError::Invalid(
                    "the nacos registry does not watch interface=*; use lookup".into(),
                ));
            }
            let tasks = subscribed_categories(&url)
                .into_iter()
                .map(|category| {
                    tokio::spawn(follow(
                        Arc::downgrade(inner),
                        url.clone(),
                        category,
                        listener.clone(),
                    ))
                })
                .collect();
            lock(&inner.subscriptions).push(Subscription {
                url,
                listener,
                tasks,
            });
            Ok(())
        })
    }

    fn unsubscribe(
        &self,
        url: &Url,
        listener: &Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        let listener = listener.clone();
        Box::pin(async move {
            lock(&self.inner.subscriptions).retain(|s| {
                let same = s.url == url && Arc::ptr_eq(&s.listener, &listener);
                if same {
                    for t in &s.tasks {
                        t.abort();
                    }
                }
                !same
            });
            Ok(())
        })
    }

    fn lookup(&self, url: &Url) -> BoxFuture<'_, RegistryResult<Vec<Url>>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let wanted = subscribed_categories(&url);
            let all_categories = url.param("category") == Some(keys::ANY);
            let names: Vec<(String, String)> = if url.interface() == keys::ANY {
                inner
                    .service_names()
                    .await?
                    .into_iter()
                    .filter_map(|n| {
                        let (category, ..) = model::parse_dubbo_service_name(&n)?;
                        (all_categories || wanted.contains(&category)).then_some((category, n))
                    })
                    .collect()
            } else {
                let cats = if all_categories {
                    vec![
                        keys::PROVIDERS.to_owned(),
                        "consumers".to_owned(),
                        "routers".to_owned(),
                        "configurators".to_owned(),
                    ]
                } else {
                    wanted
                };
                cats.into_iter()
                    .flat_map(|c| names_for(&url, &c).into_iter().map(move |n| (c.clone(), n)))
                    .collect()
            };
            let mut out = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (_, name) in names {
                let mut params = vec![
                    ("serviceName", model::grouped(&inner.group, &name)),
                    ("groupName", inner.group.clone()),
                    ("healthyOnly", "false".to_owned()),
                ];
                params.push(("clusters", String::new()));
                let body = inner.request(Method::GET, LIST, params).await?;
                let info: ServiceInfo = serde_json::from_str(&body).map_err(|e| {
                    RegistryError::Backend(format!("unreadable instance list: {e}"))
                })?;
                for host in info.hosts.iter().filter(|h| h.enabled && h.healthy) {
                    let u = instance_url(host);
                    if (url.interface() == keys::ANY
                        || url.matches_provider(&u)
                        || u.category() != keys::PROVIDERS)
                        && seen.insert(u.to_string())
                    {
                        out.push(u);
                    }
                }
            }
            Ok(out)
        })
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.closed.store(true, Ordering::Relaxed);
            for s in lock(&inner.subscriptions).drain(..) {
                for t in s.tasks {
                    t.abort();
                }
            }
            let registered: Vec<Registered> =
                lock(&inner.registered).drain().map(|(_, r)| r).collect();
            for r in registered {
                r.task.abort();
                if let Err(e) = inner.deregister_instance(&r.url).await {
                    tracing::warn!(url = %r.url, error = %RegistryError::from(e), "deregister on close failed");
                }
            }
            if let Some(t) = lock(&inner.udp_task).take() {
                t.abort();
            }
            inner.cache.flush();
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for s in lock(&self.subscriptions).drain(..) {
            for t in s.tasks {
                t.abort();
            }
        }
        for (_, r) in lock(&self.registered).drain() {
            r.task.abort();
        }
        if let Some(t) = lock(&self.udp_task).take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn instance_urls_carry_protocol_path_and_parameters() {
        let host = Host {
            instance_id: String::new(),
            ip: "127.0.0.1".into(),
            port: 20880,
            weight: 1.0,
            healthy: true,
            enabled: true,
            ephemeral: true,
            cluster_name: "DEFAULT".into(),
            service_name: "DEFAULT_GROUP@@providers:com.foo.Bar::".into(),
            metadata: [
                ("protocol", "jsonrpc"),
                ("path", "com.foo.Bar"),
                ("interface", "com.foo.Bar"),
                ("category", "providers"),
                ("methods", "a,b"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        };
        let url = instance_url(&host);
        assert_eq!(url.protocol(), "jsonrpc");
        assert_eq!(url.address(), "127.0.0.1:20880");
        assert_eq!(url.path(), "com.foo.Bar");
        assert_eq!(url.param("methods"), Some("a,b"));
        assert_eq!(url.param("protocol"), None);
    }

    #[test]
    fn push_packets_plain_and_gzip() {
        let raw = br#"{"type":"dom","data":"{\"name\":\"G@@s\",\"hosts\":[]}","lastRefTime":42}"#;
        let p = decode_push(raw).unwrap();
        assert_eq!((p.kind.as_str(), p.last_ref_time), ("dom", 42));
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(raw).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(decode_push(&z).unwrap().data, p.data);
        assert!(decode_push(b"\x1f\x8bgarbage").is_err());
        assert!(decode_push(b"{").is_err());
    }

    #[test]
    fn subscriptions_read_both_names() {
        let url: Url = "consumer://127.0.0.1/com.foo.Bar?interface=com.foo.Bar"
            .parse()
            .unwrap();
        assert_eq!(
            names_for(&url, "providers"),
            vec!["providers:com.foo.Bar::", "providers:com.foo.Bar"]
        );
        let url: Url = "consumer://127.0.0.1/com.foo.Bar?interface=com.foo.Bar&version=1.0&group=g"
            .parse()
            .unwrap();
        assert_eq!(
            names_for(&url, "providers"),
            vec!["providers:com.foo.Bar:1.0:g"]
        );
    }

    proptest! {
        #[test]
        fn push_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_push(&data);
        }

        #[test]
        fn gzip_push_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = vec![0x1f, 0x8b];
            d.extend(data);
            let _ = decode_push(&d);
        }
    }
}

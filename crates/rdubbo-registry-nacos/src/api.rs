//! The Nacos Open API v1 over HTTP: servers in turn, login tokens, instances, beats,
//! instance lists and service names; and the latest service data of each watched name.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rdubbo_core::url::keys;
use rdubbo_core::{RegistryError, Url};
use rdubbo_registry::BackendEvents;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::model::{self, Host, ServiceInfo, BEAT_UNKNOWN_INSTANCE, META_BEAT_INTERVAL};

pub(crate) const INSTANCE: &str = "/nacos/v1/ns/instance";
const BEAT: &str = "/nacos/v1/ns/instance/beat";
pub(crate) const LIST: &str = "/nacos/v1/ns/instance/list";
const SERVICES: &str = "/nacos/v1/ns/service/list";
const LOGIN: &str = "/nacos/v1/auth/login";

pub(crate) struct Token {
    value: String,
    refresh_at: Instant,
}

/// What the client's tasks share: the servers and how to talk to them, the push socket,
/// the latest data of each watched service.
pub(crate) struct Shared {
    pub(crate) servers: Vec<String>,
    pub(crate) namespace: String,
    pub(crate) group: String,
    pub(crate) cluster: String,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) token: tokio::sync::Mutex<Option<Token>>,
    pub(crate) http: Client<HttpConnector, Full<Bytes>>,
    pub(crate) timeout: Duration,
    pub(crate) retry_period: Duration,
    pub(crate) poll: Option<Duration>,
    pub(crate) udp: Option<Arc<UdpSocket>>,
    pub(crate) watches: Mutex<HashMap<String, watch::Sender<Option<ServiceInfo>>>>,
    pub(crate) available: AtomicBool,
    pub(crate) last_error_log: Mutex<Option<Instant>>,
    /// Told when a server answers again after none did.
    pub(crate) events: BackendEvents,
    /// Bumped when a server answers again after none did (mappings are written again).
    pub(crate) epoch: watch::Sender<u64>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failed request.
pub(crate) enum ApiError {
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

/// One Nacos instance to register and keep alive: a Dubbo URL's (service
/// `providers:<interface>:<version>:<group>`) or an application instance (service `<app>`).
#[derive(Debug, Clone)]
pub(crate) struct InstanceSpec {
    /// The service name without its group.
    pub(crate) service: String,
    pub(crate) group: String,
    pub(crate) ip: String,
    pub(crate) port: u16,
    pub(crate) weight: f64,
    pub(crate) enabled: bool,
    pub(crate) ephemeral: bool,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl InstanceSpec {
    /// The instance of a Dubbo URL, as Java Dubbo's `NacosRegistry` registers it.
    pub(crate) fn of_url(inner: &Shared, url: &Url) -> InstanceSpec {
        let category = url.category().to_owned();
        let service = model::dubbo_service_name(
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
        InstanceSpec {
            service,
            group: inner.group.clone(),
            ip: url.host().to_owned(),
            port: url.port().unwrap_or(0),
            weight,
            enabled: url.param_bool("enabled", true),
            ephemeral: url.param_bool("ephemeral", url.param_bool("dynamic", true)),
            metadata,
        }
    }

    /// What identifies it: group, service, address.
    pub(crate) fn id(&self) -> String {
        format!("{}@@{}#{}:{}", self.group, self.service, self.ip, self.port)
    }

    fn params(&self, inner: &Shared) -> Vec<(&'static str, String)> {
        vec![
            ("serviceName", self.service.clone()),
            ("groupName", self.group.clone()),
            ("clusterName", inner.cluster.clone()),
            ("ip", self.ip.clone()),
            ("port", self.port.to_string()),
            ("weight", self.weight.to_string()),
            ("enabled", self.enabled.to_string()),
            ("healthy", "true".to_owned()),
            ("ephemeral", self.ephemeral.to_string()),
            (
                "metadata",
                serde_json::to_string(&self.metadata).unwrap_or_default(),
            ),
        ]
    }

    /// The beat interval the instance's metadata asks for, else Nacos' default.
    pub(crate) fn default_beat_interval(&self) -> Duration {
        Duration::from_millis(
            self.metadata
                .get(META_BEAT_INTERVAL)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(model::DEFAULT_BEAT_INTERVAL_MS)
                .clamp(100, 60_000),
        )
    }
}

/// Options of one call beyond method, path and parameters.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallOptions {
    /// Extra request headers.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The deadline of the call instead of the client's `timeout`.
    pub(crate) timeout: Option<Duration>,
    /// Leave out the `namespaceId` parameter (the config API names its `tenant`).
    pub(crate) no_namespace: bool,
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

impl Shared {
    pub(crate) fn log_unreachable(&self, what: &str, err: &str) {
        let mut last = lock(&self.last_error_log);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(servers = ?self.servers, error = %err, "nacos unreachable ({what}); retrying");
        }
    }

    /// A server answered: after a time when none did, the base retries and notifies again.
    fn answered(&self) {
        if !self.available.swap(true, Ordering::Relaxed) {
            tracing::info!(servers = ?self.servers, "nacos reachable again");
            self.events.reconnected();
            self.epoch.send_modify(|e| *e += 1);
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
                &CallOptions::default(),
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
        options: &CallOptions,
    ) -> Result<String, ApiError> {
        let n = self.servers.len();
        let start = fastrand::usize(..n);
        let mut last = String::new();
        for i in 0..n {
            let server = &self.servers[(start + i) % n];
            match self
                .send_one(server, &method, path, params, token, options)
                .await
            {
                Ok(body) => {
                    self.answered();
                    return Ok(body);
                }
                Err(ApiError::Unreachable(e)) => {
                    tracing::debug!(%server, error = %e, "nacos server failed; trying the next");
                    last = format!("{server}: {e}");
                }
                Err(rejected) => {
                    self.answered();
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
        options: &CallOptions,
    ) -> Result<String, ApiError> {
        let encoded = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            if path != LOGIN && !options.no_namespace {
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
        for (name, value) in &options.headers {
            req = req.header(*name, value.as_str());
        }
        let timeout = options.timeout.unwrap_or(self.timeout);
        let req = req
            .body(Full::new(body))
            .map_err(|e| ApiError::Unreachable(format!("bad request for {uri}: {e}")))?;
        let resp = tokio::time::timeout(timeout, async {
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
        .map_err(|_| ApiError::Unreachable(format!("timed out after {timeout:?}")))?
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
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        params: Vec<(&str, String)>,
    ) -> Result<String, ApiError> {
        self.request_with(method, path, params, &CallOptions::default())
            .await
    }

    /// [`request`](Self::request) with headers, a deadline of its own, or no namespace.
    pub(crate) async fn request_with(
        &self,
        method: Method,
        path: &str,
        params: Vec<(&str, String)>,
        options: &CallOptions,
    ) -> Result<String, ApiError> {
        let token = self.token(false).await?;
        match self
            .send_any(method.clone(), path, &params, token.as_deref(), options)
            .await
        {
            Err(ApiError::Rejected(StatusCode::FORBIDDEN, _)) if self.credentials.is_some() => {
                let token = self.token(true).await?;
                self.send_any(method, path, &params, token.as_deref(), options)
                    .await
            }
            other => other,
        }
    }

    pub(crate) async fn register_instance(&self, spec: &InstanceSpec) -> Result<(), ApiError> {
        self.request(Method::POST, INSTANCE, spec.params(self))
            .await
            .map(|_| ())
    }

    pub(crate) async fn deregister_instance(&self, spec: &InstanceSpec) -> Result<(), ApiError> {
        let keep = ["serviceName", "groupName", "clusterName", "ip", "port"];
        let mut params: Vec<_> = spec
            .params(self)
            .into_iter()
            .filter(|(k, _)| keep.contains(k))
            .collect();
        params.push(("ephemeral", spec.ephemeral.to_string()));
        self.request(Method::DELETE, INSTANCE, params)
            .await
            .map(|_| ())
    }

    /// One beat; returns (interval to the next, whether the server knows the instance,
    /// whether light beats will do).
    pub(crate) async fn beat(
        &self,
        spec: &InstanceSpec,
        light: bool,
    ) -> Result<(Duration, bool, bool), ApiError> {
        let grouped = model::grouped(&spec.group, &spec.service);
        let mut p: Vec<(&str, String)> = vec![
            ("serviceName", grouped.clone()),
            ("groupName", spec.group.clone()),
        ];
        if light {
            p.push(("clusterName", self.cluster.clone()));
            p.push(("ip", spec.ip.clone()));
            p.push(("port", spec.port.to_string()));
        } else {
            let beat = serde_json::json!({
                "serviceName": grouped,
                "cluster": self.cluster,
                "ip": spec.ip,
                "port": spec.port,
                "weight": spec.weight,
                "metadata": spec.metadata,
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
            spec.default_beat_interval()
        };
        Ok((
            interval,
            answer.code != BEAT_UNKNOWN_INSTANCE,
            answer.light_beat_enabled,
        ))
    }

    /// Reads a service's instances, subscribing to pushes on our UDP port.
    pub(crate) async fn query(&self, name: &str) -> Result<ServiceInfo, ApiError> {
        self.query_in(&self.group, name).await
    }

    /// Reads a service of `group`, subscribing to pushes on our UDP port.
    pub(crate) async fn query_in(&self, group: &str, name: &str) -> Result<ServiceInfo, ApiError> {
        let mut params = vec![
            ("serviceName", model::grouped(group, name)),
            ("groupName", group.to_owned()),
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

    pub(crate) fn watch(&self, grouped: &str) -> watch::Receiver<Option<ServiceInfo>> {
        let mut watches = lock(&self.watches);
        watches
            .entry(grouped.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Stores a newer answer for a service and wakes its subscriptions.
    pub(crate) fn update(&self, info: ServiceInfo) {
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
    pub(crate) async fn service_names(&self) -> Result<Vec<String>, ApiError> {
        self.service_names_in(&self.group).await
    }

    /// Every service name of `group` (all pages).
    pub(crate) async fn service_names_in(&self, group: &str) -> Result<Vec<String>, ApiError> {
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
                        ("groupName", group.to_owned()),
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

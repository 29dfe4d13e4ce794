//! A whole application from one configuration file: registries, protocol servers, exported
//! services, references, metrics, QoS commands and graceful shutdown.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # #[rdubbo::service(interface = "org.example.Greeter", version = "1.0.0")]
//! # pub trait Greeter { async fn say_hello(&self, name: String) -> rdubbo::RpcResult<String>; }
//! # struct Hello;
//! # impl Greeter for Hello {
//! #     async fn say_hello(&self, name: String) -> rdubbo::RpcResult<String> { Ok(name) }
//! # }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo::app::{Application, Config};
//!
//! let config = Config::from_file("examples/provider.toml")?;
//! let app = Application::builder(config)
//!     .service("greeter", GreeterServer::<Hello>::info(), Arc::new(GreeterServer::new(Hello)))
//!     .start()
//!     .await?;
//! app.run_until_signal().await; // SIGINT/SIGTERM: offline, wait, drain, close
//! # Ok(()) }
//! ```
//!
//! The shutdown sequence ([`Application::shutdown`](crate::app::Application::shutdown)):
//! 1. `ready` turns false (QoS `ready` answers so);
//! 2. every exported service is unregistered from every registry;
//! 3. `shutdown.unregister_wait` passes, so consumers drop this provider;
//! 4. the servers refuse new calls with a retryable "shutting down" status and give
//!    in-flight calls up to `shutdown.drain` to finish, then close their connections;
//! 5. references unsubscribe and consumers unregister; registries are closed;
//! 6. the QoS and metrics endpoints stop.

pub mod config;
pub mod metrics;
mod qos;
pub mod trace;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{Config, ConfigError, Format};
pub use metrics::Metrics;

use crate::cluster::filter::{self, with_filters, Filter, Side};
use crate::consumer::Reference;
use crate::provider::{sort_params, Provider, Registration};
use crate::{BoxFuture, Invocation, Invoker, Registry, Reply, RpcResult, ServiceInfo, Url};

/// Why an application could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration is wrong.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Something the configuration names could not be started.
    #[error("{what}: {reason}")]
    Start {
        /// The configuration key of what failed (`protocols.dubbo`, `metrics.listen` …).
        what: String,
        /// Why.
        reason: String,
    },
}

fn start_err(what: impl Into<String>, reason: impl ToString) -> AppError {
    AppError::Start {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Builds an [`Application`] from a [`Config`] and the service implementations.
pub struct ApplicationBuilder {
    config: Config,
    source: String,
    services: Vec<(String, ServiceInfo, Arc<dyn Invoker>)>,
}

/// One exported service on one protocol.
pub(crate) struct Export {
    pub(crate) id: String,
    pub(crate) protocol: String,
    pub(crate) url: Url,
    /// The URL in its registries, following its `override://` rules.
    pub(crate) registration: Arc<Registration>,
    pub(crate) online: AtomicBool,
}

/// What the QoS commands and the metrics endpoint look at.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registries: Vec<(String, Arc<dyn Registry>)>,
    pub(crate) providers: Mutex<Vec<(String, Option<Provider>, SocketAddr)>>,
    pub(crate) exports: Vec<Export>,
    /// Local invokers (with the provider filters) by interface, for QoS `invoke`.
    pub(crate) local: HashMap<String, Arc<dyn Invoker>>,
    pub(crate) references: BTreeMap<String, Arc<Reference>>,
    pub(crate) ready: AtomicBool,
}

/// A running application.
pub struct Application {
    state: Arc<AppState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    qos_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    #[cfg(unix)]
    signals: Mutex<Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>>,
}

impl Application {
    /// A builder for the application `config` describes.
    pub fn builder(config: Config) -> ApplicationBuilder {
        ApplicationBuilder {
            config,
            source: "configuration".into(),
            services: Vec::new(),
        }
    }

    /// A builder from a file (TOML or YAML by extension) with `RDUBBO_…` overrides.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<ApplicationBuilder, ConfigError> {
        let path = path.as_ref();
        let mut b = Application::builder(Config::from_file(path)?);
        b.source = path.display().to_string();
        Ok(b)
    }

    /// The invoker of the reference with this id (`consumer.references.<id>`).
    pub fn reference(&self, id: &str) -> Option<Arc<dyn Invoker>> {
        self.state
            .references
            .get(id)
            .map(|r| r.clone() as Arc<dyn Invoker>)
    }

    /// The reference with this id, to look at its providers.
    pub fn reference_handle(&self, id: &str) -> Option<Arc<Reference>> {
        self.state.references.get(id).cloned()
    }

    /// Listen addresses of the protocol servers, by protocol id.
    pub fn server_addrs(&self) -> Vec<(String, SocketAddr)> {
        lock(&self.state.providers)
            .iter()
            .map(|(id, _, addr)| (id.clone(), *addr))
            .collect()
    }

    /// The provider URLs as exported (registered as they are, or with the parameters of
    /// the `override://` rules that target them).
    pub fn exported_urls(&self) -> Vec<Url> {
        self.state.exports.iter().map(|e| e.url.clone()).collect()
    }

    /// The QoS address, when QoS is enabled.
    pub fn qos_addr(&self) -> Option<SocketAddr> {
        self.qos_addr
    }

    /// The metrics address, when metrics are enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Whether the application serves traffic (started, not stopping).
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::SeqCst)
    }

    /// Registers the exported services whose service key or interface contains `pattern`
    /// (all when empty). Returns how many.
    pub async fn online(&self, pattern: &str) -> usize {
        self.state.set_online(pattern, true).await
    }

    /// Unregisters (without stopping) the exported services matching `pattern`.
    pub async fn offline(&self, pattern: &str) -> usize {
        self.state.set_online(pattern, false).await
    }

    /// Waits for SIGINT or SIGTERM, then [`shutdown`](Self::shutdown). The signal handlers
    /// are installed by [`ApplicationBuilder::start`], so a signal that comes at any time
    /// after the start is not lost.
    pub async fn run_until_signal(self) {
        #[cfg(unix)]
        {
            let signals = lock(&self.signals).take();
            match signals {
                Some((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        self.shutdown().await;
    }

    /// Stops in order (see the [module](self) docs).
    pub async fn shutdown(self) {
        let state = &self.state;
        state.ready.store(false, Ordering::SeqCst);
        let unregistered = state.set_online("", false).await;
        for e in &state.exports {
            e.registration.close().await;
        }
        let wait = state.config.shutdown.unregister_wait.0;
        if unregistered > 0 && !wait.is_zero() {
            tracing::info!(
                ?wait,
                "unregistered; waiting for consumers to drop this provider"
            );
            tokio::time::sleep(wait).await;
        }
        let providers: Vec<Provider> = lock(&state.providers)
            .iter_mut()
            .filter_map(|(_, p, _)| p.take())
            .collect();
        futures_join_all(providers.into_iter().map(|p| p.stop())).await;
        for reference in state.references.values() {
            reference.close().await;
        }
        for (_, registry) in &state.registries {
            registry.destroy().await;
        }
        for task in &self.tasks {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    pub(crate) async fn set_online(&self, pattern: &str, online: bool) -> usize {
        let mut n = 0;
        for e in &self.exports {
            let key = e.url.service_key();
            if !(pattern.is_empty() || key.contains(pattern) || e.id == pattern) {
                continue;
            }
            if e.online.swap(online, Ordering::SeqCst) == online {
                continue;
            }
            n += 1;
            e.registration.set_online(online).await;
        }
        n
    }

    /// Updates the gauges read at scrape time, then renders.
    pub(crate) fn render_metrics(&self) -> String {
        let m = &self.metrics;
        for (id, provider, addr) in lock(&self.providers).iter() {
            let protocol = self
                .config
                .protocols
                .get(id)
                .and_then(|p| p.name.clone())
                .unwrap_or_else(|| id.clone());
            let n = provider.as_ref().map_or(0, |p| p.connections());
            m.connections
                .get_or_create(&metrics::ServerLabels {
                    protocol,
                    address: addr.to_string(),
                })
                .set(n as i64);
        }
        for (id, registry) in &self.registries {
            m.registry_up
                .get_or_create(&metrics::RegistryLabels {
                    registry: id.clone(),
                    address: registry.url().address(),
                })
                .set(registry.is_available() as i64);
        }
        for reference in self.references.values() {
            let dir = reference.directory();
            let service = dir.service_key();
            let labels = metrics::ServiceLabels {
                service: service.clone(),
            };
            m.providers
                .get_or_create(&labels)
                .set(dir.providers().len() as i64);
            let updates = dir.updates();
            let mut seen = lock(&m.seen_updates);
            let last = seen.insert(service, updates).unwrap_or(0);
            m.notifications
                .get_or_create(&labels)
                .inc_by(updates.saturating_sub(last));
        }
        for e in &self.exports {
            m.online
                .get_or_create(&metrics::ExportLabels {
                    service: e.url.service_key(),
                    protocol: e.protocol.clone(),
                })
                .set(e.online.load(Ordering::SeqCst) as i64);
        }
        m.render()
    }
}

/// Sets a default timeout (per method first) on calls that have none.
struct DefaultTimeout {
    default: Duration,
    methods: HashMap<String, Duration>,
}

impl Filter for DefaultTimeout {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        mut invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        if invocation.timeout.is_none() {
            let t = self
                .methods
                .get(&*invocation.method)
                .copied()
                .unwrap_or(self.default);
            invocation.timeout = Some(t);
        }
        next.invoke(invocation)
    }
}

impl ApplicationBuilder {
    /// Names the configuration's source in errors (set by [`Application::from_file`]).
    pub fn source(mut self, name: &str) -> Self {
        self.source = name.to_owned();
        self
    }

    /// The implementation of the service `key`: the id of a `provider.services` entry or
    /// its interface name.
    pub fn service(mut self, key: &str, info: ServiceInfo, invoker: Arc<dyn Invoker>) -> Self {
        self.services.push((key.to_owned(), info, invoker));
        self
    }

    /// Connects the registries, starts the servers, registers the services, builds the
    /// references, then serves metrics and QoS.
    pub async fn start(self) -> Result<Application, AppError> {
        let cfg = self.config;
        let src = self.source;
        let metrics = Arc::new(Metrics::new());
        #[cfg(unix)]
        let signals = {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(t), Ok(i)) => Some((t, i)),
                _ => None,
            }
        };

        // Implementations, matched with the configured services.
        let mut impls: HashMap<String, (ServiceInfo, Arc<dyn Invoker>)> = HashMap::new();
        for (key, info, invoker) in self.services {
            let id = cfg
                .provider
                .services
                .iter()
                .find(|(id, s)| **id == key || s.interface == key)
                .map(|(id, _)| id.clone());
            let Some(id) = id else {
                return Err(ConfigError::at_key(
                    &src,
                    "provider.services",
                    format!("an implementation was given for `{key}`, but no service has that id or interface"),
                )
                .into());
            };
            let s = &cfg.provider.services[&id];
            if s.interface != info.interface {
                return Err(ConfigError::at_key(
                    &src,
                    format!("provider.services.{id}.interface"),
                    format!(
                        "is `{}`, but the implementation given serves `{}`",
                        s.interface, info.interface
                    ),
                )
                .into());
            }
            impls.insert(id, (info, invoker));
        }
        for (id, s) in &cfg.provider.services {
            if !impls.contains_key(id) {
                return Err(ConfigError::at_key(
                    &src,
                    format!("provider.services.{id}"),
                    format!(
                        "no implementation of `{}` was given to the application",
                        s.interface
                    ),
                )
                .into());
            }
        }

        // Registries.
        let mut registries: Vec<(String, Arc<dyn Registry>)> = Vec::new();
        for (id, r) in &cfg.registries {
            let mut url: Url = r
                .address
                .parse()
                .map_err(|e| start_err(format!("registries.{id}.address"), e))?;
            for (k, v) in &r.params {
                url.set_param(k, v.clone());
            }
            let registry = crate::registry::connect_url(&url)
                .await
                .map_err(|e| start_err(format!("registries.{id}"), e))?;
            registries.push((id.clone(), registry));
        }
        let registry_by_id = |id: &str| {
            registries
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, r)| r.clone())
        };

        // Provider side: one server per protocol that serves something.
        let app = &cfg.application;
        let mut providers = Vec::new();
        let mut exports = Vec::new();
        let mut local: HashMap<String, Arc<dyn Invoker>> = HashMap::new();
        for (pid, p) in &cfg.protocols {
            let name = p.name.clone().unwrap_or_else(|| pid.clone());
            let on_this: Vec<&String> = cfg
                .provider
                .services
                .iter()
                .filter(|(_, s)| {
                    s.protocols
                        .as_ref()
                        .or(cfg.provider.protocols.as_ref())
                        .is_none_or(|ps| ps.contains(pid))
                })
                .map(|(id, _)| id)
                .collect();
            if on_this.is_empty() {
                continue;
            }
            let ip: IpAddr =
                p.ip.as_deref()
                    .unwrap_or("127.0.0.1")
                    .parse()
                    .map_err(|e| start_err(format!("protocols.{pid}.ip"), e))?;
            let port = p
                .port
                .unwrap_or(if name == "dubbo" { 20880 } else { 30880 });
            let mut builder = Provider::builder(SocketAddr::new(ip, port))
                .protocol(&name)
                .application(&app.name)
                .unregister_wait(Duration::ZERO)
                .drain(cfg.shutdown.drain.0);
            if let Some(h) = &p.host {
                builder = builder.host(h);
            }
            #[cfg(feature = "dubbo")]
            if name == "dubbo" {
                let mut c = rdubbo_protocol_dubbo::ServerConfig::default();
                if let Some(n) = p.max_connections {
                    c.max_connections = n;
                }
                if let Some(n) = p.payload {
                    c.payload = n;
                }
                if let Some(n) = p.max_pending {
                    c.max_pending = n;
                }
                builder = builder.dubbo_config(c);
            }
            if name == "jsonrpc" {
                let mut c = rdubbo_protocol_jsonrpc::ServerConfig::default();
                if let Some(n) = p.max_connections {
                    c.max_connections = n;
                }
                if let Some(n) = p.payload {
                    c.max_body_size = n;
                }
                if let Some(n) = p.max_pending {
                    c.max_concurrent_requests = n;
                }
                builder = builder.server_config(c);
            }
            let mut templates = Vec::new();
            for id in &on_this {
                let s = &cfg.provider.services[*id];
                let (code_info, invoker) = &impls[*id];
                let info = ServiceInfo {
                    interface: s.interface.clone(),
                    version: s
                        .version
                        .clone()
                        .or_else(|| code_info.version.clone())
                        .filter(|v| !v.is_empty()),
                    group: s
                        .group
                        .clone()
                        .or_else(|| code_info.group.clone())
                        .filter(|g| !g.is_empty()),
                    methods: code_info.methods.clone(),
                };
                let params = service_params(&cfg, s);
                let mut template = Url::new(&name, "0.0.0.0", None, &s.interface);
                for (k, v) in &params {
                    template.set_param(k, v.clone());
                }
                let mut filters: Vec<Arc<dyn Filter>> = vec![
                    trace::filter(Side::Provider),
                    metrics.filter(Side::Provider),
                ];
                filters.extend(filter::from_url(&template, Side::Provider));
                let wrapped = with_filters(invoker.clone(), &filters);
                local
                    .entry(s.interface.clone())
                    .or_insert_with(|| wrapped.clone());
                builder = builder.export(info, wrapped);
                templates.push(((*id).clone(), params));
            }
            let provider = builder.start().await.map_err(|e| {
                start_err(
                    format!("protocols.{pid}"),
                    format!("cannot listen on {ip}:{port}: {e}"),
                )
            })?;
            let addr = provider.local_addr();
            for ((url, dynamic), (id, params)) in provider
                .urls()
                .iter()
                .zip(provider.dynamic())
                .zip(templates)
            {
                let s = &cfg.provider.services[&id];
                let mut url = url.clone();
                for (k, v) in &params {
                    url.set_param(k, crate::url::encode(v));
                }
                let url = sort_params(&url);
                let regs: Vec<Arc<dyn Registry>> =
                    match s.registries.as_ref().or(cfg.provider.registries.as_ref()) {
                        Some(ids) => ids.iter().filter_map(|i| registry_by_id(i)).collect(),
                        None => registries.iter().map(|(_, r)| r.clone()).collect(),
                    };
                let registration = Registration::new(url.clone(), regs, dynamic.clone());
                registration.subscribe().await;
                exports.push(Export {
                    id,
                    protocol: name.clone(),
                    url,
                    registration,
                    online: AtomicBool::new(false),
                });
            }
            providers.push((pid.clone(), Some(provider), addr));
        }

        // Consumer side.
        let mut references = BTreeMap::new();
        for (id, r) in &cfg.consumer.references {
            let mut b = Reference::builder(&r.interface)
                .application(&app.name)
                .retries(r.retries.unwrap_or(cfg.consumer.retries) as usize)
                .check(r.check.unwrap_or(cfg.consumer.check));
            if let Some(v) = &r.version {
                b = b.version(v);
            }
            if let Some(g) = &r.group {
                b = b.group(g);
            }
            if let Some(lb) = &r.loadbalance {
                b = b.loadbalance(lb);
            }
            if let Some(c) = &r.cluster {
                b = b.cluster(c);
            }
            if let Some(a) = r.actives {
                b = b.param("actives", &a.to_string());
            }
            let timeout = r.timeout.unwrap_or(cfg.consumer.timeout).0;
            b = b.param("timeout", &timeout.as_millis().to_string());
            let mut method_timeouts = HashMap::new();
            for (m, mc) in &r.methods {
                if let Some(t) = mc.timeout {
                    method_timeouts.insert(m.clone(), t.0);
                    b = b.param(
                        &format!("methods.{m}.timeout"),
                        &t.0.as_millis().to_string(),
                    );
                }
                if let Some(n) = mc.retries {
                    b = b.param(&format!("methods.{m}.retries"), &n.to_string());
                }
                if let Some(lb) = &mc.loadbalance {
                    b = b.param(&format!("methods.{m}.loadbalance"), lb);
                }
                if let Some(a) = mc.actives {
                    b = b.param(&format!("methods.{m}.actives"), &a.to_string());
                }
            }
            for (k, v) in &r.params {
                b = b.param(k, v);
            }
            b = b
                .filter(trace::filter(Side::Consumer))
                .filter(metrics.filter(Side::Consumer))
                .filter(Arc::new(DefaultTimeout {
                    default: timeout,
                    methods: method_timeouts,
                }));
            if let Some(url) = &r.url {
                let url: Url = url
                    .parse()
                    .map_err(|e| start_err(format!("consumer.references.{id}.url"), e))?;
                b = b.url(url);
            } else {
                let rid = r
                    .registry
                    .clone()
                    .or_else(|| {
                        cfg.consumer
                            .registries
                            .as_ref()
                            .and_then(|v| v.first().cloned())
                    })
                    .or_else(|| registries.first().map(|(i, _)| i.clone()));
                let registry = rid.as_deref().and_then(registry_by_id).ok_or_else(|| {
                    start_err(
                        format!("consumer.references.{id}"),
                        "no registry to discover providers through",
                    )
                })?;
                b = b.registry(registry);
            }
            let reference = b
                .build()
                .await
                .map_err(|e| start_err(format!("consumer.references.{id}"), e))?;
            references.insert(id.clone(), Arc::new(reference));
        }

        let state = Arc::new(AppState {
            config: cfg.clone(),
            metrics: metrics.clone(),
            registries,
            providers: Mutex::new(providers),
            exports,
            local,
            references,
            ready: AtomicBool::new(false),
        });
        // Register only once every server listens.
        state.set_online("", true).await;

        let mut tasks = Vec::new();
        let mut metrics_addr = None;
        if cfg.metrics.enabled {
            let listen: SocketAddr = cfg
                .metrics
                .listen
                .parse()
                .map_err(|e| start_err("metrics.listen", e))?;
            let weak = Arc::downgrade(&state);
            let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
                weak.upgrade()
                    .map(|s| s.render_metrics())
                    .unwrap_or_default()
            });
            let (addr, task) = metrics::serve(listen, render).await.map_err(|e| {
                start_err("metrics.listen", format!("cannot listen on {listen}: {e}"))
            })?;
            metrics_addr = Some(addr);
            tasks.push(task);
        }
        let mut qos_addr = None;
        if cfg.qos.enabled {
            let ip: IpAddr = if cfg.qos.accept_foreign_ip {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([127, 0, 0, 1])
            };
            let listen = SocketAddr::new(ip, cfg.qos.port);
            let (addr, task) = qos::serve(listen, Arc::downgrade(&state))
                .await
                .map_err(|e| start_err("qos.port", format!("cannot listen on {listen}: {e}")))?;
            qos_addr = Some(addr);
            tasks.push(task);
        }
        state.ready.store(true, Ordering::SeqCst);
        Ok(Application {
            state,
            tasks,
            qos_addr,
            metrics_addr,
            #[cfg(unix)]
            signals: Mutex::new(signals),
        })
    }
}

/// URL parameters of a configured service (registered and read by the provider filters).
fn service_params(cfg: &Config, s: &config::ServiceConfig) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let app = &cfg.application;
    for (k, v) in [
        ("application.version", &app.version),
        ("owner", &app.owner),
        ("organization", &app.organization),
        ("environment", &app.environment),
    ] {
        if let Some(v) = v {
            params.push((k.to_owned(), v.clone()));
        }
    }
    if let Some(t) = s.timeout.or(cfg.provider.timeout) {
        params.push(("timeout".into(), t.0.as_millis().to_string()));
    }
    if let Some(w) = s.weight {
        params.push(("weight".into(), w.to_string()));
    }
    if let Some(n) = s.executes {
        params.push(("executes".into(), n.to_string()));
    }
    if let Some(n) = s.tps {
        params.push(("tps".into(), n.to_string()));
    }
    for (m, mc) in &s.methods {
        if let Some(t) = mc.timeout {
            params.push((format!("{m}.timeout"), t.0.as_millis().to_string()));
        }
        if let Some(n) = mc.retries {
            params.push((format!("{m}.retries"), n.to_string()));
        }
        if let Some(n) = mc.executes {
            params.push((format!("methods.{m}.executes"), n.to_string()));
        }
        if let Some(n) = mc.tps {
            params.push((format!("methods.{m}.tps"), n.to_string()));
        }
    }
    for (k, v) in &s.params {
        params.push((k.clone(), v.clone()));
    }
    params
}

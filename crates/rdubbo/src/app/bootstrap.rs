//! The start of an application as explicit steps, each starting one kind of part, and the
//! rollback that undoes what the steps done so far started when a later one fails (see the
//! [module](super) docs for the order).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::config::Config;
use super::{
    futures_join_all, metrics, qos, set_online, start_err, trace, wiring, AppError, AppState,
    Application, ConfigError, Export, Listener, Metrics, StateRef,
};
use crate::cluster::filter::{self, with_filters, Side};
use crate::cluster::Extensions;
use crate::consumer::Reference;
use crate::provider::{
    follow_configured, sort_params, split_by_mode, AppMetadata, InstanceRegistration, Provider,
    Registration,
};
use crate::{layered, Invoker, Registry, ServiceInfo, SetupError, Url};

/// Builds an [`Application`] from a [`Config`] and the service implementations.
pub struct ApplicationBuilder {
    config: Config,
    source: String,
    services: Vec<(String, ServiceInfo, Arc<dyn Invoker>)>,
    extensions: Option<Arc<Extensions>>,
}

impl ApplicationBuilder {
    pub(super) fn new(config: Config) -> ApplicationBuilder {
        ApplicationBuilder {
            config,
            source: "configuration".into(),
            services: Vec::new(),
            extensions: None,
        }
    }

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

    /// The extension table the configuration's names are looked up in: protocols,
    /// registry schemes, load balancers and cluster strategies (default:
    /// [`extension::builtin`](crate::extension::builtin)). Names the table has are
    /// accepted by the validation and used by the servers, registries and references, so
    /// a plug-in added to it can be named in the file like a built-in.
    pub fn extensions(mut self, extensions: Arc<Extensions>) -> Self {
        self.extensions = Some(extensions);
        self
    }

    /// Starts the application step by step (validate, registries, metrics, servers,
    /// references, QoS, registration, ready; see the [module](super) docs). When a step
    /// fails, what the earlier ones started is undone in reverse order before the error is
    /// returned: nothing stays registered, listening or connected.
    pub async fn start(self) -> Result<Application, AppError> {
        // Installed first, so that a signal sent while starting is not lost.
        let signals = install_signals();
        let mut boot = Bootstrap::validate(self)?;
        match boot.run().await {
            Ok(()) => Ok(boot.ready(signals)),
            Err(e) => {
                tracing::warn!(error = %e, "start failed; undoing what was started");
                boot.rollback().await;
                Err(e)
            }
        }
    }
}

/// A service implementation matched with its configuration entry.
type Impls = HashMap<String, (ServiceInfo, Arc<dyn Invoker>)>;

/// The start in progress: what it was given, and what its steps have started so far. If it
/// is dropped before it ended (its future cancelled), what was started is undone in the
/// background.
struct Bootstrap {
    cfg: Config,
    src: String,
    extensions: Arc<Extensions>,
    impls: Impls,
    metrics: Arc<Metrics>,
    /// What the QoS and metrics endpoints serve; set by the last step.
    state: StateRef,
    started: Started,
}

/// What the steps have started, in the order they started it; [`undo`](Started::undo)
/// takes it down in reverse.
#[derive(Default)]
struct Started {
    registries: Vec<(String, Arc<dyn Registry>)>,
    metrics_listener: Option<Listener>,
    servers: Vec<(String, Provider, SocketAddr)>,
    exports: Vec<Export>,
    local: HashMap<String, Arc<dyn Invoker>>,
    references: BTreeMap<String, Arc<Reference>>,
    qos_listener: Option<Listener>,
    /// The application instance (Dubbo 3), published once every server listens.
    instance: Option<Arc<InstanceRegistration>>,
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        // Empty after `ready` and `rollback`: only a start cancelled midway gets here with
        // something started.
        let started = std::mem::take(&mut self.started);
        if started.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::warn!(source = %self.src, "start cancelled; undoing what was started");
                runtime.spawn(started.undo());
            }
            Err(_) => tracing::warn!(
                source = %self.src,
                "start cancelled outside a runtime; what it started is dropped without undoing"
            ),
        }
    }
}

impl Bootstrap {
    /// Step 1, validate: the implementations match the configured services and the
    /// configuration's names are in the extension table. Starts nothing.
    fn validate(b: ApplicationBuilder) -> Result<Bootstrap, AppError> {
        let cfg = b.config;
        let src = b.source;
        let extensions = b.extensions.unwrap_or_else(crate::extension::shared);
        cfg.check_extensions(&extensions, &src)?;
        let impls = match_implementations(&cfg, &src, b.services)?;
        Ok(Bootstrap {
            cfg,
            src,
            extensions,
            impls,
            metrics: Arc::new(Metrics::new()),
            state: StateRef::default(),
            started: Started::default(),
        })
    }

    /// Steps 2 to 7, in order; the first error stops them.
    async fn run(&mut self) -> Result<(), AppError> {
        self.connect_registries().await?;
        self.serve_metrics().await?;
        self.bind_servers().await?;
        self.build_references().await?;
        self.serve_qos().await?;
        self.register().await;
        Ok(())
    }

    /// Step 2: connects every registry, through the table's factory of its scheme.
    async fn connect_registries(&mut self) -> Result<(), AppError> {
        for (id, r) in &self.cfg.registries {
            let mut url: Url = r
                .address
                .parse()
                .map_err(|e| start_err(format!("registries.{id}.address"), e))?;
            for (k, v) in &r.params {
                url.set_param(k, v.clone());
            }
            let registry = crate::registry::connect_url_with(&self.extensions, &url)
                .await
                .map_err(|e| start_err(format!("registries.{id}"), e))?;
            self.started.registries.push((id.clone(), registry));
        }
        Ok(())
    }

    /// Step 3: listens on `metrics.listen` (scrapes see counters only until the start is
    /// over).
    async fn serve_metrics(&mut self) -> Result<(), AppError> {
        if !self.cfg.metrics.enabled {
            return Ok(());
        }
        let listen: SocketAddr = self
            .cfg
            .metrics
            .listen
            .parse()
            .map_err(|e| start_err("metrics.listen", e))?;
        let (state, metrics) = (self.state.clone(), self.metrics.clone());
        let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || match state.get() {
            Some(s) => s.render_metrics(),
            None => metrics.render(),
        });
        let (addr, task) = metrics::serve(listen, render)
            .await
            .map_err(|e| start_err("metrics.listen", format!("cannot listen on {listen}: {e}")))?;
        self.started.metrics_listener = Some(Listener::new(addr, task));
        Ok(())
    }

    /// Step 4: binds one server per protocol that serves something, and makes each
    /// service URL follow its `override://` rules. Registers nothing.
    async fn bind_servers(&mut self) -> Result<(), AppError> {
        let cfg = &self.cfg;
        // Dubbo 3: the registries that take the application instance, and the protocol
        // whose server answers the MetadataService (the first dubbo or tri one serving
        // something, else the first serving something).
        let mode = cfg.application.register_mode.unwrap_or_default();
        let all: Vec<Arc<dyn Registry>> = self
            .started
            .registries
            .iter()
            .map(|(_, r)| r.clone())
            .collect();
        let (_, discoveries) =
            split_by_mode(&all, mode).map_err(|e| start_err("application.register_mode", e))?;
        let serving: Vec<(&String, String)> = cfg
            .protocols
            .iter()
            .filter(|(pid, _)| !wiring::services_on(cfg, pid).is_empty())
            .map(|(pid, p)| (pid, p.name.clone().unwrap_or_else(|| pid.clone())))
            .collect();
        let metadata_pid = (!discoveries.is_empty())
            .then(|| {
                serving
                    .iter()
                    .find(|(_, name)| name == "dubbo" || name == "tri")
                    .or(serving.first())
                    .map(|(pid, _)| (*pid).clone())
            })
            .flatten();
        let app_metadata = AppMetadata::new(&cfg.application.name);
        let mut endpoints: Vec<(String, u16)> = Vec::new();
        let mut instance_host = None;
        for (pid, p) in &cfg.protocols {
            let on_this = wiring::services_on(cfg, pid);
            if on_this.is_empty() {
                continue;
            }
            let name = p.name.clone().unwrap_or_else(|| pid.clone());
            let (mut builder, listen) =
                wiring::server_builder(cfg, pid, p, &name, &self.extensions)?;
            let serves_metadata = metadata_pid.as_ref() == Some(pid);
            if serves_metadata {
                builder = builder.metadata_service(app_metadata.clone());
            }
            let mut templates = Vec::new();
            for id in on_this {
                let s = &cfg.provider.services[id];
                let (code_info, invoker) = &self.impls[id];
                #[cfg_attr(not(feature = "dubbo"), allow(unused_mut))]
                let mut params = wiring::service_params(cfg, s);
                // Java's `token=true` (or `default`): a random token, registered and checked.
                #[cfg(feature = "dubbo")]
                for (k, v) in &mut params {
                    let random =
                        v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("default");
                    if k == "token" && random {
                        *v = rdubbo_protocol_dubbo::random_token();
                    }
                }
                let mut template = Url::new(&name, "0.0.0.0", None, &s.interface);
                for (k, v) in &params {
                    template.set_param(k, v.clone());
                }
                #[cfg_attr(not(feature = "dubbo"), allow(unused_mut))]
                let mut layers = filter::from_url(&template, Side::Provider);
                // Over dubbo, Java's token check (`token=`) before the others.
                #[cfg(feature = "dubbo")]
                if name == "dubbo" {
                    if let Some(token) = template.param_non_empty("token") {
                        layers.insert(0, Arc::new(rdubbo_protocol_dubbo::TokenLayer::new(token)));
                    }
                }
                // Trace and metrics outside the layers the URL asks for (`tps`, `executes` …).
                let inner = layered(invoker.clone(), &layers);
                let wrapped = with_filters(
                    inner,
                    &[
                        trace::filter(Side::Provider),
                        self.metrics.filter(Side::Provider),
                    ],
                );
                self.started
                    .local
                    .entry(s.interface.clone())
                    .or_insert_with(|| wrapped.clone());
                builder = builder.export(wiring::service_info(s, code_info), wrapped);
                templates.push((id.clone(), params));
            }
            // Its gRPC health (tri) says NOT_SERVING until the services are registered
            // (step 7; `ready` sets it from what is online).
            let provider = builder.not_serving_at_start().start().await.map_err(|e| {
                let why = match e {
                    SetupError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                start_err(
                    format!("protocols.{pid}"),
                    format!("cannot listen on {listen}: {why}"),
                )
            })?;
            let addr = provider.local_addr();
            if serves_metadata {
                endpoints.insert(0, (name.clone(), addr.port()));
                instance_host = provider.urls().first().map(|u| u.host().to_owned());
            } else {
                endpoints.push((name.clone(), addr.port()));
            }
            let urls: Vec<_> = provider
                .urls()
                .iter()
                .cloned()
                .zip(provider.dynamic().iter().cloned())
                .collect();
            // Kept from here on, so that a failure (or cancellation) below stops it too.
            self.started.servers.push((pid.clone(), provider, addr));
            for ((url, dynamic), (id, params)) in urls.into_iter().zip(templates) {
                let s = &cfg.provider.services[&id];
                let mut url = url;
                for (k, v) in &params {
                    url.set_param(k, crate::url::encode(v));
                }
                let url = sort_params(&url);
                let ids = s.registries.as_ref().or(cfg.provider.registries.as_ref());
                let picked = pick_registries(&self.started.registries, ids);
                let (registries, _) = split_by_mode(&picked, mode)
                    .map_err(|e| start_err("application.register_mode", e))?;
                // Registries that take the instance only: the URL follows their config
                // centers' configurator documents there (the metadata follows the URL).
                let followed: Vec<Arc<dyn Registry>> = picked
                    .into_iter()
                    .filter(|r| !registries.iter().any(|i| Arc::ptr_eq(i, r)))
                    .collect();
                let registration =
                    Registration::with_followed(url.clone(), registries, followed, dynamic);
                // Kept before it subscribes, so that a start cancelled while it waits for
                // the first rules unsubscribes it too.
                self.started.exports.push(Export {
                    id,
                    protocol: name.clone(),
                    url,
                    registration: registration.clone(),
                    online: AtomicBool::new(false),
                });
                registration.subscribe().await;
            }
            tracing::debug!(protocol = %pid, %addr, "server listening");
        }
        if let Some(host) = instance_host {
            let urls: Vec<Url> = self.started.exports.iter().map(|e| e.url.clone()).collect();
            let timestamp = crate::registry::now_millis().to_string();
            let instance =
                Arc::new(app_metadata.publish(&host, &endpoints, &urls, &timestamp, discoveries));
            // A configurator changing an export republishes the metadata (new revision).
            let registrations: Vec<_> = self
                .started
                .exports
                .iter()
                .map(|e| e.registration.clone())
                .collect();
            follow_configured(&instance, &app_metadata, &registrations).await;
            self.started.instance = Some(instance);
        }
        Ok(())
    }

    /// Step 5: builds every reference (a checked one waits for its first provider).
    async fn build_references(&mut self) -> Result<(), AppError> {
        let cfg = &self.cfg;
        for (id, r) in &cfg.consumer.references {
            let mut b = wiring::reference_builder(cfg, r, &self.metrics, &self.extensions);
            b = wiring::with_client_tls(cfg, b)?;
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
                    .or_else(|| self.started.registries.first().map(|(i, _)| i.clone()));
                let registry = rid
                    .and_then(|rid| registry_by_id(&self.started.registries, &rid))
                    .ok_or_else(|| {
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
            self.started
                .references
                .insert(id.clone(), Arc::new(reference));
        }
        Ok(())
    }

    /// Step 6: listens on the QoS port (commands answer "starting" until the start is
    /// over).
    async fn serve_qos(&mut self) -> Result<(), AppError> {
        if !self.cfg.qos.enabled {
            return Ok(());
        }
        let ip: IpAddr = if self.cfg.qos.accept_foreign_ip {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        };
        let listen = SocketAddr::new(ip, self.cfg.qos.port);
        let (addr, task) = qos::serve(listen, self.state.clone())
            .await
            .map_err(|e| start_err("qos.port", format!("cannot listen on {listen}: {e}")))?;
        self.started.qos_listener = Some(Listener::new(addr, task));
        Ok(())
    }

    /// Step 7: registers every service URL, now that every server listens and everything
    /// else is up. A registry that is down does not fail it: registrations are retried.
    async fn register(&mut self) {
        set_online(&self.started.exports, "", true).await;
        if let Some(instance) = &self.started.instance {
            instance.set_online(true).await;
        }
    }

    /// Step 8: the running application, `ready`.
    fn ready(&mut self, signals: Option<Signals>) -> Application {
        let started = std::mem::take(&mut self.started);
        let state = Arc::new(AppState {
            config: std::mem::take(&mut self.cfg),
            metrics: self.metrics.clone(),
            registries: started.registries,
            providers: Mutex::new(
                started
                    .servers
                    .into_iter()
                    .map(|(id, p, addr)| (id, Some(p), addr))
                    .collect(),
            ),
            exports: started.exports,
            local: started.local,
            references: started.references,
            ready: AtomicBool::new(false),
            instance: started.instance,
        });
        self.state.set(&state);
        state.sync_health();
        let metrics_addr = started.metrics_listener.as_ref().map(|l| l.addr);
        let qos_addr = started.qos_listener.as_ref().map(|l| l.addr);
        let listeners = started
            .metrics_listener
            .into_iter()
            .chain(started.qos_listener)
            .collect();
        state.ready.store(true, Ordering::SeqCst);
        tracing::info!(source = %self.src, "started");
        Application {
            state,
            listeners,
            qos_addr,
            metrics_addr,
            signals: Mutex::new(signals),
        }
    }

    /// Undoes what the steps started (see [`Started::undo`]).
    async fn rollback(&mut self) {
        std::mem::take(&mut self.started).undo().await;
        tracing::info!(source = %self.src, "start undone");
    }
}

impl Started {
    fn is_empty(&self) -> bool {
        self.registries.is_empty()
            && self.metrics_listener.is_none()
            && self.servers.is_empty()
            && self.exports.is_empty()
            && self.references.is_empty()
            && self.qos_listener.is_none()
            && self.instance.is_none()
    }

    /// Takes everything down in reverse start order: QoS, references, registrations
    /// (unregistered, rules no longer followed), servers (stopped, ports freed), metrics,
    /// registries.
    async fn undo(self) {
        if let Some(qos) = self.qos_listener {
            qos.close().await;
        }
        for reference in self.references.values().rev() {
            reference.close().await;
        }
        if let Some(instance) = &self.instance {
            instance.set_online(false).await;
        }
        for e in self.exports.iter().rev() {
            e.online.store(false, Ordering::SeqCst);
            e.registration.close().await;
        }
        futures_join_all(self.servers.into_iter().rev().map(|(_, p, _)| p.stop())).await;
        if let Some(metrics) = self.metrics_listener {
            metrics.close().await;
        }
        for (_, registry) in self.registries.iter().rev() {
            registry.destroy().await;
        }
    }
}

/// Matches the implementations given to the builder with the configured services: each
/// given one names a service (by id or interface) and serves its interface, and each
/// service has one.
fn match_implementations(
    cfg: &Config,
    src: &str,
    services: Vec<(String, ServiceInfo, Arc<dyn Invoker>)>,
) -> Result<Impls, ConfigError> {
    let mut impls = Impls::new();
    for (key, info, invoker) in services {
        let id = cfg
            .provider
            .services
            .iter()
            .find(|(id, s)| **id == key || s.interface == key)
            .map(|(id, _)| id.clone());
        let Some(id) = id else {
            return Err(ConfigError::at_key(
                src,
                "provider.services",
                format!("an implementation was given for `{key}`, but no service has that id or interface"),
            ));
        };
        let s = &cfg.provider.services[&id];
        if s.interface != info.interface {
            return Err(ConfigError::at_key(
                src,
                format!("provider.services.{id}.interface"),
                format!(
                    "is `{}`, but the implementation given serves `{}`",
                    s.interface, info.interface
                ),
            ));
        }
        impls.insert(id, (info, invoker));
    }
    for (id, s) in &cfg.provider.services {
        if !impls.contains_key(id) {
            return Err(ConfigError::at_key(
                src,
                format!("provider.services.{id}"),
                format!(
                    "no implementation of `{}` was given to the application",
                    s.interface
                ),
            ));
        }
    }
    Ok(impls)
}

fn registry_by_id(
    registries: &[(String, Arc<dyn Registry>)],
    id: &str,
) -> Option<Arc<dyn Registry>> {
    registries
        .iter()
        .find(|(i, _)| i == id)
        .map(|(_, r)| r.clone())
}

/// The registries of these ids (all when `None`).
fn pick_registries(
    registries: &[(String, Arc<dyn Registry>)],
    ids: Option<&Vec<String>>,
) -> Vec<Arc<dyn Registry>> {
    match ids {
        Some(ids) => ids
            .iter()
            .filter_map(|i| registry_by_id(registries, i))
            .collect(),
        None => registries.iter().map(|(_, r)| r.clone()).collect(),
    }
}

/// The SIGTERM and SIGINT watchers of a started application.
#[cfg(unix)]
pub(super) type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);
/// No watchers: Ctrl-C is waited for when asked.
#[cfg(not(unix))]
pub(super) type Signals = ();

#[cfg(unix)]
fn install_signals() -> Option<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => Some((t, i)),
        _ => None,
    }
}

#[cfg(not(unix))]
fn install_signals() -> Option<Signals> {
    None
}

/// Waits for SIGTERM or SIGINT on the watchers installed at the start (Ctrl-C without).
pub(super) async fn wait_for_signal(signals: Option<Signals>) {
    #[cfg(unix)]
    if let Some((mut term, mut int)) = signals {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        return;
    }
    #[cfg(not(unix))]
    let _ = signals;
    let _ = tokio::signal::ctrl_c().await;
}

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
//! The start ([`ApplicationBuilder::start`](crate::app::ApplicationBuilder::start)) is a
//! sequence of steps, each of which starts one kind of part:
//! 1. **validate**: implementations match the configured services, and every name of a
//!    protocol, registry scheme, load balancer or cluster strategy is in the extension
//!    table ([`ApplicationBuilder::extensions`](crate::app::ApplicationBuilder::extensions),
//!    the built-ins by default); nothing is started yet;
//! 2. **registries**: connect every registry;
//! 3. **metrics**: listen on `metrics.listen`;
//! 4. **servers**: bind one server per protocol that serves something, and follow the
//!    `override://` rules of each service (nothing registered yet);
//! 5. **references**: build every reference (a checked one waits for its first provider);
//! 6. **QoS**: listen on the QoS port;
//! 7. **registration**: register every service URL, once everything else is up;
//! 8. **ready**: `ready` turns true.
//!
//! When a step fails, what the earlier steps started is undone in reverse order (QoS
//! closed, references closed, service URLs unregistered and rules no longer followed,
//! servers stopped and their ports freed, metrics closed, registries closed) before
//! `start` returns the error, so a failed start leaves nothing behind. A start whose future
//! is dropped midway is undone the same way, in the background.
//!
//! The shutdown sequence ([`Application::shutdown`](crate::app::Application::shutdown)):
//! 1. `ready` turns false (QoS `ready` answers so);
//! 2. every exported service is unregistered from every registry;
//! 3. `shutdown.unregister_wait` passes, so consumers drop this provider;
//! 4. the servers refuse new calls with a retryable "shutting down" status and give
//!    in-flight calls up to `shutdown.drain` to finish, then close their connections;
//! 5. references unsubscribe and consumers unregister; registries are closed;
//! 6. the QoS and metrics endpoints stop.

mod bootstrap;
pub mod config;
pub mod metrics;
mod qos;
mod slots;
pub mod trace;
mod wiring;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub use bootstrap::ApplicationBuilder;
pub use config::{Config, ConfigError, Format};
pub use metrics::Metrics;

use crate::consumer::Reference;
use crate::provider::{Provider, Registration};
use crate::{Invoker, Registry, Url};

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
    /// The application instance (Dubbo 3), registered with every export (pattern "").
    pub(crate) instance: Option<Arc<crate::provider::InstanceRegistration>>,
}

/// The application as the QoS and metrics endpoints see it: nothing while it starts (they
/// listen before the start is over), then the running application until it is dropped.
#[derive(Clone, Default)]
pub(crate) struct StateRef(Arc<OnceLock<Weak<AppState>>>);

impl StateRef {
    /// The running application; `None` while starting or once stopped.
    pub(crate) fn get(&self) -> Option<Arc<AppState>> {
        self.0.get().and_then(Weak::upgrade)
    }

    /// Whether the start is over (the application may have stopped since).
    pub(crate) fn started(&self) -> bool {
        self.0.get().is_some()
    }

    fn set(&self, state: &Arc<AppState>) {
        let _ = self.0.set(Arc::downgrade(state));
    }
}

/// A listening endpoint of the application (metrics, QoS): its address and accept task.
pub(crate) struct Listener {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    pub(crate) fn new(addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Listener {
        Listener { addr, task }
    }

    /// Stops accepting and waits until the socket is closed (the port is free again).
    pub(crate) async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A running application.
pub struct Application {
    state: Arc<AppState>,
    /// QoS and metrics.
    listeners: Vec<Listener>,
    qos_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    signals: Mutex<Option<bootstrap::Signals>>,
}

impl Application {
    /// A builder for the application `config` describes.
    pub fn builder(config: Config) -> ApplicationBuilder {
        ApplicationBuilder::new(config)
    }

    /// A builder from a file (TOML or YAML by extension) with `RDUBBO_…` overrides.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<ApplicationBuilder, ConfigError> {
        let path = path.as_ref();
        Ok(Application::builder(Config::from_file(path)?).source(&path.display().to_string()))
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
        let signals = lock(&self.signals).take();
        bootstrap::wait_for_signal(signals).await;
        self.shutdown().await;
    }

    /// Stops in order (see the [module](self) docs).
    pub async fn shutdown(self) {
        let Application {
            state, listeners, ..
        } = self;
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
        for listener in listeners {
            listener.close().await;
        }
        tracing::info!("stopped");
    }
}

pub(crate) async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

/// Registers (`online`) or unregisters the exports whose service key contains `pattern`,
/// whose id is `pattern`, or all when it is empty. Returns how many changed.
pub(crate) async fn set_online(exports: &[Export], pattern: &str, online: bool) -> usize {
    let mut n = 0;
    for e in exports {
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    pub(crate) async fn set_online(&self, pattern: &str, online: bool) -> usize {
        if let (true, Some(instance)) = (pattern.is_empty() && !online, &self.instance) {
            instance.set_online(false).await;
        }
        let n = set_online(&self.exports, pattern, online).await;
        if let (true, Some(instance)) = (pattern.is_empty() && online, &self.instance) {
            instance.set_online(true).await;
        }
        // An instance with no service online is not registered either (application-level
        // consumers would still call it), and comes back with the first one.
        if let (false, Some(instance)) = (pattern.is_empty(), &self.instance) {
            let any = self.exports.iter().any(|e| e.online.load(Ordering::SeqCst));
            if any == online {
                instance.set_online(online).await;
            }
        }
        self.sync_health();
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

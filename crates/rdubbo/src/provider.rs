//! Exposing services: serve them, register them, and stop in the right order.
//!
//! The lifecycle of a [`Provider`]:
//! 1. [`ProviderBuilder::start`] binds the server first and registers each service URL in
//!    every registry only once the server listens;
//! 2. [`Provider::stop`] unregisters from every registry first, waits `unregister_wait`
//!    for consumers to drop this provider, then stops the server gracefully: new calls are
//!    refused with a retryable "shutting down" error, in-flight calls get up to `drain` to
//!    finish, then connections close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "dubbo")]
use rdubbo_protocol_dubbo::{DubboServer, ServerConfig as DubboConfig};
use rdubbo_protocol_jsonrpc::{JsonRpcServer, ServerConfig};

use crate::cluster::filter::{self, with_filters, Filter, Side};
use crate::registry::{now_millis, sorted_params};
use crate::{Invoker, Registry, ServiceInfo, Url};

/// Builds a [`Provider`].
pub struct ProviderBuilder {
    application: String,
    listen: SocketAddr,
    host: Option<String>,
    registries: Vec<Arc<dyn Registry>>,
    services: Vec<(ServiceInfo, Arc<dyn Invoker>)>,
    unregister_wait: Duration,
    drain: Duration,
    server_config: Option<ServerConfig>,
    params: Vec<(String, String)>,
    filters: Vec<Arc<dyn Filter>>,
    protocol: String,
    #[cfg(feature = "dubbo")]
    dubbo_config: Option<DubboConfig>,
}

/// The server a provider runs, by protocol.
enum Server {
    JsonRpc(JsonRpcServer),
    #[cfg(feature = "dubbo")]
    Dubbo(DubboServer),
}

impl Server {
    fn local_addr(&self) -> SocketAddr {
        match self {
            Server::JsonRpc(s) => s.local_addr(),
            #[cfg(feature = "dubbo")]
            Server::Dubbo(s) => s.local_addr(),
        }
    }

    async fn shutdown(self, drain: Duration) {
        match self {
            Server::JsonRpc(s) => s.shutdown(drain).await,
            #[cfg(feature = "dubbo")]
            Server::Dubbo(s) => s.shutdown(drain).await,
        }
    }
}

/// Running services, registered in their registries.
pub struct Provider {
    server: Server,
    urls: Vec<Url>,
    registries: Vec<Arc<dyn Registry>>,
    unregister_wait: Duration,
    drain: Duration,
}

impl Provider {
    /// A builder listening on `listen` (port 0 picks a free port).
    pub fn builder(listen: SocketAddr) -> ProviderBuilder {
        ProviderBuilder {
            application: "rdubbo-provider".to_owned(),
            listen,
            host: None,
            registries: Vec::new(),
            services: Vec::new(),
            unregister_wait: Duration::from_secs(1),
            drain: Duration::from_secs(10),
            server_config: None,
            params: Vec::new(),
            filters: Vec::new(),
            protocol: "jsonrpc".to_owned(),
            #[cfg(feature = "dubbo")]
            dubbo_config: None,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Open connections of the server.
    pub fn connections(&self) -> usize {
        match &self.server {
            Server::JsonRpc(s) => s.connections(),
            #[cfg(feature = "dubbo")]
            Server::Dubbo(s) => s.connections(),
        }
    }

    /// The provider URLs, as registered.
    pub fn urls(&self) -> &[Url] {
        &self.urls
    }

    /// Unregisters only (the server keeps serving): consumers stop sending new calls.
    pub async fn unregister(&self) {
        for registry in &self.registries {
            for url in &self.urls {
                if let Err(e) = registry.unregister(url).await {
                    tracing::warn!(url = %url, error = %e, "unregister failed");
                }
            }
        }
    }

    /// Stops in order: unregister, wait for consumers to drop this provider, refuse new
    /// calls, drain in-flight calls, close.
    pub async fn stop(self) {
        self.unregister().await;
        if !self.registries.is_empty() {
            tokio::time::sleep(self.unregister_wait).await;
        }
        self.server.shutdown(self.drain).await;
    }
}

impl ProviderBuilder {
    /// The `application` parameter of the provider URLs.
    pub fn application(mut self, name: &str) -> Self {
        self.application = name.to_owned();
        self
    }

    /// The host written in the provider URLs (default: the listen address, or 127.0.0.1
    /// with `anyhost=true` when listening on all interfaces).
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Registers in `registry` too.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registries.push(registry);
        self
    }

    /// Serves `invoker` as the service `info` (at the path of its interface name).
    pub fn export(mut self, info: ServiceInfo, invoker: Arc<dyn Invoker>) -> Self {
        self.services.push((info, invoker));
        self
    }

    /// How long to wait between unregistering and refusing calls (default 1 s).
    pub fn unregister_wait(mut self, wait: Duration) -> Self {
        self.unregister_wait = wait;
        self
    }

    /// How long in-flight calls get to finish on stop (default 10 s).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// An extra parameter of the provider URLs (`weight`, `warmup`, `loadbalance` …).
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.retain(|(k, _)| k != key);
        self.params
            .push((key.to_owned(), crate::url::encode(value)));
        self
    }

    /// Adds a filter around every exported service (the first added sees calls first).
    /// Built-in filters asked for by parameters (`accesslog`, `tps`, `executes`) run
    /// inside the ones added here.
    pub fn filter(mut self, filter: Arc<dyn Filter>) -> Self {
        self.filters.push(filter);
        self
    }

    /// The protocol to serve: `jsonrpc` (default) or `dubbo` (with the `dubbo` feature).
    pub fn protocol(mut self, name: &str) -> Self {
        self.protocol = name.to_owned();
        self
    }

    /// Limits of the Dubbo protocol server (when serving `dubbo`).
    #[cfg(feature = "dubbo")]
    pub fn dubbo_config(mut self, config: DubboConfig) -> Self {
        self.dubbo_config = Some(config);
        self
    }

    /// Server limits of the JSON-RPC server.
    pub fn server_config(mut self, config: ServerConfig) -> Self {
        self.server_config = Some(config);
        self
    }

    /// Binds the server, then registers every service in every registry. A registry that
    /// is unreachable does not stop the start: the registration is retried in the
    /// background.
    pub async fn start(self) -> std::io::Result<Provider> {
        let exports: Vec<(ServiceInfo, Arc<dyn Invoker>)> = self
            .services
            .iter()
            .map(|(info, invoker)| {
                let mut filters = self.filters.clone();
                let mut template = Url::new(&self.protocol, "0.0.0.0", None, &info.interface);
                for (k, v) in &self.params {
                    template.set_param(k, v.clone());
                }
                filters.extend(filter::from_url(&template, Side::Provider));
                (info.clone(), with_filters(invoker.clone(), &filters))
            })
            .collect();
        let server = match self.protocol.as_str() {
            "jsonrpc" => {
                let mut builder = JsonRpcServer::builder();
                if let Some(config) = self.server_config.clone() {
                    builder = builder.config(config);
                }
                for (info, invoker) in exports {
                    builder = builder.export(&info.interface.clone(), info, invoker);
                }
                Server::JsonRpc(builder.bind(self.listen).await?)
            }
            #[cfg(feature = "dubbo")]
            "dubbo" => {
                let mut builder = DubboServer::builder();
                if let Some(config) = self.dubbo_config.clone() {
                    builder = builder.config(config);
                }
                for (info, invoker) in exports {
                    builder = builder.export(info, invoker);
                }
                Server::Dubbo(builder.bind(self.listen).await?)
            }
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("unknown protocol `{other}` (this build serves jsonrpc, dubbo)"),
                ))
            }
        };
        let addr = server.local_addr();
        let (host, anyhost) = match &self.host {
            Some(h) => (h.clone(), false),
            None if addr.ip().is_unspecified() => ("127.0.0.1".to_owned(), true),
            None => (addr.ip().to_string(), false),
        };
        let timestamp = now_millis().to_string();
        let urls: Vec<Url> = self
            .services
            .iter()
            .map(|(info, _)| {
                let mut url = protocol_provider_url(
                    &self.protocol,
                    info,
                    &host,
                    addr.port(),
                    anyhost,
                    &self.application,
                    &timestamp,
                );
                for (k, v) in &self.params {
                    url.set_param(k, v.clone());
                }
                url
            })
            .collect();
        for registry in &self.registries {
            for url in &urls {
                if let Err(e) = registry.register(url).await {
                    tracing::warn!(url = %url, error = %e, "registration failed; retrying in the background");
                }
            }
        }
        Ok(Provider {
            server,
            urls,
            registries: self.registries,
            unregister_wait: self.unregister_wait,
            drain: self.drain,
        })
    }
}

/// The `jsonrpc://` provider URL Java Dubbo would register for `info` (parameters sorted
/// by key).
pub fn provider_url(
    info: &ServiceInfo,
    host: &str,
    port: u16,
    anyhost: bool,
    application: &str,
    timestamp: &str,
) -> Url {
    protocol_provider_url("jsonrpc", info, host, port, anyhost, application, timestamp)
}

/// The provider URL Java Dubbo would register for `info` served over `protocol`
/// (parameters sorted by key).
pub fn protocol_provider_url(
    protocol: &str,
    info: &ServiceInfo,
    host: &str,
    port: u16,
    anyhost: bool,
    application: &str,
    timestamp: &str,
) -> Url {
    let mut methods = info.methods.clone();
    methods.sort();
    let mut params: Vec<(String, String)> = vec![
        ("application".into(), crate::url::encode(application)),
        ("dubbo".into(), "2.0.2".into()),
        ("dynamic".into(), "true".into()),
        ("interface".into(), info.interface.clone()),
        ("methods".into(), methods.join(",")),
        ("pid".into(), std::process::id().to_string()),
        (
            "release".into(),
            format!("rdubbo-{}", env!("CARGO_PKG_VERSION")),
        ),
        ("side".into(), "provider".into()),
        ("timestamp".into(), timestamp.to_owned()),
    ];
    if anyhost {
        params.push(("anyhost".into(), "true".into()));
    }
    if let Some(v) = &info.version {
        params.push(("version".into(), v.clone()));
    }
    if let Some(g) = &info.group {
        params.push(("group".into(), g.clone()));
    }
    let text = format!(
        "{protocol}://{host}:{port}/{}?{}",
        info.interface,
        sorted_params(&mut params)
    );
    Url::parse(&text).unwrap_or_else(|_| Url::new(protocol, host, Some(port), &info.interface))
}

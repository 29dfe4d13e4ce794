//! Exposing services: serve them, register them, and stop in the right order.
//!
//! The lifecycle of a [`Provider`]:
//! 1. [`ProviderBuilder::start`] binds the server first and registers each service URL in
//!    every registry only once the server listens;
//! 2. [`Provider::stop`] unregisters from every registry first, waits `unregister_wait`
//!    for consumers to drop this provider, then stops the server gracefully: new calls are
//!    refused with a retryable "shutting down" error, in-flight calls get up to `drain` to
//!    finish, then connections close.
//!
//! Between the two, each provider URL follows its dynamic configuration as a Java provider
//! does: it subscribes to `provider://<host:port>/<interface>?category=configurators&check=false&…`
//! in each registry (ZooKeeper: `/dubbo/<interface>/configurators`, created if missing) and
//! re-registers its URL with the parameters of the `override://` rules that target it
//! (see [`configurator::matches_provider_side`](crate::cluster::configurator::matches_provider_side):
//! `0.0.0.0` or its own `host:port`, its version and group, its application), e.g.
//! `timeout=1234`, `weight=200` or `disabled=true`; when the rules go away the original URL
//! comes back. As in Java the old URL is unregistered before the new one is registered.
//! A `timeout` set by such a rule (also per method: `<method>.timeout`) also bounds how long
//! the provider lets a call run.
//!
//! The server is the [`Protocol::serve`](crate::Protocol::serve) of the protocol named by
//! [`ProviderBuilder::protocol`] in the builder's [`Extensions`] table
//! ([`ProviderBuilder::extensions`], the built-ins by default), so a protocol of one's own
//! serves as the built-in ones do; [`ProviderBuilder::layer`] wraps every exported service.
//!
//! As a Java 3 provider, it also registers by application ([`ProviderBuilder::register_mode`],
//! `all` by default) in every registry that supports it
//! ([`Registry::service_discovery`], e.g. ZooKeeper):
//! the application's [`MetadataInfo`](crate::metadata::MetadataInfo) (one service per
//! provider URL) and its revision, the `org.apache.dubbo.metadata.MetadataService` (group =
//! application name, version 1.0.0) served on the provider's own port so that Java 3
//! consumers can fetch that metadata, one [`ServiceInstance`] of the
//! application (ZooKeeper: `/services/<app>/<host:port>`) and the interface → application
//! mapping (`/dubbo/mapping/<interface>`). Java 3.3 consumers with
//! `migration.step=FORCE_APPLICATION` or `APPLICATION_FIRST` then find the provider through
//! the application. A registry URL's `register-mode` parameter overrides the builder's mode
//! for that registry.
//!
//! The metadata follows the provider URLs as configured: when dynamic configuration changes
//! one (an `override://` rule, a `side: provider` configurator document — followed also in
//! the registries that take only the instance, as Java's provider does), the metadata is
//! published again under its new revision and the instance is updated in place with it;
//! consumers that follow the application then fetch the new metadata.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::filter::{self, Filter, Side};
use crate::extension::Extensions;
use crate::registry::{now_millis, sorted_params};
mod instance;
mod registration;
#[cfg(feature = "app")]
pub(crate) use instance::follow_configured;
#[cfg(feature = "app")]
pub(crate) use instance::split_by_mode;
pub(crate) use instance::{AppMetadata, InstanceRegistration};
use registration::DynamicTimeout;
pub(crate) use registration::{sort_params, Dynamic, Registration};

use crate::{
    layered, Export, Invoker, Layer, RegisterMode, Registry, Server, ServiceInfo, ServiceInstance,
    SetupError, Url,
};

/// The protocol a provider serves unless told otherwise: `jsonrpc`, or `dubbo` in a build
/// without the `jsonrpc` feature.
pub const DEFAULT_PROTOCOL: &str = if cfg!(feature = "jsonrpc") {
    "jsonrpc"
} else {
    "dubbo"
};

/// Builds a [`Provider`].
pub struct ProviderBuilder {
    application: String,
    listen: SocketAddr,
    host: Option<String>,
    registries: Vec<Arc<dyn Registry>>,
    services: Vec<(ServiceInfo, Arc<dyn Invoker>)>,
    unregister_wait: Duration,
    drain: Duration,
    params: Vec<(String, String)>,
    layers: Vec<Arc<dyn Layer>>,
    protocol: String,
    extensions: Arc<Extensions>,
    /// Protocols configured on this builder, put into its copy of the table at the start.
    configured: Vec<Arc<dyn crate::Protocol>>,
    /// Configured protocols serving TLS: their URLs say `ssl-enabled=true`.
    tls: Vec<&'static str>,
    register_mode: RegisterMode,
    /// A MetadataService served for a caller that registers the instance itself.
    app_metadata: Option<AppMetadata>,
    /// Over tri: also serve gRPC health and server reflection.
    #[cfg_attr(not(feature = "triple"), allow(dead_code))]
    grpc_builtins: bool,
    /// Over tri: health turns `SERVING` once `start` has registered the services (an
    /// application that registers them itself later says when instead).
    #[cfg_attr(not(feature = "triple"), allow(dead_code))]
    serving_at_start: bool,
}

/// Running services, registered in their registries.
pub struct Provider {
    server: Box<dyn Server>,
    urls: Vec<Url>,
    registrations: Vec<Arc<Registration>>,
    dynamic: Vec<Arc<Dynamic>>,
    registries: Vec<Arc<dyn Registry>>,
    unregister_wait: Duration,
    drain: Duration,
    instance: Option<Arc<InstanceRegistration>>,
    metadata: Option<AppMetadata>,
    /// The gRPC health statuses served over `tri`.
    #[cfg(feature = "triple")]
    health: Option<crate::grpc::HealthReporter>,
}

impl Provider {
    /// A builder listening on `listen` (port 0 picks a free port), serving
    /// [`DEFAULT_PROTOCOL`] with the protocols of [`extension::builtin`](crate::extension::builtin).
    pub fn builder(listen: SocketAddr) -> ProviderBuilder {
        ProviderBuilder {
            application: "rdubbo-provider".to_owned(),
            listen,
            host: None,
            registries: Vec::new(),
            services: Vec::new(),
            unregister_wait: Duration::from_secs(1),
            drain: Duration::from_secs(10),
            params: Vec::new(),
            layers: Vec::new(),
            protocol: DEFAULT_PROTOCOL.to_owned(),
            extensions: crate::extension::shared(),
            configured: Vec::new(),
            tls: Vec::new(),
            register_mode: RegisterMode::default(),
            app_metadata: None,
            grpc_builtins: true,
            serving_at_start: true,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Open connections of the server.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// The provider URLs, as built at the start (one per exported service, before any
    /// dynamic configuration; see [`registered_urls`](Self::registered_urls)).
    pub fn urls(&self) -> &[Url] {
        &self.urls
    }

    /// The provider URLs with the `override://` rules that target them applied: what is
    /// registered now (while registered).
    pub fn registered_urls(&self) -> Vec<Url> {
        self.registrations.iter().map(|r| r.configured()).collect()
    }

    /// The dynamic parameters of each exported service (in export order), for callers
    /// that register the URLs themselves (the application).
    #[cfg_attr(not(feature = "app"), allow(dead_code))]
    pub(crate) fn dynamic(&self) -> &[Arc<Dynamic>] {
        &self.dynamic
    }

    /// The application's metadata as its MetadataService answers it (when the provider
    /// registers by application in at least one registry).
    pub fn metadata(&self) -> Option<&crate::metadata::MetadataInfo> {
        self.metadata.as_ref().and_then(AppMetadata::info)
    }

    /// The application instance registered (when the provider registers by application in
    /// at least one registry).
    pub fn instance(&self) -> Option<&ServiceInstance> {
        self.instance.as_ref().map(|i| i.instance())
    }

    /// The statuses its gRPC health service answers with (served with reflection when
    /// the protocol is `tri`; `SERVING` once [`start`](ProviderBuilder::start) registered
    /// the services, not before; `NOT_SERVING` once unregistered).
    #[cfg(feature = "triple")]
    pub fn health(&self) -> Option<&crate::grpc::HealthReporter> {
        self.health.as_ref()
    }

    /// Unregisters only (the server keeps serving): consumers stop sending new calls.
    pub async fn unregister(&self) {
        #[cfg(feature = "triple")]
        if let Some(health) = &self.health {
            health.set_all(crate::grpc::ServingStatus::NotServing);
        }
        if let Some(instance) = &self.instance {
            instance.set_online(false).await;
        }
        for registration in &self.registrations {
            registration.set_online(false).await;
        }
    }

    /// Stops in order: unregister, stop following dynamic configuration, wait for
    /// consumers to drop this provider, end gRPC health watches (over `tri`), refuse new
    /// calls, drain in-flight calls, close.
    pub async fn stop(self) {
        self.unregister().await;
        for registration in &self.registrations {
            registration.close().await;
        }
        if !self.registries.is_empty() {
            tokio::time::sleep(self.unregister_wait).await;
        }
        // Health watches end (after NOT_SERVING): they would hold the drain up.
        #[cfg(feature = "triple")]
        if let Some(health) = &self.health {
            health.shutdown();
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

    /// The host written in the provider URLs, with `anyhost=false` (default: the listen
    /// address with `anyhost=false`, or 127.0.0.1 with `anyhost=true` when listening on all
    /// interfaces, as Java decides `anyhost`).
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Where to register ([`RegisterMode::All`] by default, as Java 3): `Interface` (one
    /// URL per service, Dubbo 2's model), `Instance` (the application instance and the
    /// MetadataService, Dubbo 3's model) or both. A registry URL's `register-mode`
    /// parameter overrides it for that registry; registries without application-level
    /// support ([`Registry::service_discovery`]) get interface-level URLs whatever the mode.
    pub fn register_mode(mut self, mode: RegisterMode) -> Self {
        self.register_mode = mode;
        self
    }

    /// Serves `metadata`'s MetadataService too, for a caller (the application) that
    /// publishes it and registers the instance itself.
    /// Leaves the gRPC health `NOT_SERVING` after `start`: the caller registers the
    /// services itself and sets the health when it did.
    #[cfg_attr(not(feature = "app"), allow(dead_code))]
    pub(crate) fn not_serving_at_start(mut self) -> Self {
        self.serving_at_start = false;
        self
    }

    #[cfg_attr(not(feature = "app"), allow(dead_code))]
    pub(crate) fn metadata_service(mut self, metadata: AppMetadata) -> Self {
        self.app_metadata = Some(metadata);
        self
    }

    /// Whether a `tri` provider also serves gRPC health (`grpc.health.v1.Health`) and
    /// server reflection (`grpc.reflection.v1[alpha].ServerReflection`) on its port
    /// (default: yes; see [`crate::grpc`]). Other protocols never do.
    pub fn grpc_builtins(mut self, on: bool) -> Self {
        self.grpc_builtins = on;
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

    /// Adds a layer around every exported service (the first added sees calls first).
    /// Built-in filters asked for by parameters (`accesslog`, `tps`, `executes`) run
    /// inside the ones added here; a `timeout` set by an `override://` rule outside them.
    pub fn layer(mut self, layer: Arc<dyn Layer>) -> Self {
        self.layers.push(layer);
        self
    }

    /// Adds a filter around every exported service: [`layer`](Self::layer) for a
    /// [`Filter`].
    pub fn filter(self, filter: Arc<dyn Filter>) -> Self {
        self.layer(filter::layer(filter))
    }

    /// The protocol to serve, by name in the builder's extension table: `jsonrpc` (the
    /// default with the `jsonrpc` feature), `dubbo` (with the `dubbo` feature) or one
    /// added with [`extensions`](Self::extensions).
    pub fn protocol(mut self, name: &str) -> Self {
        self.protocol = name.to_owned();
        self
    }

    /// The extension table the protocol is taken from (default:
    /// [`extension::builtin`](crate::extension::builtin)).
    pub fn extensions(mut self, extensions: Arc<Extensions>) -> Self {
        self.extensions = extensions;
        self
    }

    /// Limits of the Dubbo protocol server (when serving `dubbo`): serves a
    /// [`DubboProtocol`](rdubbo_protocol_dubbo::DubboProtocol) with this configuration,
    /// in place of the table's `dubbo`. With [`tls`](rdubbo_protocol_dubbo::ServerConfig::tls)
    /// set, the provider URLs say `ssl-enabled=true` (as Java's), so consumers call over TLS.
    #[cfg(feature = "dubbo")]
    pub fn dubbo_config(mut self, config: rdubbo_protocol_dubbo::ServerConfig) -> Self {
        self.tls.retain(|p| *p != "dubbo");
        if config.tls.is_some() {
            self.tls.push("dubbo");
        }
        self.configure(Arc::new(
            rdubbo_protocol_dubbo::DubboProtocol::default().with_server_config(config),
        ))
    }

    /// Server limits of the JSON-RPC server (when serving `jsonrpc`): serves a
    /// [`JsonRpcProtocol`](rdubbo_protocol_jsonrpc::JsonRpcProtocol) with this
    /// configuration, in place of the table's `jsonrpc`. With
    /// [`tls`](rdubbo_protocol_jsonrpc::ServerConfig::tls) set, the provider URLs say
    /// `ssl-enabled=true`, so consumers call over HTTPS.
    #[cfg(feature = "jsonrpc")]
    pub fn server_config(mut self, config: rdubbo_protocol_jsonrpc::ServerConfig) -> Self {
        self.tls.retain(|p| *p != "jsonrpc");
        if config.tls.is_some() {
            self.tls.push("jsonrpc");
        }
        self.configure(Arc::new(
            rdubbo_protocol_jsonrpc::JsonRpcProtocol::default().with_server_config(config),
        ))
    }

    /// Limits and TLS of the Triple server (when serving `tri`): serves a
    /// [`TripleProtocol`](rdubbo_protocol_triple::TripleProtocol) with this configuration,
    /// in place of the table's `tri`. With [`tls`](rdubbo_protocol_triple::ServerConfig::tls)
    /// set, the provider URLs say `ssl-enabled=true`, so consumers call over TLS.
    #[cfg(feature = "triple")]
    pub fn triple_config(mut self, config: rdubbo_protocol_triple::ServerConfig) -> Self {
        self.tls.retain(|p| *p != "tri");
        if config.tls.is_some() {
            self.tls.push("tri");
        }
        self.configure(Arc::new(
            rdubbo_protocol_triple::TripleProtocol::default().with_server_config(config),
        ))
    }

    #[cfg(any(feature = "dubbo", feature = "jsonrpc", feature = "triple"))]
    fn configure(mut self, protocol: Arc<dyn crate::Protocol>) -> Self {
        self.configured.retain(|p| p.name() != protocol.name());
        self.configured.push(protocol);
        self
    }

    /// The builder's table: its extensions with the protocols configured on it.
    fn table(&self) -> Arc<Extensions> {
        if self.configured.is_empty() {
            return self.extensions.clone();
        }
        let mut table = (*self.extensions).clone();
        for protocol in &self.configured {
            table.add_protocol(protocol.clone());
        }
        Arc::new(table)
    }

    /// Binds the server, then registers every service in every registry. A registry that
    /// is unreachable does not stop the start: the registration is retried in the
    /// background.
    ///
    /// Fails with [`SetupError::Unknown`] for a protocol the table lacks,
    /// [`SetupError::Unsupported`] for a consumer-only one, [`SetupError::Io`] when the
    /// address cannot be bound.
    pub async fn start(self) -> Result<Provider, SetupError> {
        let table = self.table();
        let protocol = table.check_protocol(&self.protocol)?.clone();
        // Per registry: its URL's `register-mode`, else the builder's.
        let (interface_registries, discoveries) =
            instance::split_by_mode(&self.registries, self.register_mode)?;
        // Java's `token=true` (or `default`): a random token, in the URLs and the check.
        #[cfg_attr(not(feature = "dubbo"), allow(unused_mut))]
        let mut params = self.params.clone();
        #[cfg(feature = "dubbo")]
        for (k, v) in &mut params {
            let random = v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("default");
            if k == "token" && random {
                *v = rdubbo_protocol_dubbo::random_token();
            }
        }
        if self.tls.contains(&self.protocol.as_str()) {
            params.retain(|(k, _)| k != "ssl-enabled");
            params.push(("ssl-enabled".into(), "true".into()));
        }
        // The provider's own application metadata, when it registers an instance.
        let own_metadata = (self.app_metadata.is_none() && !discoveries.is_empty())
            .then(|| AppMetadata::new(&self.application));
        let dynamic: Vec<Arc<Dynamic>> = self
            .services
            .iter()
            .map(|_| Arc::new(Dynamic::default()))
            .collect();
        let exports: Vec<Export> = self
            .services
            .iter()
            .zip(&dynamic)
            .map(|((info, invoker), dynamic)| {
                let mut template = Url::new(&self.protocol, "0.0.0.0", None, &info.interface);
                for (k, v) in &params {
                    template.set_param(k, v.clone());
                }
                // Outermost: the deadline of a dynamically configured `timeout` covers the
                // whole chain; then the builder's layers, then the built-in ones the URL
                // asks for (`accesslog`, `tps`, `executes`).
                let mut layers: Vec<Arc<dyn Layer>> =
                    vec![filter::layer(Arc::new(DynamicTimeout {
                        dynamic: dynamic.clone(),
                    }))];
                // Over dubbo, Java's token check (`token=`) before all of them.
                #[cfg(feature = "dubbo")]
                if self.protocol == "dubbo" {
                    if let Some(token) = template.param_non_empty("token") {
                        let check = rdubbo_protocol_dubbo::TokenLayer::new(token);
                        layers.insert(0, Arc::new(check));
                    }
                }
                layers.extend(self.layers.iter().cloned());
                layers.extend(filter::from_url(&template, Side::Provider));
                Export {
                    info: info.clone(),
                    invoker: layered(invoker.clone(), &layers),
                }
            })
            .collect();
        let mut exports = exports;
        if let Some(metadata) = self.app_metadata.as_ref().or(own_metadata.as_ref()) {
            exports.push(metadata.export());
        }
        // Over tri, gRPC health and server reflection too (grpcurl, health probes).
        #[cfg(feature = "triple")]
        let health = (self.grpc_builtins && self.protocol == "tri").then(|| {
            let health = crate::grpc::HealthReporter::new();
            let infos: Vec<ServiceInfo> = self.services.iter().map(|(i, _)| i.clone()).collect();
            exports.extend(crate::grpc::builtin_exports(&infos, &health));
            // Not serving until registered: a probe that sees the port must not send
            // traffic before consumers could find it.
            health.set_all(crate::grpc::ServingStatus::NotServing);
            health
        });
        let server = protocol.serve(self.listen, exports).await?;
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
                for (k, v) in &params {
                    url.set_param(k, v.clone());
                }
                sort_params(&url)
            })
            .collect();
        // The registries that take the instance only: the URLs follow their config
        // centers' configurator documents there, and republish the metadata on a change.
        let followed: Vec<Arc<dyn Registry>> = match &own_metadata {
            Some(_) => self
                .registries
                .iter()
                .filter(|r| !interface_registries.iter().any(|i| Arc::ptr_eq(i, r)))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let mut registrations = Vec::new();
        if !interface_registries.is_empty() || !followed.is_empty() {
            for (url, dynamic) in urls.iter().zip(&dynamic) {
                let registration = Registration::with_followed(
                    url.clone(),
                    interface_registries.clone(),
                    followed.clone(),
                    dynamic.clone(),
                );
                registration.subscribe().await;
                registration.set_online(true).await;
                registrations.push(registration);
            }
        }
        let mut instance = None;
        if let Some(metadata) = &own_metadata {
            // The metadata of the URLs as configured (Java's exported URLs).
            let configured = |registrations: &[Arc<Registration>]| -> Vec<Url> {
                if registrations.is_empty() {
                    urls.clone()
                } else {
                    registrations.iter().map(|r| r.configured()).collect()
                }
            };
            let registration = Arc::new(metadata.publish(
                &host,
                &[(self.protocol.clone(), addr.port())],
                &configured(&registrations),
                &timestamp,
                discoveries,
            ));
            // A change of the configured URLs republishes the metadata and updates the
            // instance's revision.
            instance::follow_configured(&registration, metadata, &registrations).await;
            registration.set_online(true).await;
            instance = Some(registration);
        }
        #[cfg(feature = "triple")]
        if let (Some(health), true) = (&health, self.serving_at_start) {
            health.set_all(crate::grpc::ServingStatus::Serving);
        }
        Ok(Provider {
            server,
            urls,
            registrations,
            dynamic,
            registries: self.registries,
            unregister_wait: self.unregister_wait,
            drain: self.drain,
            instance,
            metadata: own_metadata,
            #[cfg(feature = "triple")]
            health,
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
    // The parameters a Java 2.7 provider registers (`ServiceConfig.doExportUrlsFor1Protocol`
    // less what `RegistryProtocol.getUrlToRegistry` strips), with these differences:
    // - `methods` is sorted (Java 2.7 writes HashSet order, which is not reproducible;
    //   Java 3 sorts);
    // - `release` names rdubbo's version (Java: its jar's; only the rmi and http protocols
    //   read it);
    // - `revision` is the service version (Java prefers the version of the jar holding the
    //   interface, which a Rust service has not; like Java, absent without a version);
    // - no `logger`, `bind.*`, `qos.*`: Java writes `logger` only when configured.
    let mut methods = info.methods.clone();
    methods.sort();
    methods.dedup();
    let version = info.version.as_deref().filter(|v| !v.is_empty());
    let group = info.group.as_deref().filter(|g| !g.is_empty());
    let mut service_name = "ServiceBean:/".to_owned();
    if let Some(g) = group {
        service_name.push_str(g);
        service_name.push('/');
    }
    service_name.push_str(&info.interface);
    if let Some(v) = version {
        service_name.push(':');
        service_name.push_str(v);
    }
    let mut params: Vec<(String, String)> = vec![
        ("anyhost".into(), anyhost.to_string()),
        ("application".into(), crate::url::encode(application)),
        ("deprecated".into(), "false".into()),
        ("dubbo".into(), "2.0.2".into()),
        ("dynamic".into(), "true".into()),
        ("generic".into(), "false".into()),
        ("interface".into(), info.interface.clone()),
        ("methods".into(), methods.join(",")),
        ("pid".into(), std::process::id().to_string()),
        (
            "release".into(),
            format!("rdubbo-{}", env!("CARGO_PKG_VERSION")),
        ),
        ("service.name".into(), service_name),
        ("side".into(), "provider".into()),
        ("timestamp".into(), timestamp.to_owned()),
    ];
    if let Some(v) = version {
        params.push(("revision".into(), v.to_owned()));
        params.push(("version".into(), v.to_owned()));
    }
    if let Some(g) = group {
        params.push(("group".into(), g.to_owned()));
    }
    let text = format!(
        "{protocol}://{host}:{port}/{}?{}",
        info.interface,
        sorted_params(&mut params)
    );
    Url::parse(&text).unwrap_or_else(|_| Url::new(protocol, host, Some(port), &info.interface))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: Option<&str>, group: Option<&str>) -> ServiceInfo {
        ServiceInfo {
            interface: "com.example.Greeter".into(),
            version: version.map(str::to_owned),
            group: group.map(str::to_owned),
            methods: vec!["sayHello".into(), "add".into(), "add".into()],
            ..Default::default()
        }
    }

    #[test]
    fn provider_urls_carry_java_2_7_parameters() {
        let url = protocol_provider_url(
            "dubbo",
            &info(Some("1.0.0"), None),
            "127.0.0.1",
            20881,
            true,
            "greeter-provider",
            "1796272171481",
        );
        let pid = std::process::id();
        let release = env!("CARGO_PKG_VERSION");
        assert_eq!(
            url.to_string(),
            format!(
                "dubbo://127.0.0.1:20881/com.example.Greeter?anyhost=true&application=greeter-provider\
                 &deprecated=false&dubbo=2.0.2&dynamic=true&generic=false\
                 &interface=com.example.Greeter&methods=add,sayHello&pid={pid}\
                 &release=rdubbo-{release}&revision=1.0.0\
                 &service.name=ServiceBean:/com.example.Greeter:1.0.0&side=provider\
                 &timestamp=1796272171481&version=1.0.0"
            )
        );
        // No version: no `revision` either; a group goes into `service.name`.
        let url = protocol_provider_url(
            "dubbo",
            &info(None, Some("blue")),
            "10.0.0.1",
            20880,
            false,
            "app",
            "1",
        );
        assert_eq!(url.param("anyhost"), Some("false"));
        assert_eq!(url.param("revision"), None);
        assert_eq!(url.param("version"), None);
        assert_eq!(url.param("group"), Some("blue"));
        assert_eq!(
            url.param("service.name"),
            Some("ServiceBean:/blue/com.example.Greeter")
        );
    }

    #[test]
    fn sorting_keeps_every_parameter() {
        let url: Url = "dubbo://u:p@h:1/i?b=2&a=1&c=x%3Dy".parse().unwrap();
        let sorted = sort_params(&url);
        assert_eq!(sorted.to_string(), "dubbo://u:p@h:1/i?a=1&b=2&c=x%3Dy");
        assert_eq!(sort_params(&sorted), sorted);
    }
}

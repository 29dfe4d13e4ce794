//! The Nacos registry client (Open API v1 over HTTP, UDP pushes).
//!
//! Registry URL: `nacos://[user:password@]host:port?backup=h2:p2,h3:p3&namespace=…&group=…`
//! with optional `clusterName` (default `DEFAULT`), `timeout` (ms per request, default
//! 3000), `retry.period` (ms between retries of a failed registration, default 5000),
//! `poll` (ms between list queries of a subscription; default the server's `cacheMillis`),
//! `push=false` (no UDP push subscription: polling only), `username`/`password` (or in the
//! URL's user info), `check`, `file` (the cache file, see
//! [`RegistryCache::for_registry`](rdubbo_core::registry::RegistryCache::for_registry)).
//!
//! Dubbo URLs map to Nacos instances as Java Dubbo maps them: service
//! `providers:<interface>:<version>:<group>` in the registry's group, instance address =
//! the URL's host and port, metadata = every URL parameter plus `category`, `protocol` and
//! `path`. Subscriptions read both that name and the older one without empty trailing parts
//! (`providers:<interface>`), and notify enabled, healthy instances with a weight above 0.
//!
//! The same client also hands out Dubbo's dynamic configuration on the config API
//! ([`NacosConfig`], long polling) and Dubbo 3's application-level registration
//! ([`NacosServiceDiscovery`]: instances of service `<app>`, the mapping in config group
//! `mapping`).
//!
//! The registered set, the retries, the listeners and the cache file are
//! [`rdubbo_registry::FailbackRegistry`]'s; this module adds the client's setup, the other
//! modules the HTTP API, the beats, the UDP pushes and the subscriptions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};
use rdubbo_registry::{backend_events, FailbackOptions, FailbackRegistry};
use tokio::net::UdpSocket;

pub use crate::api::instance_url;
use crate::api::Shared;
pub use crate::backend::NacosBackend;
pub use crate::config_center::NacosConfig;
pub use crate::discovery::NacosServiceDiscovery;
use crate::model::{DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE};
use crate::push::receive_pushes;
pub use crate::push::{decode_push, PushPacket};

/// A registry backed by a Nacos server (or `rdubbo registry`).
#[derive(Clone)]
pub struct NacosRegistry {
    inner: FailbackRegistry<NacosBackend>,
    config: Arc<NacosConfig>,
    discovery: Arc<NacosServiceDiscovery>,
}

impl std::fmt::Debug for NacosRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        f.debug_struct("NacosRegistry")
            .field("servers", &shared.servers)
            .field("namespace", &shared.namespace)
            .field("group", &shared.group)
            .finish()
    }
}

impl NacosRegistry {
    /// Connects to the servers of `url`. With `check=true` the first server round trip must
    /// succeed; otherwise an unreachable server is retried in the background.
    pub async fn connect(url: &Url) -> RegistryResult<NacosRegistry> {
        let registry = NacosRegistry::new(url).await?;
        if url.param_bool("check", false) {
            registry
                .shared()
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
        let (events, stream) = backend_events();
        let options = FailbackOptions::from_url(url);
        let shared = Arc::new(Shared {
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
            retry_period: options.retry_period,
            poll: url
                .param_non_empty("poll")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| Duration::from_millis(v.max(100))),
            udp,
            watches: Mutex::new(HashMap::new()),
            available: AtomicBool::new(true),
            last_error_log: Mutex::new(None),
            events,
            epoch: tokio::sync::watch::channel(0).0,
        });
        let udp_task = shared
            .udp
            .clone()
            .map(|sock| tokio::spawn(receive_pushes(sock, Arc::downgrade(&shared))));
        let config = Arc::new(NacosConfig::new(url, shared.clone()));
        let discovery = Arc::new(NacosServiceDiscovery::new(
            url,
            shared.clone(),
            config.clone(),
        ));
        let backend = NacosBackend::new(shared, udp_task);
        Ok(NacosRegistry {
            inner: FailbackRegistry::new(url.clone(), backend, stream, options),
            config,
            discovery,
        })
    }

    /// The UDP port pushes are received on (`None` when polling only).
    pub fn push_port(&self) -> Option<u16> {
        self.shared()
            .udp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
    }

    /// The namespace this client works in.
    pub fn namespace(&self) -> &str {
        &self.shared().namespace
    }

    /// The Nacos group this client registers in.
    pub fn group(&self) -> &str {
        &self.shared().group
    }

    /// The failback base (registered set, pending retries, cache).
    pub fn failback(&self) -> &FailbackRegistry<NacosBackend> {
        &self.inner
    }

    /// Dubbo's dynamic configuration on the config API of the same servers (also
    /// [`Registry::dynamic_configuration`](rdubbo_core::Registry::dynamic_configuration)).
    pub fn config(&self) -> &Arc<NacosConfig> {
        &self.config
    }

    /// Dubbo 3's application-level registration on the same servers (also
    /// [`Registry::service_discovery`](rdubbo_core::Registry::service_discovery)).
    pub fn discovery(&self) -> &Arc<NacosServiceDiscovery> {
        &self.discovery
    }

    fn shared(&self) -> &Shared {
        &self.inner.backend().shared
    }
}

rdubbo_registry::forward_registry!(NacosRegistry, inner, {
    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.discovery.close().await;
            self.config.close();
            self.inner.destroy().await;
        })
    }

    fn service_discovery(&self) -> Option<Arc<dyn rdubbo_core::ServiceDiscovery>> {
        Some(self.discovery.clone())
    }

    fn dynamic_configuration(&self) -> Option<Arc<dyn rdubbo_core::DynamicConfiguration>> {
        Some(self.config.clone())
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Host;

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
    fn subscriptions_read_both_names() {
        let url: Url = "consumer://127.0.0.1/com.foo.Bar?interface=com.foo.Bar"
            .parse()
            .unwrap();
        assert_eq!(
            crate::subscribe::names_for(&url, "providers"),
            vec!["providers:com.foo.Bar::", "providers:com.foo.Bar"]
        );
        let url: Url = "consumer://127.0.0.1/com.foo.Bar?interface=com.foo.Bar&version=1.0&group=g"
            .parse()
            .unwrap();
        assert_eq!(
            crate::subscribe::names_for(&url, "providers"),
            vec!["providers:com.foo.Bar:1.0:g"]
        );
    }
}

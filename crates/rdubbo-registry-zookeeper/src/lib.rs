//! ZooKeeper registry for rdubbo, with exactly Apache Dubbo's node layout.
//!
//! ```text
//! /dubbo                                   root: "/" + the registry URL's `group` (default dubbo)
//! /dubbo/<interface>                       persistent
//! /dubbo/<interface>/providers/<enc url>   ephemeral (persistent when dynamic=false)
//! /dubbo/<interface>/consumers/<enc url>   ephemeral
//! /dubbo/<interface>/routers/…             rules
//! /dubbo/<interface>/configurators/…       rules
//! /dubbo/mapping/<interface>               Dubbo 3: the applications providing it
//! /services/<app>/<ip>:<port>              Dubbo 3: an application instance (ephemeral JSON)
//! /dubbo/config/<group>/<key>              the config center: governance rules (YAML)
//! ```
//!
//! Address: `zookeeper://[user:pass@]127.0.0.1:2181?backup=127.0.0.1:2182,127.0.0.1:2183`.
//! Parameters: `group` (root, default `dubbo`), `session` or `zk.session.expire` (session
//! timeout in ms, default 60000), `timeout` (connect timeout in ms, default 5000),
//! `retry.period` (ms between retries of failed operations, default 5000), `check` (fail
//! [`ZookeeperRegistry::connect`] when ZooKeeper cannot be reached, default `false`),
//! `file` / `file.cache=false` (the cache file, see
//! [`RegistryCache::for_registry`](rdubbo_core::registry::RegistryCache::for_registry)).
//!
//! The registered set, the retries, the listeners and the cache file are
//! [`rdubbo_registry::FailbackRegistry`]'s; this crate adds the ZooKeeper session
//! (connection, expiry), the node layout ([`ZookeeperConfig`]) and the watches.
//!
//! Resilience, as Java Dubbo's `FailbackRegistry` and more:
//! - the client never uses a connection that is gone: while disconnected every operation
//!   fails at once with [`RegistryError::Unavailable`] and is queued for retry;
//! - failed registrations and unregistrations are retried every `retry.period`;
//! - after a reconnect every subscription re-reads its folders and notifies the full lists;
//! - after a session expiry a new session is opened, every registered node is re-created
//!   (a stale node left by the expired session is replaced) and every watch re-armed;
//! - subscribers are never told "no providers" because the registry went away: lists are
//!   only ever replaced by what ZooKeeper says;
//! - the last list of each service is written to a cache file; a subscription that cannot
//!   reach ZooKeeper is first answered from that file.

use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::registry::RegistryCache;
use rdubbo_core::{BoxFuture, Registry, RegistryError, RegistryResult, Url};
use rdubbo_registry::{backend_events, FailbackOptions, FailbackRegistry};

mod backend;
mod config;
mod config_center;
mod discovery;
mod session;
mod watch;

pub use backend::ZookeeperBackend;
pub use config::ZookeeperConfig;
pub use config_center::ZookeeperDynamicConfiguration;
pub use discovery::{
    instance_json, parse_instance, parse_mapping, ZookeeperServiceDiscovery,
    ZOOKEEPER_INSTANCE_CLASS,
};
pub use watch::decode_children;

/// Default session timeout, as Java Dubbo's `zk.session.expire`.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(60_000);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Default period between retries of failed operations.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_millis(5_000);

/// A registry client connected to one ZooKeeper ensemble.
///
/// Cheap to clone; all clones share one session. Dropping the last clone does not
/// unregister anything: call [`Registry::destroy`] for an orderly goodbye.
#[derive(Clone, Debug)]
pub struct ZookeeperRegistry {
    inner: FailbackRegistry<ZookeeperBackend>,
    discovery: Arc<ZookeeperServiceDiscovery>,
    config_center: Arc<ZookeeperDynamicConfiguration>,
}

impl ZookeeperRegistry {
    /// Creates the registry and starts connecting in the background. Waits up to the connect
    /// timeout for the first session; when none comes, fails if `check=true`, otherwise
    /// returns a registry that keeps trying (operations queue up and are retried).
    pub async fn connect(url: &Url) -> RegistryResult<ZookeeperRegistry> {
        let registry = ZookeeperRegistry::new(url)?;
        let config = registry.config().clone();
        let connected = registry.wait_connected(config.connect_timeout).await;
        if !connected {
            if config.check {
                registry.destroy().await;
                return Err(RegistryError::Unavailable(format!(
                    "cannot connect to zookeeper {} within {:?}",
                    config.connect_string, config.connect_timeout
                )));
            }
            tracing::warn!(
                zookeeper = %config.connect_string,
                "zookeeper not reachable yet; registrations and subscriptions will be retried"
            );
        }
        Ok(registry)
    }

    /// Creates the registry without waiting for a connection. Must be called inside a Tokio
    /// runtime.
    pub fn new(url: &Url) -> RegistryResult<ZookeeperRegistry> {
        let config = ZookeeperConfig::from_url(url)?;
        let options = FailbackOptions {
            retry_period: config.retry_period,
            cache: RegistryCache::for_registry(url),
        };
        let (events, stream) = backend_events();
        let shared = Arc::new(session::Shared::new(config, events));
        tokio::spawn(session::run_session(shared.clone()));
        let discovery = Arc::new(ZookeeperServiceDiscovery::new(url, shared.clone()));
        let config_center = Arc::new(ZookeeperDynamicConfiguration::new(url, shared.clone()));
        let backend = ZookeeperBackend { shared };
        Ok(ZookeeperRegistry {
            inner: FailbackRegistry::new(url.clone(), backend, stream, options),
            discovery,
            config_center,
        })
    }

    /// The parsed settings.
    pub fn config(&self) -> &ZookeeperConfig {
        &self.inner.backend().shared.config
    }

    /// The failback base (registered set, pending retries, cache).
    pub fn failback(&self) -> &FailbackRegistry<ZookeeperBackend> {
        &self.inner
    }

    /// Waits until a session is established (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.backend().shared.conn.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| c.is_some()))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// The ZooKeeper session id in use, if connected (for logs and tools).
    pub fn session_id(&self) -> Option<i64> {
        self.inner
            .backend()
            .shared
            .conn
            .borrow()
            .as_ref()
            .map(|c| c.client.session_id().0)
    }

    /// Dubbo 3's application-level registration over the same session
    /// (`/services/<app>/<ip:port>`, `/dubbo/mapping/<interface>`).
    pub fn discovery(&self) -> &Arc<ZookeeperServiceDiscovery> {
        &self.discovery
    }

    /// Dubbo's config center over the same session (`/dubbo/config/<group>/<key>`).
    pub fn config_center(&self) -> &Arc<ZookeeperDynamicConfiguration> {
        &self.config_center
    }

    /// URLs registered through this client whose registration has not succeeded yet.
    pub fn pending_registrations(&self) -> Vec<Url> {
        self.inner.failed_registrations()
    }
}

rdubbo_registry::forward_registry!(ZookeeperRegistry, inner, {
    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.discovery.close().await;
            self.config_center.close();
            self.inner.destroy().await;
        })
    }

    fn service_discovery(&self) -> Option<Arc<dyn rdubbo_core::ServiceDiscovery>> {
        Some(self.discovery.clone())
    }

    fn dynamic_configuration(&self) -> Option<Arc<dyn rdubbo_core::DynamicConfiguration>> {
        Some(self.config_center.clone())
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_decoded_and_filtered() {
        let consumer: Url = "consumer://127.0.0.1/demo.Api?interface=demo.Api&version=1.0.0"
            .parse()
            .unwrap();
        let good: Url = "jsonrpc://127.0.0.1:1/demo.Api?interface=demo.Api&version=1.0.0"
            .parse()
            .unwrap();
        let other_version = good.clone().with_param("version", "2.0.0");
        let disabled = good
            .clone()
            .with_param("enabled", "false")
            .with_param("x", "1");
        let children = vec![
            good.to_encoded(),
            other_version.to_encoded(),
            disabled.to_encoded(),
            "not-a-url".to_owned(),
            "bad%3A%2F%2F%ZZ".to_owned(),
        ];
        assert_eq!(decode_children(&consumer, &children), vec![good]);
    }

    proptest::proptest! {
        #[test]
        fn any_node_names_decode_without_panic(names in proptest::collection::vec("\\PC*", 0..8), tail in "[%0-9A-Za-z.=&]*") {
            let consumer: Url = "consumer://h/x?interface=*&group=*&version=*&category=*".parse().unwrap();
            let mut children = names;
            children.push(format!("jsonrpc%3A%2F%2F{tail}"));
            let _ = decode_children(&consumer, &children);
        }
    }
}

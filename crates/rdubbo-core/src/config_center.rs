//! Dubbo's dynamic configuration (the "config center"): text documents by key and group,
//! read once or watched, that carry governance rules (configurators, condition and tag
//! routers, the migration rule) written by dubbo-admin, `zkCli.sh`, Nacos clients or
//! `rdubbo config set`.
//!
//! Where Java keeps them:
//!
//! - ZooKeeper: the node `/dubbo/config/<group>/<key>` (root `dubbo` by default);
//! - Nacos: the config API, `dataId = <key>`, `group = <group>`;
//! - the embedded registry: the same Nacos config API.
//!
//! The keys Java Dubbo uses, all in group [`DEFAULT_GROUP`] unless said otherwise:
//! `<application>.configurators`, `<service-key>.configurators` (service key:
//! `[group/]interface[:version]`), `<application>.condition-router`,
//! `<service-key>.condition-router`, `<application>.tag-router`, and
//! `<application>.migration` in group [`MIGRATION_GROUP`].
//!
//! A registry that has a config center hands one out through
//! [`Registry::dynamic_configuration`](crate::Registry::dynamic_configuration).

use std::sync::Arc;

use crate::{BoxFuture, RegistryResult};

/// The group governance rules live in (`dubbo`).
pub const DEFAULT_GROUP: &str = "dubbo";

/// The group of the `<application>.migration` rules (Java's
/// `DUBBO_SERVICEDISCOVERY_MIGRATION`).
pub const MIGRATION_GROUP: &str = "DUBBO_SERVICEDISCOVERY_MIGRATION";

/// The suffix of configurator rule keys (`<app or service-key>.configurators`).
pub const CONFIGURATORS_SUFFIX: &str = ".configurators";

/// The suffix of condition router rule keys.
pub const CONDITION_ROUTER_SUFFIX: &str = ".condition-router";

/// The suffix of tag router rule keys (application scope only).
pub const TAG_ROUTER_SUFFIX: &str = ".tag-router";

/// The suffix of migration rule keys (group [`MIGRATION_GROUP`]).
pub const MIGRATION_SUFFIX: &str = ".migration";

/// One change of a watched document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The key (ZooKeeper node name, Nacos `dataId`).
    pub key: String,
    /// The group.
    pub group: String,
    /// The new content; `None` when the document was deleted (or does not exist).
    pub content: Option<String>,
}

/// Receives the content of a watched document each time it may have changed.
pub trait ConfigListener: Send + Sync + 'static {
    /// Called with the current content (or `None` once deleted). Implementations may be
    /// called again with unchanged content (after a reconnect, for instance).
    fn on_change(&self, change: ConfigChange);
}

impl<F: Fn(ConfigChange) + Send + Sync + 'static> ConfigListener for F {
    fn on_change(&self, change: ConfigChange) {
        self(change)
    }
}

/// Dynamic configuration in one backend (Java's `DynamicConfiguration`).
///
/// Watches survive reconnects and new sessions: the implementation reads the document
/// again then and notifies when it differs from what the listener last saw.
pub trait DynamicConfiguration: Send + Sync + 'static {
    /// The document `group`/`key` now, or `None` when there is none (one read).
    fn get(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<Option<String>>>;

    /// Writes (creates or replaces) a document.
    fn publish(&self, key: &str, group: &str, content: &str) -> BoxFuture<'_, RegistryResult<()>>;

    /// Deletes a document; deleting one that does not exist is not an error.
    fn remove(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<()>>;

    /// Watches a document: `listener` is called with the current content as soon as it is
    /// known (also when there is none), then on every change, until
    /// [`unwatch`](Self::unwatch).
    fn watch(
        &self,
        key: &str,
        group: &str,
        listener: Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>>;

    /// Stops calling `listener` for `group`/`key`.
    fn unwatch(
        &self,
        key: &str,
        group: &str,
        listener: &Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>>;

    /// The keys present in `group` (for listings such as `rdubbo config ls`); the default
    /// answers [`RegistryError::Invalid`](crate::RegistryError::Invalid) ("not supported").
    fn keys(&self, group: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>> {
        let group = group.to_owned();
        Box::pin(async move {
            Err(crate::RegistryError::Invalid(format!(
                "listing the keys of group `{group}` is not supported by this config center"
            )))
        })
    }
}

//! Opening a registry by URL.
//!
//! ```no_run
//! # async fn run() -> Result<(), rdubbo::RegistryError> {
//! let registry = rdubbo::registry::connect("zookeeper://127.0.0.1:2181").await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

/// The registry model every registry speaks (the trait, `empty://` placeholders,
/// subscribed categories, the cache file), for writing a registry of one's own.
pub use rdubbo_core::registry::{
    empty_url, is_empty_url, subscribed_categories, NotifyListener, Registry, RegistryCache,
    RegistryError, RegistryFactory, RegistryResult, EMPTY_PROTOCOL,
};

pub use rdubbo_registry::{
    FailbackOptions, FailbackRegistry, MemoryRegistry, MemoryStore, Notifier, RegistryBackend,
};

use crate::extension::{self, Extensions};
use crate::Url;

/// Registry schemes this build supports (those of [`extension::builtin`]).
pub fn supported_schemes() -> &'static [&'static str] {
    &[
        "memory",
        #[cfg(feature = "zookeeper")]
        "zookeeper",
        #[cfg(feature = "zookeeper")]
        "zk",
        #[cfg(feature = "nacos")]
        "nacos",
    ]
}

/// Connects to the registry named by `url` (`zookeeper://host:port?backup=…`,
/// `nacos://host:8848?namespace=…&group=…`) with the registries of this build
/// ([`extension::builtin`]). Waits for
/// the first session up to the URL's `timeout`; a registry that is down is not an error
/// unless `check=true` (operations are retried until it is back).
pub async fn connect(url: &str) -> RegistryResult<Arc<dyn Registry>> {
    connect_with(&extension::shared(), url).await
}

/// The store of `memory://<name>`: one per name in this process, shared by every client
/// that connects to that name (see [`MemoryStore`]).
pub fn memory_store(name: &str) -> MemoryStore {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static STORES: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
    STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// [`connect`] with the registry factories of `extensions` (by URL scheme).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let table = rdubbo::extension::Extensions::new();
/// let e = rdubbo::registry::connect_with(&table, "zookeeper://127.0.0.1:2181")
///     .await
///     .err()
///     .unwrap();
/// assert!(e.to_string().contains("unsupported registry `zookeeper`"));
/// # }
/// ```
pub async fn connect_with(extensions: &Extensions, url: &str) -> RegistryResult<Arc<dyn Registry>> {
    let url: Url = url
        .parse()
        .map_err(|e| RegistryError::Invalid(format!("registry URL {url:?}: {e}")))?;
    connect_url_with(extensions, &url).await
}

/// [`connect`] with a parsed URL.
pub async fn connect_url(url: &Url) -> RegistryResult<Arc<dyn Registry>> {
    connect_url_with(&extension::shared(), url).await
}

/// [`connect_with`] with a parsed URL.
pub async fn connect_url_with(
    extensions: &Extensions,
    url: &Url,
) -> RegistryResult<Arc<dyn Registry>> {
    let scheme = url.protocol();
    let Some(factory) = extensions.registry(scheme) else {
        return Err(RegistryError::Invalid(format!(
            "unsupported registry `{scheme}` (supported: {})",
            extensions.registry_names().join(", ")
        )));
    };
    factory.connect(url).await
}

/// Formats URL parameters sorted by key, as Java Dubbo writes them.
pub(crate) fn sorted_params(params: &mut [(String, String)]) -> String {
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Milliseconds since the Unix epoch (the `timestamp` parameter).
pub(crate) fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

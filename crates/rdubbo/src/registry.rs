//! Opening a registry by URL.
//!
//! ```no_run
//! # async fn run() -> Result<(), rdubbo::RegistryError> {
//! let registry = rdubbo::registry::connect("zookeeper://127.0.0.1:2181").await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use crate::{Registry, RegistryError, RegistryResult, Url};

/// Registry schemes this build supports.
pub fn supported_schemes() -> &'static [&'static str] {
    &[
        #[cfg(feature = "zookeeper")]
        "zookeeper",
        #[cfg(feature = "nacos")]
        "nacos",
    ]
}

/// Connects to the registry named by `url` (`zookeeper://host:port?backup=…`,
/// `nacos://host:8848?namespace=…&group=…`). Waits for
/// the first session up to the URL's `timeout`; a registry that is down is not an error
/// unless `check=true` (operations are retried until it is back).
pub async fn connect(url: &str) -> RegistryResult<Arc<dyn Registry>> {
    let url: Url = url
        .parse()
        .map_err(|e| RegistryError::Invalid(format!("registry URL {url:?}: {e}")))?;
    connect_url(&url).await
}

/// [`connect`] with a parsed URL.
pub async fn connect_url(url: &Url) -> RegistryResult<Arc<dyn Registry>> {
    match url.protocol() {
        #[cfg(feature = "zookeeper")]
        "zookeeper" | "zk" => Ok(Arc::new(
            rdubbo_registry_zookeeper::ZookeeperRegistry::connect(url).await?,
        )),
        #[cfg(feature = "nacos")]
        "nacos" => Ok(Arc::new(
            rdubbo_registry_nacos::NacosRegistry::connect(url).await?,
        )),
        other => Err(RegistryError::Invalid(format!(
            "unsupported registry {other:?} (supported: {})",
            supported_schemes().join(", ")
        ))),
    }
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

//! The extension table of this build: every compiled-in protocol, registry, load balancer
//! and cluster strategy by name, registered exactly as a user's own plug-ins are.
//!
//! A [`Reference`](crate::consumer::Reference), a [`Provider`](crate::provider::Provider)
//! and [`registry::connect_with`](crate::registry::connect_with) take a table; without one
//! they use [`builtin`]. Start from [`builtin`] to add or replace an entry:
//!
//! ```
//! use std::sync::Arc;
//! use rdubbo::extension::{self, Extensions};
//!
//! let mut table: Extensions = extension::builtin();
//! # #[cfg(feature = "zookeeper")]
//! assert!(table.registry("zk").is_some());
//! assert!(table.balancer("roundrobin").is_some());
//! // A registry of one's own, under its URL scheme.
//! table.add_registry("consul", |_url: rdubbo::Url| async move {
//!     Err::<Arc<dyn rdubbo::Registry>, _>(rdubbo::RegistryError::Invalid("not here".into()))
//! });
//! assert!(table.check_registry("consul").is_ok());
//! assert!(table.check_protocol("grpc").is_err());
//! ```

use std::sync::{Arc, OnceLock};

pub use rdubbo_cluster::extension::{BalancerFactory, Extensions};

/// A table with every protocol (`jsonrpc`, `dubbo`, `tri`), registry (`zookeeper` and its alias
/// `zk`, `nacos`), load balancer and cluster strategy compiled into this build (see the
/// crate's features).
pub fn builtin() -> Extensions {
    #[allow(unused_mut)] // a build without protocols or registries adds nothing
    let mut table = Extensions::with_cluster_builtins();
    #[cfg(feature = "jsonrpc")]
    table.add_protocol(Arc::new(rdubbo_protocol_jsonrpc::JsonRpcProtocol::default()));
    #[cfg(feature = "dubbo")]
    table.add_protocol(Arc::new(rdubbo_protocol_dubbo::DubboProtocol::default()));
    #[cfg(feature = "triple")]
    table.add_protocol(Arc::new(rdubbo_protocol_triple::TripleProtocol::default()));
    table.add_registry("memory", connect_memory);
    #[cfg(feature = "zookeeper")]
    {
        table.add_registry("zookeeper", connect_zookeeper);
        table.add_registry("zk", connect_zookeeper);
    }
    #[cfg(feature = "nacos")]
    table.add_registry("nacos", connect_nacos);
    table
}

/// [`builtin`], made once and shared.
pub(crate) fn shared() -> Arc<Extensions> {
    static SHARED: OnceLock<Arc<Extensions>> = OnceLock::new();
    SHARED.get_or_init(|| Arc::new(builtin())).clone()
}

/// `memory://<name>`: an in-process registry shared by name (tests, examples, one-process
/// demos), with the failback behaviour of the real ones.
async fn connect_memory(url: crate::Url) -> crate::RegistryResult<Arc<dyn crate::Registry>> {
    let store = crate::registry::memory_store(url.host());
    let options =
        rdubbo_registry::FailbackOptions::in_memory(rdubbo_registry::DEFAULT_RETRY_PERIOD);
    Ok(Arc::new(rdubbo_registry::MemoryRegistry::with_options(
        &store, options,
    )))
}

#[cfg(feature = "zookeeper")]
async fn connect_zookeeper(url: crate::Url) -> crate::RegistryResult<Arc<dyn crate::Registry>> {
    Ok(Arc::new(
        rdubbo_registry_zookeeper::ZookeeperRegistry::connect(&url).await?,
    ))
}

#[cfg(feature = "nacos")]
async fn connect_nacos(url: crate::Url) -> crate::RegistryResult<Arc<dyn crate::Registry>> {
    Ok(Arc::new(
        rdubbo_registry_nacos::NacosRegistry::connect(&url).await?,
    ))
}

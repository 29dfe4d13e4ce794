//! Dubbo 3's application-level registration in ZooKeeper, exactly as Java 3.3 writes it:
//!
//! ```text
//! /services/<app>/<ip>:<port>      ephemeral: Curator's ServiceInstance JSON with Dubbo's metadata
//! /dubbo/mapping/<interface>       persistent: the applications providing it, comma separated
//! ```
//!
//! The instance root is the registry URL's `rootPath`, else `/` + its `group`, else
//! `/services` (Java's `CuratorFrameworkUtils.getRootPath`); the mapping lives under the
//! registry root (`/dubbo`). The mapping is updated with a compare-and-set on the node's
//! version (the application appended to the list, as Java does), so that providers of
//! several applications starting at once all end up in it.
//!
//! What is registered or mapped is kept and written again on every new connection (after a
//! session expiry the ephemeral instance is gone, or a stale node of the old session is
//! still there and is replaced) and retried every `retry.period` while it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rdubbo_core::discovery::{InstancesListener, ServiceDiscovery, ServiceInstance};
use rdubbo_core::{BoxFuture, RegistryResult, Url};
use tokio::sync::{oneshot, Notify};
use zookeeper_client as zk;

use crate::backend::zk_error;
use crate::config_center::{first_read, follow_node, Added, Hub};
use crate::session::Shared;

mod instances;
mod nodes;
mod writes;

use instances::follow_instances;
pub(crate) use nodes::is_dubbo3_folder;
pub use nodes::{instance_json, parse_instance, parse_mapping};
use nodes::{instances_root, millis_now};
use writes::keep;

/// A listener of a mapping (see [`ServiceDiscovery::watch_mapping`]).
type MappingListener = dyn Fn(Vec<String>) + Send + Sync;

/// Java's payload class of the instance JSON (`payload.@class`).
pub const ZOOKEEPER_INSTANCE_CLASS: &str = "org.apache.dubbo.registry.zookeeper.ZookeeperInstance";

/// How often a mapping update is tried again when another writer changed the node in
/// between.
const MAPPING_ATTEMPTS: usize = 16;

/// The [`ServiceDiscovery`] of a [`ZookeeperRegistry`](crate::ZookeeperRegistry), sharing
/// its session (see [`Registry::service_discovery`](rdubbo_core::Registry::service_discovery)).
pub struct ZookeeperServiceDiscovery {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ZookeeperServiceDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZookeeperServiceDiscovery")
            .field("root", &self.inner.root)
            .field("mapping_root", &self.inner.mapping_root)
            .finish()
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// `/services`.
    root: String,
    /// `/dubbo/mapping`.
    mapping_root: String,
    state: Mutex<State>,
    /// Wakes the keeper to write everything again (something failed).
    retry: Notify,
    /// Watched applications (by instance folder).
    instance_watches: Arc<Hub<dyn InstancesListener, Vec<ServiceInstance>>>,
    /// Watched mappings (by mapping node).
    mapping_watches: Arc<Hub<MappingListener, Vec<String>>>,
}

#[derive(Default)]
struct State {
    /// Instance node path → its JSON.
    instances: BTreeMap<String, Vec<u8>>,
    /// `(interface, app)` pairs to keep in the mapping.
    mappings: BTreeSet<(String, String)>,
    /// Whether the last write of something failed.
    failed: bool,
}

impl ZookeeperServiceDiscovery {
    /// The discovery of the registry at `url` over `shared`'s session; starts the task
    /// that writes everything again on each new connection.
    pub(crate) fn new(url: &Url, shared: Arc<Shared>) -> ZookeeperServiceDiscovery {
        let root = instances_root(url);
        let mapping_root = format!("{}mapping", shared.config.root_dir());
        let inner = Arc::new(Inner {
            shared,
            root,
            mapping_root,
            state: Mutex::new(State::default()),
            retry: Notify::new(),
            instance_watches: Arc::new(Hub::new(|l, dir, list| {
                let app = dir.rsplit('/').next().unwrap_or(dir);
                l.on_instances(app, list.clone())
            })),
            mapping_watches: Arc::new(Hub::new(|l, _, apps| l(apps.clone()))),
        });
        tokio::spawn(keep(Arc::downgrade(&inner)));
        ZookeeperServiceDiscovery { inner }
    }

    /// The root of the instances (`/services`).
    pub fn root(&self) -> &str {
        &self.inner.root
    }

    /// The node of an instance: `/services/<app>/<host>:<port>`.
    pub fn instance_path(&self, instance: &ServiceInstance) -> String {
        self.inner.instance_path(instance)
    }

    /// The node of an interface's mapping: `/dubbo/mapping/<interface>`.
    pub fn mapping_path(&self, interface: &str) -> String {
        format!("{}/{interface}", self.inner.mapping_root)
    }

    /// The applications with a folder under the instance root (`/services/*`), sorted
    /// (for listings such as `rdubbo ls`; a folder may be empty).
    pub async fn applications(&self) -> RegistryResult<Vec<String>> {
        self.children(&self.inner.root).await
    }

    /// The interfaces with a mapping (`/dubbo/mapping/*`), sorted.
    pub async fn mapped_interfaces(&self) -> RegistryResult<Vec<String>> {
        self.children(&self.inner.mapping_root).await
    }

    async fn children(&self, dir: &str) -> RegistryResult<Vec<String>> {
        let conn = self.inner.shared.current()?;
        match conn.client.list_children(dir).await {
            Ok(mut names) => {
                names.sort();
                Ok(names)
            }
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(zk_error(&e, dir)),
        }
    }

    /// Instances registered through this client.
    pub fn registered(&self) -> Vec<String> {
        self.inner.state().instances.keys().cloned().collect()
    }

    /// The interfaces whose mapping some listener follows now (see
    /// [`ServiceDiscovery::watch_mapping`]), sorted: each has a task and a ZooKeeper watch.
    pub fn watched_mappings(&self) -> Vec<String> {
        let prefix = format!("{}/", self.inner.mapping_root);
        self.inner
            .mapping_watches
            .keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// The applications whose instances some listener follows now (see
    /// [`ServiceDiscovery::watch_instances`]), sorted.
    pub fn watched_applications(&self) -> Vec<String> {
        self.inner
            .instance_watches
            .keys()
            .into_iter()
            .map(|dir| dir.rsplit('/').next().unwrap_or(&dir).to_owned())
            .collect()
    }

    /// Deletes every instance registered through this client (the registry's destroy).
    pub(crate) async fn close(&self) {
        self.inner.instance_watches.close();
        self.inner.mapping_watches.close();
        let paths: Vec<String> = {
            let mut state = self.inner.state();
            state.mappings.clear();
            std::mem::take(&mut state.instances).into_keys().collect()
        };
        let Ok(conn) = self.inner.shared.current() else {
            return;
        };
        for path in paths {
            match conn.client.delete(&path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => tracing::warn!(node = %path, error = %e, "cannot delete the instance"),
            }
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `/services/<app>`.
    fn app_dir(&self, app: &str) -> String {
        format!("{}/{app}", if self.root == "/" { "" } else { &self.root })
    }

    fn instance_path(&self, instance: &ServiceInstance) -> String {
        format!(
            "{}/{}/{}",
            if self.root == "/" { "" } else { &self.root },
            instance.service_name,
            instance.id()
        )
    }

    fn failed(&self) {
        self.state().failed = true;
        self.retry.notify_one();
    }
}

impl ServiceDiscovery for ZookeeperServiceDiscovery {
    fn register(&self, instance: &ServiceInstance) -> BoxFuture<'_, RegistryResult<()>> {
        let inner = self.inner.clone();
        let path = inner.instance_path(instance);
        let data = instance_json(instance, millis_now()).into_bytes();
        Box::pin(async move {
            inner.state().instances.insert(path.clone(), data.clone());
            match inner.write_instance(&path, &data).await {
                Ok(()) => {
                    tracing::info!(node = %path, "application instance registered");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(node = %path, error = %e, "instance registration failed; will retry");
                    inner.failed();
                    Err(e)
                }
            }
        })
    }

    fn unregister(&self, instance: &ServiceInstance) -> BoxFuture<'_, RegistryResult<()>> {
        let inner = self.inner.clone();
        let path = inner.instance_path(instance);
        Box::pin(async move {
            inner.state().instances.remove(&path);
            let conn = inner.shared.current()?;
            match conn.client.delete(&path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {
                    tracing::info!(node = %path, "application instance unregistered");
                    Ok(())
                }
                // The node dies with the session anyway.
                Err(e) => Err(zk_error(&e, &path)),
            }
        })
    }

    fn instances(&self, app: &str) -> BoxFuture<'_, RegistryResult<Vec<ServiceInstance>>> {
        let inner = self.inner.clone();
        let dir = inner.app_dir(app);
        Box::pin(async move {
            let conn = inner.shared.current()?;
            let children = match conn.client.list_children(&dir).await {
                Ok(c) => c,
                Err(zk::Error::NoNode) => return Ok(Vec::new()),
                Err(e) => return Err(zk_error(&e, &dir)),
            };
            let mut out = Vec::with_capacity(children.len());
            for child in children {
                let path = format!("{dir}/{child}");
                match conn.client.get_data(&path).await {
                    Ok((data, _)) => match parse_instance(&data) {
                        Some(instance) => out.push(instance),
                        None => tracing::debug!(node = %path, "not an instance; skipped"),
                    },
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(zk_error(&e, &path)),
                }
            }
            out.sort_by_key(ServiceInstance::id);
            Ok(out)
        })
    }

    fn map(&self, interface: &str, app: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let inner = self.inner.clone();
        let (interface, app) = (interface.to_owned(), app.to_owned());
        Box::pin(async move {
            inner
                .state()
                .mappings
                .insert((interface.clone(), app.clone()));
            match inner.write_mapping(&interface, &app).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(interface = %interface, app = %app, error = %e, "mapping failed; will retry");
                    inner.failed();
                    Err(e)
                }
            }
        })
    }

    fn mapping(&self, interface: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>> {
        let inner = self.inner.clone();
        let path = format!("{}/{interface}", inner.mapping_root);
        Box::pin(async move {
            let conn = inner.shared.current()?;
            match conn.client.get_data(&path).await {
                Ok((data, _)) => Ok(parse_mapping(&data)),
                Err(zk::Error::NoNode) => Ok(Vec::new()),
                Err(e) => Err(zk_error(&e, &path)),
            }
        })
    }

    fn watch_instances(
        &self,
        app: &str,
        listener: Arc<dyn InstancesListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let inner = self.inner.clone();
        let dir = inner.app_dir(app);
        Box::pin(async move {
            let Added::Start(cancel) = inner.instance_watches.add(&dir, listener) else {
                return Ok(());
            };
            let (tx, rx) = oneshot::channel();
            tokio::spawn(follow_instances(
                inner.shared.clone(),
                inner.instance_watches.clone(),
                dir,
                cancel,
                tx,
            ));
            first_read(&inner.shared, rx).await;
            Ok(())
        })
    }

    fn unwatch_instances(
        &self,
        app: &str,
        listener: &Arc<dyn InstancesListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        self.inner
            .instance_watches
            .remove(&self.inner.app_dir(app), listener);
        Box::pin(async { Ok(()) })
    }

    fn watch_mapping(
        &self,
        interface: &str,
        listener: Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let inner = self.inner.clone();
        let path = format!("{}/{interface}", inner.mapping_root);
        Box::pin(async move {
            let Added::Start(cancel) = inner.mapping_watches.add(&path, listener) else {
                return Ok(());
            };
            let (tx, rx) = oneshot::channel();
            let hub = inner.mapping_watches.clone();
            let node = path.clone();
            tokio::spawn(follow_node(
                inner.shared.clone(),
                path,
                cancel,
                Some(tx),
                move |data| hub.publish(&node, data.map(|d| parse_mapping(&d)).unwrap_or_default()),
            ));
            first_read(&inner.shared, rx).await;
            Ok(())
        })
    }

    fn unwatch_mapping(
        &self,
        interface: &str,
        listener: &Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        self.inner.mapping_watches.remove(
            &format!("{}/{interface}", self.inner.mapping_root),
            listener,
        );
        Box::pin(async { Ok(()) })
    }
}

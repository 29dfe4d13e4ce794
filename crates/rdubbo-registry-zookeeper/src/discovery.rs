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
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use rdubbo_core::discovery::{InstancesListener, ServiceDiscovery, ServiceInstance};
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};
use tokio::sync::{oneshot, watch, Notify};
use zookeeper_client as zk;

use crate::backend::zk_error;
use crate::config_center::{first_read, follow_node, next_conn, Added, Hub};
use crate::session::{conn_renewed, until_true, Conn, Shared};

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

/// Folders Dubbo 3 keeps under the registry root beside the interfaces (the mapping, the
/// config center, the metadata report): never an interface.
pub(crate) fn is_dubbo3_folder(name: &str) -> bool {
    matches!(name, "mapping" | "config" | "metadata")
}

/// `rootPath`, else `/` + `group`, else `/services`.
fn instances_root(url: &Url) -> String {
    let root = url
        .param_non_empty("rootPath")
        .or_else(|| url.param_non_empty(rdubbo_core::url::keys::GROUP))
        .unwrap_or("/services");
    let root = if root.starts_with('/') {
        root.to_owned()
    } else {
        format!("/{root}")
    };
    if root.len() > 1 {
        root.trim_end_matches('/').to_owned()
    } else {
        root
    }
}

fn millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The Curator `ServiceInstance` JSON Java 3.3 writes (Curator's compatible serialization:
/// no `enabled`; the payload with Jackson's `@class`).
pub fn instance_json(instance: &ServiceInstance, registration_time_utc: u64) -> String {
    let id = instance.id();
    let metadata: serde_json::Map<String, serde_json::Value> = instance
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "name": instance.service_name,
        "id": id,
        "address": instance.host,
        "port": instance.port,
        "sslPort": null,
        "payload": {
            "@class": ZOOKEEPER_INSTANCE_CLASS,
            "id": id,
            "name": instance.service_name,
            "metadata": metadata,
        },
        "registrationTimeUTC": registration_time_utc,
        "serviceType": "DYNAMIC",
        "uriSpec": null,
    })
    .to_string()
}

/// Reads an instance node's JSON (Java's, Curator's or rdubbo's); `None` when it is not one.
pub fn parse_instance(json: &[u8]) -> Option<ServiceInstance> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let name = v.get("name")?.as_str()?.to_owned();
    let host = v.get("address")?.as_str()?.to_owned();
    let port = u16::try_from(v.get("port")?.as_u64()?).ok()?;
    let mut instance = ServiceInstance::new(&name, &host, port);
    if let Some(serde_json::Value::Object(m)) = v.get("payload").and_then(|p| p.get("metadata")) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                instance.metadata.insert(k.clone(), s.to_owned());
            }
        }
    }
    Some(instance)
}

/// The applications of a mapping node's data: comma separated, trimmed, sorted.
pub fn parse_mapping(data: &[u8]) -> Vec<String> {
    let apps: BTreeSet<String> = String::from_utf8_lossy(data)
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    apps.into_iter().collect()
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

    /// Creates (or updates, or replaces when a dead session left it) one instance node.
    async fn write_instance(&self, path: &str, data: &[u8]) -> RegistryResult<()> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let client = &conn.client;
        let dir = &path[..path.rfind('/').unwrap_or(0)];
        if !dir.is_empty() {
            client
                .mkdir(dir, &shared.dir_options())
                .await
                .map_err(|e| zk_error(&e, dir))?;
        }
        let options = shared.node_options(true);
        for _ in 0..3 {
            match client.create(path, data, &options).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(zk_error(&e, path)),
            }
            let (current, stat) = match client.get_data(path).await {
                Ok(found) => found,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(zk_error(&e, path)),
            };
            if stat.ephemeral_owner == client.session_id().0 {
                if current == data {
                    return Ok(());
                }
                return match client.set_data(path, data, None).await {
                    Ok(_) => Ok(()),
                    Err(zk::Error::NoNode) => continue,
                    Err(e) => Err(zk_error(&e, path)),
                };
            }
            // Left by a session of ours that expired (or by another process at the same
            // address): it must die with the current session.
            match client.delete(path, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => {}
                Err(e) => return Err(zk_error(&e, path)),
            }
        }
        Err(RegistryError::Backend(format!(
            "{path}: the node keeps changing under us"
        )))
    }

    /// Adds `app` to the mapping of `interface`, compare-and-set on the node's version.
    async fn write_mapping(&self, interface: &str, app: &str) -> RegistryResult<()> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let client = &conn.client;
        let path = format!("{}/{interface}", self.mapping_root);
        for attempt in 0..MAPPING_ATTEMPTS {
            if attempt > 0 {
                // Someone else wrote in between: back off a little, at random.
                let jitter = u64::from(std::process::id()).wrapping_add(millis_now()) % 50;
                tokio::time::sleep(Duration::from_millis(10 + jitter)).await;
            }
            match client.get_data(&path).await {
                Ok((data, stat)) => {
                    if parse_mapping(&data).iter().any(|a| a == app) {
                        return Ok(());
                    }
                    // Appended, as Java does (`old + "," + app`).
                    let old = String::from_utf8_lossy(&data);
                    let old = old.trim().trim_end_matches(',');
                    let new = if old.is_empty() {
                        app.to_owned()
                    } else {
                        format!("{old},{app}")
                    };
                    match client
                        .set_data(&path, new.as_bytes(), Some(stat.version))
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(zk::Error::BadVersion) | Err(zk::Error::NoNode) => continue,
                        Err(e) => return Err(zk_error(&e, &path)),
                    }
                }
                Err(zk::Error::NoNode) => {
                    client
                        .mkdir(&self.mapping_root, &shared.dir_options())
                        .await
                        .map_err(|e| zk_error(&e, &self.mapping_root))?;
                    match client
                        .create(&path, app.as_bytes(), &shared.node_options(false))
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(zk::Error::NodeExists) => continue,
                        Err(e) => return Err(zk_error(&e, &path)),
                    }
                }
                Err(e) => return Err(zk_error(&e, &path)),
            }
        }
        Err(RegistryError::Backend(format!(
            "{path}: gave up after {MAPPING_ATTEMPTS} concurrent updates"
        )))
    }

    /// Writes every instance and mapping; true when all succeeded.
    async fn write_all(&self) -> bool {
        let (instances, mappings) = {
            let mut state = self.state();
            state.failed = false;
            (state.instances.clone(), state.mappings.clone())
        };
        let mut ok = true;
        for (path, data) in &instances {
            // Unregistered meanwhile: leave it alone.
            if self.state().instances.get(path) != Some(data) {
                continue;
            }
            if let Err(e) = self.write_instance(path, data).await {
                tracing::warn!(node = %path, error = %e, "instance registration failed; will retry");
                ok = false;
            } else if !self.state().instances.contains_key(path) {
                // Unregistered while it was being written: take it away again.
                if let Ok(conn) = self.shared.current() {
                    let _ = conn.client.delete(path, None).await;
                }
            }
        }
        for (interface, app) in &mappings {
            if let Err(e) = self.write_mapping(interface, app).await {
                tracing::warn!(interface = %interface, app = %app, error = %e, "mapping failed; will retry");
                ok = false;
            }
        }
        if !ok {
            self.state().failed = true;
        }
        ok
    }
}

/// Writes everything again on every new connection (a reconnect or a new session), and
/// every `retry.period` while something failed, until the registry closes.
async fn keep(inner: Weak<Inner>) {
    let (mut conns, mut closed, period) = match inner.upgrade() {
        Some(i) => (
            i.shared.conn.subscribe(),
            i.shared.closed.subscribe(),
            i.shared.config.retry_period,
        ),
        None => return,
    };
    let mut generation = conns.borrow().as_ref().map(|c| c.generation);
    loop {
        let retry = async {
            match inner.upgrade() {
                Some(i) => {
                    i.retry.notified().await;
                    // Let a burst of failures gather.
                    tokio::time::sleep(period).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            changed = conns.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = conns.borrow_and_update().as_ref().map(|c| c.generation);
                if now.is_none() || now == generation {
                    continue;
                }
                generation = now;
            }
            _ = retry => {}
            _ = until_true(&mut closed) => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let pending = {
            let state = inner.state();
            !state.instances.is_empty() || !state.mappings.is_empty()
        };
        if pending && !inner.write_all().await {
            inner.retry.notify_one();
        }
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
}

/// A watched data read of one instance node: its name when the watch fires.
type DataWatch = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// The instances of one application as last read, with the watches armed on them.
struct AppView {
    dir: String,
    /// Child node name → the instance it holds (`None`: not an instance).
    children: BTreeMap<String, Option<ServiceInstance>>,
    data_watches: FuturesUnordered<DataWatch>,
}

impl AppView {
    fn list(&self) -> Vec<ServiceInstance> {
        let mut list: Vec<ServiceInstance> = self.children.values().flatten().cloned().collect();
        list.sort_by_key(ServiceInstance::id);
        list
    }

    /// Reads the folder's children (arming a children watch, or an existence watch while
    /// the folder is missing), reads the children not known yet and forgets those gone.
    async fn read_children(&mut self, client: &zk::Client) -> RegistryResult<zk::OneshotWatcher> {
        let (names, watcher) = loop {
            match client.list_and_watch_children(&self.dir).await {
                Ok(found) => break found,
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(zk_error(&e, &self.dir)),
            }
            match client.check_and_watch_stat(&self.dir).await {
                Ok((None, watcher)) => break (Vec::new(), watcher),
                Ok((Some(_), _)) => continue,
                Err(e) => return Err(zk_error(&e, &self.dir)),
            }
        };
        let names: BTreeSet<String> = names.into_iter().collect();
        self.children.retain(|name, _| names.contains(name));
        for name in names {
            if !self.children.contains_key(&name) {
                self.read_child(client, &name).await?;
            }
        }
        Ok(watcher)
    }

    /// Reads one child and arms a data watch on it.
    async fn read_child(&mut self, client: &zk::Client, name: &str) -> RegistryResult<()> {
        let path = format!("{}/{name}", self.dir);
        match client.get_and_watch_data(&path).await {
            Ok((data, _, watcher)) => {
                let instance = parse_instance(&data);
                if instance.is_none() {
                    tracing::debug!(node = %path, "not an instance; skipped");
                }
                self.children.insert(name.to_owned(), instance);
                let name = name.to_owned();
                self.data_watches.push(Box::pin(async move {
                    watcher.changed().await;
                    name
                }));
                Ok(())
            }
            Err(zk::Error::NoNode) => {
                self.children.remove(name);
                Ok(())
            }
            Err(e) => Err(zk_error(&e, &path)),
        }
    }
}

/// Follows the instances of one application (`dir` = `/services/<app>`) until cancelled,
/// as Curator's `ServiceCache` does: a children watch on the folder and a data watch on
/// each instance; only what changed is read again; the whole folder after a reconnect or a
/// new session. `hub` gets the complete list after each change.
async fn follow_instances(
    shared: Arc<Shared>,
    hub: Arc<Hub<dyn InstancesListener, Vec<ServiceInstance>>>,
    dir: String,
    mut cancel: watch::Receiver<bool>,
    first: oneshot::Sender<RegistryResult<()>>,
) {
    let mut first = Some(first);
    let mut conns = shared.conn.subscribe();
    let mut closed = shared.closed.subscribe();
    loop {
        let Some(conn) = next_conn(&mut conns, &mut cancel, &mut closed).await else {
            return;
        };
        let mut view = AppView {
            dir: dir.clone(),
            children: BTreeMap::new(),
            data_watches: FuturesUnordered::new(),
        };
        let result = follow_view(
            &hub,
            &mut view,
            &conn,
            &mut conns,
            (&mut cancel, &mut closed),
            &mut first,
        )
        .await;
        match result {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(folder = %dir, error = %e, "cannot read the instances; will retry");
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                }
                tokio::select! {
                    _ = tokio::time::sleep(shared.config.retry_period) => {}
                    _ = conn_renewed(&mut conns, conn.generation) => {}
                    _ = until_true(&mut cancel) => return,
                    _ = until_true(&mut closed) => return,
                }
            }
        }
    }
}

/// Reads the folder over `conn` and follows its changes; `Ok(true)` when the connection
/// was renewed (read everything again), `Ok(false)` when cancelled.
async fn follow_view(
    hub: &Hub<dyn InstancesListener, Vec<ServiceInstance>>,
    view: &mut AppView,
    conn: &Conn,
    conns: &mut watch::Receiver<Option<Conn>>,
    stop: (&mut watch::Receiver<bool>, &mut watch::Receiver<bool>),
    first: &mut Option<oneshot::Sender<RegistryResult<()>>>,
) -> RegistryResult<bool> {
    enum Event {
        Children,
        Data(String),
        Renewed,
        Stop,
    }
    let (cancel, closed) = stop;
    let client = &conn.client;
    let watcher = view.read_children(client).await?;
    let mut children_fired: WatchFired = Box::pin(watcher.changed());
    loop {
        hub.publish(&view.dir, view.list());
        if let Some(first) = first.take() {
            let _ = first.send(Ok(()));
        }
        let event = loop {
            let event = tokio::select! {
                _ = &mut children_fired => Event::Children,
                Some(name) = view.data_watches.next(), if !view.data_watches.is_empty() => Event::Data(name),
                _ = conn_renewed(conns, conn.generation) => Event::Renewed,
                _ = until_true(cancel) => Event::Stop,
                _ = until_true(closed) => Event::Stop,
            };
            match event {
                // The watch of a child gone meanwhile.
                Event::Data(ref name) if !view.children.contains_key(name) => continue,
                event => break event,
            }
        };
        match event {
            Event::Children => {
                let watcher = view.read_children(client).await?;
                children_fired = Box::pin(watcher.changed());
            }
            // Either it changed, or it is gone (then the children watch fires too).
            Event::Data(name) => view.read_child(client, &name).await?,
            Event::Renewed => return Ok(true),
            Event::Stop => return Ok(false),
        }
    }
}

/// A fired children (or existence) watch.
type WatchFired = std::pin::Pin<Box<dyn std::future::Future<Output = zk::WatchedEvent> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_json_is_curators_compatible_form() {
        let mut i = ServiceInstance::new("java3-peer-provider", "127.0.0.1", 27910);
        i.metadata.insert(
            "dubbo.endpoints".into(),
            r#"[{"port":27910,"protocol":"dubbo"}]"#.into(),
        );
        i.metadata
            .insert("dubbo.metadata.revision".into(), "10fc9334".into());
        let json = instance_json(&i, 1796266292216);
        assert_eq!(
            json,
            r#"{"name":"java3-peer-provider","id":"127.0.0.1:27910","address":"127.0.0.1","port":27910,"sslPort":null,"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"127.0.0.1:27910","name":"java3-peer-provider","metadata":{"dubbo.endpoints":"[{\"port\":27910,\"protocol\":\"dubbo\"}]","dubbo.metadata.revision":"10fc9334"}},"registrationTimeUTC":1796266292216,"serviceType":"DYNAMIC","uriSpec":null}"#
        );
        assert_eq!(parse_instance(json.as_bytes()), Some(i));
    }

    #[test]
    fn java_instance_node_parses() {
        let java = br#"{"name":"java3-peer-provider","id":"127.0.0.1:27910","address":"127.0.0.1","port":27910,"sslPort":null,"payload":{"@class":"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"127.0.0.1:27910","name":"java3-peer-provider","metadata":{"dubbo.endpoints":"[{\"port\":27910,\"protocol\":\"dubbo\"}]","dubbo.metadata-service.url-params":"{\"prefer.serialization\":\"hessian2\",\"version\":\"1.0.0\",\"dubbo\":\"2.0.2\",\"release\":\"3.3.1\",\"side\":\"provider\",\"port\":\"27910\",\"protocol\":\"dubbo\"}","dubbo.metadata.revision":"10fc93341913e4916a2eb7cd2b6119b0","dubbo.metadata.storage-type":"local","meta-v":"1.0.0","timestamp":"1796266292121"}},"registrationTimeUTC":1796266292216,"serviceType":"DYNAMIC","uriSpec":null}"#;
        let i = parse_instance(java).unwrap();
        assert_eq!(i.id(), "127.0.0.1:27910");
        assert_eq!(i.revision(), Some("10fc93341913e4916a2eb7cd2b6119b0"));
        assert_eq!(i.endpoints(), vec![("dubbo".to_owned(), 27910)]);
        assert_eq!(i.metadata_service_params()["protocol"], "dubbo");
        assert_eq!(parse_instance(b"127.0.0.1"), None);
    }

    #[test]
    fn mapping_and_roots() {
        assert_eq!(parse_mapping(b" b,a ,,a"), vec!["a", "b"]);
        assert!(parse_mapping(b"").is_empty());
        let url: Url = "zookeeper://127.0.0.1:2181".parse().unwrap();
        assert_eq!(instances_root(&url), "/services");
        let url: Url = "zookeeper://127.0.0.1:2181?rootPath=/apps/"
            .parse()
            .unwrap();
        assert_eq!(instances_root(&url), "/apps");
        let url: Url = "zookeeper://127.0.0.1:2181?group=shop".parse().unwrap();
        assert_eq!(instances_root(&url), "/shop");
    }
}

//! Dubbo 3's application-level registration on Nacos, as Java 3.3 writes it
//! (`NacosServiceDiscovery`, `NacosMetadataReport`):
//!
//! - the application instance is an ephemeral Nacos instance of service `<app>` in group
//!   `nacos.group`, else the registry URL's `group`, else `DEFAULT_GROUP`, at the
//!   instance's host and port, with Dubbo's metadata (`dubbo.metadata.revision`,
//!   `dubbo.endpoints`, `dubbo.metadata-service.url-params` …) as its metadata; beats keep
//!   it alive and register it again when the server no longer knows it (a restart);
//! - the interface → application mapping is the config `dataId = <interface>`,
//!   `group = mapping`, content the applications comma separated, updated with a
//!   compare-and-set (`casMd5` = the MD5 of the content read, `"0"` when there is none),
//!   the application appended as Java does. Mappings are written again whenever the server
//!   answers after an outage, and retried every `retry.period` while they fail.
//!
//! Consumers read instances with the list API (pushes and polls follow them) and watch the
//! mapping through the config long poll.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rdubbo_core::config_center::{ConfigChange, ConfigListener, DynamicConfiguration};
use rdubbo_core::discovery::{InstancesListener, ServiceDiscovery, ServiceInstance};
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::api::{InstanceSpec, Shared};
use crate::beat::keep_beating;
use crate::config_center::{NacosConfig, PublishFailure};
use crate::config_wire::{content_md5, parse_mapping, MAPPING_GROUP};
use crate::model::{self, ServiceInfo};

/// How often a mapping update is tried again when another writer changed it in between.
const MAPPING_ATTEMPTS: usize = 16;

/// The [`ServiceDiscovery`] of a [`NacosRegistry`](crate::NacosRegistry) (see
/// [`Registry::service_discovery`](rdubbo_core::Registry::service_discovery)).
pub struct NacosServiceDiscovery {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NacosServiceDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NacosServiceDiscovery")
            .field("group", &self.inner.group)
            .finish()
    }
}

type Watcher = (String, Arc<dyn InstancesListener>, JoinHandle<()>);

/// A listener of a mapping (see [`ServiceDiscovery::watch_mapping`]).
type MappingListener = Arc<dyn Fn(Vec<String>) + Send + Sync>;

/// A mapping watch: the interface, the caller's listener and the config listener made
/// for it.
type MappingWatch = (String, MappingListener, Arc<dyn ConfigListener>);

struct Inner {
    shared: Arc<Shared>,
    config: Arc<NacosConfig>,
    group: String,
    /// Registered instances by id, with their beat task.
    instances: Mutex<HashMap<String, (InstanceSpec, JoinHandle<()>)>>,
    /// `(interface, app)` pairs kept in the mapping.
    mappings: Mutex<BTreeSet<(String, String)>>,
    /// Wakes the keeper: a mapping write failed.
    retry: Notify,
    watchers: Mutex<Vec<Watcher>>,
    mapping_watchers: Mutex<Vec<MappingWatch>>,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NacosServiceDiscovery {
    pub(crate) fn new(
        url: &Url,
        shared: Arc<Shared>,
        config: Arc<NacosConfig>,
    ) -> NacosServiceDiscovery {
        let group = url
            .param_non_empty("nacos.group")
            .map(str::to_owned)
            .unwrap_or_else(|| shared.group.clone());
        let inner = Arc::new(Inner {
            shared,
            config,
            group,
            instances: Mutex::new(HashMap::new()),
            mappings: Mutex::new(BTreeSet::new()),
            retry: Notify::new(),
            watchers: Mutex::new(Vec::new()),
            mapping_watchers: Mutex::new(Vec::new()),
            keeper: Mutex::new(None),
        });
        *lock(&inner.keeper) = Some(tokio::spawn(keep(Arc::downgrade(&inner))));
        NacosServiceDiscovery { inner }
    }

    /// The Nacos group application instances are registered in.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// The Dubbo 3 applications of the group: its services that have an instance carrying
    /// Dubbo's metadata (`dubbo.metadata.revision`, `dubbo.endpoints` …), sorted; services
    /// named after an interface (`providers:…`) and other Nacos services are left out.
    pub async fn applications(&self) -> RegistryResult<Vec<String>> {
        let mut apps = Vec::new();
        for name in self
            .inner
            .shared
            .service_names_in(&self.inner.group)
            .await?
        {
            if model::parse_dubbo_service_name(&name).is_some() {
                continue;
            }
            let info = self.inner.shared.query_in(&self.inner.group, &name).await?;
            let dubbo = info.hosts.iter().any(|h| {
                h.metadata
                    .keys()
                    .any(|k| k.starts_with("dubbo.metadata.") || k == "dubbo.endpoints")
            });
            if dubbo {
                apps.push(name);
            }
        }
        apps.sort();
        apps.dedup();
        Ok(apps)
    }

    /// The interfaces that have an interface → application mapping (the `dataId`s of config
    /// group `mapping`), sorted.
    pub async fn mapped_interfaces(&self) -> RegistryResult<Vec<String>> {
        self.inner.config.keys(MAPPING_GROUP).await
    }

    /// Withdraws every instance registered through this client and stops its tasks (the
    /// registry's destroy).
    pub(crate) async fn close(&self) {
        if let Some(t) = lock(&self.inner.keeper).take() {
            t.abort();
        }
        for (_, _, t) in lock(&self.inner.watchers).drain(..) {
            t.abort();
        }
        lock(&self.inner.mapping_watchers).clear();
        lock(&self.inner.mappings).clear();
        let specs: Vec<InstanceSpec> = lock(&self.inner.instances)
            .drain()
            .map(|(_, (spec, beat))| {
                beat.abort();
                spec
            })
            .collect();
        for spec in specs {
            if let Err(e) = self.inner.shared.deregister_instance(&spec).await {
                tracing::warn!(instance = %spec.id(), error = %RegistryError::from(e), "cannot withdraw the instance");
            }
        }
    }
}

impl Drop for NacosServiceDiscovery {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.inner.keeper).take() {
            t.abort();
        }
        for (_, _, t) in lock(&self.inner.watchers).drain(..) {
            t.abort();
        }
        for (_, (_, beat)) in lock(&self.inner.instances).drain() {
            beat.abort();
        }
    }
}

impl Inner {
    fn spec(&self, instance: &ServiceInstance) -> InstanceSpec {
        InstanceSpec {
            service: instance.service_name.clone(),
            group: self.group.clone(),
            ip: instance.host.clone(),
            port: instance.port,
            weight: 1.0,
            enabled: true,
            ephemeral: true,
            metadata: instance.metadata.clone(),
        }
    }

    /// Adds `app` to the mapping of `interface` (compare-and-set, appended).
    async fn write_mapping(&self, interface: &str, app: &str) -> RegistryResult<()> {
        for attempt in 0..MAPPING_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 + fastrand::u64(..50))).await;
            }
            let current = self.config.get(interface, MAPPING_GROUP).await?;
            let old = current.as_deref().unwrap_or("");
            if parse_mapping(old).iter().any(|a| a == app) {
                return Ok(());
            }
            let old = old.trim().trim_end_matches(',');
            let new = if old.is_empty() {
                app.to_owned()
            } else {
                format!("{old},{app}")
            };
            let cas = match &current {
                Some(c) => content_md5(Some(c)),
                None => "0".to_owned(),
            };
            match self
                .config
                .publish_cas(interface, MAPPING_GROUP, &new, &cas)
                .await
            {
                Ok(()) => return Ok(()),
                Err(PublishFailure::Conflict) => continue,
                Err(PublishFailure::Other(e)) => return Err(e),
            }
        }
        Err(RegistryError::Backend(format!(
            "mapping of {interface}: gave up after {MAPPING_ATTEMPTS} concurrent updates"
        )))
    }

    /// Writes every mapping; true when all succeeded.
    async fn write_mappings(&self) -> bool {
        let mappings = lock(&self.mappings).clone();
        let mut ok = true;
        for (interface, app) in &mappings {
            if let Err(e) = self.write_mapping(interface, app).await {
                tracing::warn!(%interface, %app, error = %e, "mapping failed; will retry");
                ok = false;
            }
        }
        ok
    }
}

/// Writes the mappings again when the server answers after an outage, and every
/// `retry.period` while a write failed.
async fn keep(inner: Weak<Inner>) {
    let (mut epochs, period) = match inner.upgrade() {
        Some(i) => (i.shared.epoch.subscribe(), i.shared.retry_period),
        None => return,
    };
    let mut failed = false;
    loop {
        let retry = async {
            match inner.upgrade() {
                Some(i) if !failed => i.retry.notified().await,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
            tokio::time::sleep(period).await;
        };
        tokio::select! {
            changed = epochs.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = retry => {}
        }
        let Some(i) = inner.upgrade() else { return };
        failed = !i.write_mappings().await;
    }
}

/// The instances of a list answer: enabled, healthy, weight above 0.
fn instances_of(app: &str, info: Option<&ServiceInfo>) -> Vec<ServiceInstance> {
    let Some(info) = info else {
        return Vec::new();
    };
    let mut out: Vec<ServiceInstance> = info
        .hosts
        .iter()
        .filter(|h| h.enabled && h.healthy && h.weight > 0.0)
        .map(|h| ServiceInstance {
            service_name: app.to_owned(),
            host: h.ip.clone(),
            port: h.port,
            metadata: h.metadata.clone(),
        })
        .collect();
    out.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    out
}

/// Follows the instances of `app`: a list query (which also subscribes to pushes) now and
/// every `cacheMillis` (or `poll`), pushes in between; the listener gets each new list.
async fn follow_instances(
    shared: Weak<Shared>,
    group: String,
    app: String,
    listener: Arc<dyn InstancesListener>,
) {
    let grouped = model::grouped(&group, &app);
    let mut rx = match shared.upgrade() {
        Some(s) => s.watch(&grouped),
        None => return,
    };
    let mut interval = Duration::from_secs(10);
    let mut notified_once = false;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let ok = match s.query_in(&group, &app).await {
            Ok(info) => {
                if info.cache_millis > 0 {
                    interval = Duration::from_millis(info.cache_millis.clamp(500, 60_000));
                }
                if let Some(p) = s.poll {
                    interval = p;
                }
                s.update(info);
                true
            }
            Err(e) => {
                s.log_unreachable("instances", &RegistryError::from(e).to_string());
                false
            }
        };
        let wait = if ok {
            interval
        } else {
            s.retry_period.min(interval)
        };
        drop(s);
        let changed = rx.has_changed().unwrap_or(false);
        if changed || (ok && !notified_once) {
            let list = instances_of(&app, rx.borrow_and_update().as_ref());
            notified_once = true;
            listener.on_instances(&app, list);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let list = instances_of(&app, rx.borrow_and_update().as_ref());
                    notified_once = true;
                    listener.on_instances(&app, list);
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
}

impl ServiceDiscovery for NacosServiceDiscovery {
    fn register(&self, instance: &ServiceInstance) -> BoxFuture<'_, RegistryResult<()>> {
        let spec = self.inner.spec(instance);
        Box::pin(async move {
            if spec.service.is_empty() || spec.ip.is_empty() {
                return Err(RegistryError::Invalid(format!(
                    "instance {} has no application or host",
                    spec.id()
                )));
            }
            let result = self.inner.shared.register_instance(&spec).await;
            // Kept and beaten for either way: the beats register it again once the server
            // answers.
            let beat = tokio::spawn(keep_beating(
                Arc::downgrade(&self.inner.shared),
                spec.clone(),
            ));
            if let Some((_, old)) = lock(&self.inner.instances).insert(spec.id(), (spec, beat)) {
                old.abort();
            }
            result.map_err(RegistryError::from)
        })
    }

    fn unregister(&self, instance: &ServiceInstance) -> BoxFuture<'_, RegistryResult<()>> {
        let spec = self.inner.spec(instance);
        Box::pin(async move {
            if let Some((_, beat)) = lock(&self.inner.instances).remove(&spec.id()) {
                beat.abort();
            }
            Ok(self.inner.shared.deregister_instance(&spec).await?)
        })
    }

    fn instances(&self, app: &str) -> BoxFuture<'_, RegistryResult<Vec<ServiceInstance>>> {
        let app = app.to_owned();
        Box::pin(async move {
            let info = self.inner.shared.query_in(&self.inner.group, &app).await?;
            Ok(instances_of(&app, Some(&info)))
        })
    }

    fn map(&self, interface: &str, app: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let (interface, app) = (interface.to_owned(), app.to_owned());
        Box::pin(async move {
            lock(&self.inner.mappings).insert((interface.clone(), app.clone()));
            let result = self.inner.write_mapping(&interface, &app).await;
            if result.is_err() {
                self.inner.retry.notify_one();
            }
            result
        })
    }

    fn mapping(&self, interface: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>> {
        let interface = interface.to_owned();
        Box::pin(async move {
            let content = self.inner.config.get(&interface, MAPPING_GROUP).await?;
            Ok(parse_mapping(content.as_deref().unwrap_or("")))
        })
    }

    fn watch_instances(
        &self,
        app: &str,
        listener: Arc<dyn InstancesListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let app = app.to_owned();
        Box::pin(async move {
            let task = tokio::spawn(follow_instances(
                Arc::downgrade(&self.inner.shared),
                self.inner.group.clone(),
                app.clone(),
                listener.clone(),
            ));
            lock(&self.inner.watchers).push((app, listener, task));
            Ok(())
        })
    }

    fn unwatch_instances(
        &self,
        app: &str,
        listener: &Arc<dyn InstancesListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let app = app.to_owned();
        let listener = listener.clone();
        Box::pin(async move {
            lock(&self.inner.watchers).retain(|(a, l, t)| {
                let this = *a == app && Arc::ptr_eq(l, &listener);
                if this {
                    t.abort();
                }
                !this
            });
            Ok(())
        })
    }

    fn watch_mapping(
        &self,
        interface: &str,
        listener: Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let interface = interface.to_owned();
        Box::pin(async move {
            let caller = listener.clone();
            let adapter: Arc<dyn ConfigListener> = Arc::new(move |change: ConfigChange| {
                listener(parse_mapping(change.content.as_deref().unwrap_or("")));
            });
            lock(&self.inner.mapping_watchers).push((interface.clone(), caller, adapter.clone()));
            let watched = self
                .inner
                .config
                .watch(&interface, MAPPING_GROUP, adapter.clone())
                .await;
            if watched.is_err() {
                lock(&self.inner.mapping_watchers).retain(|(_, _, a)| !Arc::ptr_eq(a, &adapter));
            }
            watched
        })
    }

    fn unwatch_mapping(
        &self,
        interface: &str,
        listener: &MappingListener,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let interface = interface.to_owned();
        let listener = listener.clone();
        Box::pin(async move {
            let adapters: Vec<Arc<dyn ConfigListener>> = {
                let mut watches = lock(&self.inner.mapping_watchers);
                let mut taken = Vec::new();
                watches.retain(|(i, l, adapter)| {
                    let this = *i == interface && Arc::ptr_eq(l, &listener);
                    if this {
                        taken.push(adapter.clone());
                    }
                    !this
                });
                taken
            };
            for adapter in adapters {
                self.inner
                    .config
                    .unwatch(&interface, MAPPING_GROUP, &adapter)
                    .await?;
            }
            Ok(())
        })
    }
}

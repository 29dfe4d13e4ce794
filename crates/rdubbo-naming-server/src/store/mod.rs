//! The naming data of the embedded server: namespace → `group@@service` → cluster →
//! instances, with beats, health, expiry and the persistent part kept in redb.

mod disk;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg(test)]
use rdubbo_registry_nacos::model::ServiceInfo;
use rdubbo_registry_nacos::model::{
    Host, DEFAULT_BEAT_INTERVAL_MS, META_BEAT_INTERVAL, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT,
};

use disk::db_key;
pub(crate) use disk::{open_table, Change, Flush, Writer, CONFIGS};

/// Identifies a service: namespace and grouped name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ServiceKey {
    pub namespace: String,
    pub grouped: String,
}

/// One stored instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub ephemeral: bool,
    pub cluster: String,
    /// Shared, so that a list answer can take a snapshot of a large service cheaply and
    /// encode it outside the store lock.
    #[serde(serialize_with = "ser_meta", deserialize_with = "de_meta")]
    pub metadata: Arc<BTreeMap<String, String>>,
    /// Last beat (ephemeral) or registration time.
    #[serde(skip)]
    pub last_beat: Option<Instant>,
    /// Milliseconds since the epoch of the last beat, for the console.
    #[serde(default)]
    pub last_beat_ms: u64,
}

fn ser_meta<S: Serializer>(m: &Arc<BTreeMap<String, String>>, s: S) -> Result<S::Ok, S::Error> {
    m.as_ref().serialize(s)
}

fn de_meta<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<BTreeMap<String, String>>, D::Error> {
    BTreeMap::deserialize(d).map(Arc::new)
}

impl Instance {
    fn meta_ms(&self, key: &str, default: Duration) -> Duration {
        self.metadata
            .get(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(default)
    }

    /// Beat interval the client should use.
    pub fn beat_interval(&self) -> Duration {
        self.meta_ms(
            META_BEAT_INTERVAL,
            Duration::from_millis(DEFAULT_BEAT_INTERVAL_MS),
        )
    }

    pub fn host(&self, grouped: &str) -> Host {
        Host {
            instance_id: format!("{}#{}#{}#{}", self.ip, self.port, self.cluster, grouped),
            ip: self.ip.clone(),
            port: self.port,
            weight: self.weight,
            healthy: self.healthy,
            enabled: self.enabled,
            ephemeral: self.ephemeral,
            cluster_name: self.cluster.clone(),
            service_name: grouped.to_owned(),
            metadata: (*self.metadata).clone(),
        }
    }
}

/// What a list answer needs of one instance, taken under the store lock and encoded
/// outside it (the metadata is shared, not copied).
#[derive(Debug, Clone)]
pub(crate) struct HostSnapshot {
    pub ip: String,
    pub port: u16,
    pub weight: f64,
    pub healthy: bool,
    pub enabled: bool,
    pub ephemeral: bool,
    pub metadata: Arc<BTreeMap<String, String>>,
}

/// The instances of one service a query asked for, grouped by cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceSnapshot {
    pub clusters: Vec<(String, Vec<HostSnapshot>)>,
    pub last_ref_time: u64,
}

impl ServiceSnapshot {
    pub fn host_count(&self) -> usize {
        self.clusters.iter().map(|(_, h)| h.len()).sum()
    }
}

/// Timing of ephemeral instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub beat_timeout: Duration,
    pub delete_timeout: Duration,
}

#[derive(Default)]
pub(crate) struct Service {
    /// cluster → (ip, port) → instance.
    pub clusters: BTreeMap<String, BTreeMap<(String, u16), Instance>>,
    /// Milliseconds since the epoch of the last change.
    pub last_ref_time: u64,
}

impl Service {
    pub fn instance_count(&self) -> usize {
        self.clusters.values().map(BTreeMap::len).sum()
    }
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Known instance; the client should beat again after this interval.
    Ok(Duration),
    /// Unknown instance.
    Unknown,
}

/// All naming data.
pub(crate) struct Store {
    pub services: BTreeMap<ServiceKey, Service>,
    /// Instances in all, kept up to date so that no write has to count them.
    instances: usize,
    writer: Option<Writer>,
    last_stamp: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// A store; with `data_dir`, persistent instances are kept in `<data_dir>/naming.redb`
    /// and loaded from it now.
    pub fn open(data_dir: Option<&Path>) -> Result<Store, String> {
        let mut store = Store {
            services: BTreeMap::new(),
            instances: 0,
            writer: None,
            last_stamp: 0,
        };
        let Some(dir) = data_dir else {
            return Ok(store);
        };
        let (writer, stored) = disk::open(dir)?;
        for (key, mut inst) in stored {
            inst.last_beat = Some(Instant::now());
            let stamp = store.stamp();
            let svc = store.services.entry(key).or_default();
            svc.last_ref_time = stamp;
            if svc
                .clusters
                .entry(inst.cluster.clone())
                .or_default()
                .insert((inst.ip.clone(), inst.port), inst)
                .is_none()
            {
                store.instances += 1;
            }
        }
        store.writer = Some(writer);
        Ok(store)
    }

    /// Stops writing to disk: returns the storage thread, which ends (closing the database
    /// file) once every queued write is committed. Later writes of persistent instances fail.
    pub fn close(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.writer.as_mut().and_then(Writer::close)
    }

    /// A strictly increasing change time (ms since the epoch).
    fn stamp(&mut self) -> u64 {
        let now = now_ms().max(self.last_stamp + 1);
        self.last_stamp = now;
        now
    }

    /// Queues the write of one persistent instance (or its removal); the caller waits for
    /// the returned flush outside the store lock.
    fn persist(
        &self,
        key: &ServiceKey,
        inst: &Instance,
        remove: bool,
    ) -> Result<Option<Flush>, String> {
        let Some(writer) = &self.writer else {
            return Ok(None);
        };
        let k = db_key(key, &inst.cluster, &inst.ip, inst.port);
        let value = if remove {
            None
        } else {
            Some(serde_json::to_string(inst).map_err(|e| e.to_string())?)
        };
        writer.send(k, value).map(Some)
    }

    /// Registers or replaces an instance.
    pub fn register(&mut self, key: &ServiceKey, mut inst: Instance) -> Result<Change, String> {
        inst.last_beat = Some(Instant::now());
        inst.last_beat_ms = now_ms();
        let id = (inst.ip.clone(), inst.port);
        let old = self
            .services
            .get(key)
            .and_then(|s| s.clusters.get(&inst.cluster))
            .and_then(|c| c.get(&id));
        let changed = match old {
            Some(old) => {
                old.weight != inst.weight
                    || old.healthy != inst.healthy
                    || old.enabled != inst.enabled
                    || old.ephemeral != inst.ephemeral
                    || old.metadata != inst.metadata
            }
            None => true,
        };
        let mut flush = None;
        if !inst.ephemeral {
            flush = self.persist(key, &inst, false)?;
        } else if let Some(old) = old.filter(|o| !o.ephemeral) {
            // Was stored, is now ephemeral: forget the stored copy.
            flush = self.persist(key, old, true)?;
        }
        let stamp = self.stamp();
        let svc = self.services.entry(key.clone()).or_default();
        if svc
            .clusters
            .entry(inst.cluster.clone())
            .or_default()
            .insert(id, inst)
            .is_none()
        {
            self.instances += 1;
        }
        if changed {
            svc.last_ref_time = stamp;
        }
        Ok(Change { changed, flush })
    }

    /// Removes an instance; `changed` is false if it was not there.
    pub fn deregister(
        &mut self,
        key: &ServiceKey,
        cluster: &str,
        ip: &str,
        port: u16,
    ) -> Result<Change, String> {
        let Some(svc) = self.services.get_mut(key) else {
            return Ok(Change::memory(false));
        };
        let Some(c) = svc.clusters.get_mut(cluster) else {
            return Ok(Change::memory(false));
        };
        let Some(old) = c.remove(&(ip.to_owned(), port)) else {
            return Ok(Change::memory(false));
        };
        self.instances -= 1;
        if c.is_empty() {
            svc.clusters.remove(cluster);
        }
        let flush = if old.ephemeral {
            None
        } else {
            self.persist(key, &old, true)?
        };
        let stamp = self.stamp();
        if let Some(svc) = self.services.get_mut(key) {
            svc.last_ref_time = stamp;
            if svc.clusters.is_empty() {
                self.services.remove(key);
            }
        }
        Ok(Change {
            changed: true,
            flush,
        })
    }

    /// Records a beat. Returns the beat outcome and whether the instance came back to health.
    pub fn beat(&mut self, key: &ServiceKey, cluster: &str, ip: &str, port: u16) -> (Beat, bool) {
        let Some(inst) = self
            .services
            .get_mut(key)
            .and_then(|s| s.clusters.get_mut(cluster))
            .and_then(|c| c.get_mut(&(ip.to_owned(), port)))
        else {
            return (Beat::Unknown, false);
        };
        inst.last_beat = Some(Instant::now());
        inst.last_beat_ms = now_ms();
        let interval = inst.beat_interval();
        let revived = inst.ephemeral && !inst.healthy;
        if revived {
            inst.healthy = true;
            let stamp = self.stamp();
            if let Some(s) = self.services.get_mut(key) {
                s.last_ref_time = stamp;
            }
        }
        (Beat::Ok(interval), revived)
    }

    /// Marks ephemeral instances without recent beats unhealthy and removes those silent for
    /// longer. Silence is counted from the last beat or from `refused_at`, whichever is later:
    /// while the server itself refuses requests (at its connection limit), it cannot tell a
    /// dead instance from one whose beats it refused, so it removes none. Returns the
    /// services that changed.
    pub fn expire(
        &mut self,
        timing: Timing,
        now: Instant,
        refused_at: Option<Instant>,
    ) -> Vec<ServiceKey> {
        let mut changed = Vec::new();
        let mut removed = 0usize;
        for (key, svc) in self.services.iter_mut() {
            let mut any = false;
            for cluster in svc.clusters.values_mut() {
                cluster.retain(|_, inst| {
                    if !inst.ephemeral {
                        return true;
                    }
                    let last = match (inst.last_beat, refused_at) {
                        (Some(b), Some(r)) => b.max(r),
                        (b, r) => b.or(r).unwrap_or(now),
                    };
                    let silent = now.saturating_duration_since(last);
                    if silent >= inst.meta_ms(META_DELETE_TIMEOUT, timing.delete_timeout) {
                        tracing::info!(service = %key.grouped, ip = %inst.ip, port = inst.port,
                            "instance removed: no beat for {silent:?}");
                        any = true;
                        removed += 1;
                        return false;
                    }
                    if inst.healthy
                        && silent >= inst.meta_ms(META_BEAT_TIMEOUT, timing.beat_timeout)
                    {
                        tracing::info!(service = %key.grouped, ip = %inst.ip, port = inst.port,
                            "instance unhealthy: no beat for {silent:?}");
                        inst.healthy = false;
                        any = true;
                    }
                    true
                });
            }
            svc.clusters.retain(|_, c| !c.is_empty());
            if any {
                changed.push(key.clone());
            }
        }
        self.instances -= removed;
        for key in &changed {
            let stamp = self.stamp();
            if let Some(svc) = self.services.get_mut(key) {
                svc.last_ref_time = stamp;
            }
        }
        self.services.retain(|_, s| !s.clusters.is_empty());
        changed
    }

    /// Sets the health of a persistent instance (from the server's own check). Returns
    /// whether it changed.
    pub fn set_health(
        &mut self,
        key: &ServiceKey,
        cluster: &str,
        ip: &str,
        port: u16,
        healthy: bool,
    ) -> bool {
        let stamp = self.stamp();
        let Some(svc) = self.services.get_mut(key) else {
            return false;
        };
        let Some(inst) = svc
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.get_mut(&(ip.to_owned(), port)))
        else {
            return false;
        };
        if inst.healthy == healthy {
            return false;
        }
        inst.healthy = healthy;
        svc.last_ref_time = stamp;
        true
    }

    /// The instances a list query asks for: those of `clusters` (all if empty), enabled
    /// ones only, healthy ones only if asked. Cheap: metadata is shared, not copied.
    pub fn snapshot(
        &self,
        key: &ServiceKey,
        clusters: &str,
        healthy_only: bool,
    ) -> ServiceSnapshot {
        let wanted: Vec<&str> = clusters
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let Some(svc) = self.services.get(key) else {
            // A service that is gone answers with the newest change time of the store, so
            // that clients never take its empty list for stale data.
            return ServiceSnapshot {
                clusters: Vec::new(),
                last_ref_time: now_ms().max(self.last_stamp),
            };
        };
        let mut out = Vec::new();
        for (name, cluster) in &svc.clusters {
            if !wanted.is_empty() && !wanted.contains(&name.as_str()) {
                continue;
            }
            let hosts: Vec<HostSnapshot> = cluster
                .values()
                .filter(|i| i.enabled && (!healthy_only || i.healthy))
                .map(|i| HostSnapshot {
                    ip: i.ip.clone(),
                    port: i.port,
                    weight: i.weight,
                    healthy: i.healthy,
                    enabled: i.enabled,
                    ephemeral: i.ephemeral,
                    metadata: i.metadata.clone(),
                })
                .collect();
            if !hosts.is_empty() {
                out.push((name.clone(), hosts));
            }
        }
        ServiceSnapshot {
            clusters: out,
            last_ref_time: svc.last_ref_time,
        }
    }

    /// The change time of a service (0 if it is gone).
    pub fn last_ref_time(&self, key: &ServiceKey) -> u64 {
        self.services.get(key).map_or(0, |s| s.last_ref_time)
    }

    /// The list answer for a service, as a value (the server encodes snapshots directly).
    #[cfg(test)]
    pub fn service_info(
        &self,
        key: &ServiceKey,
        group: &str,
        clusters: &str,
        healthy_only: bool,
        cache_millis: u64,
    ) -> ServiceInfo {
        let snap = self.snapshot(key, clusters, healthy_only);
        let data = super::encode::service_json(&snap, key, group, clusters, cache_millis, None);
        serde_json::from_slice(&data).expect("valid JSON")
    }

    /// One instance.
    pub fn instance(
        &self,
        key: &ServiceKey,
        cluster: &str,
        ip: &str,
        port: u16,
    ) -> Option<&Instance> {
        self.services
            .get(key)?
            .clusters
            .get(cluster)?
            .get(&(ip.to_owned(), port))
    }

    /// Persistent instances, for the health checker.
    pub fn persistent(&self) -> Vec<(ServiceKey, String, String, u16)> {
        let mut out = Vec::new();
        for (key, svc) in &self.services {
            for (cname, c) in &svc.clusters {
                for inst in c.values().filter(|i| !i.ephemeral) {
                    out.push((key.clone(), cname.clone(), inst.ip.clone(), inst.port));
                }
            }
        }
        out
    }

    /// Counts for metrics: (services, instances).
    pub fn counts(&self) -> (usize, usize) {
        (self.services.len(), self.instances)
    }

    /// Instances of one service.
    pub fn service_instance_count(&self, key: &ServiceKey) -> usize {
        self.services.get(key).map_or(0, Service::instance_count)
    }

    /// Services of a namespace whose grouped names start with `prefix`, in name order.
    pub fn service_names<'a>(
        &'a self,
        namespace: &str,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a ServiceKey> + 'a {
        let start = ServiceKey {
            namespace: namespace.to_owned(),
            grouped: prefix.to_owned(),
        };
        let ns = start.namespace.clone();
        self.services
            .range(start..)
            .map(|(k, _)| k)
            .take_while(move |k| k.namespace == ns && k.grouped.starts_with(prefix))
    }
}

//! The naming data of the embedded server: namespace → `group@@service` → cluster →
//! instances, with beats, health, expiry and the persistent part kept in redb.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;

#[cfg(test)]
use crate::model::ServiceInfo;
use crate::model::{
    Host, DEFAULT_BEAT_INTERVAL_MS, META_BEAT_INTERVAL, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT,
};

const PERSISTENT: TableDefinition<&str, &str> = TableDefinition::new("persistent_instances");

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

/// Completion of a write to disk: resolves once the write is committed (or failed).
pub(crate) type Flush = oneshot::Receiver<Result<(), String>>;

/// The outcome of a registration or removal.
#[must_use]
pub(crate) struct Change {
    /// Whether anything visible changed.
    pub changed: bool,
    /// Set when the change is written to disk: wait for it outside the store lock.
    pub flush: Option<Flush>,
}

impl Change {
    fn memory(changed: bool) -> Change {
        Change {
            changed,
            flush: None,
        }
    }

    /// Waits for the disk write, if any (never under the store lock).
    pub async fn flushed(self) -> Result<bool, String> {
        if let Some(f) = self.flush {
            f.await
                .map_err(|_| "storage closed".to_owned())
                .and_then(|r| r)?;
        }
        Ok(self.changed)
    }

    /// Waits for the disk write from a thread that is not a runtime thread.
    #[cfg(test)]
    pub fn flushed_blocking(self) -> Result<bool, String> {
        if let Some(f) = self.flush {
            f.blocking_recv()
                .map_err(|_| "storage closed".to_owned())
                .and_then(|r| r)?;
        }
        Ok(self.changed)
    }
}

struct WriteOp {
    key: String,
    /// `None` removes.
    value: Option<String>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The redb database, written by a thread of its own: writes queued under the store lock
/// are committed in batches (one fsync for many), never while the lock is held.
struct Writer {
    tx: Option<mpsc::Sender<WriteOp>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(db: Database) -> Result<Writer, String> {
        let (tx, rx) = mpsc::channel::<WriteOp>();
        let thread = std::thread::Builder::new()
            .name("naming-redb".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 4096 {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    let result = Writer::commit(&db, &batch);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, writes = batch.len(), "cannot store instances");
                    }
                    for op in batch {
                        let _ = op.done.send(result.clone());
                    }
                }
                drop(db);
            })
            .map_err(|e| format!("cannot start the storage thread: {e}"))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn commit(db: &Database, batch: &[WriteOp]) -> Result<(), String> {
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = tx.open_table(PERSISTENT).map_err(|e| e.to_string())?;
            for op in batch {
                match &op.value {
                    None => {
                        table.remove(op.key.as_str()).map_err(|e| e.to_string())?;
                    }
                    Some(v) => {
                        table
                            .insert(op.key.as_str(), v.as_str())
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    fn send(&self, key: String, value: Option<String>) -> Result<Flush, String> {
        let (done, flush) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| "storage closed".to_owned())?
            .send(WriteOp { key, value, done })
            .map_err(|_| "storage closed".to_owned())?;
        Ok(flush)
    }

    /// Stops taking writes; returns the thread, which ends once the queued writes are
    /// committed (and then closes the database).
    fn close(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.tx.take();
        self.thread.take()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(t) = self.close() {
            let _ = t.join();
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn db_key(key: &ServiceKey, cluster: &str, ip: &str, port: u16) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        key.namespace, key.grouped, cluster, ip, port
    )
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
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let path = dir.join("naming.redb");
        let db =
            Database::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        {
            let tx = db.begin_write().map_err(|e| e.to_string())?;
            tx.open_table(PERSISTENT).map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        let mut loaded = 0usize;
        {
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let table = tx.open_table(PERSISTENT).map_err(|e| e.to_string())?;
            for row in table.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                let mut parts = k.value().splitn(3, '\n');
                let (Some(ns), Some(grouped)) = (parts.next(), parts.next()) else {
                    tracing::warn!(key = k.value(), "skipping a malformed stored instance");
                    continue;
                };
                match serde_json::from_str::<Instance>(v.value()) {
                    Ok(mut inst) => {
                        inst.last_beat = Some(Instant::now());
                        let key = ServiceKey {
                            namespace: ns.to_owned(),
                            grouped: grouped.to_owned(),
                        };
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
                        loaded += 1;
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable stored instance"),
                }
            }
        }
        tracing::info!(path = %path.display(), loaded, "persistent instances loaded");
        store.writer = Some(Writer::start(db)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(ip: &str, port: u16, ephemeral: bool) -> Instance {
        Instance {
            ip: ip.into(),
            port,
            weight: 1.0,
            healthy: true,
            enabled: true,
            ephemeral,
            cluster: "DEFAULT".into(),
            metadata: Arc::new(BTreeMap::new()),
            last_beat: None,
            last_beat_ms: 0,
        }
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "public".into(),
            grouped: format!("DEFAULT_GROUP@@{name}"),
        }
    }

    #[test]
    fn silent_instances_turn_unhealthy_then_disappear() {
        let mut s = Store::open(None).unwrap();
        let k = key("a");
        assert!(s.register(&k, inst("127.0.0.1", 1, true)).unwrap().changed);
        let timing = Timing {
            beat_timeout: Duration::from_secs(15),
            delete_timeout: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        assert!(s
            .expire(timing, t0 + Duration::from_secs(14), None)
            .is_empty());
        assert_eq!(
            s.expire(timing, t0 + Duration::from_secs(16), None),
            vec![k.clone()]
        );
        let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
        assert!(!info.hosts[0].healthy);
        assert!(s
            .service_info(&k, "DEFAULT_GROUP", "", true, 3000)
            .hosts
            .is_empty());
        // A beat brings it back.
        assert!(s.beat(&k, "DEFAULT", "127.0.0.1", 1).1);
        assert!(s.service_info(&k, "DEFAULT_GROUP", "", true, 3000).hosts[0].healthy);
        let t1 = Instant::now();
        assert_eq!(
            s.expire(timing, t1 + Duration::from_secs(31), None),
            vec![k.clone()]
        );
        assert!(s.services.is_empty());
        assert_eq!(s.beat(&k, "DEFAULT", "127.0.0.1", 1).0, Beat::Unknown);
    }

    #[test]
    fn nothing_expires_while_the_server_refuses_requests() {
        let mut s = Store::open(None).unwrap();
        let k = key("a");
        let _ = s.register(&k, inst("127.0.0.1", 1, true)).unwrap();
        let _ = s.register(&k, inst("127.0.0.1", 2, true)).unwrap();
        assert_eq!(s.counts(), (1, 2));
        let timing = Timing {
            beat_timeout: Duration::from_secs(15),
            delete_timeout: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        // Refusing requests until t0 + 50 s: silence counts from the last refusal.
        let refused = Some(t0 + Duration::from_secs(50));
        assert!(s
            .expire(timing, t0 + Duration::from_secs(60), refused)
            .is_empty());
        assert_eq!(s.counts(), (1, 2));
        // 16 s after the last refusal: unhealthy; 31 s after: removed.
        assert_eq!(
            s.expire(timing, t0 + Duration::from_secs(66), refused),
            vec![k.clone()]
        );
        assert!(!s.services[&k].clusters["DEFAULT"][&("127.0.0.1".into(), 1)].healthy);
        assert_eq!(
            s.expire(timing, t0 + Duration::from_secs(81), refused),
            vec![k.clone()]
        );
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn counts_follow_every_change() {
        let mut s = Store::open(None).unwrap();
        for n in 0..50u16 {
            let _ = s.register(&key(&format!("s{}", n % 5)), inst("127.0.0.1", n, true));
        }
        // Registering again is no new instance.
        let _ = s.register(&key("s0"), inst("127.0.0.1", 0, true));
        assert_eq!(s.counts(), (5, 50));
        assert_eq!(s.service_instance_count(&key("s1")), 10);
        let _ = s.deregister(&key("s1"), "DEFAULT", "127.0.0.1", 1).unwrap();
        let _ = s.deregister(&key("s1"), "DEFAULT", "127.0.0.1", 1).unwrap();
        assert_eq!(s.counts(), (5, 49));
        let timing = Timing {
            beat_timeout: Duration::from_secs(1),
            delete_timeout: Duration::from_secs(2),
        };
        s.expire(timing, Instant::now() + Duration::from_secs(3), None);
        assert_eq!(s.counts(), (0, 0));
        let names: Vec<_> = s.service_names("public", "DEFAULT_GROUP@@").collect();
        assert!(names.is_empty());
    }

    #[test]
    fn metadata_overrides_the_timeouts() {
        let mut s = Store::open(None).unwrap();
        let k = key("a");
        let mut i = inst("127.0.0.1", 1, true);
        Arc::make_mut(&mut i.metadata).insert(META_BEAT_TIMEOUT.into(), "1000".into());
        Arc::make_mut(&mut i.metadata).insert(META_DELETE_TIMEOUT.into(), "2000".into());
        Arc::make_mut(&mut i.metadata).insert(META_BEAT_INTERVAL.into(), "500".into());
        let _ = s.register(&k, i).unwrap();
        let timing = Timing {
            beat_timeout: Duration::from_secs(15),
            delete_timeout: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        assert_eq!(
            s.expire(timing, t0 + Duration::from_millis(1500), None)
                .len(),
            1
        );
        assert_eq!(
            s.expire(timing, t0 + Duration::from_millis(2500), None)
                .len(),
            1
        );
        assert!(s.services.is_empty());
        let mut i = inst("127.0.0.1", 2, true);
        Arc::make_mut(&mut i.metadata).insert(META_BEAT_INTERVAL.into(), "500".into());
        let _ = s.register(&k, i).unwrap();
        assert_eq!(
            s.beat(&k, "DEFAULT", "127.0.0.1", 2).0,
            Beat::Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn persistent_instances_survive_a_reopen_and_never_expire() {
        let dir = std::env::temp_dir().join(format!("rdubbo-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k = key("p");
        {
            let mut s = Store::open(Some(&dir)).unwrap();
            let mut i = inst("127.0.0.1", 7, false);
            Arc::make_mut(&mut i.metadata).insert("k".into(), "v".into());
            i.weight = 3.0;
            // Each write is committed by the storage thread; the flush says when.
            assert!(s.register(&k, i).unwrap().flushed_blocking().unwrap());
            let _ = s.register(&k, inst("127.0.0.1", 8, false)).unwrap();
            let plain = s.register(&k, inst("127.0.0.1", 9, true)).unwrap();
            assert!(plain.flush.is_none(), "ephemeral instances are not written");
            assert!(s.deregister(&k, "DEFAULT", "127.0.0.1", 8).unwrap().changed);
            let later = Instant::now() + Duration::from_secs(3600);
            let timing = Timing {
                beat_timeout: Duration::from_secs(15),
                delete_timeout: Duration::from_secs(30),
            };
            s.expire(timing, later, None);
            assert_eq!(s.counts(), (1, 1));
        }
        let s = Store::open(Some(&dir)).unwrap();
        let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
        assert_eq!(info.hosts.len(), 1);
        assert_eq!(info.hosts[0].port, 7);
        assert_eq!(info.hosts[0].weight, 3.0);
        assert_eq!(info.hosts[0].metadata["k"], "v");
        assert!(!info.hosts[0].ephemeral);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_removed_service_never_looks_older_than_its_last_list() {
        // Many changes within one millisecond push the change stamps ahead of the clock;
        // the empty list of a removed service must still be newer than its last list.
        let mut s = Store::open(None).unwrap();
        let k = key("fast");
        let mut last = 0;
        for port in 1..200 {
            let _ = s.register(&k, inst("127.0.0.1", port, true)).unwrap();
            let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
            assert!(info.last_ref_time > last);
            last = info.last_ref_time;
            let _ = s.deregister(&k, "DEFAULT", "127.0.0.1", port).unwrap();
            let gone = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
            assert!(gone.hosts.is_empty());
            assert!(
                gone.last_ref_time >= last,
                "{} < {last}",
                gone.last_ref_time
            );
        }
    }

    #[test]
    fn list_filters_clusters_and_disabled_instances() {
        let mut s = Store::open(None).unwrap();
        let k = key("c");
        let mut a = inst("127.0.0.1", 1, true);
        a.cluster = "A".into();
        let mut b = inst("127.0.0.1", 2, true);
        b.cluster = "B".into();
        let mut d = inst("127.0.0.1", 3, true);
        d.enabled = false;
        let _ = s.register(&k, a).unwrap();
        let _ = s.register(&k, b).unwrap();
        let _ = s.register(&k, d).unwrap();
        let all = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
        assert_eq!(all.hosts.len(), 2);
        let only_a = s.service_info(&k, "DEFAULT_GROUP", "A", false, 3000);
        assert_eq!(only_a.hosts.len(), 1);
        assert_eq!(only_a.hosts[0].cluster_name, "A");
        assert_ne!(all.checksum, only_a.checksum);
        // Re-registering the same data is not a change.
        let mut a2 = inst("127.0.0.1", 1, true);
        a2.cluster = "A".into();
        assert!(!s.register(&k, a2).unwrap().changed);
    }
}

//! The naming data of the embedded server: namespace → `group@@service` → cluster →
//! instances, with beats, health, expiry and the persistent part kept in redb.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::model::{
    Host, ServiceInfo, DEFAULT_BEAT_INTERVAL_MS, META_BEAT_INTERVAL, META_BEAT_TIMEOUT,
    META_DELETE_TIMEOUT,
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
    pub metadata: BTreeMap<String, String>,
    /// Last beat (ephemeral) or registration time.
    #[serde(skip)]
    pub last_beat: Option<Instant>,
    /// Milliseconds since the epoch of the last beat, for the console.
    #[serde(default)]
    pub last_beat_ms: u64,
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
            metadata: self.metadata.clone(),
        }
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
    db: Option<Database>,
    last_stamp: u64,
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
            db: None,
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
                        svc.clusters
                            .entry(inst.cluster.clone())
                            .or_default()
                            .insert((inst.ip.clone(), inst.port), inst);
                        loaded += 1;
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable stored instance"),
                }
            }
        }
        tracing::info!(path = %path.display(), loaded, "persistent instances loaded");
        store.db = Some(db);
        Ok(store)
    }

    /// A strictly increasing change time (ms since the epoch).
    fn stamp(&mut self) -> u64 {
        let now = now_ms().max(self.last_stamp + 1);
        self.last_stamp = now;
        now
    }

    fn persist(&self, key: &ServiceKey, inst: &Instance, remove: bool) -> Result<(), String> {
        let Some(db) = &self.db else { return Ok(()) };
        let k = db_key(key, &inst.cluster, &inst.ip, inst.port);
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = tx.open_table(PERSISTENT).map_err(|e| e.to_string())?;
            if remove {
                table.remove(k.as_str()).map_err(|e| e.to_string())?;
            } else {
                let v = serde_json::to_string(inst).map_err(|e| e.to_string())?;
                table
                    .insert(k.as_str(), v.as_str())
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// Registers or replaces an instance. Returns whether anything visible changed.
    pub fn register(&mut self, key: &ServiceKey, mut inst: Instance) -> Result<bool, String> {
        inst.last_beat = Some(Instant::now());
        inst.last_beat_ms = now_ms();
        if !inst.ephemeral {
            self.persist(key, &inst, false)?;
        }
        let stamp = self.stamp();
        let svc = self.services.entry(key.clone()).or_default();
        let cluster = svc.clusters.entry(inst.cluster.clone()).or_default();
        let id = (inst.ip.clone(), inst.port);
        let changed = match cluster.get(&id) {
            Some(old) => {
                old.weight != inst.weight
                    || old.healthy != inst.healthy
                    || old.enabled != inst.enabled
                    || old.ephemeral != inst.ephemeral
                    || old.metadata != inst.metadata
            }
            None => true,
        };
        if let Some(old) = cluster.get(&id) {
            if old.ephemeral != inst.ephemeral && !old.ephemeral {
                // Was stored, is now ephemeral: forget the stored copy.
                let old = old.clone();
                self.persist(key, &old, true)?;
            }
        }
        let svc = self.services.get_mut(key).expect("just inserted");
        svc.clusters
            .entry(inst.cluster.clone())
            .or_default()
            .insert(id, inst);
        if changed {
            svc.last_ref_time = stamp;
        }
        Ok(changed)
    }

    /// Removes an instance; `Ok(false)` if it was not there.
    pub fn deregister(
        &mut self,
        key: &ServiceKey,
        cluster: &str,
        ip: &str,
        port: u16,
    ) -> Result<bool, String> {
        let Some(svc) = self.services.get_mut(key) else {
            return Ok(false);
        };
        let Some(c) = svc.clusters.get_mut(cluster) else {
            return Ok(false);
        };
        let Some(old) = c.remove(&(ip.to_owned(), port)) else {
            return Ok(false);
        };
        if c.is_empty() {
            svc.clusters.remove(cluster);
        }
        if !old.ephemeral {
            self.persist(key, &old, true)?;
        }
        let stamp = self.stamp();
        if let Some(svc) = self.services.get_mut(key) {
            svc.last_ref_time = stamp;
            if svc.clusters.is_empty() {
                self.services.remove(key);
            }
        }
        Ok(true)
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
    /// longer. Returns the services that changed.
    pub fn expire(&mut self, timing: Timing, now: Instant) -> Vec<ServiceKey> {
        let mut changed = Vec::new();
        let mut stamps = Vec::new();
        for (key, svc) in self.services.iter_mut() {
            let mut any = false;
            for cluster in svc.clusters.values_mut() {
                cluster.retain(|_, inst| {
                    if !inst.ephemeral {
                        return true;
                    }
                    let silent = now.saturating_duration_since(inst.last_beat.unwrap_or(now));
                    if silent >= inst.meta_ms(META_DELETE_TIMEOUT, timing.delete_timeout) {
                        tracing::info!(service = %key.grouped, ip = %inst.ip, port = inst.port,
                            "instance removed: no beat for {silent:?}");
                        any = true;
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
        for key in &changed {
            let stamp = self.stamp();
            stamps.push(stamp);
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

    /// The list answer for a service: instances of `clusters` (all if empty), enabled ones
    /// only, healthy ones only if asked.
    pub fn service_info(
        &self,
        key: &ServiceKey,
        group: &str,
        clusters: &str,
        healthy_only: bool,
        cache_millis: u64,
    ) -> ServiceInfo {
        let wanted: Vec<&str> = clusters
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let mut hosts = Vec::new();
        let mut last_ref_time = 0;
        if let Some(svc) = self.services.get(key) {
            last_ref_time = svc.last_ref_time;
            for (name, cluster) in &svc.clusters {
                if !wanted.is_empty() && !wanted.contains(&name.as_str()) {
                    continue;
                }
                for inst in cluster.values() {
                    if !inst.enabled || (healthy_only && !inst.healthy) {
                        continue;
                    }
                    hosts.push(inst.host(&key.grouped));
                }
            }
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for h in &hosts {
            h.ip.hash(&mut hasher);
            h.port.hash(&mut hasher);
            h.weight.to_bits().hash(&mut hasher);
            h.healthy.hash(&mut hasher);
            h.metadata.hash(&mut hasher);
        }
        ServiceInfo {
            name: key.grouped.clone(),
            group_name: group.to_owned(),
            clusters: clusters.to_owned(),
            cache_millis,
            hosts,
            // A service that is gone answers with the newest change time of the store, so
            // that clients never take its empty list for stale data.
            last_ref_time: if last_ref_time == 0 {
                now_ms().max(self.last_stamp)
            } else {
                last_ref_time
            },
            checksum: format!("{:016x}", hasher.finish()),
        }
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
        (
            self.services.len(),
            self.services.values().map(Service::instance_count).sum(),
        )
    }

    /// Services of a namespace (and group, if given): grouped names.
    pub fn service_names(&self, namespace: &str) -> impl Iterator<Item = &ServiceKey> {
        let ns = namespace.to_owned();
        self.services.keys().filter(move |k| k.namespace == ns)
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
            metadata: BTreeMap::new(),
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
        assert!(s.register(&k, inst("127.0.0.1", 1, true)).unwrap());
        let timing = Timing {
            beat_timeout: Duration::from_secs(15),
            delete_timeout: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        assert!(s.expire(timing, t0 + Duration::from_secs(14)).is_empty());
        assert_eq!(
            s.expire(timing, t0 + Duration::from_secs(16)),
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
            s.expire(timing, t1 + Duration::from_secs(31)),
            vec![k.clone()]
        );
        assert!(s.services.is_empty());
        assert_eq!(s.beat(&k, "DEFAULT", "127.0.0.1", 1).0, Beat::Unknown);
    }

    #[test]
    fn metadata_overrides_the_timeouts() {
        let mut s = Store::open(None).unwrap();
        let k = key("a");
        let mut i = inst("127.0.0.1", 1, true);
        i.metadata.insert(META_BEAT_TIMEOUT.into(), "1000".into());
        i.metadata.insert(META_DELETE_TIMEOUT.into(), "2000".into());
        i.metadata.insert(META_BEAT_INTERVAL.into(), "500".into());
        s.register(&k, i).unwrap();
        let timing = Timing {
            beat_timeout: Duration::from_secs(15),
            delete_timeout: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        assert_eq!(s.expire(timing, t0 + Duration::from_millis(1500)).len(), 1);
        assert_eq!(s.expire(timing, t0 + Duration::from_millis(2500)).len(), 1);
        assert!(s.services.is_empty());
        let mut i = inst("127.0.0.1", 2, true);
        i.metadata.insert(META_BEAT_INTERVAL.into(), "500".into());
        s.register(&k, i).unwrap();
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
            i.metadata.insert("k".into(), "v".into());
            i.weight = 3.0;
            s.register(&k, i).unwrap();
            s.register(&k, inst("127.0.0.1", 8, false)).unwrap();
            s.register(&k, inst("127.0.0.1", 9, true)).unwrap();
            assert!(s.deregister(&k, "DEFAULT", "127.0.0.1", 8).unwrap());
            let later = Instant::now() + Duration::from_secs(3600);
            let timing = Timing {
                beat_timeout: Duration::from_secs(15),
                delete_timeout: Duration::from_secs(30),
            };
            s.expire(timing, later);
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
            s.register(&k, inst("127.0.0.1", port, true)).unwrap();
            let info = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
            assert!(info.last_ref_time > last);
            last = info.last_ref_time;
            s.deregister(&k, "DEFAULT", "127.0.0.1", port).unwrap();
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
        s.register(&k, a).unwrap();
        s.register(&k, b).unwrap();
        s.register(&k, d).unwrap();
        let all = s.service_info(&k, "DEFAULT_GROUP", "", false, 3000);
        assert_eq!(all.hosts.len(), 2);
        let only_a = s.service_info(&k, "DEFAULT_GROUP", "A", false, 3000);
        assert_eq!(only_a.hosts.len(), 1);
        assert_eq!(only_a.hosts[0].cluster_name, "A");
        assert_ne!(all.checksum, only_a.checksum);
        // Re-registering the same data is not a change.
        let mut a2 = inst("127.0.0.1", 1, true);
        a2.cluster = "A".into();
        assert!(!s.register(&k, a2).unwrap());
    }
}

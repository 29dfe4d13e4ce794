//! List answers and push data written straight from a snapshot to bytes: no value tree and
//! no copy of each instance's metadata, so that a large service costs its answer's bytes
//! and no more (the whole answer is one allocation, returned to the system when dropped).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::store::{ServiceKey, ServiceSnapshot};

/// Fields the list call adds to each host (Nacos' own list answer has them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListExtras {
    pub beat_interval_ms: u64,
    pub beat_timeout_ms: u64,
    pub delete_timeout_ms: u64,
}

fn string(out: &mut Vec<u8>, v: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

fn field(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    string(out, name);
    out.push(b':');
}

fn number(out: &mut Vec<u8>, v: impl serde::Serialize) {
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// A rough size of the answer, to reserve it at once.
fn estimate(snap: &ServiceSnapshot) -> usize {
    let hosts = snap.host_count();
    let meta: usize = snap
        .clusters
        .iter()
        .flat_map(|(_, h)| h.iter().take(8))
        .map(|h| {
            h.metadata
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    512 + hosts * (meta + 400)
}

/// The JSON of a service: the list answer when `extras` is given, else the `data` of a
/// UDP push (the plain `ServiceInfo` shape).
pub(crate) fn service_json(
    snap: &ServiceSnapshot,
    key: &ServiceKey,
    group: &str,
    clusters: &str,
    cache_millis: u64,
    extras: Option<&ListExtras>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimate(snap));
    let mut hasher = DefaultHasher::new();
    out.push(b'{');
    let mut first = true;
    field(&mut out, &mut first, "name");
    string(&mut out, &key.grouped);
    field(&mut out, &mut first, "groupName");
    string(&mut out, group);
    field(&mut out, &mut first, "clusters");
    string(&mut out, clusters);
    field(&mut out, &mut first, "cacheMillis");
    number(&mut out, cache_millis);
    field(&mut out, &mut first, "hosts");
    out.push(b'[');
    let mut first_host = true;
    for (cluster, hosts) in &snap.clusters {
        for h in hosts {
            h.ip.hash(&mut hasher);
            h.port.hash(&mut hasher);
            h.weight.to_bits().hash(&mut hasher);
            h.healthy.hash(&mut hasher);
            h.metadata.hash(&mut hasher);
            if !first_host {
                out.push(b',');
            }
            first_host = false;
            out.push(b'{');
            let mut f = true;
            field(&mut out, &mut f, "instanceId");
            string(
                &mut out,
                &format!("{}#{}#{}#{}", h.ip, h.port, cluster, key.grouped),
            );
            field(&mut out, &mut f, "ip");
            string(&mut out, &h.ip);
            field(&mut out, &mut f, "port");
            number(&mut out, h.port);
            field(&mut out, &mut f, "weight");
            number(&mut out, h.weight);
            field(&mut out, &mut f, "healthy");
            number(&mut out, h.healthy);
            field(&mut out, &mut f, "enabled");
            number(&mut out, h.enabled);
            field(&mut out, &mut f, "ephemeral");
            number(&mut out, h.ephemeral);
            field(&mut out, &mut f, "clusterName");
            string(&mut out, cluster);
            field(&mut out, &mut f, "serviceName");
            string(&mut out, &key.grouped);
            field(&mut out, &mut f, "metadata");
            let _ = serde_json::to_writer(&mut out, h.metadata.as_ref());
            if let Some(x) = extras {
                field(&mut out, &mut f, "instanceHeartBeatInterval");
                number(&mut out, x.beat_interval_ms);
                field(&mut out, &mut f, "instanceHeartBeatTimeOut");
                number(&mut out, x.beat_timeout_ms);
                field(&mut out, &mut f, "ipDeleteTimeout");
                number(&mut out, x.delete_timeout_ms);
                field(&mut out, &mut f, "instanceIdGenerator");
                string(&mut out, "simple");
            }
            out.push(b'}');
        }
    }
    out.push(b']');
    field(&mut out, &mut first, "lastRefTime");
    number(&mut out, snap.last_ref_time);
    field(&mut out, &mut first, "checksum");
    string(&mut out, &format!("{:016x}", hasher.finish()));
    if extras.is_some() {
        out.extend_from_slice(
            br#","allIPs":false,"reachProtectionThreshold":false,"valid":true,"env":"","metadata":{}"#,
        );
    }
    out.push(b'}');
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::store::HostSnapshot;

    #[test]
    fn the_answer_is_the_shape_nacos_clients_read() {
        let key = ServiceKey {
            namespace: "public".into(),
            grouped: "G@@s\"q".into(),
        };
        let mut meta = BTreeMap::new();
        meta.insert("k".to_owned(), "v\n".to_owned());
        let snap = ServiceSnapshot {
            clusters: vec![(
                "DEFAULT".into(),
                vec![HostSnapshot {
                    ip: "127.0.0.1".into(),
                    port: 80,
                    weight: 1.0,
                    healthy: true,
                    enabled: true,
                    ephemeral: false,
                    metadata: Arc::new(meta),
                }],
            )],
            last_ref_time: 42,
        };
        let extras = ListExtras {
            beat_interval_ms: 5000,
            beat_timeout_ms: 15000,
            delete_timeout_ms: 30000,
        };
        let list: serde_json::Value =
            serde_json::from_slice(&service_json(&snap, &key, "G", "", 3000, Some(&extras)))
                .unwrap();
        assert_eq!(list["name"], "G@@s\"q");
        assert_eq!(list["cacheMillis"], 3000);
        assert_eq!(list["lastRefTime"], 42);
        assert_eq!(list["valid"], true);
        let h = &list["hosts"][0];
        assert_eq!(h["instanceId"], "127.0.0.1#80#DEFAULT#G@@s\"q");
        assert_eq!(h["weight"], 1.0);
        assert_eq!(h["ephemeral"], false);
        assert_eq!(h["metadata"]["k"], "v\n");
        assert_eq!(h["ipDeleteTimeout"], 30000);
        let push: rdubbo_registry_nacos::model::ServiceInfo =
            serde_json::from_slice(&service_json(&snap, &key, "G", "", 10000, None)).unwrap();
        assert_eq!(push.hosts[0].port, 80);
        assert_eq!(push.checksum, list["checksum"]);
    }
}

//! The instance API: register, deregister, update and beat (`/nacos/v1/ns/instance`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::StatusCode;
use rdubbo_registry_nacos::model::{self, BEAT_OK, BEAT_UNKNOWN_INSTANCE, DEFAULT_CLUSTER};
use serde_json::json;

use crate::http::{
    bad, cluster_of, instance_of, ip_of, json_response, metadata_of, reject, service_of,
    storage_error, text, valid_cluster, valid_ip, weight_of, HttpResponse, Params, Reject,
};
use crate::store::{Beat, Instance, ServiceKey, Store};
use crate::Shared;

/// Whether one more instance fits, in all and in `key`'s service.
fn room_for_one(shared: &Shared, store: &Store, key: &ServiceKey) -> Result<(), Reject> {
    if store.counts().1 >= shared.config.max_instances {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many instances (limit {});",
                shared.config.max_instances
            ),
        ));
    }
    let limit = shared.config.max_instances_per_service;
    if store.service_instance_count(key) >= limit {
        return Err(bad(format!(
            "too many instances in service {} (limit {limit})",
            key.grouped
        )));
    }
    Ok(())
}

pub(crate) async fn register(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    shared.registrations.fetch_add(1, Ordering::Relaxed);
    let (key, _, _) = service_of(p)?;
    let inst = Instance {
        ip: ip_of(p)?,
        port: p.port("port")?,
        weight: weight_of(p, 1.0)?,
        healthy: p.bool("healthy", true)?,
        enabled: match p.get("enabled") {
            Some(_) => p.bool("enabled", true)?,
            None => p.bool("enable", true)?,
        },
        ephemeral: p.bool("ephemeral", true)?,
        cluster: cluster_of(p, "clusterName")?,
        metadata: Arc::new(metadata_of(shared, p.get("metadata"))?.unwrap_or_default()),
        last_beat: None,
        last_beat_ms: 0,
    };
    let change = {
        let mut store = shared.store();
        let exists = store
            .instance(&key, &inst.cluster, &inst.ip, inst.port)
            .is_some();
        if !exists {
            room_for_one(shared, &store, &key)?;
        }
        store.register(&key, inst).map_err(storage_error)?
    };
    if change.changed {
        shared.changed(key);
    }
    // A persistent instance: answered once it is on disk (written outside the lock).
    change.flushed().await.map_err(storage_error)?;
    Ok(text(StatusCode::OK, "ok"))
}

pub(crate) async fn deregister(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, cluster, ip, port) = instance_of(p, "clusterName")?;
    let change = shared
        .store()
        .deregister(&key, &cluster, &ip, port)
        .map_err(storage_error)?;
    if change.changed {
        shared.changed(key);
    }
    change.flushed().await.map_err(storage_error)?;
    Ok(text(StatusCode::OK, "ok"))
}

pub(crate) async fn update(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, cluster, ip, port) = instance_of(p, "clusterName")?;
    let metadata = metadata_of(shared, p.get("metadata"))?;
    let change = {
        let mut store = shared.store();
        let Some(old) = store.instance(&key, &cluster, &ip, port).cloned() else {
            return Err(bad(format!(
                "instance not found: {ip}:{port} in {cluster} of {}",
                key.grouped
            )));
        };
        let inst = Instance {
            weight: weight_of(p, old.weight)?,
            enabled: match p.get("enabled") {
                Some(_) => p.bool("enabled", old.enabled)?,
                None => p.bool("enable", old.enabled)?,
            },
            healthy: p.bool("healthy", old.healthy)?,
            metadata: metadata
                .map(Arc::new)
                .unwrap_or_else(|| old.metadata.clone()),
            ..old
        };
        store.register(&key, inst).map_err(storage_error)?
    };
    if change.changed {
        shared.changed(key);
    }
    change.flushed().await.map_err(storage_error)?;
    Ok(text(StatusCode::OK, "ok"))
}

#[derive(serde::Deserialize)]
struct BeatInfo {
    ip: String,
    port: u16,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, serde_json::Value>>,
}

pub(crate) fn beat(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    shared.beats.fetch_add(1, Ordering::Relaxed);
    let (key, _, _) = service_of(p)?;
    let info = match p.get("beat") {
        Some(raw) => {
            if raw.len() > shared.config.max_metadata_size + 1024 {
                return Err(bad("Param 'beat' is too large"));
            }
            Some(
                serde_json::from_str::<BeatInfo>(raw)
                    .map_err(|e| bad(format!("Param 'beat' is not a beat: {e}")))?,
            )
        }
        None => None,
    };
    let (ip, port, cluster) = match &info {
        Some(b) => {
            if !valid_ip(&b.ip) {
                return Err(bad(format!("beat ip is illegal: {:?}", b.ip)));
            }
            let cluster = b
                .cluster
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
            if !valid_cluster(&cluster) {
                return Err(bad(format!("beat cluster is illegal: {cluster:?}")));
            }
            (b.ip.clone(), b.port, cluster)
        }
        None => (ip_of(p)?, p.port("port")?, cluster_of(p, "clusterName")?),
    };
    let mut store = shared.store();
    let (mut outcome, mut changed) = store.beat(&key, &cluster, &ip, port);
    if outcome == Beat::Unknown {
        if let Some(b) = info {
            // As Nacos: a full beat for an unknown instance registers it again.
            let metadata = b
                .metadata
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect();
            let inst = Instance {
                ip: ip.clone(),
                port,
                weight: b
                    .weight
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .unwrap_or(1.0),
                healthy: true,
                enabled: true,
                ephemeral: true,
                cluster: cluster.clone(),
                metadata: Arc::new(metadata),
                last_beat: None,
                last_beat_ms: 0,
            };
            if room_for_one(shared, &store, &key).is_ok() {
                let interval = inst.beat_interval();
                // Ephemeral: nothing to write to disk.
                changed = store.register(&key, inst).is_ok_and(|c| c.changed);
                outcome = Beat::Ok(interval);
            }
        }
    }
    drop(store);
    if changed {
        shared.changed(key);
    }
    Ok(match outcome {
        Beat::Ok(interval) => json_response(&json!({
            "clientBeatInterval": interval.as_millis() as u64,
            "code": BEAT_OK,
            "lightBeatEnabled": true,
        })),
        Beat::Unknown => json_response(&json!({
            "clientBeatInterval": model::DEFAULT_BEAT_INTERVAL_MS,
            "code": BEAT_UNKNOWN_INSTANCE,
            "lightBeatEnabled": true,
        })),
    })
}

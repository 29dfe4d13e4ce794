//! The read API: instance lists (with push subscription, and large answers encoded off
//! the runtime threads and cached), one instance, service list and detail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use rdubbo_registry_nacos::model::{self, DEFAULT_GROUP, DEFAULT_NAMESPACE};
use serde_json::json;

use crate::conn::{LargeAnswer, ResponseBody};
use crate::encode::{self, ListExtras};
use crate::http::{
    bad, instance_of, json_bytes, json_response, reject, service_of, valid_cluster, HttpResponse,
    Params, Reject,
};
use crate::{AnswerKey, Shared};

/// Services with at least this many instances get the large-answer treatment: encoded off
/// the runtime threads, one or two at a time, cached until the service changes.
const LARGE_SERVICE: usize = 1_000;

pub(crate) async fn list(
    shared: &Shared,
    peer: SocketAddr,
    p: &Params,
) -> Result<HttpResponse, Reject> {
    let (key, group, _) = service_of(p)?;
    let clusters = p.get("clusters").unwrap_or("").to_owned();
    if clusters
        .split(',')
        .any(|c| !c.is_empty() && !valid_cluster(c))
    {
        return Err(bad(format!("Param 'clusters' is illegal: {clusters:?}")));
    }
    let healthy_only = p.bool("healthyOnly", false)?;
    let udp_port = match p.get("udpPort") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<u16>()
            .map_err(|_| bad(format!("Param 'udpPort' must be a port number, not {v:?}")))?,
    };
    let mut cache_millis = 3_000;
    if udp_port > 0 {
        // Pushes go to the address the query came from, whatever `clientIP` says.
        let target = SocketAddr::new(peer.ip(), udp_port);
        if shared.pushes.subscribe(
            &key,
            target,
            &clusters,
            shared.config.max_subscribers,
            shared.config.max_push_ports_per_ip,
        ) {
            cache_millis = 10_000;
        }
    }
    let extras = ListExtras {
        beat_interval_ms: model::DEFAULT_BEAT_INTERVAL_MS,
        beat_timeout_ms: shared.config.beat_timeout.as_millis() as u64,
        delete_timeout_ms: shared.config.delete_timeout.as_millis() as u64,
    };
    let large = {
        let store = shared.store();
        if store.service_instance_count(&key) < LARGE_SERVICE {
            let snap = store.snapshot(&key, &clusters, healthy_only);
            drop(store);
            let body =
                encode::service_json(&snap, &key, &group, &clusters, cache_millis, Some(&extras));
            return Ok(json_bytes(ResponseBody::whole(body)));
        }
        store.last_ref_time(&key)
    };
    let answer_key = (key, clusters, healthy_only, cache_millis);
    if let Some(hit) = cached_answer(shared, &answer_key, large) {
        return Ok(json_bytes(ResponseBody::Large(hit, 0)));
    }
    // A large service: encoded one or two at a time, off the runtime threads, within the
    // memory budget, and kept until the service changes.
    let busy = || {
        reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many large answers in flight (limit {} bytes); retry later;",
                shared.config.max_large_answer_bytes
            ),
        )
    };
    if shared.large.in_flight() >= shared.config.max_large_answer_bytes as u64 {
        return Err(busy());
    }
    let _permit = shared
        .encoders
        .acquire()
        .await
        .map_err(|_| reject(StatusCode::SERVICE_UNAVAILABLE, "caused: stopping;"))?;
    let (version, snap) = {
        let store = shared.store();
        let version = store.last_ref_time(&answer_key.0);
        (
            version,
            store.snapshot(&answer_key.0, &answer_key.1, healthy_only),
        )
    };
    if let Some(hit) = cached_answer(shared, &answer_key, version) {
        return Ok(json_bytes(ResponseBody::Large(hit, 0)));
    }
    if shared.large.in_flight() >= shared.config.max_large_answer_bytes as u64 {
        return Err(busy());
    }
    let key = answer_key.0.clone();
    let clusters = answer_key.1.clone();
    let body = tokio::task::spawn_blocking(move || {
        encode::service_json(&snap, &key, &group, &clusters, cache_millis, Some(&extras))
    })
    .await
    .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, format!("caused: {e};")))?;
    let answer = Arc::new(LargeAnswer::new(body, shared.large.clone()));
    // Kept for the next queries, within half the budget.
    let cache_limit = shared.config.max_large_answer_bytes / 2;
    if version != 0 && answer.len() <= cache_limit {
        let mut answers = shared.answers();
        let cached: usize = answers.values().map(|(_, a, _)| a.len()).sum();
        if cached + answer.len() > cache_limit {
            answers.clear();
        }
        answers.insert(answer_key, (version, answer.clone(), Instant::now()));
    }
    Ok(json_bytes(ResponseBody::Large(answer, 0)))
}

/// The cached answer for `key` if it was built at the service's current change time.
fn cached_answer(shared: &Shared, key: &AnswerKey, version: u64) -> Option<Arc<LargeAnswer>> {
    if version == 0 {
        return None;
    }
    let mut answers = shared.answers();
    match answers.get_mut(key) {
        Some((v, a, used)) if *v == version => {
            *used = Instant::now();
            Some(a.clone())
        }
        Some(_) => {
            // Stale: free it now.
            answers.remove(key);
            None
        }
        None => None,
    }
}

pub(crate) fn one_instance(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let cluster_key = if p.get("cluster").is_some() {
        "cluster"
    } else {
        "clusterName"
    };
    let (key, cluster, ip, port) = instance_of(p, cluster_key)?;
    let healthy_only = p.bool("healthyOnly", false)?;
    let store = shared.store();
    match store.instance(&key, &cluster, &ip, port) {
        Some(inst) if !healthy_only || inst.healthy => {
            let h = inst.host(&key.grouped);
            Ok(json_response(&json!({
                "service": key.grouped,
                "ip": h.ip,
                "port": h.port,
                "clusterName": h.cluster_name,
                "weight": h.weight,
                "healthy": h.healthy,
                "enabled": h.enabled,
                "ephemeral": h.ephemeral,
                "instanceId": h.instance_id,
                "metadata": h.metadata,
            })))
        }
        _ => Err(reject(
            StatusCode::NOT_FOUND,
            format!(
                "caused: no ips found for cluster {cluster} in service {};",
                key.grouped
            ),
        )),
    }
}

pub(crate) fn service_list(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let namespace = p.get("namespaceId").unwrap_or(DEFAULT_NAMESPACE);
    let group = p.get("groupName").unwrap_or(DEFAULT_GROUP);
    let page_no: usize = match p.get("pageNo") {
        None => 1,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(format!("Param 'pageNo' must be a number >= 1, not {v:?}")))?,
    };
    let page_size: usize = match p.get("pageSize") {
        None => 100,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "Param 'pageSize' must be a number from 1 to 100000, not {v:?}"
                ))
            })?,
    };
    let prefix = format!("{group}{}", model::GROUP_SEPARATOR);
    let store = shared.store();
    // Only the page is copied; the count walks the group's names in place.
    let mut count = 0usize;
    let skip = (page_no - 1).saturating_mul(page_size);
    let mut page: Vec<&str> = Vec::new();
    for k in store.service_names(namespace, &prefix) {
        if count >= skip && page.len() < page_size {
            page.push(&k.grouped[prefix.len()..]);
        }
        count += 1;
    }
    let answer = json_response(&json!({"count": count, "doms": page}));
    drop(store);
    Ok(answer)
}

pub(crate) fn service_detail(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let (key, group, service) = service_of(p)?;
    let store = shared.store();
    let Some(svc) = store.services.get(&key) else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!("caused: service not found: {};", key.grouped),
        ));
    };
    let clusters: Vec<_> = svc
        .clusters
        .keys()
        .map(|c| json!({"name": c, "healthChecker": {"type": "TCP"}, "metadata": {}}))
        .collect();
    Ok(json_response(&json!({
        "namespaceId": key.namespace,
        "groupName": group,
        "name": service,
        "protectThreshold": 0.0,
        "metadata": {},
        "selector": {"type": "none"},
        "clusters": clusters,
    })))
}

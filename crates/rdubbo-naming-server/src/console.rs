//! The web console (page and data) and the metrics endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::Response;
use rdubbo_registry_nacos::model::{self, DEFAULT_GROUP};
use serde_json::json;

use crate::conn::ResponseBody;
use crate::http::{json_response, HttpResponse};
use crate::store;
use crate::Shared;

pub(crate) fn metrics(shared: &Shared) -> HttpResponse {
    let (services, instances) = shared.store().counts();
    json_response(&json!({
        "status": "UP",
        "serviceCount": services,
        "instanceCount": instances,
        "subscribeCount": shared.pushes.subscriber_count(),
        "responsibleServiceCount": services,
        "responsibleInstanceCount": instances,
        "clientBeatCount": shared.beats.load(Ordering::Relaxed),
        "cpu": 0.0,
        "load": 0.0,
        "mem": 0.0,
    }))
}

pub(crate) fn console_page() -> HttpResponse {
    let mut r = Response::new(ResponseBody::whole(bytes::Bytes::from_static(
        include_str!("console.html").as_bytes(),
    )));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

/// What the console shows at most: services, instances of one service, instances in all.
const CONSOLE_SERVICES: usize = 500;
const CONSOLE_SERVICE_INSTANCES: usize = 100;
const CONSOLE_INSTANCES: usize = 5_000;

pub(crate) fn console_data(shared: &Shared) -> HttpResponse {
    let now = store::now_ms();
    let store = shared.store();
    let mut namespaces: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut shown_services = 0;
    let mut shown_instances = 0;
    for (key, svc) in &store.services {
        if shown_services >= CONSOLE_SERVICES || shown_instances >= CONSOLE_INSTANCES {
            break;
        }
        shown_services += 1;
        let (group, name) = model::split_grouped(&key.grouped, DEFAULT_GROUP);
        let mut instances = Vec::new();
        'clusters: for (cluster, c) in &svc.clusters {
            for inst in c.values() {
                if instances.len() >= CONSOLE_SERVICE_INSTANCES
                    || shown_instances >= CONSOLE_INSTANCES
                {
                    break 'clusters;
                }
                shown_instances += 1;
                instances.push(json!({
                    "cluster": cluster,
                    "ip": inst.ip,
                    "port": inst.port,
                    "weight": inst.weight,
                    "healthy": inst.healthy,
                    "enabled": inst.enabled,
                    "ephemeral": inst.ephemeral,
                    "metadata": inst.metadata.as_ref(),
                    "lastBeatAgoMs": now.saturating_sub(inst.last_beat_ms),
                }));
            }
        }
        let subscribers = shared.pushes.subscriber_count_of(key);
        namespaces
            .entry(key.namespace.clone())
            .or_default()
            .push(json!({
                "group": group,
                "name": name,
                "instances": instances,
                "instanceCount": svc.instance_count(),
                "subscribers": subscribers,
            }));
    }
    let (services, instance_count) = store.counts();
    drop(store);
    json_response(&json!({
        "namespaces": namespaces,
        "services": services,
        "instances": instance_count,
        "shownServices": shown_services,
        "truncated": shown_services < services,
        "subscribers": shared.pushes.subscriber_count(),
        "beats": shared.beats.load(Ordering::Relaxed),
        "configs": crate::configs::console_configs(shared),
        "time": now,
    }))
}

//! Fetching an application's [`MetadataInfo`] from one of its instances, once per
//! revision: `org.apache.dubbo.metadata.MetadataService.getMetadataInfo(revision)` (group =
//! the application, version 1.0.0) over the protocol and port the instance advertises in
//! `dubbo.metadata-service.url-params` (dubbo or tri), as a Java 3.3 consumer does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::discovery::keys;
use crate::extension::Extensions;
use crate::metadata::{MetadataInfo, METADATA_SERVICE, METADATA_SERVICE_VERSION};
use crate::{Invocation, ServiceInstance, Url, Value};

/// How long one `getMetadataInfo` call may take (Java's 5 s).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How many revisions the process keeps (oldest dropped first beyond that).
const CAPACITY: usize = 4096;

type Slot = Arc<OnceCell<Arc<MetadataInfo>>>;

/// `(application, revision)`.
type Key = (String, String);

/// The metadata of every `(application, revision)` fetched by this process, shared by
/// all references (a revision names exactly one metadata, so it is fetched once).
struct Cache {
    slots: Mutex<(HashMap<Key, Slot>, Vec<Key>)>,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache {
        slots: Mutex::new((HashMap::new(), Vec::new())),
    })
}

static FETCHES: AtomicU64 = AtomicU64::new(0);

/// How many `getMetadataInfo` calls this process made so far (successful or not).
pub fn metadata_fetches() -> u64 {
    FETCHES.load(Ordering::Relaxed)
}

fn slot(app: &str, revision: &str) -> Slot {
    let mut guard = cache().slots.lock().unwrap_or_else(|e| e.into_inner());
    let (slots, order) = &mut *guard;
    let key = (app.to_owned(), revision.to_owned());
    if let Some(slot) = slots.get(&key) {
        return slot.clone();
    }
    while order.len() >= CAPACITY {
        let oldest = order.remove(0);
        slots.remove(&oldest);
    }
    let slot = Slot::default();
    slots.insert(key.clone(), slot.clone());
    order.push(key);
    slot
}

/// The metadata of revision `revision` of application `app`, fetched from the first of
/// `instances` (all serving that revision) that answers it, unless this process has it
/// already. Concurrent callers for the same revision share one fetch.
pub(crate) async fn metadata_of(
    extensions: &Extensions,
    app: &str,
    revision: &str,
    instances: &[&ServiceInstance],
) -> Result<Arc<MetadataInfo>, String> {
    let slot = slot(app, revision);
    slot.get_or_try_init(|| async {
        let mut errors = Vec::new();
        for instance in instances {
            match fetch(extensions, instance, revision).await {
                Ok(info) => return Ok(Arc::new(info)),
                Err(e) => errors.push(format!("{}: {e}", instance.id())),
            }
        }
        Err(format!(
            "no instance of `{app}` answered the metadata of revision {revision}: {}",
            errors.join("; ")
        ))
    })
    .await
    .cloned()
}

/// The URL of an instance's MetadataService, from `dubbo.metadata-service.url-params`
/// (protocol and port; `dubbo` on the instance port without them).
pub(crate) fn metadata_service_url(instance: &ServiceInstance) -> Url {
    let params = instance.metadata_service_params();
    let protocol = params
        .get("protocol")
        .filter(|p| !p.is_empty())
        .map_or("dubbo", String::as_str);
    let port = params
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(instance.port);
    let mut url = Url::new(protocol, &instance.host, Some(port), METADATA_SERVICE);
    url.set_param("interface", METADATA_SERVICE);
    url.set_param("group", crate::url::encode(&instance.service_name));
    url.set_param("version", METADATA_SERVICE_VERSION);
    url.set_param("side", "consumer");
    url.set_param("timeout", FETCH_TIMEOUT.as_millis().to_string());
    if let Some(s) = params.get("prefer.serialization").filter(|s| !s.is_empty()) {
        url.set_param("prefer.serialization", crate::url::encode(s));
    }
    url
}

/// One `getMetadataInfo(revision)` call on `instance`.
async fn fetch(
    extensions: &Extensions,
    instance: &ServiceInstance,
    revision: &str,
) -> Result<MetadataInfo, String> {
    if instance
        .metadata
        .get(keys::STORAGE_TYPE)
        .is_some_and(|t| t == "remote")
    {
        return Err("metadata stored in a metadata report (`remote`) is not supported".into());
    }
    let url = metadata_service_url(instance);
    let protocol = extensions.protocol(url.protocol()).ok_or_else(|| {
        format!(
            "MetadataService over `{}`: protocol unknown",
            url.protocol()
        )
    })?;
    let invoker = protocol.refer(&url).map_err(|e| e.to_string())?;
    let invocation = Invocation::new(
        METADATA_SERVICE,
        "getMetadataInfo",
        vec![Value::String(revision.to_owned())],
    )
    .with_version(Some(METADATA_SERVICE_VERSION))
    .with_group(Some(&instance.service_name))
    .with_timeout(Some(FETCH_TIMEOUT))
    .with_parameter_types(vec!["Ljava/lang/String;".to_owned()]);
    FETCHES.fetch_add(1, Ordering::Relaxed);
    let reply = invoker
        .invoke(invocation)
        .await
        .map_err(|e| format!("getMetadataInfo at {}: {e}", url.address()))?;
    let value = reply.into_value()?;
    if matches!(value, Value::Null) {
        return Err(format!("revision {revision} unknown to {}", url.address()));
    }
    let (info, answered) =
        MetadataInfo::from_value(&value).ok_or_else(|| "not a MetadataInfo".to_owned())?;
    if answered != revision {
        return Err(format!("asked revision {revision}, got {answered}"));
    }
    tracing::debug!(app = %instance.service_name, revision, from = %url.address(), services = info.services.len(), "metadata fetched");
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_service_url_follows_the_instance() {
        let mut i = ServiceInstance::new("shop", "10.0.0.1", 20880);
        assert_eq!(
            metadata_service_url(&i).to_string(),
            "dubbo://10.0.0.1:20880/org.apache.dubbo.metadata.MetadataService?interface=org.apache.dubbo.metadata.MetadataService&group=shop&version=1.0.0&side=consumer&timeout=5000"
        );
        i.metadata.insert(
            keys::METADATA_SERVICE_URL_PARAMS.into(),
            r#"{"prefer.serialization":"hessian2","version":"1.0.0","port":"50051","protocol":"tri"}"#.into(),
        );
        let url = metadata_service_url(&i);
        assert_eq!(url.protocol(), "tri");
        assert_eq!(url.port(), Some(50051));
        assert_eq!(url.param("prefer.serialization"), Some("hessian2"));
    }
}

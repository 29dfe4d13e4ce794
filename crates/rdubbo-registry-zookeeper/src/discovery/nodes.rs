//! The node formats: an instance's Curator JSON, a mapping's comma-separated
//! applications, and where they live.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use rdubbo_core::discovery::ServiceInstance;
use rdubbo_core::Url;

use super::ZOOKEEPER_INSTANCE_CLASS;

/// Folders Dubbo 3 keeps under the registry root beside the interfaces (the mapping, the
/// config center, the metadata report): never an interface.
pub(crate) fn is_dubbo3_folder(name: &str) -> bool {
    matches!(name, "mapping" | "config" | "metadata")
}

/// `rootPath`, else `/` + `group`, else `/services`.
pub(super) fn instances_root(url: &Url) -> String {
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

pub(super) fn millis_now() -> u64 {
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

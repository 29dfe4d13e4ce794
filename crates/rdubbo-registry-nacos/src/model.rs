//! The Nacos naming model shared by the client and the embedded server: names, defaults,
//! the JSON shapes of the Open API v1 and Dubbo's service naming.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "public";
/// The group used when a request names none.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";
/// The cluster used when a request names none.
pub const DEFAULT_CLUSTER: &str = "DEFAULT";
/// Separator of group and service in a grouped service name (`DEFAULT_GROUP@@svc`).
pub const GROUP_SEPARATOR: &str = "@@";

/// Beat code: the beat was accepted.
pub const BEAT_OK: i64 = 10200;
/// Beat code: the server does not know the instance; the client registers it again.
pub const BEAT_UNKNOWN_INSTANCE: i64 = 20404;

/// Metadata key overriding the beat interval of one instance (milliseconds).
pub const META_BEAT_INTERVAL: &str = "preserved.heart.beat.interval";
/// Metadata key overriding the time without beats after which an instance is unhealthy (ms).
pub const META_BEAT_TIMEOUT: &str = "preserved.heart.beat.timeout";
/// Metadata key overriding the time without beats after which an instance is removed (ms).
pub const META_DELETE_TIMEOUT: &str = "preserved.ip.delete.timeout";

/// Default beat interval of ephemeral instances (ms).
pub const DEFAULT_BEAT_INTERVAL_MS: u64 = 5_000;
/// Default time without beats before an ephemeral instance turns unhealthy (ms).
pub const DEFAULT_BEAT_TIMEOUT_MS: u64 = 15_000;
/// Default time without beats before an ephemeral instance is removed (ms).
pub const DEFAULT_DELETE_TIMEOUT_MS: u64 = 30_000;

/// Splits `group@@service` into its parts; a name without a group gets `default_group`.
pub fn split_grouped(name: &str, default_group: &str) -> (String, String) {
    match name.split_once(GROUP_SEPARATOR) {
        Some((group, service)) => (group.to_owned(), service.to_owned()),
        None => (default_group.to_owned(), name.to_owned()),
    }
}

/// `group@@service`.
pub fn grouped(group: &str, service: &str) -> String {
    format!("{group}{GROUP_SEPARATOR}{service}")
}

/// One instance as the Open API shows it (`hosts` of a list answer, the one-instance call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// `ip#port#cluster#group@@service`.
    #[serde(default)]
    pub instance_id: String,
    /// Address of the instance.
    pub ip: String,
    /// Port of the instance.
    pub port: u16,
    /// Relative share of traffic.
    #[serde(default = "one")]
    pub weight: f64,
    /// Whether the instance passes its health check (beats, for ephemeral instances).
    #[serde(default = "yes")]
    pub healthy: bool,
    /// Whether the instance takes traffic.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether the instance lives by client beats (true) or is stored by the server (false).
    #[serde(default = "yes")]
    pub ephemeral: bool,
    /// Cluster of the instance.
    #[serde(default = "default_cluster")]
    pub cluster_name: String,
    /// Grouped service name.
    #[serde(default)]
    pub service_name: String,
    /// Free-form string metadata (Dubbo puts its URL parameters here).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_cluster() -> String {
    DEFAULT_CLUSTER.to_owned()
}

/// The answer of `GET /nacos/v1/ns/instance/list` and the `data` of a UDP push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// Grouped service name.
    #[serde(default)]
    pub name: String,
    /// Group of the service.
    #[serde(default)]
    pub group_name: String,
    /// The clusters the query asked for (comma separated, empty for all).
    #[serde(default)]
    pub clusters: String,
    /// How long the client may use this answer before asking again (ms).
    #[serde(default)]
    pub cache_millis: u64,
    /// The instances.
    #[serde(default)]
    pub hosts: Vec<Host>,
    /// When the server last changed this service (ms since the epoch).
    #[serde(default)]
    pub last_ref_time: u64,
    /// A digest of the hosts.
    #[serde(default)]
    pub checksum: String,
}

/// Dubbo's Nacos service name: `<category>:<interface>:<version>:<group>`, empty parts kept.
pub fn dubbo_service_name(category: &str, interface: &str, version: &str, group: &str) -> String {
    format!("{category}:{interface}:{version}:{group}")
}

/// The name older Dubbo versions use: empty trailing parts dropped
/// (`providers:com.foo.Bar`, `providers:com.foo.Bar:1.0`).
pub fn legacy_dubbo_service_name(
    category: &str,
    interface: &str,
    version: &str,
    group: &str,
) -> String {
    let mut name = format!("{category}:{interface}");
    if !version.is_empty() || !group.is_empty() {
        name.push(':');
        name.push_str(version);
    }
    if !group.is_empty() {
        name.push(':');
        name.push_str(group);
    }
    name
}

/// The parts of a Dubbo service name: (category, interface, version, group). `None` for a
/// name that is not one (`DemoService`, `foo:bar` with an unknown category).
pub fn parse_dubbo_service_name(name: &str) -> Option<(String, String, String, String)> {
    let mut parts = name.splitn(4, ':');
    let category = parts.next()?;
    if !matches!(
        category,
        "providers" | "consumers" | "routers" | "configurators"
    ) {
        return None;
    }
    let interface = parts.next().filter(|s| !s.is_empty())?;
    let version = parts.next().unwrap_or("");
    let group = parts.next().unwrap_or("");
    Some((
        category.to_owned(),
        interface.to_owned(),
        version.to_owned(),
        group.to_owned(),
    ))
}

/// Parses instance metadata as Nacos does: a JSON object (values that are not strings are
/// kept as their JSON text), or `k=v,k2=v2`.
pub fn parse_metadata(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(BTreeMap::new());
    }
    if text.starts_with('{') {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| format!("metadata is not a JSON object: {e}"))?;
        return Ok(value
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect());
    }
    let mut out = BTreeMap::new();
    for pair in text.split(',') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("metadata entry {pair:?} is neither JSON nor key=value"))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dubbo_names_keep_or_drop_empty_parts() {
        assert_eq!(
            dubbo_service_name("providers", "com.foo.Bar", "", ""),
            "providers:com.foo.Bar::"
        );
        assert_eq!(
            legacy_dubbo_service_name("providers", "com.foo.Bar", "", ""),
            "providers:com.foo.Bar"
        );
        assert_eq!(
            legacy_dubbo_service_name("providers", "com.foo.Bar", "1.0", ""),
            "providers:com.foo.Bar:1.0"
        );
        assert_eq!(
            legacy_dubbo_service_name("providers", "com.foo.Bar", "", "g"),
            "providers:com.foo.Bar::g"
        );
        assert_eq!(
            parse_dubbo_service_name("providers:com.foo.Bar:1.0.0:g1"),
            Some((
                "providers".into(),
                "com.foo.Bar".into(),
                "1.0.0".into(),
                "g1".into()
            ))
        );
        assert_eq!(
            parse_dubbo_service_name("consumers:com.foo.Bar"),
            Some((
                "consumers".into(),
                "com.foo.Bar".into(),
                String::new(),
                String::new()
            ))
        );
        assert_eq!(parse_dubbo_service_name("DemoService"), None);
        assert_eq!(parse_dubbo_service_name("providers:"), None);
    }

    #[test]
    fn grouped_names() {
        assert_eq!(
            split_grouped("G@@svc", DEFAULT_GROUP),
            ("G".into(), "svc".into())
        );
        assert_eq!(
            split_grouped("svc", DEFAULT_GROUP),
            (DEFAULT_GROUP.into(), "svc".into())
        );
        assert_eq!(grouped("G", "svc"), "G@@svc");
    }

    #[test]
    fn metadata_in_both_forms() {
        let m = parse_metadata(r#"{"a":"1","b":2,"c":true}"#).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "2");
        assert_eq!(m["c"], "true");
        let m = parse_metadata("a=1, b=x").unwrap();
        assert_eq!(m["b"], "x");
        assert!(parse_metadata("{broken").is_err());
        assert!(parse_metadata("novalue").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn metadata_parser_never_panics(text in "\\PC*") {
            let _ = parse_metadata(&text);
        }

        #[test]
        fn service_info_decoder_never_panics(text in "\\PC*") {
            let _ = serde_json::from_str::<ServiceInfo>(&text);
        }

        #[test]
        fn dubbo_names_round_trip(
            iface in "[a-zA-Z][a-zA-Z0-9.]{0,20}",
            version in "[0-9.]{0,5}",
            group in "[a-z]{0,5}",
        ) {
            let name = dubbo_service_name("providers", &iface, &version, &group);
            prop_assert_eq!(
                parse_dubbo_service_name(&name),
                Some(("providers".to_owned(), iface.clone(), version.clone(), group.clone()))
            );
            let legacy = legacy_dubbo_service_name("providers", &iface, &version, &group);
            prop_assert_eq!(
                parse_dubbo_service_name(&legacy),
                Some(("providers".to_owned(), iface, version, group))
            );
        }
    }
}

//! The application configuration file (TOML or YAML) and its environment overrides.
//!
//! The layout follows dubbo-go's `dubbogo.yml`: `application`, `registries` and `protocols`
//! keyed by id, `provider.services` and `consumer.references` keyed by id, plus `shutdown`,
//! `metrics` and `qos`. Every key is listed with its default in `docs/guide.md`.
//!
//! ```
//! let config = rdubbo::app::Config::from_str(r#"
//! [application]
//! name = "shop"
//!
//! [registries.main]
//! address = "nacos://127.0.0.1:8848"
//!
//! [protocols.dubbo]
//! port = 20880
//!
//! [provider.services.greeter]
//! interface = "org.example.Greeter"
//! version = "1.0.0"
//! "#, rdubbo::app::Format::Toml, "app.toml").unwrap();
//! assert_eq!(config.application.name, "shop");
//! assert_eq!(config.protocols["dubbo"].port, Some(20880));
//! ```
//!
//! Environment variables named `RDUBBO_<KEY>` override keys of the file: levels are
//! separated by a double underscore and names are lower-cased, so
//! `RDUBBO_APPLICATION__NAME=shop` sets `application.name` and
//! `RDUBBO_REGISTRIES__MAIN__ADDRESS=zookeeper://127.0.0.1:2181` sets
//! `registries.main.address`. Values are read as TOML values when they parse as one
//! (`8080`, `true`, `["a", "b"]`) and as strings otherwise. Names of one level
//! (`RDUBBO_JAVA_DUBBO_DIR`) name no key and are left to the tools that read them.
//!
//! The model (this module), reading and environment overrides (`load`) and checks (`validate`)
//! are separate: every load checks what the file alone can tell (required keys, ids, URLs);
//! the names of protocols, registry schemes, load balancers and cluster strategies are
//! checked against an extension table by [`Config::check_extensions`], which an application
//! does with the table it is given, so a plug-in's name is as good as a built-in's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod load;
mod validate;

/// The format of a configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl Format {
    /// The format a file name's extension names (`.toml`, `.yaml`/`.yml`).
    pub fn of_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Why a configuration could not be used: where (source, key, line and column) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name (or `environment` for overrides).
    pub source: String,
    /// The key, dotted (`provider.services.greeter.timeout`), when known.
    pub key: Option<String>,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn at_key(source: &str, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            source: source.to_owned(),
            key: Some(key.into()),
            position: None,
            message: message.into(),
        }
    }
}

/// A duration: a number of milliseconds, or a text such as `500ms`, `3s`, `1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(ms) => Ok(Millis(Duration::from_millis(ms))),
            Raw::S(s) => parse_duration(&s)
                .map(Millis)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `250`, `250ms`, `3s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 3s, 1m)"))?;
    let secs = match unit.trim() {
        "" | "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (ms, s, m, h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is out of range"))
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[application]`.
    pub application: ApplicationConfig,
    /// `[registries.<id>]`.
    pub registries: BTreeMap<String, RegistryConfig>,
    /// `[protocols.<id>]`.
    pub protocols: BTreeMap<String, ProtocolConfig>,
    /// `[provider]`.
    pub provider: ProviderConfig,
    /// `[consumer]`.
    pub consumer: ConsumerConfig,
    /// `[shutdown]`.
    pub shutdown: ShutdownConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[qos]`.
    pub qos: QosConfig,
    /// `[ssl]`: the certificates of TLS (Java's `dubbo.ssl`).
    pub ssl: SslConfig,
}

/// `[ssl]`: PEM files for TLS, named as Java Dubbo's `SslConfig`. The server side serves
/// the protocols that say `ssl_enabled = true`; the client side is used to call providers
/// whose URL says `ssl-enabled=true`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SslConfig {
    /// The server's certificate chain (leaf first).
    pub server_key_cert_chain_path: Option<String>,
    /// The server's private key.
    pub server_private_key_path: Option<String>,
    /// The CA bundle client certificates must chain to: set, clients must present one
    /// (mutual TLS).
    pub server_trust_cert_collection_path: Option<String>,
    /// The CA bundle the consumer trusts for providers' certificates.
    pub client_trust_cert_collection_path: Option<String>,
    /// The consumer's own certificate chain, for mutual TLS.
    pub client_key_cert_chain_path: Option<String>,
    /// The consumer's private key, for mutual TLS.
    pub client_private_key_path: Option<String>,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplicationConfig {
    /// Application name (`application` parameter of every URL). Default `rdubbo-app`.
    pub name: String,
    /// Application version.
    pub version: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Organization.
    pub organization: Option<String>,
    /// Environment (`dev`, `test`, `product`).
    pub environment: Option<String>,
    /// Where providers register: `interface`, `instance` (Dubbo 3's application
    /// instance, its MetadataService and the interface mapping) or `all` (default, as
    /// Java 3's `dubbo.application.register-mode`). A registry's `register-mode`
    /// parameter overrides it for that registry.
    pub register_mode: Option<crate::RegisterMode>,
    /// How references find providers while services move to application-level
    /// registration: `FORCE_INTERFACE`, `APPLICATION_FIRST` (default, as Java 3) or
    /// `FORCE_APPLICATION` (Java's `dubbo.application.migration.step`). A reference's or
    /// registry's `migration.step` parameter and the config center's
    /// `<name>.migration` rule override it.
    pub migration_step: Option<crate::discovery::MigrationStep>,
}

impl Default for ApplicationConfig {
    fn default() -> Self {
        ApplicationConfig {
            name: "rdubbo-app".into(),
            version: None,
            owner: None,
            organization: None,
            environment: None,
            register_mode: None,
            migration_step: None,
        }
    }
}

/// `[registries.<id>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry URL: `zookeeper://host:port?…`, `nacos://host:port?…`.
    pub address: String,
    /// Extra URL parameters (`namespace`, `group`, `timeout` …).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// `[protocols.<id>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// Protocol name: `dubbo`, `jsonrpc` or one in the application's extension table
    /// (default: the id).
    pub name: Option<String>,
    /// Listen IP (default `127.0.0.1`; `0.0.0.0` for every interface).
    pub ip: Option<String>,
    /// Listen port (default 20880 for dubbo, 30880 for jsonrpc; 0 picks a free one).
    pub port: Option<u16>,
    /// Host written in the registered URLs (default: the listen IP).
    pub host: Option<String>,
    /// Connection limit of the server.
    pub max_connections: Option<usize>,
    /// Largest request body in bytes (dubbo `payload`, default 8 MiB).
    pub payload: Option<usize>,
    /// Requests served at once per connection (dubbo) or per server (jsonrpc).
    pub max_pending: Option<usize>,
    /// Serve TLS with the `[ssl]` server certificate (Java's `ssl-enabled`); the
    /// registered URLs then say `ssl-enabled=true`.
    pub ssl_enabled: Option<bool>,
}

/// Per-method settings, `methods.<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    /// Call timeout.
    pub timeout: Option<Millis>,
    /// Extra attempts on other providers (consumer).
    pub retries: Option<u32>,
    /// Load balancer (consumer).
    pub loadbalance: Option<String>,
    /// Calls served at once (provider, `executes`).
    pub executes: Option<u32>,
    /// Calls in flight at once (consumer, `actives`).
    pub actives: Option<u32>,
    /// Calls per `tps_interval` (provider).
    pub tps: Option<u32>,
}

/// `[provider]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// Registries every service registers in, by id (default: all).
    pub registries: Option<Vec<String>>,
    /// Protocols every service is served over, by id (default: all).
    pub protocols: Option<Vec<String>>,
    /// Default call timeout advertised to consumers.
    pub timeout: Option<Millis>,
    /// `[provider.services.<id>]`.
    pub services: BTreeMap<String, ServiceConfig>,
}

/// `[provider.services.<id>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Interface name (required).
    pub interface: String,
    /// Version.
    pub version: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Protocols, by id (default: the provider's).
    pub protocols: Option<Vec<String>>,
    /// Registries, by id (default: the provider's).
    pub registries: Option<Vec<String>>,
    /// Advertised call timeout.
    pub timeout: Option<Millis>,
    /// Load-balancing weight (default 100).
    pub weight: Option<u32>,
    /// Calls served at once (`executes`).
    pub executes: Option<u32>,
    /// Calls per interval (`tps`).
    pub tps: Option<u32>,
    /// Extra URL parameters.
    pub params: BTreeMap<String, String>,
    /// Per-method settings.
    pub methods: BTreeMap<String, MethodConfig>,
}

/// `[consumer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Default registries of references, by id (default: all).
    pub registries: Option<Vec<String>>,
    /// Default `check` (fail at start when no provider is known). Default true.
    pub check: bool,
    /// Default call timeout. Default 3 s.
    pub timeout: Millis,
    /// Default retries. Default 2.
    pub retries: u32,
    /// `[consumer.references.<id>]`.
    pub references: BTreeMap<String, ReferenceConfig>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            registries: None,
            check: true,
            timeout: Millis(Duration::from_secs(3)),
            retries: 2,
            references: BTreeMap::new(),
        }
    }
}

/// `[consumer.references.<id>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// Interface name (required).
    pub interface: String,
    /// Version.
    pub version: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// A provider URL to call directly instead of discovering through a registry.
    pub url: Option<String>,
    /// The registry to discover through, by id (default: the consumer's first).
    pub registry: Option<String>,
    /// Fail at start when no provider is known (default: the consumer's).
    pub check: Option<bool>,
    /// Call timeout (default: the consumer's).
    pub timeout: Option<Millis>,
    /// Extra attempts after a retryable failure (default: the consumer's).
    pub retries: Option<u32>,
    /// Load balancer: `random`, `roundrobin`, `leastactive`, `shortestresponse`,
    /// `consistenthash`, `p2c`, or one in the application's extension table.
    pub loadbalance: Option<String>,
    /// Cluster strategy: `failover`, `failfast`, `failsafe`, `failback`, `forking`,
    /// `broadcast`, or one in the application's extension table.
    pub cluster: Option<String>,
    /// Calls in flight at once (`actives`).
    pub actives: Option<u32>,
    /// Extra consumer URL parameters.
    pub params: BTreeMap<String, String>,
    /// Per-method settings.
    pub methods: BTreeMap<String, MethodConfig>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Wait between unregistering and refusing calls. Default 1 s.
    pub unregister_wait: Millis,
    /// Deadline for in-flight calls to finish. Default 10 s.
    pub drain: Millis,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            unregister_wait: Millis(Duration::from_secs(1)),
            drain: Millis(Duration::from_secs(10)),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`. Default true.
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:9090` (port 0 picks a free one).
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// `[qos]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QosConfig {
    /// Serve QoS commands. Default true.
    pub enabled: bool,
    /// Port on 127.0.0.1. Default 22222 (0 picks a free one).
    pub port: u16,
    /// Listen on every interface instead of loopback only. Default false.
    pub accept_foreign_ip: bool,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig {
            enabled: true,
            port: 22222,
            accept_foreign_ip: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("fast").is_err());
    }
}

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

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

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
}

impl Default for ApplicationConfig {
    fn default() -> Self {
        ApplicationConfig {
            name: "rdubbo-app".into(),
            version: None,
            owner: None,
            organization: None,
            environment: None,
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
    /// Protocol name: `dubbo` or `jsonrpc` (default: the id).
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
    /// `consistenthash`, `p2c`.
    pub loadbalance: Option<String>,
    /// Cluster strategy: `failover`, `failfast`, `failsafe`, `failback`, `forking`,
    /// `broadcast`.
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

impl Config {
    /// Reads a file (format from its extension) and applies `RDUBBO_…` overrides from the
    /// process environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let format = Format::of_path(path).ok_or_else(|| ConfigError {
            source: name.clone(),
            key: None,
            position: None,
            message: "unknown configuration format: use a .toml, .yaml or .yml file".into(),
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: name.clone(),
            key: None,
            position: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::from_str_with_env(&text, format, &name, std::env::vars())
    }

    /// Parses a text (no environment overrides). `source` names it in errors.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, format: Format, source: &str) -> Result<Config, ConfigError> {
        let config = parse_typed(text, format, source)?;
        config.validate(source)?;
        Ok(config)
    }

    /// Parses a text, then applies the `RDUBBO_…` variables among `vars`.
    pub fn from_str_with_env(
        text: &str,
        format: Format,
        source: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // First the file alone, so that its errors carry positions.
        let config = parse_typed(text, format, source)?;
        let overrides: Vec<(Vec<String>, String, String)> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("RDUBBO_")?;
                let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
                // Every key of the file is inside a section, so an override has two levels
                // at least; single-level names (`RDUBBO_JAVA_DUBBO_DIR`) belong to tools.
                (path.len() >= 2 && !path.iter().any(String::is_empty)).then_some((path, v, k))
            })
            .collect();
        if overrides.is_empty() {
            config.validate(source)?;
            return Ok(config);
        }
        let mut tree: serde_json::Value = match format {
            Format::Toml => toml::from_str::<serde_json::Value>(text).map_err(|e| ConfigError {
                source: source.into(),
                key: None,
                position: None,
                message: e.message().to_owned(),
            })?,
            Format::Yaml => parse_yaml_tree(text, source)?,
        };
        if tree.is_null() {
            tree = serde_json::json!({});
        }
        let mut names = Vec::new();
        for (path, value, name) in overrides {
            set_path(&mut tree, &path, env_value(&value)).map_err(|m| {
                ConfigError::at_key("environment", path.join("."), format!("{name}: {m}"))
            })?;
            names.push(name);
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::at_key(
                &format!("{source} with {}", names.join(", ")),
                key,
                e.into_inner().to_string(),
            )
        })?;
        config.validate(source)?;
        Ok(config)
    }

    /// Checks what the types cannot: required keys, references between sections.
    fn validate(&self, source: &str) -> Result<(), ConfigError> {
        let err = |key: String, msg: String| Err(ConfigError::at_key(source, key, msg));
        for (id, r) in &self.registries {
            let key = format!("registries.{id}.address");
            match r.address.parse::<crate::Url>() {
                Err(e) => return err(key, format!("not a URL: {e}")),
                Ok(url) => {
                    let scheme = url.protocol();
                    let known = crate::registry::supported_schemes();
                    if !known.contains(&scheme) && scheme != "zk" {
                        return err(
                            key,
                            format!(
                                "unsupported registry `{scheme}` (supported: {})",
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
        }
        for (id, p) in &self.protocols {
            let name = p.name.as_deref().unwrap_or(id);
            if !matches!(name, "dubbo" | "jsonrpc") {
                return err(
                    format!("protocols.{id}.name"),
                    format!("unknown protocol `{name}` (dubbo, jsonrpc)"),
                );
            }
            if let Some(ip) = &p.ip {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    return err(
                        format!("protocols.{id}.ip"),
                        format!("`{ip}` is not an IP address"),
                    );
                }
            }
        }
        let registry_ids: Vec<&String> = self.registries.keys().collect();
        let protocol_ids: Vec<&String> = self.protocols.keys().collect();
        let check_ids = |key: &str, ids: &Option<Vec<String>>, known: &[&String], what: &str| {
            for id in ids.iter().flatten() {
                if !known.contains(&id) {
                    return Err(ConfigError::at_key(
                        source,
                        key,
                        format!(
                            "no {what} with id `{id}` (known: {})",
                            known
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        check_ids(
            "provider.registries",
            &self.provider.registries,
            &registry_ids,
            "registry",
        )?;
        check_ids(
            "provider.protocols",
            &self.provider.protocols,
            &protocol_ids,
            "protocol",
        )?;
        check_ids(
            "consumer.registries",
            &self.consumer.registries,
            &registry_ids,
            "registry",
        )?;
        for (id, s) in &self.provider.services {
            if s.interface.is_empty() {
                return err(
                    format!("provider.services.{id}.interface"),
                    "required".into(),
                );
            }
            check_ids(
                &format!("provider.services.{id}.registries"),
                &s.registries,
                &registry_ids,
                "registry",
            )?;
            check_ids(
                &format!("provider.services.{id}.protocols"),
                &s.protocols,
                &protocol_ids,
                "protocol",
            )?;
        }
        if !self.provider.services.is_empty() && self.protocols.is_empty() {
            return err(
                "protocols".into(),
                "services are provided but no protocol is configured".into(),
            );
        }
        for (id, r) in &self.consumer.references {
            let key = |k: &str| format!("consumer.references.{id}.{k}");
            if r.interface.is_empty() {
                return err(key("interface"), "required".into());
            }
            if let Some(url) = &r.url {
                if let Err(e) = url.parse::<crate::Url>() {
                    return err(key("url"), format!("not a URL: {e}"));
                }
            }
            if let Some(reg) = &r.registry {
                if !self.registries.contains_key(reg) {
                    return err(key("registry"), format!("no registry with id `{reg}`"));
                }
            }
            if r.url.is_none() && r.registry.is_none() && self.registries.is_empty() {
                return err(key("url"), "a reference needs a `url` or a registry".into());
            }
            for (k, v) in [("loadbalance", &r.loadbalance), ("cluster", &r.cluster)] {
                let allowed: &[&str] = if k == "cluster" {
                    &[
                        "failover",
                        "failfast",
                        "failsafe",
                        "failback",
                        "forking",
                        "broadcast",
                    ]
                } else {
                    &[
                        "random",
                        "roundrobin",
                        "leastactive",
                        "shortestresponse",
                        "consistenthash",
                        "p2c",
                    ]
                };
                if let Some(v) = v {
                    if !allowed.contains(&v.as_str()) {
                        return err(
                            key(k),
                            format!("unknown {k} `{v}` ({})", allowed.join(", ")),
                        );
                    }
                }
            }
        }
        if self.metrics.enabled && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return err(
                "metrics.listen".into(),
                format!("`{}` is not an address (ip:port)", self.metrics.listen),
            );
        }
        Ok(())
    }
}

fn parse_typed(text: &str, format: Format, source: &str) -> Result<Config, ConfigError> {
    match format {
        Format::Toml => {
            let de =
                toml::Deserializer::parse(text).map_err(|e| toml_error(text, source, None, &e))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                toml_error(text, source, Some(key), e.inner())
            })
        }
        Format::Yaml => {
            if text.trim().is_empty() {
                return Ok(Config::default());
            }
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                yaml_error(source, Some(key), &inner)
            })
        }
    }
}

fn parse_yaml_tree(text: &str, source: &str) -> Result<serde_json::Value, ConfigError> {
    serde_yaml_ng::from_str(text).map_err(|e| yaml_error(source, None, &e))
}

fn key_or_none(key: Option<String>) -> Option<String> {
    key.filter(|k| !k.is_empty() && k != ".")
}

fn toml_error(text: &str, source: &str, key: Option<String>, e: &toml::de::Error) -> ConfigError {
    let position = e.span().map(|span| line_col(text, span.start));
    ConfigError {
        source: source.to_owned(),
        key: key_or_none(key),
        position,
        message: e.message().trim().to_owned(),
    }
}

fn yaml_error(source: &str, key: Option<String>, e: &serde_yaml_ng::Error) -> ConfigError {
    let mut message = e.to_string();
    // The YAML error text repeats the position; it is reported separately.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    ConfigError {
        source: source.to_owned(),
        key: key_or_none(key),
        position: e.location().map(|l| (l.line(), l.column())),
        message,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn env_value(raw: &str) -> serde_json::Value {
    #[derive(Deserialize)]
    struct Wrap {
        v: serde_json::Value,
    }
    toml::from_str::<Wrap>(&format!("v = {raw}"))
        .map(|w| w.v)
        .unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}

fn set_path(
    tree: &mut serde_json::Value,
    path: &[String],
    value: serde_json::Value,
) -> Result<(), String> {
    let mut node = tree;
    for (i, part) in path.iter().enumerate() {
        let serde_json::Value::Object(map) = node else {
            return Err(format!("`{}` is not a table", path[..i].join(".")));
        };
        if i == path.len() - 1 {
            map.insert(part.clone(), value);
            return Ok(());
        }
        node = map
            .entry(part.clone())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
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

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}

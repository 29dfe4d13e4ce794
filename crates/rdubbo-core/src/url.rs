//! Apache Dubbo's URL model.
//!
//! A Dubbo URL is `protocol://[username[:password]@]host[:port]/path?key=value&…`. Registries
//! store URLs as node names (`encode(url.to_string())`), so parsing and formatting must be
//! lossless: parameter order, empty values and even a trailing `&` survive a round trip, and
//! parameter values are kept as written (Java does not decode them either).

use std::str::FromStr;

#[cfg(test)]
mod tests;
mod text;

pub use text::{decode, encode};

/// Parameter key names used across the Dubbo world.
pub mod keys {
    /// Interface name of the service.
    pub const INTERFACE: &str = "interface";
    /// Service group.
    pub const GROUP: &str = "group";
    /// Service version.
    pub const VERSION: &str = "version";
    /// Registry category: providers, consumers, routers, configurators.
    pub const CATEGORY: &str = "category";
    /// Side of the URL: provider or consumer.
    pub const SIDE: &str = "side";
    /// Comma-separated method names.
    pub const METHODS: &str = "methods";
    /// Whether the provider takes traffic.
    pub const ENABLED: &str = "enabled";
    /// Classifier (rarely used).
    pub const CLASSIFIER: &str = "classifier";
    /// Call timeout in milliseconds.
    pub const TIMEOUT: &str = "timeout";
    /// Weight for load balancing.
    pub const WEIGHT: &str = "weight";
    /// `true` when the node is ephemeral (dynamic).
    pub const DYNAMIC: &str = "dynamic";
    /// Application name.
    pub const APPLICATION: &str = "application";
    /// Value that matches anything.
    pub const ANY: &str = "*";
    /// Default category.
    pub const PROVIDERS: &str = "providers";
    /// Consumer category.
    pub const CONSUMERS: &str = "consumers";
    /// Router category.
    pub const ROUTERS: &str = "routers";
    /// Configurator category.
    pub const CONFIGURATORS: &str = "configurators";
}

/// Why a URL or an encoded URL could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The input was empty.
    #[error("empty URL")]
    Empty,
    /// The protocol part before `://` is empty or has characters a scheme cannot have.
    #[error("invalid protocol {0:?} in URL")]
    InvalidProtocol(String),
    /// The port is not a number in 0..=65535.
    #[error("invalid port {port:?} in URL {url:?}")]
    InvalidPort {
        /// The port text.
        port: String,
        /// The whole input.
        url: String,
    },
    /// An IPv6 host is missing its closing `]`.
    #[error("unterminated IPv6 host in URL {0:?}")]
    UnterminatedIpv6(String),
    /// A `%` escape is not followed by two hex digits.
    #[error("invalid percent escape at byte {position} of {input:?}")]
    InvalidEscape {
        /// Byte offset of the `%`.
        position: usize,
        /// The whole input.
        input: String,
    },
    /// The decoded bytes are not UTF-8.
    #[error("decoded URL is not valid UTF-8")]
    InvalidUtf8,
}

/// One `key[=value]` segment of the query, kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Param {
    key: String,
    /// `None` for a segment without `=` (Java reads `k` as `k=k`).
    value: Option<String>,
}

/// A Dubbo URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    protocol: String,
    username: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    /// Without the leading `/`.
    path: String,
    /// `None` when the URL has no `?` at all.
    params: Option<Vec<Param>>,
}

impl Url {
    /// A URL with a protocol, host, port and path and no parameters.
    pub fn new(protocol: &str, host: &str, port: Option<u16>, path: &str) -> Url {
        Url {
            protocol: protocol.to_owned(),
            username: None,
            password: None,
            host: host.to_owned(),
            port,
            path: path.trim_start_matches('/').to_owned(),
            params: None,
        }
    }

    /// The protocol (`dubbo`, `jsonrpc`, `zookeeper`, `empty`, …); empty if none was given.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }
    /// The user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }
    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
    /// The host (IPv6 hosts keep their brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The port, if one was written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// `host:port` (or just host without a port).
    pub fn address(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }
    /// The path without its leading `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Replaces the protocol.
    pub fn set_protocol(&mut self, protocol: &str) {
        self.protocol = protocol.to_owned();
    }
    /// Replaces the host.
    pub fn set_host(&mut self, host: &str) {
        self.host = host.to_owned();
    }
    /// Replaces the port.
    pub fn set_port(&mut self, port: Option<u16>) {
        self.port = port;
    }
    /// Replaces the path (a leading `/` is dropped).
    pub fn set_path(&mut self, path: &str) {
        self.path = path.trim_start_matches('/').to_owned();
    }
    /// Replaces the credentials.
    pub fn set_credentials(&mut self, username: Option<&str>, password: Option<&str>) {
        self.username = username.map(str::to_owned);
        self.password = password.map(str::to_owned);
    }

    /// The value of a parameter as written; a bare `key` reads as `key` (as in Java).
    /// Empty keys never match.
    pub fn param(&self, key: &str) -> Option<&str> {
        if key.is_empty() {
            return None;
        }
        self.params
            .as_deref()?
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_deref().unwrap_or(p.key.as_str()))
    }

    /// The value of a parameter, treating an empty value as absent.
    pub fn param_non_empty(&self, key: &str) -> Option<&str> {
        self.param(key).filter(|v| !v.is_empty())
    }

    /// A parameter parsed as `T`, or `default` when absent, empty or unparsable.
    pub fn param_or<T: FromStr>(&self, key: &str, default: T) -> T {
        self.param_non_empty(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A boolean parameter (`true`/`false`), or `default`.
    pub fn param_bool(&self, key: &str, default: bool) -> bool {
        self.param_or(key, default)
    }

    /// A method-level parameter: `methods.<method>.<key>` (Dubbo 3), then `<method>.<key>`
    /// (Dubbo 2), then `<key>`, then `default`.
    pub fn method_param_or<T: FromStr>(&self, method: &str, key: &str, default: T) -> T {
        // One pass over the parameters, no key built: this runs on every call.
        let of_method = |k: &str| {
            k.strip_prefix(method)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|r| r == key)
        };
        let (mut v3, mut v2, mut plain) = (None, None, None);
        if !key.is_empty() {
            for p in self.params.as_deref().unwrap_or(&[]) {
                let k = p.key.as_str();
                let slot = if k == key {
                    &mut plain
                } else if k.strip_prefix("methods.").is_some_and(of_method) {
                    &mut v3
                } else if of_method(k) {
                    &mut v2
                } else {
                    continue;
                };
                if slot.is_none() {
                    *slot = Some(p.value.as_deref().unwrap_or(k));
                }
            }
        }
        [v3, v2, plain]
            .into_iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .find_map(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// All parameters in written order, bare keys read as `key=key`, empty segments skipped.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|p| !p.key.is_empty())
            .map(|p| (p.key.as_str(), p.value.as_deref().unwrap_or(p.key.as_str())))
    }

    /// Sets a parameter, replacing the first existing one in place or appending.
    pub fn set_param(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        let params = self.params.get_or_insert_with(Vec::new);
        match params.iter_mut().find(|p| p.key == key) {
            Some(p) => p.value = Some(value),
            None => params.push(Param {
                key: key.to_owned(),
                value: Some(value),
            }),
        }
    }

    /// Builder form of [`Url::set_param`].
    pub fn with_param(mut self, key: &str, value: impl Into<String>) -> Url {
        self.set_param(key, value);
        self
    }

    /// Removes every occurrence of a parameter.
    pub fn remove_param(&mut self, key: &str) {
        if let Some(params) = self.params.as_mut() {
            params.retain(|p| p.key != key);
        }
    }

    /// The service interface: the `interface` parameter, else the path.
    pub fn interface(&self) -> &str {
        self.param_non_empty(keys::INTERFACE).unwrap_or(&self.path)
    }
    /// The `group` parameter, if non-empty.
    pub fn group(&self) -> Option<&str> {
        self.param_non_empty(keys::GROUP)
    }
    /// The `version` parameter, if non-empty.
    pub fn version(&self) -> Option<&str> {
        self.param_non_empty(keys::VERSION)
    }
    /// The `category` parameter, default `providers`.
    pub fn category(&self) -> &str {
        self.param_non_empty(keys::CATEGORY)
            .unwrap_or(keys::PROVIDERS)
    }

    /// The service key `[group/]interface[:version]`.
    pub fn service_key(&self) -> String {
        service_key(self.group(), self.interface(), self.version())
    }

    /// Whether a provider (or router/configurator) URL matches this consumer URL, with the
    /// rules of Dubbo's `UrlUtils.isMatch`: interface equal or `*`; category listed by the
    /// consumer (default `providers`, `*` for all, `-x` to exclude); provider not disabled;
    /// group equal, `*` or one of the consumer's comma list; version equal or `*`; classifier
    /// equal or `*`. Empty values count as absent.
    pub fn matches_provider(&self, provider: &Url) -> bool {
        let ci = self.interface();
        let pi = provider.interface();
        if !(ci == keys::ANY || pi == keys::ANY || ci == pi) {
            return false;
        }
        if !category_matches(provider.category(), self.param_non_empty(keys::CATEGORY)) {
            return false;
        }
        if !provider.param_bool(keys::ENABLED, true) && self.param(keys::ENABLED) != Some("*") {
            return false;
        }
        let group_ok = match self.group() {
            Some("*") => true,
            Some(cg) => match provider.group() {
                Some(pg) => cg == pg || cg.split(',').any(|g| g.trim() == pg),
                None => false,
            },
            None => provider.group().is_none(),
        };
        let version_ok = match self.version() {
            Some("*") => true,
            cv => cv == provider.version(),
        };
        let classifier_ok = match self.param_non_empty(keys::CLASSIFIER) {
            None | Some("*") => true,
            Some(c) => provider.param_non_empty(keys::CLASSIFIER) == Some(c),
        };
        group_ok && version_ok && classifier_ok
    }
}

fn category_matches(category: &str, consumer_categories: Option<&str>) -> bool {
    match consumer_categories {
        None => category == keys::PROVIDERS,
        Some(list) => {
            let items: Vec<&str> = list.split(',').map(str::trim).collect();
            if items.contains(&keys::ANY) {
                true
            } else if items.iter().any(|c| c.strip_prefix('-') == Some(category)) {
                false
            } else {
                items.contains(&category)
            }
        }
    }
}

/// Builds a service key `[group/]interface[:version]`.
pub fn service_key(group: Option<&str>, interface: &str, version: Option<&str>) -> String {
    let mut key = String::with_capacity(interface.len() + 16);
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        key.push_str(g);
        key.push('/');
    }
    key.push_str(interface);
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        key.push(':');
        key.push_str(v);
    }
    key
}

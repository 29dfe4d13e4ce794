//! Apache Dubbo's URL model.
//!
//! A Dubbo URL is `protocol://[username[:password]@]host[:port]/path?key=value&…`. Registries
//! store URLs as node names (`encode(url.to_string())`), so parsing and formatting must be
//! lossless: parameter order, empty values and even a trailing `&` survive a round trip, and
//! parameter values are kept as written (Java does not decode them either).

use std::fmt;
use std::str::FromStr;

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

    /// Parses a (decoded) URL string.
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(UrlError::Empty);
        }
        let (before_query, query) = match s.find('?') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (protocol, rest) = match before_query.find("://") {
            Some(i) => {
                let p = &before_query[..i];
                if p.is_empty()
                    || !p
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
                {
                    return Err(UrlError::InvalidProtocol(p.to_owned()));
                }
                (p.to_owned(), &before_query[i + 3..])
            }
            None => (String::new(), before_query),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.find(':') {
                Some(i) => (Some(u[..i].to_owned()), Some(u[i + 1..].to_owned())),
                None => (Some(u.to_owned()), None),
            },
        };
        let (host, port_text) = if let Some(stripped) = hostport.strip_prefix('[') {
            let end = stripped
                .find(']')
                .ok_or_else(|| UrlError::UnterminatedIpv6(input.to_owned()))?;
            let host = &hostport[..end + 2];
            let after = &stripped[end + 1..];
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => {
                    return Err(UrlError::InvalidPort {
                        port: after.to_owned(),
                        url: input.to_owned(),
                    })
                }
            }
        } else {
            match hostport.rfind(':') {
                Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
                None => (hostport, None),
            }
        };
        let port = match port_text {
            None => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| UrlError::InvalidPort {
                port: p.to_owned(),
                url: input.to_owned(),
            })?),
        };
        let params = query.map(|q| {
            q.split('&')
                .map(|seg| match seg.find('=') {
                    Some(i) => Param {
                        key: seg[..i].to_owned(),
                        value: Some(seg[i + 1..].to_owned()),
                    },
                    None => Param {
                        key: seg.to_owned(),
                        value: None,
                    },
                })
                .collect()
        });
        if protocol.is_empty()
            && userinfo.is_none()
            && host.is_empty()
            && port.is_none()
            && path.is_empty()
            && params.is_none()
        {
            // Nothing but separators ("/"): there is no URL here.
            return Err(UrlError::Empty);
        }
        Ok(Url {
            protocol,
            username,
            password,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            params,
        })
    }

    /// Decodes a registry node name (`URL.encode(url)`) and parses it.
    pub fn from_encoded(encoded: &str) -> Result<Url, UrlError> {
        Url::parse(&decode(encoded)?)
    }

    /// The encoded form used as a registry node name.
    pub fn to_encoded(&self) -> String {
        encode(&self.to_string())
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

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.protocol.is_empty() {
            write!(f, "{}://", self.protocol)?;
        }
        if let Some(u) = &self.username {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        if let Some(params) = &self.params {
            f.write_str("?")?;
            for (i, p) in params.iter().enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                f.write_str(&p.key)?;
                if let Some(v) = &p.value {
                    write!(f, "={v}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for Url {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Url, UrlError> {
        Url::parse(s)
    }
}

impl serde::Serialize for Url {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Url {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Java `URLEncoder.encode(s, "UTF-8")`: `A-Z a-z 0-9 . - * _` kept, space as `+`, every
/// other byte of the UTF-8 form as `%XX` (upper case).
pub fn encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
    }
    out
}

/// Java `URLDecoder.decode(s, "UTF-8")`: `+` is a space, `%XX` a byte; a broken escape or
/// bytes that are not UTF-8 are an error.
pub fn decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        return Err(UrlError::InvalidEscape {
                            position: i,
                            input: s.to_owned(),
                        })
                    }
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PROVIDER_NODE: &str = "jsonrpc%3A%2F%2F116.211.15.192%3A30880%2Fim.youni.iccs.status.api.StatusUpdateService2%3Fanyhost%3Dtrue%26application%3Dstatus-dubbo-p%26default.threads%3D100%26dubbo%3D2.5.3%26interface%3Dim.youni.iccs.status.api.StatusUpdateService%26methods%3Dlogout%2CupdateLocale%2Cheartbeat%2CclearStatus%2Clogin0%2Clogin%26pid%3D10324%26revision%3D0.0.5%26server%3Djetty%26side%3Dprovider%26timestamp%3D1470730434200";
    const CONSUMER_NODE: &str = "jsonrpc%3A%2F%2F10.45.2.39%2Fim.youni.iccs.status.api.StatusUpdateService%3Fapplication%3DPalmChat%26category%3Dconsumer%26dubbo%3Ddubbo-consumer-golang-0.0.1%26group%3D%26interface%3Dim.youni.iccs.status.api.StatusUpdateService%26ip%3D10.45.2.39%26module%3Ddubbogo%2Bclient%26org%3Dzenmen.com%26owner%3DZX%26pid%3D6560%26revision%3D%26side%3Dconsumer%26timeout%3D120%26timestamp%3D1470723624%26";

    #[test]
    fn java_provider_node_decodes_and_reencodes() {
        let url = Url::from_encoded(PROVIDER_NODE).unwrap();
        assert_eq!(url.protocol(), "jsonrpc");
        assert_eq!(url.host(), "116.211.15.192");
        assert_eq!(url.port(), Some(30880));
        assert_eq!(url.path(), "im.youni.iccs.status.api.StatusUpdateService2");
        assert_eq!(
            url.interface(),
            "im.youni.iccs.status.api.StatusUpdateService"
        );
        assert_eq!(url.param("side"), Some("provider"));
        assert_eq!(
            url.param("methods"),
            Some("logout,updateLocale,heartbeat,clearStatus,login0,login")
        );
        assert_eq!(url.param_or("default.threads", 0u32), 100);
        assert_eq!(url.param_or("timestamp", 0u64), 1_470_730_434_200);
        assert_eq!(url.category(), "providers");
        assert_eq!(
            url.service_key(),
            "im.youni.iccs.status.api.StatusUpdateService"
        );
        assert_eq!(url.to_encoded(), PROVIDER_NODE);
    }

    #[test]
    fn go_consumer_node_decodes_and_reencodes() {
        let url = Url::from_encoded(CONSUMER_NODE).unwrap();
        assert_eq!(url.protocol(), "jsonrpc");
        assert_eq!(url.host(), "10.45.2.39");
        assert_eq!(url.port(), None);
        assert_eq!(url.param("category"), Some("consumer"));
        assert_eq!(url.param("group"), Some(""));
        assert_eq!(url.group(), None);
        assert_eq!(url.param("module"), Some("dubbogo+client"));
        assert_eq!(url.param_or("timeout", 0u32), 120);
        assert_eq!(url.param("revision"), Some(""));
        assert!(url.to_string().ends_with("timestamp=1470723624&"));
        assert_eq!(url.to_encoded(), CONSUMER_NODE);
    }

    #[test]
    fn consumer_matches_provider_of_seed() {
        let provider = Url::from_encoded(PROVIDER_NODE).unwrap();
        let consumer: Url = "consumer://10.45.2.39/im.youni.iccs.status.api.StatusUpdateService?interface=im.youni.iccs.status.api.StatusUpdateService&group=".parse().unwrap();
        assert!(consumer.matches_provider(&provider));
        let versioned = consumer.clone().with_param("version", "1.0.0");
        assert!(!versioned.matches_provider(&provider));
        let any = consumer.clone().with_param("version", "*");
        assert!(any.matches_provider(&provider));
    }

    #[test]
    fn matching_rules() {
        let p = |q: &str| {
            Url::parse(&format!(
                "dubbo://1.2.3.4:20880/com.Foo?interface=com.Foo&{q}"
            ))
            .unwrap()
        };
        let c = |q: &str| {
            Url::parse(&format!("consumer://1.2.3.4/com.Foo?interface=com.Foo&{q}")).unwrap()
        };
        assert!(c("group=a,b").matches_provider(&p("group=b")));
        assert!(!c("group=a,b").matches_provider(&p("group=c")));
        assert!(c("group=*").matches_provider(&p("group=c")));
        assert!(!c("").matches_provider(&p("group=c")));
        assert!(!c("").matches_provider(&p("enabled=false")));
        assert!(c("enabled=*").matches_provider(&p("enabled=false")));
        assert!(!c("").matches_provider(&p("category=routers")));
        assert!(c("category=providers,routers").matches_provider(&p("category=routers")));
        assert!(c("category=*,-routers").matches_provider(&p("category=configurators")));
        assert!(c("category=*").matches_provider(&p("category=configurators")));
        assert!(!c("category=providers,-routers").matches_provider(&p("category=routers")));
        assert!(!c("classifier=x").matches_provider(&p("classifier=y")));
        assert!(c("classifier=*").matches_provider(&p("classifier=y")));
        let other = Url::parse("dubbo://1.2.3.4:20880/com.Bar?interface=com.Bar").unwrap();
        assert!(!c("").matches_provider(&other));
        let star = Url::parse("consumer://1.2.3.4/*?interface=*").unwrap();
        assert!(star.matches_provider(&other));
    }

    #[test]
    fn service_keys_and_typed_params() {
        let u: Url = "dubbo://h:1/com.Foo?group=g&version=1.0&timeout=250&sayHello.timeout=90&methods.echo.retries=5"
            .parse()
            .unwrap();
        assert_eq!(u.service_key(), "g/com.Foo:1.0");
        assert_eq!(u.method_param_or("sayHello", "timeout", 1000u64), 90);
        assert_eq!(u.method_param_or("echo", "timeout", 1000u64), 250);
        assert_eq!(u.method_param_or("echo", "retries", 2u32), 5);
        assert_eq!(u.param_or("weight", 100u32), 100);
        assert_eq!(u.param_or("timeout", 0u32), 250);
        assert!(!u.param_bool("anyhost", false));
    }

    #[test]
    fn credentials_ipv6_and_setters() {
        let u: Url = "zookeeper://user:pa%ss@[::1]:2181?backup=127.0.0.1:2182,127.0.0.1:2183"
            .parse()
            .unwrap();
        assert_eq!(u.username(), Some("user"));
        assert_eq!(u.password(), Some("pa%ss"));
        assert_eq!(u.host(), "[::1]");
        assert_eq!(u.port(), Some(2181));
        assert_eq!(u.param("backup"), Some("127.0.0.1:2182,127.0.0.1:2183"));
        let mut v = u.clone();
        v.set_param("backup", "x");
        v.set_param("group", "dubbo");
        assert_eq!(
            v.to_string(),
            "zookeeper://user:pa%ss@[::1]:2181?backup=x&group=dubbo"
        );
        v.remove_param("backup");
        assert_eq!(v.param("backup"), None);
        let bare: Url = "127.0.0.1:2181".parse().unwrap();
        assert_eq!(bare.protocol(), "");
        assert_eq!(bare.address(), "127.0.0.1:2181");
        assert_eq!(bare.to_string(), "127.0.0.1:2181");
    }

    #[test]
    fn malformed_input_names_the_problem() {
        assert_eq!(Url::parse("  "), Err(UrlError::Empty));
        let e = Url::parse("dubbo://h:99999/x").unwrap_err();
        assert!(e.to_string().contains("invalid port \"99999\""), "{e}");
        let e = Url::parse("dubbo://h:abc/x").unwrap_err();
        assert!(matches!(e, UrlError::InvalidPort { .. }));
        let e = Url::parse("du bbo://h/x").unwrap_err();
        assert!(e.to_string().contains("invalid protocol"), "{e}");
        assert!(matches!(
            Url::parse("dubbo://[::1/x"),
            Err(UrlError::UnterminatedIpv6(_))
        ));
        let e = decode("abc%4").unwrap_err();
        assert!(e.to_string().contains("byte 3"), "{e}");
        assert!(matches!(decode("%zz"), Err(UrlError::InvalidEscape { .. })));
        assert_eq!(decode("%ff%fe"), Err(UrlError::InvalidUtf8));
    }

    #[test]
    fn java_urlencoder_compatibility() {
        assert_eq!(encode("a b+c*d~e/f:g"), "a+b%2Bc*d%7Ee%2Ff%3Ag");
        assert_eq!(encode("中"), "%E4%B8%AD");
        assert_eq!(decode("a+b%2Bc*d%7Ee%2ff").unwrap(), "a b+c*d~e/f");
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(s in "\\PC*") {
            prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
        }

        #[test]
        fn decode_never_panics(s in "\\PC*") {
            let _ = decode(&s);
        }

        #[test]
        fn parse_never_panics_and_formats_back(s in "\\PC*") {
            if let Ok(u) = Url::parse(&s) {
                // What parses formats to something that parses to the same URL.
                let again = Url::parse(&u.to_string()).unwrap();
                prop_assert_eq!(again, u);
            }
        }

        #[test]
        fn structured_urls_round_trip_byte_identical(
            proto in "[a-z][a-z0-9]{0,8}",
            host in "[a-z0-9.-]{1,20}",
            port in proptest::option::of(any::<u16>()),
            path in "[A-Za-z0-9._/-]{0,30}",
            params in proptest::collection::vec(("[A-Za-z0-9._-]{0,10}", proptest::option::of("[^&?#\\s]{0,12}")), 0..8),
        ) {
            let mut s = format!("{proto}://{host}");
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            let path = path.trim_start_matches('/');
            if !path.is_empty() { s.push('/'); s.push_str(path); }
            if !params.is_empty() {
                s.push('?');
                let segs: Vec<String> = params.iter().map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                }).collect();
                s.push_str(&segs.join("&"));
            }
            let u = Url::parse(&s).unwrap();
            prop_assert_eq!(u.to_string(), s.clone());
            prop_assert_eq!(Url::from_encoded(&u.to_encoded()).unwrap(), u);
        }
    }
}

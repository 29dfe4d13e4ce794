//! Checking a configuration beyond its types: required keys, ids that refer to other
//! sections, URLs and addresses ([`Config::validate`], part of every load), and the names of
//! extensions against an extension table ([`Config::check_extensions`], at the start of an
//! application, with the table it was given).

use crate::cluster::Extensions;
use crate::SetupError;

use super::{Config, ConfigError};

impl Config {
    /// Checks what the types cannot: required keys, references between sections, URLs and
    /// addresses. Names of extensions are checked by [`check_extensions`](Self::check_extensions).
    pub(super) fn validate(&self, source: &str) -> Result<(), ConfigError> {
        let err = |key: String, msg: String| Err(ConfigError::at_key(source, key, msg));
        for (id, r) in &self.registries {
            let key = format!("registries.{id}.address");
            if let Err(e) = r.address.parse::<crate::Url>() {
                return err(key, format!("not a URL: {e}"));
            }
        }
        for (id, p) in &self.protocols {
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
        }
        if self.metrics.enabled && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return err(
                "metrics.listen".into(),
                format!("`{}` is not an address (ip:port)", self.metrics.listen),
            );
        }
        Ok(())
    }

    /// Checks every name the configuration gives an extension against `extensions`:
    /// protocol names (`protocols.<id>.name`, default the id), registry schemes
    /// (`registries.<id>.address`), the schemes of direct reference URLs, load balancers
    /// and cluster strategies (`consumer.references.<id>.loadbalance`, `.cluster`,
    /// `.methods.<m>.loadbalance`). A name the table knows is accepted, so a plug-in
    /// added to the table is as good as a built-in. The error names the key and the names
    /// the table knows.
    ///
    /// [`ApplicationBuilder::start`](crate::app::ApplicationBuilder::start) makes this
    /// check with the builder's table before anything starts.
    ///
    /// ```
    /// use rdubbo::app::{Config, Format};
    ///
    /// let config = Config::from_str("[protocols.grpc]\n", Format::Toml, "app.toml").unwrap();
    /// let e = config.check_extensions(&rdubbo::extension::builtin(), "app.toml").unwrap_err();
    /// assert_eq!(e.key.as_deref(), Some("protocols.grpc.name"));
    /// assert!(e.message.starts_with("unknown protocol `grpc` (known: "), "{e}");
    /// ```
    pub fn check_extensions(
        &self,
        extensions: &Extensions,
        source: &str,
    ) -> Result<(), ConfigError> {
        let at = |key: String| move |e: SetupError| ConfigError::at_key(source, key, unknown(e));
        for (id, p) in &self.protocols {
            let name = p.name.as_deref().unwrap_or(id);
            extensions
                .check_protocol(name)
                .map_err(at(format!("protocols.{id}.name")))?;
        }
        for (id, r) in &self.registries {
            if let Ok(url) = r.address.parse::<crate::Url>() {
                extensions
                    .check_registry(url.protocol())
                    .map_err(at(format!("registries.{id}.address")))?;
            }
        }
        for (id, r) in &self.consumer.references {
            let key = |k: &str| format!("consumer.references.{id}.{k}");
            if let Some(Ok(url)) = r.url.as_deref().map(str::parse::<crate::Url>) {
                extensions
                    .check_protocol(url.protocol())
                    .map_err(at(key("url")))?;
            }
            if let Some(lb) = &r.loadbalance {
                extensions
                    .check_balancer(lb)
                    .map_err(at(key("loadbalance")))?;
            }
            if let Some(c) = &r.cluster {
                extensions.check_cluster(c).map_err(at(key("cluster")))?;
            }
            for (m, mc) in &r.methods {
                if let Some(lb) = &mc.loadbalance {
                    extensions
                        .check_balancer(lb)
                        .map_err(at(key(&format!("methods.{m}.loadbalance"))))?;
                }
            }
        }
        Ok(())
    }
}

/// The message of an unknown name: `unknown protocol `grpc` (known: dubbo, jsonrpc)`;
/// registries keep their word `unsupported registry … (supported: …)`.
fn unknown(e: SetupError) -> String {
    match e {
        SetupError::Unknown {
            kind: "registry",
            name,
            known,
        } => format!("unsupported registry `{name}` (supported: {known})"),
        other => other.to_string(),
    }
}

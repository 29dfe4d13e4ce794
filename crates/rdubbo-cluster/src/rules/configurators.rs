//! Configurator documents (`<app>.configurators`, `<service>.configurators`) → the
//! `override://` URLs Java's `ConfigParser` makes of them, which the
//! [`configurator`](crate::configurator) machinery applies.
//!
//! ```yaml
//! configVersion: v2.7        # or v3.0 (adds `match`)
//! scope: service             # or application
//! key: group/org.demo.Api:1.0.0
//! enabled: true
//! configs:
//! - side: consumer           # consumer | provider; a rule without side applies nowhere
//!   addresses: [0.0.0.0]     # consumer hosts (side consumer) or provider addresses
//!   providerAddresses: ['10.0.0.1:20880']
//!   applications: [web]      # service scope (app scope: `services`)
//!   parameters: {timeout: 500, weight: 200, disabled: true}
//! ```
//!
//! A JSON list of `override://` URL strings is accepted too, as in Java.

use std::sync::Arc;

use rdubbo_core::Url;
use serde_yaml_ng::Value;

use super::matching::ConditionMatch;
use super::yaml::{field_list, field_str, load_mapping, scalar, RuleError};

/// One configurator made from a YAML rule: the `override://` URL Java's `ConfigParser`
/// produces, and the v3.0 `match` condition Java carries beside it (as a URL attribute).
#[derive(Debug, Clone)]
pub struct ConfiguratorRule {
    /// The override URL (`configVersion` set: Java's 2.7+ matching applies).
    pub url: Url,
    /// The item's `match` (v3.0), checked with the URL's own conditions.
    pub matcher: Option<Arc<ConditionMatch>>,
}

impl ConfiguratorRule {
    /// A rule from an `override://` URL alone.
    pub fn from_url(url: Url) -> ConfiguratorRule {
        ConfiguratorRule { url, matcher: None }
    }
}

/// Parses a configurator document as Java's `ConfigParser.parseConfigurators` does.
///
/// Errors (the rule must then be ignored, keeping the previous one): not YAML, not a
/// mapping, an item without `parameters`, an empty service name, malformed `match`.
pub fn parse_configurators(text: &str) -> Result<Vec<ConfiguratorRule>, RuleError> {
    // Java first tries a JSON array of override URL strings.
    if let Ok(Value::Sequence(items)) = serde_yaml_ng::from_str::<Value>(text) {
        if !items.is_empty() && items.iter().all(Value::is_string) {
            return items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    s.trim()
                        .parse::<Url>()
                        .map(ConfiguratorRule::from_url)
                        .map_err(|e| RuleError::new(format!("bad override URL {s:?}: {e}")))
                })
                .collect();
        }
    }
    let doc = load_mapping(text)?;
    let version = field_str(&doc, "configVersion").unwrap_or_else(|| "null".into());
    let scope = field_str(&doc, "scope");
    let key = field_str(&doc, "key");
    let enabled = match doc.get("enabled").filter(|v| !v.is_null()) {
        None => "true".to_owned(),
        Some(v) => scalar(v).unwrap_or_else(|| "false".into()),
    };
    let items = match doc.get("configs").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.clone(),
        Some(_) => return Err(RuleError::new("`configs` must be a list")),
    };
    let mut out = Vec::new();
    for item in &items {
        if !item.is_mapping() {
            return Err(RuleError::new("each of `configs` must be a mapping"));
        }
        let item = Item::read(item, &enabled)?;
        if scope.as_deref() == Some("application") {
            app_item(&item, key.as_deref(), &version, &mut out)?;
        } else {
            service_item(&item, key.as_deref(), &version, &mut out)?;
        }
    }
    Ok(out)
}

/// One element of `configs`.
struct Item {
    addresses: Vec<String>,
    provider_addresses: Vec<String>,
    services: Vec<String>,
    applications: Vec<String>,
    side: Option<String>,
    parameters: Vec<(String, String)>,
    /// `enabled=` of the URLs: the document's for `general` items, the item's otherwise.
    enabled: String,
    matcher: Option<Arc<ConditionMatch>>,
}

impl Item {
    fn read(v: &Value, doc_enabled: &str) -> Result<Item, RuleError> {
        let mut addresses = field_list(v, "addresses")?.unwrap_or_default();
        if addresses.is_empty() {
            addresses.push("0.0.0.0".into());
        }
        let parameters: Vec<(String, String)> = match v.get("parameters") {
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, v)| {
                    (
                        scalar(k).unwrap_or_default(),
                        // Java appends the value object: null prints `null`.
                        scalar(v).unwrap_or_else(|| "null".into()),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        if parameters.is_empty() {
            return Err(RuleError::new(
                "invalid configurator rule: specify at least one parameter to change",
            ));
        }
        let kind = field_str(v, "type");
        let enabled = if kind.as_deref().is_none_or(|t| t == "general") {
            doc_enabled.to_owned()
        } else {
            field_str(v, "enabled").unwrap_or_else(|| "null".into())
        };
        let matcher = match v.get("match").filter(|m| !m.is_null()) {
            Some(m) => Some(Arc::new(ConditionMatch::from_yaml(m)?)),
            None => None,
        };
        Ok(Item {
            addresses,
            provider_addresses: field_list(v, "providerAddresses")?.unwrap_or_default(),
            services: field_list(v, "services")?.unwrap_or_default(),
            applications: field_list(v, "applications")?.unwrap_or_default(),
            side: field_str(v, "side"),
            parameters,
            enabled,
            matcher,
        })
    }

    /// `category=dynamicconfigurators[&side=S]&k=v…[&providerAddresses=…]` (Java's
    /// `toParameterString`), applied to `url` in order.
    fn parameter_string(&self, url: &mut Url) {
        url.set_param("category", "dynamicconfigurators");
        if let Some(side) = &self.side {
            url.set_param("side", side.clone());
        }
        for (k, v) in &self.parameters {
            url.set_param(k, v.clone());
        }
        if !self.provider_addresses.is_empty() {
            url.set_param("providerAddresses", self.provider_addresses.join(","));
        } else if self.side.as_deref() == Some("provider") {
            url.set_param("providerAddresses", self.addresses.join(","));
        }
    }
}

/// `override://<address>/<interface>?[group=G&][version=V&]`: Java's `appendService` on
/// a `[group/]interface[:version]` key.
fn base_url(address: &str, service: Option<&str>) -> Result<Url, RuleError> {
    let service = service
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RuleError::new("service field in configuration is null"))?;
    let (host, port) = match address.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| RuleError::new(format!("bad address {address:?}")))?,
            ),
        ),
        _ => (address, None),
    };
    let mut interface = service;
    let mut group = None;
    if let Some(i) = interface.find('/').filter(|i| *i > 0) {
        group = Some(&interface[..i]);
        interface = &interface[i + 1..];
    }
    let mut version = None;
    if let Some(j) = interface.find(':').filter(|j| *j > 0) {
        version = Some(&interface[j + 1..]);
        interface = &interface[..j];
    }
    let mut url = Url::new("override", host, port.filter(|p| *p != 0), interface);
    if let Some(g) = group {
        url.set_param("group", g);
    }
    if let Some(v) = version {
        url.set_param("version", v);
    }
    Ok(url)
}

fn service_item(
    item: &Item,
    key: Option<&str>,
    version: &str,
    out: &mut Vec<ConfiguratorRule>,
) -> Result<(), RuleError> {
    for address in &item.addresses {
        let mut url = base_url(address, key)?;
        item.parameter_string(&mut url);
        url.set_param("enabled", item.enabled.clone());
        url.set_param("configVersion", version);
        if item.applications.is_empty() {
            out.push(ConfiguratorRule {
                url,
                matcher: item.matcher.clone(),
            });
        } else {
            for app in &item.applications {
                out.push(ConfiguratorRule {
                    url: url.clone().with_param("application", app.clone()),
                    matcher: item.matcher.clone(),
                });
            }
        }
    }
    Ok(())
}

fn app_item(
    item: &Item,
    key: Option<&str>,
    version: &str,
    out: &mut Vec<ConfiguratorRule>,
) -> Result<(), RuleError> {
    let services: Vec<&str> = if item.services.is_empty() {
        vec!["*"]
    } else {
        item.services.iter().map(String::as_str).collect()
    };
    for address in &item.addresses {
        for service in &services {
            let mut url = base_url(address, Some(service))?;
            item.parameter_string(&mut url);
            // Java appends `application=null` when the rule has no key.
            url.set_param("application", key.unwrap_or("null"));
            url.set_param("enabled", item.enabled.clone());
            // A second `category`: Java's URL keeps this later value.
            url.set_param("category", "appdynamicconfigurators");
            url.set_param("configVersion", version);
            out.push(ConfiguratorRule {
                url,
                matcher: item.matcher.clone(),
            });
        }
    }
    Ok(())
}

//! Governance rules from a config center (Dubbo's dynamic configuration), read exactly
//! as Java Dubbo 3.3 reads them:
//!
//! - [`configurators`]: `<app>.configurators` and `<service>.configurators` documents →
//!   the `override://` URLs of Java's `ConfigParser` ([`ConfiguratorRule`]), applied by
//!   [`configurator`](crate::configurator) with Java's 2.7+ matching;
//! - [`conditions`]: `<app>.condition-router` and `<service>.condition-router` (v3.0
//!   `"when => then"` strings, v3.1 weighted destinations) → [`ConditionRule`]s;
//! - [`tags`]: `<provider-app>.tag-router` → [`TagRule`] (tags assigned by address or
//!   URL parameters).
//!
//! A [`Directory`](crate::Directory) follows its documents in a config center
//! ([`Directory::watch_rules`](crate::Directory::watch_rules)) and takes them as they
//! change ([`Directory::update_rule_document`](crate::Directory::update_rule_document)); a
//! malformed document is logged with its key and ignored, the previous rule staying in
//! force (as Java does); a deleted document removes its rules.
//!
//! ```
//! use rdubbo_cluster::rules::{parse_configurators, parse_tag_rule};
//!
//! // What dubbo-admin writes for "weight 200 on this provider", seen by consumers.
//! let doc = r#"
//! configVersion: v2.7
//! scope: service
//! key: org.demo.Api
//! configs:
//! - side: consumer
//!   addresses: [0.0.0.0]
//!   providerAddresses: ['10.0.0.1:20880']
//!   parameters: {weight: 200}
//! "#;
//! let rules = parse_configurators(doc).unwrap();
//! assert_eq!(rules[0].url.param("weight"), Some("200"));
//! assert_eq!(rules[0].url.param("providerAddresses"), Some("10.0.0.1:20880"));
//!
//! let tags = parse_tag_rule("key: shop\ntags:\n- name: gray\n  addresses: ['10.0.0.2:1']").unwrap();
//! assert!(tags.is_active());
//! assert!(parse_tag_rule("tags: [").is_err());
//! ```
//!
//! [`ConditionRule`]: crate::router::ConditionRule

pub mod conditions;
pub mod configurators;
pub mod matching;
pub mod tags;
pub(crate) mod watch;
mod yaml;

pub use conditions::{parse_condition_router, ConditionRouterRule};
pub use configurators::{parse_configurators, ConfiguratorRule};
pub use tags::{parse_tag_rule, Tag, TagRule};
pub use yaml::RuleError;

use rdubbo_core::Url;

/// Which document a rule comes from (and so where it applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `<consumer or provider application>.configurators`.
    AppConfigurators,
    /// `<interface>:<version>:<group>.configurators`.
    ServiceConfigurators,
    /// `<interface>:<version>:<group>.condition-router` (consumer).
    ServiceConditions,
    /// `<provider application>.condition-router` (consumer; Java's
    /// `ProviderAppStateRouter`).
    ProviderAppConditions,
    /// `<consumer application>.condition-router` (consumer).
    AppConditions,
    /// `<provider application>.tag-router` (consumer).
    Tags,
}

impl RuleKind {
    /// The document key of this kind for `name` (an application, or a service rule key
    /// from [`service_rule_key`]).
    pub fn key(self, name: &str) -> String {
        use rdubbo_core::config_center::{
            CONDITION_ROUTER_SUFFIX, CONFIGURATORS_SUFFIX, TAG_ROUTER_SUFFIX,
        };
        let suffix = match self {
            RuleKind::AppConfigurators | RuleKind::ServiceConfigurators => CONFIGURATORS_SUFFIX,
            RuleKind::ServiceConditions
            | RuleKind::ProviderAppConditions
            | RuleKind::AppConditions => CONDITION_ROUTER_SUFFIX,
            RuleKind::Tags => TAG_ROUTER_SUFFIX,
        };
        format!("{name}{suffix}")
    }
}

/// The name Java gives a service's rule documents (`URL.getColonSeparatedKey`):
/// `<interface>:<version>:<group>`, empty parts kept (`org.demo.Api::`,
/// `org.demo.Api:1.0.0:`, `org.demo.Api:1.0.0:g1`).
pub fn service_rule_key(url: &Url) -> String {
    format!(
        "{}:{}:{}",
        url.interface(),
        url.version().unwrap_or_default(),
        url.group().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests;

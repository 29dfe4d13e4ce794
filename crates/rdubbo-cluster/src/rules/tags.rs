//! Tag router documents (`<provider-app>.tag-router`), as Java 3.3's `TagRuleParser`
//! reads them: tags assigned to providers by address or by URL parameters.
//!
//! ```yaml
//! force: true
//! runtime: false
//! enabled: true
//! priority: 1
//! key: demo-provider
//! tags:
//! - name: tag1
//!   addresses: [30.5.120.16:20880]
//! - name: tag2
//!   match:
//!   - key: env
//!     value: {exact: gray}
//! ```

use rdubbo_core::Url;
use serde_yaml_ng::Value;

use super::matching::{ip_expression, ParamMatch};
use super::yaml::{field_bool, field_int, field_list, field_str, load_mapping, RuleError};

/// One tag of a tag rule.
#[derive(Debug, Clone)]
pub struct Tag {
    /// The tag (what calls carry in the `dubbo.tag` attachment).
    pub name: String,
    /// Provider addresses (`ip:port`, `ip`, `ip:*`, ranges, CIDR, `0.0.0.0:port`).
    pub addresses: Vec<String>,
    /// Parameter matches: a provider whose URL matches them all has the tag.
    pub matches: Vec<ParamMatch>,
}

impl Tag {
    /// Whether the rule lists addresses (or matches) for this tag.
    pub fn has_addresses(&self) -> bool {
        !self.addresses.is_empty()
    }

    /// Whether the provider `url` has this tag.
    pub fn contains(&self, url: &Url) -> bool {
        address_matches(&self.addresses, url)
            || (!self.matches.is_empty() && self.matches.iter().all(|m| m.is_match(url)))
    }
}

/// Java's `TagStateRouter.checkAddressMatch`: an IP expression on host and port, or
/// `0.0.0.0:<port>`.
pub(crate) fn address_matches(addresses: &[String], url: &Url) -> bool {
    let address = url.address();
    let any = url.port().map(|p| format!("0.0.0.0:{p}"));
    addresses
        .iter()
        .any(|a| ip_expression(a, &address) || any.as_deref() == Some(a.as_str()))
}

/// A parsed tag rule (Java's `TagRouterRule`).
#[derive(Debug, Clone)]
pub struct TagRule {
    /// `force`: a call whose tag names addresses that are all gone gets no provider.
    pub force: bool,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `runtime` (informative).
    pub runtime: bool,
    /// `priority` (informative).
    pub priority: i64,
    /// `key`: the provider application (informative: the document key decides).
    pub key: Option<String>,
    /// The tags.
    pub tags: Vec<Tag>,
}

impl TagRule {
    /// Whether the rule routes (Java: valid — it has tags — and enabled); otherwise calls
    /// are routed by the providers' own `dubbo.tag` only.
    pub fn is_active(&self) -> bool {
        self.enabled && !self.tags.is_empty()
    }
}

/// Parses a tag rule document. Errors (the previous rule is kept, as Java does): not
/// YAML, not a mapping, malformed `tags`.
pub fn parse_tag_rule(text: &str) -> Result<TagRule, RuleError> {
    let doc = load_mapping(text)?;
    let mut tags = Vec::new();
    match doc.get("tags").filter(|t| !t.is_null()) {
        None => {}
        Some(Value::Sequence(list)) => {
            for t in list {
                if !t.is_mapping() {
                    return Err(RuleError::new("each of `tags` must be a mapping"));
                }
                let name =
                    field_str(t, "name").ok_or_else(|| RuleError::new("a tag needs a `name`"))?;
                let matches = match t.get("match").filter(|m| !m.is_null()) {
                    None => Vec::new(),
                    Some(Value::Sequence(ms)) => ms
                        .iter()
                        .map(ParamMatch::from_yaml)
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(RuleError::new(format!(
                            "`match` of tag {name} must be a list"
                        )))
                    }
                };
                tags.push(Tag {
                    addresses: field_list(t, "addresses")?.unwrap_or_default(),
                    name,
                    matches,
                });
            }
        }
        Some(_) => return Err(RuleError::new("`tags` must be a list")),
    }
    Ok(TagRule {
        force: field_bool(&doc, "force", false),
        enabled: field_bool(&doc, "enabled", true),
        runtime: field_bool(&doc, "runtime", false),
        priority: field_int(&doc, "priority", 0)?,
        key: field_str(&doc, "key"),
        tags,
    })
}

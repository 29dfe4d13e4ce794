//! The match expressions of Dubbo's YAML rules, with Java's semantics
//! (`StringMatch`, `ListStringMatch`, `AddressMatch`, `ParamMatch`, `ConditionMatch`):
//! v3.0 configurators' `match` and 3.3 tag rules' `match`.

use std::net::IpAddr;

use rdubbo_core::Url;
use serde_yaml_ng::Value;

use super::yaml::{field_str, RuleError};

/// Java's `StringMatch`: the first of `exact`, `prefix`, `regex`, `wildcard`, `empty`,
/// `noempty` that is set decides.
#[derive(Debug, Clone, Default)]
pub struct StringMatch {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<regex::Regex>,
    wildcard: Option<String>,
    empty: bool,
    noempty: bool,
}

impl StringMatch {
    pub(crate) fn from_yaml(v: &Value) -> Result<StringMatch, RuleError> {
        if !v.is_mapping() {
            return Err(RuleError::new(format!(
                "a string match must be a mapping, not {v:?}"
            )));
        }
        let regex = match field_str(v, "regex") {
            Some(r) => Some(
                // Java's `String.matches`: the whole input.
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| RuleError::new(format!("bad regex {r:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(StringMatch {
            exact: field_str(v, "exact"),
            prefix: field_str(v, "prefix"),
            regex,
            wildcard: field_str(v, "wildcard"),
            empty: v.get("empty").is_some_and(|e| !e.is_null()),
            noempty: v.get("noempty").is_some_and(|e| !e.is_null()),
        })
    }

    /// Whether `input` matches.
    pub fn is_match(&self, input: Option<&str>) -> bool {
        if let (Some(exact), Some(input)) = (&self.exact, input) {
            input == exact
        } else if let (Some(prefix), Some(input)) = (&self.prefix, input) {
            input.starts_with(prefix.as_str())
        } else if let (Some(regex), Some(input)) = (&self.regex, input) {
            regex.is_match(input)
        } else if let (Some(wildcard), Some(input)) = (&self.wildcard, input) {
            // Java supports only "*".
            input == wildcard || wildcard == "*"
        } else if self.empty {
            input.is_none_or(str::is_empty)
        } else if self.noempty {
            input.is_some_and(|i| !i.is_empty())
        } else {
            false
        }
    }
}

/// Java's `ListStringMatch`: `oneof` a list of [`StringMatch`]es.
#[derive(Debug, Clone, Default)]
pub struct ListStringMatch(Vec<StringMatch>);

impl ListStringMatch {
    fn from_yaml(v: &Value) -> Result<ListStringMatch, RuleError> {
        let mut out = Vec::new();
        if let Some(list) = v.get("oneof") {
            let list = list
                .as_sequence()
                .ok_or_else(|| RuleError::new("`oneof` must be a list"))?;
            for m in list {
                out.push(StringMatch::from_yaml(m)?);
            }
        }
        Ok(ListStringMatch(out))
    }

    /// Whether any of the matches holds.
    pub fn is_match(&self, input: Option<&str>) -> bool {
        self.0.iter().any(|m| m.is_match(input))
    }
}

/// Java's `AddressMatch`: `cird` (CIDR or IP expression), `wildcard` (glob), `exact`.
#[derive(Debug, Clone, Default)]
pub struct AddressMatch {
    wildcard: Option<String>,
    cird: Option<String>,
    exact: Option<String>,
}

impl AddressMatch {
    fn from_yaml(v: &Value) -> Result<AddressMatch, RuleError> {
        if !v.is_mapping() {
            return Err(RuleError::new(format!(
                "an address match must be a mapping, not {v:?}"
            )));
        }
        Ok(AddressMatch {
            wildcard: field_str(v, "wildcard"),
            cird: field_str(v, "cird"),
            exact: field_str(v, "exact"),
        })
    }

    /// Whether `input` (a host, or `host:port`) matches.
    pub fn is_match(&self, input: Option<&str>) -> bool {
        let Some(input) = input else {
            return false;
        };
        if let Some(cird) = &self.cird {
            return input == cird || ip_expression(cird, input);
        }
        if let Some(wildcard) = &self.wildcard {
            if wildcard == "0.0.0.0" || wildcard == "*" {
                return true;
            }
            return glob_pattern(wildcard, input);
        }
        if let Some(exact) = &self.exact {
            return input == exact;
        }
        false
    }
}

/// Java's `ParamMatch` of configurators and tag rules: the parameter `key` of the URL
/// exists and matches `value`.
#[derive(Debug, Clone)]
pub struct ParamMatch {
    key: String,
    value: StringMatch,
}

impl ParamMatch {
    pub(crate) fn from_yaml(v: &Value) -> Result<ParamMatch, RuleError> {
        let key =
            field_str(v, "key").ok_or_else(|| RuleError::new("a param match needs a `key`"))?;
        let value = v
            .get("value")
            .ok_or_else(|| RuleError::new(format!("the param match of `{key}` needs a `value`")))?;
        Ok(ParamMatch {
            key,
            value: StringMatch::from_yaml(value)?,
        })
    }

    /// Whether `url` has the parameter and it matches.
    pub fn is_match(&self, url: &Url) -> bool {
        url.param(&self.key)
            .is_some_and(|v| self.value.is_match(Some(v)))
    }
}

/// Java's `ConditionMatch` (a v3.0 configurator item's `match`).
#[derive(Debug, Clone, Default)]
pub struct ConditionMatch {
    address: Option<AddressMatch>,
    provider_address: Option<AddressMatch>,
    service: Option<ListStringMatch>,
    app: Option<ListStringMatch>,
    param: Option<Vec<ParamMatch>>,
}

impl ConditionMatch {
    pub(crate) fn from_yaml(v: &Value) -> Result<ConditionMatch, RuleError> {
        if !v.is_mapping() {
            return Err(RuleError::new("`match` must be a mapping"));
        }
        let present = |k: &str| v.get(k).filter(|x| !x.is_null());
        let param = match present("param") {
            Some(list) => Some(
                list.as_sequence()
                    .ok_or_else(|| RuleError::new("`match.param` must be a list"))?
                    .iter()
                    .map(ParamMatch::from_yaml)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(ConditionMatch {
            address: present("address")
                .map(AddressMatch::from_yaml)
                .transpose()?,
            provider_address: present("providerAddress")
                .map(AddressMatch::from_yaml)
                .transpose()?,
            service: present("service")
                .map(ListStringMatch::from_yaml)
                .transpose()?,
            app: present("app").map(ListStringMatch::from_yaml).transpose()?,
            param,
        })
    }

    /// Whether the rule applies: `host` is the address the rule's side is judged by (the
    /// consumer's host on a consumer, the provider's on a provider), `url` the provider URL
    /// and `application` the application the rule is judged by.
    pub fn is_match(&self, host: &str, url: &Url, application: Option<&str>) -> bool {
        if self
            .address
            .as_ref()
            .is_some_and(|a| !a.is_match(Some(host)))
        {
            return false;
        }
        if self
            .provider_address
            .as_ref()
            .is_some_and(|a| !a.is_match(Some(&url.address())))
        {
            return false;
        }
        if self
            .service
            .as_ref()
            .is_some_and(|s| !s.is_match(Some(&url.service_key())))
        {
            return false;
        }
        if self.app.as_ref().is_some_and(|s| !s.is_match(application)) {
            return false;
        }
        if let Some(params) = &self.param {
            if !params.iter().all(|p| p.is_match(url)) {
                return false;
            }
        }
        true
    }
}

/// Java's `UrlUtils.isMatchGlobPattern` without `$` references: `*` alone matches
/// anything; one `*` at the start, the end or inside.
pub(crate) fn glob_pattern(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.rfind('*') {
        None => pattern == value,
        Some(i) if i == pattern.len() - 1 => value.starts_with(&pattern[..i]),
        Some(0) => value.ends_with(&pattern[1..]),
        Some(i) => {
            let (prefix, suffix) = (&pattern[..i], &pattern[i + 1..]);
            value.len() >= prefix.len() + suffix.len()
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
    }
}

/// Java's `NetUtils.matchIpExpression(pattern, address)`: a CIDR block (`10.0.0.0/8`), or
/// an IPv4 pattern whose parts may be `*` or ranges `a-b`, with an optional `:port`;
/// `address` is a host or `host:port`.
pub(crate) fn ip_expression(pattern: &str, address: &str) -> bool {
    let (host, port) = split_host_port(address);
    if let Some((net, bits)) = pattern.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        ) else {
            return false;
        };
        return match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        };
    }
    let (pattern_host, pattern_port) = split_host_port(pattern);
    if let Some(p) = pattern_port {
        if port != Some(p) {
            return false;
        }
    }
    let parts: Vec<&str> = pattern_host.split('.').collect();
    let values: Vec<&str> = host.split('.').collect();
    if parts.len() != values.len() {
        return false;
    }
    parts.iter().zip(&values).all(|(p, v)| {
        if *p == "*" || p == v {
            return true;
        }
        match (p.split_once('-'), v.parse::<u32>()) {
            (Some((lo, hi)), Ok(v)) => match (lo.parse::<u32>(), hi.parse::<u32>()) {
                (Ok(lo), Ok(hi)) => lo <= v && v <= hi,
                _ => false,
            },
            _ => false,
        }
    })
}

fn split_host_port(address: &str) -> (&str, Option<&str>) {
    match address.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (address, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn string_matches_follow_java() {
        let m = |s: &str| StringMatch::from_yaml(&yaml(s)).unwrap();
        assert!(m("{exact: a}").is_match(Some("a")));
        assert!(!m("{exact: a}").is_match(Some("ab")));
        assert!(m("{prefix: a}").is_match(Some("ab")));
        assert!(m("{regex: 'a.c'}").is_match(Some("abc")));
        assert!(!m("{regex: 'a.c'}").is_match(Some("xabc")), "whole input");
        assert!(m("{wildcard: '*'}").is_match(Some("anything")));
        assert!(m("{empty: x}").is_match(None));
        assert!(m("{noempty: x}").is_match(Some("v")));
        assert!(!m("{noempty: x}").is_match(Some("")));
        assert!(StringMatch::from_yaml(&yaml("{regex: '('}")).is_err());
    }

    #[test]
    fn addresses_and_ip_expressions() {
        assert!(ip_expression("10.0.0.0/8", "10.1.2.3"));
        assert!(ip_expression("10.0.0.0/8", "10.1.2.3:20880"));
        assert!(!ip_expression("10.0.0.0/8", "11.1.2.3"));
        assert!(ip_expression("192.168.1.*", "192.168.1.9"));
        assert!(ip_expression("192.168.1.1-10:90", "192.168.1.9:90"));
        assert!(!ip_expression("192.168.1.1-10:90", "192.168.1.9:91"));
        assert!(glob_pattern("10.0.*", "10.0.0.1"));
        assert!(glob_pattern("*:20880", "10.0.0.1:20880"));
        assert!(glob_pattern("10.*:20880", "10.0.0.1:20880"));
        let a = AddressMatch::from_yaml(&yaml("{wildcard: '10.0.0.1:20880'}")).unwrap();
        assert!(a.is_match(Some("10.0.0.1:20880")));
        assert!(!a.is_match(Some("10.0.0.1")));
    }
}

//! Dynamic configuration: `override://` URLs in a service's `configurators` folder change
//! provider parameters at runtime, with Dubbo 2.7's matching rules.
//!
//! - `override://0.0.0.0/<iface>?…` applies to every provider of the service;
//!   `override://<host>:<port>/<iface>?…` to one provider (port 0 or none: every provider
//!   on that host is not targeted on the consumer side, as in Dubbo — use `0.0.0.0` with
//!   `providers=<host:port,…>` or give the port);
//! - `application=<name>` limits it to consumers of that application, `~key=value` to
//!   providers whose `key` has that value; `enabled=false` switches the rule off;
//! - `disabled=true` takes the provider out of the list; `weight`, `timeout`, `retries`,
//!   `loadbalance` (also per method as `<method>.<key>`) change how it is called;
//! - rules apply in order: `0.0.0.0` before specific hosts, then by `priority`.
//!
//! Rules with a `configVersion` (made from the YAML documents of a config center, see
//! [`rules::configurators`](crate::rules::configurators)) follow Java's 2.7+ matching
//! (`AbstractConfigurator.configureIfMatch`): the rule's `side` must be the side applying
//! it (a rule without `side` applies nowhere); on a consumer the rule's host is a
//! consumer host (`0.0.0.0`: any) and `providerAddresses` picks providers; on a provider
//! the rule's host is the provider's; `application` is the consumer's (the provider's on
//! a provider); the service key must be the provider's (or `*`); a v3.0 `match` must
//! hold.

use rdubbo_core::registry::is_empty_url;
use rdubbo_core::Url;

use crate::rules::matching::ConditionMatch;
use crate::rules::ConfiguratorRule;

/// Keys of a rule that select what it applies to rather than set anything.
const CONDITION_KEYS: &[&str] = &[
    "category",
    "check",
    "dynamic",
    "enabled",
    "group",
    "version",
    "interface",
    "application",
    "side",
    "configVersion",
    "compatible_config",
    "providers",
    "providerAddresses",
    "priority",
    "anyhost",
    "timestamp",
    "pid",
    "dubbo",
];

/// Whether `rule` is an active override or absent rule.
fn active(rule: &Url) -> bool {
    !is_empty_url(rule)
        && matches!(rule.protocol(), "override" | "absent")
        && rule.param_bool("enabled", true)
}

/// Whether `rule` applies to `provider` as seen by the consumer of `application`.
pub fn matches(rule: &Url, provider: &Url, application: Option<&str>) -> bool {
    matches_on(rule, None, provider, application, "consumer", "127.0.0.1")
}

/// Whether `rule` applies to the provider `provider` itself, on the provider's side (the
/// parameters the provider then registers), with Dubbo 2.7's rules
/// (`AbstractConfigurator.configureDeprecated`): a rule with a port targets the provider
/// with that port on its host (or on `0.0.0.0`); a rule without a port applies only as
/// `0.0.0.0`; `application` must be the provider's own; `side`, when set, must be
/// `provider` (or `*`); `~key=value` must match the provider's `key`.
pub fn matches_provider_side(rule: &Url, provider: &Url) -> bool {
    matches_on(
        rule,
        None,
        provider,
        provider.param_non_empty("application"),
        "provider",
        provider.host(),
    )
}

/// Java's `URL.getParameter(key, true)` for `enabled`: absent or empty is true, anything
/// but `true` (any case) false.
fn java_enabled(rule: &Url) -> bool {
    rule.param_non_empty("enabled")
        .is_none_or(|v| v.eq_ignore_ascii_case("true"))
}

/// Java's 2.7+ matching (`configureIfMatch` with `isV27ConditionMatchOrUnset`).
fn matches_v27(
    rule: &Url,
    matcher: Option<&ConditionMatch>,
    provider: &Url,
    application: Option<&str>,
    side: &str,
    local_host: &str,
) -> bool {
    if !java_enabled(rule) || rule.param("side") != Some(side) {
        return false;
    }
    let host = if side == "consumer" {
        local_host
    } else {
        provider.host()
    };
    if !(rule.host() == "0.0.0.0" || rule.host() == host) {
        return false;
    }
    if let Some(list) = rule.param_non_empty("providerAddresses") {
        let address = provider.address();
        let port = provider.port().unwrap_or(0);
        let any_port = format!("0.0.0.0:{port}");
        if !list.split(',').any(|a| {
            a == address
                || a == "0.0.0.0"
                || a == "0.0.0.0:*"
                || a == any_port
                || a == provider.host()
        }) {
            return false;
        }
    }
    let rule_app = rule
        .param_non_empty("application")
        .or(rule.username().filter(|u| !u.is_empty()));
    if let Some(app) = rule_app {
        if app != "*" && Some(app) != application {
            return false;
        }
    }
    let rule_service = rule.service_key();
    if rule_service != "*" && rule_service != provider.service_key() {
        return false;
    }
    let version = rule.param("configVersion").unwrap_or_default();
    if version.starts_with("v3.0") {
        return matcher.is_none_or(|m| m.is_match(host, provider, application));
    }
    // Java's `isDeprecatedConditionMatch`: `~key`, `application` and `side` values.
    rule.params().all(|(key, value)| {
        let target = if let Some(k) = key.strip_prefix('~') {
            provider.param(k)
        } else if key == "application" {
            application
        } else if key == "side" {
            Some(side)
        } else {
            return true;
        };
        value == "*" || Some(value) == target
    })
}

fn matches_on(
    rule: &Url,
    matcher: Option<&ConditionMatch>,
    provider: &Url,
    application: Option<&str>,
    side: &str,
    local_host: &str,
) -> bool {
    if is_empty_url(rule) || !matches!(rule.protocol(), "override" | "absent") {
        return false;
    }
    if rule.param_non_empty("configVersion").is_some() {
        return matches_v27(rule, matcher, provider, application, side, local_host);
    }
    if !active(rule) {
        return false;
    }
    let any_host = rule.host() == "0.0.0.0" || rule.host().is_empty();
    match rule.port().filter(|p| *p != 0) {
        Some(port) => {
            if provider.port() != Some(port) || !(any_host || rule.host() == provider.host()) {
                return false;
            }
        }
        None => {
            if !any_host {
                return false;
            }
        }
    }
    if let Some(list) = rule.param_non_empty("providers") {
        let address = provider.address();
        if !list
            .split(',')
            .any(|a| a.trim() == address || a.trim() == "0.0.0.0")
        {
            return false;
        }
    }
    let rule_app = rule
        .param_non_empty("application")
        .or(rule.username().filter(|u| !u.is_empty()));
    if let Some(app) = rule_app {
        if app != "*" && Some(app) != application {
            return false;
        }
    }
    if let Some(rule_side) = rule.param_non_empty("side") {
        if rule_side != side && rule_side != "*" {
            return false;
        }
    }
    for (key, value) in rule.params() {
        if let Some(target) = key.strip_prefix('~') {
            if !value.is_empty() && value != "*" && provider.param(target) != Some(value) {
                return false;
            }
        }
    }
    true
}

/// Applies every matching rule to `provider`; returns the configured URL and the
/// parameters the rules set (in order).
pub fn configure(
    provider: &Url,
    rules: &[Url],
    application: Option<&str>,
) -> (Url, Vec<(String, String)>) {
    apply(
        provider,
        rules
            .iter()
            .filter(|r| matches(r, provider, application))
            .collect(),
    )
}

/// Applies every rule that targets the provider itself ([`matches_provider_side`]) to its
/// own URL, as a Java provider does before re-registering; returns the configured URL and
/// the parameters the rules set (in order).
///
/// The condition keys a rule's parameters do not copy are rdubbo's list (a superset of
/// Java's: Java would also copy `providers`, `priority`, `timestamp` … into the URL).
pub fn configure_provider(provider: &Url, rules: &[Url]) -> (Url, Vec<(String, String)>) {
    apply(
        provider,
        rules
            .iter()
            .filter(|r| matches_provider_side(r, provider))
            .collect(),
    )
}

/// Applies the rule lists of a config center after one another (Java: the registry's
/// `override://` rules, then the application's document, then the service's), each
/// matched against the URL as the lists before it configured it, as seen by the consumer
/// of `application` on the host `local_host`; returns the configured URL and the
/// parameters set (in order).
pub fn configure_layers(
    provider: &Url,
    lists: &[&[ConfiguratorRule]],
    application: Option<&str>,
    local_host: &str,
) -> (Url, Vec<(String, String)>) {
    let mut url = provider.clone();
    let mut set = Vec::new();
    for list in lists {
        let matching: Vec<&Url> = list
            .iter()
            .filter(|r| {
                matches_on(
                    &r.url,
                    r.matcher.as_deref(),
                    &url,
                    application,
                    "consumer",
                    local_host,
                )
            })
            .map(|r| &r.url)
            .collect();
        url = apply_into(&url, matching, &mut set);
    }
    (url, set)
}

/// [`configure_layers`] on the provider's side: the rules that target the provider
/// itself ([`matches_provider_side`], or Java's 2.7+ matching with `side=provider`).
pub fn configure_provider_layers(
    provider: &Url,
    lists: &[&[ConfiguratorRule]],
) -> (Url, Vec<(String, String)>) {
    let mut url = provider.clone();
    let mut set = Vec::new();
    for list in lists {
        let matching: Vec<&Url> = list
            .iter()
            .filter(|r| {
                matches_on(
                    &r.url,
                    r.matcher.as_deref(),
                    &url,
                    url.param_non_empty("application"),
                    "provider",
                    url.host(),
                )
            })
            .map(|r| &r.url)
            .collect();
        url = apply_into(&url, matching, &mut set);
    }
    (url, set)
}

fn apply(provider: &Url, ordered: Vec<&Url>) -> (Url, Vec<(String, String)>) {
    let mut set = Vec::new();
    let url = apply_into(provider, ordered, &mut set);
    (url, set)
}

fn apply_into(provider: &Url, mut ordered: Vec<&Url>, set: &mut Vec<(String, String)>) -> Url {
    ordered.sort_by_key(|r| {
        let specific = !(r.host() == "0.0.0.0" || r.host().is_empty());
        (specific, r.param_or("priority", 0i64))
    });
    let mut url = provider.clone();
    for rule in ordered {
        let absent = rule.protocol() == "absent";
        for (key, value) in rule.params() {
            if key.starts_with('~') || CONDITION_KEYS.contains(&key) {
                continue;
            }
            if absent && url.param(key).is_some() {
                continue;
            }
            url.set_param(key, value);
            set.retain(|(k, _)| k != key);
            set.push((key.to_owned(), value.to_owned()));
        }
    }
    url
}

/// `methods.<m>.<key>`, `<m>.<key>`, then `<key>` in a list of set parameters.
/// The last one set wins. No key is built: this runs on every call.
pub fn lookup<'a>(set: &'a [(String, String)], method: &str, key: &str) -> Option<&'a str> {
    let of_method = |name: &str| {
        name.strip_prefix(method)
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|r| r == key)
    };
    // 0: `methods.<m>.<key>`, 1: `<m>.<key>`, 2: `<key>`.
    let form = |name: &str, form: usize| match form {
        0 => name.strip_prefix("methods.").is_some_and(of_method),
        1 => of_method(name),
        _ => name == key,
    };
    (0..3).find_map(|f| {
        set.iter()
            .rev()
            .find(|(name, v)| form(name, f) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    fn provider(port: u16) -> Url {
        url(&format!(
            "jsonrpc://10.0.0.1:{port}/demo.Api?interface=demo.Api&weight=100&application=shop&region=eu"
        ))
    }

    #[test]
    fn scopes_of_a_rule() {
        let p = provider(20880);
        let all = url("override://0.0.0.0/demo.Api?category=configurators&weight=200");
        assert!(matches(&all, &p, Some("web")));
        let one = url("override://10.0.0.1:20880/demo.Api?weight=300");
        assert!(matches(&one, &p, None));
        assert!(!matches(&one, &provider(20881), None));
        let host_only = url("override://10.0.0.1/demo.Api?weight=300");
        assert!(!matches(&host_only, &p, None));
        let listed = url("override://0.0.0.0/demo.Api?providers=10.0.0.1:20881&weight=1");
        assert!(!matches(&listed, &p, None));
        assert!(matches(&listed, &provider(20881), None));
        let app = url("override://0.0.0.0/demo.Api?application=web&timeout=5");
        assert!(matches(&app, &p, Some("web")));
        assert!(!matches(&app, &p, Some("batch")));
        let tilde = url("override://0.0.0.0/demo.Api?~region=us&timeout=5");
        assert!(!matches(&tilde, &p, None));
        let off = url("override://0.0.0.0/demo.Api?enabled=false&weight=1");
        assert!(!matches(&off, &p, None));
        let provider_side = url("override://0.0.0.0/demo.Api?side=provider&threads=5");
        assert!(!matches(&provider_side, &p, None));
        let empty = url("empty://0.0.0.0/demo.Api?category=configurators");
        assert!(!matches(&empty, &p, None));
    }

    #[test]
    fn provider_side_scopes_follow_java() {
        // The provider's own URL: application `shop`, port 20880.
        let p = provider(20880);
        let all =
            url("override://0.0.0.0/demo.Api?category=configurators&enabled=true&timeout=1234");
        assert!(matches_provider_side(&all, &p));
        let mine = url("override://10.0.0.1:20880/demo.Api?retries=5");
        assert!(matches_provider_side(&mine, &p));
        let any_host_my_port = url("override://0.0.0.0:20880/demo.Api?retries=5");
        assert!(matches_provider_side(&any_host_my_port, &p));
        let other_host = url("override://10.1.2.3:20880/demo.Api?timeout=999");
        assert!(!matches_provider_side(&other_host, &p));
        let other_port = url("override://10.0.0.1:20881/demo.Api?timeout=999");
        assert!(!matches_provider_side(&other_port, &p));
        // Without a port only 0.0.0.0 reaches a provider (a host alone names a consumer).
        let host_only = url("override://10.0.0.1/demo.Api?timeout=999");
        assert!(!matches_provider_side(&host_only, &p));
        let off = url("override://0.0.0.0/demo.Api?enabled=false&loadbalance=random");
        assert!(!matches_provider_side(&off, &p));
        // Application scope: the provider's own application.
        let shop = url("override://0.0.0.0/demo.Api?application=shop&weight=7");
        assert!(matches_provider_side(&shop, &p));
        let web = url("override://0.0.0.0/demo.Api?application=web&weight=7");
        assert!(!matches_provider_side(&web, &p));
        // Side: `provider` rules apply here, `consumer` rules do not.
        let provider_side = url("override://0.0.0.0/demo.Api?side=provider&threads=5");
        assert!(matches_provider_side(&provider_side, &p));
        let consumer_side = url("override://0.0.0.0/demo.Api?side=consumer&timeout=5");
        assert!(!matches_provider_side(&consumer_side, &p));
        let tilde = url("override://0.0.0.0/demo.Api?~region=eu&timeout=5");
        assert!(matches_provider_side(&tilde, &p));
        // Several rules merge; condition keys are not copied.
        let (configured, set) = configure_provider(
            &p,
            &[
                all,
                mine,
                off,
                web,
                url("override://0.0.0.0/demo.Api?disabled=true&dynamic=false"),
            ],
        );
        assert_eq!(configured.param("timeout"), Some("1234"));
        assert_eq!(configured.param("retries"), Some("5"));
        assert_eq!(configured.param("disabled"), Some("true"));
        assert_eq!(configured.param("weight"), Some("100"));
        assert_eq!(configured.param("enabled"), None);
        assert_eq!(configured.param("dynamic"), None);
        assert_eq!(lookup(&set, "any", "timeout"), Some("1234"));
    }

    #[test]
    fn specific_rules_win_and_absent_only_fills_gaps() {
        let p = provider(20880);
        let rules = vec![
            url("override://10.0.0.1:20880/demo.Api?weight=300&category=configurators&dynamic=false"),
            url("override://0.0.0.0/demo.Api?weight=200&timeout=50&sayHello.retries=5"),
            url("absent://0.0.0.0/demo.Api?weight=1&loadbalance=roundrobin"),
        ];
        let (configured, set) = configure(&p, &rules, None);
        assert_eq!(configured.param("weight"), Some("300"));
        assert_eq!(configured.param("timeout"), Some("50"));
        assert_eq!(configured.param("loadbalance"), Some("roundrobin"));
        assert_eq!(configured.param("category"), None);
        assert_eq!(lookup(&set, "sayHello", "retries"), Some("5"));
        assert_eq!(lookup(&set, "echo", "retries"), None);
        assert_eq!(lookup(&set, "echo", "weight"), Some("300"));
        // No rule: unchanged.
        let (same, set) = configure(&p, &[], None);
        assert_eq!(same, p);
        assert!(set.is_empty());
    }

    #[test]
    fn lookup_prefers_methods_then_method_then_plain_keys() {
        let set = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let all = set(&[
            ("methods.echo.timeout", "3"),
            ("echo.timeout", "2"),
            ("timeout", "1"),
            ("methods.echoes.timeout", "9"),
            ("echo.timeouts", "8"),
        ]);
        assert_eq!(lookup(&all, "echo", "timeout"), Some("3"));
        assert_eq!(lookup(&all, "echoes", "timeout"), Some("9"));
        assert_eq!(lookup(&all, "ech", "timeout"), Some("1"));
        assert_eq!(lookup(&all, "other", "retries"), None);
        let empty_first = set(&[("methods.echo.timeout", ""), ("echo.timeout", "2")]);
        assert_eq!(lookup(&empty_first, "echo", "timeout"), Some("2"));
        // The last one set wins.
        let twice = set(&[("timeout", "1"), ("timeout", "4")]);
        assert_eq!(lookup(&twice, "echo", "timeout"), Some("4"));
        assert_eq!(lookup(&[], "echo", "timeout"), None);
    }
}

//! Routers: condition rules (`condition://` URLs in a service's `routers` folder, with the
//! rule in the `rule` parameter) and tag routing by the `dubbo.tag` attachment.
//!
//! A condition rule reads `<when> => <then>`: when the consumer and the call match
//! `<when>` (empty: always), only providers matching `<then>` are used (empty: none — a
//! blacklist). Conditions are `key = v1,v2` or `key != v`, joined with `&`; values may use
//! `*` as a wildcard at either end, `a~b` for an integer range and `$key` for the
//! consumer's own value. Keys: `host`,
//! `port`, `protocol`, `application`, `method`, `attachments[key]` (in `<when>`: the
//! call's attachment), or any URL parameter. If the result is
//! empty and the rule is not `force=true`, it is not applied. Rules run by ascending
//! `priority`; `enabled=false` switches one off. A malformed rule is reported and ignored:
//! traffic is never affected by a rule that cannot be read.

use std::sync::Arc;

use rdubbo_core::registry::is_empty_url;
use rdubbo_core::{Invocation, Url};

use crate::Provider;

/// The attachment that selects tagged providers.
pub const TAG_KEY: &str = "dubbo.tag";
/// The attachment that forbids falling back to untagged providers.
pub const FORCE_TAG_KEY: &str = "dubbo.force.tag";

/// A condition `key = values` or `key != values`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    key: String,
    negate: bool,
    values: Vec<String>,
}

/// One weighted destination of a v3.1 rule (`to: [{match, weight}]`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    conditions: Vec<Condition>,
    weight: u32,
}

/// One parsed condition rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionRule {
    when: Vec<Condition>,
    /// `None`: the `then` part is empty (blacklist).
    then: Option<Vec<Condition>>,
    /// v3.1 rules: the weighted destinations, in place of `then` (an empty list: no
    /// provider).
    destinations: Option<Vec<Destination>>,
    /// v3.1 `ratio`: a destination is used only when it keeps more than this percentage
    /// of the providers.
    ratio: u32,
    force: bool,
    priority: i64,
    text: String,
}

/// Why a rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed condition rule {rule:?}: {reason}")]
pub struct RuleError {
    /// The rule text.
    pub rule: String,
    /// What is wrong.
    pub reason: String,
}

fn parse_conditions(text: &str, rule: &str) -> Result<Vec<Condition>, RuleError> {
    let mut out = Vec::new();
    for part in text.split('&').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, negate, values) = if let Some(i) = part.find("!=") {
            (&part[..i], true, &part[i + 2..])
        } else if let Some(i) = part.find('=') {
            (&part[..i], false, &part[i + 1..])
        } else {
            return Err(RuleError {
                rule: rule.to_owned(),
                reason: format!("{part:?} is not `key = value` or `key != value`"),
            });
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(RuleError {
                rule: rule.to_owned(),
                reason: format!("bad key in {part:?}"),
            });
        }
        let values: Vec<String> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        if values.is_empty() {
            return Err(RuleError {
                rule: rule.to_owned(),
                reason: format!("no value in {part:?}"),
            });
        }
        out.push(Condition {
            key: key.to_owned(),
            negate,
            values,
        });
    }
    Ok(out)
}

impl ConditionRule {
    /// Parses `when => then` with the rule URL's `force` and `priority`.
    pub fn parse(text: &str, force: bool, priority: i64) -> Result<ConditionRule, RuleError> {
        let text = text.trim();
        let (when, then) = match text.find("=>") {
            Some(i) => (&text[..i], Some(&text[i + 2..])),
            None => {
                return Err(RuleError {
                    rule: text.to_owned(),
                    reason: "missing `=>`".into(),
                })
            }
        };
        let when = parse_conditions(when, text)?;
        let then = match then.map(str::trim) {
            Some(t) if !t.is_empty() => Some(parse_conditions(t, text)?),
            _ => None,
        };
        Ok(ConditionRule {
            when,
            then,
            destinations: None,
            ratio: 0,
            force,
            priority,
            text: text.to_owned(),
        })
    }

    /// A v3.1 rule (Java's `MultiDestConditionRouter`): when the call matches `from`
    /// (empty or `true`: always), one of the destinations `to` (`(match, weight)`; an
    /// empty match or `false` keeps every provider) that keeps some provider is picked at
    /// random by weight; it applies when it keeps more than `ratio` percent of the
    /// providers, else the call gets none. When no destination keeps a provider: no
    /// provider with `force`, else the rule does not apply. An empty `to`: no provider.
    pub fn multi_destination(
        from: &str,
        to: &[(String, u32)],
        force: bool,
        ratio: u32,
        priority: i64,
    ) -> Result<ConditionRule, RuleError> {
        let from = from.trim();
        let when_text = if from == "true" { "" } else { from };
        let mut text = format!("{when_text} =>");
        let when = parse_conditions(when_text, &text)?;
        let mut destinations = Vec::with_capacity(to.len());
        for (then, weight) in to {
            let then = then.trim();
            let then = if then == "false" { "" } else { then };
            text.push_str(&format!(" [{then}] ({weight})"));
            destinations.push(Destination {
                conditions: parse_conditions(then, &text)?,
                weight: *weight,
            });
        }
        Ok(ConditionRule {
            when,
            then: None,
            destinations: Some(destinations),
            ratio,
            force,
            priority,
            text,
        })
    }

    /// Reads a `condition://` (or `route://`) router URL.
    pub fn from_url(url: &Url) -> Result<ConditionRule, RuleError> {
        let rule = url.param_non_empty("rule").ok_or_else(|| RuleError {
            rule: url.to_string(),
            reason: "no `rule` parameter".into(),
        })?;
        let rule = rdubbo_core::url::decode(rule).map_err(|e| RuleError {
            rule: rule.to_owned(),
            reason: e.to_string(),
        })?;
        ConditionRule::parse(
            &rule,
            url.param_bool("force", false),
            url.param_or("priority", 0),
        )
    }

    /// The rule text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Applies the rule to `providers` for a call by `consumer`.
    pub fn route(
        &self,
        providers: Vec<Arc<Provider>>,
        consumer: &Url,
        invocation: &Invocation,
    ) -> Vec<Arc<Provider>> {
        if !matches_all(&self.when, consumer, Some(invocation), consumer) {
            return providers;
        }
        if let Some(destinations) = &self.destinations {
            return self.route_weighted(destinations, providers, consumer);
        }
        let Some(then) = &self.then else {
            return Vec::new();
        };
        let kept: Vec<Arc<Provider>> = providers
            .iter()
            .filter(|p| matches_all(then, &p.url, None, consumer))
            .cloned()
            .collect();
        if kept.is_empty() && !self.force {
            tracing::warn!(rule = %self.text, "condition rule selects no provider; not applied");
            return providers;
        }
        kept
    }
}

impl ConditionRule {
    fn route_weighted(
        &self,
        destinations: &[Destination],
        providers: Vec<Arc<Provider>>,
        consumer: &Url,
    ) -> Vec<Arc<Provider>> {
        if destinations.is_empty() {
            return Vec::new();
        }
        let candidates: Vec<(u32, Vec<Arc<Provider>>)> = destinations
            .iter()
            .map(|d| {
                let kept: Vec<Arc<Provider>> = providers
                    .iter()
                    .filter(|p| matches_all(&d.conditions, &p.url, None, consumer))
                    .cloned()
                    .collect();
                (d.weight, kept)
            })
            .filter(|(_, kept)| !kept.is_empty())
            .collect();
        let weights: Vec<u32> = candidates.iter().map(|(w, _)| *w).collect();
        match pick_weighted(&weights) {
            Some(i) => {
                let chosen = candidates.into_iter().nth(i).map(|(_, k)| k);
                let chosen = chosen.unwrap_or_default();
                if chosen.len() * 100 / providers.len().max(1) > self.ratio as usize {
                    chosen
                } else {
                    Vec::new()
                }
            }
            None if self.force => Vec::new(),
            None => providers,
        }
    }

    /// Whether a rule with no provider left after it still applies.
    pub(crate) fn force(&self) -> bool {
        self.force
    }

    /// The v3.1 `ratio`.
    pub(crate) fn ratio(&self) -> u32 {
        self.ratio
    }

    /// The priority (registry rules run in ascending order).
    pub fn priority(&self) -> i64 {
        self.priority
    }

    /// The destinations of a v3.1 rule for calls of `consumer`, with their weights
    /// (`None`: not a v3.1 rule).
    pub(crate) fn destination_matchers<'a>(
        &'a self,
        consumer: &'a Url,
    ) -> Option<Vec<(ThenMatcher<'a>, u32)>> {
        self.destinations.as_ref().map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        ThenMatcher {
                            conditions: &d.conditions,
                            consumer,
                        },
                        d.weight,
                    )
                })
                .collect()
        })
    }

    /// The `when` part for calls of `consumer`: whether its conditions on the consumer
    /// hold (they read only the consumer URL), and the conditions on the call (`method`,
    /// `attachments[key]`), to check per call.
    pub(crate) fn split_when(&self, consumer: &Url) -> (bool, MethodConditions) {
        let static_part: Vec<Condition> = self
            .when
            .iter()
            .filter(|c| per_call_key(&c.key).is_none())
            .cloned()
            .collect();
        let holds = matches_all(&static_part, consumer, None, consumer);
        let method = self
            .when
            .iter()
            .filter_map(|c| per_call_key(&c.key).map(|attachment| (c, attachment)))
            .map(|(c, attachment)| MethodCondition {
                attachment: attachment.map(str::to_owned),
                negate: c.negate,
                patterns: c
                    .values
                    .iter()
                    .map(|v| match v.strip_prefix('$') {
                        Some(reference) => Pattern::Exact(value_of(reference, consumer, None)),
                        None => Pattern::Glob(v.clone()),
                    })
                    .collect(),
            })
            .collect();
        (holds, MethodConditions(method))
    }

    /// The `then` part for calls of `consumer` (`None`: a blacklist, no provider).
    pub(crate) fn then_matcher<'a>(&'a self, consumer: &'a Url) -> Option<ThenMatcher<'a>> {
        self.then.as_deref().map(|conditions| ThenMatcher {
            conditions,
            consumer,
        })
    }
}

/// The `then` part of a rule, for one consumer.
pub(crate) struct ThenMatcher<'a> {
    conditions: &'a [Condition],
    consumer: &'a Url,
}

impl ThenMatcher<'_> {
    /// Whether the rule keeps `provider`.
    pub(crate) fn matches(&self, provider: &Url) -> bool {
        matches_all(self.conditions, provider, None, self.consumer)
    }
}

/// A value of a method condition: a pattern, or a `$reference` resolved to the
/// consumer's value.
#[derive(Debug, Clone)]
enum Pattern {
    Glob(String),
    Exact(Option<String>),
}

#[derive(Debug, Clone)]
struct MethodCondition {
    /// `None`: the method; else the attachment of that key.
    attachment: Option<String>,
    negate: bool,
    patterns: Vec<Pattern>,
}

/// Whether a `when` key reads the call rather than the consumer: `Some(None)` for the
/// method, `Some(Some(key))` for an attachment (`attachments[key]`).
fn per_call_key(key: &str) -> Option<Option<&str>> {
    match key {
        "method" | "methods" => Some(None),
        _ => attachment_key(key).map(Some),
    }
}

/// `key` of `attachments[key]`.
fn attachment_key(key: &str) -> Option<&str> {
    key.strip_prefix("attachments[")
        .and_then(|k| k.strip_suffix(']'))
}

/// The per-call conditions of a rule's `when` part (method, attachments), with the
/// consumer's values resolved: checked per call without allocating.
#[derive(Debug, Clone, Default)]
pub(crate) struct MethodConditions(Vec<MethodCondition>);

impl MethodConditions {
    /// Whether every condition holds for `invocation`.
    pub(crate) fn matches(&self, invocation: &Invocation) -> bool {
        self.0.iter().all(|c| {
            let value = match &c.attachment {
                None => Some(&*invocation.method),
                Some(key) => invocation.attachments.get(key),
            };
            let hit = value.is_some_and(|value| {
                c.patterns.iter().any(|p| match p {
                    Pattern::Glob(g) => glob(g, value),
                    Pattern::Exact(v) => v.as_deref() == Some(value),
                })
            });
            hit != c.negate
        })
    }
}

fn value_of<'a>(key: &str, url: &'a Url, invocation: Option<&'a Invocation>) -> Option<String> {
    match key {
        "host" => Some(url.host().to_owned()),
        "port" => url.port().map(|p| p.to_string()),
        "protocol" => Some(url.protocol().to_owned()),
        "address" => Some(url.address()),
        "method" | "methods" if invocation.is_some() => invocation.map(|i| i.method.to_string()),
        other => match (attachment_key(other), invocation) {
            (Some(key), Some(i)) => i.attachments.get(key).map(str::to_owned),
            (Some(_), None) => None,
            (None, _) => url.param(other).map(str::to_owned),
        },
    }
}

fn glob(pattern: &str, value: &str) -> bool {
    if let Some(hit) = range(pattern, value) {
        return hit;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        _ if pattern == "*" => true,
        (Some(rest), _) if rest.ends_with('*') => value.contains(&rest[..rest.len() - 1]),
        (Some(suffix), _) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => value == pattern,
    }
}

/// Java's `RangeValuePattern`: `a~b`, `~b`, `a~` on integers (`None`: not a range).
fn range(pattern: &str, value: &str) -> Option<bool> {
    let (lo, hi) = pattern.split_once('~')?;
    let bound = |b: &str, default: i64| -> Option<i64> {
        let b = b.trim();
        if b.is_empty() {
            Some(default)
        } else {
            b.parse().ok()
        }
    };
    let (lo, hi) = (bound(lo, i64::MIN)?, bound(hi, i64::MAX)?);
    Some(
        value
            .trim()
            .parse::<i64>()
            .is_ok_and(|v| lo <= v && v <= hi),
    )
}

fn matches_all(
    conditions: &[Condition],
    url: &Url,
    invocation: Option<&Invocation>,
    consumer: &Url,
) -> bool {
    conditions.iter().all(|c| {
        let value = value_of(&c.key, url, invocation);
        let hit = value.as_deref().is_some_and(|v| {
            c.values
                .iter()
                .any(|pattern| match pattern.strip_prefix('$') {
                    Some(reference) => value_of(reference, consumer, None).as_deref() == Some(v),
                    None => glob(pattern, v),
                })
        });
        hit != c.negate
    })
}

/// Picks an index at random with probability proportional to its weight (Java's
/// `DestinationSet.randDestination`); `None` for an empty list. All weights 0: the first.
pub(crate) fn pick_weighted(weights: &[u32]) -> Option<usize> {
    if weights.is_empty() {
        return None;
    }
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return Some(0);
    }
    let mut point = fastrand::u64(0..total);
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    Some(weights.len() - 1)
}

/// Parses router URLs, skipping (and reporting) those that are off, not condition rules
/// or malformed; sorted by priority.
pub fn parse_routers(urls: &[Url]) -> Vec<ConditionRule> {
    let mut rules: Vec<ConditionRule> = urls
        .iter()
        .filter(|u| !is_empty_url(u) && u.param_bool("enabled", true))
        .filter(|u| matches!(u.protocol(), "condition" | "route"))
        .filter_map(|u| match ConditionRule::from_url(u) {
            Ok(rule) => Some(rule),
            Err(e) => {
                tracing::error!(error = %e, "ignoring a router rule");
                None
            }
        })
        .collect();
    rules.sort_by_key(|r| r.priority);
    rules
}

/// Tag routing: a call with the `dubbo.tag` attachment goes to providers whose URL has
/// that `dubbo.tag`; if there is none, to untagged providers unless `dubbo.force.tag` is
/// `true`. A call without a tag goes to untagged providers (to all of them when every
/// provider is tagged).
pub fn route_by_tag(providers: Vec<Arc<Provider>>, invocation: &Invocation) -> Vec<Arc<Provider>> {
    let tag = invocation
        .attachments
        .get(TAG_KEY)
        .filter(|t| !t.is_empty());
    let untagged = |p: &Arc<Provider>| p.url.param_non_empty(TAG_KEY).is_none();
    match tag {
        Some(tag) => {
            let tagged: Vec<Arc<Provider>> = providers
                .iter()
                .filter(|p| p.url.param(TAG_KEY) == Some(tag))
                .cloned()
                .collect();
            if !tagged.is_empty() || invocation.attachments.get(FORCE_TAG_KEY) == Some("true") {
                tagged
            } else {
                providers.into_iter().filter(untagged).collect()
            }
        }
        None => {
            if providers.iter().any(untagged) {
                providers.into_iter().filter(untagged).collect()
            } else {
                providers
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let r = ConditionRule::parse("host = 10.20.* => host = 10.30.*", false, 0).unwrap();
        assert_eq!(r.when.len(), 1);
        assert!(ConditionRule::parse("=> host != 10.0.0.1", false, 0)
            .unwrap()
            .when
            .is_empty());
        assert!(ConditionRule::parse("host = 1.2.3.4 =>", false, 0)
            .unwrap()
            .then
            .is_none());
        for bad in [
            "host = 1.2.3.4",
            "host => x",
            "host = => port = 1",
            "a b = c => d = e",
        ] {
            let err = ConditionRule::parse(bad, false, 0).unwrap_err();
            assert!(
                err.to_string().contains("malformed condition rule"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("10.20.*", "10.20.1.1"));
        assert!(!glob("10.20.*", "10.30.1.1"));
        assert!(glob("*.1", "10.20.1.1"));
        assert!(glob("*20*", "10.20.1.1"));
        assert!(glob("*", "x"));
        assert!(glob("a", "a") && !glob("a", "b"));
        assert!(glob("20880~20890", "20885") && !glob("20880~20890", "20891"));
        assert!(glob("~10", "-3") && glob("10~", "99") && !glob("1~5", "x"));
    }

    proptest::proptest! {
        #[test]
        fn any_rule_text_parses_or_errors_without_panic(text in "[a-z0-9.*$=!&, >-]{0,40}") {
            let _ = ConditionRule::parse(&text, false, 0);
        }
    }
}

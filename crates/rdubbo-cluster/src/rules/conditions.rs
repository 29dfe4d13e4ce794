//! Condition router documents (`<app>.condition-router`, `<service>.condition-router`),
//! as Java 3.3's `ConditionRuleParser` reads them.
//!
//! ```yaml
//! # v3.0 (or no configVersion): "<when> => <then>" strings, applied in order
//! scope: service
//! key: org.apache.dubbo.demo.DemoService
//! force: true
//! runtime: false
//! enabled: true
//! priority: 1
//! conditions:
//! - method!=sayHello =>
//! - method=routeMethod1 => address=30.5.120.16:20880
//! ---
//! # v3.1: weighted destinations
//! configVersion: v3.1
//! scope: service
//! key: com.foo.BarService
//! conditions:
//! - from: {match: env=gray}
//!   to:
//!   - {match: env!=gray, weight: 100}
//! ```

use serde_yaml_ng::Value;

use super::yaml::{field_bool, field_int, field_str, load_mapping, scalar, RuleError};
use crate::router::ConditionRule;

/// Java's default weight of a v3.1 destination.
pub const DEFAULT_DESTINATION_WEIGHT: u32 = 100;

/// A parsed condition router document (Java's `ConditionRouterRule` /
/// `MultiDestConditionRouterRule`).
#[derive(Debug, Clone)]
pub struct ConditionRouterRule {
    /// `application` or `service` (informative: the key the rule was read from decides).
    pub scope: Option<String>,
    /// The application or service the rule is for (informative).
    pub key: Option<String>,
    /// `force`: a rule that leaves no provider still applies.
    pub force: bool,
    /// `runtime` (rdubbo evaluates rules per call route anyway).
    pub runtime: bool,
    /// `enabled` (default true): a disabled rule routes nothing.
    pub enabled: bool,
    /// `priority` (informative: Java orders the rules of one document as written).
    pub priority: i64,
    /// The conditions, in document order.
    pub rules: Vec<ConditionRule>,
}

/// Parses a condition router document.
///
/// Errors (Java then keeps the previous rules): not YAML or not a mapping, a
/// `configVersion` above `v3.1`, no `conditions`, a condition that does not parse.
pub fn parse_condition_router(text: &str) -> Result<ConditionRouterRule, RuleError> {
    let doc = load_mapping(text)?;
    let version = field_str(&doc, "configVersion");
    let force = field_bool(&doc, "force", false);
    let mut rule = ConditionRouterRule {
        scope: field_str(&doc, "scope"),
        key: field_str(&doc, "key"),
        force,
        runtime: field_bool(&doc, "runtime", false),
        enabled: field_bool(&doc, "enabled", true),
        priority: field_int(&doc, "priority", 0)?,
        rules: Vec::new(),
    };
    let conditions = match doc.get("conditions").filter(|c| !c.is_null()) {
        Some(Value::Sequence(list)) => list.clone(),
        Some(_) => return Err(RuleError::new("`conditions` must be a list")),
        None => Vec::new(),
    };
    if conditions.is_empty() {
        return Err(RuleError::new("the rule has no `conditions`"));
    }
    let version = version.map(|v| v.to_ascii_lowercase());
    match version.as_deref() {
        Some(v) if v.starts_with("v3.1") => {
            for c in &conditions {
                rule.rules.push(multi_destination(c, force)?);
            }
        }
        Some(v) if v > "v3.1" => {
            return Err(RuleError::new(format!(
                "configVersion {v} is not supported (only v3.1 and below)"
            )))
        }
        _ => {
            for c in &conditions {
                let text = scalar(c).ok_or_else(|| {
                    RuleError::new(format!("a condition must be a string, not {c:?}"))
                })?;
                rule.rules.push(v30_condition(&text, force)?);
            }
        }
    }
    Ok(rule)
}

/// One `"<when> => <then>"` string as Java's `ConditionStateRouter` reads it: the
/// `consumer.` and `provider.` prefixes are dropped, a string without `=>` is a `then`
/// part only, `true` as `when` and `false` as `then` mean "always" and "nothing".
fn v30_condition(text: &str, force: bool) -> Result<ConditionRule, RuleError> {
    let text = text.replace("consumer.", "").replace("provider.", "");
    let (when, then) = match text.find("=>") {
        Some(i) => (text[..i].trim(), text[i + 2..].trim()),
        None => ("", text.trim()),
    };
    let when = if when == "true" { "" } else { when };
    let then = if then == "false" { "" } else { then };
    Ok(ConditionRule::parse(
        &format!("{when} => {then}"),
        force,
        0,
    )?)
}

/// One v3.1 `{from: {match}, to: [{match, weight}], force, ratio, priority}`.
fn multi_destination(c: &Value, scope_force: bool) -> Result<ConditionRule, RuleError> {
    if !c.is_mapping() {
        return Err(RuleError::new(
            "a v3.1 condition must be a mapping with `from` and `to`",
        ));
    }
    let from = match c.get("from").filter(|f| !f.is_null()) {
        Some(f) => field_str(f, "match").unwrap_or_default(),
        None => return Err(RuleError::new("a v3.1 condition needs `from`")),
    };
    let to = match c.get("to").filter(|t| !t.is_null()) {
        Some(Value::Sequence(list)) => list,
        _ => return Err(RuleError::new("a v3.1 condition needs a `to` list")),
    };
    let mut destinations = Vec::with_capacity(to.len());
    for t in to {
        let weight = match t.get("weight").filter(|w| !w.is_null()) {
            None => DEFAULT_DESTINATION_WEIGHT,
            Some(w) => scalar(w)
                .and_then(|w| w.trim().parse::<u32>().ok())
                .ok_or_else(|| RuleError::new(format!("bad weight {w:?}")))?,
        };
        destinations.push((field_str(t, "match").unwrap_or_default(), weight));
    }
    let force = field_bool(c, "force", false) || scope_force;
    let ratio = field_int(c, "ratio", 0)?.clamp(0, 100) as u32;
    let priority = field_int(c, "priority", 0)?;
    Ok(ConditionRule::multi_destination(
        &from,
        &destinations,
        force,
        ratio,
        priority,
    )?)
}

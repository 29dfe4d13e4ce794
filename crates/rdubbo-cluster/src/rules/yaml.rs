//! Reading YAML rule documents the way Java's SnakeYAML-based parsers do: a top-level
//! mapping, scalars read as their text, lists of scalars.

use serde_yaml_ng::Value;

/// Why a rule document could not be read (the rule is then ignored and the previous one
/// kept, as Java does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed rule: {reason}")]
pub struct RuleError {
    /// What is wrong.
    pub reason: String,
}

impl RuleError {
    pub(crate) fn new(reason: impl Into<String>) -> RuleError {
        RuleError {
            reason: reason.into(),
        }
    }
}

impl From<crate::router::RuleError> for RuleError {
    fn from(e: crate::router::RuleError) -> RuleError {
        RuleError::new(e.to_string())
    }
}

/// Parses `text` and requires a mapping at the top (Java: `Map<String, Object> map =
/// yaml.load(raw)`; an empty document or a list fails there).
pub(crate) fn load_mapping(text: &str) -> Result<Value, RuleError> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| RuleError::new(format!("not YAML: {e}")))?;
    if !value.is_mapping() {
        return Err(RuleError::new(
            "the document is not a YAML mapping (key: value lines)",
        ));
    }
    Ok(value)
}

/// A scalar as Java's `String.valueOf` prints it (`222`, `1.5`, `true`); `None` for null,
/// lists and mappings.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

/// The scalar field `key` of a mapping.
pub(crate) fn field_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(scalar)
}

/// A boolean field as Java's `Boolean.parseBoolean(o.toString())`, `default` when absent.
pub(crate) fn field_bool(v: &Value, key: &str, default: bool) -> bool {
    match v.get(key).filter(|x| !x.is_null()) {
        None => default,
        Some(x) => scalar(x).is_some_and(|s| s.eq_ignore_ascii_case("true")),
    }
}

/// An integer field (`Integer.parseInt(o.toString())`), `default` when absent.
pub(crate) fn field_int(v: &Value, key: &str, default: i64) -> Result<i64, RuleError> {
    match v.get(key).filter(|x| !x.is_null()) {
        None => Ok(default),
        Some(x) => scalar(x)
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| RuleError::new(format!("`{key}` must be an integer, not {x:?}"))),
    }
}

/// A list of scalars (`None` when absent; an error when not a list).
pub(crate) fn field_list(v: &Value, key: &str) -> Result<Option<Vec<String>>, RuleError> {
    match v.get(key).filter(|x| !x.is_null()) {
        None => Ok(None),
        Some(Value::Sequence(items)) => Ok(Some(
            items
                .iter()
                .map(|i| {
                    scalar(i).ok_or_else(|| {
                        RuleError::new(format!("`{key}` must list plain values, not {i:?}"))
                    })
                })
                .collect::<Result<_, _>>()?,
        )),
        Some(other) => Err(RuleError::new(format!(
            "`{key}` must be a list, not {other:?}"
        ))),
    }
}

//! Reading a configuration: TOML or YAML text, a file, and `RDUBBO_…` environment
//! overrides; parse errors with their key, line and column.

use std::path::Path;

use serde::Deserialize;

use super::{Config, ConfigError, Format};

impl Config {
    /// Reads a file (format from its extension) and applies `RDUBBO_…` overrides from the
    /// process environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let format = Format::of_path(path).ok_or_else(|| ConfigError {
            source: name.clone(),
            key: None,
            position: None,
            message: "unknown configuration format: use a .toml, .yaml or .yml file".into(),
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: name.clone(),
            key: None,
            position: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::from_str_with_env(&text, format, &name, std::env::vars())
    }

    /// Parses a text (no environment overrides). `source` names it in errors.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, format: Format, source: &str) -> Result<Config, ConfigError> {
        let config = parse_typed(text, format, source)?;
        config.validate(source)?;
        Ok(config)
    }

    /// Parses a text, then applies the `RDUBBO_…` variables among `vars`.
    pub fn from_str_with_env(
        text: &str,
        format: Format,
        source: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // First the file alone, so that its errors carry positions.
        let config = parse_typed(text, format, source)?;
        let overrides: Vec<(Vec<String>, String, String)> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("RDUBBO_")?;
                let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
                // Every key of the file is inside a section, so an override has two levels
                // at least; single-level names (`RDUBBO_JAVA_DUBBO_DIR`) belong to tools.
                (path.len() >= 2 && !path.iter().any(String::is_empty)).then_some((path, v, k))
            })
            .collect();
        if overrides.is_empty() {
            config.validate(source)?;
            return Ok(config);
        }
        let mut tree: serde_json::Value = match format {
            Format::Toml => toml::from_str::<serde_json::Value>(text).map_err(|e| ConfigError {
                source: source.into(),
                key: None,
                position: None,
                message: e.message().to_owned(),
            })?,
            Format::Yaml => parse_yaml_tree(text, source)?,
        };
        if tree.is_null() {
            tree = serde_json::json!({});
        }
        let mut names = Vec::new();
        for (path, value, name) in overrides {
            set_path(&mut tree, &path, env_value(&value)).map_err(|m| {
                ConfigError::at_key("environment", path.join("."), format!("{name}: {m}"))
            })?;
            names.push(name);
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::at_key(
                &format!("{source} with {}", names.join(", ")),
                key,
                e.into_inner().to_string(),
            )
        })?;
        config.validate(source)?;
        Ok(config)
    }
}

fn parse_typed(text: &str, format: Format, source: &str) -> Result<Config, ConfigError> {
    match format {
        Format::Toml => {
            let de =
                toml::Deserializer::parse(text).map_err(|e| toml_error(text, source, None, &e))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                toml_error(text, source, Some(key), e.inner())
            })
        }
        Format::Yaml => {
            if text.trim().is_empty() {
                return Ok(Config::default());
            }
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                yaml_error(source, Some(key), &inner)
            })
        }
    }
}

fn parse_yaml_tree(text: &str, source: &str) -> Result<serde_json::Value, ConfigError> {
    serde_yaml_ng::from_str(text).map_err(|e| yaml_error(source, None, &e))
}

fn key_or_none(key: Option<String>) -> Option<String> {
    key.filter(|k| !k.is_empty() && k != ".")
}

fn toml_error(text: &str, source: &str, key: Option<String>, e: &toml::de::Error) -> ConfigError {
    let position = e.span().map(|span| line_col(text, span.start));
    ConfigError {
        source: source.to_owned(),
        key: key_or_none(key),
        position,
        message: e.message().trim().to_owned(),
    }
}

fn yaml_error(source: &str, key: Option<String>, e: &serde_yaml_ng::Error) -> ConfigError {
    let mut message = e.to_string();
    // The YAML error text repeats the position; it is reported separately.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    ConfigError {
        source: source.to_owned(),
        key: key_or_none(key),
        position: e.location().map(|l| (l.line(), l.column())),
        message,
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn env_value(raw: &str) -> serde_json::Value {
    #[derive(Deserialize)]
    struct Wrap {
        v: serde_json::Value,
    }
    toml::from_str::<Wrap>(&format!("v = {raw}"))
        .map(|w| w.v)
        .unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}

fn set_path(
    tree: &mut serde_json::Value,
    path: &[String],
    value: serde_json::Value,
) -> Result<(), String> {
    let mut node = tree;
    for (i, part) in path.iter().enumerate() {
        let serde_json::Value::Object(map) = node else {
            return Err(format!("`{}` is not a table", path[..i].join(".")));
        };
        if i == path.len() - 1 {
            map.insert(part.clone(), value);
            return Ok(());
        }
        node = map
            .entry(part.clone())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}

//! The configs the server holds: by key, bounded, with their disk copy in `config.redb`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rdubbo_registry_nacos::config_wire::content_md5;
use serde::{Deserialize, Serialize};

use crate::store::{now_ms, open_table, Flush, Writer, CONFIGS};

/// Identifies a config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ConfigKey {
    /// `""` for the public namespace.
    pub tenant: String,
    pub group: String,
    pub data_id: String,
}

impl ConfigKey {
    fn db_key(&self) -> String {
        format!("{}\n{}\n{}", self.tenant, self.group, self.data_id)
    }
}

/// One stored config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfigItem {
    pub content: String,
    #[serde(default)]
    pub md5: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Milliseconds since the epoch of the last write.
    #[serde(default)]
    pub modified_ms: u64,
}

/// What the server knows of configs.
pub(crate) struct Configs {
    pub items: BTreeMap<ConfigKey, Arc<ConfigItem>>,
    /// Bytes of content in all.
    pub bytes: usize,
    writer: Option<Writer>,
}

/// Why a publish was refused.
pub(crate) enum PublishError {
    /// The `casMd5` did not match the stored content.
    Conflict,
    /// A bound was reached.
    Full(String),
    Storage(String),
}

impl Configs {
    /// Configs kept in `<data_dir>/config.redb` (loaded now), or in memory only.
    pub fn open(data_dir: Option<&Path>) -> Result<Configs, String> {
        let mut configs = Configs {
            items: BTreeMap::new(),
            bytes: 0,
            writer: None,
        };
        let Some(dir) = data_dir else {
            return Ok(configs);
        };
        let (writer, rows) = open_table(dir, "config.redb", CONFIGS)?;
        for (k, v) in rows {
            let mut parts = k.splitn(3, '\n');
            let (Some(tenant), Some(group), Some(data_id)) =
                (parts.next(), parts.next(), parts.next())
            else {
                tracing::warn!(key = %k, "skipping a malformed stored config");
                continue;
            };
            match serde_json::from_str::<ConfigItem>(&v) {
                Ok(mut item) => {
                    item.md5 = content_md5(Some(&item.content));
                    configs.bytes += item.content.len();
                    let key = ConfigKey {
                        tenant: tenant.to_owned(),
                        group: group.to_owned(),
                        data_id: data_id.to_owned(),
                    };
                    configs.items.insert(key, Arc::new(item));
                }
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable stored config"),
            }
        }
        configs.writer = Some(writer);
        Ok(configs)
    }

    /// Stops writing to disk (see [`crate::store::Store::close`]).
    pub fn close(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.writer.as_mut().and_then(Writer::close)
    }

    /// The MD5 of a config's content, `""` when there is none.
    pub fn md5(&self, key: &ConfigKey) -> &str {
        self.items.get(key).map_or("", |i| i.md5.as_str())
    }

    fn persist(&self, key: &ConfigKey, item: Option<&ConfigItem>) -> Result<Option<Flush>, String> {
        let Some(writer) = &self.writer else {
            return Ok(None);
        };
        let value = match item {
            Some(i) => Some(serde_json::to_string(i).map_err(|e| e.to_string())?),
            None => None,
        };
        writer.send(key.db_key(), value).map(Some)
    }

    /// Creates or replaces a config; with `cas`, only when the stored content's MD5 is
    /// `cas` (or there is none). Returns whether the content changed and the disk write.
    pub fn publish(
        &mut self,
        key: ConfigKey,
        content: String,
        kind: String,
        cas: Option<&str>,
        max_configs: usize,
        max_bytes: usize,
    ) -> Result<(bool, Option<Flush>), PublishError> {
        let old = self.items.get(&key);
        if let (Some(cas), Some(old)) = (cas, old) {
            if old.md5 != cas {
                return Err(PublishError::Conflict);
            }
        }
        let old_len = old.map_or(0, |o| o.content.len());
        if old.is_none() && self.items.len() >= max_configs {
            return Err(PublishError::Full(format!(
                "too many configs (limit {max_configs})"
            )));
        }
        if self.bytes - old_len + content.len() > max_bytes {
            return Err(PublishError::Full(format!(
                "configs too large in all (limit {max_bytes} bytes)"
            )));
        }
        let md5 = content_md5(Some(&content));
        let changed = old.is_none_or(|o| o.md5 != md5 || o.kind != kind);
        if !changed {
            return Ok((false, None));
        }
        let item = ConfigItem {
            content,
            md5,
            kind,
            modified_ms: now_ms(),
        };
        let flush = self
            .persist(&key, Some(&item))
            .map_err(PublishError::Storage)?;
        self.bytes = self.bytes - old_len + item.content.len();
        self.items.insert(key, Arc::new(item));
        Ok((true, flush))
    }

    /// Deletes a config; returns whether there was one and the disk write.
    pub fn remove(&mut self, key: &ConfigKey) -> Result<(bool, Option<Flush>), String> {
        if !self.items.contains_key(key) {
            return Ok((false, None));
        }
        let flush = self.persist(key, None)?;
        if let Some(old) = self.items.remove(key) {
            self.bytes -= old.content.len();
        }
        Ok((true, flush))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_compare_and_set_and_bounds() {
        let mut c = Configs::open(None).unwrap();
        let key = |d: &str| ConfigKey {
            tenant: String::new(),
            group: "mapping".into(),
            data_id: d.into(),
        };
        // A CAS on a config that does not exist creates it (as Nacos' insertOrUpdateCas).
        let (changed, _) = c
            .publish(key("a"), "app1".into(), "text".into(), Some("0"), 2, 100)
            .ok()
            .unwrap();
        assert!(changed);
        assert!(matches!(
            c.publish(
                key("a"),
                "app1,app2".into(),
                "text".into(),
                Some("0"),
                2,
                100
            ),
            Err(PublishError::Conflict)
        ));
        let md5 = content_md5(Some("app1"));
        assert!(c
            .publish(
                key("a"),
                "app1,app2".into(),
                "text".into(),
                Some(&md5),
                2,
                100
            )
            .is_ok());
        // Same content: no change.
        let (changed, _) = c
            .publish(key("a"), "app1,app2".into(), "text".into(), None, 2, 100)
            .ok()
            .unwrap();
        assert!(!changed);
        assert!(c
            .publish(key("b"), "x".into(), "text".into(), None, 2, 100)
            .is_ok());
        assert!(matches!(
            c.publish(key("c"), "x".into(), "text".into(), None, 2, 100),
            Err(PublishError::Full(_))
        ));
        assert!(matches!(
            c.publish(key("b"), "x".repeat(100), "text".into(), None, 2, 100),
            Err(PublishError::Full(_))
        ));
        assert_eq!(c.bytes, "app1,app2".len() + 1);
        assert!(c.remove(&key("a")).unwrap().0);
        assert!(!c.remove(&key("a")).unwrap().0);
        assert_eq!(c.bytes, 1);
    }
}

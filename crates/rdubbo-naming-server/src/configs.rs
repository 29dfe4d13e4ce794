//! The config API v1 (`/nacos/v1/cs/configs`): documents by tenant, group and `dataId`,
//! published, read, deleted and listened to by long polling, as Nacos clients (Java Dubbo's
//! config center and metadata report, the npm `nacos` client, `nacos-sdk-python`, rdubbo's
//! own) use it. Kept in `<data-dir>/config.redb` when the server has a data directory.
//!
//! Bounds: the size of one content ([`NamingServerConfig::max_config_size`]), the number of
//! configs and their bytes in all, the keys of one long poll, the long polls parked at
//! once (beyond: 503), and how long one may be parked (the client's `Long-Pulling-Timeout`
//! less 500 ms, at most [`NamingServerConfig::max_long_poll_timeout`]). At the connection
//! limit a parked poll gives its connection up as an idle one does (the client polls
//! again), so parked polls never lock other clients out.
//!
//! [`NamingServerConfig::max_config_size`]: crate::NamingServerConfig::max_config_size
//! [`NamingServerConfig::max_long_poll_timeout`]: crate::NamingServerConfig::max_long_poll_timeout

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{HeaderMap, StatusCode};
use rdubbo_registry_nacos::config_wire::{
    self, content_md5, normalize_tenant, ListenEntry, CAS_MD5, DEFAULT_CONFIG_GROUP,
    LISTENING_CONFIGS, LONG_POLLING_NO_HANGUP, LONG_POLLING_TIMEOUT,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::conn::ConnState;
use crate::http::{bad, json_response, reject, storage_error, text, HttpResponse, Params, Reject};
use crate::store::{now_ms, open_table, Flush, Writer, CONFIGS};
use crate::Shared;

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

/// Headers the config API reads.
#[derive(Debug, Default)]
pub(crate) struct ConfigHeaders {
    long_polling_timeout: Option<String>,
    no_hangup: bool,
    cas_md5: Option<String>,
}

impl ConfigHeaders {
    pub fn from(headers: &HeaderMap) -> ConfigHeaders {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        ConfigHeaders {
            long_polling_timeout: get(LONG_POLLING_TIMEOUT),
            no_hangup: get(LONG_POLLING_NO_HANGUP).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            cas_md5: get(CAS_MD5),
        }
    }
}

/// Nacos' characters of a `dataId` or group, and a few Dubbo tools use (`*`, `@`, `/`).
fn valid_config_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:*@/+$".contains(c))
}

fn key_of(p: &Params) -> Result<ConfigKey, Reject> {
    let data_id = p.required("dataId")?;
    let group = p.get("group").unwrap_or(DEFAULT_CONFIG_GROUP);
    if !valid_config_name(data_id) {
        return Err(bad(format!("invalid dataId: {data_id:?}")));
    }
    if !valid_config_name(group) {
        return Err(bad(format!("invalid group: {group:?}")));
    }
    Ok(ConfigKey {
        tenant: tenant_of(p.get("tenant").or(p.get("namespaceId")))?,
        group: group.to_owned(),
        data_id: data_id.to_owned(),
    })
}

fn tenant_of(raw: Option<&str>) -> Result<String, Reject> {
    let tenant = normalize_tenant(raw.unwrap_or(""));
    if tenant.len() > 128
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(bad(format!("invalid tenant: {tenant:?}")));
    }
    Ok(tenant.to_owned())
}

fn no_cache(mut r: HttpResponse) -> HttpResponse {
    let h = r.headers_mut();
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache,no-store"));
    r
}

fn true_answer() -> HttpResponse {
    let mut r = text(StatusCode::OK, "true");
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// `GET /nacos/v1/cs/configs`: one config's content, or (with `search`) a page of them.
pub(crate) fn get(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    if p.get("search").is_some() {
        return search(shared, p);
    }
    let key = key_of(p)?;
    let item = shared.configs().items.get(&key).cloned();
    match item {
        Some(item) => {
            let mut r = no_cache(text(StatusCode::OK, item.content.clone()));
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&item.md5) {
                h.insert("Content-MD5", v);
            }
            if let Ok(v) = HeaderValue::from_str(if item.kind.is_empty() {
                "text"
            } else {
                &item.kind
            }) {
                h.insert("Config-Type", v);
            }
            Ok(r)
        }
        None => Ok(text(StatusCode::NOT_FOUND, "config data not exist\n")),
    }
}

/// Whether `name` matches a search pattern (`*` any run of characters; empty: anything).
fn glob(pattern: &str, name: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// `GET /nacos/v1/cs/configs?search=accurate|blur&dataId=&group=&tenant=&pageNo=&pageSize=`.
fn search(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let tenant = tenant_of(p.get("tenant").or(p.get("namespaceId")))?;
    let data_id = p.get("dataId").unwrap_or("");
    let group = p.get("group").unwrap_or("");
    let page_no: usize = p
        .get("pageNo")
        .map(|v| v.trim().parse().map_err(|_| bad("invalid pageNo")))
        .transpose()?
        .unwrap_or(1)
        .max(1);
    let page_size: usize = p
        .get("pageSize")
        .map(|v| v.trim().parse().map_err(|_| bad("invalid pageSize")))
        .transpose()?
        .unwrap_or(100)
        .clamp(1, 500);
    let configs = shared.configs();
    let matching: Vec<(&ConfigKey, &Arc<ConfigItem>)> = configs
        .items
        .iter()
        .filter(|(k, _)| k.tenant == tenant && glob(group, &k.group) && glob(data_id, &k.data_id))
        .collect();
    let total = matching.len();
    let items: Vec<serde_json::Value> = matching
        .into_iter()
        .skip((page_no - 1).saturating_mul(page_size))
        .take(page_size)
        .map(|(k, i)| {
            json!({
                "id": "",
                "dataId": k.data_id,
                "group": k.group,
                "content": i.content,
                "md5": i.md5,
                "tenant": k.tenant,
                "appName": "",
                "type": if i.kind.is_empty() { "text" } else { &i.kind },
            })
        })
        .collect();
    drop(configs);
    Ok(json_response(&json!({
        "totalCount": total,
        "pageNumber": page_no,
        "pagesAvailable": total.div_ceil(page_size),
        "pageItems": items,
    })))
}

/// `POST /nacos/v1/cs/configs`: creates or replaces a config (compare-and-set with the
/// `casMd5` header); answers `true`.
pub(crate) async fn publish(
    shared: &Shared,
    p: &Params,
    headers: &ConfigHeaders,
) -> Result<HttpResponse, Reject> {
    let key = key_of(p)?;
    let content = p
        .get("content")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| bad("content invalid"))?;
    let limit = shared.config.max_config_size;
    if content.len() > limit {
        return Err(bad(format!(
            "too long content ({} bytes, limit {limit})",
            content.len()
        )));
    }
    let kind = p.get("type").unwrap_or("text");
    if kind.len() > 32 || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad(format!("invalid type: {kind:?}")));
    }
    let (changed, flush) = shared
        .configs()
        .publish(
            key.clone(),
            content.to_owned(),
            kind.to_owned(),
            headers.cas_md5.as_deref(),
            shared.config.max_configs,
            shared.config.max_config_bytes,
        )
        .map_err(|e| match e {
            PublishError::Conflict => reject(
                StatusCode::CONFLICT,
                "caused: Cas publish fail, server md5 may have changed.;",
            ),
            PublishError::Full(m) => reject(StatusCode::BAD_REQUEST, format!("caused: {m};")),
            PublishError::Storage(m) => storage_error(m),
        })?;
    if let Some(f) = flush {
        f.await
            .map_err(|_| "storage closed".to_owned())
            .and_then(|r| r)
            .map_err(storage_error)?;
    }
    if changed {
        shared.config_changed(&key);
    }
    Ok(true_answer())
}

/// `DELETE /nacos/v1/cs/configs`: answers `true`, also when there was none.
pub(crate) async fn remove(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let key = key_of(p)?;
    let (changed, flush) = shared.configs().remove(&key).map_err(storage_error)?;
    if let Some(f) = flush {
        f.await
            .map_err(|_| "storage closed".to_owned())
            .and_then(|r| r)
            .map_err(storage_error)?;
    }
    if changed {
        shared.config_changed(&key);
    }
    Ok(true_answer())
}

/// The keys of `entries` whose content differs from what the client has.
fn changed(shared: &Shared, entries: &[(ConfigKey, String)]) -> Vec<usize> {
    let configs = shared.configs();
    entries
        .iter()
        .enumerate()
        .filter(|(_, (k, md5))| configs.md5(k) != md5)
        .map(|(i, _)| i)
        .collect()
}

fn changed_answer(entries: &[(ConfigKey, String)], which: &[usize]) -> HttpResponse {
    let body = config_wire::changed_keys_body(which.iter().map(|&i| {
        let k = &entries[i].0;
        (k.data_id.as_str(), k.group.as_str(), k.tenant.as_str())
    }));
    no_cache(text(StatusCode::OK, body))
}

/// Counts a parked long poll while it lives, and marks its connection parked.
struct Parked<'a>(&'a Shared, &'a ConnState);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.config_polls.fetch_sub(1, Ordering::Relaxed);
        self.1.set_parked(0);
    }
}

/// `POST /nacos/v1/cs/configs/listener`: answers at once with the keys whose MD5 differs
/// from the client's; else (with `Long-Pulling-Timeout`) parks until one changes or the
/// timeout, then answers them (or an empty body).
pub(crate) async fn listen(
    shared: &Shared,
    state: &ConnState,
    p: &Params,
    headers: &ConfigHeaders,
) -> Result<HttpResponse, Reject> {
    let probe = p
        .get(LISTENING_CONFIGS)
        .ok_or_else(|| bad("invalid probeModify"))?;
    let parsed = config_wire::parse_listening_configs(probe, shared.config.max_listen_keys)
        .map_err(|e| bad(format!("invalid probeModify: {e}")))?;
    let mut entries = Vec::with_capacity(parsed.len());
    for ListenEntry {
        data_id,
        group,
        md5,
        tenant,
    } in parsed
    {
        if !valid_config_name(&data_id) || !valid_config_name(&group) {
            return Err(bad(format!("invalid probeModify: {data_id:?} {group:?}")));
        }
        let tenant = tenant_of(Some(&tenant))?;
        entries.push((
            ConfigKey {
                tenant,
                group,
                data_id,
            },
            md5,
        ));
    }
    // Subscribe before comparing, so that no change slips between.
    let mut rx = shared.config_version.subscribe();
    let now = changed(shared, &entries);
    let timeout = match &headers.long_polling_timeout {
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| bad(format!("invalid {LONG_POLLING_TIMEOUT}: {t:?}")))?,
        ),
        None => None,
    };
    let Some(timeout) = timeout.filter(|_| now.is_empty() && !headers.no_hangup) else {
        return Ok(changed_answer(&entries, &now));
    };
    let parked = shared.config_polls.fetch_add(1, Ordering::Relaxed) + 1;
    let _parked = Parked(shared, state);
    if parked > shared.config.max_long_polls {
        shared.config_polls_refused.fetch_add(1, Ordering::Relaxed);
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many long polls waiting (limit {}); retry later;",
                shared.config.max_long_polls
            ),
        );
        r.headers_mut()
            .insert("Retry-After", HeaderValue::from_static("1"));
        return Ok(r);
    }
    let wait = Duration::from_millis(timeout.saturating_sub(500)).clamp(
        Duration::from_millis(500),
        shared.config.max_long_poll_timeout,
    );
    let deadline = tokio::time::Instant::now() + wait;
    // At the connection limit, a parked poll makes room like an idle connection.
    state.set_parked(shared.clock.now());
    loop {
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    return Ok(changed_answer(&entries, &[]));
                }
                let now = changed(shared, &entries);
                if !now.is_empty() {
                    return Ok(changed_answer(&entries, &now));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = changed(shared, &entries);
                return Ok(changed_answer(&entries, &now));
            }
        }
    }
}

/// What the console shows at most.
const CONSOLE_CONFIGS: usize = 500;
const CONSOLE_PREVIEW: usize = 2048;

/// The configs part of the console's data.
pub(crate) fn console_configs(shared: &Shared) -> serde_json::Value {
    let configs = shared.configs();
    let shown: Vec<serde_json::Value> = configs
        .items
        .iter()
        .take(CONSOLE_CONFIGS)
        .map(|(k, i)| {
            let mut preview: String = i.content.chars().take(CONSOLE_PREVIEW).collect();
            if preview.len() < i.content.len() {
                preview.push('…');
            }
            json!({
                "tenant": k.tenant,
                "group": k.group,
                "dataId": k.data_id,
                "md5": i.md5,
                "type": if i.kind.is_empty() { "text" } else { &i.kind },
                "size": i.content.len(),
                "modified": i.modified_ms,
                "content": preview,
            })
        })
        .collect();
    json!({
        "items": shown,
        "count": configs.items.len(),
        "bytes": configs.bytes,
        "truncated": shown.len() < configs.items.len(),
        "listeners": shared.config_polls.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns() {
        assert!(glob("", "x"));
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("*b*", "abc"));
        assert!(!glob("a*d", "abc"));
        assert!(glob("abc", "abc"));
        assert!(!glob("ab", "abc"));
    }

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

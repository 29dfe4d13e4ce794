//! The config API's requests other than listening: get, search, publish, delete; and the
//! console's view of the configs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde_json::json;

use super::store::{ConfigItem, ConfigKey, PublishError};
use super::{key_of, no_cache, tenant_of, ConfigHeaders};
use crate::http::{bad, json_response, reject, storage_error, text, HttpResponse, Params, Reject};
use crate::store::Flush;
use crate::Shared;

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
    flushed(flush).await?;
    if changed {
        shared.config_changed(&key);
    }
    Ok(true_answer())
}

/// `DELETE /nacos/v1/cs/configs`: answers `true`, also when there was none.
pub(crate) async fn remove(shared: &Shared, p: &Params) -> Result<HttpResponse, Reject> {
    let key = key_of(p)?;
    let (changed, flush) = shared.configs().remove(&key).map_err(storage_error)?;
    flushed(flush).await?;
    if changed {
        shared.config_changed(&key);
    }
    Ok(true_answer())
}

/// Waits for the disk write of a change, when there is one.
async fn flushed(flush: Option<Flush>) -> Result<(), Reject> {
    if let Some(f) = flush {
        f.await
            .map_err(|_| "storage closed".to_owned())
            .and_then(|r| r)
            .map_err(storage_error)?;
    }
    Ok(())
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
}

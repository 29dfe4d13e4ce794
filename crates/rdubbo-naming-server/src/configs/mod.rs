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
//! The parts: `store` (the documents, their bounds and their disk copy), `handlers` (get,
//! search, publish, delete and the console's view), `listen` (the long polls); what they
//! share of a request (its key, tenant and headers) is here.
//!
//! [`NamingServerConfig::max_config_size`]: crate::NamingServerConfig::max_config_size
//! [`NamingServerConfig::max_long_poll_timeout`]: crate::NamingServerConfig::max_long_poll_timeout

mod handlers;
mod listen;
mod store;

use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA};
use http::HeaderMap;
use rdubbo_registry_nacos::config_wire::{
    normalize_tenant, CAS_MD5, DEFAULT_CONFIG_GROUP, LONG_POLLING_NO_HANGUP, LONG_POLLING_TIMEOUT,
};

use crate::http::{bad, HttpResponse, Params, Reject};

pub(crate) use handlers::{console_configs, get, publish, remove};
pub(crate) use listen::listen;
pub(crate) use store::{ConfigKey, Configs};

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

//! HTTP answers and request parameters: text and JSON responses, Nacos-style rejections,
//! and the parsing and validation of the form parameters the API shares.

use std::collections::{BTreeMap, HashMap};

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use rdubbo_registry_nacos::model::{self, DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE};

use crate::conn::ResponseBody;
use crate::store::ServiceKey;
use crate::Shared;

pub(crate) type HttpResponse = Response<ResponseBody>;

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = Response::new(ResponseBody::whole(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    r
}

pub(crate) fn json_bytes(body: ResponseBody) -> HttpResponse {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

pub(crate) fn json_response(value: &impl serde::Serialize) -> HttpResponse {
    json_bytes(ResponseBody::whole(
        serde_json::to_vec(value).unwrap_or_default(),
    ))
}

/// A refused request: status and body.
pub(crate) struct Reject(pub(crate) StatusCode, pub(crate) String);

pub(crate) fn reject(status: StatusCode, body: impl Into<String>) -> Reject {
    Reject(status, body.into())
}

/// A Nacos-style client error: HTTP 400, `caused: <message>;`.
pub(crate) fn bad(message: impl std::fmt::Display) -> Reject {
    Reject(StatusCode::BAD_REQUEST, format!("caused: {message};"))
}

/// Request parameters: the query string, then a form body.
pub(crate) struct Params(pub(crate) HashMap<String, String>);

impl Params {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn required(&self, key: &str) -> Result<&str, Reject> {
        self.get(key)
            .ok_or_else(|| bad(format!("Param '{key}' is required.")))
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, Reject> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(bad(format!(
                "Param '{key}' must be true or false, not {v:?}"
            ))),
        }
    }

    pub(crate) fn port(&self, key: &str) -> Result<u16, Reject> {
        let v = self.required(key)?;
        v.trim().parse::<u16>().map_err(|_| {
            bad(format!(
                "Param '{key}' must be a port number (0-65535), not {v:?}"
            ))
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._:-/$*".contains(c))
}

pub(crate) fn valid_cluster(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

pub(crate) fn valid_ip(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok()
        || (!ip.is_empty()
            && ip.len() <= 253
            && ip
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)))
}

/// (key, group, plain service name) of a request.
pub(crate) fn service_of(p: &Params) -> Result<(ServiceKey, String, String), Reject> {
    let namespace = p.get("namespaceId").unwrap_or(DEFAULT_NAMESPACE).to_owned();
    let name = p.required("serviceName")?;
    let default_group = p.get("groupName").unwrap_or(DEFAULT_GROUP);
    let (group, service) = model::split_grouped(name, default_group);
    if !valid_name(&group) || !valid_name(&service) || service.contains(model::GROUP_SEPARATOR) {
        return Err(bad(format!("Param 'serviceName' is illegal: {name:?}")));
    }
    if namespace.len() > 128 || !valid_name(&namespace) {
        return Err(bad(format!(
            "Param 'namespaceId' is illegal: {namespace:?}"
        )));
    }
    Ok((
        ServiceKey {
            namespace,
            grouped: model::grouped(&group, &service),
        },
        group,
        service,
    ))
}

pub(crate) fn cluster_of(p: &Params, key: &str) -> Result<String, Reject> {
    let c = p.get(key).unwrap_or(DEFAULT_CLUSTER);
    if !valid_cluster(c) {
        return Err(bad(format!("Param '{key}' is illegal: {c:?}")));
    }
    Ok(c.to_owned())
}

/// The instance a request names: (service, cluster, ip, port). The cluster comes from
/// `cluster_key` (`clusterName`, or `cluster` on the one-instance call).
pub(crate) fn instance_of(
    p: &Params,
    cluster_key: &str,
) -> Result<(ServiceKey, String, String, u16), Reject> {
    let (key, _, _) = service_of(p)?;
    let ip = ip_of(p)?;
    let port = p.port("port")?;
    let cluster = cluster_of(p, cluster_key)?;
    Ok((key, cluster, ip, port))
}

pub(crate) fn storage_error(e: String) -> Reject {
    reject(StatusCode::INTERNAL_SERVER_ERROR, format!("caused: {e};"))
}

pub(crate) fn ip_of(p: &Params) -> Result<String, Reject> {
    let ip = p.required("ip")?;
    if !valid_ip(ip) {
        return Err(bad(format!("Param 'ip' is illegal: {ip:?}")));
    }
    Ok(ip.to_owned())
}

pub(crate) fn weight_of(p: &Params, default: f64) -> Result<f64, Reject> {
    match p.get("weight") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(w) if w.is_finite() && w >= 0.0 => Ok(w.min(10_000.0)),
            _ => Err(bad(format!(
                "Param 'weight' must be a number from 0 to 10000, not {v:?}"
            ))),
        },
    }
}

pub(crate) fn metadata_of(
    shared: &Shared,
    raw: Option<&str>,
) -> Result<Option<BTreeMap<String, String>>, Reject> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > shared.config.max_metadata_size {
        return Err(bad(format!(
            "metadata too large ({} bytes, limit {})",
            raw.len(),
            shared.config.max_metadata_size
        )));
    }
    model::parse_metadata(raw).map(Some).map_err(bad)
}

//! One request: reading it within its deadline and its size limits, authorization, and
//! routing to the API; login.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use http::header::{HeaderValue, AUTHORIZATION, CONNECTION};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::configs::{self, ConfigHeaders};
use crate::conn::ConnState;
use crate::console::{console_data, console_page, metrics};
use crate::http::{json_response, reject, text, HttpResponse, Params, Reject};
use crate::instances::{beat, deregister, register, update};
use crate::query::{list, one_instance, service_detail, service_list};
use crate::Shared;

pub(crate) async fn handle(
    shared: &Shared,
    state: &ConnState,
    start: u64,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> HttpResponse {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get("accessToken")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    // The config API carries contents and long-poll keys: a limit of its own.
    let is_config = path.starts_with("/nacos/v1/cs/");
    let body_limit = if is_config {
        shared
            .config
            .max_config_body_size
            .max(shared.config.max_body_size)
    } else {
        shared.config.max_body_size
    };
    let config_headers = if is_config {
        ConfigHeaders::from(req.headers())
    } else {
        ConfigHeaders::default()
    };
    if query.len() > body_limit {
        return text(
            StatusCode::URI_TOO_LONG,
            format!("caused: query string too large (limit {body_limit} bytes);"),
        );
    }
    // One deadline for the whole request, from its first byte: the headers are in, the
    // body must follow in what is left.
    let deadline = shared.clock.instant(start) + shared.config.request_timeout;
    let collect = Limited::new(req.into_body(), body_limit).collect();
    let body = match tokio::time::timeout_at(deadline.into(), collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("caused: request body too large (limit {body_limit} bytes);"),
            )
        }
        Ok(Err(e)) => {
            return closing(text(
                StatusCode::BAD_REQUEST,
                format!("caused: request body not received: {e};"),
            ))
        }
        Err(_) => {
            shared.timed_out.fetch_add(1, Ordering::Relaxed);
            return closing(text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "caused: request not received within {} ms;",
                    shared.config.request_timeout.as_millis()
                ),
            ));
        }
    };
    state.request_received();
    let mut params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if !body.is_empty() {
        for (k, v) in form_urlencoded::parse(&body).into_owned() {
            params.entry(k).or_insert(v);
        }
    }
    let p = Params(params);
    let path = path.trim_end_matches('/');
    if path.starts_with("/nacos/v1/ns") || path.starts_with("/nacos/v1/cs") {
        if let Err(r) = authorize(shared, peer, &p, bearer.as_deref()) {
            return text(r.0, r.1);
        }
    }
    let result = match (&method, path) {
        (&Method::POST, "/nacos/v1/ns/instance") => register(shared, &p).await,
        (&Method::DELETE, "/nacos/v1/ns/instance") => deregister(shared, &p).await,
        (&Method::PUT, "/nacos/v1/ns/instance") => update(shared, &p).await,
        (&Method::GET, "/nacos/v1/ns/instance") => one_instance(shared, &p),
        (&Method::PUT, "/nacos/v1/ns/instance/beat") => beat(shared, &p),
        (&Method::GET, "/nacos/v1/ns/instance/list") => list(shared, peer, &p).await,
        (&Method::GET, "/nacos/v1/ns/service/list") => service_list(shared, &p),
        (&Method::GET, "/nacos/v1/ns/service") => service_detail(shared, &p),
        (&Method::GET, "/nacos/v1/ns/operator/metrics") => Ok(metrics(shared)),
        (&Method::GET, "/nacos/v1/cs/configs") => configs::get(shared, &p),
        (&Method::POST, "/nacos/v1/cs/configs") => {
            configs::publish(shared, &p, &config_headers).await
        }
        (&Method::DELETE, "/nacos/v1/cs/configs") => configs::remove(shared, &p).await,
        (&Method::POST, "/nacos/v1/cs/configs/listener") => {
            configs::listen(shared, state, &p, &config_headers).await
        }
        (&Method::POST, "/nacos/v1/auth/login" | "/nacos/v1/auth/users/login") => {
            login(shared, peer, &p)
        }
        (&Method::GET, "" | "/index.html" | "/nacos") => Ok(console_page()),
        (&Method::GET, "/rdubbo/console/api") => {
            if let Err(r) = authorize(shared, peer, &p, bearer.as_deref()) {
                return text(r.0, r.1);
            }
            Ok(console_data(shared))
        }
        (_, p) if p.starts_with("/nacos/") => Err(reject(
            StatusCode::NOT_FOUND,
            format!("caused: no such API: {method} {p};"),
        )),
        _ => Err(reject(StatusCode::NOT_FOUND, "not found")),
    };
    result.unwrap_or_else(|r| text(r.0, r.1))
}

/// The answer, and the connection closes after it.
fn closing(mut r: HttpResponse) -> HttpResponse {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

fn authorize(
    shared: &Shared,
    peer: SocketAddr,
    p: &Params,
    bearer: Option<&str>,
) -> Result<(), Reject> {
    if shared.config.auth.is_none() {
        return Ok(());
    }
    if let Some(token) = p.get("accessToken").or(bearer) {
        return shared
            .auth
            .verify(token)
            .map_err(|e| reject(StatusCode::FORBIDDEN, e.message()));
    }
    match (p.get("username"), p.get("password")) {
        (Some(u), Some(pw)) => check_credentials(shared, peer, u, pw),
        (Some(_), None) => Err(reject(StatusCode::FORBIDDEN, "unknown user!")),
        _ => Err(reject(
            StatusCode::FORBIDDEN,
            "no accessToken: log in at /nacos/v1/auth/login first",
        )),
    }
}

/// Checks credentials from `peer`, throttling the addresses that fail too often.
fn check_credentials(
    shared: &Shared,
    peer: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(), Reject> {
    if let Err(wait) = shared.auth.may_try(peer.ip()) {
        shared.logins_throttled.fetch_add(1, Ordering::Relaxed);
        return Err(reject(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "caused: too many failed logins from {}; retry in {wait} s;",
                peer.ip()
            ),
        ));
    }
    if shared.auth.credentials_match(user, password) {
        Ok(())
    } else {
        shared.auth.failed(peer.ip());
        Err(reject(StatusCode::FORBIDDEN, "unknown user!"))
    }
}

fn login(shared: &Shared, peer: SocketAddr, p: &Params) -> Result<HttpResponse, Reject> {
    let user = p.required("username")?;
    let pass = p.required("password")?;
    if shared.config.auth.is_some() {
        check_credentials(shared, peer, user, pass)?;
    }
    // Signed, with its expiry inside: nothing is stored, so logins cannot fill anything.
    let token = shared.auth.issue();
    shared.logins.fetch_add(1, Ordering::Relaxed);
    Ok(json_response(&json!({
        "accessToken": token,
        "tokenTtl": shared.config.token_ttl.as_secs(),
        "globalAdmin": true,
    })))
}

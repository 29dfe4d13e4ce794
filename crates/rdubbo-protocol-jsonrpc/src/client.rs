//! The JSON-RPC consumer: an [`Invoker`] calling one provider over pooled HTTP/1.1.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, Url};

use crate::codec;
use crate::pool::{Pool, SendError};

/// Settings of a [`JsonRpcClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Timeout of a call that sets none (overridden by the URL's `timeout`). Default 1 s.
    pub timeout: Duration,
    /// Largest response body accepted. Default 8 MiB.
    pub max_response_size: usize,
    /// How long an idle pooled connection is kept. Default 90 s.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per provider. Default 256.
    pub max_idle_per_host: usize,
    /// The TLS settings (trusted CA, optional client certificate, server name) used to call
    /// a provider whose URL says `ssl-enabled=true` (default: none, and such a provider
    /// cannot be called). Providers without it are called over plain HTTP.
    pub tls: Option<rdubbo_tls::ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_millis(1000),
            max_response_size: 8 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 256,
            tls: None,
        }
    }
}

/// Calls one JSON-RPC provider; cheap to clone.
#[derive(Clone)]
pub struct JsonRpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Origin-form request target: `/path`.
    uri: Uri,
    host_header: HeaderValue,
    addr: String,
    url: Url,
    config: ClientConfig,
    /// Methods with a timeout of their own in the URL (`methods.<m>.timeout`,
    /// `<m>.timeout`), read once: the URL is not searched per call.
    method_timeouts: Vec<(String, Duration)>,
    next_id: AtomicU32,
}

static TIMEOUT: HeaderName = HeaderName::from_static("timeout");
static X_METHOD: HeaderName = HeaderName::from_static("x-method");
static X_SERVICES: HeaderName = HeaderName::from_static("x-services");
static X_PROXY_ID: HeaderName = HeaderName::from_static("x-proxy-id");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

impl JsonRpcClient {
    /// A client for the provider at `url` (`jsonrpc://host:port/path?timeout=…`).
    pub fn new(url: &Url) -> RpcResult<JsonRpcClient> {
        JsonRpcClient::with_config(url, ClientConfig::default())
    }

    /// A client with explicit settings.
    pub fn with_config(url: &Url, mut config: ClientConfig) -> RpcResult<JsonRpcClient> {
        let port = url
            .port()
            .ok_or_else(|| RpcError::Invalid(format!("provider URL {url} has no port")))?;
        if url.host().is_empty() {
            return Err(RpcError::Invalid(format!("provider URL {url} has no host")));
        }
        let addr = format!("{}:{}", url.host(), port);
        let uri: Uri = format!("/{}", url.path())
            .parse()
            .map_err(|e| RpcError::Invalid(format!("provider URL {url}: {e}")))?;
        let host_header = HeaderValue::from_str(&addr)
            .map_err(|e| RpcError::Invalid(format!("provider URL {url}: {e}")))?;
        if let Some(ms) = url
            .param_non_empty("timeout")
            .and_then(|t| t.parse::<u64>().ok())
        {
            config.timeout = Duration::from_millis(ms);
        }
        let tls = if rdubbo_tls::is_enabled(url.param(crate::SSL_ENABLED)) {
            let tls = config.tls.clone().ok_or_else(|| {
                RpcError::Invalid(format!(
                    "provider {addr} serves TLS ({}=true) but this consumer has no TLS \
                     configuration (ClientConfig::tls: a CA bundle to trust)",
                    crate::SSL_ENABLED
                ))
            })?;
            Some(tls.with_alpn(&[b"http/1.1"]))
        } else {
            None
        };
        let default_ms = config.timeout.as_millis() as u64;
        let mut method_timeouts: Vec<(String, Duration)> = Vec::new();
        for (key, _) in url.params() {
            let Some(method) = key.strip_suffix(".timeout") else {
                continue;
            };
            for method in [Some(method), method.strip_prefix("methods.")]
                .into_iter()
                .flatten()
            {
                if !method.is_empty() && !method_timeouts.iter().any(|(m, _)| m == method) {
                    let ms = url.method_param_or(method, "timeout", default_ms);
                    method_timeouts.push((method.to_owned(), Duration::from_millis(ms)));
                }
            }
        }
        let pool = Pool::new(
            url.host(),
            port,
            config.timeout.max(Duration::from_millis(100)),
            config.pool_idle_timeout,
            config.max_idle_per_host,
            tls,
        );
        Ok(JsonRpcClient {
            inner: Arc::new(Inner {
                pool,
                uri,
                host_header,
                addr,
                url: url.clone(),
                config,
                method_timeouts,
                next_id: AtomicU32::new(0),
            }),
        })
    }

    /// The provider URL this client calls.
    pub fn url(&self) -> &Url {
        &self.inner.url
    }
}

impl Invoker for JsonRpcClient {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(inv).await })
    }
}

impl Inner {
    /// The call's own timeout, else the URL's for its method (as
    /// `url.method_param_or(method, "timeout", …)` reads it), else the client's.
    fn timeout_for(&self, inv: &Invocation) -> Duration {
        inv.timeout.unwrap_or_else(|| {
            self.method_timeouts
                .iter()
                .find(|(m, _)| **m == *inv.method)
                .map_or(self.config.timeout, |(_, t)| *t)
        })
    }

    async fn call(&self, inv: Invocation) -> RpcResult<Reply> {
        let timeout = self.timeout_for(&inv);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF;
        let mut body = Vec::with_capacity(128);
        codec::encode_request_args(&mut body, &inv.method, &inv.args, id).map_err(|e| {
            RpcError::Codec(format!(
                "cannot encode the arguments of {}: {e}",
                inv.method
            ))
        })?;
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        // Sized once for what follows: the map does not grow while it is filled.
        *req.headers_mut() = HeaderMap::with_capacity(9 + inv.attachments.len());
        let h = req.headers_mut();
        h.insert(HOST, self.host_header.clone());
        h.insert(CONTENT_TYPE, APPLICATION_JSON.clone());
        h.insert(ACCEPT, APPLICATION_JSON.clone());
        h.insert(
            TIMEOUT.clone(),
            HeaderValue::from(timeout.as_nanos().min(u64::MAX as u128) as u64),
        );
        if let Ok(v) = HeaderValue::from_str(&inv.method) {
            h.insert(X_METHOD.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(&inv.interface) {
            h.insert(X_SERVICES.clone(), v);
        }
        h.insert(X_PROXY_ID.clone(), HeaderValue::from_static("rdubbo"));
        if let Some(v) = inv
            .version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(HeaderName::from_static("version"), v);
        }
        if let Some(g) = inv
            .group
            .as_deref()
            .and_then(|g| HeaderValue::from_str(g).ok())
        {
            h.insert(HeaderName::from_static("group"), g);
        }
        for (k, v) in inv.attachments.iter() {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                RpcError::Invalid(format!("attachment key {k:?} is not a valid header name"))
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                RpcError::Invalid(format!(
                    "attachment {k:?} has a value that is not a valid header value"
                ))
            })?;
            h.insert(name, value);
        }
        match tokio::time::timeout(timeout, self.exchange(req, id)).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }

    async fn exchange(&self, req: Request<Full<Bytes>>, id: u32) -> RpcResult<Reply> {
        let (resp, lease) = self.pool.send(req).await.map_err(|e| match e {
            SendError::Connect(reason) => RpcError::Connect {
                addr: self.addr.clone(),
                reason,
            },
            SendError::Transport(reason) => RpcError::Transport {
                addr: self.addr.clone(),
                reason,
            },
        })?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), self.config.max_response_size)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    RpcError::Limit(format!(
                        "response from {} exceeds {} bytes",
                        self.addr, self.config.max_response_size
                    ))
                } else {
                    RpcError::Transport {
                        addr: self.addr.clone(),
                        reason: e.to_string(),
                    }
                }
            })?
            .to_bytes();
        lease.release();
        let parsed = codec::decode_response(&body);
        match parsed {
            Ok(r) => {
                if let Some(err) = r.error {
                    return Err(RpcError::Remote {
                        code: err.code,
                        message: err.message,
                        data: err.data,
                    });
                }
                if !status.is_success() {
                    return Err(status_error(status, &self.addr));
                }
                if r.id.as_u64() != Some(u64::from(id)) {
                    return Err(RpcError::Codec(format!(
                        "response id {} does not match request id {id}",
                        r.id
                    )));
                }
                r.result
                    .map(Reply::Json)
                    .ok_or_else(|| RpcError::Codec("response has neither result nor error".into()))
            }
            Err(_) if !status.is_success() => Err(status_error(status, &self.addr)),
            Err(e) => Err(RpcError::Codec(format!("invalid JSON-RPC response: {e}"))),
        }
    }
}

fn status_error(status: StatusCode, addr: &str) -> RpcError {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            RpcError::remote(codes::SERVER_BUSY, format!("{addr} answered HTTP {status}"))
        }
        StatusCode::NOT_FOUND => RpcError::remote(
            codes::METHOD_NOT_FOUND,
            format!("{addr} answered HTTP {status}"),
        ),
        _ => RpcError::Transport {
            addr: addr.to_owned(),
            reason: format!("HTTP {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_timeouts_are_read_as_the_url_gives_them() {
        let url: Url = "jsonrpc://127.0.0.1:1/demo.Api?timeout=300&methods.slow.timeout=5000\
                        &fast.timeout=50&methods.fast.timeout=70&odd.timeout=x&methods.blank.timeout="
            .parse()
            .unwrap();
        let client = JsonRpcClient::new(&url).unwrap();
        for method in ["slow", "fast", "odd", "blank", "echo", "methods", ""] {
            let inv = Invocation::new("demo.Api", method, Vec::new());
            let expected = Duration::from_millis(url.method_param_or(method, "timeout", 300u64));
            assert_eq!(client.inner.timeout_for(&inv), expected, "{method}");
        }
        let inv = Invocation::new("demo.Api", "fast", Vec::new());
        assert_eq!(client.inner.timeout_for(&inv), Duration::from_millis(70));
        let mut own = inv.clone();
        own.timeout = Some(Duration::from_millis(9));
        assert_eq!(client.inner.timeout_for(&own), Duration::from_millis(9));
        let plain: Url = "jsonrpc://127.0.0.1:1/demo.Api".parse().unwrap();
        let client = JsonRpcClient::new(&plain).unwrap();
        assert_eq!(client.inner.timeout_for(&inv), Duration::from_secs(1));
    }
}

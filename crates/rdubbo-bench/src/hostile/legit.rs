//! The legit client of each attack: what it calls and how its health is read.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdubbo::prelude::GenericClient;
use rdubbo::Value;

use net::{HttpConn, IFACE};
use target::{Kind, Op, Target};

use super::*;

pub(super) const LEGIT_SERVICE: &str = "hostile-legit";
pub(super) const LEGIT_INSTANCES: usize = 3;

pub(super) fn boxed<F>(f: F) -> target::OpFuture
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    Box::pin(f)
}

pub(super) async fn legit_op(
    name: &str,
    kind: Kind,
    target: &Target,
    token: Option<String>,
) -> Result<Op> {
    Ok(match kind {
        Kind::Dubbo => dubbo_op(target.addr("dubbo")?)?,
        Kind::JsonRpc => {
            let addr = target.addr("jsonrpc")?;
            // A new connection per call, as a new consumer: it needs a free slot.
            Arc::new(move || {
                boxed(async move {
                    let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                    let body =
                        br#"{"jsonrpc":"2.0","id":1,"method":"sayHello","params":["legit"]}"#;
                    let (status, answer) = c.request("POST", &format!("/{IFACE}"), body).await?;
                    let answer = String::from_utf8_lossy(&answer);
                    if status != 200 || !answer.contains("Hello legit") {
                        bail!(
                            "HTTP {status}: {}",
                            answer.chars().take(200).collect::<String>()
                        );
                    }
                    Ok(())
                })
            })
        }
        Kind::Registry | Kind::RegistryAuth | Kind::RegistryDefault => {
            let addr = target.addr("registry")?;
            let auth = token
                .map(|t| format!("&accessToken={t}"))
                .unwrap_or_default();
            for i in 0..LEGIT_INSTANCES {
                let path = format!(
                    "/nacos/v1/ns/instance?serviceName={LEGIT_SERVICE}&ip=10.0.0.{}&port=8080&ephemeral=true{auth}",
                    i + 1
                );
                let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                let (status, body) = c.request("POST", &path, b"").await?;
                if status != 200 {
                    bail!(
                        "registering a legit instance: HTTP {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            let next = Arc::new(AtomicU64::new(0));
            let login_too = kind == Kind::RegistryAuth;
            // Each call beats one of the instances (a new connection each time); with auth,
            // it also logs in afresh and lists the service with the new token.
            Arc::new(move || {
                let auth = auth.clone();
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % LEGIT_INSTANCES;
                boxed(async move {
                    let auth = if login_too {
                        format!("&accessToken={}", login(addr, Some(LEGIT_SRC)).await?)
                    } else {
                        auth
                    };
                    let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                    let path = format!(
                        "/nacos/v1/ns/instance/beat?serviceName={LEGIT_SERVICE}&ip=10.0.0.{}&port=8080{auth}",
                        i + 1
                    );
                    let (status, body) = c.request("PUT", &path, b"").await?;
                    let body = String::from_utf8_lossy(&body);
                    if status != 200 || body.contains("20404") {
                        bail!(
                            "beat: HTTP {status} {}",
                            body.chars().take(200).collect::<String>()
                        );
                    }
                    if login_too {
                        let path =
                            format!("/nacos/v1/ns/instance/list?serviceName={LEGIT_SERVICE}{auth}");
                        let (status, body) = c.request("GET", &path, b"").await?;
                        if status != 200 {
                            bail!("list: HTTP {status} {}", String::from_utf8_lossy(&body));
                        }
                    }
                    Ok(())
                })
            })
        }
        Kind::App => {
            let call = dubbo_op(target.addr("dubbo")?)?;
            // A dubbo call, then `GET /live` on the QoS port (QoS attack) or a scrape of
            // `/metrics` (metrics attack), on a new connection.
            let probe = if name.starts_with("qos") {
                (target.addr("qos")?, "/live")
            } else {
                (target.addr("metrics")?, "/metrics")
            };
            Arc::new(move || {
                let call = call();
                boxed(async move {
                    call.await.context("dubbo call")?;
                    let (addr, path) = probe;
                    let r = async {
                        let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                        c.request("GET", path, b"").await
                    };
                    let (status, _) = r.await.with_context(|| format!("GET {path}"))?;
                    if status != 200 {
                        bail!("GET {path}: HTTP {status}");
                    }
                    Ok(())
                })
            })
        }
    })
}

pub(super) fn dubbo_op(addr: SocketAddr) -> Result<Op> {
    let url: rdubbo::Url = format!("dubbo://{addr}/{IFACE}?timeout=3000").parse()?;
    let invoker = Arc::new(rdubbo::dubbo::DubboClient::new(&url).map_err(|e| anyhow!("{e}"))?);
    let client = GenericClient::new(invoker, IFACE)
        .version(Some("1.0.0"))
        .timeout(Duration::from_secs(3));
    Ok(Arc::new(move || {
        let client = client.clone();
        boxed(async move {
            let v = client
                .call("sayHello", vec![Value::from("legit")])
                .await
                .map_err(|e| anyhow!("{e}"))?;
            if v != Value::from("Hello legit") {
                bail!("unexpected answer {v:?}");
            }
            Ok(())
        })
    }))
}

pub(super) async fn login(addr: SocketAddr, source: Option<IpAddr>) -> Result<String> {
    let mut c = HttpConn::connect(addr, source).await?;
    let body = format!("username={}&password={}", target::USER, target::PASSWORD);
    let (status, answer) = c
        .request("POST", "/nacos/v1/auth/login", body.as_bytes())
        .await?;
    if status != 200 {
        bail!("login: HTTP {status} {}", String::from_utf8_lossy(&answer));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer)?;
    v.get("accessToken")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .context("login: no accessToken")
}

pub(super) async fn healthy_legit_instances(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<usize> {
    let token = match token {
        Some(_) => format!("&accessToken={}", login(addr, Some(LEGIT_SRC)).await?),
        None => String::new(),
    };
    let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
    let path = format!("/nacos/v1/ns/instance/list?serviceName={LEGIT_SERVICE}{token}");
    let (status, body) = c.request("GET", &path, b"").await?;
    if status != 200 {
        bail!("HTTP {status} {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v.get("hosts")
        .and_then(|h| h.as_array())
        .map(|hosts| {
            hosts
                .iter()
                .filter(|h| h.get("healthy").and_then(|b| b.as_bool()) == Some(true))
                .count()
        })
        .unwrap_or(0))
}

// ---------------------------------------------------------------- attacks

//! How configured sections become parts: a service's URL parameters and identity, a
//! protocol's server builder, a reference's builder. Pure translation, nothing started.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::config::{Config, ProtocolConfig, ReferenceConfig, ServiceConfig};
use super::{start_err, trace, AppError, Metrics};
use crate::cluster::filter::{Filter, Side};
use crate::cluster::Extensions;
use crate::consumer::{Reference, ReferenceBuilder};
use crate::provider::{Provider, ProviderBuilder};
use crate::{BoxFuture, Invocation, Invoker, Reply, RpcResult, ServiceInfo};

/// The ids of the services served over protocol `pid`.
pub(super) fn services_on<'c>(cfg: &'c Config, pid: &str) -> Vec<&'c String> {
    cfg.provider
        .services
        .iter()
        .filter(|(_, s)| {
            s.protocols
                .as_ref()
                .or(cfg.provider.protocols.as_ref())
                .is_none_or(|ps| ps.iter().any(|p| p == pid))
        })
        .map(|(id, _)| id)
        .collect()
}

/// The builder of the server of protocol `pid` (`name` is its protocol name), with its
/// listen address, before any export.
pub(super) fn server_builder(
    cfg: &Config,
    pid: &str,
    p: &ProtocolConfig,
    name: &str,
    extensions: &Arc<Extensions>,
) -> Result<(ProviderBuilder, SocketAddr), AppError> {
    let ip: IpAddr =
        p.ip.as_deref()
            .unwrap_or("127.0.0.1")
            .parse()
            .map_err(|e| start_err(format!("protocols.{pid}.ip"), e))?;
    let port = p
        .port
        .unwrap_or(if name == "dubbo" { 20880 } else { 30880 });
    let listen = SocketAddr::new(ip, port);
    let mut builder = Provider::builder(listen)
        .extensions(extensions.clone())
        .protocol(name)
        .application(&cfg.application.name)
        .unregister_wait(Duration::ZERO)
        .drain(cfg.shutdown.drain.0);
    if let Some(h) = &p.host {
        builder = builder.host(h);
    }
    // The limits of the built-in servers; a plug-in protocol configures itself.
    #[cfg(feature = "dubbo")]
    if name == "dubbo" && extensions.protocol("dubbo").is_some() {
        let mut c = rdubbo_protocol_dubbo::ServerConfig::default();
        if let Some(n) = p.max_connections {
            c.max_connections = n;
        }
        if let Some(n) = p.payload {
            c.payload = n;
        }
        if let Some(n) = p.max_pending {
            c.max_pending = n;
        }
        if p.ssl_enabled == Some(true) {
            c.tls = Some(server_tls(cfg, pid)?);
        }
        builder = builder.dubbo_config(c);
    }
    if name == "jsonrpc" && extensions.protocol("jsonrpc").is_some() {
        let mut c = rdubbo_protocol_jsonrpc::ServerConfig::default();
        if let Some(n) = p.max_connections {
            c.max_connections = n;
        }
        if let Some(n) = p.payload {
            c.max_body_size = n;
        }
        if let Some(n) = p.max_pending {
            c.max_concurrent_requests = n;
        }
        if p.ssl_enabled == Some(true) {
            c.tls = Some(server_tls(cfg, pid)?);
        }
        builder = builder.server_config(c);
    }
    #[cfg(feature = "triple")]
    if name == "tri" && p.ssl_enabled == Some(true) && extensions.protocol("tri").is_some() {
        builder = builder.triple_config(rdubbo_protocol_triple::ServerConfig {
            tls: Some(server_tls(cfg, pid)?),
            ..Default::default()
        });
    }
    Ok((builder, listen))
}

/// The server TLS of `[ssl]`, for protocol `pid` that asks for it.
fn server_tls(cfg: &Config, pid: &str) -> Result<rdubbo_protocol_jsonrpc::ServerTls, AppError> {
    let what = format!("protocols.{pid}.ssl_enabled");
    let (Some(chain), Some(key)) = (
        &cfg.ssl.server_key_cert_chain_path,
        &cfg.ssl.server_private_key_path,
    ) else {
        return Err(start_err(
            what,
            "needs ssl.server_key_cert_chain_path and ssl.server_private_key_path",
        ));
    };
    let ca = cfg.ssl.server_trust_cert_collection_path.as_deref();
    rdubbo_protocol_jsonrpc::ServerTls::from_pem_files(chain, key, ca.map(std::path::Path::new))
        .map_err(|e| start_err(what, e))
}

/// `b` with the client TLS of `[ssl]` (when it names a CA bundle) for the built-in
/// protocols, used to call providers whose URL says `ssl-enabled=true`.
pub(super) fn with_client_tls(
    cfg: &Config,
    b: ReferenceBuilder,
) -> Result<ReferenceBuilder, AppError> {
    let Some(ca) = &cfg.ssl.client_trust_cert_collection_path else {
        return Ok(b);
    };
    let identity = match (
        &cfg.ssl.client_key_cert_chain_path,
        &cfg.ssl.client_private_key_path,
    ) {
        (Some(c), Some(k)) => Some((std::path::Path::new(c), std::path::Path::new(k))),
        _ => None,
    };
    let tls = rdubbo_protocol_jsonrpc::ClientTls::from_pem_files(ca, identity)
        .map_err(|e| start_err("ssl (client side)", e))?;
    #[allow(unused_mut)]
    let mut protocols: Vec<Arc<dyn crate::Protocol>> = vec![Arc::new(
        rdubbo_protocol_jsonrpc::JsonRpcProtocol::new(rdubbo_protocol_jsonrpc::ClientConfig {
            tls: Some(tls.clone()),
            ..Default::default()
        }),
    )];
    #[cfg(feature = "triple")]
    protocols.push(Arc::new(rdubbo_protocol_triple::TripleProtocol::new(
        rdubbo_protocol_triple::ClientConfig {
            tls: Some(tls.clone()),
            ..Default::default()
        },
    )));
    #[cfg(feature = "dubbo")]
    protocols.push(Arc::new(rdubbo_protocol_dubbo::DubboProtocol::new(
        rdubbo_protocol_dubbo::ClientConfig {
            tls: Some(tls),
            ..Default::default()
        },
    )));
    Ok(b.protocols(protocols))
}

/// The identity a configured service is exported with: the configuration's version and
/// group first, then the implementation's.
pub(super) fn service_info(s: &ServiceConfig, code: &ServiceInfo) -> ServiceInfo {
    ServiceInfo {
        interface: s.interface.clone(),
        version: s
            .version
            .clone()
            .or_else(|| code.version.clone())
            .filter(|v| !v.is_empty()),
        group: s
            .group
            .clone()
            .or_else(|| code.group.clone())
            .filter(|g| !g.is_empty()),
        methods: code.methods.clone(),
        idl: code.idl,
        streams: code.streams.clone(),
    }
}

/// URL parameters of a configured service (registered and read by the provider filters).
pub(super) fn service_params(cfg: &Config, s: &ServiceConfig) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let app = &cfg.application;
    for (k, v) in [
        ("application.version", &app.version),
        ("owner", &app.owner),
        ("organization", &app.organization),
        ("environment", &app.environment),
    ] {
        if let Some(v) = v {
            params.push((k.to_owned(), v.clone()));
        }
    }
    if let Some(t) = s.timeout.or(cfg.provider.timeout) {
        params.push(("timeout".into(), t.0.as_millis().to_string()));
    }
    if let Some(w) = s.weight {
        params.push(("weight".into(), w.to_string()));
    }
    if let Some(n) = s.executes {
        params.push(("executes".into(), n.to_string()));
    }
    if let Some(n) = s.tps {
        params.push(("tps".into(), n.to_string()));
    }
    for (m, mc) in &s.methods {
        if let Some(t) = mc.timeout {
            params.push((format!("{m}.timeout"), t.0.as_millis().to_string()));
        }
        if let Some(n) = mc.retries {
            params.push((format!("{m}.retries"), n.to_string()));
        }
        if let Some(n) = mc.executes {
            params.push((format!("methods.{m}.executes"), n.to_string()));
        }
        if let Some(n) = mc.tps {
            params.push((format!("methods.{m}.tps"), n.to_string()));
        }
    }
    for (k, v) in &s.params {
        params.push((k.clone(), v.clone()));
    }
    params
}

/// The builder of a configured reference, with its parameters and filters; the caller
/// adds its direct URL or its registry.
pub(super) fn reference_builder(
    cfg: &Config,
    r: &ReferenceConfig,
    metrics: &Arc<Metrics>,
    extensions: &Arc<Extensions>,
) -> ReferenceBuilder {
    let mut b = Reference::builder(&r.interface)
        .extensions(extensions.clone())
        .application(&cfg.application.name)
        .retries(r.retries.unwrap_or(cfg.consumer.retries) as usize)
        .check(r.check.unwrap_or(cfg.consumer.check));
    if let Some(step) = cfg.application.migration_step {
        b = b.migration_step(step);
    }
    if let Some(v) = &r.version {
        b = b.version(v);
    }
    if let Some(g) = &r.group {
        b = b.group(g);
    }
    if let Some(lb) = &r.loadbalance {
        b = b.loadbalance(lb);
    }
    if let Some(c) = &r.cluster {
        b = b.cluster(c);
    }
    if let Some(a) = r.actives {
        b = b.param("actives", &a.to_string());
    }
    let timeout = r.timeout.unwrap_or(cfg.consumer.timeout).0;
    b = b.param("timeout", &timeout.as_millis().to_string());
    let mut method_timeouts = HashMap::new();
    for (m, mc) in &r.methods {
        if let Some(t) = mc.timeout {
            method_timeouts.insert(m.clone(), t.0);
            b = b.param(
                &format!("methods.{m}.timeout"),
                &t.0.as_millis().to_string(),
            );
        }
        if let Some(n) = mc.retries {
            b = b.param(&format!("methods.{m}.retries"), &n.to_string());
        }
        if let Some(lb) = &mc.loadbalance {
            b = b.param(&format!("methods.{m}.loadbalance"), lb);
        }
        if let Some(a) = mc.actives {
            b = b.param(&format!("methods.{m}.actives"), &a.to_string());
        }
    }
    for (k, v) in &r.params {
        b = b.param(k, v);
    }
    b.filter(trace::filter(Side::Consumer))
        .filter(metrics.filter(Side::Consumer))
        .filter(Arc::new(DefaultTimeout {
            default: timeout,
            methods: method_timeouts,
        }))
}

/// Sets a default timeout (per method first) on calls that have none.
struct DefaultTimeout {
    default: Duration,
    methods: HashMap<String, Duration>,
}

impl Filter for DefaultTimeout {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        mut invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        if invocation.timeout.is_none() {
            let t = self
                .methods
                .get(&*invocation.method)
                .copied()
                .unwrap_or(self.default);
            invocation.timeout = Some(t);
        }
        next.invoke(invocation)
    }
}

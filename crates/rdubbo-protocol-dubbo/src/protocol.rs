//! The [`Protocol`] for `dubbo://`: refers provider URLs to [`DubboClient`]s (consumer
//! side) and serves exports on a [`DubboServer`] (provider side).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::{
    BoxFuture, Export, Invoker, Protocol, RpcResult, ServeResult, Server, SetupError, Url,
};

use crate::client::{ClientConfig, DubboClient};
use crate::server::{DubboServer, ServerConfig};

/// Refers `dubbo://` provider URLs to [`DubboClient`]s and serves exports on a
/// [`DubboServer`] with the limits of its [`ServerConfig`].
///
/// ```
/// use std::sync::Arc;
/// use rdubbo_core::{Protocol, ServiceInfo};
/// use rdubbo_protocol_dubbo::{DubboProtocol, ServerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rdubbo_core::SetupError> {
/// let protocol = DubboProtocol::default().with_server_config(ServerConfig {
///     max_connections: 64,
///     ..ServerConfig::default()
/// });
/// let server = protocol.serve("127.0.0.1:0".parse().unwrap(), Vec::new()).await?;
/// assert_ne!(server.local_addr().port(), 0);
/// server.shutdown(std::time::Duration::ZERO).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct DubboProtocol {
    config: ClientConfig,
    server: ServerConfig,
}

impl DubboProtocol {
    /// A protocol whose clients start from `config` (URL parameters still apply).
    pub fn new(config: ClientConfig) -> Self {
        DubboProtocol {
            config,
            server: ServerConfig::default(),
        }
    }

    /// The same protocol serving with the limits and timings of `config`.
    pub fn with_server_config(mut self, config: ServerConfig) -> Self {
        self.server = config;
        self
    }

    /// The limits its servers start with.
    pub fn server_config(&self) -> &ServerConfig {
        &self.server
    }
}

impl Protocol for DubboProtocol {
    fn name(&self) -> &'static str {
        "dubbo"
    }

    fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
        Ok(Arc::new(DubboClient::with_config(
            url,
            self.config.clone().from_url(url),
        )?))
    }

    fn serve(&self, listen: SocketAddr, exports: Vec<Export>) -> BoxFuture<'static, ServeResult> {
        let mut builder = DubboServer::builder().config(self.server.clone());
        for export in exports {
            builder = builder.export(export.info, export.invoker);
        }
        Box::pin(async move {
            let server = builder
                .bind(listen)
                .await
                .map_err(|e| SetupError::io(format!("bind dubbo server on {listen}"), e))?;
            Ok(Box::new(server) as Box<dyn Server>)
        })
    }
}

impl Server for DubboServer {
    fn local_addr(&self) -> SocketAddr {
        DubboServer::local_addr(self)
    }

    fn connections(&self) -> usize {
        DubboServer::connections(self)
    }

    fn shutdown(self: Box<Self>, drain: Duration) -> BoxFuture<'static, ()> {
        Box::pin(DubboServer::shutdown(*self, drain))
    }
}

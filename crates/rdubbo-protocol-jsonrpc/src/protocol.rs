//! The `jsonrpc` [`Protocol`]: refers provider URLs to [`JsonRpcClient`]s (consumer side)
//! and serves exports on a [`JsonRpcServer`] (provider side), each service at the path of
//! its interface name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::{
    BoxFuture, Export, Invoker, Protocol, RpcResult, ServeResult, Server, SetupError, Url,
};

use crate::client::{ClientConfig, JsonRpcClient};
use crate::server::{JsonRpcServer, ServerConfig};

/// Refers `jsonrpc://` provider URLs to [`JsonRpcClient`]s and serves exports on a
/// [`JsonRpcServer`] with the limits of its [`ServerConfig`].
///
/// ```
/// use rdubbo_core::Protocol;
/// use rdubbo_protocol_jsonrpc::{JsonRpcProtocol, ServerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rdubbo_core::SetupError> {
/// let protocol = JsonRpcProtocol::default().with_server_config(ServerConfig {
///     max_connections: 64,
///     ..ServerConfig::default()
/// });
/// let server = protocol.serve("127.0.0.1:0".parse().unwrap(), Vec::new()).await?;
/// assert_ne!(server.local_addr().port(), 0);
/// server.shutdown(std::time::Duration::ZERO).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct JsonRpcProtocol {
    config: ClientConfig,
    server: ServerConfig,
}

impl JsonRpcProtocol {
    /// The protocol with the given client settings.
    pub fn new(config: ClientConfig) -> Self {
        JsonRpcProtocol {
            config,
            server: ServerConfig::default(),
        }
    }

    /// The same protocol serving with the limits of `config`.
    pub fn with_server_config(mut self, config: ServerConfig) -> Self {
        self.server = config;
        self
    }

    /// The limits its servers start with.
    pub fn server_config(&self) -> &ServerConfig {
        &self.server
    }
}

impl Protocol for JsonRpcProtocol {
    fn name(&self) -> &'static str {
        "jsonrpc"
    }

    fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
        Ok(Arc::new(JsonRpcClient::with_config(
            url,
            self.config.clone(),
        )?))
    }

    fn serve(&self, listen: SocketAddr, exports: Vec<Export>) -> BoxFuture<'static, ServeResult> {
        let mut builder = JsonRpcServer::builder().config(self.server.clone());
        for export in exports {
            let path = export.info.interface.clone();
            builder = builder.export(&path, export.info, export.invoker);
        }
        Box::pin(async move {
            let server = builder
                .bind(listen)
                .await
                .map_err(|e| SetupError::io(format!("bind jsonrpc server on {listen}"), e))?;
            Ok(Box::new(server) as Box<dyn Server>)
        })
    }
}

impl Server for JsonRpcServer {
    fn local_addr(&self) -> SocketAddr {
        JsonRpcServer::local_addr(self)
    }

    fn connections(&self) -> usize {
        JsonRpcServer::connections(self)
    }

    fn shutdown(self: Box<Self>, drain: Duration) -> BoxFuture<'static, ()> {
        Box::pin(JsonRpcServer::shutdown(*self, drain))
    }
}

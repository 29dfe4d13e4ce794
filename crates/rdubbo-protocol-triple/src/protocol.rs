//! The [`Protocol`] for `tri://`: refers provider URLs to [`TripleClient`]s (consumer side)
//! and serves exports on a [`TripleServer`] (provider side).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::{
    BoxFuture, Export, Invoker, Protocol, RpcResult, ServeResult, Server, SetupError, Url,
};

use crate::client::{ClientConfig, TripleClient};
use crate::server::{ServerConfig, TripleServer};

/// Refers `tri://` provider URLs to [`TripleClient`]s and serves exports on a
/// [`TripleServer`] with the limits of its [`ServerConfig`].
///
/// ```
/// use rdubbo_core::Protocol;
/// use rdubbo_protocol_triple::{ServerConfig, TripleProtocol};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rdubbo_core::SetupError> {
/// let protocol = TripleProtocol::default().with_server_config(ServerConfig {
///     max_connections: 64,
///     ..ServerConfig::default()
/// });
/// assert_eq!(protocol.name(), "tri");
/// let server = protocol.serve("127.0.0.1:0".parse().unwrap(), Vec::new()).await?;
/// assert_ne!(server.local_addr().port(), 0);
/// server.shutdown(std::time::Duration::ZERO).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TripleProtocol {
    config: ClientConfig,
    server: ServerConfig,
}

impl TripleProtocol {
    /// A protocol whose clients start from `config` (URL parameters still apply; its
    /// [`tls`](ClientConfig::tls) is used for provider URLs saying `ssl-enabled=true`).
    pub fn new(config: ClientConfig) -> Self {
        TripleProtocol {
            config,
            server: ServerConfig::default(),
        }
    }

    /// The same protocol serving with the limits and timings of `config` (TLS with its
    /// [`tls`](ServerConfig::tls)).
    pub fn with_server_config(mut self, config: ServerConfig) -> Self {
        self.server = config;
        self
    }

    /// The limits its servers start with.
    pub fn server_config(&self) -> &ServerConfig {
        &self.server
    }
}

impl Protocol for TripleProtocol {
    fn name(&self) -> &'static str {
        "tri"
    }

    fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
        Ok(Arc::new(TripleClient::with_config(
            url,
            self.config.clone().from_url(url),
        )?))
    }

    fn serve(&self, listen: SocketAddr, exports: Vec<Export>) -> BoxFuture<'static, ServeResult> {
        let mut builder = TripleServer::builder().config(self.server.clone());
        for export in exports {
            builder = builder.export(export.info, export.invoker);
        }
        Box::pin(async move {
            let server = builder
                .bind(listen)
                .await
                .map_err(|e| SetupError::io(format!("bind triple server on {listen}"), e))?;
            Ok(Box::new(server) as Box<dyn Server>)
        })
    }
}

impl Server for TripleServer {
    fn local_addr(&self) -> SocketAddr {
        TripleServer::local_addr(self)
    }

    fn connections(&self) -> usize {
        TripleServer::connections(self)
    }

    fn shutdown(self: Box<Self>, drain: Duration) -> BoxFuture<'static, ()> {
        Box::pin(TripleServer::shutdown(*self, drain))
    }
}

//! The `jsonrpc` [`Protocol`] for consumers.

use std::sync::Arc;

use rdubbo_core::{Invoker, Protocol, RpcResult, Url};

use crate::client::{ClientConfig, JsonRpcClient};

/// Refers `jsonrpc://` provider URLs to [`JsonRpcClient`]s.
#[derive(Debug, Clone, Default)]
pub struct JsonRpcProtocol {
    config: ClientConfig,
}

impl JsonRpcProtocol {
    /// The protocol with the given client settings.
    pub fn new(config: ClientConfig) -> Self {
        JsonRpcProtocol { config }
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
}

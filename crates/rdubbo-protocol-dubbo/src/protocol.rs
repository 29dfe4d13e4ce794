//! The consumer-side [`Protocol`] for `dubbo://` provider URLs.

use std::sync::Arc;

use rdubbo_core::{Invoker, Protocol, RpcResult, Url};

use crate::client::{ClientConfig, DubboClient};

/// Refers `dubbo://` provider URLs to [`DubboClient`]s.
#[derive(Debug, Clone, Default)]
pub struct DubboProtocol {
    config: ClientConfig,
}

impl DubboProtocol {
    /// A protocol whose clients start from `config` (URL parameters still apply).
    pub fn new(config: ClientConfig) -> Self {
        DubboProtocol { config }
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
}

//! The one call abstraction shared by consumers and providers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Invocation, Reply, RpcResult};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that answers invocations: a protocol client bound to a provider, a cluster of
/// them, a filter wrapped around another invoker, or a provider-side service dispatcher.
pub trait Invoker: Send + Sync + 'static {
    /// Performs the call.
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>>;
}

impl<T: Invoker + ?Sized> Invoker for Arc<T> {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        (**self).invoke(invocation)
    }
}

/// What a provider exports: the identity of a service and its methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Interface name.
    pub interface: String,
    /// Version, if any.
    pub version: Option<String>,
    /// Group, if any.
    pub group: Option<String>,
    /// Method names as the wire spells them.
    pub methods: Vec<String>,
}

impl ServiceInfo {
    /// The service key `[group/]interface[:version]`.
    pub fn service_key(&self) -> String {
        crate::url::service_key(
            self.group.as_deref(),
            &self.interface,
            self.version.as_deref(),
        )
    }
}

/// A wire protocol on the consumer side: turns a provider URL (`jsonrpc://…`, `dubbo://…`)
/// into an [`Invoker`] that calls that provider. Registries hand out provider URLs; the
/// consumer picks, for each one, the protocol registered under its scheme.
pub trait Protocol: Send + Sync + 'static {
    /// The URL scheme this protocol serves (`jsonrpc`).
    fn name(&self) -> &'static str;
    /// An invoker calling the provider at `url`. Must not block; connections are made
    /// lazily on the first call.
    fn refer(&self, url: &crate::Url) -> RpcResult<Arc<dyn Invoker>>;
}

//! The one call abstraction shared by consumers and providers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Invocation, Reply, RpcResult, SetupError};

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

/// How a method's calls carry messages: one each way, or a stream on either side or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MethodKind {
    /// One request, one response.
    #[default]
    Unary,
    /// One request, a stream of responses.
    ServerStream,
    /// A stream of requests, one response.
    ClientStream,
    /// Streams both ways.
    BidiStream,
}

impl MethodKind {
    /// Whether the caller sends a stream.
    pub fn client_streams(self) -> bool {
        matches!(self, MethodKind::ClientStream | MethodKind::BidiStream)
    }

    /// Whether the answer is a stream.
    pub fn server_streams(self) -> bool {
        matches!(self, MethodKind::ServerStream | MethodKind::BidiStream)
    }
}

/// What a provider exports: the identity of a service and its methods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    /// Interface name.
    pub interface: String,
    /// Version, if any.
    pub version: Option<String>,
    /// Group, if any.
    pub group: Option<String>,
    /// Method names as the wire spells them.
    pub methods: Vec<String>,
    /// A protobuf (IDL) service: each request and response is one encoded message
    /// ([`crate::Args::Message`], [`crate::Reply::Message`]) rather than Java values.
    pub idl: bool,
    /// The streaming methods and their kind; a method not listed is unary.
    pub streams: Vec<(String, MethodKind)>,
}

impl ServiceInfo {
    /// The kind of `method` (unary unless listed in `streams`).
    pub fn method_kind(&self, method: &str) -> MethodKind {
        self.streams
            .iter()
            .find(|(m, _)| m == method)
            .map_or(MethodKind::Unary, |(_, k)| *k)
    }

    /// The service key `[group/]interface[:version]`.
    pub fn service_key(&self) -> String {
        crate::url::service_key(
            self.group.as_deref(),
            &self.interface,
            self.version.as_deref(),
        )
    }
}

/// Middleware built once around an invoker: the result answers every call, usually by
/// doing something around `inner` (tower's `Layer`, over rdubbo's [`Invoker`]).
///
/// A layer is applied when a chain is built (a reference, a provider's export, each
/// provider of a cluster), not per call: a layer that only looks at the invocation and
/// forwards it (`inner.invoke(inv)`) costs no allocation of its own.
///
/// ```
/// use std::sync::Arc;
/// use rdubbo_core::{BoxFuture, Invocation, Invoker, Layer, Reply, RpcResult};
///
/// /// Adds `tenant=acme` to every call.
/// struct Tenant;
/// struct WithTenant(Arc<dyn Invoker>);
///
/// impl Layer for Tenant {
///     fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
///         Arc::new(WithTenant(inner))
///     }
/// }
///
/// impl Invoker for WithTenant {
///     fn invoke(&self, mut inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
///         inv.attachments.insert("tenant", "acme");
///         self.0.invoke(inv)
///     }
/// }
/// ```
pub trait Layer: Send + Sync + 'static {
    /// Wraps `inner`.
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker>;
}

impl<T: Layer + ?Sized> Layer for Arc<T> {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        (**self).layer(inner)
    }
}

/// Wraps `inner` in `layers`; the first layer is the outermost (sees a call first).
pub fn layered(inner: Arc<dyn Invoker>, layers: &[Arc<dyn Layer>]) -> Arc<dyn Invoker> {
    layers
        .iter()
        .rev()
        .fold(inner, |next, layer| layer.layer(next))
}

/// A wire protocol: turns a provider URL (`jsonrpc://…`, `dubbo://…`) into an [`Invoker`]
/// that calls that provider (consumer side), and serves exported invokers on a port
/// (provider side). Registries hand out provider URLs; the consumer picks, for each one,
/// the protocol registered under its scheme in its extension table.
pub trait Protocol: Send + Sync + 'static {
    /// The URL scheme this protocol serves (`jsonrpc`).
    fn name(&self) -> &'static str;
    /// An invoker calling the provider at `url`. Must not block; connections are made
    /// lazily on the first call.
    fn refer(&self, url: &crate::Url) -> RpcResult<Arc<dyn Invoker>>;
    /// Binds `listen` and serves `exports` on it. The default answers that this protocol
    /// is consumer-only.
    fn serve(&self, listen: SocketAddr, exports: Vec<Export>) -> BoxFuture<'static, ServeResult> {
        let _ = (listen, exports);
        let name = self.name();
        Box::pin(async move {
            Err(SetupError::Unsupported(format!(
                "protocol `{name}` has no server"
            )))
        })
    }
}

/// What [`Protocol::serve`] gives: a running server, or why it could not start.
pub type ServeResult = Result<Box<dyn Server>, SetupError>;

/// One service exported by a server: who it is and what answers its calls.
#[derive(Clone)]
pub struct Export {
    /// The service.
    pub info: ServiceInfo,
    /// Its dispatcher (with the provider's layers around it).
    pub invoker: Arc<dyn Invoker>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").field("info", &self.info).finish()
    }
}

/// A running protocol server (see [`Protocol::serve`]).
pub trait Server: Send + Sync + 'static {
    /// The address it listens on.
    fn local_addr(&self) -> SocketAddr;
    /// Open connections.
    fn connections(&self) -> usize;
    /// Stops gracefully: refuse new calls (with a retryable error), give in-flight calls
    /// up to `drain` to finish, then close every connection.
    fn shutdown(self: Box<Self>, drain: Duration) -> BoxFuture<'static, ()>;
}

//! Generic invocation: call or serve any interface with dynamic [`Value`]s, no trait needed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::codes;
use crate::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Value};

/// Calls any method of any interface through an invoker.
///
/// ```
/// # use std::sync::Arc;
/// use rdubbo::generic::{GenericClient, GenericService};
/// use rdubbo::{ServiceInfo, Value};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> rdubbo::RpcResult<()> {
/// let info = ServiceInfo { interface: "com.foo.Echo".into(), version: None, group: None, methods: vec!["echo".into()], ..Default::default() };
/// let service = GenericService::new(info, |inv| async move {
///     Ok(inv.args.into_values().map_err(rdubbo::RpcError::Codec)?.pop().unwrap_or(Value::Null))
/// });
/// let client = GenericClient::new(Arc::new(service), "com.foo.Echo");
/// assert_eq!(client.call("echo", vec![Value::from(7)]).await?, Value::from(7));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GenericClient {
    invoker: Arc<dyn Invoker>,
    interface: Arc<str>,
    version: Option<Arc<str>>,
    group: Option<Arc<str>>,
    timeout: Option<Duration>,
}

impl GenericClient {
    /// A client for `interface` through `invoker`.
    pub fn new(invoker: Arc<dyn Invoker>, interface: &str) -> Self {
        GenericClient {
            invoker,
            interface: Arc::from(interface),
            version: None,
            group: None,
            timeout: None,
        }
    }
    /// Calls this version.
    pub fn version(mut self, version: Option<&str>) -> Self {
        self.version = version.filter(|v| !v.is_empty()).map(Arc::from);
        self
    }
    /// Calls this group.
    pub fn group(mut self, group: Option<&str>) -> Self {
        self.group = group.filter(|g| !g.is_empty()).map(Arc::from);
        self
    }
    /// Sets the timeout of each call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Calls `method` with positional `args`.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> RpcResult<Value> {
        self.call_typed(method, args, Vec::new()).await
    }

    /// Calls `method` with positional `args` sent as the Java types `types` (JVM
    /// descriptors or Java names: `J`, `java.lang.Long`, `com.example.User`), as Java
    /// Dubbo needs to find a method by its exact signature.
    pub async fn call_typed(
        &self,
        method: &str,
        args: Vec<Value>,
        types: Vec<String>,
    ) -> RpcResult<Value> {
        let types = types
            .iter()
            .map(|t| crate::json::descriptor_from_name(t))
            .collect();
        let mut inv = Invocation::new(self.interface.clone(), method, args);
        inv.version = self.version.clone();
        inv.group = self.group.clone();
        inv.timeout = self.timeout;
        let inv = inv.with_parameter_types(types);
        self.invoker
            .invoke(inv)
            .await?
            .into_value()
            .map_err(RpcError::Codec)
    }
}

/// Serves an interface with a closure over invocations.
pub struct GenericService<F> {
    info: ServiceInfo,
    handler: Arc<F>,
}

impl<F, Fut> GenericService<F>
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = RpcResult<Value>> + Send + 'static,
{
    /// A service described by `info` answered by `handler`. When `info.methods` is not
    /// empty, other method names are answered "method not found" without calling `handler`.
    pub fn new(info: ServiceInfo, handler: F) -> Self {
        GenericService {
            info,
            handler: Arc::new(handler),
        }
    }
    /// The exported identity.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }
}

impl<F, Fut> Invoker for GenericService<F>
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = RpcResult<Value>> + Send + 'static,
{
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        if !self.info.methods.is_empty()
            && !self.info.methods.iter().any(|m| **m == *invocation.method)
        {
            let err = RpcError::remote(
                codes::METHOD_NOT_FOUND,
                format!("no method {} in {}", invocation.method, self.info.interface),
            );
            return Box::pin(async move { Err(err) });
        }
        let call = (self.handler)(invocation);
        Box::pin(async move { call.await.map(Reply::Value) })
    }
}

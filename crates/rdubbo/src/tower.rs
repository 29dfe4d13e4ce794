//! Bridges with [tower](https://docs.rs/tower): a `tower::Layer` used as an rdubbo
//! [`Layer`], and an rdubbo [`Invoker`] used as a `tower::Service`.
//!
//! Any tower middleware whose service is `Clone` (timeouts, concurrency limits, load
//! shedding, retries, tracing, most of tower-http's ideas) plugs into a reference, a
//! provider or a cluster attempt:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rdubbo::tower::TowerLayer;
//!
//! let timeout: Arc<dyn rdubbo::Layer> =
//!     Arc::new(TowerLayer::new(tower::timeout::TimeoutLayer::new(Duration::from_millis(200))));
//! // Reference::builder(…).layer(timeout.clone()), Provider::builder(…).layer(timeout) …
//! ```
//!
//! A tower service that is not `Clone` (`tower::limit::RateLimit` keeps its budget per
//! instance) goes behind `tower::buffer::BufferLayer`, as tower documents. Errors from tower
//! middleware become [`RpcError`]s: an [`RpcError`] passes through, tower's timeout
//! (`Elapsed`) becomes [`RpcError::Timeout`], load shedding (`Overloaded`) a retryable
//! "busy" error, anything else a local [`RpcError::Limit`] with its text.
//!
//! The other way round, [`InvokerService`] is a `tower::Service<Invocation>`, so a tower
//! stack can end in an rdubbo reference:
//!
//! ```
//! # use std::sync::Arc;
//! # use rdubbo::{Invocation, Invoker, RpcResult};
//! # #[rdubbo::service(interface = "org.example.Greeter")]
//! # pub trait Greeter { async fn say_hello(&self, name: String) -> RpcResult<String>; }
//! # struct Hello;
//! # impl Greeter for Hello {
//! #     async fn say_hello(&self, name: String) -> RpcResult<String> { Ok(format!("Hello {name}")) }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> RpcResult<()> {
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let invoker: Arc<dyn Invoker> = Arc::new(GreeterServer::new(Hello));
//! let mut svc = ServiceBuilder::new()
//!     .concurrency_limit(64)
//!     .service(rdubbo::tower::service(invoker));
//! let call = Invocation::new("org.example.Greeter", "sayHello", vec![rdubbo::Value::from("Ann")]);
//! let reply = svc.ready().await?.call(call).await?;
//! assert_eq!(reply.to_value().unwrap(), rdubbo::Value::from("Hello Ann"));
//! # Ok(()) }
//! ```

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer as TowerLayerTrait, Service};

use crate::error::codes;
use crate::{BoxFuture, Invocation, Invoker, Layer, Reply, RpcError, RpcResult};

/// An rdubbo [`Invoker`] as a `tower::Service<Invocation>`: always ready, cheap to clone.
#[derive(Clone)]
pub struct InvokerService {
    inner: Arc<dyn Invoker>,
}

impl std::fmt::Debug for InvokerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokerService").finish_non_exhaustive()
    }
}

/// `invoker` as a `tower::Service`.
pub fn service(invoker: Arc<dyn Invoker>) -> InvokerService {
    InvokerService { inner: invoker }
}

impl InvokerService {
    /// The invoker this service calls.
    pub fn invoker(&self) -> &Arc<dyn Invoker> {
        &self.inner
    }
}

impl Service<Invocation> for InvokerService {
    type Response = Reply;
    type Error = RpcError;
    type Future = BoxFuture<'static, RpcResult<Reply>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        self.inner.invoke(invocation)
    }
}

/// A `tower::Layer` over [`InvokerService`] used as an rdubbo [`Layer`].
///
/// The layered service is built once, when the rdubbo chain is built; each call clones it
/// (tower's usual contract), waits for it to be ready and calls it.
#[derive(Debug, Clone)]
pub struct TowerLayer<L> {
    layer: L,
}

impl<L> TowerLayer<L> {
    /// Wraps a tower layer.
    pub fn new(layer: L) -> TowerLayer<L> {
        TowerLayer { layer }
    }
}

impl<L, S, E> Layer for TowerLayer<L>
where
    L: TowerLayerTrait<InvokerService, Service = S> + Send + Sync + 'static,
    S: Service<Invocation, Response = Reply, Error = E> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    E: Into<tower::BoxError> + 'static,
{
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(TowerInvoker {
            service: self.layer.layer(service(inner)),
        })
    }
}

struct TowerInvoker<S> {
    service: S,
}

impl<S, E> Invoker for TowerInvoker<S>
where
    S: Service<Invocation, Response = Reply, Error = E> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    E: Into<tower::BoxError> + 'static,
{
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let mut service = self.service.clone();
        Box::pin(async move {
            let budget = invocation.timeout;
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| to_rpc_error(e.into(), budget))?;
            service
                .call(invocation)
                .await
                .map_err(|e| to_rpc_error(e.into(), budget))
        })
    }
}

/// The [`RpcError`] a tower error stands for (see the module docs).
pub fn to_rpc_error(error: tower::BoxError, budget: Option<Duration>) -> RpcError {
    let error = match error.downcast::<RpcError>() {
        Ok(e) => return *e,
        Err(other) => other,
    };
    if error.is::<tower::timeout::error::Elapsed>() {
        return RpcError::Timeout(budget.unwrap_or_default());
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        return RpcError::remote(codes::SERVER_BUSY, error.to_string());
    }
    RpcError::Limit(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    struct Slow(Duration);
    impl Invoker for Slow {
        fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            let wait = self.0;
            Box::pin(async move {
                tokio::time::sleep(wait).await;
                Ok(Reply::Value(Value::from(inv.method.to_string())))
            })
        }
    }

    fn call() -> Invocation {
        Invocation::new("org.example.Slow", "run", Vec::<Value>::new())
    }

    #[tokio::test(start_paused = true)]
    async fn tower_timeout_answers_an_rdubbo_timeout() {
        let layer = TowerLayer::new(tower::timeout::TimeoutLayer::new(Duration::from_millis(50)));
        let fast = layer.layer(Arc::new(Slow(Duration::from_millis(10))));
        assert_eq!(
            fast.invoke(call()).await.unwrap().to_value().unwrap(),
            Value::from("run")
        );
        let slow = layer.layer(Arc::new(Slow(Duration::from_secs(5))));
        let mut inv = call();
        inv.timeout = Some(Duration::from_millis(50));
        let err = slow.invoke(inv).await.unwrap_err();
        assert_eq!(err, RpcError::Timeout(Duration::from_millis(50)));
        assert!(err.is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn load_shedding_is_a_retryable_busy_error() {
        let stack = tower::ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1)
            .into_inner();
        let layer = TowerLayer::new(stack);
        let invoker = layer.layer(Arc::new(Slow(Duration::from_secs(1))));
        let first = tokio::spawn(invoker.invoke(call()));
        tokio::task::yield_now().await;
        let err = invoker.invoke(call()).await.unwrap_err();
        assert_eq!(err.code(), codes::SERVER_BUSY, "{err}");
        assert!(err.is_retryable());
        assert!(first.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn rpc_errors_pass_through_unchanged() {
        struct Fails;
        impl Invoker for Fails {
            fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
                Box::pin(async { Err(RpcError::java("com.example.Boom", "boom")) })
            }
        }
        let layer = TowerLayer::new(tower::limit::ConcurrencyLimitLayer::new(4));
        let err = layer
            .layer(Arc::new(Fails))
            .invoke(call())
            .await
            .unwrap_err();
        assert_eq!(err.java_class(), Some("com.example.Boom"));
    }
}

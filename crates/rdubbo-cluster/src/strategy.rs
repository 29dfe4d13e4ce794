//! Cluster strategies (`cluster=`): how one call uses the providers of a reference.
//!
//! A [`ClusterStrategy`] gets the [`Cluster`] of the reference (its routed provider list,
//! the load balancer of the method, provider health, `retries`/`forks` as configured, one
//! attempt with its bookkeeping, background retries) and the invocation. The six strategies
//! of Dubbo are built in and registered in [`Extensions`] exactly as a
//! user's own: [`Failover`] (the default), [`Failfast`], [`Failsafe`], [`Failback`],
//! [`Forking`] and [`Broadcast`].
//!
//! ```
//! use rdubbo_cluster::{Cluster, ClusterStrategy, Extensions};
//! use rdubbo_core::{BoxFuture, Invocation, Reply, RpcResult};
//!
//! /// One attempt on the provider the balancer picks; no retry.
//! struct Once;
//!
//! impl ClusterStrategy for Once {
//!     fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
//!         let cluster = cluster.clone();
//!         Box::pin(async move {
//!             let providers = cluster.list(&inv);
//!             let Some(provider) = cluster.select(&providers, &[], &inv) else {
//!                 return Err(cluster.no_provider());
//!             };
//!             cluster.attempt(&provider, inv, 1).await
//!         })
//!     }
//! }
//!
//! let mut table = Extensions::with_cluster_builtins();
//! table.add_cluster("once", Once);
//! assert!(table.check_cluster("once").is_ok());
//! assert!(table.cluster_names().contains(&"failover"));
//! ```

use std::sync::Arc;

use rdubbo_core::{BoxFuture, Invocation, Reply, RpcError, RpcResult, Value};

use crate::{Cluster, Extensions, Provider};

/// The strategy used when the consumer URL names none.
pub const DEFAULT_CLUSTER: &str = "failover";

/// How a cluster answers one call. Registered by name in [`Extensions`] and chosen by
/// the consumer URL's `cluster` parameter; one value serves every reference that names it,
/// so state of one reference belongs in the [`Cluster`] (see
/// [`Cluster::retry_in_background`]).
pub trait ClusterStrategy: Send + Sync + 'static {
    /// Answers `invocation` with the providers of `cluster`.
    fn invoke(
        &self,
        cluster: &Cluster,
        invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>>;
}

impl<T: ClusterStrategy + ?Sized> ClusterStrategy for Arc<T> {
    fn invoke(
        &self,
        cluster: &Cluster,
        invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        (**self).invoke(cluster, invocation)
    }
}

/// Registers the six strategies of Dubbo in `table`, as a user registers a plugin.
pub fn register_builtins(table: &mut Extensions) {
    table.add_cluster("failover", Failover);
    table.add_cluster("failfast", Failfast);
    table.add_cluster("failsafe", Failsafe);
    table.add_cluster("failback", Failback);
    table.add_cluster("forking", Forking);
    table.add_cluster("broadcast", Broadcast);
}

/// On a retryable failure try another provider, up to `retries` (default 2; method-level
/// `methods.<m>.retries` first) more times, within the call's one deadline.
#[derive(Debug, Default, Clone, Copy)]
pub struct Failover;

impl ClusterStrategy for Failover {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let cluster = cluster.clone();
        Box::pin(async move {
            let providers = cluster.list(&inv);
            let retries = cluster.routed_retries(&providers, &inv.method);
            cluster.failover(inv, retries).await
        })
    }
}

/// One attempt; its error is the call's error.
#[derive(Debug, Default, Clone, Copy)]
pub struct Failfast;

impl ClusterStrategy for Failfast {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let cluster = cluster.clone();
        Box::pin(async move { cluster.failover(inv, 0).await })
    }
}

/// One attempt; an error is logged and answered with `null`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Failsafe;

impl ClusterStrategy for Failsafe {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let cluster = cluster.clone();
        Box::pin(async move {
            match cluster.failover(inv, 0).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::warn!(service = %cluster.directory().service_key(), error = %e, "failsafe: error ignored");
                    Ok(Reply::Value(Value::Null))
                }
            }
        })
    }
}

/// One attempt; an error is answered with `null` and the call is retried in the
/// background ([`Cluster::retry_in_background`]: bounded queue, every 5 s, up to
/// `retries` times, default 3).
#[derive(Debug, Default, Clone, Copy)]
pub struct Failback;

impl ClusterStrategy for Failback {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let cluster = cluster.clone();
        Box::pin(async move {
            match cluster.failover(inv.clone(), 0).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::warn!(service = %cluster.directory().service_key(), error = %e, "failback: will retry in the background");
                    cluster.retry_in_background(inv);
                    Ok(Reply::Value(Value::Null))
                }
            }
        })
    }
}

/// `forks` (default 2) providers called at once; the first success wins, else the last
/// error.
#[derive(Debug, Default, Clone, Copy)]
pub struct Forking;

impl ClusterStrategy for Forking {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let cluster = cluster.clone();
        Box::pin(async move {
            let forks = cluster.forks();
            let providers = cluster.list(&inv);
            let mut chosen: Vec<Arc<Provider>> = Vec::new();
            while chosen.len() < forks.min(providers.len()) {
                let Some(p) = cluster.select(&providers, &chosen, &inv) else {
                    break;
                };
                if chosen.iter().any(|c| Arc::ptr_eq(c, &p)) {
                    break;
                }
                chosen.push(p);
            }
            if chosen.is_empty() {
                return Err(cluster.no_provider());
            }
            let mut set = tokio::task::JoinSet::new();
            for p in chosen {
                let (cluster, inv) = (cluster.clone(), inv.clone());
                set.spawn(async move { cluster.attempt(&p, inv, 1).await });
            }
            let mut last_error = None;
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) => last_error = Some(e),
                    Err(e) => {
                        last_error = Some(RpcError::Invalid(format!("forked call failed: {e}")))
                    }
                }
            }
            Err(last_error.unwrap_or_else(|| cluster.no_provider()))
        })
    }
}

/// Every provider is called; any error is the call's error, else the last result (in
/// provider order).
#[derive(Debug, Default, Clone, Copy)]
pub struct Broadcast;

impl ClusterStrategy for Broadcast {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let cluster = cluster.clone();
        Box::pin(async move {
            let providers = cluster.list(&inv);
            if providers.is_empty() {
                return Err(cluster.no_provider());
            }
            let mut set = tokio::task::JoinSet::new();
            for (i, p) in providers.iter().cloned().enumerate() {
                let (cluster, inv) = (cluster.clone(), inv.clone());
                set.spawn(async move { (i, cluster.attempt(&p, inv, 1).await) });
            }
            let mut results: Vec<(usize, RpcResult<Reply>)> = Vec::with_capacity(providers.len());
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok(r) => results.push(r),
                    Err(e) => results.push((
                        usize::MAX,
                        Err(RpcError::Invalid(format!("broadcast call failed: {e}"))),
                    )),
                }
            }
            results.sort_by_key(|(i, _)| *i);
            let mut last = Ok(Reply::Value(Value::Null));
            for (_, r) in results {
                match r {
                    Err(e) => return Err(e),
                    ok => last = ok,
                }
            }
            last
        })
    }
}

//! The cluster invoker: a [`ClusterStrategy`] (`cluster=`) over the providers of a
//! [`Directory`], with the balancers of `loadbalance=`, both resolved through an
//! [`Extensions`] table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, SetupError, Url};
use tracing::Instrument;

use arc_swap::ArcSwap;

use crate::extension::BalancerFactory;
use crate::loadbalance::{self, Candidates, LoadBalance};
use crate::route::Routed;
use crate::strategy::{ClusterStrategy, DEFAULT_CLUSTER};
use crate::{configurator, Directory, Extensions, Provider};

/// Interval between two "no provider" reports of one service.
const NO_PROVIDER_REPORT_EVERY: Duration = Duration::from_secs(10);
/// Failed calls a cluster keeps for background retries; older ones are dropped beyond it.
pub const FAILBACK_QUEUE_LIMIT: usize = 1024;
/// Period of background (failback) retries.
pub const FAILBACK_PERIOD: Duration = Duration::from_secs(5);
/// The balancer used when no `loadbalance` parameter names one.
pub const DEFAULT_LOADBALANCE: &str = "random";

/// Calls the providers of a [`Directory`] with the strategy and load balancer named by the
/// consumer URL (`cluster`, `loadbalance`, `retries`, `forks`; method-level
/// `methods.<m>.loadbalance`/`retries` first), looked up in an [`Extensions`] table.
/// Providers that fail to answer are ejected for a back-off period
/// ([`Health`](crate::Health)) and skipped while a healthy one exists. With no provider at
/// all the call fails at once with [`RpcError::NoProvider`], reported in the log at most
/// every 10 s.
#[derive(Clone)]
pub struct ClusterInvoker {
    cluster: Cluster,
    strategy: Arc<dyn ClusterStrategy>,
    name: Arc<str>,
}

/// What a [`ClusterStrategy`] works with: the providers of one reference, routed for a
/// call, the load balancer of the method, provider health, the configured `retries` and
/// `forks`, one attempt with its bookkeeping, and background retries. Cloning is cheap
/// (one `Arc`).
#[derive(Clone)]
pub struct Cluster {
    state: Arc<State>,
}

struct State {
    directory: Arc<Directory>,
    /// Balancer factories of the table, for names set by providers and configurators.
    factories: BTreeMap<String, BalancerFactory>,
    /// One balancer per name, made on first use (balancers may keep state).
    balancers: ArcSwap<HashMap<String, Arc<dyn LoadBalance>>>,
    started: Instant,
    /// Milliseconds since `started` of the last "no provider" report.
    last_report_ms: AtomicU64,
    /// Calls refused since the last report.
    refused_since_report: AtomicU64,
    failback: Mutex<VecDeque<(Invocation, u32)>>,
    failback_running: AtomicBool,
}

impl std::fmt::Debug for ClusterInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterInvoker")
            .field("directory", &self.cluster.state.directory)
            .field("strategy", &self.name)
            .finish()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("directory", &self.state.directory)
            .finish()
    }
}

impl ClusterInvoker {
    /// A cluster over `directory` with the strategies and balancers of the directory's
    /// table ([`Directory::extensions`]: the built-ins for [`Directory::new`]).
    pub fn new(directory: Arc<Directory>) -> Result<ClusterInvoker, SetupError> {
        let extensions = directory.extensions().clone();
        ClusterInvoker::with_extensions(directory, &extensions)
    }

    /// A cluster over `directory` whose strategy (`cluster`, default `failover`) and
    /// balancers (`loadbalance`, default `random`, and every method-level
    /// `methods.<m>.loadbalance`) are looked up in `extensions`. An unknown name is
    /// [`SetupError::Unknown`], listing the known ones.
    pub fn with_extensions(
        directory: Arc<Directory>,
        extensions: &Extensions,
    ) -> Result<ClusterInvoker, SetupError> {
        let consumer = directory.consumer();
        let name = consumer
            .param_non_empty("cluster")
            .unwrap_or(DEFAULT_CLUSTER);
        let strategy = extensions.check_cluster(name)?.clone();
        extensions.check_balancer(
            consumer
                .param_non_empty("loadbalance")
                .unwrap_or(DEFAULT_LOADBALANCE),
        )?;
        for (key, value) in consumer.params() {
            if key.ends_with(".loadbalance") && !value.is_empty() {
                extensions.check_balancer(value)?;
            }
        }
        let name: Arc<str> = name.into();
        Ok(ClusterInvoker {
            cluster: Cluster {
                state: Arc::new(State {
                    directory,
                    factories: extensions.balancer_factories().clone(),
                    balancers: ArcSwap::from_pointee(HashMap::new()),
                    started: Instant::now(),
                    last_report_ms: AtomicU64::new(u64::MAX),
                    refused_since_report: AtomicU64::new(0),
                    failback: Mutex::new(VecDeque::new()),
                    failback_running: AtomicBool::new(false),
                }),
            },
            strategy,
            name,
        })
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.cluster.state.directory
    }

    /// The cluster the strategy works with.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The name of the strategy (`failover`).
    pub fn strategy_name(&self) -> &str {
        &self.name
    }

    /// Failed calls waiting for a background (failback) retry.
    pub fn failback_pending(&self) -> usize {
        self.cluster.failback_pending()
    }
}

impl Invoker for ClusterInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        self.strategy.invoke(&self.cluster, invocation)
    }
}

impl Cluster {
    /// The directory of the reference.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.state.directory
    }

    /// The consumer URL.
    pub fn consumer(&self) -> &Url {
        self.state.directory.consumer()
    }

    /// The providers for `invocation`: the current list after tag routing and condition
    /// rules (shared, not copied: see [`Routed`]). Re-read it on every attempt: it may
    /// change meanwhile.
    pub fn list(&self, invocation: &Invocation) -> Routed {
        self.state.directory.list(invocation)
    }

    /// A call parameter as Dubbo resolves it: set by a configurator for `provider`, else
    /// by the consumer, else by the provider URL (method-level keys first at each step).
    pub fn param(&self, provider: Option<&Provider>, method: &str, key: &str) -> Option<String> {
        if let Some(p) = provider {
            if let Some(v) = configurator::lookup(&p.overrides, method, key) {
                return Some(v.to_owned());
            }
        }
        let consumer: String = self.consumer().method_param_or(method, key, String::new());
        if !consumer.is_empty() {
            return Some(consumer);
        }
        provider
            .map(|p| p.url.method_param_or(method, key, String::new()))
            .filter(|v| !v.is_empty())
    }

    /// `retries` for `method` (default 2), resolved as [`param`](Self::param) does.
    pub fn retries(&self, provider: Option<&Provider>, method: &str) -> usize {
        self.param(provider, method, "retries")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
    }

    /// [`retries`](Self::retries) for the first provider of a routed list, resolved once
    /// per list and method.
    pub(crate) fn routed_retries(&self, routed: &Routed, method: &str) -> usize {
        routed.0.with_table(method, |table| {
            *table
                .retries
                .get_or_init(|| self.retries(routed.first().map(|p| &**p), method))
        })
    }

    /// `forks` of the consumer (default 2, at least 1).
    pub fn forks(&self) -> usize {
        self.consumer().param_or("forks", 2usize).max(1)
    }

    /// The load balancer of `method`: `loadbalance` resolved as [`param`](Self::param)
    /// does for the first of `providers` (default `random`). One balancer per name and
    /// reference; a name the table does not know (set by a provider or a configurator) is
    /// reported and replaced by `random`.
    pub fn balancer(&self, providers: &[Arc<Provider>], method: &str) -> Arc<dyn LoadBalance> {
        let name = self.param(providers.first().map(|p| &**p), method, "loadbalance");
        self.balancer_named(name.as_deref().unwrap_or(DEFAULT_LOADBALANCE))
    }

    /// [`balancer`](Self::balancer) for a routed list: the name is resolved once per
    /// list and method.
    fn routed_balancer(&self, routed: &Routed, method: &str) -> Arc<dyn LoadBalance> {
        routed.0.with_table(method, |table| {
            let name = table.balancer_name.get_or_init(|| {
                let name = self.param(routed.first().map(|p| &**p), method, "loadbalance");
                name.as_deref().unwrap_or(DEFAULT_LOADBALANCE).into()
            });
            self.balancer_named(name)
        })
    }

    fn balancer_named(&self, name: &str) -> Arc<dyn LoadBalance> {
        if let Some(balancer) = self.state.balancers.load().get(name) {
            return balancer.clone();
        }
        let factories = &self.state.factories;
        let balancer = match factories.get(name) {
            Some(make) => make(),
            None => {
                tracing::warn!(loadbalance = %name, "unknown load balancer; using random");
                factories
                    .get(DEFAULT_LOADBALANCE)
                    .map(|make| make())
                    .unwrap_or_else(|| Arc::new(loadbalance::Random))
            }
        };
        self.state.balancers.rcu(|balancers| {
            let mut next = HashMap::clone(balancers);
            next.entry(name.to_owned())
                .or_insert_with(|| balancer.clone());
            next
        });
        self.state
            .balancers
            .load()
            .get(name)
            .cloned()
            .unwrap_or(balancer)
    }

    /// Picks a provider not in `tried` (unless every provider was tried), preferring
    /// providers that are not ejected ([`Health`](crate::Health); at most
    /// `ejection.max.percent`, default 90, of the pool is skipped), with the method's
    /// load balancer. `None` when `providers` is empty.
    ///
    /// `providers` is best the list [`list`](Self::list) gave: its balancer state is
    /// precomputed, and while no provider of the directory has failed and nothing was
    /// tried, the pick does not look at every provider. Any slice (`&Vec`, `&[…]`) works
    /// too, at the cost of a copy.
    pub fn select<'p>(
        &self,
        providers: impl Into<Pool<'p>>,
        tried: &[Arc<Provider>],
        invocation: &Invocation,
    ) -> Option<Arc<Provider>> {
        let (routed, providers): (Option<&Routed>, &[Arc<Provider>]) = match providers.into() {
            Pool::Routed(routed) => (Some(routed), routed),
            Pool::Slice(slice) => (None, slice),
        };
        if providers.is_empty() {
            return None;
        }
        let marked = self.state.directory.marked();
        if let (Some(routed), true) = (routed, tried.is_empty() && marked == 0) {
            let balancer = self.routed_balancer(routed, &invocation.method);
            return Some(balancer.pick(&Candidates::new(routed), invocation));
        }
        let now = crate::health::now();
        let was_tried = |p: &Provider| tried.iter().any(|t| std::ptr::eq(&**t, p));
        let max_percent: usize = self
            .consumer()
            .param_or("ejection.max.percent", 90usize)
            .min(100);
        if let Some(routed) = routed {
            let balancer = self.routed_balancer(routed, &invocation.method);
            // Fewer providers are marked than the cap lets go and than are left untried:
            // every untried provider that is not ejected is a candidate, none is let back.
            let untried_at_least = routed.len().saturating_sub(tried.len());
            if marked < untried_at_least && marked <= untried_at_least * max_percent / 100 {
                let exclude = |p: &Provider| was_tried(p) || p.health.is_ejected(now);
                return Some(balancer.pick(&Candidates::excluding(routed, &exclude), invocation));
            }
        }
        let untried: Vec<&Arc<Provider>> = providers.iter().filter(|p| !was_tried(p)).collect();
        let pool: Vec<&Arc<Provider>> = if untried.is_empty() {
            providers.iter().collect()
        } else {
            untried
        };
        let (mut healthy, mut ejected): (Vec<&Arc<Provider>>, Vec<&Arc<Provider>>) =
            pool.iter().partition(|p| !p.health.is_ejected(now));
        // Never eject more than `ejection.max.percent` (default 90) of the pool: beyond it
        // the providers with the fewest consecutive failures are let back in, so that a
        // blip that hits everyone does not take the whole service out.
        let max_ejected = pool.len() * max_percent / 100;
        if ejected.len() > max_ejected {
            ejected.sort_by_key(|p| std::cmp::Reverse(p.health.consecutive_failures()));
            healthy.extend(ejected.drain(max_ejected..));
        }
        let candidates = if healthy.is_empty() { pool } else { healthy };
        match routed {
            Some(routed) => {
                let allowed: std::collections::HashSet<*const Provider> =
                    candidates.iter().map(|p| Arc::as_ptr(p)).collect();
                let exclude = |p: &Provider| !allowed.contains(&(p as *const Provider));
                let balancer = self.routed_balancer(routed, &invocation.method);
                Some(balancer.pick(&Candidates::excluding(routed, &exclude), invocation))
            }
            None => {
                let candidates: Vec<Arc<Provider>> = candidates.into_iter().cloned().collect();
                Some(
                    self.balancer(providers, &invocation.method)
                        .select(&candidates, invocation),
                )
            }
        }
    }

    /// One attempt on `provider` (numbered `attempt` in the trace span), with its call
    /// statistics and health bookkeeping: a retryable failure ejects the provider, any
    /// answer clears it. A call without a deadline gets the provider's configured
    /// `timeout` (ms), if any.
    pub async fn attempt(
        &self,
        provider: &Provider,
        mut invocation: Invocation,
        attempt: usize,
    ) -> RpcResult<Reply> {
        if invocation.timeout.is_none() {
            let ms = configurator::lookup(&provider.overrides, &invocation.method, "timeout")
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(ms) = ms {
                invocation.timeout = Some(Duration::from_millis(ms));
            }
        }
        let call = provider.stats.begin();
        let started = Instant::now();
        let span = tracing::info_span!(
            "rpc.attempt",
            provider = %provider.url.address(),
            attempt,
        );
        let result = provider.invoker.invoke(invocation).instrument(span).await;
        // A streamed answer keeps the call active (least-active balancing) until the
        // stream ends; its latency and outcome are those of the hand-over.
        let result = match result {
            Ok(Reply::Stream(stream)) => {
                let hold = provider.stats.hold_active();
                Ok(Reply::Stream(stream.on_end(move |_| drop(hold))))
            }
            other => other,
        };
        call.finish(started.elapsed(), result.is_ok());
        match &result {
            Ok(_) => provider.health.success(),
            Err(e) if e.is_retryable() => {
                let period = provider.health.failure();
                tracing::debug!(provider = %provider.url.address(), error = %e, ejected_for = ?period, "provider failed");
            }
            Err(_) => provider.health.success(),
        }
        result
    }

    /// Up to `retries + 1` attempts, each on a provider not tried yet while one exists,
    /// as long as the failure is retryable and the call's deadline (one for the whole
    /// call; each attempt is given what is left of it) has not passed.
    pub async fn failover(&self, invocation: Invocation, retries: usize) -> RpcResult<Reply> {
        let mut tried: Vec<Arc<Provider>> = Vec::new();
        let mut last_error = None;
        let deadline = invocation.timeout.map(|t| (Instant::now() + t, t));
        let mut invocation = invocation;
        for attempt in 1..=retries + 1 {
            if let Some((deadline, total)) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(last_error.unwrap_or(RpcError::Timeout(total)));
                }
                invocation.timeout = Some(left);
            }
            let providers = self.list(&invocation);
            let Some(provider) = self.select(&providers, &tried, &invocation) else {
                break;
            };
            if attempt > retries {
                // The last attempt: its outcome is the call's, the invocation is not
                // needed again.
                return self.attempt(&provider, invocation, attempt).await;
            }
            match self.attempt(&provider, invocation.clone(), attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => last_error = Some(e),
            }
            tried.push(provider);
        }
        Err(last_error.unwrap_or_else(|| self.no_provider()))
    }

    /// The error of a call that found no provider, reported in the log at most every
    /// 10 s per reference (with the number of calls refused meanwhile).
    pub fn no_provider(&self) -> RpcError {
        let state = &self.state;
        let service = state.directory.service_key();
        state.refused_since_report.fetch_add(1, Ordering::Relaxed);
        let now = state.started.elapsed().as_millis() as u64;
        let last = state.last_report_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX
            || now.saturating_sub(last) >= NO_PROVIDER_REPORT_EVERY.as_millis() as u64;
        if due
            && state
                .last_report_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = state.refused_since_report.swap(0, Ordering::Relaxed);
            tracing::warn!(service = %service, refused, "no provider for {service}");
        }
        RpcError::NoProvider(service)
    }

    /// Queues `invocation` for retries in the background: every [`FAILBACK_PERIOD`] each
    /// queued call gets one attempt, up to `retries` (default 3) times; beyond
    /// [`FAILBACK_QUEUE_LIMIT`] queued calls the oldest is dropped. The retry task stops
    /// when the reference is dropped.
    pub fn retry_in_background(&self, invocation: Invocation) {
        let state = &self.state;
        {
            let mut queue = state.failback.lock().unwrap_or_else(|e| e.into_inner());
            if queue.len() >= FAILBACK_QUEUE_LIMIT {
                queue.pop_front();
                tracing::warn!(service = %state.directory.service_key(), "failback queue full; dropping the oldest failed call");
            }
            queue.push_back((invocation, 0));
        }
        if state.failback_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FAILBACK_PERIOD).await;
                let Some(state) = weak.upgrade() else { return };
                let cluster = Cluster { state };
                let batch: Vec<(Invocation, u32)> = cluster
                    .state
                    .failback
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain(..)
                    .collect();
                let retries: u32 = cluster.consumer().param_or("retries", 3u32);
                for (inv, attempts) in batch {
                    if cluster.failover(inv.clone(), 0).await.is_err() && attempts + 1 < retries {
                        let mut queue = cluster
                            .state
                            .failback
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if queue.len() < FAILBACK_QUEUE_LIMIT {
                            queue.push_back((inv, attempts + 1));
                        }
                    }
                }
            }
        });
    }

    /// Calls waiting for a background retry.
    pub fn failback_pending(&self) -> usize {
        self.state
            .failback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// The providers [`Cluster::select`] picks from: a routed list ([`Cluster::list`]) or
/// any slice of providers.
#[derive(Debug, Clone, Copy)]
pub enum Pool<'a> {
    /// A list from [`Cluster::list`] / [`Directory::list`], with its precomputed state.
    Routed(&'a Routed),
    /// Any providers.
    Slice(&'a [Arc<Provider>]),
}

impl<'a> From<&'a Routed> for Pool<'a> {
    fn from(routed: &'a Routed) -> Pool<'a> {
        Pool::Routed(routed)
    }
}

impl<'a> From<&'a [Arc<Provider>]> for Pool<'a> {
    fn from(slice: &'a [Arc<Provider>]) -> Pool<'a> {
        Pool::Slice(slice)
    }
}

impl<'a> From<&'a Vec<Arc<Provider>>> for Pool<'a> {
    fn from(list: &'a Vec<Arc<Provider>>) -> Pool<'a> {
        Pool::Slice(list)
    }
}

impl<'a> From<&'a Arc<Vec<Arc<Provider>>>> for Pool<'a> {
    fn from(list: &'a Arc<Vec<Arc<Provider>>>) -> Pool<'a> {
        Pool::Slice(list)
    }
}

impl<'a, const N: usize> From<&'a [Arc<Provider>; N]> for Pool<'a> {
    fn from(list: &'a [Arc<Provider>; N]) -> Pool<'a> {
        Pool::Slice(list)
    }
}

#[cfg(test)]
mod tests;

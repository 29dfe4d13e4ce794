//! Cluster strategies (`cluster=`): failover (default), failfast, failsafe, failback,
//! forking, broadcast.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, Value};
use tracing::Instrument;

use crate::loadbalance::{self, LoadBalance};
use crate::{configurator, Directory, Provider};

/// Interval between two "no provider" reports of one service.
const NO_PROVIDER_REPORT_EVERY: Duration = Duration::from_secs(10);
/// Failed calls a failback cluster keeps for retrying; older ones are dropped beyond it.
pub const FAILBACK_QUEUE_LIMIT: usize = 1024;
/// Period of failback retries.
pub const FAILBACK_PERIOD: Duration = Duration::from_secs(5);

/// How a cluster answers a call, from the consumer URL's `cluster` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// On a retryable failure try another provider, up to `retries` (default 2) more times.
    Failover,
    /// One attempt; its error is the call's error.
    Failfast,
    /// Errors are logged and answered with `null`.
    Failsafe,
    /// Errors are answered with `null` and the call is retried in the background
    /// (bounded queue, every 5 s, up to `retries` times, default 3).
    Failback,
    /// `forks` (default 2) providers called at once; the first success wins.
    Forking,
    /// Every provider is called; any error is the call's error, else the last result.
    Broadcast,
}

impl Strategy {
    /// The strategy named `name` (Dubbo's names).
    pub fn by_name(name: &str) -> Option<Strategy> {
        Some(match name {
            "failover" => Strategy::Failover,
            "failfast" => Strategy::Failfast,
            "failsafe" => Strategy::Failsafe,
            "failback" => Strategy::Failback,
            "forking" => Strategy::Forking,
            "broadcast" => Strategy::Broadcast,
            _ => return None,
        })
    }
}

/// Calls the providers of a [`Directory`] with the strategy and load balancer named by the
/// consumer URL (`cluster`, `loadbalance`, `retries`, `forks`; method-level
/// `methods.<m>.loadbalance`/`retries` first). Providers that fail to answer are ejected for
/// a back-off period ([`Health`](crate::Health)) and skipped while a healthy one exists.
/// With no provider at all the call fails at once with [`RpcError::NoProvider`], reported
/// in the log at most every 10 s.
#[derive(Clone)]
pub struct ClusterInvoker {
    state: Arc<State>,
}

struct State {
    directory: Arc<Directory>,
    strategy: Strategy,
    balancers: Mutex<HashMap<String, Arc<dyn LoadBalance>>>,
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
            .field("directory", &self.state.directory)
            .field("strategy", &self.state.strategy)
            .finish()
    }
}

impl ClusterInvoker {
    /// A cluster over `directory`, configured by its consumer URL. An unknown `cluster`
    /// name is an error naming it.
    pub fn new(directory: Arc<Directory>) -> RpcResult<ClusterInvoker> {
        let name = directory
            .consumer()
            .param_non_empty("cluster")
            .unwrap_or("failover")
            .to_owned();
        let strategy = Strategy::by_name(&name).ok_or_else(|| {
            RpcError::Invalid(format!(
                "cluster={name}: unknown (failover, failfast, failsafe, failback, forking, broadcast)"
            ))
        })?;
        let lb = directory
            .consumer()
            .param_non_empty("loadbalance")
            .unwrap_or("random");
        if loadbalance::by_name(lb).is_none() {
            return Err(RpcError::Invalid(format!(
                "loadbalance={lb}: unknown (random, roundrobin, leastactive, shortestresponse, consistenthash, p2c)"
            )));
        }
        Ok(ClusterInvoker {
            state: Arc::new(State {
                directory,
                strategy,
                balancers: Mutex::new(HashMap::new()),
                started: Instant::now(),
                last_report_ms: AtomicU64::new(u64::MAX),
                refused_since_report: AtomicU64::new(0),
                failback: Mutex::new(VecDeque::new()),
                failback_running: AtomicBool::new(false),
            }),
        })
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.state.directory
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.state.strategy
    }

    /// Failed calls waiting for a failback retry.
    pub fn failback_pending(&self) -> usize {
        self.state
            .failback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl State {
    fn no_provider(&self) -> RpcError {
        let service = self.directory.service_key();
        self.refused_since_report.fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_report_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX
            || now.saturating_sub(last) >= NO_PROVIDER_REPORT_EVERY.as_millis() as u64;
        if due
            && self
                .last_report_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.refused_since_report.swap(0, Ordering::Relaxed);
            tracing::warn!(service = %service, refused, "no provider for {service}");
        }
        RpcError::NoProvider(service)
    }

    /// A call parameter as Dubbo resolves it: set by a configurator, else by the
    /// consumer, else by the provider URL (method-level keys first at each step).
    fn param(&self, provider: Option<&Provider>, method: &str, key: &str) -> Option<String> {
        if let Some(p) = provider {
            if let Some(v) = configurator::lookup(&p.overrides, method, key) {
                return Some(v.to_owned());
            }
        }
        let consumer: String =
            self.directory
                .consumer()
                .method_param_or(method, key, String::new());
        if !consumer.is_empty() {
            return Some(consumer);
        }
        provider
            .map(|p| p.url.method_param_or(method, key, String::new()))
            .filter(|v| !v.is_empty())
    }

    fn balancer(&self, providers: &[Arc<Provider>], method: &str) -> Arc<dyn LoadBalance> {
        let name = self
            .param(providers.first().map(|p| &**p), method, "loadbalance")
            .unwrap_or_else(|| "random".to_owned());
        let mut cache = self.balancers.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(name.clone())
            .or_insert_with(|| {
                loadbalance::by_name(&name).unwrap_or_else(|| {
                    tracing::warn!(loadbalance = %name, "unknown load balancer; using random");
                    Arc::new(loadbalance::Random)
                })
            })
            .clone()
    }

    /// Picks a provider not in `tried` (unless every provider was tried), preferring
    /// providers that are not ejected, with the method's load balancer.
    fn select(
        &self,
        providers: &[Arc<Provider>],
        tried: &[usize],
        invocation: &Invocation,
    ) -> Option<Arc<Provider>> {
        if providers.is_empty() {
            return None;
        }
        let now = Instant::now();
        let untried: Vec<Arc<Provider>> = providers
            .iter()
            .filter(|p| !tried.contains(&(Arc::as_ptr(p) as usize)))
            .cloned()
            .collect();
        let pool = if untried.is_empty() {
            providers.to_vec()
        } else {
            untried
        };
        let (mut healthy, mut ejected): (Vec<Arc<Provider>>, Vec<Arc<Provider>>) = pool
            .iter()
            .cloned()
            .partition(|p| !p.health.is_ejected(now));
        // Never eject more than `ejection.max.percent` (default 90) of the pool: beyond it
        // the providers with the fewest consecutive failures are let back in, so that a
        // blip that hits everyone does not take the whole service out.
        let max_percent: usize = self
            .directory
            .consumer()
            .param_or("ejection.max.percent", 90usize)
            .min(100);
        let max_ejected = pool.len() * max_percent / 100;
        if ejected.len() > max_ejected {
            ejected.sort_by_key(|p| std::cmp::Reverse(p.health.consecutive_failures()));
            healthy.extend(ejected.drain(max_ejected..));
        }
        let candidates = if healthy.is_empty() { pool } else { healthy };
        Some(
            self.balancer(providers, &invocation.method)
                .select(&candidates, invocation),
        )
    }

    /// One attempt on one provider, with stats and health bookkeeping. A call without a
    /// deadline gets the provider's configured `timeout` (ms), if any.
    async fn attempt(
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

    async fn failover(&self, invocation: Invocation, retries: usize) -> RpcResult<Reply> {
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error = None;
        // One deadline for the whole call: each attempt gets what is left of it, and the
        // provider is told that remaining budget.
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
            // Re-read the list on every attempt: it may have changed meanwhile.
            let providers = self.directory.list(&invocation);
            let Some(provider) = self.select(&providers, &tried, &invocation) else {
                break;
            };
            tried.push(Arc::as_ptr(&provider) as usize);
            match Self::attempt(&provider, invocation.clone(), attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| self.no_provider()))
    }

    async fn forking(&self, invocation: Invocation) -> RpcResult<Reply> {
        let forks: usize = self.directory.consumer().param_or("forks", 2usize).max(1);
        let providers = self.directory.list(&invocation);
        let mut chosen: Vec<Arc<Provider>> = Vec::new();
        let mut tried = Vec::new();
        while chosen.len() < forks.min(providers.len()) {
            let Some(p) = self.select(&providers, &tried, &invocation) else {
                break;
            };
            if tried.contains(&(Arc::as_ptr(&p) as usize)) {
                break;
            }
            tried.push(Arc::as_ptr(&p) as usize);
            chosen.push(p);
        }
        if chosen.is_empty() {
            return Err(self.no_provider());
        }
        let mut set = tokio::task::JoinSet::new();
        for p in chosen {
            let inv = invocation.clone();
            set.spawn(async move { State::attempt(&p, inv, 1).await });
        }
        let mut last_error = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => last_error = Some(e),
                Err(e) => last_error = Some(RpcError::Invalid(format!("forked call failed: {e}"))),
            }
        }
        Err(last_error.unwrap_or_else(|| self.no_provider()))
    }

    async fn broadcast(&self, invocation: Invocation) -> RpcResult<Reply> {
        let providers = self.directory.list(&invocation);
        if providers.is_empty() {
            return Err(self.no_provider());
        }
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in providers.iter().cloned().enumerate() {
            let inv = invocation.clone();
            set.spawn(async move { (i, State::attempt(&p, inv, 1).await) });
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
    }

    fn enqueue_failback(self: &Arc<Self>, invocation: Invocation) {
        {
            let mut queue = self.failback.lock().unwrap_or_else(|e| e.into_inner());
            if queue.len() >= FAILBACK_QUEUE_LIMIT {
                queue.pop_front();
                tracing::warn!(service = %self.directory.service_key(), "failback queue full; dropping the oldest failed call");
            }
            queue.push_back((invocation, 0));
        }
        if !self.failback_running.swap(true, Ordering::AcqRel) {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FAILBACK_PERIOD).await;
                    let Some(state) = weak.upgrade() else { return };
                    let batch: Vec<(Invocation, u32)> = state
                        .failback
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .drain(..)
                        .collect();
                    let retries: u32 = state.directory.consumer().param_or("retries", 3u32);
                    for (inv, attempts) in batch {
                        if state.failover(inv.clone(), 0).await.is_err() && attempts + 1 < retries {
                            let mut queue =
                                state.failback.lock().unwrap_or_else(|e| e.into_inner());
                            if queue.len() < FAILBACK_QUEUE_LIMIT {
                                queue.push_back((inv, attempts + 1));
                            }
                        }
                    }
                }
            });
        }
    }

    async fn call(self: Arc<Self>, invocation: Invocation) -> RpcResult<Reply> {
        match self.strategy {
            Strategy::Failover => {
                let providers = self.directory.list(&invocation);
                let retries: usize = self
                    .param(
                        providers.first().map(|p| &**p),
                        &invocation.method,
                        "retries",
                    )
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(2);
                self.failover(invocation, retries).await
            }
            Strategy::Failfast => self.failover(invocation, 0).await,
            Strategy::Failsafe => match self.failover(invocation, 0).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::warn!(service = %self.directory.service_key(), error = %e, "failsafe: error ignored");
                    Ok(Reply::Value(Value::Null))
                }
            },
            Strategy::Failback => match self.failover(invocation.clone(), 0).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::warn!(service = %self.directory.service_key(), error = %e, "failback: will retry in the background");
                    self.enqueue_failback(invocation);
                    Ok(Reply::Value(Value::Null))
                }
            },
            Strategy::Forking => self.forking(invocation).await,
            Strategy::Broadcast => self.broadcast(invocation).await,
        }
    }
}

impl Invoker for ClusterInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(self.state.clone().call(invocation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdubbo_core::{Protocol, Url};

    /// A provider scripted by its port: 1 refuses connections, 2 answers with a service
    /// error, others answer with their port.
    struct Scripted {
        port: u16,
        calls: Arc<Mutex<Vec<u16>>>,
    }
    impl Invoker for Scripted {
        fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            let port = self.port;
            self.calls.lock().unwrap().push(port);
            Box::pin(async move {
                match port {
                    1 => Err(RpcError::Connect {
                        addr: "127.0.0.1:1".into(),
                        reason: "refused".into(),
                    }),
                    2 => Err(RpcError::service("boom")),
                    p => Ok(Reply::Value(Value::from(p))),
                }
            })
        }
    }
    struct P(Arc<Mutex<Vec<u16>>>);
    impl Protocol for P {
        fn name(&self) -> &'static str {
            "jsonrpc"
        }
        fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
            Ok(Arc::new(Scripted {
                port: url.port().unwrap(),
                calls: self.0.clone(),
            }))
        }
    }

    fn setup(ports: &[u16]) -> (ClusterInvoker, Arc<Mutex<Vec<u16>>>) {
        setup_with(ports, "loadbalance=roundrobin")
    }

    fn setup_with(ports: &[u16], params: &str) -> (ClusterInvoker, Arc<Mutex<Vec<u16>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let consumer: Url = format!("consumer://127.0.0.1/demo.Api?interface=demo.Api&{params}")
            .parse()
            .unwrap();
        let dir = Directory::new(consumer, vec![Arc::new(P(calls.clone()))]);
        let urls: Vec<Url> = ports
            .iter()
            .map(|p| {
                format!("jsonrpc://127.0.0.1:{p}/demo.Api?interface=demo.Api")
                    .parse()
                    .unwrap()
            })
            .collect();
        dir.update(&urls);
        (ClusterInvoker::new(dir).unwrap(), calls)
    }

    fn inv() -> Invocation {
        Invocation::new("demo.Api", "echo", vec![])
    }

    #[tokio::test]
    async fn a_refusing_provider_is_skipped_and_ejected() {
        let (cluster, calls) = setup(&[1, 7000]);
        for _ in 0..10 {
            assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::from(7000));
        }
        let calls = calls.lock().unwrap();
        assert_eq!(calls.iter().filter(|p| **p == 1).count(), 1, "{calls:?}");
    }

    #[tokio::test]
    async fn service_errors_are_not_retried() {
        let (cluster, calls) = setup(&[2, 7000]);
        let mut errors = 0;
        for _ in 0..4 {
            if cluster.invoke(inv()).await.is_err() {
                errors += 1;
            }
        }
        assert_eq!(errors, 2);
        assert_eq!(calls.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn no_provider_fails_at_once_and_every_provider_down_tries_each_once() {
        let (cluster, _) = setup(&[]);
        let err = cluster.invoke(inv()).await.unwrap_err();
        assert_eq!(err, RpcError::NoProvider("demo.Api".into()));
        assert_eq!(err.to_string(), "no provider for demo.Api");
        let (cluster, calls) = setup(&[1]);
        assert!(matches!(
            cluster.invoke(inv()).await.unwrap_err(),
            RpcError::Connect { .. }
        ));
        // retries=2 but one provider: tried again only because there is no other.
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn round_robin_rotates() {
        let (cluster, calls) = setup(&[7001, 7002, 7003]);
        for _ in 0..6 {
            cluster.invoke(inv()).await.unwrap();
        }
        let calls = calls.lock().unwrap();
        for p in [7001, 7002, 7003] {
            assert_eq!(calls.iter().filter(|c| **c == p).count(), 2, "{calls:?}");
        }
    }

    #[tokio::test]
    async fn failfast_makes_one_attempt() {
        let (cluster, calls) = setup_with(&[1, 7000], "cluster=failfast&loadbalance=roundrobin");
        let first = cluster.invoke(inv()).await;
        assert!(matches!(first, Err(RpcError::Connect { .. })), "{first:?}");
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn failsafe_answers_null() {
        let (cluster, _) = setup_with(&[2], "cluster=failsafe");
        assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::Null);
    }

    #[tokio::test]
    async fn failback_answers_null_and_queues_the_call() {
        let (cluster, calls) = setup_with(&[1], "cluster=failback");
        assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::Null);
        assert_eq!(cluster.failback_pending(), 1);
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn forking_takes_the_first_success() {
        let (cluster, calls) = setup_with(&[1, 7000, 7001], "cluster=forking&forks=3");
        let v: i64 = cluster.invoke(inv()).await.unwrap().decode().unwrap();
        assert!(v == 7000 || v == 7001, "{v}");
        assert_eq!(calls.lock().unwrap().len(), 3);
        let (cluster, _) = setup_with(&[1], "cluster=forking");
        assert!(cluster.invoke(inv()).await.is_err());
    }

    #[tokio::test]
    async fn broadcast_calls_everyone_and_fails_if_one_fails() {
        let (cluster, calls) = setup_with(&[7000, 7001, 7002], "cluster=broadcast");
        cluster.invoke(inv()).await.unwrap();
        let mut seen = calls.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, [7000, 7001, 7002]);
        let (cluster, _) = setup_with(&[7000, 2], "cluster=broadcast");
        assert!(cluster.invoke(inv()).await.is_err());
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let consumer: Url = "consumer://h/demo.Api?interface=demo.Api&cluster=magic"
            .parse()
            .unwrap();
        let err = ClusterInvoker::new(Directory::new(consumer, vec![])).unwrap_err();
        assert!(err.to_string().contains("cluster=magic"), "{err}");
        let consumer: Url = "consumer://h/demo.Api?interface=demo.Api&loadbalance=best"
            .parse()
            .unwrap();
        let err = ClusterInvoker::new(Directory::new(consumer, vec![])).unwrap_err();
        assert!(err.to_string().contains("loadbalance=best"), "{err}");
    }

    #[tokio::test]
    async fn ejection_is_capped_at_a_share_of_the_pool() {
        // Four failing providers with a 50% cap: every one is marked, but selection skips
        // only two of them, so a blip that hits everyone cannot take the service out.
        let (cluster, calls) = setup_with(&[1, 1, 1, 1], "ejection.max.percent=50&retries=0");
        let providers = cluster.directory().providers();
        for (i, p) in providers.iter().enumerate() {
            for _ in 0..=i {
                p.health.failure();
            }
        }
        let now = Instant::now();
        let ejected = providers
            .iter()
            .filter(|p| p.health.is_ejected(now))
            .count();
        assert_eq!(ejected, 4, "every failing provider is marked");
        // But selection only skips two of them.
        let tried: Vec<usize> = Vec::new();
        let mut reached = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = cluster.state.select(&providers, &tried, &inv()).unwrap();
            reached.insert(Arc::as_ptr(&p) as usize);
        }
        assert_eq!(reached.len(), 2, "exactly the re-admitted half is used");
        // The re-admitted ones are those with the fewest consecutive failures.
        assert!(reached.contains(&(Arc::as_ptr(&providers[0]) as usize)));
        assert!(reached.contains(&(Arc::as_ptr(&providers[1]) as usize)));
        assert!(calls.lock().unwrap().is_empty());
    }
}

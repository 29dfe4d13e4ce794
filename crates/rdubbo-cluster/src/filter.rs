//! Filters: one middleware abstraction for both sides and for built-in and user code.
//!
//! A [`Filter`] sees every invocation and the next [`Invoker`] of the chain; it may change
//! the invocation, answer by itself, or call `next` and look at the result.
//! [`with_filters`] wraps an invoker in a chain (the first filter is the outermost).
//!
//! Built-ins, switched on by URL parameters as in Dubbo (see [`from_url`]):
//! - [`AccessLog`] (`accesslog=true`): one `tracing` event per call, target `rdubbo::access`;
//! - [`ConcurrencyLimit`]: `executes` on the provider side (calls over the limit are refused
//!   at once with a retryable "busy" error), `actives` on the consumer side (calls over the
//!   limit wait for a slot until their deadline);
//! - [`RateLimit`] (`tps`, `tps.interval` ms, default 60000): calls over the budget of the
//!   current interval are refused with a retryable "busy" error;
//! - [`Deadline`]: enforces the invocation's timeout over the rest of the chain.
//!
//! Per-method limits use Dubbo's keys (`methods.<m>.executes`, `<m>.tps` …).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, Url};
use tokio::sync::Semaphore;

/// A middleware around an invoker.
pub trait Filter: Send + Sync + 'static {
    /// Handles `invocation`, usually by calling `next`.
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>>;
}

struct Filtered {
    filter: Arc<dyn Filter>,
    next: Arc<dyn Invoker>,
}

impl Invoker for Filtered {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        self.filter.invoke(self.next.clone(), invocation)
    }
}

/// Wraps `invoker` in `filters`; the first filter sees a call first.
pub fn with_filters(invoker: Arc<dyn Invoker>, filters: &[Arc<dyn Filter>]) -> Arc<dyn Invoker> {
    filters.iter().rev().fold(invoker, |next, filter| {
        Arc::new(Filtered {
            filter: filter.clone(),
            next,
        })
    })
}

/// Which side a chain runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Consumer side (`actives`).
    Consumer,
    /// Provider side (`executes`, `tps`).
    Provider,
}

/// The built-in filters a URL asks for: `accesslog=true`, then `tps` (provider), then
/// `executes` (provider) or `actives` (consumer), each only if some key of it is set.
pub fn from_url(url: &Url, side: Side) -> Vec<Arc<dyn Filter>> {
    let has = |key: &str| {
        url.params()
            .any(|(k, v)| (k == key || k.ends_with(&format!(".{key}"))) && !v.is_empty())
    };
    let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
    if url.param_bool("accesslog", false) {
        filters.push(Arc::new(AccessLog::new(side)));
    }
    match side {
        Side::Provider => {
            if has("tps") {
                filters.push(Arc::new(RateLimit::new(url.clone())));
            }
            if has("executes") {
                filters.push(Arc::new(ConcurrencyLimit::executes(url.clone())));
            }
        }
        Side::Consumer => {
            if has("actives") {
                filters.push(Arc::new(ConcurrencyLimit::actives(url.clone())));
            }
        }
    }
    filters
}

fn busy(message: String) -> RpcError {
    RpcError::remote(codes::SERVER_BUSY, message)
}

/// Logs every call: service, method, outcome and time taken.
#[derive(Debug)]
pub struct AccessLog {
    side: Side,
}

impl AccessLog {
    /// An access log for `side`.
    pub fn new(side: Side) -> AccessLog {
        AccessLog { side }
    }
}

impl Filter for AccessLog {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        let side = self.side;
        Box::pin(async move {
            let service = inv.service_key();
            let method = inv.method.clone();
            let started = Instant::now();
            let result = next.invoke(inv).await;
            let elapsed_us = started.elapsed().as_micros() as u64;
            match &result {
                Ok(_) => {
                    tracing::info!(target: "rdubbo::access", ?side, %service, %method, elapsed_us, "ok")
                }
                Err(e) => {
                    tracing::info!(target: "rdubbo::access", ?side, %service, %method, elapsed_us, code = e.code(), error = %e, "error")
                }
            }
            result
        })
    }
}

/// Calls in flight per method, limited by `executes` (provider: refuse) or `actives`
/// (consumer: wait for a slot until the call's deadline).
pub struct ConcurrencyLimit {
    url: Url,
    key: &'static str,
    wait: bool,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl ConcurrencyLimit {
    /// Provider side: `executes`.
    pub fn executes(url: Url) -> ConcurrencyLimit {
        ConcurrencyLimit {
            url,
            key: "executes",
            wait: false,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Consumer side: `actives`.
    pub fn actives(url: Url) -> ConcurrencyLimit {
        ConcurrencyLimit {
            url,
            key: "actives",
            wait: true,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, method: &str) -> Option<(usize, Arc<Semaphore>)> {
        let limit: usize = self.url.method_param_or(method, self.key, 0usize);
        if limit == 0 {
            return None;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let sem = slots
            .entry(method.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone();
        Some((limit, sem))
    }
}

impl Filter for ConcurrencyLimit {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        let Some((limit, sem)) = self.semaphore(&inv.method) else {
            return next.invoke(inv);
        };
        let (key, wait) = (self.key, self.wait);
        Box::pin(async move {
            let permit = if wait {
                let deadline = inv.timeout.unwrap_or(Duration::from_secs(1));
                match tokio::time::timeout(deadline, sem.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(RpcError::Timeout(deadline)),
                }
            } else {
                match sem.try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        return Err(busy(format!(
                            "{}.{}: more than {key}={limit} calls in flight",
                            inv.interface, inv.method
                        )))
                    }
                }
            };
            let result = next.invoke(inv).await;
            drop(permit);
            result
        })
    }
}

/// At most `tps` calls per `tps.interval` ms (default 60000) per method.
pub struct RateLimit {
    url: Url,
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RateLimit {
    /// A limiter reading `tps` and `tps.interval` from `url`.
    pub fn new(url: Url) -> RateLimit {
        RateLimit {
            url,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn admit(&self, method: &str) -> Result<(), (u64, u64)> {
        let tps: u64 = self.url.method_param_or(method, "tps", 0u64);
        if tps == 0 {
            return Ok(());
        }
        let interval: u64 = self
            .url
            .method_param_or(method, "tps.interval", 60_000u64)
            .max(1);
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = windows.entry(method.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_millis(interval) {
            *start = now;
            *count = 0;
        }
        if *count >= tps {
            return Err((tps, interval));
        }
        *count += 1;
        Ok(())
    }
}

impl Filter for RateLimit {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        match self.admit(&inv.method) {
            Ok(()) => next.invoke(inv),
            Err((tps, interval)) => {
                let message = format!(
                    "{}.{}: over tps={tps} per {interval} ms",
                    inv.interface, inv.method
                );
                Box::pin(async move { Err(busy(message)) })
            }
        }
    }
}

/// Fails a call with [`RpcError::Timeout`] when the rest of the chain takes longer than
/// the invocation's timeout.
#[derive(Debug, Default)]
pub struct Deadline;

impl Filter for Deadline {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        let Some(timeout) = inv.timeout else {
            return next.invoke(inv);
        };
        Box::pin(async move {
            tokio::time::timeout(timeout, next.invoke(inv))
                .await
                .unwrap_or(Err(RpcError::Timeout(timeout)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdubbo_core::Value;

    /// Sleeps for the first argument in ms, then answers it.
    struct Sleepy;
    impl Invoker for Sleepy {
        fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            Box::pin(async move {
                let ms = inv.args.first().and_then(|v| v.as_u64()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Reply::Value(Value::from(ms)))
            })
        }
    }

    fn call(ms: u64) -> Invocation {
        Invocation::new("demo.Api", "slow", vec![Value::from(ms)])
            .with_timeout(Some(Duration::from_secs(2)))
    }

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    /// Records the order it sees calls in.
    struct Tag(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl Filter for Tag {
        fn invoke(
            &self,
            next: Arc<dyn Invoker>,
            inv: Invocation,
        ) -> BoxFuture<'static, RpcResult<Reply>> {
            self.1.lock().unwrap().push(self.0);
            next.invoke(inv)
        }
    }

    #[tokio::test]
    async fn chain_order_is_the_list_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let chain = with_filters(
            Arc::new(Sleepy),
            &[
                Arc::new(Tag("outer", seen.clone())),
                Arc::new(Tag("inner", seen.clone())),
            ],
        );
        chain.invoke(call(0)).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["outer", "inner"]);
    }

    #[tokio::test]
    async fn executes_refuses_calls_over_the_limit() {
        let provider = url("jsonrpc://h:1/demo.Api?executes=2");
        let chain = with_filters(Arc::new(Sleepy), &from_url(&provider, Side::Provider));
        let calls: Vec<_> = (0..3).map(|_| chain.invoke(call(200))).collect();
        let mut busy = 0;
        let mut ok = 0;
        for r in futures_join(calls).await {
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_eq!(e.code(), codes::SERVER_BUSY, "{e}");
                    assert!(e.is_retryable());
                    assert!(e.to_string().contains("executes=2"), "{e}");
                    busy += 1;
                }
            }
        }
        assert_eq!((ok, busy), (2, 1));
        // Slots come back.
        chain.invoke(call(0)).await.unwrap();
    }

    #[tokio::test]
    async fn actives_makes_callers_wait_for_a_slot() {
        let consumer = url("consumer://h/demo.Api?actives=1");
        let chain = with_filters(Arc::new(Sleepy), &from_url(&consumer, Side::Consumer));
        let results = futures_join((0..3).map(|_| chain.invoke(call(50))).collect()).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        // A caller whose deadline passes while waiting gets a timeout.
        let hog = tokio::spawn(chain.invoke(call(500)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let short = Invocation::new("demo.Api", "slow", vec![Value::from(0)])
            .with_timeout(Some(Duration::from_millis(100)));
        assert!(matches!(
            chain.invoke(short).await,
            Err(RpcError::Timeout(_))
        ));
        hog.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn tps_allows_the_budget_per_interval() {
        let provider = url("jsonrpc://h:1/demo.Api?tps=5&tps.interval=300&other.tps=1");
        let chain = with_filters(Arc::new(Sleepy), &from_url(&provider, Side::Provider));
        let mut ok = 0;
        for _ in 0..8 {
            if chain.invoke(call(0)).await.is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 5);
        tokio::time::sleep(Duration::from_millis(350)).await;
        chain.invoke(call(0)).await.unwrap();
    }

    #[tokio::test]
    async fn deadline_and_access_log() {
        let chain = with_filters(
            Arc::new(Sleepy),
            &[Arc::new(AccessLog::new(Side::Consumer)), Arc::new(Deadline)],
        );
        let short = Invocation::new("demo.Api", "slow", vec![Value::from(300)])
            .with_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(
            chain.invoke(short).await,
            Err(RpcError::Timeout(_))
        ));
        assert_eq!(chain.invoke(call(1)).await.unwrap(), Value::from(1));
        // No parameter, no filter.
        assert!(from_url(&url("jsonrpc://h:1/x"), Side::Provider).is_empty());
    }

    async fn futures_join(
        calls: Vec<BoxFuture<'static, RpcResult<Reply>>>,
    ) -> Vec<RpcResult<Reply>> {
        let handles: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}

//! Middleware for both sides, as [`Layer`]s: built-in and user code alike.
//!
//! A [`Layer`] wraps an [`Invoker`] in another when a chain is built (a reference, a
//! provider's export, each provider of a cluster), not per call; the invoker it makes holds
//! the inner one and calls it directly, so a layer that only looks at a call and forwards
//! it costs no allocation of its own. [`layered`](rdubbo_core::layered) builds a chain (the
//! first layer is the outermost).
//!
//! A [`Filter`] is the easy way to write middleware: one method that gets the invocation
//! and the next [`Invoker`] of the chain; it may change the invocation, answer by itself,
//! or call `next` and look at the result. [`FilterLayer`] (or [`layer`]) makes it a
//! [`Layer`]; [`with_filters`] wraps an invoker in filters directly.
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
//! Per-method limits use Dubbo's keys (`methods.<m>.executes`, `<m>.tps` …). The limits
//! count per wrapped invoker: each invoker a limit layer makes has its own slots and
//! budget.
//!
//! A call whose answer is a stream ([`Reply::Stream`]: server-streaming, bidirectional)
//! lasts until that stream ends, not until it is handed over: [`AccessLog`] writes its
//! line then (how it ended, how many messages, the time to the end), and
//! [`ConcurrencyLimit`] holds its slot until then, also when the reader drops the stream
//! early. [`MessageStream::on_end`](rdubbo_core::MessageStream::on_end) does the same
//! for a layer of your own.
//!
//! ```
//! use std::sync::Arc;
//! use rdubbo_cluster::filter::{self, Filter, Side};
//! use rdubbo_core::{layered, BoxFuture, Invocation, Invoker, Layer, Reply, RpcResult, Url};
//!
//! /// Adds `tenant=acme` to every call.
//! struct Tenant;
//! impl Filter for Tenant {
//!     fn invoke(&self, next: Arc<dyn Invoker>, mut inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
//!         inv.attachments.insert("tenant", "acme");
//!         next.invoke(inv)
//!     }
//! }
//!
//! # fn chain(provider: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
//! let url: Url = "jsonrpc://127.0.0.1:8080/demo.Api?accesslog=true&executes=10".parse().unwrap();
//! let mut layers: Vec<Arc<dyn Layer>> = vec![filter::layer(Arc::new(Tenant))];
//! layers.extend(filter::from_url(&url, Side::Provider));
//! layered(provider, &layers)
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo_core::error::codes;
use rdubbo_core::stream::StreamEnd;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Layer, Reply, RpcError, RpcResult, Url};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A middleware around an invoker, written as one method. Make it a [`Layer`] with
/// [`FilterLayer`] or [`layer`].
pub trait Filter: Send + Sync + 'static {
    /// Handles `invocation`, usually by calling `next`.
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>>;
}

impl<T: Filter + ?Sized> Filter for Arc<T> {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        (**self).invoke(next, invocation)
    }
}

/// A [`Filter`] as a [`Layer`]: each invoker it makes calls the filter with the inner
/// invoker as `next`.
#[derive(Clone)]
pub struct FilterLayer {
    filter: Arc<dyn Filter>,
}

impl FilterLayer {
    /// The layer of `filter`.
    pub fn new(filter: impl Filter) -> FilterLayer {
        FilterLayer {
            filter: Arc::new(filter),
        }
    }
}

impl From<Arc<dyn Filter>> for FilterLayer {
    fn from(filter: Arc<dyn Filter>) -> FilterLayer {
        FilterLayer { filter }
    }
}

impl std::fmt::Debug for FilterLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterLayer").finish_non_exhaustive()
    }
}

impl Layer for FilterLayer {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(Filtered {
            filter: self.filter.clone(),
            next: inner,
        })
    }
}

/// `filter` as a [`Layer`].
pub fn layer(filter: Arc<dyn Filter>) -> Arc<dyn Layer> {
    Arc::new(FilterLayer::from(filter))
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

/// The built-in layers a URL asks for: `accesslog=true`, then `tps` (provider), then
/// `executes` (provider) or `actives` (consumer), each only if some key of it is set.
pub fn from_url(url: &Url, side: Side) -> Vec<Arc<dyn Layer>> {
    let has = |key: &str| {
        url.params().any(|(k, v)| {
            (k == key || k.strip_suffix(key).is_some_and(|r| r.ends_with('.'))) && !v.is_empty()
        })
    };
    let mut layers: Vec<Arc<dyn Layer>> = Vec::new();
    if url.param_bool("accesslog", false) {
        layers.push(Arc::new(AccessLog::new(side)));
    }
    match side {
        Side::Provider => {
            if has("tps") {
                layers.push(Arc::new(RateLimit::new(url.clone())));
            }
            if has("executes") {
                layers.push(Arc::new(ConcurrencyLimit::executes(url.clone())));
            }
        }
        Side::Consumer => {
            if has("actives") {
                layers.push(Arc::new(ConcurrencyLimit::actives(url.clone())));
            }
        }
    }
    layers
}

fn busy(message: String) -> RpcError {
    RpcError::remote(codes::SERVER_BUSY, message)
}

/// Logs every call: service, method, outcome and time taken (`elapsed_us`), one event
/// per call at its end, target `rdubbo::access`, message `ok` or `error` (with `code` and
/// `error`). A call answered by a stream is logged when the stream ends, with `stream`
/// (`finished`, `failed` or `cancelled`: dropped by its reader before the end; message
/// `cancelled`) and `messages` (how many were read).
#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    side: Side,
}

impl AccessLog {
    /// An access log for `side`.
    pub fn new(side: Side) -> AccessLog {
        AccessLog { side }
    }
}

impl Layer for AccessLog {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(AccessLogged {
            side: self.side,
            inner,
        })
    }
}

struct AccessLogged {
    side: Side,
    inner: Arc<dyn Invoker>,
}

impl Invoker for AccessLogged {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let side = self.side;
        let service = inv.service_key();
        let method = inv.method.clone();
        let started = Instant::now();
        let call = self.inner.invoke(inv);
        Box::pin(async move {
            match call.await {
                // A streamed answer is logged when it ends, with how it ended.
                Ok(Reply::Stream(stream)) => Ok(Reply::Stream(stream.on_end(move |end| {
                    let elapsed_us = started.elapsed().as_micros() as u64;
                    let messages = end.messages();
                    let outcome = end.outcome();
                    match end {
                        StreamEnd::Finished { .. } => {
                            tracing::info!(target: "rdubbo::access", ?side, %service, %method, elapsed_us, stream = outcome, messages, "ok")
                        }
                        StreamEnd::Failed { error, .. } => {
                            tracing::info!(target: "rdubbo::access", ?side, %service, %method, elapsed_us, stream = outcome, messages, code = error.code(), error = %error, "error")
                        }
                        StreamEnd::Cancelled { .. } => {
                            tracing::info!(target: "rdubbo::access", ?side, %service, %method, elapsed_us, stream = outcome, messages, "cancelled")
                        }
                    }
                }))),
                result => {
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
                }
            }
        })
    }
}

/// Keeps `guard` (a concurrency slot) until the call is over: at once for an answer
/// that is not a stream, when the stream ends for one that is (read to its end, failed,
/// or dropped by its reader).
fn hold_until_end<G: Send + 'static>(result: RpcResult<Reply>, guard: G) -> RpcResult<Reply> {
    match result {
        Ok(Reply::Stream(stream)) => Ok(Reply::Stream(stream.on_end(move |_| drop(guard)))),
        other => other,
    }
}

/// Calls in flight per method, limited by `executes` (provider: refuse) or `actives`
/// (consumer: wait for a slot until the call's deadline). A call answered by a stream
/// holds its slot until the stream ends (read to its end, failed, or dropped by its
/// reader).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    url: Url,
    key: &'static str,
    wait: bool,
}

impl ConcurrencyLimit {
    /// Provider side: `executes`.
    pub fn executes(url: Url) -> ConcurrencyLimit {
        ConcurrencyLimit {
            url,
            key: "executes",
            wait: false,
        }
    }

    /// Consumer side: `actives`.
    pub fn actives(url: Url) -> ConcurrencyLimit {
        ConcurrencyLimit {
            url,
            key: "actives",
            wait: true,
        }
    }
}

impl Layer for ConcurrencyLimit {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(Limited {
            limit: self.clone(),
            slots: Mutex::new(HashMap::new()),
            inner,
        })
    }
}

struct Limited {
    limit: ConcurrencyLimit,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    inner: Arc<dyn Invoker>,
}

impl Limited {
    fn semaphore(&self, method: &str) -> Option<(usize, Arc<Semaphore>)> {
        let limit: usize = self
            .limit
            .url
            .method_param_or(method, self.limit.key, 0usize);
        if limit == 0 {
            return None;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sem) = slots.get(method) {
            return Some((limit, sem.clone()));
        }
        let sem = Arc::new(Semaphore::new(limit));
        slots.insert(method.to_owned(), sem.clone());
        Some((limit, sem))
    }
}

impl Invoker for Limited {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let Some((limit, sem)) = self.semaphore(&inv.method) else {
            return self.inner.invoke(inv);
        };
        if !self.limit.wait {
            let Ok(permit) = sem.try_acquire_owned() else {
                let message = format!(
                    "{}.{}: more than {}={limit} calls in flight",
                    inv.interface, inv.method, self.limit.key
                );
                return Box::pin(async move { Err(busy(message)) });
            };
            let call = self.inner.invoke(inv);
            return Box::pin(async move { hold_until_end(call.await, permit) });
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let deadline = inv.timeout.unwrap_or(Duration::from_secs(1));
            let permit = match tokio::time::timeout(deadline, sem.acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => return Err(RpcError::Timeout(deadline)),
            };
            hold_until_end(inner.invoke(inv).await, permit)
        })
    }
}

/// At most `tps` calls per `tps.interval` ms (default 60000) per method.
#[derive(Debug, Clone)]
pub struct RateLimit {
    url: Url,
}

impl RateLimit {
    /// A limiter reading `tps` and `tps.interval` from `url`.
    pub fn new(url: Url) -> RateLimit {
        RateLimit { url }
    }
}

impl Layer for RateLimit {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(RateLimited {
            url: self.url.clone(),
            windows: Mutex::new(HashMap::new()),
            inner,
        })
    }
}

struct RateLimited {
    url: Url,
    /// Per method: start of the current interval and calls admitted in it.
    windows: Mutex<HashMap<String, (Instant, u64)>>,
    inner: Arc<dyn Invoker>,
}

impl RateLimited {
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
        if !windows.contains_key(method) {
            windows.insert(method.to_owned(), (now, 0));
        }
        let Some((start, count)) = windows.get_mut(method) else {
            return Ok(());
        };
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

impl Invoker for RateLimited {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        match self.admit(&inv.method) {
            Ok(()) => self.inner.invoke(inv),
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
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline;

impl Layer for Deadline {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(WithDeadline(inner))
    }
}

struct WithDeadline(Arc<dyn Invoker>);

impl Invoker for WithDeadline {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let Some(timeout) = inv.timeout else {
            return self.0.invoke(inv);
        };
        let call = self.0.invoke(inv);
        Box::pin(async move {
            tokio::time::timeout(timeout, call)
                .await
                .unwrap_or(Err(RpcError::Timeout(timeout)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdubbo_core::{layered, Value};

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
    async fn chain_order_is_the_list_order_for_filters_and_layers() {
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
        seen.lock().unwrap().clear();
        let chain = layered(
            Arc::new(Sleepy),
            &[
                layer(Arc::new(Tag("first", seen.clone()))),
                Arc::new(FilterLayer::new(Tag("second", seen.clone()))),
                Arc::new(Deadline),
            ],
        );
        chain.invoke(call(0)).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["first", "second"]);
    }

    #[tokio::test(start_paused = true)]
    async fn executes_refuses_calls_over_the_limit() {
        let provider = url("jsonrpc://h:1/demo.Api?executes=2");
        let chain = layered(Arc::new(Sleepy), &from_url(&provider, Side::Provider));
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

    #[tokio::test(start_paused = true)]
    async fn actives_makes_callers_wait_for_a_slot() {
        let consumer = url("consumer://h/demo.Api?actives=1");
        let chain = layered(Arc::new(Sleepy), &from_url(&consumer, Side::Consumer));
        let started = Instant::now();
        let results = futures_join((0..3).map(|_| chain.invoke(call(50))).collect()).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(150),
            "one at a time"
        );
        // A caller whose deadline passes while waiting gets a timeout. The clock only
        // moves once every task waits, so the hog holds the slot when the short call
        // comes.
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

    #[tokio::test(start_paused = true)]
    async fn tps_allows_the_budget_per_interval() {
        let provider = url("jsonrpc://h:1/demo.Api?tps=5&tps.interval=300&other.tps=1");
        let chain = layered(Arc::new(Sleepy), &from_url(&provider, Side::Provider));
        let admitted = |chain: Arc<dyn Invoker>| async move {
            let mut ok = 0;
            for _ in 0..8 {
                if chain.invoke(call(0)).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        };
        assert_eq!(admitted(chain.clone()).await, 5);
        tokio::time::advance(Duration::from_millis(299)).await;
        assert!(chain.invoke(call(0)).await.is_err(), "same interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(admitted(chain).await, 5, "a new interval");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_and_access_log() {
        let chain = layered(
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
        // No parameter, no layer.
        assert!(from_url(&url("jsonrpc://h:1/x"), Side::Provider).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn limits_are_per_wrapped_invoker() {
        let provider = url("jsonrpc://h:1/demo.Api?executes=1");
        let layers = from_url(&provider, Side::Provider);
        let a = layered(Arc::new(Sleepy), &layers);
        let b = layered(Arc::new(Sleepy), &layers);
        let results = futures_join(vec![a.invoke(call(10)), b.invoke(call(10))]).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }

    /// Answers each call with a stream whose producer it hands to the test.
    struct Streamer(tokio::sync::mpsc::UnboundedSender<rdubbo_core::MessageSink>);
    impl Invoker for Streamer {
        fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            let (sink, stream) = rdubbo_core::MessageStream::channel(1);
            let _ = self.0.send(sink);
            Box::pin(async move { Ok(Reply::Stream(stream)) })
        }
    }

    fn streamer(
        params: &str,
        side: Side,
    ) -> (
        Arc<dyn Invoker>,
        tokio::sync::mpsc::UnboundedReceiver<rdubbo_core::MessageSink>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let url = url(&format!("tri://h:1/demo.Api?{params}"));
        (layered(Arc::new(Streamer(tx)), &from_url(&url, side)), rx)
    }

    async fn stream_of(chain: &Arc<dyn Invoker>) -> RpcResult<rdubbo_core::Messages> {
        chain.invoke(call(0)).await?.into_stream()?.take()
    }

    #[tokio::test(start_paused = true)]
    async fn executes_counts_a_streamed_answer_until_it_ends() {
        let (chain, mut sinks) = streamer("executes=1", Side::Provider);
        let mut first = stream_of(&chain).await.unwrap();
        let sink = sinks.recv().await.unwrap();
        let busy = stream_of(&chain).await.unwrap_err();
        assert_eq!(busy.code(), codes::SERVER_BUSY, "{busy}");
        sink.send(Default::default()).await.unwrap(); // an empty message
        assert!(first.next().await.unwrap().is_ok());
        assert!(
            stream_of(&chain).await.is_err(),
            "still open after a message"
        );
        sink.finish();
        assert!(first.next().await.is_none());
        // Ended: the slot is back; a stream its reader drops gives it back too.
        let second = stream_of(&chain).await.unwrap();
        assert!(stream_of(&chain).await.is_err());
        drop(second);
        let third = chain.invoke(call(0)).await.unwrap();
        assert!(stream_of(&chain).await.is_err());
        drop(third); // an answer never read
        stream_of(&chain).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn actives_waits_for_a_streamed_answer_to_end() {
        let (chain, mut sinks) = streamer("actives=1", Side::Consumer);
        let mut first = stream_of(&chain).await.unwrap();
        let sink = sinks.recv().await.unwrap();
        let short = Invocation::new("demo.Api", "slow", vec![])
            .with_timeout(Some(Duration::from_millis(100)));
        assert!(matches!(
            chain.invoke(short).await,
            Err(RpcError::Timeout(_))
        ));
        let waiting = tokio::spawn({
            let chain = chain.clone();
            async move { stream_of(&chain).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "waits while the first stream is open"
        );
        sink.fail(RpcError::service("boom")).await;
        assert!(first.next().await.unwrap().is_err());
        waiting.await.unwrap().unwrap();
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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo_core::{BoxFuture, Invocation, Invoker, RpcError, RpcResult, Value};

use crate::{Directory, Provider};

/// Interval between two "no provider" reports of one service.
const NO_PROVIDER_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Calls a provider of a [`Directory`]; on a retryable failure (not reached, reset,
/// timed out, busy, shutting down) tries another one, up to `retries` more attempts, never
/// the same provider twice while another exists. Providers that fail to answer are ejected
/// for a back-off period ([`Health`](crate::Health)); when every provider is ejected they
/// are still tried rather than failing without trying. With no provider at all the call
/// fails at once with [`RpcError::NoProvider`], reported in the log at most every 10 s.
#[derive(Clone)]
pub struct FailoverInvoker {
    state: Arc<State>,
}

struct State {
    directory: Arc<Directory>,
    retries: usize,
    next: AtomicUsize,
    started: Instant,
    /// Milliseconds since `started` of the last "no provider" report.
    last_report_ms: AtomicU64,
    /// Calls refused since the last report.
    refused_since_report: AtomicU64,
}

impl std::fmt::Debug for FailoverInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverInvoker")
            .field("directory", &self.state.directory)
            .field("retries", &self.state.retries)
            .finish()
    }
}

impl FailoverInvoker {
    /// A failover invoker over `directory` with `retries` extra attempts (Dubbo's default
    /// is 2).
    pub fn new(directory: Arc<Directory>, retries: usize) -> FailoverInvoker {
        FailoverInvoker {
            state: Arc::new(State {
                directory,
                retries,
                next: AtomicUsize::new(0),
                started: Instant::now(),
                last_report_ms: AtomicU64::new(u64::MAX),
                refused_since_report: AtomicU64::new(0),
            }),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.state.directory
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

    /// Picks a provider not in `tried` (unless every provider was tried), preferring
    /// providers that are not ejected. Round-robin over the candidates.
    fn select(&self, providers: &[Arc<Provider>], tried: &[usize]) -> Option<Arc<Provider>> {
        if providers.is_empty() {
            return None;
        }
        let now = Instant::now();
        let untried: Vec<&Arc<Provider>> = providers
            .iter()
            .filter(|p| !tried.contains(&(Arc::as_ptr(p) as usize)))
            .collect();
        let pool: Vec<&Arc<Provider>> = if untried.is_empty() {
            providers.iter().collect()
        } else {
            untried
        };
        let healthy: Vec<&Arc<Provider>> = pool
            .iter()
            .copied()
            .filter(|p| !p.health.is_ejected(now))
            .collect();
        let candidates = if healthy.is_empty() { pool } else { healthy };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
        Some(candidates[i].clone())
    }

    async fn call(self: Arc<Self>, invocation: Invocation) -> RpcResult<Value> {
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error = None;
        for attempt in 0..=self.retries {
            // Re-read the list on every attempt: it may have changed meanwhile.
            let providers = self.directory.providers();
            let Some(provider) = self.select(&providers, &tried) else {
                break;
            };
            tried.push(Arc::as_ptr(&provider) as usize);
            match provider.invoker.invoke(invocation.clone()).await {
                Ok(value) => {
                    provider.health.success();
                    return Ok(value);
                }
                Err(e) => {
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    let period = provider.health.failure();
                    tracing::debug!(
                        provider = %provider.url.address(),
                        attempt,
                        error = %e,
                        ejected_for = ?period,
                        "provider failed; trying another"
                    );
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| self.no_provider()))
    }
}

impl Invoker for FailoverInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Value>> {
        Box::pin(self.state.clone().call(invocation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdubbo_core::{Protocol, Url};
    use std::sync::Mutex;

    /// A provider scripted by its port: 1 refuses connections, 2 answers with a service
    /// error, others answer with their port.
    struct Scripted {
        port: u16,
        calls: Arc<Mutex<Vec<u16>>>,
    }
    impl Invoker for Scripted {
        fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Value>> {
            let port = self.port;
            self.calls.lock().unwrap().push(port);
            Box::pin(async move {
                match port {
                    1 => Err(RpcError::Connect {
                        addr: "127.0.0.1:1".into(),
                        reason: "refused".into(),
                    }),
                    2 => Err(RpcError::service("boom")),
                    p => Ok(Value::from(p)),
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

    fn setup(ports: &[u16]) -> (FailoverInvoker, Arc<Mutex<Vec<u16>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let consumer: Url = "consumer://127.0.0.1/demo.Api?interface=demo.Api"
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
        (FailoverInvoker::new(dir, 2), calls)
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
}

use super::*;
use crate::strategy::Failover;
use rdubbo_core::{Layer, Protocol, Value};

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

fn consumer(params: &str) -> Url {
    format!("consumer://127.0.0.1/demo.Api?interface=demo.Api&{params}")
        .parse()
        .unwrap()
}

fn provider_urls(ports: &[u16]) -> Vec<Url> {
    ports
        .iter()
        .map(|p| {
            format!("jsonrpc://127.0.0.1:{p}/demo.Api?interface=demo.Api")
                .parse()
                .unwrap()
        })
        .collect()
}

fn setup(ports: &[u16]) -> (ClusterInvoker, Arc<Mutex<Vec<u16>>>) {
    setup_with(ports, "loadbalance=roundrobin")
}

fn setup_with(ports: &[u16], params: &str) -> (ClusterInvoker, Arc<Mutex<Vec<u16>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let dir = Directory::new(consumer(params), vec![Arc::new(P(calls.clone()))]);
    dir.update(&provider_urls(ports));
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
    assert_eq!(cluster.strategy_name(), "failfast");
    let first = cluster.invoke(inv()).await;
    assert!(matches!(first, Err(RpcError::Connect { .. })), "{first:?}");
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn failsafe_answers_null() {
    let (cluster, _) = setup_with(&[2], "cluster=failsafe");
    assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::Null);
}

#[tokio::test(start_paused = true)]
async fn failback_answers_null_and_retries_every_period_up_to_retries() {
    let (cluster, calls) = setup_with(&[1], "cluster=failback&retries=3");
    let start = tokio::time::Instant::now();
    assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::Null);
    assert_eq!(cluster.failback_pending(), 1);
    assert_eq!(calls.lock().unwrap().len(), 1);
    let ms = Duration::from_millis(1);
    // One retry per period, none before; the third failed retry drops the call.
    for retry in 1..=3u32 {
        tokio::time::sleep_until(start + FAILBACK_PERIOD * retry - ms).await;
        assert_eq!(
            calls.lock().unwrap().len(),
            retry as usize,
            "before retry {retry}"
        );
        tokio::time::sleep(ms * 2).await;
        assert_eq!(
            calls.lock().unwrap().len(),
            1 + retry as usize,
            "retry {retry}"
        );
        let pending = if retry < 3 { 1 } else { 0 };
        assert_eq!(cluster.failback_pending(), pending, "after retry {retry}");
    }
    tokio::time::sleep(FAILBACK_PERIOD * 3).await;
    assert_eq!(calls.lock().unwrap().len(), 4, "no more retries");
}

#[tokio::test(start_paused = true)]
async fn failback_retry_succeeds_once_the_provider_is_back() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let dir = Directory::new(
        consumer("cluster=failback"),
        vec![Arc::new(P(calls.clone()))],
    );
    dir.update(&provider_urls(&[1]));
    let cluster = ClusterInvoker::new(dir.clone()).unwrap();
    assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::Null);
    // The refusing provider is replaced by a working one before the retry.
    dir.update(&provider_urls(&[7000]));
    tokio::time::sleep(FAILBACK_PERIOD + Duration::from_millis(1)).await;
    assert_eq!(*calls.lock().unwrap(), [1, 7000]);
    assert_eq!(cluster.failback_pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn ejection_backs_off_and_doubles_on_tokio_time() {
    // Two providers, the first refusing: after each failure it is skipped for a back-off
    // of 1 s, then 2 s, then 4 s, and tried again once it is over. A call every 100 ms.
    let (cluster, calls) = setup_with(&[1, 7000], "loadbalance=roundrobin&retries=1");
    let start = tokio::time::Instant::now();
    let mut refused_at = Vec::new();
    let mut refused = 0;
    while start.elapsed() < Duration::from_secs(8) {
        assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::from(7000));
        let now = calls.lock().unwrap().iter().filter(|p| **p == 1).count();
        if now > refused {
            refused = now;
            refused_at.push(start.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused_at.len(), 4, "{refused_at:?}");
    for (i, back_off) in [1000, 2000, 4000].into_iter().enumerate() {
        let gap = refused_at[i + 1] - refused_at[i];
        // Round-robin may give the first call after the back-off to the other provider.
        assert!((back_off..=back_off + 200).contains(&gap), "{refused_at:?}");
    }
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
fn unknown_names_are_the_tables_errors_naming_the_known_ones() {
    let err = ClusterInvoker::new(Directory::new(consumer("cluster=magic"), vec![])).unwrap_err();
    assert!(
        matches!(&err, SetupError::Unknown { kind: "cluster", name, .. } if name == "magic"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("`magic`") && text.contains("failfast, failover"),
        "{text}"
    );
    for params in ["loadbalance=best", "methods.echo.loadbalance=best"] {
        let err = ClusterInvoker::new(Directory::new(consumer(params), vec![])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("best") && text.contains("roundrobin"),
            "{text}"
        );
    }
    // A table without the built-ins knows no default either.
    let dir = Directory::new(consumer(""), vec![]);
    let err = ClusterInvoker::with_extensions(dir, &Extensions::new()).unwrap_err();
    assert!(err.to_string().contains("failover"), "{err}");
}

/// Answers with the second provider tried; counts the calls it handled.
struct SecondChance(Arc<std::sync::atomic::AtomicUsize>);
impl ClusterStrategy for SecondChance {
    fn invoke(&self, cluster: &Cluster, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        let cluster = cluster.clone();
        Box::pin(async move {
            let providers = cluster.list(&inv);
            let first = cluster
                .select(&providers, &[], &inv)
                .ok_or_else(|| cluster.no_provider())?;
            let second = cluster
                .select(&providers, &[first], &inv)
                .ok_or_else(|| cluster.no_provider())?;
            cluster.attempt(&second, inv, 1).await
        })
    }
}

/// Always the provider with the highest port.
struct Highest;
impl LoadBalance for Highest {
    fn select(&self, providers: &[Arc<Provider>], _: &Invocation) -> Arc<Provider> {
        providers
            .iter()
            .max_by_key(|p| p.url.port())
            .cloned()
            .unwrap()
    }
}

#[tokio::test]
async fn a_users_strategy_and_balancer_come_from_the_table() {
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut table = Extensions::with_cluster_builtins();
    table.add_protocol(Arc::new(P(calls.clone())));
    table.add_cluster("secondchance", SecondChance(handled.clone()));
    table.add_balancer("highest", || Arc::new(Highest));
    let table = Arc::new(table);
    let dir = Directory::with_extensions(
        consumer("cluster=secondchance&loadbalance=highest"),
        table.clone(),
        vec![],
    );
    dir.update(&provider_urls(&[7001, 7003, 7002]));
    let cluster = ClusterInvoker::with_extensions(dir.clone(), &table).unwrap();
    assert_eq!(cluster.strategy_name(), "secondchance");
    // Highest picks 7003 first; the second pick excludes it: 7002.
    for _ in 0..3 {
        assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::from(7002));
    }
    assert_eq!(handled.load(Ordering::Relaxed), 3);
    assert_eq!(*calls.lock().unwrap(), [7002, 7002, 7002]);
    // Method-level balancer, resolved through the same table; the built-in strategy
    // under its own name; `new` uses the directory's table.
    let dir = Directory::with_extensions(
        consumer("methods.echo.loadbalance=highest"),
        table.clone(),
        vec![],
    );
    dir.update(&provider_urls(&[7001, 7005, 7002]));
    let cluster = ClusterInvoker::new(dir).unwrap();
    assert_eq!(cluster.strategy_name(), "failover");
    for _ in 0..3 {
        assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::from(7005));
    }
    // A user's table may replace a built-in.
    let mut replaced = (*table).clone();
    replaced.add_cluster("failover", SecondChance(handled.clone()));
    let dir = Directory::with_extensions(consumer("loadbalance=highest"), table, vec![]);
    dir.update(&provider_urls(&[7001, 7002]));
    let cluster = ClusterInvoker::with_extensions(dir, &replaced).unwrap();
    assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::from(7001));
    assert_eq!(handled.load(Ordering::Relaxed), 4);
    // The built-ins are plain values too.
    let mut table = Extensions::with_cluster_builtins();
    table.add_cluster("again", Failover);
    assert!(table.cluster_names().contains(&"again"));
}

/// A per-attempt layer: records, for every attempt, what the provider's invoker answered.
struct Attempts(Arc<Mutex<Vec<Result<u16, String>>>>);
struct Recording {
    seen: Arc<Mutex<Vec<Result<u16, String>>>>,
    inner: Arc<dyn Invoker>,
}
impl Layer for Attempts {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(Recording {
            seen: self.0.clone(),
            inner,
        })
    }
}
impl Invoker for Recording {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let seen = self.seen.clone();
        let call = self.inner.invoke(inv);
        Box::pin(async move {
            let result = call.await;
            let entry = match &result {
                Ok(Reply::Value(v)) => Ok(v.as_u64().unwrap() as u16),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            };
            seen.lock().unwrap().push(entry);
            result
        })
    }
}

#[tokio::test]
async fn attempt_layers_see_each_failover_attempt_on_its_provider() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut table = Extensions::with_cluster_builtins();
    table.add_protocol(Arc::new(P(calls.clone())));
    let layers: Vec<Arc<dyn Layer>> = vec![Arc::new(Attempts(seen.clone()))];
    let dir =
        Directory::with_extensions(consumer("loadbalance=roundrobin"), Arc::new(table), layers);
    dir.update(&provider_urls(&[1, 7000]));
    let cluster = ClusterInvoker::new(dir.clone()).unwrap();
    // Round-robin goes to the refusing provider first: two attempts, both seen.
    assert_eq!(cluster.invoke(inv()).await.unwrap(), Value::from(7000));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen[0].as_ref().is_err_and(|e| e.contains("127.0.0.1:1")),
            "{seen:?}"
        );
        assert_eq!(seen[1], Ok(7000));
    }
    // The layers wrap each provider once: kept providers keep their layered invoker.
    let before = dir.providers();
    dir.update(&provider_urls(&[1, 7000, 7001]));
    let after = dir.providers();
    assert!(Arc::ptr_eq(&before[0].invoker, &after[0].invoker));
    assert!(Arc::ptr_eq(&before[1].invoker, &after[1].invoker));
    seen.lock().unwrap().clear();
    cluster.invoke(inv()).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the ejected provider is skipped"
    );
    assert_eq!(calls.lock().unwrap().len(), 3);
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
    let now = crate::health::now();
    let ejected = providers
        .iter()
        .filter(|p| p.health.is_ejected(now))
        .count();
    assert_eq!(ejected, 4, "every failing provider is marked");
    // But selection only skips two of them.
    let mut reached = std::collections::HashSet::new();
    for _ in 0..200 {
        let p = cluster.cluster().select(&providers, &[], &inv()).unwrap();
        reached.insert(Arc::as_ptr(&p) as usize);
    }
    assert_eq!(reached.len(), 2, "exactly the re-admitted half is used");
    // The re-admitted ones are those with the fewest consecutive failures.
    assert!(reached.contains(&(Arc::as_ptr(&providers[0]) as usize)));
    assert!(reached.contains(&(Arc::as_ptr(&providers[1]) as usize)));
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn routed_lists_skip_tried_and_ejected_providers_and_keep_the_cap() {
    let (cluster, _) = setup_with(&[7000, 7001, 7002, 7003], "ejection.max.percent=50");
    let cluster = cluster.cluster().clone();
    let call = inv();
    let routed = cluster.list(&call);
    let port = |p: Arc<Provider>| p.url.port().unwrap();
    // Nothing failed: every provider is reached.
    let reached: std::collections::BTreeSet<u16> = (0..400)
        .map(|_| port(cluster.select(&routed, &[], &call).unwrap()))
        .collect();
    assert_eq!(reached.len(), 4);
    // One ejected, one tried: the two others only.
    routed[0].health.failure();
    let tried = [routed[1].clone()];
    let reached: std::collections::BTreeSet<u16> = (0..400)
        .map(|_| port(cluster.select(&routed, &tried, &call).unwrap()))
        .collect();
    assert_eq!(reached, [7002, 7003].into());
    // Every provider tried: any of them again, but not the ejected one.
    let reached: std::collections::BTreeSet<u16> = (0..400)
        .map(|_| port(cluster.select(&routed, &routed, &call).unwrap()))
        .collect();
    assert_eq!(reached, [7001, 7002, 7003].into());
    // Three ejected with a 50% cap: the one with the fewest failures is let back.
    routed[1].health.failure();
    routed[2].health.failure();
    routed[2].health.failure();
    routed[0].health.failure();
    let reached: std::collections::BTreeSet<u16> = (0..400)
        .map(|_| port(cluster.select(&routed, &[], &call).unwrap()))
        .collect();
    assert_eq!(reached, [7001, 7003].into());
    // Back to health: the fast path again, everyone reached.
    for p in routed.iter() {
        p.health.success();
    }
    assert_eq!(cluster.directory().marked(), 0);
    let reached: std::collections::BTreeSet<u16> = (0..400)
        .map(|_| port(cluster.select(&routed, &[], &call).unwrap()))
        .collect();
    assert_eq!(reached.len(), 4);
}

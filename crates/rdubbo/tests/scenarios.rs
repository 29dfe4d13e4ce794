//! The seven failure scenarios of SCENARIOS.md, plus a three-node ensemble losing its
//! leader, against real ZooKeeper servers (Debian package `zookeeper`) on loopback.
//!
//! Providers are real JSON-RPC servers in this process, consumers are real references
//! discovering them through ZooKeeper. Each scenario continues from the state the previous
//! one left, as in the table.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo::{BoxFuture, Invocation, Invoker, Registry, Reply, RpcError, RpcResult, ServiceInfo};
use rdubbo_testkit::{zk_cli, ZkEnsemble, ZkServer};
use serde_json::Value;

const IFACE: &str = "demo.StatusService";
const MISSING: &str = "demo.NobodyServesThis";

/// A provider that tells who it is.
struct Tagged(String);

impl Invoker for Tagged {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let tag = self.0.clone();
        Box::pin(async move {
            let r: RpcResult<Value> = async move {
                match &*inv.method {
                    "whoami" => Ok(Value::String(tag)),
                    "slow" => {
                        let ms = inv.args.first().and_then(|v| v.as_u64()).unwrap_or(50);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(Value::String(tag))
                    }
                    other => Err(RpcError::service(format!("no method {other}"))),
                }
            }
            .await;
            r.map(Reply::Json)
        })
    }
}

fn info(interface: &str) -> ServiceInfo {
    ServiceInfo {
        interface: interface.to_owned(),
        version: Some("1.0.0".to_owned()),
        group: None,
        methods: vec!["whoami".into(), "slow".into()],
        ..Default::default()
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn scratch_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rdubbo-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn registry(url: String) -> Arc<dyn Registry> {
    rdubbo::registry::connect(&url).await.unwrap()
}

/// Registry URL parameters of these tests: a short session so that expiry scenarios fit
/// in a test, quick retries, a cache file of the test's own.
fn params(cache: &str) -> String {
    format!(
        "session=2000&retry.period=500&file={}",
        scratch_file(cache).display()
    )
}

async fn provider(registry: &Arc<dyn Registry>, tag: &str) -> Provider {
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(tag)
        .registry(registry.clone())
        .export(info(IFACE), Arc::new(Tagged(tag.to_owned())))
        .unregister_wait(Duration::from_millis(700))
        .drain(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

async fn reference(registry: &Arc<dyn Registry>, interface: &str) -> Reference {
    Reference::builder(interface)
        .version("1.0.0")
        .application("scenario-consumer")
        .registry(registry.clone())
        .check(false)
        .wait(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

fn call(method: &str) -> Invocation {
    Invocation::new(IFACE, method, Vec::<rdubbo::Value>::new())
        .with_timeout(Some(Duration::from_secs(3)))
}

/// Calls `whoami` until it succeeds; panics after `timeout`.
async fn wait_success(r: &Reference, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match r.invoke(call("whoami")).await {
            Ok(v) => return v.decode::<String>().unwrap_or_default(),
            Err(e) => {
                assert!(Instant::now() < deadline, "calls still fail: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn wait_providers(r: &Reference, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while r.directory().providers().len() != n {
        assert!(
            Instant::now() < deadline,
            "consumer sees {} providers, expected {n}",
            r.directory().providers().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Steady traffic from `workers` callers until stopped; counts answers per provider and
/// keeps every failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    by_provider: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<RpcError>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(r: &Arc<Reference>, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let by_provider = Arc::new(Mutex::new(BTreeMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (r, stop, ok, by, failures) = (
                    r.clone(),
                    stop.clone(),
                    ok.clone(),
                    by_provider.clone(),
                    failures.clone(),
                );
                tokio::spawn(async move {
                    // Bounded: at most 100k calls per worker even if never stopped.
                    for _ in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let inv = Invocation::new(IFACE, "slow", vec![rdubbo::Value::from(5)])
                            .with_timeout(Some(Duration::from_secs(3)));
                        match r.invoke(inv).await {
                            Ok(v) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                *by.lock()
                                    .unwrap()
                                    .entry(v.decode::<String>().unwrap_or_else(|_| "?".into()))
                                    .or_default() += 1;
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            by_provider,
            failures,
            tasks,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    async fn wait_ok(&self, more: u64) {
        let target = self.ok() + more;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ok() < target {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} calls",
                self.ok()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> (u64, BTreeMap<String, u64>, Vec<RpcError>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let by = self.by_provider.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), by, failures)
    }
}

fn provider_nodes(zk_address: &str) -> String {
    zk_cli(zk_address, &["ls", &format!("/dubbo/{IFACE}/providers")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_scenarios_in_sequence() {
    init_tracing();
    let mut zk = ZkServer::start();
    let url = zk.registry_url(&params("seven.cache"));

    // 2.1 consumer + ZooKeeper, no provider → start a provider.
    let consumer_registry = registry(url.clone()).await;
    let consumer = Arc::new(reference(&consumer_registry, IFACE).await);
    for _ in 0..3 {
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(2), consumer.invoke(call("whoami")))
            .await
            .expect("a call without provider must fail at once, not hang")
            .unwrap_err();
        assert!(matches!(err, RpcError::NoProvider(_)), "{err}");
        assert_eq!(err.to_string(), format!("no provider for {IFACE}:1.0.0"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let reg_a = registry(url.clone()).await;
    let a = provider(&reg_a, "A").await;
    // Seen through the watch: no restart, no polling of our own.
    wait_providers(&consumer, 1, Duration::from_secs(5)).await;
    assert_eq!(wait_success(&consumer, Duration::from_secs(5)).await, "A");

    // 2.2 start a 2nd provider: added at once, calls spread over both.
    let reg_b = registry(url.clone()).await;
    let b = provider(&reg_b, "B").await;
    wait_providers(&consumer, 2, Duration::from_secs(5)).await;
    // Weighted random (Dubbo's default) over equal weights: both get calls. The chance
    // that one of them gets fewer than 5 of 60 is below 1e-11.
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let who = consumer.invoke(call("whoami")).await.unwrap();
        *seen.entry(who.decode::<String>().unwrap()).or_insert(0) += 1;
    }
    assert!(seen.get("A").copied().unwrap_or(0) >= 5, "{seen:?}");
    assert!(seen.get("B").copied().unwrap_or(0) >= 5, "{seen:?}");

    // 2.3 a second reference names a service nobody provides: it fails fast, the other
    // service is unaffected (the rate-limited report has its own test below).
    let missing = reference(&consumer_registry, MISSING).await;
    for _ in 0..50 {
        let err = missing
            .invoke(Invocation::new(MISSING, "x", Vec::<rdubbo::Value>::new()))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::NoProvider(_)));
        consumer.invoke(call("whoami")).await.unwrap();
    }

    // 2.4 two providers under steady traffic, stop one: its node disappears, the consumer
    // drops it, no call fails.
    let load = Load::start(&consumer, 4);
    load.wait_ok(200).await;
    let a_url = a.urls()[0].clone();
    assert!(provider_nodes(&zk.address()).contains(&a_url.to_encoded()));
    a.stop().await;
    reg_a.destroy().await;
    assert!(!provider_nodes(&zk.address()).contains(&a_url.to_encoded()));
    wait_providers(&consumer, 1, Duration::from_secs(5)).await;
    load.wait_ok(200).await;
    let (ok, by, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "calls failed while a provider stopped: {failures:?}"
    );
    assert!(
        by.get("A").copied().unwrap_or(0) > 0 && by.get("B").copied().unwrap_or(0) > 0,
        "{by:?}"
    );
    eprintln!("2.4: {ok} calls, none failed: {by:?}");

    // 2.5 one provider: stop it → calls fail fast; start two → resume as soon as one
    // registers.
    b.stop().await;
    reg_b.destroy().await;
    wait_providers(&consumer, 0, Duration::from_secs(5)).await;
    let err = tokio::time::timeout(Duration::from_secs(2), consumer.invoke(call("whoami")))
        .await
        .expect("must fail fast")
        .unwrap_err();
    assert!(matches!(err, RpcError::NoProvider(_)), "{err}");
    let reg_c = registry(url.clone()).await;
    let c = provider(&reg_c, "C").await;
    let reg_d = registry(url.clone()).await;
    let d = provider(&reg_d, "D").await;
    let who = wait_success(&consumer, Duration::from_secs(5)).await;
    assert!(who == "C" || who == "D");
    wait_providers(&consumer, 2, Duration::from_secs(5)).await;

    // 2.6 stop ZooKeeper for longer than the session timeout, start it again: calls keep
    // succeeding from the last known list; afterwards registrations and watches are back.
    let load = Load::start(&consumer, 2);
    load.wait_ok(100).await;
    zk.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            consumer.directory().providers().len(),
            2,
            "providers dropped while ZooKeeper is down"
        );
    }
    load.wait_ok(100).await;
    zk.restart();
    let back = Instant::now();
    let c_node = c.urls()[0].to_encoded();
    let d_node = d.urls()[0].to_encoded();
    loop {
        let nodes = provider_nodes(&zk.address());
        if nodes.contains(&c_node) && nodes.contains(&d_node) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "provider nodes not back: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "2.6: provider nodes back {:?} after ZooKeeper returned",
        back.elapsed()
    );
    let (ok, _, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "calls failed while ZooKeeper was down: {failures:?}"
    );
    eprintln!("2.6: {ok} calls while ZooKeeper was down and back, none failed");
    // Watches work again: a new provider is seen.
    let reg_e = registry(url.clone()).await;
    let e = provider(&reg_e, "E").await;
    wait_providers(&consumer, 3, Duration::from_secs(10)).await;
    e.stop().await;
    reg_e.destroy().await;
    wait_providers(&consumer, 2, Duration::from_secs(10)).await;

    // 2.7 stop the providers and ZooKeeper, then start ZooKeeper and a provider:
    // everything recovers by itself. The nodes of the stopped providers may come back
    // with ZooKeeper until their sessions expire; the consumer survives those too.
    zk.stop();
    // Neither can unregister while ZooKeeper is down: D dies abruptly (its server is
    // dropped), C stops gracefully. Their nodes come back with ZooKeeper, stale, until
    // their sessions expire.
    drop(d);
    reg_d.destroy().await;
    c.stop().await;
    reg_c.destroy().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    zk.restart();
    let reg_f = registry(url.clone()).await;
    let f = provider(&reg_f, "F").await;
    let recovered = Instant::now();
    // Every call eventually lands on F; stale providers cost at most a fast failure.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = consumer.invoke(call("whoami")).await;
        if matches!(&r, Ok(v) if v == "F") && consumer.directory().providers().len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {r:?}, {} providers",
            consumer.directory().providers().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "2.7: recovered {:?} after ZooKeeper and the provider returned",
        recovered.elapsed()
    );
    for _ in 0..20 {
        assert_eq!(consumer.invoke(call("whoami")).await.unwrap(), "F");
    }
    f.stop().await;
    reg_f.destroy().await;
    consumer.close().await;
    missing.close().await;
    consumer_registry.destroy().await;
}

/// Writer that keeps what tracing prints, to count reports.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn scenario_2_3_missing_service_is_reported_steadily_not_looping() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let zk = ZkServer::start();
    let url = zk.registry_url(&params("missing.cache"));
    let reg = registry(url.clone()).await;
    let p = provider(&reg, "A").await;
    let served = reference(&reg, IFACE).await;
    let missing = reference(&reg, MISSING).await;
    // Three seconds of calls to both services (bounded count and time).
    let until = Instant::now() + Duration::from_secs(3);
    let mut refused = 0;
    for _ in 0..5_000 {
        if Instant::now() > until {
            break;
        }
        assert!(missing
            .invoke(Invocation::new(MISSING, "x", Vec::<rdubbo::Value>::new()))
            .await
            .is_err());
        refused += 1;
        served.invoke(call("whoami")).await.unwrap();
    }
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let reports = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&format!("no provider for {MISSING}")))
        .count();
    assert!(refused > 100, "{refused}");
    // One report when the empty list arrived, one rate-limited report of refused calls;
    // never one per call.
    assert!(
        (1..=3).contains(&reports),
        "{reports} reports for {refused} calls:\n{text}"
    );
    assert!(
        !text.contains("no provider for demo.StatusService"),
        "{text}"
    );
    p.stop().await;
    reg.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_starting_while_zookeeper_is_down_uses_the_cache_file() {
    init_tracing();
    let mut zk = ZkServer::start();
    let cache = params("cache-start.cache");
    let url = zk.registry_url(&cache);
    let reg_p = registry(url.clone()).await;
    let p = provider(&reg_p, "A").await;
    {
        let reg = registry(url.clone()).await;
        let r = reference(&reg, IFACE).await;
        wait_providers(&r, 1, Duration::from_secs(5)).await;
        r.close().await;
        reg.destroy().await;
    }
    let text = std::fs::read_to_string(scratch_file("cache-start.cache")).unwrap();
    assert!(
        text.contains(&format!("{IFACE}\\:1.0.0=jsonrpc\\://127.0.0.1\\:")),
        "{text}"
    );
    zk.stop();
    // ZooKeeper is down: the registry starts anyway, the reference is fed from the file.
    let reg = registry(url.clone()).await;
    assert!(!reg.is_available());
    let r = reference(&reg, IFACE).await;
    // APPLICATION_FIRST (the default) settles on the interface level once the application
    // level has had its grace (half the reference's wait) without an answer.
    wait_providers(&r, 1, Duration::from_secs(10)).await;
    assert_eq!(r.invoke(call("whoami")).await.unwrap(), "A");
    r.close().await;
    reg.destroy().await;
    p.stop().await;
    reg_p.destroy().await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(scratch_file("cache-start.cache"))
        .unwrap();
    // A damaged cache file is ignored line by line, never a reason to fail.
    writeln!(f, "garbage\\u12 = :::: %%%").unwrap();
    let reg = registry(url.clone()).await;
    let r = reference(&reg, IFACE).await;
    r.close().await;
    reg.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_leader_killed_while_calls_flow() {
    init_tracing();
    let mut zk = ZkEnsemble::start(3);
    let url = zk.registry_url(&params("ensemble.cache"));
    let reg_p1 = registry(url.clone()).await;
    let p1 = provider(&reg_p1, "A").await;
    let reg_p2 = registry(url.clone()).await;
    let p2 = provider(&reg_p2, "B").await;
    let reg_c = registry(url.clone()).await;
    let consumer = Arc::new(reference(&reg_c, IFACE).await);
    wait_providers(&consumer, 2, Duration::from_secs(5)).await;

    let load = Load::start(&consumer, 4);
    load.wait_ok(200).await;
    let leader = zk
        .wait_leader(Duration::from_secs(30))
        .expect("no leader elected");
    zk.stop(leader);
    let survivor = (leader + 1) % 3;
    let new_leader = zk
        .wait_leader(Duration::from_secs(30))
        .expect("no new leader elected");
    assert_ne!(new_leader, leader);
    load.wait_ok(300).await;
    // Registrations survive: both provider nodes are on the surviving members.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let nodes = provider_nodes(&zk.address(survivor));
        if nodes.contains(&p1.urls()[0].to_encoded()) && nodes.contains(&p2.urls()[0].to_encoded())
        {
            break;
        }
        assert!(Instant::now() < deadline, "registrations lost: {nodes}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The consumer's watch still works after the leader change.
    let reg_p3 = registry(url.clone()).await;
    let p3 = provider(&reg_p3, "C").await;
    wait_providers(&consumer, 3, Duration::from_secs(10)).await;
    let (ok, by, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "calls failed while the leader died: {failures:?}"
    );
    eprintln!("ensemble: {ok} calls across a leader change, none failed: {by:?}");
    for (p, r) in [(p1, reg_p1), (p2, reg_p2), (p3, reg_p3)] {
        p.stop().await;
        r.destroy().await;
    }
    consumer.close().await;
    reg_c.destroy().await;
}

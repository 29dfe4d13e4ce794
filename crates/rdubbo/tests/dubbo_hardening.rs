//! A dubbo:// provider application under hostile clients and at its stop, through the
//! facade (`Provider`, `Reference` with a direct URL, no registry): a client that sends
//! calls and never reads the answers does not grow the process, a stop with 64 calls in
//! flight answers every one of them, and a consumer refused at the connection limit says
//! so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdubbo::consumer::Reference;
use rdubbo::dubbo::codec::{self, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use rdubbo::dubbo::ServerConfig;
use rdubbo::error::codes;
use rdubbo::hessian::Encoder;
use rdubbo::provider::Provider;
use rdubbo::{RpcError, RpcResult, Url};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

const IFACE: &str = "org.example.Slow";

#[rdubbo::service(interface = "org.example.Slow")]
pub trait Slow {
    /// Answers after `ms` milliseconds.
    async fn sleep(&self, ms: i64) -> RpcResult<i64>;
    /// A string of `n` bytes.
    async fn big(&self, n: i32) -> RpcResult<String>;
}

#[derive(Clone, Default)]
struct Sleeper {
    active: Arc<AtomicUsize>,
}

impl Slow for Sleeper {
    async fn sleep(&self, ms: i64) -> RpcResult<i64> {
        self.active.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        Ok(ms)
    }

    async fn big(&self, n: i32) -> RpcResult<String> {
        Ok("x".repeat(n.max(0) as usize))
    }
}

async fn provider(config: ServerConfig, sleeper: Sleeper) -> Provider {
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("dubbo")
        .dubbo_config(config)
        .export(
            SlowServer::<Sleeper>::info(),
            Arc::new(SlowServer::new(sleeper)),
        )
        .drain(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

async fn consumer(provider: &Provider, params: &str) -> SlowClient {
    let mut url: Url = provider.urls()[0].clone();
    for kv in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        url.set_param(k, v);
    }
    let reference = Reference::builder(IFACE).url(url).build().await.unwrap();
    SlowClient::new(Arc::new(reference))
}

/// Waits (up to 10 s) until `cond` holds; panics naming `what` otherwise.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `big(4096)` as any Dubbo client sends it.
fn big_request(id: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let start = codec::begin_frame(&mut out, FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, 0, id);
    let mut e = Encoder::with_buffer(out);
    codec::encode_request_body(
        &mut e,
        IFACE,
        None,
        "big",
        &["I"],
        &rdubbo::Args::Values(vec![rdubbo::Value::Int(4096)]),
        &[("path", IFACE)],
    )
    .unwrap();
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

/// The attack of the issue: a client streams calls with 4 KiB answers and never reads.
/// Before the bound, the provider grew to gigabytes within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_grow_the_provider() {
    let provider = provider(ServerConfig::default(), Sleeper::default()).await;
    let legit = consumer(&provider, "timeout=5000").await;
    assert_eq!(legit.big(3).await.unwrap(), "xxx");
    let before = rss();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut hostile = socket.connect(provider.local_addr()).await.unwrap();
    let mut id = 0;
    let mut written = 0usize;
    let mut peak = before;
    loop {
        let mut batch = Vec::new();
        for _ in 0..256 {
            id += 1;
            batch.extend(big_request(id));
        }
        match tokio::time::timeout(Duration::from_secs(1), hostile.write_all(&batch)).await {
            Ok(r) => r.unwrap(),
            Err(_) => break, // blocked: the provider stopped reading
        }
        written += batch.len();
        peak = peak.max(rss());
        assert!(
            written < 512 << 20,
            "512 MiB written and the provider still reads"
        );
    }
    // The legit consumer is answered meanwhile.
    for _ in 0..10 {
        assert_eq!(legit.big(5).await.unwrap(), "xxxxx");
    }
    let grown = peak.max(rss()).saturating_sub(before);
    println!(
        "hostile client blocked after {written} bytes of requests; process grew {} KiB",
        grown >> 10
    );
    assert!(
        grown < 100 << 20,
        "the process grew by {} MiB ({written} bytes of requests written)",
        grown >> 20
    );
    drop(hostile);
    provider.stop().await;
}

/// A stop with 64 calls in flight on a direct URL: each is answered within the drain;
/// calls made during the stop get the retryable "shutting down" (or a connection error),
/// none waits for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_answers_the_calls_in_flight() {
    let sleeper = Sleeper::default();
    let provider = provider(ServerConfig::default(), sleeper.clone()).await;
    let client = consumer(&provider, "timeout=10000").await;
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.sleep(300).await })
        })
        .collect();
    wait_until("64 calls in the service", || {
        sleeper.active.load(Ordering::SeqCst) == 64
    })
    .await;
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late = {
        let (client, stopped) = (client.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut errors: Vec<(RpcError, Duration)> = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let started = tokio::time::Instant::now();
                if let Err(e) = client.big(1).await {
                    errors.push((e, started.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            errors
        })
    };
    provider.stop().await;
    stopped.store(true, Ordering::SeqCst);
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 300);
    }
    let errors = late.await.unwrap();
    assert!(!errors.is_empty());
    for (e, took) in &errors {
        assert!(!matches!(e, RpcError::Timeout(_)), "{e}");
        assert!(*took < Duration::from_secs(2), "{e} after {took:?}");
    }
    assert!(
        errors.iter().any(|(e, _)| e.code() == codes::SHUTTING_DOWN),
        "{}",
        errors[0].0
    );
}

/// A consumer refused at the connection limit (every connection serving a call) says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_consumer_reports_the_connection_limit() {
    let sleeper = Sleeper::default();
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let provider = provider(config, sleeper.clone()).await;
    let first = consumer(&provider, "timeout=5000").await;
    let slow = tokio::spawn(async move { first.sleep(1000).await });
    wait_until("the slow call in the service", || {
        sleeper.active.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = consumer(&provider, "timeout=3000").await;
    let e = second.big(1).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("provider refused the connection: connection limit (1) reached"),
        "{e}"
    );
    assert!(!matches!(e, RpcError::Timeout(_)), "{e}");
    assert_eq!(slow.await.unwrap().unwrap(), 1000);
    provider.stop().await;
}

//! The server under hostile clients, over loopback: clients that send calls or heartbeats
//! and never read the answers, idle connections taking every slot, a stop with calls in
//! flight, and what a client refused at the connection limit reports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Url};
use rdubbo_hessian::Encoder;
use rdubbo_protocol_dubbo::codec::{self, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use rdubbo_protocol_dubbo::{DubboClient, DubboServer, ServerConfig};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const IFACE: &str = "org.apache.dubbo.demo.DemoService";

/// `echo(x)` answers at once; `big(n)` a string of `n` bytes; `sleep(ms)` after `ms`.
#[derive(Default)]
struct Demo {
    active: Arc<AtomicUsize>,
}

impl Invoker for Demo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = rdubbo_core::json::from_value(&inv.args.first().unwrap_or_default());
        let active = self.active.clone();
        Box::pin(async move {
            match &*inv.method {
                "echo" => Ok(Reply::Json(arg)),
                "big" => Ok(Reply::Json(json!(
                    "x".repeat(arg.as_u64().unwrap_or(0) as usize)
                ))),
                "sleep" => {
                    active.fetch_add(1, Ordering::SeqCst);
                    let ms = arg.as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    Ok(Reply::Json(json!(ms)))
                }
                other => Err(RpcError::remote(
                    codes::METHOD_NOT_FOUND,
                    format!("no method {other}"),
                )),
            }
        })
    }
}

async fn server(config: ServerConfig) -> (DubboServer, Arc<Demo>) {
    let demo = Arc::new(Demo::default());
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into(), "big".into(), "sleep".into()],
        ..Default::default()
    };
    let server = DubboServer::builder()
        .config(config)
        .export(info, demo.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (server, demo)
}

fn client(addr: SocketAddr, params: &str) -> DubboClient {
    let url: Url = format!("dubbo://{addr}/{IFACE}?{params}").parse().unwrap();
    DubboClient::new(&url).unwrap()
}

fn call(method: &str, arg: Value) -> Invocation {
    Invocation::new(IFACE, method, rdubbo_core::Args::Json(vec![arg]))
}

/// One request frame, as any Dubbo client sends it.
fn request_frame(id: i64, method: &str, arg: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let start = codec::begin_frame(&mut out, FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, 0, id);
    let mut e = Encoder::with_buffer(out);
    codec::encode_request_body(
        &mut e,
        IFACE,
        None,
        method,
        &["I"],
        &rdubbo_core::Args::Values(vec![rdubbo_hessian::Value::Int(arg)]),
        &[("path", IFACE)],
    )
    .unwrap();
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

/// A connection with small socket buffers (so that back-pressure shows quickly).
async fn small_buffered(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
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

/// Streams `frame_of(i)` frames and never reads, until a write has been blocked for 1 s
/// (the server stopped reading and TCP pushed back). Meanwhile checks that the server's
/// queue stays under `bound` and that `legit` calls on their own connection get answers.
/// Returns the bytes written.
async fn flood_without_reading(
    server: &DubboServer,
    legit: &DubboClient,
    bound: usize,
    frame_of: impl Fn(i64) -> Vec<u8>,
) -> usize {
    let mut hostile = small_buffered(server.local_addr()).await;
    let mut written = 0usize;
    let mut peak = 0usize;
    let mut legit_calls = 0;
    let mut id = 0i64;
    let started = tokio::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the hostile client's writes never blocked ({written} bytes written)"
        );
        let mut batch = Vec::new();
        for _ in 0..64 {
            id += 1;
            batch.extend(frame_of(id));
        }
        match tokio::time::timeout(Duration::from_secs(1), hostile.write_all(&batch)).await {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        }
        written += batch.len();
        peak = peak.max(server.queued_bytes());
        assert!(peak <= bound, "{peak} bytes queued (bound {bound})");
        if id % 1024 == 0 {
            let n = legit
                .invoke(call("echo", json!(legit_calls)))
                .await
                .expect("a legit call during the flood");
            assert_eq!(n, json!(legit_calls));
            legit_calls += 1;
        }
    }
    // Blocked: the server holds a bounded queue and still answers others.
    let queued = server.queued_bytes();
    assert!(queued <= bound, "{queued} bytes queued (bound {bound})");
    for i in 0..20 {
        assert_eq!(
            legit.invoke(call("echo", json!(i))).await.unwrap(),
            json!(i)
        );
    }
    assert_eq!(server.connections(), 2, "the hostile connection stays open");
    written
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_pushed_back() {
    let limit = 256 * 1024;
    let (server, _) = server(ServerConfig {
        max_queued_bytes: limit,
        ..ServerConfig::default()
    })
    .await;
    let legit = client(server.local_addr(), "timeout=5000");
    // 4 KiB answers to ~130-byte requests: without a bound the queue would grow 30 times
    // faster than the client writes.
    let written = flood_without_reading(&server, &legit, limit + 64 * 1024, |id| {
        request_frame(id, "big", 4096)
    })
    .await;
    assert!(written > 0);
}

#[tokio::test]
async fn a_client_that_sends_heartbeats_and_never_reads_is_pushed_back() {
    let limit = 64 * 1024;
    let (server, _) = server(ServerConfig {
        max_queued_bytes: limit,
        ..ServerConfig::default()
    })
    .await;
    let legit = client(server.local_addr(), "timeout=5000");
    flood_without_reading(&server, &legit, limit + 64 * 1024, codec::heartbeat_request).await;
}

#[tokio::test]
async fn a_peer_that_takes_no_answer_for_three_heartbeats_is_closed() {
    let (server, _) = server(ServerConfig {
        max_queued_bytes: 64 * 1024,
        heartbeat: Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    let mut hostile = small_buffered(server.local_addr()).await;
    let mut id = 0;
    let mut closed = false;
    for _ in 0..100_000 {
        let mut batch = Vec::new();
        for _ in 0..64 {
            id += 1;
            batch.extend(request_frame(id, "big", 4096));
        }
        match tokio::time::timeout(Duration::from_secs(5), hostile.write_all(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                closed = true;
                break;
            }
            Err(_) => panic!("a write blocked for 5 s: the connection was not closed"),
        }
    }
    assert!(closed, "the connection was never closed");
    wait_until("the connection closed", || server.connections() == 0).await;
}

/// 200 idle connections against a limit of 64: the idle ones make room, a client that
/// has made calls keeps its connection, and new clients get answers.
#[tokio::test]
async fn idle_connections_make_room_for_callers() {
    let (server, _) = server(ServerConfig {
        max_connections: 64,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.local_addr();
    let early = client(addr, "timeout=5000");
    assert_eq!(
        early.invoke(call("echo", json!(0))).await.unwrap(),
        json!(0)
    );
    let mut idle = Vec::new();
    for i in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
        if i % 20 == 0 {
            // The client that made calls keeps its connection through the flood.
            assert_eq!(
                early.invoke(call("echo", json!(i))).await.unwrap(),
                json!(i)
            );
        }
    }
    wait_until("the connection count under the limit", || {
        server.connections() <= 64
    })
    .await;
    assert!(server.evicted() >= 136, "evicted {}", server.evicted());
    for i in 0..10 {
        let fresh = client(addr, "timeout=5000");
        assert_eq!(
            fresh.invoke(call("echo", json!(i))).await.unwrap(),
            json!(i)
        );
        assert_eq!(
            early.invoke(call("echo", json!(i))).await.unwrap(),
            json!(i)
        );
    }
    // The idle connections that made room were closed by the server.
    let closed = || {
        idle.iter()
            .filter(|c| {
                let mut b = [0u8; 1];
                !matches!(c.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    wait_until("136 idle connections closed", || closed() >= 136).await;
}

/// A client refused at the connection limit (every connection serving a call) says so.
#[tokio::test]
async fn a_refused_client_reports_the_connection_limit() {
    let (server, demo) = server(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.local_addr();
    let busy = client(addr, "timeout=5000");
    let slow = {
        let busy = busy.clone();
        tokio::spawn(async move { busy.invoke(call("sleep", json!(1000))).await })
    };
    wait_until("the slow call in the service", || {
        demo.active.load(Ordering::SeqCst) == 1
    })
    .await;
    let refused = client(addr, "timeout=3000");
    let e = refused.invoke(call("echo", json!(1))).await.unwrap_err();
    assert!(
        e.message()
            .contains("provider refused the connection: connection limit (1) reached"),
        "{e}"
    );
    assert_eq!(e.code(), codes::SERVER_BUSY, "{e}");
    assert!(e.is_retryable());
    assert_eq!(slow.await.unwrap().unwrap(), json!(1000));
}

/// A stop with 64 calls in flight on a direct connection: every call in flight is
/// answered, calls made during the stop get the retryable "shutting down" or a clear
/// connection error, and none waits for its timeout.
#[tokio::test]
async fn a_stop_answers_every_call_in_flight() {
    let (server, demo) = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=10000");
    let in_flight: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(call("sleep", json!(300))).await })
        })
        .collect();
    wait_until("64 calls in the service", || {
        demo.active.load(Ordering::SeqCst) == 64
    })
    .await;
    // Calls keep coming while the server stops.
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late = {
        let c = c.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let started = tokio::time::Instant::now();
                if let Err(e) = c.invoke(call("echo", json!(1))).await {
                    errors.push((e, started.elapsed()));
                }
                tokio::task::yield_now().await;
            }
            errors
        })
    };
    let started = tokio::time::Instant::now();
    server.shutdown(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    stopping.store(true, Ordering::SeqCst);
    for call in in_flight {
        assert_eq!(call.await.unwrap().unwrap(), json!(300));
    }
    let errors = late.await.unwrap();
    assert!(!errors.is_empty(), "calls during the stop were refused");
    for (e, took) in &errors {
        assert!(!matches!(e, RpcError::Timeout(_)), "{e}");
        assert!(e.is_retryable(), "{e}");
        assert!(*took < Duration::from_secs(2), "{e} after {took:?}");
    }
    assert!(
        errors.iter().any(|(e, _)| e.code() == codes::SHUTTING_DOWN),
        "{:?}",
        errors.first()
    );
}

/// Java's token auth: a provider exported with a token answers only calls carrying it;
/// the client sends the `token` of its provider URL.
#[tokio::test]
async fn a_token_guards_the_service() {
    use rdubbo_core::Layer;
    use rdubbo_protocol_dubbo::TokenLayer;
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into()],
        ..Default::default()
    };
    let guarded = TokenLayer::new("s3cret").layer(Arc::new(Demo::default()));
    let server = DubboServer::builder()
        .export(info, guarded)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let with_token = client(addr, "token=s3cret");
    assert_eq!(
        with_token.invoke(call("echo", json!(5))).await.unwrap(),
        json!(5)
    );
    for (params, given) in [("", "null"), ("token=guess", "guess")] {
        let e = client(addr, params)
            .invoke(call("echo", json!(5)))
            .await
            .unwrap_err();
        // Java answers status 70 with the RpcException its TokenFilter throws.
        assert_eq!(
            e.message(),
            format!(
                "org.apache.dubbo.rpc.RpcException: Invalid token! Forbid invoke remote \
                 service interface {IFACE} method echo() from consumer 127.0.0.1 to provider \
                 127.0.0.1, consumer incorrect token is {given}"
            )
        );
        assert_eq!(e.code(), codes::SERVICE_ERROR);
        assert!(!e.is_retryable());
        match &e {
            RpcError::Remote { data: Some(d), .. } => assert_eq!(d["status"], 70),
            other => panic!("{other:?}"),
        }
    }
    // `$echo` is answered before the check, as Java's EchoFilter runs first.
    let echo = Invocation::new(IFACE, "$echo", rdubbo_core::Args::Json(vec![json!("hi")]));
    assert_eq!(client(addr, "").invoke(echo).await.unwrap(), json!("hi"));
}

/// A bound of zero means "write everything before reading on": calls still get answers.
#[tokio::test]
async fn a_zero_bound_still_answers() {
    let (server, _) = server(ServerConfig {
        max_queued_bytes: 0,
        ..ServerConfig::default()
    })
    .await;
    let c = client(server.local_addr(), "timeout=5000");
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let c = c.clone();
            let method = if i % 2 == 0 { "echo" } else { "sleep" };
            tokio::spawn(async move { c.invoke(call(method, json!(i))).await })
        })
        .collect();
    for (i, r) in calls.into_iter().enumerate() {
        assert_eq!(r.await.unwrap().unwrap(), json!(i));
    }
}

/// The client side of the same attack: a provider that sends heartbeats and never reads
/// the answers is pushed back too (the client stops reading it).
#[tokio::test]
async fn a_provider_that_never_reads_is_pushed_back_by_the_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = client(addr, "timeout=500");
    let call = {
        let c = c.clone(); // the client (and its connection) lives on after the call
        tokio::spawn(async move { c.invoke(call("echo", json!(1))).await })
    };
    let (mut provider, _) = listener.accept().await.unwrap();
    let mut written = 0usize;
    let started = tokio::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the client never stopped reading ({written} bytes of heartbeats)"
        );
        let batch: Vec<u8> = (0..4096).flat_map(codec::heartbeat_request).collect();
        match tokio::time::timeout(Duration::from_secs(1), provider.write_all(&batch)).await {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        }
        written += batch.len();
    }
    // Each heartbeat answer is as large as the heartbeat: what the client holds is bounded
    // by its queue (1 MiB) and the socket buffers, not by what the provider sent.
    assert!(written < 256 << 20, "{written} bytes of heartbeats read");
    let e = call.await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "{e}");
    drop(c);
}

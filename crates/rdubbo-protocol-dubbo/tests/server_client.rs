//! Client and server over loopback: calls of every value shape, errors, limits, bad
//! frames, heartbeats, back-pressure, reconnect and graceful shutdown.
//!
//! Tests of timer logic (heartbeats, back-off, drain) run on tokio's paused clock
//! (`start_paused`): when every task waits, the runtime jumps to the next timer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Url};
use rdubbo_protocol_dubbo::{java_exception, DubboClient, DubboServer, ServerConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IFACE: &str = "org.apache.dubbo.demo.DemoService";

#[derive(Default)]
struct Demo {
    active: Arc<AtomicUsize>,
    max_active: AtomicUsize,
}

impl Invoker for Demo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let active = self.active.clone();
        Box::pin(async move {
            let r = serve(inv).await;
            active.fetch_sub(1, Ordering::SeqCst);
            r.map(Reply::Json)
        })
    }
}

/// The first argument in its JSON form.
fn first(inv: &Invocation) -> Value {
    rdubbo_core::json::from_value(&inv.args.first().unwrap_or_default())
}

async fn serve(inv: Invocation) -> RpcResult<Value> {
    match &*inv.method {
        "echo" => Ok(first(&inv)),
        "sleep" => {
            let ms = first(&inv).as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!(ms))
        }
        "types" => Ok(json!(inv
            .parameter_types
            .iter()
            .map(|t| &**t)
            .collect::<Vec<_>>()
            .join(","))),
        "attachment" => Ok(json!(inv.attachments.get("trace").unwrap_or(""))),
        "fail" => Err(RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: "no such user".into(),
            data: Some(json!({"exception": "java.lang.IllegalArgumentException"})),
        }),
        "big" => {
            let n = first(&inv).as_u64().unwrap_or(0) as usize;
            Ok(json!("x".repeat(n)))
        }
        other => Err(RpcError::remote(
            codes::METHOD_NOT_FOUND,
            format!("no method {other}"),
        )),
    }
}

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: IFACE.into(),
        version: Some("1.0.0".into()),
        group: None,
        methods: vec!["echo".into()],
        ..Default::default()
    }
}

async fn server_with(config: ServerConfig, addr: SocketAddr) -> (DubboServer, Arc<Demo>) {
    let demo = Arc::new(Demo::default());
    let server = DubboServer::builder()
        .config(config)
        .export(info(), demo.clone())
        .bind(addr)
        .await
        .unwrap();
    (server, demo)
}

async fn server() -> (DubboServer, Arc<Demo>) {
    server_with(ServerConfig::default(), "127.0.0.1:0".parse().unwrap()).await
}

fn client(addr: SocketAddr, params: &str) -> DubboClient {
    let url: Url = format!("dubbo://{addr}/{IFACE}?version=1.0.0&{params}")
        .parse()
        .unwrap();
    DubboClient::new(&url).unwrap()
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

fn call(method: &str, args: Vec<Value>) -> Invocation {
    Invocation::new(IFACE, method, rdubbo_core::Args::Json(args)).with_version(Some("1.0.0"))
}

#[tokio::test]
async fn values_of_every_shape_round_trip() {
    let (server, _) = server().await;
    let c = client(server.local_addr(), "");
    let cases = [
        json!("hello"),
        json!("h\u{e9}llo \u{4e2d}\u{6587} \u{1F600}"),
        json!(42),
        json!(-5_000_000_000i64),
        json!(2.5),
        json!(true),
        json!(null),
        json!([1, "two", [3.5]]),
        json!({"a": 1, "b": [true, null]}),
        json!({"class": "com.example.User", "name": "ann", "age": 42}),
    ];
    for v in cases {
        let got = c.invoke(call("echo", vec![v.clone()])).await.unwrap();
        assert_eq!(got, v);
    }
    // Explicit parameter types reach the provider; without, they are inferred.
    let typed = call("types", vec![json!(1), json!("s")])
        .with_parameter_types(vec!["J".into(), "Ljava/lang/String;".into()]);
    assert_eq!(
        c.invoke(typed).await.unwrap(),
        json!("J,Ljava/lang/String;")
    );
    let inferred = call("types", vec![json!(1), json!("s"), json!([1])]);
    assert_eq!(
        c.invoke(inferred).await.unwrap(),
        json!("I,Ljava/lang/String;,Ljava/util/List;")
    );
    // Attachments travel.
    let mut inv = call("attachment", vec![]);
    inv.attachments.insert("trace", "abc-123");
    assert_eq!(c.invoke(inv).await.unwrap(), json!("abc-123"));
    // Generic invocation: $invoke(method, types, args).
    let mut generic = call(
        "$invoke",
        vec![
            json!("echo"),
            json!(["java.lang.String"]),
            json!(["via generic"]),
        ],
    );
    generic.attachments.insert("generic", "true");
    assert_eq!(c.invoke(generic).await.unwrap(), json!("via generic"));
}

#[tokio::test]
async fn errors_are_typed() {
    let (server, _) = server().await;
    let c = client(server.local_addr(), "");
    let e = c.invoke(call("fail", vec![])).await.unwrap_err();
    assert_eq!(e.code(), codes::SERVICE_ERROR);
    assert_eq!(e.message(), "no such user");
    assert_eq!(
        java_exception(&e).map(|(c, _)| c).as_deref(),
        Some("java.lang.IllegalArgumentException")
    );
    // Not-found answers are Java 2.7's: status 40 "Service not found" for an unknown
    // method (found out by the dispatcher) or path, status 70 "Not found exported service"
    // for another version; the client reports both as METHOD_NOT_FOUND.
    let status = |e: &RpcError| match e {
        RpcError::Remote { data: Some(d), .. } => d["status"].as_u64(),
        _ => None,
    };
    let e = c.invoke(call("nope", vec![])).await.unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND, "{e}");
    assert_eq!(status(&e), Some(40), "{e:?}");
    assert!(
        e.message().starts_with(
            "Fail to decode request due to: java.lang.IllegalArgumentException: \
             Service not found:org.apache.dubbo.demo.DemoService, nope\n"
        ),
        "{e}"
    );
    assert!(e.message().contains("no method nope"), "{e}");
    let e = c
        .invoke(Invocation::new(
            "com.example.Missing",
            "echo",
            rdubbo_core::Args::Json(vec![json!(1)]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND, "{e}");
    assert_eq!(status(&e), Some(40), "{e:?}");
    assert_eq!(
        e.message(),
        "Fail to decode request due to: java.lang.IllegalArgumentException: \
         Service not found:com.example.Missing, echo"
    );
    // Unknown version: service not found.
    let e = c
        .invoke(
            Invocation::new(IFACE, "echo", rdubbo_core::Args::Json(vec![json!(1)]))
                .with_version(Some("9")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
    assert_eq!(status(&e), Some(70), "{e:?}");
    let port = server.local_addr().port();
    assert!(
        e.message().starts_with(&format!(
            "org.apache.dubbo.remoting.RemotingException: Not found exported service: \
             {IFACE}:9:{port} in [{IFACE}:1.0.0:{port}], may be version or group mismatch , \
             channel: consumer: /127.0.0.1:"
        )),
        "{e}"
    );
    assert!(
        e.message().ends_with(&format!(
            " --> provider: /127.0.0.1:{port}, message:RpcInvocation [methodName=echo, \
             parameterTypes=[int]]"
        )),
        "{e}"
    );
    // A decode error wins over a version error: a method no version has is 40.
    let e = c
        .invoke(call("nope", vec![]).with_version(Some("9")))
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(40), "{e:?}");
    // Client-side timeout, and the connection still works afterwards.
    let e = c
        .invoke(call("sleep", vec![json!(300)]).with_timeout(Some(Duration::from_millis(50))))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Timeout(_)), "{e}");
    assert_eq!(
        c.invoke(call("echo", vec![json!(7)])).await.unwrap(),
        json!(7)
    );
}

#[tokio::test]
async fn thousands_in_flight_on_one_connection() {
    let (server, _) = server().await;
    let c = client(server.local_addr(), "");
    let calls = (0..2000).map(|i| {
        let c = c.clone();
        async move { c.invoke(call("echo", vec![json!(i)])).await }
    });
    let results = futures_join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), json!(i));
    }
    assert_eq!(server.connections(), 1);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    fs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn payload_limits_on_both_sides() {
    let config = ServerConfig {
        payload: 64 * 1024,
        ..ServerConfig::default()
    };
    let (server, _) = server_with(config, "127.0.0.1:0".parse().unwrap()).await;
    // The client refuses to send more than its own limit.
    let small = client(server.local_addr(), "payload=1000");
    let e = small
        .invoke(call("echo", vec![json!("y".repeat(2000))]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Limit(m) if m.contains("Data length too large")),
        "{e}"
    );
    // The server answers an over-limit request with a clear error and keeps the connection.
    let c = client(server.local_addr(), "");
    let e = c
        .invoke(call("echo", vec![json!("y".repeat(100_000))]))
        .await
        .unwrap_err();
    assert!(e.message().contains("Data length too large"), "{e}");
    assert_eq!(
        c.invoke(call("echo", vec![json!(1)])).await.unwrap(),
        json!(1)
    );
    // An over-limit response becomes an error too.
    let e = c
        .invoke(call("big", vec![json!(100_000)]))
        .await
        .unwrap_err();
    assert!(e.message().contains("Data length too large"), "{e}");
    // The client drops a response over its limit with a clear error.
    let strict = client(server.local_addr(), "payload=5000");
    let e = strict
        .invoke(call("big", vec![json!(10_000)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Limit(m) if m.contains("response dropped")),
        "{e}"
    );
    assert_eq!(
        strict.invoke(call("echo", vec![json!(2)])).await.unwrap(),
        json!(2)
    );
}

#[tokio::test]
async fn a_bad_frame_closes_only_its_connection() {
    let (server, _) = server().await;
    let good = client(server.local_addr(), "");
    assert_eq!(
        good.invoke(call("echo", vec![json!(1)])).await.unwrap(),
        json!(1)
    );
    let mut bad = TcpStream::connect(server.local_addr()).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the bad connection is closed");
    assert_eq!(server.bad_frames(), 1);
    assert_eq!(
        good.invoke(call("echo", vec![json!(2)])).await.unwrap(),
        json!(2)
    );
}

/// Timer logic on tokio's paused clock: the runtime jumps to the next timer whenever every
/// task waits, so ten idle seconds take no real time and the periods are exact.
#[tokio::test(start_paused = true)]
async fn heartbeats_keep_idle_connections_and_silence_closes_them() {
    let config = ServerConfig {
        heartbeat: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let (server, _) = server_with(config, "127.0.0.1:0".parse().unwrap()).await;
    // A client that heartbeats every 100 ms keeps its one connection over 10 s of idleness
    // (the server closes a connection after three silent periods).
    let c = client(server.local_addr(), "heartbeat=100");
    c.invoke(call("echo", vec![json!(1)])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(server.connections(), 1);
    assert_eq!(
        c.invoke(call("echo", vec![json!(2)])).await.unwrap(),
        json!(2)
    );
    assert_eq!(server.connections(), 1, "the same connection");
    // A silent raw connection is closed after three heartbeat periods, not before.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let started = tokio::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(700),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn pending_limit_pushes_back_instead_of_queueing() {
    let config = ServerConfig {
        max_pending: 2,
        ..ServerConfig::default()
    };
    let (server, demo) = server_with(config, "127.0.0.1:0".parse().unwrap()).await;
    let c = client(server.local_addr(), "timeout=5000");
    let calls = (0..10).map(|_| {
        let c = c.clone();
        async move { c.invoke(call("sleep", vec![json!(50)])).await }
    });
    for r in futures_join_all(calls).await {
        assert_eq!(r.unwrap(), json!(50));
    }
    assert_eq!(demo.max_active.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn reconnects_after_the_provider_comes_back() {
    let (server, _) = server().await;
    let addr = server.local_addr();
    let c = client(addr, "");
    assert_eq!(
        c.invoke(call("echo", vec![json!(1)])).await.unwrap(),
        json!(1)
    );
    server.shutdown(Duration::from_millis(100)).await;
    let e = c.invoke(call("echo", vec![json!(2)])).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let (_server, _) = server_with(ServerConfig::default(), addr).await;
    // Back-off is at most a few hundred ms after one or two failures.
    let mut ok = false;
    for _ in 0..50 {
        if c.invoke(call("echo", vec![json!(3)])).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "no reconnect");
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_readonly_and_finishes_in_flight_calls() {
    let (server, demo) = server().await;
    let c = client(server.local_addr(), "timeout=5000");
    c.invoke(call("echo", vec![json!(0)])).await.unwrap();
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { c.invoke(call("sleep", vec![json!(300)])).await })
    };
    wait_until("the slow call in the service", || {
        demo.active.load(Ordering::SeqCst) == 1
    })
    .await;
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(slow.await.unwrap().unwrap(), json!(300));
    assert!(c.is_readonly());
    let e = c.invoke(call("echo", vec![json!(1)])).await.unwrap_err();
    assert_eq!(e.code(), codes::SHUTTING_DOWN);
    assert!(e.is_retryable());
}

/// Calls alone on the connection (the caller reads) and calls among others (the
/// background reader reads) alternate on two threads: every one is answered, none waits
/// for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_and_concurrent_calls_alternate_without_losing_an_answer() {
    let (server, _) = server().await;
    let c = Arc::new(client(server.local_addr(), "timeout=5000"));
    for round in 0..200u64 {
        // One at a time …
        for i in 0..5u64 {
            let v = c.invoke(call("echo", vec![json!(round * 100 + i)])).await;
            assert_eq!(v.unwrap().to_json().unwrap(), json!(round * 100 + i));
        }
        // … then several at once, some with a short pause at the provider.
        let calls: Vec<_> = (0..1 + round % 7)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let inv = if i % 2 == 0 {
                        call("echo", vec![json!(i)])
                    } else {
                        call("sleep", vec![json!(i % 3)])
                    };
                    c.invoke(inv).await
                })
            })
            .collect();
        for (i, t) in calls.into_iter().enumerate() {
            let v = t.await.unwrap().unwrap().to_json().unwrap();
            let i = i as u64;
            assert_eq!(
                v,
                if i % 2 == 0 { json!(i) } else { json!(i % 3) },
                "round {round}"
            );
        }
    }
}

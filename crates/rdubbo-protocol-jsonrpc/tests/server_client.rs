//! The JSON-RPC server and client over real sockets on loopback.
//!
//! Tests of timeouts and limits run on tokio's paused clock (`start_paused`): when every
//! task waits, the runtime jumps to the next timer, so seconds of deadlines cost no real
//! time and fire exactly; loopback I/O is ready before the clock moves on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Url};
use rdubbo_protocol_jsonrpc::{JsonRpcClient, JsonRpcServer, ServerBuilder};
use serde_json::json;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IFACE: &str = "com.example.TestService";

/// A small service: `echo(x)`, `add(a, b)`, `sleep(ms)`, `fail(msg)`, `whoami()` (version),
/// `attachment(key)`.
struct TestService {
    label: &'static str,
    started: Arc<AtomicUsize>,
}

impl Invoker for TestService {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let label = self.label;
        self.started.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let r: RpcResult<Value> = async move {
                let arg = |i: usize| {
                    rdubbo_core::json::from_value(&inv.args.value(i).unwrap_or_default())
                };
                match &*inv.method {
                    "echo" => Ok(arg(0)),
                    "add" => match (arg(0).as_i64(), arg(1).as_i64()) {
                        (Some(a), Some(b)) if inv.args.len() == 2 => Ok(json!(a + b)),
                        _ => Err(RpcError::remote(
                            codes::INVALID_PARAMS,
                            "add takes two integers",
                        )),
                    },
                    "sleep" => {
                        let ms = arg(0).as_u64().unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(json!(ms))
                    }
                    "fail" => Err(RpcError::service(
                        arg(0).as_str().unwrap_or("failed").to_owned(),
                    )),
                    "internal" => Err(RpcError::remote(codes::INTERNAL_ERROR, "internal trouble")),
                    "whoami" => Ok(json!(label)),
                    "attachment" => Ok(arg(0)
                        .as_str()
                        .and_then(|k| inv.attachments.get(k))
                        .map(|v| json!(v))
                        .unwrap_or(Value::Null)),
                    other => Err(RpcError::remote(
                        codes::METHOD_NOT_FOUND,
                        format!("no method {other} in {}", inv.interface),
                    )),
                }
            }
            .await;
            r.map(Reply::Json)
        })
    }
}

fn info(version: Option<&str>) -> ServiceInfo {
    ServiceInfo {
        interface: IFACE.into(),
        version: version.map(str::to_owned),
        group: None,
        methods: vec!["echo".into(), "add".into(), "sleep".into()],
        ..Default::default()
    }
}

fn service(label: &'static str) -> (Arc<dyn Invoker>, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    (
        Arc::new(TestService {
            label,
            started: started.clone(),
        }),
        started,
    )
}

async fn start(
    builder: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (JsonRpcServer, Arc<AtomicUsize>) {
    let (svc, started) = service("unversioned");
    let server = builder(JsonRpcServer::builder().export(IFACE, info(None), svc))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (server, started)
}

fn client(addr: SocketAddr, query: &str) -> JsonRpcClient {
    let url: Url = format!("jsonrpc://{addr}/{IFACE}?{query}").parse().unwrap();
    JsonRpcClient::new(&url).unwrap()
}

fn call(method: &str, args: Vec<Value>) -> Invocation {
    Invocation::new(IFACE, method, rdubbo_core::Args::Json(args))
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

/// Sends raw bytes and reads the whole answer (the request asks the server to close).
async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

#[tokio::test]
async fn calls_succeed_and_service_errors_travel() {
    let (server, _) = start(|b| b).await;
    let c = client(server.local_addr(), "timeout=2000");
    assert_eq!(
        c.invoke(call("echo", vec![json!({"a": [1, "x"]})]))
            .await
            .unwrap(),
        json!({"a": [1, "x"]})
    );
    assert_eq!(
        c.invoke(call("add", vec![json!(2), json!(40)]))
            .await
            .unwrap(),
        json!(42)
    );
    let e = c
        .invoke(call("fail", vec![json!("boom")]))
        .await
        .unwrap_err();
    assert_eq!(e, RpcError::service("boom"));
    assert_eq!(e.code(), codes::SERVICE_ERROR);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_json_rpc_error_code() {
    let (server, _) = start(|b| b).await;
    let addr = server.local_addr();
    let code_of = |resp: &str| body_of(resp)["error"]["code"].as_i64();

    // -32700: not JSON.
    let r = raw_http(addr, &post(IFACE, "{not json", "")).await;
    assert_eq!(code_of(&r), Some(codes::PARSE_ERROR), "{r}");
    // -32600: JSON, but not a request.
    let r = raw_http(addr, &post(IFACE, r#"{"jsonrpc":"2.0","id":7}"#, "")).await;
    assert_eq!(code_of(&r), Some(codes::INVALID_REQUEST), "{r}");
    assert_eq!(body_of(&r)["id"], json!(7));
    let r = raw_http(addr, &post(IFACE, "[]", "")).await;
    assert_eq!(code_of(&r), Some(codes::INVALID_REQUEST), "{r}");
    // -32601: unknown method, and unknown service path.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"nope","params":[],"id":1}"#,
            "",
        ),
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::METHOD_NOT_FOUND), "{r}");
    let r = raw_http(
        addr,
        &post(
            "com.example.Missing",
            r#"{"jsonrpc":"2.0","method":"echo","params":[],"id":1}"#,
            "",
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert_eq!(code_of(&r), Some(codes::METHOD_NOT_FOUND), "{r}");
    assert!(r.contains("com.example.Missing"), "{r}");
    // -32602: params not positional, and params the method rejects.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"echo","params":{"x":1},"id":1}"#,
            "",
        ),
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::INVALID_PARAMS), "{r}");
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"add","params":["a"],"id":1}"#,
            "",
        ),
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::INVALID_PARAMS), "{r}");
    // -32603: internal error from the service.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"internal","params":[],"id":1}"#,
            "",
        ),
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::INTERNAL_ERROR), "{r}");

    // The client surfaces remote codes as such.
    let c = client(addr, "");
    let e = c.invoke(call("nope", vec![])).await.unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn notifications_batches_and_ids() {
    let (server, started) = start(|b| b).await;
    let addr = server.local_addr();
    // A notification gets no body.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"echo","params":[1]}"#,
            "",
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "a notification is still executed"
    );
    // A string id is echoed as a string; a large id as sent.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":"abc"}"#,
            "",
        ),
    )
    .await;
    assert_eq!(body_of(&r), json!({"jsonrpc":"2.0","id":"abc","result":1}));
    // A mixed batch: results in order, notifications left out, bad entries answered.
    let batch = r#"[{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1},
                    {"jsonrpc":"2.0","method":"echo","params":["n"]},
                    42,
                    {"jsonrpc":"2.0","method":"nope","id":3}]"#;
    let r = raw_http(addr, &post(IFACE, batch, "")).await;
    let v = body_of(&r);
    let items = v.as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[0], json!({"jsonrpc":"2.0","id":1,"result":3}));
    assert_eq!(items[1]["error"]["code"], json!(codes::INVALID_REQUEST));
    assert_eq!(items[1]["id"], Value::Null);
    assert_eq!(items[2]["error"]["code"], json!(codes::METHOD_NOT_FOUND));
    assert_eq!(items[2]["id"], json!(3));
    // An all-notification batch: no content.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"[{"jsonrpc":"2.0","method":"echo","params":[1]}]"#,
            "",
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_ids_stay_within_int32() {
    // The client's ids are masked to 31 bits; a server that checks would fail otherwise.
    let (server, _) = start(|b| b).await;
    let c = client(server.local_addr(), "");
    for i in 0..50 {
        assert_eq!(
            c.invoke(call("echo", vec![json!(i)])).await.unwrap(),
            json!(i)
        );
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_on_both_sides() {
    let (server, _) = start(|b| b.default_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    // Client side: the consumer gives up first.
    let c = client(addr, "timeout=100");
    let e = c
        .invoke(call("sleep", vec![json!(2000)]))
        .await
        .unwrap_err();
    assert_eq!(e, RpcError::Timeout(Duration::from_millis(100)));
    // Provider side: the provider's cap ends the call and says so.
    let c = client(addr, "timeout=5000");
    let e = c
        .invoke(call("sleep", vec![json!(3000)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::SERVER_TIMEOUT, "{e}");
    // The Timeout header (nanoseconds, or a Go duration) bounds the call on the provider.
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"sleep","params":[2000],"id":1}"#,
            "Timeout: 50000000\r\n",
        ),
    )
    .await;
    assert_eq!(
        body_of(&r)["error"]["code"],
        json!(codes::SERVER_TIMEOUT),
        "{r}"
    );
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"sleep","params":[2000],"id":1}"#,
            "Timeout: 50ms\r\n",
        ),
    )
    .await;
    assert_eq!(
        body_of(&r)["error"]["code"],
        json!(codes::SERVER_TIMEOUT),
        "{r}"
    );
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"sleep","params":[10],"id":1}"#,
            "Timeout: 2s\r\n",
        ),
    )
    .await;
    assert_eq!(body_of(&r)["result"], json!(10), "{r}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn connection_limit_is_answered_with_503_when_every_connection_serves_a_call() {
    let (server, started) = start(|b| b.max_connections(2)).await;
    let addr = server.local_addr();
    // Two connections each serving a slow call.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let request = post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"sleep","params":[1500],"id":1}"#,
            "",
        );
        slow.push(tokio::spawn(async move { raw_http(addr, &request).await }));
    }
    wait_until("both slow calls in the service", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(server.connections(), 2);
    let r = raw_http(
        addr,
        &post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}"#,
            "",
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert_eq!(body_of(&r)["error"]["code"], json!(codes::SERVER_BUSY));
    assert!(r.contains("too many connections (limit 2)"), "{r}");
    for s in slow {
        assert!(s.await.unwrap().starts_with("HTTP/1.1 200"));
    }
    // Once they are done, calls work again.
    let c = client(addr, "timeout=2000");
    assert!(c.invoke(call("echo", vec![json!(1)])).await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

/// Idle keep-alive connections and clients sending their body a byte at a time cannot keep
/// callers out: at the limit the longest-idle or slowest connection makes room, and a body
/// not sent within the deadline is answered 408.
#[tokio::test(start_paused = true)]
async fn idle_and_slow_connections_make_room_for_callers() {
    let (server, _) = start(|b| {
        b.max_connections(8)
            .config_with(|c| c.body_read_timeout = Duration::from_secs(1))
    })
    .await;
    let addr = server.local_addr();
    let mut hostile = Vec::new();
    // 4 idle connections and 20 slow bodies (more than the limit).
    for i in 0..24 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i >= 4 {
            let head = format!(
                "POST /{IFACE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"jsonrpc\""
            );
            let _ = s.write_all(head.as_bytes()).await;
        }
        hostile.push(s);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Callers keep getting through.
    let c = client(addr, "timeout=2000");
    for i in 0..20 {
        let r = c.invoke(call("echo", vec![json!(i)])).await;
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    assert!(server.connections() <= 10, "{}", server.connections());
    // A slow body past the deadline: 408.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /{IFACE} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    drop(hostile);
    server.shutdown(Duration::from_secs(1)).await;
}

/// Batches and answers are bounded, and errors never echo a large request back.
#[tokio::test]
async fn batch_and_response_limits_and_short_errors() {
    let (server, _) = start(|b| {
        b.config_with(|c| {
            c.max_batch = 4;
            c.max_response_size = 2_000;
        })
    })
    .await;
    let addr = server.local_addr();
    let entry =
        |i: usize| format!(r#"{{"jsonrpc":"2.0","method":"echo","params":[{i}],"id":{i}}}"#);
    let five: Vec<String> = (0..5).map(entry).collect();
    let r = raw_http(addr, &post(IFACE, &format!("[{}]", five.join(",")), "")).await;
    let v = body_of(&r);
    assert_eq!(v["error"]["code"], json!(codes::INVALID_REQUEST), "{r}");
    assert!(
        r.contains("batch of 5 requests exceeds the limit of 4"),
        "{r}"
    );
    // The big result is replaced by an error; the small ones are answered.
    let big = "x".repeat(3_000);
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","method":"echo","params":["{big}"],"id":9}},{}]"#,
        entry(1),
        entry(2)
    );
    let r = raw_http(addr, &post(IFACE, &batch, "")).await;
    let v = body_of(&r);
    assert_eq!(v[0]["result"], json!(1), "{r}");
    assert_eq!(v[1]["id"], json!(9), "{r}");
    assert_eq!(v[1]["error"]["code"], json!(codes::INTERNAL_ERROR), "{r}");
    assert_eq!(v[2]["result"], json!(2), "{r}");
    // A 200 KB bad field is not echoed.
    let junk = "y".repeat(200_000);
    let r = raw_http(
        addr,
        &post(
            IFACE,
            &format!(r#"{{"jsonrpc":"{junk}","method":"echo","params":[],"id":1}}"#),
            "",
        ),
    )
    .await;
    assert!(r.len() < 1_000, "answer of {} bytes", r.len());
    assert_eq!(body_of(&r)["error"]["code"], json!(codes::INVALID_REQUEST));
    let r = raw_http(
        addr,
        &post(
            IFACE,
            &format!(r#"{{"jsonrpc":"2.0","method":"{junk}","params":[],"id":1}}"#),
            "",
        ),
    )
    .await;
    assert!(r.len() < 1_000, "answer of {} bytes", r.len());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn body_size_limit_with_content_length_and_chunked() {
    let (server, started) = start(|b| b.max_body_size(1024)).await;
    let addr = server.local_addr();
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"echo","params":["{}"],"id":1}}"#,
        "x".repeat(2000)
    );
    let r = raw_http(addr, &post(IFACE, &big, "")).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("exceeds the limit of 1024 bytes"), "{r}");
    // Chunked: no Content-Length up front, the limit is enforced while reading.
    let mut chunked = format!("POST /{IFACE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in big.as_bytes().chunks(500) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            std::str::from_utf8(piece).unwrap()
        ));
    }
    chunked.push_str("0\r\n\r\n");
    let r = raw_http(addr, chunked.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "oversized requests never reach the service"
    );
    // A body under the limit works.
    let c = client(addr, "");
    assert_eq!(
        c.invoke(call("echo", vec![json!("small")])).await.unwrap(),
        json!("small")
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_request_limit_is_answered_busy() {
    let (server, started) = start(|b| b.max_concurrent_requests(2)).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=5000");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(call("sleep", vec![json!(800)])).await })
        })
        .collect();
    wait_until("both slow calls in the service", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    let e = c.invoke(call("echo", vec![json!(1)])).await.unwrap_err();
    assert_eq!(e.code(), codes::SERVER_BUSY, "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("limit 2"), "{e}");
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap(), json!(800));
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn slowloris_connection_is_dropped_while_others_are_served() {
    let (server, _) = start(|b| b.header_read_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let c = client(addr, "");
    assert_eq!(
        c.invoke(call("echo", vec![json!(1)])).await.unwrap(),
        json!(1)
    );
    // The half-sent request never completes; the server closes the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow connection was not closed");
    assert_eq!(
        c.invoke(call("echo", vec![json!(2)])).await.unwrap(),
        json!(2)
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn graceful_stop_loses_no_call_in_flight() {
    let (server, started) = start(|b| b).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=10000");
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(call("sleep", vec![json!(300 + i)])).await })
        })
        .collect();
    wait_until("50 calls in the service", || {
        started.load(Ordering::SeqCst) == 50
    })
    .await;
    server.shutdown(Duration::from_secs(10)).await;
    for (i, h) in calls.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap(), json!(300 + i), "call {i} lost");
    }
    // After the stop, nothing listens.
    let e = client(addr, "timeout=1000")
        .invoke(call("echo", vec![json!(1)]))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Connect { .. }), "{e}");
}

/// Calls racing a stop, over kept-alive connections: each gets a result or the retryable
/// "shutting down" answer (or, once the port is closed, a refused connection), never a
/// connection cut under a request it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_a_stop_are_answered() {
    let (server, _) = start(|b| b).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=3000");
    let stop_at = std::time::Instant::now() + Duration::from_millis(300);
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused, mut cut) = (0, 0, Vec::new());
                let end = stop_at + Duration::from_millis(700);
                let mut i = 0;
                while std::time::Instant::now() < end && i < 20_000 {
                    i += 1;
                    match c.invoke(call("echo", vec![json!(w)])).await {
                        Ok(_) => ok += 1,
                        Err(e) if e.code() == codes::SHUTTING_DOWN => refused += 1,
                        Err(RpcError::Connect { .. }) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => cut.push(e.to_string()),
                    }
                }
                (ok, refused, cut)
            })
        })
        .collect();
    tokio::time::sleep_until(stop_at.into()).await;
    server.shutdown(Duration::from_secs(2)).await;
    let (mut ok, mut refused, mut cut) = (0, 0, Vec::new());
    for w in workers {
        let (o, r, c) = w.await.unwrap();
        ok += o;
        refused += r;
        cut.extend(c);
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        cut.is_empty(),
        "{} calls cut: {:?}",
        cut.len(),
        &cut[..cut.len().min(3)]
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = client(port, "timeout=1000")
        .invoke(call("echo", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Connect { .. }), "{e}");
    assert!(e.is_retryable() && e.is_provider_failure());
}

#[tokio::test]
async fn versions_at_one_path_and_attachments_as_headers() {
    let (v1, _) = service("1.0.0");
    let (v0, _) = service("unversioned");
    let server = JsonRpcServer::builder()
        .export(IFACE, info(Some("1.0.0")), v1)
        .export(IFACE, info(None), v0)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client(server.local_addr(), "");
    let versioned = call("whoami", vec![]).with_version(Some("1.0.0"));
    assert_eq!(c.invoke(versioned).await.unwrap(), json!("1.0.0"));
    assert_eq!(
        c.invoke(call("whoami", vec![])).await.unwrap(),
        json!("unversioned")
    );
    let e = c
        .invoke(call("whoami", vec![]).with_version(Some("9.9")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
    let mut with_tag = call("attachment", vec![json!("dubbo.tag")]);
    with_tag.attachments.insert("dubbo.tag", "gray");
    assert_eq!(c.invoke(with_tag).await.unwrap(), json!("gray"));
    assert_eq!(server.exports().len(), 2);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn options_and_other_http_methods() {
    let (server, _) = start(|b| b).await;
    let addr = server.local_addr();
    let r = raw_http(
        addr,
        format!("OPTIONS /{IFACE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw_http(
        addr,
        format!("GET /{IFACE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    server.shutdown(Duration::from_secs(1)).await;
}

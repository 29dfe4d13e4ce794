//! The JSON-RPC server and client over real sockets on loopback: the protocol
//! (`protocol`), timeouts and limits (`limits`, on tokio's paused clock), stopping
//! (`lifecycle`). Here: the test service and what the tests share.

mod lifecycle;
mod limits;
mod protocol;

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

/// POSTs the JSON-RPC `body` to the test service's path and reads the whole answer.
async fn rpc(addr: SocketAddr, body: &str) -> String {
    raw_http(addr, &post(IFACE, body, "")).await
}

/// [`rpc`] with one more header line (`Name: value\r\n`).
async fn rpc_with_header(addr: SocketAddr, body: &str, header: &str) -> String {
    raw_http(addr, &post(IFACE, body, header)).await
}

fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

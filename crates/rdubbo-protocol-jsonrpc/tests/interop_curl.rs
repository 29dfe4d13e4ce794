//! Interop: curl, a client nobody here wrote, sends the exact request captured from the
//! 2016 Go client (SCENARIOS.md) and gets the exact answer Java's jsonrpc4j gave.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo};
use rdubbo_protocol_jsonrpc::JsonRpcServer;
use serde_json::Value;

/// `com.youni.HelloService.Echo(String) -> String`, written as a plain invoker.
struct HelloService;

impl Invoker for HelloService {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            let r: RpcResult<Value> = async move {
                let args: Vec<Value> = inv
                    .args
                    .to_values()
                    .unwrap_or_default()
                    .iter()
                    .map(rdubbo_core::json::from_value)
                    .collect();
                match (&*inv.method, args.as_slice()) {
                    ("Echo", [Value::String(s)]) => Ok(Value::String(s.clone())),
                    ("Echo", _) => Err(RpcError::remote(
                        codes::INVALID_PARAMS,
                        "Echo takes one string",
                    )),
                    (m, _) => Err(RpcError::remote(
                        codes::METHOD_NOT_FOUND,
                        format!("no method {m}"),
                    )),
                }
            }
            .await;
            r.map(Reply::Json)
        })
    }
}

#[tokio::test]
async fn curl_sends_the_captured_request_and_gets_the_exact_answer() {
    let info = ServiceInfo {
        interface: "com.youni.HelloService".into(),
        version: None,
        group: None,
        methods: vec!["Echo".into()],
        ..Default::default()
    };
    let server = JsonRpcServer::builder()
        .export("com.youni.HelloService", info, Arc::new(HelloService))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}/com.youni.HelloService", server.local_addr());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--http1.1",
                "--max-time",
                "10",
                "--write-out",
                "\n%{http_code}",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                "Accept: application/json",
                "-H",
                "Timeout: 350000000",
                "-H",
                "X-Method: Echo",
                "-H",
                "X-Proxy-Id: dubbogo",
                "-H",
                "X-Services: com.youni.HelloService",
                "--data-binary",
                r#"{"jsonrpc":"2.0","method":"Echo","params":["Hello, World!"],"id":0}"#,
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("curl must be installed for this interop test (apt-get install curl)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    assert_eq!(status, "200");
    assert_eq!(body, r#"{"jsonrpc":"2.0","id":0,"result":"Hello, World!"}"#);
    server.shutdown(Duration::from_secs(1)).await;
}

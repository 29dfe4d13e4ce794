//! JSON-RPC over TLS (HTTPS) on loopback: curl, a client nobody here wrote, calls a method
//! with `--cacert` (and `--cert/--key` under mutual TLS, refused without them); rdubbo's
//! client and server with and without mutual TLS; a client trusting another CA; a
//! plaintext client on the TLS port.

#[path = "../../rdubbo-protocol-dubbo/tests/common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certs::{have, Pki};
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Url};
use rdubbo_protocol_jsonrpc::{ClientConfig, JsonRpcClient, JsonRpcServer, ServerTls};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IFACE: &str = "com.example.TestService";

struct Echo;

/// Calls of `sleep` that reached the provider.
static SLEEPING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Invoker for Echo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = rdubbo_core::json::from_value(&inv.args.value(0).unwrap_or_default());
        Box::pin(async move {
            if &*inv.method == "sleep" {
                SLEEPING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(arg.as_u64().unwrap_or(0))).await;
            }
            Ok(Reply::Json(arg))
        })
    }
}

async fn server(tls: ServerTls) -> JsonRpcServer {
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into(), "sleep".into()],
        ..Default::default()
    };
    JsonRpcServer::builder()
        .config_with(|c| c.tls = Some(tls))
        .export(IFACE, info, Arc::new(Echo))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(addr: SocketAddr, tls: Option<rdubbo_tls::ClientTls>) -> RpcResult<JsonRpcClient> {
    let url: Url = format!("jsonrpc://{addr}/{IFACE}?ssl-enabled=true&timeout=5000")
        .parse()
        .unwrap();
    JsonRpcClient::with_config(
        &url,
        ClientConfig {
            tls,
            ..ClientConfig::default()
        },
    )
}

async fn echo(c: &JsonRpcClient, v: &str) -> RpcResult<Value> {
    let inv = Invocation::new(IFACE, "echo", rdubbo_core::Args::Json(vec![json!(v)]));
    let answer: String = c.invoke(inv).await?.decode().map_err(RpcError::Invalid)?;
    Ok(json!(answer))
}

/// Runs curl against `https://127.0.0.1:port/<IFACE>` with a JSON-RPC call of `echo`.
async fn curl(pki: &Pki, addr: SocketAddr, extra: &[&str]) -> (bool, String) {
    let ca = pki.path("ca.pem");
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(extra)
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(r#"{"jsonrpc":"2.0","method":"echo","params":["over tls"],"id":7}"#)
            .arg(format!("https://{addr}/{IFACE}"))
            .output(),
    )
    .await
    .expect("curl hung")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn curl_calls_a_method_over_tls_and_mutual_tls() {
    if !have("curl") {
        return;
    }
    let pki = Pki::new("jsonrpc-curl");
    let s = server(pki.server(false)).await;
    let (ok, out) = curl(&pki, s.local_addr(), &[]).await;
    assert!(ok, "{out}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer, json!({"jsonrpc":"2.0","id":7,"result":"over tls"}));
    // Without the CA curl refuses the server (its own check, nobody here wrote it).
    let (ok, out) = curl(
        &pki,
        s.local_addr(),
        &["--cacert", "/dev/null", "--capath", "/nonexistent"],
    )
    .await;
    assert!(!ok, "{out}");
    s.shutdown(Duration::ZERO).await;

    let s = server(pki.server(true)).await;
    let cert = pki.path("client.pem").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let (ok, out) = curl(&pki, s.local_addr(), &["--cert", &cert, "--key", &key]).await;
    assert!(ok, "{out}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["result"], json!("over tls"));
    // Refused without a client certificate.
    let (ok, out) = curl(&pki, s.local_addr(), &[]).await;
    assert!(
        !ok,
        "curl got an answer without a client certificate: {out}"
    );
    assert!(
        out.contains("alert") || out.contains("certificate"),
        "{out}"
    );
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn rdubbo_client_and_server_over_tls_and_mutual_tls() {
    let pki = Pki::new("jsonrpc-rr");
    let s = server(pki.server(false)).await;
    let c = client(s.local_addr(), Some(pki.client(false))).unwrap();
    for i in 0..10 {
        assert_eq!(
            echo(&c, &format!("hi {i}")).await.unwrap(),
            json!(format!("hi {i}"))
        );
    }
    let big = "z".repeat(200_000);
    assert_eq!(echo(&c, &big).await.unwrap(), json!(big));
    s.shutdown(Duration::ZERO).await;

    let s = server(pki.server(true)).await;
    let c = client(s.local_addr(), Some(pki.client(true))).unwrap();
    assert_eq!(echo(&c, "mutual").await.unwrap(), json!("mutual"));
    let c = client(s.local_addr(), Some(pki.client(false))).unwrap();
    let err = echo(&c, "no cert").await.unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("closed"),
        "{err}"
    );
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn another_ca_is_refused_clearly_and_a_consumer_without_tls_settings_is_told() {
    let pki = Pki::new("jsonrpc-ca");
    let s = server(pki.server(false)).await;
    let c = client(s.local_addr(), Some(pki.client_trusting_other_ca())).unwrap();
    let err = echo(&c, "hi").await.unwrap_err().to_string();
    assert!(
        err.contains("TLS handshake") && err.contains("UnknownIssuer"),
        "{err}"
    );
    let err = match client(s.local_addr(), None) {
        Ok(_) => panic!("a TLS provider accepted without TLS settings"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ssl-enabled=true"), "{err}");
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_plaintext_http_client_on_the_tls_port_is_closed_and_the_server_goes_on() {
    let pki = Pki::new("jsonrpc-plain");
    let s = server(pki.server(false)).await;
    let mut plain = TcpStream::connect(s.local_addr()).await.unwrap();
    plain
        .write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), plain.read_to_end(&mut got))
        .await
        .expect("a plaintext client on the TLS port was not closed")
        .ok();
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
    let c = client(s.local_addr(), Some(pki.client(false))).unwrap();
    assert_eq!(echo(&c, "still here").await.unwrap(), json!("still here"));
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_silent_client_holds_a_slot_only_until_the_handshake_deadline() {
    let pki = Pki::new("jsonrpc-silent");
    let s = server(
        pki.server(false)
            .with_handshake_timeout(Duration::from_millis(300)),
    )
    .await;
    let silent = TcpStream::connect(s.local_addr()).await.unwrap();
    // Counted against the connection limit from the accept on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.connections() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handshake was not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut silent = silent;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut got))
        .await
        .expect("a silent client was not closed after the handshake deadline")
        .ok();
    while s.connections() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was not given back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_tls_client_over_the_connection_limit_gets_the_503_over_tls() {
    let pki = Pki::new("jsonrpc-limit");
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into(), "sleep".into()],
        ..Default::default()
    };
    let tls = pki.server(false);
    let s = JsonRpcServer::builder()
        .config_with(|c| {
            c.tls = Some(tls);
            c.max_connections = 1;
        })
        .export(IFACE, info, Arc::new(Echo))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let busy = client(s.local_addr(), Some(pki.client(false))).unwrap();
    let call = tokio::spawn(async move {
        let inv = Invocation::new(IFACE, "sleep", rdubbo_core::Args::Json(vec![json!(1500)]));
        busy.invoke(inv).await.map(|_| ())
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while SLEEPING.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow call never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = client(s.local_addr(), Some(pki.client(false))).unwrap();
    let err = echo(&refused, "over the limit")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("too many connections"), "{err}");
    call.await.unwrap().unwrap();
    s.shutdown(Duration::ZERO).await;
}

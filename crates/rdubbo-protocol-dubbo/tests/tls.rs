//! The Dubbo protocol over TLS on loopback: rdubbo client and server (with and without
//! mutual TLS), a client trusting another CA, a consumer without TLS settings, hostile
//! clients on the TLS port (plaintext, silent), and `openssl s_client` as a peer nobody
//! here wrote.

#[path = "common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certs::{have, Pki};
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Url};
use rdubbo_protocol_dubbo::{ClientConfig, DubboClient, DubboServer, ServerConfig, ServerTls};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IFACE: &str = "org.apache.dubbo.demo.DemoService";

struct Echo;

/// Calls of `sleep` that reached the provider.
static SLEEPING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Invoker for Echo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = rdubbo_core::json::from_value(&inv.args.first().unwrap_or_default());
        Box::pin(async move {
            if &*inv.method == "sleep" {
                SLEEPING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(arg.as_u64().unwrap_or(0))).await;
            }
            Ok(Reply::Json(arg))
        })
    }
}

async fn server(tls: ServerTls, max_connections: usize) -> DubboServer {
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into(), "sleep".into()],
        ..Default::default()
    };
    DubboServer::builder()
        .config(ServerConfig {
            tls: Some(tls),
            max_connections,
            ..ServerConfig::default()
        })
        .export(info, Arc::new(Echo))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(addr: SocketAddr, tls: Option<rdubbo_tls::ClientTls>) -> RpcResult<DubboClient> {
    let url: Url = format!("dubbo://{addr}/{IFACE}?ssl-enabled=true&timeout=5000")
        .parse()
        .unwrap();
    let config = ClientConfig {
        tls,
        ..ClientConfig::default()
    }
    .from_url(&url);
    DubboClient::with_config(&url, config)
}

async fn echo(c: &DubboClient, v: &str) -> RpcResult<serde_json::Value> {
    let inv = Invocation::new(IFACE, "echo", rdubbo_core::Args::Json(vec![json!(v)]));
    let answer: String = c.invoke(inv).await?.decode().map_err(RpcError::Invalid)?;
    Ok(json!(answer))
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rdubbo_client_and_server_over_tls_and_mutual_tls() {
    let pki = Pki::new("dubbo-rr");
    // One-way TLS: the client trusts the CA, checks the name 127.0.0.1 from the URL.
    let s = server(pki.server(false), 64).await;
    let c = client(s.local_addr(), Some(pki.client(false))).unwrap();
    for i in 0..20 {
        assert_eq!(
            echo(&c, &format!("hi {i}")).await.unwrap(),
            json!(format!("hi {i}"))
        );
    }
    // Many calls in flight at once over the one TLS connection.
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { echo(&c, &"x".repeat(i * 50)).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), json!("x".repeat(i * 50)));
    }
    // A body larger than a TLS record (16 KiB) both ways.
    let big = "y".repeat(300_000);
    assert_eq!(echo(&c, &big).await.unwrap(), json!(big));
    s.shutdown(Duration::from_secs(1)).await;

    // Mutual TLS: with the client certificate the call goes through...
    let s = server(pki.server(true), 64).await;
    let c = client(s.local_addr(), Some(pki.client(true))).unwrap();
    assert_eq!(echo(&c, "mutual").await.unwrap(), json!("mutual"));
    // ...without one it is refused, and the error says it is about the certificate.
    let c = client(s.local_addr(), Some(pki.client(false))).unwrap();
    let err = echo(&c, "no cert").await.unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("closed"),
        "{err}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let pki = Pki::new("dubbo-ca");
    let s = server(pki.server(false), 64).await;
    let c = client(s.local_addr(), Some(pki.client_trusting_other_ca())).unwrap();
    let err = echo(&c, "hi").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RpcError::Connect { .. }), "{err:?}");
    assert!(
        text.contains("TLS handshake") && text.contains("UnknownIssuer"),
        "{text}"
    );
    // The name checked is the URL's host unless configured: a wrong name is refused too.
    let c = client(
        s.local_addr(),
        Some(pki.client(false).with_server_name("provider.example")),
    )
    .unwrap();
    let text = echo(&c, "hi").await.unwrap_err().to_string();
    assert!(text.contains("not valid for name"), "{text}");
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_consumer_without_tls_settings_is_told_the_provider_needs_tls() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let err = match client(addr, None) {
        Ok(_) => panic!("a TLS provider accepted without TLS settings"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("ssl-enabled=true") && err.contains("no TLS"),
        "{err}"
    );
}

#[tokio::test]
async fn plaintext_and_silent_clients_on_the_tls_port_are_closed() {
    let pki = Pki::new("dubbo-hostile");
    let tls = pki
        .server(false)
        .with_handshake_timeout(Duration::from_millis(500));
    let s = server(tls, 2).await;
    let addr = s.local_addr();

    // A plaintext Dubbo client (a heartbeat frame) is closed at once.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let heartbeat = rdubbo_protocol_dubbo::codec::heartbeat_request(1);
    plain.write_all(&heartbeat).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        let mut got = Vec::new();
        loop {
            match plain.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("a plaintext client on the TLS port was not closed");
    // At most a TLS alert went back, never a Dubbo frame.
    assert!(!read.starts_with(&[0xda, 0xbb]), "{read:?}");

    // Silent clients hold a slot only until the handshake deadline.
    let silent1 = TcpStream::connect(addr).await.unwrap();
    let silent2 = TcpStream::connect(addr).await.unwrap();
    wait_for("two handshakes counted", || s.connections() == 2).await;
    let started = std::time::Instant::now();
    wait_for("silent clients closed", || s.connections() == 0).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    drop((silent1, silent2));

    // The server still serves TLS clients.
    let c = client(addr, Some(pki.client(false))).unwrap();
    assert_eq!(echo(&c, "still here").await.unwrap(), json!("still here"));
    s.shutdown(Duration::ZERO).await;
}

async fn s_client(args: &[String]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("openssl")
            .arg("s_client")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("openssl s_client hung")
    .unwrap();
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn openssl_s_client_sees_the_chain_and_mutual_tls_refuses_it_without_a_certificate() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new("dubbo-openssl");
    let s = server(pki.server(false), 64).await;
    let connect = s.local_addr().to_string();
    let ca = pki.path("ca.pem").display().to_string();
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "-connect",
            &connect,
            "-CAfile",
            &ca,
            "-showcerts",
            "-verify_return_error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let out = s_client(&args(&[])).await;
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("rdubbo test server"), "{out}");
    assert!(out.contains("rdubbo test CA"), "{out}");
    assert!(out.contains("BEGIN CERTIFICATE"), "{out}");
    s.shutdown(Duration::ZERO).await;

    let s = server(pki.server(true), 64).await;
    let connect = s.local_addr().to_string();
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["-connect", &connect, "-CAfile", &ca]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Asked for a certificate (with the acceptable CA named) and refused without one: in
    // TLS 1.3 the refusal (alert 116, certificate required) comes after the client's
    // Finished, so s_client waits for it (-ign_eof).
    let out = s_client(&args(&["-ign_eof"])).await;
    assert!(out.contains("certificate required"), "{out}");
    assert!(
        out.contains("Acceptable client certificate CA names"),
        "{out}"
    );
    let cert = pki.path("client.pem").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let out = s_client(&args(&["-cert", &cert, "-key", &key])).await;
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(!out.contains("certificate required"), "{out}");
    s.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_tls_client_over_the_connection_limit_is_told_so() {
    let pki = Pki::new("dubbo-limit");
    let s = server(pki.server(false), 1).await;
    let busy = client(s.local_addr(), Some(pki.client(false))).unwrap();
    let call = {
        let busy = busy.clone();
        tokio::spawn(async move {
            let inv = Invocation::new(IFACE, "sleep", rdubbo_core::Args::Json(vec![json!(1500)]));
            busy.invoke(inv).await.map(|_| ())
        })
    };
    // The call reached the provider: its connection serves a call and is not evictable.
    wait_for("the slow call under way", || {
        SLEEPING.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let refused = client(s.local_addr(), Some(pki.client(false))).unwrap();
    let err = echo(&refused, "over the limit")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("connection limit"), "{err}");
    call.await.unwrap().unwrap();
    s.shutdown(Duration::ZERO).await;
}

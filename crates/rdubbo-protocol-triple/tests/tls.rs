//! Triple over TLS on loopback: rdubbo client and server (an interface call, IDL unary and
//! server-streaming calls, mutual TLS), a client trusting another CA, a plaintext client
//! and a silent one on the TLS port (the handshake deadline, the connection limit), and
//! peers nobody here wrote: curl (HTTP/1.1 JSON and HTTP/2 gRPC over TLS) and grpcio's
//! `secure_channel`.

#[path = "../../rdubbo-protocol-dubbo/tests/common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use certs::{have, Pki};
use rdubbo_core::{
    Args, BoxFuture, Invocation, Invoker, MessageStream, MethodKind, Reply, RpcError, RpcResult,
    ServiceInfo, Url,
};
use rdubbo_protocol_triple::{ClientConfig, ClientTls, ServerConfig, ServerTls, TripleClient};
use rdubbo_protocol_triple::{TripleProtocol, TripleServer};
use serde_json::json;
use tokio::io::AsyncReadExt;

const IFACE: &str = "org.apache.dubbo.demo.DemoService";
const IDL: &str = "test.tls.Streamer";

/// `echo` of the interface service: the argument back.
struct Echo;

impl Invoker for Echo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = rdubbo_core::json::from_value(&inv.args.first().unwrap_or_default());
        Box::pin(async move { Ok(Reply::Json(arg)) })
    }
}

/// The IDL service (messages as plain bytes): `echo` unary, `count` server-streaming.
struct Streamer;

impl Invoker for Streamer {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            let m = inv.args.into_message()?;
            match &*inv.method {
                "count" => {
                    let n: usize = std::str::from_utf8(&m).unwrap().parse().unwrap();
                    Ok(Reply::Stream(MessageStream::iter(
                        (0..n).map(|i| Bytes::from(i.to_string())),
                    )))
                }
                _ => Ok(Reply::Message(m)),
            }
        })
    }
}

fn iface_info() -> ServiceInfo {
    ServiceInfo {
        interface: IFACE.into(),
        methods: vec!["echo".into()],
        ..Default::default()
    }
}

fn idl_info() -> ServiceInfo {
    ServiceInfo {
        interface: IDL.into(),
        methods: vec!["echo".into(), "count".into()],
        idl: true,
        streams: vec![("count".into(), MethodKind::ServerStream)],
        ..Default::default()
    }
}

async fn server(tls: ServerTls, max_connections: usize) -> TripleServer {
    TripleServer::builder()
        .config(ServerConfig {
            tls: Some(tls),
            max_connections,
            ..ServerConfig::default()
        })
        .export(iface_info(), Arc::new(Echo))
        .export(idl_info(), Arc::new(Streamer))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn url(addr: SocketAddr, ssl: bool) -> Url {
    format!("tri://{addr}/{IFACE}?ssl-enabled={ssl}&timeout=5000")
        .parse()
        .unwrap()
}

fn client(addr: SocketAddr, tls: Option<ClientTls>) -> RpcResult<TripleClient> {
    let url = url(addr, true);
    let config = ClientConfig {
        tls,
        ..ClientConfig::default()
    }
    .from_url(&url);
    TripleClient::with_config(&url, config)
}

async fn echo(c: &TripleClient, v: &str) -> RpcResult<String> {
    let inv = Invocation::new(IFACE, "echo", Args::Json(vec![json!(v)]));
    c.invoke(inv).await?.decode().map_err(RpcError::Invalid)
}

fn idl_call(method: &str, args: Args) -> Invocation {
    let mut inv = Invocation::new(IDL, method, Vec::new());
    inv.args = args;
    inv
}

async fn count(c: &TripleClient, n: usize) -> RpcResult<Vec<String>> {
    let msg = Bytes::from(n.to_string());
    let reply = c
        .invoke(idl_call("count", Args::Stream(MessageStream::once(msg))))
        .await?;
    let mut m = reply.into_stream()?.take()?;
    let mut out = Vec::new();
    while let Some(x) = m.next().await {
        out.push(String::from_utf8(x?.to_vec()).unwrap());
    }
    Ok(out)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rdubbo_client_and_server_over_tls_and_mutual_tls() {
    let pki = Pki::new("tri-rdubbo");
    let server = server(pki.server(false), 64).await;
    let c = client(server.local_addr(), Some(pki.client(false))).unwrap();
    assert_eq!(echo(&c, "over tls").await.unwrap(), "over tls");
    let reply = c
        .invoke(idl_call(
            "echo",
            Args::Message(Bytes::from_static(b"\x08\x96\x01")),
        ))
        .await
        .unwrap();
    assert_eq!(reply.into_message().await.unwrap(), &b"\x08\x96\x01"[..]);
    assert_eq!(count(&c, 3).await.unwrap(), ["0", "1", "2"]);
    assert_eq!(server.connections(), 1);
    server.shutdown(Duration::ZERO).await;

    // Mutual TLS: a client with a certificate of the CA gets in, one without does not.
    let server = self::server(pki.server(true), 64).await;
    let c = client(server.local_addr(), Some(pki.client(true))).unwrap();
    assert_eq!(echo(&c, "mutual").await.unwrap(), "mutual");
    let anonymous = client(server.local_addr(), Some(pki.client(false))).unwrap();
    let err = echo(&anonymous, "no cert").await.unwrap_err();
    assert!(
        matches!(err, RpcError::Connect { .. } | RpcError::Transport { .. }),
        "{err:?}"
    );
    // The refused one is not left open on the server.
    wait_for("one connection left", || server.connections() == 1).await;
    server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn the_protocol_serves_and_refers_tls() {
    use rdubbo_core::{Export, Protocol};
    let pki = Pki::new("tri-protocol");
    let protocol = TripleProtocol::new(ClientConfig {
        tls: Some(pki.client(false)),
        ..ClientConfig::default()
    })
    .with_server_config(ServerConfig {
        tls: Some(pki.server(false)),
        ..ServerConfig::default()
    });
    let server = protocol
        .serve(
            "127.0.0.1:0".parse().unwrap(),
            vec![Export {
                info: iface_info(),
                invoker: Arc::new(Echo),
            }],
        )
        .await
        .unwrap();
    let invoker = protocol.refer(&url(server.local_addr(), true)).unwrap();
    let inv = Invocation::new(IFACE, "echo", Args::Json(vec![json!("via protocol")]));
    let answer: String = invoker.invoke(inv).await.unwrap().decode().unwrap();
    assert_eq!(answer, "via protocol");
    // A URL without `ssl-enabled=true` is called in cleartext, which the TLS port refuses.
    let plain = protocol.refer(&url(server.local_addr(), false)).unwrap();
    let inv = Invocation::new(IFACE, "echo", Args::Json(vec![json!("plain")]));
    assert!(plain.invoke(inv).await.is_err());
    server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let pki = Pki::new("tri-other-ca");
    let server = server(pki.server(false), 64).await;
    let c = client(server.local_addr(), Some(pki.client_trusting_other_ca())).unwrap();
    let err = echo(&c, "x").await.unwrap_err();
    let RpcError::Connect { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");
    wait_for("no connection left", || server.connections() == 0).await;
    server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_consumer_without_tls_settings_is_told_the_provider_needs_tls() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let Err(RpcError::Invalid(m)) = client(addr, None) else {
        panic!("a client was made");
    };
    assert!(
        m.contains("ssl-enabled=true") && m.contains("ClientConfig::tls"),
        "{m}"
    );
}

#[tokio::test]
async fn a_plaintext_client_is_refused_and_a_silent_one_closed_at_the_handshake_deadline() {
    let pki = Pki::new("tri-plain");
    let tls = pki
        .server(false)
        .with_handshake_timeout(Duration::from_millis(300));
    // One connection at most: a handshake in progress holds the slot.
    let server = server(tls, 1).await;
    let addr = server.local_addr();
    // A cleartext tri client (the URL does not say ssl-enabled) gets an error at once.
    let u = url(addr, false);
    let plain = TripleClient::with_config(&u, ClientConfig::default().from_url(&u)).unwrap();
    let started = std::time::Instant::now();
    let inv = Invocation::new(IFACE, "echo", Args::Json(vec![json!("plain")]));
    let err = plain.invoke(inv).await.unwrap_err();
    assert!(
        matches!(err, RpcError::Connect { .. } | RpcError::Transport { .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{err:?}");
    wait_for("the plaintext connection closed", || {
        server.connections() == 0
    })
    .await;
    // A client that never says hello is counted from its accept...
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_for("the silent connection counted", || {
        server.connections() == 1
    })
    .await;
    // ... so a TLS client over the limit is closed ...
    let c = client(addr, Some(pki.client(false))).unwrap();
    assert!(echo(&c, "full").await.is_err());
    // ... until the silent one is closed at the handshake deadline.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the silent client was closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    wait_for("the silent connection uncounted", || {
        server.connections() == 0
    })
    .await;
    let c = client(addr, Some(pki.client(false))).unwrap();
    assert_eq!(echo(&c, "room again").await.unwrap(), "room again");
    server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_tls_client_naming_no_alpn_protocol_is_told_apart_by_its_first_bytes() {
    use tokio::io::AsyncWriteExt;
    let pki = Pki::new("tri-no-alpn");
    let server = server(pki.server(false), 64).await;
    let addr = server.local_addr();
    // No ALPN: the server's handshake picks nothing; plain HTTP/1.1 follows.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = pki.client(false).connect("127.0.0.1", tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let body = r#"["no alpn"]"#;
    let req = format!(
        "POST /{IFACE}/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#""no alpn""#), "{answer}");
    // No ALPN, then the HTTP/2 preface: HTTP/2 (gRPC).
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = pki.client(false).connect("127.0.0.1", tcp).await.unwrap();
    let (mut sender, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("https://{addr}/{IDL}/echo"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = sender.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(b"\0\0\0\0\x02hi"), true)
        .unwrap();
    let mut body = response.await.unwrap().into_body();
    let data = body.data().await.unwrap().unwrap();
    assert_eq!(&data[..], b"\0\0\0\0\x02hi");
    let trailers = body.trailers().await.unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    server.shutdown(Duration::ZERO).await;
}

/// Runs curl with `args`, returning (headers and trailers, lower-cased; body).
async fn curl(args: Vec<String>) -> (String, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-D", "-", "-o", "-"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Headers (and trailers) first, then the body: split at the first blank line,
        // the trailers follow the body.
        let all = out.stdout;
        let cut = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or(all.len());
        let head = String::from_utf8_lossy(&all[..cut]).to_ascii_lowercase();
        let rest = all[cut..].to_vec();
        (head, rest)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn curl_calls_over_https_json_and_grpc() {
    if !have("curl") {
        return;
    }
    let pki = Pki::new("tri-curl");
    let server = server(pki.server(false), 64).await;
    let base = format!("https://127.0.0.1:{}", server.local_addr().port());
    let ca = pki.path("ca.pem").display().to_string();
    // HTTP/1.1 + JSON (ALPN http/1.1).
    let (head, body) = curl(vec![
        "--http1.1".into(),
        "--cacert".into(),
        ca.clone(),
        "-H".into(),
        "content-type: application/json".into(),
        "-d".into(),
        r#"["json over tls"]"#.into(),
        format!("{base}/{IFACE}/echo"),
    ])
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!("json over tls"));
    // HTTP/2 + gRPC (ALPN h2): one length-prefixed message in, the same out.
    let mut frame = vec![0u8, 0, 0, 0, 3];
    frame.extend_from_slice(b"\x08\x96\x01");
    let file = pki.path("grpc-request.bin");
    std::fs::write(&file, &frame).unwrap();
    let (head, body) = curl(vec![
        "--http2".into(),
        "--cacert".into(),
        ca.clone(),
        "-H".into(),
        "content-type: application/grpc".into(),
        "-H".into(),
        "te: trailers".into(),
        "--data-binary".into(),
        format!("@{}", file.display()),
        format!("{base}/{IDL}/echo"),
    ])
    .await;
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(body.starts_with(&frame), "{body:?}");
    let trailers = String::from_utf8_lossy(&body[frame.len()..]).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status: 0"), "{trailers}");
    // Without the CA, curl refuses the server's certificate.
    let url = format!("{base}/{IFACE}/echo");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http1.1", "-d", "[1]", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 60: the peer's certificate could not be verified.
    assert_eq!(out.status.code(), Some(60), "{stderr}");
    server.shutdown(Duration::ZERO).await;
}

fn has_grpcio() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "{0}\n!! SKIPPED: python3 with grpcio is not installed (pip install grpcio)\n{0}",
            "!".repeat(78)
        );
    }
    ok
}

/// grpcio over TLS (raw bytes in and out): a unary call and a server stream, then the
/// same with a channel trusting another CA.
const GRPCIO_CLIENT: &str = r#"
import sys, json, grpc
addr, ca, other = sys.argv[1], open(sys.argv[2], 'rb').read(), open(sys.argv[3], 'rb').read()
opts = [('grpc.ssl_target_name_override', 'localhost')]
ch = grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=ca), options=opts)
P = '/test.tls.Streamer/'
out = {}
out['echo'] = ch.unary_unary(P + 'echo')(b'\x08\x96\x01', timeout=5).hex()
out['count'] = [m.decode() for m in ch.unary_stream(P + 'count')(b'4', timeout=5)]
bad = grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=other), options=opts)
try:
    bad.unary_unary(P + 'echo')(b'x', timeout=3)
    out['other_ca'] = 'accepted'
except grpc.RpcError as e:
    out['other_ca'] = e.code().name
print(json.dumps(out))
"#;

#[tokio::test]
async fn grpcio_secure_channel_calls_over_tls() {
    if !has_grpcio() {
        return;
    }
    let pki = Pki::new("tri-grpcio");
    let server = server(pki.server(false), 64).await;
    let args = [
        server.local_addr().to_string(),
        pki.path("ca.pem").display().to_string(),
        pki.path("other-ca.pem").display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(GRPCIO_CLIENT)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["echo"], "089601");
    assert_eq!(v["count"], json!(["0", "1", "2", "3"]));
    assert_eq!(v["other_ca"], "UNAVAILABLE");
    server.shutdown(Duration::ZERO).await;
}

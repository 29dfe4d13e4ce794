//! rdubbo and real Apache Dubbo 3.3.1 (Java) calling each other over Triple (`tri://`)
//! with interface services (Java's Hessian2 wrapper): POJOs, a declared exception,
//! attachments both ways, versions and groups, direct URLs.
//!
//! The Java programs are `tests/java/com/example/TriProvider.java` and `TriConsumer.java`
//! (which runs `JavaConsumer`'s checks); without the Java 3.3.1 jars, the Debian classpath
//! or a JDK the tests are skipped LOUDLY (`RDUBBO_REQUIRE_JAVA=1` fails instead).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::hessian::{BigDecimal, Date};
use rdubbo::triple::{TripleClient, TripleServer};
use rdubbo::{Attachments, Url, Value};
use rdubbo_testkit::java::{interop_sources, target_tmp, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ChildGuard};

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{
    plain, sample, Address, Level, RustUsers, UserServiceClient, UserServiceServer, USER_NOT_FOUND,
};

const CONSUMER_TIMEOUT: Duration = Duration::from_secs(120);

fn log_file(name: &str) -> PathBuf {
    let dir = target_tmp().join("triple-java");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}.log", std::process::id()))
}

/// A running `TriProvider`; killed (by PID) when dropped, and it exits when its stdin
/// closes.
struct TriProvider {
    _child: ChildGuard,
    _stdin: Option<ChildStdin>,
    port: u16,
}

fn spawn_tri_provider(java: &JavaDubbo, classes: &std::path::Path, args: &[&str]) -> TriProvider {
    let port = free_port();
    let log = log_file(&format!("TriProvider-{port}"));
    let mut cmd = java.command(classes, "com.example.TriProvider");
    cmd.arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = ChildGuard::spawn(&mut cmd).unwrap();
    let stdin = child.0.stdin.take();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("[TriProvider] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.trim() == format!("READY {port}") => break,
            Ok(line) if line.starts_with("FAILED") => {
                panic!("TriProvider failed: {line}; log {}", log.display())
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline,
                    "TriProvider not READY; log {}:\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!(
                "TriProvider exited before READY; log {}:\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }
    TriProvider {
        _child: child,
        _stdin: stdin,
        port,
    }
}

/// Runs `TriConsumer <args>` to completion; its standard output.
fn run_tri_consumer(
    java: &JavaDubbo,
    classes: &std::path::Path,
    args: &[String],
    title: &str,
) -> String {
    let log = log_file(&format!("TriConsumer-{}", title.replace(' ', "_")));
    let mut cmd = java.command(classes, "com.example.TriConsumer");
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = ChildGuard::spawn(&mut cmd).unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    });
    let deadline = Instant::now() + CONSUMER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(child);
    let out = reader.join().unwrap();
    println!("===== {title} (stderr log {})\n{out}", log.display());
    let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        status.is_some_and(|s| s.success()) && failures.is_empty() && out.contains("DONE "),
        "{title}: status {status:?}, failures {failures:#?}; stderr log {}",
        log.display()
    );
    out
}

fn compiled(java: &JavaDubbo) -> PathBuf {
    java.compile(&interop_sources())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_consumer_calls_rdubbo_provider_over_tri() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let mut versioned = UserServiceServer::<RustUsers>::info();
    versioned.version = Some("1.0.0".into());
    versioned.group = Some("g1".into());
    let server = TripleServer::builder()
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .export(versioned, Arc::new(UserServiceServer::new(RustUsers)))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!(
        "tri://127.0.0.1:{}/com.example.UserService",
        server.local_addr().port()
    );
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("check", vec!["--url".into(), url.clone(), "check".into()]),
        (
            "echo-types",
            vec!["--url".into(), url.clone(), "echo-types".into()],
        ),
        (
            "check version 1.0.0 group g1",
            vec![
                "--url".into(),
                url.clone(),
                "--version".into(),
                "1.0.0".into(),
                "--group".into(),
                "g1".into(),
                "check".into(),
            ],
        ),
    ];
    for (mode, args) in runs {
        let title = format!("Java 3.3.1 TriConsumer -> rdubbo tri provider, {mode}");
        let java = java.clone();
        let out = tokio::task::spawn_blocking(move || {
            let classes = compiled(&java);
            run_tri_consumer(&java, &classes, &args, &title)
        })
        .await
        .unwrap();
        if mode.starts_with("check") {
            // The exception arrived as the declared Java class, the reply attachment too.
            assert!(
                out.contains("ok getUser-not-found com.example.UserNotFoundException"),
                "{out}"
            );
            assert!(out.contains("served-by=rdubbo"), "{out}");
        }
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdubbo_consumer_calls_java_3_3_provider_over_tri() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let provider = tokio::task::spawn_blocking(move || {
        let classes = compiled(&java);
        spawn_tri_provider(&java, &classes, &["--version", "1.0.0", "--group", "g1"])
    })
    .await
    .unwrap();
    let url: Url = format!(
        "tri://127.0.0.1:{}/com.example.UserService?timeout=10000",
        provider.port
    )
    .parse()
    .unwrap();
    let users = UserServiceClient::new(Arc::new(TripleClient::new(&url).unwrap()))
        .with_version(Some("1.0.0"))
        .with_group(Some("g1"));
    // POJO out, `Long` in.
    assert_eq!(users.get_user(Some(7)).await.unwrap(), sample(7));
    // A Java `Date` and `BigDecimal` arrive as the Rust types.
    let ann = users.get_user(Some(1)).await.unwrap();
    assert_eq!(ann.born, Some(Date(1_700_000_000_000)));
    assert_eq!(ann.balance, Some(BigDecimal::new("1234.50")));
    // The declared exception (tri-exception-code, Hessian exception body).
    let e = users.get_user(Some(-1)).await.unwrap_err();
    assert_eq!(e.java_class(), Some(USER_NOT_FOUND), "{e:?}");
    assert_eq!(e.message(), "no user -1");
    assert_eq!(users.create_user(sample(7)).await.unwrap(), Some(3007));
    let mut full = sample(41);
    full.address = Some(Address {
        city: Some("Shanghai".into()),
        street: None,
    });
    full.level = Some(Level::Silver);
    assert_eq!(users.echo_user(full.clone()).await.unwrap(), full);
    assert_eq!(
        users.list_users(3).await.unwrap(),
        vec![plain("user0", 0), plain("user1", 1), plain("user2", 2)]
    );
    // `long` and `Long` overloads, told apart by the wrapper's argTypes.
    assert_eq!(users.inc(5).await.unwrap(), 6);
    assert_eq!(users.inc_boxed(Some(5)).await.unwrap(), Some(7));
    assert_eq!(users.inc_boxed(None).await.unwrap(), Some(-1));
    // Attachments both ways.
    let mut extra = Attachments::new();
    extra.insert("caller", "rust-consumer");
    let (who, reply) = rdubbo::context::capture_reply_attachments(
        rdubbo::context::with_attachments(extra, users.whoami()),
    )
    .await;
    assert_eq!(who.unwrap().as_deref(), Some("rust-consumer"));
    assert_eq!(reply.get("served-by"), Some("java"), "{reply:?}");
    let by_name = users.by_name(vec![plain("a", 1), sample(2)]).await.unwrap();
    assert_eq!(by_name["ann"], sample(2));
    assert_eq!(users.level_of(sample(1)).await.unwrap(), Some(Level::Gold));
    assert_eq!(users.level_of(plain("x", 1)).await.unwrap(), None);
    for v in [
        Value::Long(42),
        Value::from("a😀b"),
        Value::list(vec![Value::Int(1), Value::from("x")]),
        Value::Null,
    ] {
        assert_eq!(users.echo(v.clone()).await.unwrap(), v);
    }
    // Java 3.3 serves a call naming another version or group with the interface's
    // service all the same (its path resolver falls back to the bare interface name).
    let other = UserServiceClient::new(Arc::new(TripleClient::new(&url).unwrap()))
        .with_version(Some("2.0.0"))
        .with_group(Some("other"));
    assert_eq!(other.inc(1).await.unwrap(), 2);
    let _ = std::io::stdout().flush();
    drop(provider);
}

/// Through a real ZooKeeper, with a version: a Java 3.3.1 consumer finds an rdubbo provider
/// serving tri://, and an rdubbo consumer finds a Java provider serving tri://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_and_rdubbo_find_each_other_over_tri_through_zookeeper() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let zk = rdubbo_testkit::ZkServer::start();
    let registry_url = zk.registry_url("");
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();

    // Java consumer -> rdubbo provider (tri), discovered in ZooKeeper.
    let mut info = UserServiceServer::<RustUsers>::info();
    info.version = Some("1.0.0".into());
    let provider = rdubbo::provider::Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .registry(registry.clone())
        .export(info, Arc::new(UserServiceServer::new(RustUsers)))
        .start()
        .await
        .unwrap();
    assert!(
        provider.urls().iter().all(|u| u.protocol() == "tri"),
        "{:?}",
        provider.urls()
    );
    let title = "Java 3.3.1 consumer -> rdubbo tri provider through ZooKeeper".to_string();
    let out = {
        let (java, registry_url, title) = (java.clone(), registry_url.clone(), title.clone());
        tokio::task::spawn_blocking(move || {
            let classes = compiled(&java);
            let out = java.run_consumer(
                &classes,
                &["--registry", &registry_url, "--version", "1.0.0", "check"],
                CONSUMER_TIMEOUT,
            );
            println!("===== {title} (log {})\n{}", out.log.display(), out.stdout);
            out
        })
        .await
        .unwrap()
    };
    out.assert_ok(&title);
    assert!(out.stdout.contains("served-by=rdubbo"), "{}", out.stdout);
    provider.stop().await;

    // rdubbo consumer -> Java provider (tri), discovered in ZooKeeper.
    let java_provider = {
        let (java, registry_url) = (java.clone(), registry_url.clone());
        tokio::task::spawn_blocking(move || {
            let classes = compiled(&java);
            spawn_tri_provider(
                &java,
                &classes,
                &["--version", "1.0.0", "--registry", &registry_url],
            )
        })
        .await
        .unwrap()
    };
    let reference = rdubbo::consumer::Reference::builder("com.example.UserService")
        .version("1.0.0")
        .registry(registry.clone())
        .build()
        .await
        .unwrap();
    let users = UserServiceClient::new(Arc::new(reference)).with_version(Some("1.0.0"));
    // The Java provider registers a moment after it listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    while users.inc(1).await.is_err() {
        assert!(Instant::now() < deadline, "no Java tri provider found");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(users.get_user(Some(7)).await.unwrap(), sample(7));
    let e = users.get_user(Some(-1)).await.unwrap_err();
    assert_eq!(e.java_class(), Some(USER_NOT_FOUND), "{e:?}");
    assert_eq!(users.inc_boxed(Some(5)).await.unwrap(), Some(7));
    drop(java_provider);
}

//! Java-exact behaviour around the call, checked against real Apache Dubbo:
//! - the provider URL rdubbo registers has the parameters a Java 2.7.23 provider of the same
//!   interface registers (same keys, same fixed values), in the same ZooKeeper;
//! - `override://` rules written with the Debian `zkCli.sh` change (and then restore) the
//!   registered URLs of an rdubbo provider and a Java provider side by side, with the same
//!   scoping rules (version, host:port, application);
//! - a Java consumer's `GenericService.$invoke` and `EchoService.$echo` reach an rdubbo
//!   provider (2.7.23 and 3.3.1), and calls of a service, version or method it does not
//!   have get the answers a Java 2.7 provider gives (the same texts, from a Java 2.7
//!   consumer's point of view, as against a Java 2.7 provider);
//! - at the wire level, the rdubbo dubbo client's calls of a method, overload, service or
//!   version a provider does not have get the same status and text from an rdubbo
//!   provider as from a Java 2.7 provider, and the client reports them (and a Java 3.3
//!   provider's) as METHOD_NOT_FOUND.
//!
//! A Java version whose jars, Debian classpath or JDK are missing is skipped LOUDLY
//! (`RDUBBO_REQUIRE_JAVA=1` fails instead).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::dubbo::DubboServer;
use rdubbo::provider::Provider;
use rdubbo::{Registry, ServiceInfo, Url};
use rdubbo_testkit::java::{interop_sources, ConsumerOutput, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ChildGuard, ZkServer};

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{RustUsers, UserServiceServer};

const IFACE: &str = "com.example.UserService";
const JAVA_TIMEOUT: Duration = Duration::from_secs(120);

fn versioned(mut info: ServiceInfo, version: Option<&str>) -> ServiceInfo {
    info.version = version.map(str::to_owned);
    info
}

/// Compiles the interop sources for `java` (cached), off the runtime.
async fn classes(java: &JavaDubbo) -> PathBuf {
    let java = java.clone();
    tokio::task::spawn_blocking(move || java.compile(&interop_sources()))
        .await
        .unwrap()
}

/// The providers of `IFACE` registered in ZooKeeper now, every version.
async fn provider_nodes(observer: &Arc<dyn Registry>) -> Vec<Url> {
    let query: Url = format!("consumer://127.0.0.1/{IFACE}?version=*&group=*&category=providers")
        .parse()
        .unwrap();
    observer.lookup(&query).await.unwrap_or_default()
}

/// Waits until the provider node on `port` satisfies `ok`; returns it.
async fn wait_node(
    observer: &Arc<dyn Registry>,
    port: u16,
    what: &str,
    ok: impl Fn(&Url) -> bool,
) -> Url {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = provider_nodes(observer).await;
        let mine: Vec<&Url> = nodes.iter().filter(|u| u.port() == Some(port)).collect();
        if let [only] = mine[..] {
            if ok(only) {
                return only.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the provider node on port {port} is not as expected; nodes now:\n{}",
            nodes
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn params(url: &Url) -> BTreeMap<String, String> {
    url.params()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `url` without the parameter `key`, for comparing nodes before and after a rule.
fn without(url: &Url, keys: &[&str]) -> BTreeMap<String, String> {
    let mut p = params(url);
    for k in keys {
        p.remove(*k);
    }
    p
}

/// Writes a rule node with zkCli, as an operator (or Dubbo Admin) does; returns its path.
fn write_rule(zk: &ZkServer, rule: &str) -> String {
    let path = format!("/dubbo/{IFACE}/configurators/{}", rdubbo::url::encode(rule));
    let out = zk.cli(&["create", &path]);
    assert!(out.contains("Created"), "zkCli create {path}: {out}");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_url_and_overrides_match_a_java_2_7_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let zk = ZkServer::start();
    let registry_url = zk.registry_url("file.cache=false");
    let classes = classes(&java).await;
    let java_port = free_port();
    let java_provider = {
        let (java, classes, registry_url) = (java.clone(), classes.clone(), registry_url.clone());
        tokio::task::spawn_blocking(move || {
            java.spawn_provider(
                &classes,
                java_port,
                &["--registry", &registry_url, "--version", "1.0.0"],
            )
        })
    };
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();
    let observer = rdubbo::registry::connect(&registry_url).await.unwrap();
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("dubbo")
        .application("rdubbo-provider")
        .registry(registry.clone())
        .export(
            versioned(UserServiceServer::<RustUsers>::info(), Some("1.0.0")),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .unregister_wait(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let java_provider = java_provider.await.unwrap();
    let rust_port = provider.local_addr().port();

    // 1. The registered URLs: same keys, same fixed values.
    let java_url = wait_node(&observer, java_port, "Java node", |_| true).await;
    let rust_url = wait_node(&observer, rust_port, "rdubbo node", |_| true).await;
    println!("Java 2.7:  {java_url}\nrdubbo:    {rust_url}");
    assert_eq!(rust_url, provider.urls()[0]);
    let (java_params, rust_params) = (params(&java_url), params(&rust_url));
    let java_keys: BTreeSet<&str> = java_params.keys().map(String::as_str).collect();
    let rust_keys: BTreeSet<&str> = rust_params.keys().map(String::as_str).collect();
    // Allowed differences: `logger=log4j` is there only because the test harness starts
    // Java with -Ddubbo.application.logger=log4j (it is absent by default).
    let java_only: BTreeSet<&str> = java_keys.difference(&rust_keys).copied().collect();
    let rust_only: BTreeSet<&str> = rust_keys.difference(&java_keys).copied().collect();
    assert_eq!(
        java_only,
        BTreeSet::from(["logger"]),
        "keys only Java writes"
    );
    assert!(
        rust_only.is_empty(),
        "keys only rdubbo writes: {rust_only:?}"
    );
    // Values that must be equal; `application`, `pid`, `timestamp` are per process and
    // `release` names the implementation (Java: `2.7.23…`, rdubbo: `rdubbo-<version>`).
    for key in [
        "anyhost",
        "deprecated",
        "dubbo",
        "dynamic",
        "generic",
        "interface",
        "revision",
        "service.name",
        "side",
        "version",
    ] {
        assert_eq!(
            rust_params.get(key),
            java_params.get(key),
            "parameter {key}"
        );
    }
    assert_eq!(
        java_params["anyhost"], "false",
        "JavaProvider sets its host"
    );
    assert_eq!(java_params["revision"], "1.0.0");
    // `methods`: Java 2.7 writes HashSet order, rdubbo sorts; the same set.
    let set = |p: &BTreeMap<String, String>| -> BTreeSet<String> {
        p["methods"].split(',').map(str::to_owned).collect()
    };
    assert_eq!(set(&rust_params), set(&java_params));
    assert!(rust_params["release"].starts_with("rdubbo-"));
    // Both write the parameters sorted by key.
    let keys_in_order = |u: &Url| u.params().map(|(k, _)| k.to_owned()).collect::<Vec<_>>();
    for u in [&java_url, &rust_url] {
        let mut sorted = keys_in_order(u);
        sorted.sort();
        assert_eq!(keys_in_order(u), sorted, "{u}");
    }

    // Both providers subscribed to their configurators: the folder exists.
    let ls = zk.cli(&["ls", &format!("/dubbo/{IFACE}")]);
    assert!(ls.contains("configurators"), "{ls}");

    // 2. Override rules, applied (or not) by both in the same way.
    let rules = [
        // No version: a versioned provider ignores it (Java's UrlUtils.isMatch).
        "override://0.0.0.0/com.example.UserService?category=configurators&dynamic=false&enabled=true&retries=7".to_owned(),
        // Disabled rule: ignored.
        "override://0.0.0.0/com.example.UserService?category=configurators&dynamic=false&enabled=false&loadbalance=random&version=1.0.0".to_owned(),
        // Every provider of the version.
        "override://0.0.0.0/com.example.UserService?category=configurators&dynamic=false&enabled=true&timeout=1234&version=1.0.0".to_owned(),
        // Only the rdubbo provider's host:port.
        format!("override://127.0.0.1:{rust_port}/com.example.UserService?category=configurators&dynamic=false&enabled=true&weight=200&version=1.0.0"),
        // Only the Java provider's application.
        "override://0.0.0.0/com.example.UserService?application=java-provider&category=configurators&dynamic=false&enabled=true&version=1.0.0&warmup=5".to_owned(),
    ];
    let paths: Vec<String> = rules.iter().map(|r| write_rule(&zk, r)).collect();
    let java_now = wait_node(&observer, java_port, "Java applies its rules", |u| {
        u.param("timeout") == Some("1234") && u.param("warmup") == Some("5")
    })
    .await;
    let rust_now = wait_node(&observer, rust_port, "rdubbo applies its rules", |u| {
        u.param("timeout") == Some("1234") && u.param("weight") == Some("200")
    })
    .await;
    println!("Java 2.7 with rules:  {java_now}\nrdubbo with rules:    {rust_now}");
    // Nothing else changed, on either side (Java keeps the timestamp too).
    assert_eq!(
        without(&java_now, &["timeout", "warmup"]),
        params(&java_url),
        "{java_now}"
    );
    assert_eq!(
        without(&rust_now, &["timeout", "weight"]),
        params(&rust_url),
        "{rust_now}"
    );
    let mut sorted = keys_in_order(&rust_now);
    sorted.sort();
    assert_eq!(keys_in_order(&rust_now), sorted, "{rust_now}");
    assert_eq!(provider.registered_urls(), vec![rust_now.clone()]);

    // The rules go away: both register their original URL again.
    for path in &paths {
        let out = zk.cli(&["delete", path]);
        assert!(!out.contains("Exception"), "zkCli delete {path}: {out}");
    }
    let java_back = wait_node(&observer, java_port, "Java restores", |u| {
        u.param("timeout").is_none()
    })
    .await;
    let rust_back = wait_node(&observer, rust_port, "rdubbo restores", |u| {
        u.param("timeout").is_none() && u.param("weight").is_none()
    })
    .await;
    assert_eq!(java_back, java_url);
    assert_eq!(rust_back, rust_url);
    assert_eq!(provider.registered_urls(), provider.urls());

    provider.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while provider_nodes(&observer)
        .await
        .iter()
        .any(|u| u.port() == Some(rust_port))
    {
        assert!(
            Instant::now() < deadline,
            "the rdubbo node stays after stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(java_provider);
    registry.destroy().await;
    observer.destroy().await;
}

/// Runs `com.example.GenericConsumer <args…>` to completion (killed by PID after
/// `JAVA_TIMEOUT`).
fn run_generic_consumer(java: &JavaDubbo, classes: &Path, args: &[String]) -> ConsumerOutput {
    let mut cmd = java.command(classes, "com.example.GenericConsumer");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut cmd).expect("cannot start java");
    let mut stdout = guard.0.stdout.take().unwrap();
    let mut stderr = guard.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + JAVA_TIMEOUT;
    let (status_ok, timed_out) = loop {
        match guard.0.try_wait().unwrap() {
            Some(status) => break (status.success(), false),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => {
                let _ = guard.0.kill();
                let _ = guard.0.wait();
                break (false, true);
            }
        }
    };
    drop(guard);
    let mut stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if timed_out {
        stdout.push_str("TIMEOUT: GenericConsumer killed\n");
    }
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let log = rdubbo_testkit::java::target_tmp().join(format!(
        "generic-consumer-{}-{}-{}.log",
        java.version().label(),
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::write(&log, format!("{stdout}\n--- stderr ---\n{stderr}"));
    ConsumerOutput {
        status_ok,
        stdout,
        log,
    }
}

async fn generic_consumer(java: &JavaDubbo, url: String, title: &str) -> ConsumerOutput {
    let classes = classes(java).await;
    let java = java.clone();
    let title = title.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = run_generic_consumer(&java, &classes, &["--url".into(), url]);
        println!("===== {title} (log {})\n{}", out.log.display(), out.stdout);
        out
    })
    .await
    .unwrap()
}

async fn rdubbo_provider() -> DubboServer {
    DubboServer::builder()
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// The info a check printed (`ok NAME info`).
fn info<'a>(out: &'a ConsumerOutput, name: &str) -> &'a str {
    let prefix = format!("ok {name} ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `ok {name}` line in:\n{}", out.stdout))
}

/// A not-found text as the consumer printed it (its first line), without the ports.
fn normalized(text: &str, provider_port: u16) -> String {
    let mut out = text.replace(&format!(":{provider_port}"), ":PORT");
    // The consumer's ephemeral port: "consumer: /127.0.0.1:NNNNN -->".
    if let Some(i) = out.find("consumer: /127.0.0.1:") {
        let start = i + "consumer: /127.0.0.1:".len();
        let end = out[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "C");
    }
    out
}

async fn java_generic_consumer_calls_rdubbo(version: DubboVersion) {
    let Some(java) = JavaDubbo::find(version) else {
        return;
    };
    let server = rdubbo_provider().await;
    let port = server.local_addr().port();
    let title = format!("{version} GenericConsumer -> rdubbo provider");
    let out = generic_consumer(&java, format!("dubbo://127.0.0.1:{port}/{IFACE}"), &title).await;
    out.assert_ok(&title);
    assert!(out.stdout.contains("DONE 10 passed, 0 failed"), "{title}");
    // The not-found answers, as the Java consumer shows them.
    assert!(
        info(&out, "unknown-service").contains(
            "Fail to decode request due to: java.lang.IllegalArgumentException: \
             Service not found:com.example.MissingService, hello"
        ),
        "{title}"
    );
    assert!(
        info(&out, "unknown-version").contains(&format!(
            "Not found exported service: com.example.UserService:9.9.9:{port} in \
             [com.example.UserService:{port}], may be version or group mismatch"
        )),
        "{title}"
    );
    assert!(
        info(&out, "generic-unknown-method").contains(
            "org.apache.dubbo.rpc.RpcException: com.example.UserService.nope(java.lang.String)"
        ),
        "{title}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_2_7_generic_consumer_calls_rdubbo_provider() {
    java_generic_consumer_calls_rdubbo(DubboVersion::V2_7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_generic_consumer_calls_rdubbo_provider() {
    java_generic_consumer_calls_rdubbo(DubboVersion::V3_3).await;
}

/// Calls a provider does not serve, made by the rdubbo dubbo client at `port`: for each,
/// the response status and the first line of the answer, ports normalized. The client
/// reports every one as METHOD_NOT_FOUND.
async fn rust_not_found_calls(port: u16) -> Vec<(String, u64, String)> {
    use rdubbo::dubbo::DubboClient;
    use rdubbo::error::codes;
    use rdubbo::{Invocation, Invoker, RpcError, Value};

    let url: Url = format!("dubbo://127.0.0.1:{port}/{IFACE}").parse().unwrap();
    let client = DubboClient::new(&url).unwrap();
    let call = |iface: &str, method: &str, types: &[&str], args: Vec<Value>| {
        Invocation::new(iface, method, args)
            .with_parameter_types(types.iter().map(|t| t.to_string()).collect())
            .with_timeout(Some(Duration::from_secs(10)))
    };
    let x = || vec![Value::from("x")];
    let cases = [
        (
            "unknown method",
            call(IFACE, "nope", &["Ljava/lang/String;"], x()),
        ),
        // `inc` has the overloads (J) and (Ljava/lang/Long;).
        (
            "no such overload",
            call(IFACE, "inc", &["Ljava/lang/String;"], x()),
        ),
        (
            "descriptors of another arity",
            call(
                IFACE,
                "echoUser",
                &["Ljava/lang/String;", "Ljava/lang/String;"],
                vec![Value::from("x"), Value::from("y")],
            ),
        ),
        (
            "unknown service",
            call(
                "com.example.MissingService",
                "hello",
                &["Ljava/lang/String;"],
                x(),
            ),
        ),
        (
            "unknown version",
            call(IFACE, "inc", &["J"], vec![Value::Long(1)]).with_version(Some("9.9.9")),
        ),
        (
            "unknown version and method",
            call(IFACE, "nope", &["Ljava/lang/String;"], x()).with_version(Some("9.9.9")),
        ),
    ];
    let mut seen = Vec::new();
    for (name, inv) in cases {
        let e = client.invoke(inv).await.unwrap_err();
        assert_eq!(e.code(), codes::METHOD_NOT_FOUND, "{name}: {e:?}");
        let status = match &e {
            RpcError::Remote { data: Some(d), .. } => d["status"].as_u64().unwrap_or(0),
            _ => 0,
        };
        let message = e.message();
        let first = message.lines().next().unwrap_or("");
        seen.push((name.to_owned(), status, normalized(first, port)));
    }
    seen
}

/// The same Java 2.7 consumer against a Java 2.7 provider and an rdubbo provider: the
/// checks pass on both, and the not-found texts it sees are the same (but for ports and
/// Java's stack trace). The same for the rdubbo client's not-found calls, at the wire
/// level: the same statuses and first lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_answers_read_as_a_java_2_7_providers() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let classes = classes(&java).await;
    let java_port = free_port();
    let java_provider = {
        let (java, classes) = (java.clone(), classes.clone());
        tokio::task::spawn_blocking(move || java.spawn_provider(&classes, java_port, &[]))
            .await
            .unwrap()
    };
    let against_java = generic_consumer(
        &java,
        format!("dubbo://127.0.0.1:{java_port}/{IFACE}"),
        "Java 2.7 GenericConsumer -> Java 2.7 provider",
    )
    .await;
    let java_answers = rust_not_found_calls(java_port).await;
    drop(java_provider);
    against_java.assert_ok("GenericConsumer against the Java provider");
    let server = rdubbo_provider().await;
    let rust_port = server.local_addr().port();
    let against_rust = generic_consumer(
        &java,
        format!("dubbo://127.0.0.1:{rust_port}/{IFACE}"),
        "Java 2.7 GenericConsumer -> rdubbo provider",
    )
    .await;
    against_rust.assert_ok("GenericConsumer against the rdubbo provider");
    let rust_answers = rust_not_found_calls(rust_port).await;
    for (java, rust) in java_answers.iter().zip(&rust_answers) {
        println!(
            "{}:\n  Java 2.7: {} {}\n  rdubbo:   {} {}",
            java.0, java.1, java.2, rust.1, rust.2
        );
    }
    assert_eq!(rust_answers, java_answers);
    for check in [
        "unknown-service",
        "unknown-version",
        "generic-unknown-method",
    ] {
        assert_eq!(
            normalized(info(&against_rust, check), rust_port),
            normalized(info(&against_java, check), java_port),
            "{check}"
        );
    }
    server.shutdown(Duration::from_secs(1)).await;
}

/// A Java 3.3 provider answers every not-found case 40 `Fail to decode request due to:
/// RpcInvocation [methodName=…`; the rdubbo client reports those as METHOD_NOT_FOUND too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdubbo_client_reads_java_3_3_not_found_answers() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let classes = classes(&java).await;
    let port = free_port();
    let provider = tokio::task::spawn_blocking(move || java.spawn_provider(&classes, port, &[]))
        .await
        .unwrap();
    for (name, status, first) in rust_not_found_calls(port).await {
        println!("{name}: {status} {first}");
        assert_eq!(status, 40, "{name}");
        assert!(
            first.starts_with("Fail to decode request due to: RpcInvocation [methodName="),
            "{name}: {first}"
        );
    }
    drop(provider);
}

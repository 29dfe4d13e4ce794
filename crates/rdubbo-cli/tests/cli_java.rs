//! `rdubbo call` and `rdubbo bench` with Java types against a real Java Dubbo 2.7.23
//! provider (`com.example.UserService` of crates/rdubbo/tests/java), and bench's
//! per-provider counts when a provider leaves during the run.

use std::process::{Command, Stdio};
use std::time::Duration;

use rdubbo_testkit::java::{interop_sources, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ZkServer};

mod common;

use common::{rdubbo, serve_demo, start_registered_demo, stop, text, BIN};

#[test]
fn typed_calls_against_a_java_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let classes = java.compile(&interop_sources());
    let provider = java.spawn_provider(&classes, free_port(), &[]);
    let url = format!(
        "dubbo://127.0.0.1:{}/com.example.UserService",
        provider.port()
    );
    let call = |args: &[&str]| {
        let mut all = vec!["call", url.as_str()];
        all.extend_from_slice(args);
        let out = rdubbo(&all);
        assert!(
            out.status.success(),
            "rdubbo {all:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    };

    // A `Long` argument, a POJO shown with its Java types.
    let user = call(&["getUser", "[7]", "--types", "java.lang.Long", "--java"]);
    for part in [
        "com.example.User{",
        "name=\"ann\"",
        "age=7",
        "born=Date(1700000000000)",
        "balance=BigDecimal(1234.50)",
        "level=com.example.Level.GOLD",
        "address=com.example.Address{",
    ] {
        assert!(user.contains(part), "{part} not in {user}");
    }
    // The same as JSON: the Java types' JSON forms.
    let json: serde_json::Value =
        serde_json::from_str(&call(&["getUser", "[7]", "--types", "java.lang.Long"])).unwrap();
    assert_eq!(json["class"], "com.example.User");
    assert_eq!(json["born"], 1_700_000_000_000_i64);
    assert_eq!(json["balance"], "1234.50");
    assert_eq!(json["level"], "GOLD");
    // `long` and `Long` pick different overloads; the result is a long.
    assert_eq!(call(&["inc", "[5]", "--types", "long", "--java"]), "6L");
    assert_eq!(
        call(&["inc", "[5]", "--types", "java.lang.Long", "--java"]),
        "7L"
    );
    // A POJO argument from JSON with its class named by --types.
    assert_eq!(
        call(&[
            "createUser",
            r#"[{"name": "ann", "age": 7, "tags": ["x"]}]"#,
            "--types",
            "com.example.User",
        ]),
        "3007"
    );
    // A POJO with a date field, as Java's GenericService sends it: the provider converts
    // the map by its field types.
    assert_eq!(
        call(&[
            "createUser",
            r#"[{"class": "com.example.User", "name": "bob", "age": 1, "born": 1700000000000}]"#,
            "--types",
            "com.example.User",
            "--generic",
        ]),
        "3001"
    );
    let generic = call(&["getUser", "[7]", "--types", "java.lang.Long", "--generic"]);
    let generic: serde_json::Value = serde_json::from_str(&generic).unwrap();
    assert_eq!(generic["class"], "com.example.User", "{generic}");
    assert_eq!(generic["name"], "ann", "{generic}");
    // A declared Java exception: its class and message.
    let out = rdubbo(&["call", &url, "getUser", "[-1]", "--types", "java.lang.Long"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no user -1"), "{err}");
    assert!(err.contains("com.example.UserNotFoundException"), "{err}");

    // bench with Java types.
    let out = rdubbo(&[
        "bench",
        &url,
        "--method",
        "inc",
        "--args",
        "[5]",
        "--types",
        "long",
        "--calls",
        "300",
        "--concurrency",
        "4",
    ]);
    let summary = text(&out.stdout);
    assert!(out.status.success(), "{summary}{}", text(&out.stderr));
    assert!(summary.contains("300 ok, 0 errors"), "{summary}");
}

#[test]
fn bench_counts_calls_of_providers_that_left_during_the_run() {
    let zk = ZkServer::start();
    let registry = zk.registry_url("session=4000&file.cache=false");
    let provider = |_| start_registered_demo(&["--protocol", "dubbo"], &registry).0;
    let staying = provider(0);
    let leaving = provider(1);
    let bench = Command::new(BIN)
        .args([
            "bench",
            "--registry",
            &registry,
            "org.apache.dubbo.demo.DemoService",
            "--duration",
            "4",
            "--concurrency",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop(leaving);
    let out = bench.wait_with_output().unwrap();
    let summary = text(&out.stdout);
    let lines: Vec<&str> = summary
        .lines()
        .filter(|l| l.starts_with("provider:"))
        .collect();
    assert_eq!(lines.len(), 2, "{summary}");
    let left: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("(left during the run)"))
        .collect();
    assert_eq!(left.len(), 1, "{summary}");
    // It served calls before it left, and they are counted.
    assert!(!left[0].contains(" 0 ok"), "{summary}");
    stop(staying);
}

/// `rdubbo demo provider --protocol dubbo` echoes every Java type back to a Java consumer
/// unchanged: `Long` stays `Long`, `Date` a `Date`, `HashSet` a `HashSet`, shared
/// references shared, POJOs with their class.
#[test]
fn demo_provider_echoes_java_types_to_a_java_consumer() {
    for version in [DubboVersion::V2_7, DubboVersion::V3_3] {
        let Some(java) = JavaDubbo::find(version) else {
            continue;
        };
        let classes = java.compile(&interop_sources());
        let (provider, url) = serve_demo("dubbo");
        let url = url.split('?').next().unwrap().to_string();
        assert!(url.starts_with("dubbo://127.0.0.1:"), "{url}");
        let out = java.run_consumer(
            &classes,
            &["--url", &url, "--version", "1.0.0", "--demo", "echo-types"],
            Duration::from_secs(120),
        );
        println!("{version}: {}", out.stdout);
        out.assert_ok(&format!(
            "{version} consumer -> rdubbo demo provider, echo-types"
        ));
        drop(provider);
    }
}

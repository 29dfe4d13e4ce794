//! End-to-end tests of the `rdubbo` command: they run the real binary and talk to it over
//! loopback, as a user would.

mod common;

use common::{rdubbo, serve_demo, stop, text, Running};

/// Starts `rdubbo demo provider` on a free port and returns it with the URL it serves.
fn start_provider() -> (Running, String) {
    serve_demo("jsonrpc")
}

#[test]
fn demo_prints_results_and_a_latency_summary() {
    let out = rdubbo(&["demo", "--calls", "200"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(r#"sayHello("rdubbo") -> "Hello rdubbo""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"echo({"name":"rdubbo""#), "{stdout}");
    assert!(stdout.contains("200 serial echo calls"), "{stdout}");
    // Provider and consumer met through the embedded registry.
    assert!(
        stdout.contains("registry: embedded naming server nacos://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("consumer discovered jsonrpc://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("latency µs: p50"), "{stdout}");
}

#[test]
fn call_both_versions_and_errors_against_a_provider_process() {
    let (_provider, url) = start_provider();
    assert!(url.contains("version=1.0.0"), "{url}");
    let base = url.split('?').next().unwrap().to_owned();

    let out = rdubbo(&["call", &url, "sayHello", r#"["world"]"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#""Hello world""#);

    // The unversioned export answers at the same path.
    let out = rdubbo(&["call", &base, "echo", r#"[{"a":[1,2,{"b":null}]}]"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"{"a":[1,2,{"b":null}]}"#);

    // A remote error prints its code and message and exits non-zero.
    let out = rdubbo(&["call", &base, "noSuchMethod", "[]"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("-32601"), "{err}");
    assert!(err.contains("noSuchMethod"), "{err}");

    let out = rdubbo(&["call", &base, "sayHello", r#"[1, 2]"#]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("-32602"),
        "{}",
        text(&out.stderr)
    );

    // Bad input on our side is a clear error, not a panic.
    let out = rdubbo(&["call", &base, "sayHello", "not json"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("JSON array"),
        "{}",
        text(&out.stderr)
    );
    let out = rdubbo(&["call", "jsonrpc://127.0.0.1:notaport/x", "echo", "[]"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid port"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn call_to_a_closed_port_fails_with_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = rdubbo(&[
        "call",
        &format!("jsonrpc://127.0.0.1:{port}/org.apache.dubbo.demo.DemoService"),
        "echo",
        "[1]",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_reports_a_histogram_summary() {
    let (_provider, url) = start_provider();
    let out = rdubbo(&["bench", &url, "--calls", "500", "--concurrency", "8"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("500 ok, 0 errors"), "{stdout}");
    for p in ["p50", "p90", "p99", "p99.9", "calls/s"] {
        assert!(stdout.contains(p), "missing {p}: {stdout}");
    }
}

#[test]
fn dubbo_provider_call_and_bench() {
    let (_provider, url) = serve_demo("dubbo");
    assert!(url.starts_with("dubbo://127.0.0.1:"), "{url}");
    assert!(url.contains("version=1.0.0"), "{url}");
    let out = rdubbo(&["call", &url, "sayHello", r#"["dubbo"]"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#""Hello dubbo""#);
    let value = r#"[{"a":[1,2.5,"x",null,true]}]"#;
    let out = rdubbo(&["call", &url, "echo", value]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let echoed: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(echoed, serde_json::json!({"a": [1, 2.5, "x", null, true]}));
    // Explicit Java types: the demo's sayHello(String) does not take a long.
    let out = rdubbo(&["call", &url, "sayHello", "[5]", "--types", "long"]);
    assert!(!out.status.success());
    let out = rdubbo(&["call", &url, "sayHello", r#"["t"]"#, "--types", "a,b"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--types names 2 types for 1 arguments"));
    let out = rdubbo(&["bench", &url, "--calls", "500", "--concurrency", "16"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("500 ok, 0 errors"), "{stdout}");
    let out = rdubbo(&["demo", "provider", "--protocol", "thrift"]);
    assert!(!out.status.success());
}

#[test]
fn provider_stops_gracefully_on_sigterm_and_exits_zero() {
    let (provider, url) = start_provider();
    let out = rdubbo(&["call", &url, "sayHello", r#"["x"]"#]);
    assert!(out.status.success());
    stop(provider);
    // And it no longer answers.
    let out = rdubbo(&["call", &url, "sayHello", r#"["x"]"#]);
    assert!(!out.status.success());
}

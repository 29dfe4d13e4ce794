//! `rdubbo demo provider --protocol tri`, `rdubbo call tri://…` and `rdubbo bench tri://…`
//! with the real binary over loopback; curl's HTTP/1 JSON call to the same provider.

use std::process::Command;

mod common;

use common::{rdubbo, serve_demo, text};

#[test]
fn tri_provider_call_bench_and_curl() {
    let (_provider, url) = serve_demo("tri");
    assert!(url.starts_with("tri://127.0.0.1:"), "{url}");
    assert!(url.contains("version=1.0.0"), "{url}");
    let out = rdubbo(&["call", &url, "sayHello", r#"["tri"]"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#""Hello tri""#);
    let value = r#"[{"a":[1,2.5,"x",null,true]}]"#;
    let out = rdubbo(&["call", &url, "echo", value]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let echoed: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(echoed, serde_json::json!({"a": [1, 2.5, "x", null, true]}));
    let out = rdubbo(&["call", &url, "noSuchMethod", "[]"]);
    assert!(!out.status.success());
    let out = rdubbo(&["bench", &url, "--calls", "500", "--concurrency", "16"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("500 ok, 0 errors"), "{stdout}");
    // The same provider answers curl's HTTP/1 JSON call, as Java's does.
    let Ok(curl) = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-X", "POST"])
        .arg(format!(
            "http://{}/org.apache.dubbo.demo.DemoService/sayHello",
            url.trim_start_matches("tri://").split('/').next().unwrap()
        ))
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "tri-service-version: 1.0.0",
            "-d",
            r#"["curl"]"#,
        ])
        .output()
    else {
        eprintln!("SKIPPED: curl is not installed");
        return;
    };
    assert!(curl.status.success(), "{}", text(&curl.stderr));
    assert_eq!(text(&curl.stdout), r#""Hello curl""#);
}

//! `rdubbo registry` as a process of its own: the demo provider registers in it, `ls`,
//! `call` and `bench` find the provider through it, SIGTERM deregisters it, persistent
//! instances survive a restart of the registry.

use std::path::PathBuf;

mod common;

use common::{http, rdubbo, start_rdubbo_registry, start_registered_demo, stop, text, Running};
const DEMO: &str = "org.apache.dubbo.demo.DemoService";

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts `rdubbo registry` on `listen` (`127.0.0.1:0`: a port the registry binds itself and
/// prints; no port picked in advance that another process could take meanwhile) and returns
/// it with the address it serves on.
fn start_registry(listen: &str, dir: &std::path::Path) -> (Running, String) {
    let (registry, addr) =
        start_rdubbo_registry(&["--listen", listen, "--data-dir", dir.to_str().unwrap()]);
    if !listen.ends_with(":0") {
        assert_eq!(addr, listen, "the address it serves on");
    }
    (registry, addr)
}

#[test]
fn demo_provider_is_found_through_rdubbo_registry_and_leaves_it_on_sigterm() {
    let dir = data_dir();
    let (registry, addr) = start_registry("127.0.0.1:0", &dir);
    let url = format!("nacos://{addr}");

    let (provider, lines) = start_registered_demo(&[], &url);
    let serving: Vec<&String> = lines.iter().filter(|l| l.starts_with("serving ")).collect();
    assert_eq!(serving.len(), 2, "{lines:?}");

    // In the registry under Dubbo's Nacos names.
    let (s, body) = http(
        &addr,
        "GET",
        "/nacos/v1/ns/service/list?pageNo=1&pageSize=50",
    );
    assert_eq!(s, 200);
    assert!(body.contains(&format!("providers:{DEMO}:1.0.0:")), "{body}");
    assert!(body.contains(&format!("providers:{DEMO}::")), "{body}");

    let out = rdubbo(&["ls", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(DEMO) && table.contains("rdubbo-demo-provider"),
        "{table}"
    );

    let out = rdubbo(&[
        "call",
        "--registry",
        &url,
        "--service-version",
        "1.0.0",
        DEMO,
        "sayHello",
        r#"["nacos"]"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#""Hello nacos""#);
    let out = rdubbo(&[
        "bench",
        "--registry",
        &url,
        DEMO,
        "--calls",
        "300",
        "--concurrency",
        "4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("300 ok, 0 errors"),
        "{}",
        text(&out.stdout)
    );

    // The whole demo against this registry instead of its embedded one.
    let out = rdubbo(&["demo", "--calls", "50", "--registry", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("50 serial echo calls"),
        "{}",
        text(&out.stdout)
    );

    stop(provider);
    let (_, body) = http(
        &addr,
        "GET",
        &format!("/nacos/v1/ns/instance/list?serviceName=providers%3A{DEMO}%3A1.0.0%3A"),
    );
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["hosts"].as_array().unwrap().len(), 0, "{body}");
    stop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn persistent_instances_survive_a_registry_restart() {
    let dir = data_dir().with_extension("persist");
    let _ = std::fs::remove_dir_all(&dir);
    let (registry, addr) = start_registry("127.0.0.1:0", &dir);
    let (s, b) = http(
        &addr,
        "POST",
        "/nacos/v1/ns/instance?serviceName=stored-svc&ip=127.0.0.1&port=7777&ephemeral=false&metadata=%7B%22k%22%3A%22v%22%7D",
    );
    assert_eq!((s, b.as_str()), (200, "ok"));
    let (s, _) = http(
        &addr,
        "POST",
        "/nacos/v1/ns/instance?serviceName=stored-svc&ip=127.0.0.1&port=7778",
    );
    assert_eq!(s, 200);
    stop(registry);

    let (registry, _) = start_registry(&addr, &dir);
    let (_, body) = http(
        &addr,
        "GET",
        "/nacos/v1/ns/instance/list?serviceName=stored-svc",
    );
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hosts = list["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "only the persistent instance: {body}");
    assert_eq!(hosts[0]["port"], 7777);
    assert_eq!(hosts[0]["metadata"]["k"], "v");
    assert_eq!(hosts[0]["ephemeral"], false);
    stop(registry);

    // A second registry on the same data dir refuses to start with a clear error (the
    // database is locked by the first).
    let (registry, _) = start_registry(&addr, &dir);
    let out = rdubbo(&[
        "registry",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot open"),
        "{}",
        text(&out.stderr)
    );
    stop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn registry_arguments_are_checked() {
    let out = rdubbo(&[
        "registry",
        "--listen",
        "127.0.0.1:1",
        "--beat-timeout=-3",
        "--in-memory",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--beat-timeout"),
        "{}",
        text(&out.stderr)
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = rdubbo(&["registry", "--listen", &addr, "--in-memory"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot listen on"),
        "{}",
        text(&out.stderr)
    );
}

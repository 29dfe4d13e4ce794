//! The `rdubbo` command with a real ZooKeeper: a provider registers, `ls` lists it,
//! `call` and `bench` find it through the registry, SIGTERM unregisters it.

use rdubbo_testkit::ZkServer;

mod common;

use common::{port_of, rdubbo, serving, start_registered_demo, stop, text, Running};
const DEMO: &str = "org.apache.dubbo.demo.DemoService";

/// Starts `rdubbo demo provider --registry …` and returns it with the URLs it registered.
fn start_provider(registry: &str) -> (Running, Vec<String>) {
    let (running, lines) = start_registered_demo(&[], registry);
    let urls = serving(&lines);
    assert_eq!(urls.len(), 2, "{urls:?}");
    (running, urls)
}

#[test]
fn provider_registers_and_is_listed_called_and_benched_through_zookeeper() {
    let zk = ZkServer::start();
    let registry = zk.registry_url("session=4000&file.cache=false");
    let (provider, urls) = start_provider(&registry);
    assert!(urls[0].starts_with("jsonrpc://127.0.0.1:"), "{urls:?}");
    assert!(urls.iter().any(|u| u.contains("version=1.0.0")));

    // The nodes have the shape Java Dubbo writes, as zkCli.sh lists them.
    let ls = zk.cli(&["ls", &format!("/dubbo/{DEMO}/providers")]);
    assert!(ls.contains("jsonrpc%3A%2F%2F127.0.0.1%3A"), "{ls}");
    assert!(
        ls.contains("%26interface%3Dorg.apache.dubbo.demo.DemoService%26"),
        "{ls}"
    );
    assert!(ls.contains("%26side%3Dprovider%26"), "{ls}");

    let out = rdubbo(&["ls", &registry]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(table.contains(DEMO), "{table}");
    assert!(table.contains("rdubbo-demo-provider"), "{table}");
    let port = port_of(&urls[0]);
    assert!(
        table.contains(&format!(
            "provider  jsonrpc://127.0.0.1:{port}  version=1.0.0"
        )),
        "{table}"
    );
    let out = rdubbo(&["ls", &registry, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    assert_eq!(json[0]["service"], DEMO);
    assert_eq!(json[0]["providers"].as_array().unwrap().len(), 2);

    let out = rdubbo(&[
        "call",
        "--registry",
        &registry,
        "--service-version",
        "1.0.0",
        DEMO,
        "sayHello",
        r#"["zk"]"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#""Hello zk""#);
    // Unversioned too.
    let out = rdubbo(&["call", "--registry", &registry, DEMO, "echo", "[[1,2]]"]);
    assert_eq!(text(&out.stdout).trim(), "[1,2]", "{}", text(&out.stderr));
    // An interface nobody provides: a clear error.
    let out = rdubbo(&["call", "--registry", &registry, "no.Such", "x", "[]"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no provider for no.Such"),
        "{}",
        text(&out.stderr)
    );

    let out = rdubbo(&[
        "bench",
        "--registry",
        &registry,
        DEMO,
        "--calls",
        "300",
        "--concurrency",
        "4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(summary.contains("300 ok, 0 errors"), "{summary}");
    assert!(
        summary.contains(&format!("providers:   127.0.0.1:{port}")),
        "{summary}"
    );

    // SIGTERM: unregister, drain, exit 0; the nodes are gone.
    stop(provider);
    let ls = zk.cli(&["ls", &format!("/dubbo/{DEMO}/providers")]);
    assert!(!ls.contains("jsonrpc%3A%2F%2F"), "{ls}");
}

#[test]
fn ls_of_an_unreachable_registry_is_a_clear_error() {
    let port = rdubbo_testkit::free_port();
    let out = rdubbo(&[
        "ls",
        &format!("zookeeper://127.0.0.1:{port}?timeout=500&file.cache=false"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not reachable"),
        "{}",
        text(&out.stderr)
    );
    let out = rdubbo(&["ls", "etcd://127.0.0.1:2379"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unsupported registry"),
        "{}",
        text(&out.stderr)
    );
}

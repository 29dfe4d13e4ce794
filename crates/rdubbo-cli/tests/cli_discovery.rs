//! `rdubbo ls` with a real ZooKeeper also lists Dubbo 3 applications: the demo provider's
//! instance (`/services/<app>/<ip:port>`), its revision and endpoints, and the interfaces
//! mapped to it (`/dubbo/mapping/<interface>`). The same with `rdubbo registry` (the Nacos
//! API): the instance of service `<app>` and the mapping in config group `mapping`.

use rdubbo_testkit::ZkServer;

mod common;

use common::{
    port_of, rdubbo, serving, start_rdubbo_registry, start_registered_demo, stop, text, Running,
};

const DEMO: &str = "org.apache.dubbo.demo.DemoService";
const APP: &str = "rdubbo-demo-provider";

/// Starts the demo provider over dubbo registered at `registry`; returns it with its port.
fn start_provider(registry: &str) -> (Running, String) {
    let (provider, lines) = start_registered_demo(&["--protocol", "dubbo"], registry);
    let url = serving(&lines)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{lines:?}"));
    (provider, port_of(&url))
}

/// `rdubbo ls <registry>`: the services table as before, then the applications, with the
/// demo's instance at `port`, its endpoints and the interface mapped to it. Returns the
/// instance's revision.
fn ls_shows_the_demo_application(registry: &str, port: &str) -> String {
    let out = rdubbo(&["ls", registry]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(table.contains("\nAPPLICATION"), "{table}");
    assert!(
        table.contains(&format!("  instance  127.0.0.1:{port}  revision=")),
        "{table}"
    );
    assert!(
        table.contains(&format!("endpoints=dubbo:{port}")),
        "{table}"
    );
    assert!(table.contains(&format!("  maps      {DEMO}")), "{table}");
    let app_line = table
        .lines()
        .find(|l| l.starts_with(APP))
        .unwrap_or_else(|| panic!("{table}"));
    let revision = app_line.split_whitespace().nth(2).unwrap().to_owned();
    assert_eq!(revision.len(), 32, "{app_line}");
    revision
}

/// `rdubbo ls <registry> --applications --json`: the demo's application with its interface
/// and its instance at `port` with `revision`. Returns the JSON.
fn applications_json(registry: &str, port: &str, revision: &str) -> serde_json::Value {
    let out = rdubbo(&["ls", registry, "--applications", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls -a --json");
    assert_eq!(json[0]["application"], APP);
    assert_eq!(json[0]["interfaces"][0], DEMO);
    let instance = &json[0]["instances"][0];
    assert_eq!(instance["address"], format!("127.0.0.1:{port}"));
    assert_eq!(instance["revision"], revision);
    json
}

/// Once the provider is gone its instance is too; the mapping stays (as in Java).
fn ls_keeps_the_mapping_of_a_stopped_provider(registry: &str) {
    let out = rdubbo(&["ls", registry, "-a"]);
    let table = text(&out.stdout);
    assert!(table.contains(APP), "{table}");
    assert!(!table.contains("  instance  "), "{table}");
    assert!(table.contains(&format!("  maps      {DEMO}")), "{table}");
}

#[test]
fn ls_shows_applications_instances_and_revisions() {
    let zk = ZkServer::start();
    let registry = zk.registry_url("session=4000&file.cache=false");
    let (provider, port) = start_provider(&registry);

    let revision = ls_shows_the_demo_application(&registry, &port);
    // Only the applications, as JSON; the revision is the instance's, as zkCli shows it.
    applications_json(&registry, &port, &revision);
    let node = zk.cli(&["get", &format!("/services/{APP}/127.0.0.1:{port}")]);
    assert!(node.contains(&revision), "{node}");
    // The services JSON keeps its shape.
    let out = rdubbo(&["ls", &registry, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    assert_eq!(json[0]["service"], DEMO);

    stop(provider);
    ls_keeps_the_mapping_of_a_stopped_provider(&registry);
}

#[test]
fn ls_shows_applications_of_rdubbo_registry() {
    let (registry, addr) = start_rdubbo_registry(&["--listen", "127.0.0.1:0", "--in-memory"]);
    let url = format!("nacos://{addr}");
    let (provider, port) = start_provider(&url);

    let revision = ls_shows_the_demo_application(&url, &port);
    // Only the applications, as JSON: one, the demo's, with the revision the registry holds
    // in the instance's metadata.
    let json = applications_json(&url, &port, &revision);
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    let (status, body) = common::http(
        &addr,
        "GET",
        &format!("/nacos/v1/ns/instance/list?serviceName={APP}"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\"dubbo.metadata.revision\":\"{revision}\"")),
        "{body}"
    );

    stop(provider);
    ls_keeps_the_mapping_of_a_stopped_provider(&url);
    stop(registry);
}

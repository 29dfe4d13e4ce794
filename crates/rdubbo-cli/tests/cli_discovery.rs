//! `rdubbo ls` with a real ZooKeeper also lists Dubbo 3 applications: the demo provider's
//! instance (`/services/<app>/<ip:port>`), its revision and endpoints, and the interfaces
//! mapped to it (`/dubbo/mapping/<interface>`). The same with `rdubbo registry` (the Nacos
//! API): the instance of service `<app>` and the mapping in config group `mapping`.

use rdubbo_testkit::ZkServer;

mod common;

use common::{rdubbo, start, stop, text};

const DEMO: &str = "org.apache.dubbo.demo.DemoService";
const APP: &str = "rdubbo-demo-provider";

#[test]
fn ls_shows_applications_instances_and_revisions() {
    let zk = ZkServer::start();
    let registry = zk.registry_url("session=4000&file.cache=false");
    let (provider, lines) = start(
        &[
            "demo",
            "provider",
            "--protocol",
            "dubbo",
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &registry,
            "--unregister-wait",
            "0.2",
        ],
        "registered in ",
    );
    let url = lines
        .iter()
        .find_map(|l| l.strip_prefix("serving "))
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    let port = url
        .trim_start_matches("dubbo://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // The services table as before, then the applications.
    let out = rdubbo(&["ls", &registry]);
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

    // Only the applications, as JSON; the revision is the instance's, as zkCli shows it.
    let out = rdubbo(&["ls", &registry, "--applications", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls -a --json");
    assert_eq!(json[0]["application"], APP);
    assert_eq!(json[0]["interfaces"][0], DEMO);
    let instance = &json[0]["instances"][0];
    assert_eq!(instance["address"], format!("127.0.0.1:{port}"));
    assert_eq!(instance["revision"], revision.as_str());
    let node = zk.cli(&["get", &format!("/services/{APP}/127.0.0.1:{port}")]);
    assert!(node.contains(&revision), "{node}");
    // The services JSON keeps its shape.
    let out = rdubbo(&["ls", &registry, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    assert_eq!(json[0]["service"], DEMO);

    // Once the provider is gone its instance is too; the mapping stays (as in Java).
    stop(provider);
    let out = rdubbo(&["ls", &registry, "-a"]);
    let table = text(&out.stdout);
    assert!(table.contains(APP), "{table}");
    assert!(!table.contains("  instance  "), "{table}");
    assert!(table.contains(&format!("  maps      {DEMO}")), "{table}");
}

#[test]
fn ls_shows_applications_of_rdubbo_registry() {
    let (registry, lines) = start(
        &["registry", "--listen", "127.0.0.1:0", "--in-memory"],
        "data:",
    );
    let addr = lines[0]
        .split("nacos://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no nacos:// address in {lines:?}"))
        .to_owned();
    let url = format!("nacos://{addr}");
    let (provider, lines) = start(
        &[
            "demo",
            "provider",
            "--protocol",
            "dubbo",
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &url,
            "--unregister-wait",
            "0.2",
        ],
        "registered in ",
    );
    let serving = lines
        .iter()
        .find_map(|l| l.strip_prefix("serving "))
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    let port = serving
        .trim_start_matches("dubbo://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // The services table as before, then the applications.
    let out = rdubbo(&["ls", &url]);
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

    // Only the applications, as JSON: one, the demo's, with the revision the registry holds
    // in the instance's metadata.
    let out = rdubbo(&["ls", &url, "--applications", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls -a --json");
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["application"], APP);
    assert_eq!(json[0]["interfaces"][0], DEMO);
    let instance = &json[0]["instances"][0];
    assert_eq!(instance["address"], format!("127.0.0.1:{port}"));
    assert_eq!(instance["revision"], revision.as_str());
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

    // Once the provider is gone its instance is too; the mapping stays (as in Java).
    stop(provider);
    let out = rdubbo(&["ls", &url, "-a"]);
    let table = text(&out.stdout);
    assert!(table.contains(APP), "{table}");
    assert!(!table.contains("  instance  "), "{table}");
    assert!(table.contains(&format!("  maps      {DEMO}")), "{table}");
    stop(registry);
}

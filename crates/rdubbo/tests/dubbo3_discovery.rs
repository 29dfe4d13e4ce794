//! Dubbo 3 application-level discovery, provider side, through a real ZooKeeper: an rdubbo
//! provider writes what a Java 3.3 provider writes (`/services/<app>/<ip:port>` with
//! Curator's instance JSON, `/dubbo/mapping/<interface>`), serves
//! `org.apache.dubbo.metadata.MetadataService`, and Java 3.3.1 consumers with
//! `FORCE_APPLICATION` and `APPLICATION_FIRST` find and call it through the application;
//! a Java 2.7 consumer still finds it by interface. The ZooKeeper layout is checked with
//! the Debian `zkCli.sh`, as a user would.
//!
//! Java peers are skipped LOUDLY when their jars are missing (`RDUBBO_REQUIRE_JAVA=1` fails
//! instead).

use std::sync::Arc;
use std::time::Duration;

use rdubbo::dubbo::DubboClient;
use rdubbo::generic::GenericClient;
use rdubbo::metadata::{MetadataInfo, METADATA_SERVICE, METADATA_SERVICE_VERSION};
use rdubbo::{RegisterMode, Url, Value};
use rdubbo_testkit::java::{interop_sources, ConsumerOutput, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ZkServer};

mod dubbo3_common;
use dubbo3_common::{
    compile, connect, eventually, java_instance_provider, provider, APP, INTERFACE,
};

const CONSUMER_TIMEOUT: Duration = Duration::from_secs(120);

/// The children `zkCli.sh ls <path>` prints (`[a, b]`).
fn zk_ls(zk: &ZkServer, path: &str) -> Vec<String> {
    let out = zk.cli(&["ls", path]);
    let Some(line) = out
        .lines()
        .rev()
        .find(|l| l.starts_with('[') && l.ends_with(']'))
    else {
        return Vec::new();
    };
    line[1..line.len() - 1]
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The JSON data of a node as `zkCli.sh get <path>` prints it.
fn zk_get_json(zk: &ZkServer, path: &str) -> serde_json::Value {
    let out = zk.cli(&["get", path]);
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON at {path}: {out}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: {e}: {line}"))
}

/// Whether `zkCli.sh stat <path>` shows an ephemeral node.
fn zk_is_ephemeral(zk: &ZkServer, path: &str) -> bool {
    let stat = zk.cli(&["stat", path]);
    assert!(stat.contains("ephemeralOwner"), "no node {path}: {stat}");
    !stat.contains("ephemeralOwner = 0x0\n")
}

/// Calls `getMetadataInfo(revision)` on the MetadataService of `app` at `addr` over dubbo,
/// as a Java 3.3 consumer does (group = application, version 1.0.0).
async fn fetch_metadata(addr: &str, app: &str, revision: &str) -> Value {
    let url: Url = format!("dubbo://{addr}/{METADATA_SERVICE}")
        .parse()
        .unwrap();
    let client = DubboClient::new(&url).unwrap();
    let generic = GenericClient::new(Arc::new(client), METADATA_SERVICE)
        .group(Some(app))
        .version(Some(METADATA_SERVICE_VERSION))
        .timeout(Duration::from_secs(5));
    generic
        .call_typed(
            "getMetadataInfo",
            vec![Value::String(revision.into())],
            vec!["java.lang.String".into()],
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_provider_writes_javas_layout() {
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::All).await;
    let port = p.local_addr().port();
    let id = format!("127.0.0.1:{port}");

    // /services/<app>/<ip:port>: ephemeral, Curator's instance JSON with Dubbo's metadata.
    assert_eq!(zk_ls(&zk, "/services"), [APP]);
    assert_eq!(zk_ls(&zk, &format!("/services/{APP}")), [id.as_str()]);
    let node = format!("/services/{APP}/{id}");
    assert!(zk_is_ephemeral(&zk, &node));
    let json = zk_get_json(&zk, &node);
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "id",
            "address",
            "port",
            "sslPort",
            "payload",
            "registrationTimeUTC",
            "serviceType",
            "uriSpec"
        ]
    );
    assert_eq!(json["name"], APP);
    assert_eq!(json["id"], id);
    assert_eq!(json["address"], "127.0.0.1");
    assert_eq!(json["port"], port);
    assert!(json["sslPort"].is_null() && json["uriSpec"].is_null());
    assert_eq!(json["serviceType"], "DYNAMIC");
    assert!(json["registrationTimeUTC"].as_u64().unwrap() > 1_700_000_000_000);
    let payload = &json["payload"];
    assert_eq!(
        payload["@class"],
        "org.apache.dubbo.registry.zookeeper.ZookeeperInstance"
    );
    assert_eq!(payload["id"], id);
    assert_eq!(payload["name"], APP);
    let meta = &payload["metadata"];
    let revision = p.metadata().unwrap().revision();
    assert_eq!(meta["dubbo.metadata.revision"], revision.as_str());
    assert_eq!(meta["dubbo.metadata.storage-type"], "local");
    assert_eq!(meta["meta-v"], "1.0.0");
    assert!(meta["timestamp"].as_str().unwrap().parse::<u64>().is_ok());
    let endpoints: serde_json::Value =
        serde_json::from_str(meta["dubbo.endpoints"].as_str().unwrap()).unwrap();
    assert_eq!(
        endpoints,
        serde_json::json!([{"port": port, "protocol": "dubbo"}])
    );
    let params: serde_json::Value =
        serde_json::from_str(meta["dubbo.metadata-service.url-params"].as_str().unwrap()).unwrap();
    assert_eq!(params["protocol"], "dubbo");
    assert_eq!(params["port"], port.to_string());
    assert_eq!(params["version"], "1.0.0");

    // /dubbo/mapping/<interface>: persistent, the application.
    let mapping = format!("/dubbo/mapping/{INTERFACE}");
    assert!(!zk_is_ephemeral(&zk, &mapping));
    assert!(zk.cli(&["get", &mapping]).contains(APP));
    let discovery = registry.service_discovery().unwrap();
    assert_eq!(discovery.mapping(INTERFACE).await.unwrap(), [APP]);
    // The interface-level URL is there too (register-mode all).
    let providers = zk_ls(&zk, &format!("/dubbo/{INTERFACE}/providers"));
    assert_eq!(providers.len(), 1, "{providers:?}");
    // `rdubbo ls`-style lookups do not take the mapping folder for an interface.
    let any: Url = "consumer://127.0.0.1/*?interface=*&category=providers&group=*&version=*"
        .parse()
        .unwrap();
    let all = registry.lookup(&any).await.unwrap();
    assert!(all.iter().all(|u| u.interface() == INTERFACE), "{all:?}");

    // What the instance names, the MetadataService answers.
    let instances = discovery.instances(APP).await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0], *p.instance().unwrap());
    let answer = fetch_metadata(&id, APP, &revision).await;
    let (info, answered_revision) = MetadataInfo::from_value(&answer).unwrap();
    assert_eq!(answered_revision, revision);
    assert_eq!(info.revision(), revision);
    assert_eq!(&info, p.metadata().unwrap());
    let service = &info.services[&format!("{INTERFACE}:1.0.0:dubbo")];
    assert_eq!(service.port, port);
    assert!(
        service.params["methods"].split(',').any(|m| m == "getUser"),
        "{service:?}"
    );
    assert!(!service.params.contains_key("pid"));
    assert!(!service.params.contains_key("timestamp"));
    // Another revision: null, as Java answers.
    assert_eq!(fetch_metadata(&id, APP, "0").await, Value::Null);

    // Stopped: the instance goes, the mapping stays (as Java's).
    p.stop().await;
    assert!(zk_ls(&zk, &format!("/services/{APP}")).is_empty());
    assert_eq!(discovery.mapping(INTERFACE).await.unwrap(), [APP]);
    registry.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_mode_chooses_what_is_written() {
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let discovery = registry.service_discovery().unwrap();
    let providers = format!("/dubbo/{INTERFACE}/providers");

    let p = provider("dubbo", &registry, "by-interface", RegisterMode::Interface).await;
    assert_eq!(zk_ls(&zk, &providers).len(), 1);
    assert!(discovery
        .instances("by-interface")
        .await
        .unwrap()
        .is_empty());
    assert!(discovery.mapping(INTERFACE).await.unwrap().is_empty());
    assert!(p.instance().is_none() && p.metadata().is_none());
    p.stop().await;

    let p = provider("dubbo", &registry, "by-instance", RegisterMode::Instance).await;
    assert!(zk_ls(&zk, &providers).is_empty());
    assert_eq!(discovery.instances("by-instance").await.unwrap().len(), 1);
    assert_eq!(discovery.mapping(INTERFACE).await.unwrap(), ["by-instance"]);
    p.stop().await;

    // The registry URL's `register-mode` wins over the builder's.
    let by_url = connect(&zk, "file.cache=false&register-mode=interface").await;
    let p = provider("dubbo", &by_url, "by-url", RegisterMode::All).await;
    assert_eq!(zk_ls(&zk, &providers).len(), 1);
    assert!(discovery.instances("by-url").await.unwrap().is_empty());
    p.stop().await;
    by_url.destroy().await;
    registry.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_lists_every_application_of_an_interface() {
    let zk = ZkServer::start();
    // A Java application mapped the interface before.
    zk.cli(&["create", "/dubbo"]);
    zk.cli(&["create", "/dubbo/mapping"]);
    let out = zk.cli(&["create", &format!("/dubbo/mapping/{INTERFACE}"), "java-app"]);
    assert!(out.contains("Created"), "{out}");
    let registry = connect(&zk, "file.cache=false").await;
    let other = connect(&zk, "file.cache=false").await;
    // Two applications start at once, through two sessions: the compare-and-set keeps both.
    let (a, b) = tokio::join!(
        provider("dubbo", &registry, "app-a", RegisterMode::All),
        provider("dubbo", &other, "app-b", RegisterMode::All),
    );
    let discovery = registry.service_discovery().unwrap();
    assert_eq!(
        discovery.mapping(INTERFACE).await.unwrap(),
        ["app-a", "app-b", "java-app"]
    );
    let data = zk.cli(&["get", &format!("/dubbo/mapping/{INTERFACE}")]);
    assert!(
        data.contains("java-app,app-a,app-b") || data.contains("java-app,app-b,app-a"),
        "appended as Java does: {data}"
    );
    a.stop().await;
    b.stop().await;
    registry.destroy().await;
    other.destroy().await;
}

/// ZooKeeper is down when the provider starts: the start does not fail, and the instance
/// and the mapping are written once ZooKeeper is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_is_registered_once_zookeeper_comes_up() {
    let mut zk = ZkServer::start();
    zk.stop();
    let registry = connect(&zk, "timeout=1000&retry.period=300&file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::All).await;
    assert!(p.instance().is_some());
    zk.restart();
    let discovery = registry.service_discovery().unwrap();
    eventually("instance and mapping written", async || {
        matches!(discovery.instances(APP).await, Ok(v) if v.len() == 1)
            && matches!(discovery.mapping(INTERFACE).await, Ok(m) if m == [APP])
    })
    .await;
    assert_eq!(
        zk_ls(&zk, &format!("/services/{APP}")),
        [p.instance().unwrap().id()]
    );
    p.stop().await;
    registry.destroy().await;
}

/// A new revision updates the instance node in place (`setData`, as Curator's
/// `updateService`), and unregistering deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_registered_again_is_updated_in_place() {
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let discovery = registry.service_discovery().unwrap();
    let mut instance = rdubbo::ServiceInstance::new("updated-app", "127.0.0.1", 20999);
    instance
        .metadata
        .insert(rdubbo::discovery::keys::REVISION.into(), "r1".into());
    discovery.register(&instance).await.unwrap();
    let node = "/services/updated-app/127.0.0.1:20999";
    let before = zk.cli(&["stat", node]);
    instance
        .metadata
        .insert(rdubbo::discovery::keys::REVISION.into(), "r2".into());
    discovery.register(&instance).await.unwrap();
    let after = zk.cli(&["stat", node]);
    let line = |stat: &str, key: &str| {
        stat.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key}: {stat}"))
            .to_owned()
    };
    assert_eq!(line(&before, "cZxid"), line(&after, "cZxid"), "same node");
    assert_eq!(line(&after, "dataVersion"), "dataVersion = 1");
    assert_eq!(
        zk_get_json(&zk, node)["payload"]["metadata"]["dubbo.metadata.revision"],
        "r2"
    );
    let found = discovery.instances("updated-app").await.unwrap();
    assert_eq!(found, [instance.clone()]);
    discovery.unregister(&instance).await.unwrap();
    assert!(zk_ls(&zk, "/services/updated-app").is_empty());
    registry.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_and_mapping_come_back_after_a_session_loss() {
    let mut zk = ZkServer::start();
    let registry = connect(&zk, "session=2000&retry.period=300&file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::All).await;
    let discovery = registry.service_discovery().unwrap();
    let id = p.instance().unwrap().id();
    assert_eq!(discovery.instances(APP).await.unwrap().len(), 1);

    // ZooKeeper comes back with no memory of anything: a new session, every node gone.
    zk.stop();
    zk.wipe_data();
    zk.restart();
    eventually("instance and mapping written again", async || {
        matches!(discovery.instances(APP).await, Ok(v) if v.len() == 1 && v[0].id() == id)
            && matches!(discovery.mapping(INTERFACE).await, Ok(m) if m == [APP])
    })
    .await;
    assert!(zk_is_ephemeral(&zk, &format!("/services/{APP}/{id}")));
    let providers = zk_ls(&zk, &format!("/dubbo/{INTERFACE}/providers"));
    assert_eq!(providers.len(), 1);
    p.stop().await;
    registry.destroy().await;
}

// ------------------------------------------------------------------------- Java peers

fn show(title: &str, out: &ConsumerOutput) {
    println!("===== {title} (log {})\n{}", out.log.display(), out.stdout);
}

/// The Java consumer's checks through ZooKeeper, in a blocking thread.
async fn java_checks(java: &JavaDubbo, args: Vec<String>, title: &str) {
    let java = java.clone();
    let title = title.to_owned();
    tokio::task::spawn_blocking(move || {
        let classes = java.compile(&interop_sources());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = java.run_consumer(&classes, &args, CONSUMER_TIMEOUT);
        show(&title, &out);
        out.assert_ok(&title);
        assert!(out.stdout.contains("served-by=rdubbo"), "{title}");
    })
    .await
    .unwrap()
}

fn consumer_args(registry: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--registry", registry, "--version", "1.0.0"]
        .map(str::to_owned)
        .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push("check".into());
    args
}

/// FORCE_APPLICATION: mapping → `/services/<app>` → MetadataService → the service URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_force_application_consumer_calls_rdubbo_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let zk = ZkServer::start();
    let url = zk.registry_url("");
    let registry = connect(&zk, "file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::All).await;
    java_checks(
        &java,
        consumer_args(
            &url,
            &["--migration-step", "FORCE_APPLICATION", "--metadata-center"],
        ),
        "Java 3.3 FORCE_APPLICATION consumer -> rdubbo provider (register-mode all)",
    )
    .await;
    p.stop().await;
    registry.destroy().await;
}

/// The same over Triple: the consumer fetches the metadata from the MetadataService over
/// `tri` (a wrapped Hessian2 call with `tri-service-group: <app>`) and calls over `tri`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_force_application_consumer_calls_rdubbo_tri_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let zk = ZkServer::start();
    let url = zk.registry_url("");
    let registry = connect(&zk, "file.cache=false").await;
    let p = provider("tri", &registry, APP, RegisterMode::Instance).await;
    let instance = p.instance().unwrap();
    assert_eq!(
        instance.endpoints(),
        [("tri".to_owned(), p.local_addr().port())]
    );
    assert_eq!(instance.metadata_service_params()["protocol"], "tri");
    java_checks(
        &java,
        consumer_args(
            &url,
            &["--migration-step", "FORCE_APPLICATION", "--metadata-center"],
        ),
        "Java 3.3 FORCE_APPLICATION consumer -> rdubbo tri provider (register-mode instance)",
    )
    .await;
    p.stop().await;
    registry.destroy().await;
}

/// APPLICATION_FIRST (Java 3's default) with a provider registered by instance only: the
/// consumer can only have found it through the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_application_first_consumer_calls_rdubbo_instance() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let zk = ZkServer::start();
    let url = zk.registry_url("");
    let registry = connect(&zk, "file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::Instance).await;
    assert!(zk_ls(&zk, &format!("/dubbo/{INTERFACE}/providers")).is_empty());
    java_checks(
        &java,
        consumer_args(
            &url,
            &["--migration-step", "APPLICATION_FIRST", "--metadata-center"],
        ),
        "Java 3.3 APPLICATION_FIRST consumer -> rdubbo provider (register-mode instance)",
    )
    .await;
    p.stop().await;
    registry.destroy().await;
}

/// Dubbo 2.7 knows only interface-level URLs: a provider with the default mode (all) is
/// still found by it, the `/services` and `/dubbo/mapping` nodes notwithstanding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_2_7_consumer_still_finds_the_interface_level_urls() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let zk = ZkServer::start();
    let url = zk.registry_url("");
    let registry = connect(&zk, "file.cache=false").await;
    let p = provider("dubbo", &registry, APP, RegisterMode::All).await;
    assert_eq!(zk_ls(&zk, "/services"), [APP]);
    java_checks(
        &java,
        consumer_args(&url, &[]),
        "Java 2.7 consumer -> rdubbo provider (register-mode all)",
    )
    .await;
    p.stop().await;
    registry.destroy().await;
}

/// A Java 3.3 provider registered by instance: rdubbo reads its instance, fetches its
/// MetadataInfo from its MetadataService and computes the same revision from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_of_a_java_provider_is_recomputed_exactly() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let zk = ZkServer::start();
    let url = zk.registry_url("");
    let classes = compile(&java).await;
    let java_provider = java_instance_provider(&java, &classes, free_port(), &url, "dubbo").await;
    let registry = connect(&zk, "file.cache=false").await;
    let discovery = registry.service_discovery().unwrap();
    let mut instances = Vec::new();
    eventually("the Java instance", async || {
        instances = discovery
            .instances("java-provider")
            .await
            .unwrap_or_default();
        !instances.is_empty()
    })
    .await;
    let instance = &instances[0];
    assert_eq!(instance.port, java_provider.port());
    assert_eq!(
        discovery.mapping(INTERFACE).await.unwrap(),
        ["java-provider"]
    );
    let revision = instance.revision().unwrap().to_owned();
    let params = instance.metadata_service_params();
    assert_eq!(params["protocol"], "dubbo");
    let addr = format!("{}:{}", instance.host, params["port"]);
    let answer = fetch_metadata(&addr, "java-provider", &revision).await;
    let (info, answered) = MetadataInfo::from_value(&answer)
        .unwrap_or_else(|| panic!("not a MetadataInfo: {answer:?}"));
    assert_eq!(answered, revision);
    assert!(info
        .services
        .contains_key(&format!("{INTERFACE}:1.0.0:dubbo")));
    assert_eq!(info.revision(), revision, "{info:#?}");
    drop(java_provider);
    registry.destroy().await;
}

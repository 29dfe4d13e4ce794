//! Dubbo 3 application-level registration of an application started from a configuration
//! file (`[application] register_mode`): one instance for the whole application in
//! ZooKeeper, its MetadataService on the first dubbo protocol, every protocol among its
//! endpoints; `offline`/`online` and the shutdown take the instance along; a Java 3.3.1
//! consumer with `FORCE_APPLICATION` calls it.

use std::sync::Arc;
use std::time::Duration;

use rdubbo::app::{Application, Config, Format};
use rdubbo::dubbo::DubboClient;
use rdubbo::generic::GenericClient;
use rdubbo::metadata::{MetadataInfo, METADATA_SERVICE, METADATA_SERVICE_VERSION};
use rdubbo::{Registry, ServiceDiscovery, Url, Value};
use rdubbo_testkit::java::{interop_sources, DubboVersion, JavaDubbo};
use rdubbo_testkit::ZkServer;

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{RustUsers, UserServiceServer};

const APP: &str = "users-app";
const INTERFACE: &str = "com.example.UserService";

/// The application `users-app` serving UserService over `protocols`.
fn config(zk: &ZkServer, extra_application: &str, protocols: &[&str]) -> Config {
    let mut text = format!(
        r#"
[application]
name = "{APP}"
{extra_application}

[registries.zk]
address = "{}"
params = {{ "file.cache" = "false" }}

[provider.services.users]
interface = "{INTERFACE}"
version = "1.0.0"

[metrics]
enabled = false

[qos]
enabled = false
"#,
        zk.registry_url("")
    );
    for p in protocols {
        text.push_str(&format!("\n[protocols.{p}]\nport = 0\n"));
    }
    Config::from_str(&text, Format::Toml, "users.toml").unwrap()
}

async fn start(config: Config) -> Application {
    Application::builder(config)
        .service(
            "users",
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .start()
        .await
        .unwrap()
}

async fn discovery(zk: &ZkServer) -> (Arc<dyn Registry>, Arc<dyn ServiceDiscovery>) {
    let registry = rdubbo::registry::connect(&zk.registry_url("file.cache=false"))
        .await
        .unwrap();
    let discovery = registry.service_discovery().unwrap();
    (registry, discovery)
}

fn port_of(app: &Application, protocol: &str) -> u16 {
    app.server_addrs()
        .into_iter()
        .find(|(id, _)| id == protocol)
        .map(|(_, addr)| addr.port())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_registers_one_instance_with_every_protocol() {
    let zk = ZkServer::start();
    let app = start(config(&zk, "", &["dubbo", "jsonrpc"])).await;
    let (registry, discovery) = discovery(&zk).await;
    let dubbo = port_of(&app, "dubbo");
    let jsonrpc = port_of(&app, "jsonrpc");

    let instances = discovery.instances(APP).await.unwrap();
    assert_eq!(instances.len(), 1, "{instances:?}");
    let instance = &instances[0];
    assert_eq!(instance.port, dubbo);
    assert_eq!(
        instance.endpoints(),
        [("dubbo".to_owned(), dubbo), ("jsonrpc".to_owned(), jsonrpc)]
    );
    let params = instance.metadata_service_params();
    assert_eq!(params["protocol"], "dubbo");
    assert_eq!(params["port"], dubbo.to_string());
    assert_eq!(discovery.mapping(INTERFACE).await.unwrap(), [APP]);
    // Interface-level too (register_mode all by default).
    let consumer: Url = format!(
        "consumer://127.0.0.1/{INTERFACE}?interface={INTERFACE}&version=1.0.0&category=providers"
    )
    .parse()
    .unwrap();
    assert_eq!(registry.lookup(&consumer).await.unwrap().len(), 2);

    // The MetadataService on the dubbo port answers both services of the revision.
    let url: Url = format!("dubbo://127.0.0.1:{dubbo}/{METADATA_SERVICE}")
        .parse()
        .unwrap();
    let client = GenericClient::new(Arc::new(DubboClient::new(&url).unwrap()), METADATA_SERVICE)
        .group(Some(APP))
        .version(Some(METADATA_SERVICE_VERSION))
        .timeout(Duration::from_secs(5));
    let revision = instance.revision().unwrap().to_owned();
    let answer = client
        .call_typed(
            "getMetadataInfo",
            vec![Value::String(revision.clone())],
            vec!["java.lang.String".into()],
        )
        .await
        .unwrap();
    let (info, answered) = MetadataInfo::from_value(&answer).unwrap();
    assert_eq!(answered, revision);
    assert_eq!(info.revision(), revision);
    assert_eq!(
        info.services.keys().collect::<Vec<_>>(),
        [
            &format!("{INTERFACE}:1.0.0:dubbo"),
            &format!("{INTERFACE}:1.0.0:jsonrpc")
        ]
    );

    // offline takes the instance away, online brings it back, the shutdown removes it.
    app.offline("").await;
    assert!(discovery.instances(APP).await.unwrap().is_empty());
    app.online("").await;
    assert_eq!(discovery.instances(APP).await.unwrap().len(), 1);
    app.shutdown().await;
    assert!(discovery.instances(APP).await.unwrap().is_empty());
    registry.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_mode_interface_writes_no_instance() {
    let zk = ZkServer::start();
    let app = start(config(&zk, r#"register_mode = "interface""#, &["dubbo"])).await;
    let (registry, discovery) = discovery(&zk).await;
    assert!(discovery.instances(APP).await.unwrap().is_empty());
    assert!(discovery.mapping(INTERFACE).await.unwrap().is_empty());
    app.shutdown().await;
    registry.destroy().await;

    let text = "[application]\nregister_mode = \"both\"\n";
    let e = Config::from_str(text, Format::Toml, "bad.toml").unwrap_err();
    assert!(e.to_string().contains("register_mode"), "{e}");
}

/// `register_mode = "instance"`: a Java 3.3.1 consumer can only find it by application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_consumer_finds_an_instance_only_application() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let zk = ZkServer::start();
    let app = start(config(&zk, r#"register_mode = "instance""#, &["dubbo"])).await;
    let (registry, _) = discovery(&zk).await;
    let consumer: Url = format!(
        "consumer://127.0.0.1/{INTERFACE}?interface={INTERFACE}&version=1.0.0&category=providers"
    )
    .parse()
    .unwrap();
    assert!(registry.lookup(&consumer).await.unwrap().is_empty());
    let url = zk.registry_url("");
    let out = tokio::task::spawn_blocking(move || {
        let classes = java.compile(&interop_sources());
        java.run_consumer(
            &classes,
            &[
                "--registry",
                &url,
                "--version",
                "1.0.0",
                "--migration-step",
                "FORCE_APPLICATION",
                "--metadata-center",
                "check",
            ],
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    println!("{}", out.stdout);
    out.assert_ok("Java 3.3 FORCE_APPLICATION consumer -> rdubbo application");
    app.shutdown().await;
    registry.destroy().await;
}

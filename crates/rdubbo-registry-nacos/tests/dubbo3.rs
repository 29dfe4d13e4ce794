//! The Nacos client's Dubbo 3 parts against the embedded server: the dynamic configuration
//! (get, publish, remove, keys, watches over the long poll, across a server restart) and
//! the application-level discovery (instances with Dubbo's metadata, the mapping with
//! compare-and-set, watches of both).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::config_center::{ConfigChange, ConfigListener};
use rdubbo_core::discovery::{keys, InstancesListener, ServiceInstance};
use rdubbo_core::Registry;
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_registry_nacos::NacosRegistry;

async fn start_at(listen: SocketAddr, config: NamingServerConfig) -> NamingServer {
    NamingServer::start(NamingServerConfig { listen, ..config })
        .await
        .unwrap()
}

async fn registry(url: &str) -> NacosRegistry {
    NacosRegistry::connect(&url.parse().unwrap()).await.unwrap()
}

/// What a user's `curl` would get.
fn http_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// Waits until `f` holds (checked every 10 ms), at most `within`.
async fn until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Default)]
struct Changes(Mutex<Vec<Option<String>>>);

impl ConfigListener for Changes {
    fn on_change(&self, change: ConfigChange) {
        self.0.lock().unwrap().push(change.content);
    }
}

impl Changes {
    fn last(&self) -> Option<Option<String>> {
        self.0.lock().unwrap().last().cloned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watches_follow_publishes_and_deletes_and_survive_a_server_restart() {
    let dir = std::env::temp_dir().join(format!("rdubbo-nacos-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = NamingServerConfig {
        data_dir: Some(dir.clone()),
        ..Default::default()
    };
    let server = start_at("127.0.0.1:0".parse().unwrap(), config.clone()).await;
    let addr = server.local_addr();
    let url = format!("nacos://{addr}?retry.period=300");
    let watcher = registry(&url).await;
    let writer = registry(&url).await;
    let watched = watcher.dynamic_configuration().expect("a config center");
    let cfg = writer.dynamic_configuration().expect("a config center");

    let key = "demo-consumer.condition-router";
    let changes = Arc::new(Changes::default());
    watched.watch(key, "dubbo", changes.clone()).await.unwrap();
    // The current content at once: none.
    assert_eq!(changes.last(), Some(None));

    let v1 = "scope: application\nkey: demo-consumer\nconditions:\n- => host != 10.0.0.1\n";
    cfg.publish(key, "dubbo", v1).await.unwrap();
    until(Duration::from_secs(5), "v1 seen", || {
        changes.last() == Some(Some(v1.to_owned()))
    })
    .await;
    assert_eq!(cfg.get(key, "dubbo").await.unwrap().as_deref(), Some(v1));
    // As a user checks it.
    let (s, body) = http_get(
        addr,
        &format!("/nacos/v1/cs/configs?dataId={key}&group=dubbo"),
    );
    assert_eq!((s, body.as_str()), (200, v1));
    assert_eq!(cfg.keys("dubbo").await.unwrap(), vec![key.to_owned()]);

    cfg.remove(key, "dubbo").await.unwrap();
    until(Duration::from_secs(5), "deletion seen", || {
        changes.last() == Some(None) && changes.0.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(cfg.get(key, "dubbo").await.unwrap(), None);
    cfg.publish(key, "dubbo", v1).await.unwrap();
    until(Duration::from_secs(5), "v1 again", || {
        changes.last() == Some(Some(v1.to_owned()))
    })
    .await;

    // The server restarts on the same port and data dir: the watch goes on.
    server.stop().await;
    let server = start_at(addr, config).await;
    let v2 = "scope: application\nkey: demo-consumer\nconditions:\n- => host != 10.0.0.2\n";
    cfg.publish(key, "dubbo", v2).await.unwrap();
    until(Duration::from_secs(10), "v2 seen after the restart", || {
        changes.last() == Some(Some(v2.to_owned()))
    })
    .await;
    let seen = changes.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            None,
            Some(v1.to_owned()),
            None,
            Some(v1.to_owned()),
            Some(v2.to_owned())
        ],
        "each change once, in order"
    );

    // Unwatched: no more calls.
    let l: Arc<dyn ConfigListener> = changes.clone();
    watched.unwatch(key, "dubbo", &l).await.unwrap();
    cfg.publish(key, "dubbo", "x: 1\n").await.unwrap();
    let probe = Arc::new(Changes::default());
    watched.watch(key, "dubbo", probe.clone()).await.unwrap();
    assert_eq!(probe.last(), Some(Some("x: 1\n".to_owned())));
    assert_eq!(changes.0.lock().unwrap().len(), 5);

    watcher.destroy().await;
    writer.destroy().await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Default)]
struct Instances(Mutex<Vec<Vec<ServiceInstance>>>);

impl InstancesListener for Instances {
    fn on_instances(&self, _app: &str, instances: Vec<ServiceInstance>) {
        self.0.lock().unwrap().push(instances);
    }
}

impl Instances {
    fn last_ids(&self) -> Option<Vec<String>> {
        self.0
            .lock()
            .unwrap()
            .last()
            .map(|l| l.iter().map(ServiceInstance::id).collect())
    }
}

fn instance(app: &str, port: u16) -> ServiceInstance {
    let mut i = ServiceInstance::new(app, "127.0.0.1", port);
    i.metadata = BTreeMap::from([
        (
            keys::REVISION.to_owned(),
            "d140584873171d3429408831c0a8231b".to_owned(),
        ),
        (keys::STORAGE_TYPE.to_owned(), "local".to_owned()),
        (
            keys::ENDPOINTS.to_owned(),
            format!(r#"[{{"port":{port},"protocol":"dubbo"}}]"#),
        ),
        (keys::META_VERSION.to_owned(), "1.0.0".to_owned()),
    ]);
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_instances_and_mappings_as_java_writes_them_on_nacos() {
    let server = start_at(
        "127.0.0.1:0".parse().unwrap(),
        NamingServerConfig::default(),
    )
    .await;
    let addr = server.local_addr();
    let url = format!("nacos://{addr}");
    let provider1 = registry(&url).await;
    let provider2 = registry(&url).await;
    let consumer = registry(&url).await;
    let d1 = provider1.service_discovery().expect("a service discovery");
    let d2 = provider2.service_discovery().expect("a service discovery");
    let dc = consumer.service_discovery().expect("a service discovery");

    let iface = "org.apache.dubbo.demo.DemoService";
    let mapped = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let m = mapped.clone();
    dc.watch_mapping(iface, Arc::new(move |apps| m.lock().unwrap().push(apps)))
        .await
        .unwrap();
    assert_eq!(mapped.lock().unwrap().last(), Some(&Vec::new()));
    let seen = Arc::new(Instances::default());
    dc.watch_instances("demo-provider", seen.clone())
        .await
        .unwrap();
    until(Duration::from_secs(5), "first instance list", || {
        seen.last_ids() == Some(vec![])
    })
    .await;

    // Two applications map the same interface at once: compare-and-set keeps both.
    let (a, b) = tokio::join!(d1.map(iface, "demo-provider"), d2.map(iface, "other-app"));
    a.unwrap();
    b.unwrap();
    d1.map(iface, "demo-provider").await.unwrap();
    assert_eq!(
        dc.mapping(iface).await.unwrap(),
        vec!["demo-provider".to_owned(), "other-app".to_owned()]
    );
    let (s, body) = http_get(
        addr,
        &format!("/nacos/v1/cs/configs?dataId={iface}&group=mapping"),
    );
    assert_eq!(s, 200);
    let mut apps: Vec<&str> = body.split(',').collect();
    apps.sort();
    assert_eq!(apps, ["demo-provider", "other-app"], "{body}");
    until(Duration::from_secs(5), "mapping watch", || {
        mapped.lock().unwrap().last().map(Vec::len) == Some(2)
    })
    .await;

    // The instance: service `demo-provider` in DEFAULT_GROUP with Dubbo's metadata.
    let inst = instance("demo-provider", 20880);
    d1.register(&inst).await.unwrap();
    let (s, body) = http_get(
        addr,
        "/nacos/v1/ns/instance/list?serviceName=DEFAULT_GROUP%40%40demo-provider",
    );
    assert_eq!(s, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let host = &list["hosts"][0];
    assert_eq!(host["ip"], "127.0.0.1");
    assert_eq!(host["port"], 20880);
    assert_eq!(host["ephemeral"], true);
    assert_eq!(
        host["metadata"][keys::REVISION],
        "d140584873171d3429408831c0a8231b"
    );
    assert_eq!(
        host["metadata"][keys::ENDPOINTS],
        r#"[{"port":20880,"protocol":"dubbo"}]"#
    );
    assert_eq!(
        dc.instances("demo-provider").await.unwrap(),
        vec![inst.clone()]
    );
    until(Duration::from_secs(5), "instance seen by the watch", || {
        seen.last_ids() == Some(vec!["127.0.0.1:20880".to_owned()])
    })
    .await;
    assert_eq!(seen.0.lock().unwrap().last().unwrap()[0], inst);

    // A new revision replaces the metadata; a second instance; then both withdraw.
    let mut newer = inst.clone();
    newer
        .metadata
        .insert(keys::REVISION.to_owned(), "0123456789abcdef".to_owned());
    d1.register(&newer).await.unwrap();
    d2.register(&instance("demo-provider", 20881))
        .await
        .unwrap();
    until(Duration::from_secs(5), "two instances", || {
        seen.last_ids()
            == Some(vec![
                "127.0.0.1:20880".to_owned(),
                "127.0.0.1:20881".to_owned(),
            ])
    })
    .await;
    let now = dc.instances("demo-provider").await.unwrap();
    assert_eq!(now[0].revision(), Some("0123456789abcdef"));
    d1.unregister(&newer).await.unwrap();
    provider2.destroy().await;
    until(Duration::from_secs(5), "no instance", || {
        seen.last_ids() == Some(vec![])
    })
    .await;

    provider1.destroy().await;
    consumer.destroy().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_and_mappings_come_back_after_a_restart_that_lost_them() {
    // In memory: the restarted server knows nothing.
    let server = start_at(
        "127.0.0.1:0".parse().unwrap(),
        NamingServerConfig::default(),
    )
    .await;
    let addr = server.local_addr();
    let provider = registry(&format!("nacos://{addr}?retry.period=200")).await;
    let d = provider.service_discovery().unwrap();
    let iface = "org.apache.dubbo.demo.DemoService";
    let inst = instance("demo-provider", 20880);
    d.register(&inst).await.unwrap();
    d.map(iface, "demo-provider").await.unwrap();

    server.stop().await;
    // The client notices the outage at its next beat.
    until(Duration::from_secs(15), "the outage noticed", || {
        !provider.is_available()
    })
    .await;
    let server = start_at(addr, NamingServerConfig::default()).await;
    let reader = registry(&format!("nacos://{addr}")).await;
    let dr = reader.service_discovery().unwrap();
    let t = Instant::now();
    loop {
        let instances = dr.instances("demo-provider").await.unwrap();
        let apps = dr.mapping(iface).await.unwrap();
        if instances == vec![inst.clone()] && apps == vec!["demo-provider".to_owned()] {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "not back: {instances:?} {apps:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    provider.destroy().await;
    assert!(dr.instances("demo-provider").await.unwrap().is_empty());
    reader.destroy().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_client_logs_in_when_the_server_asks_for_it() {
    let server = start_at(
        "127.0.0.1:0".parse().unwrap(),
        NamingServerConfig {
            auth: Some(("nacos".into(), "secret".into())),
            ..Default::default()
        },
    )
    .await;
    let addr = server.local_addr();
    let good = registry(&format!("nacos://nacos:secret@{addr}")).await;
    let cfg = good.dynamic_configuration().unwrap();
    let changes = Arc::new(Changes::default());
    cfg.watch(
        "app.migration",
        "DUBBO_SERVICEDISCOVERY_MIGRATION",
        changes.clone(),
    )
    .await
    .unwrap();
    cfg.publish(
        "app.migration",
        "DUBBO_SERVICEDISCOVERY_MIGRATION",
        "step: FORCE_APPLICATION\n",
    )
    .await
    .unwrap();
    until(Duration::from_secs(5), "the watch over a login", || {
        changes.last() == Some(Some("step: FORCE_APPLICATION\n".to_owned()))
    })
    .await;
    // Without credentials: refused, and said so.
    let bad = registry(&format!("nacos://{addr}")).await;
    let e = bad
        .dynamic_configuration()
        .unwrap()
        .get("app.migration", "DUBBO_SERVICEDISCOVERY_MIGRATION")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    good.destroy().await;
    bad.destroy().await;
    server.stop().await;
}

/// `unwatch_mapping` takes one listener away; the mapping config leaves the long poll
/// with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_unwatched_leaves_the_long_poll() {
    let server = start_at(
        "127.0.0.1:0".parse().unwrap(),
        NamingServerConfig::default(),
    )
    .await;
    let url = format!("nacos://{}", server.local_addr());
    let provider = registry(&url).await;
    let consumer = registry(&url).await;
    let dp = provider.service_discovery().unwrap();
    let dc = consumer.service_discovery().unwrap();
    let iface = "demo.Api";
    type Told = Arc<Mutex<Vec<Vec<String>>>>;
    let listener = |told: &Told| -> Arc<dyn Fn(Vec<String>) + Send + Sync> {
        let told = told.clone();
        Arc::new(move |apps| told.lock().unwrap().push(apps))
    };
    let (first, second): (Told, Told) = Default::default();
    let (l1, l2) = (listener(&first), listener(&second));
    dc.watch_mapping(iface, l1.clone()).await.unwrap();
    dc.watch_mapping(iface, l2.clone()).await.unwrap();
    let mapping_watched = || {
        consumer
            .config()
            .watched()
            .contains(&("mapping".to_owned(), iface.to_owned()))
    };
    assert!(mapping_watched());

    dc.unwatch_mapping(iface, &l1).await.unwrap();
    assert!(mapping_watched());
    let told = first.lock().unwrap().len();
    dp.map(iface, "shop").await.unwrap();
    until(Duration::from_secs(10), "second told", || {
        second.lock().unwrap().last() == Some(&vec!["shop".to_owned()])
    })
    .await;
    assert_eq!(first.lock().unwrap().len(), told, "told after unwatch");

    dc.unwatch_mapping(iface, &l2).await.unwrap();
    assert!(!mapping_watched());
    dc.unwatch_mapping(iface, &l2).await.unwrap();
    provider.destroy().await;
    consumer.destroy().await;
}

//! Consumer-side watches of the ZooKeeper registry against a real ZooKeeper server:
//! application instances (`/services/<app>`), the interface → application mapping
//! (`/dubbo/mapping/<interface>`) and the config center (`/dubbo/config/<group>/<key>`),
//! written by rdubbo or by `zkCli.sh` as a user would, across a session expiry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::config_center::{ConfigChange, ConfigListener, MIGRATION_GROUP};
use rdubbo_core::discovery::{keys, InstancesListener, ServiceInstance};
use rdubbo_core::{Registry, Url};
use rdubbo_registry_zookeeper::ZookeeperRegistry;
use rdubbo_testkit::ZkServer;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn registry(zk: &ZkServer) -> ZookeeperRegistry {
    registry_with(zk, "session=2000&retry.period=500&file.cache=false").await
}

async fn registry_with(zk: &ZkServer, params: &str) -> ZookeeperRegistry {
    let url: Url = zk.registry_url(params).parse().unwrap();
    ZookeeperRegistry::connect(&url).await.unwrap()
}

/// Everything a listener was told, in order.
struct Seen<T>(Mutex<Vec<T>>);

impl<T: Clone + std::fmt::Debug> Seen<T> {
    fn new() -> Arc<Seen<T>> {
        Arc::new(Seen(Mutex::new(Vec::new())))
    }

    fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, v: T) {
        self.0.lock().unwrap().push(v);
    }

    /// Waits until the last value told satisfies `pred`.
    async fn wait(&self, what: &str, pred: impl Fn(&T) -> bool) -> T {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(last) = self.0.lock().unwrap().last() {
                if pred(last) {
                    return last.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen; told {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn instance(app: &str, port: u16, revision: &str) -> ServiceInstance {
    let mut i = ServiceInstance::new(app, "127.0.0.1", port);
    i.metadata.insert(keys::REVISION.into(), revision.into());
    i
}

fn ids(list: &[ServiceInstance]) -> Vec<String> {
    list.iter()
        .map(|i| format!("{}@{}", i.id(), i.revision().unwrap_or("-")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_and_mapping_are_followed_across_a_session_expiry() {
    init_tracing();
    let mut zk = ZkServer::start();
    let provider = registry(&zk).await;
    let consumer = registry(&zk).await;
    let pd = provider.service_discovery().unwrap();
    let cd = consumer.service_discovery().unwrap();

    // Watching an application nobody registered yet: told "none" at once.
    let seen = Seen::<Vec<String>>::new();
    let s = seen.clone();
    let listener: Arc<dyn InstancesListener> =
        Arc::new(move |app: &str, list: Vec<ServiceInstance>| {
            assert_eq!(app, "shop");
            s.push(ids(&list));
        });
    cd.watch_instances("shop", listener.clone()).await.unwrap();
    assert_eq!(seen.all(), vec![Vec::<String>::new()]);

    pd.register(&instance("shop", 20880, "r1")).await.unwrap();
    seen.wait("first instance", |l| l == &["127.0.0.1:20880@r1"])
        .await;
    pd.register(&instance("shop", 20881, "r1")).await.unwrap();
    seen.wait("second instance", |l| l.len() == 2).await;
    // A new revision is an update of the node's data.
    pd.register(&instance("shop", 20880, "r2")).await.unwrap();
    seen.wait("new revision", |l| {
        l == &["127.0.0.1:20880@r2", "127.0.0.1:20881@r1"]
    })
    .await;
    pd.unregister(&instance("shop", 20881, "r1")).await.unwrap();
    seen.wait("one gone", |l| l == &["127.0.0.1:20880@r2"])
        .await;

    // A node written by hand that is no instance is skipped, not fatal.
    zk.cli(&["create", "/services/shop/junk", "not-json"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.all().last().unwrap(),
        &vec!["127.0.0.1:20880@r2".to_owned()]
    );

    // A second listener of the same application is told the current list at once.
    let second = Seen::<Vec<String>>::new();
    let s2 = second.clone();
    let l2: Arc<dyn InstancesListener> = Arc::new(move |_: &str, list: Vec<ServiceInstance>| {
        s2.push(ids(&list));
    });
    cd.watch_instances("shop", l2.clone()).await.unwrap();
    assert_eq!(second.all(), vec![vec!["127.0.0.1:20880@r2".to_owned()]]);
    cd.unwatch_instances("shop", &l2).await.unwrap();

    // The mapping, appended by providers, followed by a consumer.
    let mapping = Seen::<Vec<String>>::new();
    let m = mapping.clone();
    cd.watch_mapping("demo.Api", Arc::new(move |apps| m.push(apps)))
        .await
        .unwrap();
    assert_eq!(mapping.all(), vec![Vec::<String>::new()]);
    pd.map("demo.Api", "shop").await.unwrap();
    mapping.wait("mapped", |a| a == &["shop"]).await;
    zk.cli(&["set", "/dubbo/mapping/demo.Api", "shop,billing"]);
    mapping.wait("edited", |a| a == &["billing", "shop"]).await;

    // ZooKeeper forgets every session: the provider's instance comes back with its new
    // session, and the consumer's watches work again.
    zk.stop();
    while consumer.is_available() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    zk.wipe_data();
    zk.restart();
    seen.wait("instance back after the expiry", |l| {
        l == &["127.0.0.1:20880@r2"]
    })
    .await;
    mapping
        .wait("mapping re-written by the provider", |a| a == &["shop"])
        .await;
    pd.register(&instance("shop", 20882, "r2")).await.unwrap();
    seen.wait("watch re-armed", |l| l.len() == 2).await;
    // The same list is never told twice in a row.
    let all = seen.all();
    assert!(all.windows(2).all(|w| w[0] != w[1]), "{all:?}");

    cd.unwatch_instances("shop", &listener).await.unwrap();
    let told = seen.all().len();
    pd.register(&instance("shop", 20883, "r2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.all().len(), told, "told after unwatch");
    provider.destroy().await;
    consumer.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_center_documents_written_with_zkcli_are_seen_live() {
    init_tracing();
    let mut zk = ZkServer::start();
    let registry = registry(&zk).await;
    let config = registry.dynamic_configuration().unwrap();
    let key = "demo-consumer.migration";

    assert_eq!(config.get(key, MIGRATION_GROUP).await.unwrap(), None);
    let seen = Seen::<Option<String>>::new();
    let s = seen.clone();
    let listener: Arc<dyn ConfigListener> = Arc::new(move |c: ConfigChange| {
        assert_eq!(c.key, "demo-consumer.migration");
        assert_eq!(c.group, MIGRATION_GROUP);
        s.push(c.content);
    });
    config
        .watch(key, MIGRATION_GROUP, listener.clone())
        .await
        .unwrap();
    assert_eq!(seen.all(), vec![None]);

    // As a user would: zkCli.sh creates the parents, then the rule.
    let path = format!("/dubbo/config/{MIGRATION_GROUP}/{key}");
    zk.cli(&["create", "/dubbo"]);
    zk.cli(&["create", "/dubbo/config"]);
    zk.cli(&["create", &format!("/dubbo/config/{MIGRATION_GROUP}")]);
    zk.cli(&["create", &path, "step: FORCE_APPLICATION"]);
    seen.wait("created", |c| {
        c.as_deref() == Some("step: FORCE_APPLICATION")
    })
    .await;
    zk.cli(&["set", &path, "step: FORCE_INTERFACE"]);
    seen.wait("changed", |c| c.as_deref() == Some("step: FORCE_INTERFACE"))
        .await;
    assert_eq!(
        config.get(key, MIGRATION_GROUP).await.unwrap().as_deref(),
        Some("step: FORCE_INTERFACE")
    );
    zk.cli(&["delete", &path]);
    seen.wait("deleted", Option::is_none).await;

    // Through the API; zkCli reads what it wrote.
    config
        .publish(
            "demo-provider.configurators",
            "dubbo",
            "configVersion: v3.0\n",
        )
        .await
        .unwrap();
    config
        .publish("demo-provider.tag-router", "dubbo", "force: true\n")
        .await
        .unwrap();
    let got = zk.cli(&["get", "/dubbo/config/dubbo/demo-provider.configurators"]);
    assert!(got.contains("configVersion: v3.0"), "{got}");
    assert_eq!(
        config.keys("dubbo").await.unwrap(),
        ["demo-provider.configurators", "demo-provider.tag-router"]
    );
    config
        .remove("demo-provider.tag-router", "dubbo")
        .await
        .unwrap();
    config
        .remove("demo-provider.tag-router", "dubbo")
        .await
        .unwrap();
    assert_eq!(
        config.keys("dubbo").await.unwrap(),
        ["demo-provider.configurators"]
    );
    assert!(config.keys("nothing-here").await.unwrap().is_empty());

    // The watch survives ZooKeeper forgetting the session (and the data).
    zk.stop();
    while registry.is_available() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    zk.wipe_data();
    zk.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !registry.is_available() {
        assert!(Instant::now() < deadline, "no new session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    config
        .publish(key, MIGRATION_GROUP, "step: APPLICATION_FIRST")
        .await
        .unwrap();
    seen.wait("after the expiry", |c| {
        c.as_deref() == Some("step: APPLICATION_FIRST")
    })
    .await;
    config
        .unwatch(key, MIGRATION_GROUP, &listener)
        .await
        .unwrap();
    let told = seen.all().len();
    config.publish(key, MIGRATION_GROUP, "x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.all().len(), told);
    registry.destroy().await;
}

/// `(user + system CPU, resident memory)` of this process, from `/proc/self`.
fn usage() -> (Duration, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|t| t.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|t| t.parse().ok()).unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (Duration::from_millis(ticks * 10), rss_kib * 1024)
}

/// One consumer following 1,000 applications × 10 instances (10 provider sessions, each
/// registering one instance of every application): time and CPU until every list is
/// complete, memory, then a storm (one session unregisters its 1,000 instances).
///
/// `cargo test --release -p rdubbo-registry-zookeeper --test watches -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn one_consumer_follows_1000_applications_of_10_instances() {
    const APPS: usize = 1000;
    const PER_APP: usize = 10;
    // The default session timeout (60 s): the ZooKeeper client wakes up every
    // min(session / 20, connect timeout / 8) to check its connection and pings at three
    // of those, so the 2 s sessions of the other tests would make the idle measure about
    // keepalives (100 ms ticks × 11 sessions) rather than about the watches.
    let session = std::env::var("BENCH_SESSION_MS").unwrap_or_else(|_| "60000".into());
    let params = format!("session={session}&retry.period=500&file.cache=false");
    let zk = ZkServer::start();
    let mut providers = Vec::new();
    for _ in 0..PER_APP {
        providers.push(registry_with(&zk, &params).await);
    }
    let t0 = Instant::now();
    for (n, p) in providers.iter().enumerate() {
        let d = p.service_discovery().unwrap();
        for a in 0..APPS {
            d.register(&instance(&format!("app{a}"), 20000 + n as u16, "r1"))
                .await
                .unwrap();
        }
    }
    eprintln!(
        "{} instances registered in {:?}",
        APPS * PER_APP,
        t0.elapsed()
    );
    let consumer = registry_with(&zk, &params).await;
    let cd = consumer.service_discovery().unwrap();
    let sizes: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener: Arc<dyn InstancesListener> = {
        let (sizes, told) = (sizes.clone(), told.clone());
        Arc::new(move |app: &str, list: Vec<ServiceInstance>| {
            told.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sizes.lock().unwrap().insert(app.to_owned(), list.len());
        })
    };
    let all = |n: usize| {
        let sizes = sizes.lock().unwrap();
        sizes.len() == APPS && sizes.values().all(|s| *s == n)
    };
    let (cpu0, rss0) = usage();
    let t0 = Instant::now();
    for a in 0..APPS {
        cd.watch_instances(&format!("app{a}"), listener.clone())
            .await
            .unwrap();
    }
    while !all(PER_APP) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let watched = t0.elapsed();
    let (cpu1, rss1) = usage();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu2, _) = usage();
    let t0 = Instant::now();
    let leaving = providers.pop().unwrap();
    leaving.destroy().await;
    let unregistered = t0.elapsed();
    while !all(PER_APP - 1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let storm = t0.elapsed();
    let (cpu3, rss3) = usage();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("| measure | value |\n|---|---:|");
    println!(
        "| watch all + every list complete | {} ms |",
        watched.as_millis()
    );
    println!(
        "| CPU for that (user+sys) | {} ms |",
        (cpu1 - cpu0).as_millis()
    );
    println!(
        "| resident memory before watching → with all lists | {:.1} → {:.1} MiB |",
        mib(rss0),
        mib(rss1)
    );
    println!(
        "| CPU while idle, 5 s (11 sessions of {session} ms) | {} ms |",
        (cpu2 - cpu1).as_millis()
    );
    println!(
        "| storm: one session leaves every application ({} ms to unregister) → all lists updated | {} ms |",
        unregistered.as_millis(),
        storm.as_millis()
    );
    println!("| CPU for the storm | {} ms |", (cpu3 - cpu2).as_millis());
    println!("| resident memory after the storm | {:.1} MiB |", mib(rss3));
    println!(
        "| lists delivered in all | {} |",
        told.load(std::sync::atomic::Ordering::Relaxed)
    );
    for p in providers {
        p.destroy().await;
    }
    consumer.destroy().await;
}

/// `unwatch_mapping` takes one listener away; the mapping stops being followed (its task
/// and ZooKeeper watch) with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_unwatched_is_no_longer_followed() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = registry(&zk).await;
    let discovery = registry.service_discovery().unwrap();
    let zk_discovery = registry.discovery().clone();
    let listener = |seen: &Arc<Seen<Vec<String>>>| -> Arc<dyn Fn(Vec<String>) + Send + Sync> {
        let seen = seen.clone();
        Arc::new(move |apps| seen.push(apps))
    };
    let (first, second) = (Seen::new(), Seen::new());
    let (l1, l2) = (listener(&first), listener(&second));
    discovery
        .watch_mapping("demo.Api", l1.clone())
        .await
        .unwrap();
    discovery
        .watch_mapping("demo.Api", l2.clone())
        .await
        .unwrap();
    assert_eq!(zk_discovery.watched_mappings(), ["demo.Api"]);
    discovery.map("demo.Api", "shop").await.unwrap();
    first.wait("first told", |a| a == &["shop"]).await;
    second.wait("second told", |a| a == &["shop"]).await;

    // One listener gone: the other is still told, it is not.
    discovery.unwatch_mapping("demo.Api", &l1).await.unwrap();
    assert_eq!(zk_discovery.watched_mappings(), ["demo.Api"]);
    let told = first.all().len();
    discovery.map("demo.Api", "billing").await.unwrap();
    second
        .wait("second told after the first left", |a| {
            a == &["billing", "shop"]
        })
        .await;
    assert_eq!(
        first.all().len(),
        told,
        "told after unwatch: {:?}",
        first.all()
    );

    // The last one gone: nothing follows the mapping any more.
    discovery.unwatch_mapping("demo.Api", &l2).await.unwrap();
    assert!(zk_discovery.watched_mappings().is_empty());
    // Unwatching again, or a listener never added, is harmless.
    discovery.unwatch_mapping("demo.Api", &l2).await.unwrap();
    discovery.unwatch_mapping("other.Api", &l1).await.unwrap();
    // A new listener follows it again from its current value.
    let third = Seen::new();
    discovery
        .watch_mapping("demo.Api", listener(&third))
        .await
        .unwrap();
    assert_eq!(
        third.all(),
        vec![vec!["billing".to_owned(), "shop".to_owned()]]
    );
    let told = second.all().len();
    discovery.map("demo.Api", "audit").await.unwrap();
    third
        .wait("third told", |a| a == &["audit", "billing", "shop"])
        .await;
    assert_eq!(second.all().len(), told);
    registry.destroy().await;
}

//! The ZooKeeper registry against a real ZooKeeper server (Debian package `zookeeper`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::{NotifyListener, Registry, Url};
use rdubbo_registry_zookeeper::ZookeeperRegistry;
use rdubbo_testkit::ZkServer;

/// Collects notifications per category.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Vec<Url>>>,
}

impl Recorder {
    fn latest(&self, category: &str) -> Option<Vec<Url>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .rev()
            .find(|urls| urls.first().map(|u| u.category()) == Some(category))
            .cloned()
    }

    /// Waits until the latest `category` list satisfies `pred`.
    async fn wait(
        &self,
        category: &str,
        timeout: Duration,
        pred: impl Fn(&[Url]) -> bool,
    ) -> Vec<Url> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(latest) = self.latest(category) {
                if pred(&latest) {
                    return latest;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching {category} notification; latest: {:?}",
                    self.latest(category)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl NotifyListener for Recorder {
    fn notify(&self, urls: Vec<Url>) {
        self.seen.lock().unwrap().push(urls);
    }
}

fn providers(urls: &[Url]) -> Vec<String> {
    urls.iter()
        .filter(|u| u.protocol() != "empty")
        .map(|u| u.address())
        .collect()
}

fn provider_url(port: u16) -> Url {
    format!("jsonrpc://127.0.0.1:{port}/demo.Api?anyhost=true&application=test&interface=demo.Api&methods=echo&side=provider&version=1.0.0")
        .parse()
        .unwrap()
}

fn consumer_url() -> Url {
    "consumer://127.0.0.1/demo.Api?application=test&category=providers,configurators,routers&interface=demo.Api&side=consumer&version=1.0.0"
        .parse()
        .unwrap()
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn registry(zk: &ZkServer, extra: &str) -> ZookeeperRegistry {
    let url: Url = zk
        .registry_url(&format!(
            "session=2000&retry.period=500&file.cache=false{extra}"
        ))
        .parse()
        .unwrap();
    ZookeeperRegistry::connect(&url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_subscribe_and_java_layout() {
    init_tracing();
    let zk = ZkServer::start();
    let provider_side = registry(&zk, "").await;
    let consumer_side = registry(&zk, "").await;
    let rec = Arc::new(Recorder::default());
    consumer_side
        .subscribe(&consumer_url(), rec.clone())
        .await
        .unwrap();
    // Every empty category is announced with an empty:// URL.
    for category in ["providers", "configurators", "routers"] {
        let urls = rec
            .wait(category, Duration::from_secs(5), |u| !u.is_empty())
            .await;
        assert_eq!(urls.len(), 1);
        assert_eq!(urls[0].protocol(), "empty");
    }
    // A registration reaches the subscriber through the watch, no polling.
    let p1 = provider_url(30001);
    provider_side.register(&p1).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        providers(u) == ["127.0.0.1:30001"]
    })
    .await;
    let p2 = provider_url(30002);
    provider_side.register(&p2).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        providers(u).len() == 2
    })
    .await;
    // A provider of another version is not delivered.
    let other = provider_url(30003).with_param("version", "2.0.0");
    provider_side.register(&other).await.unwrap();
    // Consumers register in `consumers`.
    let consumer = consumer_url().with_param("category", "consumers");
    consumer_side.register(&consumer).await.unwrap();

    // The layout is Java Dubbo's, as the Debian zkCli.sh sees it.
    let ls = zk.cli(&["ls", "/dubbo/demo.Api"]);
    for folder in ["providers", "consumers", "configurators", "routers"] {
        assert!(ls.contains(folder), "{ls}");
    }
    let ls = zk.cli(&["ls", "/dubbo/demo.Api/providers"]);
    assert!(ls.contains(&p1.to_encoded()), "{ls}");
    assert!(
        ls.contains("jsonrpc%3A%2F%2F127.0.0.1%3A30002%2Fdemo.Api%3Fanyhost%3Dtrue%26"),
        "{ls}"
    );
    let stat = zk.cli(&[
        "stat",
        &format!("/dubbo/demo.Api/providers/{}", p1.to_encoded()),
    ]);
    assert!(
        !stat.contains("ephemeralOwner = 0x0\n"),
        "providers must be ephemeral: {stat}"
    );
    let ls = zk.cli(&["ls", "/dubbo/demo.Api/consumers"]);
    assert!(
        ls.contains("consumer%3A%2F%2F127.0.0.1%2Fdemo.Api%3F"),
        "{ls}"
    );

    // Lookup gives the same as the subscription.
    let found = consumer_side.lookup(&consumer_url()).await.unwrap();
    assert_eq!(providers(&found).len(), 2);

    // Unregister removes the node and the subscriber hears about it.
    provider_side.unregister(&p1).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        providers(u) == ["127.0.0.1:30002"]
    })
    .await;
    // Destroying the provider's registry removes its ephemeral nodes at once.
    provider_side.destroy().await;
    rec.wait("providers", Duration::from_secs(5), |u| {
        u.len() == 1 && u[0].protocol() == "empty"
    })
    .await;
    consumer_side.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_java_nodes_are_discovered() {
    init_tracing();
    let zk = ZkServer::start();
    // The exact node name Java Dubbo 2.5.3 wrote (SCENARIOS.md), moved to loopback, created
    // by the Debian zkCli.sh.
    let node = "jsonrpc%3A%2F%2F127.0.0.1%3A30880%2Fim.youni.iccs.status.api.StatusUpdateService2%3Fanyhost%3Dtrue%26application%3Dstatus-dubbo-p%26default.threads%3D100%26dubbo%3D2.5.3%26interface%3Dim.youni.iccs.status.api.StatusUpdateService%26methods%3Dlogout%2CupdateLocale%2Cheartbeat%2CclearStatus%2Clogin0%2Clogin%26pid%3D10324%26revision%3D0.0.5%26server%3Djetty%26side%3Dprovider%26timestamp%3D1470730434200";
    let dir = "/dubbo/im.youni.iccs.status.api.StatusUpdateService/providers";
    zk.cli(&["create", "/dubbo"]);
    zk.cli(&[
        "create",
        "/dubbo/im.youni.iccs.status.api.StatusUpdateService",
    ]);
    zk.cli(&["create", dir]);
    let reg = registry(&zk, "").await;
    let rec = Arc::new(Recorder::default());
    let consumer: Url = "consumer://127.0.0.1/im.youni.iccs.status.api.StatusUpdateService?interface=im.youni.iccs.status.api.StatusUpdateService&category=providers".parse().unwrap();
    reg.subscribe(&consumer, rec.clone()).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        u[0].protocol() == "empty"
    })
    .await;
    zk.cli(&["create", &format!("{dir}/{node}")]);
    let urls = rec
        .wait("providers", Duration::from_secs(5), |u| {
            u[0].protocol() == "jsonrpc"
        })
        .await;
    let url = &urls[0];
    assert_eq!(url.address(), "127.0.0.1:30880");
    assert_eq!(url.path(), "im.youni.iccs.status.api.StatusUpdateService2");
    assert_eq!(
        url.interface(),
        "im.youni.iccs.status.api.StatusUpdateService"
    );
    assert_eq!(
        url.param("methods"),
        Some("logout,updateLocale,heartbeat,clearStatus,login0,login")
    );
    assert_eq!(url.to_encoded(), node);
    reg.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_wildcard_subscription_sees_every_service() {
    init_tracing();
    let zk = ZkServer::start();
    let reg = registry(&zk, "").await;
    let a: Url = "jsonrpc://127.0.0.1:1/a.A?interface=a.A&side=provider"
        .parse()
        .unwrap();
    reg.register(&a).await.unwrap();
    let rec = Arc::new(Recorder::default());
    let any: Url = "consumer://127.0.0.1/*?interface=*&category=providers&group=*&version=*"
        .parse()
        .unwrap();
    reg.subscribe(&any, rec.clone()).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        u.iter().any(|u| u.interface() == "a.A")
    })
    .await;
    let b: Url = "jsonrpc://127.0.0.1:2/b.B?interface=b.B&side=provider"
        .parse()
        .unwrap();
    reg.register(&b).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        u.iter().any(|u| u.interface() == "b.B")
    })
    .await;
    reg.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_recreates_nodes_and_rearms_watches() {
    init_tracing();
    let mut zk = ZkServer::start();
    let provider_side = registry(&zk, "").await;
    let consumer_side = registry(&zk, "").await;
    let rec = Arc::new(Recorder::default());
    consumer_side
        .subscribe(&consumer_url(), rec.clone())
        .await
        .unwrap();
    let p1 = provider_url(30001);
    provider_side.register(&p1).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        providers(u).len() == 1
    })
    .await;
    let old_session = provider_side.session_id().unwrap();

    // ZooKeeper comes back with no memory of any session: both clients see their session
    // expire, open new ones, re-create their nodes and re-arm their watches.
    zk.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while provider_side.is_available() {
        assert!(
            Instant::now() < deadline,
            "the registry still claims to be connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    zk.wipe_data();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // While ZooKeeper is down the subscriber keeps its list.
    assert_eq!(
        providers(&rec.latest("providers").unwrap()),
        ["127.0.0.1:30001"]
    );
    zk.restart();
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ls = zk.cli(&["ls", "/dubbo/demo.Api/providers"]);
        if ls.contains(&p1.to_encoded()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "provider node not re-created: {ls}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("node re-created {:?} after the restart", started.elapsed());
    assert_ne!(provider_side.session_id(), Some(old_session));
    // The consumer's watch works again: a new provider is seen.
    let p2 = provider_url(30002);
    provider_side.register(&p2).await.unwrap();
    rec.wait("providers", Duration::from_secs(10), |u| {
        providers(u).len() == 2
    })
    .await;
    provider_side.destroy().await;
    consumer_side.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_while_zookeeper_is_down_is_retried_until_it_is_back() {
    init_tracing();
    let mut zk = ZkServer::start();
    let reg = registry(&zk, "").await;
    zk.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reg.is_available() {
        assert!(Instant::now() < deadline, "still claims to be connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Never a panic, never a hang: a clear "unavailable" error, and a retry later.
    let p = provider_url(30009);
    let err = tokio::time::timeout(Duration::from_secs(5), reg.register(&p))
        .await
        .expect("register must not hang while ZooKeeper is down")
        .unwrap_err();
    assert!(
        matches!(err, rdubbo_core::RegistryError::Unavailable(_)),
        "{err}"
    );
    assert_eq!(reg.pending_registrations(), vec![p.clone()]);
    zk.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if zk
            .cli(&["ls", "/dubbo/demo.Api/providers"])
            .contains(&p.to_encoded())
        {
            break;
        }
        assert!(Instant::now() < deadline, "registration was not retried");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reg.pending_registrations().is_empty());
    reg.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_credentials_protect_the_nodes() {
    init_tracing();
    let zk = ZkServer::start();
    let url: Url = format!(
        "zookeeper://alice:secret@{}?session=2000&file.cache=false&group=secured",
        zk.address()
    )
    .parse()
    .unwrap();
    let reg = ZookeeperRegistry::connect(&url).await.unwrap();
    let p = provider_url(30010);
    reg.register(&p).await.unwrap();
    let acl = zk.cli(&[
        "getAcl",
        &format!("/secured/demo.Api/providers/{}", p.to_encoded()),
    ]);
    assert!(!acl.contains("'world,'anyone"), "{acl}");
    // The same credentials see it; a client without them is refused.
    let rec = Arc::new(Recorder::default());
    let other = ZookeeperRegistry::connect(&url).await.unwrap();
    other.subscribe(&consumer_url(), rec.clone()).await.unwrap();
    rec.wait("providers", Duration::from_secs(5), |u| {
        providers(u) == ["127.0.0.1:30010"]
    })
    .await;
    let ls = zk.cli(&["ls", "/secured/demo.Api/providers"]);
    assert!(
        ls.contains("Insufficient permission") || ls.contains("NoAuth"),
        "{ls}"
    );
    other.destroy().await;
    reg.destroy().await;
}

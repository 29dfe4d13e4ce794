//! The Nacos registry client against the embedded naming server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::{NotifyListener, Registry, Url};
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_registry_nacos::NacosRegistry;

const IFACE: &str = "com.example.GreetingService";

async fn start_at(listen: SocketAddr, config: NamingServerConfig) -> NamingServer {
    NamingServer::start(NamingServerConfig { listen, ..config })
        .await
        .unwrap()
}

async fn start() -> NamingServer {
    start_at(
        "127.0.0.1:0".parse().unwrap(),
        NamingServerConfig::default(),
    )
    .await
}

fn provider(port: u16, extra: &str) -> Url {
    format!("jsonrpc://127.0.0.1:{port}/{IFACE}?anyhost=false&application=app&interface={IFACE}&methods=greet&side=provider&version=1.0.0{extra}")
        .parse()
        .unwrap()
}

fn consumer() -> Url {
    format!("consumer://127.0.0.1/{IFACE}?interface={IFACE}&version=1.0.0&category=providers")
        .parse()
        .unwrap()
}

async fn registry(url: &str) -> NacosRegistry {
    NacosRegistry::connect(&url.parse().unwrap()).await.unwrap()
}

/// Collects notifications.
#[derive(Default)]
struct Seen(Mutex<Vec<Vec<Url>>>);

impl NotifyListener for Seen {
    fn notify(&self, urls: Vec<Url>) {
        self.0.lock().unwrap().push(urls);
    }
}

impl Seen {
    fn ports(&self) -> Option<Vec<u16>> {
        self.0.lock().unwrap().last().map(|urls| {
            let mut p: Vec<u16> = urls
                .iter()
                .filter(|u| u.protocol() != "empty")
                .filter_map(|u| u.port())
                .collect();
            p.sort();
            p
        })
    }

    async fn wait_for(&self, ports: &[u16], within: Duration) -> Duration {
        let t = Instant::now();
        loop {
            if self.ports().as_deref() == Some(ports) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < within,
                "wanted {ports:?}, last notified {:?}",
                self.ports()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn register_subscribe_and_follow_changes_by_push() {
    let server = start().await;
    // Poll only once a minute: changes within the test can only arrive by push.
    let url = format!("{}?poll=60000", server.registry_url());
    let providers = registry(&url).await;
    let consumers = registry(&url).await;
    let seen = Arc::new(Seen::default());
    consumers
        .subscribe(&consumer(), seen.clone())
        .await
        .unwrap();
    seen.wait_for(&[], Duration::from_secs(5)).await;
    assert_eq!(
        seen.0.lock().unwrap()[0][0].protocol(),
        "empty",
        "an empty category is notified as empty://"
    );

    providers.register(&provider(9001, "")).await.unwrap();
    let took = seen.wait_for(&[9001], Duration::from_secs(5)).await;
    eprintln!("registration reached the subscriber in {took:?}");
    providers.register(&provider(9002, "")).await.unwrap();
    seen.wait_for(&[9001, 9002], Duration::from_secs(5)).await;

    // What a consumer gets back is the provider URL with its parameters.
    let last = seen.0.lock().unwrap().last().unwrap().clone();
    let u = last.iter().find(|u| u.port() == Some(9001)).unwrap();
    assert_eq!(u.protocol(), "jsonrpc");
    assert_eq!(u.path(), IFACE);
    assert_eq!(u.param("methods"), Some("greet"));
    assert_eq!(u.param("version"), Some("1.0.0"));
    assert_eq!(u.param("application"), Some("app"));

    providers.unregister(&provider(9001, "")).await.unwrap();
    seen.wait_for(&[9002], Duration::from_secs(5)).await;

    // Lookup and the Java naming in the server.
    let found = consumers.lookup(&consumer()).await.unwrap();
    assert_eq!(found.len(), 1);
    let stats = server.stats();
    assert!(
        stats.pushes_sent >= 3 && stats.pushes_acked >= 3,
        "{stats:?}"
    );

    // destroy deregisters everything it registered.
    providers.destroy().await;
    seen.wait_for(&[], Duration::from_secs(5)).await;
    consumers.destroy().await;
    server.stop().await;
}

#[tokio::test]
async fn polling_alone_follows_changes() {
    let server = start().await;
    let url = format!("{}?push=false&poll=200", server.registry_url());
    let c = registry(&url).await;
    assert_eq!(c.push_port(), None);
    let p = registry(&server.registry_url()).await;
    let seen = Arc::new(Seen::default());
    c.subscribe(&consumer(), seen.clone()).await.unwrap();
    p.register(&provider(9101, "")).await.unwrap();
    seen.wait_for(&[9101], Duration::from_secs(5)).await;
    assert_eq!(server.stats().subscribers, 0, "no push subscription");
    p.destroy().await;
    seen.wait_for(&[], Duration::from_secs(5)).await;
    c.destroy().await;
}

#[tokio::test]
async fn a_restarted_server_learns_the_instances_again_from_beats() {
    let server = start().await;
    let addr = server.local_addr();
    let url = server.registry_url();
    // Beat every 300 ms (the Nacos per-instance metadata key).
    let p = registry(&url).await;
    p.register(&provider(9201, "&preserved.heart.beat.interval=300"))
        .await
        .unwrap();
    let c = registry(&url).await;
    let seen = Arc::new(Seen::default());
    c.subscribe(&consumer(), seen.clone()).await.unwrap();
    seen.wait_for(&[9201], Duration::from_secs(5)).await;

    // The server forgets everything (in memory) and comes back on the same port.
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = start_at(addr, NamingServerConfig::default()).await;
    // The next light beat is answered "unknown instance": the client registers again.
    let t = Instant::now();
    loop {
        let found = c.lookup(&consumer()).await.unwrap_or_default();
        if found.iter().any(|u| u.port() == Some(9201)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never registered again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("instance back {:?} after the restart", t.elapsed());
    // The consumer never saw its list emptied while the server was away.
    let lists = seen.0.lock().unwrap().clone();
    assert!(
        lists
            .iter()
            .skip(1)
            .all(|l| l.iter().all(|u| u.protocol() != "empty")),
        "{lists:?}"
    );
    p.destroy().await;
    c.destroy().await;
    server.stop().await;
}

#[tokio::test]
async fn fails_over_to_a_server_that_answers() {
    let server = start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The first address refuses connections; every call must still succeed.
    let url = format!("nacos://{dead}?backup={}", server.local_addr());
    let r = registry(&url).await;
    for i in 0..10 {
        r.register(&provider(9300 + i, "")).await.unwrap();
    }
    let found = r.lookup(&consumer()).await.unwrap();
    assert_eq!(found.len(), 10);
    assert!(r.is_available());
    r.destroy().await;
    assert_eq!(server.stats().instances, 0);
    // Nothing answers at all: a clear error, and check=true refuses to start.
    let err = NacosRegistry::connect(
        &format!("nacos://{dead}?check=true&timeout=500")
            .parse()
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
}

#[tokio::test]
async fn logs_in_and_refreshes_its_token() {
    let server = start_at(
        "127.0.0.1:0".parse().unwrap(),
        NamingServerConfig {
            auth: Some(("nacos".into(), "pw".into())),
            token_ttl: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let bad = registry(&format!("nacos://nacos:wrong@{}", server.local_addr())).await;
    let err = bad.register(&provider(9400, "")).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    bad.destroy().await;

    let r = registry(&format!("nacos://nacos:pw@{}", server.local_addr())).await;
    r.register(&provider(9401, "")).await.unwrap();
    assert_eq!(server.stats().logins, 1);
    // Over 2.5 s the 1 s token is refreshed (before it expires: no call fails).
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        assert_eq!(r.lookup(&consumer()).await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logins = server.stats().logins;
    assert!((3..=10).contains(&logins), "logins: {logins}");
    r.destroy().await;
    assert_eq!(server.stats().instances, 0);
}

#[tokio::test]
async fn namespaces_and_groups_separate_registrations() {
    let server = start().await;
    let base = server.registry_url();
    let dev = registry(&format!("{base}?namespace=dev")).await;
    let grp = registry(&format!("{base}?group=blue")).await;
    let public = registry(&base).await;
    dev.register(&provider(9501, "")).await.unwrap();
    grp.register(&provider(9502, "")).await.unwrap();
    let ports = |urls: Vec<Url>| urls.iter().filter_map(Url::port).collect::<Vec<_>>();
    assert_eq!(ports(dev.lookup(&consumer()).await.unwrap()), vec![9501]);
    assert_eq!(ports(grp.lookup(&consumer()).await.unwrap()), vec![9502]);
    assert!(public.lookup(&consumer()).await.unwrap().is_empty());
    // interface=* lookups (what `rdubbo ls` does) see the group's services.
    let all: Url = "consumer://0.0.0.0/*?interface=*&category=*&group=*&version=*"
        .parse()
        .unwrap();
    let everything = grp.lookup(&all).await.unwrap();
    assert_eq!(ports(everything), vec![9502]);
    dev.destroy().await;
    grp.destroy().await;
    public.destroy().await;
}

//! The migration rule's `proportion` and `delay` as Java 3.3's `MigrationInvoker` applies
//! them, through a real ZooKeeper: APPLICATION_FIRST sends `proportion` percent of the
//! calls to the application level and the rest to interface-level providers; a change to a
//! FORCE step keeps calling the current side for `delay` seconds before it switches. And
//! a reference that leaves the application level (or closes) stops following the
//! interface's mapping.

mod dubbo3_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dubbo3_common::user_service::{RustUsers, UserServiceClient, UserServiceServer};
use dubbo3_common::{connect, eventually, versioned, APP, INTERFACE};
use rdubbo::config_center::MIGRATION_GROUP;
use rdubbo::consumer::Reference;
use rdubbo::discovery::AddressSource;
use rdubbo::provider::Provider;
use rdubbo::{
    BoxFuture, DynamicConfiguration, Invocation, Invoker, RegisterMode, Registry, Reply, RpcResult,
};
use rdubbo_testkit::ZkServer;

const CONSUMER_APP: &str = "shop-web";
const RULE: &str = "shop-web.migration";

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// UserService counting the calls it serves.
struct Counted {
    inner: UserServiceServer<RustUsers>,
    calls: Arc<AtomicUsize>,
}

impl Invoker for Counted {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.invoke(invocation)
    }
}

/// A dubbo provider of application `app` registered in `mode`, with its call counter.
async fn counted_provider(
    registry: &Arc<dyn Registry>,
    app: &str,
    mode: RegisterMode,
) -> (Provider, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(app)
        .protocol("dubbo")
        .register_mode(mode)
        .unregister_wait(Duration::ZERO)
        .registry(registry.clone())
        .export(
            versioned(),
            Arc::new(Counted {
                inner: UserServiceServer::new(RustUsers),
                calls: calls.clone(),
            }),
        )
        .start()
        .await
        .unwrap();
    (provider, calls)
}

/// A reference to UserService 1.0.0 of `shop-web` with the reference parameters given.
async fn reference(registry: &Arc<dyn Registry>, params: &[(&str, &str)]) -> Arc<Reference> {
    let mut b = Reference::builder(INTERFACE)
        .version("1.0.0")
        .application(CONSUMER_APP)
        .registry(registry.clone())
        .wait(Duration::from_secs(10));
    for (k, v) in params {
        b = b.param(k, v);
    }
    Arc::new(b.build().await.unwrap())
}

fn source(r: &Reference) -> Option<AddressSource> {
    r.migration().and_then(|m| m.source)
}

/// Makes `n` calls; how many each counter saw.
async fn calls(r: &Arc<Reference>, n: usize, a: &AtomicUsize, b: &AtomicUsize) -> (usize, usize) {
    let client = UserServiceClient::new(r.clone() as Arc<dyn Invoker>);
    let (a0, b0) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
    for i in 0..n {
        let i = i as i64;
        assert_eq!(client.inc(i).await.unwrap(), i + 1);
    }
    (
        a.load(Ordering::Relaxed) - a0,
        b.load(Ordering::Relaxed) - b0,
    )
}

async fn publish(config: &Arc<dyn DynamicConfiguration>, rule: &str) {
    config.publish(RULE, MIGRATION_GROUP, rule).await.unwrap();
}

/// `proportion` (rule, per-interface entry, or the reference's `migration.promotion`):
/// while APPLICATION_FIRST calls the application level, that percentage of the calls goes
/// there and the rest to the interface-level providers; without it every call goes to the
/// side chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proportion_divides_the_calls_between_the_two_levels() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let config = registry.dynamic_configuration().unwrap();
    // A: interface-level URLs only; B: an application instance only.
    let (a, a_calls) = counted_provider(&registry, "users-by-url", RegisterMode::Interface).await;
    let (b, b_calls) = counted_provider(&registry, APP, RegisterMode::Instance).await;
    let r = reference(&registry, &[]).await;
    eventually(
        "both levels known, the application level chosen",
        async || {
            let m = r.migration().unwrap();
            m.interface_providers == Some(1)
                && m.application_providers == Some(1)
                && m.source == Some(AddressSource::Application)
        },
    )
    .await;
    assert_eq!(calls(&r, 100, &a_calls, &b_calls).await, (0, 100));

    publish(
        &config,
        "key: shop-web\nstep: APPLICATION_FIRST\nproportion: 30\n",
    )
    .await;
    eventually("a share of the calls on the interface level", async || {
        calls(&r, 10, &a_calls, &b_calls).await.0 > 0
    })
    .await;
    let (to_a, to_b) = calls(&r, 1000, &a_calls, &b_calls).await;
    assert!(
        (280..=320).contains(&to_b),
        "application level {to_b} of 1000, interface level {to_a}"
    );
    assert_eq!(source(&r), Some(AddressSource::Application));

    // An `interfaces` entry beats the rule's own proportion.
    publish(
        &config,
        "key: shop-web\nstep: APPLICATION_FIRST\nproportion: 30\ninterfaces:\n  - serviceKey: com.example.UserService:1.0.0\n    proportion: 0\n",
    )
    .await;
    eventually("every call on the interface level", async || {
        calls(&r, 20, &a_calls, &b_calls).await == (20, 0)
    })
    .await;

    // Without the rule every call goes to the side chosen again.
    config.remove(RULE, MIGRATION_GROUP).await.unwrap();
    eventually("every call on the application level", async || {
        calls(&r, 20, &a_calls, &b_calls).await == (0, 20)
    })
    .await;
    r.close().await;

    // The reference's own parameter, as Java's `migration.promotion`.
    let half = reference(&registry, &[("migration.promotion", "50")]).await;
    eventually("half of the calls on the interface level", async || {
        calls(&half, 10, &a_calls, &b_calls).await.0 > 0
    })
    .await;
    let (to_a, to_b) = calls(&half, 1000, &a_calls, &b_calls).await;
    assert!(
        (470..=530).contains(&to_b),
        "application level {to_b} of 1000, interface level {to_a}"
    );

    // The interface-level provider goes away: the application level takes every call.
    a.stop().await;
    eventually("no interface-level provider left", async || {
        half.migration().unwrap().interface_providers == Some(0)
    })
    .await;
    assert_eq!(calls(&half, 50, &a_calls, &b_calls).await, (0, 50));
    half.close().await;
    b.stop().await;
    registry.destroy().await;
}

/// `delay`: after the rule moves a running reference to FORCE_APPLICATION, it follows
/// the application level at once but calls the interface level for `delay` seconds more;
/// back to FORCE_INTERFACE likewise. No call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_keeps_the_current_side_before_a_forced_switch() {
    init_tracing();
    let zk = ZkServer::start();
    let registry = connect(&zk, "file.cache=false").await;
    let config = registry.dynamic_configuration().unwrap();
    let (a, a_calls) = counted_provider(&registry, "users-by-url", RegisterMode::Interface).await;
    let (b, b_calls) = counted_provider(&registry, APP, RegisterMode::Instance).await;
    let r = reference(&registry, &[("migration.step", "FORCE_INTERFACE")]).await;
    assert_eq!(source(&r), Some(AddressSource::Interface));
    assert_eq!(calls(&r, 20, &a_calls, &b_calls).await, (20, 0));

    let published = Instant::now();
    publish(
        &config,
        "key: shop-web\nstep: FORCE_APPLICATION\ndelay: 3\n",
    )
    .await;
    eventually("the application level followed", async || {
        r.migration().unwrap().application_providers == Some(1)
    })
    .await;
    let followed = published.elapsed();
    assert!(
        followed < Duration::from_millis(2500),
        "the application level took {followed:?}: too slow to show the delay"
    );
    // Still on the interface level, as the delay says.
    assert_eq!(source(&r), Some(AddressSource::Interface));
    assert_eq!(calls(&r, 20, &a_calls, &b_calls).await, (20, 0));
    eventually("switched to the application level", async || {
        source(&r) == Some(AddressSource::Application)
    })
    .await;
    let switched = published.elapsed();
    assert!(
        switched >= Duration::from_secs(3),
        "switched after {switched:?}"
    );
    assert!(
        switched < Duration::from_secs(8),
        "switched after {switched:?}"
    );
    assert_eq!(calls(&r, 20, &a_calls, &b_calls).await, (0, 20));

    let published = Instant::now();
    publish(&config, "key: shop-web\nstep: FORCE_INTERFACE\ndelay: 1\n").await;
    eventually("back to the interface level", async || {
        source(&r) == Some(AddressSource::Interface)
    })
    .await;
    let switched = published.elapsed();
    assert!(
        switched >= Duration::from_secs(1),
        "switched after {switched:?}"
    );
    assert_eq!(calls(&r, 20, &a_calls, &b_calls).await, (20, 0));
    // Interface level only from now on: the application level is no longer followed.
    assert_eq!(r.migration().unwrap().application_providers, None);

    // A delay does not hold a reference that is starting: it decides at once.
    let fresh = reference(&registry, &[]).await;
    assert_eq!(source(&fresh), Some(AddressSource::Interface));
    fresh.close().await;
    r.close().await;
    a.stop().await;
    b.stop().await;
    registry.destroy().await;
}

/// A reference that leaves the application level, or closes, no longer follows the
/// interface's mapping: on the embedded Nacos registry the mapping config leaves the
/// long poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_is_unwatched_when_the_application_level_is_left() {
    init_tracing();
    let server =
        rdubbo_naming_server::NamingServer::start(rdubbo_naming_server::NamingServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    let url = format!("nacos://{}", server.local_addr());
    let nacos = Arc::new(
        rdubbo::nacos::NacosRegistry::connect(&url.parse().unwrap())
            .await
            .unwrap(),
    );
    let registry: Arc<dyn Registry> = nacos.clone();
    let config = registry.dynamic_configuration().unwrap();
    let (p, _) = counted_provider(&registry, APP, RegisterMode::All).await;
    let mapping_watched = || {
        nacos
            .config()
            .watched()
            .contains(&("mapping".to_owned(), INTERFACE.to_owned()))
    };
    let r = reference(&registry, &[]).await;
    eventually("the application level chosen", async || {
        source(&r) == Some(AddressSource::Application)
    })
    .await;
    assert!(mapping_watched());

    publish(&config, "key: shop-web\nstep: FORCE_INTERFACE\n").await;
    eventually("interface level only, the mapping unwatched", async || {
        source(&r) == Some(AddressSource::Interface) && !mapping_watched()
    })
    .await;

    publish(&config, "key: shop-web\nstep: FORCE_APPLICATION\n").await;
    eventually(
        "the application level again, the mapping watched",
        async || source(&r) == Some(AddressSource::Application) && mapping_watched(),
    )
    .await;
    r.close().await;
    eventually("closed: the mapping unwatched", async || !mapping_watched()).await;
    p.stop().await;
    registry.destroy().await;
}

/// A consumer starting while ZooKeeper is down: the application level cannot be read, so
/// APPLICATION_FIRST decides at once with the interface level of the cache file, and
/// `build()` returns with those providers (it waits for the decision, not for the
/// application level's grace). Once ZooKeeper is back, the application level is followed
/// and chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_while_zookeeper_is_down_decides_with_the_cache_file_before_build_returns() {
    init_tracing();
    let mut zk = ZkServer::start();
    let dir = std::env::temp_dir().join(format!("rdubbo-migration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let params = format!(
        "session=2000&retry.period=500&file={}",
        dir.join("down.cache").display()
    );
    let registry = connect(&zk, "session=2000&retry.period=500&file.cache=false").await;
    let (p, _) = counted_provider(&registry, APP, RegisterMode::All).await;
    {
        // A first run of the consumer leaves its cache file.
        let consumer_registry = connect(&zk, &params).await;
        let r = reference(&consumer_registry, &[]).await;
        assert_eq!(source(&r), Some(AddressSource::Application));
        r.close().await;
        consumer_registry.destroy().await;
    }
    zk.stop();
    let consumer_registry = connect(&zk, &params).await;
    assert!(!consumer_registry.is_available());
    let started = Instant::now();
    // The reference waits 10 s: the application level's grace would be 5 s.
    let r = reference(&consumer_registry, &[]).await;
    let took = started.elapsed();
    assert_eq!(
        r.directory().providers().len(),
        1,
        "cached providers after build"
    );
    assert!(took < Duration::from_millis(4500), "build took {took:?}");
    let status = r.migration().unwrap();
    assert_eq!(status.source, Some(AddressSource::Interface), "{status:?}");
    assert_eq!(status.application_providers, Some(0), "{status:?}");
    let client = UserServiceClient::new(r.clone() as Arc<dyn Invoker>);
    assert_eq!(client.inc(1).await.unwrap(), 2);

    zk.restart();
    eventually("the application level once ZooKeeper is back", async || {
        source(&r) == Some(AddressSource::Application)
    })
    .await;
    assert_eq!(client.inc(2).await.unwrap(), 3);
    r.close().await;
    consumer_registry.destroy().await;
    p.stop().await;
    registry.destroy().await;
}

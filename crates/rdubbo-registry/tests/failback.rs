//! The failback base, exercised through the in-memory registry on a paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo_core::{NotifyListener, Registry, RegistryError, Url};
use rdubbo_registry::{FailbackOptions, MemoryRegistry, MemoryStore, RegistryCache};

const PERIOD: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Recorder {
    lists: Mutex<Vec<Vec<Url>>>,
}

impl NotifyListener for Recorder {
    fn notify(&self, urls: Vec<Url>) {
        self.lists.lock().unwrap().push(urls);
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.lists.lock().unwrap().len()
    }
    /// Ports of the last list (empty for `empty://`).
    fn last_ports(&self) -> Option<Vec<u16>> {
        self.lists.lock().unwrap().last().map(|l| {
            l.iter()
                .filter(|u| u.protocol() != "empty")
                .filter_map(Url::port)
                .collect()
        })
    }
}

fn provider(port: u16) -> Url {
    format!("jsonrpc://127.0.0.1:{port}/demo.Api?interface=demo.Api&side=provider")
        .parse()
        .unwrap()
}

fn consumer() -> Url {
    "consumer://127.0.0.1/demo.Api?interface=demo.Api&category=providers,routers"
        .parse()
        .unwrap()
}

fn providers_only() -> Url {
    "consumer://127.0.0.1/demo.Api?interface=demo.Api"
        .parse()
        .unwrap()
}

/// Lets spawned tasks run without moving the clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn full_lists_per_category_with_empty_placeholders() {
    let store = MemoryStore::new();
    let a = store.connect(PERIOD);
    let b = store.connect(PERIOD);
    let rec = Arc::new(Recorder::default());
    b.subscribe(&consumer(), rec.clone()).await.unwrap();
    {
        let lists = rec.lists.lock().unwrap();
        assert_eq!(lists.len(), 2, "one list per category: {lists:?}");
        let categories: Vec<&str> = lists.iter().map(|l| l[0].category()).collect();
        assert_eq!(categories, ["providers", "routers"]);
        assert!(lists
            .iter()
            .all(|l| l.len() == 1 && l[0].protocol() == "empty"));
    }
    a.register(&provider(1)).await.unwrap();
    a.register(&provider(2)).await.unwrap();
    assert_eq!(rec.last_ports(), Some(vec![1, 2]));
    assert_eq!(
        rec.count(),
        4,
        "an unchanged category is not notified again"
    );
    // A late listener gets the last lists at once.
    let late = Arc::new(Recorder::default());
    b.subscribe(&consumer(), late.clone()).await.unwrap();
    assert_eq!(late.count(), 2);
    assert_eq!(
        b.lookup(&providers_only()).await.unwrap(),
        vec![provider(1), provider(2)]
    );
    // Unsubscribed listeners hear nothing more.
    let dyn_rec: Arc<dyn NotifyListener> = rec.clone();
    let dyn_late: Arc<dyn NotifyListener> = late.clone();
    b.unsubscribe(&consumer(), &dyn_rec).await.unwrap();
    a.unregister(&provider(1)).await.unwrap();
    assert_eq!(rec.count(), 4);
    assert_eq!(late.last_ports(), Some(vec![2]));
    b.unsubscribe(&consumer(), &dyn_late).await.unwrap();
    assert!(b.failback().subscribed().is_empty());
    // Destroy unregisters everything and refuses further work.
    a.destroy().await;
    assert!(store.urls().is_empty());
    assert_eq!(
        a.register(&provider(3)).await.unwrap_err(),
        RegistryError::Closed
    );
    b.destroy().await;
}

#[tokio::test(start_paused = true)]
async fn failed_registration_is_retried_by_the_timer_until_it_succeeds() {
    let store = MemoryStore::new();
    let reg = store.connect(PERIOD);
    store.set_available(false);
    let err = reg.register(&provider(1)).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err}");
    assert_eq!(reg.failback().failed_registrations(), vec![provider(1)]);
    // One retry while the store is still down: still pending.
    tokio::time::sleep(PERIOD + Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(reg.failback().failed_registrations(), vec![provider(1)]);
    store.set_available(true);
    // Nothing happens before the next tick…
    tokio::time::sleep(PERIOD - Duration::from_millis(10)).await;
    settle().await;
    assert!(store.urls().is_empty());
    // …and the tick registers it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    settle().await;
    assert_eq!(store.urls(), vec![provider(1)]);
    assert!(reg.failback().failed_registrations().is_empty());
    reg.destroy().await;
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_registration_is_not_retried_and_failed_unregistrations_are() {
    let store = MemoryStore::new();
    let reg = store.connect(PERIOD);
    reg.register(&provider(1)).await.unwrap();
    store.set_available(false);
    reg.register(&provider(2)).await.unwrap_err();
    reg.unregister(&provider(2)).await.unwrap_err();
    reg.unregister(&provider(1)).await.unwrap_err();
    assert!(reg.failback().failed_registrations().is_empty());
    assert_eq!(reg.failback().failed_unregistrations().len(), 2);
    store.set_available(true);
    tokio::time::sleep(PERIOD * 2).await;
    settle().await;
    assert!(store.urls().is_empty(), "{:?}", store.urls());
    assert!(reg.failback().failed_unregistrations().is_empty());
    assert!(reg.failback().registered().is_empty());
    reg.destroy().await;
}

#[tokio::test(start_paused = true)]
async fn subscription_while_unreachable_uses_the_cache_then_the_registry() {
    let store = MemoryStore::new();
    let owner = store.connect(PERIOD);
    owner.register(&provider(8)).await.unwrap();
    let reg = MemoryRegistry::with_store(&store, PERIOD);
    reg.set_available(false);
    // What a previous run left in the cache.
    reg.failback()
        .cache()
        .put("demo.Api", "providers", &[provider(7)]);
    let rec = Arc::new(Recorder::default());
    reg.subscribe(&providers_only(), rec.clone()).await.unwrap();
    assert_eq!(rec.last_ports(), Some(vec![7]), "answered from the cache");
    assert_eq!(
        reg.failback().failed_subscriptions(),
        vec![providers_only()]
    );
    // Still away at the next tick: retried, the cached list stays.
    tokio::time::sleep(PERIOD + Duration::from_millis(1)).await;
    settle().await;
    assert_eq!((rec.count(), rec.last_ports()), (1, Some(vec![7])));
    // Back: the reconnect retries at once and the real list replaces the cached one,
    // in the cache too.
    reg.set_available(true);
    settle().await;
    assert_eq!(rec.last_ports(), Some(vec![8]));
    assert!(reg.failback().failed_subscriptions().is_empty());
    assert_eq!(reg.failback().cache().get("demo.Api"), vec![provider(8)]);
    reg.destroy().await;
    owner.destroy().await;
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_notifies_the_full_lists_again_and_keeps_them_meanwhile() {
    let store = MemoryStore::new();
    let provider_side = store.connect(PERIOD);
    let consumer_side = store.connect(PERIOD);
    provider_side.register(&provider(1)).await.unwrap();
    let rec = Arc::new(Recorder::default());
    consumer_side
        .subscribe(&providers_only(), rec.clone())
        .await
        .unwrap();
    assert_eq!((rec.count(), rec.last_ports()), (1, Some(vec![1])));
    consumer_side.set_available(false);
    assert!(!consumer_side.is_available());
    provider_side.register(&provider(2)).await.unwrap();
    // Cut off: the list is kept, never replaced by "no providers".
    assert_eq!((rec.count(), rec.last_ports()), (1, Some(vec![1])));
    consumer_side.set_available(true);
    settle().await;
    assert_eq!(rec.last_ports(), Some(vec![1, 2]));
    // Same list again after another reconnect: notified anyway.
    let before = rec.count();
    consumer_side.set_available(false);
    consumer_side.set_available(true);
    settle().await;
    assert_eq!(rec.count(), before + 1);
    assert_eq!(rec.last_ports(), Some(vec![1, 2]));
    provider_side.destroy().await;
    consumer_side.destroy().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_session_registers_and_subscribes_everything_again() {
    let store = MemoryStore::new();
    let reg = store.connect(PERIOD);
    let other = store.connect(PERIOD);
    reg.register(&provider(1)).await.unwrap();
    let rec = Arc::new(Recorder::default());
    reg.subscribe(&providers_only(), rec.clone()).await.unwrap();
    reg.expire_session();
    settle().await;
    assert_eq!(store.urls(), vec![provider(1)], "registered again");
    // Subscribed again: changes still arrive.
    other.register(&provider(2)).await.unwrap();
    assert_eq!(rec.last_ports(), Some(vec![1, 2]));
    reg.destroy().await;
    other.destroy().await;
    assert!(store.urls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_registry_stops_the_timer() {
    let store = MemoryStore::new();
    let reg = store.connect(PERIOD);
    store.set_available(false);
    reg.register(&provider(1)).await.unwrap_err();
    drop(reg);
    store.set_available(true);
    tokio::time::sleep(PERIOD * 3).await;
    settle().await;
    assert!(store.urls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_cache_file_is_written_on_notify_and_read_by_the_next_run() {
    let dir = std::env::temp_dir().join(format!("rdubbo-registry-cache-{}", std::process::id()));
    let path = dir.join("registry.cache");
    let _ = std::fs::remove_file(&path);
    let with_file = || FailbackOptions {
        retry_period: PERIOD,
        cache: RegistryCache::open(&path),
    };
    let store = MemoryStore::new();
    let provider_side = store.connect(PERIOD);
    provider_side.register(&provider(9)).await.unwrap();
    {
        let first_run = MemoryRegistry::with_options(&store, with_file());
        let rec = Arc::new(Recorder::default());
        first_run
            .subscribe(&providers_only(), rec.clone())
            .await
            .unwrap();
        assert_eq!(rec.last_ports(), Some(vec![9]));
        first_run.destroy().await;
    }
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("127.0.0.1\\:9/"));
    // The next run starts while the registry is down: the file answers.
    store.set_available(false);
    let next_run = MemoryRegistry::with_options(&store, with_file());
    let rec = Arc::new(Recorder::default());
    next_run
        .subscribe(&providers_only(), rec.clone())
        .await
        .unwrap();
    assert_eq!(rec.last_ports(), Some(vec![9]));
    next_run.destroy().await;
    provider_side.destroy().await;
    std::fs::remove_dir_all(&dir).ok();
}

//! A registry inside the process: [`MemoryStore`] plays the server, [`MemoryRegistry`] the
//! client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rdubbo_core::registry::subscribed_categories;
use rdubbo_core::url::keys;
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};

use crate::{
    backend_events, BackendEvents, FailbackOptions, FailbackRegistry, Notifier, RegistryBackend,
};

#[path = "memory_config.rs"]
mod config;

/// The shared "server" of in-memory registries: clients connected to one store see each
/// other's registrations. Cheap to clone; clones are the same store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    state: Mutex<StoreState>,
    /// The config center's documents and watches.
    config: Mutex<config::ConfigState>,
    down: AtomicBool,
    next_client: AtomicU64,
}

#[derive(Default)]
struct StoreState {
    /// (client, URL string) → URL.
    urls: BTreeMap<(u64, String), Url>,
    /// (client, subscription URL string) → the notifier of that subscription and its
    /// client.
    watchers: BTreeMap<(u64, String), (Notifier, Weak<MemoryClient>)>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("urls", &self.urls().len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, StoreState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every URL registered in the store, sorted.
    pub fn urls(&self) -> Vec<Url> {
        let mut urls: Vec<Url> = self.state().urls.values().cloned().collect();
        urls.sort_by_cached_key(|u| u.to_string());
        urls.dedup();
        urls
    }

    /// Takes the whole store down (`false`) or back up (`true`). Clients are not told: they
    /// find out when their next operation fails, and their retry timer brings them back.
    pub fn set_available(&self, available: bool) {
        self.inner.down.store(!available, Ordering::Release);
        if available {
            self.publish(None, false);
            self.notify_configs(None, None);
        }
    }

    /// Whether the store answers.
    pub fn is_available(&self) -> bool {
        !self.inner.down.load(Ordering::Acquire)
    }

    /// A new client of this store, with a cache kept only in memory.
    pub fn connect(&self, retry_period: Duration) -> MemoryRegistry {
        MemoryRegistry::with_store(self, retry_period)
    }

    /// Sends the current lists to the watchers of available clients (of `only`, if given).
    fn publish(&self, only: Option<&MemoryClient>, force: bool) {
        let state = self.state();
        if !self.is_available() {
            return;
        }
        for ((id, _), (notifier, client)) in &state.watchers {
            if only.is_some_and(|c| c.id != *id) {
                continue;
            }
            if !client
                .upgrade()
                .is_some_and(|c| c.available.load(Ordering::Acquire))
            {
                continue;
            }
            if force {
                notifier.force_next();
            }
            deliver(&state, notifier);
        }
    }
}

/// Delivers every category of one subscription.
fn deliver(state: &StoreState, notifier: &Notifier) {
    let sub = notifier.url();
    for category in subscribed_categories(sub) {
        let urls: Vec<Url> = state
            .urls
            .values()
            .filter(|u| u.category() == category && sub.matches_provider(u))
            .cloned()
            .collect();
        notifier.notify(&category, urls);
    }
}

/// One client's connection to a [`MemoryStore`].
struct MemoryClient {
    id: u64,
    store: MemoryStore,
    available: AtomicBool,
}

impl MemoryClient {
    fn check(&self) -> RegistryResult<()> {
        if self.available.load(Ordering::Acquire) && self.store.is_available() {
            Ok(())
        } else {
            Err(RegistryError::Unavailable(
                "the in-memory registry is unreachable".into(),
            ))
        }
    }
}

/// The [`RegistryBackend`] of a [`MemoryRegistry`].
pub struct MemoryBackend {
    client: Arc<MemoryClient>,
    events: BackendEvents,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("client", &self.client.id)
            .finish()
    }
}

impl RegistryBackend for MemoryBackend {
    fn is_available(&self) -> bool {
        self.client.check().is_ok()
    }

    fn do_register<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(async move {
            self.client.check()?;
            let store = &self.client.store;
            store
                .state()
                .urls
                .insert((self.client.id, url.to_string()), url.clone());
            store.publish(None, false);
            Ok(())
        })
    }

    fn do_unregister<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(async move {
            self.client.check()?;
            let store = &self.client.store;
            let key = (self.client.id, url.to_string());
            if store.state().urls.remove(&key).is_some() {
                store.publish(None, false);
            }
            Ok(())
        })
    }

    fn do_subscribe<'a>(
        &'a self,
        url: &'a Url,
        notifier: Notifier,
    ) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(async move {
            self.client.check()?;
            let mut state = self.client.store.state();
            deliver(&state, &notifier);
            state.watchers.insert(
                (self.client.id, url.to_string()),
                (notifier, Arc::downgrade(&self.client)),
            );
            Ok(())
        })
    }

    fn do_unsubscribe<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(async move {
            self.client
                .store
                .state()
                .watchers
                .remove(&(self.client.id, url.to_string()));
            Ok(())
        })
    }

    fn lookup<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<Vec<Url>>> {
        Box::pin(async move {
            self.client.check()?;
            let mut found: Vec<Url> = self
                .client
                .store
                .urls()
                .into_iter()
                .filter(|u| url.matches_provider(u))
                .collect();
            found.dedup();
            Ok(found)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let id = self.client.id;
            self.client
                .store
                .state()
                .watchers
                .retain(|(client, _), _| *client != id);
        })
    }
}

/// A complete registry in memory, built on [`FailbackRegistry`]: for tests and examples.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::{Arc, Mutex};
/// use rdubbo_core::{Registry, Url};
/// use rdubbo_registry::MemoryStore;
///
/// let store = MemoryStore::new();
/// let provider = store.connect(std::time::Duration::from_secs(1));
/// let consumer = store.connect(std::time::Duration::from_secs(1));
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let listener = Arc::new(move |urls: Vec<Url>| sink.lock().unwrap().push(urls));
/// let wanted: Url = "consumer://127.0.0.1/demo.Api?interface=demo.Api".parse().unwrap();
/// consumer.subscribe(&wanted, listener).await.unwrap();
/// let url: Url = "jsonrpc://127.0.0.1:8080/demo.Api?interface=demo.Api".parse().unwrap();
/// provider.register(&url).await.unwrap();
/// let seen = seen.lock().unwrap();
/// assert_eq!(seen[0][0].protocol(), "empty");
/// assert_eq!(seen[1], vec![url]);
/// # }
/// ```
///
/// [`set_available`](Self::set_available) cuts this client off (its operations fail with
/// [`RegistryError::Unavailable`] and are retried); [`expire_session`](Self::expire_session)
/// drops its registrations and watches as a lost ZooKeeper session would.
///
/// It has a config center ([`dynamic_configuration`](rdubbo_core::Registry::dynamic_configuration)):
/// documents by key and group in the store, shared by its clients, watched.
#[derive(Clone)]
pub struct MemoryRegistry {
    inner: FailbackRegistry<MemoryBackend>,
    config: Arc<config::MemoryConfig>,
}

impl std::fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry::new()
    }
}

impl MemoryRegistry {
    /// A client of a store of its own (retry period 1 s). Must be called inside a Tokio
    /// runtime.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::with_store(&MemoryStore::new(), Duration::from_secs(1))
    }

    /// A client of `store` whose failed operations are retried every `retry_period`.
    /// Must be called inside a Tokio runtime.
    pub fn with_store(store: &MemoryStore, retry_period: Duration) -> MemoryRegistry {
        MemoryRegistry::with_options(store, FailbackOptions::in_memory(retry_period))
    }

    /// A client of `store` with the base's settings (a cache file, for instance). Must be
    /// called inside a Tokio runtime.
    pub fn with_options(store: &MemoryStore, options: FailbackOptions) -> MemoryRegistry {
        let retry_period = options.retry_period;
        let id = store.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let (events, stream) = backend_events();
        let client = Arc::new(MemoryClient {
            id,
            store: store.clone(),
            available: AtomicBool::new(true),
        });
        let config = Arc::new(config::MemoryConfig {
            client: client.clone(),
        });
        let backend = MemoryBackend { client, events };
        let url = Url::new("memory", "localhost", None, "")
            .with_param("client", id.to_string())
            .with_param("retry.period", retry_period.as_millis().to_string());
        MemoryRegistry {
            inner: FailbackRegistry::new(url, backend, stream, options),
            config,
        }
    }

    /// The store this client talks to.
    pub fn store(&self) -> &MemoryStore {
        &self.inner.backend().client.store
    }

    /// The failback base (registered set, pending retries).
    pub fn failback(&self) -> &FailbackRegistry<MemoryBackend> {
        &self.inner
    }

    /// Cuts this client off (`false`) or reconnects it (`true`: the lists are notified
    /// again and failed operations retried at once).
    pub fn set_available(&self, available: bool) {
        let backend = self.inner.backend();
        backend.client.available.store(available, Ordering::Release);
        if available {
            backend.client.store.publish(Some(&backend.client), true);
            backend
                .client
                .store
                .notify_configs(None, Some(backend.client.id));
            backend.events.reconnected();
        }
    }

    /// Drops this client's dynamic registrations and its watches, as the server does when
    /// a session expires, then reports a new session (everything is registered and
    /// subscribed again).
    pub fn expire_session(&self) {
        let backend = self.inner.backend();
        let id = backend.client.id;
        {
            let mut state = backend.client.store.state();
            state
                .urls
                .retain(|(client, _), url| *client != id || !url.param_bool(keys::DYNAMIC, true));
            state.watchers.retain(|(client, _), _| *client != id);
        }
        backend.client.store.publish(None, false);
        backend.events.session_renewed();
    }
}

crate::forward_registry!(MemoryRegistry, inner, {
    fn destroy(&self) -> BoxFuture<'_, ()> {
        rdubbo_core::Registry::destroy(&self.inner)
    }

    fn dynamic_configuration(&self) -> Option<Arc<dyn rdubbo_core::DynamicConfiguration>> {
        Some(self.config.clone())
    }
});

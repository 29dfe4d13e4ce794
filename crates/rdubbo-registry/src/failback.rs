//! The failback registry base: [`FailbackRegistry`] over a [`RegistryBackend`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rdubbo_core::registry::{empty_url, is_empty_url, subscribed_categories, RegistryCache};
use rdubbo_core::{BoxFuture, NotifyListener, Registry, RegistryError, RegistryResult, Url};
use tokio::sync::{mpsc, watch};

/// Default period between retries of failed operations, as Java Dubbo's `retry.period`.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_millis(5_000);

/// The registry-specific half of a registry: talks to one kind of server.
///
/// [`FailbackRegistry`] calls these operations and keeps everything else: which URLs are
/// registered, which subscriptions exist and who listens, what to retry, the cache file.
/// A backend reports connection changes through the [`BackendEvents`] it was built with.
pub trait RegistryBackend: Send + Sync + 'static {
    /// Whether the server is reachable right now.
    fn is_available(&self) -> bool;

    /// Publishes `url`. An error puts the URL on the retry list (unless it is
    /// [`RegistryError::Invalid`] or [`RegistryError::Closed`]).
    fn do_register<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>>;

    /// Withdraws `url`. An error puts the URL on the retry list (unless it is
    /// [`RegistryError::Invalid`] or [`RegistryError::Closed`]).
    fn do_unregister<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>>;

    /// Starts following the subscription `url`: delivers the current list of each category
    /// through `notifier`, then every change, until
    /// [`do_unsubscribe`](Self::do_unsubscribe). Returns an error when the first read
    /// fails; the base then answers from the cache file and calls `do_subscribe` again
    /// later. Called again for a URL already followed (after a new session), the backend
    /// replaces what it had for that URL.
    fn do_subscribe<'a>(
        &'a self,
        url: &'a Url,
        notifier: Notifier,
    ) -> BoxFuture<'a, RegistryResult<()>>;

    /// Stops following the subscription `url`.
    fn do_unsubscribe<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>>;

    /// The URLs currently registered that match `url` (one read).
    fn lookup<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<Vec<Url>>>;

    /// Closes the connection; called last by [`Registry::destroy`].
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// What a backend tells its [`FailbackRegistry`] about its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendEvent {
    Reconnected,
    SessionRenewed,
}

/// The sending half a backend keeps to report connection changes (cheap to clone).
#[derive(Debug, Clone)]
pub struct BackendEvents {
    tx: mpsc::UnboundedSender<BackendEvent>,
}

/// The receiving half of [`BackendEvents`], handed to [`FailbackRegistry::new`].
#[derive(Debug)]
pub struct BackendEventStream {
    rx: mpsc::UnboundedReceiver<BackendEvent>,
}

/// A connected pair: the backend keeps the [`BackendEvents`], the registry takes the
/// [`BackendEventStream`].
pub fn backend_events() -> (BackendEvents, BackendEventStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    (BackendEvents { tx }, BackendEventStream { rx })
}

impl BackendEvents {
    /// The connection is back within the same session (what was registered is still
    /// there): failed operations are retried now and the next list of every subscription
    /// is notified even if it did not change.
    pub fn reconnected(&self) {
        let _ = self.tx.send(BackendEvent::Reconnected);
    }

    /// A new session replaced one that was lost (what was registered may be gone): every
    /// registered URL is registered again, every subscription subscribed again and its
    /// lists notified again.
    pub fn session_renewed(&self) {
        let _ = self.tx.send(BackendEvent::SessionRenewed);
    }
}

/// Settings of the base.
#[derive(Debug)]
pub struct FailbackOptions {
    /// Period of the retry timer.
    pub retry_period: Duration,
    /// Where the last notified lists are kept.
    pub cache: RegistryCache,
}

impl FailbackOptions {
    /// From a registry URL: `retry.period` (ms, default 5000) and the cache file of
    /// [`RegistryCache::for_registry`].
    pub fn from_url(url: &Url) -> FailbackOptions {
        let retry_period = url
            .param_non_empty("retry.period")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.max(1)))
            .unwrap_or(DEFAULT_RETRY_PERIOD);
        FailbackOptions {
            retry_period,
            cache: RegistryCache::for_registry(url),
        }
    }

    /// `retry_period` with a cache kept only in memory.
    pub fn in_memory(retry_period: Duration) -> FailbackOptions {
        FailbackOptions {
            retry_period,
            cache: RegistryCache::in_memory(),
        }
    }
}

/// Last notified list per (subscriber URL, category), with the force generation it was
/// notified at.
type LastLists = BTreeMap<(String, String), (u64, Vec<Url>)>;

/// One subscription: its listeners and what they were told last.
struct Subscription {
    url: Url,
    listeners: Mutex<Vec<Arc<dyn NotifyListener>>>,
    /// Last notified list per (subscriber, category), with the force generation it was
    /// notified at. Held while listeners are called, so lists reach them in order.
    last: Mutex<LastLists>,
    /// Bumped to make the next list of every category reach the listeners unchanged or not.
    force: AtomicU64,
    active: AtomicBool,
}

impl Subscription {
    fn new(url: Url, listener: Arc<dyn NotifyListener>) -> Subscription {
        Subscription {
            url,
            listeners: Mutex::new(vec![listener]),
            last: Mutex::new(BTreeMap::new()),
            force: AtomicU64::new(0),
            active: AtomicBool::new(true),
        }
    }

    fn listeners(&self) -> Vec<Arc<dyn NotifyListener>> {
        lock(&self.listeners).clone()
    }

    fn notified_anything(&self) -> bool {
        !lock(&self.last).is_empty()
    }
}

/// The handle through which a backend delivers the lists of one subscription.
///
/// Each call carries the complete current list of one category; the base adds the
/// `empty://` placeholder for an empty list, skips a list equal to the last one, writes the
/// cache file and calls the listeners. Cheap to clone; does nothing once the subscription
/// is gone.
#[derive(Clone)]
pub struct Notifier {
    core: Weak<Core>,
    sub: Arc<Subscription>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("url", &self.sub.url)
            .finish()
    }
}

impl Notifier {
    /// The subscription URL.
    pub fn url(&self) -> &Url {
        &self.sub.url
    }

    /// Whether the subscription still exists.
    pub fn is_active(&self) -> bool {
        self.sub.active.load(Ordering::Acquire)
    }

    /// Delivers the complete list of `category` (empty: the category is empty).
    pub fn notify(&self, category: &str, urls: Vec<Url>) {
        let url = self.sub.url.clone();
        self.notify_as(&url, category, urls);
    }

    /// [`notify`](Self::notify) for a narrower subscriber than the subscription URL: an
    /// `interface=*` subscription notifies each interface with its own URL, which names
    /// the `empty://` placeholder and the cache entry.
    pub fn notify_as(&self, subscriber: &Url, category: &str, mut urls: Vec<Url>) {
        if !self.is_active() {
            return;
        }
        if urls.is_empty() {
            urls.push(empty_url(subscriber, category));
        } else {
            urls.sort_by_cached_key(|u| u.to_string());
        }
        let force = self.sub.force.load(Ordering::Acquire);
        let mut last = lock(&self.sub.last);
        let key = (subscriber.to_string(), category.to_owned());
        if let Some((at, list)) = last.get(&key) {
            if *at >= force && *list == urls {
                return;
            }
        }
        last.insert(key, (force, urls.clone()));
        if let Some(core) = self.core.upgrade() {
            core.cache.put(&subscriber.service_key(), category, &urls);
        }
        tracing::debug!(service = %subscriber.service_key(), category, count = urls.len(), "notify");
        for listener in self.sub.listeners() {
            listener.notify(urls.clone());
        }
    }

    /// Makes the next list of every category reach the listeners even if it did not
    /// change (after a reconnect, the full lists are notified again).
    pub fn force_next(&self) {
        self.sub.force.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct State {
    registered: BTreeMap<String, Url>,
    failed_register: BTreeMap<String, Url>,
    failed_unregister: BTreeMap<String, Url>,
    subscriptions: HashMap<String, Arc<Subscription>>,
    failed_subscribe: BTreeMap<String, Arc<Subscription>>,
}

/// The part of the base that does not depend on the backend.
struct Core {
    url: Url,
    retry_period: Duration,
    cache: RegistryCache,
    state: Mutex<State>,
    closed: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a failed operation is worth retrying.
fn retryable(e: &RegistryError) -> bool {
    !matches!(e, RegistryError::Invalid(_) | RegistryError::Closed)
}

impl Core {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn notifier(self: &Arc<Self>, sub: &Arc<Subscription>) -> Notifier {
        Notifier {
            core: Arc::downgrade(self),
            sub: sub.clone(),
        }
    }

    /// Answers a subscription from the cache file while the registry cannot be read.
    fn notify_from_cache(self: &Arc<Self>, sub: &Arc<Subscription>) {
        if sub.notified_anything() {
            return;
        }
        let cached = self.cache.get(&sub.url.service_key());
        if cached.is_empty() {
            return;
        }
        tracing::info!(service = %sub.url.service_key(), count = cached.len(), "registry unreachable; using the cached list");
        let notifier = self.notifier(sub);
        for category in subscribed_categories(&sub.url) {
            let urls: Vec<Url> = cached
                .iter()
                .filter(|u| u.category() == category)
                .filter(|u| is_empty_url(u) || sub.url.matches_provider(u))
                .cloned()
                .collect();
            if urls.is_empty() {
                continue;
            }
            let urls = urls.into_iter().filter(|u| !is_empty_url(u)).collect();
            notifier.notify(&category, urls);
        }
    }

    fn force_all(&self) {
        for sub in self.state().subscriptions.values() {
            sub.force.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A registry made of a [`RegistryBackend`] and the logic every registry shares.
///
/// - [`register`](Registry::register) keeps the URL in the registered set; when the
///   backend fails it is retried every `retry_period` until it succeeds or is
///   unregistered (likewise a failed unregistration);
/// - [`subscribe`](Registry::subscribe) adds the listener to the subscription of that URL
///   (a late listener gets the last lists at once); when the backend cannot read yet, the
///   listener is answered from the cache file and the subscription is retried;
/// - after [`BackendEvents::reconnected`] failed operations are retried at once and the
///   full lists notified again; after [`BackendEvents::session_renewed`] everything is
///   registered and subscribed again;
/// - [`destroy`](Registry::destroy) unsubscribes and unregisters everything, flushes the
///   cache and closes the backend.
///
/// Must be created inside a Tokio runtime. Cheap to clone; clones share everything.
pub struct FailbackRegistry<B> {
    core: Arc<Core>,
    backend: Arc<B>,
}

impl<B> Clone for FailbackRegistry<B> {
    fn clone(&self) -> Self {
        FailbackRegistry {
            core: self.core.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl<B> std::fmt::Debug for FailbackRegistry<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailbackRegistry")
            .field("url", &self.core.url)
            .finish()
    }
}

impl<B: RegistryBackend> FailbackRegistry<B> {
    /// Puts `backend` under the base and starts the retry timer. `events` is the other half
    /// of the [`BackendEvents`] the backend reports with.
    pub fn new(
        url: Url,
        backend: B,
        events: BackendEventStream,
        options: FailbackOptions,
    ) -> FailbackRegistry<B> {
        let core = Arc::new(Core {
            url,
            retry_period: options.retry_period,
            cache: options.cache,
            state: Mutex::new(State::default()),
            closed: watch::channel(false).0,
        });
        let backend = Arc::new(backend);
        tokio::spawn(run_timer(
            Arc::downgrade(&core),
            Arc::downgrade(&backend),
            events,
        ));
        FailbackRegistry { core, backend }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The cache of last notified lists.
    pub fn cache(&self) -> &RegistryCache {
        &self.core.cache
    }

    /// The period of the retry timer.
    pub fn retry_period(&self) -> Duration {
        self.core.retry_period
    }

    /// Every URL registered through this registry and not unregistered.
    pub fn registered(&self) -> Vec<Url> {
        self.core.state().registered.values().cloned().collect()
    }

    /// URLs whose registration has not succeeded yet (retried by the timer).
    pub fn failed_registrations(&self) -> Vec<Url> {
        self.core
            .state()
            .failed_register
            .values()
            .cloned()
            .collect()
    }

    /// URLs whose unregistration has not succeeded yet (retried by the timer).
    pub fn failed_unregistrations(&self) -> Vec<Url> {
        self.core
            .state()
            .failed_unregister
            .values()
            .cloned()
            .collect()
    }

    /// Every subscription URL with at least one listener.
    pub fn subscribed(&self) -> Vec<Url> {
        let mut urls: Vec<Url> = self
            .core
            .state()
            .subscriptions
            .values()
            .map(|s| s.url.clone())
            .collect();
        urls.sort_by_cached_key(|u| u.to_string());
        urls
    }

    /// Subscriptions whose first read has not succeeded yet (retried by the timer).
    pub fn failed_subscriptions(&self) -> Vec<Url> {
        self.core
            .state()
            .failed_subscribe
            .values()
            .map(|s| s.url.clone())
            .collect()
    }

    /// One round of retries now, as the timer does.
    pub async fn retry_now(&self) {
        retry_failed(&self.core, &*self.backend).await;
    }
}

/// Retries failed registrations, unregistrations and subscriptions once.
async fn retry_failed<B: RegistryBackend>(core: &Arc<Core>, backend: &B) {
    if core.is_closed() {
        return;
    }
    let (register, unregister, subscribe) = {
        let state = core.state();
        (
            state.failed_register.values().cloned().collect::<Vec<_>>(),
            state
                .failed_unregister
                .values()
                .cloned()
                .collect::<Vec<_>>(),
            state.failed_subscribe.values().cloned().collect::<Vec<_>>(),
        )
    };
    for url in register {
        let key = url.to_string();
        match backend.do_register(&url).await {
            Ok(()) => {
                tracing::info!(url = %url, "registration retried successfully");
                core.state().failed_register.remove(&key);
            }
            Err(e) if !retryable(&e) => {
                core.state().failed_register.remove(&key);
            }
            Err(e) => tracing::debug!(url = %url, error = %e, "registration retry failed"),
        }
    }
    for url in unregister {
        let key = url.to_string();
        match backend.do_unregister(&url).await {
            Err(e) if retryable(&e) => {
                tracing::debug!(url = %url, error = %e, "unregistration retry failed")
            }
            _ => {
                core.state().failed_unregister.remove(&key);
            }
        }
    }
    for sub in subscribe {
        if !sub.active.load(Ordering::Acquire) {
            continue;
        }
        let key = sub.url.to_string();
        match backend.do_subscribe(&sub.url, core.notifier(&sub)).await {
            Ok(()) => {
                tracing::info!(url = %sub.url, "subscription retried successfully");
                core.state().failed_subscribe.remove(&key);
            }
            Err(e) if !retryable(&e) => {
                core.state().failed_subscribe.remove(&key);
            }
            Err(e) => {
                tracing::debug!(url = %sub.url, error = %e, "subscription retry failed");
                core.notify_from_cache(&sub);
            }
        }
    }
}

/// After a new session: registers and subscribes everything again, then retries.
async fn recover<B: RegistryBackend>(core: &Arc<Core>, backend: &B) {
    core.force_all();
    let (registered, subs) = {
        let state = core.state();
        (
            state.registered.values().cloned().collect::<Vec<_>>(),
            state.subscriptions.values().cloned().collect::<Vec<_>>(),
        )
    };
    for url in registered {
        let key = url.to_string();
        let result = backend.do_register(&url).await;
        let mut state = core.state();
        match result {
            Ok(()) => {
                state.failed_register.remove(&key);
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "re-registration failed; will retry");
                if retryable(&e) && state.registered.contains_key(&key) {
                    state.failed_register.insert(key, url);
                }
            }
        }
    }
    for sub in subs {
        let key = sub.url.to_string();
        let result = backend.do_subscribe(&sub.url, core.notifier(&sub)).await;
        let mut state = core.state();
        match result {
            Ok(()) => {
                state.failed_subscribe.remove(&key);
            }
            Err(e) => {
                tracing::warn!(url = %sub.url, error = %e, "re-subscription failed; will retry");
                if retryable(&e) && sub.active.load(Ordering::Acquire) {
                    state.failed_subscribe.insert(key, sub);
                }
            }
        }
    }
    retry_failed(core, backend).await;
}

/// The retry timer and the reaction to backend events, until the registry is destroyed or
/// dropped.
async fn run_timer<B: RegistryBackend>(
    core: Weak<Core>,
    backend: Weak<B>,
    mut events: BackendEventStream,
) {
    let (period, mut closed) = match core.upgrade() {
        Some(c) => (c.retry_period, c.closed.subscribe()),
        None => return,
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    loop {
        let event = tokio::select! {
            _ = tick.tick() => None,
            e = events.rx.recv(), if events_open => match e {
                Some(e) => Some(e),
                None => {
                    events_open = false;
                    continue;
                }
            },
            _ = closed.wait_for(|c| *c) => return,
        };
        let (Some(core), Some(backend)) = (core.upgrade(), backend.upgrade()) else {
            return;
        };
        match event {
            None => retry_failed(&core, &*backend).await,
            Some(BackendEvent::Reconnected) => {
                core.force_all();
                retry_failed(&core, &*backend).await;
            }
            Some(BackendEvent::SessionRenewed) => recover(&core, &*backend).await,
        }
    }
}

impl<B: RegistryBackend> Registry for FailbackRegistry<B> {
    fn url(&self) -> &Url {
        &self.core.url
    }

    fn is_available(&self) -> bool {
        !self.core.is_closed() && self.backend.is_available()
    }

    fn register(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let core = &self.core;
            if core.is_closed() {
                return Err(RegistryError::Closed);
            }
            let key = url.to_string();
            {
                let mut state = core.state();
                state.registered.insert(key.clone(), url.clone());
                state.failed_unregister.remove(&key);
            }
            match self.backend.do_register(&url).await {
                Ok(()) => {
                    core.state().failed_register.remove(&key);
                    tracing::info!(url = %url, "registered");
                    Ok(())
                }
                Err(e) => {
                    let mut state = core.state();
                    if retryable(&e) {
                        tracing::warn!(url = %url, error = %e, "registration failed; will retry");
                        if state.registered.contains_key(&key) {
                            state.failed_register.insert(key, url);
                        }
                    } else {
                        state.registered.remove(&key);
                    }
                    Err(e)
                }
            }
        })
    }

    fn unregister(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let core = &self.core;
            if core.is_closed() {
                return Err(RegistryError::Closed);
            }
            let key = url.to_string();
            {
                let mut state = core.state();
                state.registered.remove(&key);
                state.failed_register.remove(&key);
            }
            match self.backend.do_unregister(&url).await {
                Ok(()) => {
                    core.state().failed_unregister.remove(&key);
                    tracing::info!(url = %url, "unregistered");
                    Ok(())
                }
                Err(e) => {
                    if retryable(&e) {
                        tracing::warn!(url = %url, error = %e, "unregistration failed; will retry");
                        core.state().failed_unregister.insert(key, url);
                    }
                    Err(e)
                }
            }
        })
    }

    fn subscribe(
        &self,
        url: &Url,
        listener: Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let core = &self.core;
            if core.is_closed() {
                return Err(RegistryError::Closed);
            }
            let key = url.to_string();
            let sub = {
                let mut state = core.state();
                if let Some(sub) = state.subscriptions.get(&key).cloned() {
                    drop(state);
                    // Under the delivery lock, so the late listener sees lists in order.
                    let last = lock(&sub.last);
                    lock(&sub.listeners).push(listener.clone());
                    for (_, urls) in last.values() {
                        listener.notify(urls.clone());
                    }
                    return Ok(());
                }
                let sub = Arc::new(Subscription::new(url.clone(), listener));
                state.subscriptions.insert(key.clone(), sub.clone());
                sub
            };
            match self.backend.do_subscribe(&url, core.notifier(&sub)).await {
                Ok(()) => Ok(()),
                Err(e) if retryable(&e) => {
                    tracing::warn!(url = %url, error = %e, "subscription failed; will retry");
                    core.notify_from_cache(&sub);
                    if sub.active.load(Ordering::Acquire) {
                        core.state().failed_subscribe.insert(key, sub);
                    }
                    Ok(())
                }
                Err(e) => {
                    sub.active.store(false, Ordering::Release);
                    let mut state = core.state();
                    if state
                        .subscriptions
                        .get(&key)
                        .is_some_and(|s| Arc::ptr_eq(s, &sub))
                    {
                        state.subscriptions.remove(&key);
                    }
                    Err(e)
                }
            }
        })
    }

    fn unsubscribe(
        &self,
        url: &Url,
        listener: &Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        let listener = listener.clone();
        Box::pin(async move {
            let key = url.to_string();
            let gone = {
                let mut state = self.core.state();
                let Some(sub) = state.subscriptions.get(&key).cloned() else {
                    return Ok(());
                };
                let mut listeners = lock(&sub.listeners);
                listeners.retain(|l| !Arc::ptr_eq(l, &listener));
                if listeners.is_empty() {
                    sub.active.store(false, Ordering::Release);
                    state.subscriptions.remove(&key);
                    state.failed_subscribe.remove(&key);
                    true
                } else {
                    false
                }
            };
            if gone {
                self.backend.do_unsubscribe(&url).await?;
            }
            Ok(())
        })
    }

    fn lookup(&self, url: &Url) -> BoxFuture<'_, RegistryResult<Vec<Url>>> {
        let url = url.clone();
        Box::pin(async move {
            if self.core.is_closed() {
                return Err(RegistryError::Closed);
            }
            self.backend.lookup(&url).await
        })
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let core = &self.core;
            if core.closed.send_replace(true) {
                return;
            }
            let (registered, subs) = {
                let mut state = core.state();
                state.failed_register.clear();
                state.failed_unregister.clear();
                state.failed_subscribe.clear();
                (
                    std::mem::take(&mut state.registered),
                    std::mem::take(&mut state.subscriptions),
                )
            };
            for sub in subs.values() {
                sub.active.store(false, Ordering::Release);
                if let Err(e) = self.backend.do_unsubscribe(&sub.url).await {
                    tracing::debug!(url = %sub.url, error = %e, "unsubscribe at destroy failed");
                }
            }
            for url in registered.values() {
                if let Err(e) = self.backend.do_unregister(url).await {
                    tracing::warn!(url = %url, error = %e, "unregister at destroy failed");
                }
            }
            core.cache.flush();
            self.backend.close().await;
        })
    }
}

//! The failback registry base: [`FailbackRegistry`] over a [`RegistryBackend`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdubbo_core::registry::{is_empty_url, subscribed_categories, RegistryCache};
use rdubbo_core::{BoxFuture, NotifyListener, Registry, RegistryError, RegistryResult, Url};
use tokio::sync::watch;

use crate::backend::{BackendEventStream, FailbackOptions, RegistryBackend};
use crate::notifier::{lock, Notifier, Subscription};
use crate::retry::{retry_failed, retryable, run_timer};

#[derive(Default)]
pub(crate) struct State {
    pub(crate) registered: BTreeMap<String, Url>,
    pub(crate) failed_register: BTreeMap<String, Url>,
    pub(crate) failed_unregister: BTreeMap<String, Url>,
    pub(crate) subscriptions: HashMap<String, Arc<Subscription>>,
    pub(crate) failed_subscribe: BTreeMap<String, Arc<Subscription>>,
}

/// The part of the base that does not depend on the backend.
pub(crate) struct Core {
    pub(crate) url: Url,
    pub(crate) retry_period: Duration,
    pub(crate) cache: RegistryCache,
    pub(crate) state: Mutex<State>,
    pub(crate) closed: watch::Sender<bool>,
}

impl Core {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    pub(crate) fn notifier(self: &Arc<Self>, sub: &Arc<Subscription>) -> Notifier {
        Notifier {
            core: Arc::downgrade(self),
            sub: sub.clone(),
        }
    }

    /// Answers a subscription from the cache file while the registry cannot be read.
    pub(crate) fn notify_from_cache(self: &Arc<Self>, sub: &Arc<Subscription>) {
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

    pub(crate) fn force_all(&self) {
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
/// - after [`BackendEvents::reconnected`](crate::BackendEvents::reconnected) failed operations are retried at once and the
///   full lists notified again; after [`BackendEvents::session_renewed`](crate::BackendEvents::session_renewed) everything is
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
    /// of the [`BackendEvents`](crate::BackendEvents) the backend reports with.
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

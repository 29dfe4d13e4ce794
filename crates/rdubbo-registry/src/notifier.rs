//! Delivery of a subscription's lists: placeholders, de-duplication, cache, listeners.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rdubbo_core::registry::empty_url;
use rdubbo_core::{NotifyListener, Url};

use crate::failback::Core;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Last notified list per (subscriber URL, category), with the force generation it was
/// notified at.
type LastLists = BTreeMap<(String, String), (u64, Vec<Url>)>;

/// One subscription: its listeners and what they were told last.
pub(crate) struct Subscription {
    pub(crate) url: Url,
    pub(crate) listeners: Mutex<Vec<Arc<dyn NotifyListener>>>,
    /// Last notified list per (subscriber, category), with the force generation it was
    /// notified at. Held while listeners are called, so lists reach them in order.
    pub(crate) last: Mutex<LastLists>,
    /// Bumped to make the next list of every category reach the listeners unchanged or not.
    pub(crate) force: AtomicU64,
    pub(crate) active: AtomicBool,
}

impl Subscription {
    pub(crate) fn new(url: Url, listener: Arc<dyn NotifyListener>) -> Subscription {
        Subscription {
            url,
            listeners: Mutex::new(vec![listener]),
            last: Mutex::new(BTreeMap::new()),
            force: AtomicU64::new(0),
            active: AtomicBool::new(true),
        }
    }

    pub(crate) fn listeners(&self) -> Vec<Arc<dyn NotifyListener>> {
        lock(&self.listeners).clone()
    }

    pub(crate) fn notified_anything(&self) -> bool {
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
    pub(crate) core: Weak<Core>,
    pub(crate) sub: Arc<Subscription>,
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

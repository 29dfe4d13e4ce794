//! A registry of our own: `local://<name>` keeps URLs in this process, shared by every
//! client that connects to the same name, and notifies subscribers with the whole list of a
//! category on each change (`empty://` when it empties), as rdubbo's registries do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rdubbo::registry::{empty_url, subscribed_categories};
use rdubbo::{BoxFuture, NotifyListener, Registry, RegistryResult, Url};

type Subscriber = (Url, Arc<dyn NotifyListener>);

#[derive(Default)]
struct Shared {
    urls: Mutex<Vec<Url>>,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// One client of a local registry.
pub struct LocalRegistry {
    url: Url,
    shared: Arc<Shared>,
}

/// The [`rdubbo::RegistryFactory`] of `local://`: registered in the extension table with
/// `table.add_registry("local", registry::connect)`.
pub async fn connect(url: Url) -> RegistryResult<Arc<dyn Registry>> {
    static BY_NAME: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
    let shared = BY_NAME
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(url.host().to_owned())
        .or_default()
        .clone();
    Ok(Arc::new(LocalRegistry { url, shared }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LocalRegistry {
    /// The current list of `category` for `subscription`'s interface.
    fn list(&self, subscription: &Url, category: &str) -> Vec<Url> {
        let urls: Vec<Url> = lock(&self.shared.urls)
            .iter()
            .filter(|u| u.interface() == subscription.interface() && u.category() == category)
            .cloned()
            .collect();
        if urls.is_empty() {
            vec![empty_url(subscription, category)]
        } else {
            urls
        }
    }

    /// Tells every subscriber of `changed`'s interface and category the new list.
    fn notify_all(&self, changed: &Url) {
        let subscribers: Vec<Subscriber> = lock(&self.shared.subscribers).clone();
        for (subscription, listener) in subscribers {
            let category = changed.category();
            if subscription.interface() == changed.interface()
                && subscribed_categories(&subscription)
                    .iter()
                    .any(|c| c == category)
            {
                listener.notify(self.list(&subscription, category));
            }
        }
    }
}

impl Registry for LocalRegistry {
    fn url(&self) -> &Url {
        &self.url
    }

    fn is_available(&self) -> bool {
        true
    }

    fn register(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            lock(&self.shared.urls).push(url.clone());
            self.notify_all(&url);
            Ok(())
        })
    }

    fn unregister(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            lock(&self.shared.urls).retain(|u| u.to_string() != url.to_string());
            self.notify_all(&url);
            Ok(())
        })
    }

    fn subscribe(
        &self,
        url: &Url,
        listener: Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            lock(&self.shared.subscribers).push((url.clone(), listener.clone()));
            for category in subscribed_categories(&url) {
                listener.notify(self.list(&url, &category));
            }
            Ok(())
        })
    }

    fn unsubscribe(
        &self,
        url: &Url,
        listener: &Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.to_string();
        let listener = listener.clone();
        Box::pin(async move {
            lock(&self.shared.subscribers)
                .retain(|(u, l)| !(u.to_string() == url && Arc::ptr_eq(l, &listener)));
            Ok(())
        })
    }

    fn lookup(&self, url: &Url) -> BoxFuture<'_, RegistryResult<Vec<Url>>> {
        let url = url.clone();
        Box::pin(async move {
            Ok(subscribed_categories(&url)
                .iter()
                .flat_map(|c| self.list(&url, c))
                .filter(|u| u.protocol() != "empty")
                .collect())
        })
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

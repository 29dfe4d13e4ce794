//! The config center of the in-memory registry: documents by group and key in the
//! [`MemoryStore`], shared by its clients, with watches (Dubbo's dynamic configuration,
//! so that `memory://` users and tests have governance rules).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, Weak};

use rdubbo_core::{
    BoxFuture, ConfigChange, ConfigListener, DynamicConfiguration, RegistryError, RegistryResult,
};

use super::{MemoryClient, MemoryStore};

/// The documents of a store and who watches them.
#[derive(Default)]
pub(super) struct ConfigState {
    /// (group, key) → content.
    documents: BTreeMap<(String, String), String>,
    watches: Vec<Watch>,
}

struct Watch {
    group: String,
    key: String,
    listener: Arc<dyn ConfigListener>,
    client: Weak<MemoryClient>,
}

impl MemoryStore {
    fn config_state(&self) -> MutexGuard<'_, ConfigState> {
        self.inner.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the listeners of `group`/`key` (every document when `None`) whose client is
    /// available with the current content (of `only` clients, if given). Listeners run
    /// after the lock is released.
    pub(super) fn notify_configs(&self, which: Option<(&str, &str)>, only: Option<u64>) {
        if !self.is_available() {
            return;
        }
        let calls: Vec<(Arc<dyn ConfigListener>, ConfigChange)> = {
            let state = self.config_state();
            state
                .watches
                .iter()
                .filter(|w| which.is_none_or(|(g, k)| w.group == g && w.key == k))
                .filter(|w| {
                    w.client.upgrade().is_some_and(|c| {
                        only.is_none_or(|id| id == c.id) && c.available.load(Ordering::Acquire)
                    })
                })
                .map(|w| {
                    let content = state
                        .documents
                        .get(&(w.group.clone(), w.key.clone()))
                        .cloned();
                    (
                        w.listener.clone(),
                        ConfigChange {
                            key: w.key.clone(),
                            group: w.group.clone(),
                            content,
                        },
                    )
                })
                .collect()
        };
        for (listener, change) in calls {
            listener.on_change(change);
        }
    }

    /// The document `group`/`key` of the store, if any (what every client reads).
    pub fn config(&self, key: &str, group: &str) -> Option<String> {
        self.config_state()
            .documents
            .get(&(group.to_owned(), key.to_owned()))
            .cloned()
    }
}

/// The [`DynamicConfiguration`] of one [`MemoryRegistry`](super::MemoryRegistry) client.
pub(super) struct MemoryConfig {
    pub(super) client: Arc<MemoryClient>,
}

impl MemoryConfig {
    fn store(&self) -> &MemoryStore {
        &self.client.store
    }
}

impl DynamicConfiguration for MemoryConfig {
    fn get(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<Option<String>>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            self.client.check()?;
            Ok(self.store().config(&key, &group))
        })
    }

    fn publish(&self, key: &str, group: &str, content: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group, content) = (key.to_owned(), group.to_owned(), content.to_owned());
        Box::pin(async move {
            self.client.check()?;
            if key.is_empty() || group.is_empty() {
                return Err(RegistryError::Invalid(
                    "a config document needs a key and a group".into(),
                ));
            }
            self.store()
                .config_state()
                .documents
                .insert((group.clone(), key.clone()), content);
            self.store().notify_configs(Some((&group, &key)), None);
            Ok(())
        })
    }

    fn remove(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            self.client.check()?;
            let removed = self
                .store()
                .config_state()
                .documents
                .remove(&(group.clone(), key.clone()))
                .is_some();
            if removed {
                self.store().notify_configs(Some((&group, &key)), None);
            }
            Ok(())
        })
    }

    fn watch(
        &self,
        key: &str,
        group: &str,
        listener: Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            self.client.check()?;
            let content = {
                let mut state = self.store().config_state();
                state.watches.push(Watch {
                    group: group.clone(),
                    key: key.clone(),
                    listener: listener.clone(),
                    client: Arc::downgrade(&self.client),
                });
                state.documents.get(&(group.clone(), key.clone())).cloned()
            };
            listener.on_change(ConfigChange {
                key,
                group,
                content,
            });
            Ok(())
        })
    }

    fn unwatch(
        &self,
        key: &str,
        group: &str,
        listener: &Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        let listener = listener.clone();
        Box::pin(async move {
            let id = self.client.id;
            self.store().config_state().watches.retain(|w| {
                !(w.group == group
                    && w.key == key
                    && Arc::ptr_eq(&w.listener, &listener)
                    && w.client.upgrade().is_some_and(|c| c.id == id))
            });
            Ok(())
        })
    }

    fn keys(&self, group: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>> {
        let group = group.to_owned();
        Box::pin(async move {
            self.client.check()?;
            Ok(self
                .store()
                .config_state()
                .documents
                .keys()
                .filter(|(g, _)| *g == group)
                .map(|(_, k)| k.clone())
                .collect())
        })
    }
}

impl Drop for MemoryConfig {
    fn drop(&mut self) {
        let id = self.client.id;
        self.store()
            .config_state()
            .watches
            .retain(|w| w.client.upgrade().is_some_and(|c| c.id != id));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use rdubbo_core::Registry;

    use super::*;

    #[tokio::test]
    async fn clients_share_documents_and_watches_see_changes() {
        let store = MemoryStore::new();
        let writer = store.connect(Duration::from_secs(1));
        let reader = store.connect(Duration::from_secs(1));
        let (w, r) = (
            writer.dynamic_configuration().unwrap(),
            reader.dynamic_configuration().unwrap(),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let listener: Arc<dyn ConfigListener> =
            Arc::new(move |c: ConfigChange| sink.lock().unwrap().push(c.content));
        r.watch("web.configurators", "dubbo", listener.clone())
            .await
            .unwrap();
        w.publish("web.configurators", "dubbo", "a: 1")
            .await
            .unwrap();
        w.publish("other", "dubbo", "x").await.unwrap();
        assert_eq!(
            r.get("web.configurators", "dubbo")
                .await
                .unwrap()
                .as_deref(),
            Some("a: 1")
        );
        assert_eq!(
            r.get("web.configurators", "other-group").await.unwrap(),
            None
        );
        let mut keys = r.keys("dubbo").await.unwrap();
        keys.sort();
        assert_eq!(keys, ["other", "web.configurators"]);
        // Cut off: operations fail, changes are not seen; back: the current content.
        reader.set_available(false);
        assert!(r.get("other", "dubbo").await.is_err());
        w.publish("web.configurators", "dubbo", "a: 2")
            .await
            .unwrap();
        reader.set_available(true);
        w.remove("web.configurators", "dubbo").await.unwrap();
        w.remove("web.configurators", "dubbo").await.unwrap();
        r.unwatch("web.configurators", "dubbo", &listener)
            .await
            .unwrap();
        w.publish("web.configurators", "dubbo", "a: 3")
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [None, Some("a: 1".to_owned()), Some("a: 2".to_owned()), None]
        );
        assert_eq!(
            store.config("web.configurators", "dubbo").as_deref(),
            Some("a: 3")
        );
    }
}

//! A directory following its rule documents in a config center, with the keys Java's
//! consumer listens to (group `dubbo`):
//!
//! - `<consumer-app>.configurators` and `<interface>:<version>:<group>.configurators`;
//! - `<interface>:<version>:<group>.condition-router` and
//!   `<consumer-app>.condition-router`;
//! - `<provider-app>.tag-router` and `<provider-app>.condition-router`, the provider
//!   application being the `application` of the first provider (Java: the first
//!   invoker's `remote.application`), followed as the provider list changes.

use std::sync::{Arc, Mutex, Weak};

use rdubbo_core::config_center::DEFAULT_GROUP;
use rdubbo_core::url::keys;
use rdubbo_core::{ConfigChange, ConfigListener, DynamicConfiguration};

use super::{service_rule_key, RuleKind};
use crate::Directory;

/// The watches of one directory.
pub(crate) struct RuleWatch {
    config: Arc<dyn DynamicConfiguration>,
    /// (key, listener) of every watch in place.
    watches: Mutex<Vec<(String, Arc<dyn ConfigListener>)>>,
    /// The provider application whose documents are watched, and their watches.
    provider_app: Mutex<Option<String>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RuleWatch {
    /// Reads the document `kind`/`name` once (so it is in force when this returns),
    /// then watches it.
    async fn follow(&self, directory: &Arc<Directory>, kind: RuleKind, name: &str) {
        let key = kind.key(name);
        match self.config.get(&key, DEFAULT_GROUP).await {
            Ok(content) => {
                let _ = directory.update_rule_document(kind, &key, content.as_deref());
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot read a rule document; watching it")
            }
        }
        let weak: Weak<Directory> = Arc::downgrade(directory);
        let listener: Arc<dyn ConfigListener> = Arc::new(move |change: ConfigChange| {
            if let Some(directory) = weak.upgrade() {
                let _ =
                    directory.update_rule_document(kind, &change.key, change.content.as_deref());
            }
        });
        match self
            .config
            .watch(&key, DEFAULT_GROUP, listener.clone())
            .await
        {
            Ok(()) => lock(&self.watches).push((key, listener)),
            Err(e) => tracing::warn!(key, error = %e, "cannot watch a rule document"),
        }
    }

    async fn unfollow(&self, key: &str) {
        let removed: Vec<Arc<dyn ConfigListener>> = {
            let mut watches = lock(&self.watches);
            let (gone, kept) = watches.drain(..).partition(|(k, _)| k == key);
            *watches = kept;
            gone.into_iter().map(|(_, l)| l).collect()
        };
        for listener in removed {
            let _ = self.config.unwatch(key, DEFAULT_GROUP, &listener).await;
        }
    }

    /// Moves the provider-application watches to the application of the current
    /// providers, when it changed.
    async fn follow_provider_app(&self, directory: &Arc<Directory>) {
        let current = directory
            .providers()
            .first()
            .and_then(|p| p.url.param_non_empty(keys::APPLICATION).map(str::to_owned));
        let previous = {
            let mut app = lock(&self.provider_app);
            if *app == current {
                return;
            }
            std::mem::replace(&mut *app, current.clone())
        };
        if let Some(old) = previous {
            for kind in [RuleKind::Tags, RuleKind::ProviderAppConditions] {
                let key = kind.key(&old);
                self.unfollow(&key).await;
                let _ = directory.update_rule_document(kind, &key, None);
            }
        }
        if let Some(app) = current {
            for kind in [RuleKind::Tags, RuleKind::ProviderAppConditions] {
                self.follow(directory, kind, &app).await;
            }
        }
    }
}

impl Directory {
    /// Follows the rule documents of this consumer in `config` (Dubbo's config center;
    /// `None`: nothing to follow): each is read once before this returns, then watched,
    /// and applied with [`update_rule_document`](Self::update_rule_document). The
    /// provider application's tag and condition documents follow the provider list.
    /// Must be called inside a Tokio runtime; [`unwatch_rules`](Self::unwatch_rules)
    /// stops.
    pub async fn watch_rules(self: &Arc<Self>, config: Option<Arc<dyn DynamicConfiguration>>) {
        let Some(config) = config else {
            return;
        };
        let watch = Arc::new(RuleWatch {
            config,
            watches: Mutex::new(Vec::new()),
            provider_app: Mutex::new(None),
            task: Mutex::new(None),
        });
        {
            let mut slot = lock(&self.rule_watch);
            if slot.is_some() {
                return;
            }
            *slot = Some(watch.clone());
        }
        let service = service_rule_key(self.consumer());
        let application = self
            .consumer()
            .param_non_empty(keys::APPLICATION)
            .map(str::to_owned);
        if let Some(app) = &application {
            watch.follow(self, RuleKind::AppConfigurators, app).await;
        }
        watch
            .follow(self, RuleKind::ServiceConfigurators, &service)
            .await;
        watch
            .follow(self, RuleKind::ServiceConditions, &service)
            .await;
        if let Some(app) = &application {
            watch.follow(self, RuleKind::AppConditions, app).await;
        }
        watch.follow_provider_app(self).await;
        let weak = Arc::downgrade(self);
        let mut updates = self.subscribe_updates();
        let follower = watch.clone();
        let task = tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let Some(directory) = weak.upgrade() else {
                    return;
                };
                follower.follow_provider_app(&directory).await;
            }
        });
        *lock(&watch.task) = Some(task);
    }

    /// Stops following the rule documents (the rules in force stay).
    pub async fn unwatch_rules(&self) {
        let Some(watch) = lock(&self.rule_watch).take() else {
            return;
        };
        if let Some(task) = lock(&watch.task).take() {
            task.abort();
        }
        let watches: Vec<(String, Arc<dyn ConfigListener>)> =
            lock(&watch.watches).drain(..).collect();
        for (key, listener) in watches {
            let _ = watch.config.unwatch(&key, DEFAULT_GROUP, &listener).await;
        }
    }
}

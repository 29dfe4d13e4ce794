//! One provider URL in its registries, following its `override://` rules (Java's
//! provider-side configurators), and the dynamic settings those rules make.
//!
//! Where a registry has a config center, the URL also follows the configurator documents
//! Java's provider listens to (group `dubbo`): `<application>.configurators` and
//! `<interface>:<version>:<group>.configurators`, applied after the registry's rules
//! (Java's order) with their `side: provider` items; a malformed document is logged and
//! ignored (the previous rules stay), a deleted one removed. In the registries that take
//! only the application instance the URL is not registered: there it follows the
//! configurator documents only (as Java's), and a change is told to
//! [`Registration::on_change`]'s callback, which republishes the application metadata.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use crate::cluster::configurator;
use crate::cluster::filter::Filter;
use crate::cluster::rules::{self, ConfiguratorRule, RuleKind};
use crate::{
    BoxFuture, ConfigChange, ConfigListener, Invocation, Invoker, NotifyListener, Registry, Reply,
    RpcError, RpcResult, Url,
};

/// The parameters dynamic configuration (`override://` rules) sets on one exported
/// service right now, read by its calls (a `timeout`).
#[derive(Default)]
pub(crate) struct Dynamic {
    /// Fast path: whether any rule sets anything.
    any: AtomicBool,
    set: RwLock<Vec<(String, String)>>,
}

impl Dynamic {
    fn replace(&self, set: Vec<(String, String)>) {
        let any = !set.is_empty();
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = set;
        self.any.store(any, Ordering::Release);
    }

    /// The `timeout` (ms) rules set for `method` (`methods.<m>.timeout`, `<m>.timeout`,
    /// then `timeout`).
    fn timeout(&self, method: &str) -> Option<Duration> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        configurator::lookup(&set, method, "timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(Duration::from_millis)
    }
}

/// Bounds a call by the `timeout` dynamic configuration set (when it set one): the call
/// gets the shorter of that and its own deadline, and a call past it ends with a timeout.
pub(crate) struct DynamicTimeout {
    pub(crate) dynamic: Arc<Dynamic>,
}

impl Filter for DynamicTimeout {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        mut invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        let Some(limit) = self.dynamic.timeout(&invocation.method) else {
            return next.invoke(invocation);
        };
        let limit = invocation.timeout.map_or(limit, |t| t.min(limit));
        invocation.timeout = Some(limit);
        Box::pin(async move {
            tokio::time::timeout(limit, next.invoke(invocation))
                .await
                .unwrap_or(Err(RpcError::Timeout(limit)))
        })
    }
}

/// How long the start waits for a registry's first configurators list before registering
/// (so that a URL with a standing override is registered once, configured).
const FIRST_RULES_WAIT: Duration = Duration::from_secs(2);

/// One provider URL in its registries, following its `override://` rules.
pub(crate) struct Registration {
    /// The URL as built, without dynamic configuration.
    url: Url,
    dynamic: Arc<Dynamic>,
    online: AtomicBool,
    slots: Vec<Slot>,
    /// Called when the configured URL may have changed.
    on_change: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

/// The registration of one URL in one registry.
struct Slot {
    registry: Arc<dyn Registry>,
    /// Whether the URL is registered there (else only its documents are followed).
    register: bool,
    /// `provider://…&category=configurators&check=false`.
    subscribe_url: Url,
    listener: Mutex<Option<Arc<dyn NotifyListener>>>,
    /// The rules last notified (`None` before the first notification).
    rules: Mutex<Option<Vec<Url>>>,
    notified: tokio::sync::watch::Sender<bool>,
    /// What this registry holds now; the lock orders the changes.
    registered: tokio::sync::Mutex<Option<Url>>,
    /// The configurator documents of the registry's config center.
    documents: Mutex<Documents>,
}

/// The configurator documents one registry's config center holds for the URL, and the
/// watches on them.
#[derive(Default)]
struct Documents {
    app: Vec<ConfiguratorRule>,
    service: Vec<ConfiguratorRule>,
    watches: Vec<(String, Arc<dyn ConfigListener>)>,
    /// The last text of each document (`None`: deleted).
    texts: std::collections::HashMap<RuleKind, Option<String>>,
}

impl Registration {
    /// `url` in `registries`, also following the configurator documents of the config
    /// centers of `followed` (registries the URL is not registered in).
    pub(crate) fn with_followed(
        url: Url,
        registries: Vec<Arc<dyn Registry>>,
        followed: Vec<Arc<dyn Registry>>,
        dynamic: Arc<Dynamic>,
    ) -> Arc<Registration> {
        let subscribe_url = configurators_url(&url);
        let registries = registries.into_iter().map(|r| (r, true));
        let followed = followed.into_iter().map(|r| (r, false));
        Arc::new(Registration {
            url,
            dynamic,
            online: AtomicBool::new(false),
            on_change: Mutex::new(None),
            slots: registries
                .chain(followed)
                .map(|(registry, register)| Slot {
                    registry,
                    register,
                    subscribe_url: subscribe_url.clone(),
                    listener: Mutex::new(None),
                    rules: Mutex::new(None),
                    notified: tokio::sync::watch::channel(false).0,
                    registered: tokio::sync::Mutex::new(None),
                    documents: Mutex::new(Documents::default()),
                })
                .collect(),
        })
    }

    /// Calls `f` whenever dynamic configuration may have changed the configured URL.
    pub(crate) fn on_change(&self, f: Arc<dyn Fn() + Send + Sync>) {
        *lock(&self.on_change) = Some(f);
    }

    fn changed(&self) {
        let f = lock(&self.on_change).clone();
        if let Some(f) = f {
            f();
        }
    }

    /// The URL with the rules of every registry applied (registry order).
    pub(crate) fn configured(&self) -> Url {
        sort_params(&self.configure(&self.slots.iter().collect::<Vec<_>>()).0)
    }

    /// The URL for one registry: its own rules applied.
    fn configured_in(&self, slot: &Slot) -> Url {
        sort_params(&self.configure(&[slot]).0)
    }

    /// The URL and the parameters set by the rules of `slots`: their registry rules,
    /// then their application documents, then their service documents.
    fn configure(&self, slots: &[&Slot]) -> (Url, Vec<(String, String)>) {
        let registry: Vec<Url> = slots
            .iter()
            .flat_map(|s| lock(&s.rules).clone().unwrap_or_default())
            .collect();
        let (url, mut set) = configurator::configure_provider(&self.url, &registry);
        let (mut app, mut service) = (Vec::new(), Vec::new());
        for slot in slots {
            let documents = lock(&slot.documents);
            app.extend(documents.app.iter().cloned());
            service.extend(documents.service.iter().cloned());
        }
        if app.is_empty() && service.is_empty() {
            return (url, set);
        }
        let (url, more) = configurator::configure_provider_layers(&url, &[&app, &service]);
        for (k, v) in more {
            set.retain(|(key, _)| *key != k);
            set.push((k, v));
        }
        (url, set)
    }

    /// Reads and watches the configurator documents of the URL in the config center of
    /// registry `i`, if it has one.
    async fn follow_documents(self: &Arc<Self>, i: usize) {
        let slot = &self.slots[i];
        let Some(config) = slot.registry.dynamic_configuration() else {
            return;
        };
        let mut names = Vec::new();
        if let Some(app) = self.url.param_non_empty("application") {
            names.push((RuleKind::AppConfigurators, app.to_owned()));
        }
        names.push((
            RuleKind::ServiceConfigurators,
            rules::service_rule_key(&self.url),
        ));
        for (kind, name) in names {
            let key = kind.key(&name);
            let group = crate::config_center::DEFAULT_GROUP;
            match config.get(&key, group).await {
                Ok(content) => self.document(i, kind, &key, content.as_deref(), None),
                Err(e) => tracing::warn!(key, error = %e, "cannot read a configurator document"),
            }
            let weak: Weak<Registration> = Arc::downgrade(self);
            // Config centers may call listeners outside the runtime (a client thread).
            let runtime = tokio::runtime::Handle::current();
            let listener: Arc<dyn ConfigListener> = Arc::new(move |change: ConfigChange| {
                if let Some(registration) = weak.upgrade() {
                    let key = change.key.as_str();
                    let content = change.content.as_deref();
                    registration.document(i, kind, key, content, Some(&runtime));
                }
            });
            match config.watch(&key, group, listener.clone()).await {
                Ok(()) => lock(&slot.documents).watches.push((key, listener)),
                Err(e) => tracing::warn!(key, error = %e, "cannot watch a configurator document"),
            }
        }
    }

    /// A new version of a configurator document (`None`: deleted) from registry `i`;
    /// with a runtime, registered again as configured (on that runtime).
    fn document(
        self: &Arc<Self>,
        i: usize,
        kind: RuleKind,
        key: &str,
        content: Option<&str>,
        reconcile: Option<&tokio::runtime::Handle>,
    ) {
        let content = content.filter(|c| !c.trim().is_empty());
        {
            // The same text again (a re-read, a reconnect): nothing to do.
            let mut documents = lock(&self.slots[i].documents);
            let text = content.map(str::to_owned);
            if documents.texts.get(&kind) == Some(&text)
                || (text.is_none() && !documents.texts.contains_key(&kind))
            {
                documents.texts.insert(kind, text);
                return;
            }
            documents.texts.insert(kind, text);
        }
        let parsed = match content.map(rules::parse_configurators) {
            None => Vec::new(),
            Some(Ok(parsed)) if !parsed.is_empty() => parsed,
            Some(Ok(_)) => {
                tracing::error!(
                    key,
                    "ignoring a configurator document without rules; the previous rules stay"
                );
                return;
            }
            Some(Err(e)) => {
                tracing::error!(key, error = %e, "ignoring a malformed configurator document; the previous rules stay");
                return;
            }
        };
        {
            let mut documents = lock(&self.slots[i].documents);
            if kind == RuleKind::AppConfigurators {
                documents.app = parsed;
            } else {
                documents.service = parsed;
            }
        }
        tracing::info!(
            key,
            deleted = content.is_none(),
            "configurator document applied"
        );
        self.dynamic
            .replace(self.configure(&self.slots.iter().collect::<Vec<_>>()).1);
        self.changed();
        if let Some(runtime) = reconcile {
            let registration = self.clone();
            runtime.spawn(async move { registration.reconcile(i).await });
        }
    }

    /// Subscribes to the configurators of the URL in every registry, and waits a moment
    /// for the first lists of the registries that are connected.
    pub(crate) async fn subscribe(self: &Arc<Self>) {
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.register {
                // Java's provider subscribes to `override://` rules in the registries it
                // registers its URL in only.
                slot.notified.send_replace(true);
                self.follow_documents(i).await;
                continue;
            }
            let weak: Weak<Registration> = Arc::downgrade(self);
            let listener: Arc<dyn NotifyListener> = Arc::new(move |urls: Vec<Url>| {
                if let Some(registration) = weak.upgrade() {
                    registration.notified(i, urls);
                }
            });
            *lock(&slot.listener) = Some(listener.clone());
            if let Err(e) = slot.registry.subscribe(&slot.subscribe_url, listener).await {
                tracing::warn!(url = %slot.subscribe_url, error = %e, "cannot follow the configurators");
            }
            self.follow_documents(i).await;
        }
        let deadline = tokio::time::Instant::now() + FIRST_RULES_WAIT;
        for slot in &self.slots {
            if !slot.registry.is_available() {
                continue;
            }
            let mut rx = slot.notified.subscribe();
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|n| *n)).await;
        }
    }

    /// A new configurators list from registry `i`.
    fn notified(self: Arc<Self>, i: usize, urls: Vec<Url>) {
        let rules: Vec<Url> = urls
            .into_iter()
            .filter(|u| matches!(u.protocol(), "override" | "absent"))
            .collect();
        let slot = &self.slots[i];
        *lock(&slot.rules) = Some(rules);
        self.dynamic
            .replace(self.configure(&self.slots.iter().collect::<Vec<_>>()).1);
        slot.notified.send_replace(true);
        self.changed();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { self.reconcile(i).await });
        }
    }

    /// Registers (`true`) or unregisters the URL everywhere; false when it already was.
    pub(crate) async fn set_online(&self, online: bool) -> bool {
        if self.online.swap(online, Ordering::SeqCst) == online {
            return false;
        }
        for i in 0..self.slots.len() {
            self.reconcile(i).await;
        }
        true
    }

    /// Unregisters and stops following the configurators.
    pub(crate) async fn close(&self) {
        lock(&self.on_change).take();
        self.set_online(false).await;
        for slot in &self.slots {
            let listener = lock(&slot.listener).take();
            if let Some(listener) = listener {
                let _ = slot
                    .registry
                    .unsubscribe(&slot.subscribe_url, &listener)
                    .await;
            }
            let watches = std::mem::take(&mut lock(&slot.documents).watches);
            if let Some(config) = slot.registry.dynamic_configuration() {
                for (key, listener) in watches {
                    let group = crate::config_center::DEFAULT_GROUP;
                    let _ = config.unwatch(&key, group, &listener).await;
                }
            }
        }
    }

    /// Brings registry `i` to what it should hold: nothing when offline, else the URL
    /// with its rules. A change unregisters the old URL, then registers the new one (the
    /// order Java uses; a registry keyed by address, such as Nacos, needs it).
    async fn reconcile(&self, i: usize) {
        let slot = &self.slots[i];
        let mut registered = slot.registered.lock().await;
        let desired =
            (slot.register && self.online.load(Ordering::SeqCst)).then(|| self.configured_in(slot));
        if *registered == desired {
            return;
        }
        if let Some(old) = registered.take() {
            if let Err(e) = slot.registry.unregister(&old).await {
                tracing::warn!(url = %old, error = %e, "unregister failed");
            }
        }
        if let Some(new) = &desired {
            if new != &self.url {
                tracing::info!(url = %new, "registering the provider URL as configured by override rules");
            }
            if let Err(e) = slot.registry.register(new).await {
                tracing::warn!(url = %new, error = %e, "registration failed; retrying in the background");
            }
        }
        *registered = desired;
    }
}

/// What a Java provider subscribes to for its overrides: its URL with the scheme
/// `provider` and `category=configurators&check=false`.
fn configurators_url(url: &Url) -> Url {
    let mut sub = url.clone();
    sub.set_protocol("provider");
    sub.set_param("category", "configurators");
    sub.set_param("check", "false");
    sub
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `url` with its parameters sorted by key, as Java Dubbo writes URLs (also after an
/// override added some).
pub(crate) fn sort_params(url: &Url) -> Url {
    let mut params: Vec<(&str, &str)> = url.params().collect();
    if params.windows(2).all(|w| w[0].0 <= w[1].0) {
        return url.clone();
    }
    params.sort_by(|a, b| a.0.cmp(b.0));
    let mut sorted = Url::new(url.protocol(), url.host(), url.port(), url.path());
    sorted.set_credentials(url.username(), url.password());
    for (k, v) in params {
        sorted.set_param(k, v);
    }
    sorted
}

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rdubbo_core::registry::is_empty_url;
use rdubbo_core::url::keys;
use rdubbo_core::{layered, Invocation, Invoker, Layer, NotifyListener, Protocol, Url};
use tokio::sync::watch;

use crate::route::{Routed, Rules, Snapshot};
use crate::rules::{ConfiguratorRule, RuleError, RuleKind, TagRule};
use crate::{configurator, router, rules, CallStats, Extensions, Health};

/// One provider of a directory: its URL, an invoker calling it, and its health.
pub struct Provider {
    /// The provider URL as registered.
    pub url: Url,
    /// Calls this provider: the protocol's invoker inside the directory's attempt layers.
    pub invoker: Arc<dyn Invoker>,
    /// Outlier detection state (kept while the provider stays in the list).
    pub health: Arc<Health>,
    /// Calls in flight, successes, failures, latency.
    pub stats: Arc<CallStats>,
    /// The registered URL as a string: identity of the provider across notifications.
    pub key: String,
    /// Parameters set by `override://` rules (see [`configurator`](crate::configurator)).
    pub overrides: Vec<(String, String)>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("url", &self.url.to_string())
            .finish()
    }
}

/// The live provider list of one service reference.
///
/// Register it as the [`NotifyListener`] of a subscription with the consumer URL; it keeps
/// only `providers` URLs that match the consumer (interface, group, version, enabled) and
/// whose protocol (URL scheme) is in its [`Extensions`] table. Invokers of providers that
/// stay in the list are reused across notifications, so connection pools and health
/// survive updates.
///
/// Attempt layers ([`with_extensions`](Directory::with_extensions)) wrap the invoker of
/// each provider once, when the directory creates it: they run inside the cluster, once
/// per attempt, and see which provider the attempt went to (a failover retry runs them
/// again, around the next provider).
///
/// Routing is precomputed per version of the list, configurators and rules (tag groups,
/// which providers each condition rule keeps); a call reads the routed list of its route
/// ([`Routed`]) without copying it.
pub struct Directory {
    consumer: Url,
    extensions: Arc<Extensions>,
    attempt_layers: Vec<Arc<dyn Layer>>,
    /// The current version: providers and routing.
    snapshot: ArcSwap<Snapshot>,
    /// Condition rules from the `routers` category.
    routers: Mutex<Vec<router::ConditionRule>>,
    /// Rules from the documents of a config center.
    documents: Mutex<Documents>,
    /// The watches of those documents (see [`Directory::watch_rules`]).
    pub(crate) rule_watch: Mutex<Option<Arc<rules::watch::RuleWatch>>>,
    /// Providers of this directory with failures on record (see [`Health`]).
    marked: Arc<AtomicUsize>,
    /// Last notified provider URLs and configurators.
    raw: Mutex<(Vec<Url>, Vec<Url>)>,
    /// Bumped on every update of the provider list; the first update marks readiness.
    updates: watch::Sender<u64>,
    update_lock: Mutex<()>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("consumer", &self.consumer.to_string())
            .field("providers", &self.snapshot.load().all.len())
            .finish()
    }
}

impl Directory {
    /// An empty directory for `consumer` (its interface, group and version select the
    /// providers) speaking `protocols` (the first of two with one name wins), with the
    /// built-in balancers and strategies
    /// ([`Extensions::with_cluster_builtins`]) and no attempt layers.
    pub fn new(consumer: Url, protocols: Vec<Arc<dyn Protocol>>) -> Arc<Directory> {
        let mut extensions = Extensions::with_cluster_builtins();
        for protocol in protocols.into_iter().rev() {
            extensions.add_protocol(protocol);
        }
        Directory::with_extensions(consumer, Arc::new(extensions), Vec::new())
    }

    /// An empty directory for `consumer` speaking the protocols of `extensions`, each
    /// provider's invoker wrapped in `attempt_layers` (the first is the outermost).
    pub fn with_extensions(
        consumer: Url,
        extensions: Arc<Extensions>,
        attempt_layers: Vec<Arc<dyn Layer>>,
    ) -> Arc<Directory> {
        let marked = Arc::new(AtomicUsize::new(0));
        Arc::new(Directory {
            snapshot: ArcSwap::from_pointee(Snapshot::empty(consumer.clone(), marked.clone())),
            consumer,
            extensions,
            attempt_layers,
            marked,
            raw: Mutex::new((Vec::new(), Vec::new())),
            routers: Mutex::new(Vec::new()),
            documents: Mutex::new(Documents::default()),
            rule_watch: Mutex::new(None),
            updates: watch::channel(0).0,
            update_lock: Mutex::new(()),
        })
    }

    /// The consumer URL.
    pub fn consumer(&self) -> &Url {
        &self.consumer
    }

    /// The extension table the directory was made with.
    pub fn extensions(&self) -> &Arc<Extensions> {
        &self.extensions
    }

    /// The service key of the reference.
    pub fn service_key(&self) -> String {
        self.consumer.service_key()
    }

    /// The current providers.
    pub fn providers(&self) -> Arc<Vec<Arc<Provider>>> {
        self.snapshot.load().all.clone()
    }

    /// The providers for one call: the current list after tag routing and the condition
    /// rules. Calls routed the same way (same tag, same rules applying to their method)
    /// share one list, computed once per version of the directory.
    pub fn list(&self, invocation: &Invocation) -> Routed {
        self.snapshot.load().route(invocation)
    }

    /// How many providers of the directory have failures on record (an upper bound of
    /// those ejected now).
    pub(crate) fn marked(&self) -> usize {
        self.marked.load(Ordering::Acquire)
    }

    /// Replaces the condition rules (the full `routers` category); malformed rules are
    /// reported and ignored.
    pub fn update_routers(&self, urls: &[Url]) {
        let _guard = self.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        let rules = router::parse_routers(urls);
        tracing::info!(service = %self.service_key(), rules = rules.len(), "router rules updated");
        *self.routers.lock().unwrap_or_else(|e| e.into_inner()) = rules;
        let current = self.snapshot.load_full();
        self.snapshot
            .store(Arc::new(current.with_rules(&self.current_rules())));
    }

    /// The condition rules (registry `routers`, then the service's, the provider
    /// application's and the consumer application's documents) and the tag rule.
    fn current_rules(&self) -> Rules {
        let mut conditions = self
            .routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        conditions.extend(documents.service_conditions.iter().cloned());
        conditions.extend(documents.provider_app_conditions.iter().cloned());
        conditions.extend(documents.app_conditions.iter().cloned());
        Rules {
            conditions,
            tags: documents.tags.clone(),
        }
    }

    /// Takes a new version of a rule document of a config center (`content`; `None` once
    /// deleted) and applies it, as Java Dubbo does: configurators change the providers'
    /// parameters (after the registry's `override://` rules: the application's document,
    /// then the service's), condition rules and the tag rule route calls.
    ///
    /// A document that cannot be read is logged with `key` and ignored: the rules it
    /// would have replaced stay in force (so does Java). A deleted document removes its
    /// rules. Returns the error of a malformed document.
    pub fn update_rule_document(
        &self,
        kind: RuleKind,
        key: &str,
        content: Option<&str>,
    ) -> Result<(), RuleError> {
        let _guard = self.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        let content = content.filter(|c| !c.trim().is_empty());
        {
            // The same text again (a re-read, a reconnect): nothing to do.
            let documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
            if documents
                .texts
                .get(&kind)
                .map(|t| t.as_deref())
                .unwrap_or(None)
                == content
            {
                return Ok(());
            }
        }
        let result = self.read_document(kind, content);
        if let Err(e) = &result {
            tracing::error!(
                key,
                service = %self.service_key(),
                error = %e,
                "ignoring a malformed rule; the previous rule stays in force"
            );
            return result;
        }
        tracing::info!(key, service = %self.service_key(), deleted = content.is_none(), "rule document applied");
        match kind {
            RuleKind::AppConfigurators | RuleKind::ServiceConfigurators => {
                let (urls, rules) = {
                    let raw = self.raw.lock().unwrap_or_else(|e| e.into_inner());
                    (raw.0.clone(), raw.1.clone())
                };
                if !urls.is_empty() || self.updates() > 0 {
                    self.rebuild(&urls, &rules);
                }
            }
            _ => {
                let current = self.snapshot.load_full();
                self.snapshot
                    .store(Arc::new(current.with_rules(&self.current_rules())));
            }
        }
        result
    }

    /// Parses `content` into the rules of `kind` (nothing changes on an error).
    fn read_document(&self, kind: RuleKind, content: Option<&str>) -> Result<(), RuleError> {
        let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        documents.texts.insert(kind, content.map(str::to_owned));
        match kind {
            RuleKind::AppConfigurators | RuleKind::ServiceConfigurators => {
                let parsed = match content {
                    Some(text) => rules::parse_configurators(text)?,
                    None => Vec::new(),
                };
                // Java keeps the previous configurators when a document yields none.
                if content.is_some() && parsed.is_empty() {
                    return Err(RuleError {
                        reason: "the document has no configurator".into(),
                    });
                }
                if kind == RuleKind::AppConfigurators {
                    documents.app_configurators = parsed;
                } else {
                    documents.service_configurators = parsed;
                }
            }
            RuleKind::ServiceConditions
            | RuleKind::ProviderAppConditions
            | RuleKind::AppConditions => {
                let parsed = match content {
                    Some(text) => {
                        let rule = rules::parse_condition_router(text)?;
                        if rule.enabled {
                            rule.rules
                        } else {
                            Vec::new()
                        }
                    }
                    None => Vec::new(),
                };
                match kind {
                    RuleKind::ServiceConditions => documents.service_conditions = parsed,
                    RuleKind::ProviderAppConditions => documents.provider_app_conditions = parsed,
                    _ => documents.app_conditions = parsed,
                }
            }
            RuleKind::Tags => {
                documents.tags = match content {
                    Some(text) => Some(Arc::new(rules::parse_tag_rule(text)?)),
                    None => None,
                };
            }
        }
        Ok(())
    }

    /// How many provider lists were received so far.
    pub fn updates(&self) -> u64 {
        *self.updates.borrow()
    }

    /// A receiver that changes on every provider list update.
    pub fn subscribe_updates(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// Waits until the first provider list arrived (true) or `timeout` passed (false).
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.updates.subscribe();
        tokio::time::timeout(
            timeout,
            async move { rx.wait_for(|n| *n > 0).await.is_ok() },
        )
        .await
        .unwrap_or(false)
    }

    /// Replaces the provider list with `urls` (the full `providers` category).
    pub fn update(&self, urls: &[Url]) {
        let _guard = self.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        let rules = {
            let mut raw = self.raw.lock().unwrap_or_else(|e| e.into_inner());
            raw.0 = urls.to_vec();
            raw.1.clone()
        };
        self.rebuild(urls, &rules);
    }

    /// Replaces the `override://` rules (the full `configurators` category) and applies
    /// them to the current providers.
    pub fn update_configurators(&self, rules: &[Url]) {
        let _guard = self.update_lock.lock().unwrap_or_else(|e| e.into_inner());
        let urls = {
            let mut raw = self.raw.lock().unwrap_or_else(|e| e.into_inner());
            raw.1 = rules.iter().filter(|u| !is_empty_url(u)).cloned().collect();
            raw.0.clone()
        };
        if !urls.is_empty() || self.updates() > 0 {
            self.rebuild(&urls, rules);
        }
    }

    fn rebuild(&self, urls: &[Url], rules: &[Url]) {
        let documents = self
            .documents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let previous = self.snapshot.load_full();
        let current = previous.all.clone();
        let mut by_key: HashMap<&str, &Arc<Provider>> =
            current.iter().map(|p| (p.key.as_str(), p)).collect();
        let mut next = Vec::with_capacity(urls.len());
        for url in urls {
            if is_empty_url(url) {
                continue;
            }
            if !self.consumer.matches_provider(url) || !url.param_bool(keys::ENABLED, true) {
                continue;
            }
            let (configured, overrides) = configure(url, rules, &documents, &self.consumer);
            if configured.param_bool("disabled", false) {
                tracing::info!(provider = %url.address(), "provider disabled by a configurator");
                continue;
            }
            let key = url.to_string();
            if let Some(existing) = by_key.remove(key.as_str()) {
                if existing.overrides == overrides {
                    next.push(existing.clone());
                } else {
                    next.push(Arc::new(Provider {
                        url: configured,
                        invoker: existing.invoker.clone(),
                        health: existing.health.clone(),
                        stats: existing.stats.clone(),
                        key,
                        overrides,
                    }));
                }
                continue;
            }
            let Some(protocol) = self.extensions.protocol(url.protocol()) else {
                tracing::debug!(url = %url, "ignoring a provider of a protocol this consumer does not speak");
                continue;
            };
            match protocol.refer(url) {
                Ok(invoker) => next.push(Arc::new(Provider {
                    url: configured,
                    invoker: layered(invoker, &self.attempt_layers),
                    health: Arc::new(Health::counted(self.marked.clone())),
                    stats: Arc::default(),
                    key,
                    overrides,
                })),
                Err(e) => tracing::warn!(url = %url, error = %e, "ignoring a provider URL"),
            }
        }
        if next.is_empty() {
            tracing::warn!(service = %self.service_key(), "no provider for {}", self.service_key());
        } else {
            tracing::info!(service = %self.service_key(), providers = next.len(), "provider list updated");
        }
        self.snapshot.store(Arc::new(Snapshot::build(
            self.consumer.clone(),
            Arc::new(next),
            &self.current_rules(),
            Some(previous),
            self.marked.clone(),
        )));
        self.updates.send_modify(|n| *n += 1);
    }
}

/// The rules of the documents of a config center, by kind.
#[derive(Clone, Default)]
struct Documents {
    app_configurators: Vec<ConfiguratorRule>,
    service_configurators: Vec<ConfiguratorRule>,
    service_conditions: Vec<router::ConditionRule>,
    provider_app_conditions: Vec<router::ConditionRule>,
    app_conditions: Vec<router::ConditionRule>,
    tags: Option<Arc<TagRule>>,
    /// The last text of each kind of document (`None`: none or deleted), malformed ones
    /// included (so that they are reported once).
    texts: HashMap<RuleKind, Option<String>>,
}

/// A provider URL with the registry's `override://` rules, then the application's and
/// the service's configurator documents applied, as the consumer `consumer` sees it.
fn configure(
    url: &Url,
    registry_rules: &[Url],
    documents: &Documents,
    consumer: &Url,
) -> (Url, Vec<(String, String)>) {
    let application = consumer.param_non_empty(keys::APPLICATION);
    let (configured, mut overrides) = configurator::configure(url, registry_rules, application);
    if documents.app_configurators.is_empty() && documents.service_configurators.is_empty() {
        return (configured, overrides);
    }
    let (configured, more) = configurator::configure_layers(
        &configured,
        &[
            &documents.app_configurators,
            &documents.service_configurators,
        ],
        application,
        consumer.host(),
    );
    for (k, v) in more {
        overrides.retain(|(key, _)| *key != k);
        overrides.push((k, v));
    }
    (configured, overrides)
}

impl NotifyListener for Directory {
    fn notify(&self, urls: Vec<Url>) {
        let category = urls.first().map(|u| u.category().to_owned());
        match category.as_deref() {
            Some(keys::PROVIDERS) => self.update(&urls),
            Some(keys::CONFIGURATORS) => self.update_configurators(&urls),
            Some(keys::ROUTERS) => self.update_routers(&urls),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! Which addresses a reference calls while services migrate from interface-level to
//! application-level registration (Java's `MigrationInvoker` with its
//! `MigrationRuleListener`).
//!
//! The reference's one [`Directory`] is fed from one of two sources: the interface-level
//! subscription (`/dubbo/<interface>/providers`) or the application level
//! ([`AppLevel`]). The step decides which: `FORCE_INTERFACE`, `FORCE_APPLICATION`, or
//! `APPLICATION_FIRST` — application-level addresses when there are some and at least
//! `threshold` × as many as interface-level ones (Java's
//! `DefaultMigrationAddressComparator`), else interface-level ones. The step comes from the
//! reference (`migration.step`), the registry URL, the application, and the rule
//! `<application>.migration` in the config center, which is watched.
//!
//! Switching never leaves a call without providers: the source switched to is followed
//! first, and the directory takes its list only once it has providers (unless the rule
//! says `force: true`); the list is replaced atomically, invokers of providers that stay
//! are kept, and calls in flight on the previous ones finish on them.
//!
//! Two more settings of Java's rule (or the reference's `migration.promotion` and
//! `migration.delay` parameters) apply as Java 3.3's `MigrationInvoker` applies them:
//! - `proportion` (APPLICATION_FIRST): the percentage of calls that go to the side
//!   chosen; while the application level is chosen, the other calls go to the
//!   interface-level providers (a second cluster over them, with the same governance
//!   rules). Java draws each call at random; here the calls are spread evenly, so that
//!   any run of calls divides in the proportion asked.
//! - `delay` (seconds): when the step of a running reference changes to FORCE_INTERFACE
//!   or FORCE_APPLICATION, the reference follows the new side at once but keeps calling
//!   the current one for that long before it compares and switches (Java waits as long
//!   before its threshold check and destroys the old invoker after it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rdubbo_cluster::{ClusterInvoker, Directory};
use tokio::time::Instant;

use super::app_level::{AppAddresses, AppLevel};
use super::rule::{Decision, MigrationRule, MigrationStep, StepSettings};
use crate::config_center::{ConfigChange, ConfigListener, MIGRATION_GROUP, MIGRATION_SUFFIX};
use crate::extension::Extensions;
use crate::registry::is_empty_url;
use crate::{
    BoxFuture, DynamicConfiguration, Invocation, Invoker, Layer, NotifyListener, Reply, RpcResult,
    ServiceDiscovery, Url,
};

/// Where a reference's providers come from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSource {
    /// Interface-level URLs (`/dubbo/<interface>/providers`).
    Interface,
    /// Application instances and their metadata.
    Application,
}

/// The migration state of a reference (see [`Reference::migration`](crate::consumer::Reference::migration)).
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStatus {
    /// The step in force.
    pub step: MigrationStep,
    /// Where the directory's providers come from (`None` until the first list).
    pub source: Option<AddressSource>,
    /// Interface-level providers known (`None` before the first notification).
    pub interface_providers: Option<usize>,
    /// Application-level providers known (`None` while not followed or not known yet).
    pub application_providers: Option<usize>,
    /// The applications providing the interface (application level).
    pub applications: Vec<String>,
}

/// How a reference's migration is set up.
pub(crate) struct MigrationConfig {
    pub(crate) consumer: Url,
    pub(crate) directory: Arc<Directory>,
    pub(crate) discovery: Arc<dyn ServiceDiscovery>,
    pub(crate) config_center: Option<Arc<dyn DynamicConfiguration>>,
    pub(crate) extensions: Arc<Extensions>,
    pub(crate) configured: Decision,
    pub(crate) provided_by: Option<Vec<String>>,
    /// How long APPLICATION_FIRST waits for the application level before deciding
    /// with the interface level alone.
    pub(crate) grace: Duration,
    /// The layers around each provider's invoker (for the interface-level cluster of a
    /// `proportion` below 100).
    pub(crate) attempt_layers: Vec<Arc<dyn Layer>>,
}

/// The migration controller of one reference.
pub(crate) struct Migration {
    inner: Arc<Inner>,
    rule_listener: Mutex<Option<Arc<dyn ConfigListener>>>,
}

struct Inner {
    config: MigrationConfig,
    state: Mutex<State>,
    split: Arc<Split>,
}

/// How a reference's calls divide while a `proportion` below 100 applies.
#[derive(Default)]
struct Split {
    /// The percentage of calls for the reference's directory; 100: all of them.
    share: AtomicU32,
    /// Calls counted while dividing.
    calls: AtomicU64,
    /// The cluster over the interface-level providers, made when first needed.
    secondary: OnceLock<ClusterInvoker>,
}

/// The reference's calls: to its cluster, or a share of them to the interface level.
struct SplitInvoker {
    primary: Arc<dyn Invoker>,
    split: Arc<Split>,
}

impl Invoker for SplitInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let share = self.split.share.load(Ordering::Relaxed);
        if share < 100 {
            if let Some(secondary) = self.split.secondary.get() {
                let n = self.split.calls.fetch_add(1, Ordering::Relaxed);
                if spread(n) >= share {
                    return secondary.invoke(invocation);
                }
            }
        }
        self.primary.invoke(invocation)
    }
}

/// Call `n`'s place in `0..100`, spread evenly (a Weyl sequence on the golden ratio: the
/// places of any run of calls are close to uniform, and interleaved).
fn spread(n: u64) -> u32 {
    let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    u32::try_from((x * 100) >> 32).unwrap_or(0)
}

#[derive(Default)]
struct State {
    rule: Option<MigrationRule>,
    interface: Option<Vec<Url>>,
    app: Option<AppAddresses>,
    app_level: Option<AppLevel>,
    source: Option<AddressSource>,
    forwarded: Option<Vec<Url>>,
    grace_over: bool,
    stopped: bool,
    step: Option<MigrationStep>,
    /// After a change to a FORCE step with a `delay`: the current source stays until then.
    hold_until: Option<Instant>,
    /// The interface-level list the secondary cluster has (while a proportion applies).
    secondary_fed: Option<Vec<Url>>,
    /// The last configurators and routers of the interface-level subscription, by
    /// category (for the secondary cluster).
    others: BTreeMap<String, Vec<Url>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Migration {
    /// Starts the controller: watches the migration rule, starts the application level
    /// when the step needs it. The interface-level subscription is the caller's, with
    /// [`interface_listener`](Self::interface_listener) as its listener.
    pub(crate) async fn start(config: MigrationConfig) -> Arc<Migration> {
        let grace = config.grace;
        let migration = Arc::new(Migration {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                split: Arc::new(Split {
                    share: AtomicU32::new(100),
                    ..Split::default()
                }),
            }),
            rule_listener: Mutex::new(None),
        });
        if let Some(cc) = migration.inner.config.config_center.clone() {
            let weak = Arc::downgrade(&migration.inner);
            let listener: Arc<dyn ConfigListener> = Arc::new(move |change: ConfigChange| {
                if let Some(inner) = weak.upgrade() {
                    inner.rule_changed(change.content.as_deref());
                }
            });
            let key = migration.rule_key();
            if let Err(e) = cc.watch(&key, MIGRATION_GROUP, listener.clone()).await {
                tracing::warn!(key = %key, error = %e, "cannot watch the migration rule");
            }
            *migration
                .rule_listener
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(listener);
        }
        let weak = Arc::downgrade(&migration.inner);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(inner) = weak.upgrade() {
                lock(&inner.state).grace_over = true;
                inner.evaluate();
            }
        });
        migration.inner.evaluate();
        migration
    }

    fn rule_key(&self) -> String {
        let app = self
            .inner
            .config
            .consumer
            .param_non_empty("application")
            .unwrap_or("rdubbo-consumer");
        format!("{app}{MIGRATION_SUFFIX}")
    }

    /// The listener of the interface-level subscription: provider lists go to the
    /// controller, configurators and routers straight to the directory.
    pub(crate) fn interface_listener(&self) -> Arc<dyn NotifyListener> {
        Arc::new(InterfaceSide {
            inner: Arc::downgrade(&self.inner),
            directory: self.inner.config.directory.clone(),
        })
    }

    /// The reference's calls over `primary` (its cluster): a share of them goes to the
    /// interface level while a `proportion` below 100 applies.
    pub(crate) fn calls(&self, primary: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(SplitInvoker {
            primary,
            split: self.inner.split.clone(),
        })
    }

    /// The state now.
    pub(crate) fn status(&self) -> MigrationStatus {
        let st = lock(&self.inner.state);
        let consumer = &self.inner.config.consumer;
        let count = |urls: &[Url]| {
            urls.iter()
                .filter(|u| !is_empty_url(u) && consumer.matches_provider(u))
                .count()
        };
        MigrationStatus {
            step: st.step.unwrap_or(self.inner.decision(&st).step),
            source: st.source,
            interface_providers: st.interface.as_deref().map(count),
            application_providers: st.app.as_ref().map(|a| count(&a.urls)),
            applications: st.app.as_ref().map(|a| a.apps.clone()).unwrap_or_default(),
        }
    }

    /// Stops following the rule and the application level.
    pub(crate) async fn stop(&self) {
        let app_level = {
            let mut st = lock(&self.inner.state);
            st.stopped = true;
            st.app_level.take()
        };
        drop(app_level);
        self.inner.split.share.store(100, Ordering::Relaxed);
        if let Some(secondary) = self.inner.split.secondary.get() {
            secondary.directory().unwatch_rules().await;
        }
        let listener = self
            .rule_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let (Some(cc), Some(listener)) = (&self.inner.config.config_center, listener) {
            let _ = cc
                .unwatch(&self.rule_key(), MIGRATION_GROUP, &listener)
                .await;
        }
    }
}

impl Drop for Migration {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.stopped = true;
        st.app_level = None;
    }
}

/// The interface-level subscription's listener.
struct InterfaceSide {
    inner: Weak<Inner>,
    directory: Arc<Directory>,
}

impl NotifyListener for InterfaceSide {
    fn notify(&self, urls: Vec<Url>) {
        let providers = urls
            .first()
            .is_some_and(|u| u.category() == crate::url::keys::PROVIDERS);
        if !providers {
            if let Some(inner) = self.inner.upgrade() {
                if let Some(category) = urls.first().map(|u| u.category().to_owned()) {
                    lock(&inner.state).others.insert(category, urls.clone());
                }
                if let Some(secondary) = inner.split.secondary.get() {
                    secondary.directory().notify(urls.clone());
                }
            }
            self.directory.notify(urls);
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            lock(&inner.state).interface = Some(urls);
            inner.evaluate();
        }
    }
}

impl Inner {
    /// The rule's settings for this reference (all `None` without a rule).
    fn settings(&self, st: &State) -> StepSettings {
        let consumer = &self.config.consumer;
        match &st.rule {
            Some(rule) => rule.settings(
                consumer.interface(),
                consumer.version(),
                consumer.group(),
                st.app
                    .as_ref()
                    .map(|a| a.apps.as_slice())
                    .unwrap_or_default(),
            ),
            None => StepSettings::default(),
        }
    }

    /// A whole-number parameter of the reference.
    fn param(&self, key: &str) -> Option<u32> {
        let value = self.config.consumer.param_non_empty(key)?;
        match value.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                tracing::warn!(key, value, "ignoring a parameter that is no whole number");
                None
            }
        }
    }

    /// The cluster over the interface-level providers, made on first use.
    fn secondary(self: &Arc<Self>, st: &State) -> Option<&ClusterInvoker> {
        if let Some(secondary) = self.split.secondary.get() {
            return Some(secondary);
        }
        let directory = Directory::with_extensions(
            self.config.directory.consumer().clone(),
            self.config.extensions.clone(),
            self.config.attempt_layers.clone(),
        );
        for urls in st.others.values() {
            directory.notify(urls.clone());
        }
        let cluster =
            match ClusterInvoker::with_extensions(directory.clone(), &self.config.extensions) {
                Ok(cluster) => cluster,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot divide calls by proportion");
                    return None;
                }
            };
        if let (Some(cc), Ok(runtime)) = (
            self.config.config_center.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(async move { directory.watch_rules(Some(cc)).await });
        }
        Some(self.split.secondary.get_or_init(|| cluster))
    }

    /// Feeds the secondary cluster and sets the share of calls: a proportion applies
    /// while APPLICATION_FIRST calls the application level and interface-level
    /// providers exist.
    fn divide(self: &Arc<Self>, st: &mut State, proportion: Option<u32>) {
        let Some(proportion) = proportion else {
            self.split.share.store(100, Ordering::Relaxed);
            if st.secondary_fed.take().is_some_and(|l| !l.is_empty()) {
                if let Some(secondary) = self.split.secondary.get() {
                    secondary.directory().update(&[]);
                }
            }
            return;
        };
        let Some(secondary) = self.secondary(st) else {
            return;
        };
        if st.secondary_fed != st.interface {
            secondary
                .directory()
                .update(st.interface.as_deref().unwrap_or_default());
            st.secondary_fed = st.interface.clone();
        }
        if self.split.share.swap(proportion, Ordering::Relaxed) != proportion {
            tracing::info!(service = %self.config.consumer.service_key(), proportion, "calls divided: this percentage to the application level, the rest to the interface level");
        }
    }

    /// Re-evaluates at `when` (the end of a delay).
    fn evaluate_at(self: &Arc<Self>, when: Instant) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(when).await;
            if let Some(inner) = weak.upgrade() {
                inner.evaluate();
            }
        });
    }

    /// The step, threshold and force flag now.
    fn decision(&self, st: &State) -> Decision {
        let consumer = &self.config.consumer;
        match &st.rule {
            Some(rule) => rule.decide(
                consumer.interface(),
                consumer.version(),
                consumer.group(),
                st.app
                    .as_ref()
                    .map(|a| a.apps.as_slice())
                    .unwrap_or_default(),
                self.config.configured,
            ),
            None => self.config.configured,
        }
    }

    fn rule_changed(self: &Arc<Self>, content: Option<&str>) {
        let rule = match content.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(text) => match MigrationRule::parse(text) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed migration rule");
                    return;
                }
            },
        };
        tracing::info!(service = %self.config.consumer.service_key(), rule = ?rule, "migration rule");
        lock(&self.state).rule = rule;
        self.evaluate();
    }

    fn app_addresses(self: &Arc<Self>, addresses: AppAddresses) {
        lock(&self.state).app = Some(addresses);
        self.evaluate();
    }

    fn count(&self, urls: &[Url]) -> usize {
        let consumer = &self.config.consumer;
        urls.iter()
            .filter(|u| !is_empty_url(u) && consumer.matches_provider(u))
            .count()
    }

    /// Decides the source and feeds the directory. Called after every change.
    fn evaluate(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        if st.stopped {
            return;
        }
        let decision = self.decision(&st);
        let settings = self.settings(&st);
        let proportion = settings
            .proportion
            .or_else(|| self.param("migration.promotion"))
            .unwrap_or(100)
            .min(100);
        let delay = settings
            .delay
            .or_else(|| self.param("migration.delay"))
            .unwrap_or(0);
        if st.step != Some(decision.step) {
            let previous = st.step.replace(decision.step);
            st.hold_until = None;
            if previous.is_some() {
                tracing::info!(service = %self.config.consumer.service_key(), step = %decision.step, "migration step changed");
                // Java waits `delay` before it compares the sides of a FORCE step.
                if decision.step != MigrationStep::ApplicationFirst
                    && delay > 0
                    && st.source.is_some()
                {
                    let until = Instant::now() + Duration::from_secs(u64::from(delay));
                    st.hold_until = Some(until);
                    self.evaluate_at(until);
                    tracing::info!(service = %self.config.consumer.service_key(), delay, "keeping the current providers for the rule's delay (seconds)");
                }
            }
        }
        let held = st.hold_until.is_some_and(|t| Instant::now() < t);
        if !held {
            st.hold_until = None;
        }
        // The application level runs while the step uses it or the directory still
        // calls its providers.
        let app_needed =
            decision.step.uses_application() || st.source == Some(AddressSource::Application);
        if app_needed && st.app_level.is_none() {
            let weak = Arc::downgrade(self);
            st.app_level = Some(AppLevel::start(
                self.config.discovery.clone(),
                self.config.consumer.clone(),
                self.config.extensions.clone(),
                self.config.provided_by.clone(),
                Box::new(move |addresses| {
                    if let Some(inner) = weak.upgrade() {
                        inner.app_addresses(addresses);
                    }
                }),
            ));
        }
        let interface = st.interface.as_deref().map(|u| self.count(u));
        let app = st.app.as_ref().map(|a| self.count(&a.urls));
        let target = match decision.step {
            MigrationStep::ForceInterface => Some(AddressSource::Interface),
            MigrationStep::ForceApplication => match (app, st.grace_over) {
                (None, false) => None,
                _ => Some(AddressSource::Application),
            },
            MigrationStep::ApplicationFirst => match (interface, app) {
                (_, None) if !st.grace_over => None,
                (None, Some(a)) if a > 0 => Some(AddressSource::Application),
                (None, _) => None,
                (Some(_), None) => Some(AddressSource::Interface),
                (Some(_), Some(0)) => Some(AddressSource::Interface),
                (Some(0), Some(_)) => Some(AddressSource::Application),
                (Some(i), Some(a)) => {
                    if a as f64 / i as f64 >= decision.threshold {
                        Some(AddressSource::Application)
                    } else {
                        Some(AddressSource::Interface)
                    }
                }
            },
        };
        let Some(target) = target else {
            return;
        };
        let (available, list) = match target {
            AddressSource::Interface => (interface, st.interface.clone()),
            AddressSource::Application => (app, st.app.as_ref().map(|a| a.urls.clone())),
        };
        let source = match st.source {
            Some(current) if current != target => {
                // Switch only to a source that has providers (or when forced), and not
                // before a delay is over.
                if held {
                    current
                } else if available.unwrap_or(0) > 0 || decision.force {
                    tracing::info!(service = %self.config.consumer.service_key(), from = ?current, to = ?target, providers = available.unwrap_or(0), "switching address source");
                    target
                } else {
                    current
                }
            }
            Some(current) => current,
            None => {
                if list.is_none() && target == AddressSource::Interface {
                    return;
                }
                tracing::info!(service = %self.config.consumer.service_key(), source = ?target, step = %decision.step, "address source");
                target
            }
        };
        let list = match source {
            AddressSource::Interface => st.interface.clone(),
            AddressSource::Application => st.app.as_ref().map(|a| a.urls.clone()),
        };
        st.source = Some(source);
        let list = list.unwrap_or_default();
        if st.forwarded.as_ref() != Some(&list) {
            st.forwarded = Some(list.clone());
            self.config.directory.update(&list);
        }
        let divided = decision.step == MigrationStep::ApplicationFirst
            && source == AddressSource::Application
            && proportion < 100
            && interface.unwrap_or(0) > 0;
        self.divide(&mut st, divided.then_some(proportion));
        // Interface-level only from now on: stop following the application level.
        if source == AddressSource::Interface && !decision.step.uses_application() {
            st.app_level = None;
            st.app = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn calls_divide_in_the_proportion_asked_over_any_run() {
        for start in [0u64, 1, 977, 1 << 20, u64::MAX - 5_000] {
            for share in [0u32, 1, 30, 50, 99, 100] {
                let secondary = (0..1000u64)
                    .map(|i| spread(start.wrapping_add(i)))
                    .filter(|&place| place >= share)
                    .count() as i64;
                let expected = i64::from(100 - share) * 10;
                assert!(
                    (secondary - expected).abs() <= 5,
                    "start {start}, share {share}: {secondary} of 1000 to the other side"
                );
            }
        }
        assert!((0..100_000u64).all(|n| spread(n) < 100));
    }
}

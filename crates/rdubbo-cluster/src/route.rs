//! Routed provider lists and what is precomputed for them.
//!
//! A [`Directory`](crate::Directory) turns every provider list, configurator and rule
//! change into an immutable snapshot: the providers, their tag groups and, for each
//! condition rule, which providers its `then` part keeps and whether its `when` part holds
//! for this consumer. A call then only finds its route — which rules apply to its method,
//! which tag it carries — and reads the [`Routed`] list built the first time a call was
//! routed that way: no copy of the list, no URL parsing, no allocation. Balancers keep
//! what they precompute (weights and their warm-up, round-robin state, hash rings) in the
//! routed list, per method, so that a pick costs the same with 10 or 10,000 providers
//! where the algorithm allows.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rdubbo_core::{Invocation, Url};

use crate::loadbalance::{warmup_weight, DEFAULT_WARMUP_MS, DEFAULT_WEIGHT};
use crate::router::{ConditionRule, MethodConditions, FORCE_TAG_KEY, TAG_KEY};
use crate::{CallStats, Provider};

/// Weights of providers that are warming up are recomputed at most this often (ms).
pub(crate) const WARMUP_RECOMPUTE_MS: u64 = 100;

/// Distinct routes a snapshot caches (method conditions × tags); beyond it a call routes
/// without caching.
const MAX_ROUTES: usize = 1024;
/// Methods a routed list keeps tables for; beyond it a call's table is not kept.
const MAX_TABLES: usize = 1024;

/// The providers of one call after tag routing and condition rules: a cheap handle
/// (one `Arc`) on a list shared by every call routed the same way, with what the
/// built-in balancers precompute for it. It dereferences to the provider slice.
///
/// [`Cluster::select`](crate::Cluster::select) and the built-in balancers use the
/// precomputed state of a list that came from
/// [`Cluster::list`](crate::Cluster::list) / [`Directory::list`](crate::Directory::list);
/// a list made from a `Vec` ([`From`]) works too, computing what it needs on first use.
#[derive(Clone)]
pub struct Routed(pub(crate) Arc<Route>);

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.providers.iter().map(|p| p.url.address()))
            .finish()
    }
}

impl std::ops::Deref for Routed {
    type Target = [Arc<Provider>];
    fn deref(&self) -> &[Arc<Provider>] {
        &self.0.providers
    }
}

impl AsRef<[Arc<Provider>]> for Routed {
    fn as_ref(&self) -> &[Arc<Provider>] {
        &self.0.providers
    }
}

impl From<Vec<Arc<Provider>>> for Routed {
    fn from(providers: Vec<Arc<Provider>>) -> Routed {
        Routed::new(providers, None)
    }
}

impl<'a> IntoIterator for &'a Routed {
    type Item = &'a Arc<Provider>;
    type IntoIter = std::slice::Iter<'a, Arc<Provider>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.providers.iter()
    }
}

impl Routed {
    pub(crate) fn new(providers: Vec<Arc<Provider>>, carried: Option<Arc<Carried>>) -> Routed {
        Routed(Arc::new(Route {
            stats: providers.iter().map(|p| p.stats.clone()).collect(),
            providers,
            tables: ArcSwap::from_pointee(HashMap::new()),
            carried,
        }))
    }

    /// The providers.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.0.providers
    }

    /// Whether `self` and `other` are the same list (not a copy).
    pub fn same(&self, other: &Routed) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One routed list and its per-method tables.
pub(crate) struct Route {
    pub(crate) providers: Vec<Arc<Provider>>,
    /// The call statistics of `providers`, side by side for balancers that scan them.
    pub(crate) stats: Vec<Arc<CallStats>>,
    tables: ArcSwap<HashMap<Box<str>, Arc<MethodTable>>>,
    /// Round-robin values of the lists this one replaced, to carry them over.
    pub(crate) carried: Option<Arc<Carried>>,
}

/// Round-robin values by method and provider key.
pub(crate) type Carried = HashMap<Box<str>, HashMap<String, i64>>;

impl Route {
    /// Adds the round-robin values of this list to `into`.
    pub(crate) fn round_robin_values(&self, into: &mut Carried) {
        for (method, table) in self.tables.load().iter() {
            let state = table.round_robin.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(state) = &*state {
                let values = into.entry(method.clone()).or_default();
                for (i, c) in state.current().into_iter().enumerate() {
                    values.insert(self.providers[i].key.clone(), c);
                }
            }
        }
    }

    /// Runs `f` with the table of `method`, made on first use.
    pub(crate) fn with_table<R>(&self, method: &str, f: impl FnOnce(&MethodTable) -> R) -> R {
        if let Some(table) = self.tables.load().get(method) {
            return f(table);
        }
        let table = Arc::new(MethodTable::new(&self.providers, method));
        if self.tables.load().len() < MAX_TABLES {
            self.tables.rcu(|tables| {
                let mut next = HashMap::clone(tables);
                next.entry(method.into()).or_insert_with(|| table.clone());
                next
            });
        }
        let tables = self.tables.load();
        match tables.get(method) {
            Some(t) => f(t),
            None => f(&table),
        }
    }
}

/// What the balancers keep for one method of one routed list.
pub(crate) struct MethodTable {
    method: Box<str>,
    /// Per provider: configured weight, registration timestamp, warm-up period.
    params: Vec<(u64, u64, u64)>,
    weights: ArcSwap<Weights>,
    /// Round-robin state, made on first use.
    pub(crate) round_robin: Mutex<Option<crate::loadbalance::SmoothState>>,
    /// The consistent-hash ring, made on first use.
    pub(crate) ring: OnceLock<crate::loadbalance::Ring>,
    /// The `loadbalance` name resolved for this method (see `Cluster::balancer`).
    pub(crate) balancer_name: OnceLock<Box<str>>,
    /// `retries` resolved for this method (see `Cluster::retries`).
    pub(crate) retries: OnceLock<usize>,
}

/// Effective weights of the providers of a routed list for one method at one time.
#[derive(Debug)]
pub(crate) struct Weights {
    /// Per provider.
    pub(crate) each: Vec<u64>,
    /// Running sums of `each`: `cumulative[i]` = weights of providers `0..=i`.
    pub(crate) cumulative: Vec<u64>,
    pub(crate) total: u64,
    /// Every weight is the same.
    pub(crate) same: bool,
    /// Time (ms since the epoch) from which these may be stale (warm-up).
    valid_until: u64,
}

impl MethodTable {
    fn new(providers: &[Arc<Provider>], method: &str) -> MethodTable {
        let params: Vec<(u64, u64, u64)> = providers
            .iter()
            .map(|p| {
                (
                    p.url.method_param_or(method, "weight", DEFAULT_WEIGHT),
                    p.url.param_or("timestamp", 0u64),
                    p.url.param_or("warmup", DEFAULT_WARMUP_MS),
                )
            })
            .collect();
        let weights = Weights::compute(&params, crate::loadbalance::now_ms());
        MethodTable {
            method: method.into(),
            params,
            weights: ArcSwap::from_pointee(weights),
            round_robin: Mutex::new(None),
            ring: OnceLock::new(),
            balancer_name: OnceLock::new(),
            retries: OnceLock::new(),
        }
    }

    /// The method.
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    /// The weights at `now_ms`, recomputed when a warm-up step is due.
    pub(crate) fn weights(&self, now_ms: u64) -> arc_swap::Guard<Arc<Weights>> {
        let current = self.weights.load();
        if now_ms < current.valid_until {
            return current;
        }
        drop(current);
        self.weights
            .store(Arc::new(Weights::compute(&self.params, now_ms)));
        self.weights.load()
    }
}

impl Weights {
    #[cfg(test)]
    pub(crate) fn for_tests(
        each: Vec<u64>,
        cumulative: Vec<u64>,
        total: u64,
        same: bool,
    ) -> Weights {
        Weights {
            each,
            cumulative,
            total,
            same,
            valid_until: u64::MAX,
        }
    }

    fn compute(params: &[(u64, u64, u64)], now: u64) -> Weights {
        let mut valid_until = u64::MAX;
        let mut each = Vec::with_capacity(params.len());
        for &(weight, timestamp, warmup) in params {
            let w = if weight == 0 || timestamp == 0 {
                weight
            } else if timestamp > now {
                // Registered "in the future" (clock skew): full weight until then.
                valid_until = valid_until.min(timestamp);
                weight
            } else if now - timestamp < warmup {
                valid_until = valid_until.min(now + WARMUP_RECOMPUTE_MS);
                warmup_weight(now - timestamp, warmup, weight)
            } else {
                weight
            };
            each.push(w);
        }
        let mut total = 0u64;
        let cumulative = each
            .iter()
            .map(|w| {
                total = total.saturating_add(*w);
                total
            })
            .collect();
        let same = each.windows(2).all(|w| w[0] == w[1]);
        Weights {
            each,
            cumulative,
            total,
            same,
            valid_until,
        }
    }
}

/// One condition rule, evaluated once per directory version.
struct CompiledRule {
    /// The `when` part without its method conditions, for this consumer.
    when_consumer: bool,
    /// The method conditions of the `when` part (checked per call).
    when_method: MethodConditions,
    /// Providers (indexes into the snapshot) the `then` part keeps; `None`: blacklist.
    then: Option<Vec<bool>>,
    force: bool,
    text: String,
}

/// The tag part of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TagRoute {
    /// Untagged providers (all of them when every one is tagged).
    Default,
    /// Providers of the tag group.
    Group(u32),
    /// No provider (a forced tag nobody has).
    Nothing,
}

/// The providers of one directory version, with routing precomputed.
pub(crate) struct Snapshot {
    /// [`Directory::providers`](crate::Directory::providers) hands this out as it is.
    #[allow(clippy::rc_buffer)]
    pub(crate) all: Arc<Vec<Arc<Provider>>>,
    /// Tag → group number; `groups[n]` lists the providers of group `n`.
    tags: HashMap<Box<str>, u32>,
    groups: Vec<Vec<u32>>,
    /// Providers without a tag.
    untagged: Vec<u32>,
    rules: Vec<CompiledRule>,
    consumer: Url,
    routes: ArcSwap<HashMap<(TagRoute, u64), Routed>>,
    /// Round-robin values of the version this one replaced, for new routes.
    carried: Option<Arc<Carried>>,
    /// Marked (failed) providers of the directory: see [`Health`](crate::Health).
    pub(crate) marked: Arc<AtomicUsize>,
}

impl Snapshot {
    pub(crate) fn empty(consumer: Url, marked: Arc<AtomicUsize>) -> Snapshot {
        Snapshot::build(consumer, Arc::new(Vec::new()), &[], None, marked)
    }

    /// Precomputes routing for `all` under `rules`.
    #[allow(clippy::rc_buffer)]
    pub(crate) fn build(
        consumer: Url,
        all: Arc<Vec<Arc<Provider>>>,
        rules: &[ConditionRule],
        previous: Option<Arc<Snapshot>>,
        marked: Arc<AtomicUsize>,
    ) -> Snapshot {
        let mut tags: HashMap<Box<str>, u32> = HashMap::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut untagged = Vec::new();
        for (i, p) in all.iter().enumerate() {
            match p.url.param_non_empty(TAG_KEY) {
                None => untagged.push(i as u32),
                Some(tag) => {
                    let next = groups.len() as u32;
                    let n = *tags.entry(tag.into()).or_insert(next);
                    if n == next {
                        groups.push(Vec::new());
                    }
                    groups[n as usize].push(i as u32);
                }
            }
        }
        let rules = rules
            .iter()
            .map(|rule| {
                let (when_consumer, when_method) = rule.split_when(&consumer);
                CompiledRule {
                    when_consumer,
                    when_method,
                    then: rule
                        .then_matcher(&consumer)
                        .map(|then| all.iter().map(|p| then.matches(&p.url)).collect()),
                    force: rule.force(),
                    text: rule.text().to_owned(),
                }
            })
            .collect();
        let carried = previous.and_then(|previous| {
            let mut carried = Carried::new();
            for routed in previous.routes.load().values() {
                routed.0.round_robin_values(&mut carried);
            }
            (!carried.is_empty()).then(|| Arc::new(carried))
        });
        Snapshot {
            all,
            tags,
            groups,
            untagged,
            rules,
            consumer,
            routes: ArcSwap::from_pointee(HashMap::new()),
            carried,
            marked,
        }
    }

    /// The same providers under other rules.
    pub(crate) fn with_rules(self: &Arc<Self>, rules: &[ConditionRule]) -> Snapshot {
        Snapshot::build(
            self.consumer.clone(),
            self.all.clone(),
            rules,
            Some(self.clone()),
            self.marked.clone(),
        )
    }

    fn tag_route(&self, invocation: &Invocation) -> TagRoute {
        match invocation
            .attachments
            .get(TAG_KEY)
            .filter(|t| !t.is_empty())
        {
            None => TagRoute::Default,
            Some(tag) => match self.tags.get(tag) {
                Some(n) => TagRoute::Group(*n),
                None if invocation.attachments.get(FORCE_TAG_KEY) == Some("true") => {
                    TagRoute::Nothing
                }
                // Unknown tag: untagged providers only (never the tagged ones).
                None => TagRoute::Group(u32::MAX),
            },
        }
    }

    fn rule_mask(&self, invocation: &Invocation) -> Option<u64> {
        if self.rules.len() > 64 {
            return None;
        }
        let mut mask = 0u64;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.when_consumer && rule.when_method.matches(&invocation.method) {
                mask |= 1 << i;
            }
        }
        Some(mask)
    }

    /// The routed list of `invocation`.
    pub(crate) fn route(&self, invocation: &Invocation) -> Routed {
        let tag = self.tag_route(invocation);
        let Some(mask) = self.rule_mask(invocation) else {
            let applies: Vec<bool> = self
                .rules
                .iter()
                .map(|r| r.when_consumer && r.when_method.matches(&invocation.method))
                .collect();
            return Routed::from(self.compute(tag, |i| applies[i]));
        };
        if let Some(routed) = self.routes.load().get(&(tag, mask)) {
            return routed.clone();
        }
        let routed = Routed::new(
            self.compute(tag, |i| mask & (1 << i) != 0),
            self.carried.clone(),
        );
        if self.routes.load().len() < MAX_ROUTES {
            self.routes.rcu(|routes| {
                let mut next = HashMap::clone(routes);
                next.entry((tag, mask)).or_insert_with(|| routed.clone());
                next
            });
        }
        self.routes
            .load()
            .get(&(tag, mask))
            .cloned()
            .unwrap_or(routed)
    }

    /// Tag routing, then the rules for which `applies(i)`, in priority order.
    fn compute(&self, tag: TagRoute, applies: impl Fn(usize) -> bool) -> Vec<Arc<Provider>> {
        let mut kept: Vec<u32> = match tag {
            TagRoute::Default if self.untagged.is_empty() => (0..self.all.len() as u32).collect(),
            TagRoute::Default | TagRoute::Group(u32::MAX) => self.untagged.clone(),
            TagRoute::Group(n) => self.groups[n as usize].clone(),
            TagRoute::Nothing => Vec::new(),
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !applies(i) {
                continue;
            }
            let Some(then) = &rule.then else {
                kept.clear();
                continue;
            };
            let next: Vec<u32> = kept.iter().copied().filter(|&p| then[p as usize]).collect();
            if next.is_empty() && !rule.force {
                tracing::warn!(rule = %rule.text, "condition rule selects no provider; not applied");
                continue;
            }
            kept = next;
        }
        kept.into_iter()
            .map(|i| self.all[i as usize].clone())
            .collect()
    }
}

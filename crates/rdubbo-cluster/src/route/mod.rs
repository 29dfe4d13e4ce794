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
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

use crate::loadbalance::{warmup_weight, DEFAULT_WARMUP_MS, DEFAULT_WEIGHT};
use crate::{CallStats, Provider};

mod snapshot;
pub(crate) use snapshot::{Rules, Snapshot};

/// Weights of providers that are warming up are recomputed at most this often (ms).
pub(crate) const WARMUP_RECOMPUTE_MS: u64 = 100;

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

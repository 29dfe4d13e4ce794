//! Load balancers, chosen per service and per method with Dubbo's `loadbalance` parameter:
//! `random` (weighted, the default), `roundrobin` (smooth weighted), `leastactive`,
//! `shortestresponse`, `consistenthash` (Java Dubbo's ring and keys: the same picks as a Java
//! consumer, see [`ConsistentHash`]) and `p2c` (power of two choices).
//!
//! Weights come from the provider URL's `weight` (method-level `methods.<m>.weight` first,
//! default 100) and warm up linearly from the provider's `timestamp` over `warmup` ms
//! (default 10 minutes), as Dubbo's `AbstractLoadBalance.getWeight` does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rdubbo_core::{Invocation, Url};

#[cfg(test)]
use crate::route::WARMUP_RECOMPUTE_MS;
use crate::route::{Carried, MethodTable, Routed, Weights};
use crate::{CallStats, Provider};

/// Default weight of a provider.
pub const DEFAULT_WEIGHT: u64 = 100;
/// Default warm-up period, ms.
pub const DEFAULT_WARMUP_MS: u64 = 10 * 60 * 1000;

/// Random draws a balancer makes among the candidates before it scans for the allowed
/// ones (see [`Candidates`]).
const DRAWS: usize = 8;

/// Picks one provider for an invocation.
///
/// [`select`](LoadBalance::select) is all a balancer needs: it gets the candidates as a
/// slice. The cluster calls [`pick`](LoadBalance::pick), whose default passes the routed
/// list to `select` as it is (no copy) when no provider is excluded, and the allowed
/// providers otherwise. The built-in balancers implement `pick` over what the routed list
/// precomputes, so that their cost does not grow with the number of providers where the
/// algorithm allows.
pub trait LoadBalance: Send + Sync + 'static {
    /// `providers` is never empty.
    fn select(&self, providers: &[Arc<Provider>], invocation: &Invocation) -> Arc<Provider>;

    /// Picks one of the allowed providers of `candidates` (there is at least one).
    fn pick(&self, candidates: &Candidates<'_>, invocation: &Invocation) -> Arc<Provider> {
        if candidates.has_exclusions() {
            self.select(&candidates.allowed(), invocation)
        } else {
            self.select(candidates.providers(), invocation)
        }
    }
}

/// What a balancer picks from: a routed list, some of whose providers may be excluded
/// (tried already by this call, or ejected); at least one is allowed.
pub struct Candidates<'a> {
    routed: &'a Routed,
    exclude: Option<&'a (dyn Fn(&Provider) -> bool + 'a)>,
}

impl std::fmt::Debug for Candidates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("providers", &self.routed.len())
            .field("exclusions", &self.exclude.is_some())
            .finish()
    }
}

impl<'a> Candidates<'a> {
    /// Every provider of `routed`.
    pub fn new(routed: &'a Routed) -> Candidates<'a> {
        Candidates {
            routed,
            exclude: None,
        }
    }

    /// The providers of `routed` for which `exclude` is false.
    pub fn excluding(
        routed: &'a Routed,
        exclude: &'a (dyn Fn(&Provider) -> bool + 'a),
    ) -> Candidates<'a> {
        Candidates {
            routed,
            exclude: Some(exclude),
        }
    }

    /// The routed list, excluded providers included.
    pub fn routed(&self) -> &'a Routed {
        self.routed
    }

    /// The providers of the routed list, excluded ones included.
    pub fn providers(&self) -> &'a [Arc<Provider>] {
        self.routed
    }

    /// Whether some providers may be excluded.
    pub fn has_exclusions(&self) -> bool {
        self.exclude.is_some()
    }

    /// Whether provider `i` of [`providers`](Self::providers) may be picked.
    pub fn is_allowed(&self, i: usize) -> bool {
        match self.exclude {
            None => i < self.routed.len(),
            Some(exclude) => self.routed.get(i).is_some_and(|p| !exclude(p)),
        }
    }

    /// The providers that may be picked (a copy).
    pub fn allowed(&self) -> Vec<Arc<Provider>> {
        (0..self.routed.len())
            .filter(|&i| self.is_allowed(i))
            .map(|i| self.routed[i].clone())
            .collect()
    }

    /// Provider `i`.
    fn at(&self, i: usize) -> Arc<Provider> {
        self.routed[i].clone()
    }

    /// Runs `f` with the table of the call's method.
    fn table<R>(&self, method: &str, f: impl FnOnce(&MethodTable) -> R) -> R {
        self.routed.0.with_table(method, f)
    }

    /// `draw` until it gives an allowed provider, [`DRAWS`] times at most.
    fn draw_allowed(&self, mut draw: impl FnMut() -> usize) -> Option<usize> {
        if self.exclude.is_none() {
            return Some(draw());
        }
        (0..DRAWS).map(|_| draw()).find(|&i| self.is_allowed(i))
    }

    /// Weighted random among the allowed providers, by scanning (uniform when their
    /// weights are all equal or all zero). `None` if there is none.
    fn weighted_scan(&self, weights: &[u64]) -> Option<usize> {
        let ok = |i: usize| self.is_allowed(i);
        let (mut count, mut total, mut first, mut same) = (0usize, 0u64, None, true);
        for i in (0..self.routed.len()).filter(|&i| ok(i)) {
            count += 1;
            total = total.saturating_add(weights[i]);
            match first {
                None => first = Some(weights[i]),
                Some(w) => same &= w == weights[i],
            }
        }
        if count == 0 {
            return None;
        }
        let mut chosen = None;
        if total == 0 || same {
            let nth = fastrand::usize(..count);
            chosen = (0..self.routed.len()).filter(|&i| ok(i)).nth(nth);
        } else {
            let mut offset = fastrand::u64(..total);
            for i in (0..self.routed.len()).filter(|&i| ok(i)) {
                chosen = Some(i);
                if offset < weights[i] {
                    break;
                }
                offset -= weights[i];
            }
        }
        chosen
    }

    /// Weighted random among the allowed providers.
    fn weighted(&self, weights: &Weights) -> usize {
        let n = self.routed.len();
        let drawn = self.draw_allowed(|| {
            if weights.total == 0 || weights.same {
                fastrand::usize(..n)
            } else {
                let offset = fastrand::u64(..weights.total);
                weights.cumulative.partition_point(|&c| c <= offset)
            }
        });
        drawn
            .or_else(|| self.weighted_scan(&weights.each))
            .unwrap_or(0)
    }
}

/// The balancer named `name` (Dubbo's names), if it is a built-in.
pub fn by_name(name: &str) -> Option<Arc<dyn LoadBalance>> {
    Some(match name {
        "random" => Arc::new(Random),
        "roundrobin" => Arc::new(RoundRobin::default()),
        "leastactive" => Arc::new(LeastActive),
        "shortestresponse" => Arc::new(ShortestResponse),
        "consistenthash" => Arc::new(ConsistentHash::default()),
        "p2c" => Arc::new(PowerOfTwo),
        _ => return None,
    })
}

/// The names of the built-in balancers.
pub const BUILTIN: &[&str] = &[
    "random",
    "roundrobin",
    "leastactive",
    "shortestresponse",
    "consistenthash",
    "p2c",
];

/// Registers the built-in balancers in `table`, as a user registers a plugin.
pub fn register_builtins(table: &mut crate::Extensions) {
    table.add_balancer("random", || Arc::new(Random));
    table.add_balancer("roundrobin", || Arc::new(RoundRobin::default()));
    table.add_balancer("leastactive", || Arc::new(LeastActive));
    table.add_balancer("shortestresponse", || Arc::new(ShortestResponse));
    table.add_balancer("consistenthash", || Arc::new(ConsistentHash::default()));
    table.add_balancer("p2c", || Arc::new(PowerOfTwo));
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Dubbo's `calculateWarmupWeight`: `uptime / (warmup / weight)`, at least 1, at most
/// `weight`.
pub fn warmup_weight(uptime_ms: u64, warmup_ms: u64, weight: u64) -> u64 {
    if warmup_ms == 0 || weight == 0 {
        return weight;
    }
    let ww = (uptime_ms as f64 / (warmup_ms as f64 / weight as f64)) as u64;
    ww.clamp(1, weight)
}

/// The effective weight of a provider for `method` at `now_ms`.
pub fn weight_at(url: &Url, method: &str, now_ms: u64) -> u64 {
    let weight: u64 = url.method_param_or(method, "weight", DEFAULT_WEIGHT);
    if weight == 0 {
        return 0;
    }
    let timestamp: u64 = url.param_or("timestamp", 0);
    if timestamp == 0 || timestamp > now_ms {
        return weight;
    }
    let warmup: u64 = url.param_or("warmup", DEFAULT_WARMUP_MS);
    let uptime = now_ms - timestamp;
    if uptime < warmup {
        warmup_weight(uptime, warmup, weight)
    } else {
        weight
    }
}

/// The routed list a stateful balancer uses for a plain slice: the last one, while the
/// slice holds the same providers, so that state (round-robin, hash rings) lives on.
#[derive(Debug, Default)]
struct PlainLists(Mutex<Option<Routed>>);

impl PlainLists {
    fn routed(&self, providers: &[Arc<Provider>]) -> Routed {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(routed) = &*last {
            if routed.len() == providers.len()
                && routed.iter().zip(providers).all(|(a, b)| Arc::ptr_eq(a, b))
            {
                return routed.clone();
            }
        }
        let carried = last.take().map(|old| {
            let mut carried = Carried::new();
            old.0.round_robin_values(&mut carried);
            Arc::new(carried)
        });
        let routed = Routed::new(providers.to_vec(), carried);
        *last = Some(routed.clone());
        routed
    }
}

mod balancers;
pub use balancers::*;
mod consistent_hash;
pub use consistent_hash::ConsistentHash;
pub(crate) use consistent_hash::Ring;

#[cfg(test)]
mod tests;

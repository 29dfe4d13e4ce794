//! Load balancers, chosen per service and per method with Dubbo's `loadbalance` parameter:
//! `random` (weighted, the default), `roundrobin` (smooth weighted), `leastactive`,
//! `shortestresponse`, `consistenthash` and `p2c` (power of two choices).
//!
//! Weights come from the provider URL's `weight` (method-level `methods.<m>.weight` first,
//! default 100) and warm up linearly from the provider's `timestamp` over `warmup` ms
//! (default 10 minutes), as Dubbo's `AbstractLoadBalance.getWeight` does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
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

/// Weighted random (Dubbo's default): a binary search over the running sums of the
/// weights, kept per routed list and method (recomputed while providers warm up).
#[derive(Debug, Default)]
pub struct Random;

impl LoadBalance for Random {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&Routed::from(providers.to_vec())), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, inv: &Invocation) -> Arc<Provider> {
        let i = candidates.table(&inv.method, |t| candidates.weighted(&t.weights(now_ms())));
        candidates.at(i)
    }
}

/// Smooth weighted round-robin (as nginx and Dubbo): every pick adds each weight to its
/// provider's current value, takes the largest and subtracts the total from it. Rotates
/// through providers of equal weight and spreads heavier ones evenly.
///
/// Providers of equal weight gain the same at every pick, so they are kept in one heap
/// per weight: a pick compares the tops of the heaps (one per distinct weight) and updates
/// one heap, with the same outcome as updating every provider. Current values carry over
/// when weights or the provider list change. An excluded pick is drawn again; after a few,
/// weighted random among the allowed providers.
#[derive(Debug, Default)]
pub struct RoundRobin {
    plain: PlainLists,
}

/// Providers of one weight: (weight, heap of (current value − picks × weight, provider)).
type WeightGroup = (i64, BinaryHeap<(i64, Reverse<u32>)>);

/// Round-robin state of one routed list and method.
pub(crate) struct SmoothState {
    /// The weights it was built for.
    weights: Arc<Weights>,
    /// Picks since the values were last normalised.
    t: i64,
    total: i64,
    /// Per distinct weight: (weight, heap of (current − t × weight, provider)).
    groups: Vec<WeightGroup>,
}

impl SmoothState {
    fn new(weights: Arc<Weights>, current: impl Fn(usize) -> i64) -> SmoothState {
        let mut by_weight: HashMap<u64, usize> = HashMap::new();
        let mut groups: Vec<WeightGroup> = Vec::new();
        for (i, &w) in weights.each.iter().enumerate() {
            let g = *by_weight.entry(w).or_insert_with(|| {
                groups.push((w.min(i64::MAX as u64) as i64, BinaryHeap::new()));
                groups.len() - 1
            });
            groups[g].1.push((current(i), Reverse(i as u32)));
        }
        SmoothState {
            total: weights.total.min(i64::MAX as u64) as i64,
            weights,
            t: 0,
            groups,
        }
    }

    /// Current value of every provider, by index.
    pub(crate) fn current(&self) -> Vec<i64> {
        let mut out = vec![0; self.weights.each.len()];
        for (w, heap) in &self.groups {
            for &(key, Reverse(i)) in heap.iter() {
                out[i as usize] = key.saturating_add(self.t.saturating_mul(*w));
            }
        }
        out
    }

    fn next(&mut self) -> usize {
        if self.t >= 1 << 31 {
            let current = self.current();
            *self = SmoothState::new(self.weights.clone(), |i| current[i]);
        }
        self.t += 1;
        let t = self.t;
        let mut best: Option<(i64, u32, usize)> = None;
        for (g, (w, heap)) in self.groups.iter().enumerate() {
            if let Some(&(key, Reverse(i))) = heap.peek() {
                let value = key.saturating_add(t.saturating_mul(*w));
                if best.is_none_or(|(v, j, _)| value > v || (value == v && i < j)) {
                    best = Some((value, i, g));
                }
            }
        }
        let Some((_, i, g)) = best else { return 0 };
        if let Some(mut top) = self.groups[g].1.peek_mut() {
            top.0 = top.0.saturating_sub(self.total);
        }
        i as usize
    }
}

impl RoundRobin {
    fn state<'t>(
        table: &'t MethodTable,
        routed: &Routed,
        weights: &Arc<Weights>,
    ) -> std::sync::MutexGuard<'t, Option<SmoothState>> {
        let mut state = table.round_robin.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = state
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.weights, weights));
        if !fresh {
            let next = match &*state {
                // New weights (warm-up), same providers.
                Some(old) => {
                    let current = old.current();
                    SmoothState::new(weights.clone(), |i| current[i])
                }
                // A new list: values carried over by provider.
                None => {
                    let carried = routed
                        .0
                        .carried
                        .as_ref()
                        .and_then(|c| c.get(table.method()));
                    SmoothState::new(weights.clone(), |i| {
                        carried
                            .and_then(|c| c.get(routed[i].key.as_str()))
                            .copied()
                            .unwrap_or(0)
                    })
                }
            };
            *state = Some(next);
        }
        state
    }
}

impl LoadBalance for RoundRobin {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&self.plain.routed(providers)), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, inv: &Invocation) -> Arc<Provider> {
        let i = candidates.table(&inv.method, |t| {
            let weights = arc_swap::Guard::into_inner(t.weights(now_ms()));
            let picked = {
                let mut state = RoundRobin::state(t, candidates.routed(), &weights);
                match state.as_mut() {
                    Some(s) => candidates.draw_allowed(|| s.next()),
                    None => None,
                }
            };
            picked.unwrap_or_else(|| candidates.weighted(&weights))
        });
        candidates.at(i)
    }
}

/// Fewest calls in flight; ties broken by weighted random. Scans the providers once (no
/// allocation).
#[derive(Debug, Default)]
pub struct LeastActive;

impl LoadBalance for LeastActive {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&Routed::from(providers.to_vec())), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, inv: &Invocation) -> Arc<Provider> {
        let i = candidates.table(&inv.method, |t| {
            least_by(candidates, &t.weights(now_ms()).each, |s| s.active() as u64)
        });
        candidates.at(i)
    }
}

/// The allowed provider with the lowest `cost`, ties broken by weighted random (uniform
/// when the tied weights are all equal or all zero): one pass finds the lowest cost and
/// the tied weight, a second stops at the chosen tie.
fn least_by(
    candidates: &Candidates<'_>,
    weights: &[u64],
    cost: impl Fn(&CallStats) -> u64,
) -> usize {
    let stats = &candidates.routed.0.stats;
    let all = !candidates.has_exclusions();
    let allowed = |i: usize| all || candidates.is_allowed(i);
    let (mut best, mut tied, mut tied_weight, mut same) = (u64::MAX, 0usize, 0u64, true);
    let (mut first, mut first_weight) = (0, 0);
    for (i, (s, &w)) in stats.iter().zip(weights).enumerate() {
        if !allowed(i) {
            continue;
        }
        let c = cost(s);
        if c < best || tied == 0 {
            (best, tied, tied_weight, same) = (c, 1, w, true);
            (first, first_weight) = (i, w);
        } else if c == best {
            tied += 1;
            tied_weight = tied_weight.saturating_add(w);
            same &= w == first_weight;
        }
    }
    if tied <= 1 {
        return first;
    }
    let ties = stats
        .iter()
        .enumerate()
        .filter(|&(i, s)| allowed(i) && cost(s) == best)
        .map(|(i, _)| i);
    let chosen = if tied_weight == 0 || same {
        ties.clone().nth(fastrand::usize(..tied))
    } else {
        let mut offset = fastrand::u64(..tied_weight);
        ties.clone().find(|&i| {
            if offset < weights[i] {
                return true;
            }
            offset -= weights[i];
            false
        })
    };
    // Costs read twice may have changed in between (calls in flight): any tie then, or
    // any allowed provider.
    chosen
        .or_else(|| ties.last())
        .or_else(|| (0..stats.len()).find(|&i| allowed(i)))
        .unwrap_or(0)
}

/// Shortest expected response: mean successful latency × (calls in flight + 1); ties
/// broken by weighted random. Scans the providers once (no allocation).
#[derive(Debug, Default)]
pub struct ShortestResponse;

fn expected_response(stats: &CallStats) -> u64 {
    stats
        .mean_latency_us()
        .saturating_mul(stats.active() as u64 + 1)
}

impl LoadBalance for ShortestResponse {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&Routed::from(providers.to_vec())), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, inv: &Invocation) -> Arc<Provider> {
        let i = candidates.table(&inv.method, |t| {
            least_by(candidates, &t.weights(now_ms()).each, expected_response)
        });
        candidates.at(i)
    }
}

/// Power of two choices: two distinct providers at random, the one with fewer calls in
/// flight (then the lower mean latency) wins.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl LoadBalance for PowerOfTwo {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&Routed::from(providers.to_vec())), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, _: &Invocation) -> Arc<Provider> {
        let providers = candidates.providers();
        let n = providers.len();
        let nth_allowed = |nth: usize, except: Option<usize>| {
            (0..n)
                .filter(|&i| candidates.is_allowed(i) && Some(i) != except)
                .nth(nth)
        };
        let count_allowed = |except: Option<usize>| {
            (0..n)
                .filter(|&i| candidates.is_allowed(i) && Some(i) != except)
                .count()
        };
        let a = candidates
            .draw_allowed(|| fastrand::usize(..n))
            .or_else(|| nth_allowed(fastrand::usize(..count_allowed(None).max(1)), None))
            .unwrap_or(0);
        if n == 1 {
            return candidates.at(a);
        }
        let other = || {
            let b = fastrand::usize(..n - 1);
            if b >= a {
                b + 1
            } else {
                b
            }
        };
        let b = candidates.draw_allowed(other).or_else(|| {
            let left = count_allowed(Some(a));
            (left > 0)
                .then(|| nth_allowed(fastrand::usize(..left), Some(a)))
                .flatten()
        });
        let Some(b) = b else {
            return candidates.at(a);
        };
        let score = |p: &Provider| (p.stats.active(), p.stats.mean_latency_us());
        if score(&providers[b]) < score(&providers[a]) {
            candidates.at(b)
        } else {
            candidates.at(a)
        }
    }
}

/// Consistent hashing: each provider owns `hash.nodes` (default 160) points of a ring; a
/// call goes to the first point at or after the hash of its selected arguments
/// (`hash.arguments`, default `0`: the first argument). The same arguments reach the same
/// provider while it lives; when providers change only their share of keys moves. The
/// ring is built once per routed list and method; an excluded provider's points are
/// skipped (the next point on the ring wins, as on a ring without it).
#[derive(Debug, Default)]
pub struct ConsistentHash {
    plain: PlainLists,
}

/// Points of a hash ring: (hash, provider index), sorted; and the arguments hashed.
pub(crate) struct Ring {
    points: Vec<(u64, u32)>,
    arguments: Vec<usize>,
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Ring {
    fn build(providers: &[Arc<Provider>], method: &str) -> Ring {
        let Some(first) = providers.first() else {
            return Ring {
                points: Vec::new(),
                arguments: Vec::new(),
            };
        };
        let nodes: usize = first
            .url
            .method_param_or(method, "hash.nodes", 160usize)
            .clamp(1, 10_000);
        let arguments: String = first
            .url
            .method_param_or(method, "hash.arguments", "0".to_owned());
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(providers.len() * nodes);
        for (i, p) in providers.iter().enumerate() {
            let address = p.url.address();
            for n in 0..nodes {
                points.push((hash_of(&(&address, n)), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            arguments: arguments
                .split(',')
                .filter_map(|i| i.trim().parse::<usize>().ok())
                .collect(),
        }
    }
}

impl LoadBalance for ConsistentHash {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        self.pick(&Candidates::new(&self.plain.routed(providers)), inv)
    }

    fn pick(&self, candidates: &Candidates<'_>, inv: &Invocation) -> Arc<Provider> {
        let i = candidates.table(&inv.method, |t| {
            let ring = t
                .ring
                .get_or_init(|| Ring::build(candidates.providers(), &inv.method));
            let selected: String = ring
                .arguments
                .iter()
                .filter_map(|&i| inv.args.value(i))
                .map(|v| rdubbo_core::json::from_value(&v).to_string())
                .collect();
            let h = hash_of(&selected);
            let start = ring.points.partition_point(|(point, _)| *point < h);
            let len = ring.points.len();
            (0..len)
                .map(|k| ring.points[(start + k) % len].1 as usize)
                .find(|&i| candidates.is_allowed(i))
                .unwrap_or(0)
        });
        candidates.at(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Directory;
    use rdubbo_core::{BoxFuture, Invoker, Protocol, Reply, RpcResult, Value};
    use std::collections::BTreeMap;

    struct Nop;
    impl Invoker for Nop {
        fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            Box::pin(async { Ok(Reply::Value(Value::Null)) })
        }
    }
    struct P;
    impl Protocol for P {
        fn name(&self) -> &'static str {
            "jsonrpc"
        }
        fn refer(&self, _: &Url) -> RpcResult<Arc<dyn Invoker>> {
            Ok(Arc::new(Nop))
        }
    }

    fn providers(params: &[&str]) -> Vec<Arc<Provider>> {
        let consumer: Url = "consumer://h/demo.Api?interface=demo.Api".parse().unwrap();
        let dir = Directory::new(consumer, vec![Arc::new(P)]);
        let urls: Vec<Url> = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "jsonrpc://127.0.0.1:{}/demo.Api?interface=demo.Api&{p}",
                    7000 + i
                )
                .parse()
                .unwrap()
            })
            .collect();
        dir.update(&urls);
        dir.providers().to_vec()
    }

    fn inv(arg: &str) -> Invocation {
        Invocation::new("demo.Api", "echo", vec![Value::from(arg)])
    }

    fn counts(lb: &dyn LoadBalance, ps: &[Arc<Provider>], n: usize) -> BTreeMap<u16, usize> {
        let mut c = BTreeMap::new();
        for i in 0..n {
            let p = lb.select(ps, &inv(&i.to_string()));
            *c.entry(p.url.port().unwrap()).or_default() += 1;
        }
        c
    }

    /// Share of picks within `tol` (absolute) of the weight share. With n = 20,000 picks
    /// the standard deviation of a share near 0.5 is ~0.0035, so 0.02 is > 5 sigma.
    fn assert_shares(c: &BTreeMap<u16, usize>, expected: &[(u16, f64)], n: usize, tol: f64) {
        for (port, share) in expected {
            let got = *c.get(port).unwrap_or(&0) as f64 / n as f64;
            assert!(
                (got - share).abs() < tol,
                "port {port}: {got:.3} vs {share:.3} ({c:?})"
            );
        }
    }

    #[test]
    fn random_honours_weights() {
        let ps = providers(&["weight=100", "weight=300", "weight=0"]);
        let n = 20_000;
        let c = counts(&Random, &ps, n);
        assert_shares(&c, &[(7000, 0.25), (7001, 0.75), (7002, 0.0)], n, 0.02);
    }

    #[test]
    fn round_robin_rotates_and_is_smooth() {
        let ps = providers(&["weight=100", "weight=100", "weight=100"]);
        let rr = RoundRobin::default();
        let picks: Vec<u16> = (0..6)
            .map(|_| rr.select(&ps, &inv("x")).url.port().unwrap())
            .collect();
        assert_eq!(picks, [7000, 7001, 7002, 7000, 7001, 7002]);
        // 5:1:1 → a, a, b, a, c, a, a (smooth: never five a in a row).
        let ps = providers(&["weight=5", "weight=1", "weight=1"]);
        let rr = RoundRobin::default();
        let picks: Vec<u16> = (0..7)
            .map(|_| rr.select(&ps, &inv("x")).url.port().unwrap())
            .collect();
        assert_eq!(picks, [7000, 7000, 7001, 7000, 7002, 7000, 7000]);
    }

    #[test]
    fn least_active_prefers_idle_providers() {
        let ps = providers(&["", "", ""]);
        let _g1 = ps[0].stats.begin();
        let _g2 = ps[1].stats.begin();
        let c = counts(&LeastActive, &ps, 100);
        assert_eq!(c.get(&7002), Some(&100), "{c:?}");
    }

    #[test]
    fn shortest_response_prefers_the_fast_provider() {
        let ps = providers(&["", ""]);
        for _ in 0..10 {
            ps[0]
                .stats
                .begin()
                .finish(std::time::Duration::from_millis(10), true);
            ps[1]
                .stats
                .begin()
                .finish(std::time::Duration::from_millis(1), true);
        }
        let c = counts(&ShortestResponse, &ps, 100);
        assert_eq!(c.get(&7001), Some(&100), "{c:?}");
    }

    #[test]
    fn p2c_avoids_the_busy_provider() {
        let ps = providers(&["", "", "", ""]);
        let _busy: Vec<_> = (0..5).map(|_| ps[0].stats.begin()).collect();
        let c = counts(&PowerOfTwo, &ps, 2_000);
        assert_eq!(c.get(&7000), None, "{c:?}");
        for port in [7001, 7002, 7003] {
            assert!(c[&port] > 400, "{c:?}");
        }
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_lost_share() {
        let ps = providers(&["", "", "", ""]);
        let ch = ConsistentHash::default();
        let before: Vec<u16> = (0..1000)
            .map(|i| ch.select(&ps, &inv(&i.to_string())).url.port().unwrap())
            .collect();
        let again: Vec<u16> = (0..1000)
            .map(|i| ch.select(&ps, &inv(&i.to_string())).url.port().unwrap())
            .collect();
        assert_eq!(before, again);
        // Spread: every provider gets a fair part (160 virtual nodes each).
        for port in 7000..7004 {
            let n = before.iter().filter(|p| **p == port).count();
            assert!((150..=350).contains(&n), "port {port}: {n}");
        }
        // Remove one provider: only the keys it owned move.
        let fewer: Vec<Arc<Provider>> = ps
            .iter()
            .filter(|p| p.url.port() != Some(7003))
            .cloned()
            .collect();
        let after: Vec<u16> = (0..1000)
            .map(|i| ch.select(&fewer, &inv(&i.to_string())).url.port().unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 7003 {
                assert_eq!(b, a);
            }
        }
    }

    #[test]
    fn warm_up_curve_follows_dubbo() {
        assert_eq!(warmup_weight(0, 600_000, 100), 1);
        assert_eq!(warmup_weight(60_000, 600_000, 100), 10);
        assert_eq!(warmup_weight(300_000, 600_000, 100), 50);
        assert_eq!(warmup_weight(599_999, 600_000, 100), 99);
        let now = 1_000_000_000u64;
        let url: Url = format!(
            "jsonrpc://h:1/x?weight=200&warmup=100000&timestamp={}",
            now - 25_000
        )
        .parse()
        .unwrap();
        assert_eq!(weight_at(&url, "m", now), 50);
        assert_eq!(weight_at(&url, "m", now + 200_000), 200);
        let url: Url = "jsonrpc://h:1/x?weight=200&methods.m.weight=7"
            .parse()
            .unwrap();
        assert_eq!(weight_at(&url, "m", now), 7);
        assert_eq!(weight_at(&url, "other", now), 200);
    }

    #[test]
    fn every_name_resolves() {
        for name in [
            "random",
            "roundrobin",
            "leastactive",
            "shortestresponse",
            "consistenthash",
            "p2c",
        ] {
            assert!(by_name(name).is_some(), "{name}");
        }
        assert!(by_name("nope").is_none());
    }

    fn directory(params: &[&str]) -> Arc<Directory> {
        let consumer: Url = "consumer://h/demo.Api?interface=demo.Api".parse().unwrap();
        let dir = Directory::new(consumer, vec![Arc::new(P)]);
        dir.update(&urls(params));
        dir
    }

    fn urls(params: &[&str]) -> Vec<Url> {
        params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "jsonrpc://127.0.0.1:{}/demo.Api?interface=demo.Api&{p}",
                    7000 + i
                )
                .parse()
                .unwrap()
            })
            .collect()
    }

    /// Picks through a routed list, as the cluster does, excluding `exclude`.
    fn routed_counts(
        lb: &dyn LoadBalance,
        routed: &Routed,
        exclude: &dyn Fn(&Provider) -> bool,
        n: usize,
    ) -> BTreeMap<u16, usize> {
        let mut c = BTreeMap::new();
        for i in 0..n {
            let candidates = Candidates::excluding(routed, exclude);
            let p = lb.pick(&candidates, &inv(&i.to_string()));
            *c.entry(p.url.port().unwrap()).or_default() += 1;
        }
        c
    }

    #[test]
    fn routed_picks_keep_the_shares_and_skip_exclusions() {
        let dir = directory(&["weight=100", "weight=300", "weight=0", "weight=600"]);
        let routed = dir.list(&inv("x"));
        let n = 20_000;
        let none = |_: &Provider| false;
        let c = routed_counts(&Random, &routed, &none, n);
        assert_shares(
            &c,
            &[(7000, 0.1), (7001, 0.3), (7002, 0.0), (7003, 0.6)],
            n,
            0.02,
        );
        // Excluding the heaviest: the others keep their proportions (1:3).
        let heavy = |p: &Provider| p.url.port() == Some(7003);
        for lb in [&Random as &dyn LoadBalance, &RoundRobin::default()] {
            let c = routed_counts(lb, &routed, &heavy, n);
            assert_shares(&c, &[(7000, 0.25), (7001, 0.75), (7003, 0.0)], n, 0.02);
        }
        // Idle providers all tie: least-active and shortest-response break ties by weight.
        for lb in [&LeastActive as &dyn LoadBalance, &ShortestResponse] {
            let c = routed_counts(lb, &routed, &none, n);
            assert_shares(&c, &[(7000, 0.1), (7001, 0.3), (7003, 0.6)], n, 0.02);
            let c = routed_counts(lb, &routed, &heavy, n);
            assert_shares(&c, &[(7000, 0.25), (7001, 0.75), (7003, 0.0)], n, 0.02);
        }
        // Power of two choices: uniform pairs among the allowed.
        let c = routed_counts(&PowerOfTwo, &routed, &heavy, 3_000);
        assert_eq!(c.get(&7003), None, "{c:?}");
        assert!(c.len() == 3 && c.values().all(|n| *n > 700), "{c:?}");
        // Only one allowed: every balancer finds it.
        let only = |p: &Provider| p.url.port() != Some(7002);
        for name in BUILTIN {
            let lb = by_name(name).unwrap();
            let c = routed_counts(&*lb, &routed, &only, 50);
            assert_eq!(c.get(&7002), Some(&50), "{name}: {c:?}");
        }
    }

    #[test]
    fn routed_lists_are_shared_until_the_directory_changes() {
        let dir = directory(&["", ""]);
        let a = dir.list(&inv("x"));
        assert!(
            a.same(&dir.list(&inv("y"))),
            "one list for calls routed alike"
        );
        dir.update(&urls(&["", "", ""]));
        let b = dir.list(&inv("x"));
        assert!(!a.same(&b));
        assert_eq!((a.len(), b.len()), (2, 3));
    }

    /// Smooth weighted round-robin as written in nginx: every value grows by its weight,
    /// the largest (first of equals) is picked and loses the total.
    fn naive_round_robin(weights: &[i64], current: &mut [i64]) -> usize {
        let total: i64 = weights.iter().sum();
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }

    proptest::proptest! {
        #[test]
        fn round_robin_heaps_pick_as_the_full_scan(
            weights in proptest::collection::vec(0u64..8, 1..12),
            start in proptest::collection::vec(-30i64..30, 12),
        ) {
            let n = weights.len();
            let mut cumulative = Vec::new();
            let mut total = 0;
            for w in &weights {
                total += w;
                cumulative.push(total);
            }
            let same = weights.windows(2).all(|w| w[0] == w[1]);
            let table = Arc::new(Weights::for_tests(weights.clone(), cumulative, total, same));
            let mut state = SmoothState::new(table, |i| start[i]);
            let signed: Vec<i64> = weights.iter().map(|w| *w as i64).collect();
            let mut current = start[..n].to_vec();
            for step in 0..60 {
                let expected = naive_round_robin(&signed, &mut current);
                proptest::prop_assert_eq!(state.next(), expected, "step {}", step);
            }
            proptest::prop_assert_eq!(state.current(), current);
        }
    }

    #[test]
    fn round_robin_values_carry_over_a_provider_list_change() {
        let dir = directory(&["weight=5", "weight=1", "weight=1"]);
        let rr = RoundRobin::default();
        let pick = |routed: &Routed| {
            rr.pick(&Candidates::new(routed), &inv("x"))
                .url
                .port()
                .unwrap()
        };
        let routed = dir.list(&inv("x"));
        let first: Vec<u16> = (0..3).map(|_| pick(&routed)).collect();
        assert_eq!(first, [7000, 7000, 7001]);
        let mut current = vec![0i64; 3];
        for _ in 0..3 {
            naive_round_robin(&[5, 1, 1], &mut current);
        }
        // A fourth provider joins; the three keep their values, it starts at 0.
        dir.update(&urls(&["weight=5", "weight=1", "weight=1", "weight=1"]));
        let routed = dir.list(&inv("x"));
        current.push(0);
        for _ in 0..16 {
            let expected = naive_round_robin(&[5, 1, 1, 1], &mut current);
            assert_eq!(pick(&routed), 7000 + expected as u16);
        }
    }

    #[test]
    fn consistent_hash_skips_an_excluded_provider_as_a_ring_without_it() {
        let dir = directory(&["", "", "", "", ""]);
        let routed = dir.list(&inv("x"));
        let without: Vec<Arc<Provider>> = routed
            .iter()
            .filter(|p| p.url.port() != Some(7002))
            .cloned()
            .collect();
        let gone = |p: &Provider| p.url.port() == Some(7002);
        let ch = ConsistentHash::default();
        let smaller = ConsistentHash::default();
        let mut moved = 0;
        for i in 0..500 {
            let call = inv(&i.to_string());
            let excluded = ch.pick(&Candidates::excluding(&routed, &gone), &call);
            assert_eq!(
                excluded.url.port(),
                smaller.select(&without, &call).url.port(),
                "key {i}"
            );
            if ch.pick(&Candidates::new(&routed), &call).url.port() != excluded.url.port() {
                moved += 1;
            }
        }
        assert!(
            (40..=180).contains(&moved),
            "only the excluded share moves: {moved}"
        );
    }

    #[test]
    fn warming_weights_are_recomputed_as_time_passes() {
        let now = now_ms();
        let dir = directory(&[
            &format!("weight=200&warmup=100000&timestamp={}", now - 25_000),
            "weight=200",
        ]);
        let routed = dir.list(&inv("x"));
        routed.0.with_table("x", |t| {
            let w = t.weights(now);
            assert_eq!(w.each, [50, 200]);
            let later = t.weights(now + WARMUP_RECOMPUTE_MS + 1);
            assert_eq!(later.each[0], 50, "a 100 ms step of a 100 s warm-up");
            let warm = t.weights(now + 80_000);
            assert_eq!(warm.each, [200, 200]);
            assert!(warm.same);
        });
    }
}

//! Load balancers, chosen per service and per method with Dubbo's `loadbalance` parameter:
//! `random` (weighted, the default), `roundrobin` (smooth weighted), `leastactive`,
//! `shortestresponse`, `consistenthash` and `p2c` (power of two choices).
//!
//! Weights come from the provider URL's `weight` (method-level `methods.<m>.weight` first,
//! default 100) and warm up linearly from the provider's `timestamp` over `warmup` ms
//! (default 10 minutes), as Dubbo's `AbstractLoadBalance.getWeight` does.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rdubbo_core::{Invocation, Url};

use crate::Provider;

/// Default weight of a provider.
pub const DEFAULT_WEIGHT: u64 = 100;
/// Default warm-up period, ms.
pub const DEFAULT_WARMUP_MS: u64 = 10 * 60 * 1000;

/// Picks one provider for an invocation.
pub trait LoadBalance: Send + Sync + 'static {
    /// `providers` is never empty.
    fn select(&self, providers: &[Arc<Provider>], invocation: &Invocation) -> Arc<Provider>;
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

fn now_ms() -> u64 {
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

fn weights(providers: &[Arc<Provider>], method: &str) -> Vec<u64> {
    let now = now_ms();
    providers
        .iter()
        .map(|p| weight_at(&p.url, method, now))
        .collect()
}

/// Weighted random among `indexes` of `providers`.
fn weighted_pick(indexes: &[usize], weights: &[u64]) -> usize {
    let total: u64 = indexes.iter().map(|&i| weights[i]).sum();
    let same = indexes.windows(2).all(|w| weights[w[0]] == weights[w[1]]);
    if total == 0 || same {
        return indexes[fastrand::usize(..indexes.len())];
    }
    let mut offset = fastrand::u64(..total);
    for &i in indexes {
        if offset < weights[i] {
            return i;
        }
        offset -= weights[i];
    }
    indexes[indexes.len() - 1]
}

/// Weighted random (Dubbo's default).
#[derive(Debug, Default)]
pub struct Random;

impl LoadBalance for Random {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        let w = weights(providers, &inv.method);
        let all: Vec<usize> = (0..providers.len()).collect();
        providers[weighted_pick(&all, &w)].clone()
    }
}

/// Smooth weighted round-robin (as nginx and Dubbo): every pick adds each weight to its
/// provider's current value, takes the largest and subtracts the total from it. Rotates
/// through providers of equal weight and spreads heavier ones evenly.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Per service method: provider URL → current value.
    state: Mutex<HashMap<String, HashMap<String, i64>>>,
}

impl LoadBalance for RoundRobin {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        let w = weights(providers, &inv.method);
        let key = format!("{}.{}", inv.service_key(), inv.method);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let current = state.entry(key).or_default();
        if current.len() > providers.len() * 2 + 16 {
            // Forget providers that left.
            let live: std::collections::HashSet<String> =
                providers.iter().map(|p| p.key.clone()).collect();
            current.retain(|k, _| live.contains(k));
        }
        let total: i64 = w.iter().map(|&x| x as i64).sum();
        let mut best: Option<(usize, i64)> = None;
        for (i, p) in providers.iter().enumerate() {
            let c = current.entry(p.key.clone()).or_insert(0);
            *c += w[i] as i64;
            if best.is_none_or(|(_, b)| *c > b) {
                best = Some((i, *c));
            }
        }
        let (i, _) = best.unwrap_or((0, 0));
        if let Some(c) = current.get_mut(&providers[i].key) {
            *c -= total;
        }
        providers[i].clone()
    }
}

/// Fewest calls in flight; ties broken by weighted random.
#[derive(Debug, Default)]
pub struct LeastActive;

impl LoadBalance for LeastActive {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        let w = weights(providers, &inv.method);
        let actives: Vec<usize> = providers.iter().map(|p| p.stats.active()).collect();
        let least = actives.iter().copied().min().unwrap_or(0);
        let ties: Vec<usize> = (0..providers.len())
            .filter(|&i| actives[i] == least)
            .collect();
        providers[weighted_pick(&ties, &w)].clone()
    }
}

/// Shortest expected response: mean successful latency × (calls in flight + 1); ties
/// broken by weighted random.
#[derive(Debug, Default)]
pub struct ShortestResponse;

impl LoadBalance for ShortestResponse {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        let w = weights(providers, &inv.method);
        let cost: Vec<u64> = providers
            .iter()
            .map(|p| {
                p.stats
                    .mean_latency_us()
                    .saturating_mul(p.stats.active() as u64 + 1)
            })
            .collect();
        let best = cost.iter().copied().min().unwrap_or(0);
        let ties: Vec<usize> = (0..providers.len()).filter(|&i| cost[i] == best).collect();
        providers[weighted_pick(&ties, &w)].clone()
    }
}

/// Power of two choices: two distinct providers at random, the one with fewer calls in
/// flight (then the lower mean latency) wins.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl LoadBalance for PowerOfTwo {
    fn select(&self, providers: &[Arc<Provider>], _: &Invocation) -> Arc<Provider> {
        if providers.len() == 1 {
            return providers[0].clone();
        }
        let a = fastrand::usize(..providers.len());
        let mut b = fastrand::usize(..providers.len() - 1);
        if b >= a {
            b += 1;
        }
        let score = |p: &Provider| (p.stats.active(), p.stats.mean_latency_us());
        if score(&providers[b]) < score(&providers[a]) {
            providers[b].clone()
        } else {
            providers[a].clone()
        }
    }
}

/// Consistent hashing: each provider owns `hash.nodes` (default 160) points of a ring; a
/// call goes to the first point at or after the hash of its selected arguments
/// (`hash.arguments`, default `0`: the first argument). The same arguments reach the same
/// provider while it lives; when providers change only their share of keys moves.
#[derive(Debug, Default)]
pub struct ConsistentHash {
    /// Per service method: the ring and the identity of the provider list it was built for.
    rings: Mutex<HashMap<String, (u64, Ring)>>,
}

/// Points of a hash ring: (hash, provider index), sorted.
type Ring = Arc<Vec<(u64, usize)>>;

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl LoadBalance for ConsistentHash {
    fn select(&self, providers: &[Arc<Provider>], inv: &Invocation) -> Arc<Provider> {
        let url = &providers[0].url;
        let nodes: usize = url
            .method_param_or(&inv.method, "hash.nodes", 160usize)
            .clamp(1, 10_000);
        let arguments: String = url.method_param_or(&inv.method, "hash.arguments", "0".to_owned());
        let identity = hash_of(&providers.iter().map(|p| p.key.as_str()).collect::<Vec<_>>());
        let key = format!("{}.{}", inv.service_key(), inv.method);
        let ring = {
            let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
            match rings.get(&key) {
                Some((id, ring)) if *id == identity => ring.clone(),
                _ => {
                    let mut ring: Vec<(u64, usize)> = Vec::with_capacity(providers.len() * nodes);
                    for (i, p) in providers.iter().enumerate() {
                        for n in 0..nodes {
                            ring.push((hash_of(&(p.url.address(), n)), i));
                        }
                    }
                    ring.sort_unstable();
                    let ring = Arc::new(ring);
                    rings.insert(key, (identity, ring.clone()));
                    ring
                }
            }
        };
        let values = inv.args.to_values().unwrap_or_default();
        let selected: String = arguments
            .split(',')
            .filter_map(|i| i.trim().parse::<usize>().ok())
            .filter_map(|i| values.get(i))
            .map(|v| rdubbo_core::json::from_value(v).to_string())
            .collect();
        let h = hash_of(&selected);
        let pos = ring.partition_point(|(point, _)| *point < h);
        let (_, i) = ring
            .get(pos)
            .or_else(|| ring.first())
            .copied()
            .unwrap_or((0, 0));
        providers[i].clone()
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
}

//! The built-in balancers.

use super::*;

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
    pub(crate) fn new(weights: Arc<Weights>, current: impl Fn(usize) -> i64) -> SmoothState {
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

    pub(crate) fn next(&mut self) -> usize {
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

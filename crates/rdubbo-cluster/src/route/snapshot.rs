//! The providers of one directory version with routing precomputed: tag groups, what
//! each condition rule keeps, and the routed lists cached per route.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rdubbo_core::{Invocation, Url};

use super::{Carried, Routed};
use crate::router::{pick_weighted, ConditionRule, MethodConditions, FORCE_TAG_KEY, TAG_KEY};
use crate::rules::TagRule;
use crate::Provider;

/// Distinct routes a snapshot caches (method conditions × tags); beyond it a call routes
/// without caching.
const MAX_ROUTES: usize = 1024;

/// What a condition rule keeps, per provider of the snapshot.
enum Then {
    /// No provider (an empty `then` part).
    Blacklist,
    /// The providers the `then` part keeps.
    Keep(Vec<bool>),
    /// v3.1: weighted destinations, one picked per call among those keeping a provider.
    Weighted(Vec<(u32, Vec<bool>)>),
}

/// One condition rule, evaluated once per directory version.
struct CompiledRule {
    /// The `when` part without its method conditions, for this consumer.
    when_consumer: bool,
    /// The method conditions of the `when` part (checked per call).
    when_method: MethodConditions,
    then: Then,
    force: bool,
    ratio: u32,
    text: String,
}

/// The tag part of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TagRoute {
    /// A call without a tag.
    Default,
    /// A call with a tag: the number (in the snapshot's tag table; `u32::MAX`: none)
    /// of the tag of the tag rule it goes by, of its own tag (for the providers' own
    /// tags), and whether it forbids falling back.
    Tag(u32, u32, bool),
}

/// A tag rule (`<provider-app>.tag-router`) over the providers of a snapshot.
struct DynamicTags {
    /// Per tag number: the providers the rule gives the tag (`None`: a tag the rule
    /// does not name).
    groups: Vec<Option<Vec<u32>>>,
    /// Per provider: whether any tag of the rule names its address.
    in_any: Vec<bool>,
    /// Whether the rule lists any address at all.
    any_addresses: bool,
    /// Per tag number: whether the rule has a tag of that name.
    named: Vec<bool>,
    force: bool,
}

/// The providers of one directory version, with routing precomputed.
pub(crate) struct Snapshot {
    /// [`Directory::providers`](crate::Directory::providers) hands this out as it is.
    #[allow(clippy::rc_buffer)]
    pub(crate) all: Arc<Vec<Arc<Provider>>>,
    /// Tag → number, for the providers' own tags and the tag rule's.
    tags: HashMap<Box<str>, u32>,
    /// Per tag number: the providers whose URL has that `dubbo.tag`.
    groups: Vec<Vec<u32>>,
    /// Per provider: the number of its own `dubbo.tag`.
    own_tag: Vec<Option<u32>>,
    /// Providers without a tag of their own.
    untagged: Vec<u32>,
    dynamic_tags: Option<DynamicTags>,
    rules: Vec<CompiledRule>,
    /// Whether any rule has weighted destinations (such routes are picked per call).
    weighted: bool,
    consumer: Url,
    routes: ArcSwap<HashMap<RouteKey, Routed>>,
    /// Round-robin values of the version this one replaced, for new routes.
    carried: Option<Arc<Carried>>,
    /// Marked (failed) providers of the directory: see [`Health`](crate::Health).
    pub(crate) marked: Arc<AtomicUsize>,
}

/// A route: the tag part, which rules apply, which weighted destinations were picked.
type RouteKey = (TagRoute, u64, Box<[u32]>);

/// The rules of one directory version: condition rules in order and the tag rule.
#[derive(Clone, Default)]
pub(crate) struct Rules {
    pub(crate) conditions: Vec<ConditionRule>,
    pub(crate) tags: Option<Arc<TagRule>>,
}

impl Snapshot {
    pub(crate) fn empty(consumer: Url, marked: Arc<AtomicUsize>) -> Snapshot {
        Snapshot::build(
            consumer,
            Arc::new(Vec::new()),
            &Rules::default(),
            None,
            marked,
        )
    }

    /// Precomputes routing for `all` under `rules`.
    #[allow(clippy::rc_buffer)]
    pub(crate) fn build(
        consumer: Url,
        all: Arc<Vec<Arc<Provider>>>,
        rules: &Rules,
        previous: Option<Arc<Snapshot>>,
        marked: Arc<AtomicUsize>,
    ) -> Snapshot {
        let mut tags: HashMap<Box<str>, u32> = HashMap::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut untagged = Vec::new();
        let mut own_tag = Vec::with_capacity(all.len());
        let number = |tags: &mut HashMap<Box<str>, u32>, groups: &mut Vec<Vec<u32>>, t: &str| {
            let next = groups.len() as u32;
            let n = *tags.entry(t.into()).or_insert(next);
            if n == next {
                groups.push(Vec::new());
            }
            n
        };
        for (i, p) in all.iter().enumerate() {
            match p.url.param_non_empty(TAG_KEY) {
                None => {
                    untagged.push(i as u32);
                    own_tag.push(None);
                }
                Some(tag) => {
                    let n = number(&mut tags, &mut groups, tag);
                    groups[n as usize].push(i as u32);
                    own_tag.push(Some(n));
                }
            }
        }
        let dynamic_tags = rules.tags.as_ref().filter(|r| r.is_active()).map(|rule| {
            let mut in_any = vec![false; all.len()];
            let mut by_number: Vec<(u32, Vec<u32>)> = Vec::new();
            for tag in &rule.tags {
                let n = number(&mut tags, &mut groups, &tag.name);
                let members: Vec<u32> = (0..all.len() as u32)
                    .filter(|&i| tag.contains(&all[i as usize].url))
                    .collect();
                for &i in &members {
                    in_any[i as usize] = true;
                }
                by_number.push((n, members));
            }
            let mut groups_of = vec![None; groups.len()];
            let mut named = vec![false; groups.len()];
            for (n, members) in by_number {
                named[n as usize] = true;
                let list = groups_of[n as usize].get_or_insert_with(Vec::new);
                list.extend(members);
                list.sort_unstable();
                list.dedup();
            }
            DynamicTags {
                any_addresses: rule.tags.iter().any(|t| t.has_addresses())
                    || in_any.contains(&true),
                groups: groups_of,
                in_any,
                named,
                force: rule.force,
            }
        });
        let compiled: Vec<CompiledRule> = rules
            .conditions
            .iter()
            .map(|rule| {
                let (when_consumer, when_method) = rule.split_when(&consumer);
                let then = match rule.destination_matchers(&consumer) {
                    Some(destinations) => Then::Weighted(
                        destinations
                            .into_iter()
                            .map(|(m, w)| (w, all.iter().map(|p| m.matches(&p.url)).collect()))
                            .collect(),
                    ),
                    None => match rule.then_matcher(&consumer) {
                        Some(then) => {
                            Then::Keep(all.iter().map(|p| then.matches(&p.url)).collect())
                        }
                        None => Then::Blacklist,
                    },
                };
                CompiledRule {
                    when_consumer,
                    when_method,
                    then,
                    force: rule.force(),
                    ratio: rule.ratio(),
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
            own_tag,
            untagged,
            dynamic_tags,
            weighted: compiled.iter().any(|r| matches!(r.then, Then::Weighted(_))),
            rules: compiled,
            consumer,
            routes: ArcSwap::from_pointee(HashMap::new()),
            carried,
            marked,
        }
    }

    /// The same providers under other rules.
    pub(crate) fn with_rules(self: &Arc<Self>, rules: &Rules) -> Snapshot {
        Snapshot::build(
            self.consumer.clone(),
            self.all.clone(),
            rules,
            Some(self.clone()),
            self.marked.clone(),
        )
    }

    fn tag_route(&self, invocation: &Invocation) -> TagRoute {
        // The call's attachment, else the consumer's own `dubbo.tag` (as Java).
        let tag = invocation
            .attachments
            .get(TAG_KEY)
            .filter(|t| !t.is_empty())
            .or_else(|| self.consumer.param_non_empty(TAG_KEY));
        match tag {
            None => TagRoute::Default,
            Some(tag) => {
                let force = invocation
                    .attachments
                    .get(FORCE_TAG_KEY)
                    .or_else(|| self.consumer.param(FORCE_TAG_KEY))
                    == Some("true");
                let own = self.tags.get(tag).copied().unwrap_or(u32::MAX);
                let by_rule = match &self.dynamic_tags {
                    // Java's `selectAddressByTagLevel`: `a|b|c` falls back to `a|b`, then
                    // `a`, to the first the rule gives providers (unless forced).
                    Some(rule) if !force && tag.contains('|') => {
                        let parts: Vec<&str> = tag.split('|').collect();
                        (1..=parts.len())
                            .rev()
                            .filter_map(|i| self.tags.get(parts[..i].join("|").as_str()))
                            .copied()
                            .find(|&n| {
                                rule.groups
                                    .get(n as usize)
                                    .is_some_and(|g| g.as_ref().is_some_and(|g| !g.is_empty()))
                            })
                            .unwrap_or(u32::MAX)
                    }
                    _ => own,
                };
                TagRoute::Tag(by_rule, own, force)
            }
        }
    }

    fn rule_mask(&self, invocation: &Invocation) -> Option<u64> {
        if self.rules.len() > 64 {
            return None;
        }
        let mut mask = 0u64;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.when_consumer && rule.when_method.matches(invocation) {
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
                .map(|r| r.when_consumer && r.when_method.matches(invocation))
                .collect();
            return Routed::from(self.compute(tag, |i| applies[i]).0);
        };
        if self.weighted {
            // Destinations are picked per call: compute, then share the list of the same
            // picks (balancer state lives in it).
            let (providers, picks) = self.compute(tag, |i| mask & (1 << i) != 0);
            let key: RouteKey = (tag, mask, picks.into_boxed_slice());
            return self.cached(key, || Routed::new(providers, self.carried.clone()));
        }
        let key: RouteKey = (tag, mask, Box::default());
        if let Some(routed) = self.routes.load().get(&key) {
            return routed.clone();
        }
        self.cached(key, || {
            Routed::new(
                self.compute(tag, |i| mask & (1 << i) != 0).0,
                self.carried.clone(),
            )
        })
    }

    fn cached(&self, key: RouteKey, make: impl FnOnce() -> Routed) -> Routed {
        if let Some(routed) = self.routes.load().get(&key) {
            return routed.clone();
        }
        let routed = make();
        if self.routes.load().len() < MAX_ROUTES {
            self.routes.rcu(|routes| {
                let mut next = HashMap::clone(routes);
                next.entry(key.clone()).or_insert_with(|| routed.clone());
                next
            });
        }
        self.routes.load().get(&key).cloned().unwrap_or(routed)
    }

    /// The providers a tag route starts from: Java's `TagStateRouter` with a tag rule,
    /// the providers' own tags without one.
    fn tag_select(&self, tag: TagRoute) -> Vec<u32> {
        let n = self.all.len() as u32;
        let own_group =
            |t: u32| -> Vec<u32> { self.groups.get(t as usize).cloned().unwrap_or_default() };
        let Some(rule) = &self.dynamic_tags else {
            return match tag {
                TagRoute::Default if self.untagged.is_empty() => (0..n).collect(),
                TagRoute::Default => self.untagged.clone(),
                TagRoute::Tag(_, t, force) => {
                    let group = own_group(t);
                    if !group.is_empty() || force {
                        group
                    } else {
                        self.untagged.clone()
                    }
                }
            };
        };
        match tag {
            TagRoute::Tag(by_rule, t, force) => {
                // A tag the rule names: its addresses (even none left); otherwise the
                // providers' own tags. Nothing found: nothing when forced, else the
                // providers without any tag.
                let found = match rule.groups.get(by_rule as usize) {
                    Some(Some(members)) => {
                        if !members.is_empty() || rule.force {
                            return members.clone();
                        }
                        Vec::new()
                    }
                    _ => own_group(t),
                };
                if !found.is_empty() || force {
                    return found;
                }
                (0..n)
                    .filter(|&i| !rule.in_any[i as usize] && self.own_tag[i as usize].is_none())
                    .collect()
            }
            TagRoute::Default => {
                let kept: Vec<u32> = (0..n)
                    .filter(|&i| !(rule.any_addresses && rule.in_any[i as usize]))
                    .collect();
                if kept.is_empty() {
                    return kept;
                }
                kept.into_iter()
                    .filter(|&i| {
                        self.own_tag[i as usize]
                            .is_none_or(|t| !rule.named.get(t as usize).copied().unwrap_or(false))
                    })
                    .collect()
            }
        }
    }

    /// Tag routing, then the rules for which `applies(i)`, in order; also the
    /// destinations picked for weighted rules (index + 1 per applied weighted rule).
    fn compute(
        &self,
        tag: TagRoute,
        applies: impl Fn(usize) -> bool,
    ) -> (Vec<Arc<Provider>>, Vec<u32>) {
        let mut kept = self.tag_select(tag);
        let mut picks = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !applies(i) || kept.is_empty() {
                continue;
            }
            let next: Vec<u32> = match &rule.then {
                Then::Blacklist => {
                    kept.clear();
                    continue;
                }
                Then::Keep(then) => kept.iter().copied().filter(|&p| then[p as usize]).collect(),
                Then::Weighted(destinations) => {
                    if destinations.is_empty() {
                        kept.clear();
                        continue;
                    }
                    let candidates: Vec<(usize, Vec<u32>)> = destinations
                        .iter()
                        .enumerate()
                        .map(|(d, (_, then))| {
                            (
                                d,
                                kept.iter()
                                    .copied()
                                    .filter(|&p| then[p as usize])
                                    .collect::<Vec<u32>>(),
                            )
                        })
                        .filter(|(_, k)| !k.is_empty())
                        .collect();
                    let weights: Vec<u32> =
                        candidates.iter().map(|(d, _)| destinations[*d].0).collect();
                    match pick_weighted(&weights) {
                        Some(c) => {
                            let (d, chosen) = candidates.into_iter().nth(c).unwrap_or_default();
                            picks.push(d as u32 + 1);
                            if chosen.len() * 100 / kept.len() > rule.ratio as usize {
                                chosen
                            } else {
                                Vec::new()
                            }
                        }
                        None => {
                            picks.push(0);
                            if rule.force {
                                Vec::new()
                            } else {
                                continue;
                            }
                        }
                    }
                }
            };
            if next.is_empty() && !rule.force && !matches!(rule.then, Then::Weighted(_)) {
                tracing::warn!(rule = %rule.text, "condition rule selects no provider; not applied");
                continue;
            }
            kept = next;
        }
        let providers = kept
            .into_iter()
            .map(|i| self.all[i as usize].clone())
            .collect();
        (providers, picks)
    }
}

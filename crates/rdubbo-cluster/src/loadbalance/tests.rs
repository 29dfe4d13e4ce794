//! Tests of the balancers: shares, warm-up, stickiness and the precomputed state.
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

/// Arguments of every kind, hashed with `hash.arguments=0,1` and with the default `0`.
fn hash_cases() -> Vec<(&'static str, rdubbo_core::Args)> {
    use rdubbo_core::Args;
    use serde_json::json;
    let mut map = rdubbo_core::value::Map::default();
    map.entries.push((Value::from("b"), Value::Int(2)));
    map.entries.push((Value::from("a"), Value::Int(1)));
    let list = Value::list(vec![Value::Int(1), Value::from("two")]);
    vec![
        (
            "str",
            Args::Values(vec![Value::from("user-42"), Value::Int(1)]),
        ),
        (
            "str2",
            Args::Values(vec![Value::from("hello, rdubbo"), Value::from("x")]),
        ),
        (
            "esc",
            Args::Values(vec![Value::from("a\"b\\c\n\u{e9}\u{1}"), Value::Null]),
        ),
        (
            "int",
            Args::Values(vec![Value::Int(-7), Value::Long(1 << 40)]),
        ),
        (
            "long",
            Args::Values(vec![Value::Long(1 << 40), Value::Bool(true)]),
        ),
        (
            "double",
            Args::Values(vec![Value::Double(1.5), Value::Double(f64::NAN)]),
        ),
        (
            "double2",
            Args::Values(vec![Value::Double(1e21), Value::Double(3.0)]),
        ),
        (
            "bool",
            Args::Values(vec![Value::Bool(false), Value::Date(5)]),
        ),
        (
            "null",
            Args::Values(vec![Value::Null, Value::Binary(vec![1, 2, 3])]),
        ),
        (
            "date",
            Args::Values(vec![Value::Date(1_700_000_000_000), Value::Int(0)]),
        ),
        (
            "binary",
            Args::Values(vec![Value::Binary(vec![0, 255]), Value::Int(0)]),
        ),
        ("map", Args::Values(vec![Value::Map(map), Value::from("k")])),
        ("list", Args::Values(vec![list, Value::Int(0)])),
        ("none", Args::Values(vec![])),
        ("one", Args::Values(vec![Value::from("only")])),
        ("jstr", Args::Json(vec![json!("user-42"), json!(1)])),
        ("jint", Args::Json(vec![json!(-7), json!(1u64 << 40)])),
        ("jbig", Args::Json(vec![json!(u64::MAX), json!(2.5)])),
        ("jfloat", Args::Json(vec![json!(1.0), json!(1e300)])),
        (
            "jobj",
            Args::Json(vec![json!({"z": 1, "a": [true, null]}), json!("s")]),
        ),
        (
            "jclass",
            Args::Json(vec![json!({"class": "demo.User", "id": 3}), json!(null)]),
        ),
        ("typed", Args::typed((String::from("user-42"), 1i32))),
        ("typed2", Args::typed((7i64, 1.5f32))),
    ]
}

/// Java's key text (`toKey` with `hash.arguments=0,1`) of each case of [`hash_cases`].
const JAVA_KEYS: [(&str, &str); 23] = [
    ("str", "user-421"),
    ("str2", "hello, rdubbox"),
    ("esc", "a\"b\\c\n\u{e9}\u{1}null"),
    ("int", "-71099511627776"),
    ("long", "1099511627776true"),
    ("double", "1.5NaN"),
    ("double2", "1.0E213.0"),
    ("bool", "falseThu Jan 01 00:00:00 UTC 1970"),
    ("null", "null[1, 2, 3]"),
    ("date", "Tue Nov 14 22:13:20 UTC 20230"),
    ("binary", "[0, -1]0"),
    ("map", "{b=2, a=1}k"),
    ("list", "[1, two]0"),
    ("none", ""),
    ("one", "only"),
    ("jstr", "user-421"),
    ("jint", "-71099511627776"),
    ("jbig", "-12.5"),
    ("jfloat", "1.01.0E300"),
    ("jobj", "{z=1, a=[true, null]}s"),
    ("jclass", "User(id=3)null"),
    ("typed", "user-421"),
    ("typed2", "71.5"),
];

#[test]
fn consistent_hash_keys_are_the_java_to_string_texts_of_the_arguments() {
    use super::consistent_hash::key_text;
    let cases = hash_cases();
    assert_eq!(cases.len(), JAVA_KEYS.len());
    for ((name, args), (expected, text)) in cases.into_iter().zip(JAVA_KEYS) {
        assert_eq!(name, expected);
        assert_eq!(key_text(&args, &[0, 1]), text, "{name}");
        // Indices past the last argument are skipped; the same one may come twice.
        let first: String = text
            .chars()
            .take(key_text(&args, &[0]).chars().count())
            .collect();
        assert_eq!(key_text(&args, &[0, 7]), first, "{name}");
        assert_eq!(
            key_text(&args, &[0, 0]),
            format!("{first}{first}"),
            "{name}"
        );
    }
}

#[test]
fn consistent_hash_key_position_is_the_md5_of_the_key_text() {
    use super::consistent_hash::{key_position, key_text};
    use md5::{Digest, Md5};
    for (name, args) in hash_cases() {
        for selected in [&[0][..], &[1], &[0, 1], &[1, 0], &[], &[5], &[1, 1, 0]] {
            let d = Md5::digest(key_text(&args, selected).as_bytes());
            assert_eq!(
                key_position(&args, selected),
                u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                "{name} {selected:?}"
            );
        }
    }
    // md5("") = d41d8cd98f00b204e9800998ecf8427e: its first four bytes, little-endian.
    assert_eq!(
        key_position(&rdubbo_core::Args::Values(vec![]), &[0]),
        0xd98c_1dd4
    );
}

#[test]
fn doubles_are_written_as_java_double_to_string() {
    let java = |x: f64| {
        let mut s = String::new();
        super::consistent_hash::write_java_double(&mut s, x).unwrap();
        s
    };
    for (x, text) in [
        (1.0, "1.0"),
        (-1.5, "-1.5"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (100.0, "100.0"),
        (1234567.0, "1234567.0"),
        (9999999.999999998, "9999999.999999998"),
        (1e7, "1.0E7"),
        (12345678.9, "1.23456789E7"),
        (0.001, "0.001"),
        (0.0001, "1.0E-4"),
        (-1.5e-7, "-1.5E-7"),
        (123456.789, "123456.789"),
        (1.0 / 3.0, "0.3333333333333333"),
        (100.0 / 3.0, "33.333333333333336"),
        (1e21, "1.0E21"),
        (1e23, "1.0E23"),
        (1e300, "1.0E300"),
        (f64::MAX, "1.7976931348623157E308"),
        (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
        // Java takes the closest of one or two digits: Rust's shortest is `5e-324`.
        (f64::from_bits(1), "4.9E-324"),
        // Closer than `1.0E-323` (which Java 17 and older write).
        (f64::from_bits(2), "9.9E-324"),
        // Ties: the even digit (Rust's shortest rounds up: `...183E14`).
        (
            f64::from_bits(0x4302_f930_37cc_5af2),
            "6.675668838347182E14",
        ),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(java(x), text, "{x:e}");
    }
}

#[test]
fn dates_are_written_as_java_date_to_string_in_utc() {
    let java = |ms: i64| {
        let mut s = String::new();
        super::consistent_hash::write_java_date(&mut s, ms).unwrap();
        s
    };
    assert_eq!(java(0), "Thu Jan 01 00:00:00 UTC 1970");
    assert_eq!(java(-1), "Wed Dec 31 23:59:59 UTC 1969");
    assert_eq!(java(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    assert_eq!(java(4_102_444_799_999), "Thu Dec 31 23:59:59 UTC 2099");
}

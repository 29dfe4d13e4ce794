//! `loadbalance=consistenthash` sends every key to the provider the real Java Dubbo's
//! `ConsistentHashLoadBalance` sends it to, for the same providers: strings (non-ASCII
//! too), chars, ints, longs, booleans, doubles, dates, null, lists, two-argument keys,
//! `hash.nodes` and `hash.arguments`, 10 to 1,000 providers; arguments as dynamic values,
//! JSON and typed tuples. The Java side is `tests/java/com/example/hash/HashPicks.java`,
//! run against Java Dubbo 2.7.23 and 3.3.1; without them the tests are skipped LOUDLY
//! (`RDUBBO_REQUIRE_JAVA=1` fails instead).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rdubbo_cluster::{ClusterInvoker, Directory, Provider};
use rdubbo_core::{Args, BoxFuture, Invocation, Invoker, Protocol, Reply, RpcResult, Url, Value};
use rdubbo_testkit::java::{target_tmp, DubboVersion, JavaDubbo};
use rdubbo_testkit::ChildGuard;

struct Nop;
impl Invoker for Nop {
    fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async { Ok(Reply::Value(Value::Null)) })
    }
}

struct Jsonrpc;
impl Protocol for Jsonrpc {
    fn name(&self) -> &'static str {
        "jsonrpc"
    }
    fn refer(&self, _: &Url) -> RpcResult<Arc<dyn Invoker>> {
        Ok(Arc::new(Nop))
    }
}

/// One argument, as Java gets it and as rdubbo gets it.
#[derive(Clone, Debug)]
enum Arg {
    Str(String),
    Char(char),
    Int(i32),
    Long(i64),
    Bool(bool),
    Double(f64),
    Date(i64),
    Null,
    List(Vec<String>),
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

impl Arg {
    /// The `HashPicks` spec of the argument.
    fn java(&self) -> String {
        match self {
            Arg::Str(s) => format!("s:{}", hex(s)),
            Arg::Char(c) => format!("c:{:x}", *c as u32),
            Arg::Int(i) => format!("i:{i}"),
            Arg::Long(l) => format!("l:{l}"),
            Arg::Bool(b) => format!("b:{b}"),
            Arg::Double(d) => format!("d:{:x}", d.to_bits()),
            Arg::Date(ms) => format!("t:{ms}"),
            Arg::Null => "n:".to_owned(),
            Arg::List(items) => format!(
                "L:{}",
                items.iter().map(|s| hex(s)).collect::<Vec<_>>().join(",")
            ),
        }
    }

    /// What rdubbo receives for it (a Java `char` travels as a one-character string).
    fn value(&self) -> Value {
        match self {
            Arg::Str(s) => Value::from(s.as_str()),
            Arg::Char(c) => Value::from(c.to_string()),
            Arg::Int(i) => Value::Int(*i),
            Arg::Long(l) => Value::Long(*l),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Double(d) => Value::Double(*d),
            Arg::Date(ms) => Value::Date(*ms),
            Arg::Null => Value::Null,
            Arg::List(items) => {
                Value::list(items.iter().map(|s| Value::from(s.as_str())).collect())
            }
        }
    }

    /// Its JSON-RPC form, where JSON has one.
    fn json(&self) -> Option<serde_json::Value> {
        Some(match self {
            Arg::Str(s) => serde_json::json!(s),
            Arg::Int(i) => serde_json::json!(i),
            Arg::Long(l) => serde_json::json!(l),
            Arg::Bool(b) => serde_json::json!(b),
            Arg::Double(d) if d.is_finite() && d.fract() != 0.0 => serde_json::json!(d),
            Arg::Null => serde_json::Value::Null,
            Arg::List(items) => serde_json::json!(items),
            _ => return None,
        })
    }
}

/// A call: its arguments for Java, and the rdubbo invocations carrying them.
struct Key {
    java: Vec<Arg>,
    calls: Vec<(&'static str, Args)>,
}

impl Key {
    fn new(args: Vec<Arg>) -> Key {
        let mut calls = vec![(
            "values",
            Args::Values(args.iter().map(Arg::value).collect()),
        )];
        if let Some(json) = args.iter().map(Arg::json).collect::<Option<Vec<_>>>() {
            calls.push(("json", Args::Json(json)));
        }
        Key { java: args, calls }
    }

    fn typed(args: Vec<Arg>, typed: Args) -> Key {
        let mut key = Key::new(args);
        key.calls.push(("typed", typed));
        key
    }
}

fn keys() -> Vec<Key> {
    use Arg::*;
    let s = |t: &str| Str(t.to_owned());
    let mut keys: Vec<Key> = (0..40)
        .map(|i| Key::new(vec![s(&format!("user-{i}"))]))
        .collect();
    keys.extend(
        ["", "café", "日本語", "😀 emoji", "a\tb", "Hello, World"]
            .into_iter()
            .map(|t| Key::new(vec![s(t)])),
    );
    keys.extend(
        [0, 1, -1, 42, i32::MAX, i32::MIN]
            .into_iter()
            .map(|i| Key::typed(vec![Int(i)], Args::typed((i,)))),
    );
    keys.extend(
        [0, 1 << 40, -7_000_000_000, i64::MAX, i64::MIN]
            .into_iter()
            .map(|l| Key::typed(vec![Long(l)], Args::typed((l,)))),
    );
    keys.push(Key::typed(vec![Bool(true)], Args::typed((true,))));
    keys.push(Key::typed(vec![Bool(false)], Args::typed((false,))));
    keys.extend(
        [
            1.5,
            0.1,
            100.0,
            1e7,
            1.0e-4,
            123_456.789,
            1.0 / 3.0,
            1e21,
            f64::MAX,
            f64::from_bits(1),
            f64::NAN,
            f64::NEG_INFINITY,
        ]
        .into_iter()
        .map(|d| Key::typed(vec![Double(d)], Args::typed((d,)))),
    );
    // Hessian has one 0.0: a typed -0.0 reaches the balancer through it as 0.0.
    keys.push(Key::new(vec![Double(-0.0)]));
    keys.push(Key::typed(vec![Char('x')], Args::typed(('x',))));
    keys.push(Key::typed(vec![Char('é')], Args::typed(('é',))));
    keys.push(Key::new(vec![Date(0)]));
    keys.push(Key::new(vec![Date(1_700_000_000_123)]));
    keys.push(Key::new(vec![Null]));
    keys.push(Key::typed(vec![Null], Args::typed((None::<String>,))));
    keys.push(Key::new(vec![List(vec!["a".into(), "b c".into()])]));
    keys.push(Key::new(vec![List(vec![])]));
    // Two arguments (with `hash.arguments=0,1` both count).
    for i in 0..12 {
        keys.push(Key::typed(
            vec![s(&format!("order-{i}")), Long(i * 1000)],
            Args::typed((format!("order-{i}"), i * 1000)),
        ));
        keys.push(Key::new(vec![Int(i as i32), s("tail")]));
    }
    keys.push(Key::new(vec![Null, Bool(true)]));
    keys.push(Key::new(vec![s("x"), Null]));
    keys.push(Key::new(vec![]));
    keys
}

/// A set of providers (their addresses and URL parameters) and the keys asked of it.
struct Providers {
    name: &'static str,
    params: &'static str,
    addresses: Vec<String>,
    keys: Vec<Key>,
}

/// The ring points (`md5(address + i)`, four little-endian words each) of an address.
fn points(address: &str, groups: usize) -> Vec<u32> {
    use md5::{Digest, Md5};
    (0..groups)
        .flat_map(|n| {
            let d = Md5::digest(format!("{address}{n}").as_bytes());
            (0..4).map(move |k| {
                u32::from_le_bytes([d[4 * k], d[4 * k + 1], d[4 * k + 2], d[4 * k + 3]])
            })
        })
        .collect()
}

/// Two addresses with a ring point in common (at 160 nodes), that point, and keys whose
/// position falls on it on the ring of those two: who owns a shared point matters.
fn shared_point() -> (String, String, Vec<Key>) {
    let mut owner = std::collections::HashMap::new();
    let (a, b, point) = (0..100_000)
        .find_map(|i| {
            let address = format!("10.2.{}.{}:20880", i / 250, i % 250);
            points(&address, 40).into_iter().find_map(|p| {
                owner
                    .insert(p, address.clone())
                    .filter(|other| *other != address)
                    .map(|other| (other, address.clone(), p))
            })
        })
        .expect("a shared point among 100,000 addresses");
    let mut ring: Vec<u32> = [points(&a, 40), points(&b, 40)].concat();
    ring.sort_unstable();
    let before = ring
        .iter()
        .rev()
        .find(|&&p| p < point)
        .copied()
        .unwrap_or(0);
    let keys = (0..)
        .map(|n| format!("k{n}"))
        .filter(|k| {
            let d = <md5::Md5 as md5::Digest>::digest(k.as_bytes());
            let position = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            before < position && position <= point
        })
        .take(3)
        .map(|k| Key::new(vec![Arg::Str(k)]))
        .collect();
    (a, b, keys)
}

fn provider_sets() -> Vec<Providers> {
    let local = |n: u16| (0..n).map(|i| format!("127.0.0.1:{}", 20880 + i)).collect();
    let (a, b, on_shared) = shared_point();
    let on_shared_too = || on_shared.iter().map(|k| Key::new(k.java.clone())).collect();
    vec![
        Providers {
            name: "10 local, defaults",
            params: "",
            addresses: local(10),
            keys: keys(),
        },
        Providers {
            name: "40, hash.nodes=40, hash.arguments=0,1",
            params: "hash.nodes=40&hash.arguments=0,1",
            addresses: (0..40).map(|i| format!("10.0.0.{i}:20880")).collect(),
            keys: keys(),
        },
        Providers {
            name: "7, hash.nodes=10 (8 points), hash.arguments=1",
            params: "hash.nodes=10&hash.arguments=1",
            addresses: local(7),
            keys: keys(),
        },
        Providers {
            name: "1,000, defaults",
            params: "",
            addresses: (0..1000)
                .map(|i| format!("10.1.{}.{}:{}", i / 250, i % 250, 20000 + i % 7))
                .collect(),
            // Java builds a ring per key (see HashPicks): a third of the keys.
            keys: keys().into_iter().step_by(3).collect(),
        },
        Providers {
            name: "2 sharing a point",
            params: "",
            addresses: vec![a.clone(), b.clone()],
            keys: on_shared_too(),
        },
        Providers {
            name: "2 sharing a point, the other order",
            params: "",
            addresses: vec![b, a],
            keys: on_shared,
        },
    ]
}

/// rdubbo's cluster over `set`, the providers in the order its routed list has them.
fn cluster(set: &Providers) -> (ClusterInvoker, Vec<Arc<Provider>>) {
    let consumer: Url =
        "consumer://127.0.0.1/demo.Api?interface=demo.Api&loadbalance=consistenthash"
            .parse()
            .unwrap();
    let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
    let sep = if set.params.is_empty() { "" } else { "&" };
    let urls: Vec<Url> = set
        .addresses
        .iter()
        .map(|a| {
            format!(
                "jsonrpc://{a}/demo.Api?interface=demo.Api&methods=echo{sep}{}",
                set.params
            )
            .parse()
            .unwrap()
        })
        .collect();
    dir.update(&urls);
    let invoker = ClusterInvoker::new(dir).unwrap();
    let order = invoker
        .cluster()
        .list(&Invocation::new("demo.Api", "echo", Args::default()))
        .to_vec();
    (invoker, order)
}

fn sources() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("java")
}

/// Java's pick (`host:port`) of every key of every set, the providers in the given order;
/// `None` when Java Dubbo `version` is not installed.
fn java_picks(
    version: DubboVersion,
    sets: &[(&Providers, Vec<String>)],
) -> Option<Vec<Vec<String>>> {
    let java = JavaDubbo::find(version)?;
    let classes = java.compile(&sources());
    let mut input = String::new();
    for (set, order) in sets {
        let params = if set.params.is_empty() {
            "-"
        } else {
            set.params
        };
        input.push_str(&format!("P\t{params}\t{}\n", order.join("\t")));
        for key in &set.keys {
            input.push('K');
            for arg in &key.java {
                input.push('\t');
                input.push_str(&arg.java());
            }
            input.push('\n');
        }
    }
    let log = target_tmp().join(format!(
        "hash-picks-{}-{}.log",
        version.label(),
        std::process::id()
    ));
    let mut cmd = java.command(&classes, "com.example.hash.HashPicks");
    // Java 17 hashes the key's bytes in its default charset: UTF-8, whatever the locale.
    cmd.env("JAVA_TOOL_OPTIONS", "-Dfile.encoding=UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = ChildGuard::spawn(&mut cmd).unwrap();
    let mut stdin = child.0.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| {
            panic!(
                "HashPicks ({version}) did not finish; log: {}",
                log.display()
            )
        });
    writer.join().unwrap().unwrap();
    let total: usize = sets.iter().map(|(set, _)| set.keys.len()).sum();
    assert!(
        out.contains(&format!("DONE {total}")),
        "HashPicks ({version}) failed:\n{out}\nlog {}:\n{}",
        log.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(out.contains("CHARSET UTF-8"), "{out}");
    let mut picks = out
        .lines()
        .filter_map(|l| l.strip_prefix("PICK "))
        .map(|l| l.split(' ').nth(1).unwrap().to_owned());
    Some(
        sets.iter()
            .map(|(set, _)| picks.by_ref().take(set.keys.len()).collect())
            .collect(),
    )
}

fn picks_match(version: DubboVersion) {
    let sets = provider_sets();
    let clusters: Vec<_> = sets.iter().map(cluster).collect();
    let orders: Vec<(&Providers, Vec<String>)> = sets
        .iter()
        .zip(&clusters)
        .map(|(set, (_, order))| (set, order.iter().map(|p| p.url.address()).collect()))
        .collect();
    let Some(java) = java_picks(version, &orders) else {
        return;
    };
    let mut checked = 0;
    for ((set, (invoker, _)), java) in sets.iter().zip(&clusters).zip(&java) {
        assert_eq!(java.len(), set.keys.len(), "{}", set.name);
        let cluster = invoker.cluster();
        let mut spread = std::collections::HashSet::new();
        for (key, expected) in set.keys.iter().zip(java) {
            spread.insert(expected.clone());
            for (form, args) in &key.calls {
                let call = Invocation::new("demo.Api", "echo", args.clone());
                let providers = cluster.list(&call);
                let picked = cluster.select(&providers, &[], &call).unwrap();
                assert_eq!(
                    &picked.url.address(),
                    expected,
                    "{version}, {}: key {:?} as {form}",
                    set.name,
                    key.java
                );
                checked += 1;
            }
        }
        if set.addresses.len() > 2 {
            // The keys are not all on one provider: the test tells rings apart.
            assert!(spread.len() > 3, "{}: {spread:?}", set.name);
        } else {
            // The shared point goes to the later provider of the list, as in Java.
            assert_eq!(spread.len(), 1, "{}", set.name);
            assert!(
                spread.contains(&set.addresses[1]),
                "{}: {spread:?}",
                set.name
            );
        }
    }
    println!("{version}: {checked} picks agree");
}

#[test]
fn picks_match_java_dubbo_2_7() {
    picks_match(DubboVersion::V2_7);
}

#[test]
fn picks_match_java_dubbo_3_3() {
    picks_match(DubboVersion::V3_3);
}

//! The cluster layer's share of a call: `list` (tag routing, condition rules) and `select`
//! (ejection check, balancer pick) for every built-in balancer at 10, 100, 1,000 and
//! 10,000 providers, without routing rules (`plain`) and with a condition rule plus
//! tagged providers (`routed`: a tenth of the providers carry `dubbo.tag=gray`, the rule
//! takes one host out).
//!
//! `cargo bench -p rdubbo-cluster --bench balancers`; `BENCH_QUICK=1` for short runs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rdubbo_cluster::{ClusterInvoker, Directory};
use rdubbo_core::{BoxFuture, Invocation, Invoker, Protocol, Reply, RpcResult, Url, Value};

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

const BALANCERS: &[&str] = &[
    "random",
    "roundrobin",
    "leastactive",
    "shortestresponse",
    "p2c",
    "consistenthash",
];
const SIZES: &[usize] = &[10, 100, 1_000, 10_000];

/// A directory of `n` providers registered an hour ago (warmed up), as a registry
/// notifies them.
fn directory(balancer: &str, n: usize, routed: bool) -> Arc<Directory> {
    let consumer: Url = format!(
        "consumer://10.20.0.1/demo.Api?interface=demo.Api&application=web&loadbalance={balancer}"
    )
    .parse()
    .expect("consumer URL");
    let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
    let hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        - 3_600_000;
    let urls: Vec<Url> = (0..n)
        .map(|i| {
            let tag = if routed && i % 10 == 9 {
                "&dubbo.tag=gray"
            } else {
                ""
            };
            format!(
                "jsonrpc://10.{}.{}.{}:20880/demo.Api?interface=demo.Api&application=demo\
                 &methods=echo,sayHello&side=provider&timestamp={hour_ago}&weight=100{tag}",
                i / 65536,
                (i / 256) % 256,
                i % 256
            )
            .parse()
            .expect("provider URL")
        })
        .collect();
    dir.update(&urls);
    if routed {
        let rule = rdubbo_core::url::encode("application = web => host != 10.0.0.1");
        dir.update_routers(&[
            format!("condition://0.0.0.0/demo.Api?category=routers&rule={rule}")
                .parse()
                .expect("rule URL"),
        ]);
    }
    dir
}

fn list_and_select(c: &mut Criterion) {
    let inv = Invocation::new("demo.Api", "echo", vec![Value::from("hello")]);
    for routed in [false, true] {
        let mut group = c.benchmark_group(if routed { "routed" } else { "plain" });
        for &balancer in BALANCERS {
            for &n in SIZES {
                let dir = directory(balancer, n, routed);
                let invoker = ClusterInvoker::new(dir).expect("cluster");
                let cluster = invoker.cluster().clone();
                group.bench_with_input(BenchmarkId::new(balancer, n), &n, |b, _| {
                    b.iter(|| {
                        let providers = cluster.list(black_box(&inv));
                        black_box(cluster.select(&providers, &[], &inv))
                    })
                });
            }
        }
        group.finish();
    }
}

fn config() -> Criterion {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let c = Criterion::default();
    if quick {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20)
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = list_and_select
}
criterion_main!(benches);

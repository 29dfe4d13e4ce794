//! What the cluster layer allocates per call: `list` + `select` of every built-in balancer
//! over a warm directory, counted by a counting global allocator (this test binary's own),
//! on the calling thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rdubbo_cluster::{ClusterInvoker, Directory};
use rdubbo_core::{Args, BoxFuture, Invocation, Invoker, Protocol, Reply, RpcResult, Url, Value};

thread_local! {
    /// Allocations of this thread while counting (`None`: not counting).
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

/// The system allocator, counting the allocations of a thread that asked for it.
struct Counting;

// A counting global allocator cannot be written without `unsafe`.
#[allow(unsafe_code)]
// SAFETY: every method forwards to the system allocator with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|c| c.set(Some(0)));
    f();
    ALLOCATIONS.with(|c| c.replace(None)).unwrap_or(0)
}

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

/// A cluster of `n` providers registered an hour ago with `loadbalance=balancer`.
fn cluster(balancer: &str, n: usize) -> ClusterInvoker {
    let consumer: Url = format!(
        "consumer://10.20.0.1/demo.Api?interface=demo.Api&application=web\
         &loadbalance={balancer}&hash.arguments=0,1"
    )
    .parse()
    .unwrap();
    let dir = Directory::new(consumer, vec![Arc::new(Jsonrpc)]);
    let hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3_600_000;
    let urls: Vec<Url> = (0..n)
        .map(|i| {
            format!(
                "jsonrpc://10.0.{}.{}:20880/demo.Api?interface=demo.Api&application=demo\
                 &methods=echo&side=provider&timestamp={hour_ago}&hash.arguments=0,1",
                i / 256,
                i % 256
            )
            .parse()
            .unwrap()
        })
        .collect();
    dir.update(&urls);
    ClusterInvoker::new(dir).unwrap()
}

#[test]
fn list_and_select_allocate_nothing_per_call() {
    let calls: Vec<Invocation> = (0..200)
        .flat_map(|i| {
            [
                Args::Values(vec![Value::from(format!("user-{i}")), Value::Int(i)]),
                Args::Json(vec![
                    serde_json::json!(format!("user-{i}")),
                    serde_json::json!(i),
                ]),
            ]
        })
        .map(|args| Invocation::new("demo.Api", "echo", args))
        .collect();
    for balancer in [
        "random",
        "roundrobin",
        "leastactive",
        "shortestresponse",
        "p2c",
        "consistenthash",
    ] {
        let invoker = cluster(balancer, 1_000);
        let cluster = invoker.cluster();
        // The first call builds the routes and the balancer's tables.
        let providers = cluster.list(&calls[0]);
        let first = cluster.select(&providers, &[], &calls[0]).is_some();
        assert!(first, "{balancer}: no provider");
        let mut picked = Vec::with_capacity(calls.len());
        let n = allocations(|| {
            for call in &calls {
                let providers = cluster.list(call);
                picked.push(cluster.select(&providers, &[], call));
            }
        });
        assert_eq!(n, 0, "{balancer}: {n} allocations in {} calls", calls.len());
        assert!(picked.iter().all(Option::is_some));
    }
}

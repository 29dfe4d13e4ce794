//! The facade's extension points: layers around a reference (outside the cluster) and
//! around each attempt (inside it), providers serving the protocol of their table, registry
//! factories, and the call context carried into spawned tasks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdubbo::consumer::Reference;
use rdubbo::context;
use rdubbo::extension::{self, Extensions};
use rdubbo::provider::{Provider, ProviderBuilder};
use rdubbo::{
    BoxFuture, Invocation, Invoker, Layer, Protocol, Reply, RpcError, RpcResult, SetupError, Url,
};

#[rdubbo::service(interface = "org.example.Probe", version = "1.0.0")]
pub trait Probe {
    /// What the method, a task it starts with `context::spawn` and one it starts with a
    /// plain `tokio::spawn` see of the call.
    async fn probe(&self) -> RpcResult<Vec<String>>;
    /// The `trace` attachment and whether a deadline came with the call.
    async fn trace(&self) -> RpcResult<String>;
}

struct Prober;

/// What the current task sees of the call it serves.
fn seen() -> String {
    match context::current() {
        Some(call) => format!(
            "deadline={} tenant={}",
            call.deadline.is_some(),
            call.attachments.get("tenant").unwrap_or("-")
        ),
        None => "no call".to_owned(),
    }
}

impl Probe for Prober {
    async fn probe(&self) -> RpcResult<Vec<String>> {
        let carried = context::spawn(async { seen() })
            .await
            .map_err(|e| RpcError::service(e.to_string()))?;
        let plain = tokio::spawn(async { seen() })
            .await
            .map_err(|e| RpcError::service(e.to_string()))?;
        Ok(vec![seen(), carried, plain])
    }

    async fn trace(&self) -> RpcResult<String> {
        let call = context::current();
        let trace = call
            .as_ref()
            .and_then(|c| c.attachments.get("trace"))
            .unwrap_or("-");
        let deadline = call.as_ref().and_then(|c| c.deadline).is_some();
        Ok(format!("trace={trace} deadline={deadline}"))
    }
}

/// A provider of [`Prober`] on a port of its own, as `configure` sets it up.
async fn start_provider_with(
    configure: impl FnOnce(ProviderBuilder) -> ProviderBuilder,
) -> Provider {
    let builder = Provider::builder("127.0.0.1:0".parse().unwrap()).export(
        ProbeServer::<Prober>::info(),
        Arc::new(ProbeServer::new(Prober)),
    );
    configure(builder).start().await.unwrap()
}

async fn start_provider() -> Provider {
    start_provider_with(|b| {
        b.unregister_wait(Duration::ZERO)
            .drain(Duration::from_secs(1))
    })
    .await
}

fn url_of(provider: &Provider) -> Url {
    provider.urls()[0].clone()
}

/// Counts the calls it sees; fails the first `fail` of them with a retryable error.
struct Counting {
    seen: Arc<AtomicUsize>,
    fail: usize,
}

struct CountingInvoker {
    seen: Arc<AtomicUsize>,
    fail: usize,
    inner: Arc<dyn Invoker>,
}

impl Layer for Counting {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(CountingInvoker {
            seen: self.seen.clone(),
            fail: self.fail,
            inner,
        })
    }
}

impl Invoker for CountingInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        if n < self.fail {
            return Box::pin(async {
                Err(RpcError::Connect {
                    addr: "attempt layer".into(),
                    reason: "refused on purpose".into(),
                })
            });
        }
        self.inner.invoke(invocation)
    }
}

/// A client of `provider` with `retries`, an outer layer counting into `outer` and an
/// attempt layer counting into `attempts` that fails the first `fail` attempts.
async fn counted_client(
    provider: &Provider,
    retries: usize,
    outer: &Arc<AtomicUsize>,
    attempts: &Arc<AtomicUsize>,
    fail: usize,
) -> ProbeClient {
    let reference = Reference::builder("org.example.Probe")
        .version("1.0.0")
        .url(url_of(provider))
        .retries(retries)
        .layer(Arc::new(Counting {
            seen: outer.clone(),
            fail: 0,
        }))
        .attempt_layer(Arc::new(Counting {
            seen: attempts.clone(),
            fail,
        }))
        .build()
        .await
        .unwrap();
    ProbeClient::new(Arc::new(reference))
}

/// What `trace()` answers when called from a task started with `context::spawn` and from
/// one started with a plain `tokio::spawn`, both started where this future is polled.
async fn traces_of_spawned_tasks(client: Arc<ProbeClient>) -> (String, String) {
    let c = client.clone();
    let carried = context::spawn(async move { c.trace().await });
    let plain = tokio::spawn(async move { client.trace().await });
    (
        carried.await.unwrap().unwrap(),
        plain.await.unwrap().unwrap(),
    )
}

#[tokio::test]
async fn an_outer_layer_sees_a_call_once_an_attempt_layer_sees_each_attempt() {
    let provider = start_provider().await;
    let outer = Arc::new(AtomicUsize::new(0));
    let inner = Arc::new(AtomicUsize::new(0));
    let client = counted_client(&provider, 2, &outer, &inner, 2).await;
    // Two attempts fail in the attempt layer; failover makes a third, which reaches the
    // provider.
    assert!(client.trace().await.unwrap().starts_with("trace=-"));
    assert_eq!(outer.load(Ordering::SeqCst), 1);
    assert_eq!(inner.load(Ordering::SeqCst), 3);
    // Without retries the call fails after one attempt, seen once by each layer.
    let attempts = Arc::new(AtomicUsize::new(0));
    let client = counted_client(&provider, 0, &outer, &attempts, 1).await;
    let e = client.trace().await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(outer.load(Ordering::SeqCst), 2);
    provider.stop().await;
}

#[tokio::test]
async fn a_spawned_task_keeps_the_call_context_only_through_context_spawn() {
    let dispatcher: Arc<dyn Invoker> = Arc::new(ProbeServer::new(Prober));
    // As a server hands a call to the dispatcher: with a timeout and an attachment.
    let mut call = Invocation::new("org.example.Probe", "probe", Vec::<rdubbo::Value>::new())
        .with_version(Some("1.0.0"))
        .with_timeout(Some(Duration::from_secs(5)));
    call.attachments.insert("tenant", "acme");
    let seen: Vec<String> = dispatcher.invoke(call).await.unwrap().decode().unwrap();
    assert_eq!(
        seen,
        [
            "deadline=true tenant=acme", // the method itself
            "deadline=true tenant=acme", // a task started with context::spawn
            "no call",                   // a task started with tokio::spawn
        ]
    );

    // Consumer side: the attachments of `with_attachments` go with the calls of a task
    // started with context::spawn, not with those of a plain tokio::spawn.
    let client = Arc::new(ProbeClient::new(dispatcher));
    let mut extra = rdubbo::Attachments::new();
    extra.insert("trace", "t-1");
    let (carried, plain) = context::with_attachments(extra, traces_of_spawned_tasks(client)).await;
    assert_eq!(carried, "trace=t-1 deadline=false");
    assert_eq!(plain, "trace=- deadline=false");
}

#[tokio::test]
async fn calls_made_in_a_spawned_task_inherit_the_served_calls_deadline() {
    // A call served with 5 s left; a stub call made from a task it spawned through
    // context::spawn gets a deadline, one from a plain tokio::spawn does not.
    let mut call = Invocation::new("org.example.Probe", "trace", Vec::<rdubbo::Value>::new())
        .with_timeout(Some(Duration::from_secs(5)));
    call.attachments.insert("tenant", "acme");
    let served = context::CallContext::from_invocation(&call);
    let client = Arc::new(ProbeClient::new(Arc::new(ProbeServer::new(Prober))));
    let (carried, plain) = served.scope(traces_of_spawned_tasks(client)).await;
    assert_eq!(carried, "trace=- deadline=true");
    assert_eq!(plain, "trace=- deadline=false");
}

/// Asserts that `e` says no extension of `kind` is named `name`.
fn assert_unknown(e: &SetupError, kind: &str, name: &str) {
    assert!(
        matches!(e, SetupError::Unknown { kind: k, name: n, .. } if *k == kind && n == name),
        "{e}"
    );
}

#[tokio::test]
async fn a_provider_serves_the_protocol_of_its_table() {
    // A table without the protocol asked for: the start names what it knows.
    let e = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("jsonrpc")
        .extensions(Arc::new(Extensions::new()))
        .start()
        .await
        .err()
        .unwrap();
    assert_unknown(&e, "protocol", "jsonrpc");

    /// A consumer-only protocol.
    struct ReferOnly;
    impl Protocol for ReferOnly {
        fn name(&self) -> &'static str {
            "referonly"
        }
        fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
            Err(RpcError::Invalid(format!("cannot refer {url}")))
        }
    }
    let mut table = extension::builtin();
    table.add_protocol(Arc::new(ReferOnly));
    let e = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("referonly")
        .extensions(Arc::new(table))
        .start()
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SetupError::Unsupported(_)), "{e}");

    // An address in use: an I/O error naming what was being done.
    let provider = start_provider().await;
    let e = Provider::builder(provider.local_addr())
        .start()
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SetupError::Io { .. }), "{e}");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
    provider.stop().await;
}

#[tokio::test]
async fn a_reference_checks_its_strategy_and_balancer_in_its_table() {
    let provider = start_provider().await;
    let e = Reference::builder("org.example.Probe")
        .url(url_of(&provider))
        .loadbalance("nope")
        .build()
        .await
        .err()
        .unwrap();
    assert_unknown(&e, "loadbalance", "nope");
    // A direct URL of a protocol the table lacks.
    let e = Reference::builder("org.example.Probe")
        .url(url_of(&provider))
        .extensions(Arc::new(Extensions::with_cluster_builtins()))
        .build()
        .await
        .err()
        .unwrap();
    assert_unknown(&e, "protocol", "jsonrpc");
    provider.stop().await;
}

#[tokio::test]
async fn registries_open_through_the_factories_of_a_table() {
    let mut table = Extensions::new();
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    table.add_registry("memo", move |url: Url| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            Err::<Arc<dyn rdubbo::Registry>, _>(rdubbo::RegistryError::Invalid(format!(
                "memo registry at {}",
                url.address()
            )))
        }
    });
    let e = rdubbo::registry::connect_with(&table, "memo://10.0.0.1:1234")
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("memo registry at 10.0.0.1:1234"),
        "{e}"
    );
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    let e = rdubbo::registry::connect("memo://10.0.0.1:1234")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("unsupported registry `memo`"), "{e}");
    let builtin = extension::builtin();
    for scheme in rdubbo::registry::supported_schemes() {
        assert!(builtin.registry(scheme).is_some(), "{scheme}");
    }
    assert!(builtin.protocol("jsonrpc").is_some());
    assert!(builtin.protocol("dubbo").is_some());
    assert!(builtin.cluster("failover").is_some());
}

/// A user's protocol: JSON-RPC under a scheme of its own.
struct MyRpc(rdubbo::jsonrpc::JsonRpcProtocol);

impl Protocol for MyRpc {
    fn name(&self) -> &'static str {
        "myrpc"
    }
    fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
        self.0.refer(url)
    }
    fn serve(
        &self,
        listen: std::net::SocketAddr,
        exports: Vec<rdubbo::Export>,
    ) -> BoxFuture<'static, rdubbo::ServeResult> {
        self.0.serve(listen, exports)
    }
}

#[tokio::test]
async fn a_protocol_of_ones_own_serves_and_is_called_like_a_builtin() {
    let mut table = extension::builtin();
    table.add_protocol(Arc::new(MyRpc(Default::default())));
    let table = Arc::new(table);
    let provider = start_provider_with(|b| {
        b.protocol("myrpc")
            .extensions(table.clone())
            .unregister_wait(Duration::ZERO)
    })
    .await;
    let url = url_of(&provider);
    assert_eq!(url.protocol(), "myrpc");
    let reference = Reference::builder("org.example.Probe")
        .version("1.0.0")
        .url(url.clone())
        .extensions(table)
        .build()
        .await
        .unwrap();
    let client = ProbeClient::new(Arc::new(reference));
    assert_eq!(client.trace().await.unwrap(), "trace=- deadline=true");
    assert_eq!(provider.connections(), 1);
    // The built-in table does not know the scheme.
    let e = Reference::builder("org.example.Probe")
        .url(url)
        .build()
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("unknown protocol `myrpc`"), "{e}");
    provider.stop().await;
}

/// `memory://<name>` is a built-in registry: a provider and a consumer of one process find
/// each other through it by name, and another name is another registry.
#[tokio::test]
async fn memory_registry_by_url() {
    let registry = rdubbo::registry::connect("memory://ext-points")
        .await
        .unwrap();
    let provider = start_provider_with(|b| {
        b.protocol("dubbo")
            .unregister_wait(Duration::from_millis(10))
            .registry(registry.clone())
    })
    .await;
    let consumer_side = rdubbo::registry::connect("memory://ext-points")
        .await
        .unwrap();
    let reference = Reference::builder("org.example.Probe")
        .version("1.0.0")
        .registry(consumer_side)
        .build()
        .await
        .unwrap();
    let client = ProbeClient::new(Arc::new(reference));
    assert!(client.trace().await.unwrap().starts_with("trace=-"));
    let elsewhere = rdubbo::registry::connect("memory://another").await.unwrap();
    let none = Reference::builder("org.example.Probe")
        .version("1.0.0")
        .registry(elsewhere)
        .wait(Duration::from_millis(100))
        .build()
        .await;
    assert!(matches!(none, Err(SetupError::NoProvider(_))));
    provider.stop().await;
}

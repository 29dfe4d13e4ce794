//! The start of an application: extension names checked against the application's table
//! (plug-ins named in the file and used), and the rollback of a start that fails or is
//! cancelled after some of its steps: servers stopped and ports freed, nothing left
//! registered, references, metrics and registries closed. Real sockets, the embedded
//! registry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo::app::{AppError, Application, Config, Format};

mod app_common;
use app_common::*;

/// Names of protocols, registry schemes, load balancers and cluster strategies are not
/// checked by the file alone but against the application's extension table: the built-in
/// one rejects what it does not know, naming the key, before anything starts.
#[tokio::test]
async fn unknown_extension_names_are_errors_at_their_key() {
    let direct =
        "[consumer.references.x]\ninterface = \"a.B\"\nurl = \"dubbo://127.0.0.1:1/a.B\"\n";
    let cases = [
        (
            "[protocols.grpc]\n".to_owned(),
            "protocols.grpc.name",
            "unknown protocol `grpc` (known: ",
        ),
        (
            "[protocols.p]\nname = \"grpc\"\n".to_owned(),
            "protocols.p.name",
            "unknown protocol `grpc`",
        ),
        (
            "[registries.r]\naddress = \"etcd://127.0.0.1:2379\"\n".to_owned(),
            "registries.r.address",
            "unsupported registry `etcd` (supported: ",
        ),
        (
            format!("{direct}loadbalance = \"fastest\"\n"),
            "consumer.references.x.loadbalance",
            "unknown loadbalance `fastest` (known: ",
        ),
        (
            format!("{direct}cluster = \"nope\"\n"),
            "consumer.references.x.cluster",
            "unknown cluster `nope` (known: ",
        ),
        (
            format!("{direct}[consumer.references.x.methods.m]\nloadbalance = \"fastest\"\n"),
            "consumer.references.x.methods.m.loadbalance",
            "unknown loadbalance `fastest`",
        ),
        (
            "[consumer.references.x]\ninterface = \"a.B\"\nurl = \"grpc://127.0.0.1:1/a.B\"\n"
                .to_owned(),
            "consumer.references.x.url",
            "unknown protocol `grpc`",
        ),
    ];
    for (text, key, message) in cases {
        // The file alone is fine …
        let config = Config::from_str(&text, Format::Toml, "t.toml").unwrap();
        let e = config
            .check_extensions(&rdubbo::extension::builtin(), "t.toml")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.message.starts_with(message), "{text}: {e}");
        // … the application's start says so (its QoS and metrics ports are the defaults:
        // nothing is started before the check).
        let e = Application::builder(config)
            .source("t.toml")
            .start()
            .await
            .err()
            .unwrap();
        let AppError::Config(e) = e else {
            panic!("{text}: not a configuration error: {e}")
        };
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.message.starts_with(message), "{text}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("t.toml: key `{key}`: {message}")),
            "{e}"
        );
    }
}

/// Always the provider listed first; counts its picks.
struct First(Arc<AtomicU64>);

impl rdubbo::cluster::LoadBalance for First {
    fn select(
        &self,
        providers: &[Arc<rdubbo::cluster::Provider>],
        _: &rdubbo::Invocation,
    ) -> Arc<rdubbo::cluster::Provider> {
        self.0.fetch_add(1, Ordering::SeqCst);
        providers[0].clone()
    }
}

/// A protocol, a registry scheme, a load balancer and a cluster strategy of the user's own,
/// added to the applications' table, are accepted in the files and used: a provider
/// application serves over the protocol and registers through the registry; a consumer
/// application discovers it there and calls it with the balancer and the strategy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_in_the_applications_table_are_named_in_the_file() {
    let server = registry().await;
    let address = server.registry_url().replace("nacos://", "mynacos://");
    let provider_text = format!(
        r#"
[application]
name = "plugin-provider"
[registries.main]
address = "{address}"
[protocols.mine]
name = "myrpc"
port = 0
[provider.services.demo]
interface = "org.apache.dubbo.demo.DemoService"
version = "1.0.0"
[metrics]
enabled = false
[qos]
enabled = false
"#
    );
    let consumer_text = format!(
        r#"
[application]
name = "plugin-consumer"
[registries.main]
address = "{address}"
[consumer.references.demo]
interface = "org.apache.dubbo.demo.DemoService"
version = "1.0.0"
loadbalance = "first"
cluster = "counted"
[metrics]
enabled = false
[qos]
enabled = false
"#
    );
    let provider = |table: Option<Arc<rdubbo::extension::Extensions>>| {
        let mut b = Application::builder(
            Config::from_str(&provider_text, Format::Toml, "provider.toml").unwrap(),
        )
        .source("provider.toml")
        .service(
            "demo",
            DemoServiceServer::<Demo>::info(),
            Arc::new(DemoServiceServer::new(Demo("provider-plugins"))),
        );
        if let Some(table) = table {
            b = b.extensions(table);
        }
        b.start()
    };
    let consumer = || {
        Application::builder(
            Config::from_str(&consumer_text, Format::Toml, "consumer.toml").unwrap(),
        )
        .source("consumer.toml")
    };
    // The built-in table does not know them.
    let e = provider(None).await.err().unwrap();
    assert!(
        e.to_string()
            .starts_with("provider.toml: key `protocols.mine.name`: unknown protocol `myrpc`"),
        "{e}"
    );
    let e = consumer().start().await.err().unwrap();
    assert!(
        e.to_string().starts_with(
            "consumer.toml: key `registries.main.address`: unsupported registry `mynacos`"
        ),
        "{e}"
    );

    let (connects, picks, calls) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut table = rdubbo::extension::builtin();
    table.add_protocol(Arc::new(MyRpc(Default::default())));
    let c = connects.clone();
    table.add_registry("mynacos", move |mut url: rdubbo::Url| {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            url.set_protocol("nacos");
            rdubbo::registry::connect_url(&url).await
        }
    });
    let p = picks.clone();
    table.add_balancer("first", move || Arc::new(First(p.clone())));
    let failfast = table.cluster("failfast").unwrap().clone();
    table.add_cluster("counted", Counted(failfast, calls.clone()));
    let table = Arc::new(table);

    let provider = provider(Some(table.clone())).await.unwrap();
    let urls = provider.exported_urls();
    assert_eq!(urls.len(), 1);
    assert_eq!(urls[0].protocol(), "myrpc");
    let app = consumer().extensions(table).start().await.unwrap();
    let demo = DemoServiceClient::new(app.reference("demo").unwrap());
    for _ in 0..5 {
        assert_eq!(
            demo.say_hello("plug".into()).await.unwrap(),
            "Hello plug, from provider-plugins"
        );
    }
    assert_eq!(connects.load(Ordering::SeqCst), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(picks.load(Ordering::SeqCst) >= 5);
    app.shutdown().await;
    provider.shutdown().await;
}

/// A user's protocol: JSON-RPC under a scheme of its own.
struct MyRpc(rdubbo::jsonrpc::JsonRpcProtocol);

impl rdubbo::Protocol for MyRpc {
    fn name(&self) -> &'static str {
        "myrpc"
    }
    fn refer(&self, url: &rdubbo::Url) -> rdubbo::RpcResult<Arc<dyn rdubbo::Invoker>> {
        self.0.refer(url)
    }
    fn serve(
        &self,
        listen: SocketAddr,
        exports: Vec<rdubbo::Export>,
    ) -> rdubbo::BoxFuture<'static, rdubbo::ServeResult> {
        self.0.serve(listen, exports)
    }
}

/// A cluster strategy that counts the calls, then hands them to another.
struct Counted(Arc<dyn rdubbo::cluster::ClusterStrategy>, Arc<AtomicU64>);

impl rdubbo::cluster::ClusterStrategy for Counted {
    fn invoke(
        &self,
        cluster: &rdubbo::cluster::Cluster,
        invocation: rdubbo::Invocation,
    ) -> rdubbo::BoxFuture<'static, rdubbo::RpcResult<rdubbo::Reply>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.invoke(cluster, invocation)
    }
}

/// Whether something accepts connections at `addr`.
fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The addresses an application listens on, servers (by protocol id) then metrics.
fn listening(app: &Application) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = app.server_addrs().into_iter().map(|(_, a)| a).collect();
    addrs.extend(app.metrics_addr());
    addrs
}

/// Asserts that nothing listens on `addrs` any more: connections are refused and the
/// ports can be bound again.
fn assert_closed(addrs: &[SocketAddr]) {
    for addr in addrs {
        assert!(!accepts(*addr), "{addr} still accepts connections");
        std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("{addr} not free: {e}"));
    }
}

/// The QoS port, the last step that can fail, is taken: the start fails, and the servers,
/// the reference (its consumer URL), the metrics endpoint and the registry connection it
/// had started are undone first. The application's servers listen on 127.0.0.77, an
/// address nothing else in these tests uses (Linux routes 127/8 to loopback), so that the
/// ports a first start picked are still free for the second.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_failing_at_its_last_step_undoes_the_earlier_ones() {
    let server = registry().await;
    let reg = server.registry_url();
    let demo = start_provider(&reg, "provider-rollback").await;
    let baseline = server.stats().instances;
    let text = |ports: &[u16], qos: u16| {
        format!(
            r#"
[application]
name = "relay-rollback"
[registries.main]
address = "{reg}"
[protocols.dubbo]
ip = "127.0.0.77"
port = {}
[protocols.jsonrpc]
ip = "127.0.0.77"
port = {}
[provider.services.relay]
interface = "org.example.Relay"
[consumer.references.demo]
interface = "org.apache.dubbo.demo.DemoService"
version = "1.0.0"
[shutdown]
unregister_wait = 0
[metrics]
listen = "127.0.0.77:{}"
[qos]
port = {qos}
"#,
            ports[0], ports[1], ports[2]
        )
    };
    let start = |text: String| async move {
        Application::builder(Config::from_str(&text, Format::Toml, "relay.toml").unwrap())
            .service(
                "relay",
                RelayServer::<RelayImpl>::info(),
                Arc::new(RelayServer::new(RelayImpl(Arc::default()))),
            )
            .start()
            .await
    };
    // A first start picks the ports (two servers, metrics), registers the relay on both
    // protocols, its application instance (Dubbo 3) and the consumer of demo; its shutdown
    // takes them all away.
    let app = start(text(&[0, 0, 0], 0)).await.unwrap();
    let addrs = listening(&app);
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert_eq!(server.stats().instances, baseline + 4);
    app.shutdown().await;
    assert_eq!(server.stats().instances, baseline);
    let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let qos = taken.local_addr().unwrap().port();
    let registrations = server.stats().registrations;
    let e = start(text(&ports, qos))
        .await
        .err()
        .expect("the QoS port is taken");
    assert!(
        e.to_string()
            .starts_with(&format!("qos.port: cannot listen on 127.0.0.1:{qos}")),
        "{e}"
    );
    // The reference had registered its consumer URL; it is gone again, and no URL of the
    // relay was ever registered.
    assert!(server.stats().registrations > registrations);
    assert_eq!(server.stats().instances, baseline);
    // The servers and the metrics endpoint are closed and their ports free.
    assert_closed(&addrs);
    // The other application was left alone.
    let consumer = start_consumer(&reg).await;
    let client = DemoServiceClient::new(consumer.reference("demo").unwrap());
    assert!(client.say_hello("after".into()).await.is_ok());
    consumer.shutdown().await;

    // Once the QoS port is free, the same ports serve again.
    drop(taken);
    let app = start(text(&ports, 0)).await.unwrap();
    assert_eq!(listening(&app), addrs);
    app.shutdown().await;
    demo.shutdown().await;
}

/// A checked reference without a provider fails the start at the references step: the
/// servers bound before it are stopped and the metrics endpoint closed (127.0.0.78: see
/// above).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_reference_without_provider_undoes_the_servers() {
    let server = registry().await;
    let reg = server.registry_url();
    let text = |ports: &[u16], check: bool| {
        format!(
            r#"
[application]
name = "lonely"
[registries.main]
address = "{reg}"
[protocols.dubbo]
ip = "127.0.0.78"
port = {}
[provider.services.demo]
interface = "org.apache.dubbo.demo.DemoService"
[consumer.references.relay]
interface = "org.example.Relay"
check = {check}
[shutdown]
unregister_wait = 0
[metrics]
listen = "127.0.0.78:{}"
[qos]
enabled = false
"#,
            ports[0], ports[1]
        )
    };
    let start = |text: String| async move {
        Application::builder(Config::from_str(&text, Format::Toml, "lonely.toml").unwrap())
            .service(
                "demo",
                DemoServiceServer::<Demo>::info(),
                Arc::new(DemoServiceServer::new(Demo("lonely"))),
            )
            .start()
            .await
    };
    let app = start(text(&[0, 0], false)).await.unwrap();
    let addrs = listening(&app);
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    app.shutdown().await;
    let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();

    let e = start(text(&ports, true)).await.err().expect("no provider");
    assert!(
        e.to_string()
            .starts_with("consumer.references.relay: no provider"),
        "{e}"
    );
    assert_eq!(server.stats().instances, 0);
    assert_closed(&addrs);
}

/// A registry that takes everything and never answers a subscription, so that a start
/// against it waits (for the first rules of each service, then for the providers of a
/// checked reference). It records what it holds.
#[derive(Default)]
struct Silent {
    registered: Mutex<Vec<rdubbo::Url>>,
    subscriptions: Mutex<Vec<rdubbo::Url>>,
    destroyed: AtomicBool,
}

impl rdubbo::Registry for Silent {
    fn url(&self) -> &rdubbo::Url {
        static URL: std::sync::OnceLock<rdubbo::Url> = std::sync::OnceLock::new();
        URL.get_or_init(|| "silent://127.0.0.1:1".parse().unwrap())
    }
    fn is_available(&self) -> bool {
        true
    }
    fn register(&self, url: &rdubbo::Url) -> rdubbo::BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.registered.lock().unwrap().push(url.clone());
        Box::pin(async { Ok(()) })
    }
    fn unregister(&self, url: &rdubbo::Url) -> rdubbo::BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.registered.lock().unwrap().retain(|u| u != url);
        Box::pin(async { Ok(()) })
    }
    fn subscribe(
        &self,
        url: &rdubbo::Url,
        _: Arc<dyn rdubbo::NotifyListener>,
    ) -> rdubbo::BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.subscriptions.lock().unwrap().push(url.clone());
        Box::pin(async { Ok(()) })
    }
    fn unsubscribe(
        &self,
        url: &rdubbo::Url,
        _: &Arc<dyn rdubbo::NotifyListener>,
    ) -> rdubbo::BoxFuture<'_, rdubbo::RegistryResult<()>> {
        self.subscriptions.lock().unwrap().retain(|u| u != url);
        Box::pin(async { Ok(()) })
    }
    fn lookup(
        &self,
        _: &rdubbo::Url,
    ) -> rdubbo::BoxFuture<'_, rdubbo::RegistryResult<Vec<rdubbo::Url>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn destroy(&self) -> rdubbo::BoxFuture<'_, ()> {
        self.destroyed.store(true, Ordering::SeqCst);
        Box::pin(async {})
    }
}

/// A start whose task is aborted midway (its server listening, waiting for the first
/// rules of its service) is undone in the background: the server stops, the rules are no
/// longer followed, the registry is closed, and nothing was registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cancelled_midway_is_undone() {
    let silent = Arc::new(Silent::default());
    let mut table = rdubbo::extension::builtin();
    let s = silent.clone();
    table.add_registry("silent", move |_: rdubbo::Url| {
        let s = s.clone();
        async move { Ok(s as Arc<dyn rdubbo::Registry>) }
    });
    let text = r#"
[registries.main]
address = "silent://127.0.0.1:1"
[protocols.dubbo]
port = 0
[provider.services.demo]
interface = "org.apache.dubbo.demo.DemoService"
[consumer.references.relay]
interface = "org.example.Relay"
[metrics]
enabled = false
[qos]
enabled = false
"#;
    let builder = Application::builder(Config::from_str(text, Format::Toml, "s.toml").unwrap())
        .extensions(Arc::new(table))
        .service(
            "demo",
            DemoServiceServer::<Demo>::info(),
            Arc::new(DemoServiceServer::new(Demo("silent"))),
        );
    let starting = tokio::spawn(builder.start());
    // The service follows its rules (`provider://host:port/…`) once its server listens.
    let s = silent.clone();
    eventually("the server's rules subscription", move || {
        !s.subscriptions.lock().unwrap().is_empty()
    })
    .await;
    let rules = silent.subscriptions.lock().unwrap()[0].clone();
    let addr: SocketAddr = format!("{}:{}", rules.host(), rules.port().unwrap())
        .parse()
        .unwrap();
    assert!(accepts(addr), "{addr}");
    starting.abort();
    assert!(starting.await.err().is_some_and(|e| e.is_cancelled()));

    eventually("the server stopped", || !accepts(addr)).await;
    assert_closed(&[addr]);
    let s = silent.clone();
    eventually("the registry closed", move || {
        s.destroyed.load(Ordering::SeqCst)
    })
    .await;
    assert!(silent.subscriptions.lock().unwrap().is_empty());
    assert!(silent.registered.lock().unwrap().is_empty());
}

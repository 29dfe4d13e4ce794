//! Applications started from configuration text against the embedded registry: calls,
//! metrics, QoS over telnet and HTTP, online/offline, trace context across a call chain,
//! a provider shut down under load, configuration errors, names checked against the
//! application's extension table (plug-ins included), and a failed start that undoes what
//! it had started.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo::app::{AppError, Application, Config, Format};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod app_common;
use app_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_from_files_call_each_other_with_metrics_and_qos() {
    let server = registry().await;
    let reg = server.registry_url();
    let provider = start_provider(&reg, "provider-1").await;
    // Two protocols: the service is registered once on each.
    let urls = provider.exported_urls();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(urls.iter().any(|u| u.protocol() == "dubbo"));
    assert!(urls.iter().any(|u| u.protocol() == "jsonrpc"));
    for u in &urls {
        assert_eq!(u.param("application"), Some("provider-1"));
        assert_eq!(u.param("owner"), Some("team-a"));
        assert_eq!(u.param("timeout"), Some("2000"));
        assert_eq!(u.param("sayHello.timeout"), Some("500"));
    }

    let consumer = start_consumer(&reg).await;
    let demo = DemoServiceClient::new(consumer.reference("demo").unwrap());
    let handle = consumer.reference_handle("demo").unwrap();
    eventually("both providers", || {
        handle.directory().providers().len() == 2
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            demo.say_hello("shop".into()).await.unwrap(),
            "Hello shop, from provider-1"
        );
    }

    // Metrics on both sides.
    let (status, text) = http_get(consumer.metrics_addr().unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"rdubbo_requests_total{side="consumer",service="org.apache.dubbo.demo.DemoService",method="sayHello"} 20"#),
        "{text}"
    );
    assert!(
        text.contains("rdubbo_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains(r#"rdubbo_registry_up{registry="main""#),
        "{text}"
    );
    assert!(
        text.contains(r#"rdubbo_providers{service="org.apache.dubbo.demo.DemoService:1.0.0"} 2"#),
        "{text}"
    );
    let (_, text) = http_get(provider.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        text.contains(r#"rdubbo_requests_total{side="provider",service="org.apache.dubbo.demo.DemoService",method="sayHello"} 20"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rdubbo_server_connections{protocol="dubbo""#),
        "{text}"
    );
    assert!(
        text.contains(r#"rdubbo_in_flight_requests{side="provider""#),
        "{text}"
    );
    assert_eq!(
        http_get(provider.metrics_addr().unwrap(), "/other").await.0,
        404
    );

    // QoS over telnet.
    let qos = provider.qos_addr().unwrap();
    assert!(qos.ip().is_loopback());
    let mut t = Telnet::open(qos).await;
    assert!(t
        .cmd("help")
        .await
        .contains("invoke <interface>.<method>(<args>)"));
    let ls = t.cmd("ls").await;
    assert!(ls.contains("As Provider side:"), "{ls}");
    assert!(
        ls.contains("org.apache.dubbo.demo.DemoService:1.0.0"),
        "{ls}"
    );
    assert!(ls.contains("| Y "), "{ls}");
    let ps = t.cmd("ps").await;
    assert!(ps.contains("dubbo") && ps.contains("jsonrpc"), "{ps}");
    let out = t
        .cmd(r#"invoke org.apache.dubbo.demo.DemoService.sayHello("qos")"#)
        .await;
    assert!(
        out.contains(r#"result: "Hello qos, from provider-1""#),
        "{out}"
    );
    // Garbage gets a clear error and the session goes on.
    for (bad, expect) in [
        ("invoke nonsense", "usage: invoke"),
        ("invoke a.b(1,", "missing `)`"),
        (
            "invoke org.apache.dubbo.demo.DemoService.sayHello({oops})",
            "not JSON values",
        ),
        ("invoke org.Nope.x()", "no provided service `org.Nope`"),
        ("frobnicate now", "unknown command `frobnicate`"),
        ("offline no.such.Service", "no provided service matches"),
    ] {
        let out = t.cmd(bad).await;
        assert!(
            out.starts_with("ERROR:") && out.contains(expect),
            "{bad}: {out}"
        );
    }
    assert_eq!(t.cmd("ready").await.trim(), "true");

    // The consumer's QoS over HTTP lists the reference with its providers.
    let (status, body) = http_get(consumer.qos_addr().unwrap(), "/ls").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("As Consumer side:") && body.contains("| 2 "),
        "{body}"
    );
    let (status, body) = http_get(consumer.qos_addr().unwrap(), "/live").await;
    assert_eq!((status, body.trim()), (200, "true"));
    assert_eq!(http_get(consumer.qos_addr().unwrap(), "/nope").await.0, 400);
    let cq = consumer.qos_addr().unwrap();
    let cq_host = cq.to_string();
    assert_eq!(
        http(cq, "POST", "/online?%zz", &[("Host", &cq_host)])
            .await
            .0,
        400
    );

    // Web pages cannot change state: GET, a foreign Origin or a non-loopback Host (DNS
    // rebinding) are refused; a POST from curl is taken.
    let host = qos.to_string();
    let offline = "/offline?org.apache.dubbo.demo.DemoService";
    assert_eq!(http(qos, "GET", offline, &[("Host", &host)]).await.0, 405);
    let from_page = [("Host", host.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(http(qos, "POST", offline, &from_page).await.0, 403);
    let rebound = [("Host", "evil.example:22222")];
    assert_eq!(http(qos, "POST", offline, &rebound).await.0, 403);
    assert_eq!(http(qos, "GET", "/ls", &rebound).await.0, 403);
    assert!(t.cmd("ls").await.contains("| Y "), "still online");
    // offline: unregistered while still serving; the consumer drops it; ready turns 503.
    let (status, body) = http(qos, "POST", offline, &[("Host", &host)]).await;
    assert_eq!(status, 200, "{body}");
    eventually("no provider", || handle.directory().providers().is_empty()).await;
    assert_eq!(http_get(qos, "/ready").await.0, 503);
    assert!(t.cmd("ls").await.contains("| N "));
    // online: back.
    assert!(t.cmd("online").await.starts_with("OK"));
    eventually("providers back", || {
        handle.directory().providers().len() == 2
    })
    .await;
    assert_eq!(http_get(qos, "/ready").await.0, 200);
    assert!(demo.say_hello("again".into()).await.is_ok());
    t.0.get_mut().write_all(b"quit\r\n").await.unwrap();
    let mut rest = String::new();
    t.0.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "BYE!\r\n");

    consumer.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_shut_down_under_load_loses_no_call() {
    let server = registry().await;
    let reg = server.registry_url();
    let a = start_provider(&reg, "provider-a").await;
    let b = start_provider(&reg, "provider-b").await;
    let consumer = start_consumer(&reg).await;
    let handle = consumer.reference_handle("demo").unwrap();
    // Two applications, two protocols each.
    eventually("four provider URLs", || {
        handle.directory().providers().len() == 4
    })
    .await;
    let demo = Arc::new(DemoServiceClient::new(consumer.reference("demo").unwrap()));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let served_by_a_after = Arc::new(AtomicU64::new(0));
    let a_gone = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (demo, stop, ok, failures) = (demo.clone(), stop.clone(), ok.clone(), failures.clone());
        let (served_by_a_after, a_gone) = (served_by_a_after.clone(), a_gone.clone());
        load.push(tokio::spawn(async move {
            // Bounded: at most 5,000 calls per task.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let gone = a_gone.load(Ordering::SeqCst);
                match demo.slow(20).await {
                    Ok(who) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if gone && who == "provider-a" {
                            served_by_a_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0);
    a.shutdown().await;
    a_gone.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "calls lost during shutdown: {failures:?}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > before,
        "calls went on after the shutdown"
    );
    assert_eq!(served_by_a_after.load(Ordering::Relaxed), 0);
    assert_eq!(handle.directory().providers().len(), 2);
    let (_, text) = http_get(consumer.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        !text.contains("rdubbo_errors_total{side=\"consumer\""),
        "{text}"
    );
    consumer.shutdown().await;
    b.shutdown().await;
    let _ = json!(null);
}

#[test]
fn configuration_errors_name_the_key_and_the_position() {
    // An unknown key in TOML.
    let e = Config::from_str(
        "[application]\nname = \"x\"\n\n[provider.services.demo]\ninterface = \"a.B\"\ntimout = 5\n",
        Format::Toml,
        "app.toml",
    )
    .unwrap_err();
    assert_eq!(e.source, "app.toml");
    assert_eq!(e.position.map(|p| p.0), Some(6), "{e}");
    assert!(e.message.contains("unknown field `timout`"), "{e}");
    assert!(e.to_string().starts_with("app.toml:6:"), "{e}");

    // A wrong type in YAML: key path and line.
    let e = Config::from_str(
        "application:\n  name: x\nqos:\n  port: lots\n",
        Format::Yaml,
        "app.yaml",
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("qos.port"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");

    // A bad duration.
    let e = Config::from_str(
        "[consumer]\ntimeout = \"3 fortnights\"\n",
        Format::Toml,
        "c.toml",
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("consumer.timeout"), "{e}");
    assert!(e.message.contains("duration"), "{e}");

    // Broken syntax.
    let e = Config::from_str("[application\nname = 1\n", Format::Toml, "b.toml").unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
    let e = Config::from_str("a: [1, 2\nb: 3\n", Format::Yaml, "b.yaml").unwrap_err();
    assert!(e.position.is_some(), "{e}");

    // References between sections.
    let cases = [
        ("[provider.services.s]\ninterface = \"a.B\"\nregistries = [\"zk\"]\n[protocols.dubbo]\n", "provider.services.s.registries", "no registry with id `zk`"),
        ("[provider.services.s]\ninterface = \"a.B\"\n", "protocols", "no protocol is configured"),
        ("[provider.services.s]\nversion = \"1\"\n[protocols.dubbo]\n", "provider.services.s.interface", "required"),
        ("[consumer.references.x]\ninterface = \"a.B\"\n", "consumer.references.x.url", "needs a `url` or a registry"),
        ("[metrics]\nlisten = \"everywhere\"\n", "metrics.listen", "not an address"),
    ];
    for (text, key, message) in cases {
        let e = Config::from_str(text, Format::Toml, "t.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
}

#[test]
fn environment_overrides_keys_of_the_file() {
    let text = "[application]\nname = \"from-file\"\n[qos]\nport = 22222\n";
    let vars = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("PATH".to_string(), "/usr/bin".to_string())])
            .collect::<Vec<_>>()
    };
    let c = Config::from_str_with_env(
        text,
        Format::Toml,
        "app.toml",
        vars(&[
            ("RDUBBO_APPLICATION__NAME", "from-env"),
            ("RDUBBO_QOS__PORT", "22223"),
            ("RDUBBO_QOS__ENABLED", "false"),
            (
                "RDUBBO_REGISTRIES__MAIN__ADDRESS",
                "zookeeper://127.0.0.1:2181",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.application.name, "from-env");
    assert_eq!(c.qos.port, 22223);
    assert!(!c.qos.enabled);
    assert_eq!(c.registries["main"].address, "zookeeper://127.0.0.1:2181");

    // A bad value names the variable and the key.
    let e = Config::from_str_with_env(
        text,
        Format::Toml,
        "app.toml",
        vars(&[("RDUBBO_QOS__PORT", "99999")]),
    )
    .unwrap_err();
    assert!(e.source.contains("RDUBBO_QOS__PORT"), "{e}");
    assert_eq!(e.key.as_deref(), Some("qos.port"), "{e}");
    let e = Config::from_str_with_env(
        text,
        Format::Toml,
        "app.toml",
        vars(&[("RDUBBO_QOS__COLOUR", "blue")]),
    )
    .unwrap_err();
    assert!(e.message.contains("unknown field `colour`"), "{e}");
}

#[tokio::test]
async fn implementations_must_match_the_configured_services() {
    let text = "[protocols.dubbo]\nport = 0\n[provider.services.demo]\ninterface = \"org.apache.dubbo.demo.DemoService\"\n[metrics]\nenabled = false\n[qos]\nenabled = false\n";
    let config = || Config::from_str(text, Format::Toml, "p.toml").unwrap();
    let e = Application::builder(config()).start().await.err().unwrap();
    assert!(
        e.to_string()
            .contains("no implementation of `org.apache.dubbo.demo.DemoService`"),
        "{e}"
    );
    let e = Application::builder(config())
        .service(
            "org.example.Relay",
            RelayServer::<RelayImpl>::info(),
            Arc::new(RelayServer::new(RelayImpl(Arc::default()))),
        )
        .start()
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("no service has that id or interface"),
        "{e}"
    );
    // A port in use is a clear start error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = text.replace("port = 0", &format!("port = {port}"));
    let e = Application::builder(Config::from_str(&busy, Format::Toml, "p.toml").unwrap())
        .service(
            "demo",
            DemoServiceServer::<Demo>::info(),
            Arc::new(DemoServiceServer::new(Demo("x"))),
        )
        .start()
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with("protocols.dubbo: cannot listen"),
        "{e}"
    );
}

#[test]
fn the_example_files_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let p = Config::from_file(format!("{root}/provider.toml")).unwrap();
    assert_eq!(p.application.name, "demo-provider");
    assert_eq!(p.protocols["dubbo"].port, Some(20880));
    assert_eq!(
        p.provider.services["demo"].interface,
        "org.apache.dubbo.demo.DemoService"
    );
    let c = Config::from_file(format!("{root}/consumer.yaml")).unwrap();
    let demo = &c.consumer.references["demo"];
    assert_eq!(demo.loadbalance.as_deref(), Some("roundrobin"));
    assert_eq!(
        demo.methods["sayHello"].timeout.map(|t| t.0),
        Some(Duration::from_millis(800))
    );
}

/// Idle or slow clients on the QoS and metrics ports: probes and scrapes are still
/// answered, and the ports do not hold more connections than their limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_do_not_starve_qos_or_metrics() {
    let server = registry().await;
    let provider = start_provider(&server.registry_url(), "provider-idle").await;
    let qos = provider.qos_addr().unwrap();
    let metrics = provider.metrics_addr().unwrap();
    // 200 connections to each port that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(qos).await.unwrap());
        idle.push(tokio::net::TcpStream::connect(metrics).await.unwrap());
    }
    // Past the classification wait, idle QoS connections hold at most the telnet slots.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (status, body) = http_get(qos, "/live").await;
    assert_eq!((status, body.trim()), (200, "true"));
    assert_eq!(http_get(qos, "/ready").await.0, 200);
    // Most of the idle connections were closed by the servers.
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(std::time::Duration::from_millis(10), s.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 300,
        "only {closed} of 400 idle connections were closed"
    );
    // The metrics port answers again once its header deadline cleared the idle ones.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            http_get(metrics, "/metrics"),
        )
        .await;
        if let Ok((200, body)) = answered {
            assert!(body.contains("rdubbo_"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(idle);
    provider.shutdown().await;
}

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

/// A registry scheme, a load balancer and a cluster strategy of the user's own, added to
/// the application's table, are accepted in the file and used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_in_the_applications_table_are_named_in_the_file() {
    let server = registry().await;
    let provider = start_provider(&server.registry_url(), "provider-plugins").await;
    let text = format!(
        r#"
[application]
name = "plugin-consumer"
[registries.main]
address = "{}"
[consumer.references.demo]
interface = "org.apache.dubbo.demo.DemoService"
version = "1.0.0"
loadbalance = "first"
cluster = "counted"
[metrics]
enabled = false
[qos]
enabled = false
"#,
        server.registry_url().replace("nacos://", "mynacos://")
    );
    let config = || Config::from_str(&text, Format::Toml, "plugins.toml").unwrap();
    // The built-in table does not know them.
    let e = Application::builder(config()).start().await.err().unwrap();
    assert!(
        e.to_string()
            .contains("key `registries.main.address`: unsupported registry `mynacos`"),
        "{e}"
    );

    let (connects, picks, calls) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut table = rdubbo::extension::builtin();
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
    let app = Application::builder(config())
        .extensions(Arc::new(table))
        .start()
        .await
        .unwrap();
    let demo = DemoServiceClient::new(app.reference("demo").unwrap());
    for _ in 0..5 {
        assert_eq!(
            demo.say_hello("plug".into()).await.unwrap(),
            "Hello plug, from provider-plugins"
        );
    }
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(picks.load(Ordering::SeqCst) >= 5);
    app.shutdown().await;
    provider.shutdown().await;
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
    // protocols and the consumer of demo; its shutdown takes them all away.
    let app = start(text(&[0, 0, 0], 0)).await.unwrap();
    let addrs = listening(&app);
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert_eq!(server.stats().instances, baseline + 3);
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

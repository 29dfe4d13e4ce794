//! Applications started from configuration text against the embedded registry: calls,
//! metrics, QoS over telnet and HTTP, online/offline, trace context across a call chain,
//! a provider shut down under load, and configuration errors. The start itself (its steps,
//! what a failed start undoes, the extension table) is in `app_start.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo::app::{Application, Config, Format};
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

//! Hostile input to an application: arbitrary configuration texts and durations never panic
//! (an error or a configuration), and a QoS session fed garbage answers every line and
//! leaves the application running.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rdubbo::app::config::parse_duration;
use rdubbo::app::{Config, Format};
use tokio::io::AsyncWriteExt;

mod app_common;
use app_common::*;

/// Fragments of real configuration, to get past the first line more often than random text.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[application]\n".to_string()),
        Just("[provider.services.s]\n".to_string()),
        Just("[consumer.references.r]\n".to_string()),
        Just("[protocols.dubbo]\n".to_string()),
        Just("[registries.main]\n".to_string()),
        Just("interface = \"a.B\"\n".to_string()),
        Just("timeout = \"3s\"\n".to_string()),
        Just("port = 70000\n".to_string()),
        Just("registries = [\"x\"]\n".to_string()),
        Just("address = \"nacos://127.0.0.1:8848\"\n".to_string()),
        "[a-z_.\\[\\]=\" \n0-9:-]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn configuration_text_never_panics(parts in proptest::collection::vec(fragment(), 0..12)) {
        let text: String = parts.concat();
        for format in [Format::Toml, Format::Yaml] {
            if let Err(e) = Config::from_str(&text, format, "fuzz") {
                prop_assert!(!e.message.is_empty());
                if let Some((line, column)) = e.position {
                    prop_assert!(line >= 1 && column >= 1);
                }
            }
        }
        let vars = vec![("RDUBBO_QOS__PORT".to_string(), text.clone()), (format!("RDUBBO_{}", text.to_uppercase()), "1".to_string())];
        let _ = Config::from_str_with_env("", Format::Toml, "fuzz", vars);
    }

    #[test]
    fn durations_parse_or_say_why(text in "\\PC{0,12}") {
        match parse_duration(&text) {
            Ok(d) => prop_assert!(d <= Duration::MAX),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos_session_fed_garbage_answers_every_line() {
    let server = registry().await;
    let app = start_provider(&server.registry_url(), "garbage").await;
    let qos = app.qos_addr().unwrap();
    let mut t = Telnet::open(qos).await;
    let strategy = "[ -~]{0,80}|invoke [ -~]{0,60}|online [ -~]{0,20}|offline \\PC{0,20}";
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    // 300 random lines (bounded), each answered before the prompt comes back.
    for _ in 0..300 {
        let line = strategy
            .new_tree(&mut runner)
            .unwrap()
            .current()
            .replace(['\r', '\n'], " ");
        if line.trim_start().starts_with("quit") || line.trim_start().starts_with("exit") {
            continue;
        }
        let answer = t.cmd(&line).await;
        assert!(!answer.contains("panicked"), "{line:?}: {answer}");
    }
    // Telnet negotiation bytes and invalid UTF-8 are answered like any other line.
    t.0.get_mut()
        .write_all(&[0xff, 0xfb, 0x01, 0x00, 0x80, b'\n'])
        .await
        .unwrap();
    let _ = t.until_prompt().await;
    // An over-long line ends that session with a reason.
    t.0.get_mut().write_all(&vec![b'x'; 70_000]).await.unwrap();
    t.0.get_mut().write_all(b"\n").await.unwrap();
    let mut rest = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut t.0, &mut rest).await;
    assert!(rest.contains("line too long"), "{rest}");
    // The application still serves, and a new session works.
    let mut t2 = Telnet::open(qos).await;
    assert_eq!(t2.cmd("live").await.trim(), "true");
    t2.cmd("online").await;
    assert_eq!(t2.cmd("ready").await.trim(), "true");
    let out = t2
        .cmd(r#"invoke org.apache.dubbo.demo.DemoService.sayHello("still here")"#)
        .await;
    assert!(out.contains("Hello still here"), "{out}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_line_sent_in_pieces_is_still_http() {
    use tokio::io::AsyncReadExt;
    let server = registry().await;
    let app = start_provider(&server.registry_url(), "pieces").await;
    let qos = app.qos_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(qos).await.unwrap();
    // "GET" alone is only a prefix of a method: the port waits for the rest (a slow client,
    // or one whose `write!` sends each piece on its own) instead of answering as telnet.
    s.write_all(b"GET").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(format!(" /live HTTP/1.1\r\nHost: {qos}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(!out.contains("dubbo>"), "{out}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_lock_out_qos_probes_or_metrics_scrapes() {
    let server = registry().await;
    let app = start_provider(&server.registry_url(), "idle-slots").await;
    let qos = app.qos_addr().unwrap();
    let metrics = app.metrics_addr().unwrap();
    // More idle connections than either port keeps (QoS 64, metrics 32), held open.
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(tokio::net::TcpStream::connect(qos).await.unwrap());
        idle.push(tokio::net::TcpStream::connect(metrics).await.unwrap());
    }
    // Each probe is a newcomer at the limit: an idle connection makes room for it.
    for _ in 0..5 {
        let (status, body) = http_get(qos, "/live").await;
        assert_eq!((status, body.trim()), (200, "true"));
        let (status, body) = http_get(metrics, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("# TYPE"), "{body}");
    }
    drop(idle);
    app.shutdown().await;
}

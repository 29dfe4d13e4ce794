//! `rdubbo demo provider --config FILE`: two provider processes started from one
//! configuration file register in the embedded registry; one gets SIGTERM while a consumer
//! keeps calling through the registry, and no call is lost. A broken file is a clear error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::nacos::server::{NamingServer, NamingServerConfig};
use rdubbo::{Invocation, Invoker};

mod common;
use common::{http, rdubbo, start, text, Running};

const DEMO: &str = "org.apache.dubbo.demo.DemoService";

/// Waits (up to 20 s) until `count` reaches `target`; panics naming `what` otherwise.
async fn wait_count(what: &str, count: &AtomicU64, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count.load(Ordering::Relaxed) < target {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {target} calls",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a provider process from `config` and reads its stdout up to `ready`.
fn start_provider(config: &std::path::Path) -> (Running, Vec<String>) {
    start(
        &[
            "demo",
            "provider",
            "--config",
            config.to_str().expect("UTF-8 path"),
        ],
        "ready",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_call() {
    let registry = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-app");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("provider.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[application]
name = "cli-app-provider"
[registries.main]
address = "{}"
[protocols.dubbo]
port = 0
[protocols.jsonrpc]
port = 0
[provider.services.demo]
interface = "{DEMO}"
version = "1.0.0"
[shutdown]
unregister_wait = "1s"
drain = "5s"
[metrics]
listen = "127.0.0.1:0"
[qos]
port = 0
"#,
            registry.registry_url()
        ),
    )
    .unwrap();
    let (first, lines) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || start_provider(&config)
    })
    .await
    .unwrap();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("serving ")).count(),
        2,
        "{lines:?}"
    );
    let qos = lines
        .iter()
        .find_map(|l| l.strip_prefix("qos on "))
        .expect("qos address")
        .to_owned();
    let (second, _) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || start_provider(&config)
    })
    .await
    .unwrap();

    let (status, ls) = tokio::task::spawn_blocking({
        let qos = qos.clone();
        move || http(&qos, "GET", "/ls")
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        ls.contains("org.apache.dubbo.demo.DemoService:1.0.0") && ls.contains("| Y "),
        "{ls}"
    );

    let reg = rdubbo::registry::connect(&registry.registry_url())
        .await
        .unwrap();
    let reference = Arc::new(
        Reference::builder(DEMO)
            .version("1.0.0")
            .registry(reg)
            .build()
            .await
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while reference.directory().providers().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "four provider URLs (2 processes x 2 protocols)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for task in 0..6 {
        let (reference, stop, ok, failures) = (
            reference.clone(),
            stop.clone(),
            ok.clone(),
            failures.clone(),
        );
        load.push(tokio::spawn(async move {
            // Bounded: at most 20,000 calls per task.
            for i in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let inv = Invocation::new(DEMO, "sayHello", vec![format!("{task}-{i}").into()])
                    .with_version(Some("1.0.0"))
                    .with_timeout(Some(Duration::from_secs(3)));
                match reference.invoke(inv).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    wait_count("calls before the stop", &ok, 200).await;
    let before = ok.load(Ordering::Relaxed);
    // SIGTERM; it must exit 0 (stop() asserts it) while the load goes on.
    tokio::task::spawn_blocking(move || common::stop(first))
        .await
        .unwrap();
    let at_exit = ok.load(Ordering::Relaxed);
    wait_count("calls after the stop", &ok, at_exit + 200).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "calls lost: {failures:?}");
    assert!(before > 0 && at_exit > before && ok.load(Ordering::Relaxed) > at_exit);
    assert_eq!(reference.directory().providers().len(), 2);
    reference.close().await;
    drop(second);
}

#[test]
fn a_broken_configuration_is_a_clear_error() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-app-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[application]\nname = \"x\"\n\n[qos]\nport = \"high\"\n",
    )
    .unwrap();
    let out = rdubbo(&["demo", "provider", "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.toml:5:") && err.contains("key `qos.port`"),
        "{err}"
    );

    let out = rdubbo(&["demo", "provider", "--config", "/nonexistent/app.yaml"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );

    let out = rdubbo(&[
        "demo",
        "provider",
        "--config",
        "app.toml",
        "--protocol",
        "dubbo",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

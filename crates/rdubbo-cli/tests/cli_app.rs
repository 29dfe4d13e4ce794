//! `rdubbo demo provider --config FILE`: two provider processes started from one
//! configuration file register in the embedded registry; one gets SIGTERM while a consumer
//! keeps calling through the registry, and no call is lost. A broken file is a clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::nacos::server::{NamingServer, NamingServerConfig};
use rdubbo::{Invocation, Invoker};

mod common;
use common::{rdubbo, text, Running, BIN};

const DEMO: &str = "org.apache.dubbo.demo.DemoService";

/// Starts a provider process and reads its stdout up to `ready`; returns it and the lines.
fn start_provider(config: &std::path::Path) -> (Running, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["demo", "provider", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rdubbo");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read output");
        let done = line == "ready";
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert_eq!(seen.last().map(String::as_str), Some("ready"), "{seen:?}");
    (running, seen)
}

fn qos_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
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
        move || qos_get(&qos, "/ls")
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    let status = tokio::task::spawn_blocking(move || {
        let mut first = first;
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        unsafe {
            libc::kill(first.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = first.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    let at_exit = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
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

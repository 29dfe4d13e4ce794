//! The embedded naming server and rdubbo's Nacos client against clients nobody here wrote:
//! the official npm `nacos` client (v1 HTTP API) and a real headless Chromium on the web
//! console. Node packages are installed on first use into the target directory.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo::{BoxFuture, Invocation, Invoker, Registry, Reply, RpcError, RpcResult, ServiceInfo};
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_testkit::{npm_install, ChildGuard};
use serde_json::json;
use serde_json::Value;

fn npm_dir() -> PathBuf {
    npm_install(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("npm-interop"),
        &["nacos@2.6.3", "playwright-core@1"],
    )
}

/// Answers `greet(name)` with who it is.
struct Greeter(&'static str);

impl Invoker for Greeter {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let me = self.0;
        Box::pin(async move {
            let r: RpcResult<Value> = async move {
                match &*inv.method {
                    "greet" => Ok(json!(format!(
                        "hello {} from {me}",
                        inv.args
                            .first()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_else(|| "?".into())
                    ))),
                    other => Err(RpcError::service(format!("no method {other}"))),
                }
            }
            .await;
            r.map(Reply::Json)
        })
    }
}

fn info(interface: &str) -> ServiceInfo {
    ServiceInfo {
        interface: interface.to_owned(),
        version: None,
        group: None,
        methods: vec!["greet".into()],
        ..Default::default()
    }
}

/// A node process printing one JSON object per line.
struct Node {
    _child: ChildGuard,
    lines: mpsc::Receiver<serde_json::Value>,
    stdin: std::process::ChildStdin,
}

impl Node {
    fn start(dir: &std::path::Path, script: &str, args: &[String]) -> Node {
        let path = dir.join(format!("script-{}-{}.js", std::process::id(), fastrand()));
        std::fs::write(&path, script).unwrap();
        let mut child = ChildGuard::spawn(
            Command::new("node")
                .arg(&path)
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("start node");
        let stdout = child.0.stdout.take().unwrap();
        let stdin = child.0.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("node: {line}");
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Node {
            _child: child,
            lines,
            stdin,
        }
    }

    /// The next line with `"event": event`, skipping others.
    fn expect(&self, event: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(v) if v["event"] == "error" => panic!("node failed: {v}"),
                Ok(_) => continue,
                Err(_) => panic!("node sent no {event:?} within {within:?}"),
            }
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

fn fastrand() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

const NACOS_SCRIPT: &str = r#"
const { NacosNamingClient } = require('nacos');
const readline = require('readline');
const quiet = { info() {}, warn() {}, debug() {}, error(e) { console.log(JSON.stringify({ event: 'log-error', message: String(e && e.message || e) })); } };
const out = (o) => console.log(JSON.stringify(o));
process.on('unhandledRejection', (e) => { out({ event: 'error', message: String(e && e.stack || e) }); process.exit(1); });

(async () => {
  const [server, providerPort, rustService] = process.argv.slice(2);
  const client = new NacosNamingClient({ logger: quiet, serverList: server, namespace: 'public' });
  await client.ready();
  const iface = 'demo.NodeRegistered';
  await client.registerInstance('providers:' + iface + '::', {
    ip: '127.0.0.1',
    port: Number(providerPort),
    metadata: {
      protocol: 'jsonrpc', path: iface, interface: iface, methods: 'greet',
      side: 'provider', category: 'providers', application: 'node-app',
      'preserved.heart.beat.interval': '500',
    },
  });
  out({ event: 'registered' });
  out({ event: 'status', status: await client.getServerStatus() });
  const hosts = await client.getAllInstances(rustService, 'DEFAULT_GROUP', '', false);
  out({ event: 'rust-instances', hosts });
  client.subscribe(rustService, (hosts) => out({ event: 'push', hosts }));
  const services = await client._serverProxy.getServiceList(1, 100, 'DEFAULT_GROUP');
  out({ event: 'services', services });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    if (line === 'deregister') {
      await client.deregisterInstance('providers:' + iface + '::', { ip: '127.0.0.1', port: Number(providerPort) });
      out({ event: 'deregistered' });
    }
  });
  rl.on('close', () => process.exit(0));
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_npm_client_and_rdubbo_see_each_other() {
    let dir = tokio::task::spawn_blocking(npm_dir).await.unwrap();
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        // The npm client sends its first beat 10 s after it starts.
        beat_timeout: Duration::from_secs(12),
        delete_timeout: Duration::from_secs(60),
        check_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let registry: Arc<dyn Registry> = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();

    // A provider the npm client registers (rdubbo only serves it, never registers it).
    let unregistered = Provider::builder("127.0.0.1:0".parse().unwrap())
        .export(
            info("demo.NodeRegistered"),
            Arc::new(Greeter("node-registered")),
        )
        .start()
        .await
        .unwrap();
    let node_port = unregistered.urls()[0].port().unwrap();
    // A provider rdubbo registers itself.
    let rust_provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .application("rust-app")
        .export(
            info("demo.RustRegistered"),
            Arc::new(Greeter("rust-registered")),
        )
        .registry(registry.clone())
        .start()
        .await
        .unwrap();
    let rust_service = "providers:demo.RustRegistered::".to_owned();

    let addr = server.local_addr().to_string();
    let node = {
        let (dir, rust_service) = (dir.clone(), rust_service.clone());
        let args = vec![addr.clone(), node_port.to_string(), rust_service];
        tokio::task::spawn_blocking(move || Node::start(&dir, NACOS_SCRIPT, &args))
            .await
            .unwrap()
    };
    let node = Arc::new(std::sync::Mutex::new(node));
    let wait = |event: &'static str, secs: u64| {
        let node = node.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                node.lock()
                    .unwrap()
                    .expect(event, Duration::from_secs(secs))
            })
            .await
            .unwrap()
        }
    };
    wait("registered", 20).await;
    let registered_at = Instant::now();
    assert_eq!(wait("status", 10).await["status"], "UP");

    // 1. The npm client sees what rdubbo registered, with the same metadata.
    let seen = wait("rust-instances", 10).await;
    let hosts = seen["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{seen}");
    let registered_url = &rust_provider.urls()[0];
    let h = &hosts[0];
    assert_eq!(h["ip"], "127.0.0.1");
    assert_eq!(h["port"], registered_url.port().unwrap());
    assert_eq!(h["healthy"], true);
    let meta = h["metadata"].as_object().unwrap();
    for (k, v) in registered_url.params() {
        assert_eq!(meta.get(k).and_then(Value::as_str), Some(v), "metadata {k}");
    }
    assert_eq!(meta["protocol"], "jsonrpc");
    assert_eq!(meta["category"], "providers");
    assert_eq!(meta["path"], "demo.RustRegistered");
    let services = wait("services", 10).await;
    let names: Vec<&str> = services["services"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"providers:demo.NodeRegistered::"),
        "{names:?}"
    );
    assert!(names.contains(&rust_service.as_str()), "{names:?}");

    // 2. rdubbo discovers and calls the instance the npm client registered.
    let reference = Reference::builder("demo.NodeRegistered")
        .application("rust-consumer")
        .registry(registry.clone())
        .wait(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let answer = reference
        .invoke(Invocation::new(
            "demo.NodeRegistered",
            "greet",
            vec![rdubbo::Value::from("rdubbo")],
        ))
        .await
        .unwrap();
    assert_eq!(answer, json!("hello rdubbo from node-registered"));
    let discovered = reference.directory().providers();
    assert_eq!(discovered.len(), 1);
    assert_eq!(discovered[0].url.param("application"), Some("node-app"));

    // 3. The npm client heartbeats (every 500 ms, as its metadata asks, from 10 s after
    // its start): past the 12 s beat timeout its instance is still healthy and callable.
    let mut window = (Instant::now(), server.stats().beats);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let beats = server.stats().beats - window.1;
        if window.0.elapsed() >= Duration::from_secs(3) {
            // rdubbo's own provider beats every 5 s: 4 or more in 3 s are the npm client's.
            if beats >= 4 {
                break;
            }
            window = (Instant::now(), server.stats().beats);
        }
        assert!(
            registered_at.elapsed() < Duration::from_secs(30),
            "the npm client never beat"
        );
    }
    while registered_at.elapsed() < Duration::from_secs(14) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let still = reference
        .invoke(Invocation::new(
            "demo.NodeRegistered",
            "greet",
            vec![rdubbo::Value::from("again")],
        ))
        .await
        .unwrap();
    assert_eq!(still, json!("hello again from node-registered"));

    // 4. A second rdubbo provider reaches the npm subscriber by UDP push.
    let second = Provider::builder("127.0.0.1:0".parse().unwrap())
        .application("rust-app")
        .export(info("demo.RustRegistered"), Arc::new(Greeter("rust-2")))
        .registry(registry.clone())
        .start()
        .await
        .unwrap();
    let second_port = second.urls()[0].port().unwrap();
    let t = Instant::now();
    loop {
        let push = wait("push", 10).await;
        let ports: Vec<u64> = push["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["port"].as_u64())
            .collect();
        if ports.contains(&(second_port as u64)) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{ports:?}");
    }
    // The npm client acks after handing the push to its listeners.
    let t = Instant::now();
    while server.stats().pushes_acked == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", server.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 5. The npm client deregisters; rdubbo's consumer loses the provider.
    node.lock().unwrap().send("deregister");
    wait("deregistered", 10).await;
    let t = Instant::now();
    while !reference.directory().providers().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "provider never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    reference.close().await;
    second.stop().await;
    rust_provider.stop().await;
    unregistered.stop().await;
    registry.destroy().await;
    drop(node);
    server.stop().await;
}

const CONSOLE_SCRIPT: &str = r#"
const { chromium } = require('playwright-core');
const out = (o) => console.log(JSON.stringify(o));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
(async () => {
  const [base, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
    await page.goto(base + '/');
    const row = (addr) => `tr.instance[data-address="${addr}"]`;
    await page.waitForSelector(row('127.0.0.1:9601'), { timeout: 10000 });
    out({ event: 'first', row: await page.textContent(row('127.0.0.1:9601')),
          service: await page.textContent('td.service-name') });
    // A change made after the page loaded shows up without a reload.
    const meta = encodeURIComponent(JSON.stringify({ owner: 'console-test', 'preserved.heart.beat.timeout': '1000' }));
    const r = await fetch(base + '/nacos/v1/ns/instance?serviceName=providers%3Ademo.Console%3A%3A&ip=127.0.0.1&port=9602&weight=7&metadata=' + meta, { method: 'POST' });
    out({ event: 'registered', status: r.status });
    await page.waitForSelector(row('127.0.0.1:9602'), { timeout: 10000 });
    out({ event: 'second', row: await page.textContent(row('127.0.0.1:9602')) });
    // It never beats: the console turns it unhealthy on its own.
    await page.waitForFunction((sel) => {
      const e = document.querySelector(sel + ' td.health');
      return e && e.textContent === 'unhealthy';
    }, row('127.0.0.1:9602'), { timeout: 10000 });
    out({ event: 'unhealthy', row: await page.textContent(row('127.0.0.1:9602')),
          refreshes: await page.getAttribute('#status', 'data-refreshes') });
    await page.screenshot({ path: screenshot, fullPage: true });
    out({ event: 'screenshot', path: screenshot });
  } finally {
    await browser.close();
  }
})().catch((e) => { out({ event: 'error', message: String(e && e.stack || e) }); process.exit(1); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_console_shows_services_and_follows_changes_in_chromium() {
    let dir = tokio::task::spawn_blocking(npm_dir).await.unwrap();
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian chromium is needed (scripts/test-all.sh installs it)"
    );
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        check_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let registry: Arc<dyn Registry> = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    let url: rdubbo::Url = "jsonrpc://127.0.0.1:9601/demo.Console?interface=demo.Console&methods=greet&side=provider&application=console-app"
        .parse()
        .unwrap();
    registry.register(&url).await.unwrap();

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nacos-console.png");
    let _ = std::fs::remove_file(&screenshot);
    let base = format!("http://{}", server.local_addr());
    let shot = screenshot.display().to_string();
    let node =
        tokio::task::spawn_blocking(move || Node::start(&dir, CONSOLE_SCRIPT, &[base, shot]))
            .await
            .unwrap();
    let node = Arc::new(std::sync::Mutex::new(node));
    let wait = |event: &'static str| {
        let node = node.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                node.lock().unwrap().expect(event, Duration::from_secs(60))
            })
            .await
            .unwrap()
        }
    };
    let first = wait("first").await;
    let row = first["row"].as_str().unwrap();
    assert!(
        first["service"]
            .as_str()
            .unwrap()
            .contains("providers:demo.Console::"),
        "{first}"
    );
    for part in [
        "127.0.0.1:9601",
        "healthy",
        "DEFAULT",
        "ephemeral",
        "application=console-app",
        "methods=greet",
    ] {
        assert!(row.contains(part), "{part:?} not in {row:?}");
    }
    assert_eq!(wait("registered").await["status"], 200);
    let second = wait("second").await;
    let row = second["row"].as_str().unwrap();
    assert!(
        row.contains("owner=console-test") && row.contains('7'),
        "{row:?}"
    );
    let unhealthy = wait("unhealthy").await;
    assert!(
        unhealthy["row"].as_str().unwrap().contains("unhealthy"),
        "{unhealthy}"
    );
    let refreshes: u32 = unhealthy["refreshes"].as_str().unwrap().parse().unwrap();
    assert!(refreshes >= 2, "the page refreshed {refreshes} times");
    wait("screenshot").await;
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
    eprintln!("console screenshot: {}", screenshot.display());

    registry.destroy().await;
    drop(node);
    server.stop().await;
}

//! The embedded registry's config API and rdubbo's Nacos config client against config
//! clients nobody here wrote: the npm `nacos` client (2.6.3) and PyPI `nacos-sdk-python`
//! (2.0.11, the last release with the HTTP v1 client; 3.x speaks only Nacos 2's gRPC).
//! Each publishes, reads, deletes and listens (a listener must fire on change) while
//! rdubbo does the same on the same keys, and writes Dubbo 3's interface → application
//! mapping as Java does, which rdubbo's `ServiceDiscovery` then extends by compare-and-set.
//!
//! The packages are installed on first use into the target directory
//! (`scripts/test-all.sh` installs them beforehand). When that cannot be done (no network)
//! and `RDUBBO_SKIP_NACOS_CLIENTS=1` is set, the tests say so loudly and pass.
//!
//! No real Nacos server runs here (none is installable), and the Java 3.3.1 peer has no
//! Nacos client either: these two clients are the foreign peers of the config API.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo::config_center::{ConfigChange, ConfigListener};
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_testkit::{npm_install, ChildGuard};
use serde_json::{json, Value};

fn skip(what: &str) -> bool {
    if std::env::var("RDUBBO_SKIP_NACOS_CLIENTS").is_ok_and(|v| v == "1") {
        eprintln!("\n!!!!! SKIPPED: {what}: RDUBBO_SKIP_NACOS_CLIENTS=1 (the package could not be installed) !!!!!\n");
        return true;
    }
    false
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nacos-config-clients")
}

/// `nacos-sdk-python==2.0.11` in `<dir>/py` (pip's `--target`), installed on first use.
fn pip_install(dir: &Path) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let target = dir.join("py");
    if !target.join("nacos").join("client.py").exists() {
        std::fs::create_dir_all(&target).unwrap();
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-conflicts",
                "--target",
            ])
            .arg(&target)
            .arg("nacos-sdk-python==2.0.11")
            .output()
            .expect("run pip (python3 -m pip)");
        assert!(
            out.status.success(),
            "pip install nacos-sdk-python==2.0.11 failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    target
}

/// A foreign client driven by JSON commands on stdin, answering JSON lines on stdout.
struct Peer {
    name: &'static str,
    _child: ChildGuard,
    lines: mpsc::Receiver<Value>,
    stdin: std::process::ChildStdin,
}

impl Peer {
    fn start(name: &'static str, mut command: Command) -> Peer {
        let mut child = ChildGuard::spawn(
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.0.stdout.take().unwrap();
        let stdin = child.0.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("{name}: {line}");
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Peer {
            name,
            _child: child,
            lines,
            stdin,
        }
    }

    /// The next line with `"event": event` that `accept` takes, skipping others.
    fn expect(&self, event: &str, within: Duration, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event && accept(&v) => return v,
                Ok(v) if v["event"] == "error" => panic!("{} failed: {v}", self.name),
                Ok(_) => continue,
                Err(_) => panic!("{} sent no {event:?} within {within:?}", self.name),
            }
        }
    }

    /// Sends a command and waits for its `done` answer.
    fn run(&mut self, cmd: Value) -> Value {
        let id = cmd["id"].clone();
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.expect("done", Duration::from_secs(30), |v| v["id"] == id)
    }
}

const NODE_SCRIPT: &str = r#"
const { NacosConfigClient } = require('nacos');
const readline = require('readline');
const out = (o) => console.log(JSON.stringify(o));
const quiet = { info() {}, warn() {}, debug() {}, error(e) { out({ event: 'log-error', message: String(e && e.message || e) }); } };
process.on('unhandledRejection', (e) => { out({ event: 'error', message: String(e && e.stack || e) }); process.exit(1); });
const client = new NacosConfigClient({ serverAddr: process.argv[2], logger: quiet });
readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const c = JSON.parse(line);
  let result = null;
  if (c.op === 'sub') {
    client.subscribe({ dataId: c.dataId, group: c.group }, (content) => out({ event: 'change', dataId: c.dataId, content }));
  } else if (c.op === 'pub') {
    result = await client.publishSingle(c.dataId, c.group, c.content);
  } else if (c.op === 'get') {
    result = await client.getConfig(c.dataId, c.group);
  } else if (c.op === 'rm') {
    result = await client.remove(c.dataId, c.group);
  }
  out({ event: 'done', id: c.id, result });
});
process.stdin.on('end', () => process.exit(0));
out({ event: 'ready' });
"#;

const PYTHON_SCRIPT: &str = r#"
import json, logging, sys, threading, types
import nacos
import nacos.client
# The client's pullers are threads; its multiprocessing Manager only hands them a list, and
# its server process would outlive this one when the test kills it: a plain list instead.
nacos.client.Manager = lambda: types.SimpleNamespace(list=list)
logging.basicConfig(level=logging.ERROR)
lock = threading.Lock()
def out(o):
    with lock:
        print(json.dumps(o), flush=True)
client = nacos.NacosClient(sys.argv[1], namespace="")
client.set_options(pulling_timeout=5, snapshot_base=sys.argv[2], failover_base=sys.argv[2] + "/failover")
def watcher(data_id):
    def cb(params):
        out({"event": "change", "dataId": data_id, "content": params.get("content")})
    cb.__name__ = "watch_" + data_id
    return cb
out({"event": "ready"})
for line in sys.stdin:
    c = json.loads(line)
    result = None
    if c["op"] == "sub":
        client.add_config_watcher(c["dataId"], c["group"], watcher(c["dataId"]))
    elif c["op"] == "pub":
        result = client.publish_config(c["dataId"], c["group"], c["content"])
    elif c["op"] == "get":
        result = client.get_config(c["dataId"], c["group"], no_snapshot=True)
    elif c["op"] == "rm":
        result = client.remove_config(c["dataId"], c["group"])
    out({"event": "done", "id": c["id"], "result": result})
"#;

#[derive(Default)]
struct Changes(Mutex<Vec<Option<String>>>);

impl ConfigListener for Changes {
    fn on_change(&self, change: ConfigChange) {
        self.0.lock().unwrap().push(change.content);
    }
}

async fn until(within: Duration, what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same exchange with either foreign client. `initial`: whether the client's listener
/// gets the current content when it subscribes (npm's does; Python's, like Java's, only
/// changes).
async fn exchange(mut peer: Peer, server: &NamingServer, prefix: &str, initial: bool) {
    peer.expect("ready", Duration::from_secs(30), |_| true);
    let registry = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    let cfg = registry.dynamic_configuration().expect("a config center");
    let discovery = registry.service_discovery().expect("a service discovery");
    let k1 = format!("{prefix}-consumer.configurators");
    let k2 = format!("{prefix}-provider.tag-router");
    let long = Duration::from_secs(40);

    // rdubbo publishes; the foreign listener gets it, then every change.
    cfg.publish(&k1, "dubbo", "v1: 1\n").await.unwrap();
    peer.run(json!({"id": 1, "op": "sub", "dataId": k1, "group": "dubbo"}));
    if initial {
        peer.expect("change", long, |v| {
            v["dataId"] == k1.as_str() && v["content"] == "v1: 1\n"
        });
    }
    cfg.publish(&k1, "dubbo", "v2: 2\n").await.unwrap();
    peer.expect("change", long, |v| {
        v["dataId"] == k1.as_str() && v["content"] == "v2: 2\n"
    });
    let got = peer.run(json!({"id": 2, "op": "get", "dataId": k1, "group": "dubbo"}));
    assert_eq!(got["result"], "v2: 2\n");

    // The foreign client publishes and deletes; rdubbo's watch follows.
    let changes = Arc::new(Changes::default());
    cfg.watch(&k2, "dubbo", changes.clone()).await.unwrap();
    let published = peer.run(json!({"id": 3, "op": "pub", "dataId": k2, "group": "dubbo", "content": "force: true\ntags: []\n"}));
    assert_eq!(published["result"], true);
    until(long, "rdubbo's watch sees the foreign publish", || {
        changes.0.lock().unwrap().last() == Some(&Some("force: true\ntags: []\n".to_owned()))
    })
    .await;
    assert_eq!(
        cfg.get(&k2, "dubbo").await.unwrap().as_deref(),
        Some("force: true\ntags: []\n")
    );
    peer.run(json!({"id": 4, "op": "rm", "dataId": k2, "group": "dubbo"}));
    until(long, "rdubbo's watch sees the foreign delete", || {
        changes.0.lock().unwrap().last() == Some(&None)
    })
    .await;
    assert_eq!(cfg.get(&k2, "dubbo").await.unwrap(), None);
    let missing = peer.run(json!({"id": 5, "op": "get", "dataId": k2, "group": "dubbo"}));
    assert!(
        missing["result"].is_null() || missing["result"] == "",
        "{missing}"
    );

    // Dubbo 3's mapping as a Java provider writes it, extended by rdubbo's provider.
    let iface = format!("org.apache.dubbo.demo.{prefix}.DemoService");
    peer.run(json!({"id": 6, "op": "pub", "dataId": iface, "group": "mapping", "content": "java-provider"}));
    assert_eq!(
        discovery.mapping(&iface).await.unwrap(),
        vec!["java-provider".to_owned()]
    );
    discovery.map(&iface, "rdubbo-provider").await.unwrap();
    let got = peer.run(json!({"id": 7, "op": "get", "dataId": iface, "group": "mapping"}));
    assert_eq!(got["result"], "java-provider,rdubbo-provider");

    // A deletion by rdubbo reaches the foreign listener too.
    cfg.remove(&k1, "dubbo").await.unwrap();
    peer.expect("change", long, |v| {
        v["dataId"] == k1.as_str() && (v["content"].is_null() || v["content"] == "")
    });
    registry.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_nacos_client_and_rdubbo_share_configs_on_the_embedded_registry() {
    if skip("npm nacos config interop") {
        return;
    }
    let dir = dir();
    let node_dir = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || npm_install(&d, &["nacos@2.6.3"]))
            .await
            .unwrap()
    };
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let script = node_dir.join(format!("config-{}.js", std::process::id()));
    std::fs::write(&script, NODE_SCRIPT).unwrap();
    let mut command = Command::new("node");
    command
        .arg(&script)
        .arg(server.local_addr().to_string())
        .current_dir(&node_dir);
    let peer = Peer::start("node", command);
    exchange(peer, &server, "node", true).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacos_sdk_python_and_rdubbo_share_configs_on_the_embedded_registry() {
    if skip("nacos-sdk-python config interop") {
        return;
    }
    let dir = dir();
    let py = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || pip_install(&d))
            .await
            .unwrap()
    };
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let work = dir.join(format!("py-run-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let script = work.join("config.py");
    std::fs::write(&script, PYTHON_SCRIPT).unwrap();
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg(server.local_addr().to_string())
        .arg(work.join("snapshot"))
        .env("PYTHONPATH", &py)
        .current_dir(&work);
    let peer = Peer::start("python", command);
    exchange(peer, &server, "python", false).await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&work);
}

const CONSOLE_SCRIPT: &str = r#"
const { chromium } = require('playwright-core');
const out = (o) => console.log(JSON.stringify(o));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
(async () => {
  const [base] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
    await page.goto(base + '/');
    const row = (id) => `tr.config[data-id="${id}"]`;
    await page.waitForSelector(row('demo-provider.configurators'), { timeout: 10000 });
    out({ event: 'first', row: await page.textContent(row('demo-provider.configurators')) });
    // Published after the page loaded: shown without a reload.
    const body = 'dataId=demo-provider.tag-router&group=dubbo&content=' + encodeURIComponent('force: true\n');
    const r = await fetch(base + '/nacos/v1/cs/configs', { method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body });
    out({ event: 'published', status: r.status, body: await r.text() });
    await page.waitForSelector(row('demo-provider.tag-router'), { timeout: 10000 });
    out({ event: 'second', row: await page.textContent(row('demo-provider.tag-router')),
          status: await page.textContent('#status') });
  } finally {
    await browser.close();
  }
})().catch((e) => { out({ event: 'error', message: String(e && e.stack || e) }); process.exit(1); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_console_lists_configurations_in_chromium() {
    if skip("console configurations in Chromium") {
        return;
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian chromium is needed (scripts/test-all.sh installs it)"
    );
    let dir = dir();
    let node_dir = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || npm_install(&d, &["nacos@2.6.3", "playwright-core@1"]))
            .await
            .unwrap()
    };
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let registry = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    let rule = "configVersion: v3.0\nscope: application\nkey: demo-provider\n";
    registry
        .dynamic_configuration()
        .unwrap()
        .publish("demo-provider.configurators", "dubbo", rule)
        .await
        .unwrap();
    let script = node_dir.join(format!("console-{}.js", std::process::id()));
    std::fs::write(&script, CONSOLE_SCRIPT).unwrap();
    let mut command = Command::new("node");
    command
        .arg(&script)
        .arg(format!("http://{}", server.local_addr()))
        .current_dir(&node_dir);
    let peer = Peer::start("console", command);
    let first = tokio::task::spawn_blocking(move || {
        let first = peer.expect("first", Duration::from_secs(30), |_| true);
        let published = peer.expect("published", Duration::from_secs(30), |_| true);
        let second = peer.expect("second", Duration::from_secs(30), |_| true);
        (first, published, second)
    })
    .await
    .unwrap();
    let (first, published, second) = first;
    let row = first["row"].as_str().unwrap();
    for part in [
        "demo-provider.configurators",
        "dubbo",
        "public",
        "text",
        "scope: application",
    ] {
        assert!(row.contains(part), "{part:?} not in {row:?}");
    }
    assert_eq!(published["status"], 200);
    assert_eq!(published["body"], "true");
    assert!(
        second["row"].as_str().unwrap().contains("force: true"),
        "{second}"
    );
    assert!(
        second["status"]
            .as_str()
            .unwrap()
            .contains("2 configuration(s)"),
        "{second}"
    );
    registry.destroy().await;
    server.stop().await;
}

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
use rdubbo::Invoker;
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
    rdubbo_testkit::pip_install(
        &dir.join("py"),
        "nacos-sdk-python==2.0.11",
        "nacos/client.py",
    )
}

/// A foreign client driven by JSON commands on stdin, answering JSON lines on stdout.
struct Peer {
    name: &'static str,
    _child: ChildGuard,
    lines: mpsc::Receiver<Value>,
    stdin: std::process::ChildStdin,
    /// For npm `nacos` clients: this test's turn (see [`node_turn`]).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// npm `nacos` clients on one machine elect one leader process (cluster-client, loopback
/// port 7777, one name for every server address) and send their calls through it: two
/// node clients of two tests would publish into each other's registry. The tests of this
/// binary therefore run their node clients one at a time.
async fn node_turn() -> tokio::sync::OwnedMutexGuard<()> {
    static TURN: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
        std::sync::LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));
    TURN.clone().lock_owned().await
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
            _turn: None,
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
    let server = embedded().await;
    let peer = node_peer("config", &server).await;
    exchange(peer, &server, "node", true).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacos_sdk_python_and_rdubbo_share_configs_on_the_embedded_registry() {
    if skip("nacos-sdk-python config interop") {
        return;
    }
    let server = embedded().await;
    let (peer, work) = python_peer("py-run", &server).await;
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
    let server = embedded().await;
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

// ---------------------------------------------------------------------------------------
// Governance rules published by the foreign clients, followed by a live rdubbo consumer.
// ---------------------------------------------------------------------------------------

const RULED_IFACE: &str = "demo.ClientRuledService";
/// The service's rule documents are `<interface>:<version>:<group>.<kind>` (Java's key).
const RULED_KEY: &str = "demo.ClientRuledService::";
const RULED_APP: &str = "client-ruled";

/// Answers `sayHello` and `whoami` with its name.
struct Named(String);

impl Invoker for Named {
    fn invoke(
        &self,
        inv: rdubbo::Invocation,
    ) -> rdubbo::BoxFuture<'static, rdubbo::RpcResult<rdubbo::Reply>> {
        let name = self.0.clone();
        Box::pin(async move {
            match &*inv.method {
                "sayHello" | "whoami" => Ok(rdubbo::Reply::Json(Value::String(name))),
                other => Err(rdubbo::RpcError::service(format!("no method {other}"))),
            }
        })
    }
}

async fn ruled_provider(server: &NamingServer, name: &str) -> rdubbo::provider::Provider {
    let registry = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    let info = rdubbo::ServiceInfo {
        interface: RULED_IFACE.to_owned(),
        version: None,
        group: None,
        methods: vec!["sayHello".into(), "whoami".into()],
        ..Default::default()
    };
    rdubbo::provider::Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(RULED_APP)
        .register_mode(rdubbo::RegisterMode::Interface)
        .registry(registry)
        .export(info, Arc::new(Named(name.to_owned())))
        .unregister_wait(Duration::from_millis(100))
        // Full weight at once: Dubbo's 10-minute warm-up would scale weights down here.
        .param("warmup", "0")
        .start()
        .await
        .unwrap()
}

/// Who answered `calls` calls of `method` (with the `dubbo.tag` attachment `tag`).
async fn spread(
    r: &rdubbo::consumer::Reference,
    method: &str,
    tag: Option<&str>,
    calls: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..calls {
        let mut inv = rdubbo::Invocation::new(RULED_IFACE, method, vec![]);
        if let Some(tag) = tag {
            inv.attachments.insert("dubbo.tag", tag);
        }
        let v = r.invoke(inv).await.expect("no call may fail");
        *seen.entry(v.decode::<String>().unwrap()).or_default() += 1;
    }
    seen
}

fn share(seen: &std::collections::BTreeMap<String, usize>, who: &str) -> f64 {
    let total: usize = seen.values().sum();
    seen.get(who).copied().unwrap_or(0) as f64 / total as f64
}

/// The foreign client publishes (or with `content: None` removes) `key` in group `dubbo`.
/// The peer's answer is awaited on this worker thread (`block_in_place`): the consumer's
/// background calls keep running on the other.
fn peer_set(peer: &mut Peer, id: u64, key: &str, content: Option<&str>) {
    let cmd = match content {
        Some(content) => {
            json!({"id": id, "op": "pub", "dataId": key, "group": "dubbo", "content": content})
        }
        None => json!({"id": id, "op": "rm", "dataId": key, "group": "dubbo"}),
    };
    let done = tokio::task::block_in_place(|| peer.run(cmd));
    assert_eq!(done["result"], true, "{} {key}: {done}", peer.name);
}

/// Two rdubbo providers and a consumer on the embedded registry (`nacos://`); the foreign
/// client writes the rules; the consumer, calling all along, behaves as each rule says.
async fn rules_by(mut peer: Peer, server: &NamingServer) {
    peer.expect("ready", Duration::from_secs(30), |_| true);
    let a = ruled_provider(server, "A").await;
    let b = ruled_provider(server, "B").await;
    let (a_addr, b_addr) = (a.urls()[0].address(), b.urls()[0].address());
    let b_port = b.urls()[0].port().unwrap();
    let consumer_registry = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    let consumer = Arc::new(
        rdubbo::consumer::Reference::builder(RULED_IFACE)
            .application(&format!("{RULED_APP}-web"))
            .registry(consumer_registry.clone())
            .check(false)
            .build()
            .await
            .unwrap(),
    );
    let long = Duration::from_secs(40);
    until(long, "both providers", || {
        consumer.directory().providers().len() == 2
    })
    .await;

    // Calls all along, in the background: none may fail while the rules change.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let (consumer, stop) = (consumer.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let inv = rdubbo::Invocation::new(RULED_IFACE, "whoami", vec![]);
                match consumer.invoke(inv).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed)
        })
    };
    let even = spread(&consumer, "whoami", None, 600).await;
    assert!((share(&even, "A") - 0.5).abs() < 0.1, "{even:?}");

    // 1. A configurator (dubbo-admin's shape) gives A weight 900: ~90% of calls to A.
    let configurators = format!("{RULED_KEY}.configurators");
    let weight = format!(
        "configVersion: v2.7\nscope: service\nkey: {RULED_IFACE}\nenabled: true\nconfigs:\n\
         - side: consumer\n  addresses: [0.0.0.0]\n  providerAddresses: ['{a_addr}']\n  parameters:\n    weight: 900\n"
    );
    peer_set(&mut peer, 101, &configurators, Some(&weight));
    let t = Instant::now();
    while !consumer
        .directory()
        .providers()
        .iter()
        .any(|p| p.url.address() == a_addr && p.url.param("weight") == Some("900"))
    {
        if t.elapsed() > long {
            // What the server holds and what the consumer has, for whoever reads this.
            let held = consumer_registry
                .dynamic_configuration()
                .expect("a config center")
                .get(&configurators, "dubbo")
                .await;
            let providers: Vec<String> = consumer
                .directory()
                .providers()
                .iter()
                .map(|p| format!("{} overrides={:?}", p.url, p.overrides))
                .collect();
            panic!("A at weight 900: not within {long:?}; the server holds {held:?}; the consumer's providers: {providers:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = spread(&consumer, "whoami", None, 2000).await;
    assert!((share(&seen, "A") - 0.9).abs() < 0.04, "{seen:?}");

    // 2. The document now disables B: no call reaches it.
    let disable = format!(
        "configVersion: v3.0\nscope: service\nkey: {RULED_IFACE}\nenabled: true\nconfigs:\n\
         - side: consumer\n  addresses: ['0.0.0.0']\n  providerAddresses: ['{b_addr}']\n  parameters:\n    disabled: 'true'\n"
    );
    peer_set(&mut peer, 102, &configurators, Some(&disable));
    until(long, "B disabled", || {
        consumer.directory().providers().len() == 1
    })
    .await;
    let seen = spread(&consumer, "whoami", None, 300).await;
    assert_eq!(seen.get("A"), Some(&300), "{seen:?}");

    // 3. Deleting the document restores both providers as registered.
    peer_set(&mut peer, 103, &configurators, None);
    until(long, "B back", || {
        let providers = consumer.directory().providers();
        providers.len() == 2 && providers.iter().all(|p| p.overrides.is_empty())
    })
    .await;
    let seen = spread(&consumer, "whoami", None, 600).await;
    assert!((share(&seen, "A") - 0.5).abs() < 0.1, "{seen:?}");

    // 4. A condition router: sayHello goes to B only, whoami stays spread; removed again.
    let router_key = format!("{RULED_KEY}.condition-router");
    let route = format!(
        "configVersion: v3.0\nscope: service\nkey: {RULED_IFACE}\nforce: false\nruntime: true\nenabled: true\n\
         conditions:\n- method = sayHello => host = 127.0.0.1 & port = {b_port}\n"
    );
    peer_set(&mut peer, 104, &router_key, Some(&route));
    let hello = rdubbo::Invocation::new(RULED_IFACE, "sayHello", vec![]);
    until(long, "the condition rule", || {
        consumer.directory().list(&hello).len() == 1
    })
    .await;
    let seen = spread(&consumer, "sayHello", None, 200).await;
    assert_eq!(seen.get("B"), Some(&200), "{seen:?}");
    let seen = spread(&consumer, "whoami", None, 400).await;
    assert!(seen.contains_key("A") && seen.contains_key("B"), "{seen:?}");
    peer_set(&mut peer, 105, &router_key, None);
    until(long, "the condition rule removed", || {
        consumer.directory().list(&hello).len() == 2
    })
    .await;

    // 5. A tag router (the provider application's): `gray` is A's address.
    let tag_key = format!("{RULED_APP}.tag-router");
    let tags = format!(
        "configVersion: v3.0\nforce: false\nenabled: true\nkey: {RULED_APP}\ntags:\n\
         - name: gray\n  addresses: ['{a_addr}']\n"
    );
    peer_set(&mut peer, 106, &tag_key, Some(&tags));
    let mut gray = rdubbo::Invocation::new(RULED_IFACE, "whoami", vec![]);
    gray.attachments.insert("dubbo.tag", "gray");
    until(long, "the tag rule", || {
        consumer.directory().list(&gray).len() == 1
    })
    .await;
    let seen = spread(&consumer, "whoami", Some("gray"), 200).await;
    assert_eq!(seen.get("A"), Some(&200), "{seen:?}");
    let seen = spread(&consumer, "whoami", None, 200).await;
    assert_eq!(
        seen.get("B"),
        Some(&200),
        "untagged calls avoid gray: {seen:?}"
    );
    peer_set(&mut peer, 107, &tag_key, None);
    until(long, "the tag rule removed", || {
        consumer.directory().list(&gray).len() == 2
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = background.await.unwrap();
    assert!(failed.is_empty(), "background calls failed: {failed:?}");
    assert!(ok > 0, "no background call ran");
    eprintln!("{}: {ok} background calls, none failed", peer.name);
    consumer.close().await;
    a.stop().await;
    b.stop().await;
    consumer_registry.destroy().await;
}

/// An embedded registry on a free loopback port.
async fn embedded() -> NamingServer {
    NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// nacos-sdk-python against `server`, run in its own work directory `<dir_name>-<pid>`
/// (returned, for the caller to remove).
async fn python_peer(dir_name: &str, server: &NamingServer) -> (Peer, PathBuf) {
    let dir = dir();
    let py = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || pip_install(&d))
            .await
            .unwrap()
    };
    let work = dir.join(format!("{dir_name}-{}", std::process::id()));
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
    (Peer::start("python", command), work)
}

/// The npm client on a fresh embedded registry.
async fn node_peer(script_name: &str, server: &NamingServer) -> Peer {
    let dir = dir();
    let node_dir = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || npm_install(&d, &["nacos@2.6.3"]))
            .await
            .unwrap()
    };
    let script = node_dir.join(format!("{script_name}-{}.js", std::process::id()));
    std::fs::write(&script, NODE_SCRIPT).unwrap();
    let mut command = Command::new("node");
    command
        .arg(&script)
        .arg(server.local_addr().to_string())
        .current_dir(&node_dir);
    let turn = node_turn().await;
    let mut peer = Peer::start("node", command);
    peer._turn = Some(turn);
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_published_by_the_npm_nacos_client_steer_a_live_consumer() {
    if skip("npm nacos rules on a live consumer") {
        return;
    }
    let server = embedded().await;
    let peer = node_peer("rules", &server).await;
    rules_by(peer, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_published_by_nacos_sdk_python_steer_a_live_consumer() {
    if skip("nacos-sdk-python rules on a live consumer") {
        return;
    }
    let server = embedded().await;
    let (peer, work) = python_peer("py-rules", &server).await;
    rules_by(peer, &server).await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&work);
}

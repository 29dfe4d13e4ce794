//! A provider follows the `override://` rules of its service as a Java provider does,
//! against a real ZooKeeper with rules written by the Debian `zkCli.sh`: it subscribes to
//! its configurators (creating `/dubbo/<iface>/configurators`), re-registers its URL with
//! the parameters of the rules that target it (0.0.0.0 or its host:port, enabled, its
//! application), ignores the others, bounds its calls by a `timeout` a rule sets, keeps
//! serving when a rule disables it, and comes back to its original URL when the rules go.
//! An application started from a configuration file does the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::dubbo::DubboClient;
use rdubbo::error::codes;
use rdubbo::provider::Provider;
use rdubbo::{
    BoxFuture, Invocation, Invoker, Registry, Reply, RpcError, RpcResult, ServiceInfo, Url,
};
use rdubbo_testkit::ZkServer;

const IFACE: &str = "demo.SlowService";

/// `slow(ms)`: sleeps, then answers `ms`.
struct Slow;

impl Invoker for Slow {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            match &*inv.method {
                "slow" => {
                    let ms = inv.args.first().and_then(|v| v.as_u64()).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(Reply::Json(serde_json::json!(ms)))
                }
                other => Err(RpcError::service(format!("no method {other}"))),
            }
        })
    }
}

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: IFACE.into(),
        version: None,
        group: None,
        methods: vec!["slow".into()],
        ..Default::default()
    }
}

async fn nodes(observer: &Arc<dyn Registry>) -> Vec<Url> {
    let query: Url = format!("consumer://127.0.0.1/{IFACE}?version=*&group=*&category=providers")
        .parse()
        .unwrap();
    observer.lookup(&query).await.unwrap_or_default()
}

/// Waits until the only provider node satisfies `ok`; returns it.
async fn wait_node(observer: &Arc<dyn Registry>, what: &str, ok: impl Fn(&Url) -> bool) -> Url {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = nodes(observer).await;
        if let [only] = &now[..] {
            if ok(only) {
                return only.clone();
            }
        }
        assert!(Instant::now() < deadline, "{what}: nodes now {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no provider node is left.
async fn wait_no_node(observer: &Arc<dyn Registry>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes(observer).await.is_empty() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A provider of [`Slow`] over dubbo registered at `registry`, in application `app` when
/// given.
async fn start_provider(registry: &Arc<dyn Registry>, app: Option<&str>) -> Provider {
    let mut builder = Provider::builder("127.0.0.1:0".parse().unwrap()).protocol("dubbo");
    if let Some(app) = app {
        builder = builder.application(app);
    }
    builder
        .registry(registry.clone())
        .export(info(), Arc::new(Slow))
        .unregister_wait(Duration::ZERO)
        .start()
        .await
        .unwrap()
}

fn write_rule(zk: &ZkServer, rule: &str) -> String {
    let path = format!("/dubbo/{IFACE}/configurators/{}", rdubbo::url::encode(rule));
    let out = zk.cli(&["create", &path]);
    assert!(out.contains("Created"), "zkCli create {path}: {out}");
    path
}

fn slow(ms: u64) -> Invocation {
    Invocation::new(IFACE, "slow", vec![rdubbo::Value::Long(ms as i64)])
        .with_timeout(Some(Duration::from_secs(5)))
}

/// `slow(ms)` through `client` answers `ms`.
async fn assert_answers(client: &DubboClient, ms: u64) {
    let answer = client.invoke(slow(ms)).await.unwrap();
    assert_eq!(answer.decode::<u64>().unwrap(), ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_rules_reconfigure_the_registered_provider_and_go_away() {
    let zk = ZkServer::start();
    let registry_url = zk.registry_url("file.cache=false");
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();
    let observer = rdubbo::registry::connect(&registry_url).await.unwrap();
    let provider = start_provider(&registry, Some("slow-app")).await;
    let port = provider.local_addr().port();
    let original = provider.urls()[0].clone();
    assert_eq!(wait_node(&observer, "registered", |_| true).await, original);
    // The provider's subscription created the configurators folder, as Java's does.
    let ls = zk.cli(&["ls", &format!("/dubbo/{IFACE}")]);
    assert!(
        ls.contains("configurators") && ls.contains("providers"),
        "{ls}"
    );
    let client = DubboClient::new(&original).unwrap();
    assert_answers(&client, 300).await;

    let base = "category=configurators&dynamic=false";
    let rules = [
        // Applies: every provider of the service.
        format!(
            "override://0.0.0.0/{IFACE}?{base}&enabled=true&timeout=150&weight=300&disabled=true"
        ),
        // Switched off.
        format!("override://0.0.0.0/{IFACE}?{base}&enabled=false&loadbalance=random"),
        // Another host with this port.
        format!("override://10.1.2.3:{port}/{IFACE}?{base}&retries=9"),
        // Another application.
        format!("override://0.0.0.0/{IFACE}?{base}&application=other-app&warmup=1"),
        // This host without a port names a consumer: not for providers.
        format!("override://127.0.0.1/{IFACE}?{base}&actives=3"),
        // Consumer-side rule.
        format!("override://0.0.0.0/{IFACE}?{base}&side=consumer&sticky=true"),
        // This provider by host:port, in its own application.
        format!("override://127.0.0.1:{port}/{IFACE}?{base}&application=slow-app&executes=50"),
    ];
    let paths: Vec<String> = rules.iter().map(|r| write_rule(&zk, r)).collect();
    let configured = wait_node(&observer, "configured", |u| {
        u.param("timeout") == Some("150") && u.param("executes") == Some("50")
    })
    .await;
    assert_eq!(configured.param("weight"), Some("300"));
    assert_eq!(configured.param("disabled"), Some("true"));
    for ignored in ["loadbalance", "retries", "warmup", "actives", "sticky"] {
        assert_eq!(configured.param(ignored), None, "{ignored}: {configured}");
    }
    // Only the rules' parameters were added, sorted in place; the rest is the original.
    let mut expected = original.clone();
    for (k, v) in [
        ("disabled", "true"),
        ("executes", "50"),
        ("timeout", "150"),
        ("weight", "300"),
    ] {
        expected.set_param(k, v);
    }
    let keys = |u: &Url| {
        u.params()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let mut expected_params = keys(&expected);
    expected_params.sort();
    assert_eq!(keys(&configured), expected_params);
    assert_eq!(provider.registered_urls(), vec![configured.clone()]);

    // Disabled in the registry, the provider still serves direct calls (as Java does); the
    // rule's timeout bounds them now.
    assert_answers(&client, 10).await;
    let started = Instant::now();
    let e = client.invoke(slow(2000)).await.unwrap_err();
    assert_eq!(e.code(), codes::SERVER_TIMEOUT, "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // A rule for one method beats the service-wide one.
    let method_rule = write_rule(
        &zk,
        &format!("override://0.0.0.0/{IFACE}?{base}&slow.timeout=3000"),
    );
    wait_node(&observer, "method timeout", |u| {
        u.param("slow.timeout") == Some("3000")
    })
    .await;
    assert_answers(&client, 400).await;

    // The rules go away: the original URL is registered again, calls are not bounded.
    for path in paths.iter().chain([&method_rule]) {
        let out = zk.cli(&["delete", path]);
        assert!(!out.contains("Exception"), "zkCli delete {path}: {out}");
    }
    let back = wait_node(&observer, "restored", |u| u.param("timeout").is_none()).await;
    assert_eq!(back, original);
    assert_eq!(provider.registered_urls(), vec![original.clone()]);
    assert_answers(&client, 300).await;

    // Stopping unregisters the URL as registered, and stops following the rules: a rule
    // written afterwards registers nothing.
    provider.stop().await;
    wait_no_node(&observer, "the node stays after stop").await;
    write_rule(&zk, &format!("override://0.0.0.0/{IFACE}?{base}&weight=1"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(nodes(&observer).await.is_empty());
    registry.destroy().await;
    observer.destroy().await;
}

/// A standing rule is applied before the first registration: the provider registers once,
/// already configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standing_rule_is_applied_at_the_first_registration() {
    let zk = ZkServer::start();
    let registry_url = zk.registry_url("file.cache=false");
    // Written before the provider starts (by a registry client, as Dubbo Admin does: a
    // persistent node, since dynamic=false).
    let admin = rdubbo::registry::connect(&registry_url).await.unwrap();
    let rule: Url =
        format!("override://0.0.0.0/{IFACE}?category=configurators&dynamic=false&weight=7")
            .parse()
            .unwrap();
    admin.register(&rule).await.unwrap();
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();
    let provider = start_provider(&registry, None).await;
    assert_eq!(provider.registered_urls()[0].param("weight"), Some("7"));
    let ls = zk.cli(&["ls", &format!("/dubbo/{IFACE}/providers")]);
    assert_eq!(ls.matches("dubbo%3A%2F%2F").count(), 1, "{ls}");
    assert!(ls.contains("%26weight%3D7"), "{ls}");
    provider.stop().await;
    registry.destroy().await;
    admin.destroy().await;
}

/// An application started from configuration follows the rules of its services too, and
/// QoS offline/online keeps them: online again registers the configured URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_follows_the_rules_of_its_services() {
    use rdubbo::app::{Application, Config, Format};

    let zk = ZkServer::start();
    let registry_url = zk.registry_url("file.cache=false");
    let config = Config::from_str(
        &format!(
            r#"
[application]
name = "slow-app"

[registries.zk]
address = "{registry_url}"

[protocols.dubbo]
port = 0

[provider.services.slow]
interface = "{IFACE}"

[shutdown]
unregister_wait = "0s"

[metrics]
enabled = false

[qos]
enabled = false
"#
        ),
        Format::Toml,
        "app.toml",
    )
    .unwrap();
    let app = Application::builder(config)
        .service("slow", info(), Arc::new(Slow))
        .start()
        .await
        .unwrap();
    let original = app.exported_urls()[0].clone();
    let observer = rdubbo::registry::connect(&registry_url).await.unwrap();
    assert_eq!(wait_node(&observer, "registered", |_| true).await, original);
    let rule = write_rule(
        &zk,
        &format!(
            "override://0.0.0.0/{IFACE}?category=configurators&dynamic=false&application=slow-app&weight=42"
        ),
    );
    wait_node(&observer, "configured", |u| u.param("weight") == Some("42")).await;
    assert_eq!(app.offline("").await, 1);
    wait_no_node(&observer, "offline left the node").await;
    assert_eq!(app.online("").await, 1);
    wait_node(&observer, "online, configured", |u| {
        u.param("weight") == Some("42")
    })
    .await;
    zk.cli(&["delete", &rule]);
    assert_eq!(
        wait_node(&observer, "restored", |u| u.param("weight").is_none()).await,
        original
    );
    app.shutdown().await;
    observer.destroy().await;
}

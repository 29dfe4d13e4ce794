//! Governance rules from the config center, on a live consumer and on providers, the way
//! an operator writes them: YAML documents in group `dubbo` — through `memory://`'s config
//! center, and through a real ZooKeeper with the Debian `zkCli.sh`
//! (`/dubbo/config/dubbo/<key>`), and through the embedded registry's Nacos config API.
//!
//! One scenario, both backends: a consumer-side configurator changes a provider's weight
//! (call shares shift), then disables the other (no call reaches it); a malformed
//! document is ignored with the previous rule kept; deleting restores; a condition router
//! `method = sayHello => host = 127.0.0.1 & port = P` sends the calls to one provider; a
//! tag router gives one address the tag `gray` (calls with `dubbo.tag=gray` go there,
//! others avoid it); a provider-side configurator (`side: provider`) makes a provider
//! register a new weight, which shifts the shares.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo::{
    BoxFuture, ConfigChange, ConfigListener, DynamicConfiguration, Invocation, Invoker,
    RegisterMode, Registry, Reply, RpcError, RpcResult, ServiceInfo,
};
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_testkit::ZkServer;
use serde_json::Value;

const IFACE: &str = "demo.RuledService";
/// The service's rule documents: `<interface>:<version>:<group>` (Java's key).
const SERVICE_KEY: &str = "demo.RuledService::";
const PROVIDER_APP: &str = "shop";
const CONSUMER_APP: &str = "shop-web";

/// Answers `sayHello` and `whoami` with its name.
struct Named(String);

impl Invoker for Named {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let name = self.0.clone();
        Box::pin(async move {
            match &*inv.method {
                "sayHello" | "whoami" => Ok(Reply::Json(Value::String(name))),
                other => Err(RpcError::service(format!("no method {other}"))),
            }
        })
    }
}

async fn provider(registry: &Arc<dyn Registry>, name: &str, mode: RegisterMode) -> Provider {
    let info = ServiceInfo {
        interface: IFACE.to_owned(),
        version: None,
        group: None,
        methods: vec!["sayHello".into(), "whoami".into()],
        ..Default::default()
    };
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(PROVIDER_APP)
        .register_mode(mode)
        .registry(registry.clone())
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
    r: &Reference,
    method: &str,
    tag: Option<&str>,
    calls: usize,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..calls {
        let mut inv = Invocation::new(IFACE, method, vec![]);
        if let Some(tag) = tag {
            inv.attachments.insert("dubbo.tag", tag);
        }
        let v = r.invoke(inv).await.expect("no call may fail");
        *seen.entry(v.decode::<String>().unwrap()).or_default() += 1;
    }
    seen
}

fn share(seen: &BTreeMap<String, usize>, who: &str) -> f64 {
    let total: usize = seen.values().sum();
    seen.get(who).copied().unwrap_or(0) as f64 / total as f64
}

/// Waits until `done` holds (10 s at most).
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How an operator writes documents: a config center client (`memory://`'s, the Nacos
/// config API of `rdubbo config set`) or `zkCli.sh`.
enum Writer {
    Config(Arc<dyn DynamicConfiguration>),
    Zk(ZkServer),
}

impl Writer {
    async fn set(&self, key: &str, yaml: &str) {
        match self {
            Writer::Config(config) => config.publish(key, "dubbo", yaml).await.unwrap(),
            Writer::Zk(zk) => {
                let path = format!("/dubbo/config/dubbo/{key}");
                let out = zk.cli(&["create", &path, yaml]);
                if out.contains("already exists") {
                    let out = zk.cli(&["set", &path, yaml]);
                    assert!(!out.contains("Exception"), "zkCli set {path}: {out}");
                } else {
                    assert!(out.contains("Created"), "zkCli create {path}: {out}");
                }
            }
        }
    }

    async fn delete(&self, key: &str) {
        match self {
            Writer::Config(config) => config.remove(key, "dubbo").await.unwrap(),
            Writer::Zk(zk) => {
                let path = format!("/dubbo/config/dubbo/{key}");
                let out = zk.cli(&["delete", &path]);
                assert!(!out.contains("Exception"), "zkCli delete {path}: {out}");
            }
        }
    }
}

/// Watches `key` through `config` and records what it sees.
async fn observe(
    config: &Arc<dyn DynamicConfiguration>,
    key: &str,
) -> Arc<Mutex<Vec<Option<String>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let listener: Arc<dyn ConfigListener> =
        Arc::new(move |c: ConfigChange| sink.lock().unwrap().push(c.content));
    config.watch(key, "dubbo", listener).await.unwrap();
    seen
}

/// The steps above; providers registered with `mode`; the provider-side step only with
/// `provider_side` (a provider that re-registers its interface-level URL is seen by
/// consumers that follow interface-level addresses).
async fn scenario(
    writer: Writer,
    registries: Vec<Arc<dyn Registry>>,
    mode: RegisterMode,
    provider_side: bool,
) {
    let a = provider(&registries[0], "A", mode).await;
    let b = provider(&registries[1], "B", mode).await;
    let (a_addr, b_addr) = (a.urls()[0].address(), b.urls()[0].address());
    let b_port = b.urls()[0].port().unwrap();
    let consumer = Reference::builder(IFACE)
        .application(CONSUMER_APP)
        .registry(registries[2].clone())
        .check(false)
        .build()
        .await
        .unwrap();
    wait_for("both providers", || {
        consumer.directory().providers().len() == 2
    })
    .await;
    let even = spread(&consumer, "whoami", None, 600).await;
    assert!((share(&even, "A") - 0.5).abs() < 0.1, "{even:?}");

    // 1. A consumer-side configurator gives A weight 900 (B keeps 100): ~90% to A.
    let configurators = format!("{SERVICE_KEY}.configurators");
    let weight = format!(
        "configVersion: v2.7\nscope: service\nkey: {IFACE}\nenabled: true\nconfigs:\n\
         - side: consumer\n  addresses: [0.0.0.0]\n  providerAddresses: ['{a_addr}']\n  parameters:\n    weight: 900\n"
    );
    writer.set(&configurators, &weight).await;
    wait_for("A at weight 900", || {
        consumer
            .directory()
            .providers()
            .iter()
            .any(|p| p.url.address() == a_addr && p.url.param("weight") == Some("900"))
    })
    .await;
    let seen = spread(&consumer, "whoami", None, 2000).await;
    assert!((share(&seen, "A") - 0.9).abs() < 0.04, "{seen:?}");

    // 2. The document now disables B: no call reaches it.
    let disable = format!(
        "configVersion: v2.7\nscope: service\nkey: {IFACE}\nconfigs:\n\
         - side: consumer\n  addresses: [0.0.0.0]\n  providerAddresses: ['{b_addr}']\n  parameters: {{disabled: true}}\n"
    );
    writer.set(&configurators, &disable).await;
    wait_for("B disabled", || consumer.directory().providers().len() == 1).await;
    let seen = spread(&consumer, "whoami", None, 200).await;
    assert_eq!(seen.get("A"), Some(&200), "{seen:?}");

    // 3. A malformed document is ignored: B stays disabled. (The consumer's own config
    // center delivered it once this second watcher on the same key saw it.)
    let config = registries[2].dynamic_configuration().unwrap();
    let delivered = observe(&config, &configurators).await;
    let malformed = "configVersion: v2.7\nscope: service\nconfigs: [\n";
    writer.set(&configurators, malformed).await;
    wait_for("the malformed document delivered", || {
        delivered.lock().unwrap().last() == Some(&Some(malformed.to_owned()))
    })
    .await;
    assert_eq!(consumer.directory().providers().len(), 1);
    let seen = spread(&consumer, "whoami", None, 200).await;
    assert_eq!(seen.get("A"), Some(&200), "{seen:?}");

    // 4. Deleting the document restores both providers as registered.
    writer.delete(&configurators).await;
    wait_for("B back", || {
        let providers = consumer.directory().providers();
        providers.len() == 2 && providers.iter().all(|p| p.overrides.is_empty())
    })
    .await;
    let seen = spread(&consumer, "whoami", None, 600).await;
    assert!((share(&seen, "A") - 0.5).abs() < 0.1, "{seen:?}");

    // 5. A condition router: sayHello goes to B only, whoami stays spread.
    let router_key = format!("{SERVICE_KEY}.condition-router");
    let route = format!(
        "scope: service\nkey: {IFACE}\nforce: false\nruntime: true\nenabled: true\nconditions:\n\
         - method = sayHello => host = 127.0.0.1 & port = {b_port}\n"
    );
    writer.set(&router_key, &route).await;
    let hello = Invocation::new(IFACE, "sayHello", vec![]);
    wait_for("the condition rule", || {
        consumer.directory().list(&hello).len() == 1
    })
    .await;
    let seen = spread(&consumer, "sayHello", None, 200).await;
    assert_eq!(seen.get("B"), Some(&200), "{seen:?}");
    let seen = spread(&consumer, "whoami", None, 400).await;
    assert!(seen.contains_key("A") && seen.contains_key("B"), "{seen:?}");
    writer.delete(&router_key).await;
    wait_for("the condition rule removed", || {
        consumer.directory().list(&hello).len() == 2
    })
    .await;

    // 6. A tag router (the provider application's): `gray` is A's address.
    let tag_key = format!("{PROVIDER_APP}.tag-router");
    let tags = format!(
        "force: false\nenabled: true\nkey: {PROVIDER_APP}\ntags:\n- name: gray\n  addresses: ['{a_addr}']\n"
    );
    writer.set(&tag_key, &tags).await;
    let mut gray = Invocation::new(IFACE, "whoami", vec![]);
    gray.attachments.insert("dubbo.tag", "gray");
    wait_for("the tag rule", || {
        consumer.directory().list(&gray).len() == 1
    })
    .await;
    let seen = spread(&consumer, "whoami", Some("gray"), 200).await;
    assert_eq!(seen.get("A"), Some(&200), "{seen:?}");
    let seen = spread(&consumer, "whoami", None, 200).await;
    assert_eq!(
        seen.get("B"),
        Some(&200),
        "untagged calls avoid the gray address: {seen:?}"
    );
    writer.delete(&tag_key).await;
    wait_for("the tag rule removed", || {
        consumer.directory().list(&gray).len() == 2
    })
    .await;

    if !provider_side {
        consumer.close().await;
        a.stop().await;
        b.stop().await;
        for r in registries {
            r.destroy().await;
        }
        return;
    }

    // 7. A provider-side configurator (the provider application's document): B registers
    // weight 900 itself, and the consumer follows the registry.
    let provider_key = format!("{PROVIDER_APP}.configurators");
    let provider_rule = format!(
        "configVersion: v2.7\nscope: application\nkey: {PROVIDER_APP}\nconfigs:\n\
         - type: general\n  side: provider\n  addresses: ['{b_addr}']\n  parameters: {{weight: 900, timeout: 4321}}\n"
    );
    writer.set(&provider_key, &provider_rule).await;
    wait_for("B registered with weight 900", || {
        b.registered_urls()[0].param("weight") == Some("900")
            && consumer
                .directory()
                .providers()
                .iter()
                .any(|p| p.url.address() == b_addr && p.url.param("weight") == Some("900"))
    })
    .await;
    assert_eq!(b.registered_urls()[0].param("timeout"), Some("4321"));
    assert_eq!(
        a.registered_urls()[0].param("weight"),
        None,
        "A is not targeted"
    );
    let seen = spread(&consumer, "whoami", None, 2000).await;
    assert!((share(&seen, "B") - 0.9).abs() < 0.04, "{seen:?}");
    writer.delete(&provider_key).await;
    wait_for("B registered as built", || {
        b.registered_urls()[0].param("weight").is_none()
            && consumer
                .directory()
                .providers()
                .iter()
                .all(|p| p.url.param("weight").is_none())
    })
    .await;

    consumer.close().await;
    a.stop().await;
    b.stop().await;
    for r in registries {
        r.destroy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_the_memory_config_center() {
    let url = "memory://config-rules";
    let mut registries = Vec::new();
    for _ in 0..4 {
        registries.push(rdubbo::registry::connect(url).await.unwrap());
    }
    let operator = registries.pop().unwrap();
    let writer = Writer::Config(operator.dynamic_configuration().unwrap());
    scenario(writer, registries, RegisterMode::All, true).await;
}

/// Interface-level registration: every step, the provider-side one included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_written_with_zkcli_on_a_live_consumer() {
    zk_scenario(RegisterMode::Interface, true).await;
}

/// Dubbo 3's default registration (interface and instance; the consumer follows the
/// application-level addresses): the consumer-side rules apply the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_written_with_zkcli_apply_to_application_level_addresses() {
    zk_scenario(RegisterMode::All, false).await;
}

async fn zk_scenario(mode: RegisterMode, provider_side: bool) {
    let zk = ZkServer::start();
    let url = zk.registry_url("session=4000&retry.period=500&file.cache=false");
    let mut registries = Vec::new();
    for _ in 0..3 {
        registries.push(rdubbo::registry::connect(&url).await.unwrap());
    }
    for dir in ["/dubbo", "/dubbo/config", "/dubbo/config/dubbo"] {
        zk.cli(&["create", dir]);
    }
    scenario(Writer::Zk(zk), registries, mode, provider_side).await;
}

/// The embedded registry (`nacos://`): documents published through its Nacos config API
/// (as `rdubbo config set` does), watched by long polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_through_the_embedded_registry_config_api() {
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut registries = Vec::new();
    for _ in 0..4 {
        registries.push(
            rdubbo::registry::connect(&server.registry_url())
                .await
                .unwrap(),
        );
    }
    let operator = registries.pop().unwrap();
    let writer = Writer::Config(operator.dynamic_configuration().unwrap());
    scenario(writer, registries, RegisterMode::Interface, true).await;
    operator.destroy().await;
    server.stop().await;
}

/// A provider registered by application only (Dubbo 3's `register-mode=instance`) follows
/// its application's provider-side configurator as a Java 3 provider does: its URL takes
/// the rule's parameters, its application metadata gets a new revision, the instance in
/// ZooKeeper is updated with it, and a consumer with `FORCE_APPLICATION` fetches the new
/// metadata and sees the parameters; deleting the rule brings the first revision back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_registered_provider_republishes_its_metadata() {
    let zk = ZkServer::start();
    let url = zk.registry_url("session=4000&retry.period=500&file.cache=false");
    let provider_registry = rdubbo::registry::connect(&url).await.unwrap();
    let consumer_registry = rdubbo::registry::connect(&url).await.unwrap();
    for dir in ["/dubbo", "/dubbo/config", "/dubbo/config/dubbo"] {
        zk.cli(&["create", dir]);
    }
    let p = provider(&provider_registry, "A", RegisterMode::Instance).await;
    let addr = p.urls()[0].address();
    let first = p.instance().unwrap().revision().unwrap().to_owned();
    assert_eq!(p.metadata().unwrap().revision(), first);
    let consumer = Reference::builder(IFACE)
        .application(CONSUMER_APP)
        .registry(consumer_registry.clone())
        .param("migration.step", "FORCE_APPLICATION")
        .check(false)
        .build()
        .await
        .unwrap();
    let provider_param = |key: &str| -> Option<String> {
        let providers = consumer.directory().providers();
        let p = providers.iter().find(|p| p.url.address() == addr)?;
        p.url.param(key).map(str::to_owned)
    };
    wait_for("the provider, by application", || {
        consumer.directory().providers().len() == 1
    })
    .await;
    assert_eq!(provider_param("weight"), None);

    let writer = Writer::Zk(zk);
    let key = format!("{PROVIDER_APP}.configurators");
    let rule = format!(
        "configVersion: v2.7\nscope: application\nkey: {PROVIDER_APP}\nconfigs:\n\
         - type: general\n  side: provider\n  addresses: ['{addr}']\n  parameters: {{weight: 900, timeout: 4321}}\n"
    );
    writer.set(&key, &rule).await;
    wait_for("the consumer sees weight 900 and timeout 4321", || {
        provider_param("weight").as_deref() == Some("900")
            && provider_param("timeout").as_deref() == Some("4321")
    })
    .await;
    let second = p.instance().unwrap().revision().unwrap().to_owned();
    assert_ne!(second, first, "a new revision");
    assert_eq!(p.metadata().unwrap().revision(), second);
    assert_eq!(p.registered_urls()[0].param("weight"), Some("900"));
    let discovery = consumer_registry.service_discovery().unwrap();
    let registered = discovery.instances(PROVIDER_APP).await.unwrap();
    assert_eq!(registered.len(), 1, "updated in place: {registered:?}");
    assert_eq!(registered[0].revision(), Some(second.as_str()));
    let seen = spread(&consumer, "whoami", None, 5).await;
    assert_eq!(seen.get("A"), Some(&5));

    writer.delete(&key).await;
    wait_for("the consumer sees the provider as built", || {
        provider_param("weight").is_none() && provider_param("timeout").is_none()
    })
    .await;
    assert_eq!(p.instance().unwrap().revision(), Some(first.as_str()));

    consumer.close().await;
    p.stop().await;
    provider_registry.destroy().await;
    consumer_registry.destroy().await;
}

/// The same through an application started from a configuration file
/// (`[application] register_mode = "instance"`): its one instance gets a new revision
/// when a provider-side configurator changes one of its exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_registered_application_republishes_its_metadata() {
    use rdubbo::app::{Application, Config, Format};
    let zk = ZkServer::start();
    for dir in ["/dubbo", "/dubbo/config", "/dubbo/config/dubbo"] {
        zk.cli(&["create", dir]);
    }
    let text = format!(
        r#"
[application]
name = "{PROVIDER_APP}"
register_mode = "instance"

[registries.zk]
address = "{}"
params = {{ "file.cache" = "false" }}

[protocols.dubbo]
port = 0

[provider.services.ruled]
interface = "{IFACE}"
params = {{ warmup = "0" }}

[metrics]
enabled = false

[qos]
enabled = false
"#,
        zk.registry_url("session=4000&retry.period=500")
    );
    let config = Config::from_str(&text, Format::Toml, "shop.toml").unwrap();
    let info = ServiceInfo {
        interface: IFACE.to_owned(),
        methods: vec!["sayHello".into(), "whoami".into()],
        ..Default::default()
    };
    let app = Application::builder(config)
        .service("ruled", info, Arc::new(Named("A".to_owned())))
        .start()
        .await
        .unwrap();
    let consumer_registry =
        rdubbo::registry::connect(&zk.registry_url("session=4000&file.cache=false"))
            .await
            .unwrap();
    let discovery = consumer_registry.service_discovery().unwrap();
    let revision = || {
        let discovery = discovery.clone();
        async move {
            let instances = discovery.instances(PROVIDER_APP).await.unwrap();
            assert_eq!(instances.len(), 1, "one instance: {instances:?}");
            instances[0].revision().unwrap().to_owned()
        }
    };
    let first = revision().await;
    let consumer = Reference::builder(IFACE)
        .application(CONSUMER_APP)
        .registry(consumer_registry.clone())
        .param("migration.step", "FORCE_APPLICATION")
        .check(false)
        .build()
        .await
        .unwrap();
    wait_for("the application's provider, by application", || {
        consumer.directory().providers().len() == 1
    })
    .await;
    let addr = consumer.directory().providers()[0].url.address();
    let weight = || -> Option<String> {
        let providers = consumer.directory().providers();
        providers
            .first()
            .and_then(|p| p.url.param("weight").map(str::to_owned))
    };
    assert_eq!(weight(), None);

    let writer = Writer::Zk(zk);
    let key = format!("{PROVIDER_APP}.configurators");
    let rule = format!(
        "configVersion: v2.7\nscope: application\nkey: {PROVIDER_APP}\nconfigs:\n\
         - type: general\n  side: provider\n  addresses: ['{addr}']\n  parameters: {{weight: 900}}\n"
    );
    writer.set(&key, &rule).await;
    wait_for("the consumer sees weight 900", || {
        weight().as_deref() == Some("900")
    })
    .await;
    let second = revision().await;
    assert_ne!(second, first, "a new revision, updated in place");
    let seen = spread(&consumer, "whoami", None, 5).await;
    assert_eq!(seen.get("A"), Some(&5));

    writer.delete(&key).await;
    wait_for(
        "the consumer sees the provider as configured at start",
        || weight().is_none(),
    )
    .await;
    assert_eq!(revision().await, first);

    consumer.close().await;
    app.shutdown().await;
    consumer_registry.destroy().await;
}

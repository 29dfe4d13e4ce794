//! The cluster layer end to end: three real providers behind a real ZooKeeper; one is
//! killed mid-load, another gets a new weight from a configurator written with the Debian
//! `zkCli.sh`, and the consumer follows both without a failed call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo::{BoxFuture, Invocation, Invoker, Registry, Reply, RpcError, RpcResult, ServiceInfo};
use rdubbo_testkit::ZkServer;
use serde_json::Value;

const IFACE: &str = "demo.WeightedService";

struct Tagged(String);

impl Invoker for Tagged {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let tag = self.0.clone();
        Box::pin(async move {
            let r: RpcResult<Value> = async move {
                match &*inv.method {
                    "whoami" => Ok(Value::String(tag)),
                    other => Err(RpcError::service(format!("no method {other}"))),
                }
            }
            .await;
            r.map(Reply::Json)
        })
    }
}

async fn provider(registry: &Arc<dyn Registry>, tag: &str) -> Provider {
    let info = ServiceInfo {
        interface: IFACE.to_owned(),
        version: None,
        group: None,
        methods: vec!["whoami".into()],
        ..Default::default()
    };
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(tag)
        .registry(registry.clone())
        .export(info, Arc::new(Tagged(tag.to_owned())))
        .unregister_wait(Duration::from_millis(300))
        // Full weight at once: Dubbo's 10-minute warm-up would scale weights down here.
        .param("warmup", "0")
        .start()
        .await
        .unwrap()
}

async fn spread(r: &Reference, calls: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..calls {
        let v = r
            .invoke(Invocation::new(IFACE, "whoami", vec![]))
            .await
            .expect("no call may fail");
        *seen.entry(v.decode::<String>().unwrap()).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_and_reweight_another_through_a_zkcli_configurator() {
    let zk = ZkServer::start();
    let url = zk.registry_url("session=2000&retry.period=500&file.cache=false");
    let registries: Vec<Arc<dyn Registry>> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(rdubbo::registry::connect(&url).await.unwrap());
        }
        v
    };
    let a = provider(&registries[0], "A").await;
    let b = provider(&registries[1], "B").await;
    let c = provider(&registries[2], "C").await;
    let consumer = Reference::builder(IFACE)
        .registry(registries[3].clone())
        .check(false)
        .build()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer.directory().providers().len() < 3 {
        assert!(Instant::now() < deadline, "providers not discovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Equal weights: each gets about a third (weighted random, 1,500 calls; ±0.06 is
    // more than 5 standard deviations).
    let seen = spread(&consumer, 1500).await;
    for tag in ["A", "B", "C"] {
        let share = seen.get(tag).copied().unwrap_or(0) as f64 / 1500.0;
        assert!(
            (share - 1.0 / 3.0).abs() < 0.06,
            "{tag}: {share:.3} {seen:?}"
        );
    }

    // Kill A abruptly: its server is gone (connections refused) while its node stays in
    // ZooKeeper, as it does for a killed process until its session expires.
    drop(a);
    let seen = spread(&consumer, 300).await;
    assert!(seen.contains_key("B") && seen.contains_key("C"), "{seen:?}");

    // An operator gives B weight 900 with the stock ZooKeeper CLI, the way Dubbo Admin
    // writes it.
    let b_addr = b.urls()[0].address();
    let rule = format!(
        "override://{b_addr}/{IFACE}?category=configurators&dynamic=false&enabled=true&weight=900"
    );
    let path = format!(
        "/dubbo/{IFACE}/configurators/{}",
        rdubbo::url::encode(&rule)
    );
    let out = zk.cli(&["create", &path]);
    assert!(out.contains("Created"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let providers = consumer.directory().providers();
        if providers
            .iter()
            .any(|p| p.url.address() == b_addr && p.url.param("weight") == Some("900"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "configurator not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A's session ends (for a killed process: when ZooKeeper expires it); its node goes,
    // and only B (900) and C (100) remain: B gets ~90%.
    registries[0].destroy().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while consumer.directory().providers().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "the killed provider's node did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = spread(&consumer, 2000).await;
    let b_share = seen.get("B").copied().unwrap_or(0) as f64 / 2000.0;
    assert!((b_share - 0.9).abs() < 0.04, "B: {b_share:.3} {seen:?}");
    assert!(!seen.contains_key("A"), "{seen:?}");

    // The rule is removed: back to equal shares.
    zk.cli(&["delete", &path]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer
        .directory()
        .providers()
        .iter()
        .any(|p| p.url.param("weight") == Some("900"))
    {
        assert!(
            Instant::now() < deadline,
            "configurator removal not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = spread(&consumer, 1000).await;
    let b_share = seen.get("B").copied().unwrap_or(0) as f64 / 1000.0;
    assert!((b_share - 0.5).abs() < 0.08, "B: {b_share:.3} {seen:?}");

    b.stop().await;
    c.stop().await;
    consumer.close().await;
    for r in registries {
        r.destroy().await;
    }
}

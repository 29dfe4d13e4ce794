//! One interface served over `dubbo://` by one provider and `jsonrpc://` by another, both
//! registered in the embedded registry: a consumer reaches both, picking for each provider
//! URL the protocol it names; when the dubbo provider stops, every call goes to the other.

use std::sync::Arc;
use std::time::Duration;

use rdubbo::prelude::*;
use rdubbo::{Registry, Reply};
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use serde_json::json;

struct Whoami(&'static str);

impl Invoker for Whoami {
    fn invoke(&self, inv: Invocation) -> rdubbo::BoxFuture<'static, RpcResult<Reply>> {
        let me = self.0;
        Box::pin(async move {
            let arg = rdubbo::json::from_value(&inv.args.first().unwrap_or_default());
            Ok(Reply::Json(json!({"via": me, "arg": arg})))
        })
    }
}

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: "demo.MixedService".into(),
        version: None,
        group: None,
        methods: vec!["who".into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_calls_dubbo_and_jsonrpc_providers_of_one_interface() {
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let registry: Arc<dyn Registry> = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    let dubbo = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("dubbo")
        .registry(registry.clone())
        .unregister_wait(Duration::from_millis(300))
        .export(info(), Arc::new(Whoami("dubbo")))
        .start()
        .await
        .unwrap();
    assert!(dubbo.urls()[0].to_string().starts_with("dubbo://"));
    let jsonrpc = Provider::builder("127.0.0.1:0".parse().unwrap())
        .registry(registry.clone())
        .export(info(), Arc::new(Whoami("jsonrpc")))
        .start()
        .await
        .unwrap();
    let reference = Reference::builder("demo.MixedService")
        .registry(registry.clone())
        .loadbalance("roundrobin")
        .wait(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    // Wait until both providers are known, then round-robin reaches both.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..200 {
        let r = reference
            .invoke(Invocation::new(
                "demo.MixedService",
                "who",
                vec![Value::from(i)],
            ))
            .await
            .unwrap()
            .to_json()
            .unwrap();
        assert_eq!(r["arg"], json!(i));
        seen.insert(r["via"].as_str().unwrap().to_string());
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["dubbo".to_string(), "jsonrpc".to_string()]
    );
    // The dubbo provider leaves gracefully; no call fails meanwhile and all end on jsonrpc.
    let stopping = tokio::spawn(dubbo.stop());
    for i in 0..100 {
        reference
            .invoke(Invocation::new(
                "demo.MixedService",
                "who",
                vec![Value::from(i)],
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stopping.await.unwrap();
    for i in 0..10 {
        let r = reference
            .invoke(Invocation::new(
                "demo.MixedService",
                "who",
                vec![Value::from(i)],
            ))
            .await
            .unwrap()
            .to_json()
            .unwrap();
        assert_eq!(r["via"], json!("jsonrpc"));
    }
    reference.close().await;
    jsonrpc.stop().await;
    registry.destroy().await;
    server.stop().await;
}

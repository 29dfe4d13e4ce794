//! Extending rdubbo from outside its workspace.
//!
//! Four plug-ins of this program's own, registered in one extension table:
//! - a wire protocol, `jsonl://` (JSON lines over TCP: [`protocol`]), serving and calling;
//! - a registry, `local://<name>` (in-process, shared by name: [`registry`]);
//! - a load balancer, `zone` (prefers providers of the caller's zone: [`balancer`]);
//! - a tower layer (`tower::timeout`) around the reference.
//!
//! Two providers (zones `a` and `b`) serve `org.example.Greeter` over `jsonl://` and register
//! in `local://demo`; a consumer finds them there, picks by zone, and calls through the
//! timeout. The program checks each step and exits non-zero if one fails.

mod balancer;
mod protocol;
mod registry;

use std::sync::Arc;
use std::time::Duration;

use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo::tower::TowerLayer;
use rdubbo::{Attachments, RpcError, RpcResult};

/// The service both providers serve.
#[rdubbo::service(interface = "org.example.Greeter")]
pub trait Greeter {
    /// Greets `name`, saying which zone answered.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
    /// Answers after `ms` milliseconds.
    async fn slow(&self, ms: u64) -> RpcResult<u64>;
}

struct Hello {
    zone: &'static str,
}

impl Greeter for Hello {
    async fn say_hello(&self, name: String) -> RpcResult<String> {
        Ok(format!("Hello {name} from zone {}", self.zone))
    }

    async fn slow(&self, ms: u64) -> RpcResult<u64> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The table: rdubbo's built-ins of this build (here: balancers and cluster strategies
    // only, no protocol or registry features) plus this program's own.
    let mut table = rdubbo::extension::builtin();
    table.add_protocol(Arc::new(protocol::JsonLines));
    table.add_registry("local", registry::connect);
    table.add_balancer("zone", || Arc::new(balancer::ZoneAffinity::default()));
    let table = Arc::new(table);

    let registry = rdubbo::registry::connect_with(&table, "local://demo").await?;

    let mut providers = Vec::new();
    for zone in ["a", "b"] {
        let provider = Provider::builder("127.0.0.1:0".parse()?)
            .extensions(table.clone())
            .protocol("jsonl")
            .application("greeter")
            .param("zone", zone)
            .unregister_wait(Duration::from_millis(50))
            .registry(registry.clone())
            .export(
                GreeterServer::<Hello>::info(),
                Arc::new(GreeterServer::new(Hello { zone })),
            )
            .start()
            .await?;
        println!("serving {}", provider.urls()[0]);
        providers.push(provider);
    }

    let reference = Reference::builder("org.example.Greeter")
        .extensions(table.clone())
        .registry(registry.clone())
        .loadbalance("zone")
        .retries(1)
        .layer(Arc::new(TowerLayer::new(
            tower::timeout::TimeoutLayer::new(Duration::from_millis(300)),
        )))
        .build()
        .await?;
    println!(
        "consumer sees {} providers",
        reference.directory().providers().len()
    );
    let client = GreeterClient::new(Arc::new(reference));

    // The balancer keeps each caller in its zone.
    for zone in ["b", "a"] {
        let mut caller = Attachments::new();
        caller.insert("zone", zone);
        for _ in 0..5 {
            let answer =
                rdubbo::context::with_attachments(caller.clone(), client.say_hello("Ann".into()))
                    .await?;
            check(answer == format!("Hello Ann from zone {zone}"), &answer)?;
        }
        println!("zone {zone}: 5 calls answered in zone {zone}");
    }

    // The tower timeout bounds the whole call (around the cluster).
    match client.slow(2_000).await {
        Err(RpcError::Timeout(_)) => println!("slow call: timed out by the tower layer"),
        other => return Err(format!("expected a timeout, got {other:?}").into()),
    }
    check(client.slow(10).await? == 10, "a fast call passes the layer")?;

    // Zone b leaves: its callers fall back to zone a once the registry says so.
    let b = providers.pop().ok_or("two providers")?;
    b.stop().await;
    let mut caller = Attachments::new();
    caller.insert("zone", "b");
    let answer = rdubbo::context::with_attachments(caller, client.say_hello("Bob".into())).await?;
    check(answer == "Hello Bob from zone a", &answer)?;
    println!("zone b gone: answered by zone a");

    for provider in providers {
        provider.stop().await;
    }
    registry.destroy().await;
    println!("ok");
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

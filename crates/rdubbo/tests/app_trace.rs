//! Trace context across a call chain of three applications, and the spans of each hop.
//! (Its own test binary: it installs a tracing subscriber for the test's thread.)

use std::sync::{Arc, OnceLock};

use rdubbo::app::{Application, Config, Format};

mod app_common;
use app_common::*;

fn trace_id(tp: &str) -> &str {
    tp.split('-').nth(1).unwrap_or("")
}

#[tokio::test(flavor = "current_thread")]
async fn trace_context_follows_a_call_chain_and_spans_name_each_hop() {
    let (captured, _guard) = Captured::install();

    let server = registry().await;
    let reg = server.registry_url();
    let demo_app = start_provider(&reg, "demo-app").await;
    // A relay application: provides Relay, and references DemoService.
    let relay_config = format!(
        r#"
[application]
name = "relay-app"
[registries.main]
address = "{reg}"
[protocols.dubbo]
port = 0
[provider.services.relay]
interface = "org.example.Relay"
[consumer.references.demo]
interface = "org.apache.dubbo.demo.DemoService"
version = "1.0.0"
[metrics]
enabled = false
[qos]
enabled = false
"#
    );
    let slot = Arc::new(OnceLock::new());
    let relay_app =
        Application::builder(Config::from_str(&relay_config, Format::Toml, "relay.toml").unwrap())
            .service(
                "relay",
                RelayServer::<RelayImpl>::info(),
                Arc::new(RelayServer::new(RelayImpl(slot.clone()))),
            )
            .start()
            .await
            .unwrap();
    slot.set(relay_app.reference("demo").unwrap()).ok().unwrap();

    let front_config = format!(
        r#"
[registries.main]
address = "{reg}"
[consumer.references.relay]
interface = "org.example.Relay"
[metrics]
enabled = false
[qos]
enabled = false
"#
    );
    let front =
        Application::builder(Config::from_str(&front_config, Format::Toml, "front.toml").unwrap())
            .start()
            .await
            .unwrap();
    let relay = RelayClient::new(front.reference("relay").unwrap());

    // A caller-supplied trace continues through both hops.
    let root = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut extra = rdubbo::Attachments::new();
    extra.insert("traceparent", root);
    let seen = rdubbo::context::with_attachments(extra, relay.chain())
        .await
        .unwrap();
    assert_eq!(seen.len(), 2);
    for tp in &seen {
        assert_eq!(trace_id(tp), "4bf92f3577b34da6a3ce929d0e0e4736", "{seen:?}");
        assert!(rdubbo::app::trace::TraceParent::parse(tp).is_some(), "{tp}");
    }
    assert_ne!(seen[0], root, "each hop sends a span id of its own");
    assert_ne!(seen[0], seen[1]);

    // Without one, a new trace starts, and still spans both hops.
    let seen = relay.chain().await.unwrap();
    assert_eq!(trace_id(&seen[0]), trace_id(&seen[1]));
    assert_ne!(trace_id(&seen[0]), "4bf92f3577b34da6a3ce929d0e0e4736");

    let log = captured.text();
    for needle in [
        "rpc.client{service=org.example.Relay method=chain trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "rpc.server{service=org.example.Relay method=chain trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "rpc.client{service=org.apache.dubbo.demo.DemoService method=traceparent trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "rpc.attempt{provider=127.0.0.1:",
        "attempt=1}",
    ] {
        assert!(log.contains(needle), "no `{needle}` in:\n{log}");
    }

    front.shutdown().await;
    relay_app.shutdown().await;
    demo_app.shutdown().await;
}
